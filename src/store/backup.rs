//! What backups and restores ask of the database: a consistent copy of a SQLite database
//! while it is written to, and a look into a copy without changing it.

use super::{Pool, Store, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::path::Path;

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
                sqlx::query("VACUUM INTO $1")
                    .bind(path.to_string_lossy().into_owned())
                    .execute(p)
                    .await?;
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
