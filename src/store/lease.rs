//! Leasing due rows to one worker at a time, shared by the chat inbox and the outbox: an
//! `UPDATE … WHERE id IN (the due rows) RETURNING …` that stamps each claimed row with
//! its lease and counts the attempt. On PostgreSQL the due rows are locked with `FOR
//! UPDATE SKIP LOCKED`, so concurrent workers take different rows instead of waiting;
//! SQLite has one writer at a time, so its statement alone is enough.

use super::{Pool, Store, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;

/// Which rows a claim takes: `FROM {from} WHERE claimed_until < now AND {filter} ORDER BY
/// {order}`. `from` may alias the table (`inbox i`); `filter` may use `$2` (now).
pub(super) struct Claim<'a> {
    pub table: &'a str,
    pub from: &'a str,
    pub filter: &'a str,
    pub order: &'a str,
    /// The columns returned for each claimed row.
    pub columns: &'a str,
}

impl Store {
    /// Leases up to `limit` due rows until `lease_until` and returns them (in no
    /// particular order), each with its `attempts` counted up.
    pub(super) async fn claim_leased<R>(
        &self,
        claim: &Claim<'_>,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let Claim {
            table,
            from,
            filter,
            order,
            columns,
        } = claim;
        let sql = |lock: &str| {
            format!(
                "UPDATE {table} SET claimed_until = $1, attempts = attempts + 1 WHERE id IN (\
                 SELECT id FROM {from} WHERE claimed_until < $2 AND {filter} \
                 ORDER BY {order} LIMIT $3{lock}) RETURNING {columns}"
            )
        };
        let rows = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(&sql(""))
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_as(&sql(" FOR UPDATE SKIP LOCKED"))
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
        };
        Ok(rows)
    }
}
