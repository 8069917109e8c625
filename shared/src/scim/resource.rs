//! The two resources, User and Group: what a client's JSON means (read leniently, as RFC 7643
//! asks: attribute names in any case, attributes this service does not keep ignored), what is
//! stored, and the JSON a client gets back.
//!
//! A SCIM User is a person's account (identified by email across the platform) as one org's IdP
//! sees it: `userName`, `externalId`, names and `active` belong to the org (`scim_users`), the
//! email to the account. The account's email is therefore fixed once linked: one org's IdP
//! cannot rename another org's member.

use serde_json::{json, Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{Attribute, Column, Kind};
use crate::time::rfc3339_millis;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Longest text attribute kept (names, `userName`, `externalId`).
pub const MAX_TEXT: usize = 256;

/// The User attributes a filter may name, each with its column in the list query
/// (`scim_users s JOIN users u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAttr {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    Email,
    Active,
    GivenName,
    FamilyName,
}

impl Attribute for UserAttr {
    fn resolve(path: &str) -> Option<Self> {
        Some(match path {
            "id" => UserAttr::Id,
            "username" => UserAttr::UserName,
            "externalid" => UserAttr::ExternalId,
            "displayname" => UserAttr::DisplayName,
            "emails" | "emails.value" => UserAttr::Email,
            "active" => UserAttr::Active,
            "name.givenname" => UserAttr::GivenName,
            "name.familyname" => UserAttr::FamilyName,
            _ => return None,
        })
    }

    fn column(self) -> Column {
        let (expr, kind) = match self {
            UserAttr::Id => ("s.user_id", Kind::ExactText),
            UserAttr::UserName => ("s.user_name", Kind::Text),
            UserAttr::ExternalId => ("s.external_id", Kind::ExactText),
            UserAttr::DisplayName => ("s.display_name", Kind::Text),
            UserAttr::Email => ("u.email", Kind::Text),
            UserAttr::Active => ("s.active", Kind::Bool),
            UserAttr::GivenName => ("s.given_name", Kind::Text),
            UserAttr::FamilyName => ("s.family_name", Kind::Text),
        };
        Column {
            expr,
            kind,
            within: None,
        }
    }
}

/// The Group attributes a filter may name (`scim_groups g`; members in `scim_group_members`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAttr {
    Id,
    DisplayName,
    ExternalId,
    Member,
}

impl Attribute for GroupAttr {
    fn resolve(path: &str) -> Option<Self> {
        Some(match path {
            "id" => GroupAttr::Id,
            "displayname" => GroupAttr::DisplayName,
            "externalid" => GroupAttr::ExternalId,
            "members" | "members.value" => GroupAttr::Member,
            _ => return None,
        })
    }

    fn column(self) -> Column {
        let (expr, kind, within) = match self {
            GroupAttr::Id => ("g.id", Kind::ExactText, None),
            GroupAttr::DisplayName => ("g.display_name", Kind::Text, None),
            GroupAttr::ExternalId => ("g.external_id", Kind::ExactText, None),
            GroupAttr::Member => (
                "m.user_id",
                Kind::ExactText,
                Some(
                    "EXISTS (SELECT 1 FROM scim_group_members m \
                     WHERE m.org_id = g.org_id AND m.group_id = g.id AND {})",
                ),
            ),
        };
        Column { expr, kind, within }
    }
}

/// A member of an object, found whatever the case of its name (RFC 7643 §2.1).
pub fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn invalid_value(msg: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, msg)
}

/// Optional text: absent or null is `None`; anything but a bounded string without control
/// characters is `invalidValue`. Blank text counts as absent.
pub fn text(v: Option<&Value>, what: &str) -> Result<Option<String>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.chars().count() > MAX_TEXT || t.chars().any(char::is_control) {
                Err(invalid_value(format!(
                    "{what} must be at most {MAX_TEXT} characters without control characters"
                )))
            } else if t.is_empty() {
                Ok(None)
            } else {
                Ok(Some(t.to_owned()))
            }
        }
        Some(_) => Err(invalid_value(format!("{what} must be a string"))),
    }
}

/// A boolean as IdPs send it: JSON `true`/`false`, or (Entra ID) the strings `"True"`/`"False"`
/// in any case.
pub fn boolean(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid_value(format!("{what} must be a boolean"))),
    }
}

/// What a client says about a user (a POST or PUT body, or the result of a PATCH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFields {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The account's address: the primary email, else the first, else `userName` if it is an
    /// address. Lower-cased, as accounts are.
    pub email: String,
    pub active: bool,
}

/// The first email of `emails` marked primary, else the first one.
fn email_of(emails: Option<&Value>) -> Result<Option<String>, ScimError> {
    let list = match emails {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid_value("emails must be an array")),
    };
    let primary = list
        .iter()
        .find(|e| {
            e.get("primary")
                .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
        })
        .or_else(|| list.first());
    match primary {
        None => Ok(None),
        Some(Value::Object(o)) => text(field(o, "value"), "emails.value"),
        Some(_) => Err(invalid_value("emails must hold objects")),
    }
}

