//! The Android SMS Gateway app (sms-gate.app, capcom6/android-sms-gateway): its signed
//! webhooks (received messages, delivery reports) in, its 3rd-party API out.

use super::header_str;
use super::text::prepare_text;
use crate::channels::{http, rate, HookError, Inbound, InboundKind, Outgoing, PhotoRef, Provider};
use crate::channels::{SendOutcome, Transport};
use crate::config::AndroidSmsConfig;
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;
use ring::hmac;
use serde_json::Value;
use std::sync::Arc;

/// The header the Android gateway puts its hex HMAC-SHA256 in.
pub const ANDROID_SIGNATURE_HEADER: &str = "x-signature";
/// The header with the Unix time (seconds) the Android gateway signed with.
pub const ANDROID_TIMESTAMP_HEADER: &str = "x-timestamp";

/// The replay window when the configuration leaves it at zero or below.
const DEFAULT_MAX_AGE_SECONDS: i64 = 300;
/// The widest replay window, whatever the configuration: a day, well inside the 48 hours
/// the inbox remembers message ids, so a replay is either stale or a recognised retry.
const MAX_MAX_AGE_SECONDS: i64 = 24 * 3600;

/// Verifies and parses one Android SMS Gateway webhook.
///
/// `X-Signature` must be hex(HMAC-SHA256(webhook secret, raw body + `X-Timestamp`
/// value)), compared in constant time; a missing or wrong one (or no secret configured)
/// is [`HookError::Unauthorized`]. A correctly signed request whose `X-Timestamp` (Unix
/// seconds) is more than `max_age_seconds` (300 when unset, a day at most) away from
/// `now_ms` either way is [`HookError::Stale`], so a captured request cannot be replayed
/// later (within the window, the inbox knows its id).
///
/// `sms:received` becomes one [`Inbound`] message from `payload.phoneNumber`, and so does
/// `mms:received`, with its subject (if any) as the text and one
/// [`PhotoRef::Withheld`] photo: the gateway sends an MMS's metadata, never its content,
/// so the tipster is told to send photos another way and an open tip notes the gap. Its
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
        cfg.max_age_seconds.min(MAX_MAX_AGE_SECONDS)
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
    let mms = kind == "mms:received";
    if kind != "sms:received" && !mms {
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
    // An MMS notice has no text of its own, at most a subject, and never the content.
    let text = if mms {
        payload.get("subject").and_then(Value::as_str).unwrap_or("")
    } else {
        payload
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("missing payload.message"))?
    };
    let id_of = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let provider_id = id_of(event.get("id")).or_else(|| id_of(payload.get("messageId")));
    Ok(vec![Inbound {
        transport: Transport::ANDROID,
        sender: sender.to_string(),
        provider_id,
        to: None,
        kind: InboundKind::Message {
            text: text.to_string(),
            photos: if mms {
                vec![PhotoRef::Withheld]
            } else {
                vec![]
            },
            location: None,
        },
    }])
}

/// The message a verified `sms:delivered` event says reached the handset: its
/// `payload.messageId` (the id we gave the message); `None` for other events.
pub fn delivered_message(body: &[u8]) -> Option<String> {
    let event: Value = serde_json::from_slice(body).ok()?;
    if event.get("event").and_then(Value::as_str) != Some("sms:delivered") {
        return None;
    }
    super::report_id(
        event
            .get("payload")?
            .get("messageId")?
            .as_str()?
            .to_string(),
    )
}

/// Sends SMS through the Android SMS Gateway's 3rd-party API (cloud or private server).
/// Cheap to clone.
#[derive(Clone)]
pub struct AndroidClient {
    http: reqwest::Client,
    messages_url: Arc<str>,
    username: Arc<str>,
    password: Arc<str>,
    /// Send without diacritics (`sms.strip_diacritics`).
    strip_diacritics: bool,
    rate: Option<u32>,
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
            http: super::http_client(),
            messages_url: format!("{base}/3rdparty/v1/messages").into(),
            username: cfg.username.as_str().into(),
            password: cfg.password.as_str().into(),
            strip_diacritics: false,
            rate: rate(cfg.rate_per_second),
        }
    }

    /// Sends texts without diacritics (see [`prepare_text`]).
    pub fn with_strip_diacritics(mut self, strip: bool) -> AndroidClient {
        self.strip_diacritics = strip;
        self
    }

    /// Enqueues one SMS on the gateway, in the current request shape
    /// (`{"textMessage":{"text":…},"phoneNumbers":[…]}`), with our own message `id` when
    /// given: the gateway keeps one message per id, so sending again after a crash (when
    /// we cannot know whether the first attempt was taken) does not text the person
    /// twice. Any 2xx (the gateway answers 202) is [`SendOutcome::Accepted`] with the
    /// gateway's message id; 429 is [`SendOutcome::RetryAfter`]; 5xx, other statuses and
    /// network failures are [`SendOutcome::Transient`]; any 4xx is
    /// [`SendOutcome::Rejected`] with its status only. The gateway has no opt-out of its
    /// own, so it never returns [`SendOutcome::OptedOut`].
    async fn send_text(&self, to: &str, text: &str, id: Option<&str>) -> SendOutcome {
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
            Err(e) => {
                return SendOutcome::Transient(format!(
                    "android gateway: {}",
                    http::network_failure(&e)
                ))
            }
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
            return SendOutcome::RetryAfter(http::retry_after(response.headers()));
        }
        let reason = format!("android gateway: HTTP {}", status.as_u16());
        if status.is_client_error() {
            SendOutcome::Rejected(reason)
        } else {
            SendOutcome::Transient(reason)
        }
    }
}

