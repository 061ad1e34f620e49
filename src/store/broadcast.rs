//! Campaign broadcasts in the database: subscribers (sealed addresses found by keyed
//! pseudonym), broadcasts and their approval, the fan-out of a broadcast into the outbox
//! in resumable chunks, live counts, kept results, templates, per-commune settings, and the
//! send pacing every process shares.

use super::BeginWrite;
use super::{Pool, Store, StoreResult};

/// A subscription as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriberRow {
    pub id: i64,
    pub village_id: i64,
    pub commune_code: i64,
    pub transport: String,
    pub sender: Vec<u8>,
    pub address: Option<Vec<u8>>,
    pub language: String,
    pub status: String,
}

/// A subscription to store (the address already sealed).
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    pub village_id: i64,
    pub commune_code: i64,
    pub transport: String,
    pub sender: Vec<u8>,
    pub address: Vec<u8>,
    pub language: String,
    /// `active`, or `pending` until an email address is confirmed.
    pub status: &'static str,
    pub now: i64,
}

/// Where a broadcast is in its life: waiting for approval, approved and waiting for its
/// time, sending, finished, or cancelled. Stored by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastStatus {
    Pending,
    Scheduled,
    Sending,
    Done,
    Cancelled,
}

impl BroadcastStatus {
    /// Every status.
    pub const ALL: [BroadcastStatus; 5] = [
        BroadcastStatus::Pending,
        BroadcastStatus::Scheduled,
        BroadcastStatus::Sending,
        BroadcastStatus::Done,
        BroadcastStatus::Cancelled,
    ];

    /// The name kept in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastStatus::Pending => "pending",
            BroadcastStatus::Scheduled => "scheduled",
            BroadcastStatus::Sending => "sending",
            BroadcastStatus::Done => "done",
            BroadcastStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<BroadcastStatus> {
        BroadcastStatus::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// Not finished yet: it may still be approved, sent or cancelled.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            BroadcastStatus::Pending | BroadcastStatus::Scheduled | BroadcastStatus::Sending
        )
    }
}

impl TryFrom<String> for BroadcastStatus {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        BroadcastStatus::parse(&s).ok_or_else(|| format!("unknown broadcast status {s:?}"))
    }
}

/// A broadcast as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BroadcastRow {
    pub id: String,
    pub commune_code: i64,
    pub author_id: String,
    pub title: String,
    /// JSON object: language → text.
    pub texts: String,
    /// Comma-separated transports.
    pub transports: String,
    /// Comma-separated village ids.
    pub villages: String,
    #[sqlx(try_from = "String")]
    pub status: BroadcastStatus,
    pub send_at: i64,
    pub created_at: i64,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub started_at: Option<i64>,
    pub fanout_village: i64,
    pub fanout_cursor: i64,
    pub fanout_done: i64,
    pub queued: i64,
    pub finished_at: Option<i64>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<i64>,
}

const BROADCAST_COLUMNS: &str = "id, commune_code, author_id, title, texts, transports, villages, status, \
    send_at, created_at, approved_by, approved_at, started_at, fanout_village, fanout_cursor, fanout_done, \
    queued, finished_at, cancelled_by, cancelled_at";

/// A broadcast to store.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub id: String,
    pub commune_code: i64,
    pub author_id: String,
    pub title: String,
    pub texts: String,
    pub transports: String,
    pub villages: String,
    /// `Pending` (waiting for approval) or `Scheduled`.
    pub status: BroadcastStatus,
    pub send_at: i64,
    pub approved_by: Option<String>,
    pub created_at: i64,
}

/// A saved template.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub commune_code: i64,
    pub name: String,
    pub title: String,
    pub texts: String,
    pub transports: String,
    pub created_by: String,
    pub created_at: i64,
}

/// One line of a broadcast's counts: transport, outbox status, how many.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CountRow {
    pub transport: String,
    pub status: String,
    pub count: i64,
}

/// One line of a finished broadcast's kept results.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResultRow {
    pub village_id: i64,
    pub transport: String,
    pub status: String,
    pub count: i64,
}

/// Where a fan-out stands after a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutStep {
    /// Outbox rows written by this chunk.
    pub inserted: u64,
    /// Every subscriber has been visited.
    pub done: bool,
    /// Rows of the chunk were in the outbox already (written before a crash): skipped.
    pub skipped: bool,
}

/// The chunk's size and last subscriber id, to move the cursor even when every row of the
/// chunk was a duplicate (two numbers: not the chunk's 20,000 ids).
const FANOUT_WINDOW: &str = "SELECT COUNT(*), MAX(id) FROM (SELECT id FROM subscribers \
     WHERE village_id = $1 AND id > $2 ORDER BY id LIMIT $3) w";

