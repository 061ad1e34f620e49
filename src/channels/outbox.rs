//! The outbox dispatcher: takes due messages from the durable outbox, sends each through
//! its provider within that provider's rate, and settles it: sent, retried with backoff
//! (a 429 pauses the whole transport for its Retry-After), or failed with the provider's
//! reason. Follow-ups go ahead of bulk traffic. Several processes may run it on one
//! database; each message is leased to one of them at a time.

use super::sms::{AndroidClient, TwilioClient};
use super::telegram::TelegramClient;
use super::zalo::ZaloClient;
use super::{SendOutcome, Transport};
use crate::config::{Config, OutboxConfig};
use crate::crypto::KeyRing;
use crate::intake::now_ms;
use crate::store::{OutboxRow, Store};
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a claimed message stays with one process before another may take it.
const LEASE_MS: i64 = 60_000;
/// Messages claimed per round.
const BATCH: i64 = 256;
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
        out
    }

    /// One attempt to send `text` to `to`.
    pub async fn send(&self, transport: Transport, to: &str, text: &str) -> SendOutcome {
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
                    (Transport::Android, _, Some(c)) => c.send(to, &text).await,
                    _ => missing(),
                }
            }
        }
    }
}

struct Dispatcher {
    store: Store,
    keys: Arc<KeyRing>,
    providers: Providers,
    config: OutboxConfig,
    limiters: HashMap<Transport, DefaultDirectRateLimiter>,
    rates: HashMap<Transport, u32>,
    paused: Mutex<HashMap<Transport, i64>>,
}

fn rate(per_second: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(n).allow_burst(NonZeroU32::MIN))
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
    let mut limiters = HashMap::new();
    let mut rate_of = HashMap::new();
    // A rate of 0 means "no limit" (benchmarks against fake providers).
    let rates = [
        (Transport::Telegram, config.telegram.rate_per_second),
        (Transport::Zalo, config.zalo.rate_per_second),
        (Transport::Twilio, config.sms.twilio.rate_per_second),
        (Transport::Android, config.sms.android.rate_per_second),
    ];
    for (t, r) in rates {
        if r > 0 {
            limiters.insert(t, rate(r));
            rate_of.insert(t, r);
        }
    }
    let d = Arc::new(Dispatcher {
        store,
        keys,
        providers,
        config: config.outbox.clone(),
        limiters,
        rates: rate_of,
        paused: Mutex::new(HashMap::new()),
    });
    tokio::spawn(async move {
        loop {
            let sent = match d.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox round failed; retrying");
                    0
                }
            };
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
    /// rate, so that a lease never runs out while its messages wait for their turn and a
    /// follow-up queued behind a broadcast waits little.
    fn claim_limit(&self, t: Transport) -> i64 {
        match self.rates.get(&t) {
            Some(r) => (i64::from(*r) * 2).clamp(1, BATCH),
            None => BATCH,
        }
    }

    async fn round(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let now = now_ms();
        let mut lanes = Vec::new();
        for t in self.active_transports(now) {
            let rows = self
                .store
                .claim_outbox(&[t.as_str()], now, now + LEASE_MS, self.claim_limit(t))
                .await?;
            if !rows.is_empty() {
                lanes.push(rows);
            }
        }
        let n = lanes.iter().map(Vec::len).sum();
        // Each transport keeps its own order and rate; transports run side by side.
        let lanes = lanes.into_iter().map(|rows| {
            let d = self.clone();
            async move {
                futures_util::stream::iter(rows)
                    .map(|row| {
                        let d = d.clone();
                        async move { d.deliver(row).await }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
            }
        });
        for results in futures_util::future::join_all(lanes).await {
            for r in results {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "could not settle an outbox message");
                }
            }
        }
        Ok(n)
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(1, 30) - 1;
        let ms = self.config.backoff_ms.saturating_mul(1u64 << exp);
        ms.min(self.config.max_backoff_seconds.saturating_mul(1000)) as i64
    }

    async fn deliver(&self, row: OutboxRow) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let Some(transport) = Transport::parse(&row.transport) else {
            return self
                .store
                .outbox_failed(&row.id, "unknown transport", now)
                .await;
        };
        let opened = match (&row.recipient, &row.body) {
            (Some(to), Some(body)) => self
                .keys
                .open_record("outbox-to", &row.id, to)
                .ok()
                .zip(self.keys.open_record("outbox-body", &row.id, body).ok()),
            _ => None,
        };
        let Some((to, body)) = opened else {
            return self
                .store
                .outbox_failed(&row.id, "message could not be opened", now)
                .await;
        };
        let (to, body) = (
            String::from_utf8_lossy(&to).into_owned(),
            String::from_utf8_lossy(&body).into_owned(),
        );
        if transport == Transport::Zalo {
            if let Some(tip_id) = &row.tip_id {
                if let Some(c) = self.store.tip_contact(tip_id).await? {
                    if now - c.last_inbound_at > ZALO_REPLY_WINDOW_MS {
                        return self
                            .store
                            .outbox_failed(&row.id, "outside Zalo's 48-hour reply window", now)
                            .await;
                    }
                }
            }
        }
        if let Some(limiter) = self.limiters.get(&transport) {
            limiter.until_ready().await;
        }
        let outcome = self.providers.send(transport, &to, &body).await;
        let now = now_ms();
        metrics::counter!("tinbao_outbox_attempts_total",
            "transport" => transport.as_str(), "outcome" => outcome_name(&outcome))
        .increment(1);
        match outcome {
            SendOutcome::Accepted { provider_id } => {
                self.store
                    .outbox_sent(&row.id, provider_id.as_deref(), now)
                    .await
            }
            SendOutcome::RetryAfter(wait) => {
                let until = now + wait.as_millis().min(3_600_000) as i64;
                self.paused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(transport, until);
                self.store
                    .outbox_retry(&row.id, until, "rate limited by the provider")
                    .await
            }
            SendOutcome::Transient(reason) => {
                if row.attempts >= i64::from(self.config.max_attempts) {
                    self.store.outbox_failed(&row.id, &reason, now).await
                } else {
                    self.store
                        .outbox_retry(&row.id, now + self.backoff(row.attempts), &reason)
                        .await
                }
            }
            SendOutcome::Rejected(reason) => self.store.outbox_failed(&row.id, &reason, now).await,
            SendOutcome::OptedOut(reason) => {
                // The person blocked the bot or unsubscribed: forget how to reach them.
                let sender = self.keys.pseudonym(transport.as_str(), &to);
                self.store.erase_sender_contacts(&sender).await?;
                self.store.delete_chat_session(&sender).await?;
                self.store
                    .outbox_failed(&row.id, &format!("opted out: {reason}"), now)
                    .await
            }
        }
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
