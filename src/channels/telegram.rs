//! Telegram through the Bot API (teloxide, over rustls): long polling or a webhook in,
//! `sendMessage` out, `getFile` for photos.
//!
//! Only private chats are read: a tip never comes from a group, where other members would
//! see it. Chat ids and message texts identify tipsters, so nothing here logs them, and no
//! error string this module returns carries them (nor the bot token, which sits in every
//! Bot API URL, nor the raw answers of the API, which may echo a message).

use super::{http, HookError, Inbound, InboundKind, Outgoing, PhotoRef, Provider, SendOutcome};
use super::{rate, Transport};
use crate::config::TelegramConfig;
use anyhow::Context as _;
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use std::time::Duration;
use teloxide::payloads::{GetUpdatesSetters as _, SetWebhookSetters as _};
use teloxide::requests::Requester as _;
use teloxide::types::{AllowedUpdate, ChatId, FileId, Message, MessageKind, Update, UpdateKind};
use teloxide::{ApiError, Bot, RequestError};

/// The header Telegram sends the webhook's secret token in (set with `setWebhook`).
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Longest a TCP (and TLS) connection to the Bot API may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one ordinary call (sendMessage, getFile, setWebhook) may take. teloxide
/// itself waits 10 s after a 5xx before reading the answer, so this leaves room for that.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a photo download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a long poll may run over its own timeout (network, teloxide's 5xx pause).
const POLL_MARGIN: Duration = Duration::from_secs(20);
/// Longest long-poll timeout asked of Telegram, whatever the caller asks (Telegram's own
/// limit is 50 s); the HTTP client's timeout is set above it.
const MAX_POLL_SECONDS: u32 = 50;
/// Wait asked by a flood error whose answer names no wait.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Telegram lets a bot write about one message a second to one chat.
const PER_CHAT_INTERVAL: Duration = Duration::from_secs(1);

/// A Telegram bot: sends messages, long-polls updates, downloads photos. Cheap to clone
/// (teloxide's `Bot` is reference-counted inside).
#[derive(Clone)]
pub struct TelegramClient {
    bot: Bot,
    rate: Option<u32>,
}

// By hand: the bot token must never reach a log through `{:?}`.
impl std::fmt::Debug for TelegramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramClient")
            .field("api_url", &self.bot.api_url().as_str())
            .finish_non_exhaustive()
    }
}

impl TelegramClient {
    /// A client for the configured bot and Bot API URL. Fails (never panics) on an empty
    /// token or an API URL that is not an absolute http(s) URL.
    pub fn new(cfg: &TelegramConfig) -> anyhow::Result<Self> {
        if cfg.token.trim().is_empty() {
            anyhow::bail!("telegram.token is not set");
        }
        let api_url = parse_api_url(&cfg.api_url)?;
        // The HTTP timeout must outlast the longest long poll, or an idle poll would end in
        // a client-side timeout instead of an empty answer; each call has its own, shorter
        // deadline below.
        let timeout = Duration::from_secs(u64::from(MAX_POLL_SECONDS)) + POLL_MARGIN;
        let client = http::client_builder(CONNECT_TIMEOUT, timeout.max(DOWNLOAD_TIMEOUT))
            .build()
            .context("building the Telegram HTTP client")?;
        let bot = Bot::with_client(cfg.token.trim(), client).set_api_url(api_url);
        Ok(TelegramClient {
            bot,
            rate: rate(cfg.rate_per_second),
        })
    }

