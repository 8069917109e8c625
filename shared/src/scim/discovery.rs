//! The discovery documents (RFC 7644 §4): what this service supports, its two resource types
//! and their schemas — exactly the attributes `resource` keeps, so an IdP (or a conformance
//! tester) that reads them sends only what is stored.

use serde_json::{json, Value};

use super::list::MAX_COUNT;
use super::resource::{GROUP_SCHEMA, USER_SCHEMA};

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RT_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/edgeplane/edgeplane#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Org API key",
            "description": "An org API key holding the `scim` scope, sent as a Bearer token",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

fn resource_type(base: &str, name: &str, endpoint: &str, schema: &str) -> Value {
    json!({
        "schemas": [RT_SCHEMA],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        resource_type(base, "User", "/Users", USER_SCHEMA),
        resource_type(base, "Group", "/Groups", GROUP_SCHEMA),
    ]
}

/// One attribute definition (RFC 7643 §7).
fn attr(
    name: &str,
    kind: &str,
    required: bool,
    case_exact: bool,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": false, "description": name,
        "required": required, "caseExact": case_exact, "mutability": mutability,
        "returned": "default", "uniqueness": uniqueness,
    })
}

/// An attribute whose values are only ever `values` (RFC 7643 §7 `canonicalValues`).
fn canonical(mut a: Value, values: &[&str]) -> Value {
    a["canonicalValues"] = json!(values);
    a
}

fn reference(name: &str, types: &[&str]) -> Value {
    let mut a = attr(name, "reference", false, true, "immutable", "none");
    a["referenceTypes"] = json!(types);
    a
}

fn complex(name: &str, multi: bool, required: bool, mutability: &str, subs: Vec<Value>) -> Value {
    json!({
        "name": name, "type": "complex", "multiValued": multi, "description": name,
        "required": required, "mutability": mutability, "returned": "default",
        "uniqueness": "none", "subAttributes": subs,
    })
}

fn schema(base: &str, id: &str, name: &str, attributes: Vec<Value>) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id, "name": name, "description": name,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

pub fn schemas(base: &str) -> Vec<Value> {
    let user = schema(
        base,
        USER_SCHEMA,
        "User",
        vec![
            attr("userName", "string", true, false, "readWrite", "server"),
            attr("externalId", "string", false, true, "readWrite", "none"),
            attr("displayName", "string", false, false, "readWrite", "none"),
            complex(
                "name",
                false,
                false,
                "readWrite",
                vec![
                    attr("givenName", "string", false, false, "readWrite", "none"),
                    attr("familyName", "string", false, false, "readWrite", "none"),
                ],
            ),
            // A user is an account, and an account is an email address: required here (a
            // `userName` that is an address stands in for it), and immutable once set, since
            // the account may belong to other orgs too.
            complex(
                "emails",
                true,
                true,
                "immutable",
                vec![
                    attr("value", "string", true, false, "immutable", "none"),
                    // The one address is answered as the work address.
                    canonical(
                        attr("type", "string", false, false, "readWrite", "none"),
                        &["work"],
                    ),
                    attr("primary", "boolean", false, false, "readWrite", "none"),
                ],
            ),
            // Always present: a provisioned user is either active (a member) or not; there is
            // no third, unassigned state to remove it into.
            attr("active", "boolean", true, false, "readWrite", "none"),
        ],
    );
    let group = schema(
        base,
        GROUP_SCHEMA,
        "Group",
        vec![
            attr("displayName", "string", true, false, "readWrite", "server"),
            attr("externalId", "string", false, true, "readWrite", "none"),
            complex(
                "members",
                true,
                false,
                "readWrite",
                vec![
                    attr("value", "string", false, true, "immutable", "none"),
                    // Members are users only (no nested groups).
                    reference("$ref", &["User"]),
                    canonical(
                        attr("type", "string", false, false, "immutable", "none"),
                        &["User"],
                    ),
                ],
            ),
        ],
    );
    vec![user, group]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_what_is_served() {
        let spc = service_provider_config("https://x/scim/v2");
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["filter"]["maxResults"], MAX_COUNT);
        let rts = resource_types("b");
        assert_eq!(rts[0]["endpoint"], "/Users");
        assert_eq!(rts[1]["schema"], GROUP_SCHEMA);
        let s = schemas("b");
        let names: Vec<&str> = s[0]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        // Every top-level User attribute advertised is one a filter or PATCH understands.
        for n in names {
            let path = n.to_ascii_lowercase();
            assert!(
                <crate::scim::resource::UserAttr as crate::scim::filter::Attribute>::resolve(&path)
                    .is_some()
                    || path == "name",
                "{n}"
            );
        }
    }
}
