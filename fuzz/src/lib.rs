//! What the fuzz targets check of what the library hands on: the
//! invariants the rest of dr-reactor relies on, not only "no panic".
//!
//! Every target runs on a fixed clock ([`now`]) so that a crash replays
//! exactly; inputs that must come from a file (rules, silences) go through
//! the real loaders by way of a scratch file ([`scratch`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dr_reactor::guard::Guard;
use dr_reactor::plan::DrillDispatch;
use dr_reactor::primitives::duration::after;
use dr_reactor::primitives::key::MAX_KEY_BYTES;
use dr_reactor::rules::engine::{EngineLimits, incident_key};
use dr_reactor::rules::matcher::Op;
use dr_reactor::rules::plan::{TemplateContext, latest_by_name};
use dr_reactor::rules::{Decision, Engine, RuleError, RuleSet};
use dr_reactor::signal::{Change, Labels, Signal, SignalEvent, Status, valid_label_name};
use dr_reactor::sources::limits::IntakeLimits;

pub mod kafka;

/// The clock of every run.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_040_000, 0).unwrap_or_default()
}

/// A file of the repository the fuzz crate lives in.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Limits small enough that short inputs reach each of them; the targets
/// run every input under these and under the defaults.
pub fn tight_limits() -> IntakeLimits {
    IntakeLimits {
        max_name_bytes: 16,
        max_labels: 4,
        max_label_name_bytes: 8,
        max_label_value_bytes: 16,
        max_annotation_value_bytes: 32,
    }
}

/// What every admitted signal must be for the store and engine to take it
/// (the edge's promise): no NUL anywhere, Prometheus label names, every
/// limit held, a fingerprint that is a usable key. Admitting it again
/// changes nothing.
pub fn check_admitted(s: &Signal, limits: &IntakeLimits) {
    assert!(!s.name.is_empty(), "admitted a signal with no name");
    assert!(!s.name.contains('\0'), "NUL in admitted name {:?}", s.name);
    assert!(s.name.len() <= limits.max_name_bytes, "name over the limit");
    for (what, pairs, max_value) in [
        ("label", &s.labels, limits.max_label_value_bytes),
        (
            "annotation",
            &s.annotations,
            limits.max_annotation_value_bytes,
        ),
    ] {
        assert!(
            pairs.len() <= limits.max_labels,
            "too many {what}s admitted"
        );
        for (k, v) in pairs {
            assert!(valid_label_name(k), "{what} name {k:?} passed validation");
            assert!(
                k.len() <= limits.max_label_name_bytes,
                "{what} name {k:?} too long"
            );
            assert!(!v.contains('\0'), "NUL in admitted {what} {k:?}");
            assert!(v.len() <= max_value, "{what} {k:?} value over the limit");
        }
    }
    assert!(
        !s.fingerprint.is_empty(),
        "admitted a signal with an empty fingerprint"
    );
    assert!(
        s.fingerprint.len() <= MAX_KEY_BYTES && !s.fingerprint.chars().any(char::is_control),
        "unbounded fingerprint {:?}",
        s.fingerprint
    );
    let mut again = s.clone();
    limits
        .admit(&mut again)
        .unwrap_or_else(|e| panic!("an admitted signal is refused the second time: {e}"));
    assert_eq!(&again, s, "admitting twice changed the signal");
}

/// The shipped rules and catalogue, loaded once per process.
pub fn shipped_rules() -> &'static Arc<RuleSet> {
    static RULES: OnceLock<Arc<RuleSet>> = OnceLock::new();
    RULES.get_or_init(|| {
        let set = RuleSet::load(
            &[repo("rules")],
            Some(repo("config/services.yaml").as_path()),
        )
        .unwrap_or_else(|e| panic!("shipped rules: {e}"));
        Arc::new(set)
    })
}

/// Where a loader error points must be in the file it names: a position
/// past the end, or no message, helps nobody fix it.
pub fn check_errors(errors: &[RuleError], path: &Path, text: &[u8]) {
    assert!(!errors.is_empty(), "a refused file with no error");
    let lines = text.split(|&b| b == b'\n').count() as u64;
    for e in errors {
        assert_eq!(e.file, path, "error names another file: {e}");
        assert!(
            e.line <= lines + 1,
            "error past the end ({lines} lines): {e}"
        );
        assert!(!e.message.trim().is_empty(), "error without a message: {e}");
    }
}