impl Provider for AndroidClient {
    fn transport(&self) -> Transport {
        Transport::ANDROID
    }

    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let text = prepare_text(&message.text, self.strip_diacritics);
            self.send_text(&message.to, &text, message.idempotency_key.as_deref())
                .await
        })
    }

    fn rate_per_second(&self) -> Option<u32> {
        self.rate
    }

    fn is_sms(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    const NOW_MS: i64 = 1_750_000_000_000;

    fn android_cfg(secret: &str) -> AndroidSmsConfig {
        AndroidSmsConfig {
            webhook_secret: secret.into(),
            ..AndroidSmsConfig::default()
        }
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

    #[test]
    fn android_received_becomes_an_inbound_message() {
        let got = android_verify_signed(RECEIVED, NOW_MS / 1000).unwrap();
        assert_eq!(
            got,
            vec![Inbound {
                transport: Transport::ANDROID,
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
    fn android_mms_notice_is_a_message_whose_photo_is_withheld() {
        // The documented `mms:received` payload: metadata, no content.
        let body = r#"{"deviceId":"ffffffffceb0b1db0000018e937c815b","event":"mms:received","id":"Ey6ECgOkVVFjz3CL48B8C","payload":{"messageId":"mms_12345abcde","phoneNumber":"+84912345678","simNumber":1,"transactionId":"T1234567890ABC","subject":"Photo attachment","size":125684,"contentClass":"IMAGE_BASIC","receivedAt":"2025-08-23T05:15:30.000+07:00"},"webhookId":"wh2"}"#;
        let got = android_verify_signed(body, NOW_MS / 1000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sender, "+84912345678");
        assert_eq!(got[0].provider_id.as_deref(), Some("Ey6ECgOkVVFjz3CL48B8C"));
        assert_eq!(
            got[0].kind,
            InboundKind::Message {
                text: "Photo attachment".into(),
                photos: vec![PhotoRef::Withheld],
                location: None,
            }
        );
        // No subject: no text; no sender: refused like an SMS.
        let body = r#"{"event":"mms:received","id":"m2","payload":{"phoneNumber":"+84912345678"}}"#;
        let got = android_verify_signed(body, NOW_MS / 1000).unwrap();
        assert!(matches!(&got[0].kind, InboundKind::Message { text, .. } if text.is_empty()));
        let body = r#"{"event":"mms:received","id":"m3","payload":{}}"#;
        assert!(matches!(
            android_verify_signed(body, NOW_MS / 1000),
            Err(HookError::Malformed(_))
        ));
    }

    #[test]
    fn android_other_events_are_acknowledged_and_ignored() {
        for body in [
            r#"{"event":"sms:sent","id":"1","payload":{"messageId":"m","phoneNumber":"+1","sentAt":"2024-01-01T00:00:00Z"}}"#,
            r#"{"event":"sms:delivered","id":"2","payload":{"messageId":"m","phoneNumber":"+1"}}"#,
            r#"{"event":"sms:failed","id":"3","payload":{"messageId":"m","reason":"Invalid number"}}"#,
            r#"{"event":"system:ping","id":"4","payload":{"health":{"status":"pass"}}}"#,
            r#"{"event":"system:ping","id":"5"}"#,
            r#"{"event":"mms:downloaded","id":"6","payload":{}}"#,
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
    fn android_window_is_at_most_a_day_whatever_the_configuration() {
        // A window wider than the inbox remembers ids would let a replay through.
        let cfg = AndroidSmsConfig {
            max_age_seconds: 30 * 24 * 3600,
            ..android_cfg("s3cret")
        };
        let now = NOW_MS / 1000;
        let verify = |ts: i64| {
            let ts = ts.to_string();
            let sig = android_sign("s3cret", RECEIVED.as_bytes(), &ts);
            verify_android(
                &cfg,
                &android_headers(&sig, &ts),
                RECEIVED.as_bytes(),
                NOW_MS,
            )
        };
        assert!(verify(now - 24 * 3600).is_ok());
        assert_eq!(verify(now - 24 * 3600 - 1), Err(HookError::Stale));
        assert_eq!(verify(now - 3 * 24 * 3600), Err(HookError::Stale));
    }

    #[test]
    fn delivery_reports_name_the_delivered_message_only() {
        let android = |body: &str| delivered_message(body.as_bytes());
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
    }
}
