use super::*;
use crate::signal::{Signal, Status};

pub(super) fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

pub(super) fn rules(yaml: &str) -> Arc<RuleSet> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.yaml");
    std::fs::write(&p, yaml).unwrap();
    Arc::new(RuleSet::load(&[p], None).unwrap())
}

/// An Alertmanager-style signal: its name is also its `alertname`.
pub(super) fn ev(name: &str, labels: &[(&str, &str)], change: Change, at: i64) -> SignalEvent {
    let mut labels: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("alertname".into(), name.into());
    SignalEvent {
        signal: Signal {
            source: "alertmanager".into(),
            fingerprint: format!("{name}{labels:?}"),
            name: name.into(),
            labels,
            annotations: Labels::new(),
            status: if change == Change::Resolved {
                Status::Resolved
            } else {
                Status::Firing
            },
            starts_at: t(at),
            ends_at: None,
            received_at: t(at),
        },
        change,
    }
}

pub(super) fn opens(ds: &[Decision]) -> Vec<&str> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Open { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

/// The engine's word on incidents' evidence, in order.
pub(super) fn evidence(ds: &[Decision]) -> Vec<(&str, bool)> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Evidence { key, holds, .. } => Some((key.as_str(), *holds)),
            _ => None,
        })
        .collect()
}

/// Every decision but those on evidence: what opens, grows and closes.
pub(super) fn lifecycle(ds: &[Decision]) -> Vec<&Decision> {
    ds.iter()
        .filter(|d| !matches!(d, Decision::Evidence { .. }))
        .collect()
}

pub(super) fn closes(ds: &[Decision]) -> Vec<&str> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Close { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn rule(name: &str, group_by: &str, window: &str, when: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{labels: ['severity!=\"none\"']}}\n    correlate:\n      group_by: [{group_by}]\n      window: {window}\n      when: {when}\n    scenario: {name}\n{extra}"
    )
}

#[test]
fn count_opens_at_threshold_attaches_then_closes_after_window() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("c", "zone", "1m", "{count: 2}", "")
    )));
    assert!(
        e.on_event(
            &ev("A", &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0)
        )
        .is_empty()
    );
    let d = e.on_event(
        &ev("B", &[("zone", "a"), ("severity", "x")], Change::Fired, 1),
        t(1),
    );
    assert_eq!(opens(&d), ["c{zone=\"a\"}"]);
    let d = e.on_event(
        &ev("C", &[("zone", "a"), ("severity", "x")], Change::Fired, 2),
        t(2),
    );
    assert!(matches!(&d[..], [Decision::Attach { signals, .. }] if signals.len() == 1));
    for n in ["A", "B", "C"] {
        e.on_event(
            &ev(n, &[("zone", "a"), ("severity", "x")], Change::Resolved, 10),
            t(10),
        );
    }
    assert_eq!(
        e.signals_tracked(),
        3,
        "resolved signals stay for their window"
    );
    assert!(
        e.tick(t(69)).is_empty(),
        "resolved signals count for one window"
    );
    assert_eq!(closes(&e.tick(t(70))), ["c{zone=\"a\"}"]);
    assert_eq!(e.tracked(), 0, "memory is released");
    assert_eq!(e.signals_tracked(), 0, "per-signal index released too");
}

#[test]
fn ticks_skip_groups_time_cannot_change_until_the_rules_do() {
    let cel = |min: u32| {
        rules(&format!(
            "rules:\n{}",
            rule("c", "zone", "1m", &format!("{{cel: 'count >= {min}'}}"), "")
        ))
    };
    let mut e = Engine::new(cel(2));
    for (n, at) in [("A", 0), ("B", 1)] {
        e.on_event(
            &ev(n, &[("zone", "a"), ("severity", "x")], Change::Fired, at),
            t(at),
        );
    }
    assert!(e.groups.values().all(|g| g.holding), "count 2 holds");
    assert!(e.tick(t(30)).is_empty(), "nothing time-driven happened");
    e.replace_rules(cel(3));
    assert_eq!(
        closes(&e.tick(t(31))),
        ["c{zone=\"a\"}"],
        "the tick after a reload evaluates every group under the new rule"
    );
}

