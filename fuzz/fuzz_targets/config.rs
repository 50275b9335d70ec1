//! A config file, through `Config::parse` (what `Config::load` runs on the
//! file's text). A refused one names the file; an accepted one gives the
//! runtime only values it can take: every period it adds to a clock fits.
#![no_main]

use std::path::Path;
use std::time::Instant;

use dr_reactor::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("dr-reactor.yaml");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::parse(text, path) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.to_string().starts_with("dr-reactor.yaml"), "{e}");
            return;
        }
    };
    let limits = cfg.rules.engine_limits();
    assert!(limits.max_groups_per_rule > 0 && limits.max_members_per_group > 0);
    cfg.intake
        .limits
        .check()
        .unwrap_or_else(|e| panic!("accepted intake limits fail their check: {e}"));
    let clock = Instant::now();
    let mut periods = vec![
        ("rules.evaluation_interval", cfg.rules.evaluation_interval),
        ("rules.signal_ttl", cfg.rules.signal_ttl),
        ("ha.lease_ttl", cfg.ha.lease_ttl),
    ];
    if let Some(k) = &cfg.kafka {
        periods.push(("kafka.batch.max_wait", k.batch.max_wait));
    }
    for (key, d) in periods {
        assert!(
            !d.is_zero() || key == "kafka.batch.max_wait",
            "{key} is zero"
        );
        assert!(
            clock.checked_add(d).is_some(),
            "{key} {d:?} overflows the clock"
        );
    }
});
