//! SMS gateways: Twilio's Programmable Messaging and the Android SMS Gateway app
//! (sms-gate.app, capcom6/android-sms-gateway). Webhooks come in through
//! [`verify_twilio`] and [`verify_android`] (signature first, then parsing, into
//! [`Inbound`]); text goes out through [`TwilioClient`] and [`AndroidClient`], one
//! [`SendOutcome`] per attempt. The pure helpers [`strip_diacritics`], [`segments`] and
//! [`prepare_text`] know what an SMS costs.
//!
//! A phone number or a message text must never reach a log: every error here names a
//! field, a status code or a provider error number, never a value from the request.

use super::{HookError, Inbound, InboundKind, PhotoRef, SendOutcome, Transport};
use crate::config::{AndroidSmsConfig, TwilioConfig};
use axum::http::HeaderMap;
use base64::Engine as _;
use ring::hmac;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The header Twilio signs its webhooks with.
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The header the Android gateway puts its hex HMAC-SHA256 in.
pub const ANDROID_SIGNATURE_HEADER: &str = "x-signature";
/// The header with the Unix time (seconds) the Android gateway signed with.
pub const ANDROID_TIMESTAMP_HEADER: &str = "x-timestamp";

/// Twilio attaches at most ten media to one message.
const TWILIO_MAX_MEDIA: usize = 10;
/// Twilio's error code for a recipient who texted STOP.
const TWILIO_UNSUBSCRIBED: u64 = 21610;
/// The replay window when the configuration leaves it at zero or below.
const DEFAULT_MAX_AGE_SECONDS: i64 = 300;

/// A whole send attempt may take this long; the outbox retries a timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds on a provider's Retry-After, so a strange header neither hammers the
/// provider nor parks the outbox for a day.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------
// Twilio webhooks
// ---------------------------------------------------------------------------------------

/// Verifies and parses one Twilio incoming-message webhook.
///
/// `url` is the full public URL Twilio posted to, query string included, exactly as
/// configured at Twilio (e.g. `https://example.org/hooks/sms/twilio`); `body` is the raw
/// `application/x-www-form-urlencoded` body. The `X-Twilio-Signature` header must be
/// base64(HMAC-SHA1(auth token, url + each parameter's name and value, sorted by name)),
/// compared in constant time; like Twilio's own libraries, the URL is also tried with
/// its default port added or its port removed, since proxies disagree about ports.
///
/// Returns one [`Inbound`] message, or nothing for a delivery-status callback posted to
/// the same URL. A missing or wrong signature (or no auth token configured) is
/// [`HookError::Unauthorized`]; a signed body without `From` or `MessageSid` is
/// [`HookError::Malformed`].
pub fn verify_twilio(
    cfg: &TwilioConfig,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Inbound>, HookError> {
    // An empty key would let anyone who knows the scheme sign requests.
    if cfg.auth_token.is_empty() {
        return Err(HookError::Unauthorized);
    }
    let signature = header_str(headers, TWILIO_SIGNATURE_HEADER).ok_or(HookError::Unauthorized)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| HookError::Unauthorized)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        cfg.auth_token.as_bytes(),
    );
    let signed = twilio_url_variants(url).iter().any(|u| {
        hmac::verify(
            &key,
            twilio_signing_string(u, &params).as_bytes(),
            &signature,
        )
        .is_ok()
    });
    if !signed {
        return Err(HookError::Unauthorized);
    }
    parse_twilio(&params)
}

/// What Twilio signs: the URL, then every parameter's name and value, sorted by name
/// (and, for a repeated name, by value), with no separators.
fn twilio_signing_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::with_capacity(
        url.len() + params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
    );
    s.push_str(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The URL as given, plus the same URL with its port removed (when it has one) or with
/// the scheme's default port added (when it has none). Twilio's libraries accept either,
/// because a load balancer may add or drop the port Twilio signed.
fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // Skip user:password@ (Twilio allows credentials in the URL).
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    // A port follows the last ':' unless that colon sits inside an IPv6 literal.
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'));
    let prefix = &url[..authority_start + host_start];
    let suffix = &url[authority_end..];
    match port_colon {
        Some(i) => out.push(format!("{prefix}{}{suffix}", &host_port[..i])),
        None => out.push(format!("{prefix}{host_port}:{default_port}{suffix}")),
    }
    out
}

/// Turns verified webhook parameters into an [`Inbound`].
fn parse_twilio(params: &[(String, String)]) -> Result<Vec<Inbound>, HookError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // A status callback for a message we sent carries MessageStatus and no content:
    // acknowledged, nothing to do.
    if get("MessageStatus").is_some() && get("Body").is_none() && get("NumMedia").is_none() {
        return Ok(vec![]);
    }
    let sender = get("From")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HookError::Malformed("missing From".into()))?;
    let sid = get("MessageSid")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HookError::Malformed("missing MessageSid".into()))?;
    let mut photos = Vec::new();
    for i in 0..TWILIO_MAX_MEDIA {
        let Some(url) = get(&format!("MediaUrl{i}")).filter(|s| !s.is_empty()) else {
            continue;
        };
        // MMS may carry a vCard or a video; only images become photos.
        let is_image = get(&format!("MediaContentType{i}"))
            .is_none_or(|t| t.to_ascii_lowercase().starts_with("image/"));
        if is_image {
            photos.push(PhotoRef::Url(url.to_string()));
        }
    }
    Ok(vec![Inbound {
        transport: Transport::Twilio,
        sender: sender.to_string(),
        provider_id: Some(sid.to_string()),
        to: get("To").filter(|s| !s.is_empty()).map(str::to_string),
        kind: InboundKind::Message {
            text: get("Body").unwrap_or_default().to_string(),
            photos,
            location: None,
        },
    }])
}

