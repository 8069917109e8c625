//! Services of the access area: members and roles, invitations, API keys, the audit log. Each
//! function takes a parsed, authorized request (`Cx`) and typed inputs, and answers with a view.

pub mod api_keys;
pub mod audit;
pub mod export_jobs;
pub mod invitations;
pub mod members;

#[cfg(test)]
pub(crate) mod sqlite;
