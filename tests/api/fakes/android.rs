//! A fake Android SMS Gateway (sms-gate.app) on loopback: the 3rd-party send API
//! (`POST /3rdparty/v1/messages`, JSON, HTTP basic auth) answering 202 with a message id
//! as the cloud server does, plus [`sign`] and [`sms_received`] to build signed webhooks
//! the way the app sends them. The signing here is written independently of
//! `tinbao::channels::sms`, so a test of one checks the other.

#![allow(dead_code)]

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use ring::hmac;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How the next request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 500 Internal Server Error.
    Http500,
    /// 429 Too Many Requests with a `Retry-After` header.
    Http429 { retry_after_secs: u64 },
    /// 400 Bad Request, as for a number the gateway cannot parse. (The gateway has no
    /// unsubscribe of its own, so there is no opt-out to fake.)
    Http400,
}

#[derive(Default)]
struct Inner {
    username: String,
    password: String,
    sent: Mutex<Vec<(String, String)>>,
    failures: Mutex<VecDeque<Failure>>,
    requests: AtomicUsize,
    legacy_requests: AtomicUsize,
    /// Message ids given by the client, and the message each names.
    ids: Mutex<std::collections::HashMap<String, String>>,
    notify: Notify,
}

/// A running fake gateway; stops when dropped.
pub struct FakeAndroid {
    /// Base URL to put in `sms.android.api_url`, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAndroid {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAndroid {
    /// Starts the fake on 127.0.0.1 (random port) with these API credentials.
    pub async fn start(username: &str, password: &str) -> FakeAndroid {
        let inner = Arc::new(Inner {
            username: username.to_string(),
            password: password.to_string(),
            ..Inner::default()
        });
        let app = Router::new()
            .route("/3rdparty/v1/messages", post(send_message))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Android gateway");
        let addr = listener.local_addr().expect("fake Android gateway address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAndroid {
            base: format!("http://{addr}"),
            inner,
            server,
        }
    }

    /// An `AndroidSmsConfig` that sends through this fake and verifies webhooks signed
    /// with `webhook_secret`.
    pub fn config(&self, webhook_secret: &str) -> tinbao::config::AndroidSmsConfig {
        tinbao::config::AndroidSmsConfig {
            enabled: true,
            api_url: self.base.clone(),
            username: self.inner.username.clone(),
            password: self.inner.password.clone(),
            webhook_secret: webhook_secret.to_string(),
            ..Default::default()
        }
    }

    /// Makes the next `n` requests fail with `kind` (after authentication passes).
    pub fn fail_next(&self, n: usize, kind: Failure) {
        let mut failures = self.inner.failures.lock().unwrap();
        failures.extend(std::iter::repeat_n(kind, n));
    }

    /// The message ids clients gave, one per accepted message.
    pub fn message_ids(&self) -> Vec<String> {
        self.inner.ids.lock().unwrap().keys().cloned().collect()
    }

    /// Messages accepted so far, as (phone number, text), one per recipient, in order.
    pub fn sent(&self) -> Vec<(String, String)> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// Requests received so far, failed ones included.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Accepted requests that used the deprecated top-level `message` field.
    pub fn legacy_requests(&self) -> usize {
        self.inner.legacy_requests.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages were accepted and returns them; panics after
    /// `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an arrival in between still wakes us.
            let notified = self.inner.notify.notified();
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "fake Android gateway: expected {n} messages within {timeout:?}, got {}",
                    self.sent().len()
                );
            }
        }
    }
}

/// The server's error body.
fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "message": message }))).into_response()
}

