//! The broadcast side of the outbox: fan-out queues rows that name a broadcast and a
//! subscriber; the dispatcher asks here, just before sending, for each one's address and
//! text, so a cancellation or an opt-out counts at once.

use super::{open_subscriber_address, text_for, unsubscribe_url, Broadcasts};
use crate::channels::{Outgoing, Transport};
use crate::crypto::KeyRing;
use crate::delivery::{BulkBatch, BulkSource, Composed, Recheck, Unsent};
use crate::store::{BroadcastStatus, OutboxRow, OutboxStatus, StoreResult, SubscriberRow};
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a claimed outbox batch's broadcast messages need: their broadcasts and their
/// subscribers, read at once.
struct BroadcastBatch {
    keys: Arc<KeyRing>,
    public_url: String,
    broadcasts: HashMap<String, BroadcastInfo>,
    subscribers: HashMap<i64, SubscriberRow>,
}

/// What a batch needs to know of its broadcasts: status, title, texts by language.
struct BroadcastInfo {
    status: String,
    title: String,
    texts: BTreeMap<String, String>,
}

impl BulkBatch for BroadcastBatch {
    /// A broadcast message: the subscriber's address and the text in their language (an
    /// email with its subject, a footer and the one-click unsubscribe link).
    fn compose(&self, row: &OutboxRow) -> Result<Composed, Unsent> {
        let failed = |why: &str| Unsent::new(OutboxStatus::Failed, why);
        let b = row
            .broadcast_id
            .as_ref()
            .and_then(|id| self.broadcasts.get(id))
            .ok_or_else(|| failed("broadcast not found"))?;
        if BroadcastStatus::parse(&b.status) == Some(BroadcastStatus::Cancelled) {
            return Err(Unsent::new(OutboxStatus::Cancelled, "broadcast cancelled"));
        }
        let sub = row.subscriber_id.and_then(|id| self.subscribers.get(&id));
        let Some(sub) = sub.filter(|s| s.status == "active") else {
            return Err(Unsent::new(
                OutboxStatus::OptedOut,
                "the subscriber opted out",
            ));
        };
        let to = open_subscriber_address(&self.keys, sub)
            .ok_or_else(|| failed("address could not be opened"))?;
        // The delivery side knows a person by their sender pseudonym (the one of their
        // chats and tips), never by the subscription's.
        let recipient = self.keys.sender_pseudonym(&row.transport, &to);
        let text =
            text_for(&b.texts, &sub.language).ok_or_else(|| failed("broadcast has no text"))?;
        let message = if row.transport == Transport::EMAIL.as_str() {
            let url = unsubscribe_url(&self.public_url, &self.keys, sub.id);
            let t = crate::i18n::locales().texts(&sub.language);
            Outgoing::new(
                to,
                format!("{text}\n\n--\n{}\n{url}", t.get("subscribe.email_stop")),
            )
            .with_subject(b.title.clone())
            .with_unsubscribe(url)
        } else {
            Outgoing::new(to, text)
        };
        Ok(Composed { message, recipient })
    }
}

/// Broadcast fan-out hands the outbox rows that name a broadcast and a subscriber; the
/// dispatcher asks here for their messages just before sending.
impl BulkSource for Broadcasts {
    fn load<'a>(&'a self, rows: &'a [OutboxRow]) -> BoxFuture<'a, StoreResult<Box<dyn BulkBatch>>> {
        Box::pin(async move {
            let store = &self.inner.store;
            let mut ids: Vec<&str> = rows
                .iter()
                .filter_map(|r| r.broadcast_id.as_deref())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut broadcasts = HashMap::new();
            for (id, status, title, texts) in store.broadcast_texts(&ids).await? {
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
            let subscribers = store
                .subscribers_by_ids(&subscriber_ids)
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            let batch: Box<dyn BulkBatch> = Box::new(BroadcastBatch {
                keys: self.inner.keys.clone(),
                public_url: self.inner.public_url.clone(),
                broadcasts,
                subscribers,
            });
            Ok(batch)
        })
    }

    fn recheck<'a>(&'a self, row: &'a OutboxRow) -> BoxFuture<'a, StoreResult<Recheck>> {
        Box::pin(async move {
            Ok(
                match self.inner.store.broadcast_message_live(&row.id).await? {
                    // Cancelled meanwhile: already settled.
                    Some((o, _)) if OutboxStatus::parse(&o) != Some(OutboxStatus::Queued) => {
                        Recheck::Settled
                    }
                    Some((_, s)) if s.as_deref() != Some("active") => Recheck::Unsent(Unsent::new(
                        OutboxStatus::OptedOut,
                        "the subscriber opted out",
                    )),
                    _ => Recheck::Send,
                },
            )
        })
    }
}
