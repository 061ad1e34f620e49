//! Chat and SMS channels in the database: the durable inbox of provider events (with the
//! de-duplication of provider retries), the bots' sealed dialog state, and the sealed reply
//! addresses of open tips. Every address here is a keyed pseudonym or sealed bytes.

use super::lease::Claim;
use super::BeginWrite;
use super::{Pool, Store, StoreResult, ROWS_PER_STATEMENT};

/// An accepted provider event, sealed, waiting to be processed.
#[derive(Debug, Clone)]
pub struct NewInboxEvent {
    /// Random reference the sealed event is bound to.
    pub reference: String,
    pub transport: &'static str,
    /// The sender's keyed pseudonym.
    pub sender: Vec<u8>,
    pub received_at: i64,
    pub event: Vec<u8>,
    /// Keyed hash that recognises a provider's retry of this event.
    pub dedupe_key: Vec<u8>,
    /// A remembered key older than this no longer counts as a duplicate.
    pub dedupe_after: i64,
}

/// An inbox event claimed for processing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    #[sqlx(rename = "ref")]
    pub reference: String,
    pub transport: String,
    pub sender: Vec<u8>,
    pub received_at: i64,
    pub attempts: i64,
    pub event: Vec<u8>,
}

/// A bot conversation's stored state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatSessionRow {
    pub version: i64,
    pub updated_at: i64,
    pub state: Vec<u8>,
}

/// How to reach the tipster of an open tip.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TipContactRow {
    pub tip_id: String,
    pub transport: String,
    pub sender: Vec<u8>,
    pub address: Vec<u8>,
    pub created_at: i64,
    pub last_inbound_at: i64,
}

const INBOX_COLUMNS: &str = "id, ref, transport, sender, received_at, attempts, event";

/// The advisory-lock key of the arrivals' sorting ("tinbao", job 3).
const ARRIVALS_LOCK: i64 = 0x7469_6e62_616f_0003;

/// An event as it arrived, before it is sorted into the inbox.
#[derive(Debug, Clone, sqlx::FromRow)]
struct ArrivalRow {
    id: i64,
    #[sqlx(rename = "ref")]
    reference: String,
    transport: String,
    sender: Vec<u8>,
    received_at: i64,
    event: Vec<u8>,
    dedupe_key: Vec<u8>,
    dedupe_after: i64,
}

/// What one sorting of arrivals did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sorted {
    /// Events moved into the inbox.
    pub new: u64,
    /// Retries of events already accepted, dropped.
    pub retries: u64,
}

