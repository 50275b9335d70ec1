//! The store's behaviour, identical on SQLite and PostgreSQL: every test
//! here runs against both (PostgreSQL at 127.0.0.1:5432 — `.ci/run` starts
//! it — in a database of its own, so tests run in parallel).

mod support;

use chrono::{DateTime, Duration, Utc};
use dr_reactor::incident::{EventNote, Incident, State};
use dr_reactor::plan::Plan;
use dr_reactor::signal::{Change, Labels, Signal, Status};
use dr_reactor::store::{Opened, Store, StoreError};

/// A fresh PostgreSQL database for one test.
async fn postgres() -> String {
    let admin = "postgres://postgres@127.0.0.1:5432/test";
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (start it; .ci/run does): {e}"));
    let name = format!("drr_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Both backends, each empty.
async fn stores() -> (Vec<(&'static str, Store)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let pg = Store::connect(&postgres().await).await.unwrap();
    (vec![("sqlite", sqlite), ("postgres", pg)], dir)
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn signal(fp: &str, status: Status, starts: i64, at: i64) -> Signal {
    Signal {
        source: "alertmanager".into(),
        fingerprint: fp.into(),
        name: "A".into(),
        labels: Labels::from([("alertname".to_string(), "A".to_string())]),
        annotations: Labels::new(),
        status,
        starts_at: t(starts),
        ends_at: (status == Status::Resolved).then(|| t(at)),
        received_at: t(at),
    }
}

fn incident(id: &str, key: &str) -> Incident {
    Incident {
        id: id.into(),
        rule: "r".into(),
        scenario: "s".into(),
        severity: "critical".into(),
        group_key: key.into(),
        group_labels: Labels::new(),
        state: State::Detected,
        parent_id: None,
        plan: Plan::default(),
        services: vec![],
        rto_deadline: None,
        approval_deadline: None,
        detected_at: t(0),
        updated_at: t(0),
        closed_at: None,
        version: 0,
    }
}

#[tokio::test]
async fn signal_changes_are_classified_the_same() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        let seq = [
            (signal("f1", Status::Firing, 0, 0), Change::Fired),
            (signal("f1", Status::Firing, 0, 10), Change::Refreshed),
            (signal("f1", Status::Resolved, 0, 20), Change::Resolved),
            (signal("f1", Status::Firing, 0, 25), Change::Ignored), // late re-send of the ended episode
            (signal("f1", Status::Firing, 30, 30), Change::Fired),  // a new episode
            (signal("f2", Status::Resolved, 0, 30), Change::Ignored),
        ];
        for (sig, want) in seq {
            assert_eq!(s.record_signals(&[sig]).await.unwrap(), [want], "{name}");
        }
        let recent = s.recent_signals(t(0)).await.unwrap();
        assert_eq!(
            recent.len(),
            1,
            "{name}: f1 firing; f2 was never seen firing"
        );
        assert_eq!(recent[0].status, Status::Firing);
    }
}

#[tokio::test]
async fn one_open_incident_per_key_and_version_checks() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        let note = EventNote::new("detected", "test", "x");
        let Opened::Created(a) = s.open_incident(&incident("a", "k"), &note).await.unwrap() else {
            panic!("{name}: first open creates")
        };
        let Opened::Existing(same) = s.open_incident(&incident("b", "k"), &note).await.unwrap()
        else {
            panic!("{name}: second open of the key finds the first")
        };
        assert_eq!(same.id, "a");

        let planned = Incident {
            state: State::Planned,
            ..a.clone()
        };
        let saved = s
            .update_incident(&a, &planned, t(1), &EventNote::new("planned", "test", ""))
            .await
            .unwrap();
        assert_eq!(saved.version, 2);
        // A writer holding the old version loses, and writes nothing.
        let stale = s
            .update_incident(&a, &planned, t(2), &EventNote::new("planned", "test", ""))
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{name}");
        let kinds: Vec<String> = s
            .events("a")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["detected", "planned"], "{name}");

        // Closed, the key is free again.
        let closed = Incident {
            closed_at: Some(t(3)),
            ..saved.clone()
        };
        s.update_incident(
            &saved,
            &closed,
            t(3),
            &EventNote::new("evidence_resolved", "test", ""),
        )
        .await
        .unwrap();
        assert!(
            matches!(
                s.open_incident(&incident("c", "k"), &note).await.unwrap(),
                Opened::Created(_)
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn queries_the_lifecycle_needs() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        let note = EventNote::new("detected", "test", "x");
        let Opened::Created(a) = s.open_incident(&incident("a", "k1"), &note).await.unwrap() else {
            panic!()
        };
        let awaiting = Incident {
            state: State::Planned,
            ..a.clone()
        };
        let a = s
            .update_incident(&a, &awaiting, t(1), &EventNote::new("planned", "t", ""))
            .await
            .unwrap();
        s.append_event("a", t(1), &EventNote::new("admitted", "t", ""))
            .await
            .unwrap();
        let waiting = Incident {
            state: State::AwaitingApproval,
            approval_deadline: Some(t(100)),
            ..a.clone()
        };
        s.update_incident(
            &a,
            &waiting,
            t(2),
            &EventNote::new("approval_requested", "t", ""),
        )
        .await
        .unwrap();

        assert!(s.approvals_due(t(99)).await.unwrap().is_empty(), "{name}");
        assert_eq!(s.approvals_due(t(100)).await.unwrap().len(), 1, "{name}");
        let admitted = s.admitted_since(t(0)).await.unwrap();
        assert_eq!(
            admitted,
            vec![("r".to_string(), "k1".to_string(), t(1))],
            "{name}"
        );
        assert!(
            s.admitted_since(t(0) + Duration::seconds(2))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.active_count("r").await.unwrap(), 0);
        assert_eq!(
            s.incidents_in(&[State::AwaitingApproval])
                .await
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        assert_eq!(
            s.open_counts().await.unwrap(),
            vec![("s".to_string(), 1)],
            "{name}"
        );
    }
}

/// The whole service on PostgreSQL: an incident from real Alertmanager
/// payloads, kept across a restart, with no duplicate on re-send.
#[tokio::test]
async fn the_service_runs_on_postgres() {
    let url = postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config_text(dir.path(), "");
    let cfg = cfg.replace(
        &format!("sqlite://{}", dir.path().join("dr-reactor.db").display()),
        &url,
    );
    assert!(cfg.contains("postgres://"), "{cfg}");
    let az = || {
        support::payload(vec![
            support::pod_alert("firing", "auth", "ap-northeast-2a"),
            support::pod_alert("firing", "order", "ap-northeast-2a"),
            support::pod_alert("firing", "payment", "ap-northeast-2a"),
        ])
    };
    let az_incidents = |list: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        list.into_iter()
            .filter(|i| i["scenario"] == "az_failure")
            .collect()
    };
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    srv.post(&az()).await;
    srv.wait_for("AZ incident on postgres", || async {
        az_incidents(srv.incidents().await)
            .first()
            .is_some_and(|i| i["state"] == "suppressed")
    })
    .await;
    let id = az_incidents(srv.incidents().await)[0]["id"].clone();
    srv.stop().await;

    let srv = support::Server::start_with(dir.path(), &cfg).await;
    srv.post(&az()).await;
    srv.wait_processed(3).await;
    let list = az_incidents(srv.incidents().await);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(srv.get("/readyz").await["store"]["ok"], true);
    srv.stop().await;
}
