//! People in organizations, with real signed-in users: invitations end to end (email delivery,
//! the wrong person, reuse), the role rules, last-owner protection under concurrency, leaving,
//! and the tenancy matrix over every org route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use e2e::access::{add_member, remove_member, set_role};
use e2e::identity::{create_org, email_fake, new_user, Session};
use e2e::{Client, Resp};
use edgeplane_core::auth::{Role, Scope};
use serde_json::{json, Value};

fn org_id(org: &Value) -> String {
    org["id"].as_str().unwrap().to_owned()
}

fn my_role(s: &Session, org: &str) -> Resp {
    s.client().get(&format!("/v1/orgs/{org}/me"))
}

#[test]
fn invitations_are_delivered_and_accepted_once_by_the_invited_person() {
    let owner = new_user("inv-owner");
    let org = org_id(&create_org(&owner, "Inviting"));
    let invitee = new_user("inv-invitee");
    let stranger = new_user("inv-stranger");
    let created = owner
        .client()
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            &json!({"email": invitee.email, "role": "admin"}),
        )
        .expect(201)
        .json();
    assert_eq!(created["email_sent"], true);
    let token = created["token"].as_str().unwrap().to_owned();
    // The email carries the acceptance link with the token.
    let mails = email_fake().messages_to(&invitee.email);
    let mail = mails
        .iter()
        .find(|m| m["text"].as_str().is_some_and(|t| t.contains(&token)))
        .expect("the invitation email was delivered");
    assert!(mail["subject"].as_str().unwrap().contains("Inviting"));

    // Someone else cannot use it, even holding the token.
    stranger
        .client()
        .post("/v1/invitations/accept", &json!({"token": token}))
        .expect_error(403, "forbidden");
    my_role(&stranger, &org).expect_error(404, "not_found");
    // The invitee can, once.
    let accepted = invitee
        .client()
        .post("/v1/invitations/accept", &json!({"token": token}))
        .expect(200)
        .json();
    assert_eq!(accepted["membership"]["role"], "admin");
    assert_eq!(my_role(&invitee, &org).expect(200).json()["role"], "admin");
    invitee
        .client()
        .post("/v1/invitations/accept", &json!({"token": token}))
        .expect_error(409, "conflict");
    // Unknown and malformed tokens.
    invitee
        .client()
        .post(
            "/v1/invitations/accept",
            &json!({"token": "epin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .expect_error(404, "not_found");
    invitee
        .client()
        .post("/v1/invitations/accept", &json!({"token": 7}))
        .expect_error(422, "validation_failed");
    // Accepting is audited in the org's chain.
    let events = owner
        .client()
        .get(&format!(
            "/v1/orgs/{org}/audit-events?action=invitation.accepted"
        ))
        .expect(200)
        .json();
    assert_eq!(
        events["events"][0]["resource"]["id"],
        invitee.user_id.as_str()
    );
}

#[test]
fn role_rules_hold_for_people() {
    let owner = new_user("roles-owner");
    let org = org_id(&create_org(&owner, "Roles"));
    let admin = new_user("roles-admin");
    let member = new_user("roles-member");
    add_member(&owner, &org, &admin, "admin");
    add_member(&owner, &org, &member, "member");

    // A member manages nobody.
    set_role(&member, &org, &member.user_id, "admin").expect_error(403, "insufficient_scope");
    set_role(&member, &org, &admin.user_id, "member").expect_error(403, "insufficient_scope");
    // An admin manages members and admins, never ownership, never themselves.
    set_role(&admin, &org, &member.user_id, "owner").expect_error(403, "forbidden");
    set_role(&admin, &org, &owner.user_id, "member").expect_error(403, "forbidden");
    remove_member(&admin, &org, &owner.user_id).expect_error(403, "forbidden");
    set_role(&admin, &org, &admin.user_id, "owner").expect_error(403, "forbidden");
    set_role(&admin, &org, &member.user_id, "admin").expect(200);
    assert_eq!(my_role(&member, &org).expect(200).json()["role"], "admin");
    set_role(&admin, &org, &member.user_id, "member").expect(200);
    // An admin cannot invite an owner.
    admin
        .client()
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            &json!({"email": "future-owner@example.com", "role": "owner"}),
        )
        .expect_error(403, "forbidden");
    // The owner cannot demote themselves (no self-service role changes at all)...
    set_role(&owner, &org, &owner.user_id, "admin").expect_error(403, "forbidden");
    // ...but can make the admin an owner, who can then demote the first owner.
    set_role(&owner, &org, &admin.user_id, "owner").expect(200);
    set_role(&admin, &org, &owner.user_id, "admin").expect(200);
    assert_eq!(my_role(&owner, &org).expect(200).json()["role"], "admin");
    // Now the former admin is the only owner: they cannot leave, and nobody can demote them.
    admin
        .client()
        .post(&format!("/v1/orgs/{org}/leave"), &json!({}))
        .expect_error(409, "conflict");
    set_role(&owner, &org, &admin.user_id, "member").expect_error(403, "forbidden");
    // A member leaves on their own and loses access at once.
    member
        .client()
        .post(&format!("/v1/orgs/{org}/leave"), &json!({}))
        .expect(204);
    my_role(&member, &org).expect_error(404, "not_found");
    // Role changes are audited with from/to.
    let events = admin
        .client()
        .get(&format!(
            "/v1/orgs/{org}/audit-events?action=member.role_changed&resource={}",
            owner.user_id
        ))
        .expect(200)
        .json();
    assert_eq!(
        events["events"][0]["metadata"],
        json!({"from": "owner", "to": "admin"})
    );
    assert_eq!(events["events"][0]["actor"]["id"], admin.user_id.as_str());
}

#[test]
fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    for round in 0..3 {
        let a = new_user(&format!("race-a{round}"));
        let org = org_id(&create_org(&a, "Race"));
        let b = new_user(&format!("race-b{round}"));
        add_member(&a, &org, &b, "owner");
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| set_role(&a, &org, &b.user_id, "member").status);
            let tb = s.spawn(|| set_role(&b, &org, &a.user_id, "member").status);
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let statuses: BTreeSet<u16> = [ra, rb].into_iter().collect();
        // Either one demotion wins and the other is refused (409 last owner, or 403 because the
        // loser is no longer an owner), never both.
        assert!(statuses.contains(&200) && statuses.len() == 2, "{ra} {rb}");
        let members = a.client().get(&format!("/v1/orgs/{org}/members"));
        let members = if members.status == 200 {
            members.json()
        } else {
            b.client()
                .get(&format!("/v1/orgs/{org}/members"))
                .expect(200)
                .json()
        };
        let owners = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "owner")
            .count();
        assert_eq!(owners, 1, "round {round}");
    }
}

