//! Federated learning: the pure logic behind rounds. Model layouts and the update wire formats
//! (safetensors and the Octomil `plaintext_json` envelope), streaming validation, the weighted
//! FedAvg fold, sharding of large models, the round state machine, signed upload URLs, and the
//! device scopes. The Durable Objects in the gateway are thin wrappers around these types.

pub mod accumulator;
pub mod aggregate;
pub mod control;
pub mod device_scope;
pub mod dtype;
pub mod envelope;
pub mod history;
pub mod layout;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod noise;
pub mod npy;
pub mod participation;
pub mod pieces;
pub mod presence;
pub mod rollout;
pub mod round;
pub mod safetensors;
pub mod secagg;
pub mod shard;
pub mod targeting;
pub mod upload_url;
pub mod validate;
pub mod versions;
pub mod wire;

pub use dtype::DType;
pub use layout::{ModelLayout, TensorSpec};
pub use round::{RejectReason, RoundState};
