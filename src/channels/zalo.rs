//! Zalo Official Account: the webhook (signature check, event parsing) and the OA API
//! client (customer-service text messages, OAuth token refresh, image download).
//!
//! Wire format, as Zalo documents it:
//! - every webhook carries `X-ZEvent-Signature: mac=<hex sha256(app_id + body + timestamp
//!   + oa_secret_key)>`, where `body` is the raw JSON as received and `timestamp` is the
//!   event's own `timestamp` field (milliseconds, a string or a number);
//! - text goes out through `POST {api_url}/v3.0/oa/message/cs` with an `access_token`
//!   header; Zalo answers HTTP 200 with `error` = 0 on success and a negative code when not;
//! - an access token lives about 25 hours and is renewed with a single-use refresh token at
//!   `POST {oauth_url}/v4/oa/access_token` (header `secret_key`).
//!
//! Nothing here logs or prints a sender id, a message text or a token.

use super::{http, rate, HookError, Inbound, InboundKind, Outgoing, PhotoRef, Provider};
use super::{SendOutcome, Transport};
use crate::clock::now_ms;
use crate::config::ZaloConfig;
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The header Zalo signs webhook events with.
pub const SIGNATURE_HEADER: &str = "x-zevent-signature";

/// Longest answer read from the OA or OAuth API: their answers are a few hundred bytes.
const MAX_API_ANSWER: usize = 64 * 1024;

/// A token this close to its expiry is renewed before use, so a send does not race it.
const EXPIRY_MARGIN_MS: i64 = 60_000;

/// Zalo's tokens last 25 hours; assumed when a refresh answer omits `expires_in`.
const DEFAULT_EXPIRES_IN_S: i64 = 90_000;

/// Zalo lets an Official Account answer a person only for a while after their last
/// message (48 hours for consultation messages).
pub const REPLY_WINDOW: Duration = Duration::from_secs(48 * 3600);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Computes the `X-ZEvent-Signature` value (`mac=` + lowercase hex) for a raw body.
pub fn signature(app_id: &str, body: &[u8], timestamp: &str, oa_secret_key: &str) -> String {
    format!(
        "mac={}",
        hex::encode(digest(app_id, body, timestamp, oa_secret_key))
    )
}