/// A path parameter's stand-in: shaped like a real id so handlers reach their own look-up, but
/// naming nothing.
fn stand_in(param: &str) -> String {
    let prefix = match param {
        "user" => "usr",
        "key" => "key",
        "invitation" => "inv",
        "probe" => "qpr",
        "integration" => "int",
        "provider" => "llm",
        "review" => "rev",
        "round" => "rnd",
        "model" => "mdl",
        "device" => "dev",
        "group" => "grp",
        "version" => "ver",
        _ => "xyz",
    };
    format!("{prefix}_0000000000000000000000000000")
}

struct Probe {
    method: String,
    path_template: String,
    scope: Scope,
}

fn org_operations(doc: &Value) -> Vec<Probe> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(scope) = op.get("x-edgeplane-scope").and_then(Value::as_str) else {
                continue;
            };
            out.push(Probe {
                method: method.to_uppercase(),
                path_template: path.clone(),
                scope: Scope::parse(scope).unwrap_or_else(|| panic!("unknown scope {scope}")),
            });
        }
    }
    out
}

fn call(c: &Client, probe: &Probe, org: &str) -> Resp {
    let mut path = String::new();
    for seg in probe.path_template.split('/').skip(1) {
        path.push('/');
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some("org") => path.push_str(org),
            Some(p) => path.push_str(&stand_in(p)),
            None => path.push_str(seg),
        }
    }
    let method = reqwest::Method::from_bytes(probe.method.as_bytes()).unwrap();
    let rb = c.request(method.clone(), &path);
    let rb = if matches!(
        method,
        reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
    ) {
        rb.header("content-type", "application/json").body("{}")
    } else {
        rb
    };
    c.send(rb)
}

