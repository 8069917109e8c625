//! Who is calling and what they may do. Every request resolves to one [`Principal`] before a
//! handler runs; handlers then ask [`policy`] and nothing else.

pub mod access_token;
pub mod credential;
pub mod policy;
pub mod principal;
pub mod role;
pub mod scope;

pub use credential::CredentialKind;
pub use policy::{authorize, Action};
pub use principal::{OrgAccess, Principal, PrincipalKind};
pub use role::Role;
pub use scope::{Scope, Scopes};
