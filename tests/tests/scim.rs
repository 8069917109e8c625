//! SCIM 2.0 provisioning at /scim/v2, driven the way Okta and Entra ID drive it: users created,
//! read, filtered and paged; deactivation in both IdPs' PATCH forms revoking the person's
//! session at once and removing the membership; the last owner kept; groups deciding roles
//! through the owner's mapping; the `scim` scope as the only door in and out; tenancy; and an
//! audit event for every change, by the SCIM key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::identity::{audit_events, create_org, new_user, unique_email, Session};
use e2e::{Client, Resp};
use serde_json::{json, Value};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A fresh org with its owner, and a SCIM key (id, client) minted by that owner.
struct Org {
    id: String,
    owner: Session,
    key_id: String,
    scim: Client,
}

fn org() -> Org {
    let owner = new_user("scim-owner");
    let id = create_org(&owner, "SCIM org")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = owner
        .client()
        .post(
            &format!("/v1/orgs/{id}/api-keys"),
            &json!({"name": "idp", "scopes": ["scim"]}),
        )
        .expect(201)
        .json();
    Org {
        key_id: r["api_key"]["id"].as_str().unwrap().to_owned(),
        scim: Client::anonymous().with_bearer(r["key"].as_str().unwrap()),
        id,
        owner,
    }
}

/// Asserts a SCIM error: status, the RFC 7644 body (status as a string) and content type.
#[track_caller]
fn scim_error(r: Resp, status: u16, scim_type: Option<&str>) -> Value {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    let body = r.json();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], status.to_string());
    assert_eq!(body["scimType"].as_str(), scim_type, "body: {body}");
    body
}

fn create_user(o: &Org, email: &str, external_id: &str) -> Value {
    let r = o
        .scim
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": email, "externalId": external_id,
                "name": {"givenName": "Test", "familyName": external_id},
                "emails": [{"value": email, "primary": true, "type": "work"}], "active": true}),
        )
        .expect(201);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    r.json()
}

fn member_role(o: &Org, user_id: &str) -> Option<String> {
    let members = o
        .owner
        .client()
        .get(&format!("/v1/orgs/{}/members", o.id))
        .expect(200)
        .json();
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user_id)
        .map(|m| m["role"].as_str().unwrap().to_owned())
}

/// The event exists, in the org's chain, by the SCIM key.
#[track_caller]
fn audited_by_key(o: &Org, action: &str, resource_id: &str) -> Value {
    let events = audit_events(action, resource_id);
    let ev = events
        .iter()
        .find(|e| e["org_id"] == o.id.as_str())
        .unwrap_or_else(|| panic!("no {action} event for {resource_id} in {events:?}"));
    assert_eq!(ev["actor_type"], "api_key");
    assert_eq!(ev["actor_id"], o.key_id.as_str());
    ev.clone()
}

fn list(o: &Org, query: &str) -> Value {
    o.scim
        .get(&format!("/scim/v2/Users?{query}"))
        .expect(200)
        .json()
}

