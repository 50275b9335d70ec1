//! The store's behaviour, identical on SQLite and PostgreSQL: every test
//! here runs against both (PostgreSQL at 127.0.0.1:5432 — `.ci/run` starts
//! it — in a database of its own, so tests run in parallel).

mod support;

use chrono::{DateTime, Duration, Utc};
use dr_reactor::incident::{EventNote, Incident, State};
use dr_reactor::signal::{Change, Labels, Signal, Status};
use dr_reactor::store::{Opened, Store, StoreError};
use support::stores::{incident, signal, stores, t};

/// The kinds of an incident's events, in order.
async fn event_kinds(s: &Store, incident: &str) -> Vec<String> {
    s.events(incident)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
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
        assert_eq!(recent[0].0.status, Status::Firing);
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
        let kinds = event_kinds(&s, "a").await;
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
        let concurrent = [State::AwaitingApproval, State::Approved, State::Running];
        assert_eq!(s.count_in("r", false, &concurrent, "").await.unwrap(), 1);
        assert_eq!(s.count_in("r", false, &concurrent, "a").await.unwrap(), 0);
        assert_eq!(
            s.count_in("r", false, &[State::Running], "").await.unwrap(),
            0
        );
        assert_eq!(
            s.count_in("r", true, &concurrent, "").await.unwrap(),
            0,
            "a real incident takes no drill's room"
        );
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
            vec![("s".to_string(), false, 1)],
            "{name}"
        );
    }
}

/// The failback queries on both backends: a succeeded failover whose plan
/// names a failback is found until its failback exists, and only one can
/// exist; a heartbeat beats while a recent firing signal of its name and
/// label was received.
#[tokio::test]
async fn failback_queries_on_both_backends() {
    use dr_reactor::plan::{Action, Step};
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        let step = |failback: Option<&str>| Step {
            name: "promote".into(),
            service: Some("db".into()),
            action: Action::Ssm {
                document: "DR-Promote".into(),
                document_version: None,
                region: "eu-central-1".into(),
                parameters: Default::default(),
            },
            idempotency_key: "k".into(),
            timeout_secs: None,
            record: false,
            failback: failback.map(str::to_owned),
        };
        let note = EventNote::new("detected", "test", "x");
        for (id, failback) in [("over", Some("fail-back")), ("restart", None)] {
            let Opened::Created(inc) = s
                .open_incident(&incident(id, &format!("k-{id}")), &note)
                .await
                .unwrap()
            else {
                panic!()
            };
            let done = Incident {
                state: State::Succeeded,
                plan: dr_reactor::plan::Plan {
                    steps: vec![step(failback)],
                    continue_on_failure: false,
                },
                ..inc.clone()
            };
            s.update_incident(&inc, &done, t(10), &EventNote::new("succeeded", "t", ""))
                .await
                .unwrap();
        }
        let found: Vec<String> = s
            .succeeded_without_failback(t(0))
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(found, ["over"], "{name}: only plans with a failback");
        assert!(
            s.succeeded_without_failback(t(11))
                .await
                .unwrap()
                .is_empty()
        );

        let back = Incident {
            failback_of: Some("over".into()),
            ..incident("back", "failback:over")
        };
        assert!(matches!(
            s.open_incident(&back, &note).await.unwrap(),
            Opened::Created(_)
        ));
        let again = Incident {
            id: "back-2".into(),
            group_key: "failback:over-2".into(),
            ..back.clone()
        };
        let Opened::Existing(existing) = s.open_incident(&again, &note).await.unwrap() else {
            panic!("{name}: a second failback of one failover")
        };
        assert_eq!(existing.id, "back", "{name}");
        assert_eq!(
            s.failback_for("over").await.unwrap().map(|i| i.failback_of),
            Some(Some("over".to_string())),
            "{name}"
        );
        assert!(s.succeeded_without_failback(t(0)).await.unwrap().is_empty());

        let mut beat = signal("hb", Status::Firing, 0, 20);
        beat.name = "Watchdog".into();
        beat.labels = Labels::from([
            ("alertname".to_string(), "Watchdog".to_string()),
            ("region".to_string(), "eu-west-1".to_string()),
        ]);
        s.record_signals(&[beat]).await.unwrap();
        assert!(
            s.beating("Watchdog", "region", "eu-west-1", t(19))
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !s.beating("Watchdog", "region", "eu-west-1", t(21))
                .await
                .unwrap(),
            "{name}: too old"
        );
        assert!(
            !s.beating("Watchdog", "region", "us-east-1", t(0))
                .await
                .unwrap(),
            "{name}: another region"
        );
        assert!(
            !s.beating("Other", "region", "eu-west-1", t(0))
                .await
                .unwrap(),
            "{name}"
        );
    }
}

