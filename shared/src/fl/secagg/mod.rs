//! Secure aggregation compatible with the Octomil SDK's `SecAggPlusClient` (SecAgg+, Bonawitz et
//! al. 2017; Bell et al. 2020): the pure protocol core the round's routes and aggregators use, so
//! the server learns the sum of the survivors' updates and never one device's.
//!
//! Each module is one part of the SDK's wire protocol, reproduced byte for byte (the
//! `sdk_vectors` tests check every one against output of the SDK's own functions):
//! - [`prg`]: the SHA-256 counter-mode mask stream, generated for any element range;
//! - [`keys`]: the X25519 + HKDF agreements (pairwise-mask seeds, share-encryption keys) and the
//!   sign convention of pairwise masks;
//! - [`field`] and [`shamir`]: Shamir over GF(2^127 − 1), the 40-byte share and the 132-byte
//!   chunked `sk1` share, reconstruction that refuses fewer than `t` shares;
//! - [`relay`]: the shape of the share ciphertexts the server relays but cannot open;
//! - [`reveal`]: a survivor's stage-4 answer, each share checked to be at the holder's own x;
//! - [`quantize`]: the stochastic quantization and the de-quantization of a sum;
//! - [`unmask`]: removing the masks from a range of the sum, and the canary check;
//! - [`session`]: the server's stage machine for one secure round, over the round's storage;
//! - [`masked`]: a shard's wrapping sum of masked vectors and its unmasked, de-quantized average.

pub mod field;
pub mod keys;
pub mod masked;
pub mod prg;
pub mod quantize;
pub mod relay;
pub mod reveal;
pub mod session;
pub mod shamir;
pub mod unmask;

#[cfg(test)]
mod sdk_vectors;

pub use unmask::{Dropped, Survivor, UnmaskError, Unmasker};