/// A query-string value, percent-encoded.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn users_are_created_read_filtered_and_paged() {
    let o = org();
    let emails: Vec<String> = (0..3).map(|i| unique_email(&format!("scim{i}"))).collect();
    let created: Vec<Value> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| create_user(&o, e, &format!("ext-{i}")))
        .collect();
    let id0 = created[0]["id"].as_str().unwrap();
    assert!(id0.starts_with("usr_"));
    assert_eq!(created[0]["active"], true);
    assert_eq!(created[0]["meta"]["resourceType"], "User");
    assert!(created[0]["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{id0}")));
    audited_by_key(&o, "scim_user.created", id0);
    // A SCIM user is a member with the default role.
    assert_eq!(member_role(&o, id0).as_deref(), Some("member"));

    let got = o
        .scim
        .get(&format!("/scim/v2/Users/{id0}"))
        .expect(200)
        .json();
    assert_eq!(got["userName"], emails[0].as_str());
    assert_eq!(got["name"]["familyName"], "ext-0");

    // Filters an IdP sends, case-insensitively where RFC 7643 says so.
    let f = list(
        &o,
        &format!(
            "filter={}",
            enc(&format!("userName eq \"{}\"", emails[1].to_uppercase()))
        ),
    );
    assert_eq!(f["totalResults"], 1);
    assert_eq!(f["Resources"][0]["id"], created[1]["id"]);
    let f = list(&o, &format!("filter={}", enc("externalId eq \"ext-2\"")));
    assert_eq!(f["Resources"][0]["id"], created[2]["id"]);
    let f = list(
        &o,
        &format!(
            "filter={}",
            enc(&format!("emails.value co \"{}\"", &emails[0][..10]))
        ),
    );
    assert_eq!(f["totalResults"], 1);
    let f = list(
        &o,
        &format!("filter={}", enc("userName sw \"scim\" and active eq true")),
    );
    assert_eq!(f["totalResults"], 3);
    let f = list(
        &o,
        &format!(
            "filter={}",
            enc("externalId eq \"ext-0\" or externalId eq \"ext-2\"")
        ),
    );
    assert_eq!(f["totalResults"], 2);
    let f = list(
        &o,
        &format!(
            "filter={}",
            enc("externalId pr and not (externalId eq \"ext-1\")")
        ),
    );
    assert_eq!(f["totalResults"], 2);

    // Pagination: 1-based, the total independent of the page.
    let p = list(&o, "startIndex=2&count=1");
    assert_eq!(
        p["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            p["totalResults"].as_u64(),
            p["itemsPerPage"].as_u64(),
            p["startIndex"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(p["Resources"][0]["id"], created[1]["id"]);
    let p = list(&o, "startIndex=3&count=10");
    assert_eq!(p["Resources"].as_array().unwrap().len(), 1);
    assert_eq!(list(&o, "count=0")["Resources"], json!([]));
    // Projections and POST …/.search.
    let only = o
        .scim
        .get(&format!("/scim/v2/Users/{id0}?attributes=userName"))
        .expect(200)
        .json();
    let mut keys: Vec<&String> = only.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let searched = o
        .scim
        .post(
            "/scim/v2/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "externalId eq \"ext-1\"", "excludedAttributes": ["name"]}),
        )
        .expect(200)
        .json();
    assert_eq!(searched["totalResults"], 1);
    assert_eq!(searched["Resources"][0]["id"], created[1]["id"]);
    assert!(searched["Resources"][0].get("name").is_none());

    scim_error(
        o.scim
            .get(&format!("/scim/v2/Users?filter={}", enc("userName eq"))),
        400,
        Some("invalidFilter"),
    );
    scim_error(
        o.scim.get(&format!(
            "/scim/v2/Users?filter={}",
            enc("password eq \"x\"")
        )),
        400,
        Some("invalidFilter"),
    );
    // userName is unique in the org.
    scim_error(
        o.scim.post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": emails[0]}),
        ),
        409,
        Some("uniqueness"),
    );
    scim_error(
        o.scim.post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "no address"}),
        ),
        400,
        Some("invalidValue"),
    );
    scim_error(
        o.scim.post_raw(
            "/scim/v2/Users",
            "application/scim+json",
            b"{\"userName\":".to_vec(),
        ),
        400,
        Some("invalidSyntax"),
    );
    scim_error(
        o.scim
            .get("/scim/v2/Users/usr_0000000000000000000000000000"),
        404,
        None,
    );
    // Bodies are size-limited like every route's.
    let big = json!({"schemas": [USER], "userName": emails[0], "x": "a".repeat(70 * 1024)});
    scim_error(o.scim.post("/scim/v2/Users", &big), 413, None);

    // Discovery.
    let spc = o
        .scim
        .get("/scim/v2/ServiceProviderConfig")
        .expect(200)
        .json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(
        o.scim.get("/scim/v2/ResourceTypes").expect(200).json()["totalResults"],
        2
    );
    let s = o
        .scim
        .get(&format!("/scim/v2/Schemas/{USER}"))
        .expect(200)
        .json();
    assert_eq!(s["id"], USER);

    // DELETE: gone from SCIM and from the org, audited.
    let id2 = created[2]["id"].as_str().unwrap();
    o.scim.delete(&format!("/scim/v2/Users/{id2}")).expect(204);
    scim_error(o.scim.get(&format!("/scim/v2/Users/{id2}")), 404, None);
    assert_eq!(member_role(&o, id2), None);
    audited_by_key(&o, "scim_user.deleted", id2);
}

