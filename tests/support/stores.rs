//! Stores for tests that run on both backends: SQLite in a temp dir and a
//! database of its own on the PostgreSQL at 127.0.0.1:5432.

use chrono::{DateTime, Utc};
use dr_reactor::incident::{Incident, State};
use dr_reactor::plan::Plan;
use dr_reactor::signal::{Labels, Signal, Status};
use dr_reactor::store::Store;

/// Both backends, each empty.
pub async fn stores() -> (Vec<(&'static str, Store)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let pg = Store::connect(&super::postgres_database().await)
        .await
        .unwrap();
    (vec![("sqlite", sqlite), ("postgres", pg)], dir)
}

pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

pub fn signal(fp: &str, status: Status, starts: i64, at: i64) -> Signal {
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

pub fn incident(id: &str, key: &str) -> Incident {
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
        drill: false,
        failback_of: None,
    }
}
