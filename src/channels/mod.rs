//! Channels: provider adapters only, one file each, the same shape every time (how it is
//! configured, how an inbound request is verified and parsed, how one message is sent and
//! what the provider's answer means). Chat and SMS providers (Telegram, Zalo, Twilio, the
//! Android SMS Gateway) turn their webhooks and updates into [`Inbound`] messages; every
//! provider sends through the one [`Provider`] trait, whose answer is a [`SendOutcome`].
//! No SQL, no pages, no dialog here: `delivery` runs the outbox over a list of providers,
//! `dialog` and `intake` do the rest.

pub mod email;
pub mod http;
pub mod sms;
pub mod telegram;
pub mod zalo;

use crate::tips::Channel;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// The provider a message travels through, by its stable name (kept in the database).
/// Open: the five providers tinbao ships are named below, and another one (defined
/// anywhere, a test's fake included) is `Transport::new("its-name")`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transport(&'static str);

// The transports tinbao ships (a const of this type may be a `match` pattern).
impl Transport {
    pub const TELEGRAM: Transport = Transport("telegram");
    pub const ZALO: Transport = Transport("zalo");
    pub const TWILIO: Transport = Transport("twilio");
    pub const ANDROID: Transport = Transport("android");
    /// Email, for broadcast subscribers only (no tip arrives by email).
    pub const EMAIL: Transport = Transport("email");

    /// The transports tinbao ships a provider for.
    pub const KNOWN: &'static [Transport] = &[
        Transport::TELEGRAM,
        Transport::ZALO,
        Transport::TWILIO,
        Transport::ANDROID,
        Transport::EMAIL,
    ];

    /// A transport by its stable name (lower-case ASCII, as stored).
    pub const fn new(name: &'static str) -> Transport {
        Transport(name)
    }

    /// The stable name kept in the database.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// One of the [known](Transport::KNOWN) transports by its stable name; `None` for
    /// any other name (form input is checked against this list).
    pub fn parse(s: &str) -> Option<Transport> {
        Transport::KNOWN.iter().copied().find(|t| t.as_str() == s)
    }

    /// The tip channel a transport belongs to (both SMS gateways are "sms"). Email and
    /// transports tinbao does not know carry no tips; were one to arrive, it would count
    /// as the web.
    pub fn channel(self) -> Channel {
        match self {
            Transport::TELEGRAM => Channel::Telegram,
            Transport::ZALO => Channel::Zalo,
            Transport::TWILIO | Transport::ANDROID => Channel::Sms,
            _ => Channel::Web,
        }
    }

    /// Whether messages are SMS (one message per text, no dialog buttons).
    pub fn is_sms(self) -> bool {
        matches!(self, Transport::TWILIO | Transport::ANDROID)
    }

    /// The transport a stored name stands for: a known one, or (for a provider added
    /// outside tinbao) the name kept once for the life of the process. Used to read
    /// tinbao's own sealed records, never for input from outside.
    fn from_stored(name: &str) -> Transport {
        if let Some(t) = Transport::parse(name) {
            return t;
        }
        static OTHERS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut others = OTHERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = others.iter().find(|n| **n == name) {
            return Transport(t);
        }
        let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
        others.push(kept);
        Transport(kept)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl serde::Serialize for Transport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Transport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
        let name = String::deserialize(d)?;
        if name.is_empty() {
            return Err(serde::de::Error::custom("empty transport name"));
        }
        Ok(Transport::from_stored(&name))
    }
}

/// A photo in an inbound message: its bytes, or where the provider keeps them. Kept in a
/// conversation's draft until the tip is sent (the serialized shape is stored: keep it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PhotoRef {
    /// Already downloaded.
    Bytes(Vec<u8>),
    /// A Telegram `file_id`, fetched with getFile.
    TelegramFile(String),
    /// A URL the provider serves the image at (Zalo, Twilio media).
    Url(String),
    /// A photo the provider announced but does not hand over: the Android gateway's
    /// `mms:received` carries an MMS's metadata only. Never fetched; counted as missing,
    /// and the tipster is told how to send it instead.
    Withheld,
}

