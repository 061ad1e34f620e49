//! Retention (issue 14): a closed tip's content is destroyed (crypto-shredded: its data
//! key and every sealed byte deleted) a set time after it closed, unless held as
//! evidence. Its counts stay: category, place, channel, times, outcome.

use super::{BeginWrite, Pool, Store, StoreResult};
use sqlx::QueryBuilder;

/// Which closed tips a retention rule covers: a commune's category (a chief's setting),
/// or every tip no such setting covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionRule {
    Setting { commune: i64, category: String },
    Default,
}

impl RetentionRule {
    /// Its condition on `tips`, its parameters numbered from `$first`, and the commune
    /// and category to bind there (none for the default).
    fn filter(&self, first: usize) -> (String, Option<(i64, &str)>) {
        match self {
            RetentionRule::Setting { commune, category } => (
                format!("commune_code = ${first} AND category = ${}", first + 1),
                Some((*commune, category.as_str())),
            ),
            RetentionRule::Default => (
                "NOT EXISTS (SELECT 1 FROM retention_settings r WHERE r.commune_code = tips.commune_code \
                 AND r.category = tips.category)"
                    .to_owned(),
                None,
            ),
        }
    }
}

/// Closed tips (closed before the cutoff, not held at `now`) whose content is still
/// there, for `$1` cutoff and `$2` now.
const DUE: &str =
    "status = 'closed' AND closed_at IS NOT NULL AND destroyed_at IS NULL AND closed_at < $1 \
    AND (hold_until IS NULL OR hold_until <= $2)";

/// What a destruction's pick binds after `$3`.
enum Extra<'a> {
    None,
    Setting(i64, &'a str),
    Key(&'a str),
}

/// A closed tip's key, for wrapping under its destruction day's KEK.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToWrapRow {
    pub id: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub closed_at: i64,
    pub commune_code: Option<i64>,
    pub category: String,
}

/// What the coming destructions hold, grouped: the day (Vietnam time, days since
/// 1970-01-01) the tips closed, their commune and category, how many.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClosedGroup {
    pub closed_day: i64,
    pub commune_code: Option<i64>,
    pub category: String,
    pub tips: i64,
}