async fn send_message(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", inner.username, inner.password))
    );
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str());
    if !authorized {
        return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let failure = inner.failures.lock().unwrap().pop_front();
    match failure {
        Some(Failure::Http500) => {
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Some(Failure::Http429 { retry_after_secs }) => {
            let mut response = gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return response;
        }
        Some(Failure::Http400) => {
            return gateway_error(StatusCode::BAD_REQUEST, "invalid phone number")
        }
        None => {}
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return gateway_error(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let current = request
        .get("textMessage")
        .and_then(|m| m.get("text"))
        .and_then(Value::as_str);
    let legacy = request.get("message").and_then(Value::as_str);
    // The documented rule: exactly one of textMessage, dataMessage or message.
    let text = match (current, legacy, request.get("dataMessage")) {
        (Some(t), None, None) => t.to_string(),
        (None, Some(t), None) => {
            inner.legacy_requests.fetch_add(1, Ordering::SeqCst);
            t.to_string()
        }
        _ => return gateway_error(StatusCode::BAD_REQUEST, "exactly one message is required"),
    };
    let numbers: Vec<String> = request
        .get("phoneNumbers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if numbers.is_empty() {
        return gateway_error(StatusCode::BAD_REQUEST, "phoneNumbers is required");
    }
    // The documented idempotency: a message id the gateway already has is the same
    // message, not a new one.
    let given = request
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = {
        let mut sent = inner.sent.lock().unwrap();
        let mut ids = inner.ids.lock().unwrap();
        match given.as_ref().and_then(|g| ids.get(g)) {
            Some(existing) => existing.clone(),
            None => {
                sent.extend(numbers.iter().map(|n| (n.clone(), text.clone())));
                let id = given
                    .clone()
                    .unwrap_or_else(|| format!("fake{:017}", sent.len()));
                if let Some(g) = given {
                    ids.insert(g, id.clone());
                }
                id
            }
        }
    };
    inner.notify.notify_waiters();
    let recipients: Vec<Value> = numbers
        .iter()
        .map(|n| serde_json::json!({ "phoneNumber": n, "state": "Pending" }))
        .collect();
    let body = serde_json::json!({
        "id": id,
        "state": "Pending",
        "isHashed": false,
        "isEncrypted": false,
        "recipients": recipients,
    });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The `X-Signature` the app would send: hex(HMAC-SHA256(secret, body + timestamp)).
pub fn sign(secret: &str, body: &str, timestamp: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(body.as_bytes());
    ctx.update(timestamp.as_bytes());
    hex::encode(ctx.sign())
}

/// The signed headers for a webhook body sent at `timestamp` (Unix seconds).
pub fn signed_headers(secret: &str, body: &str, timestamp: i64) -> axum::http::HeaderMap {
    let ts = timestamp.to_string();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("X-Signature", sign(secret, body, &ts).parse().unwrap());
    headers.insert("X-Timestamp", ts.parse().unwrap());
    headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    headers
}

/// An `sms:received` webhook body in the documented shape.
pub fn sms_received(event_id: &str, phone_number: &str, message: &str) -> String {
    serde_json::json!({
        "deviceId": "ffffffffceb0b1db0000018e937c815b",
        "event": "sms:received",
        "id": event_id,
        "payload": {
            "messageId": format!("msg-{event_id}"),
            "message": message,
            "phoneNumber": phone_number,
            "simNumber": 1,
            "receivedAt": "2026-06-22T15:46:11.000+07:00",
        },
        "webhookId": "tinbao-sms-received",
    })
    .to_string()
}

/// An `mms:received` webhook body, as documented: the MMS's metadata, never its content.
pub fn mms_received(event_id: &str, phone_number: &str) -> String {
    serde_json::json!({
        "deviceId": "ffffffffceb0b1db0000018e937c815b",
        "event": "mms:received",
        "id": event_id,
        "payload": {
            "messageId": format!("mms-{event_id}"),
            "phoneNumber": phone_number,
            "simNumber": 1,
            "transactionId": "T1234567890ABC",
            "size": 125684,
            "contentClass": "IMAGE_BASIC",
            "receivedAt": "2026-06-22T15:46:11.000+07:00",
        },
        "webhookId": "tinbao-mms-received",
    })
    .to_string()
}

/// An `sms:delivered` webhook body, as the gateway posts when the handset confirms a
/// message (`message_id` is the id the message was sent with).
pub fn sms_delivered(event_id: &str, message_id: &str, phone_number: &str) -> String {
    serde_json::json!({
        "deviceId": "ffffffffceb0b1db0000018e937c815b",
        "event": "sms:delivered",
        "id": event_id,
        "payload": {
            "messageId": message_id,
            "phoneNumber": phone_number,
            "simNumber": 1,
            "deliveredAt": "2026-06-26T19:00:05.000+07:00",
        },
        "webhookId": "tinbao-sms-delivered",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinbao::channels::sms::{verify_android, AndroidClient};
    use tinbao::channels::{HookError, InboundKind, Outgoing, Provider, SendOutcome};

    const USER: &str = "gateway-user";
    const PASSWORD: &str = "gateway-password";
    const SECRET: &str = "webhook-signing-key";

    #[tokio::test]
    async fn android_client_sends_retries_and_maps_failures() {
        let fake = FakeAndroid::start(USER, PASSWORD).await;
        let client = AndroidClient::new(&fake.config(SECRET));

        let outcome = client
            .send(&Outgoing::new("+84912345678", "Biên nhận 1234"))
            .await;
        assert!(
            matches!(&outcome, SendOutcome::Accepted { provider_id: Some(id) } if id.starts_with("fake")),
            "{outcome:?}"
        );
        assert_eq!(
            fake.legacy_requests(),
            0,
            "the current request shape is used"
        );

        fake.fail_next(1, Failure::Http500);
        assert!(matches!(
            client.send(&Outgoing::new("+84912345678", "second")).await,
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            client.send(&Outgoing::new("+84912345678", "second")).await,
            SendOutcome::Accepted { .. }
        ));

        fake.fail_next(
            1,
            Failure::Http429 {
                retry_after_secs: 3,
            },
        );
        assert_eq!(
            client.send(&Outgoing::new("+84912345678", "third")).await,
            SendOutcome::RetryAfter(Duration::from_secs(3))
        );

        fake.fail_next(1, Failure::Http400);
        assert_eq!(
            client.send(&Outgoing::new("+84912345678", "fourth")).await,
            SendOutcome::Rejected("android gateway: HTTP 400".into())
        );

        let sent = fake.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(
            sent,
            vec![
                ("+84912345678".to_string(), "Biên nhận 1234".to_string()),
                ("+84912345678".to_string(), "second".to_string()),
            ]
        );
        assert_eq!(fake.requests(), 5);
    }

    #[tokio::test]
    async fn android_client_sends_one_message_per_idempotency_key_and_strips_when_told() {
        let fake = FakeAndroid::start(USER, PASSWORD).await;
        let client = AndroidClient::new(&fake.config(SECRET)).with_strip_diacritics(true);
        let message =
            Outgoing::new("+84912345678", "Biên nhận “1234”").with_idempotency_key("row-key-1");
        for _ in 0..2 {
            assert_eq!(
                client.send(&message).await,
                SendOutcome::Accepted {
                    provider_id: Some("row-key-1".into())
                }
            );
        }
        assert_eq!(
            fake.sent(),
            vec![("+84912345678".to_string(), "Bien nhan \"1234\"".to_string())],
            "sent once, as GSM text"
        );
        assert_eq!(fake.message_ids(), vec!["row-key-1".to_string()]);
        assert!(client.is_sms() && client.rate_per_second().is_some());
    }

    #[tokio::test]
    async fn android_client_with_wrong_password_is_rejected() {
        let fake = FakeAndroid::start(USER, PASSWORD).await;
        let mut cfg = fake.config(SECRET);
        cfg.password = "wrong".into();
        assert_eq!(
            AndroidClient::new(&cfg)
                .send(&Outgoing::new("+84912345678", "x"))
                .await,
            SendOutcome::Rejected("android gateway: HTTP 401".into())
        );
        assert!(fake.sent().is_empty());
    }

    #[test]
    fn webhooks_signed_here_pass_tinbaos_verification() {
        let cfg = tinbao::config::AndroidSmsConfig {
            webhook_secret: SECRET.into(),
            ..Default::default()
        };
        let now_ms = 1_780_000_000_000;
        let body = sms_received("evt1", "+84912345678", "Có người bán");
        let headers = signed_headers(SECRET, &body, now_ms / 1000);
        let inbound = verify_android(&cfg, &headers, body.as_bytes(), now_ms).unwrap();
        assert_eq!(inbound.len(), 1);
        assert_eq!(inbound[0].sender, "+84912345678");
        assert_eq!(inbound[0].provider_id.as_deref(), Some("evt1"));
        assert!(
            matches!(&inbound[0].kind, InboundKind::Message { text, .. } if text == "Có người bán")
        );
        // Ten minutes late: a replay.
        let old = signed_headers(SECRET, &body, now_ms / 1000 - 600);
        assert_eq!(
            verify_android(&cfg, &old, body.as_bytes(), now_ms),
            Err(HookError::Stale)
        );
        // Another key: refused.
        let forged = signed_headers("guess", &body, now_ms / 1000);
        assert_eq!(
            verify_android(&cfg, &forged, body.as_bytes(), now_ms),
            Err(HookError::Unauthorized)
        );
    }
}