/// Provisions `person` (already signed in) into the org through SCIM: they are invited and
/// accept (SCIM links only existing members), then the IdP links their account.
fn provision(o: &Org, person: &Session) -> String {
    e2e::access::add_member(&o.owner, &o.id, person, "member");
    let u = create_user(o, &person.email, "ext-person");
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(
        id, person.user_id,
        "SCIM linked the existing account by email"
    );
    person
        .client()
        .get(&format!("/v1/orgs/{}", o.id))
        .expect(200);
    id
}

fn deactivates_at_once(op: Value) {
    let o = org();
    let person = new_user("scim-person");
    let id = provision(&o, &person);
    assert_eq!(member_role(&o, &id).as_deref(), Some("member"));

    let r = o
        .scim
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [op]}),
        )
        .expect(200)
        .json();
    assert_eq!(r["active"], false);
    // The very next request with the person's access token is refused: the session is revoked.
    person
        .client()
        .get("/v1/me")
        .expect_error(401, "invalid_token");
    assert_eq!(member_role(&o, &id), None, "the membership is removed");
    // The resource stays, inactive, for the IdP to find.
    assert_eq!(
        o.scim
            .get(&format!("/scim/v2/Users/{id}"))
            .expect(200)
            .json()["active"],
        false
    );
    audited_by_key(&o, "scim_user.deactivated", &id);
    let revoked = audit_events("session.revoked_all", &id);
    assert!(
        revoked.iter().any(|e| e["metadata"]
            .as_str()
            .unwrap_or_default()
            .contains(&person.session_id)),
        "{revoked:?}"
    );
    let sessions = e2e::identity::d1(
        "SELECT revoked_at_ms FROM sessions WHERE id = ?",
        &[json!(person.session_id)],
    );
    assert!(sessions[0]["revoked_at_ms"].is_number());

    // Entra's reactivation (string boolean) brings the membership back with the default role.
    o.scim
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}),
        )
        .expect(200);
    assert_eq!(member_role(&o, &id).as_deref(), Some("member"));
    audited_by_key(&o, "scim_user.reactivated", &id);
}

#[test]
fn okta_deactivation_revokes_the_session_at_once_and_removes_the_membership() {
    deactivates_at_once(json!({"op": "replace", "value": {"active": false}}));
}

#[test]
fn entra_deactivation_revokes_the_session_at_once_and_removes_the_membership() {
    deactivates_at_once(json!({"op": "Replace", "path": "active", "value": "False"}));
}

#[test]
fn deprovisioning_in_one_org_leaves_the_persons_other_orgs_alone() {
    let a = org();
    let person = new_user("scim-two-orgs");
    // Org B, created through the normal API by its own owner; the person joins it.
    let b_owner = new_user("scim-b-owner");
    let b = create_org(&b_owner, "Other org")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    e2e::access::add_member(&b_owner, &b, &person, "member");
    let b_token = e2e::identity::cli_token(&person, &b, None);
    b_token.client().get(&format!("/v1/orgs/{b}")).expect(200);

    let id = provision(&a, &person);
    let a_token = e2e::identity::cli_token(&person, &a.id, None);
    a.scim.delete(&format!("/scim/v2/Users/{id}")).expect(204);

    assert_eq!(member_role(&a, &id), None, "the membership in A is removed");
    a_token
        .client()
        .get(&format!("/v1/orgs/{}", a.id))
        .expect_error(401, "invalid_token");
    let r = person.client().get(&format!("/v1/orgs/{}", a.id));
    assert!(matches!(r.status, 403 | 404), "A still answers: {}", r.text);
    // B is untouched: the membership, the web session and B's CLI token all still work.
    person.client().get(&format!("/v1/orgs/{b}")).expect(200);
    person.client().get("/v1/me").expect(200);
    b_token.client().get(&format!("/v1/orgs/{b}")).expect(200);
}

