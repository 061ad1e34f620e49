//! Delivery: the durable outbox and its dispatcher over a list of providers. Every message
//! that leaves tinbao (a receipt, a police follow-up, a subscription's confirmation, a
//! broadcast) is a row in the outbox before any provider sees it, so an outage delays
//! messages and loses none. The dispatcher sends each through its provider within that
//! provider's limits (rate, per-recipient interval, reply window), retries with backoff,
//! pauses a provider for its Retry-After, and settles every message: sent, failed,
//! opted out or cancelled. Providers report delivery to the handset through
//! [`mark_delivered`].
//!
//! Delivery knows the providers only through [`Provider`]: the ones the configuration
//! enables are listed in [`Providers::from_config`], and more can be added
//! ([`Providers::add`]). It knows nothing of broadcasts: a bulk row names its batch and
//! recipient, and a [`BulkSource`] (the broadcast service) turns it into a message.

mod dispatcher;
mod providers;
mod quiet;
mod vault;

pub use dispatcher::idempotency_id;
pub use providers::{Providers, MAX_PHOTO_BYTES};
pub use quiet::{parse_hhmm, QuietHours};
pub use vault::DbVault;

use crate::channels::{Outgoing, Transport};
use crate::clock::now_ms;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::store::{NewOutboxRow, OutboxRow, OutboxStatus, Store, StoreResult, PRIORITY_FOLLOW_UP};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::Notify;

/// The outbox, as the services that queue messages see it: rows built and sealed here,
/// and the dispatcher woken when they are queued. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    keys: Arc<KeyRing>,
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox of `store`, sealing with `keys`.
    pub fn new(store: Store, keys: Arc<KeyRing>) -> Outbox {
        Outbox {
            store,
            keys,
            wake: Arc::new(Notify::new()),
        }
    }

    /// What wakes the dispatcher: services that queue rows in transactions of their own
    /// (a tip and its receipt, a broadcast's fan-out) notify it once they commit.
    pub fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Wakes the dispatcher (something was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Queues rows in one transaction and wakes the dispatcher.
    pub async fn enqueue(&self, rows: &[NewOutboxRow]) -> Result<(), DeliveryError> {
        self.store.enqueue(rows).await?;
        self.wake();
        Ok(())
    }

    /// Queues one message on `transport`, ahead of bulk traffic; returns its id.
    pub async fn queue(
        &self,
        transport: Transport,
        message: &Outgoing,
    ) -> Result<String, DeliveryError> {
        let row = outbox_row_for(&self.keys, transport, None, None, message);
        let id = row.id.clone();
        self.enqueue(&[row]).await?;
        Ok(id)
    }

    /// Starts the dispatcher over `providers`; bulk rows get their messages from `bulk`.
    pub fn spawn_dispatcher(
        &self,
        providers: Providers,
        bulk: Option<Arc<dyn BulkSource>>,
        config: &Config,
    ) {
        dispatcher::spawn(
            self.store.clone(),
            self.keys.clone(),
            providers,
            bulk,
            config,
            self.wake.clone(),
        );
    }
}

/// Builds the outbox row for `text` to `address` on `transport`, a follow-up (sent ahead
/// of bulk traffic), sealed and bound to the row's id.
pub fn outbox_row(
    keys: &KeyRing,
    transport: Transport,
    tip_id: Option<&str>,
    message_id: Option<&str>,
    address: &str,
    text: &str,
) -> NewOutboxRow {
    outbox_row_for(
        keys,
        transport,
        tip_id,
        message_id,
        &Outgoing::new(address, text),
    )
}

/// Builds the outbox row of `message` (with its subject and unsubscribe link, if any) on
/// `transport`, a follow-up, sealed and bound to the row's id. The idempotency key is
/// the row's own (see [`idempotency_id`]).
pub fn outbox_row_for(
    keys: &KeyRing,
    transport: Transport,
    tip_id: Option<&str>,
    message_id: Option<&str>,
    message: &Outgoing,
) -> NewOutboxRow {
    let id = uuid::Uuid::now_v7().simple().to_string();
    NewOutboxRow {
        recipient: keys.seal_record("outbox-to", &id, message.to.as_bytes()),
        body: keys.seal_record("outbox-body", &id, &encode_body(message)),
        transport: transport.as_str(),
        priority: PRIORITY_FOLLOW_UP,
        tip_id: tip_id.map(str::to_owned),
        message_id: message_id.map(str::to_owned),
        created_at: now_ms(),
        id,
    }
}

