//! What the officers' alerts need from the database: who to tell, which tips are overdue,
//! and which process runs the SLA clock when several share one PostgreSQL.

use super::{Pool, Store, StoreResult};
use sqlx::{Connection, PgConnection, QueryBuilder};

/// The advisory-lock key of the SLA clock ("tinbao" in ASCII, then job number 1), so one
/// process of many sends the overdue alerts.
pub const SLA_CLOCK_LOCK: i64 = 0x7469_6e62_616f_0001;

/// An open tip past its deadline, not yet alerted: queue metadata only.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OverdueTip {
    pub id: String,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
}

/// Whether this process runs a once-only job. On PostgreSQL it holds a session-level
/// advisory lock on a connection of its own (outside the pool, so it never starves
/// requests) for as long as it lives; when that connection dies the server releases the
/// lock and another process takes the job over at its next tick. On SQLite, a file one
/// process serves, it is always the runner.
pub struct RunnerLock {
    store: Store,
    key: i64,
    conn: Option<PgConnection>,
    held: bool,
}

impl RunnerLock {
    /// Whether this process is the runner now: keeps the lock when it holds it (checking
    /// its connection is alive), tries to take it otherwise. Database errors answer "no"
    /// (logged), so a lost connection never lets two processes run the job for long.
    pub async fn is_runner(&mut self) -> bool {
        let Pool::Postgres(pool) = &self.store.pool else {
            return true;
        };
        let conn = match &mut self.conn {
            Some(c) => c,
            None => match PgConnection::connect_with(&pool.connect_options()).await {
                Ok(c) => self.conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the job-lock connection");
                    return false;
                }
            },
        };
        let answer = if self.held {
            // A live session still holds its session-level lock.
            conn.ping().await.map(|()| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await
        };
        match answer {
            Ok(runner) => {
                if runner && !self.held {
                    tracing::info!(key = self.key, "this process now runs the job");
                }
                self.held = runner;
                runner
            }
            Err(e) => {
                tracing::warn!(error = %e, "the job-lock connection failed; stepping down");
                // Dropping the connection ends the session, so the server frees the lock.
                self.conn = None;
                self.held = false;
                false
            }
        }
    }
}

impl Store {
    /// A lock deciding which process runs the job `key` (see [`RunnerLock`]).
    pub fn runner_lock(&self, key: i64) -> RunnerLock {
        RunnerLock {
            store: self.clone(),
            key,
            conn: None,
            held: false,
        }
    }

    /// Whether the store was closed (the server shut down), so background jobs stop.
    pub fn is_closed(&self) -> bool {
        on_pool!(self, p => { p.is_closed() })
    }

    /// The email addresses of a commune's active officers and chiefs.
    pub async fn commune_alert_emails(&self, commune: i64) -> StoreResult<Vec<String>> {
        on_pool!(self, p => sqlx::query_scalar(
            "SELECT DISTINCT email FROM accounts WHERE commune_code = $1 \
             AND role IN ('officer', 'chief') AND disabled = $2 \
             AND email IS NOT NULL AND email <> '' ORDER BY email"
        ).bind(commune).bind(false).fetch_all(p).await)
    }

    /// The email addresses of a province's active province-level accounts (they hold the
    /// queue of tips that name no commune).
    pub async fn province_alert_emails(&self, province: i64) -> StoreResult<Vec<String>> {
        on_pool!(self, p => sqlx::query_scalar(
            "SELECT DISTINCT email FROM accounts WHERE province_code = $1 \
             AND role = 'province' AND disabled = $2 \
             AND email IS NOT NULL AND email <> '' ORDER BY email"
        ).bind(province).bind(false).fetch_all(p).await)
    }

    /// Open tips whose deadline passed before `now` and that were not alerted yet, oldest
    /// deadline first, at most `limit`.
    pub async fn overdue_unalerted(&self, now: i64, limit: i64) -> StoreResult<Vec<OverdueTip>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, province_code, commune_code FROM tips \
             WHERE overdue_alerted_at IS NULL AND status <> 'closed' AND due_at < $1 \
             ORDER BY due_at, id LIMIT $2"
        ).bind(now).bind(limit).fetch_all(p).await)
    }

    /// Records that the overdue alert of these tips went out at `now`; returns how many
    /// tips it marked (a tip already marked stays as it was).
    pub async fn mark_overdue_alerted(&self, ids: &[String], now: i64) -> StoreResult<u64> {
        let mut marked = 0;
        for chunk in ids.chunks(500) {
            // Built per engine: a query builder is typed by its database.
            marked += on_pool!(self, p => {
                let mut qb = QueryBuilder::new("UPDATE tips SET overdue_alerted_at = ");
                qb.push_bind(now)
                    .push(" WHERE overdue_alerted_at IS NULL AND id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(id);
                }
                qb.push(")");
                qb.build().execute(p).await?.rows_affected()
            });
        }
        Ok(marked)
    }
}