/// Recording a batch is the same as recording its signals one by one:
/// repeats of one signal inside a batch (fired, re-sent, resolved, fired
/// again) and batches longer than one multi-row statement included.
#[tokio::test]
async fn a_batch_records_like_its_signals_one_by_one() {
    let (batched, _a) = stores().await;
    let (single, _b) = stores().await;
    let mut sequence = Vec::new();
    for i in 0..330i64 {
        let fp = format!("s{}", (i * 7) % 45);
        let status = if i % 5 == 3 {
            Status::Resolved
        } else {
            Status::Firing
        };
        sequence.push(signal(&fp, status, i / 90, i));
    }
    for ((name, b), (_, s)) in batched.iter().zip(&single) {
        let mut changes = b.record_signals(&sequence[..250]).await.unwrap();
        changes.extend(b.record_signals(&sequence[250..]).await.unwrap());
        let mut expected = Vec::new();
        for sig in &sequence {
            expected.extend(s.record_signals(std::slice::from_ref(sig)).await.unwrap());
        }
        assert_eq!(changes, expected, "{name}");
        assert!(changes.contains(&Change::Refreshed) && changes.contains(&Change::Ignored));
        let rows = |v: Vec<(Signal, DateTime<Utc>)>| {
            let mut v: Vec<_> = v
                .into_iter()
                .map(|(s, last_seen)| {
                    (
                        s.fingerprint,
                        s.status,
                        s.starts_at,
                        s.ends_at,
                        s.received_at,
                        last_seen,
                    )
                })
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        assert_eq!(
            rows(b.recent_signals(t(0)).await.unwrap()),
            rows(s.recent_signals(t(0)).await.unwrap()),
            "{name}"
        );
        assert_eq!(
            b.signal_log_after(0, 10_000).await.unwrap().len(),
            s.signal_log_after(0, 10_000).await.unwrap().len(),
            "{name}: one log entry per change either way"
        );
    }
}

/// The lease and its fencing token, on both backends: one holder at a
/// time, a takeover only after expiry, and every write of a deposed holder
/// refused, including the one that would record a dispatch.
#[tokio::test]
async fn lease_fences_a_deposed_leader() {
    let (stores, _dir) = stores().await;
    let ttl = std::time::Duration::from_millis(300);
    for (name, s) in stores {
        let a = s.acquire_lease("a", ttl).await.unwrap().expect(name);
        assert_eq!(
            s.acquire_lease("b", ttl).await.unwrap(),
            None,
            "{name}: held"
        );
        let fence_a = dr_reactor::store::Fence {
            holder: "a".into(),
            token: a,
        };
        let leader_a = s.fenced(fence_a.clone());
        let Opened::Created(inc) = leader_a
            .open_incident(&incident("x", "k"), &EventNote::new("detected", "t", ""))
            .await
            .unwrap()
        else {
            panic!("{name}")
        };
        assert!(s.renew_lease(&fence_a, ttl).await.unwrap(), "{name}");

        // a stalls past its lease; b takes over with a higher token.
        tokio::time::sleep(ttl * 2).await;
        let b = s.acquire_lease("b", ttl).await.unwrap().expect(name);
        assert!(b > a, "{name}: tokens only grow");
        let lease = s.lease().await.unwrap().unwrap();
        assert_eq!((lease.holder.as_str(), lease.token), ("b", b), "{name}");

        let dispatching = EventNote::new("step_dispatching", "t", "");
        let err = leader_a
            .append_event(&inc.id, t(1), &dispatching)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Fenced { token, .. } if token == a),
            "{name}: {err}"
        );
        let planned = Incident {
            state: State::Planned,
            ..inc.clone()
        };
        assert!(matches!(
            leader_a
                .update_incident(&inc, &planned, t(1), &EventNote::new("planned", "t", ""))
                .await,
            Err(StoreError::Fenced { .. })
        ));
        assert!(
            !s.renew_lease(&fence_a, ttl).await.unwrap(),
            "{name}: a lost it"
        );
        let leader_b = s.fenced(dr_reactor::store::Fence {
            holder: "b".into(),
            token: b,
        });
        leader_b
            .append_event(&inc.id, t(1), &dispatching)
            .await
            .unwrap();
        let kinds = event_kinds(&s, &inc.id).await;
        assert_eq!(
            kinds,
            ["detected", "step_dispatching"],
            "{name}: only b's write landed"
        );

        // Released on shutdown: the next replica need not wait out the TTL.
        s.release_lease(&dr_reactor::store::Fence {
            holder: "b".into(),
            token: b,
        })
        .await
        .unwrap();
        assert_eq!(
            s.acquire_lease("c", ttl).await.unwrap(),
            Some(b + 1),
            "{name}"
        );
    }
}