/// What happened, as the provider told it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InboundKind {
    /// The person wrote: text, photos, a location (any may be empty).
    Message {
        text: String,
        photos: Vec<PhotoRef>,
        /// Latitude, longitude.
        location: Option<(f64, f64)>,
    },
    /// The person followed the account (Zalo `follow`).
    Follow,
    /// The person left or blocked the account (Zalo `unfollow`): an opt-out.
    Unfollow,
}

/// One message or event from a person, normalised. `sender` is the clear address (chat
/// id, Zalo user id, phone number): it lives only in memory and sealed in the inbox; what
/// is stored in clear is a keyed pseudonym, plus a sealed reply address while a tip is
/// open. Serialized as the dialog's inbox keeps it (rows stored by earlier versions read
/// the same).
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inbound {
    pub transport: Transport,
    pub sender: String,
    /// The provider's id for this message, when it has one (dedupe of retries). Not kept
    /// in the inbox: it has done its work once the event is accepted.
    #[serde(skip)]
    pub provider_id: Option<String>,
    /// The number or account the message was sent to (an SMS gateway number, bound to a
    /// commune by configuration).
    pub to: Option<String>,
    pub kind: InboundKind,
}

// By hand, so that a sender address never reaches a log through `{:?}`.
impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("transport", &self.transport)
            .field("sender", &"<hidden>")
            .field("provider_id", &self.provider_id)
            .field("kind", &"<hidden>")
            .finish()
    }
}

/// Why a webhook was refused; the handler maps it to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// Missing or wrong signature or secret: 401, nothing stored.
    #[error("missing or wrong signature")]
    Unauthorized,
    /// A signed request whose timestamp is outside the replay window: 401.
    #[error("stale or future timestamp")]
    Stale,
    /// A body that is not the provider's format: 400.
    #[error("malformed body: {0}")]
    Malformed(String),
}

/// One message to send through a provider.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The address: chat id, Zalo user id, phone number, email address.
    pub to: String,
    pub text: String,
    /// The subject line, for providers that have one (email).
    pub subject: Option<String>,
    /// A one-click unsubscribe link (email's `List-Unsubscribe`).
    pub unsubscribe: Option<String>,
    /// Names the message for providers that keep one message per key (the Android
    /// gateway's message id), so that a retry after a crash does not send it twice.
    pub idempotency_key: Option<String>,
}

impl Outgoing {
    /// A plain text to `to`.
    pub fn new(to: impl Into<String>, text: impl Into<String>) -> Outgoing {
        Outgoing {
            to: to.into(),
            text: text.into(),
            ..Outgoing::default()
        }
    }

    /// The same message under a subject line.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Outgoing {
        self.subject = Some(subject.into());
        self
    }

    /// The same message with an unsubscribe link.
    pub fn with_unsubscribe(mut self, url: impl Into<String>) -> Outgoing {
        self.unsubscribe = Some(url.into());
        self
    }

    /// The same message under an idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Outgoing {
        self.idempotency_key = Some(key.into());
        self
    }
}

// By hand: the address and the text identify people.
impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("to", &"<hidden>")
            .field("text", &"<hidden>")
            .field("subject", &self.subject.as_ref().map(|_| "<hidden>"))
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// The outcome of one attempt to send one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message.
    Accepted { provider_id: Option<String> },
    /// 429 or a flood limit: wait this long before trying again.
    RetryAfter(Duration),
    /// A failure worth retrying (5xx, network, expired token after one refresh).
    Transient(String),
    /// A failure retrying will not fix (bad address, outside the reply window).
    Rejected(String),
    /// The provider says the person blocked the bot or unsubscribed: an opt-out.
    OptedOut(String),
}

impl SendOutcome {
    /// A short name for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::RetryAfter(_) => "rate_limited",
            SendOutcome::Transient(_) => "transient",
            SendOutcome::Rejected(_) => "rejected",
            SendOutcome::OptedOut(_) => "opted_out",
        }
    }
}

