//! A silences file (`silences.file`), through the loader a reload runs. A
//! refused file has errors that point into it; every loaded silence passes
//! the same check the API applies, and silences exactly the label sets its
//! matchers describe.
#![no_main]

use std::collections::BTreeSet;

use chrono::Duration;
use dr_reactor::rules::matcher::{Matcher, Op};
use dr_reactor::rules::silence::{self, Silence};
use dr_reactor::signal::Labels;
use dr_reactor_fuzz::{check_errors, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = scratch("silences.yaml", data);
    let silences = match silence::load_file(&file) {
        Ok(s) => s,
        Err(e) => return check_errors(&e.0, &file, data),
    };
    let ids: BTreeSet<&str> = silences.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), silences.len(), "two silences with one id");
    for s in &silences {
        s.check()
            .unwrap_or_else(|e| panic!("loaded a silence the API refuses: {e}"));
        assert_eq!(s.source, "file");
        // Labels that satisfy every matcher, when the matchers are plain
        // equalities: those labels are silenced inside the window only.
        let compiled: Vec<Matcher> = s
            .matchers
            .iter()
            .filter_map(|m| Matcher::parse(m).ok())
            .collect();
        assert_eq!(
            compiled.len(),
            s.matchers.len(),
            "a loaded matcher no longer parses"
        );
        let labels: Labels = compiled
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let plain = compiled.iter().all(|m| m.op == Op::Eq) && labels.len() == compiled.len();
        if plain {
            assert!(s.matches(&labels), "{s:?} does not match {labels:?}");
            let inside = s.starts_at;
            assert!(Silence::find([s], &labels, inside).is_some());
            assert!(Silence::find([s], &labels, s.ends_at).is_none());
            if let Some(before) = s.starts_at.checked_sub_signed(Duration::seconds(1)) {
                assert!(Silence::find([s], &labels, before).is_none());
            }
        }
        assert!(
            !s.matches(&Labels::new()),
            "a loaded silence silences everything: {s:?}"
        );
    }
});