/// Normalizes an address the way accounts are keyed (`validate::email`).
pub fn account_email(s: &str) -> Result<String, ScimError> {
    crate::validate::email(s).map_err(|_| invalid_value("a user needs a valid email address"))
}

impl UserFields {
    /// Reads a User body. `userName` is required; the email comes from `emails` or `userName`.
    pub fn from_json(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "a User must be an object"))?;
        let user_name = text(field(obj, "userName"), "userName")?
            .ok_or_else(|| invalid_value("userName is required"))?;
        let name = match field(obj, "name") {
            None | Some(Value::Null) => None,
            Some(Value::Object(n)) => Some(n),
            Some(_) => return Err(invalid_value("name must be an object")),
        };
        let email = match email_of(field(obj, "emails"))? {
            Some(e) => account_email(&e)?,
            None => account_email(&user_name)?,
        };
        Ok(UserFields {
            external_id: text(field(obj, "externalId"), "externalId")?,
            display_name: text(field(obj, "displayName"), "displayName")?,
            given_name: text(name.and_then(|n| field(n, "givenName")), "name.givenName")?,
            family_name: text(name.and_then(|n| field(n, "familyName")), "name.familyName")?,
            active: match field(obj, "active") {
                None | Some(Value::Null) => true,
                Some(v) => boolean(v, "active")?,
            },
            user_name,
            email,
        })
    }
}

/// A stored user as SCIM shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub fields: UserFields,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

fn meta(resource_type: &str, location: String, created: i64, modified: i64) -> Value {
    json!({
        "resourceType": resource_type,
        "created": rfc3339_millis(created),
        "lastModified": rfc3339_millis(modified),
        "location": location,
    })
}

impl UserRecord {
    /// The resource; `base` is the service's base URL (`…/scim/v2`).
    pub fn to_json(&self, base: &str) -> Value {
        let f = &self.fields;
        let mut out = json!({
            "schemas": [USER_SCHEMA],
            "id": self.id,
            "userName": f.user_name,
            "active": f.active,
            "emails": [{"value": f.email, "primary": true, "type": "work"}],
            "meta": meta("User", format!("{base}/Users/{}", self.id), self.created_at_ms, self.updated_at_ms),
        });
        if let Some(x) = &f.external_id {
            out["externalId"] = json!(x);
        }
        if let Some(x) = &f.display_name {
            out["displayName"] = json!(x);
        }
        let mut name = Map::new();
        if let Some(x) = &f.given_name {
            name.insert("givenName".into(), json!(x));
        }
        if let Some(x) = &f.family_name {
            name.insert("familyName".into(), json!(x));
        }
        if !name.is_empty() {
            out["name"] = Value::Object(name);
        }
        out
    }
}

/// Most members one request may name for a group; a larger directory group is sent in several
/// PATCHes (which is what IdPs do).
pub const MAX_MEMBERS_PER_REQUEST: usize = 1000;

