//! Store keys built from what senders supply (fingerprints, event ids,
//! label values) kept to a size every backend can index.
//!
//! PostgreSQL refuses a B-tree entry over about 2.7 KB, and a NUL byte in
//! any text column; either fails the whole transaction it is in. A key that
//! is long or carries a control character is replaced by a digest of itself:
//! deterministic, so a re-send, a restart or another replica derives the
//! same key, and distinct inputs stay distinct.

use std::borrow::Cow;

/// Longest key kept as written. Alertmanager fingerprints are 16 hex
/// digits; CloudEvents ids and `source:id` pairs are well under this.
pub const MAX_KEY_BYTES: usize = 200;

/// Namespace of the digests (a fixed random UUID), so that they cannot
/// collide with version-5 UUIDs a sender derives from the same bytes.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5b1e_4c2a_8f0d_4e7b_9a31_6c0e_2d7f_a914);

/// Prefix of a digested key, so a reader can tell it from one as written.
pub const DIGEST_PREFIX: &str = "digest:";

/// `key` itself when it is short and printable, else `digest:<uuid-v5>`.
pub fn bounded(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control) {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(digest(key))
    }
}

/// Always the digest, for keys that keep a readable prefix of their own.
pub fn digest(key: &str) -> String {
    format!(
        "{DIGEST_PREFIX}{}",
        uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_kept_long_ones_digested_deterministically() {
        assert_eq!(
            bounded("alertmanager:1714addda8c401b6"),
            "alertmanager:1714addda8c401b6"
        );
        let long = "x".repeat(8192);
        let d = bounded(&long);
        assert!(
            d.starts_with(DIGEST_PREFIX) && d.len() < MAX_KEY_BYTES,
            "{d}"
        );
        assert_eq!(d, bounded(&long), "same input, same key");
        assert_ne!(d, bounded(&"x".repeat(8191)));
        assert!(bounded("a\0b").starts_with(DIGEST_PREFIX));
    }
}