fn digest(app_id: &str, body: &[u8], timestamp: &str, oa_secret_key: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(app_id.as_bytes());
    ctx.update(body);
    ctx.update(timestamp.as_bytes());
    ctx.update(oa_secret_key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reads the hex digest out of a signature header: `mac=<hex>`, tolerating spaces around
/// `=` and either case (Zalo's documentation writes `mac = sha256(...)`).
fn header_digest(headers: &HeaderMap) -> Option<Vec<u8>> {
    let raw = headers.get(SIGNATURE_HEADER)?.to_str().ok()?.trim();
    let hex_part = match raw.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("mac") => value.trim(),
        Some(_) => return None,
        None => raw,
    };
    let bytes = hex::decode(hex_part).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// A JSON string, or a number written as its decimal digits (Zalo sends ids and times
/// either way).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // Integers only: ids can exceed i64, so u64 is allowed too.
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A non-empty id field.
fn id_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(text_of)
        .filter(|s| !s.trim().is_empty())
}

/// A coordinate that may arrive as a string or a number.
fn coordinate(v: Option<&Value>) -> Option<f64> {
    let f = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

fn malformed(what: &str) -> HookError {
    HookError::Malformed(what.to_string())
}

/// Verifies a Zalo OA webhook and turns its event into [`Inbound`] messages.
///
/// Checks, in order: a signature header is present (else `Unauthorized`); the body is a
/// JSON object with a `timestamp` (else `Malformed`); the signature matches, in constant
/// time, and the body's `app_id` is ours (else `Unauthorized`); the timestamp is within
/// `cfg.max_age_seconds` of `now_ms` either way (else `Stale`). Then message, follow and
/// unfollow events become one [`Inbound`] each; an event tinbao has no use for (stickers,
/// "seen" receipts, OA echoes…) is acknowledged with an empty list. Never panics.
pub fn verify_and_parse(
    cfg: &ZaloConfig,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<Vec<Inbound>, HookError> {
    // Without a secret anybody who knows the (public) app id could sign.
    if cfg.oa_secret_key.is_empty() || cfg.app_id.is_empty() {
        return Err(HookError::Unauthorized);
    }
    let received = header_digest(headers).ok_or(HookError::Unauthorized)?;
    let event: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    if !event.is_object() {
        return Err(malformed("not a JSON object"));
    }
    let timestamp = event
        .get("timestamp")
        .and_then(text_of)
        .ok_or_else(|| malformed("no timestamp"))?;
    let expected = digest(&cfg.app_id, body, &timestamp, &cfg.oa_secret_key);
    if !crate::crypto::constant_eq(&expected, &received) {
        return Err(HookError::Unauthorized);
    }
    match event.get("app_id").and_then(text_of) {
        Some(app_id) if app_id == cfg.app_id => {}
        Some(_) => return Err(HookError::Unauthorized),
        None => return Err(malformed("no app_id")),
    }
    let ts_ms: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| malformed("timestamp is not a number"))?;
    let window_ms = u64::try_from(cfg.max_age_seconds.max(0))
        .unwrap_or(0)
        .saturating_mul(1000);
    if now_ms.abs_diff(ts_ms) > window_ms {
        return Err(HookError::Stale);
    }
    parse_event(&event)
}

/// Turns a verified event into inbound messages.
fn parse_event(event: &Value) -> Result<Vec<Inbound>, HookError> {
    let name = event
        .get("event_name")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no event_name"))?;
    // The OA id: `recipient.id` on messages, `oa_id` on follow events.
    let to = id_at(event, "/recipient/id").or_else(|| id_at(event, "/oa_id"));
    let provider_id = id_at(event, "/message/msg_id");
    let inbound = |sender: String, kind: InboundKind| Inbound {
        transport: Transport::ZALO,
        sender,
        provider_id: provider_id.clone(),
        to: to.clone(),
        kind,
    };
    // Anonymous chats (`anonymous_send_*`) carry the anonymous id in `sender.id`.
    let sender = || id_at(event, "/sender/id").ok_or_else(|| malformed("no sender id"));
    let text = || {
        event
            .pointer("/message/text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let attachments = || {
        event
            .pointer("/message/attachments")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let kind = match name {
        "user_send_text" | "anonymous_send_text" => {
            let text = event
                .pointer("/message/text")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("no message text"))?;
            InboundKind::Message {
                text: text.to_string(),
                photos: Vec::new(),
                location: None,
            }
        }
        "user_send_image" | "anonymous_send_image" => {
            let photos: Vec<PhotoRef> = attachments()
                .iter()
                .filter(|a| matches!(a.get("type").and_then(Value::as_str), None | Some("image")))
                .filter_map(|a| a.pointer("/payload/url").and_then(Value::as_str))
                .filter(|u| !u.trim().is_empty())
                .map(|u| PhotoRef::Url(u.to_string()))
                .collect();
            if photos.is_empty() {
                return Err(malformed("image event without an image url"));
            }
            InboundKind::Message {
                text: text(),
                photos,
                location: None,
            }
        }
        "user_send_location" | "anonymous_send_location" => {
            let location = attachments().iter().find_map(|a| {
                let c = a.pointer("/payload/coordinates")?;
                let lat = coordinate(c.get("latitude"))?;
                let lon = coordinate(c.get("longitude"))?;
                ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
                    .then_some((lat, lon))
            });
            let location = location.ok_or_else(|| malformed("location without coordinates"))?;
            InboundKind::Message {
                text: text(),
                photos: Vec::new(),
                location: Some(location),
            }
        }
        "follow" | "unfollow" => {
            let follower = id_at(event, "/follower/id")
                .or_else(|| id_at(event, "/sender/id"))
                .ok_or_else(|| malformed("no follower id"))?;
            let kind = if name == "follow" {
                InboundKind::Follow
            } else {
                InboundKind::Unfollow
            };
            return Ok(vec![inbound(follower, kind)]);
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![inbound(sender()?, kind)])
}

/// The OA's OAuth tokens. `expires_at_ms` is 0 when unknown (tokens from the
/// configuration file); such a token is used until Zalo rejects it.
#[derive(Clone, PartialEq, Eq)]
pub struct ZaloTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: i64,
}

// By hand, so that a token never reaches a log through `{:?}`.
impl std::fmt::Debug for ZaloTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZaloTokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Where the current tokens are kept between restarts (sealed in the database by the
/// core). Zalo's refresh tokens are single-use, so a refreshed pair must be saved or the
/// next start can no longer refresh.
pub trait TokenVault: Send + Sync {
    /// The last saved tokens, if any.
    fn load(&self) -> BoxFuture<'_, Option<ZaloTokens>>;
    /// Keeps `tokens` as the current ones.
    fn save<'a>(&'a self, tokens: &'a ZaloTokens) -> BoxFuture<'a, ()>;
}

/// A [`TokenVault`] in memory: for tests, and for a server without a database for them
/// (tokens then fall back to the configuration after a restart).
#[derive(Default)]
pub struct MemoryVault {
    tokens: std::sync::Mutex<Option<ZaloTokens>>,
}

impl MemoryVault {
    /// An empty vault.
    pub fn new() -> MemoryVault {
        MemoryVault::default()
    }

    /// A vault that already holds `tokens`.
    pub fn with(tokens: ZaloTokens) -> MemoryVault {
        MemoryVault {
            tokens: std::sync::Mutex::new(Some(tokens)),
        }
    }

    /// What the vault holds now (synchronously, for tests).
    pub fn current(&self) -> Option<ZaloTokens> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl TokenVault for MemoryVault {
    fn load(&self) -> BoxFuture<'_, Option<ZaloTokens>> {
        let tokens = self.current();
        Box::pin(async move { tokens })
    }

    fn save<'a>(&'a self, tokens: &'a ZaloTokens) -> BoxFuture<'a, ()> {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokens.clone());
        Box::pin(async {})
    }
}

/// The tokens in use, loaded from the vault on first use (`new` cannot wait for it).
struct TokenState {
    loaded: bool,
    tokens: ZaloTokens,
}

struct Inner {
    http: reqwest::Client,
    api_url: String,
    oauth_url: String,
    app_id: String,
    app_secret_key: String,
    vault: Arc<dyn TokenVault>,
    rate: Option<u32>,
    // One lock for reading and refreshing, so only one refresh runs at a time and a
    // caller that waited finds the fresh token instead of spending the refresh token again.
    state: tokio::sync::Mutex<TokenState>,
}

/// The Zalo OA API client. Cloning is cheap and clones share tokens and connections.
#[derive(Clone)]
pub struct ZaloClient {
    inner: Arc<Inner>,
}

/// What one call to the message API came to.
enum Attempt {
    Done(SendOutcome),
    TokenRejected,
}

/// How a Zalo `error` code is handled.
#[derive(Debug, PartialEq)]
enum ErrorClass {
    /// Refresh the token, then retry once.
    Token,
    Rejected(&'static str),
    OptedOut(&'static str),
    Transient,
}

/// Sorts Zalo's OA API error codes. Codes not listed are treated as transient: the
/// outbox retries them a bounded number of times.
fn classify(code: i64) -> ErrorClass {
    match code {
        // -216 invalid access token, -220 expired or revoked token, -124 the OAuth
        // server's "access token expired or invalid".
        -216 | -220 | -124 => ErrorClass::Token,
        -213 => ErrorClass::Rejected("the person does not follow the Zalo OA"),
        -230 => ErrorClass::Rejected("outside Zalo's reply window (no interaction in 7 days)"),
        -232 => ErrorClass::Rejected("the person has not interacted with the Zalo OA recently"),
        -218 => ErrorClass::Rejected("Zalo's message quota for this person is used up"),
        -211 | -223 => ErrorClass::Rejected("the Zalo OA's message quota is used up"),
        -227 => ErrorClass::Rejected("the Zalo account is locked or inactive"),
        -201 | -210 => ErrorClass::Rejected("Zalo refused the message as invalid"),
        -233 => ErrorClass::Rejected("Zalo does not accept this message type"),
        // The person blocked the OA or refused its messages.
        -217 | -244 => ErrorClass::OptedOut("the person blocked messages from the Zalo OA"),
        _ => ErrorClass::Transient,
    }
}

impl ZaloClient {
    /// A client for the OA at `cfg.api_url` / `cfg.oauth_url`. Tokens come from `vault`
    /// when it holds any, else from `cfg.access_token` / `cfg.refresh_token`.
    pub fn new(cfg: &ZaloConfig, vault: Arc<dyn TokenVault>) -> ZaloClient {
        let http = http::client(CONNECT_TIMEOUT, CALL_TIMEOUT);
        ZaloClient {
            inner: Arc::new(Inner {
                http,
                api_url: cfg.api_url.trim_end_matches('/').to_string(),
                oauth_url: cfg.oauth_url.trim_end_matches('/').to_string(),
                app_id: cfg.app_id.clone(),
                app_secret_key: cfg.app_secret_key.clone(),
                vault,
                rate: rate(cfg.rate_per_second),
                state: tokio::sync::Mutex::new(TokenState {
                    loaded: false,
                    tokens: ZaloTokens {
                        access_token: cfg.access_token.clone(),
                        refresh_token: cfg.refresh_token.clone(),
                        expires_at_ms: 0,
                    },
                }),
            }),
        }
    }

    /// Sends `text` to the Zalo user `user_id` as a customer-service message.
    ///
    /// Success is `Accepted` with Zalo's message id. A rejected or expired token is
    /// refreshed once and the message retried once (`Transient` if that fails too);
    /// reply-window, quota and invalid-recipient errors are `Rejected` with a short reason
    /// that names no one; a person who blocked the OA is `OptedOut`; HTTP 429 is
    /// `RetryAfter`; 5xx, network errors and unknown Zalo codes are `Transient`.
    async fn send_text(&self, user_id: &str, text: &str) -> SendOutcome {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(e) => return SendOutcome::Transient(e),
        };
        match self.post_message(&token, user_id, text).await {
            Attempt::Done(outcome) => outcome,
            Attempt::TokenRejected => {
                let fresh = match self.refresh_replacing(&token).await {
                    Ok(t) => t,
                    Err(e) => return SendOutcome::Transient(e),
                };
                match self.post_message(&fresh, user_id, text).await {
                    Attempt::Done(outcome) => outcome,
                    Attempt::TokenRejected => SendOutcome::Transient(
                        "Zalo rejected the access token again after a refresh".into(),
                    ),
                }
            }
        }
    }

    /// Downloads an image a user sent (a Zalo CDN URL from a webhook), refusing more than
    /// `max_bytes`. Errors name neither the URL nor the sender.
    async fn fetch_image(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, String> {
        let url = reqwest::Url::parse(url).map_err(|_| "Zalo image: not a URL".to_string())?;
        http::download(&self.inner.http, url, max_bytes, "Zalo image download").await
    }

    /// The access token to use now: loaded from the vault on first use, renewed first
    /// when its known expiry has passed.
    async fn access_token(&self) -> Result<String, String> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await;
        let expires = state.tokens.expires_at_ms;
        if state.tokens.access_token.is_empty()
            || (expires != 0 && now_ms() >= expires.saturating_sub(EXPIRY_MARGIN_MS))
        {
            self.refresh_locked(&mut state).await?;
        }
        Ok(state.tokens.access_token.clone())
    }

    /// Renews the tokens after Zalo rejected `rejected`, unless another caller already
    /// did while this one waited for the lock: then the newer token is reused.
    async fn refresh_replacing(&self, rejected: &str) -> Result<String, String> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await;
        if state.tokens.access_token != rejected && !state.tokens.access_token.is_empty() {
            return Ok(state.tokens.access_token.clone());
        }
        self.refresh_locked(&mut state).await?;
        Ok(state.tokens.access_token.clone())
    }

    async fn ensure_loaded(&self, state: &mut TokenState) {
        if !state.loaded {
            if let Some(saved) = self.inner.vault.load().await {
                state.tokens = saved;
            }
            state.loaded = true;
        }
    }

    /// One refresh at Zalo's OAuth server; the caller holds the token lock.
    async fn refresh_locked(&self, state: &mut TokenState) -> Result<(), String> {
        if state.tokens.refresh_token.is_empty() {
            return Err("no Zalo refresh token configured".into());
        }
        let url = format!("{}/v4/oa/access_token", self.inner.oauth_url);
        let form = [
            ("refresh_token", state.tokens.refresh_token.as_str()),
            ("app_id", self.inner.app_id.as_str()),
            ("grant_type", "refresh_token"),
        ];
        let resp = self
            .inner
            .http
            .post(url)
            .header("secret_key", &self.inner.app_secret_key)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("Zalo token refresh: {}", http::network_failure(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "Zalo token refresh answered HTTP {}",
                status.as_u16()
            ));
        }
        let body = http::read_capped(resp, MAX_API_ANSWER)
            .await
            .map_err(|e| format!("Zalo token refresh: {e}"))?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| "Zalo token refresh answer is not JSON".to_string())?;
        let access = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let Some(access) = access else {
            let code = answer.get("error").and_then(text_of).unwrap_or_default();
            return Err(format!("Zalo token refresh refused (error {code})"));
        };
        let refresh = answer
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            // Should Zalo not rotate it, the old one stays valid.
            .unwrap_or_else(|| state.tokens.refresh_token.clone());
        let expires_in = answer
            .get("expires_in")
            .and_then(text_of)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN_S);
        state.tokens = ZaloTokens {
            access_token: access.to_string(),
            refresh_token: refresh,
            expires_at_ms: now_ms().saturating_add(expires_in.saturating_mul(1000)),
        };
        self.inner.vault.save(&state.tokens).await;
        tracing::info!("Zalo access token refreshed");
        Ok(())
    }

    /// One call to the customer-service message API.
    async fn post_message(&self, token: &str, user_id: &str, text: &str) -> Attempt {
        let url = format!("{}/v3.0/oa/message/cs", self.inner.api_url);
        let body = serde_json::json!({
            "recipient": { "user_id": user_id },
            "message": { "text": text },
        });
        let resp = match self
            .inner
            .http
            .post(url)
            .header("access_token", token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Done(SendOutcome::Transient(format!(
                    "Zalo: {}",
                    http::network_failure(&e)
                )))
            }
        };
        let status = resp.status();
        if status.as_u16() == 429 {
            return Attempt::Done(SendOutcome::RetryAfter(http::retry_after(resp.headers())));
        }
        if status.as_u16() == 401 {
            return Attempt::TokenRejected;
        }
        if !status.is_success() {
            return Attempt::Done(SendOutcome::Transient(format!(
                "Zalo answered HTTP {}",
                status.as_u16()
            )));
        }
        let answer = match http::read_capped(resp, MAX_API_ANSWER).await {
            Ok(b) => serde_json::from_slice::<Value>(&b).ok(),
            Err(e) => return Attempt::Done(SendOutcome::Transient(format!("Zalo: {e}"))),
        };
        let Some(answer) = answer else {
            return Attempt::Done(SendOutcome::Transient(
                "Zalo's answer is not JSON".to_string(),
            ));
        };
        let code = answer
            .get("error")
            .and_then(text_of)
            .and_then(|s| s.parse::<i64>().ok());
        match code {
            Some(0) => Attempt::Done(SendOutcome::Accepted {
                provider_id: id_at(&answer, "/data/message_id"),
            }),
            None => Attempt::Done(SendOutcome::Transient(
                "Zalo's answer has no error code".to_string(),
            )),
            Some(code) => match classify(code) {
                ErrorClass::Token => Attempt::TokenRejected,
                ErrorClass::Rejected(why) => Attempt::Done(SendOutcome::Rejected(why.into())),
                ErrorClass::OptedOut(why) => Attempt::Done(SendOutcome::OptedOut(why.into())),
                ErrorClass::Transient => {
                    Attempt::Done(SendOutcome::Transient(format!("Zalo error {code}")))
                }
            },
        }
    }
}

