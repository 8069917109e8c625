//! The code review pipeline's logic: configuration, egress policy, BYOK sealing, diff parsing,
//! file selection, chunking and retrieval, prompt building, findings validation, and the wire
//! formats of git platforms and LLM providers. The review worker is a thin shell around this.

pub mod byok;
pub mod config;
pub mod diff;
pub mod egress;
pub mod findings;
pub mod git_platform;
pub mod http;
pub mod ignore;
pub mod index;
pub mod platform;
pub mod prompt;
pub mod provider;
pub mod render;
pub mod sealed;
pub mod select;
pub mod status;
