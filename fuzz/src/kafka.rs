//! The checks shared by the Kafka format targets.

use chrono::Duration;
use dr_reactor::sources::kafka::formats::{Format, SOURCE};
use dr_reactor::sources::limits::IntakeLimits;

use crate::{check_admitted, drive, now, shipped_rules, tight_limits};

/// The consumer's default `max_message_bytes` is larger than any input the
/// fuzzer makes; this one is not, so the size check is reached too.
const LIMIT: usize = 2048;

/// Decodes `data` as a message of a `format` topic, as the consumer does:
/// what comes out holds to the limits, is stamped with its receipt time,
/// and keeps its fingerprint when the same message is delivered again an
/// hour later (a rebalance or a restart), so it is recorded once. A
/// refusal carries a reason from the closed set the metric and the
/// dead-letter header use. Admitted signals go through the engine with the
/// shipped rules.
pub fn check(format: &Format, data: &[u8]) {
    let later = now() + Duration::hours(1);
    for limits in [IntakeLimits::default(), tight_limits()] {
        match format.admit(Some(data), LIMIT, &limits, now()) {
            Ok(signal) => {
                check_admitted(&signal, &limits);
                assert_eq!(signal.source, SOURCE);
                assert_eq!(signal.received_at, now());
                let again = format
                    .admit(Some(data), LIMIT, &limits, later)
                    .unwrap_or_else(|e| panic!("admitted once, refused on redelivery: {e}"));
                assert_eq!(
                    again.fingerprint, signal.fingerprint,
                    "a redelivered message got another fingerprint"
                );
                if limits == IntakeLimits::default() {
                    drive(shipped_rules(), &[signal]);
                }
            }
            Err(e) => {
                const REASONS: [&str; 9] = [
                    "too_large",
                    "empty",
                    "invalid_json",
                    "unmappable",
                    "nul_byte",
                    "bad_label_name",
                    "reserved_label",
                    "too_many_labels",
                    "too_long",
                ];
                assert!(REASONS.contains(&e.reason()), "{e}: {}", e.reason());
            }
        }
    }
}