#[test]
fn distinct_counts_label_values_not_signals() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("d", "zone", "1m", "{distinct: {service: 2}}", "")
    )));
    e.on_event(
        &ev(
            "A",
            &[("zone", "a"), ("service", "s1"), ("severity", "x")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    let d = e.on_event(
        &ev(
            "B",
            &[("zone", "a"), ("service", "s1"), ("severity", "x")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    assert!(opens(&d).is_empty(), "same service twice is one");
    let d = e.on_event(
        &ev(
            "C",
            &[("zone", "a"), ("service", "s2"), ("severity", "x")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    assert_eq!(opens(&d).len(), 1);
}

#[test]
fn named_alerts_must_all_be_present() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("n", "zone", "1m", "{alerts: [X, Y]}", "")
    )));
    assert!(
        e.on_event(
            &ev("X", &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0)
        )
        .is_empty()
    );
    assert!(
        e.on_event(
            &ev("Z", &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0)
        )
        .is_empty()
    );
    assert_eq!(
        opens(&e.on_event(
            &ev("Y", &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0)
        ))
        .len(),
        1
    );
}

#[test]
fn cel_condition_decides() {
    let yaml = format!(
        "rules:\n{}",
        rule(
            "x",
            "zone",
            "1m",
            "{cel: 'signals.filter(s, s.labels.severity == \"critical\").size() >= 2'}",
            ""
        )
    );
    let mut e = Engine::new(rules(&yaml));
    e.on_event(
        &ev(
            "A",
            &[("zone", "a"), ("severity", "critical")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    e.on_event(
        &ev(
            "B",
            &[("zone", "a"), ("severity", "warning")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    assert!(e.tick(t(1)).is_empty());
    let d = e.on_event(
        &ev(
            "C",
            &[("zone", "a"), ("severity", "critical")],
            Change::Fired,
            2,
        ),
        t(2),
    );
    assert_eq!(opens(&d).len(), 1);
}

#[test]
fn point_events_count_for_one_window() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("p", "svc", "1m", "{count: 1}", "")
    )));
    let mut deploy = ev(
        "Deploy",
        &[("svc", "a"), ("severity", "x")],
        Change::Fired,
        0,
    );
    deploy.signal.ends_at = Some(t(0));
    assert_eq!(opens(&e.on_event(&deploy, t(0))).len(), 1);
    assert!(e.tick(t(59)).is_empty());
    assert_eq!(closes(&e.tick(t(60))).len(), 1);
}

#[test]
fn flapping_keeps_one_incident() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("f", "svc", "5m", "{count: 1}", "")
    )));
    let l = [("svc", "a"), ("severity", "x")];
    let mut all = e.on_event(&ev("A", &l, Change::Fired, 0), t(0));
    for i in 0..5 {
        all.extend(e.on_event(&ev("A", &l, Change::Resolved, 60 * i + 30), t(60 * i + 30)));
        all.extend(e.tick(t(60 * i + 45)));
        all.extend(e.on_event(&ev("A", &l, Change::Fired, 60 * i + 60), t(60 * i + 60)));
    }
    assert_eq!(opens(&all).len(), 1);
    assert!(closes(&all).is_empty());
}

pub(super) const PRECEDENCE: &str = "rules:
  - name: big
    match: {labels: ['alertname=\"Big\"']}
    correlate: {group_by: [region], window: 5m, when: {count: 1}}
    scenario: region_outage
    absorbs: [service_failure]
  - name: small
    match: {labels: ['alertname=\"Small\"']}
    correlate: {group_by: [region, service], window: 5m, when: {count: 1}}
    scenario: service_failure
";

#[test]
fn larger_incident_absorbs_open_smaller_ones_in_its_scope() {
    let mut e = Engine::new(rules(PRECEDENCE));
    e.on_event(
        &ev(
            "Small",
            &[("region", "r1"), ("service", "s")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    e.on_event(
        &ev(
            "Small",
            &[("region", "r2"), ("service", "s")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    let d = e.on_event(&ev("Big", &[("region", "r1")], Change::Fired, 1), t(1));
    let absorbed: Vec<(&str, &str)> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Absorb { key, parent, .. } => Some((key.as_str(), parent.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        absorbed,
        [(
            "service_failure{region=\"r1\",service=\"s\"}",
            "region_outage{region=\"r1\"}"
        )]
    );
}

#[test]
fn smaller_incident_opens_absorbed_while_larger_is_open() {
    let mut e = Engine::new(rules(PRECEDENCE));
    e.on_event(&ev("Big", &[("region", "r1")], Change::Fired, 0), t(0));
    let d = e.on_event(
        &ev(
            "Small",
            &[("region", "r1"), ("service", "s")],
            Change::Fired,
            1,
        ),
        t(1),
    );
    assert!(
        matches!(&d[..], [Decision::Open { parent: Some(p), .. }] if p == "region_outage{region=\"r1\"}")
    );
    let d = e.on_event(
        &ev(
            "Small",
            &[("region", "r2"), ("service", "s")],
            Change::Fired,
            1,
        ),
        t(1),
    );
    assert!(
        matches!(&d[..], [Decision::Open { parent: None, .. }]),
        "other region: on its own"
    );
}

#[test]
fn restore_reconciles_with_the_store() {
    let rs = rules(&format!(
        "rules:\n{}",
        rule("c", "zone", "1m", "{count: 1}", "")
    ));
    let events = vec![
        (
            ev("A", &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0),
        ),
        (
            ev("B", &[("zone", "b"), ("severity", "x")], Change::Fired, 0),
            t(0),
        ),
    ];
    let open: HashSet<String> = ["c{zone=\"a\"}".to_owned(), "c{zone=\"gone\"}".to_owned()].into();
    let mut e = Engine::new(rs);
    let d = e.restore(&events, &open, t(10));
    assert_eq!(
        opens(&d),
        ["c{zone=\"b\"}"],
        "held but not in the store: open it"
    );
    assert_eq!(
        closes(&d),
        ["c{zone=\"gone\"}"],
        "in the store but evidence gone: close it"
    );
    // zone a continues silently: a new signal attaches, nothing reopens.
    let d = e.on_event(
        &ev("C", &[("zone", "a"), ("severity", "x")], Change::Fired, 11),
        t(11),
    );
    assert!(matches!(&d[..], [Decision::Attach { .. }]));
}

#[test]
fn index_only_offers_rules_that_could_match() {
    let rs = rules(PRECEDENCE);
    let l: Labels = [("alertname".to_string(), "Big".to_string())].into();
    let names: Vec<&str> = rs.candidates("Big", &l).map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["big"]);
}

#[test]
fn firing_signal_not_resent_within_ttl_expires_with_an_event() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("c", "zone", "1m", "{count: 1}", "")
    )))
    .with_limits(EngineLimits {
        signal_ttl: std::time::Duration::from_secs(3600),
        ..EngineLimits::default()
    });
    let lost = || ev("A", &[("zone", "a"), ("severity", "x")], Change::Fired, 0);
    let live = |change, at| ev("B", &[("zone", "b"), ("severity", "x")], change, at);
    assert_eq!(opens(&e.on_event(&lost(), t(0))), ["c{zone=\"a\"}"]);
    assert_eq!(
        opens(&e.on_event(&live(Change::Fired, 0), t(0))),
        ["c{zone=\"b\"}"]
    );
    for at in [1800, 3500] {
        assert!(e.on_event(&live(Change::Refreshed, at), t(at)).is_empty());
    }
    let d = e.tick(t(3600));
    assert!(
        matches!(&d[..], [Decision::Expired { key, signals, .. }, Decision::Evidence { holds: false, .. }]
            if key == "c{zone=\"a\"}" && signals.len() == 1),
        "an expired signal is no longer evidence: {d:?}"
    );
    assert_eq!(e.take_bounded().expired, 1);
    assert_eq!(
        closes(&e.tick(t(3660))),
        ["c{zone=\"a\"}"],
        "an expired signal counts for one more window, like a resolved one"
    );
    assert_eq!(e.signals_tracked(), 1, "the re-sent one stays");
    // A re-send after expiry makes it live again.
    assert_eq!(opens(&e.on_event(&lost(), t(3700))), ["c{zone=\"a\"}"]);
}

#[test]
fn groups_per_rule_and_members_per_group_are_limited_and_counted() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("c", "zone", "1m", "{count: 10}", "")
    )))
    .with_limits(EngineLimits {
        max_groups_per_rule: 2,
        max_members_per_group: 2,
        ..EngineLimits::default()
    });
    for zone in ["a", "b", "c"] {
        e.on_event(
            &ev("A", &[("zone", zone), ("severity", "x")], Change::Fired, 0),
            t(0),
        );
    }
    for name in ["B", "C"] {
        e.on_event(
            &ev(name, &[("zone", "a"), ("severity", "x")], Change::Fired, 0),
            t(0),
        );
    }
    assert_eq!(e.groups.len(), 2);
    assert_eq!(e.tracked(), 3, "zone a holds 2, zone b 1, zone c none");
    assert_eq!(
        e.take_bounded(),
        Bounded {
            groups: 1,
            members: 1,
            expired: 0
        }
    );
    assert_eq!(
        e.take_bounded(),
        Bounded::default(),
        "counts are taken once"
    );
}

