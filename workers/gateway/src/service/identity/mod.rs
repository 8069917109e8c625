//! Services of the identity area: sign-in (magic link, identity providers), sessions and their
//! refresh, the signed-in person and their orgs, CLI tokens (device-code grant). The decisions
//! live in `edgeplane_core::identity`; these bind them to D1, the mailer and outbound calls.

pub mod device;
pub mod issue;
pub mod limits;
pub mod magic;
pub mod mailer;
pub mod me;
pub mod outbound;
pub mod providers;
pub mod refresh;
pub mod sessions;
pub mod settings;
pub mod signin;
