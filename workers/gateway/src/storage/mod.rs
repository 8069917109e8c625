//! Object storage (R2) for the gateway and its Durable Objects: model versions and staged
//! update parts, read by range in bounded windows. Which bytes of which piece a range covers is
//! decided in `edgeplane_core::fl::pieces`; this module only moves them.

pub mod r2;

pub use r2::R2Blobs;