/// The signal log (PostgreSQL): every change but `ignored`, in commit
/// order, readable from a cursor, pruned once consumed.
#[tokio::test]
async fn signal_log_carries_changes_in_order() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        let changes = s
            .record_signals(&[
                signal("f1", Status::Firing, 0, 0),
                signal("f2", Status::Firing, 0, 0),
                signal("f1", Status::Firing, 0, 1),
                signal("zz", Status::Resolved, 0, 1),
                signal("f2", Status::Resolved, 0, 2),
            ])
            .await
            .unwrap();
        assert_eq!(changes[3], Change::Ignored, "{name}");
        let log = s.signal_log_after(0, 100).await.unwrap();
        if !s.logs_signals() {
            assert!(log.is_empty(), "{name}: one process, no log");
            continue;
        }
        let seen: Vec<(String, Change)> = log
            .iter()
            .map(|(_, e)| (e.signal.fingerprint.clone(), e.change))
            .collect();
        assert_eq!(
            seen,
            [
                ("f1".to_string(), Change::Fired),
                ("f2".to_string(), Change::Fired),
                ("f1".to_string(), Change::Refreshed),
                ("f2".to_string(), Change::Resolved),
            ],
            "{name}"
        );
        let (third, _) = log[2];
        assert_eq!(s.signal_log_after(third, 100).await.unwrap().len(), 1);
        assert_eq!(s.signal_log_head().await.unwrap(), log[3].0);
        let pruned = s.prune_signal_log(third, t(2)).await.unwrap();
        assert_eq!(pruned, 3, "{name}: consumed and old enough");
    }
}

