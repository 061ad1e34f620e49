//! Replays of signed webhooks that carry no time (Twilio's). A provider's retry within
//! the inbox's de-duplication window is recognised there; a captured request replayed
//! later is recognised here, by a keyed hash of its message id kept for
//! [`REPLAY_MEMORY_MS`], and accepted with no effect.

use super::{Chat, ChatError};
use crate::channels::Inbound;
use crate::clock::now_ms;

/// How long an accepted message id is remembered against replays: five years, longer
/// than any tip stays open or a follow-up can reach it. Purged after.
pub const REPLAY_MEMORY_MS: i64 = 5 * 366 * 24 * 3600 * 1000;

impl Chat {
    /// [`Chat::accept`] for events whose signature carries no time: an event whose
    /// provider id was accepted before is dropped (the provider is answered as usual, so
    /// it does not retry); the others are accepted, then their ids remembered. Returns
    /// how many events were new.
    pub async fn accept_unreplayed(&self, events: Vec<Inbound>) -> Result<usize, ChatError> {
        let store = &self.inner.store;
        let mut fresh = Vec::with_capacity(events.len());
        let mut keys = Vec::with_capacity(events.len());
        for e in events {
            let Some(id) = &e.provider_id else {
                fresh.push(e);
                continue;
            };
            let key = self.replay_key(&e, id);
            if store.replay_seen(&key).await? {
                metrics::counter!("tinbao_webhook_replays_total",
                    "provider" => e.transport.as_str())
                .increment(1);
                continue;
            }
            keys.push(key);
            fresh.push(e);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        // Remembered only once accepted, so an event that could not be stored is not
        // refused when the provider retries; a retry in between is the inbox's to drop.
        let n = self.accept(fresh).await?;
        store.remember_replays(&keys, now_ms()).await?;
        Ok(n)
    }

    /// The keyed hash an event's provider id is remembered by (never the id itself).
    fn replay_key(&self, e: &Inbound, id: &str) -> Vec<u8> {
        self.inner
            .keys
            .pseudonym("webhook-replay", &format!("{}|{id}", e.transport.as_str()))
    }

    /// Forgets ids remembered longer than [`REPLAY_MEMORY_MS`].
    pub(super) async fn forget_old_replays(&self, now: i64) {
        if let Err(e) = self
            .inner
            .store
            .forget_replays(now - REPLAY_MEMORY_MS)
            .await
        {
            tracing::warn!(error = %e, "could not forget old webhook ids");
        }
    }
}
