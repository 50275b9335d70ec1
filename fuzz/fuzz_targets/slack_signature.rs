//! Slack request signing, through `Slack::check_signature` (the part of
//! `Slack::verify` before the replay check in the store). The input is
//! `signature\ntimestamp\nbody`. Accepted means the HMAC of that timestamp
//! and body under the signing secret, with a fresh timestamp; a correctly
//! signed fresh body is always accepted.
#![no_main]

use std::sync::OnceLock;

use dr_reactor::approval::slack::{Slack, SlackConfig};
use dr_reactor::primitives::Secret;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn slack() -> &'static Slack {
    static SLACK: OnceLock<Slack> = OnceLock::new();
    SLACK.get_or_init(|| {
        Slack::new(&SlackConfig {
            bot_token: Secret::new("xoxb-fuzz"),
            signing_secret: Secret::new(SECRET),
            channel: "C1".into(),
            api_url: None,
        })
        .unwrap_or_else(|e| panic!("slack client: {e}"))
    })
}

fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let signature = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let timestamp = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let body = parts.next().unwrap_or_default();
    let clock = chrono::Utc::now().timestamp();
    if slack().check_signature(signature, timestamp, body).is_ok() {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            panic!("accepted without both headers");
        };
        assert_eq!(
            signature,
            sign(timestamp, body),
            "accepted a wrong signature"
        );
        let ts: i64 = timestamp
            .parse()
            .unwrap_or_else(|e| panic!("accepted timestamp {timestamp:?}: {e}"));
        assert!(
            (clock - ts).abs() <= 301,
            "accepted a stale timestamp {ts} at {clock}"
        );
    }
    if std::str::from_utf8(body).is_ok() {
        let fresh = clock.to_string();
        let good = sign(&fresh, body);
        assert_eq!(
            slack().check_signature(Some(&good), Some(&fresh), body),
            Ok(good.as_str())
        );
        let stale = (clock - 600).to_string();
        let old = sign(&stale, body);
        assert!(
            slack()
                .check_signature(Some(&old), Some(&stale), body)
                .is_err()
        );
    }
});
