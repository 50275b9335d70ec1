//! Reports of finished incidents: the recovery histograms, and the JSON
//! report written under `reports.dir`, partitioned by the day it finished
//! (`dt=YYYY-MM-DD/<incident>.json`) so Athena-style tools can query the
//! directory (or a bucket it is synced to) as a table.

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
        if let Some(dir) = &dir
            && let Err(e) = write(dir, &report)
        {
            tracing::warn!(incident = %id, dir = %dir.display(), "writing the report: {e}");
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
    let day = r
        .times
        .finished
        .unwrap_or(r.times.opened)
        .format("%Y-%m-%d");
    let part = dir.join(format!("dt={day}"));
    std::fs::create_dir_all(&part)?;
    let path = part.join(format!("{}.json", r.incident));
    let tmp = part.join(format!(".{}.json.tmp", r.incident));
    std::fs::write(&tmp, serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
