//! Test support: the whole service in-process on 127.0.0.1:0 against a real
//! SQLite file, and helpers that wait for conditions with a bound instead of
//! sleeping for a guessed time.
#![allow(dead_code)] // each test binary uses a different subset

pub mod approval;
pub mod binary;
pub mod fake_aws;
pub mod fake_slack;
pub mod kafka;
pub mod slack_app;
pub mod stores;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_reactor::config::Config;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "s3cret-token";
/// A read token every in-process test server accepts; [`Server::get`]
/// sends it.
pub const READ_TOKEN: &str = "read-token";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/alertmanager-0.25")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh, empty PostgreSQL database on the local server (127.0.0.1:5432,
/// which `.ci/run` starts), so tests run in parallel without sharing state.
pub async fn postgres_database() -> String {
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

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One Alertmanager alert as JSON.
pub fn alert(status: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    serde_json::json!({
        "status": status,
        "labels": labels,
        "annotations": {},
        "startsAt": "2026-11-24T21:08:37Z",
        "endsAt": if status == "resolved" { "2026-11-24T21:09:37Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "",
    })
}

/// A version-4 webhook payload around `alerts`.
pub fn payload(alerts: Vec<Value>) -> Value {
    serde_json::json!({
        "receiver": "dr-reactor",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0
    })
}

/// A KubePodNotReady alert of `service` in zone `zone` of ap-northeast-2.
pub fn pod_alert(status: &str, service: &str, zone: &str) -> Value {
    alert(
        status,
        &[
            ("alertname", "KubePodNotReady"),
            ("region", "ap-northeast-2"),
            ("zone", zone),
            ("service", service),
            ("severity", "critical"),
        ],
    )
}

pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dr_reactor::app::AppError>>>,
}

/// Config text for a server whose state lives in `dir`: the shipped rules,
/// with holds shortened from a minute to half a second so that tests of
/// other things do not wait for them (tests/precedence.rs tests holds).
pub fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         store:\n  url: sqlite://{db}\n\
         rules:\n  paths: [{rules}]\n  catalogue: {catalogue}\n  evaluation_interval: 100ms\n  default_hold: 500ms\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\n{extra}",
        db = dir.join("dr-reactor.db").display(),
        rules = repo_path("rules").display(),
        catalogue = repo_path("config/services.yaml").display(),
    )
}

/// Posts an Alertmanager webhook payload to the server at `base` with the
/// webhook token and expects 200: for tasks that outlive a `&Server` or
/// talk to a server in another process.
pub async fn post_alerts(client: &reqwest::Client, base: &str, body: &Value) {
    let resp = client
        .post(format!("{base}/api/v1/alerts/alertmanager"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        Server::start_with(dir, &config_text(dir, "")).await
    }

    pub async fn start_with(dir: &Path, config: &str) -> Server {
        Server::start_full(dir, config, None).await
    }

    /// With dispatch pointed at a fake AWS (its SDK configuration).
    pub async fn start_with_aws(dir: &Path, config: &str, aws: aws_config::SdkConfig) -> Server {
        Server::start_full(dir, config, Some(aws)).await
    }

    async fn start_full(dir: &Path, config: &str, aws: Option<aws_config::SdkConfig>) -> Server {
        let mut cfg = Config::parse(config, Path::new("test.yaml")).expect("test config is valid");
        cfg.api
            .read_tokens
            .push(dr_reactor::primitives::TokenDigest::of(READ_TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(dr_reactor::app::run_with(
            cfg,
            listener,
            async {
                let _ = stopped.await;
            },
            aws,
        ));
        let server = Server {
            base,
            dir: dir.to_owned(),
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        server
            .wait_for("server to answer /healthz", || async {
                server
                    .client
                    .get(format!("{}/healthz", server.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
        server
    }

    /// Graceful stop: intake first, then the pipeline drains.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn post_raw(&self, body: Vec<u8>, auth: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/api/v1/alerts/alertmanager", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }

    /// Posts with the right token and expects 200; returns the body.
    pub async fn post(&self, payload: &Value) -> Value {
        let resp = self
            .post_raw(
                serde_json::to_vec(payload).unwrap(),
                Some(&format!("Bearer {TOKEN}")),
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_any(path).await;
        assert!((200..300).contains(&status), "GET {path}: {status} {body}");
        body
    }

    /// GET whatever the status: (status, JSON body or null).
    pub async fn get_any(&self, path: &str) -> (u16, Value) {
        let resp = self.read(path).await;
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// GET with the read token.
    async fn read(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// A console page as text, with the read token.
    pub async fn page(&self, path: &str) -> String {
        let resp = self.read(path).await;
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.text().await.unwrap()
    }

    pub async fn incidents(&self) -> Vec<Value> {
        self.get("/api/v1/incidents").await["incidents"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample in /metrics (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics().await, sample)
    }

    /// Waits until the rule engine has consumed `n` signal events in total.
    pub async fn wait_processed(&self, n: u64) {
        self.wait_for(&format!("{n} signal events processed"), || async {
            self.metric("dr_reactor_signals_processed_total").await >= n as f64
        })
        .await;
    }

    /// [`eventually`], within 10 s.
    pub async fn wait_for<F, Fut>(&self, what: &str, cond: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        eventually(what, 10, cond).await;
    }
}

/// Polls `cond` every 20 ms until it holds; fails the test after `secs`
/// seconds. The one bounded wait every test and bench uses.
pub async fn eventually<F, Fut>(what: &str, secs: u64, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// Writes carol's `abort_requested` for incident `id` straight into the
/// SQLite store in `dir` (`db.sqlite`) while no server runs: an abort asked
/// just before a crash, which the next start must carry out.
pub async fn abort_requested_offline(dir: &Path, id: &str, reason: &str) {
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    let store = dr_reactor::store::Store::connect(&url).await.unwrap();
    let note = dr_reactor::incident::EventNote::new("abort_requested", "carol", reason);
    store
        .append_event(id, chrono::Utc::now(), &note)
        .await
        .unwrap();
    store.close().await;
}