    /// Sends `text` to the private chat `chat_id` (a decimal chat id) and says what
    /// Telegram made of it. Never panics, never logs the chat id or the text.
    async fn send_text(&self, chat_id: &str, text: &str) -> SendOutcome {
        let Ok(id) = chat_id.trim().parse::<i64>() else {
            return SendOutcome::Rejected("chat id is not a number".into());
        };
        let call = self.bot.send_message(ChatId(id), text);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => SendOutcome::Transient("timed out".into()),
            Ok(Ok(message)) => SendOutcome::Accepted {
                provider_id: Some(message.id.0.to_string()),
            },
            Ok(Err(e)) => classify_send_error(&e),
        }
    }

    /// One long-poll `getUpdates` call for messages with update ids from `offset` on
    /// (which confirms, and so drops, every update before it), waiting up to
    /// `timeout_secs` (at most 50) for one to arrive. Returns each update's id with its
    /// message normalised, or `None` for an update tinbao ignores (the id still moves the
    /// offset on). The error text carries no id, token or message.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout_secs: u32,
    ) -> Result<Vec<(i64, Option<Inbound>)>, String> {
        let offset = i32::try_from(offset).map_err(|_| "update offset out of range".to_string())?;
        let timeout_secs = timeout_secs.min(MAX_POLL_SECONDS);
        let call = self
            .bot
            .get_updates()
            .offset(offset)
            .timeout(timeout_secs)
            .allowed_updates([AllowedUpdate::Message]);
        let limit = Duration::from_secs(u64::from(timeout_secs)) + POLL_MARGIN;
        let updates = match tokio::time::timeout(limit, call).await {
            Err(_) => return Err("getUpdates timed out".into()),
            Ok(Err(e)) => return Err(format!("getUpdates failed: {}", describe(&e))),
            Ok(Ok(updates)) => updates,
        };
        Ok(updates
            .iter()
            .map(|u| {
                if matches!(u.kind, UpdateKind::Error(_)) {
                    // teloxide keeps the id of an update it could not read so the offset
                    // still moves on; say so without showing its content.
                    tracing::warn!(
                        update_id = u.id.0,
                        "telegram update not understood; skipped"
                    );
                }
                (i64::from(u.id.0), to_inbound(u))
            })
            .collect())
    }

    /// Downloads a photo by its `file_id` (`getFile`, then the file URL), refusing one
    /// larger than `max_bytes`. The error text carries no file id, path or token.
    async fn download_file(&self, file_id: &str, max_bytes: usize) -> Result<Vec<u8>, String> {
        let call = self.bot.get_file(FileId(file_id.to_owned()));
        let file = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => return Err("getFile timed out".into()),
            Ok(Err(e)) => return Err(format!("getFile failed: {}", describe(&e))),
            Ok(Ok(file)) => file,
        };
        if file.meta.size as usize > max_bytes {
            return Err("photo is larger than allowed".into());
        }
        if file.path.is_empty() {
            return Err("getFile gave no file path".into());
        }
        let url = file_url(self.bot.api_url(), self.bot.token(), &file.path)?;
        tokio::time::timeout(
            DOWNLOAD_TIMEOUT,
            http::download(self.bot.client(), url, max_bytes, "photo download"),
        )
        .await
        .map_err(|_| "photo download timed out".to_string())?
    }

    /// Long polling needs no webhook: removes one if set (Telegram refuses `getUpdates`
    /// while a webhook is active). Pending updates are kept.
    pub async fn delete_webhook(&self) -> Result<(), String> {
        match tokio::time::timeout(CALL_TIMEOUT, self.bot.delete_webhook()).await {
            Err(_) => Err("deleteWebhook timed out".into()),
            Ok(Err(e)) => Err(format!("deleteWebhook failed: {}", describe(&e))),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Asks Telegram to deliver updates to `url` with `secret` in [`SECRET_HEADER`]
    /// (message updates only). Telegram wants an https URL and a secret of 1–256 of
    /// `A-Z a-z 0-9 _ -`.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), String> {
        if secret.is_empty() {
            return Err("a webhook needs a secret".into());
        }
        let url = reqwest::Url::parse(url).map_err(|_| "webhook URL is not a URL".to_string())?;
        let call = self
            .bot
            .set_webhook(url)
            .secret_token(secret)
            .allowed_updates([AllowedUpdate::Message]);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err("setWebhook timed out".into()),
            Ok(Err(e)) => Err(format!("setWebhook failed: {}", describe(&e))),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

impl Provider for TelegramClient {
    fn transport(&self) -> Transport {
        Transport::TELEGRAM
    }

    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, SendOutcome> {
        Box::pin(self.send_text(&message.to, &message.text))
    }

    fn fetch_photo<'a>(
        &'a self,
        photo: &'a PhotoRef,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            match photo {
                PhotoRef::TelegramFile(id) => self.download_file(id, max_bytes).await,
                PhotoRef::Bytes(b) => Ok(b.clone()),
                PhotoRef::Url(_) | PhotoRef::Withheld => Err("not a Telegram file".into()),
            }
        })
    }

    fn per_recipient_interval(&self) -> Option<Duration> {
        Some(PER_CHAT_INTERVAL)
    }

    fn rate_per_second(&self) -> Option<u32> {
        self.rate
    }
}

