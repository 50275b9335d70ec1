//! Evidence that still holds: only firing signals (and point events in
//! their window) open an incident or keep its evidence holding; resolved
//! ones keep an open incident open through the window, so a flap does not
//! open a second one, but they are not evidence (`count_resolved` says
//! otherwise for a rule that means to count recent flaps).

use super::tests::{PRECEDENCE, closes, ev, evidence, opens, rule, rules, t};
use super::*;

fn zone_rule(extra_when: &str) -> Arc<RuleSet> {
    rules(&format!(
        "rules:\n{}",
        rule(
            "z",
            "zone",
            "2m",
            &format!("{{distinct: {{service: 3}}{extra_when}}}"),
            ""
        )
    ))
}

fn svc(name: &str, change: Change, at: i64) -> SignalEvent {
    ev(
        "Down",
        &[("zone", "a"), ("service", name), ("severity", "x")],
        change,
        at,
    )
}

#[test]
fn resolved_signals_do_not_count_toward_opening() {
    let mut e = Engine::new(zone_rule(""));
    for (s, at) in [("auth", 0), ("order", 1)] {
        e.on_event(&svc(s, Change::Fired, at), t(at));
    }
    for (s, at) in [("auth", 30), ("order", 31)] {
        e.on_event(&svc(s, Change::Resolved, at), t(at));
    }
    // Inside the window of the two resolved ones: only one service fails now.
    let d = e.on_event(&svc("payment", Change::Fired, 100), t(100));
    assert!(
        opens(&d).is_empty(),
        "two recovered services are no zone failure: {d:?}"
    );
    // Two more fail: three firing services open it.
    e.on_event(&svc("notify", Change::Fired, 110), t(110));
    let d = e.on_event(&svc("product", Change::Fired, 111), t(111));
    assert_eq!(opens(&d), ["z{zone=\"a\"}"]);
}

#[test]
fn a_rule_that_counts_recent_flaps_says_so() {
    let mut e = Engine::new(zone_rule(", count_resolved: true"));
    for (s, at) in [("auth", 0), ("order", 1)] {
        e.on_event(&svc(s, Change::Fired, at), t(at));
        e.on_event(&svc(s, Change::Resolved, at + 30), t(at + 30));
    }
    let d = e.on_event(&svc("payment", Change::Fired, 100), t(100));
    assert_eq!(
        opens(&d),
        ["z{zone=\"a\"}"],
        "resolved ones count in their window"
    );
}

#[test]
fn evidence_lapses_and_returns_while_the_incident_stays_open() {
    let mut e = Engine::new(zone_rule(""));
    for (s, at) in [("auth", 0), ("order", 0), ("payment", 0)] {
        e.on_event(&svc(s, Change::Fired, at), t(at));
    }
    let key = "z{zone=\"a\"}";
    let d = e.on_event(&svc("auth", Change::Resolved, 10), t(10));
    assert_eq!(evidence(&d), [(key, false)], "two firing of three");
    assert!(closes(&d).is_empty(), "open through the window");
    let d = e.on_event(&svc("auth", Change::Fired, 20), t(20));
    assert_eq!(
        evidence(&d),
        [(key, true)],
        "the flap continues the same incident"
    );
    assert!(opens(&d).is_empty());
    e.on_event(&svc("auth", Change::Resolved, 30), t(30));
    assert!(
        e.tick(t(149)).is_empty(),
        "resolved members keep it open for the window"
    );
    assert_eq!(closes(&e.tick(t(150))), [key]);
}

#[test]
fn a_closed_parent_leaves_its_children_free_to_be_absorbed_again() {
    let mut e = Engine::new(rules(PRECEDENCE));
    let big = |change, at| ev("Big", &[("region", "r")], change, at);
    let small = ev(
        "Small",
        &[("region", "r"), ("service", "s")],
        Change::Fired,
        0,
    );
    e.on_event(&big(Change::Fired, 0), t(0));
    let d = e.on_event(&small, t(1));
    assert!(
        matches!(
            &d[..],
            [Decision::Open {
                parent: Some(_),
                ..
            }]
        ),
        "{d:?}"
    );
    e.on_event(&big(Change::Resolved, 10), t(10));
    assert_eq!(closes(&e.tick(t(310))), ["region_outage{region=\"r\"}"]);
    // The region fails again: the service incident, still open (its alert
    // fires), is absorbed by the new region incident.
    let d = e.on_event(&big(Change::Fired, 400), t(400));
    assert!(
        d.iter().any(|d| matches!(d, Decision::Absorb { key, .. }
            if key == "service_failure{region=\"r\",service=\"s\"}")),
        "{d:?}"
    );
}