#[test]
fn an_existing_account_that_is_not_a_member_is_not_pulled_in() {
    let o = org();
    let outsider = new_user("scim-outsider");
    let r = o.scim.post(
        "/scim/v2/Users",
        &json!({"schemas": [USER], "userName": outsider.email, "displayName": "Renamed By IdP",
            "emails": [{"value": outsider.email, "primary": true}], "active": true}),
    );
    let body = scim_error(r, 409, Some("uniqueness"));
    assert!(
        body["detail"].as_str().unwrap().contains("invite"),
        "{body}"
    );
    assert_eq!(
        member_role(&o, &outsider.user_id),
        None,
        "no membership added"
    );
    assert!(list(
        &o,
        &format!(
            "filter={}",
            enc(&format!("userName eq \"{}\"", outsider.email))
        )
    )["Resources"]
        .as_array()
        .is_none_or(|r| r.is_empty()));
    // Still signed in, and the account keeps its own name.
    let me = outsider.client().get("/v1/me").expect(200).json();
    assert!(!me.to_string().contains("Renamed By IdP"), "{me}");
    assert!(audit_events("scim_user.created", &outsider.user_id).is_empty());
}

#[test]
fn the_last_owner_is_never_deprovisioned() {
    let o = org();
    let id = create_user(&o, &o.owner.email, "ext-owner")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id, o.owner.user_id);
    assert_eq!(
        member_role(&o, &id).as_deref(),
        Some("owner"),
        "linking keeps the role"
    );
    let body = scim_error(
        o.scim.patch(
            &format!("/scim/v2/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]}),
        ),
        409,
        None,
    );
    assert!(body["detail"].as_str().unwrap().contains("owner"));
    scim_error(o.scim.delete(&format!("/scim/v2/Users/{id}")), 409, None);
    assert_eq!(member_role(&o, &id).as_deref(), Some("owner"));
    o.owner.client().get("/v1/me").expect(200);
    assert_eq!(
        o.scim
            .get(&format!("/scim/v2/Users/{id}"))
            .expect(200)
            .json()["active"],
        true
    );
}

#[test]
fn groups_decide_roles_through_the_owners_mapping() {
    let o = org();
    let mapping = format!("/v1/orgs/{}/scim/group-roles", o.id);
    let oc = o.owner.client();
    oc.put(
        &mapping,
        &json!({"mappings": [{"group": "Owners", "role": "owner"}]}),
    )
    .expect_error(422, "validation_failed");
    let m = oc
        .put(
            &mapping,
            &json!({"mappings": [{"group": "Eng Admins", "role": "admin"}]}),
        )
        .expect(200)
        .json();
    assert_eq!(
        m["mappings"],
        json!([{"group": "Eng Admins", "role": "admin"}])
    );
    assert_eq!(oc.get(&mapping).expect(200).json(), m);
    let ev = audit_events("scim_group_roles.updated", &o.id);
    assert_eq!(ev.len(), 1);
    // Owner-only: an admin (and the SCIM key) may not read or change it.
    let admin = new_user("scim-admin");
    e2e::access::add_member(&o.owner, &o.id, &admin, "admin");
    admin
        .client()
        .get(&mapping)
        .expect_error(403, "insufficient_scope");
    o.scim.get(&mapping).expect_error(403, "forbidden");

    let a = create_user(&o, &unique_email("scim-a"), "a")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = create_user(&o, &unique_email("scim-b"), "b")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = o
        .scim
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "Eng Admins", "members": [{"value": a}]}),
        )
        .expect(201)
        .json();
    let gid = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["members"][0]["value"], a.as_str());
    audited_by_key(&o, "scim_group.created", &gid);
    assert_eq!(member_role(&o, &a).as_deref(), Some("admin"));
    assert_eq!(member_role(&o, &b).as_deref(), Some("member"));

    // Okta adds by value; Entra removes by filter path.
    o.scim
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": b}]}]}),
        )
        .expect(200);
    assert_eq!(member_role(&o, &b).as_deref(), Some("admin"));
    let after = o
        .scim
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}]}),
        )
        .expect(200)
        .json();
    assert_eq!(after["members"].as_array().unwrap().len(), 1);
    assert_eq!(member_role(&o, &a).as_deref(), Some("member"));
    assert_eq!(audit_events("scim_group.updated", &gid).len(), 2);
    let f = o
        .scim
        .get(&format!(
            "/scim/v2/Groups?filter={}",
            enc(&format!("members.value eq \"{b}\""))
        ))
        .expect(200)
        .json();
    assert_eq!(f["totalResults"], 1);

    // A member must be one of this org's SCIM users.
    scim_error(
        o.scim.patch(
            &format!("/scim/v2/Groups/{gid}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": o.owner.user_id}]}]}),
        ),
        400,
        Some("invalidValue"),
    );
    scim_error(
        o.scim.post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "Eng Admins"}),
        ),
        409,
        Some("uniqueness"),
    );
    // Deleting the group takes the role it granted.
    o.scim.delete(&format!("/scim/v2/Groups/{gid}")).expect(204);
    assert_eq!(member_role(&o, &b).as_deref(), Some("member"));
    audited_by_key(&o, "scim_group.deleted", &gid);
}