/// Three tiers, listed smallest first so that file order cannot be what
/// decides: within one batch the zone and region open before the service.
const TIERS: &str = "rules:
  - name: service
    match: {labels: ['service!=\"\"']}
    correlate: {group_by: [zone, service], window: 5m, when: {count: 1}}
    scenario: service_failure
  - name: zone
    match: {labels: ['zone!=\"\"', 'service!=\"\"']}
    correlate: {group_by: [zone], window: 5m, when: {distinct: {service: 2}}}
    scenario: az_failure
    absorbs: [service_failure]
  - name: region
    match: {labels: ['zone!=\"\"', 'service!=\"\"']}
    correlate: {group_by: [region], window: 5m, when: {distinct: {service: 2}}}
    scenario: region_outage
    absorbs: [az_failure, service_failure]
";

#[test]
fn precedence_ranks_follow_absorbs() {
    let r = precedence::ranks(&rules(TIERS));
    assert_eq!(r["service_failure"], 0);
    assert_eq!(r["az_failure"], 1);
    assert_eq!(r["region_outage"], 2);
}

#[test]
fn within_one_batch_larger_scenarios_open_first() {
    let mut e = Engine::new(rules(TIERS));
    let batch = [
        ev(
            "Down",
            &[("region", "r1"), ("zone", "a"), ("service", "s1")],
            Change::Fired,
            0,
        ),
        ev(
            "Down",
            &[("region", "r1"), ("zone", "a"), ("service", "s2")],
            Change::Fired,
            0,
        ),
    ];
    let d = e.on_batch(&batch, t(0));
    let region = "region_outage{region=\"r1\"}";
    assert_eq!(opens(&d)[0], region, "the largest first: {:?}", opens(&d));
    for d in &d {
        if let Decision::Open { key, parent, .. } = d
            && key != region
        {
            // The zone inside the region; each service inside a larger one.
            assert!(parent.is_some(), "{key} opens absorbed");
            if key.starts_with("az_failure") {
                assert_eq!(parent.as_deref(), Some(region));
            }
        }
    }
    assert!(
        !d.iter().any(|d| matches!(d, Decision::Absorb { .. })),
        "nothing opened alone to be absorbed afterwards: {d:?}"
    );
}

