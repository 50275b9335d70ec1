//! High availability with real processes: three `dr-reactor serve` replicas
//! on one PostgreSQL database, the fake AWS behind them. The leader is
//! killed (`kill -9`) while an incident awaits approval and while a plan is
//! mid-way with an SSM execution being polled; it is paused (SIGSTOP) past
//! its lease and resumed; PostgreSQL itself is restarted under load. In
//! every case each AWS action happens once and the incident ends right.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::binary::{self, Dr, wait_until};
use support::fake_aws::{FakeAws, Op};

const RULES: &str = r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: promote, ssm: {document: DR-Promote, region: ap-northeast-1}}
        - {name: scale, ssm: {document: DR-Scale, region: ap-northeast-1}}
        - {name: verify, lambda: {function: dr-verify, region: ap-northeast-1}}
  - name: service
    match: {labels: ['alertname="ServiceDown"']}
    correlate: {group_by: [service], window: 1h, when: {count: 1}}
    scenario: service_failure
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
"#;

/// Short enough for quick tests, long enough that a loaded 2-core CI
/// machine renews in time (renewal runs every third of it).
const LEASE: &str = "3s";

struct Cluster {
    dir: tempfile::TempDir,
    replicas: Vec<Option<Dr>>,
}

impl Cluster {
    async fn start(n: usize, store_url: &str, fake: &FakeAws) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
        let mut replicas = Vec::new();
        for i in 0..n {
            let port = binary::free_port();
            let config = dir.path().join(format!("r{i}.yaml"));
            std::fs::write(&config, config_text(dir.path(), i, port, store_url, fake)).unwrap();
            let log = dir.path().join(format!("r{i}.log"));
            replicas.push(Some(Dr::start(&config, port, &log).await));
        }
        Cluster { dir, replicas }
    }

    fn replica(&self, i: usize) -> &Dr {
        self.replicas[i].as_ref().expect("replica is running")
    }

    /// Waits until exactly one of the replicas not in `skip` says it leads.
    async fn leader(&self, skip: &[usize]) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut leaders = Vec::new();
            for (i, r) in self.replicas.iter().enumerate() {
                if let (Some(r), false) = (r, skip.contains(&i))
                    && r.role().await.as_deref() == Some("leader")
                {
                    leaders.push(i);
                }
            }
            if let [one] = leaders[..] {
                return one;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no single leader among replicas (leaders: {leaders:?}); logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill9(&mut self, i: usize) {
        self.replicas[i].take().unwrap().kill9().await;
    }

    /// A replica other than those in `not`.
    fn other(&self, not: &[usize]) -> usize {
        (0..self.replicas.len())
            .find(|i| !not.contains(i) && self.replicas[*i].is_some())
            .expect("a replica is left")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.replicas.len() {
                let log = self.dir.path().join(format!("r{i}.log"));
                binary::dump_log(&format!("replica {i}"), &log);
            }
        }
    }
}

fn config_text(dir: &Path, i: usize, port: u16, store_url: &str, fake: &FakeAws) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nstore:\n  url: {store_url}\n\
         rules:\n  paths: [{rules}]\n  evaluation_interval: 1s\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {token}\napi:\n  admin_token: {admin}\n  users:\n{users}\
         dispatch:\n  dry_run: false\napproval:\n  directory:\n    leads: [alice, bob]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n\
         ha:\n  lease_ttl: {LEASE}\n  replica_id: replica-{i}\n",
        rules = dir.join("rules").display(),
        token = support::TOKEN,
        admin = binary::ADMIN,
        users = support::approval::api_users(&["alice", "bob"]),
        endpoint = fake.endpoint(),
    )
}

fn started(fake: &FakeAws, document: &str) -> usize {
    fake.executions_started()
        .iter()
        .filter(|e| e.document == document)
        .count()
}

/// How many events of `kind` the incident has for plan step `index`.
fn step_events(events: &[Value], kind: &str, index: u64) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["data"]["index"] == json!(index))
        .count()
}