#[test]
fn scim_takes_only_a_scim_key_and_a_scim_key_takes_only_scim() {
    let o = org();
    // No credential, a session, or a key without `scim`: refused, in SCIM's error shape.
    scim_error(Client::anonymous().get("/scim/v2/Users"), 401, None);
    scim_error(o.owner.client().get("/scim/v2/Users"), 403, None);
    let other = o
        .owner
        .client()
        .post(
            &format!("/v1/orgs/{}/api-keys", o.id),
            &json!({"name": "members", "scopes": ["members:read", "members:write"]}),
        )
        .expect(201)
        .json();
    let plain = Client::anonymous().with_bearer(other["key"].as_str().unwrap());
    scim_error(plain.get("/scim/v2/Users"), 403, None);
    scim_error(
        plain.post("/scim/v2/Users", &json!({"userName": unique_email("x")})),
        403,
        None,
    );
    // The SCIM key opens nothing else.
    o.scim
        .get(&format!("/v1/orgs/{}/members", o.id))
        .expect_error(403, "forbidden");
    o.scim.get("/v1/me").expect_error(403, "forbidden");
    // `scim` is held alone, and only owners grant it.
    o.owner
        .client()
        .post(
            &format!("/v1/orgs/{}/api-keys", o.id),
            &json!({"name": "mixed", "scopes": ["scim", "members:read"]}),
        )
        .expect_error(422, "validation_failed");
    let admin = new_user("scim-admin2");
    e2e::access::add_member(&o.owner, &o.id, &admin, "admin");
    admin
        .client()
        .post(
            &format!("/v1/orgs/{}/api-keys", o.id),
            &json!({"name": "idp", "scopes": ["scim"]}),
        )
        .expect_error(403, "forbidden");
}

#[test]
fn another_orgs_users_and_groups_answer_404() {
    let a = org();
    let b = org();
    let ua = create_user(&a, &unique_email("scim-tenant"), "t")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ga = a
        .scim
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "A team"}),
        )
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deactivate =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]});
    scim_error(b.scim.get(&format!("/scim/v2/Users/{ua}")), 404, None);
    scim_error(
        b.scim.patch(&format!("/scim/v2/Users/{ua}"), &deactivate),
        404,
        None,
    );
    scim_error(b.scim.delete(&format!("/scim/v2/Users/{ua}")), 404, None);
    scim_error(b.scim.get(&format!("/scim/v2/Groups/{ga}")), 404, None);
    scim_error(b.scim.delete(&format!("/scim/v2/Groups/{ga}")), 404, None);
    assert_eq!(list(&b, "")["totalResults"], 0);
    // Org B cannot put org A's user in its group either.
    scim_error(
        b.scim.post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "B team", "members": [{"value": ua}]}),
        ),
        400,
        Some("invalidValue"),
    );
    // A's user is untouched.
    assert_eq!(
        a.scim
            .get(&format!("/scim/v2/Users/{ua}"))
            .expect(200)
            .json()["active"],
        true
    );
    assert_eq!(member_role(&a, &ua).as_deref(), Some("member"));
}