/// Parses the configured Bot API base URL: absolute, http or https, usable as a base.
fn parse_api_url(raw: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(raw.trim()).context("telegram.api_url is not a URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        anyhow::bail!("telegram.api_url must be an http or https URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("telegram.api_url must have no query or fragment");
    }
    // teloxide appends `/bot<token>/<method>` as path segments: a trailing slash would
    // leave an empty segment (`//bot…`).
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
    }
    Ok(url)
}

/// `{api_url}/file/bot{token}/{file_path}`, with the file path's own `/` kept (teloxide's
/// helper escapes them) and `.`/`..` segments dropped.
fn file_url(mut base: reqwest::Url, token: &str, file_path: &str) -> Result<reqwest::Url, String> {
    {
        let mut segments = base
            .path_segments_mut()
            .map_err(|_| "Bot API URL cannot take a path".to_string())?;
        segments.pop_if_empty();
        segments.push("file");
        segments.push(&format!("bot{token}"));
        for part in file_path.split('/') {
            if !part.is_empty() && part != "." && part != ".." {
                segments.push(part);
            }
        }
    }
    Ok(base)
}

/// What one failed `sendMessage` means for the outbox.
fn classify_send_error(e: &RequestError) -> SendOutcome {
    match e {
        RequestError::RetryAfter(wait) => {
            SendOutcome::RetryAfter(http::bound_retry_after(wait.duration()))
        }
        RequestError::MigrateToChatId(_) => {
            SendOutcome::Rejected("chat was migrated to a supergroup".into())
        }
        RequestError::Network(e) => SendOutcome::Transient(http::network_failure(e).into()),
        RequestError::Io(_) => SendOutcome::Transient("i/o error".into()),
        RequestError::InvalidJson { .. } => {
            SendOutcome::Transient("unreadable answer from the Bot API".into())
        }
        RequestError::Api(api) => classify_api_error(api),
    }
}

/// Sorts a Bot API error: the person is gone, a passing fault, or a message Telegram will
/// never take.
fn classify_api_error(api: &ApiError) -> SendOutcome {
    use ApiError as A;
    match api {
        A::BotBlocked => SendOutcome::OptedOut("bot was blocked by the user".into()),
        A::UserDeactivated => SendOutcome::OptedOut("user is deactivated".into()),
        A::ChatNotFound | A::UserNotFound => SendOutcome::OptedOut("chat not found".into()),
        A::BotKicked | A::BotKickedFromSupergroup | A::BotKickedFromChannel => {
            SendOutcome::OptedOut("bot was removed from the chat".into())
        }
        A::CantInitiateConversation | A::CantTalkWithBots => {
            SendOutcome::OptedOut("bot may not write to this chat".into())
        }
        A::GroupDeactivated => SendOutcome::OptedOut("chat is deactivated".into()),
        // A configuration fault, not the message's: keep it for when the token is fixed.
        A::InvalidToken => SendOutcome::Transient("invalid bot token".into()),
        A::TerminatedByOtherGetUpdates => SendOutcome::Transient("conflict".into()),
        A::Unknown(description) => classify_description(description),
        other => SendOutcome::Rejected(scrub(&other.to_string())),
    }
}

