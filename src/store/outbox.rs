//! The durable outbox: every outgoing chat or SMS message (receipts, police follow-ups,
//! later broadcasts) is a row here before any provider sees it, so an outage delays
//! messages and loses none. Several processes share the rows through short leases
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL). Recipient and text are sealed, and erased
//! once the message is settled.

use super::lease::Claim;
use super::BeginWrite;
use super::{Pool, Store, StoreResult};

/// Where an outbox message stands (`outbox.status`), plus `delivered`, which the counts
/// and a broadcast's results report for a sent message with a delivery report (it is
/// never stored as a status: such a row stays `sent`, with `delivered_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutboxStatus {
    /// Waiting to be sent (or retried).
    Queued,
    /// A provider took it.
    Sent,
    /// Sent, and the provider reported it reached the handset (reported only).
    Delivered,
    /// It will not be sent: the provider refused it, or the attempts ran out.
    Failed,
    /// The recipient opted out or blocked us before it could go.
    OptedOut,
    /// Its broadcast was cancelled before it went.
    Cancelled,
}

impl OutboxStatus {
    /// Every status, in the order reports list them.
    pub const ALL: [OutboxStatus; 6] = [
        OutboxStatus::Queued,
        OutboxStatus::Sent,
        OutboxStatus::Delivered,
        OutboxStatus::Failed,
        OutboxStatus::OptedOut,
        OutboxStatus::Cancelled,
    ];

    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
            OutboxStatus::OptedOut => "opted_out",
            OutboxStatus::Cancelled => "cancelled",
        }
    }

    /// Reads a stored or reported name.
    pub fn parse(s: &str) -> Option<OutboxStatus> {
        OutboxStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the message is settled: it will not be tried again.
    pub fn is_settled(self) -> bool {
        self != OutboxStatus::Queued
    }
}

/// Follow-ups and receipts: sent ahead of bulk traffic.
pub const PRIORITY_FOLLOW_UP: i64 = 0;
/// Broadcasts.
pub const PRIORITY_BULK: i64 = 1;

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewOutboxRow {
    pub id: String,
    pub transport: &'static str,
    pub priority: i64,
    /// The tip this message answers, so the console can show its delivery.
    pub tip_id: Option<String>,
    /// The police message (tip_messages.id) this delivers.
    pub message_id: Option<String>,
    /// Sealed recipient address and text.
    pub recipient: Vec<u8>,
    pub body: Vec<u8>,
    pub created_at: i64,
}

/// A claimed message, ready to send.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub transport: String,
    pub priority: i64,
    pub tip_id: Option<String>,
    pub message_id: Option<String>,
    pub recipient: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
    pub attempts: i64,
    pub created_at: i64,
    /// A broadcast message: its broadcast and subscriber (text and address are theirs).
    pub broadcast_id: Option<String>,
    pub subscriber_id: Option<i64>,
}

/// Where one message of a tip stands, for the console.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub message_id: Option<String>,
    pub transport: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

const OUTBOX_COLUMNS: &str =
    "id, transport, priority, tip_id, message_id, recipient, body, attempts, \
     created_at, broadcast_id, subscriber_id";

/// Inserts queued messages inside an open transaction (a tip and its receipt commit
/// together).
macro_rules! insert_outbox_rows {
    ($tx:expr, $rows:expr) => {
        for r in $rows {
            sqlx::query(
                "INSERT INTO outbox (id, transport, priority, status, tip_id, message_id, recipient, body, \
                 next_attempt_at, created_at) VALUES ($1,$2,$3,'queued',$4,$5,$6,$7,$8,$8)",
            )
            .bind(&r.id)
            .bind(r.transport)
            .bind(r.priority)
            .bind(&r.tip_id)
            .bind(&r.message_id)
            .bind(&r.recipient)
            .bind(&r.body)
            .bind(r.created_at)
            .execute(&mut *$tx)
            .await?;
        }
    };
}
pub(crate) use insert_outbox_rows;

impl Store {
    /// Queues messages in one transaction.
    pub async fn enqueue(&self, rows: &[NewOutboxRow]) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            insert_outbox_rows!(tx, rows);
            Ok(tx.commit().await?)
        })
    }

    /// Claims up to `limit` due messages of the given transports until `lease_until`:
    /// follow-ups first, then the oldest; none of a priority above `max_priority` (bulk
    /// SMS waits out the quiet hours).
    pub async fn claim_outbox(
        &self,
        transports: &[&str],
        now: i64,
        lease_until: i64,
        limit: i64,
        max_priority: i64,
    ) -> StoreResult<Vec<OutboxRow>> {
        if transports.is_empty() {
            return Ok(Vec::new());
        }
        let list = super::quoted_list(transports);
        let filter = format!(
            "status = 'queued' AND next_attempt_at <= $2 AND transport IN ({list}) \
             AND priority <= {max_priority}"
        );
        let claim = Claim {
            table: "outbox",
            from: "outbox",
            filter: &filter,
            order: "priority, next_attempt_at",
            columns: OUTBOX_COLUMNS,
        };
        let mut rows: Vec<OutboxRow> = self.claim_leased(&claim, now, lease_until, limit).await?;
        rows.sort_by_key(|r| (r.priority, r.created_at));
        Ok(rows)
    }

    /// The delivery of every message queued for a tip, oldest first.
    pub async fn deliveries(&self, tip_id: &str) -> StoreResult<Vec<DeliveryRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT message_id, transport, status, attempts, last_error FROM outbox WHERE tip_id = $1 ORDER BY created_at")
            .bind(tip_id).fetch_all(p).await)
    }

    /// Messages by status (see [`OutboxStatus`]), for metrics and tests.
    pub async fn outbox_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        on_pool!(self, p => sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .fetch_all(p).await)
    }

    /// The soonest time a queued message falls due, if any.
    pub async fn outbox_next_due(&self) -> StoreResult<Option<i64>> {
        on_pool!(self, p => sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued'")
            .fetch_one(p).await)
    }
}

#[cfg(test)]
mod tests {
    use super::OutboxStatus;

    #[test]
    fn outbox_statuses_read_back_their_names() {
        for st in OutboxStatus::ALL {
            assert_eq!(OutboxStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(OutboxStatus::OptedOut.as_str(), "opted_out");
        assert_eq!(OutboxStatus::parse("sending"), None);
        assert!(!OutboxStatus::Queued.is_settled() && OutboxStatus::Failed.is_settled());
    }
}