#[test]
fn an_inactive_user_is_never_left_a_member() {
    let o = org();
    // Created inactive for someone who is a member: the membership goes, as by a deactivation.
    let person = new_user("scim-inactive");
    // An org of their own keeps their web session through the deprovisionings below.
    create_org(&person, "Own org");
    e2e::access::add_member(&o.owner, &o.id, &person, "member");
    let r = o
        .scim
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": person.email,
                "emails": [{"value": person.email, "primary": true}], "active": false}),
        )
        .expect(201)
        .json();
    assert_eq!(r["active"], false);
    assert_eq!(member_role(&o, &person.user_id), None);
    // Invited back while the SCIM user is inactive, then deleted by the IdP: the membership goes.
    e2e::access::add_member(&o.owner, &o.id, &person, "member");
    assert_eq!(member_role(&o, &person.user_id).as_deref(), Some("member"));
    o.scim
        .delete(&format!("/scim/v2/Users/{}", person.user_id))
        .expect(204);
    assert_eq!(member_role(&o, &person.user_id), None);
}

#[test]
fn a_concurrent_update_never_brings_back_active_without_the_membership() {
    let o = org();
    let id = create_user(&o, &unique_email("scim-race"), "race")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/scim/v2/Users/{id}");
    let set_active = |v: bool| json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": v}]});
    for i in 0..12 {
        o.scim.patch(&path, &set_active(true)).expect(200);
        // A rename that read `active: true` races a deactivation: one of them may lose with a
        // 409, but the stored `active` always agrees with the membership.
        let scim = o.scim.clone();
        let p = path.clone();
        let rename = std::thread::spawn(move || {
            scim.patch(
                &p,
                &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": format!("Name {i}")}]}),
            )
            .status
        });
        let deactivated = o.scim.patch(&path, &set_active(false)).status;
        let renamed = rename.join().unwrap();
        assert!(matches!(deactivated, 200 | 409), "{deactivated}");
        assert!(matches!(renamed, 200 | 409), "{renamed}");
        let active = o.scim.get(&path).expect(200).json()["active"] == true;
        assert_eq!(
            active,
            member_role(&o, &id).is_some(),
            "round {i}: active is {active} but the membership says otherwise"
        );
    }
}

#[test]
fn the_orgs_audit_says_nothing_about_the_account_itself() {
    let o = org();
    let id = create_user(&o, &unique_email("scim-audit"), "audit")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = audited_by_key(&o, "scim_user.created", &id);
    let meta = ev["metadata"].as_str().unwrap_or_default();
    assert!(!meta.contains("account_created"), "{meta}");
}

#[test]
fn emptying_the_mapping_puts_scim_admins_back_to_member() {
    let o = org();
    let mapping = format!("/v1/orgs/{}/scim/group-roles", o.id);
    let oc = o.owner.client();
    oc.put(
        &mapping,
        &json!({"mappings": [{"group": "Admins", "role": "admin"}]}),
    )
    .expect(200);
    let a = create_user(&o, &unique_email("scim-reset"), "reset")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    o.scim
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "Admins", "members": [{"value": a}]}),
        )
        .expect(201);
    assert_eq!(member_role(&o, &a).as_deref(), Some("admin"));

    oc.put(&mapping, &json!({"mappings": []})).expect(200);
    assert_eq!(member_role(&o, &a).as_deref(), Some("member"));
    assert_eq!(member_role(&o, &o.owner.user_id).as_deref(), Some("owner"));
    let ev = audit_events("scim_group_roles.updated", &o.id);
    assert!(
        ev.last().unwrap()["metadata"]
            .as_str()
            .unwrap()
            .contains("scim_admins_reset_to"),
        "{ev:?}"
    );
}

#[test]
fn the_longest_filter_chain_is_answered_and_a_longer_one_is_invalid() {
    let o = org();
    let email = unique_email("scim-chain");
    let id = create_user(&o, &email, "chain")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let chain = |n: usize| {
        let mut terms: Vec<String> = (1..n)
            .map(|i| format!("userName eq \"n{i}@x.io\""))
            .collect();
        terms.push(format!("userName eq \"{email}\""));
        terms.join(" or ")
    };
    let r = list(&o, &format!("filter={}", enc(&chain(50))));
    assert_eq!(r["totalResults"], 1, "{r}");
    assert_eq!(r["Resources"][0]["id"], id.as_str());
    let pr = vec!["userName pr"; 51].join(" or ");
    scim_error(
        o.scim.get(&format!("/scim/v2/Users?filter={}", enc(&pr))),
        400,
        Some("invalidFilter"),
    );
}
