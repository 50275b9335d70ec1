//! Opening the store: backend, pools, migrations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::any::AnyPoolOptions;

use super::checkpoint::WRITER_CHECKPOINT_PAGES;
use super::{Backend, Store, StoreError};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects and brings the schema up to date. A SQLite file is created
    /// if it does not exist.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let (url, options) = match backend {
            Backend::Sqlite => {
                create_parent_dir(url)?;
                // Each connection to an in-memory database is its own
                // database: keep exactly one, which is also the writer and
                // whose cache is the database.
                let memory = url.contains(":memory:");
                let max = if memory { 1 } else { 4 };
                let url = if url.contains('?') || url.contains(":memory:") {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                (url, sqlite_pool(max, (!memory).then_some(READER_CACHE_KIB)))
            }
            Backend::Postgres => (url.to_owned(), AnyPoolOptions::new().max_connections(8)),
        };
        let pool = options.connect(&url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        // A SQLite file: its own writing connection, and a WAL.
        let wal = backend == Backend::Sqlite && !url.contains(":memory:");
        let writer = if wal {
            sqlite_pool(1, None).connect(&url).await?
        } else {
            pool.clone()
        };
        Ok(Store {
            pool,
            writer,
            backend,
            wal,
            audit: None,
            fence: None,
            log_written: Arc::new(tokio::sync::Notify::new()),
            writer_waits: WriterWaits::default(),
            listen_url: (backend == Backend::Postgres).then(|| Arc::from(url.as_str())),
            shared: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// SQLite's page cache on each reading connection, in KiB (SQLite's own
/// default is 2,000 on every connection). The readers (API, console,
/// approval checks) were most of the store's 12 MB of SQLite memory with
/// 100,000 signals held; a miss costs them a read from the OS page cache,
/// which keeps the file's pages anyway. The writer keeps the default: every
/// group commit walks the signal indexes.
const READER_CACHE_KIB: u32 = 512;

/// SQLite has one writer; more connections only queue on its lock. WAL lets
/// the readers go on meanwhile. `reader_cache_kib`: a pool of readers, with
/// this page cache; `None`: the pool that writes (SQLite's default cache).
///
/// No ping when a connection is taken from the pool: a connection to a
/// local file does not go stale, and the ping was a round trip to SQLite's
/// thread before every transaction (sqlx still pings each connection as it
/// comes back, which rolls back what a dropped future left open).
///
/// The writer keeps statement journals in memory (`temp_store`): a
/// multi-row upsert journals every page it changes, in case the statement
/// fails halfway, and past 64 KiB SQLite spilled that to a temporary file,
/// on the group commit's critical path (a profile of the storm's SQLite
/// thread: 8% of it). The readers keep the default: their large sorts
/// (rebuilding the rule windows, say) may spill to a file instead of
/// growing the heap. The writer checkpoints the WAL itself only past a
/// larger bound: a reader does it meanwhile (see `checkpoint`).
fn sqlite_pool(max: u32, reader_cache_kib: Option<u32>) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA journal_mode=WAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA busy_timeout=10000")
                    .execute(&mut *conn)
                    .await?;
                let tuning = match reader_cache_kib {
                    Some(kib) => vec![format!("PRAGMA cache_size=-{kib}")],
                    None => vec![
                        "PRAGMA temp_store=MEMORY".to_owned(),
                        format!("PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}"),
                    ],
                };
                for pragma in tuning {
                    sqlx::query(&pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// Writes waiting for the writing pool (SQLite's one writing connection),
/// counted so that intake's group commit, which holds that connection while
/// its requests arrive, ends its gathering for them: an incident the
/// pipeline opens in a storm waits for one group, not for the storm.
#[derive(Clone, Default)]
pub(super) struct WriterWaits(Arc<AtomicUsize>);

/// One write waiting for (or using) the writing pool; counted until dropped.
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl WriterWaits {
    pub(super) fn enter(&self) -> Waiting<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.0)
    }

    pub(super) fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// SQLite creates the file but not its directory.
fn create_parent_dir(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_keep_a_smaller_page_cache_and_the_writer_its_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("cache.db").display());
        let store = Store::connect(&url).await.unwrap();
        let cache = |pool| sqlx::query_scalar::<_, i64>("PRAGMA cache_size").fetch_one(pool);
        assert_eq!(
            cache(&store.pool).await.unwrap(),
            -i64::from(READER_CACHE_KIB)
        );
        assert_eq!(
            cache(&store.writer).await.unwrap(),
            -2000,
            "SQLite's default"
        );
        let temp_store = |pool| sqlx::query_scalar::<_, i64>("PRAGMA temp_store").fetch_one(pool);
        assert_eq!(temp_store(&store.writer).await.unwrap(), 2, "MEMORY");
        assert_eq!(temp_store(&store.pool).await.unwrap(), 0, "DEFAULT");
    }
}
