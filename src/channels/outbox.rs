//! The outbox dispatcher: takes due messages from the durable outbox, sends each through
//! its provider within that provider's rate, and settles it: sent, retried with backoff
//! (a 429 pauses the whole transport for its Retry-After), or failed with the provider's
//! reason. Follow-ups go ahead of bulk traffic, and bulk SMS waits out the quiet hours.
//! Several processes may run it on one database: each message is leased to one of them
//! at a time (the lease is renewed while the message waits for its turn), and send slots
//! are reserved in the database, so together they never exceed a provider's rate.
//!
//! A broadcast message names its broadcast and subscriber: the text and the address are
//! read just before sending, so a cancellation or an opt-out counts at once.

use super::email::Mailer;
use super::sms::{AndroidClient, TwilioClient};
use super::telegram::TelegramClient;
use super::zalo::ZaloClient;
use super::{SendOutcome, Transport};
use crate::broadcast::{open_subscriber_address, text_for, unsubscribe_url, EmailBody, QuietHours};
use crate::clock::now_ms;
use crate::config::{Config, OutboxConfig};
use crate::crypto::KeyRing;
use crate::store::{
    OutboxRow, Settle, SettleWriter, Store, SubscriberRow, PRIORITY_BULK, PRIORITY_FOLLOW_UP,
};
use futures_util::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
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
/// Zalo lets an Official Account answer a person only for a while after their last
/// message (48 hours for consultation messages).
pub const ZALO_REPLY_WINDOW_MS: i64 = 48 * 3600 * 1000;

/// The configured provider clients.
#[derive(Clone, Default)]
pub struct Providers {
    pub telegram: Option<TelegramClient>,
    pub zalo: Option<ZaloClient>,
    pub twilio: Option<TwilioClient>,
    pub android: Option<AndroidClient>,
    /// Email to broadcast subscribers.
    pub email: Option<Mailer>,
    /// Send SMS without diacritics.
    pub sms_strip_diacritics: bool,
}

impl Providers {
    /// The transports that have a client.
    pub fn transports(&self) -> Vec<Transport> {
        let mut out = Vec::new();
        if self.telegram.is_some() {
            out.push(Transport::Telegram);
        }
        if self.zalo.is_some() {
            out.push(Transport::Zalo);
        }
        if self.twilio.is_some() {
            out.push(Transport::Twilio);
        }
        if self.android.is_some() {
            out.push(Transport::Android);
        }
        if self.email.is_some() {
            out.push(Transport::Email);
        }
        out
    }

    /// One attempt to send `text` to `to`. `key` names the message for providers that
    /// keep one message per key (the Android gateway's message id). An email's text is
    /// an [`EmailBody`] in JSON.
    pub async fn send(&self, transport: Transport, to: &str, text: &str, key: &str) -> SendOutcome {
        let missing = || SendOutcome::Transient("the channel is not configured".into());
        match transport {
            Transport::Telegram => match &self.telegram {
                Some(c) => c.send(to, text).await,
                None => missing(),
            },
            Transport::Zalo => match &self.zalo {
                Some(c) => c.send(to, text).await,
                None => missing(),
            },
            Transport::Twilio | Transport::Android => {
                let text = super::sms::prepare_text(text, self.sms_strip_diacritics);
                match (transport, &self.twilio, &self.android) {
                    (Transport::Twilio, Some(c), _) => c.send(to, &text).await,
                    (Transport::Android, _, Some(c)) => {
                        c.send_with_id(to, &text, Some(&idempotency_id(key))).await
                    }
                    _ => missing(),
                }
            }
            Transport::Email => match (&self.email, serde_json::from_str::<EmailBody>(text)) {
                (Some(m), Ok(mail)) => {
                    m.send_one(to, &mail.subject, &mail.text, mail.unsubscribe.as_deref())
                        .await
                }
                (Some(_), Err(_)) => SendOutcome::Rejected("email: unreadable message".into()),
                (None, _) => missing(),
            },
        }
    }
}