/// Every step succeeded exactly once, and every AWS action happened once.
async fn assert_ran_once(dr: &Dr, id: &str, fake: &FakeAws) {
    let events = dr.events(id).await;
    for index in 0..3 {
        assert_eq!(
            step_events(&events, "step_succeeded", index),
            1,
            "step {index} succeeded once: {events:#?}"
        );
    }
    assert_eq!(started(fake, "DR-Promote"), 1, "promote ran once");
    assert_eq!(started(fake, "DR-Scale"), 1, "scale ran once");
    assert_eq!(fake.calls_of(Op::Invoke).len(), 1, "verify invoked once");
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "succeeded").count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_awaiting_approval_then_mid_plan() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Scale", 1_000_000);
    let url = support::postgres_database().await;
    let mut c = Cluster::start(3, &url, &fake).await;
    let first = c.leader(&[]).await;

    // The alert reaches a follower; the leader decides, through the store.
    let follower = c.other(&[first]);
    let fired = Instant::now();
    c.replica(follower).fire().await;
    let id = c.replica(follower).wait_state("awaiting_approval").await;
    // Through PostgreSQL's NOTIFY, not the leader's next poll (1 s here).
    println!(
        "alert on a follower → incident awaiting approval: {:?}",
        fired.elapsed()
    );
    c.replica(follower).approve(&id, "alice").await;

    // 1. The leader dies while the incident awaits its second approval.
    let killed = Instant::now();
    c.kill9(first).await;
    let second = c.leader(&[first]).await;
    let failover = killed.elapsed();
    println!("failover after kill -9 of the leader: {failover:?} (lease {LEASE})");
    assert!(
        failover < Duration::from_secs(10),
        "took over in {failover:?}"
    );
    let last = c.other(&[first, second]);
    c.replica(last).approve(&id, "bob").await;

    // 2. The new leader runs the plan; it dies with step 1 done and step
    //    2's execution being polled.
    wait_until("step 2 being polled", 30, || {
        started(&fake, "DR-Scale") == 1
            && fake
                .calls_of(Op::GetAutomationExecution)
                .iter()
                .filter(|c| c.target == execution_of(&fake, "DR-Scale"))
                .count()
                >= 3
    })
    .await;
    c.kill9(second).await;
    fake.document_runs_for("DR-Scale", 2);

    // 3. The last replica takes over, polls the same execution to its end,
    //    and runs the rest.
    assert_eq!(c.leader(&[first, second]).await, last);
    c.replica(last).wait_state("succeeded").await;
    assert_ran_once(c.replica(last), &id, &fake).await;
    assert_eq!(
        fake.calls_of(Op::StartAutomationExecution).len(),
        2,
        "no step was sent twice: {:#?}",
        fake.calls_of(Op::StartAutomationExecution)
    );
}

