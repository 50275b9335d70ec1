//! Rule evaluation cost per signal with 1,000 rules.
//!
//! The rule mix: 950 rules keyed on an alert name (200 names, so a name has
//! about five rules), with regex and negative matchers besides, grouping by
//! region and service or zone; 50 rules with no equality matcher (regex on
//! the name), which every signal must be checked against. Conditions: counts,
//! distinct counts, and named alerts. Signals: ten labels each, drawn from a
//! pool of 20,000 distinct alerts so groups fill up as in production, then
//! re-fire and resolve.
//!
//! Run: `cargo bench --bench engine`. Target: ≤ 2 µs median per signal.

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use dr_reactor::rules::{Engine, RuleSet};
use dr_reactor::signal::{Change, Labels, Signal, SignalEvent, Status};

const NAMES: usize = 200;

fn rules_yaml() -> String {
    let mut y = String::from("rules:\n");
    for i in 0..1000 {
        let (matchers, group_by, when) = if i < 950 {
            let name = i % NAMES;
            let when = match i % 3 {
                0 => "{count: 3}".to_owned(),
                1 => "{distinct: {service: 3}}".to_owned(),
                _ => format!("{{alerts: [Alert{name}], count: 2}}"),
            };
            (
                format!(
                    "['alertname=\"Alert{name}\"', 'severity=~\"critical|warning\"', 'namespace!~\"kube-.*\"']"
                ),
                if i % 2 == 0 {
                    "[region, service]"
                } else {
                    "[region, zone]"
                },
                when,
            )
        } else {
            (
                format!("['alertname=~\"Batch{i}.*|Cron{i}.*\"']"),
                "[region]",
                "{count: 1}".to_owned(),
            )
        };
        y.push_str(&format!(
            "  - name: rule-{i}\n    match: {{labels: {matchers}}}\n    correlate: {{group_by: {group_by}, window: 5m, when: {when}}}\n    scenario: s{}\n",
            i % 7
        ));
    }
    y
}

fn signal(i: usize, at: DateTime<Utc>) -> Signal {
    let service = format!("svc-{}", i % 50);
    let zone = format!("zone-{}", i % 9);
    let labels: Labels = [
        ("alertname", format!("Alert{}", i % NAMES)),
        ("region", format!("region-{}", i % 3)),
        ("zone", zone),
        ("service", service),
        (
            "severity",
            if i.is_multiple_of(4) {
                "warning"
            } else {
                "critical"
            }
            .to_owned(),
        ),
        ("namespace", format!("team-{}", i % 20)),
        ("pod", format!("pod-{i}")),
        ("instance", format!("10.0.{}.{}:9100", i % 250, i % 199)),
        ("job", "kubernetes-pods".to_owned()),
        ("cluster", format!("eks-{}", i % 3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Signal {
        source: "alertmanager".into(),
        fingerprint: format!("{i:016x}"),
        name: labels["alertname"].clone(),
        labels,
        annotations: Labels::new(),
        status: Status::Firing,
        starts_at: at,
        ends_at: None,
        received_at: at,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules_yaml()).unwrap();
    let rules = Arc::new(RuleSet::load(&[path], None).unwrap());
    assert_eq!(rules.rules.len(), 1000);
    let mut engine = Engine::new(rules);
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    const POOL: usize = 20_000;
    let events: Vec<SignalEvent> = (0..POOL)
        .map(|i| SignalEvent {
            signal: signal(i, t0),
            change: Change::Fired,
        })
        .collect();
    // Fill the groups first, as a running service has them.
    for ev in &events {
        engine.on_event(ev, t0);
    }
    let mut i = 0usize;
    c.bench_function("engine/on_event, 1000 rules (steady state)", |b| {
        b.iter(|| {
            i = (i + 7919) % POOL;
            let ev = &events[i];
            black_box(engine.on_event(black_box(ev), t0));
        })
    });
    let mut j = 0usize;
    c.bench_function("engine/on_event, 1000 rules (new signal each time)", |b| {
        b.iter_batched(
            || {
                j += 1;
                SignalEvent {
                    signal: signal(POOL + j, t0),
                    change: Change::Fired,
                }
            },
            |ev| black_box(engine.on_event(&ev, t0)),
            criterion::BatchSize::SmallInput,
        )
    });
    println!("tracked memberships after the run: {}", engine.tracked());
}

criterion_group!(benches, bench);
criterion_main!(benches);
