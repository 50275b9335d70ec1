//! Retention on both backends: closed incidents go (with their events and
//! signal links) after the incident retention; signals go after the signal
//! retention unless an open incident holds them; nothing else goes.

mod support;

use chrono::Duration;
use dr_reactor::incident::{EventNote, Incident, State};
use dr_reactor::signal::Status;
use dr_reactor::store::{Opened, Store};
use support::stores::{incident, signal, stores, t};

async fn open(s: &Store, id: &str, key: &str, signals: &[String]) -> Incident {
    let note = EventNote::new("detected", "test", "");
    let Opened::Created(inc) = s.open_incident(&incident(id, key), &note).await.unwrap() else {
        panic!("created");
    };
    s.attach_signals(&inc.id, signals, t(0)).await.unwrap();
    inc
}

async fn close(s: &Store, inc: &Incident, at: i64, state: State) {
    let closed = Incident {
        closed_at: Some(t(at)),
        state,
        ..inc.clone()
    };
    s.update_incident(
        inc,
        &closed,
        t(at),
        &EventNote::new("evidence_resolved", "test", ""),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn retention_forgets_only_what_it_may() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        // Signals last seen at 0 (old) and at 10,000 (recent).
        let old: Vec<_> = (0..3)
            .map(|i| signal(&format!("old{i}"), Status::Firing, 0, 0))
            .collect();
        s.record_signals(&old).await.unwrap();
        s.record_signals(&[signal("new", Status::Firing, 10_000, 10_000)])
            .await
            .unwrap();
        let ids: Vec<String> = old.iter().map(|s| s.id()).collect();
        // An old closed incident with old0; an open one holding old1.
        let gone = open(&s, "gone", "k1", &ids[..1]).await;
        close(&s, &gone, 100, State::Cancelled).await;
        // Closed as long ago, but its plan still runs: not over.
        let running = open(&s, "running", "k4", &[]).await;
        close(&s, &running, 100, State::Running).await;
        let kept = open(&s, "kept", "k2", &ids[1..2]).await;
        // A recently closed one.
        let recent = open(&s, "recent", "k3", &[]).await;
        close(&s, &recent, 9_000, State::Succeeded).await;

        // Incidents closed before 5,000 and signals seen before 5,000 go.
        let cutoff = t(5_000);
        assert_eq!(s.prune_incidents(cutoff, 500).await.unwrap(), 1, "{name}");
        assert!(s.incident("gone").await.unwrap().is_none(), "{name}");
        assert!(s.events("gone").await.unwrap().is_empty(), "{name}");
        assert!(s.incident("recent").await.unwrap().is_some(), "{name}");
        assert!(s.incident("running").await.unwrap().is_some(), "{name}");
        assert_eq!(
            s.prune_signals(cutoff, 500).await.unwrap(),
            2,
            "{name}: old0, old2"
        );
        assert!(s.signal(&ids[0]).await.unwrap().is_none(), "{name}");
        assert!(
            s.signal(&ids[1]).await.unwrap().is_some(),
            "{name}: held by an open incident"
        );
        assert_eq!(
            s.incident_signals(&kept.id).await.unwrap().len(),
            1,
            "{name}"
        );
        assert!(
            s.signal("alertmanager:new").await.unwrap().is_some(),
            "{name}"
        );
        // Batches: nothing left to delete.
        assert_eq!(s.prune_incidents(cutoff, 500).await.unwrap(), 0, "{name}");
        assert_eq!(
            s.prune_signals(cutoff + Duration::zero(), 1).await.unwrap(),
            0,
            "{name}"
        );
    }
}