// ---------------------------------------------------------------------------------------
// Android SMS Gateway webhooks
// ---------------------------------------------------------------------------------------

/// Verifies and parses one Android SMS Gateway webhook.
///
/// `X-Signature` must be hex(HMAC-SHA256(webhook secret, raw body + `X-Timestamp`
/// value)), compared in constant time; a missing or wrong one (or no secret configured)
/// is [`HookError::Unauthorized`]. A correctly signed request whose `X-Timestamp` (Unix
/// seconds) is more than `max_age_seconds` (300 when unset) away from `now_ms` either
/// way is [`HookError::Stale`], so a captured request cannot be replayed later.
///
/// `sms:received` becomes one [`Inbound`] message from `payload.phoneNumber`; its
/// `provider_id` is the event's top-level `id`, or `payload.messageId` when there is no
/// `id` (the gateway derives `messageId` from the content, so two people texting the same
/// word may share one). Every other event (`sms:sent`, `sms:delivered`, `sms:failed`,
/// `system:ping`, …) is acknowledged with an empty list.
pub fn verify_android(
    cfg: &AndroidSmsConfig,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<Vec<Inbound>, HookError> {
    if cfg.webhook_secret.is_empty() {
        return Err(HookError::Unauthorized);
    }
    let signature = header_str(headers, ANDROID_SIGNATURE_HEADER).ok_or(HookError::Unauthorized)?;
    let timestamp = header_str(headers, ANDROID_TIMESTAMP_HEADER).ok_or(HookError::Unauthorized)?;
    let signature = hex::decode(signature).map_err(|_| HookError::Unauthorized)?;
    let mut signed = Vec::with_capacity(body.len() + timestamp.len());
    signed.extend_from_slice(body);
    signed.extend_from_slice(timestamp.as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, cfg.webhook_secret.as_bytes());
    hmac::verify(&key, &signed, &signature).map_err(|_| HookError::Unauthorized)?;

    // Checked after the signature, so only an authentic request learns it was stale.
    let timestamp: i64 = timestamp.parse().map_err(|_| HookError::Stale)?;
    let max_age = if cfg.max_age_seconds > 0 {
        cfg.max_age_seconds
    } else {
        DEFAULT_MAX_AGE_SECONDS
    };
    if now_ms.div_euclid(1000).abs_diff(timestamp) > max_age.unsigned_abs() {
        return Err(HookError::Stale);
    }
    parse_android(body)
}

/// Turns a verified webhook body into [`Inbound`] messages. Errors name the missing
/// field only: serde's messages may quote the value, which may be a phone number.
fn parse_android(body: &[u8]) -> Result<Vec<Inbound>, HookError> {
    let malformed = |what: &str| HookError::Malformed(what.to_string());
    let event: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    let kind = event
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing event"))?;
    if kind != "sms:received" {
        return Ok(vec![]);
    }
    let payload = event
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| malformed("missing payload"))?;
    let sender = payload
        .get("phoneNumber")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("missing payload.phoneNumber"))?;
    let text = payload
        .get("message")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing payload.message"))?;
    let id_of = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let provider_id = id_of(event.get("id")).or_else(|| id_of(payload.get("messageId")));
    Ok(vec![Inbound {
        transport: Transport::Android,
        sender: sender.to_string(),
        provider_id,
        to: None,
        kind: InboundKind::Message {
            text: text.to_string(),
            photos: vec![],
            location: None,
        },
    }])
}

/// The message a verified delivery report says reached the handset, if the body is one:
/// Twilio's status callback with `MessageStatus=delivered` (its `MessageSid`), or the
/// Android gateway's `sms:delivered` event (its `payload.messageId`, the id we gave the
/// message). Other statuses and events are `None`.
pub fn delivered_message(transport: Transport, body: &[u8]) -> Option<String> {
    let id = match transport {
        Transport::Twilio => {
            let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            if get("MessageStatus").as_deref() != Some("delivered") || get("Body").is_some() {
                return None;
            }
            get("MessageSid")?
        }
        Transport::Android => {
            let event: Value = serde_json::from_slice(body).ok()?;
            if event.get("event").and_then(Value::as_str) != Some("sms:delivered") {
                return None;
            }
            event
                .get("payload")?
                .get("messageId")?
                .as_str()?
                .to_string()
        }
        _ => return None,
    };
    (!id.is_empty() && id.len() <= 64).then_some(id)
}

/// A header's value as trimmed, non-empty visible ASCII.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------
// Senders
// ---------------------------------------------------------------------------------------

/// One HTTP client per gateway: timeouts so a hung provider cannot stall the outbox, and
/// no redirects, so credentials and message bodies go only where configured.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tinbao/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building fails only when the TLS backend cannot start; the default client
        // then reports the same failure on first use.
        .unwrap_or_default()
}

/// Why a request never got an answer, without the URL or any request content.
fn network_reason(gateway: &str, e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "network error"
    };
    format!("{gateway}: {what}")
}