fn is_org_not_found(r: &Resp) -> bool {
    r.status == 404 && r.json()["error"]["message"] == "organization not found"
}

#[test]
fn tenancy_matrix_over_every_org_route() {
    let doc = Client::anonymous().get("/openapi.json").expect(200).json();
    let ops = org_operations(&doc);
    assert!(
        ops.len() >= 40,
        "only {} org operations documented",
        ops.len()
    );

    let owner = new_user("matrix-owner");
    let org = org_id(&create_org(&owner, "Matrix"));
    let admin = new_user("matrix-admin");
    let member = new_user("matrix-member");
    add_member(&owner, &org, &admin, "admin");
    add_member(&owner, &org, &member, "member");
    let outsider = new_user("matrix-outsider");
    let elsewhere = org_id(&create_org(&outsider, "Elsewhere"));
    let outsider_key = outsider
        .client()
        .post(
            &format!("/v1/orgs/{elsewhere}/api-keys"),
            // Every scope but `scim`, which a key holds alone (and which opens only /scim/v2).
            &json!({"name": "everything", "scopes": Scope::ALL.iter().filter(|s| **s != Scope::Scim).map(|s| s.as_str()).collect::<Vec<_>>()}),
        )
        .expect(201)
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let narrow_key = owner
        .client()
        .post(
            &format!("/v1/orgs/{org}/api-keys"),
            &json!({"name": "models only", "scopes": ["models:read"]}),
        )
        .expect(201)
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let roles = [
        (&owner, Role::Owner),
        (&admin, Role::Admin),
        (&member, Role::Member),
    ];
    let mut checked = 0;
    for op in &ops {
        let what = format!("{} {}", op.method, op.path_template);
        // Another tenant — as a person or with an all-scope key of its own org — sees nothing.
        for (who, c) in [
            ("outsider session", outsider.client()),
            (
                "outsider key",
                Client::anonymous().with_bearer(&outsider_key),
            ),
        ] {
            let r = call(&c, op, &org);
            assert!(
                is_org_not_found(&r),
                "{what} as {who}: {} {}",
                r.status,
                r.text
            );
        }
        // No credential at all.
        let r = call(&Client::anonymous(), op, &org);
        assert_eq!(r.status, 401, "{what} anonymous: {}", r.text);
        // Each role: allowed exactly when the role holds the documented scope.
        for (s, role) in roles {
            // Leaving would change the fixture for the rows after it; its denial is still checked.
            if op.path_template.ends_with("/leave") {
                continue;
            }
            let r = call(&s.client(), op, &org);
            let denied = r.status == 403 && r.json()["error"]["code"] == "insufficient_scope";
            let allowed = role.scopes().contains(op.scope);
            assert_eq!(
                !denied, allowed,
                "{what} as {role:?}: {} {}",
                r.status, r.text
            );
            assert!(
                !is_org_not_found(&r) && r.status != 401,
                "{what} as {role:?}: {}",
                r.text
            );
            assert!(
                r.status < 500,
                "{what} as {role:?}: {} {}",
                r.status,
                r.text
            );
        }
        // A key with one unrelated scope.
        let r = call(&Client::anonymous().with_bearer(&narrow_key), op, &org);
        if op.scope == Scope::ModelsRead {
            assert!(
                r.status != 401 && r.status != 403,
                "{what} with models:read: {}",
                r.text
            );
        } else {
            assert_eq!(r.status, 403, "{what} with a models:read key: {}", r.text);
            assert_eq!(r.json()["error"]["code"], "insufficient_scope");
        }
        checked += 1;
    }
    assert_eq!(checked, ops.len());
}
