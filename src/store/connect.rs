//! Opening the store: backend, pools, migrations.

use std::sync::Arc;

use sqlx::any::AnyPoolOptions;

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
                // database: keep exactly one.
                let max = if url.contains(":memory:") { 1 } else { 4 };
                let url = if url.contains('?') || url.contains(":memory:") {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                // SQLite has one writer; more connections only queue on its
                // lock. WAL lets the readers (API, readyz) go on meanwhile.
                let options = AnyPoolOptions::new()
                    .max_connections(max)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode=WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout=10000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    });
                (url, options)
            }
            Backend::Postgres => (url.to_owned(), AnyPoolOptions::new().max_connections(8)),
        };
        let pool = options.clone().connect(&url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let writer = if backend == Backend::Sqlite && !url.contains(":memory:") {
            options.max_connections(1).connect(&url).await?
        } else {
            pool.clone()
        };
        Ok(Store {
            pool,
            writer,
            backend,
            audit: None,
            fence: None,
            log_written: Arc::new(tokio::sync::Notify::new()),
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
