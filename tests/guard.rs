//! The guard in the lifecycle, on a virtual clock: the shipped AZ rule
//! allows one failover per zone per hour; a second failure of the same zone
//! inside the hour is held back (`suppressed`, with the reason), another
//! zone is not, and the next hour is.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dr_reactor::rules::RuleSet;
use dr_reactor::rulestest::InputSignal;
use dr_reactor::signal::{Labels, Status};
use dr_reactor::simulate::Simulation;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn pod(service: &str, zone: &str, status: Status) -> InputSignal {
    let labels: Labels = [
        ("region", "ap-northeast-2"),
        ("zone", zone),
        ("service", service),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    InputSignal {
        at: Duration::ZERO,
        name: "KubePodNotReady".into(),
        labels,
        status,
        source: "alertmanager".into(),
        instant: false,
        every: None,
        until: None,
    }
}

async fn zone_fails(sim: &mut Simulation, zone: &str, status: Status) {
    let now = sim.now();
    let signals = ["auth", "order", "payment"]
        .iter()
        .map(|s| pod(s, zone, status).to_signal(now))
        .collect();
    sim.receive(signals).await.unwrap();
}

async fn az_incidents(sim: &Simulation) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for (e, key) in sim.events().await.unwrap() {
        if key.starts_with("az_failure") && e.kind == "suppressed" {
            out.push((
                key,
                e.reason.clone(),
                e.data
                    .get("limit")
                    .and_then(|l| l.as_str())
                    .map(String::from),
            ));
        }
    }
    out
}

#[tokio::test]
async fn second_failover_of_a_zone_within_the_hour_is_held() {
    let rules =
        Arc::new(RuleSet::load(&[repo("rules")], Some(&repo("config/services.yaml"))).unwrap());
    let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut sim = Simulation::new(rules, t0, Duration::from_secs(5))
        .await
        .unwrap();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);

    zone_fails(&mut sim, "ap-northeast-2a", Status::Firing).await;
    sim.advance_to(at(60)).await.unwrap();
    zone_fails(&mut sim, "ap-northeast-2a", Status::Resolved).await;
    sim.advance_to(at(600)).await.unwrap();
    zone_fails(&mut sim, "ap-northeast-2a", Status::Firing).await; // again, 10 minutes later
    zone_fails(&mut sim, "ap-northeast-2b", Status::Firing).await; // another zone
    sim.advance_to(at(660)).await.unwrap();
    zone_fails(&mut sim, "ap-northeast-2a", Status::Resolved).await;
    sim.advance_to(at(3700)).await.unwrap();
    zone_fails(&mut sim, "ap-northeast-2a", Status::Firing).await; // the next hour
    // A zone failure waits out its hold (a region outage could absorb it)
    // before the guard is asked.
    sim.advance_to(at(3800)).await.unwrap();

    let got = az_incidents(&sim).await;
    let a = "az_failure{region=\"ap-northeast-2\",zone=\"ap-northeast-2a\"}";
    let b = "az_failure{region=\"ap-northeast-2\",zone=\"ap-northeast-2b\"}";
    let dry = "shadow: global dispatch.dry_run is on".to_owned();
    assert_eq!(
        got,
        vec![
            (a.to_owned(), dry.clone(), None),
            (
                a.to_owned(),
                "rate limit: 1 per 1h for this target".to_owned(),
                Some("per_target".to_owned())
            ),
            (b.to_owned(), dry.clone(), None),
            (a.to_owned(), dry, None),
        ]
    );
}
