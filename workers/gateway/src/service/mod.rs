//! The service layer: what a request does once it is parsed and authorized. JSON handlers and
//! console pages both call these functions and get the same view types back, so neither reaches
//! D1 on its own or repeats a policy check.

pub mod access;
pub mod core;
pub mod federation;
pub mod identity;
pub mod review;
pub mod scim;