/// A provider's delivery report: the message it names (by the provider's id) reached
/// the handset. `false` when no sent message has that id.
pub async fn mark_delivered(store: &Store, provider_id: &str) -> Result<bool, DeliveryError> {
    Ok(store.outbox_delivered(provider_id, now_ms()).await?)
}

/// Why a message could not be queued or a report recorded.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The outbox is in the database, and the database refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A message with a subject (an email) is sealed as this JSON; a plain text as itself.
/// Rows queued by earlier versions have the same shape.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MailBody {
    subject: String,
    text: String,
    unsubscribe: Option<String>,
}

/// How [`MailBody`]'s JSON starts (serde writes the fields in order).
const MAIL_BODY_START: &[u8] = b"{\"subject\":";

fn encode_body(m: &Outgoing) -> Vec<u8> {
    if m.subject.is_none() && m.unsubscribe.is_none() {
        return m.text.as_bytes().to_vec();
    }
    serde_json::to_vec(&MailBody {
        subject: m.subject.clone().unwrap_or_default(),
        text: m.text.clone(),
        unsubscribe: m.unsubscribe.clone(),
    })
    .unwrap_or_default()
}

/// The message a sealed body holds, addressed to `to`.
fn decode_body(to: String, body: &[u8]) -> Outgoing {
    if body.starts_with(MAIL_BODY_START) {
        if let Ok(mail) = serde_json::from_slice::<MailBody>(body) {
            let mut m = Outgoing::new(to, mail.text).with_subject(mail.subject);
            m.unsubscribe = mail.unsubscribe;
            return m;
        }
    }
    Outgoing::new(to, String::from_utf8_lossy(body).into_owned())
}

/// A bulk message ready to send: the message, and its recipient's sender pseudonym (the
/// one of their chats and tips; an opt-out the provider reports is recorded against it).
#[derive(Debug, Clone)]
pub struct Composed {
    pub message: Outgoing,
    pub recipient: Vec<u8>,
}

/// Why a message settles without being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    /// `failed`, `opted_out` or `cancelled`.
    pub status: OutboxStatus,
    pub reason: String,
}

impl Unsent {
    /// A message that will not be sent, with its status and reason.
    pub fn new(status: OutboxStatus, reason: impl Into<String>) -> Unsent {
        Unsent {
            status,
            reason: reason.into(),
        }
    }
}

/// What a re-check of a bulk message found after it waited for its send slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Still to be sent.
    Send,
    /// Settled meanwhile (its batch was cancelled): nothing to do.
    Settled,
    /// Not to be sent any more (its recipient opted out meanwhile).
    Unsent(Unsent),
}

/// The messages of one claimed batch's bulk rows.
pub trait BulkBatch: Send + Sync {
    /// The message a bulk row carries, or why it settles without being sent.
    fn compose(&self, row: &OutboxRow) -> Result<Composed, Unsent>;
}

/// Where bulk rows (rows that name a batch, `broadcast_id`, and a recipient,
/// `subscriber_id`, instead of a sealed address and text) get their messages: read
/// just before sending, so a cancellation or an opt-out counts at once. The broadcast
/// service is one.
pub trait BulkSource: Send + Sync {
    /// Reads what the bulk rows among `rows` need, once per claimed batch.
    fn load<'a>(&'a self, rows: &'a [OutboxRow]) -> BoxFuture<'a, StoreResult<Box<dyn BulkBatch>>>;

    /// Whether a bulk row is still to be sent, after it waited for its send slot.
    fn recheck<'a>(&'a self, row: &'a OutboxRow) -> BoxFuture<'a, StoreResult<Recheck>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_plain_texts_and_mails_apart() {
        let plain = Outgoing::new("555", "Biên nhận 1234");
        let body = encode_body(&plain);
        assert_eq!(body, "Biên nhận 1234".as_bytes());
        assert_eq!(decode_body("555".into(), &body), plain);

        let mail = Outgoing::new("a@b.vn", "text")
            .with_subject("Tin")
            .with_unsubscribe("https://x/stop");
        let body = encode_body(&mail);
        assert!(body.starts_with(MAIL_BODY_START));
        assert_eq!(decode_body("a@b.vn".into(), &body), mail);

        // What earlier versions queued for a confirmation email.
        let old = br#"{"subject":"S","text":"T","unsubscribe":null}"#;
        assert_eq!(
            decode_body("a@b.vn".into(), old),
            Outgoing::new("a@b.vn", "T").with_subject("S")
        );
        // A text that merely looks like JSON stays a text.
        let odd = br#"{"subject":"S","text":"T","extra":1}"#;
        assert_eq!(
            decode_body("1".into(), odd).text,
            String::from_utf8_lossy(odd)
        );
    }
}
