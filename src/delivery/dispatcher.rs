//! The outbox dispatcher: takes due messages from the durable outbox, sends each through
//! its provider within that provider's rate, and settles it: sent, retried with backoff
//! (a 429 pauses the whole transport for its Retry-After), or failed with the provider's
//! reason. Follow-ups go ahead of bulk traffic, and bulk SMS waits out the quiet hours.
//! Several processes may run it on one database: each message is leased to one of them
//! at a time (the lease is renewed while the message waits for its turn), and send slots
//! are reserved in the database, so together they never exceed a provider's rate.
//!
//! A bulk message names its batch and recipient: its [`BulkSource`] composes it just
//! before sending, so a cancellation or an opt-out counts at once.

use super::{decode_body, BulkBatch, BulkSource, Providers, QuietHours, Recheck, Unsent};
use crate::channels::{Outgoing, Provider, SendOutcome, Transport};
use crate::clock::now_ms;
use crate::config::{Config, OutboxConfig};
use crate::crypto::KeyRing;
use crate::store::{
    Engine, OutboxRow, OutboxStatus, Settle, SettleWriter, Store, StoreError, PRIORITY_BULK,
    PRIORITY_FOLLOW_UP,
};
use futures_util::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a claimed message stays with one process before another may take it; the
/// process renews it every third of that while the message waits.
const LEASE_MS: i64 = 15_000;
/// Messages claimed per round (a transport without a rate limit): a follow-up queued
/// behind a full batch waits for it, about a fifth of a second at 5,000 messages/s.
const BATCH: i64 = 1024;
/// Sends in flight at once.
const IN_FLIGHT: usize = 64;
/// Longest a provider's Retry-After pauses its transport.
const MAX_PAUSE_MS: i64 = 3_600_000;

