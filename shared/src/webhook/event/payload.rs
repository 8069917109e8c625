//! The few fields of each platform's payload that classification reads, as typed shapes.
//!
//! A pull request event is tens of kilobytes of JSON, of which a review needs a dozen leaves.
//! Deserializing into these shapes skips everything else without allocating, where a
//! `serde_json::Value` tree would build a map and a string for every key of the payload.
//!
//! The reading stays as lenient as the platforms' documents require: a field that is missing,
//! `null` or of an unexpected type is just "not a valid value" ([`Leaf`], [`Node`]), which the
//! classifier reports by the field's name; only a body that is not JSON, or not an object, fails
//! as a whole.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One JSON value the classifier reads as a scalar.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Leaf {
    /// The key is absent.
    #[default]
    Missing,
    Str(String),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    F64(f64),
    Bool(bool),
    /// `null`, an array or an object.
    Other,
}

impl Leaf {
    pub fn is_missing(&self) -> bool {
        matches!(self, Leaf::Missing)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Leaf::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Leaf::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Leaf::U64(n) => Some(*n),
            _ => None,
        }
    }

    /// An identifier: a non-empty string, or a number in JSON's own spelling.
    pub fn id(&self) -> Option<String> {
        match self {
            Leaf::Str(s) if !s.is_empty() => Some(s.clone()),
            Leaf::U64(n) => Some(n.to_string()),
            Leaf::I64(n) => Some(n.to_string()),
            Leaf::F64(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            _ => None,
        }
    }

    /// The string, or `None`.
    pub fn string(&self) -> Option<String> {
        self.as_str().map(str::to_owned)
    }
}

impl<'de> Deserialize<'de> for Leaf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Leaf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Leaf, E> {
                Ok(Leaf::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Leaf, E> {
                Ok(Leaf::U64(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Leaf, E> {
                Ok(if n >= 0 {
                    Leaf::U64(n as u64)
                } else {
                    Leaf::I64(n)
                })
            }
            fn visit_f64<E>(self, f: f64) -> Result<Leaf, E> {
                Ok(Leaf::F64(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Leaf, E> {
                Ok(Leaf::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Leaf, E> {
                Ok(Leaf::Str(s))
            }
            fn visit_unit<E>(self) -> Result<Leaf, E> {
                Ok(Leaf::Other)
            }
            fn visit_none<E>(self) -> Result<Leaf, E> {
                Ok(Leaf::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf, A::Error> {
                skip_seq(seq).map(|()| Leaf::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf, A::Error> {
                skip_map(map).map(|()| Leaf::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON value the classifier reads as an object of shape `T`. A value that is not an object
/// (`null` included) is present with no fields; an absent key is not present.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node<T> {
    pub present: bool,
    pub fields: T,
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Node<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Default> V<T> {
            fn other<E>(self) -> Result<Node<T>, E> {
                Ok(Node {
                    present: true,
                    fields: T::default(),
                })
            }
        }
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = Node<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|fields| Node {
                    present: true,
                    fields,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node<T>, A::Error> {
                skip_seq(seq)?;
                self.other()
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_str<E>(self, _: &str) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_unit<E>(self) -> Result<Node<T>, E> {
                self.other()
            }
            fn visit_none<E>(self) -> Result<Node<T>, E> {
                self.other()
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// `{ "sha": … }`: GitHub's head and base.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Sha {
    pub sha: Leaf,
}

/// `{ "hash": … }`: Bitbucket Cloud's commit.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Hash {
    pub hash: Leaf,
}

/// `{ "id": … }`: GitLab's last commit.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CommitId {
    pub id: Leaf,
}

/// GitHub's events (the `pull_request` event's fields).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitHubBody {
    pub action: Leaf,
    pub number: Leaf,
    pub pull_request: Node<GitHubPr>,
    pub repository: Node<GitHubRepo>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitHubPr {
    pub number: Leaf,
    pub state: Leaf,
    pub draft: Leaf,
    pub head: Node<Sha>,
    pub base: Node<Sha>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitHubRepo {
    pub id: Leaf,
    pub full_name: Leaf,
}

/// GitLab's hooks (the merge request hook's fields).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitLabBody {
    pub object_kind: Leaf,
    pub object_attributes: Node<GitLabAttrs>,
    pub changes: Node<GitLabChanges>,
    pub project: Node<GitLabProject>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitLabAttrs {
    pub state: Leaf,
    pub draft: Leaf,
    pub work_in_progress: Leaf,
    pub action: Leaf,
    pub oldrev: Leaf,
    pub iid: Leaf,
    pub last_commit: Node<CommitId>,
    pub target_project_id: Leaf,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitLabChanges {
    pub draft: Node<GitLabChange>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitLabChange {
    pub previous: Leaf,
    pub current: Leaf,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GitLabProject {
    pub id: Leaf,
    pub path_with_namespace: Leaf,
}

/// Bitbucket Cloud's `pullrequest:*` and Data Center's `pr:*` events.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BitbucketBody {
    pub pullrequest: Node<CloudPr>,
    #[serde(rename = "pullRequest")]
    pub pull_request: Node<DataCenterPr>,
    pub repository: Node<CloudRepo>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CloudPr {
    pub state: Leaf,
    pub draft: Leaf,
    pub id: Leaf,
    pub source: Node<CloudRef>,
    pub destination: Node<CloudRef>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CloudRef {
    pub commit: Node<Hash>,
    pub repository: Node<CloudRepo>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CloudRepo {
    pub uuid: Leaf,
    pub full_name: Leaf,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataCenterPr {
    pub state: Leaf,
    pub draft: Leaf,
    pub id: Leaf,
    pub from_ref: Node<DataCenterRef>,
    pub to_ref: Node<DataCenterRef>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataCenterRef {
    pub latest_commit: Leaf,
    pub repository: Node<DataCenterRepo>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DataCenterRepo {
    pub id: Leaf,
    pub slug: Leaf,
    pub project: Node<DataCenterProject>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DataCenterProject {
    pub key: Leaf,
}

/// Reads a body as `T`, which must be a JSON object. A key given twice in one object is refused
/// as not valid JSON: no platform sends one, and it would make "which value counts" ambiguous.
pub fn read<T: for<'de> Deserialize<'de> + Default>(json: &[u8]) -> Result<T, ReadError> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    match serde_json::from_slice::<Node<T>>(json) {
        Ok(node) if node.present && first == Some(&b'{') => Ok(node.fields),
        Ok(_) => Err(ReadError::NotObject),
        Err(_) => Err(ReadError::NotJson),
    }
}

/// Why a body could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    NotJson,
    NotObject,
}
