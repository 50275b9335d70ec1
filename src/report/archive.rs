//! Reports of finished incidents: the recovery histograms, and the JSON
//! report written under `reports.dir` and/or uploaded to an S3-compatible
//! bucket (`reports.s3`), partitioned by the day it finished
//! (`dt=YYYY-MM-DD/<incident>.json`) so Athena-style tools can query the
//! directory or the bucket as a table. Both are copies for the audit
//! archive: the store stays the authority, and `dr-reactor report` renders
//! any report again from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Report, build};
use crate::rules::RuleSet;
use crate::store::{Store, StoreError};
use crate::telemetry::{Metrics, drill_label};

/// Config `reports`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Where each finished incident's JSON report is written; none if
    /// unset.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// An S3-compatible bucket each finished incident's JSON report is
    /// uploaded to; none if unset.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// Config `reports.s3`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Put before `dt=…/` in every key, e.g. `dr-reactor/reports`.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region; default: the credential chain's (or
    /// `aws.default_region`).
    #[serde(default)]
    pub region: Option<String>,
    /// An S3-compatible service (MinIO, Ceph) instead of AWS.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Bucket in the path, not the host name (what most S3-compatible
    /// services need).
    #[serde(default)]
    pub force_path_style: bool,
}

impl S3Config {
    /// What a start refuses.
    pub fn check(&self) -> Result<(), String> {
        let b = &self.bucket;
        // S3's bucket naming rules, the part a typo breaks.
        if !(3..=63).contains(&b.len())
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        {
            return Err(format!(
                "reports.s3.bucket {b:?}: 3 to 63 lowercase letters, digits, dots and hyphens"
            ));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "reports.s3.endpoint_url {url:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }
}

/// Where reports are uploaded: an S3 client for the bucket.
#[derive(Clone, Debug)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Archive {
    /// A client for `cfg`'s bucket with `sdk`'s credentials (tests give
    /// static ones), or the default credential chain's.
    pub async fn new(cfg: &S3Config, sdk: Option<aws_config::SdkConfig>) -> S3Archive {
        let sdk = match sdk {
            Some(sdk) => sdk,
            None => {
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(crate::primitives::aws_http::https_client())
                    .load()
                    .await
            }
        };
        let mut b = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.force_path_style);
        if let Some(region) = &cfg.region {
            b = b.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &cfg.endpoint_url {
            b = b.endpoint_url(url);
        }
        if sdk.http_client().is_none() {
            b = b.http_client(crate::primitives::aws_http::https_client());
        }
        S3Archive {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.trim_matches('/').to_owned(),
        }
    }

    /// Uploads the report to `PREFIX/dt=<day>/<incident>.json`; returns
    /// the key. S3 puts are atomic: a reader sees the whole report or none.
    pub async fn put(&self, r: &Report) -> Result<String, String> {
        let key = match self.prefix.as_str() {
            "" => partition_path(r),
            p => format!("{p}/{}", partition_path(r)),
        };
        let body = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "PutObject s3://{}/{key}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(key)
    }
}

/// `dt=<day it finished>/<incident>.json`: the report's place in the
/// directory and in the bucket.
fn partition_path(r: &Report) -> String {
    let day = r
        .times
        .finished
        .unwrap_or(r.times.opened)
        .format("%Y-%m-%d");
    format!("dt={day}/{}.json", r.incident)
}

/// The report of incident `id` as the store has it now, over `catalogue`.
pub async fn load(
    store: &Store,
    id: &str,
    catalogue: &crate::catalogue::Catalogue,
) -> Result<Option<Report>, StoreError> {
    let Some(inc) = store.incident(id).await? else {
        return Ok(None);
    };
    let events = store.events(id).await?;
    let signals = store.incident_signals(id).await?;
    Ok(Some(build(&inc, &events, &signals, catalogue)))
}

/// Takes the ids of incidents that just finished until the sender is
/// dropped: observes their times and writes their reports.
pub async fn run(
    mut finished: mpsc::Receiver<String>,
    store: Store,
    rules: impl Fn() -> Arc<RuleSet>,
    metrics: Metrics,
    dir: Option<PathBuf>,
    s3: Option<S3Archive>,
) {
    while let Some(id) = finished.recv().await {
        let report = match load(&store, &id, &rules().catalogue).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(incident = %id, "report of a finished incident: {e}");
                continue;
            }
        };
        observe(&metrics, &report);
        if let Some(dir) = &dir {
            let outcome = match write(dir, &report) {
                Ok(_) => "ok",
                Err(e) => {
                    tracing::warn!(incident = %id, dir = %dir.display(), "writing the report: {e}");
                    "error"
                }
            };
            metrics
                .reports_archived
                .with_label_values(&["dir", outcome])
                .inc();
        }
        if let Some(s3) = &s3 {
            let outcome = match s3.put(&report).await {
                Ok(key) => {
                    tracing::info!(incident = %id, %key, "report uploaded");
                    "ok"
                }
                Err(e) => {
                    tracing::warn!(incident = %id, "uploading the report: {e}");
                    "error"
                }
            };
            metrics
                .reports_archived
                .with_label_values(&["s3", outcome])
                .inc();
        }
    }
}

fn observe(metrics: &Metrics, r: &Report) {
    let labels = [r.scenario.as_str(), drill_label(r.drill)];
    if let Some(s) = r.durations.decision_secs {
        metrics
            .time_to_decision
            .with_label_values(&labels)
            .observe(s);
    }
    if let Some(s) = r.durations.recovery_secs {
        metrics.recovery.with_label_values(&labels).observe(s);
    }
}

/// Writes the report to `dir/dt=<day>/<incident>.json`, whole or not at
/// all (a temporary file renamed into place).
pub fn write(dir: &Path, r: &Report) -> std::io::Result<PathBuf> {
    let path = dir.join(partition_path(r));
    let part = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(part)?;
    let tmp = part.join(format!(".{}.json.tmp", r.incident));
    std::fs::write(&tmp, serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
