//! Leaf primitives every stage shares: secrets that never print, durations
//! written the Prometheus way (and the bounds the runtime can take), store
//! keys bounded in size, supervised tasks, YAML parsing with positions,
//! shared strings, the heap's free memory given back, and the AWS SDK's
//! HTTP client.
//!
//! Nothing here imports anything of the crate, so any module may depend on
//! these without forming a cycle; stage configs build on them and
//! [`crate::config`] composes the stage configs.

pub mod aws_http;
pub mod duration;
pub mod heap;
pub mod intern;
pub mod key;
pub mod secret;
pub mod supervise;
pub mod yaml;

pub use secret::{Secret, TokenDigest};