/// The wait a 429 asks for: `Retry-After` in seconds, 1 s when absent or a date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MIN_RETRY_AFTER)
        .clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// Sends SMS through Twilio's Messages API. Cheap to clone: the connection pool and the
/// credentials are shared.
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: Arc<str>,
    account_sid: Arc<str>,
    auth_token: Arc<str>,
    from: Arc<str>,
    /// Where Twilio reports each message's delivery (our webhook), when set.
    status_callback: Option<Arc<str>>,
}

// By hand, so the auth token never reaches a log.
impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    /// A client for `{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, sending
    /// from `cfg.from` with HTTP basic auth (account SID, auth token).
    pub fn new(cfg: &TwilioConfig) -> TwilioClient {
        let base = cfg.api_url.trim_end_matches('/');
        TwilioClient {
            http: http_client(),
            messages_url: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                cfg.account_sid
            )
            .into(),
            account_sid: cfg.account_sid.as_str().into(),
            auth_token: cfg.auth_token.as_str().into(),
            from: cfg.from.as_str().into(),
            status_callback: None,
        }
    }

    /// Asks Twilio to report each message's delivery to `url` (the Twilio webhook).
    pub fn with_status_callback(mut self, url: &str) -> TwilioClient {
        self.status_callback = Some(url.into());
        self
    }

    /// Sends one SMS. 200/201 is [`SendOutcome::Accepted`] with the message SID; 429 is
    /// [`SendOutcome::RetryAfter`] (`Retry-After`, else 1 s); 5xx, other statuses and
    /// network failures are [`SendOutcome::Transient`]; error 21610 (the person texted
    /// STOP) is [`SendOutcome::OptedOut`]; any other 4xx is [`SendOutcome::Rejected`]
    /// naming only Twilio's error code, since Twilio's messages quote the number.
    pub async fn send(&self, to: &str, text: &str) -> SendOutcome {
        let response = self
            .http
            .post(&*self.messages_url)
            .basic_auth(&*self.account_sid, Some(&*self.auth_token))
            .form(&{
                let mut form = vec![("To", to), ("From", &*self.from), ("Body", text)];
                if let Some(url) = &self.status_callback {
                    form.push(("StatusCallback", url.as_ref()));
                }
                form
            })
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return SendOutcome::Transient(network_reason("twilio", &e)),
        };
        let status = response.status();
        if status.is_success() {
            let sid = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_string));
            return SendOutcome::Accepted { provider_id: sid };
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return SendOutcome::RetryAfter(retry_after(response.headers()));
        }
        if !status.is_client_error() {
            return SendOutcome::Transient(format!("twilio: HTTP {}", status.as_u16()));
        }
        let code = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_u64));
        match code {
            Some(TWILIO_UNSUBSCRIBED) => {
                SendOutcome::OptedOut("twilio: error 21610, recipient unsubscribed".into())
            }
            Some(code) => {
                SendOutcome::Rejected(format!("twilio: error {code} (HTTP {})", status.as_u16()))
            }
            None => SendOutcome::Rejected(format!("twilio: HTTP {}", status.as_u16())),
        }
    }
}

/// Sends SMS through the Android SMS Gateway's 3rd-party API (cloud or private server).
/// Cheap to clone.
#[derive(Clone)]
pub struct AndroidClient {
    http: reqwest::Client,
    messages_url: Arc<str>,
    username: Arc<str>,
    password: Arc<str>,
}

// By hand, so the password never reaches a log.
impl std::fmt::Debug for AndroidClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndroidClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl AndroidClient {
    /// A client for `{api_url}/3rdparty/v1/messages` with HTTP basic auth (username,
    /// password from the app's home screen).
    pub fn new(cfg: &AndroidSmsConfig) -> AndroidClient {
        let base = cfg.api_url.trim_end_matches('/');
        AndroidClient {
            http: http_client(),
            messages_url: format!("{base}/3rdparty/v1/messages").into(),
            username: cfg.username.as_str().into(),
            password: cfg.password.as_str().into(),
        }
    }

    /// Enqueues one SMS on the gateway, in the current request shape
    /// (`{"textMessage":{"text":…},"phoneNumbers":[…]}`). Any 2xx (the gateway answers
    /// 202) is [`SendOutcome::Accepted`] with the gateway's message id; 429 is
    /// [`SendOutcome::RetryAfter`]; 5xx, other statuses and network failures are
    /// [`SendOutcome::Transient`]; any 4xx is [`SendOutcome::Rejected`] with its status
    /// only. The gateway has no opt-out of its own, so it never returns
    /// [`SendOutcome::OptedOut`].
    pub async fn send(&self, to: &str, text: &str) -> SendOutcome {
        self.send_with_id(to, text, None).await
    }

