//! The Alertmanager webhook body, through the parser the webhook handler
//! calls: every alert is either a signal that holds to the intake limits or
//! a rejection with its own index, and the signals go through the engine
//! with the shipped rules.
#![no_main]

use dr_reactor::sources::alertmanager::{self, SOURCE};
use dr_reactor::sources::limits::IntakeLimits;
use dr_reactor_fuzz::{check_admitted, drive, now, shipped_rules, tight_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let alerts = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| Some(v.get("alerts")?.as_array()?.len()));
    let mut admitted = Vec::new();
    for limits in [IntakeLimits::default(), tight_limits()] {
        let Ok(batch) = alertmanager::parse(data, now(), &limits) else {
            continue;
        };
        assert_eq!(
            Some(batch.signals.len() + batch.rejected.len()),
            alerts,
            "every alert is either a signal or a rejection"
        );
        let indexes: Vec<usize> = batch.rejected.iter().map(|r| r.index).collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
        for r in &batch.rejected {
            assert!(!r.error.is_empty() && !r.reason.is_empty());
        }
        for s in &batch.signals {
            check_admitted(s, &limits);
            assert_eq!(s.source, SOURCE);
            assert_eq!(s.labels.get("alertname"), Some(&s.name));
            assert_eq!(s.received_at, now());
        }
        admitted.push(batch.signals);
    }
    if let [default, tight] = admitted.as_slice() {
        assert!(tight.len() <= default.len(), "tighter limits admitted more");
        drive(shipped_rules(), default);
    }
});
