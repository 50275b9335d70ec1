//! The audit file: every incident event as a JSON line, beside the event
//! table.
//!
//! One writer thread owns the file. Each write waits until its line is
//! fsynced, and the thread syncs once for everything queued since the last
//! sync (group commit): a burst of events costs a few syncs, not one each.
//! A failed write or sync is counted and logged, never fatal: the event
//! table stays the authority. The file is reopened on request (SIGHUP, for
//! logrotate's move-and-signal).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use prometheus::IntCounter;
use tokio::sync::oneshot;

use crate::incident::Event;
use crate::telemetry::Metrics;

use super::{Store, StoreError};

enum Job {
    /// Lines to append; `done` is told once they are synced (or failed).
    Write {
        lines: Vec<u8>,
        done: oneshot::Sender<()>,
    },
    /// Close the file and open `path` again (logrotate moved it away).
    Reopen,
}

pub(super) struct AuditFile {
    jobs: mpsc::Sender<Job>,
}

/// What the writer thread counts.
struct Counters {
    errors: IntCounter,
    syncs: IntCounter,
}

impl Store {
    /// Also append every event to `path` as a JSON line, synced before the
    /// change that wrote it returns.
    pub fn with_audit_file(mut self, path: &Path, metrics: &Metrics) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let file = open(path).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let (jobs, queue) = mpsc::channel();
        let counters = Counters {
            errors: metrics.audit_write_errors.clone(),
            syncs: metrics.audit_syncs.clone(),
        };
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("audit-file".into())
            .spawn(move || writer(path, file, queue, counters))
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        self.audit = Some(Arc::new(AuditFile { jobs }));
        Ok(self)
    }

    /// Closes the audit file and opens it again at its path: after
    /// logrotate moved it, new lines go to a new file.
    pub fn reopen_audit_file(&self) {
        if let Some(a) = &self.audit {
            let _ = a.jobs.send(Job::Reopen);
        }
    }

    /// Appends `events` and waits until they are synced.
    pub(super) async fn audit(&self, events: &[Event]) {
        let Some(a) = &self.audit else { return };
        let mut lines = Vec::new();
        for event in events {
            // An event is plain data (strings, numbers, JSON values):
            // serialising it cannot fail, and if it ever did, the line is
            // skipped rather than the change.
            if serde_json::to_writer(&mut lines, event).is_ok() {
                lines.push(b'\n');
            }
        }
        let (done, synced) = oneshot::channel();
        if a.jobs.send(Job::Write { lines, done }).is_ok() {
            let _ = synced.await;
        }
    }
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Runs until every `Store` handle is gone. Takes whatever is queued,
/// writes it, syncs once, then tells every writer in the group.
fn writer(path: PathBuf, file: std::fs::File, queue: mpsc::Receiver<Job>, counters: Counters) {
    let mut file = Some(file);
    while let Ok(first) = queue.recv() {
        let mut waiting = Vec::new();
        let mut pending = Some(first);
        while let Some(job) = pending.take().or_else(|| queue.try_recv().ok()) {
            match job {
                Job::Write { lines, done } => {
                    // A reopen that failed is tried again at each write.
                    if file.is_none() {
                        file = reopen(&path, &counters);
                    }
                    if let Some(f) = file.as_mut()
                        && let Err(e) = f.write_all(&lines)
                    {
                        failed(&counters, &path, "write", &e);
                    }
                    waiting.push(done);
                }
                Job::Reopen => {
                    // Lines before the reopen belong in the old file: sync
                    // them there first.
                    sync(&mut file, &path, &counters);
                    file = reopen(&path, &counters);
                }
            }
        }
        sync(&mut file, &path, &counters);
        for done in waiting {
            let _ = done.send(());
        }
    }
}

fn reopen(path: &Path, counters: &Counters) -> Option<std::fs::File> {
    match open(path) {
        Ok(f) => {
            tracing::info!(path = %path.display(), "audit file (re)opened");
            Some(f)
        }
        Err(e) => {
            failed(counters, path, "reopen", &e);
            None
        }
    }
}

fn sync(file: &mut Option<std::fs::File>, path: &Path, counters: &Counters) {
    if let Some(f) = file.as_mut() {
        counters.syncs.inc();
        if let Err(e) = f.sync_data() {
            failed(counters, path, "sync", &e);
        }
    }
}

fn failed(counters: &Counters, path: &Path, what: &str, e: &std::io::Error) {
    counters.errors.inc();
    tracing::error!(path = %path.display(), "audit file {what} failed: {e}");
}