/// A provider-side message id derived from the outbox row's id: the same row always
/// gets the same id, within the 36 characters gateways accept.
fn idempotency_id(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Dispatcher {
    store: Store,
    keys: Arc<KeyRing>,
    providers: Providers,
    config: OutboxConfig,
    /// Messages per second per transport, where limited.
    rates: HashMap<Transport, u32>,
    /// When this process last started a request to each limited transport. Slots
    /// reserved in the database spread the rate over processes; this gate keeps a
    /// message that reached its slot late (a slow re-check, a per-chat wait) from
    /// going out right before the next one's.
    gates: HashMap<Transport, tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// Telegram allows about one message a second to one chat.
    per_chat: DefaultKeyedRateLimiter<Vec<u8>>,
    paused: Mutex<HashMap<Transport, i64>>,
    settle: SettleWriter,
    quiet: QuietHours,
    public_url: String,
}

/// What a batch needs to know of its broadcasts: status, title, texts by language.
struct BroadcastInfo {
    status: String,
    title: String,
    texts: BTreeMap<String, String>,
}

/// The spacing of send slots for a rate: `rate` messages take 1.06 s, not 1 s, so that
/// a message and the one `rate` places after it are 60 ms further apart than a second:
/// slack for the time requests take to travel (a provider counts arrivals) before one
/// more message would fall in a one-second window. It costs 6 % of the rate.
fn slot_interval_us(per_second: u32) -> i64 {
    let r = i64::from(per_second.max(1));
    1_060_000 / r
}

/// Starts the dispatcher over the configured providers; `signal` wakes it when something
/// is queued (it also looks every half second, for rows other processes queued).
pub fn spawn(
    store: Store,
    keys: Arc<KeyRing>,
    providers: Providers,
    config: &Config,
    signal: Arc<Notify>,
) {
    let mut rates = HashMap::new();
    // A rate of 0 means "no limit" (benchmarks against fake providers).
    for (t, r) in [
        (Transport::Telegram, config.telegram.rate_per_second),
        (Transport::Zalo, config.zalo.rate_per_second),
        (Transport::Twilio, config.sms.twilio.rate_per_second),
        (Transport::Android, config.sms.android.rate_per_second),
        (Transport::Email, config.broadcast.email_rate_per_second),
    ] {
        if r > 0 {
            rates.insert(t, r);
        }
    }
    let workers = match store.engine() {
        crate::store::Engine::Sqlite => 1,
        crate::store::Engine::Postgres => 2,
    };
    let d = Arc::new(Dispatcher {
        settle: SettleWriter::spawn(store.clone(), workers),
        store,
        keys,
        providers,
        config: config.outbox.clone(),
        gates: rates
            .keys()
            .map(|t| (*t, tokio::sync::Mutex::new(None)))
            .collect(),
        rates,
        per_chat: RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN)),
        paused: Mutex::new(HashMap::new()),
        quiet: QuietHours::from_config(&config.broadcast),
        public_url: config.public_url.trim_end_matches('/').to_owned(),
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
            if rounds % 1024 == 0 {
                d.per_chat.retain_recent();
            }
            if sent == 0 {
                // Nothing due: sleep until woken, or poll for other processes' rows.
                let _ = tokio::time::timeout(Duration::from_millis(500), signal.notified()).await;
            }
        }
    });
}

impl Dispatcher {
    fn active_transports(&self, now: i64) -> Vec<Transport> {
        let paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        self.providers
            .transports()
            .into_iter()
            .filter(|t| paused.get(t).is_none_or(|until| *until <= now))
            .collect()
    }

    /// How many messages of a transport to claim at once: about two seconds of its
    /// rate, so that a follow-up queued behind a broadcast waits little.
    fn claim_limit(&self, t: Transport) -> i64 {
        match self.rates.get(&t) {
            Some(r) => (i64::from(*r) * 2).clamp(1, BATCH),
            None => BATCH,
        }
    }

