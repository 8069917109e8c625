//! edgeplane-core: the logic of edgeplane, free of any Workers runtime dependency so that it is
//! tested natively and shared by every worker. Workers parse requests, call into here, and bind
//! storage; decisions live here.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod auth;
pub mod console;
pub mod crypto;
pub mod error;
pub mod fl;
pub mod http;
pub mod identity;
pub mod ids;
pub mod queue;
pub mod ratelimit;
pub mod review;
pub mod scim;
pub mod store;
pub mod time;
pub mod validate;
pub mod views;
pub mod webhook;

pub use error::{ApiError, ApiResult, ErrorCode};