/// A re-send that changes nothing but `last_seen` within a second of the
/// stored one is not written unless its `last_seen` must be exact (a
/// heartbeat); it is still a refresh, and a signal log entry.
#[tokio::test]
async fn re_sends_keep_last_seen_to_a_second_unless_exact() {
    let (stores, _dir) = stores().await;
    let ms = |n: i64| t(0) + Duration::milliseconds(n);
    let at = |fp: &str, received: i64, summary: &str| Signal {
        received_at: ms(received),
        annotations: Labels::from([("summary".to_string(), summary.to_string())]),
        ..signal(fp, Status::Firing, 0, 0)
    };
    let last_seen = |recent: Vec<(Signal, DateTime<Utc>)>, fp: &str| {
        let (s, seen) = recent
            .into_iter()
            .find(|(s, _)| s.fingerprint == fp)
            .unwrap();
        (seen, s.annotations["summary"].clone())
    };
    for (name, s) in stores {
        let beat = |sig: &Signal| sig.fingerprint == "beat";
        let mut changes = Vec::new();
        for (received, summary) in [(0, "a"), (400, "a"), (999, "a"), (1000, "a"), (1200, "b")] {
            let batch = [at("alert", received, summary), at("beat", received, "a")];
            changes.extend(s.record_signals_within(&batch, &beat).await.unwrap());
            let recent = s.recent_signals(t(-1)).await.unwrap();
            let want = match received {
                400 | 999 => (ms(0), "a".to_string()),
                _ => (ms(received), summary.to_string()),
            };
            assert_eq!(
                last_seen(recent.clone(), "alert"),
                want,
                "{name} at {received} ms"
            );
            assert_eq!(
                last_seen(recent, "beat"),
                (ms(received), "a".to_string()),
                "{name}: a heartbeat is always exact"
            );
        }
        assert_eq!(changes[0], Change::Fired, "{name}");
        assert!(
            changes[2..].iter().all(|c| *c == Change::Refreshed),
            "{name}: {changes:?}"
        );
        // Twice in one batch, the second a few milliseconds on: one write.
        let twice = [at("alert", 2500, "b"), at("alert", 2510, "b")];
        s.record_signals_within(&twice, &beat).await.unwrap();
        let recent = s.recent_signals(t(-1)).await.unwrap();
        assert_eq!(last_seen(recent, "alert").0, ms(2500), "{name}");
        // New, then re-sent in the same batch with other annotations: both
        // written.
        let changed = [at("new", 3000, "a"), at("new", 3100, "b")];
        s.record_signals_within(&changed, &beat).await.unwrap();
        let recent = s.recent_signals(t(-1)).await.unwrap();
        assert_eq!(
            last_seen(recent, "new"),
            (ms(3100), "b".to_string()),
            "{name}"
        );
        if s.logs_signals() {
            assert_eq!(
                s.signal_log_after(0, 100).await.unwrap().len(),
                14,
                "{name}: every change is logged for the engine, written or not"
            );
        }
    }
}

/// The whole service on PostgreSQL: an incident from real Alertmanager
/// payloads, kept across a restart, with no duplicate on re-send.
#[tokio::test]
async fn the_service_runs_on_postgres() {
    let url = support::postgres_database().await;
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
    // Signals recorded before this process leads reach its engine through
    // the restore, which does not count them as processed: wait until it
    // acts as leader (lease won, engine rebuilt).
    srv.wait_for("leadership", || async {
        srv.metric("dr_reactor_leader").await == 1.0
    })
    .await;
    srv.post(&az()).await;
    srv.wait_processed(3).await;
    let list = az_incidents(srv.incidents().await);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(srv.get("/readyz").await["store"]["ok"], true);
    srv.stop().await;
}

/// A server whose one rule opens a region outage when the region's Watchdog
/// has been silent for `absent_for`.
fn heartbeat_config(dir: &std::path::Path, window: &str, absent_for: &str) -> String {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/r.yaml"),
        format!(
            "rules:\n  - name: heartbeat\n    match: {{labels: ['alertname=\"Watchdog\"']}}\n    \
             correlate: {{group_by: [region], window: {window}, when: {{absent: {{for: {absent_for}, alert: Watchdog}}}}}}\n    \
             scenario: region_outage\n"
        ),
    )
    .unwrap();
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  \
         evaluation_interval: 100ms\n  watch: false\nwebhook:\n  auth:\n    bearer_token: {token}\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        token = support::TOKEN,
    )
}

fn watchdog(status: &str) -> serde_json::Value {
    support::payload(vec![support::alert(
        status,
        &[("alertname", "Watchdog"), ("region", "ap-northeast-2")],
    )])
}

