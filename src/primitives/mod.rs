//! Leaf primitives every stage shares: secrets that never print, durations
//! written the Prometheus way, and YAML error positions.
//!
//! Nothing here imports anything of the crate, so any module may depend on
//! these without forming a cycle; stage configs build on them and
//! [`crate::config`] composes the stage configs.

pub mod duration;
pub mod secret;
pub mod yaml;

pub use secret::Secret;