/// Moves a fan-out's cursor (`$1` village, `$2` subscriber id), counts what it queued
/// (`$3`), says whether it is done (`$4`) and extends its lease (`$5`) for broadcast `$6`.
fn fanout_advance() -> String {
    format!(
        "UPDATE broadcasts SET fanout_village = $1, fanout_cursor = $2, queued = queued + $3, \
         fanout_done = $4, fanout_until = $5 WHERE id = $6 RETURNING {BROADCAST_COLUMNS}"
    )
}

/// A fan-out's statements in one village ([`Store::fanout_sql`]).
struct FanoutSql {
    /// The village (none: past the last one).
    village: Option<i64>,
    /// Its subscribers between two ids into the outbox (`$1` the broadcast, `$2` now,
    /// `$3` the village, `$4` after, `$5` up to).
    insert: String,
    /// The same, skipping rows already there.
    insert_skipping: String,
}

/// The settlement of one outbox message, written in batches.
#[derive(Debug, Clone)]
pub enum Settle {
    Sent {
        id: String,
        provider_id: Option<String>,
        at: i64,
    },
    Retry {
        id: String,
        next_at: i64,
        error: String,
    },
    /// `failed`, `opted_out` or `cancelled`, with a reason.
    Closed {
        id: String,
        status: super::OutboxStatus,
        error: String,
        at: i64,
    },
}