/// A heartbeat that kept arriving is alive after a restart (or a failover):
/// the rebuilt engine counts its silence from its last re-send, not from
/// when it first arrived.
#[tokio::test]
async fn a_live_heartbeat_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = heartbeat_config(dir.path(), "1m", "2s");
    let watchdog = || watchdog("firing");
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    // Alive for longer than the absence threshold, re-sent all along.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        srv.post(&watchdog()).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    srv.stop().await;
    // The restore evaluates every rule before the server answers: a
    // wrongly silent heartbeat would have opened its outage by now.
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    srv.post(&watchdog()).await;
    srv.wait_processed(1).await;
    assert!(
        srv.incidents().await.is_empty(),
        "a live heartbeat opened {:#?}",
        srv.incidents().await
    );
    srv.stop().await;
}

/// Through the webhook: a re-send of an ordinary alert within a second of
/// the last stored one leaves its `last_seen`; the heartbeat a rule
/// watches, sent alongside, is always moved.
#[tokio::test]
async fn the_webhook_keeps_heartbeats_last_seen_exact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = heartbeat_config(dir.path(), "1m", "1m");
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    let both = support::payload(vec![
        support::alert(
            "firing",
            &[("alertname", "Watchdog"), ("region", "ap-northeast-2")],
        ),
        support::alert(
            "firing",
            &[("alertname", "Other"), ("region", "ap-northeast-2")],
        ),
    ]);
    srv.post(&both).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    srv.post(&both).await;
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let times = |name: &'static str| {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT received_at, last_seen FROM signals WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&pool)
    };
    let (beat_first, beat_last) = times("Watchdog").await.unwrap();
    let (first, last) = times("Other").await.unwrap();
    assert!(beat_last > beat_first, "the heartbeat's re-send moved it");
    // Both alerts of a request are received together: whether the second
    // request came within the second decides, not a guess at the timing.
    if beat_last - first < 1000 {
        assert_eq!(last, first, "a re-send within the second is not written");
    } else {
        assert_eq!(last, beat_last, "a re-send past the second is written");
    }
    pool.close().await;
    srv.stop().await;
}

/// A region whose Watchdog Alertmanager resolved (it stopped being re-sent)
/// is still down after a restart past the rule's window: the resolve does
/// not move the heartbeat's last beat, and the restore keeps the heartbeat
/// that the open incident holds, so the incident stays open.
#[tokio::test]
async fn a_heartbeat_resolved_by_alertmanager_keeps_its_outage_open_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = heartbeat_config(dir.path(), "1s", "1s");
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    srv.post(&watchdog("firing")).await;
    srv.wait_for("the region outage", || async {
        !srv.incidents().await.is_empty()
    })
    .await;
    let sent = tokio::time::Instant::now();
    srv.post(&watchdog("resolved")).await;
    srv.wait_processed(2).await;
    srv.stop().await;
    // Past the window of the resolve, and of any re-send it could be taken for.
    tokio::time::sleep_until(sent + std::time::Duration::from_millis(2500)).await;
    let srv = support::Server::start_with(dir.path(), &cfg).await;
    let incidents = srv.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert!(incidents[0]["closed_at"].is_null(), "{:#}", incidents[0]);
    srv.stop().await;
}

