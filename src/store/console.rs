//! The police queue and triage changes.

use super::BeginWrite;
use super::{Pool, Store, StoreResult};
use crate::tips::Status;
use sqlx::QueryBuilder;

/// Which tips a queue shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueScope {
    /// One commune's tips.
    Commune(i64),
    /// The tips of a province that have no commune.
    ProvinceUnplaced(i64),
    /// Tips with neither province nor commune.
    Unplaced,
}

/// Filters on a queue; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// A status; when `None`, open tips only.
    pub status: Option<String>,
    pub category: Option<String>,
    pub village_id: Option<i64>,
    pub channel: Option<String>,
    pub assignee_id: Option<String>,
    /// Only tips past their deadline at this time (Unix ms).
    pub overdue_at: Option<i64>,
    /// Keyset cursor: the (priority, due_at, id) of the last row of the previous page.
    pub after: Option<(i64, i64, String)>,
}

/// A queue line: metadata only, nothing sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub id: String,
    pub channel: String,
    pub category: String,
    pub priority: i64,
    pub status: String,
    pub happening_now: bool,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
    pub created_at: i64,
    pub due_at: i64,
    pub assignee_id: Option<String>,
    pub reward_eligible: bool,
}

/// A tip's triage fields.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TriageRow {
    pub assignee_id: Option<String>,
    pub duplicate_of: Option<String>,
    pub reward_eligible: bool,
}

/// An internal note, sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NoteRow {
    pub id: String,
    pub tip_id: String,
    pub author_id: String,
    pub created_at: i64,
    pub body: Vec<u8>,
}

macro_rules! push_scope {
    ($qb:expr, $scope:expr) => {
        match $scope {
            QueueScope::Commune(c) => {
                $qb.push(" commune_code = ").push_bind(c);
            }
            QueueScope::ProvinceUnplaced(p) => {
                $qb.push(" commune_code IS NULL AND province_code = ")
                    .push_bind(p);
            }
            QueueScope::Unplaced => {
                $qb.push(" commune_code IS NULL AND province_code IS NULL");
            }
        }
    };
}

impl Store {
    /// One page of a queue: most urgent first, then by deadline.
    pub async fn queue(
        &self,
        scope: QueueScope,
        f: &QueueFilter,
        limit: i64,
    ) -> StoreResult<Vec<QueueRow>> {
        on_pool!(self, p => {
            let mut qb = QueryBuilder::new(
                "SELECT id, channel, category, priority, status, happening_now, province_code, commune_code, \
                 village_id, created_at, due_at, assignee_id, reward_eligible FROM tips WHERE");
            push_scope!(qb, scope);
            // The literal `status <> 'closed'` lets both engines use the partial index of
            // open tips; only a search for closed tips reads the whole history.
            match &f.status {
                Some(s) if s == "closed" => { qb.push(" AND status = 'closed'"); }
                Some(s) => { qb.push(" AND status <> 'closed' AND status = ").push_bind(s.clone()); }
                None => { qb.push(" AND status <> 'closed'"); }
            }
            if let Some(c) = &f.category { qb.push(" AND category = ").push_bind(c.clone()); }
            if let Some(v) = f.village_id { qb.push(" AND village_id = ").push_bind(v); }
            if let Some(c) = &f.channel { qb.push(" AND channel = ").push_bind(c.clone()); }
            if let Some(a) = &f.assignee_id { qb.push(" AND assignee_id = ").push_bind(a.clone()); }
            if let Some(t) = f.overdue_at { qb.push(" AND due_at < ").push_bind(t); }
            if let Some((pr, due, id)) = &f.after {
                // A row-value comparison: both engines seek straight to the cursor.
                qb.push(" AND (priority, due_at, id) > (").push_bind(*pr).push(", ")
                    .push_bind(*due).push(", ").push_bind(id.clone()).push(")");
            }
            qb.push(" ORDER BY priority, due_at, id LIMIT ").push_bind(limit);
            qb.build_query_as::<QueueRow>().fetch_all(p).await.map_err(Into::into)
        })
    }

