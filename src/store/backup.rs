//! What backups and restores ask of the database: a consistent copy of a SQLite database
//! while it is written to, and a look into a copy without changing it.

use super::{Pool, Store, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How much of a copy being written may wait in memory before it is put on disk.
const PACED_SYNC_BYTES: u64 = 8 * 1024 * 1024;

/// Puts the file at `path` on disk as it grows, [`PACED_SYNC_BYTES`] at a time, until
/// `stop`. `VACUUM INTO` does not sync what it writes: a gigabyte copy stayed in the page
/// cache until the one sync at the end, which kept the disk busy for over a second, and
/// every tip's commit (a sync of a few pages of the log) waited behind it (issue 14: the
/// intake's 99th percentile went past 80 ms during a backup). A few megabytes at a time,
/// a tip's sync waits behind a few milliseconds of disk at most.
fn pace_writeback(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut file = None;
        let mut synced = 0u64;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            let Some(f) = &file else { continue };
            let len = f.metadata().map_or(0, |m| m.len());
            if len >= synced + PACED_SYNC_BYTES {
                if let Err(e) = f.sync_data() {
                    tracing::debug!(error = %e, "could not sync the copy as it grew");
                }
                synced = len;
            }
        }
    })
}

/// The newest tip of a database with its wrapped key and sealed description: enough to
/// prove that a key file opens it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedSample {
    pub id: String,
    pub key_id: String,
    pub wrapped_key: Option<Vec<u8>>,
    pub description: Vec<u8>,
}

impl Store {
    /// Writes a consistent copy of a SQLite database to `path` (`VACUUM INTO`: one read
    /// transaction, so writers go on meanwhile; the copy holds no free pages and no WAL).
    /// `None` on PostgreSQL, which `pg_dump` copies.
    pub async fn sqlite_copy_into(&self, path: &Path) -> StoreResult<Option<()>> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let stop = Arc::new(AtomicBool::new(false));
                let pacer = pace_writeback(path.to_path_buf(), stop.clone());
                let copied = sqlx::query("VACUUM INTO $1")
                    .bind(path.to_string_lossy().into_owned())
                    .execute(p)
                    .await;
                stop.store(true, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
                copied?;
                Ok(Some(()))
            }
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// Opens a SQLite file read-only and as immutable (a backup: nothing writes to it, no
    /// WAL or lock file is made beside it).
    pub async fn open_sqlite_copy(path: &Path) -> anyhow::Result<Store> {
        use anyhow::Context;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            writers: None,
            _checkpointer: None,
        })
    }

    /// `ok` when SQLite's quick check finds the file sound, else what it found.
    pub async fn sqlite_quick_check(&self) -> StoreResult<String> {
        match &self.pool {
            Pool::Sqlite(p) => Ok(sqlx::query_scalar("PRAGMA quick_check")
                .fetch_one(p)
                .await?),
            Pool::Postgres(_) => Ok("ok".into()),
        }
    }

    /// Whether the database holds tinbao's tables (a restore goes only into one that
    /// does not).
    pub async fn has_tip_table(&self) -> StoreResult<bool> {
        on_pool!(self, p => {
            let n: i64 = match self.engine() {
                super::Engine::Sqlite => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tips'")
                    .fetch_one(p).await?,
                super::Engine::Postgres => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name = 'tips'")
                    .fetch_one(p).await?,
            };
            Ok(n > 0)
        })
    }

    /// How many tips the database holds.
    pub async fn tip_total(&self) -> StoreResult<i64> {
        on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM tips").fetch_one(p).await)
    }

    /// The newest tip whose key is still there (and not under a retention day's key,
    /// which may be gone), sealed.
    pub async fn sealed_sample(&self) -> StoreResult<Option<SealedSample>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, key_id, wrapped_key, description FROM tips WHERE wrapped_key IS NOT NULL \
             AND key_id NOT LIKE 'r%' ORDER BY created_at DESC LIMIT 1")
            .fetch_optional(p).await)
    }
}