    async fn round(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let now = now_ms();
        let mut lanes = Vec::new();
        for t in self.active_transports(now) {
            // Bulk SMS waits out the quiet hours; follow-ups go at any hour.
            let max_priority = if t.is_sms() && self.quiet.is_quiet(now) {
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
                    self.claim_limit(t),
                    max_priority,
                )
                .await?;
            if !rows.is_empty() {
                lanes.push((t, rows));
            }
        }
        let n = lanes.iter().map(|(_, r)| r.len()).sum();
        // Each transport keeps its own order and rate; transports run side by side.
        let lanes = lanes.into_iter().map(|(t, rows)| {
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
    async fn lane(
        self: &Arc<Self>,
        t: Transport,
        rows: Vec<OutboxRow>,
    ) -> Result<(), crate::store::StoreError> {
        let (broadcasts, subscribers) = self.batch_context(&rows).await?;
        let (broadcasts, subscribers) = (Arc::new(broadcasts), Arc::new(subscribers));
        // Send slots: reserved in the database, so every process together keeps the rate.
        let slots: Option<(i64, i64)> = match self.rates.get(&t) {
            Some(r) => {
                let interval = slot_interval_us(*r);
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
        let results: Vec<Result<(), crate::store::StoreError>> =
            futures_util::stream::iter(rows.into_iter().enumerate())
                .map(|(i, row)| {
                    let (d, broadcasts, subscribers, pending) = (
                        self.clone(),
                        broadcasts.clone(),
                        subscribers.clone(),
                        pending.clone(),
                    );
                    async move {
                        let id = row.id.clone();
                        let slot = slots.map(|(first, interval)| first + interval * i as i64);
                        let r = d.send_at(t, row, slot, &broadcasts, &subscribers).await;
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
        broadcasts: &HashMap<String, BroadcastInfo>,
        subscribers: &HashMap<i64, SubscriberRow>,
    ) -> Result<(), crate::store::StoreError> {
        if let Some(at) = slot {
            let wait = at - chrono::Utc::now().timestamp_micros();
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait as u64)).await;
            }
            if row.broadcast_id.is_some() {
                match self.store.broadcast_message_live(&row.id).await? {
                    // Cancelled meanwhile: already settled.
                    Some((o, _)) if o != "queued" => return Ok(()),
                    Some((_, s)) if s.as_deref() != Some("active") => {
                        return self
                            .settle
                            .settle(Self::closed(
                                &row.id,
                                "opted_out",
                                "the subscriber opted out",
                            ))
                            .await;
                    }
                    _ => {}
                }
            }
        }
        self.deliver(t, row, broadcasts, subscribers).await
    }

    /// The broadcasts and subscribers a batch's broadcast messages need, read at once.
    async fn batch_context(
        &self,
        rows: &[OutboxRow],
    ) -> Result<
        (HashMap<String, BroadcastInfo>, HashMap<i64, SubscriberRow>),
        crate::store::StoreError,
    > {
        let mut ids: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.broadcast_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut broadcasts = HashMap::new();
        for (id, status, title, texts) in self.store.broadcast_texts(&ids).await? {
            let texts = serde_json::from_str(&texts).unwrap_or_default();
            broadcasts.insert(
                id,
                BroadcastInfo {
                    status,
                    title,
                    texts,
                },
            );
        }
        let subscriber_ids: Vec<i64> = rows.iter().filter_map(|r| r.subscriber_id).collect();
        let subscribers = self
            .store
            .subscribers_by_ids(&subscriber_ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        Ok((broadcasts, subscribers))
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(1, 30) - 1;
        let ms = self.config.backoff_ms.saturating_mul(1u64 << exp);
        ms.min(self.config.max_backoff_seconds.saturating_mul(1000)) as i64
    }

    fn closed(id: &str, status: &'static str, error: &str) -> Settle {
        Settle::Closed {
            id: id.to_owned(),
            status,
            error: error.to_owned(),
            at: now_ms(),
        }
    }

    /// The address and text of a message: sealed in the row (follow-ups), or read from
    /// its subscriber and broadcast. `Err` settles the message without sending it.
    fn address_and_text(
        &self,
        transport: Transport,
        row: &OutboxRow,
        broadcasts: &HashMap<String, BroadcastInfo>,
        subscribers: &HashMap<i64, SubscriberRow>,
    ) -> Result<(String, String, Option<Vec<u8>>), Settle> {
        let Some(broadcast_id) = &row.broadcast_id else {
            let opened = match (&row.recipient, &row.body) {
                (Some(to), Some(body)) => self
                    .keys
                    .open_record("outbox-to", &row.id, to)
                    .ok()
                    .zip(self.keys.open_record("outbox-body", &row.id, body).ok()),
                _ => None,
            };
            let Some((to, body)) = opened else {
                return Err(Self::closed(
                    &row.id,
                    "failed",
                    "message could not be opened",
                ));
            };
            return Ok((
                String::from_utf8_lossy(&to).into_owned(),
                String::from_utf8_lossy(&body).into_owned(),
                None,
            ));
        };
        let Some(b) = broadcasts.get(broadcast_id) else {
            return Err(Self::closed(&row.id, "failed", "broadcast not found"));
        };
        if b.status == "cancelled" {
            return Err(Self::closed(&row.id, "cancelled", "broadcast cancelled"));
        }
        let sub = row.subscriber_id.and_then(|id| subscribers.get(&id));
        let Some(sub) = sub.filter(|s| s.status == "active") else {
            return Err(Self::closed(
                &row.id,
                "opted_out",
                "the subscriber opted out",
            ));
        };
        let Some(to) = open_subscriber_address(&self.keys, sub) else {
            return Err(Self::closed(
                &row.id,
                "failed",
                "address could not be opened",
            ));
        };
        let Some(text) = text_for(&b.texts, &sub.language) else {
            return Err(Self::closed(&row.id, "failed", "broadcast has no text"));
        };
        let text = if transport == Transport::Email {
            let url = unsubscribe_url(&self.public_url, &self.keys, sub.id);
            let t = crate::i18n::locales().texts(&sub.language);
            serde_json::to_string(&EmailBody {
                subject: b.title.clone(),
                text: format!("{text}\n\n--\n{}\n{url}", t.get("subscribe.email_stop")),
                unsubscribe: Some(url),
            })
            .unwrap_or_default()
        } else {
            text.to_owned()
        };
        Ok((to, text, Some(sub.sender.clone())))
    }

    async fn deliver(
        &self,
        transport: Transport,
        row: OutboxRow,
        broadcasts: &HashMap<String, BroadcastInfo>,
        subscribers: &HashMap<i64, SubscriberRow>,
    ) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        let (to, body, subscriber) =
            match self.address_and_text(transport, &row, broadcasts, subscribers) {
                Ok(x) => x,
                Err(settle) => return self.settle.settle(settle).await,
            };
        if transport == Transport::Zalo {
            if let Some(tip_id) = &row.tip_id {
                if let Some(c) = self.store.tip_contact(tip_id).await? {
                    if now - c.last_inbound_at > ZALO_REPLY_WINDOW_MS {
                        return self
                            .settle
                            .settle(Self::closed(
                                &row.id,
                                "failed",
                                "outside Zalo's 48-hour reply window",
                            ))
                            .await;
                    }
                }
            }
        }
        let sender = subscriber.unwrap_or_else(|| self.keys.pseudonym(transport.as_str(), &to));
        if transport == Transport::Telegram {
            self.per_chat.until_key_ready(&sender).await;
        }
        if let (Some(gate), Some(rate)) = (self.gates.get(&transport), self.rates.get(&transport)) {
            let mut last = gate.lock().await;
            let now = tokio::time::Instant::now();
            let at = last.map_or(now, |l| {
                (l + Duration::from_micros(slot_interval_us(*rate) as u64)).max(now)
            });
            tokio::time::sleep_until(at).await;
            *last = Some(at);
        }
        let outcome = self.providers.send(transport, &to, &body, &row.id).await;
        let now = now_ms();
        metrics::counter!("tinbao_outbox_attempts_total",
            "transport" => transport.as_str(), "outcome" => outcome_name(&outcome))
        .increment(1);
        let settle = match outcome {
            SendOutcome::Accepted { provider_id } => Settle::Sent {
                id: row.id.clone(),
                provider_id,
                at: now,
            },
            SendOutcome::RetryAfter(wait) => {
                let until = now + wait.as_millis().min(3_600_000) as i64;
                self.paused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(transport, until);
                Settle::Retry {
                    id: row.id.clone(),
                    next_at: until,
                    error: "rate limited by the provider".into(),
                }
            }
            SendOutcome::Transient(reason) => {
                if row.attempts >= i64::from(self.config.max_attempts) {
                    Self::closed(&row.id, "failed", &reason)
                } else {
                    Settle::Retry {
                        id: row.id.clone(),
                        next_at: now + self.backoff(row.attempts),
                        error: reason,
                    }
                }
            }
            SendOutcome::Rejected(reason) => Self::closed(&row.id, "failed", &reason),
            SendOutcome::OptedOut(reason) => {
                // The person blocked the bot or unsubscribed: forget how to reach them,
                // for tips and for broadcasts.
                self.store.erase_sender_contacts(&sender).await?;
                self.store.delete_chat_session(&sender).await?;
                self.store.opt_out_sender(&sender, now).await?;
                Self::closed(&row.id, "opted_out", &format!("opted out: {reason}"))
            }
        };
        self.settle.settle(settle).await
    }
}

fn outcome_name(o: &SendOutcome) -> &'static str {
    match o {
        SendOutcome::Accepted { .. } => "accepted",
        SendOutcome::RetryAfter(_) => "rate_limited",
        SendOutcome::Transient(_) => "transient",
        SendOutcome::Rejected(_) => "rejected",
        SendOutcome::OptedOut(_) => "opted_out",
    }
}