#[test]
fn event_by_event_the_smaller_opens_alone_then_is_absorbed() {
    // The same two alerts as two batches: the first service has no larger
    // incident to join yet (that is what holds are for, in the incident
    // layer); the zone and region then absorb it.
    let mut e = Engine::new(rules(TIERS));
    let d = e.on_event(
        &ev(
            "Down",
            &[("region", "r1"), ("zone", "a"), ("service", "s1")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    assert!(matches!(&d[..], [Decision::Open { parent: None, .. }]));
    let d = e.on_event(
        &ev(
            "Down",
            &[("region", "r1"), ("zone", "a"), ("service", "s2")],
            Change::Fired,
            1,
        ),
        t(1),
    );
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::Absorb { key, .. } if key.contains("s1"))),
        "{d:?}"
    );
}

#[test]
fn attach_names_the_services_of_new_evidence() {
    let mut e = Engine::new(rules(TIERS));
    for (i, s) in ["s1", "s2"].iter().enumerate() {
        e.on_event(
            &ev(
                "Down",
                &[("region", "r1"), ("zone", "a"), ("service", s)],
                Change::Fired,
                i as i64,
            ),
            t(i as i64),
        );
    }
    let d = e.on_event(
        &ev(
            "Down",
            &[("region", "r1"), ("zone", "a"), ("service", "s3")],
            Change::Fired,
            2,
        ),
        t(2),
    );
    let attached: Vec<&BTreeSet<String>> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Attach { services, .. } => Some(services),
            _ => None,
        })
        .collect();
    assert!(!attached.is_empty(), "{d:?}");
    assert!(
        attached.iter().all(|s| s.contains("s3") && s.len() == 1),
        "{attached:?}"
    );
}