/// Sorts an error description teloxide does not know by its status word, as the Bot API
/// writes them ("Forbidden: …", "Too Many Requests: retry after 5", "Internal Server
/// Error"). teloxide drops `error_code`, so the text is all there is.
fn classify_description(description: &str) -> SendOutcome {
    let d = description.trim();
    let lower = d.to_ascii_lowercase();
    if lower.starts_with("forbidden") {
        SendOutcome::OptedOut("forbidden to write to this chat".into())
    } else if lower.starts_with("too many requests") {
        let wait = lower
            .rsplit("retry after")
            .next()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_RETRY_AFTER);
        SendOutcome::RetryAfter(http::bound_retry_after(wait))
    } else if [
        "internal server error",
        "bad gateway",
        "service unavailable",
        "gateway time",
        "conflict",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
        || lower.is_empty()
    {
        SendOutcome::Transient(scrub(d))
    } else {
        SendOutcome::Rejected(scrub(d))
    }
}

/// A short, id-free description of a failed Bot API call, for logs.
fn describe(e: &RequestError) -> String {
    match e {
        RequestError::RetryAfter(wait) => format!("flood limit, retry after {} s", wait.seconds()),
        RequestError::MigrateToChatId(_) => "chat was migrated to a supergroup".into(),
        RequestError::Network(e) => http::network_failure(e).into(),
        RequestError::Io(_) => "i/o error".into(),
        RequestError::InvalidJson { .. } => "unreadable answer from the Bot API".into(),
        RequestError::Api(ApiError::Unknown(d)) => scrub(d),
        RequestError::Api(api) => scrub(&api.to_string()),
    }
}

/// An API description cut short, with long digit runs (ids) masked, so it may be logged.
fn scrub(description: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |out: &mut String, digits: &mut String| {
        if digits.len() >= 5 {
            out.push('#');
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in description.chars().take(160) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut out, &mut digits);
            if !c.is_control() {
                out.push(c);
            }
        }
    }
    flush(&mut out, &mut digits);
    out
}

/// Normalises one update: a message in a private chat becomes an [`Inbound`]; everything
/// else (groups, channels, edits, service messages, messages from bots) is `None`.
///
/// Text is the message text or a photo's caption; photos are the largest size of a photo,
/// plus an image sent as a file; a location (or a venue's location, its name and address
/// as text when there is no other text) becomes the location. A message with none of these
/// (a sticker, a voice note) is still an inbound message with empty fields, so the dialog
/// can say what it understands. Commands such as `/start` stay in the text.
pub fn to_inbound(update: &Update) -> Option<Inbound> {
    let UpdateKind::Message(msg) = &update.kind else {
        return None;
    };
    if !msg.chat.is_private() || !matches!(msg.kind, MessageKind::Common(_)) {
        return None;
    }
    if msg.from.as_ref().is_some_and(|u| u.is_bot) {
        return None;
    }
    Some(Inbound {
        transport: Transport::TELEGRAM,
        sender: msg.chat.id.0.to_string(),
        // Message ids are unique only within a chat.
        provider_id: Some(format!("{}:{}", msg.chat.id.0, msg.id.0)),
        to: None,
        kind: InboundKind::Message {
            text: message_text(msg),
            photos: message_photos(msg),
            location: msg
                .location()
                .or(msg.venue().map(|v| &v.location))
                .map(|l| (l.latitude, l.longitude)),
        },
    })
}

fn message_text(msg: &Message) -> String {
    if let Some(text) = msg.text().or(msg.caption()) {
        return text.to_owned();
    }
    match msg.venue() {
        Some(v) if v.address.is_empty() => v.title.clone(),
        Some(v) => format!("{}, {}", v.title, v.address),
        None => String::new(),
    }
}

fn message_photos(msg: &Message) -> Vec<PhotoRef> {
    let mut photos = Vec::new();
    // Telegram sends each photo in several sizes; the largest is the original.
    if let Some(largest) = msg.photo().and_then(|sizes| {
        sizes
            .iter()
            .max_by_key(|p| (u64::from(p.width) * u64::from(p.height), p.file.size))
    }) {
        photos.push(PhotoRef::TelegramFile(largest.file.id.0.clone()));
    }
    // A photo sent "as a file" keeps its full quality (and its metadata, which intake
    // strips like any other photo's).
    if let Some(doc) = msg.document() {
        if doc.mime_type.as_ref().is_some_and(|m| m.type_() == "image") {
            photos.push(PhotoRef::TelegramFile(doc.file.id.0.clone()));
        }
    }
    photos
}

