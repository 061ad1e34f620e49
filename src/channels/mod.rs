//! Channels: the transports between tinbao and people outside it. Chat and SMS providers
//! (Telegram, Zalo, Twilio, the Android SMS Gateway) turn their webhooks and updates into
//! [`Inbound`] messages and send text through [`SendOutcome`]-returning clients; email
//! reaches officers. A channel adds only its transport: the dialog, intake and the outbox
//! are shared.

pub mod email;
pub mod outbox;
pub mod setup;

pub mod sms;
pub mod telegram;
pub mod zalo;

use crate::tips::Channel;
use std::time::Duration;

/// The provider a chat message travels through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Telegram,
    Zalo,
    Twilio,
    Android,
    /// Email, for broadcast subscribers only (no tip arrives by email).
    Email,
}

impl Transport {
    /// Every transport.
    pub const ALL: &'static [Transport] = &[
        Transport::Telegram,
        Transport::Zalo,
        Transport::Twilio,
        Transport::Android,
        Transport::Email,
    ];

    /// The stable name kept in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Telegram => "telegram",
            Transport::Zalo => "zalo",
            Transport::Twilio => "twilio",
            Transport::Android => "android",
            Transport::Email => "email",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Transport> {
        Transport::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The tip channel a transport belongs to (both SMS gateways are "sms"). Email
    /// carries no tips; were one to arrive, it would count as the web.
    pub fn channel(self) -> Channel {
        match self {
            Transport::Telegram => Channel::Telegram,
            Transport::Zalo => Channel::Zalo,
            Transport::Twilio | Transport::Android => Channel::Sms,
            Transport::Email => Channel::Web,
        }
    }

    /// Whether messages are SMS (one message per text, no dialog buttons).
    pub fn is_sms(self) -> bool {
        matches!(self, Transport::Twilio | Transport::Android)
    }
}

/// A photo in an inbound message: its bytes, or where the provider keeps them.
#[derive(Debug, Clone, PartialEq)]
pub enum PhotoRef {
    /// Already downloaded.
    Bytes(Vec<u8>),
    /// A Telegram `file_id`, fetched with getFile.
    TelegramFile(String),
    /// A URL the provider serves the image at (Zalo, Twilio media).
    Url(String),
}

/// What happened, as the provider told it.
#[derive(Debug, Clone, PartialEq)]
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
/// id, Zalo user id, phone number): it lives only in memory; what is stored is a keyed
/// pseudonym, plus a sealed reply address while a tip is open.
#[derive(Clone, PartialEq)]
pub struct Inbound {
    pub transport: Transport,
    pub sender: String,
    /// The provider's id for this message, when it has one (dedupe of retries).
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
