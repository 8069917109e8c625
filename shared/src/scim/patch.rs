//! PATCH (RFC 7644 §3.5.2) in the forms IdPs send: Okta's `{"op":"replace","value":{"active":
//! false}}`, Entra ID's capitalised ops with string booleans (`{"op":"Replace","path":"active",
//! "value":"False"}`), member changes by path (`members[value eq "…"]`) or by value.
//!
//! A user's PATCH is applied to its stored fields (a handful of strings) and yields the new
//! fields, which are then validated and written like a PUT. A group's PATCH becomes an ordered
//! list of [`GroupEdit`]s that the worker turns into statements, so a group's member list is
//! never loaded to change it.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{self, Attribute, Column, CompareOp, Filter, Kind, Literal};
use super::resource::{account_email, boolean, field, member_ids, text, UserFields};

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations in one PATCH.
pub const MAX_OPERATIONS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One operation, its path parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<Path>,
    pub value: Option<Value>,
}

/// A PATCH path: an attribute (`name.givenName`), optionally with a value filter
/// (`members[value eq "usr_…"]`, `emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// Lower-cased, without the schema URN, the filter and the sub-attribute after it.
    pub attribute: String,
    /// The text inside `[…]`, if any.
    pub filter: Option<String>,
    /// The sub-attribute after `]`, lower-cased.
    pub sub: Option<String>,
}

fn invalid_path(msg: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidPath, msg)
}

fn invalid_value(msg: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, msg)
}

impl Path {
    pub fn parse(s: &str) -> Result<Path, ScimError> {
        let s = s.trim();
        if s.is_empty() || s.len() > filter::MAX_FILTER_LEN {
            return Err(invalid_path("path is empty or too long"));
        }
        let (head, filter, sub) = match s.find('[') {
            None => (s, None, None),
            Some(open) => {
                let close = s
                    .rfind(']')
                    .filter(|c| *c > open)
                    .ok_or_else(|| invalid_path("unbalanced `[` in path"))?;
                let rest = &s[close + 1..];
                let sub = match rest.strip_prefix('.') {
                    Some(sub) if !sub.is_empty() => Some(sub.to_ascii_lowercase()),
                    None if rest.is_empty() => None,
                    _ => return Err(invalid_path("unexpected text after `]`")),
                };
                (&s[..open], Some(s[open + 1..close].to_owned()), sub)
            }
        };
        if head.is_empty()
            || !head
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'$'))
        {
            return Err(invalid_path("malformed attribute path"));
        }
        Ok(Path {
            attribute: filter::attribute_name(head),
            filter,
            sub,
        })
    }
}