/// Pages of incidents (newest first, by a `before` position) and of one
/// incident's events (by sequence number) neither overlap nor skip, on both
/// backends; incidents detected at the same instant are told apart by id.
#[tokio::test]
async fn incidents_and_events_page_without_gaps() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        for (i, at) in [0, 1, 1, 2, 3].iter().enumerate() {
            let inc = Incident {
                detected_at: t(*at),
                ..incident(&format!("i{i}"), &format!("k{i}"))
            };
            s.open_incident(&inc, &EventNote::new("detected", "t", ""))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .incidents(
                    None,
                    before
                        .as_ref()
                        .map(|(at, id): &(_, String)| (*at, id.as_str())),
                    2,
                )
                .await
                .unwrap();
            seen.extend(page.iter().map(|i| i.id.clone()));
            match page.last() {
                Some(last) if page.len() == 2 => before = Some((last.detected_at, last.id.clone())),
                _ => break,
            }
        }
        assert_eq!(seen, ["i4", "i3", "i2", "i1", "i0"], "{name}");

        for n in 0..5 {
            s.append_event("i0", t(n), &EventNote::new("note", "t", ""))
                .await
                .unwrap();
        }
        let first = s.events_page("i0", 0, 4).await.unwrap();
        assert_eq!(first.len(), 4, "{name}");
        let rest = s.events_page("i0", first[3].seq, 4).await.unwrap();
        assert_eq!(
            rest.len(),
            2,
            "{name}: 6 events in all (detected + 5 notes)"
        );
        assert!(rest[0].seq > first[3].seq);
        assert!(
            s.events_page("i0", rest[1].seq, 4)
                .await
                .unwrap()
                .is_empty()
        );

        let sigs: Vec<Signal> = (0..5)
            .map(|i| signal(&format!("fp{i}"), Status::Firing, 0, 0))
            .collect();
        s.record_signals(&sigs).await.unwrap();
        for (i, at) in [0, 1, 1, 1, 2].iter().enumerate() {
            s.attach_signals("i0", &[sigs[i].id()], t(*at))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after: Option<(DateTime<Utc>, String)> = None;
        loop {
            let position = after.as_ref().map(|(at, id)| (*at, id.as_str()));
            let (page, last) = s.incident_signals_page("i0", position, 2).await.unwrap();
            seen.extend(page.iter().map(|g| g.fingerprint.clone()));
            if page.len() < 2 {
                break;
            }
            after = last;
        }
        seen.sort();
        assert_eq!(
            seen,
            ["fp0", "fp1", "fp2", "fp3", "fp4"],
            "{name}: each once"
        );
        assert_eq!(s.incident_signals("i0").await.unwrap().len(), 5, "{name}");
    }
}

/// A Slack signature is accepted once: again on the same handle, on another
/// handle to the same store (another replica, or this one after a
/// restart), refused; forgotten once older than the window.
#[tokio::test]
async fn slack_signatures_are_seen_once_by_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let urls = [
        format!("sqlite://{}", dir.path().join("s.db").display()),
        support::postgres_database().await,
    ];
    let window = Duration::minutes(5);
    for url in urls {
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();
        assert!(
            a.first_sighting("v0=aa", t(0), window).await.unwrap(),
            "{url}"
        );
        assert!(
            !a.first_sighting("v0=aa", t(1), window).await.unwrap(),
            "{url}"
        );
        assert!(
            !b.first_sighting("v0=aa", t(2), window).await.unwrap(),
            "{url}"
        );
        assert!(
            b.first_sighting("v0=bb", t(2), window).await.unwrap(),
            "{url}"
        );
        // Past the window the old sighting is pruned (Slack's timestamp
        // check refuses such a request before it gets here).
        assert!(
            b.first_sighting("v0=aa", t(301), window).await.unwrap(),
            "{url}"
        );
        a.close().await;
        b.close().await;
    }
}

