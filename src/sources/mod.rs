//! Sources: turn what senders deliver into [`crate::signal::Signal`]s.
//!
//! Each source only parses and normalises; recording, dedup and correlation
//! happen downstream so every source gets them the same way.

pub mod alertmanager;
