//! Webhook replay memory (keyed hashes of accepted provider message ids) and photo gaps
//! (how many photos a tip's tipster sent that could not be fetched or read).

use super::{Pool, Store, StoreResult};

/// Photos missing from a tip, one row per message that lost some.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PhotoGapRow {
    pub missing: i64,
    pub created_at: i64,
}

impl Store {
    /// Whether a webhook with this keyed id was accepted before (and not yet forgotten).
    pub async fn replay_seen(&self, key: &[u8]) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_replay WHERE key = $1")
            .bind(key).fetch_one(p).await.map(|n| n > 0))
    }

    /// Remembers accepted webhooks' keyed ids; one already remembered keeps its time.
    pub async fn remember_replays(&self, keys: &[Vec<u8>], at: i64) -> StoreResult<()> {
        for key in keys {
            on_pool!(self, p => sqlx::query(
                "INSERT INTO webhook_replay (key, seen_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key).bind(at).execute(p).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// Forgets remembered ids older than `before`; how many.
    pub async fn forget_replays(&self, before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM webhook_replay WHERE seen_at < $1")
            .bind(before).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Notes that `missing` photos sent to a tip with no message of their own (an MMS
    /// the gateway announced without content) are missing.
    pub async fn add_photo_gap(&self, tip_id: &str, missing: i64, at: i64) -> StoreResult<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        on_pool!(self, p => sqlx::query(
            "INSERT INTO photo_gaps (id, tip_id, missing, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id).bind(tip_id).bind(missing).bind(at).execute(p).await.map(|_| ()))
    }

    /// A tip's photo gaps, oldest first.
    pub async fn photo_gaps(&self, tip_id: &str) -> StoreResult<Vec<PhotoGapRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT missing, created_at FROM photo_gaps WHERE tip_id = $1 ORDER BY created_at")
            .bind(tip_id).fetch_all(p).await)
    }
}