/// The audit file: a batch of events costs one sync (group commit), every
/// line is there after the change returns, a reopen (logrotate) starts a new
/// file, and a failing disk is counted, not fatal; on both backends.
#[tokio::test]
async fn audit_file_syncs_in_groups_reopens_and_counts_errors() {
    let (stores, dir) = stores().await;
    for (name, s) in stores {
        let metrics = dr_reactor::telemetry::Metrics::new();
        let path = dir.path().join(format!("{name}/audit.jsonl"));
        let s = s.with_audit_file(&path, &metrics).unwrap();
        s.open_incident(&incident("a", "k"), &EventNote::new("detected", "t", ""))
            .await
            .unwrap();
        let batch: Vec<_> = (0..20)
            .map(|i| {
                (
                    "a".to_string(),
                    vec![],
                    t(i),
                    EventNote::new("note", "t", ""),
                )
            })
            .collect();
        let syncs = metrics.audit_syncs.get();
        s.attach_with_events(&batch).await.unwrap();
        assert_eq!(
            metrics.audit_syncs.get(),
            syncs + 1,
            "{name}: one sync for 20 events"
        );
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(
            lines, 21,
            "{name}: every line written before the change returned"
        );

        std::fs::rename(&path, path.with_extension("1")).unwrap();
        s.reopen_audit_file();
        s.append_event("a", t(30), &EventNote::new("after_rotation", "t", ""))
            .await
            .unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 1, "{name}");
        assert!(new.contains("after_rotation"));
        assert_eq!(metrics.audit_write_errors.get(), 0, "{name}");
    }

    // A disk that refuses writes: counted and logged, the event still
    // recorded in the table.
    let metrics = dr_reactor::telemetry::Metrics::new();
    let s = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("full.db").display()
    ))
    .await
    .unwrap()
    .with_audit_file(std::path::Path::new("/dev/full"), &metrics)
    .unwrap();
    s.open_incident(&incident("b", "k"), &EventNote::new("detected", "t", ""))
        .await
        .unwrap();
    assert!(metrics.audit_write_errors.get() >= 1);
    assert!(
        metrics
            .render()
            .contains("dr_reactor_audit_write_errors_total")
    );
    assert_eq!(s.events("b").await.unwrap().len(), 1);
}

/// A storm's batch of evidence, on both backends: links and notes for many
/// incidents in one transaction, across several multi-row statements, and
/// an incident met twice in the batch keeps both notes in order.
#[tokio::test]
async fn a_batch_of_evidence_links_and_notes_many_incidents() {
    let (stores, _dir) = stores().await;
    for (name, s) in stores {
        for id in ["a", "b", "c"] {
            s.open_incident(
                &incident(id, &format!("k{id}")),
                &EventNote::new("detected", "t", ""),
            )
            .await
            .unwrap();
        }
        let sigs: Vec<Signal> = (0..250)
            .map(|i| signal(&format!("e{i}"), Status::Firing, 0, 0))
            .collect();
        s.record_signals(&sigs).await.unwrap();
        let ids: Vec<String> = sigs.iter().map(Signal::id).collect();
        let note = |n: &str| EventNote::new("signals_attached", "system", n);
        let batch = vec![
            ("a".to_string(), ids[..150].to_vec(), t(1), note("first")),
            ("b".to_string(), ids[150..].to_vec(), t(1), note("b")),
            (
                "a".to_string(),
                ids[140..160].to_vec(),
                t(2),
                note("second"),
            ),
            ("c".to_string(), vec![], t(2), note("c")),
        ];
        s.attach_with_events(&batch).await.unwrap();
        assert_eq!(s.incident_signals("a").await.unwrap().len(), 160, "{name}");
        assert_eq!(s.incident_signals("b").await.unwrap().len(), 100, "{name}");
        assert!(s.incident_signals("c").await.unwrap().is_empty(), "{name}");
        let events = s.events("a").await.unwrap();
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["", "first", "second"], "{name}");
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "{name}");
        assert_eq!(s.events("c").await.unwrap().len(), 2, "{name}");
        let attached = s
            .events_of_kinds("a", &["signals_attached", "vote"])
            .await
            .unwrap();
        let reasons: Vec<&str> = attached.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["first", "second"],
            "{name}: only those kinds, in order"
        );

        // What an approval's evidence check reads: a firing signal (found
        // at once, however many are linked), or the heartbeats' times.
        assert!(s.incident_firing("a").await.unwrap(), "{name}");
        assert!(
            !s.incident_firing("c").await.unwrap(),
            "{name}: nothing linked"
        );
        let resolved: Vec<Signal> = sigs[150..]
            .iter()
            .map(|g| Signal {
                status: Status::Resolved,
                received_at: t(5),
                ..g.clone()
            })
            .collect();
        s.record_signals(&resolved).await.unwrap();
        assert!(
            !s.incident_firing("b").await.unwrap(),
            "{name}: all resolved"
        );
        let beats = s.incident_beats("b").await.unwrap();
        assert_eq!(beats.len(), 100, "{name}");
        assert!(
            beats.iter().all(|b| b.last_seen == t(0)),
            "{name}: a resolve is not a beat"
        );

        let open = s.open_incidents_for(&["ka", "kb", "kx"]).await.unwrap();
        let mut found: Vec<(&str, &str)> = open
            .iter()
            .map(|(key, (id, _))| (key.as_str(), id.as_str()))
            .collect();
        found.sort();
        assert_eq!(found, [("ka", "a"), ("kb", "b")], "{name}");
    }
}

