//! The bodies the API answers with, one `#[derive(Serialize, Deserialize)]` type per resource
//! view. They are the public contract: JSON routes serialize them, the console renders them, and
//! the CLI deserializes them, so one definition serves all three and cannot drift.

pub mod access;
pub mod core;
pub mod federation;
pub mod identity;
pub mod review;
