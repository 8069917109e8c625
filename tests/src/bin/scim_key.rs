//! Prints `{"base_url", "org_id", "key"}` for a fresh org (with a fresh owner, signed in through
//! the stack's email fake) and a SCIM key its owner minted: what `scripts/e2e` hands the
//! scim2-tester conformance run (`tests/scim/conformance.py`). Only an owner grants `scim`, and
//! the seeded key deliberately does not hold it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::identity::{create_org, new_user};
use serde_json::json;

fn main() {
    let owner = new_user("scim-conformance");
    let org = create_org(&owner, "SCIM conformance")["id"]
        .as_str()
        .expect("org id")
        .to_owned();
    let key = owner
        .client()
        .post(
            &format!("/v1/orgs/{org}/api-keys"),
            &json!({"name": "scim2-tester", "scopes": ["scim"]}),
        )
        .expect(201)
        .json()["key"]
        .as_str()
        .expect("key")
        .to_owned();
    println!(
        "{}",
        json!({"base_url": e2e::stack().base_url, "org_id": org, "key": key})
    );
}