/// Evidence from a sharing handle rides in the group writer's next
/// transaction, beside the signals it records, on both backends: queued
/// (not written) until then, answered once committed, checked against the
/// caller's fence (a deposed leader's evidence is refused, the signals
/// beside it still land), and written directly once nobody drains the
/// queue.
#[tokio::test]
async fn evidence_rides_in_the_group_writers_transaction() {
    let (stores, _dir) = stores().await;
    let ttl = std::time::Duration::from_secs(30);
    for (name, s) in stores {
        let token = s.acquire_lease("a", ttl).await.unwrap().expect(name);
        let fence = dr_reactor::store::Fence {
            holder: "a".into(),
            token,
        };
        let (shared, queue) = s.clone().share_writes();
        let leader = shared.fenced(fence.clone());
        leader
            .open_incident(&incident("x", "kx"), &EventNote::new("detected", "t", ""))
            .await
            .unwrap();
        let first = signal("ev1", Status::Firing, 0, 0);
        s.record_signals(std::slice::from_ref(&first))
            .await
            .unwrap();
        let note = EventNote::new("signals_attached", "system", "1 signal");
        let evidence = vec![("x".to_string(), vec![first.id()], t(1), note.clone())];

        let attach = tokio::spawn({
            let (leader, evidence) = (leader.clone(), evidence.clone());
            async move { leader.attach_with_events(&evidence).await }
        });
        let job = queue.next().await.expect("queued");
        assert!(
            s.incident_signals("x").await.unwrap().is_empty(),
            "{name}: queued, not written yet"
        );
        let second = signal("ev2", Status::Firing, 0, 1);
        let changes = s
            .record_with_evidence(std::slice::from_ref(&second), &|_| true, vec![job])
            .await
            .unwrap();
        assert_eq!(changes, [Change::Fired], "{name}");
        attach.await.unwrap().unwrap();
        assert_eq!(s.incident_signals("x").await.unwrap().len(), 1, "{name}");
        let kinds = event_kinds(&s, "x").await;
        assert_eq!(kinds, ["detected", "signals_attached"], "{name}");

        // Deposed: the evidence is refused, the signals beside it land.
        s.release_lease(&fence).await.unwrap();
        s.acquire_lease("b", ttl).await.unwrap().expect(name);
        let attach = tokio::spawn({
            let leader = leader.clone();
            let evidence = vec![("x".to_string(), vec![second.id()], t(2), note.clone())];
            async move { leader.attach_with_events(&evidence).await }
        });
        let job = queue.next().await.expect("queued");
        let third = signal("ev3", Status::Firing, 0, 2);
        let changes = s
            .record_with_evidence(std::slice::from_ref(&third), &|_| true, vec![job])
            .await
            .unwrap();
        assert_eq!(changes, [Change::Fired], "{name}: the signal landed");
        assert!(
            matches!(attach.await.unwrap(), Err(StoreError::Fenced { .. })),
            "{name}"
        );
        assert_eq!(
            s.incident_signals("x").await.unwrap().len(),
            1,
            "{name}: nothing of the deposed leader's evidence"
        );

        // Nobody drains the queue any more: written directly.
        drop(queue);
        shared
            .attach_with_events(&[("x".to_string(), vec![third.id()], t(3), note.clone())])
            .await
            .unwrap();
        assert_eq!(s.incident_signals("x").await.unwrap().len(), 2, "{name}");
    }
}
