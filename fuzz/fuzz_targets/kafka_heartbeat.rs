//! A Kafka message of a `heartbeat` topic, decoded and admitted as the consumer
//! does (see [`dr_reactor_fuzz::kafka`]).
#![no_main]

use dr_reactor::sources::kafka::formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dr_reactor_fuzz::kafka::check(&Format::Heartbeat, data));
