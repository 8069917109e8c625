//! The code review pipeline's logic: configuration, egress policy, BYOK sealing, diff parsing,
//! file selection, chunking and retrieval, prompt building, findings validation, and the wire
//! formats of git platforms and LLM providers. The review worker is a thin shell around this.

pub mod byok;
pub mod config;
pub mod egress;
pub mod sealed;
pub mod diff;
pub mod ignore;
pub mod index;
pub mod select;
pub mod findings;
pub mod prompt;
pub mod http;
pub mod provider;
pub mod platform;
pub mod render;
