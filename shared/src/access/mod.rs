//! Organization access administration: the rules behind members, invitations, API keys and the
//! audit log's query surface. Pure; the gateway's `routes/access` binds them to D1.

pub mod api_keys;
pub mod audit_query;
pub mod invitations;
pub mod members;
