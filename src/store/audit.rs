//! The audit file: every incident event as a JSON line, beside the event
//! table.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::incident::Event;

use super::{Store, StoreError};

/// The audit log as a JSON-lines file, for shipping to a log system: one
/// line per event, written after its transaction commits. The event table
/// stays the authority; a line that fails to write is logged, never fatal.
pub(super) struct AuditFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Store {
    /// Also append every event to `path` as a JSON line.
    pub fn with_audit_file(mut self, path: &std::path::Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        self.audit = Some(Arc::new(AuditFile {
            path: path.to_owned(),
            file: Mutex::new(file),
        }));
        Ok(self)
    }

    pub(super) fn audit(&self, event: &Event) {
        use std::io::Write as _;
        let Some(a) = &self.audit else { return };
        let mut line = serde_json::to_vec(event).expect("events serialise");
        line.push(b'\n');
        let mut f = a.file.lock().expect("lock not poisoned");
        if let Err(e) = f.write_all(&line) {
            tracing::error!(path = %a.path.display(), "audit file: {e}");
        }
    }
}