/// The member ids of a `members` value (`[{"value": "usr_…"}, …]`), de-duplicated.
pub fn member_ids(v: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        // One member object on its own (some clients send it bare).
        Some(Value::Object(_)) => std::slice::from_ref(v.unwrap_or(&Value::Null)),
        Some(_) => return Err(invalid_value("members must be an array")),
    };
    if list.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(ScimError::new(
            400,
            Some(ScimType::TooMany),
            format!("at most {MAX_MEMBERS_PER_REQUEST} members per request"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for m in list {
        let id = m
            .as_object()
            .and_then(|o| text(field(o, "value"), "members.value").transpose())
            .transpose()?
            .ok_or_else(|| invalid_value("each member needs a value"))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// What a client says about a group (POST or PUT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
}

impl GroupFields {
    pub fn from_json(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "a Group must be an object"))?;
        Ok(GroupFields {
            display_name: text(field(obj, "displayName"), "displayName")?
                .ok_or_else(|| invalid_value("displayName is required"))?,
            external_id: text(field(obj, "externalId"), "externalId")?,
            members: member_ids(field(obj, "members"))?,
        })
    }
}

/// The members of a page of groups (`org_id`, the group ids as a JSON array, then the cap per
/// group): each group's first members by user id, at most the cap of each, so a large group
/// never crowds the others of its page out.
pub const GROUP_MEMBERS_SQL: &str = "SELECT group_id, user_id FROM (SELECT m.group_id, \
     m.user_id, ROW_NUMBER() OVER (PARTITION BY m.group_id ORDER BY m.user_id) AS n \
     FROM scim_group_members m \
     WHERE m.org_id = ? AND m.group_id IN (SELECT value FROM json_each(?))) \
     WHERE n <= ? ORDER BY group_id, user_id";

/// A stored group as SCIM shows it; `members` are user ids. Members carry `value`, `$ref` and
/// `type` only: `display` is optional (RFC 7643 §4.2), and a member list an IdP patched comes
/// back exactly as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl GroupRecord {
    pub fn to_json(&self, base: &str) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|id| json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
            .collect();
        let mut out = json!({
            "schemas": [GROUP_SCHEMA],
            "id": self.id,
            "displayName": self.display_name,
            "members": members,
            "meta": meta("Group", format!("{base}/Groups/{}", self.id), self.created_at_ms, self.updated_at_ms),
        });
        if let Some(x) = &self.external_id {
            out["externalId"] = json!(x);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// The cap holds per group: with a cap of 2, each of two groups of 3 lists 2 (a cap across
    /// the page would list the first group's 2 and none of the second's).
    #[test]
    fn group_members_are_capped_per_group() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE scim_group_members (org_id TEXT NOT NULL, group_id TEXT NOT NULL,
               user_id TEXT NOT NULL, PRIMARY KEY (group_id, user_id));
             INSERT INTO scim_group_members (org_id, group_id, user_id) VALUES
               ('o1','g1','u1'),('o1','g1','u2'),('o1','g1','u3'),
               ('o1','g2','u4'),('o1','g2','u5'),('o1','g2','u6'),('o2','g3','u7');",
        )
        .unwrap();
        let mut stmt = db.prepare(super::GROUP_MEMBERS_SQL).unwrap();
        let rows: Vec<(String, String)> = stmt
            .query_map(rusqlite::params!["o1", r#"["g1","g2","g3"]"#, 2], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let pairs: Vec<(&str, &str)> = rows.iter().map(|(g, u)| (g.as_str(), u.as_str())).collect();
        assert_eq!(
            pairs,
            [("g1", "u1"), ("g1", "u2"), ("g2", "u4"), ("g2", "u5")]
        );
    }

    use super::*;

    #[test]
    fn users_are_read_leniently_and_validated() {
        let u = UserFields::from_json(&json!({
            "schemas": [USER_SCHEMA], "USERNAME": "Ada@Example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "other@example.com"}, {"value": "Ada@Example.com", "primary": "True"}],
            "externalId": "00u1", "active": "False",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
        }))
        .unwrap();
        assert_eq!(u.email, "ada@example.com");
        assert_eq!(u.user_name, "Ada@Example.com");
        assert_eq!(u.given_name.as_deref(), Some("Ada"));
        assert!(!u.active);
        // Without emails, userName is the address; active defaults to true.
        let u = UserFields::from_json(&json!({"userName": "b@example.org"})).unwrap();
        assert_eq!((u.email.as_str(), u.active), ("b@example.org", true));
        for bad in [
            json!({}),
            json!({"userName": "not-an-address"}),
            json!({"userName": 5}),
            json!({"userName": "a@b.co", "active": "maybe"}),
            json!({"userName": "a@b.co", "emails": "a@b.co"}),
            json!({"userName": "x".repeat(300)}),
            json!([]),
        ] {
            assert_eq!(
                UserFields::from_json(&bad).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_user_renders_with_meta_and_round_trips() {
        let r = UserRecord {
            id: "usr_1".into(),
            fields: UserFields::from_json(&json!({"userName": "a@b.co", "displayName": "A",
                "name": {"givenName": "G"}, "externalId": "e"}))
            .unwrap(),
            created_at_ms: 0,
            updated_at_ms: 1000,
        };
        let j = r.to_json("https://x/scim/v2");
        assert_eq!(j["meta"]["location"], "https://x/scim/v2/Users/usr_1");
        assert_eq!(j["meta"]["resourceType"], "User");
        assert_eq!(j["emails"][0]["value"], "a@b.co");
        assert_eq!(UserFields::from_json(&j).unwrap(), r.fields);
    }

    #[test]
    fn groups_read_members_bounded_and_deduplicated() {
        let g = GroupFields::from_json(&json!({"displayName": "Eng",
            "members": [{"value": "usr_1"}, {"value": "usr_1", "display": "x"}, {"value": "usr_2"}]}))
        .unwrap();
        assert_eq!(g.members, ["usr_1", "usr_2"]);
        let many: Vec<Value> = (0..=MAX_MEMBERS_PER_REQUEST)
            .map(|i| json!({"value": format!("usr_{i}")}))
            .collect();
        let e =
            GroupFields::from_json(&json!({"displayName": "Big", "members": many})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::TooMany));
        assert!(GroupFields::from_json(&json!({"members": []})).is_err());
        assert!(GroupFields::from_json(&json!({"displayName": "x", "members": [{}]})).is_err());
    }
}