/// A message provider, as delivery sees it: its name, one send, and the limits it lives
/// under. Every provider (and a test's fake) implements this and nothing else is needed
/// for delivery to use it; `delivery::Providers` lists the configured ones.
pub trait Provider: Send + Sync {
    /// The transport this provider carries (its stable name is stored with each message).
    fn transport(&self) -> Transport;

    /// One attempt to send one message, and what the provider made of it. Never panics;
    /// an error names no address and quotes no text.
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, SendOutcome>;

    /// Downloads a photo this provider keeps, refusing one larger than `max_bytes`. The
    /// error names neither the photo's address nor its sender.
    fn fetch_photo<'a>(
        &'a self,
        photo: &'a PhotoRef,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        let _ = (photo, max_bytes);
        Box::pin(async { Err("this provider keeps no photos".to_string()) })
    }

    /// How long after a person's last message the provider lets us answer them (Zalo:
    /// 48 hours); `None`: no limit.
    fn reply_window(&self) -> Option<Duration> {
        None
    }

    /// The least time between two messages to one recipient (Telegram: one a second per
    /// chat); `None`: no limit.
    fn per_recipient_interval(&self) -> Option<Duration> {
        None
    }

    /// Messages per second the provider takes overall, from its configuration; `None`:
    /// no limit.
    fn rate_per_second(&self) -> Option<u32> {
        None
    }

    /// Whether messages are SMS: bulk SMS waits out the quiet hours.
    fn is_sms(&self) -> bool {
        false
    }
}

/// A configured rate, where 0 means "no limit" (benchmarks against fake providers).
pub(crate) fn rate(per_second: u32) -> Option<u32> {
    (per_second > 0).then_some(per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_transports_keep_their_stored_names() {
        let names: Vec<&str> = Transport::KNOWN.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["telegram", "zalo", "twilio", "android", "email"]);
        for t in Transport::KNOWN {
            assert_eq!(Transport::parse(t.as_str()), Some(*t));
            let json = serde_json::to_string(t).expect("json");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Transport>(&json).expect("back"), *t);
        }
        assert_eq!(Transport::parse("pigeon"), None);
        assert!(Transport::TWILIO.is_sms() && !Transport::EMAIL.is_sms());
    }

    #[test]
    fn another_transport_is_one_name_away() {
        const PIGEON: Transport = Transport::new("pigeon");
        let read: Transport = serde_json::from_str("\"pigeon\"").expect("read");
        assert_eq!(read, PIGEON);
        assert_eq!(read.channel(), Channel::Web);
        assert!(serde_json::from_str::<Transport>("\"\"").is_err());
    }

    #[test]
    fn inbound_reads_the_shape_the_inbox_kept() {
        // As sealed by the dialog before `Inbound` was serializable itself.
        let stored = r#"{"transport":"telegram","sender":"42","to":null,"kind":{"Message":{"text":"hi","photos":[{"TelegramFile":"f1"},{"Url":"u"},{"Bytes":[1,2]}],"location":[21.0,105.8]}}}"#;
        let i: Inbound = serde_json::from_str(stored).expect("reads");
        assert_eq!(i.transport, Transport::TELEGRAM);
        assert_eq!(
            i.kind,
            InboundKind::Message {
                text: "hi".into(),
                photos: vec![
                    PhotoRef::TelegramFile("f1".into()),
                    PhotoRef::Url("u".into()),
                    PhotoRef::Bytes(vec![1, 2])
                ],
                location: Some((21.0, 105.8)),
            }
        );
        assert_eq!(serde_json::to_string(&i).expect("json"), stored);
        let follow: Inbound = serde_json::from_str(
            r#"{"transport":"zalo","sender":"7","to":"oa","kind":"Unfollow"}"#,
        )
        .expect("reads");
        assert_eq!(follow.kind, InboundKind::Unfollow);
    }

    #[test]
    fn outgoing_debug_hides_address_and_text() {
        let m = Outgoing::new("+84912345678", "secret words").with_subject("s");
        let shown = format!("{m:?}");
        assert!(!shown.contains("8491") && !shown.contains("secret"));
    }
}