/// Reads a PatchOp body: its schema, then each operation (op names in any case).
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "a PatchOp must be an object"))?;
    let schemas_ok = field(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("schemas must list {PATCH_SCHEMA}"),
        ));
    }
    let ops = field(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "Operations must be an array"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("Operations must hold 1 to {MAX_OPERATIONS} operations"),
        ));
    }
    ops.iter()
        .map(|o| {
            let o = o.as_object().ok_or_else(|| {
                ScimError::bad(ScimType::InvalidSyntax, "an operation must be an object")
            })?;
            let op = match field(o, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
            {
                Some(s) if s == "add" => OpKind::Add,
                Some(s) if s == "remove" => OpKind::Remove,
                Some(s) if s == "replace" => OpKind::Replace,
                _ => {
                    return Err(ScimError::bad(
                        ScimType::InvalidSyntax,
                        "op must be add, remove or replace",
                    ))
                }
            };
            let path = match field(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(Path::parse(p)?),
                Some(_) => return Err(invalid_path("path must be a string")),
            };
            let value = field(o, "value").cloned();
            if path.is_none() && op == OpKind::Remove {
                return Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"));
            }
            if op != OpKind::Remove && value.is_none() {
                return Err(invalid_value("add and replace need a value"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// A path-less add or replace carries an object of attribute → value (RFC 7644 §3.5.2.1/3):
/// expanded into one operation per attribute, whose keys may themselves be paths (Entra sends
/// `"name.givenName"`). A nested complex value (`"name": {…}`) expands into its sub-attributes.
fn expand(op: &Operation) -> Result<Vec<(Path, Option<Value>)>, ScimError> {
    if let Some(p) = &op.path {
        return Ok(vec![(p.clone(), op.value.clone())]);
    }
    let Some(Value::Object(map)) = &op.value else {
        return Err(invalid_value(
            "an operation without a path needs an object value",
        ));
    };
    let mut out = Vec::new();
    push_object(map, "", &mut out)?;
    Ok(out)
}

fn push_object(
    map: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<(Path, Option<Value>)>,
) -> Result<(), ScimError> {
    for (k, v) in map {
        let key = format!("{prefix}{k}");
        let lower = filter::attribute_name(&key);
        if lower == "schemas" {
            continue;
        }
        match v {
            Value::Object(inner) if lower == "name" => push_object(inner, "name.", out)?,
            _ => out.push((Path::parse(&key)?, Some(v.clone()))),
        }
    }
    Ok(())
}

/// Applies a PATCH to a user's fields. Attributes this service does not keep (the enterprise
/// extension, phone numbers, …) are accepted and ignored, as for a POST. Changing the account's
/// email is refused (`mutability`): the account may belong to other orgs too.
pub fn apply_to_user(current: &UserFields, ops: &[Operation]) -> Result<UserFields, ScimError> {
    let mut u = current.clone();
    for op in ops {
        for (path, value) in expand(op)? {
            let value = if op.op == OpKind::Remove { None } else { value };
            let attr = match (&path.filter, &path.sub) {
                (None, None) => path.attribute.clone(),
                // `emails[type eq "work"].value`: the one address this service keeps.
                (Some(_), Some(sub)) if path.attribute == "emails" && sub == "value" => {
                    "emails.value".into()
                }
                (Some(_), None) if path.attribute == "emails" => "emails".into(),
                _ if is_kept(&path.attribute) => {
                    return Err(invalid_path("this attribute takes no value filter"))
                }
                _ => continue,
            };
            match attr.as_str() {
                "username" => {
                    u.user_name = text(value.as_ref(), "userName")?.ok_or_else(|| {
                        ScimError::bad(ScimType::Mutability, "userName cannot be removed")
                    })?
                }
                "externalid" => u.external_id = text(value.as_ref(), "externalId")?,
                "displayname" => u.display_name = text(value.as_ref(), "displayName")?,
                "name.givenname" => u.given_name = text(value.as_ref(), "name.givenName")?,
                "name.familyname" => u.family_name = text(value.as_ref(), "name.familyName")?,
                "name" => {
                    let (g, f) = match &value {
                        None | Some(Value::Null) => (None, None),
                        Some(Value::Object(n)) => (
                            text(field(n, "givenName"), "name.givenName")?,
                            text(field(n, "familyName"), "name.familyName")?,
                        ),
                        Some(_) => return Err(invalid_value("name must be an object")),
                    };
                    u.given_name = g;
                    u.family_name = f;
                }
                "active" => match &value {
                    Some(v) => u.active = boolean(v, "active")?,
                    None => {
                        return Err(ScimError::bad(
                            ScimType::Mutability,
                            "active cannot be removed",
                        ))
                    }
                },
                "emails" | "emails.value" => {
                    let address = match &value {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Array(list)) => list
                            .iter()
                            .find(|e| {
                                e.get("primary")
                                    .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
                            })
                            .or_else(|| list.first())
                            .and_then(|e| e.as_object())
                            .and_then(|o| field(o, "value"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        None => {
                            return Err(ScimError::bad(
                                ScimType::Mutability,
                                "the account's email cannot be removed",
                            ))
                        }
                        _ => return Err(invalid_value("emails must be an array or an address")),
                    };
                    if let Some(a) = address {
                        if account_email(&a)? != u.email {
                            return Err(ScimError::bad(
                                ScimType::Mutability,
                                "the account's email cannot be changed through SCIM",
                            ));
                        }
                    }
                }
                // Attributes this service does not keep.
                _ => {}
            }
        }
    }
    Ok(u)
}

fn is_kept(attr: &str) -> bool {
    matches!(
        attr,
        "username"
            | "externalid"
            | "displayname"
            | "name.givenname"
            | "name.familyname"
            | "name"
            | "active"
    )
}

/// One change to a group, in the order the PATCH gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEdit {
    SetDisplayName(String),
    SetExternalId(Option<String>),
    AddMembers(Vec<String>),
    RemoveMembers(Vec<String>),
    ReplaceMembers(Vec<String>),
    RemoveAllMembers,
}

/// The one attribute a member filter may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemberValue;

impl Attribute for MemberValue {
    fn resolve(path: &str) -> Option<Self> {
        (path == "value").then_some(MemberValue)
    }
    fn column(self) -> Column {
        Column {
            expr: "user_id",
            kind: Kind::ExactText,
            within: None,
        }
    }
}

/// The ids a member filter selects: `value eq "a"`, joined by `or`.
fn selected_members(f: &Filter<MemberValue>, out: &mut Vec<String>) -> Result<(), ScimError> {
    match f {
        Filter::Compare(_, CompareOp::Eq, Literal::Str(s)) => {
            if !out.contains(s) {
                out.push(s.clone());
            }
            Ok(())
        }
        Filter::Or(a, b) => {
            selected_members(a, out)?;
            selected_members(b, out)
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidFilter,
            "a member filter must be `value eq \"…\"` (joined by `or`)",
        )),
    }
}

/// Turns a PATCH of the group `own_id` into edits. Okta renames a group with a path-less
/// `replace` whose value repeats the group's `id`: an `id` equal to `own_id` there changes
/// nothing and is ignored; any other `id` is a `mutability` error.
pub fn group_edits(ops: &[Operation], own_id: &str) -> Result<Vec<GroupEdit>, ScimError> {
    let mut edits = Vec::new();
    for op in ops {
        for (path, value) in expand(op)? {
            match (path.attribute.as_str(), &path.filter, op.op) {
                ("displayname", None, OpKind::Add | OpKind::Replace) => {
                    let name = text(value.as_ref(), "displayName")?
                        .ok_or_else(|| invalid_value("displayName cannot be empty"))?;
                    edits.push(GroupEdit::SetDisplayName(name));
                }
                ("displayname", None, OpKind::Remove) => {
                    return Err(ScimError::bad(
                        ScimType::Mutability,
                        "displayName cannot be removed",
                    ))
                }
                ("externalid", None, OpKind::Remove) => edits.push(GroupEdit::SetExternalId(None)),
                ("externalid", None, _) => edits.push(GroupEdit::SetExternalId(text(
                    value.as_ref(),
                    "externalId",
                )?)),
                ("members", None, OpKind::Add) => {
                    edits.push(GroupEdit::AddMembers(member_ids(value.as_ref())?))
                }
                ("members", None, OpKind::Replace) => {
                    edits.push(GroupEdit::ReplaceMembers(member_ids(value.as_ref())?))
                }
                // Entra sends removals as a path-less list of members to take out.
                ("members", None, OpKind::Remove) => match op.value.as_ref() {
                    Some(v) => edits.push(GroupEdit::RemoveMembers(member_ids(Some(v))?)),
                    None => edits.push(GroupEdit::RemoveAllMembers),
                },
                ("members", Some(f), OpKind::Remove) if path.sub.is_none() => {
                    let mut ids = Vec::new();
                    selected_members(&filter::parse::<MemberValue>(f)?, &mut ids)?;
                    edits.push(GroupEdit::RemoveMembers(ids));
                }
                ("members", Some(_), _) => {
                    return Err(invalid_path("a member filter is only for remove"))
                }
                ("id", None, OpKind::Replace)
                    if op.path.is_none()
                        && value.as_ref().and_then(Value::as_str) == Some(own_id) => {}
                ("id" | "meta", _, _) => {
                    return Err(ScimError::bad(
                        ScimType::Mutability,
                        "this attribute is read-only",
                    ))
                }
                _ => return Err(invalid_path("a Group has no such attribute")),
            }
        }
    }
    Ok(edits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(ops: Value) -> Value {
        json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
    }

    fn user() -> UserFields {
        UserFields::from_json(&json!({"userName": "ada@example.com", "externalId": "e1",
            "name": {"givenName": "Ada"}}))
        .unwrap()
    }

    #[test]
    fn okta_and_entra_deactivations_both_deactivate() {
        for body in [
            patch(json!([{"op": "replace", "value": {"active": false}}])),
            patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
            patch(
                json!([{"op": "REPLACE", "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": false}]),
            ),
        ] {
            let u = apply_to_user(&user(), &parse(&body).unwrap()).unwrap();
            assert!(!u.active, "{body}");
            assert_eq!(u.user_name, "ada@example.com");
        }
        let back = apply_to_user(
            &UserFields {
                active: false,
                ..user()
            },
            &parse(&patch(
                json!([{"op": "replace", "path": "active", "value": "True"}]),
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(back.active);
    }

    #[test]
    fn entra_attribute_updates_apply_and_unknown_attributes_are_ignored() {
        let ops = parse(&patch(json!([
            {"op": "Add", "path": "displayName", "value": "Ada L"},
            {"op": "Replace", "path": "name.familyName", "value": "Lovelace"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ADA@example.com"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "R&D"},
            {"op": "replace", "value": {"name.givenName": "A.", "externalId": "e2", "title": "x"}},
            {"op": "remove", "path": "displayName"}
        ])))
        .unwrap();
        let u = apply_to_user(&user(), &ops).unwrap();
        assert_eq!(u.family_name.as_deref(), Some("Lovelace"));
        assert_eq!(u.given_name.as_deref(), Some("A."));
        assert_eq!(u.external_id.as_deref(), Some("e2"));
        assert_eq!(u.display_name, None);
    }

    #[test]
    fn refused_user_patches_say_why() {
        let cases = [
            (
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "eve@example.com"}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "remove", "path": "userName"}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "yes"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": "userName[x eq 1]", "value": "a"}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "a[b", "value": "a"}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "value": "x"}]),
                ScimType::InvalidValue,
            ),
        ];
        for (ops, want) in cases {
            let e = parse(&patch(ops.clone()))
                .and_then(|o| apply_to_user(&user(), &o))
                .unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some(want)), "{ops}");
        }
        for bad in [
            json!({"Operations": [{"op": "add", "path": "x", "value": 1}]}),
            patch(json!([])),
            patch(json!([{"op": "move", "path": "x", "value": 1}])),
            patch(json!([{"op": "add", "path": "x"}])),
            patch(json!("x")),
        ] {
            assert_eq!(parse(&bad).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(
            parse(&patch(json!([{"op": "remove"}])))
                .unwrap_err()
                .scim_type,
            Some(ScimType::NoTarget)
        );
    }

    #[test]
    fn group_member_changes_in_every_idp_form() {
        let ops = parse(&patch(json!([
            {"op": "add", "path": "members", "value": [{"value": "usr_a"}, {"value": "usr_b"}]},
            {"op": "remove", "path": "members[value eq \"usr_a\"]"},
            {"op": "Remove", "path": "members[value eq \"usr_b\" or value eq \"usr_c\"]"},
            {"op": "Remove", "path": "members", "value": [{"value": "usr_d"}]},
            {"op": "replace", "path": "members", "value": [{"value": "usr_e"}]},
            {"op": "replace", "value": {"displayName": "Eng", "externalId": "g1"}},
            {"op": "remove", "path": "members"}
        ])))
        .unwrap();
        assert_eq!(
            group_edits(&ops, "grp_1").unwrap(),
            vec![
                GroupEdit::AddMembers(vec!["usr_a".into(), "usr_b".into()]),
                GroupEdit::RemoveMembers(vec!["usr_a".into()]),
                GroupEdit::RemoveMembers(vec!["usr_b".into(), "usr_c".into()]),
                GroupEdit::RemoveMembers(vec!["usr_d".into()]),
                GroupEdit::ReplaceMembers(vec!["usr_e".into()]),
                GroupEdit::SetDisplayName("Eng".into()),
                GroupEdit::SetExternalId(Some("g1".into())),
                GroupEdit::RemoveAllMembers,
            ]
        );
        for (ops, want) in [
            (
                json!([{"op": "remove", "path": "members[value co \"usr\"]"}]),
                ScimType::InvalidFilter,
            ),
            (
                json!([{"op": "add", "path": "members[value eq \"a\"]", "value": []}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "add", "path": "owners", "value": []}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "remove", "path": "displayName"}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "value": {"id": "grp_2", "displayName": "X"}}]),
                ScimType::Mutability,
            ),
            (
                json!([{"op": "replace", "path": "id", "value": "grp_1"}]),
                ScimType::Mutability,
            ),
        ] {
            let e = parse(&patch(ops.clone()))
                .and_then(|o| group_edits(&o, "grp_1"))
                .unwrap_err();
            assert_eq!(e.scim_type, Some(want), "{ops}");
        }
    }

    #[test]
    fn oktas_rename_repeating_the_groups_own_id_is_a_rename() {
        let ops = parse(&patch(json!([
            {"op": "replace", "value": {"id": "grp_1", "displayName": "Renamed"}}
        ])))
        .unwrap();
        assert_eq!(
            group_edits(&ops, "grp_1").unwrap(),
            vec![GroupEdit::SetDisplayName("Renamed".into())]
        );
    }

    proptest::proptest! {
        #[test]
        fn paths_never_panic(s in "\\PC{0,60}") {
            let _ = Path::parse(&s);
        }
    }
}