/// A provider-side message id derived from the outbox row's id: the same row always
/// gets the same id, within the 36 characters gateways accept.
pub fn idempotency_id(row_id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, row_id.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The spacing of send slots for a rate: `rate` messages take 1.06 s, not 1 s, so that
/// a message and the one `rate` places after it are 60 ms further apart than a second:
/// slack for the time requests take to travel (a provider counts arrivals) before one
/// more message would fall in a one-second window. It costs 6 % of the rate.
fn slot_interval_us(per_second: u32) -> i64 {
    let r = i64::from(per_second.max(1));
    1_060_000 / r
}

/// One provider and the limits the dispatcher keeps for it.
struct Lane {
    provider: Arc<dyn Provider>,
    /// Messages per second, where limited.
    rate: Option<u32>,
    /// When this process last started a request to the provider (limited ones only).
    /// Slots reserved in the database spread the rate over processes; this gate keeps
    /// a message that reached its slot late (a slow re-check, a per-recipient wait)
    /// from going out right before the next one's.
    gate: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// The least time between two messages to one recipient, where the provider has one.
    per_recipient: Option<DefaultKeyedRateLimiter<Vec<u8>>>,
}

struct Dispatcher {
    store: Store,
    keys: Arc<KeyRing>,
    lanes: HashMap<Transport, Lane>,
    /// The transports in the order their providers were listed.
    order: Vec<Transport>,
    bulk: Option<Arc<dyn BulkSource>>,
    config: OutboxConfig,
    paused: Mutex<HashMap<Transport, i64>>,
    settle: SettleWriter,
    quiet: QuietHours,
}

/// Starts the dispatcher over `providers`; bulk rows get their messages from `bulk`.
/// `signal` wakes it when something is queued (it also looks every half second, for
/// rows other processes queued).
pub(super) fn spawn(
    store: Store,
    keys: Arc<KeyRing>,
    providers: Providers,
    bulk: Option<Arc<dyn BulkSource>>,
    config: &Config,
    signal: Arc<Notify>,
) {
    let mut lanes = HashMap::new();
    let mut order = Vec::new();
    for p in providers.iter() {
        let t = p.transport();
        let per_recipient = p
            .per_recipient_interval()
            .and_then(Quota::with_period)
            .map(RateLimiter::keyed);
        order.push(t);
        lanes.insert(
            t,
            Lane {
                rate: p.rate_per_second().filter(|r| *r > 0),
                provider: p.clone(),
                gate: tokio::sync::Mutex::new(None),
                per_recipient,
            },
        );
    }
    let workers = match store.engine() {
        Engine::Sqlite => 1,
        Engine::Postgres => 2,
    };
    let d = Arc::new(Dispatcher {
        settle: SettleWriter::spawn(store.clone(), workers),
        store,
        keys,
        lanes,
        order,
        bulk,
        config: config.outbox.clone(),
        paused: Mutex::new(HashMap::new()),
        quiet: QuietHours::from_config(&config.broadcast),
    });
    tokio::spawn(async move {
        let mut rounds: u64 = 0;
        loop {
            if d.store.is_closed() {
                break;
            }
            let sent = match d.round().await {
                Ok(n) => n,
                Err(e) => {
                    if d.store.is_closed() {
                        break;
                    }
                    tracing::warn!(error = %e, "outbox round failed; retrying");
                    0
                }
            };
            rounds += 1;
            if rounds.is_multiple_of(1024) {
                for lane in d.lanes.values() {
                    if let Some(l) = &lane.per_recipient {
                        l.retain_recent();
                    }
                }
            }
            if sent == 0 {
                // Nothing due: sleep until woken, or poll for other processes' rows.
                let _ = tokio::time::timeout(Duration::from_millis(500), signal.notified()).await;
            }
        }
    });
}

fn closed(id: &str, status: OutboxStatus, error: &str) -> Settle {
    Settle::Closed {
        id: id.to_owned(),
        status,
        error: error.to_owned(),
        at: now_ms(),
    }
}

fn unsent(id: &str, u: &Unsent) -> Settle {
    closed(id, u.status, &u.reason)
}

/// A batch with no bulk source to compose its bulk rows.
struct NoBulk;

impl BulkBatch for NoBulk {
    fn compose(&self, _: &OutboxRow) -> Result<super::Composed, Unsent> {
        Err(Unsent::new(
            OutboxStatus::Failed,
            "nothing composes bulk messages",
        ))
    }
}

impl Dispatcher {
    fn active_transports(&self, now: i64) -> Vec<Transport> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        self.order
            .iter()
            .copied()
            .filter(|t| paused.get(t).is_none_or(|until| *until <= now))
            .collect()
    }

    /// How many messages of a transport to claim at once: about two seconds of its
    /// rate, so that a follow-up queued behind a broadcast waits little.
    fn claim_limit(&self, lane: &Lane) -> i64 {
        match lane.rate {
            Some(r) => (i64::from(r) * 2).clamp(1, BATCH),
            None => BATCH,
        }
    }

    async fn round(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut claimed = Vec::new();
        for t in self.active_transports(now) {
            let lane = &self.lanes[&t];
            // Bulk SMS waits out the quiet hours; follow-ups go at any hour.
            let max_priority = if lane.provider.is_sms() && self.quiet.is_quiet(now) {
                PRIORITY_FOLLOW_UP
            } else {
                PRIORITY_BULK
            };
            let rows = self
                .store
                .claim_outbox(
                    &[t.as_str()],
                    now,
                    now + LEASE_MS,
                    self.claim_limit(lane),
                    max_priority,
                )
                .await?;
            if !rows.is_empty() {
                claimed.push((t, rows));
            }
        }
        let n = claimed.iter().map(|(_, r)| r.len()).sum();
        // Each transport keeps its own order and rate; transports run side by side.
        let lanes = claimed.into_iter().map(|(t, rows)| {
            let d = self.clone();
            async move { d.lane(t, rows).await }
        });
        for r in futures_util::future::join_all(lanes).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "an outbox batch could not be settled");
            }
        }
        Ok(n)
    }

    /// Sends one transport's claimed batch.
    async fn lane(self: &Arc<Self>, t: Transport, rows: Vec<OutboxRow>) -> Result<(), StoreError> {
        let batch: Arc<dyn BulkBatch> = match (&self.bulk, rows.iter().any(is_bulk)) {
            (Some(source), true) => Arc::from(source.load(&rows).await?),
            _ => Arc::new(NoBulk),
        };
        // Send slots: reserved in the database, so every process together keeps the rate.
        let slots: Option<(i64, i64)> = match self.lanes[&t].rate {
            Some(r) => {
                let interval = slot_interval_us(r);
                let now_us = chrono::Utc::now().timestamp_micros();
                let first = self
                    .store
                    .reserve_send_slots(t.as_str(), rows.len() as i64, interval, now_us)
                    .await?;
                Some((first, interval))
            }
            None => None,
        };
        // Renew the lease of what is still waiting, until the batch is done.
        let pending: Arc<Mutex<HashSet<String>>> =
            Arc::new(Mutex::new(rows.iter().map(|r| r.id.clone()).collect()));
        let renew = {
            let (store, pending) = (self.store.clone(), pending.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                    let ids: Vec<String> = pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .cloned()
                        .collect();
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let _ = store.extend_outbox_lease(&refs, now_ms() + LEASE_MS).await;
                }
            })
        };
        let results: Vec<Result<(), StoreError>> =
            futures_util::stream::iter(rows.into_iter().enumerate())
                .map(|(i, row)| {
                    let (d, batch, pending) = (self.clone(), batch.clone(), pending.clone());
                    async move {
                        let id = row.id.clone();
                        let slot = slots.map(|(first, interval)| first + interval * i as i64);
                        let r = d.send_at(t, row, slot, &*batch).await;
                        pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        r
                    }
                })
                .buffered(IN_FLIGHT)
                .collect()
                .await;
        renew.abort();
        results.into_iter().collect()
    }

    /// Sends one message at its reserved slot (µs since the epoch), if it has one. A wait
    /// for a slot takes time: an opt-out or a cancellation meanwhile counts.
    async fn send_at(
        &self,
        t: Transport,
        row: OutboxRow,
        slot: Option<i64>,
        batch: &dyn BulkBatch,
    ) -> Result<(), StoreError> {
        if let Some(at) = slot {
            let wait = at - chrono::Utc::now().timestamp_micros();
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait as u64)).await;
            }
            if let (true, Some(source)) = (is_bulk(&row), &self.bulk) {
                match source.recheck(&row).await? {
                    Recheck::Send => {}
                    // Cancelled meanwhile: already settled.
                    Recheck::Settled => return Ok(()),
                    Recheck::Unsent(u) => return self.settle.settle(unsent(&row.id, &u)).await,
                }
            }
        }
        self.deliver(t, row, batch).await
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(1, 30) - 1;
        let ms = self.config.backoff_ms.saturating_mul(1u64 << exp);
        ms.min(self.config.max_backoff_seconds.saturating_mul(1000)) as i64
    }

    /// The message a row carries and its recipient's sender pseudonym: sealed in the row
    /// (follow-ups), or composed by the bulk source. `Err` settles the message without
    /// sending it.
    fn message(
        &self,
        t: Transport,
        row: &OutboxRow,
        batch: &dyn BulkBatch,
    ) -> Result<(Outgoing, Vec<u8>), Settle> {
        if is_bulk(row) {
            return batch
                .compose(row)
                .map(|c| (c.message, c.recipient))
                .map_err(|u| unsent(&row.id, &u));
        }
        let opened = match (&row.recipient, &row.body) {
            (Some(to), Some(body)) => self
                .keys
                .open_record("outbox-to", &row.id, to)
                .ok()
                .zip(self.keys.open_record("outbox-body", &row.id, body).ok()),
            _ => None,
        };
        let Some((to, body)) = opened else {
            return Err(closed(
                &row.id,
                OutboxStatus::Failed,
                "message could not be opened",
            ));
        };
        let to = String::from_utf8_lossy(&to).into_owned();
        let recipient = self.keys.sender_pseudonym(t.as_str(), &to);
        Ok((decode_body(to, &body), recipient))
    }

    async fn deliver(
        &self,
        t: Transport,
        row: OutboxRow,
        batch: &dyn BulkBatch,
    ) -> Result<(), StoreError> {
        let lane = &self.lanes[&t];
        let now = now_ms();
        let (message, recipient) = match self.message(t, &row, batch) {
            Ok(x) => x,
            Err(settle) => return self.settle.settle(settle).await,
        };
        // Some providers let us answer a person only for a while after they last wrote.
        if let (Some(window), Some(tip_id)) = (lane.provider.reply_window(), &row.tip_id) {
            if let Some(c) = self.store.tip_contact(tip_id).await? {
                if now - c.last_inbound_at > i64::try_from(window.as_millis()).unwrap_or(i64::MAX) {
                    let why = format!(
                        "outside {}'s {}-hour reply window",
                        capitalised(t.as_str()),
                        window.as_secs() / 3600
                    );
                    return self
                        .settle
                        .settle(closed(&row.id, OutboxStatus::Failed, &why))
                        .await;
                }
            }
        }
        if let Some(limiter) = &lane.per_recipient {
            limiter.until_key_ready(&recipient).await;
        }
        if let Some(rate) = lane.rate {
            let mut last = lane.gate.lock().await;
            let now = tokio::time::Instant::now();
            let at = last.map_or(now, |l| {
                (l + Duration::from_micros(slot_interval_us(rate) as u64)).max(now)
            });
            tokio::time::sleep_until(at).await;
            *last = Some(at);
        }
        let message = message.with_idempotency_key(idempotency_id(&row.id));
        let outcome = lane.provider.send(&message).await;
        let now = now_ms();
        metrics::counter!("tinbao_outbox_attempts_total",
            "transport" => t.as_str(), "outcome" => outcome.name())
        .increment(1);
        let settle = match outcome {
            SendOutcome::Accepted { provider_id } => Settle::Sent {
                id: row.id.clone(),
                provider_id,
                at: now,
            },
            SendOutcome::RetryAfter(wait) => {
                let until = now + (wait.as_millis().min(MAX_PAUSE_MS as u128) as i64);
                self.paused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(t, until);
                Settle::Retry {
                    id: row.id.clone(),
                    next_at: until,
                    error: "rate limited by the provider".into(),
                }
            }
            SendOutcome::Transient(reason) => {
                if row.attempts >= i64::from(self.config.max_attempts) {
                    closed(&row.id, OutboxStatus::Failed, &reason)
                } else {
                    Settle::Retry {
                        id: row.id.clone(),
                        next_at: now + self.backoff(row.attempts),
                        error: reason,
                    }
                }
            }
            SendOutcome::Rejected(reason) => closed(&row.id, OutboxStatus::Failed, &reason),
            SendOutcome::OptedOut(reason) => {
                // The person blocked the bot or unsubscribed: forget how to reach them,
                // for tips and for broadcasts.
                self.store.erase_sender_contacts(&recipient).await?;
                self.store.delete_chat_session(&recipient).await?;
                let subscriber = self.keys.subscriber_pseudonym_of(&recipient);
                self.store.opt_out_sender(&subscriber).await?;
                closed(
                    &row.id,
                    OutboxStatus::OptedOut,
                    &format!("opted out: {reason}"),
                )
            }
        };
        self.settle.settle(settle).await
    }
}

/// A provider's name as a sentence spells it ("zalo" → "Zalo").
fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Whether a row is a bulk message (it names its batch, not its text).
fn is_bulk(row: &OutboxRow) -> bool {
    row.broadcast_id.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_ids_are_stable_and_short() {
        let a = idempotency_id("0123456789abcdef0123456789abcdef");
        assert_eq!(a, idempotency_id("0123456789abcdef0123456789abcdef"));
        assert_ne!(a, idempotency_id("another row"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn slots_spread_a_rate_over_a_little_more_than_a_second() {
        assert_eq!(slot_interval_us(1), 1_060_000);
        assert_eq!(slot_interval_us(50), 21_200);
        assert_eq!(slot_interval_us(0), 1_060_000);
    }

    #[test]
    fn reply_window_reasons_spell_the_provider_as_before() {
        assert_eq!(capitalised("zalo"), "Zalo");
        assert_eq!(capitalised(""), "");
    }
}
