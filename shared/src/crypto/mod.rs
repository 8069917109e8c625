//! Cryptographic building blocks. Everything secret-bearing goes through here so the habits
//! (constant-time comparison, hashing before storage, purpose-bound keys) live in one place.

pub mod aead;
pub mod hash;
pub mod jwt;
pub mod kdf;
pub mod random;
pub mod signed_url;

pub use hash::{constant_time_eq, hmac_sha256, hmac_sha256_parts, sha256, sha256_hex};
pub use random::{random_bytes, random_token};