fn parse_ids(csv: &str) -> Vec<i64> {
    csv.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

use super::quoted_list;

const SUBSCRIBER_COLUMNS: &str =
    "id, village_id, commune_code, transport, sender, address, language, status";

/// Keeps a broadcast's counts per village, transport and outcome (`delivered` apart).
/// The village is the message's own (copied at fan-out, since an opted-out subscriber's
/// row is deleted), or, for a row queued before it had one, its subscriber's.
const KEEP_RESULTS: &str =
    "INSERT INTO broadcast_results (broadcast_id, village_id, transport, status, count) \
     SELECT $1, COALESCE(o.village_id, s.village_id), o.transport, \
     CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered' ELSE o.status END, COUNT(*) \
     FROM outbox o LEFT JOIN subscribers s ON s.id = o.subscriber_id WHERE o.broadcast_id = $1 \
     AND COALESCE(o.village_id, s.village_id) IS NOT NULL \
     GROUP BY COALESCE(o.village_id, s.village_id), o.transport, \
     CASE WHEN o.delivered_at IS NOT NULL THEN 'delivered' ELSE o.status END \
     ON CONFLICT DO NOTHING";

/// Counts the active subscriptions about to be deleted into `subscriber_losses` (the
/// day is `$1`; the caller adds its `WHERE` and [`GROUP_LOSSES`]).
const COUNT_LOSSES: &str =
    "INSERT INTO subscriber_losses (village_id, commune_code, transport, day, count) \
     SELECT village_id, commune_code, transport, $1, COUNT(*) FROM subscribers";
const GROUP_LOSSES: &str = "GROUP BY village_id, commune_code, transport \
     ON CONFLICT (village_id, transport, day) DO UPDATE SET count = subscriber_losses.count + excluded.count";

/// The Vietnam-time day number (days since 1970-01-01) of a moment.
pub fn vn_day_number(ms: i64) -> i64 {
    (ms + crate::clock::VN_OFFSET_MS).div_euclid(86_400_000)
}

/// A delivered message: its broadcast, village, subscriber and transport.
type DeliveredRow = (Option<String>, Option<i64>, Option<i64>, String);

impl Store {
    /// One village.
    pub async fn village(&self, id: i64) -> StoreResult<Option<super::Village>> {
        on_pool!(self, p => sqlx::query_as("SELECT id, commune_code, name FROM villages WHERE id = $1")
            .bind(id).fetch_optional(p).await)
    }

    // ----- subscribers ---------------------------------------------------------------

    /// Adds a subscription, or renews one (new address, language; an opted-out or pending
    /// subscription takes the new status). Returns its id and status.
    pub async fn upsert_subscriber(&self, s: &NewSubscriber) -> StoreResult<(i64, String)> {
        on_pool!(self, p => sqlx::query_as(
            "INSERT INTO subscribers (village_id, commune_code, transport, sender, address, language, status, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8) \
             ON CONFLICT (village_id, transport, sender) DO UPDATE SET address = excluded.address, \
             language = excluded.language, updated_at = excluded.updated_at, \
             status = CASE WHEN subscribers.status = 'active' THEN 'active' ELSE excluded.status END \
             RETURNING id, status")
            .bind(s.village_id).bind(s.commune_code).bind(&s.transport).bind(&s.sender)
            .bind(&s.address).bind(&s.language).bind(s.status).bind(s.now)
            .fetch_one(p).await)
    }

    /// Makes a pending subscription, unless one for this address and village is already
    /// pending or active (then `None`, and nothing changes): only a new pending row
    /// earns a confirmation email, even under concurrent requests.
    pub async fn claim_pending_subscriber(&self, s: &NewSubscriber) -> StoreResult<Option<i64>> {
        on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO subscribers (village_id, commune_code, transport, sender, address, language, status, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6,'pending',$7,$7) \
             ON CONFLICT (village_id, transport, sender) DO UPDATE SET address = excluded.address, \
             language = excluded.language, updated_at = excluded.updated_at, status = 'pending' \
             WHERE subscribers.status NOT IN ('active', 'pending') \
             RETURNING id")
            .bind(s.village_id).bind(s.commune_code).bind(&s.transport).bind(&s.sender)
            .bind(&s.address).bind(&s.language).bind(s.now)
            .fetch_optional(p).await)
    }

    /// The id and status of an address's subscription to a village, if there is one.
    pub async fn subscriber_status(
        &self,
        village_id: i64,
        transport: &str,
        sender: &[u8],
    ) -> StoreResult<Option<(i64, String)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, status FROM subscribers WHERE village_id = $1 AND transport = $2 AND sender = $3")
            .bind(village_id).bind(transport).bind(sender).fetch_optional(p).await)
    }

    /// Pending (unconfirmed) subscriptions of a village, and in all.
    pub async fn pending_subscriber_counts(&self, village_id: i64) -> StoreResult<(i64, i64)> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN village_id = $1 THEN 1 ELSE 0 END), 0), COUNT(*) \
             FROM subscribers WHERE status = 'pending'")
            .bind(village_id).fetch_one(p).await)
    }

    /// Deletes pending subscriptions last asked for before `before` (never confirmed:
    /// their link has lapsed). Returns how many went.
    pub async fn purge_pending_subscribers(&self, before: i64) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query(
            "DELETE FROM subscribers WHERE status = 'pending' AND updated_at < $1")
            .bind(before).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Stores many new subscriptions at once (imports, benchmarks); duplicates are
    /// skipped. Returns how many were new.
    pub async fn insert_subscribers(&self, subs: &[NewSubscriber]) -> StoreResult<u64> {
        let mut n = 0;
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for chunk in subs.chunks(1000) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO subscribers (village_id, commune_code, transport, sender, address, language, status, \
                     created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(s.village_id)
                        .push_bind(s.commune_code)
                        .push_bind(&s.transport)
                        .push_bind(&s.sender)
                        .push_bind(&s.address)
                        .push_bind(&s.language)
                        .push_bind(s.status)
                        .push_bind(s.now)
                        .push_bind(s.now);
                });
                q.push(" ON CONFLICT DO NOTHING");
                n += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(n)
    }

    /// One subscription.
    pub async fn subscriber(&self, id: i64) -> StoreResult<Option<SubscriberRow>> {
        on_pool!(self, p => sqlx::query_as(
            &format!("SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = $1"))
            .bind(id).fetch_optional(p).await)
    }

    /// Subscriptions by id (the dispatcher reads a claimed batch's recipients at once).
    pub async fn subscribers_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<SubscriberRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id IN ({list})"))
            .fetch_all(p).await)
    }

    /// The subscriptions of one person on one transport (by pseudonym).
    pub async fn subscriptions_of(&self, sender: &[u8]) -> StoreResult<Vec<SubscriberRow>> {
        on_pool!(self, p => sqlx::query_as(
            &format!("SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE sender = $1 AND status <> 'opted_out' ORDER BY id"))
            .bind(sender).fetch_all(p).await)
    }

    /// A pending (email) subscription becomes active. `false` when it was not pending.
    pub async fn confirm_subscriber(&self, id: i64, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query(
            "UPDATE subscribers SET status = 'active', updated_at = $1 WHERE id = $2 AND status = 'pending'")
            .bind(now).bind(id).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Opts one subscription out: its row is deleted (pseudonym, address, village and
    /// all; its queued messages then settle as opted out). `false` when there was none.
    pub async fn opt_out_subscriber(&self, id: i64) -> StoreResult<bool> {
        let day = vn_day_number(crate::clock::now_ms());
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(&format!("{COUNT_LOSSES} WHERE id = $2 AND status = 'active' {GROUP_LOSSES}"))
                .bind(day).bind(id).execute(&mut *tx).await?;
            let gone = sqlx::query("DELETE FROM subscribers WHERE id = $1")
                .bind(id).execute(&mut *tx).await?.rows_affected() == 1;
            tx.commit().await?;
            Ok(gone)
        })
    }

    /// Opts every subscription of a person out (STOP, a block, an unfollow), by their
    /// subscriber pseudonym: the rows are deleted. Returns how many there were.
    pub async fn opt_out_sender(&self, subscriber: &[u8]) -> StoreResult<u64> {
        let day = vn_day_number(crate::clock::now_ms());
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(&format!("{COUNT_LOSSES} WHERE sender = $2 AND status = 'active' {GROUP_LOSSES}"))
                .bind(day).bind(subscriber).execute(&mut *tx).await?;
            let gone = sqlx::query("DELETE FROM subscribers WHERE sender = $1")
                .bind(subscriber).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(gone)
        })
    }

    /// Runs a once-only change of every subscriber's pseudonym and sealed address (the
    /// address is sealed bound to the pseudonym), in one transaction, and records it under
    /// `step` in the meta table. `rekey` gives a row's new pseudonym and address from its
    /// old ones (`None` for an address it cannot open). Several processes starting at once
    /// run it once: the marker is written first, so a second one waits for the first's
    /// commit and then finds the step done. `None` when it was done already, otherwise how
    /// many rows changed.
    pub async fn rekey_subscribers<F>(&self, step: &str, rekey: F) -> StoreResult<Option<u64>>
    where
        F: Fn(&[u8], Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>),
    {
        const CHUNK: i64 = 1000;
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let fresh = sqlx::query(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(step).bind(b"done".as_slice())
                .execute(&mut *tx).await?.rows_affected();
            if fresh == 0 {
                return Ok(None);
            }
            let mut cursor = 0i64;
            let mut changed = 0u64;
            loop {
                let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT id, sender, address FROM subscribers WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(cursor).bind(CHUNK).fetch_all(&mut *tx).await?;
                let Some(last) = rows.last().map(|r| r.0) else { break };
                for (id, sender, address) in &rows {
                    let (sender, address) = rekey(sender, address.as_deref());
                    sqlx::query("UPDATE subscribers SET sender = $1, address = $2 WHERE id = $3")
                        .bind(sender).bind(address).bind(id)
                        .execute(&mut *tx).await?;
                    changed += 1;
                }
                cursor = last;
            }
            tx.commit().await?;
            Ok(Some(changed))
        })
    }

    /// Active subscribers per village and transport.
    pub async fn subscriber_counts(
        &self,
        villages: &[i64],
    ) -> StoreResult<Vec<(i64, String, i64)>> {
        if villages.is_empty() {
            return Ok(Vec::new());
        }
        let list = villages
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT village_id, transport, COUNT(*) FROM subscribers WHERE village_id IN ({list}) AND status = 'active' \
             GROUP BY village_id, transport ORDER BY village_id, transport"))
            .fetch_all(p).await)
    }

    // ----- broadcasts ----------------------------------------------------------------

    /// Stores a new broadcast.
    pub async fn insert_broadcast(&self, b: &NewBroadcast) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO broadcasts (id, commune_code, author_id, title, texts, transports, villages, status, send_at, \
             created_at, approved_by, approved_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11, \
             CASE WHEN $11 IS NULL THEN NULL ELSE $10 END)")
            .bind(&b.id).bind(b.commune_code).bind(&b.author_id).bind(&b.title).bind(&b.texts)
            .bind(&b.transports).bind(&b.villages).bind(b.status.as_str()).bind(b.send_at).bind(b.created_at)
            .bind(&b.approved_by)
            .execute(p).await.map(|_| ()))
    }

    /// One broadcast.
    pub async fn broadcast(&self, id: &str) -> StoreResult<Option<BroadcastRow>> {
        on_pool!(self, p => sqlx::query_as(&format!("SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id = $1"))
            .bind(id).fetch_optional(p).await)
    }

    /// The newest broadcasts of a commune.
    pub async fn broadcasts_of_commune(
        &self,
        commune: i64,
        limit: i64,
    ) -> StoreResult<Vec<BroadcastRow>> {
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE commune_code = $1 ORDER BY created_at DESC LIMIT $2"))
            .bind(commune).bind(limit).fetch_all(p).await)
    }

    /// Approves a waiting broadcast, never by its author. `false` when it was not waiting
    /// or the approver wrote it.
    pub async fn approve_broadcast(&self, id: &str, by: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query(
            "UPDATE broadcasts SET status = 'scheduled', approved_by = $1, approved_at = $2 \
             WHERE id = $3 AND status = 'pending' AND author_id <> $1")
            .bind(by).bind(now).bind(id).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Cancels a broadcast that has not finished: what is still queued is cancelled, what
    /// was sent stays counted. `false` when it had already finished.
    pub async fn cancel_broadcast(&self, id: &str, by: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let changed = sqlx::query(
                "UPDATE broadcasts SET status = 'cancelled', cancelled_by = $1, cancelled_at = $2, finished_at = $2 \
                 WHERE id = $3 AND status IN ('pending', 'scheduled', 'sending')")
                .bind(by).bind(now).bind(id).execute(&mut *tx).await?.rows_affected() == 1;
            if changed {
                sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', settled_at = $1, last_error = 'broadcast cancelled', \
                     claimed_until = 0 WHERE broadcast_id = $2 AND status = 'queued'")
                    .bind(now).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Broadcasts that need the runner: scheduled and due, or sending with a fan-out no
    /// process is working on, or fanned out and waiting to be finished.
    pub async fn broadcasts_to_run(&self, now: i64) -> StoreResult<Vec<BroadcastRow>> {
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE (status = 'scheduled' AND send_at <= $1) \
             OR (status = 'sending' AND (fanout_done = 1 OR fanout_until < $1)) ORDER BY send_at LIMIT 100"))
            .bind(now).fetch_all(p).await)
    }

    /// A due broadcast starts sending. `false` when another process started it.
    pub async fn start_broadcast(&self, id: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query(
            "UPDATE broadcasts SET status = 'sending', started_at = $1 WHERE id = $2 AND status = 'scheduled'")
            .bind(now).bind(id).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Takes the fan-out of a sending broadcast until `until` (one process at a time; a
    /// process that dies lets it go when the lease runs out). The row as it stands.
    pub async fn lease_fanout(
        &self,
        id: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<Option<BroadcastRow>> {
        on_pool!(self, p => sqlx::query_as(&format!(
            "UPDATE broadcasts SET fanout_until = $1 WHERE id = $2 AND status = 'sending' AND fanout_done = 0 \
             AND fanout_until < $3 RETURNING {BROADCAST_COLUMNS}"))
            .bind(until).bind(id).bind(now).fetch_optional(p).await)
    }

    /// The statements of a broadcast's fan-out in the village its cursor is in.
    fn fanout_sql(&self, b: &BroadcastRow) -> FanoutSql {
        let villages = parse_ids(&b.villages);
        let transports: Vec<&str> = b.transports.split(',').filter(|t| !t.is_empty()).collect();
        let list = quoted_list(&transports);
        let idx = usize::try_from(b.fanout_village).unwrap_or(usize::MAX);
        // Past the last village (a crash after the last chunk): nothing left but to say so.
        let village = villages.get(idx).copied();
        // A message's id follows its subscriber's: the same on a resumed chunk (so a row
        // is never queued twice), and ascending, so a million rows go into the outbox's
        // key in order rather than at random places.
        let id_expr = match self.pool {
            Pool::Sqlite(_) => "'b:' || $1 || ':' || printf('%012d', s.id)",
            Pool::Postgres(_) => "'b:' || $1 || ':' || lpad(s.id::text, 12, '0')",
        };
        // Someone subscribed in two of the villages (same channel, same address) gets the
        // message once: from the first village of the broadcast.
        let earlier = villages.get(..idx.min(villages.len())).unwrap_or_default();
        let once = if earlier.is_empty() {
            String::new()
        } else {
            let list = earlier
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            format!(
                " AND NOT EXISTS (SELECT 1 FROM subscribers d WHERE d.sender = s.sender AND \
                 d.transport = s.transport AND d.status = 'active' AND d.village_id IN ({list}))"
            )
        };
        let insert = format!(
            "INSERT INTO outbox (id, transport, priority, status, broadcast_id, subscriber_id, village_id, \
             next_attempt_at, created_at) \
             SELECT {id_expr}, s.transport, {bulk}, 'queued', $1, s.id, s.village_id, $2, $2 FROM subscribers s \
             WHERE s.village_id = $3 AND s.id > $4 AND s.id <= $5 AND s.status = 'active' AND s.transport IN ({list}){once}",
            bulk = super::PRIORITY_BULK
        );
        // The rows of a chunk cannot be there already (the cursor moves past them once
        // they are written), so a chunk is a plain insert, a third cheaper on PostgreSQL
        // than one that resolves conflicts; should a row be there all the same, the chunk
        // is done again with the conflicting rows skipped.
        let insert_skipping = format!("{insert} ON CONFLICT (id) DO NOTHING");
        FanoutSql {
            village,
            insert,
            insert_skipping,
        }
    }

    /// PostgreSQL: fans up to `lanes` chunks of `limit` subscribers of the village the
    /// cursor is in at once, each in a transaction of its own on a connection of its own
    /// (the database's work on as many cores), then moves the cursor past them in one
    /// more. A crash before the cursor moved leaves rows the cursor has not passed: the
    /// chunks are done again with those rows skipped ([`FanoutStep::skipped`]), and
    /// [`Store::recount_queued`] puts the broadcast's count right. SQLite (one writer)
    /// does one chunk at a time ([`Store::fanout_chunk`]).
    pub async fn fanout_chunks(
        &self,
        b: &BroadcastRow,
        limit: i64,
        lanes: usize,
        now: i64,
        until: i64,
    ) -> StoreResult<(BroadcastRow, FanoutStep)> {
        let p = match &self.pool {
            Pool::Postgres(p) if lanes > 1 => p,
            _ => return self.fanout_chunk(b, limit, now, until).await,
        };
        let villages = parse_ids(&b.villages);
        let sql = self.fanout_sql(b);
        // The chunks: (after, last) subscriber ids; the village ends with a chunk short
        // of `limit` (or with none).
        let mut windows = Vec::with_capacity(lanes);
        let mut after = b.fanout_cursor;
        let mut village_ends = true;
        if let Some(v) = sql.village {
            village_ends = false;
            while windows.len() < lanes && !village_ends {
                let (count, last): (i64, Option<i64>) = sqlx::query_as(FANOUT_WINDOW)
                    .bind(v)
                    .bind(after)
                    .bind(limit)
                    .fetch_one(p)
                    .await?;
                village_ends = count < limit;
                if let Some(last) = last {
                    windows.push((after, last));
                    after = last;
                }
            }
        }
        let sql = &sql;
        let chunks = windows.iter().map(|&(from, to)| async move {
            let mut tx = p.begin().await?;
            // As in `fanout_chunk`: a chunk lost in a crash is done again.
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
            let bind = |q| {
                sqlx::query(q)
                    .bind(&b.id)
                    .bind(now)
                    .bind(sql.village)
                    .bind(from)
                    .bind(to)
            };
            sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
            let (n, skipped) = match bind(&sql.insert).execute(&mut *tx).await {
                Ok(r) => (r.rows_affected(), false),
                Err(e) if super::is_unique_violation(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT chunk")
                        .execute(&mut *tx)
                        .await?;
                    let r = bind(&sql.insert_skipping).execute(&mut *tx).await?;
                    (r.rows_affected(), true)
                }
                Err(e) => return Err(e),
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>((n, skipped))
        });
        let written = futures_util::future::try_join_all(chunks).await?;
        let inserted: u64 = written.iter().map(|w| w.0).sum();
        let skipped = written.iter().any(|w| w.1);
        let (next_village, next_cursor) = if village_ends {
            (b.fanout_village + 1, 0)
        } else {
            (b.fanout_village, after)
        };
        let done = usize::try_from(next_village).unwrap_or(usize::MAX) >= villages.len();
        let mut tx = p.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let row: BroadcastRow = sqlx::query_as(&fanout_advance())
            .bind(next_village)
            .bind(next_cursor)
            .bind(inserted as i64)
            .bind(i64::from(done))
            .bind(until)
            .bind(&b.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            row,
            FanoutStep {
                inserted,
                done,
                skipped,
            },
        ))
    }

    /// Sets a broadcast's count of messages put in the outbox to what the outbox holds
    /// (after a fan-out that resumed from a crash, whose rows may have been written
    /// without being counted).
    pub async fn recount_queued(&self, id: &str) -> StoreResult<i64> {
        on_pool!(self, p => sqlx::query_scalar(
            "UPDATE broadcasts SET queued = (SELECT COUNT(*) FROM outbox WHERE broadcast_id = $1) \
             WHERE id = $1 RETURNING queued")
            .bind(id).fetch_one(p).await)
    }

    /// Fans one chunk of a broadcast's audience into the outbox: up to `limit` active
    /// subscribers of the village the cursor is in, after the cursor, on the broadcast's
    /// transports. A person subscribed to several of the villages gets one message: the
    /// outbox id is derived from the broadcast and the person's pseudonym. The cursor moves
    /// in the same transaction, so a crash repeats nothing and skips no one; the lease
    /// is extended to `until`.
    pub async fn fanout_chunk(
        &self,
        b: &BroadcastRow,
        limit: i64,
        now: i64,
        until: i64,
    ) -> StoreResult<(BroadcastRow, FanoutStep)> {
        let villages = parse_ids(&b.villages);
        let FanoutSql {
            village,
            insert,
            insert_skipping,
        } = self.fanout_sql(b);
        let (row, step) = on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            if matches!(self.pool, Pool::Postgres(_)) {
                // A chunk lost in a crash is lost with its cursor (same transaction) and
                // done again, so its commit need not wait for the disk. No message of it
                // goes out before it is on disk: the dispatcher claims a row in a commit
                // of its own that does wait, and so writes this one's log first.
                sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
            }
            let (count, last): (i64, Option<i64>) = match village {
                Some(v) => sqlx::query_as(FANOUT_WINDOW)
                    .bind(v).bind(b.fanout_cursor).bind(limit)
                    .fetch_one(&mut *tx).await?,
                None => (0, None),
            };
            let mut skipped = false;
            let (inserted, next_village, next_cursor) = match last {
                Some(last) => {
                    let bind = |sql| sqlx::query(sql)
                        .bind(&b.id).bind(now).bind(village).bind(b.fanout_cursor).bind(last);
                    sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
                    let n = match bind(&insert).execute(&mut *tx).await {
                        Ok(r) => r.rows_affected(),
                        Err(e) if super::is_unique_violation(&e) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT chunk").execute(&mut *tx).await?;
                            skipped = true;
                            bind(&insert_skipping).execute(&mut *tx).await?.rows_affected()
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if count < limit {
                        (n, b.fanout_village + 1, 0)
                    } else {
                        (n, b.fanout_village, last)
                    }
                }
                None => (0, b.fanout_village + 1, 0),
            };
            let done = usize::try_from(next_village).unwrap_or(usize::MAX) >= villages.len();
            let row: BroadcastRow = sqlx::query_as(&fanout_advance())
                .bind(next_village).bind(next_cursor).bind(inserted as i64).bind(i64::from(done))
                .bind(until).bind(&b.id)
                .fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (row, FanoutStep { inserted, done, skipped })
        });
        Ok((row, step))
    }

    /// Finishes a fanned-out broadcast once nothing of it is queued: its counts per
    /// village, transport and outcome are kept for the monthly report. `false` while
    /// messages are still waiting.
    pub async fn finish_broadcast(&self, id: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let waiting: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM outbox WHERE broadcast_id = $1 AND status = 'queued' LIMIT 1")
                .bind(id).fetch_optional(&mut *tx).await?;
            if waiting.is_some() {
                return Ok(false);
            }
            let changed = sqlx::query(
                "UPDATE broadcasts SET status = 'done', finished_at = $1 WHERE id = $2 AND status = 'sending' AND fanout_done = 1")
                .bind(now).bind(id).execute(&mut *tx).await?.rows_affected() == 1;
            if changed {
                sqlx::query(KEEP_RESULTS).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Writes the results of a cancelled broadcast (what was sent before the cancel),
    /// once nothing of it is claimed any more.
    pub async fn keep_cancelled_results(&self, id: &str) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(KEEP_RESULTS).bind(id).execute(p).await.map(|_| ()))
    }

    /// Live counts of a broadcast's messages by transport and outbox status (`delivered`
    /// counted apart: a delivered message is also `sent`).
    pub async fn broadcast_counts(&self, id: &str) -> StoreResult<Vec<CountRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT transport, status, COUNT(*) AS count FROM outbox WHERE broadcast_id = $1 GROUP BY transport, status \
             UNION ALL SELECT transport, 'delivered' AS status, COUNT(*) AS count FROM outbox \
             WHERE broadcast_id = $1 AND status = 'sent' AND delivered_at IS NOT NULL GROUP BY transport \
             ORDER BY 1, 2")
            .bind(id).fetch_all(p).await)
    }

    /// The kept results of a finished broadcast.
    pub async fn broadcast_results(&self, id: &str) -> StoreResult<Vec<ResultRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT village_id, transport, status, count FROM broadcast_results WHERE broadcast_id = $1 \
             ORDER BY village_id, transport, status")
            .bind(id).fetch_all(p).await)
    }

    /// Status and texts of broadcasts (the dispatcher checks a batch against them).
    pub async fn broadcast_texts(
        &self,
        ids: &[&str],
    ) -> StoreResult<Vec<(String, String, String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = quoted_list(ids);
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT id, status, title, texts FROM broadcasts WHERE id IN ({list})"))
            .fetch_all(p).await)
    }

    // ----- templates and settings ------------------------------------------------------

    /// Saves a template.
    pub async fn insert_template(&self, t: &TemplateRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO broadcast_templates (id, commune_code, name, title, texts, transports, created_by, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
            .bind(&t.id).bind(t.commune_code).bind(&t.name).bind(&t.title).bind(&t.texts)
            .bind(&t.transports).bind(&t.created_by).bind(t.created_at)
            .execute(p).await.map(|_| ()))
    }

    /// A commune's templates by name.
    pub async fn templates(&self, commune: i64) -> StoreResult<Vec<TemplateRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, commune_code, name, title, texts, transports, created_by, created_at FROM broadcast_templates \
             WHERE commune_code = $1 ORDER BY name")
            .bind(commune).fetch_all(p).await)
    }

    /// Deletes a template of a commune. `false` when there was none.
    pub async fn delete_template(&self, commune: i64, id: &str) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query("DELETE FROM broadcast_templates WHERE id = $1 AND commune_code = $2")
            .bind(id).bind(commune).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Whether a commune's broadcasts need approval (yes unless turned off).
    pub async fn broadcast_approval(&self, commune: i64) -> StoreResult<bool> {
        let v: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT broadcast_approval FROM commune_settings WHERE commune_code = $1")
            .bind(commune).fetch_optional(p).await)?;
        Ok(v.is_none_or(|v| v != 0))
    }

    /// Turns a commune's approval of broadcasts on or off.
    pub async fn set_broadcast_approval(
        &self,
        commune: i64,
        on: bool,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO commune_settings (commune_code, broadcast_approval, updated_at) VALUES ($1,$2,$3) \
             ON CONFLICT (commune_code) DO UPDATE SET broadcast_approval = excluded.broadcast_approval, \
             updated_at = excluded.updated_at")
            .bind(commune).bind(i64::from(on)).bind(now).execute(p).await.map(|_| ()))
    }

    // ----- sending -----------------------------------------------------------------------

    /// Reserves `n` consecutive send slots of `interval_us` on a transport, shared by every
    /// process: returns the first slot's time (microseconds).
    pub async fn reserve_send_slots(
        &self,
        transport: &str,
        n: i64,
        interval_us: i64,
        now_us: i64,
    ) -> StoreResult<i64> {
        let span = n.saturating_mul(interval_us);
        let end: i64 = on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO send_pacing (transport, next_at) VALUES ($1, $2 + $3) \
             ON CONFLICT (transport) DO UPDATE SET next_at = \
             CASE WHEN send_pacing.next_at > $2 THEN send_pacing.next_at ELSE $2 END + $3 RETURNING next_at")
            .bind(transport).bind(now_us).bind(span).fetch_one(p).await)?;
        Ok(end - span)
    }

    /// Writes a batch of settlements in one transaction. Recipient and text are erased
    /// from every settled row. The sent ones (nearly all) go in one statement per
    /// thousand, not one each: on PostgreSQL every statement is a round trip.
    pub async fn settle_outbox(&self, settles: &[&Settle]) -> StoreResult<()> {
        let sent: Vec<(&str, Option<&str>, i64)> = settles
            .iter()
            .filter_map(|s| match s {
                Settle::Sent {
                    id,
                    provider_id,
                    at,
                } => Some((id.as_str(), provider_id.as_deref(), *at)),
                _ => None,
            })
            .collect();
        const SET_SENT: &str = ") UPDATE outbox SET status = 'sent', provider_id = v.pid, settled_at = v.at, \
             recipient = NULL, body = NULL, last_error = NULL, claimed_until = 0 FROM v WHERE outbox.id = v.id";
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for chunk in sent.chunks(1000) {
                let mut q = sqlx::QueryBuilder::new("WITH v (id, pid, at) AS (");
                q.push_values(chunk, |mut b, (id, pid, at)| {
                    b.push_bind(*id).push_bind(*pid).push_bind(*at);
                });
                q.push(SET_SENT);
                q.build().execute(&mut *tx).await?;
            }
            for s in settles {
                match s {
                    Settle::Sent { .. } => continue,
                    Settle::Retry { id, next_at, error } => sqlx::query(
                        "UPDATE outbox SET next_attempt_at = $1, last_error = $2, claimed_until = 0 WHERE id = $3")
                        .bind(next_at).bind(error).bind(id).execute(&mut *tx).await?,
                    Settle::Closed { id, status, error, at } => sqlx::query(
                        "UPDATE outbox SET status = $1, last_error = $2, settled_at = $3, recipient = NULL, body = NULL, \
                         claimed_until = 0 WHERE id = $4")
                        .bind(status.as_str()).bind(error).bind(at).bind(id).execute(&mut *tx).await?,
                };
            }
            Ok(tx.commit().await?)
        })
    }

    /// A provider reported a message delivered to the handset. When its broadcast has
    /// finished, its kept results move the message from `sent` to `delivered` too.
    pub async fn outbox_delivered(&self, provider_id: &str, now: i64) -> StoreResult<bool> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            // The message's village: its own, or (queued before it had one) its subscriber's.
            let rows: Vec<DeliveredRow> = sqlx::query_as(
                "UPDATE outbox SET delivered_at = $1, provider_id = NULL WHERE provider_id = $2 AND status = 'sent' \
                 AND delivered_at IS NULL RETURNING broadcast_id, village_id, subscriber_id, transport")
                .bind(now).bind(provider_id).fetch_all(&mut *tx).await?;
            for (broadcast, village, subscriber, transport) in &rows {
                let Some(b) = broadcast else { continue };
                let village = match (village, subscriber) {
                    (Some(v), _) => Some(*v),
                    (None, Some(sub)) => sqlx::query_scalar("SELECT village_id FROM subscribers WHERE id = $1")
                        .bind(sub).fetch_optional(&mut *tx).await?,
                    (None, None) => None,
                };
                let Some(village) = village else { continue };
                let moved = sqlx::query(
                    "UPDATE broadcast_results SET count = count - 1 WHERE broadcast_id = $1 AND status = 'sent' \
                     AND count > 0 AND village_id = $2 AND transport = $3")
                    .bind(b).bind(village).bind(transport).execute(&mut *tx).await?.rows_affected();
                if moved > 0 {
                    sqlx::query(
                        "INSERT INTO broadcast_results (broadcast_id, village_id, transport, status, count) \
                         VALUES ($1, $2, $3, 'delivered', 1) \
                         ON CONFLICT (broadcast_id, village_id, transport, status) DO UPDATE SET count = broadcast_results.count + 1")
                        .bind(b).bind(village).bind(transport).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM broadcast_results WHERE broadcast_id = $1 AND count = 0")
                        .bind(b).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(!rows.is_empty())
        })
    }

    /// Where a broadcast message and its subscriber stand now (re-read just before a
    /// paced send, so an opt-out or a cancellation meanwhile counts).
    pub async fn broadcast_message_live(
        &self,
        outbox_id: &str,
    ) -> StoreResult<Option<(String, Option<String>)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT o.status, s.status FROM outbox o LEFT JOIN subscribers s ON s.id = o.subscriber_id WHERE o.id = $1")
            .bind(outbox_id).fetch_optional(p).await)
    }

    /// Keeps claimed messages leased to this process while they wait for their send.
    pub async fn extend_outbox_lease(&self, ids: &[&str], until: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = quoted_list(ids);
        on_pool!(self, p => sqlx::query(&format!(
            "UPDATE outbox SET claimed_until = $1 WHERE status = 'queued' AND id IN ({list})"))
            .bind(until).execute(p).await.map(|_| ()))
    }
}