fn execution_of(fake: &FakeAws, document: &str) -> String {
    fake.executions_started()
        .iter()
        .find(|e| e.document == document)
        .map(|e| e.id.clone())
        .unwrap_or_else(|| "(not started)".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_fenced_and_steps_down() {
    let fake = FakeAws::start().await;
    fake.function_returns("dr-verify", json!({"ok": true}));
    fake.document_runs_for("DR-Promote", 1_000_000);
    let url = support::postgres_database().await;
    let c = Cluster::start(3, &url, &fake).await;
    let first = c.leader(&[]).await;
    let follower = c.other(&[first]);
    c.replica(follower).fire().await;
    let id = c.replica(follower).wait_state("awaiting_approval").await;
    c.replica(follower).approve(&id, "alice").await;
    c.replica(follower).approve(&id, "bob").await;
    wait_until("step 1 being polled", 30, || {
        fake.calls_of(Op::GetAutomationExecution).len() >= 3
    })
    .await;

    // Frozen mid-poll, past its lease: another replica takes over and
    // finishes the plan while the first one cannot see it happen.
    c.replica(first).pause();
    let second = c.leader(&[first]).await;
    fake.document_runs_for("DR-Promote", 2);
    c.replica(second).wait_state("succeeded").await;
    let calls = fake.calls().len();

    // Woken, the old leader finds its token taken over: its writes are
    // refused, it steps down, and it sends nothing to AWS.
    c.replica(first).resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.replica(first).role().await.as_deref() != Some("follower") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resumed replica did not step down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.leader(&[]).await, second, "one leader, the new one");
    let after: Vec<_> = fake.calls()[calls..]
        .iter()
        .filter(|c| c.op != Op::GetAutomationExecution)
        .cloned()
        .collect();
    assert!(
        after.is_empty(),
        "the resumed replica sent nothing but polls: {after:#?}"
    );
    assert_ran_once(c.replica(second), &id, &fake).await;
}

/// A PostgreSQL server of this test's own (initdb into a temp dir), so it
/// can be restarted without disturbing other tests on the shared one.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        let pg = PrivatePostgres {
            dir,
            bin,
            port: binary::free_port(),
        };
        // The server refuses to run as root.
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the data directory to postgres");
        }
        pg.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "-D", &pg.data()],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.log();
        pg.run(
            "pg_ctl",
            &["-D", &pg.data(), "-o", &options, "-l", &log, "-w", "start"],
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    /// Stops the server (dropping every connection) and starts it again,
    /// with its log file named again: else the new server inherits this
    /// process's pipes and `output()` never sees them close.
    fn restart(&self) {
        let log = self.log();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
        });
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let fake = FakeAws::start().await;
    let pg = PrivatePostgres::start();
    let c = Cluster::start(3, &pg.url(), &fake).await;
    c.leader(&[]).await;

    // Alerts for 150 services from four senders spread over the replicas;
    // PostgreSQL restarts once a third are in, while the others are being
    // sent. A refused delivery is retried, as Alertmanager does; an
    // accepted one must never be lost.
    const SERVICES: usize = 150;
    const SENDERS: usize = 4;
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let c = Arc::new(c);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (c, accepted, refused) = (Arc::clone(&c), Arc::clone(&accepted), Arc::clone(&refused));
        senders.push(tokio::spawn(async move {
            for i in (s..SERVICES).step_by(SENDERS) {
                let service = format!("svc-{i}");
                let labels = [("alertname", "ServiceDown"), ("service", service.as_str())];
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let mut r = i;
                while c.replica(r % 3).post_alert(&labels).await != Some(200) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "alert {i} was never accepted"
                    );
                    r += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    wait_until("a third of the alerts accepted", 60, || {
        accepted.load(Ordering::Relaxed) >= SERVICES / 3
    })
    .await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    for s in senders {
        s.await.unwrap();
    }
    println!(
        "deliveries refused while PostgreSQL restarted: {}",
        refused.load(Ordering::Relaxed)
    );

    // Every replica is back, one leads, and each service has exactly one
    // incident.
    let leader = c.leader(&[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let incidents = loop {
        let list = c.replica(leader).incidents().await;
        if list.len() >= SERVICES || tokio::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut keys: Vec<&str> = incidents
        .iter()
        .map(|i| i["group_labels"]["service"].as_str().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    let missing: Vec<String> = (0..SERVICES)
        .map(|i| format!("svc-{i}"))
        .filter(|s| !keys.contains(&s.as_str()))
        .collect();
    assert!(missing.is_empty(), "no incident for {missing:?}");
    assert_eq!(incidents.len(), SERVICES, "and none twice");
    let mut retries = 0.0;
    for i in 0..3 {
        let ready = c.replica(i).readyz().await.unwrap();
        assert_eq!(ready["ready"], true, "replica {i}: {ready}");
        retries += c
            .replica(i)
            .metric("dr_reactor_decision_retries_total")
            .await;
    }
    println!("decisions retried after the restart: {retries}");
    drop(c);
    drop(pg);
}