    /// As [`AndroidClient::send`], with our own message `id`: the gateway keeps one
    /// message per id, so sending again after a crash (when we cannot know whether the
    /// first attempt was taken) does not text the person twice.
    pub async fn send_with_id(&self, to: &str, text: &str, id: Option<&str>) -> SendOutcome {
        let mut body = serde_json::json!({
            "textMessage": { "text": text },
            "phoneNumbers": [to],
        });
        if let Some(id) = id {
            body["id"] = Value::String(id.to_owned());
        }
        let response = self
            .http
            .post(&*self.messages_url)
            .basic_auth(&*self.username, Some(&*self.password))
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return SendOutcome::Transient(network_reason("android gateway", &e)),
        };
        let status = response.status();
        if status.is_success() {
            let id = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
            return SendOutcome::Accepted { provider_id: id };
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return SendOutcome::RetryAfter(retry_after(response.headers()));
        }
        let reason = format!("android gateway: HTTP {}", status.as_u16());
        if status.is_client_error() {
            SendOutcome::Rejected(reason)
        } else {
            SendOutcome::Transient(reason)
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMS text
// ---------------------------------------------------------------------------------------

/// The GSM 03.38 default alphabet, in table order, without the escape code (0x1B).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The GSM 03.38 extension table: each costs an escape septet plus its own.
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets one character takes in GSM 7-bit, or `None` when it needs UCS-2.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// What a text costs as SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Whether the text needs UCS-2 (any character outside GSM 03.38, such as
    /// Vietnamese letters with diacritics).
    pub ucs2: bool,
    /// Length in the encoding's units: septets for GSM 7-bit (extension characters such
    /// as `€` or `{` count two), UTF-16 code units for UCS-2.
    pub chars: usize,
    /// Messages it is sent as (an empty text still takes one).
    pub segments: usize,
}

/// Counts the SMS segments a text takes: GSM 7-bit fits 160 septets in one message and
/// 153 per part when concatenated; UCS-2 fits 70 code units, 67 per part. A part never
/// splits an escape sequence or a surrogate pair, as handsets do not.
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    match gsm {
        Some(units) => pack(&units, 160, 153, false),
        None => {
            let units: Vec<usize> = text.chars().map(char::len_utf16).collect();
            pack(&units, 70, 67, true)
        }
    }
}

/// Fills parts of `per_part` units with indivisible characters of `units` each.
fn pack(units: &[usize], single: usize, per_part: usize, ucs2: bool) -> Segments {
    let chars = units.iter().sum();
    let segments = if chars <= single {
        1
    } else {
        let (mut parts, mut used) = (1, 0);
        for &u in units {
            if used + u > per_part {
                parts += 1;
                used = 0;
            }
            used += u;
        }
        parts
    };
    Segments {
        ucs2,
        chars,
        segments,
    }
}

/// Removes diacritics: "Công an xã Hoàng Văn Thụ" becomes "Cong an xa Hoang Van Thu",
/// and đ/Đ (a letter of its own, not a combined mark) become d/D. Other text is kept.
pub fn strip_diacritics(s: &str) -> String {
    s.nfd()
        .filter(|&c| !is_combining_mark(c))
        .map(|c| match c {
            'đ' => 'd',
            'Đ' => 'D',
            _ => c,
        })
        .nfc()
        .collect()
}

