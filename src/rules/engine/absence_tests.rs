//! Heartbeat absence: a silence long enough opens; the return keeps the
//! incident open for its window; Alertmanager's resolve is part of the
//! silence; a restart keeps an open heartbeat incident.

use super::tests::{closes, ev, evidence, lifecycle, opens, rule, rules, t};
use super::*;

#[test]
fn absence_fires_after_silence_and_clears_on_return() {
    let mut e = Engine::new(rules(&format!(
        "rules:\n{}",
        rule("h", "region", "10m", "{absent: {for: 2m}}", "")
    )));
    assert!(e.tick(t(500)).is_empty(), "never seen is not absent");
    e.on_event(
        &ev(
            "Watchdog",
            &[("region", "r"), ("severity", "x")],
            Change::Fired,
            0,
        ),
        t(0),
    );
    e.on_event(
        &ev(
            "Watchdog",
            &[("region", "r"), ("severity", "x")],
            Change::Refreshed,
            60,
        ),
        t(60),
    );
    assert!(e.tick(t(179)).is_empty(), "refresh restarted the clock");
    assert_eq!(opens(&e.tick(t(180))), ["h{region=\"r\"}"]);
    let d = e.on_event(
        &ev(
            "Watchdog",
            &[("region", "r"), ("severity", "x")],
            Change::Refreshed,
            300,
        ),
        t(300),
    );
    assert!(
        lifecycle(&d).is_empty(),
        "a heartbeat that is back keeps the incident open for its window"
    );
    assert_eq!(
        evidence(&d),
        [("h{region=\"r\"}", false)],
        "but its evidence no longer holds"
    );
    assert!(beats(&mut e, 360..=840).is_empty());
    assert_eq!(closes(&e.tick(t(900))), ["h{region=\"r\"}"]);
}

/// A steady heartbeat of region `r`, a beat each minute over `secs`, with a
/// tick half-way between beats; every decision made meanwhile.
fn beats(e: &mut Engine, secs: std::ops::RangeInclusive<i64>) -> Vec<Decision> {
    let mut out = Vec::new();
    for at in secs.step_by(60) {
        let change = if at == 0 {
            Change::Fired
        } else {
            Change::Refreshed
        };
        let labels = [("region", "r"), ("severity", "x")];
        out.extend(e.on_event(&ev("Watchdog", &labels, change, at), t(at)));
        out.extend(e.tick(t(at + 30)));
    }
    out
}

fn heartbeat_engine() -> Engine {
    Engine::new(rules(&format!(
        "rules:\n{}",
        rule("h", "region", "10m", "{absent: {for: 2m}}", "")
    )))
}

#[test]
fn a_flapping_heartbeat_continues_one_incident() {
    let mut e = heartbeat_engine();
    assert!(beats(&mut e, 0..=0).is_empty());
    assert_eq!(opens(&e.tick(t(120))), ["h{region=\"r\"}"]);
    // Back at 300, silent again from 360: absent again at 480, inside the
    // window of the return, and back again at 600.
    assert_eq!(
        evidence(&beats(&mut e, 300..=360)),
        [("h{region=\"r\"}", false)]
    );
    let d = e.tick(t(480));
    assert!(lifecycle(&d).is_empty(), "no second incident at 480");
    assert_eq!(evidence(&d), [("h{region=\"r\"}", true)], "silent again");
    assert!(e.tick(t(599)).is_empty(), "no second incident at 599");
    // The window counts from the last return.
    assert!(lifecycle(&beats(&mut e, 600..=1140)).is_empty());
    assert_eq!(closes(&e.tick(t(1200))), ["h{region=\"r\"}"]);
    // Gone again after the close: a new incident, as it should be.
    assert_eq!(opens(&e.tick(t(1260))), ["h{region=\"r\"}"]);
}