/// Writes an input to the file the real loaders read it from (one per
/// process and name, rewritten for each input) and returns its path.
pub fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dr-reactor-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Signals that each rule of `rules` matches, as far as its equality
/// matchers say: enough of them, with distinct values, for its count and
/// distinct conditions to hold.
pub fn signals_for(rules: &RuleSet) -> Vec<Signal> {
    let mut out = Vec::new();
    for (r, rule) in rules.rules.iter().enumerate().take(8) {
        let mut labels = Labels::new();
        let mut source = rule.source.clone();
        for m in rule.matchers.iter().filter(|m| m.op == Op::Eq) {
            if m.name == "__source__" {
                source.get_or_insert_with(|| m.value.clone());
            } else {
                labels.insert(m.name.clone(), m.value.clone());
            }
        }
        for g in &rule.group_by {
            labels.entry(g.clone()).or_insert_with(|| "g".into());
        }
        let named = labels
            .remove("__name__")
            .or_else(|| labels.get("alertname").cloned())
            .unwrap_or_else(|| "Fuzz".into());
        let names: Vec<String> = if rule.when.alerts.is_empty() {
            vec![named]
        } else {
            rule.when.alerts.clone()
        };
        let wanted = rule
            .when
            .distinct
            .values()
            .chain(rule.when.count.iter())
            .copied()
            .max()
            .unwrap_or(1)
            .max(names.len())
            .min(6);
        for i in 0..wanted {
            let mut labels = labels.clone();
            for label in rule.when.distinct.keys() {
                labels.insert(label.clone(), format!("v{i}"));
            }
            let name = names[i % names.len()].clone();
            labels.insert("alertname".into(), name.clone());
            out.push(Signal {
                source: source.clone().unwrap_or_else(|| "alertmanager".into()),
                fingerprint: format!("r{r}-{i}"),
                name,
                labels,
                annotations: Labels::new(),
                status: Status::Firing,
                starts_at: now(),
                ends_at: None,
                received_at: now(),
            });
        }
    }
    out
}

/// Runs `signals` through the engine as the pipeline does (fired, re-sent,
/// resolved, then time passing well beyond every window and TTL), and each
/// opened incident through the guard and plan rendering. Checks that the
/// decisions tell a consistent story: an incident opens once under the key
/// a declared incident would get, and nothing happens to one not open.
pub fn drive(rules: &Arc<RuleSet>, signals: &[Signal]) {
    let limits = EngineLimits {
        signal_ttl: Duration::from_secs(3600),
        max_groups_per_rule: 8,
        max_members_per_group: 8,
    };
    let mut engine = Engine::new(Arc::clone(rules)).with_limits(limits);
    let guard = Guard::new(rules, None);
    let mut open = BTreeSet::new();
    let t0 = now();
    let at = |secs: u64| after(t0, Duration::from_secs(secs));
    let events = |change: Change, at: DateTime<Utc>| -> Vec<SignalEvent> {
        signals
            .iter()
            .map(|s| {
                let mut signal = s.clone();
                signal.received_at = at;
                if change == Change::Resolved {
                    signal.status = Status::Resolved;
                    signal.ends_at = Some(at);
                }
                let change = match (change, s.status) {
                    (Change::Fired, Status::Resolved) => Change::Resolved,
                    (c, _) => c,
                };
                SignalEvent { signal, change }
            })
            .collect()
    };
    let mut check = |decisions: Vec<Decision>| {
        for d in decisions {
            decided(&d, &mut open, rules, signals, &guard);
        }
    };
    check(engine.on_batch(&events(Change::Fired, t0), t0));
    check(engine.tick(at(1)));
    check(engine.on_batch(&events(Change::Refreshed, at(30)), at(30)));
    check(engine.tick(at(120)));
    check(engine.on_batch(&events(Change::Resolved, at(180)), at(180)));
    for secs in [3_600, 86_400, 40 * 86_400] {
        check(engine.tick(at(secs)));
    }
}

fn decided(
    d: &Decision,
    open: &mut BTreeSet<String>,
    rules: &RuleSet,
    signals: &[Signal],
    guard: &Guard,
) {
    match d {
        Decision::Open {
            rule,
            key,
            labels,
            signals: ids,
            services,
            at,
            ..
        } => {
            assert!(open.insert(key.clone()), "incident {key} opened twice");
            assert_eq!(&incident_key(rule, labels), key, "declared key differs");
            for _ in 0..2 {
                let _ = guard.admit(rule, key, *at, 0);
            }
            let evidence: Vec<Signal> = signals
                .iter()
                .filter(|s| ids.contains(&s.id()))
                .cloned()
                .collect();
            let ctx = TemplateContext {
                incident_id: key,
                rule: &rule.name,
                scenario: &rule.scenario,
                severity: &rule.severity,
                labels,
                services: &[],
                service: None,
                dr_region: None,
                signals: &evidence,
                latest: latest_by_name(&evidence),
            };
            // As a real incident's plan and as a drill's.
            for drill in [None, Some(DrillDispatch::DrillRunbook)] {
                let _ = rule.plan.render(&ctx, &rules.catalogue, services, drill);
            }
        }
        Decision::Attach { key, .. }
        | Decision::Expired { key, .. }
        | Decision::Evidence { key, .. } => {
            assert!(open.contains(key), "{d:?} for an incident not open");
        }
        Decision::Absorb { key, parent, .. } => {
            assert!(
                open.contains(key) && open.contains(parent),
                "{d:?} between incidents not open"
            );
        }
        Decision::Close { key, .. } => {
            assert!(open.remove(key), "{d:?} for an incident not open");
        }
    }
}