impl Store {
    /// Stores a batch of accepted events in one transaction, as arrivals: one append
    /// (a multi-row `INSERT`; a statement per event was a round trip to SQLite's thread
    /// and back per event). Whether an event is a provider's retry is found when
    /// [`Store::sort_arrivals`] moves it into the inbox.
    pub async fn insert_inbox(&self, events: &[&NewInboxEvent]) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for chunk in events.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO inbox_arrivals (ref, transport, sender, received_at, event, dedupe_key, dedupe_after) ");
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(&e.reference).push_bind(e.transport).push_bind(&e.sender)
                        .push_bind(e.received_at).push_bind(&e.event)
                        .push_bind(&e.dedupe_key).push_bind(e.dedupe_after);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Moves up to `limit` arrivals, oldest first, into the inbox in one transaction: an
    /// event whose de-duplication key was seen within its window (before, or earlier in
    /// the batch) is a provider's retry and is dropped; the others enter the inbox in the
    /// order they arrived. On PostgreSQL one process at a time sorts (an advisory lock),
    /// so that order holds across processes. Placing a large batch in the random-keyed
    /// indexes writes each of their pages once for many events (issue 15).
    pub async fn sort_arrivals(&self, limit: i64) -> StoreResult<Sorted> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            if let Pool::Postgres(_) = self.pool {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(ARRIVALS_LOCK).execute(&mut *tx).await?;
            }
            let rows: Vec<ArrivalRow> = sqlx::query_as(
                "SELECT id, ref, transport, sender, received_at, event, dedupe_key, dedupe_after \
                 FROM inbox_arrivals ORDER BY id LIMIT $1")
                .bind(limit).fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                return Ok(Sorted::default());
            }
            // The batch's replay windows, each with its events (one in practice).
            let mut windows: Vec<(i64, Vec<&ArrivalRow>)> = Vec::new();
            for r in &rows {
                let window = r.received_at - r.dedupe_after;
                match windows.iter_mut().find(|(w, _)| *w == window) {
                    Some((_, members)) => members.push(r),
                    None => windows.push((window, vec![r])),
                }
            }
            // Insert each key, or take over a stale one; a key the statement did not
            // return was seen within its window: a retry. A key once a statement
            // (PostgreSQL refuses to update a row twice in one); its later events in the
            // batch are retries anyway.
            let mut once = std::collections::HashSet::new();
            for (_, members) in windows.iter_mut() {
                members.retain(|r| once.insert(r.dedupe_key.as_slice()));
            }
            let mut taken: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
            for (window, members) in &windows {
                for chunk in members.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO inbound_seen (key, seen_at) ");
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.dedupe_key).push_bind(r.received_at);
                    });
                    q.push(" ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at \
                             WHERE inbound_seen.seen_at < excluded.seen_at - ");
                    q.push_bind(*window);
                    q.push(" RETURNING key");
                    let keys: Vec<Vec<u8>> = q.build_query_scalar().fetch_all(&mut *tx).await?;
                    taken.extend(keys);
                }
            }
            // The first event of a key is the new one; the same key again in the batch is
            // a retry that came at once.
            let new: Vec<&ArrivalRow> = rows.iter().filter(|r| taken.remove(&r.dedupe_key)).collect();
            for chunk in new.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO inbox (ref, transport, sender, received_at, event) ");
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.reference).push_bind(&r.transport).push_bind(&r.sender)
                        .push_bind(r.received_at).push_bind(&r.event);
                });
                q.build().execute(&mut *tx).await?;
            }
            // By id, each one: on PostgreSQL an arrival with a lower id may commit later.
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("DELETE FROM inbox_arrivals WHERE id IN (");
                let mut ids = q.separated(", ");
                for r in chunk {
                    ids.push_bind(r.id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Sorted { new: new.len() as u64, retries: (rows.len() - new.len()) as u64 })
        })
    }

    /// Claims up to `limit` waiting events until `lease_until`, oldest first, skipping
    /// senders whose earlier event another worker holds (so one person's messages are
    /// handled in order).
    pub async fn claim_inbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<InboxRow>> {
        let claim = Claim {
            table: "inbox",
            from: "inbox i",
            filter: "NOT EXISTS (SELECT 1 FROM inbox j WHERE j.sender = i.sender AND j.id < i.id)",
            order: "id",
            columns: INBOX_COLUMNS,
        };
        let mut rows: Vec<InboxRow> = self.claim_leased(&claim, now, lease_until, limit).await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Removes a processed event.
    pub async fn finish_inbox(&self, id: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM inbox WHERE id = $1").bind(id).execute(p).await.map(|_| ()))
    }

    /// Puts a claimed event back, to be tried again from `retry_at`.
    pub async fn release_inbox(&self, id: i64, retry_at: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE inbox SET claimed_until = $1 WHERE id = $2")
            .bind(retry_at).bind(id).execute(p).await.map(|_| ()))
    }

    /// Events waiting: in the inbox, and arrived but not sorted into it yet.
    pub async fn inbox_len(&self) -> StoreResult<i64> {
        on_pool!(self, p => sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM inbox_arrivals)").fetch_one(p).await)
    }

    /// Forgets de-duplication keys older than `before`.
    pub async fn forget_seen(&self, before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM inbound_seen WHERE seen_at < $1")
            .bind(before).execute(p).await.map(|r| r.rows_affected()))
    }

    // ---- dialog state ----

    /// A sender's stored conversation.
    pub async fn chat_session(&self, sender: &[u8]) -> StoreResult<Option<ChatSessionRow>> {
        on_pool!(self, p => sqlx::query_as("SELECT version, updated_at, state FROM chat_sessions WHERE sender = $1")
            .bind(sender).fetch_optional(p).await)
    }

    /// Saves a conversation if nobody changed it since `expected` was read (`None`: it did
    /// not exist); `false` when someone did.
    pub async fn save_chat_session(
        &self,
        sender: &[u8],
        transport: &str,
        expected: Option<i64>,
        now: i64,
        state: &[u8],
    ) -> StoreResult<bool> {
        let done = match expected {
            None => on_pool!(self, p => sqlx::query(
                "INSERT INTO chat_sessions (sender, transport, version, updated_at, state) VALUES ($1,$2,1,$3,$4) \
                 ON CONFLICT (sender) DO NOTHING")
                .bind(sender).bind(transport).bind(now).bind(state).execute(p).await.map(|r| r.rows_affected()))?,
            Some(v) => on_pool!(self, p => sqlx::query(
                "UPDATE chat_sessions SET version = version + 1, updated_at = $1, state = $2 \
                 WHERE sender = $3 AND version = $4")
                .bind(now).bind(state).bind(sender).bind(v).execute(p).await.map(|r| r.rows_affected()))?,
        };
        Ok(done == 1)
    }

    /// Forgets a conversation.
    pub async fn delete_chat_session(&self, sender: &[u8]) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM chat_sessions WHERE sender = $1")
            .bind(sender).execute(p).await.map(|_| ()))
    }

    /// Forgets conversations idle since before `before`.
    pub async fn expire_chat_sessions(&self, before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM chat_sessions WHERE updated_at < $1")
            .bind(before).execute(p).await.map(|r| r.rows_affected()))
    }

    // ---- reply addresses of open tips ----

    /// The open tips a sender reached the police about, newest first.
    pub async fn open_tips_of_sender(&self, sender: &[u8]) -> StoreResult<Vec<TipContactRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT c.tip_id, c.transport, c.sender, c.address, c.created_at, c.last_inbound_at \
             FROM tip_contacts c JOIN tips t ON t.id = c.tip_id \
             WHERE c.sender = $1 AND (t.status <> 'closed' OR t.duplicate_of IS NOT NULL) \
             ORDER BY c.created_at DESC")
            .bind(sender).fetch_all(p).await)
    }

    /// How to reach a tip's tipster, while the tip is open.
    pub async fn tip_contact(&self, tip_id: &str) -> StoreResult<Option<TipContactRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT tip_id, transport, sender, address, created_at, last_inbound_at FROM tip_contacts WHERE tip_id = $1")
            .bind(tip_id).fetch_optional(p).await)
    }

    /// Notes that the tipster wrote again (some providers allow answers only for a while
    /// after the person's last message).
    pub async fn touch_tip_contact(&self, tip_id: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE tip_contacts SET last_inbound_at = $1 WHERE tip_id = $2")
            .bind(now).bind(tip_id).execute(p).await.map(|_| ()))
    }

    /// Erases the reply address of a tip (and of the tips marked duplicates of it).
    pub async fn erase_tip_contacts(&self, tip_id: &str) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query(
            "DELETE FROM tip_contacts WHERE tip_id = $1 OR tip_id IN (SELECT id FROM tips WHERE duplicate_of = $1)")
            .bind(tip_id).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Erases every reply address of a sender (they opted out or blocked the bot).
    pub async fn erase_sender_contacts(&self, sender: &[u8]) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM tip_contacts WHERE sender = $1")
            .bind(sender).execute(p).await.map(|r| r.rows_affected()))
    }
}
