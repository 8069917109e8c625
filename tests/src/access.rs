//! Test helpers for the access area: arranging memberships through the real API (invitation and
//! acceptance, role changes, removal).

use serde_json::json;

use crate::identity::Session;
use crate::Resp;

/// `inviter` invites `member` to `org_id` with `role`; `member` accepts while signed in.
pub fn add_member(inviter: &Session, org_id: &str, member: &Session, role: &str) {
    let inv = inviter
        .client()
        .post(
            &format!("/v1/orgs/{org_id}/invitations"),
            &json!({"email": member.email, "role": role}),
        )
        .expect(201)
        .json();
    let token = inv["token"].as_str().expect("invitation token");
    member
        .client()
        .post("/v1/invitations/accept", &json!({"token": token}))
        .expect(200);
}

pub fn set_role(actor: &Session, org_id: &str, user_id: &str, role: &str) -> Resp {
    actor.client().patch(
        &format!("/v1/orgs/{org_id}/members/{user_id}"),
        &json!({"role": role}),
    )
}

pub fn remove_member(actor: &Session, org_id: &str, user_id: &str) -> Resp {
    actor
        .client()
        .delete(&format!("/v1/orgs/{org_id}/members/{user_id}"))
}
