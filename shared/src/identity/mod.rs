//! Identity: how people sign in (magic links, OpenID Connect / OAuth providers), how they stay
//! signed in (sessions with rotating refresh tokens), and how a CLI gets a token (the RFC 8628
//! device-code grant). Pure decisions only; the gateway binds them to D1, email and HTTP.

pub mod cache;
pub mod device_code;
pub mod email;
pub mod epoch_cache;
pub mod form;
pub mod magic_link;
pub mod oidc;
pub mod pkce;
pub mod session;
pub mod user_agent;
