//! Erasure that erases (issue 14): what is no longer needed is deleted on a schedule, and
//! on SQLite the deleted bytes are overwritten (`secure_delete`, set for every connection)
//! and the write-ahead log, which still holds earlier copies of the pages, is emptied.

use super::{Pool, Store, StoreResult};

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Console sessions past their idle or absolute limit.
    pub sessions: u64,
    /// Login-failure counters whose window and lock are over.
    pub login_failures: u64,
    /// Provider message ids (a Twilio MessageSid points at the provider's record of the
    /// phone number) of messages settled long enough for any delivery report.
    pub provider_ids: u64,
}

impl Store {
    /// Deletes login-failure counters that began before `started_before` and are not
    /// locked at `now`.
    pub async fn forget_login_failures(&self, started_before: i64, now: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query(
            "DELETE FROM login_failures WHERE first_at < $1 AND (locked_until IS NULL OR locked_until < $2)")
            .bind(started_before).bind(now).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Forgets the provider's id of every message settled before `settled_before`.
    pub async fn forget_provider_ids(&self, settled_before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query(
            "UPDATE outbox SET provider_id = NULL WHERE provider_id IS NOT NULL AND settled_at < $1")
            .bind(settled_before).execute(p).await.map(|r| r.rows_affected()))
    }

    /// After erasures on SQLite: copies the write-ahead log into the database and
    /// truncates it to nothing, so no earlier copy of an erased row stays in it. `false`
    /// when a reader kept it from completing (the next sweep tries again); always `true`
    /// on PostgreSQL, where VACUUM and the WAL archive's retention do this (README).
    pub async fn truncate_wal(&self) -> StoreResult<bool> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let (busy, _, _): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(p)
                        .await?;
                Ok(busy == 0)
            }
            Pool::Postgres(_) => Ok(true),
        }
    }

    /// On SQLite, puts what the write-ahead log holds on disk (`fdatasync` of the `-wal`
    /// file), outside any transaction. A maintenance connection commits without syncing
    /// (`synchronous = NORMAL`, [`Store::for_maintenance`]); without this its megabytes of
    /// log were flushed by the next tip's commit, under the write lock, and every tip
    /// waited for them. Nothing depends on it for durability, so a failure is only logged.
    /// Does nothing on PostgreSQL.
    pub async fn sync_log(&self) {
        let Pool::Sqlite(p) = &self.pool else {
            return;
        };
        let mut wal = p.connect_options().get_filename().as_os_str().to_owned();
        wal.push("-wal");
        let synced = tokio::task::spawn_blocking(move || std::fs::File::open(&wal)?.sync_data())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match synced {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(error = %e, "could not sync the write-ahead log"),
        }
    }
}
