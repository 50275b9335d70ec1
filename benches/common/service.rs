//! What the load benchmarks share: the release binary run as its own
//! process, and a bounded load generator.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::support::{self, fake_aws, metric_value};

/// A private copy of the binary cargo built for this bench, taken at start:
/// the build directory is shared with other checkouts of this package,
/// whose builds replace `target/release/dr-reactor`.
pub static BIN: OnceLock<PathBuf> = OnceLock::new();

/// The release binary under test, as its own process.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

/// RSS split into heap and other anonymous memory, and mapped files (the
/// binary's text, shared libraries): they shrink by different means.
pub struct Rss {
    pub now: f64,
    pub peak: f64,
    pub anon: f64,
    pub file: f64,
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB (peak {:.1} MiB; {:.1} MiB anonymous, {:.1} MiB mapped files)",
            self.now, self.peak, self.anon, self.file
        )
    }
}

impl Service {
    /// Starts `dr-reactor serve` with `config` (whose `listen:` is
    /// replaced by a free loopback port) and waits for /healthz.
    pub async fn start(dir: &Path, config: &str) -> Service {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = config.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
        std::fs::write(dir.join("bench.yaml"), config).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(BIN.get().expect("copied in main"))
            .args(["serve", "--config"])
            .arg(dir.join("bench.yaml"))
            .env("AWS_ACCESS_KEY_ID", fake_aws::ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", fake_aws::SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("dr-reactor binary");
        let svc = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        support::eventually("/healthz", 20, || async {
            svc.client
                .get(format!("{}/healthz", svc.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        svc
    }

    pub fn webhook(&self) -> String {
        format!("{}/api/v1/alerts/alertmanager", self.base)
    }

    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, sample)
    }

    /// The server process's memory now (resident, peak, and the resident
    /// split into heap-like anonymous memory and mapped files), in MiB.
    pub fn rss_mib(&self) -> Rss {
        Rss {
            now: self.status_mib("VmRSS:"),
            peak: self.status_mib("VmHWM:"),
            anon: self.status_mib("RssAnon:"),
            file: self.status_mib("RssFile:"),
        }
    }

    fn status_mib(&self, name: &str) -> f64 {
        let pid = self.child.id().expect("server running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .expect("field in /proc/<pid>/status")
            / 1024.0
    }

    /// Waits until the rule engine has consumed `n` signal events.
    pub async fn wait_processed(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let done = self.metric("dr_reactor_signals_processed_total").await;
            if done >= n as f64 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {within:?}, {done} of {n} signal events processed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// Sends `body` to `url` (with a bearer token if given) and returns how
/// long the answer took; anything but 2xx is a failed run.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Duration {
    let t = Instant::now();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    assert!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    t.elapsed()
}

/// Sends every body once, from `clients` concurrent connections; returns
/// each request's latency (unordered) and the wall time of the whole run.
pub async fn drive(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> (Vec<Duration>, Duration) {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, client, url) = (Arc::clone(&queue), client.clone(), url.to_owned());
        let token = token.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    break;
                };
                lat.push(post(&client, &url, token.as_deref(), body).await);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (lat, started.elapsed())
}
