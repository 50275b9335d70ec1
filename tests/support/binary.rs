//! The real `dr-reactor` binary as a child process, for tests that kill,
//! pause and restart it: SIGKILL is `kill -9`, SIGSTOP/SIGCONT a pause the
//! process cannot see coming.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::fake_aws;

pub const ADMIN: &str = "admin-secret";

pub struct Dr {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

/// A free port on loopback (bound and released: good enough for tests that
/// start a server on it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Dr {
    /// Starts `dr-reactor serve --config config` listening on `port` and
    /// waits (bounded) until it answers `/readyz`; its log goes to `log`.
    pub async fn start(config: &Path, port: u16, log: &Path) -> Dr {
        let out = std::fs::File::create(log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("DR_REACTOR_WEBHOOK_TOKEN")
            .env("AWS_ACCESS_KEY_ID", fake_aws::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", fake_aws::SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "dr-reactor exited at start; see {}",
                log.display()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "dr-reactor did not become ready; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Dr {
            child,
            base,
            client,
        }
    }

    /// SIGKILL: no graceful anything.
    pub async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP: the process is frozen where it is, leases and all.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGHUP: re-read the tokens (and reopen the audit file, reload rules).
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    pub async fn readyz(&self) -> Option<Value> {
        let r = self
            .client
            .get(format!("{}/readyz", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The value of one sample in `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = match self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        super::metric_value(&text, sample)
    }

    /// `leader` or `follower`, from `/readyz`; None if it does not answer.
    pub async fn role(&self) -> Option<String> {
        let v = self.readyz().await?;
        v["leadership"]["role"].as_str().map(String::from)
    }

    /// The newest incident (null while there is none).
    pub async fn incident(&self) -> Value {
        self.incidents()
            .await
            .first()
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn incidents(&self) -> Vec<Value> {
        let v = self.get_json("/api/v1/incidents?limit=1000").await;
        v["incidents"].as_array().cloned().unwrap_or_default()
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let v = self.get_json(&format!("/api/v1/incidents/{id}")).await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (bounded) until the newest incident is in `state`; its id.
    pub async fn wait_state(&self, state: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let i = self.incident().await;
            if i["state"] == state {
                return i["id"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {state}; incident: {i}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn approve(&self, id: &str, user: &str) {
        let r = self
            .client
            .post(format!("{}/api/v1/incidents/{id}/approve", self.base))
            .bearer_auth(super::approval::token_of(user))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Posts one Alertmanager alert; the HTTP status.
    pub async fn post_alert(&self, labels: &[(&str, &str)]) -> Option<u16> {
        let body = super::payload(vec![super::alert("firing", labels)]);
        let r = self
            .client
            .post(format!("{}/api/v1/alerts/alertmanager", self.base))
            .bearer_auth(super::TOKEN)
            .json(&body)
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// Fires the `RegionDown` alert of ap-northeast-2 and expects a 200.
    pub async fn fire(&self) {
        let status = self
            .post_alert(&[("alertname", "RegionDown"), ("region", "ap-northeast-2")])
            .await;
        assert_eq!(status, Some(200));
    }
}

/// For a failing test: the warnings, errors and leadership changes in a
/// replica's log.
pub fn dump_log(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("leading"))
        .filter(|l| !l.contains("incident detected") && !l.contains("incident transition"))
        .collect();
    eprintln!(
        "---- {name}: {} (warnings, errors, leadership; last 40)",
        log.display()
    );
    for l in &lines[lines.len().saturating_sub(40)..] {
        eprintln!("{l}");
    }
}

/// [`super::eventually`] for a condition that needs no waiting itself.
pub async fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) {
    super::eventually(what, secs, || std::future::ready(cond())).await;
}
