//! SCIM 2.0 (RFC 7643, RFC 7644) for provisioning an org's people from its identity provider:
//! the resources and how client JSON maps onto them (`resource`), filters compiled to SQL
//! (`filter`), PATCH in the forms Okta and Entra ID send (`patch`), listing (`list`), the
//! discovery documents (`discovery`), SCIM's error shape (`error`) and the group → role
//! mapping (`roles`). The gateway's `/scim/v2` routes only bind these to D1.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod patch;
pub mod resource;
pub mod roles;

pub use error::{ScimError, ScimType};

/// The content type of every SCIM answer (RFC 7644 §3.1).
pub const CONTENT_TYPE: &str = "application/scim+json";