impl Provider for ZaloClient {
    fn transport(&self) -> Transport {
        Transport::ZALO
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
                PhotoRef::Url(url) => self.fetch_image(url, max_bytes).await,
                PhotoRef::Bytes(b) => Ok(b.clone()),
                PhotoRef::TelegramFile(_) | PhotoRef::Withheld => Err("not a Zalo image".into()),
            }
        })
    }

    fn reply_window(&self) -> Option<Duration> {
        Some(REPLY_WINDOW)
    }

    fn rate_per_second(&self) -> Option<u32> {
        self.inner.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    const APP: &str = "3608465249409039";
    const SECRET: &str = "oa-secret-for-tests";
    const NOW: i64 = 1_750_000_000_000;

    fn cfg() -> ZaloConfig {
        ZaloConfig {
            enabled: true,
            app_id: APP.into(),
            oa_secret_key: SECRET.into(),
            ..ZaloConfig::default()
        }
    }

    fn headers_for(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(sig) {
            h.insert(SIGNATURE_HEADER, v);
        }
        h
    }

    /// Signs `event` as Zalo would; returns the raw body and the headers.
    fn signed(event: &Value) -> (Vec<u8>, HeaderMap) {
        let body = serde_json::to_vec(event).unwrap_or_default();
        let ts = event.get("timestamp").and_then(text_of).unwrap_or_default();
        let sig = signature(APP, &body, &ts, SECRET);
        (body, headers_for(&sig))
    }

    fn parse(event: &Value) -> Result<Vec<Inbound>, HookError> {
        let (body, headers) = signed(event);
        verify_and_parse(&cfg(), &headers, &body, NOW)
    }

    fn text_event(ts: Value) -> Value {
        json!({
            "app_id": APP,
            "sender": {"id": "246845883529197922"},
            "user_id_by_app": "552177279717587730",
            "recipient": {"id": "388613280878808645"},
            "event_name": "user_send_text",
            "message": {"text": "có người bán ma túy ở chợ", "msg_id": "96d3cdf3af150460909"},
            "timestamp": ts,
        })
    }

    fn without(mut event: Value, key: &str) -> Value {
        if let Some(o) = event.as_object_mut() {
            o.remove(key);
        }
        event
    }

    fn one(result: Result<Vec<Inbound>, HookError>) -> Inbound {
        match result {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("expected one inbound, got {other:?}"),
        }
    }

    #[test]
    fn signature_matches_zalo_formula() {
        // sha256("app" + "{}" + "1" + "key"), computed independently.
        let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"app{}1key"));
        assert_eq!(
            signature("app", b"{}", "1", "key"),
            format!("mac={expected}")
        );
    }

    #[test]
    fn correct_signature_is_accepted_with_string_timestamp() {
        let inbound = one(parse(&text_event(json!(NOW.to_string()))));
        assert_eq!(inbound.transport, Transport::ZALO);
        assert_eq!(inbound.sender, "246845883529197922");
        assert_eq!(inbound.provider_id.as_deref(), Some("96d3cdf3af150460909"));
        assert_eq!(inbound.to.as_deref(), Some("388613280878808645"));
        assert_eq!(
            inbound.kind,
            InboundKind::Message {
                text: "có người bán ma túy ở chợ".into(),
                photos: vec![],
                location: None
            }
        );
    }

    #[test]
    fn correct_signature_is_accepted_with_numeric_timestamp() {
        one(parse(&text_event(json!(NOW))));
    }

    #[test]
    fn signature_header_tolerates_spaces_and_upper_case() {
        let event = text_event(json!(NOW.to_string()));
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let hex_part = hex::encode(digest(APP, &body, &NOW.to_string(), SECRET));
        let headers = headers_for(&format!("MAC = {}", hex_part.to_uppercase()));
        assert!(verify_and_parse(&cfg(), &headers, &body, NOW).is_ok());
    }

    #[test]
    fn wrong_signature_is_unauthorized() {
        let event = text_event(json!(NOW.to_string()));
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let wrong = signature(APP, &body, &NOW.to_string(), "another-secret");
        let result = verify_and_parse(&cfg(), &headers_for(&wrong), &body, NOW);
        assert_eq!(result, Err(HookError::Unauthorized));
    }

    #[test]
    fn a_changed_body_breaks_the_signature() {
        let (mut body, headers) = signed(&text_event(json!(NOW.to_string())));
        if let Some(b) = body.iter_mut().find(|b| **b == b'6') {
            *b = b'7';
        }
        let result = verify_and_parse(&cfg(), &headers, &body, NOW);
        assert_eq!(result, Err(HookError::Unauthorized));
    }

    #[test]
    fn missing_or_garbled_signature_is_unauthorized() {
        let (body, _) = signed(&text_event(json!(NOW.to_string())));
        for headers in [
            HeaderMap::new(),
            headers_for("mac="),
            headers_for("mac=zz"),
            headers_for("sha256=00"),
        ] {
            let result = verify_and_parse(&cfg(), &headers, &body, NOW);
            assert_eq!(result, Err(HookError::Unauthorized));
        }
    }

    #[test]
    fn empty_secret_refuses_everything() {
        let event = text_event(json!(NOW.to_string()));
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let sig = signature(APP, &body, &NOW.to_string(), "");
        let mut c = cfg();
        c.oa_secret_key.clear();
        let result = verify_and_parse(&c, &headers_for(&sig), &body, NOW);
        assert_eq!(result, Err(HookError::Unauthorized));
    }

    #[test]
    fn another_app_id_is_unauthorized() {
        let mut event = text_event(json!(NOW.to_string()));
        event["app_id"] = json!("999");
        assert_eq!(parse(&event), Err(HookError::Unauthorized));
    }

    #[test]
    fn old_and_future_timestamps_are_stale() {
        let max = cfg().max_age_seconds * 1000;
        for ts in [NOW - max - 1, NOW + max + 1, 0, i64::MIN, i64::MAX] {
            let result = parse(&text_event(json!(ts.to_string())));
            assert_eq!(result, Err(HookError::Stale), "timestamp {ts}");
        }
        // At the edge of the window it is still fresh.
        one(parse(&text_event(json!((NOW - max).to_string()))));
    }

    #[test]
    fn non_json_and_missing_fields_are_malformed() {
        // A well-formed but wrong signature: the body is looked at before it can be checked.
        let any_sig = headers_for(&format!("mac={}", "0".repeat(64)));
        let result = verify_and_parse(&cfg(), &any_sig, b"not json", NOW);
        assert!(matches!(result, Err(HookError::Malformed(_))));
        let no_ts = without(text_event(json!(NOW)), "timestamp");
        let body = serde_json::to_vec(&no_ts).unwrap_or_default();
        let result = verify_and_parse(&cfg(), &any_sig, &body, NOW);
        assert!(matches!(result, Err(HookError::Malformed(_))));

        let no_sender = without(text_event(json!(NOW)), "sender");
        assert!(matches!(parse(&no_sender), Err(HookError::Malformed(_))));
        let mut no_text = text_event(json!(NOW));
        no_text["message"] = json!({"msg_id": "1"});
        assert!(matches!(parse(&no_text), Err(HookError::Malformed(_))));
        let no_name = without(text_event(json!(NOW)), "event_name");
        assert!(matches!(parse(&no_name), Err(HookError::Malformed(_))));
    }

    #[test]
    fn image_event_gives_photo_urls_and_caption() {
        let event = json!({
            "app_id": APP,
            "sender": {"id": "111"},
            "recipient": {"id": "999"},
            "event_name": "user_send_image",
            "message": {
                "msg_id": "m2",
                "text": "xem ảnh",
                "attachments": [
                    {"type": "image", "payload": {"thumbnail": "https://t/1", "url": "https://cdn/1.jpg"}},
                    {"type": "image", "payload": {"url": "https://cdn/2.jpg"}}
                ]
            },
            "timestamp": NOW.to_string(),
        });
        let inbound = one(parse(&event));
        assert_eq!(inbound.sender, "111");
        assert_eq!(inbound.provider_id.as_deref(), Some("m2"));
        assert_eq!(
            inbound.kind,
            InboundKind::Message {
                text: "xem ảnh".into(),
                photos: vec![
                    PhotoRef::Url("https://cdn/1.jpg".into()),
                    PhotoRef::Url("https://cdn/2.jpg".into())
                ],
                location: None
            }
        );
    }

    #[test]
    fn image_event_without_url_is_malformed() {
        let event = json!({
            "app_id": APP, "sender": {"id": "111"}, "event_name": "user_send_image",
            "message": {"msg_id": "m2", "attachments": [{"type": "image", "payload": {}}]},
            "timestamp": NOW,
        });
        assert!(matches!(parse(&event), Err(HookError::Malformed(_))));
    }

    #[test]
    fn location_event_reads_string_and_number_coordinates() {
        for (lat, lon) in [
            (json!("21.0285"), json!("105.8542")),
            (json!(21.0285), json!(105.8542)),
        ] {
            let event = json!({
                "app_id": APP,
                "sender": {"id": "222"},
                "recipient": {"id": "999"},
                "event_name": "user_send_location",
                "message": {
                    "msg_id": "m3",
                    "attachments": [{"type": "location", "payload": {"coordinates": {"latitude": lat, "longitude": lon}}}]
                },
                "timestamp": NOW.to_string(),
            });
            let inbound = one(parse(&event));
            assert_eq!(
                inbound.kind,
                InboundKind::Message {
                    text: String::new(),
                    photos: vec![],
                    location: Some((21.0285, 105.8542))
                }
            );
        }
    }

    #[test]
    fn location_out_of_range_is_malformed() {
        let event = json!({
            "app_id": APP, "sender": {"id": "222"}, "event_name": "user_send_location",
            "message": {"attachments": [{"type": "location", "payload": {"coordinates": {"latitude": "91", "longitude": "NaN"}}}]},
            "timestamp": NOW,
        });
        assert!(matches!(parse(&event), Err(HookError::Malformed(_))));
    }

    #[test]
    fn follow_and_unfollow_use_the_follower_id() {
        for (name, kind) in [
            ("follow", InboundKind::Follow),
            ("unfollow", InboundKind::Unfollow),
        ] {
            let event = json!({
                "app_id": APP,
                "oa_id": "999",
                "follower": {"id": "333"},
                "event_name": name,
                "source": "oa_profile",
                "timestamp": NOW.to_string(),
            });
            let inbound = one(parse(&event));
            assert_eq!(inbound.sender, "333");
            assert_eq!(inbound.to.as_deref(), Some("999"));
            assert_eq!(inbound.provider_id, None);
            assert_eq!(inbound.kind, kind);
        }
    }

    #[test]
    fn anonymous_text_uses_the_anonymous_id_as_sender() {
        let event = json!({
            "app_id": APP,
            "sender": {"id": "anon-7f3a"},
            "recipient": {"id": "999"},
            "event_name": "anonymous_send_text",
            "message": {"text": "ẩn danh", "msg_id": "m4", "conversation_id": "conv-1"},
            "timestamp": NOW.to_string(),
        });
        let inbound = one(parse(&event));
        assert_eq!(inbound.sender, "anon-7f3a");
        assert_eq!(inbound.provider_id.as_deref(), Some("m4"));
        assert!(matches!(inbound.kind, InboundKind::Message { ref text, .. } if text == "ẩn danh"));
    }

    #[test]
    fn anonymous_image_gives_a_photo() {
        let event = json!({
            "app_id": APP,
            "sender": {"id": "anon-7f3a"},
            "event_name": "anonymous_send_image",
            "message": {"msg_id": "m5", "conversation_id": "conv-1",
                        "attachments": [{"type": "image", "payload": {"url": "https://cdn/a.jpg"}}]},
            "timestamp": NOW,
        });
        let inbound = one(parse(&event));
        assert!(
            matches!(inbound.kind, InboundKind::Message { ref photos, .. }
            if photos == &vec![PhotoRef::Url("https://cdn/a.jpg".into())])
        );
    }

    #[test]
    fn unknown_events_are_acknowledged_and_ignored() {
        for name in [
            "user_send_sticker",
            "oa_send_text",
            "user_seen_message",
            "something_new",
        ] {
            let mut event = text_event(json!(NOW));
            event["event_name"] = json!(name);
            assert_eq!(parse(&event), Ok(vec![]), "{name}");
        }
    }

    #[test]
    fn debug_output_hides_tokens() {
        let t = ZaloTokens {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
            expires_at_ms: 5,
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret-access") && !shown.contains("secret-refresh"));
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(classify(-216), ErrorClass::Token);
        assert_eq!(classify(-124), ErrorClass::Token);
        assert!(matches!(classify(-230), ErrorClass::Rejected(_)));
        assert!(matches!(classify(-213), ErrorClass::Rejected(_)));
        assert!(matches!(classify(-232), ErrorClass::Rejected(_)));
        assert!(matches!(classify(-244), ErrorClass::OptedOut(_)));
        assert_eq!(classify(-999_999), ErrorClass::Transient);
    }

    /// Strings that look like Zalo events, with holes and wrong types.
    fn jsonish() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            Just("null".to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            "[a-z_ ]{0,12}".prop_map(|s| format!("\"{s}\"")),
            Just(format!("\"{NOW}\"")),
            Just(format!("\"{APP}\"")),
            prop::sample::select(vec![
                "\"user_send_text\"",
                "\"user_send_image\"",
                "\"user_send_location\"",
                "\"anonymous_send_text\"",
                "\"anonymous_send_image\"",
                "\"follow\"",
                "\"unfollow\"",
            ])
            .prop_map(str::to_string),
        ];
        let keys = prop::sample::select(vec![
            "app_id",
            "event_name",
            "timestamp",
            "sender",
            "recipient",
            "follower",
            "message",
            "text",
            "msg_id",
            "id",
            "attachments",
            "payload",
            "url",
            "coordinates",
            "latitude",
            "longitude",
            "type",
        ]);
        scalar.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                    let fields: Vec<String> = kv
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512),
                                       sig in ".{0,80}") {
            let _ = verify_and_parse(&cfg(), &headers_for(&sig), &body, NOW);
            let _ = verify_and_parse(&cfg(), &HeaderMap::new(), &body, NOW);
        }

        #[test]
        fn arbitrary_signed_jsonish_never_panics(body in jsonish()) {
            // Sign with whatever timestamp the body carries, so parsing is reached.
            let ts = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("timestamp").and_then(text_of))
                .unwrap_or_default();
            let sig = signature(APP, body.as_bytes(), &ts, SECRET);
            let _ = verify_and_parse(&cfg(), &headers_for(&sig), body.as_bytes(), NOW);
        }

        #[test]
        fn signed_events_with_arbitrary_fields_never_panic(
            name in prop::sample::select(vec!["user_send_text", "user_send_image",
                "user_send_location", "anonymous_send_text", "anonymous_send_image",
                "anonymous_send_location", "follow", "unfollow", "other"]),
            message in jsonish(),
            sender in jsonish(),
        ) {
            let body = format!(
                "{{\"app_id\":\"{APP}\",\"event_name\":\"{name}\",\"timestamp\":\"{NOW}\",\
                 \"sender\":{sender},\"follower\":{sender},\"message\":{message}}}"
            );
            let sig = signature(APP, body.as_bytes(), &NOW.to_string(), SECRET);
            let result = verify_and_parse(&cfg(), &headers_for(&sig), body.as_bytes(), NOW);
            // The signature and time are right, so only the fields can be at fault.
            prop_assert!(!matches!(result, Err(HookError::Unauthorized) | Err(HookError::Stale)));
        }
    }
}
