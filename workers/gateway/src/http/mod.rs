//! The HTTP shell around handlers: request context, bodies, responses, logs.

pub mod body;
pub mod ctx;
pub mod log;
pub mod respond;
pub mod signed_url;

pub use ctx::RequestCtx;