#[test]
fn a_heartbeat_alertmanager_resolves_stays_absent_until_it_beats_again() {
    let mut e = heartbeat_engine();
    let labels = [("region", "r"), ("severity", "x")];
    assert!(beats(&mut e, 0..=0).is_empty());
    // Alertmanager gives up on the Watchdog and sends its resolve: the
    // silence still counts from the last beat, and the member never ages
    // out of the window.
    assert!(
        e.on_event(&ev("Watchdog", &labels, Change::Resolved, 100), t(100))
            .is_empty()
    );
    assert_eq!(opens(&e.tick(t(120))), ["h{region=\"r\"}"]);
    for at in [800, 3600, 7200] {
        assert!(e.tick(t(at)).is_empty(), "still absent at {at}");
    }
    // A new episode of the Watchdog: back; the incident closes a window later.
    assert_eq!(
        evidence(&e.on_event(&ev("Watchdog", &labels, Change::Fired, 7260), t(7260))),
        [("h{region=\"r\"}", false)],
        "back: the incident stays open for its window, on evidence that lapsed"
    );
    assert!(beats(&mut e, 7320..=7800).is_empty());
    assert_eq!(closes(&e.tick(t(7860))), ["h{region=\"r\"}"]);
}

#[test]
fn restore_keeps_an_open_heartbeat_incident_for_its_window() {
    let labels = [("region", "r"), ("severity", "x")];
    let events = vec![
        (ev("Watchdog", &labels, Change::Fired, 0), t(0)),
        (ev("Watchdog", &labels, Change::Refreshed, 300), t(300)),
    ];
    let open: HashSet<String> = ["h{region=\"r\"}".to_owned()].into();
    let mut e = heartbeat_engine();
    assert!(
        e.restore(&events, &open, t(330)).is_empty(),
        "continues silently"
    );
    assert!(beats(&mut e, 360..=840).is_empty());
    assert_eq!(closes(&e.tick(t(900))), ["h{region=\"r\"}"]);
    // Not open in the store: a heartbeat that beats is no evidence.
    let mut e = heartbeat_engine();
    assert!(e.restore(&events, &HashSet::new(), t(330)).is_empty());
}

#[test]
fn heartbeats_do_not_expire_their_silence_is_the_evidence() {
    let mut e = Engine::new(rules(
        "rules:\n  - name: hb\n    match: {labels: ['alertname=\"Watchdog\"']}\n    correlate:\n      group_by: [region]\n      window: 1m\n      when: {absent: {for: 2h}}\n    scenario: region_outage\n",
    ))
    .with_limits(EngineLimits {
        signal_ttl: std::time::Duration::from_secs(3600),
        ..EngineLimits::default()
    });
    e.on_event(&ev("Watchdog", &[("region", "r")], Change::Fired, 0), t(0));
    assert!(e.tick(t(3600)).is_empty());
    assert_eq!(opens(&e.tick(t(7200))), ["region_outage{region=\"r\"}"]);
    assert_eq!(e.take_bounded().expired, 0);
}

/// What the store keeps an exact `last_seen` for: a signal an absence rule
/// matches and counts as a heartbeat (by its `alert`, or every member
/// without one), and nothing else.
#[test]
fn heartbeats_are_what_an_absence_rule_matches_and_watches() {
    let set = rules(
        "rules:\n  - name: watchdog\n    match: {labels: ['region=~\".+\"']}\n    correlate: {group_by: [region], window: 10m, when: {absent: {for: 2m, alert: Watchdog}}}\n    scenario: region_outage\n  \
         - name: beats\n    match: {labels: ['job=\"beat\"']}\n    correlate: {group_by: [instance], window: 10m, when: {absent: {for: 1m}}}\n    scenario: service_failure\n  \
         - name: errors\n    match: {labels: ['severity=\"page\"']}\n    correlate: {group_by: [service], window: 10m, when: {count: 1}}\n    scenario: service_failure\n",
    );
    let beat = |name: &str, labels: &[(&str, &str)]| {
        let s = ev(name, labels, Change::Fired, 0).signal;
        set.watches_beat(&s.source, &s.name, &s.labels)
    };
    assert!(beat("Watchdog", &[("region", "r")]));
    assert!(!beat("Watchdog", &[]), "the rule does not match it");
    assert!(
        !beat("Other", &[("region", "r")]),
        "matched, not its heartbeat"
    );
    assert!(
        beat("Anything", &[("job", "beat")]),
        "every member is a beat"
    );
    assert!(!beat("Errors", &[("severity", "page")]), "no absence rule");
}
