//! What the key commands need to know beyond the key file: which KEKs the stored data
//! uses, which keys every running process holds (its heartbeat row), which KEK ids were
//! retired, and re-wrapped data keys written only over the wrap they replace.

use super::BeginWrite;
use super::{Pool, Store, StoreResult};

/// One serving process's keys, as its heartbeat last wrote them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyHolderRow {
    /// A random id drawn at start.
    pub process_id: String,
    /// Host and pid, for the operator.
    pub label: String,
    /// The KEK that wraps its new tips.
    pub current_key: String,
    /// Every KEK id it holds, comma-separated.
    pub known_keys: String,
    /// KEK ids with new tips wrapped and not yet written, comma-separated.
    pub wrapping_keys: String,
    /// When it made `current_key` current (ms).
    pub switched_at: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

impl KeyHolderRow {
    /// Whether it holds the KEK `id`.
    pub fn knows(&self, id: &str) -> bool {
        self.known_keys.split(',').any(|k| k == id)
    }

    /// Whether it has a new tip wrapped under `id` and not yet written.
    pub fn is_wrapping(&self, id: &str) -> bool {
        self.wrapping_keys.split(',').any(|k| k == id)
    }
}

/// A data key re-wrapped under another KEK, written only if the tip still has the wrap
/// it was made from.
#[derive(Debug, Clone)]
pub struct RewrappedKey {
    pub id: String,
    pub old_key_id: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

/// Re-wrapped data keys stored per transaction ([`Store::keys_store_rewrapped`]).
const REWRAPPED_PER_TRANSACTION: usize = 250;

impl Store {
    /// Writes (or refreshes) a process's heartbeat row.
    pub async fn keys_heartbeat(&self, row: &KeyHolderRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO key_holders (process_id, label, current_key, known_keys, wrapping_keys, \
             switched_at, started_at, heartbeat_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) \
             ON CONFLICT (process_id) DO UPDATE SET label = excluded.label, \
             current_key = excluded.current_key, known_keys = excluded.known_keys, \
             wrapping_keys = excluded.wrapping_keys, switched_at = excluded.switched_at, \
             heartbeat_at = excluded.heartbeat_at")
            .bind(&row.process_id).bind(&row.label).bind(&row.current_key).bind(&row.known_keys)
            .bind(&row.wrapping_keys).bind(row.switched_at).bind(row.started_at).bind(row.heartbeat_at)
            .execute(p).await.map(|_| ()))
    }

    /// Every heartbeat row, live or not, oldest process first.
    pub async fn keys_holders(&self) -> StoreResult<Vec<KeyHolderRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT process_id, label, current_key, known_keys, wrapping_keys, switched_at, \
             started_at, heartbeat_at FROM key_holders ORDER BY started_at, process_id")
            .fetch_all(p).await)
    }

    /// Removes a process's row (its clean stop).
    pub async fn keys_forget_holder(&self, process_id: &str) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM key_holders WHERE process_id = $1")
            .bind(process_id).execute(p).await.map(|_| ()))
    }

    /// Removes the rows of processes whose last heartbeat is older than `before`.
    pub async fn keys_forget_holders_before(&self, before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM key_holders WHERE heartbeat_at < $1")
            .bind(before).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Every KEK id stored data is wrapped under, with how many rows use it. Tips are the
    /// only rows with a `key_id` today; a new table with one joins this union.
    pub async fn keys_in_use(&self) -> StoreResult<Vec<(String, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT key_id, COUNT(*) FROM tips WHERE wrapped_key IS NOT NULL \
             GROUP BY key_id ORDER BY key_id")
            .fetch_all(p).await)
    }

    /// Writes re-wrapped data keys in one transaction, each only over the wrap it was made
    /// from; answers how many were written.
    pub async fn keys_store_rewrapped(&self, rows: &[RewrappedKey]) -> StoreResult<u64> {
        let mut n = 0;
        // One statement a transaction of [`REWRAPPED_PER_TRANSACTION`] rows: SQLite's one
        // writer is held for a few milliseconds, where 500 rows of a statement each held
        // it about 80 ms and tips arriving waited as long (issue 14). Each row stands on
        // its own: it is changed only while it still has the key it was read with.
        for chunk in rows.chunks(REWRAPPED_PER_TRANSACTION) {
            n += on_pool!(self, p => {
                let mut q = sqlx::QueryBuilder::new("WITH v (id, key_id, wrapped_key, old_key_id) AS (");
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.id).push_bind(&r.key_id).push_bind(&r.wrapped_key).push_bind(&r.old_key_id);
                });
                q.push(") UPDATE tips SET key_id = v.key_id, wrapped_key = v.wrapped_key FROM v \
                        WHERE tips.id = v.id AND tips.key_id = v.old_key_id AND tips.wrapped_key IS NOT NULL");
                let mut tx = p.begin_write().await?;
                let n = q.build().execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                n
            });
        }
        Ok(n)
    }

    /// KEK ids retired so far.
    pub async fn keys_retired(&self) -> StoreResult<Vec<String>> {
        on_pool!(self, p => sqlx::query_scalar("SELECT key_id FROM retired_keys ORDER BY key_id")
            .fetch_all(p).await)
    }

    /// Records a KEK id as retired and forgets its check, in one transaction.
    pub async fn keys_mark_retired(&self, key_id: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO retired_keys (key_id, retired_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key_id).bind(now).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM key_checks WHERE key_id = $1")
                .bind(key_id).execute(&mut *tx).await?;
            Ok(tx.commit().await?)
        })
    }
}
