//! A Kafka message of a `generic` topic, decoded and admitted as the
//! consumer does (see [`dr_reactor_fuzz::kafka`]), with the mapping the
//! Kafka integration test configures.
#![no_main]

use std::sync::OnceLock;

use dr_reactor::sources::kafka::formats::Format;
use libfuzzer_sys::fuzz_target;

fn format() -> &'static Format {
    static FORMAT: OnceLock<Format> = OnceLock::new();
    FORMAT.get_or_init(|| {
        serde_json::from_value(serde_json::json!({"generic": {
            "name": "/kind", "id": "/eventId", "time": "/ts",
            "labels": {"service": "/svc", "region": "/where/region", "system": "legacy"},
            "required": ["service"],
            "status": {"pointer": "/state", "resolved": ["OK"]}
        }}))
        .unwrap_or_else(|e| panic!("generic mapping: {e}"))
    })
}

fuzz_target!(|data: &[u8]| dr_reactor_fuzz::kafka::check(format(), data));