impl Store {
    /// Every chief's retention setting: `(commune, category, months)`.
    pub async fn retention_settings(&self) -> StoreResult<Vec<(i64, String, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT commune_code, category, months FROM retention_settings ORDER BY commune_code, category")
            .fetch_all(p).await)
    }

    /// Sets (or, with `None`, clears) a commune's retention for a category.
    pub async fn set_retention(
        &self,
        commune: i64,
        category: &str,
        months: Option<i64>,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => match months {
            Some(m) => sqlx::query(
                "INSERT INTO retention_settings (commune_code, category, months, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (commune_code, category) DO UPDATE SET months = $3, updated_at = $4")
                .bind(commune).bind(category).bind(m).bind(now).execute(p).await.map(|_| ()),
            None => sqlx::query("DELETE FROM retention_settings WHERE commune_code = $1 AND category = $2")
                .bind(commune).bind(category).execute(p).await.map(|_| ()),
        })
    }

    /// Takes the retention pass of a day: `true` for the one caller (of any number of
    /// processes) that runs it.
    pub async fn claim_retention_run(&self, day: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO retention_runs (day, started_at) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING")
            .bind(day).bind(now).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Adds to the count a day's pass destroyed.
    pub async fn count_retention_run(&self, day: &str, destroyed: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE retention_runs SET destroyed = destroyed + $1 WHERE day = $2")
            .bind(destroyed).bind(day).execute(p).await.map(|_| ()))
    }

    /// Destroys the content of up to `limit` tips due under `rule` (closed before
    /// `cutoff`, not held at `now`), in one short transaction: the data key, the sealed
    /// fields, notes and photos deleted, the messages' bodies emptied (their count stays
    /// in the reports). Returns the ids destroyed.
    pub async fn destroy_due(
        &self,
        rule: &RetentionRule,
        cutoff: i64,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let (filter, bind) = rule.filter(4);
        let pick = format!(
            "SELECT id FROM tips WHERE {DUE} AND {filter} ORDER BY closed_at LIMIT {limit}"
        );
        let extra = match bind {
            Some((commune, category)) => Extra::Setting(commune, category),
            None => Extra::None,
        };
        self.destroy_picked(&pick, cutoff, now, extra).await
    }

    /// Destroys the content of up to `limit` tips whose data key is wrapped under
    /// `key_id`: a restored backup's tips under a retention day's KEK that was deleted
    /// since (their content is unreadable already; this removes the sealed bytes too).
    pub async fn destroy_under_key(
        &self,
        key_id: &str,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let pick = format!(
            "SELECT id FROM tips WHERE key_id = $4 AND destroyed_at IS NULL AND created_at > $1 LIMIT {limit}"
        );
        self.destroy_picked(&pick, i64::MIN, now, Extra::Key(key_id))
            .await
    }

    /// Destroys the tips `pick` selects (`$1` bound to `first`, `$2` now, `$4`… `extra`),
    /// in one short transaction.
    async fn destroy_picked(
        &self,
        pick: &str,
        first: i64,
        now: i64,
        extra: Extra<'_>,
    ) -> StoreResult<Vec<String>> {
        let sql = |lock: &str| {
            format!(
                "UPDATE tips SET destroyed_at = $2, wrapped_key = NULL, description = $3, \
                 place_details = NULL, village_text = NULL, occurred_at = NULL, contact = NULL, hold_until = NULL, \
                 hold_by = NULL, hold_reason = NULL WHERE id IN ({pick}{lock}) RETURNING id"
            )
        };
        let empty: Vec<u8> = Vec::new();
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let lock = match self.pool { Pool::Postgres(_) => " FOR UPDATE SKIP LOCKED", Pool::Sqlite(_) => "" };
            let sql = sql(lock);
            let mut q = sqlx::query_scalar(&sql).bind(first).bind(now).bind(&empty);
            match extra {
                Extra::None => {}
                Extra::Setting(commune, category) => q = q.bind(commune).bind(category),
                Extra::Key(key) => q = q.bind(key),
            }
            let ids: Vec<String> = q.fetch_all(&mut *tx).await?;
            if !ids.is_empty() {
                for (verb, table) in [
                    ("DELETE FROM attachments", "tip_id"),
                    ("DELETE FROM tip_notes", "tip_id"),
                    ("UPDATE tip_messages SET body = ", "tip_id"),
                ] {
                    let mut q = QueryBuilder::new(verb);
                    if verb.starts_with("UPDATE") {
                        q.push_bind(&empty);
                    }
                    q.push(format!(" WHERE {table} IN ("));
                    let mut list = q.separated(", ");
                    for id in &ids {
                        list.push_bind(id);
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Closed tips, not held at `now`, with their content, to be wrapped under the KEK of
    /// the day they are to be destroyed: those under no retention day's KEK yet, and those
    /// closed since `since` (closed again after a reopening). Paged by id after `after`.
    pub async fn retention_to_wrap(
        &self,
        now: i64,
        since: i64,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<ToWrapRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, key_id, wrapped_key, closed_at, commune_code, category FROM tips \
             WHERE status = 'closed' AND closed_at IS NOT NULL AND destroyed_at IS NULL AND wrapped_key IS NOT NULL \
             AND (hold_until IS NULL OR hold_until <= $1) AND (key_id NOT LIKE 'r%' OR closed_at >= $2) \
             AND id > $3 ORDER BY id LIMIT $4")
            .bind(now).bind(since).bind(after).bind(limit).fetch_all(p).await)
    }

    /// The closed tips a rule will destroy once `cutoff` has passed (those closed before
    /// it, not held at `now`), grouped by the day they closed, commune and category.
    pub async fn retention_upcoming(
        &self,
        rule: &RetentionRule,
        cutoff: i64,
        now: i64,
    ) -> StoreResult<Vec<ClosedGroup>> {
        let (filter, bind) = rule.filter(4);
        let sql = format!(
            "SELECT (closed_at + $3) / 86400000 AS closed_day, commune_code, category, COUNT(*) AS tips \
             FROM tips WHERE {DUE} AND {filter} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        );
        on_pool!(self, p => {
            let mut q = sqlx::query_as(&sql).bind(cutoff).bind(now).bind(crate::clock::VN_OFFSET_MS);
            if let Some((commune, category)) = bind {
                q = q.bind(commune).bind(category);
            }
            Ok(q.fetch_all(p).await?)
        })
    }

    /// Tips held as evidence at `now`: `(id, commune, hold_until)`.
    pub async fn retention_holds(&self, now: i64) -> StoreResult<Vec<(String, Option<i64>, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, commune_code, hold_until FROM tips WHERE hold_until > $1 AND destroyed_at IS NULL ORDER BY hold_until")
            .bind(now).fetch_all(p).await)
    }

    /// A held tip's sealed reason.
    pub async fn hold_reason(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT hold_reason FROM tips WHERE id = $1").bind(id).fetch_optional(p).await)?;
        Ok(v.flatten())
    }

    /// Holds a tip as evidence until `until` (by an account, the reason sealed), or with
    /// `None` lifts the hold. A destroyed tip cannot be held.
    pub async fn set_hold(
        &self,
        id: &str,
        hold: Option<(i64, &str, &[u8])>,
        now: i64,
    ) -> StoreResult<bool> {
        let (until, by, reason) = match hold {
            Some((u, b, r)) => (Some(u), Some(b), Some(r)),
            None => (None, None, None),
        };
        on_pool!(self, p => sqlx::query(
            "UPDATE tips SET hold_until = $1, hold_by = $2, hold_reason = $3, updated_at = $4 \
             WHERE id = $5 AND destroyed_at IS NULL")
            .bind(until).bind(by).bind(reason).bind(now).bind(id).execute(p).await.map(|r| r.rows_affected() == 1))
    }
}