/// Readies a text for SMS. Always composes it (NFC), so a UCS-2 message is as short as
/// it can be. With `strip` (the `sms.strip_diacritics` setting) it also removes
/// diacritics and turns typographic punctuation (curly quotes, dashes, ellipsis,
/// no-break space, tab) into plain GSM characters, so that a Vietnamese text travels in
/// 160-character GSM messages instead of 70-character UCS-2 ones.
pub fn prepare_text(text: &str, strip: bool) -> String {
    let composed: String = text.nfc().collect();
    if !strip {
        return composed;
    }
    let stripped = strip_diacritics(&composed);
    let mut out = String::with_capacity(stripped.len());
    for c in stripped.chars() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => out.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => out.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{2026}' => out.push_str("..."),
            '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\t' => out.push(' '),
            '\u{2022}' => out.push('*'),
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    const HOOK_URL: &str = "https://example.org/hooks/sms/twilio";
    const NOW_MS: i64 = 1_750_000_000_000;

    fn twilio_cfg(token: &str) -> TwilioConfig {
        TwilioConfig {
            auth_token: token.into(),
            ..TwilioConfig::default()
        }
    }

    fn android_cfg(secret: &str) -> AndroidSmsConfig {
        AndroidSmsConfig {
            webhook_secret: secret.into(),
            ..AndroidSmsConfig::default()
        }
    }

    fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
        let tag = hmac::sign(&key, twilio_signing_string(url, &owned).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    }

    fn form(params: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    fn twilio_headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            TWILIO_SIGNATURE_HEADER,
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    fn android_sign(secret: &str, body: &[u8], timestamp: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut msg = body.to_vec();
        msg.extend_from_slice(timestamp.as_bytes());
        hex::encode(hmac::sign(&key, &msg).as_ref())
    }

    fn android_headers(signature: &str, timestamp: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            ANDROID_SIGNATURE_HEADER,
            HeaderValue::from_str(signature).unwrap(),
        );
        h.insert(
            ANDROID_TIMESTAMP_HEADER,
            HeaderValue::from_str(timestamp).unwrap(),
        );
        h
    }

    fn android_verify_signed(body: &str, timestamp_s: i64) -> Result<Vec<Inbound>, HookError> {
        let ts = timestamp_s.to_string();
        let sig = android_sign("s3cret", body.as_bytes(), &ts);
        verify_android(
            &android_cfg("s3cret"),
            &android_headers(&sig, &ts),
            body.as_bytes(),
            NOW_MS,
        )
    }

    const RECEIVED: &str = r#"{"deviceId":"ffffffffceb0b1db0000018e937c815b","event":"sms:received","id":"Ey6ECgOkVVFjz3CL48B8C","payload":{"messageId":"abc123","message":"Có người bán ma túy ở chợ","phoneNumber":"+84912345678","simNumber":1,"receivedAt":"2024-06-22T15:46:11.000+07:00"},"webhookId":"wh1"}"#;

    // Twilio's published test vector (twilio-python's request validator tests).
    const VECTOR_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const VECTOR_PARAMS: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ];

    #[test]
    fn twilio_signing_matches_twilios_published_vector() {
        assert_eq!(
            twilio_sign("12345", VECTOR_URL, VECTOR_PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // The vector has no MessageSid: reaching the parser proves the signature passed.
        let result = verify_twilio(
            &twilio_cfg("12345"),
            VECTOR_URL,
            &twilio_headers("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            &form(VECTOR_PARAMS),
        );
        assert_eq!(
            result,
            Err(HookError::Malformed("missing MessageSid".into()))
        );
    }

    #[test]
    fn twilio_signing_sorts_repeated_parameters_by_value() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            twilio_sign("12345", VECTOR_URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn twilio_signature_over_the_default_port_is_accepted_without_it() {
        // Twilio's vector for the same request signed as https://mycompany.com:443/….
        let result = verify_twilio(
            &twilio_cfg("12345"),
            VECTOR_URL,
            &twilio_headers("kvajT1Ptam85bY51eRf/AJRuM3w="),
            &form(VECTOR_PARAMS),
        );
        assert!(matches!(result, Err(HookError::Malformed(_))), "{result:?}");
        // And one signed without a port is accepted when the proxy reports one.
        let with_port = VECTOR_URL.replace(".com", ".com:1234");
        let result = verify_twilio(
            &twilio_cfg("12345"),
            &with_port,
            &twilio_headers("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            &form(VECTOR_PARAMS),
        );
        assert!(matches!(result, Err(HookError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn twilio_url_variants_add_or_remove_the_port() {
        assert_eq!(
            twilio_url_variants("https://a.example/x?y=1"),
            vec!["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            twilio_url_variants("http://u:p@a.example:8080"),
            vec!["http://u:p@a.example:8080", "http://u:p@a.example"]
        );
        assert_eq!(
            twilio_url_variants("https://[::1]/h"),
            vec!["https://[::1]/h", "https://[::1]:443/h"]
        );
        assert_eq!(twilio_url_variants("not a url"), vec!["not a url"]);
    }

    fn twilio_sms_params<'a>() -> Vec<(&'a str, &'a str)> {
        vec![
            ("ToCountry", "VN"),
            ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("NumMedia", "2"),
            ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
            ("SmsStatus", "received"),
            ("Body", "Có người bán ma túy ở chợ & bến xe"),
            ("To", "+84900000001"),
            ("NumSegments", "1"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "+84912345678"),
            ("MediaUrl0", "https://api.twilio.com/media/ME1"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl1", "https://api.twilio.com/media/ME2"),
            ("MediaContentType1", "text/vcard"),
            ("ApiVersion", "2010-04-01"),
        ]
    }

    #[test]
    fn twilio_signed_message_becomes_an_inbound_message() {
        let params = twilio_sms_params();
        let sig = twilio_sign("tok", HOOK_URL, &params);
        let got = verify_twilio(
            &twilio_cfg("tok"),
            HOOK_URL,
            &twilio_headers(&sig),
            &form(&params),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![Inbound {
                transport: Transport::Twilio,
                sender: "+84912345678".into(),
                provider_id: Some("SM0123456789abcdef0123456789abcdef".into()),
                to: Some("+84900000001".into()),
                kind: InboundKind::Message {
                    text: "Có người bán ma túy ở chợ & bến xe".into(),
                    photos: vec![PhotoRef::Url("https://api.twilio.com/media/ME1".into())],
                    location: None,
                },
            }]
        );
    }

    #[test]
    fn twilio_wrong_or_missing_signature_is_unauthorized() {
        let params = twilio_sms_params();
        let body = form(&params);
        let cfg = twilio_cfg("tok");
        let wrong_key = twilio_sign("other", HOOK_URL, &params);
        let wrong_url = twilio_sign("tok", "https://evil.example/hooks/sms/twilio", &params);
        for sig in [
            wrong_key.as_str(),
            wrong_url.as_str(),
            "not base64!",
            "AAAA",
        ] {
            assert_eq!(
                verify_twilio(&cfg, HOOK_URL, &twilio_headers(sig), &body),
                Err(HookError::Unauthorized),
                "{sig}"
            );
        }
        assert_eq!(
            verify_twilio(&cfg, HOOK_URL, &HeaderMap::new(), &body),
            Err(HookError::Unauthorized)
        );
        // A changed body no longer matches.
        let good = twilio_sign("tok", HOOK_URL, &params);
        let mut tampered = params.clone();
        tampered[5] = ("Body", "something else");
        assert_eq!(
            verify_twilio(&cfg, HOOK_URL, &twilio_headers(&good), &form(&tampered)),
            Err(HookError::Unauthorized)
        );
        // No token configured: nothing verifies, not even a signature under "".
        let empty = twilio_sign("", HOOK_URL, &params);
        assert_eq!(
            verify_twilio(&twilio_cfg(""), HOOK_URL, &twilio_headers(&empty), &body),
            Err(HookError::Unauthorized)
        );
    }

    #[test]
    fn twilio_without_from_is_malformed_and_status_callbacks_are_ignored() {
        let params = [("MessageSid", "SM1"), ("Body", "hi")];
        let sig = twilio_sign("tok", HOOK_URL, &params);
        assert_eq!(
            verify_twilio(
                &twilio_cfg("tok"),
                HOOK_URL,
                &twilio_headers(&sig),
                &form(&params)
            ),
            Err(HookError::Malformed("missing From".into()))
        );
        let status = [
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("From", "+84900000001"),
            ("To", "+84912345678"),
        ];
        let sig = twilio_sign("tok", HOOK_URL, &status);
        assert_eq!(
            verify_twilio(
                &twilio_cfg("tok"),
                HOOK_URL,
                &twilio_headers(&sig),
                &form(&status)
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn android_received_becomes_an_inbound_message() {
        let got = android_verify_signed(RECEIVED, NOW_MS / 1000).unwrap();
        assert_eq!(
            got,
            vec![Inbound {
                transport: Transport::Android,
                sender: "+84912345678".into(),
                provider_id: Some("Ey6ECgOkVVFjz3CL48B8C".into()),
                to: None,
                kind: InboundKind::Message {
                    text: "Có người bán ma túy ở chợ".into(),
                    photos: vec![],
                    location: None,
                },
            }]
        );
    }

    #[test]
    fn android_received_without_event_id_uses_message_id() {
        let body = r#"{"event":"sms:received","payload":{"messageId":"abc","message":"x","phoneNumber":"6505551212","simNumber":null}}"#;
        let got = android_verify_signed(body, NOW_MS / 1000).unwrap();
        assert_eq!(got[0].provider_id.as_deref(), Some("abc"));
        let body =
            r#"{"event":"sms:received","payload":{"message":"x","phoneNumber":"6505551212"}}"#;
        let got = android_verify_signed(body, NOW_MS / 1000).unwrap();
        assert_eq!(got[0].provider_id, None);
    }

    #[test]
    fn android_other_events_are_acknowledged_and_ignored() {
        for body in [
            r#"{"event":"sms:sent","id":"1","payload":{"messageId":"m","phoneNumber":"+1","sentAt":"2024-01-01T00:00:00Z"}}"#,
            r#"{"event":"sms:delivered","id":"2","payload":{"messageId":"m","phoneNumber":"+1"}}"#,
            r#"{"event":"sms:failed","id":"3","payload":{"messageId":"m","reason":"Invalid number"}}"#,
            r#"{"event":"system:ping","id":"4","payload":{"health":{"status":"pass"}}}"#,
            r#"{"event":"system:ping","id":"5"}"#,
            r#"{"event":"mms:received","id":"6","payload":{}}"#,
        ] {
            assert_eq!(
                android_verify_signed(body, NOW_MS / 1000),
                Ok(vec![]),
                "{body}"
            );
        }
    }

    #[test]
    fn android_malformed_bodies_name_the_field_not_the_value() {
        for (body, why) in [
            ("not json", "not JSON"),
            (r#"{"payload":{}}"#, "missing event"),
            (r#"{"event":"sms:received"}"#, "missing payload"),
            (
                r#"{"event":"sms:received","payload":{"message":"secret"}}"#,
                "missing payload.phoneNumber",
            ),
            (
                r#"{"event":"sms:received","payload":{"phoneNumber":"+84912345678"}}"#,
                "missing payload.message",
            ),
            (
                r#"{"event":"sms:received","payload":{"phoneNumber":84912345678,"message":"x"}}"#,
                "missing payload.phoneNumber",
            ),
        ] {
            assert_eq!(
                android_verify_signed(body, NOW_MS / 1000),
                Err(HookError::Malformed(why.into())),
                "{body}"
            );
        }
    }

    #[test]
    fn android_wrong_or_missing_signature_is_unauthorized() {
        let ts = (NOW_MS / 1000).to_string();
        let cfg = android_cfg("s3cret");
        let body = RECEIVED.as_bytes();
        let good = android_sign("s3cret", body, &ts);
        let cases: Vec<HeaderMap> = vec![
            HeaderMap::new(),
            android_headers(&android_sign("other", body, &ts), &ts),
            android_headers("zz-not-hex", &ts),
            android_headers(&good[..good.len() - 2], &ts),
            // The timestamp is signed: a changed one breaks the signature.
            android_headers(&good, &(NOW_MS / 1000 - 1).to_string()),
            {
                let mut h = HeaderMap::new();
                h.insert(
                    ANDROID_SIGNATURE_HEADER,
                    HeaderValue::from_str(&good).unwrap(),
                );
                h
            },
        ];
        for headers in cases {
            assert_eq!(
                verify_android(&cfg, &headers, body, NOW_MS),
                Err(HookError::Unauthorized)
            );
        }
        let mut tampered = body.to_vec();
        tampered[0] = b' ';
        assert_eq!(
            verify_android(&cfg, &android_headers(&good, &ts), &tampered, NOW_MS),
            Err(HookError::Unauthorized)
        );
        // Upper-case hex is the same signature.
        assert!(verify_android(
            &cfg,
            &android_headers(&good.to_uppercase(), &ts),
            body,
            NOW_MS
        )
        .is_ok());
        // No secret configured: nothing verifies.
        let empty = android_sign("", body, &ts);
        assert_eq!(
            verify_android(
                &android_cfg(""),
                &android_headers(&empty, &ts),
                body,
                NOW_MS
            ),
            Err(HookError::Unauthorized)
        );
    }

    #[test]
    fn android_stale_or_future_timestamps_are_refused() {
        let now = NOW_MS / 1000;
        assert!(android_verify_signed(RECEIVED, now - 300).is_ok());
        assert!(android_verify_signed(RECEIVED, now + 300).is_ok());
        assert_eq!(
            android_verify_signed(RECEIVED, now - 301),
            Err(HookError::Stale)
        );
        assert_eq!(
            android_verify_signed(RECEIVED, now + 301),
            Err(HookError::Stale)
        );
        assert_eq!(android_verify_signed(RECEIVED, 0), Err(HookError::Stale));
        assert_eq!(
            android_verify_signed(RECEIVED, i64::MIN),
            Err(HookError::Stale)
        );
        assert_eq!(
            android_verify_signed(RECEIVED, i64::MAX),
            Err(HookError::Stale)
        );
        // A signed timestamp that is not a number cannot be placed in the window.
        let sig = android_sign("s3cret", RECEIVED.as_bytes(), "soon");
        assert_eq!(
            verify_android(
                &android_cfg("s3cret"),
                &android_headers(&sig, "soon"),
                RECEIVED.as_bytes(),
                NOW_MS
            ),
            Err(HookError::Stale)
        );
        // A configured window replaces the default.
        let cfg = AndroidSmsConfig {
            max_age_seconds: 10,
            ..android_cfg("s3cret")
        };
        let ts = (now - 11).to_string();
        let sig = android_sign("s3cret", RECEIVED.as_bytes(), &ts);
        assert_eq!(
            verify_android(
                &cfg,
                &android_headers(&sig, &ts),
                RECEIVED.as_bytes(),
                NOW_MS
            ),
            Err(HookError::Stale)
        );
    }

    #[test]
    fn gsm_segments_at_the_boundaries() {
        for (n, parts) in [
            (0, 1),
            (1, 1),
            (160, 1),
            (161, 2),
            (306, 2),
            (307, 3),
            (459, 3),
            (460, 4),
        ] {
            let s = segments(&"a".repeat(n));
            assert_eq!(
                s,
                Segments {
                    ucs2: false,
                    chars: n,
                    segments: parts
                },
                "{n}"
            );
        }
    }

    #[test]
    fn ucs2_segments_at_the_boundaries() {
        for (n, parts) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
            let s = segments(&"ạ".repeat(n));
            assert_eq!(
                s,
                Segments {
                    ucs2: true,
                    chars: n,
                    segments: parts
                },
                "{n}"
            );
        }
    }

    #[test]
    fn extension_characters_count_two_septets_and_never_split() {
        assert_eq!(segments(&"€".repeat(80)).segments, 1);
        assert_eq!(segments(&"€".repeat(80)).chars, 160);
        assert_eq!(segments(&"€".repeat(81)).segments, 2);
        assert_eq!(segments(&format!("{}{{", "a".repeat(159))).segments, 2);
        // 306 septets, but the escape pair cannot straddle parts one and two.
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(
            segments(&s),
            Segments {
                ucs2: false,
                chars: 306,
                segments: 3
            }
        );
        assert!(!segments("^{}\\[~]|€\u{0C}").ucs2);
    }

    #[test]
    fn surrogate_pairs_count_two_units_and_never_split() {
        assert_eq!(
            segments(&"😀".repeat(35)),
            Segments {
                ucs2: true,
                chars: 70,
                segments: 1
            }
        );
        assert_eq!(segments(&"😀".repeat(36)).segments, 2);
        let s = format!("{}😀{}", "ạ".repeat(66), "ạ".repeat(66));
        assert_eq!(
            segments(&s),
            Segments {
                ucs2: true,
                chars: 134,
                segments: 3
            }
        );
    }

    #[test]
    fn gsm_alphabet_is_complete_and_vietnamese_needs_ucs2() {
        assert_eq!(GSM_BASIC.chars().count(), 127);
        assert_eq!(GSM_EXTENSION.chars().count(), 10);
        assert!(!segments("Hello @ £5, Ñandù? ¡Sì! Øre, àèéìòù ÄÖÜäöüÇÉÅåÆæß").ucs2);
        assert!(segments("Công an xã").ucs2);
        assert!(!segments("Cong an xa").ucs2);
        assert!(segments("“quoted”").ucs2);
        // Acute accents other than é are not in the alphabet.
        assert!(segments("Sí").ucs2);
    }

    #[test]
    fn strip_diacritics_keeps_vietnamese_readable() {
        assert_eq!(
            strip_diacritics("Công an xã Hoàng Văn Thụ"),
            "Cong an xa Hoang Van Thu"
        );
        assert_eq!(strip_diacritics("Đường đến UBND"), "Duong den UBND");
        assert_eq!(
            strip_diacritics("ĂÂÊÔƠƯ ăâêôơư ỳýỷỹỵ ỜỚỞỠỢ"),
            "AAEOOU aaeoou yyyyy OOOOO"
        );
        // Decomposed input strips the same way.
        assert_eq!(strip_diacritics("Co\u{0302}\u{0301}ng"), "Cong");
        assert_eq!(strip_diacritics("plain text 123"), "plain text 123");
    }

    #[test]
    fn prepare_text_makes_gsm_when_stripping() {
        let text = "Biên nhận: “1234-5678” — cảm ơn…\tđã báo tin.";
        let prepared = prepare_text(text, true);
        assert_eq!(prepared, "Bien nhan: \"1234-5678\" - cam on... da bao tin.");
        assert!(!segments(&prepared).ucs2);
        // Without stripping the text stays as written, composed.
        assert_eq!(prepare_text("Co\u{0302}\u{0301}ng “a”", false), "Cống “a”");
    }

    fn json_fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("{}".to_string()),
            Just("[]".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| if f.is_finite() {
                f.to_string()
            } else {
                "1e400".into()
            }),
            ".*".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("\"sms:received\"".to_string()),
            Just("\"sms:sent\"".to_string()),
            Just("\"system:ping\"".to_string()),
            "[ -~]{0,40}",
        ]
    }

    fn android_body() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            (json_fragment(), json_fragment(), json_fragment(), json_fragment(), json_fragment())
                .prop_map(|(e, id, mid, msg, phone)| format!(
                    r#"{{"event":{e},"id":{id},"payload":{{"messageId":{mid},"message":{msg},"phoneNumber":{phone}}}}}"#
                )),
            (json_fragment(), json_fragment())
                .prop_map(|(e, p)| format!(r#"{{"event":{e},"payload":{p}}}"#)),
        ]
    }

    proptest! {
        #[test]
        fn android_never_panics_on_arbitrary_input(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            sig in "[ -~]{0,80}",
            ts in "[ -~]{0,24}",
            now in any::<i64>(),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&sig) { headers.insert(ANDROID_SIGNATURE_HEADER, v); }
            if let Ok(v) = HeaderValue::from_str(&ts) { headers.insert(ANDROID_TIMESTAMP_HEADER, v); }
            let _ = verify_android(&android_cfg("s3cret"), &headers, &body, now);
        }

        #[test]
        fn android_never_panics_on_signed_bodies(
            body in android_body(),
            skew in -1000i64..1000,
            now in any::<i64>(),
        ) {
            let ts = (now.div_euclid(1000)).saturating_add(skew).to_string();
            let sig = android_sign("s3cret", body.as_bytes(), &ts);
            let result = verify_android(&android_cfg("s3cret"), &android_headers(&sig, &ts), body.as_bytes(), now);
            prop_assert_ne!(result.clone(), Err(HookError::Unauthorized));
            if let Ok(messages) = result {
                prop_assert!(messages.len() <= 1);
            }
        }

        #[test]
        fn twilio_never_panics_on_arbitrary_input(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            sig in "[ -~]{0,80}",
            url in ".{0,60}",
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&sig) { headers.insert(TWILIO_SIGNATURE_HEADER, v); }
            let _ = verify_twilio(&twilio_cfg("tok"), &url, &headers, &body);
            let _ = twilio_url_variants(&url);
        }

        #[test]
        fn twilio_never_panics_on_signed_bodies(
            body in prop_oneof![
                "[A-Za-z0-9%=&+._~-]{0,200}",
                ".{0,200}",
                proptest::collection::vec(
                    (prop_oneof![Just("From".to_string()), Just("MessageSid".to_string()),
                        Just("Body".to_string()), Just("MediaUrl0".to_string()),
                        Just("MediaContentType0".to_string()), Just("MessageStatus".to_string()),
                        ".{0,12}"], ".{0,30}"),
                    0..12,
                ).prop_map(|pairs| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()),
            ],
            url in prop_oneof![Just(HOOK_URL.to_string()), ".{0,60}"],
        ) {
            let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"tok");
            let sig = base64::engine::general_purpose::STANDARD
                .encode(hmac::sign(&key, twilio_signing_string(&url, &params).as_bytes()).as_ref());
            let result = verify_twilio(&twilio_cfg("tok"), &url, &twilio_headers(&sig), body.as_bytes());
            prop_assert_ne!(result.clone(), Err(HookError::Unauthorized));
            if let Ok(messages) = result {
                prop_assert!(messages.len() <= 1);
            }
        }

        #[test]
        fn segments_never_panic_and_fit_their_parts(text in ".{0,400}") {
            let s = segments(&text);
            prop_assert!(s.segments >= 1);
            let per = if s.ucs2 { 67 } else { 153 };
            prop_assert!(s.segments <= 1 || s.chars <= s.segments * per);
            let prepared = prepare_text(&text, true);
            let _ = segments(&prepared);
        }
    }

    #[test]
    fn delivery_reports_name_the_delivered_message_only() {
        let twilio = |body: &str| delivered_message(Transport::Twilio, body.as_bytes());
        assert_eq!(
            twilio("MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1").as_deref(),
            Some("SM1")
        );
        assert_eq!(twilio("MessageSid=SM1&MessageStatus=sent"), None);
        assert_eq!(twilio("MessageStatus=delivered"), None);
        // An incoming message is never a report, whatever it says.
        assert_eq!(
            twilio("MessageSid=SM1&MessageStatus=delivered&Body=hi"),
            None
        );
        let android = |body: &str| delivered_message(Transport::Android, body.as_bytes());
        assert_eq!(
            android(r#"{"event":"sms:delivered","id":"e","payload":{"messageId":"m1","phoneNumber":"+1"}}"#)
                .as_deref(),
            Some("m1")
        );
        assert_eq!(
            android(r#"{"event":"sms:failed","payload":{"messageId":"m1"}}"#),
            None
        );
        assert_eq!(android(r#"{"event":"sms:delivered","payload":{}}"#), None);
        assert_eq!(android("not json"), None);
        assert_eq!(delivered_message(Transport::Zalo, b"{}"), None);
    }
}