    /// Open tips per status in a queue.
    pub async fn open_status_counts(&self, scope: QueueScope) -> StoreResult<Vec<(String, i64)>> {
        on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT status, COUNT(*) FROM tips WHERE");
            push_scope!(qb, scope);
            // Each open status by name, not `status <> 'closed'`: with an equality per
            // status the (…, status, …) indexes count only open tips, where SQLite's
            // planner otherwise walks every tip of the commune, closed ones included.
            qb.push(" AND status IN (");
            let mut open = qb.separated(", ");
            for st in Status::ALL.iter().filter(|s| **s != Status::Closed) {
                open.push_bind(st.as_str());
            }
            qb.push(") GROUP BY status");
            qb.build_query_as::<(String, i64)>().fetch_all(p).await.map_err(Into::into)
        })
    }

    /// Open tips of a queue past their deadline at `now`.
    pub async fn overdue_count(&self, scope: QueueScope, now: i64) -> StoreResult<i64> {
        on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM tips WHERE");
            push_scope!(qb, scope);
            qb.push(" AND status <> 'closed' AND due_at < ").push_bind(now);
            qb.build_query_scalar::<i64>().fetch_one(p).await.map_err(Into::into)
        })
    }

    /// Closed tips in a queue (a scan of the history: callers cache it).
    pub async fn closed_count(&self, scope: QueueScope) -> StoreResult<i64> {
        on_pool!(self, p => {
            let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM tips WHERE");
            push_scope!(qb, scope);
            qb.push(" AND status = 'closed'");
            qb.build_query_scalar::<i64>().fetch_one(p).await.map_err(Into::into)
        })
    }

    /// Open and overdue tips per commune of a province (province officers read these).
    pub async fn commune_counts(
        &self,
        province: i64,
        now: i64,
    ) -> StoreResult<Vec<(i64, i64, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT commune_code, COUNT(*), SUM(CASE WHEN due_at < $2 THEN 1 ELSE 0 END) FROM tips \
             WHERE province_code = $1 AND commune_code IS NOT NULL AND status <> 'closed' \
             GROUP BY commune_code ORDER BY commune_code")
            .bind(province).bind(now).fetch_all(p).await)
    }

    /// A tip's triage fields.
    pub async fn triage(&self, id: &str) -> StoreResult<Option<TriageRow>> {
        on_pool!(self, p => sqlx::query_as("SELECT assignee_id, duplicate_of, reward_eligible FROM tips WHERE id = $1")
            .bind(id).fetch_optional(p).await)
    }

    /// Sets status and outcome.
    pub async fn set_status(
        &self,
        id: &str,
        status: &str,
        outcome: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            // Any status but "new" is the police acting on it (kept for the reports).
            // Closing starts the retention clock; reopening stops it.
            sqlx::query("UPDATE tips SET status = $1, outcome = $2, updated_at = $3, \
                 first_action_at = CASE WHEN $1 = 'new' THEN first_action_at ELSE COALESCE(first_action_at, $3) END, \
                 closed_at = CASE WHEN $1 <> 'closed' THEN NULL WHEN status = 'closed' THEN closed_at ELSE $3 END \
                 WHERE id = $4")
                .bind(status).bind(outcome).bind(now).bind(id).execute(&mut *tx).await?;
            // A closed tip's reply addresses (its own and its duplicates') are erased.
            if status == "closed" {
                sqlx::query("DELETE FROM tip_contacts WHERE tip_id = $1 OR tip_id IN (SELECT id FROM tips WHERE duplicate_of = $1)")
                    .bind(id).execute(&mut *tx).await?;
            }
            Ok(tx.commit().await?)
        })
    }

    /// Sets category, priority and the deadline that follows from it.
    pub async fn set_category_priority(
        &self,
        id: &str,
        category: &str,
        priority: i64,
        due_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "UPDATE tips SET category = $1, priority = $2, due_at = $3, overdue_alerted_at = NULL, updated_at = $4 WHERE id = $5")
            .bind(category).bind(priority).bind(due_at).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Assigns a tip to an officer (or nobody).
    pub async fn set_assignee(
        &self,
        id: &str,
        assignee: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE tips SET assignee_id = $1, updated_at = $2 WHERE id = $3")
            .bind(assignee).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Marks a tip as a duplicate of another and closes it with that outcome.
    pub async fn set_duplicate(&self, id: &str, of: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "UPDATE tips SET duplicate_of = $1, status = 'closed', outcome = 'duplicate', updated_at = $2, \
             first_action_at = COALESCE(first_action_at, $2), \
             closed_at = CASE WHEN status = 'closed' THEN closed_at ELSE $2 END WHERE id = $3")
            .bind(of).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Moves a tip to another commune's queue (unassigned there).
    /// Moves a tip to another commune's queue and keeps the reason as a sealed note, in one
    /// transaction: the tip never moves without its reason, nor the reason without the move.
    pub async fn transfer(
        &self,
        id: &str,
        province: i64,
        commune: i64,
        reason: &NoteRow,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO tip_notes (id, tip_id, author_id, created_at, body) VALUES ($1,$2,$3,$4,$5)")
                .bind(&reason.id).bind(&reason.tip_id).bind(&reason.author_id)
                .bind(reason.created_at).bind(&reason.body).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE tips SET province_code = $1, commune_code = $2, village_id = NULL, assignee_id = NULL, updated_at = $3, \
                 first_action_at = COALESCE(first_action_at, $3) WHERE id = $4")
                .bind(province).bind(commune).bind(now).bind(id).execute(&mut *tx).await?;
            Ok(tx.commit().await?)
        })
    }

    /// Marks a tip reward-eligible (or not).
    pub async fn set_reward(&self, id: &str, eligible: bool, now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE tips SET reward_eligible = $1, updated_at = $2 WHERE id = $3")
            .bind(eligible).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// The tips marked as duplicates of `id`.
    pub async fn duplicates_of(&self, id: &str) -> StoreResult<Vec<String>> {
        on_pool!(self, p => sqlx::query_scalar("SELECT id FROM tips WHERE duplicate_of = $1 ORDER BY created_at")
            .bind(id).fetch_all(p).await)
    }

    /// Adds a sealed internal note.
    pub async fn add_note(&self, n: &NoteRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("INSERT INTO tip_notes (id, tip_id, author_id, created_at, body) VALUES ($1,$2,$3,$4,$5)")
            .bind(&n.id).bind(&n.tip_id).bind(&n.author_id).bind(n.created_at).bind(&n.body).execute(p).await.map(|_| ()))
    }

    /// A tip's notes, oldest first.
    pub async fn notes(&self, tip_id: &str) -> StoreResult<Vec<NoteRow>> {
        on_pool!(self, p => sqlx::query_as("SELECT id, tip_id, author_id, created_at, body FROM tip_notes WHERE tip_id = $1 ORDER BY created_at, id")
            .bind(tip_id).fetch_all(p).await)
    }
}