/// Checks the webhook's secret header against the configured secret, in constant time.
/// An empty configured secret refuses every request: webhook mode requires a secret.
pub fn verify_webhook(secret: &str, headers: &HeaderMap) -> Result<(), HookError> {
    if secret.is_empty() {
        return Err(HookError::Unauthorized);
    }
    let sent = headers
        .get(SECRET_HEADER)
        .ok_or(HookError::Unauthorized)?
        .as_bytes();
    if crate::crypto::constant_eq(secret.as_bytes(), sent) {
        Ok(())
    } else {
        Err(HookError::Unauthorized)
    }
}

/// Reads a webhook body: a JSON Telegram `Update`. Not JSON, or not an update, is
/// `Malformed` (the reason names no content); an update tinbao ignores is `Ok(None)`.
/// Never panics, whatever the bytes.
pub fn parse_webhook(body: &[u8]) -> Result<Option<Inbound>, HookError> {
    let update: Update = serde_json::from_slice(body).map_err(|e| {
        // serde's message can quote the body; only its category is safe to repeat.
        HookError::Malformed(
            match e.classify() {
                serde_json::error::Category::Data => "not a Telegram update",
                _ => "not JSON",
            }
            .into(),
        )
    })?;
    if matches!(update.kind, UpdateKind::Error(_)) {
        tracing::warn!(
            update_id = update.id.0,
            "telegram update not understood; skipped"
        );
    }
    Ok(to_inbound(&update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    /// Parsed from text, as updates arrive: teloxide's `UpdateKind` reads borrowed keys,
    /// which `serde_json::from_value` cannot give.
    fn update(v: serde_json::Value) -> Update {
        let u: Update = serde_json::from_str(&v.to_string()).expect("test update parses");
        assert!(
            !matches!(u.kind, UpdateKind::Error(_)),
            "test update understood"
        );
        u
    }

    fn private_message(extra: serde_json::Value) -> serde_json::Value {
        let mut m = json!({
            "message_id": 77,
            "date": 1_700_000_000,
            "chat": {"id": 123456789, "type": "private", "first_name": "A"},
            "from": {"id": 123456789, "is_bot": false, "first_name": "A"},
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        json!({"update_id": 10, "message": m})
    }

    fn message_parts(i: &Inbound) -> (&str, &[PhotoRef], Option<(f64, f64)>) {
        match &i.kind {
            InboundKind::Message {
                text,
                photos,
                location,
            } => (text, photos, *location),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn private_text_becomes_inbound_with_chat_and_message_ids() {
        let u = update(private_message(json!({"text": "/start"})));
        let i = to_inbound(&u).expect("inbound");
        assert_eq!(i.transport, Transport::TELEGRAM);
        assert_eq!(i.sender, "123456789");
        assert_eq!(i.provider_id.as_deref(), Some("123456789:77"));
        assert_eq!(i.to, None);
        assert_eq!(message_parts(&i), ("/start", &[][..], None));
    }

    #[test]
    fn photo_with_caption_takes_largest_size_and_caption() {
        let u = update(private_message(json!({
            "caption": "bán ở đây",
            "photo": [
                {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 900},
                {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960, "file_size": 90000},
                {"file_id": "mid", "file_unique_id": "m", "width": 320, "height": 240, "file_size": 9000},
            ],
        })));
        let i = to_inbound(&u).expect("inbound");
        let (text, photos, location) = message_parts(&i);
        assert_eq!(text, "bán ở đây");
        assert_eq!(photos, &[PhotoRef::TelegramFile("large".into())][..]);
        assert_eq!(location, None);
    }

    #[test]
    fn image_sent_as_file_is_a_photo_but_other_files_are_not() {
        let doc = |mime: &str| {
            update(private_message(json!({
                "document": {"file_id": "doc", "file_unique_id": "d", "mime_type": mime},
            })))
        };
        let i = to_inbound(&doc("image/jpeg")).expect("inbound");
        assert_eq!(
            message_parts(&i).1,
            &[PhotoRef::TelegramFile("doc".into())][..]
        );
        let i = to_inbound(&doc("application/pdf")).expect("inbound");
        assert!(message_parts(&i).1.is_empty());
    }

    #[test]
    fn location_becomes_latitude_longitude() {
        let u = update(private_message(json!({
            "location": {"latitude": 21.0285, "longitude": 105.8542},
        })));
        let i = to_inbound(&u).expect("inbound");
        assert_eq!(message_parts(&i), ("", &[][..], Some((21.0285, 105.8542))));
    }

    #[test]
    fn group_chat_message_is_ignored() {
        let u = update(json!({"update_id": 1, "message": {
            "message_id": 5, "date": 1_700_000_000,
            "chat": {"id": -100123, "type": "group", "title": "Xóm"},
            "from": {"id": 42, "is_bot": false, "first_name": "A"},
            "text": "hello",
        }}));
        assert!(to_inbound(&u).is_none());
    }

    #[test]
    fn edited_message_is_ignored() {
        let mut v = private_message(json!({"text": "edited"}));
        let m = v["message"].take();
        let u = update(json!({"update_id": 11, "edited_message": m}));
        assert!(to_inbound(&u).is_none());
    }

    #[test]
    fn message_from_a_bot_is_ignored() {
        let mut v = private_message(json!({"text": "hi"}));
        v["message"]["from"]["is_bot"] = json!(true);
        assert!(to_inbound(&update(v)).is_none());
    }

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(SECRET_HEADER, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn webhook_with_right_secret_passes() {
        assert_eq!(
            verify_webhook("s3cr3t-Token_1", &headers(Some("s3cr3t-Token_1"))),
            Ok(())
        );
    }

    #[test]
    fn webhook_with_wrong_secret_is_unauthorized() {
        for wrong in ["s3cr3t-Token_2", "s3cr3t", "s3cr3t-Token_1x", ""] {
            assert_eq!(
                verify_webhook("s3cr3t-Token_1", &headers(Some(wrong))),
                Err(HookError::Unauthorized)
            );
        }
    }

    #[test]
    fn webhook_without_secret_header_is_unauthorized() {
        assert_eq!(
            verify_webhook("s3cr3t-Token_1", &headers(None)),
            Err(HookError::Unauthorized)
        );
    }

    #[test]
    fn webhook_is_unauthorized_when_no_secret_is_configured() {
        assert_eq!(
            verify_webhook("", &headers(Some(""))),
            Err(HookError::Unauthorized)
        );
        assert_eq!(
            verify_webhook("", &headers(None)),
            Err(HookError::Unauthorized)
        );
    }

    #[test]
    fn webhook_body_is_parsed_or_refused() {
        let body = serde_json::to_vec(&private_message(json!({"text": "tip"}))).expect("json");
        let i = parse_webhook(&body).expect("ok").expect("inbound");
        assert_eq!(message_parts(&i).0, "tip");
        assert!(matches!(
            parse_webhook(b"not json"),
            Err(HookError::Malformed(_))
        ));
        assert!(matches!(
            parse_webhook(b"[1,2]"),
            Err(HookError::Malformed(_))
        ));
        assert!(matches!(
            parse_webhook(b"{\"x\":1}"),
            Err(HookError::Malformed(_))
        ));
        // A well-formed update of a kind tinbao does not read is accepted and ignored.
        assert_eq!(parse_webhook(b"{\"update_id\":3,\"poll\":{}}"), Ok(None));
    }

    #[test]
    fn malformed_reason_does_not_quote_the_body() {
        let Err(HookError::Malformed(reason)) = parse_webhook(b"{\"update_id\":\"secret words\"}")
        else {
            panic!("expected malformed");
        };
        assert!(!reason.contains("secret"));
    }

    #[test]
    fn send_errors_are_classified() {
        use teloxide::types::Seconds;
        assert_eq!(
            classify_send_error(&RequestError::RetryAfter(Seconds::from_seconds(7))),
            SendOutcome::RetryAfter(Duration::from_secs(7))
        );
        assert!(matches!(
            classify_send_error(&RequestError::Api(ApiError::BotBlocked)),
            SendOutcome::OptedOut(_)
        ));
        assert!(matches!(
            classify_send_error(&RequestError::Api(ApiError::ChatNotFound)),
            SendOutcome::OptedOut(_)
        ));
        assert!(matches!(
            classify_send_error(&RequestError::Api(ApiError::MessageIsTooLong)),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify_description("Internal Server Error"),
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            classify_description("Forbidden: bot can't initiate conversation with a user"),
            SendOutcome::OptedOut(_)
        ));
        assert_eq!(
            classify_description("Too Many Requests: retry after 12"),
            SendOutcome::RetryAfter(Duration::from_secs(12))
        );
        assert!(matches!(
            classify_description("Bad Request: something new"),
            SendOutcome::Rejected(_)
        ));
    }

    #[test]
    fn scrub_masks_long_numbers() {
        assert_eq!(
            scrub("Bad Request: chat 123456789 gone, 42 left"),
            "Bad Request: chat # gone, 42 left"
        );
    }

    #[test]
    fn api_url_is_checked_without_panicking() {
        let cfg = |url: &str| TelegramConfig {
            token: "1:abc".into(),
            api_url: url.into(),
            ..TelegramConfig::default()
        };
        assert!(TelegramClient::new(&cfg("http://127.0.0.1:9/")).is_ok());
        assert!(TelegramClient::new(&cfg("https://api.telegram.org")).is_ok());
        for bad in [
            "",
            "not a url",
            "mailto:x@y",
            "ftp://x",
            "data:text/plain,x",
        ] {
            assert!(TelegramClient::new(&cfg(bad)).is_err(), "{bad}");
        }
        let no_token = TelegramConfig {
            token: String::new(),
            ..TelegramConfig::default()
        };
        assert!(TelegramClient::new(&no_token).is_err());
    }

    #[test]
    fn file_url_keeps_path_segments_and_drops_dot_segments() {
        let base = parse_api_url("http://127.0.0.1:1/tg/").expect("url");
        let url = file_url(base, "1:abc", "photos/../file_1.jpg").expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/tg/file/bot1:abc/photos/file_1.jpg"
        );
    }

    /// JSON-ish text: fragments of Telegram updates glued together at random.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\"update_id\"".to_string()),
            Just("\"message\"".to_string()),
            Just("\"edited_message\"".to_string()),
            Just("\"chat\"".to_string()),
            Just("\"type\"".to_string()),
            Just("\"private\"".to_string()),
            Just("\"photo\"".to_string()),
            Just("\"location\"".to_string()),
            Just("\"text\"".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "\"[^\"\\\\]{0,8}\"",
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    /// Random JSON values shaped a little like updates.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,10}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("update_id".to_string()),
                Just("message".to_string()),
                Just("chat".to_string()),
                Just("id".to_string()),
                Just("type".to_string()),
                Just("text".to_string()),
                Just("photo".to_string()),
                Just("date".to_string()),
                Just("message_id".to_string()),
                "[a-z_]{1,8}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(key, inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_webhook_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_webhook(&body);
        }

        #[test]
        fn parse_webhook_never_panics_on_jsonish_text(body in jsonish()) {
            let _ = parse_webhook(body.as_bytes());
        }

        #[test]
        fn parse_webhook_never_panics_on_json_values(v in json_value(), id in any::<i64>()) {
            let _ = parse_webhook(v.to_string().as_bytes());
            let wrapped = serde_json::json!({"update_id": id, "message": v});
            let _ = parse_webhook(wrapped.to_string().as_bytes());
        }
    }
}
