//! A fake Twilio on loopback: the Messages API (`POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP basic auth with
//! the account SID and auth token) answering as Twilio documents it; the media of
//! incoming MMS (`GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{Sid}`,
//! basic auth enforced, answered with a redirect to the file's temporary location, as
//! Twilio does); plus [`sign`] to sign incoming-message webhooks the way Twilio does. The signing here is written
//! independently of `tinbao::channels::sms`, so a test of one checks the other.

#![allow(dead_code)]

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use ring::hmac;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How the next request fails, as Twilio would fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 500 Internal Server Error (Twilio error 20500).
    Http500,
    /// 429 Too Many Requests (Twilio error 20429) with a `Retry-After` header.
    Http429 { retry_after_secs: u64 },
    /// 400, Twilio error 21610: the recipient texted STOP.
    Unsubscribed,
}

/// What the fake answers for one MMS media file.
#[derive(Debug, Clone)]
pub enum Media {
    /// The file, with its content type.
    File(Vec<u8>, &'static str),
    /// 404, Twilio error 20404 (deleted, or never there).
    NotFound,
    /// Never answers (until the client gives up).
    Stall,
}

#[derive(Default)]
struct Inner {
    account_sid: String,
    auth_token: String,
    /// Media files by media SID.
    media: Mutex<std::collections::HashMap<String, Media>>,
    /// Media requests received, and how many carried the account's credentials.
    media_requests: AtomicUsize,
    media_authorized: AtomicUsize,
    sent: Mutex<Vec<(String, String)>>,
    /// (message SID, StatusCallback URL) of every accepted message that asked for one.
    callbacks: Mutex<Vec<(String, String)>>,
    failures: Mutex<VecDeque<Failure>>,
    requests: AtomicUsize,
    notify: Notify,
}

/// A running fake Twilio; stops when dropped.
pub struct FakeTwilio {
    /// Base URL to put in `sms.twilio.api_url`, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTwilio {
    /// Starts the fake on 127.0.0.1 (random port) for one account.
    pub async fn start(account_sid: &str, auth_token: &str) -> FakeTwilio {
        let inner = Arc::new(Inner {
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            ..Inner::default()
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{media}",
                get(media_resource),
            )
            .route("/cdn/{account}/{media}", get(media_file))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Twilio");
        let addr = listener.local_addr().expect("fake Twilio address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTwilio {
            base: format!("http://{addr}"),
            inner,
            server,
        }
    }

    /// A `TwilioConfig` that sends through this fake.
    pub fn config(&self, from: &str) -> tinbao::config::TwilioConfig {
        tinbao::config::TwilioConfig {
            enabled: true,
            account_sid: self.inner.account_sid.clone(),
            auth_token: self.inner.auth_token.clone(),
            from: from.to_string(),
            api_url: self.base.clone(),
            ..Default::default()
        }
    }

    /// Keeps one media file of an incoming MMS; returns the `MediaUrl` Twilio would post.
    pub fn add_media(&self, message_sid: &str, media: Media) -> String {
        let mut all = self.inner.media.lock().unwrap();
        let media_sid = format!("ME{:032x}", all.len() + 1);
        all.insert(media_sid.clone(), media);
        format!(
            "{}/2010-04-01/Accounts/{}/Messages/{message_sid}/Media/{media_sid}",
            self.base, self.inner.account_sid
        )
    }

    /// Media requests received, and how many of them carried the account's credentials.
    pub fn media_requests(&self) -> (usize, usize) {
        (
            self.inner.media_requests.load(Ordering::SeqCst),
            self.inner.media_authorized.load(Ordering::SeqCst),
        )
    }

    /// Makes the next `n` requests fail with `kind` (after authentication passes).
    pub fn fail_next(&self, n: usize, kind: Failure) {
        let mut failures = self.inner.failures.lock().unwrap();
        failures.extend(std::iter::repeat_n(kind, n));
    }

    /// (message SID, StatusCallback URL) of the accepted messages that asked for a
    /// delivery report.
    pub fn status_callbacks(&self) -> Vec<(String, String)> {
        self.inner.callbacks.lock().unwrap().clone()
    }

    /// Messages accepted so far, as (To, Body), in order.
    pub fn sent(&self) -> Vec<(String, String)> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// Requests received so far, failed ones included.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
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
                    "fake Twilio: expected {n} messages within {timeout:?}, got {}",
                    self.sent().len()
                );
            }
        }
    }
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// Whether a request carries the account's basic auth.
fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", inner.account_sid, inner.auth_token))
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
}

/// The Media resource: with the account's credentials (Twilio enforces basic auth on
/// media URLs), a 307 to the file's temporary location, as Twilio answers.
async fn media_resource(
    State(inner): State<Arc<Inner>>,
    Path((sid, _message, media)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    inner.media_requests.fetch_add(1, Ordering::SeqCst);
    if !authorized(&inner, &headers) || sid != inner.account_sid {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    inner.media_authorized.fetch_add(1, Ordering::SeqCst);
    let known = matches!(
        inner.media.lock().unwrap().get(&media),
        Some(Media::File(..) | Media::Stall)
    );
    if !known {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("/cdn/{sid}/{media}"))],
    )
        .into_response()
}

/// The file at its temporary location.
async fn media_file(
    State(inner): State<Arc<Inner>>,
    Path((_account, media)): Path<(String, String)>,
) -> Response {
    let found = inner.media.lock().unwrap().get(&media).cloned();
    match found {
        Some(Media::File(bytes, content_type)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Some(Media::Stall) => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(Media::NotFound) | None => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

async fn create_message(
    State(inner): State<Arc<Inner>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    if !authorized(&inner, &headers) || sid != inner.account_sid {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let failure = inner.failures.lock().unwrap().pop_front();
    match failure {
        Some(Failure::Http500) => {
            return twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            )
        }
        Some(Failure::Http429 { retry_after_secs }) => {
            let mut response =
                twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            return response;
        }
        Some(Failure::Unsubscribed) => {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21610,
                "Attempt to send to unsubscribed recipient",
            )
        }
        None => {}
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = get("To") else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    let Some(from) = get("From") else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    };
    let Some(text) = get("Body") else {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    let message_sid = {
        let mut sent = inner.sent.lock().unwrap();
        sent.push((to.clone(), text.clone()));
        format!("SM{:032x}", sent.len())
    };
    if let Some(url) = get("StatusCallback") {
        inner
            .callbacks
            .lock()
            .unwrap()
            .push((message_sid.clone(), url));
    }
    inner.notify.notify_waiters();
    let body = serde_json::json!({
        "account_sid": inner.account_sid,
        "api_version": "2010-04-01",
        "body": text,
        "direction": "outbound-api",
        "from": from,
        "num_media": "0",
        "num_segments": "1",
        "sid": message_sid,
        "status": "queued",
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{message_sid}.json", inner.account_sid),
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The `X-Twilio-Signature` Twilio would send: base64(HMAC-SHA1(auth token, url + each
/// parameter's name and value, sorted by name, then value)).
pub fn sign(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, data.as_bytes()))
}

/// The parameters of an incoming SMS webhook, as Twilio posts them (no media).
pub fn incoming_sms<'a>(
    account_sid: &'a str,
    message_sid: &'a str,
    from: &'a str,
    to: &'a str,
    body: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ToCountry", "VN"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", "0"),
        ("SmsSid", message_sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", to),
        ("NumSegments", "1"),
        ("MessageSid", message_sid),
        ("AccountSid", account_sid),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
}

/// The parameters of an incoming MMS webhook: [`incoming_sms`] plus `NumMedia` and each
/// medium's `MediaUrl{N}` and `MediaContentType{N}`.
pub fn incoming_mms(
    account_sid: &str,
    message_sid: &str,
    from: &str,
    to: &str,
    body: &str,
    media: &[(String, &str)],
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = incoming_sms(account_sid, message_sid, from, to, body)
        .into_iter()
        .filter(|(k, _)| *k != "NumMedia")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.push(("NumMedia".into(), media.len().to_string()));
    for (i, (url, content_type)) in media.iter().enumerate() {
        params.push((format!("MediaUrl{i}"), url.clone()));
        params.push((format!("MediaContentType{i}"), content_type.to_string()));
    }
    params
}

/// The form-encoded body for webhook parameters.
pub fn form_body(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinbao::channels::sms::{verify_twilio, TwilioClient};
    use tinbao::channels::{HookError, InboundKind, Outgoing, Provider, SendOutcome};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "fake-twilio-token";

    #[tokio::test]
    async fn twilio_client_sends_retries_and_maps_failures() {
        let fake = FakeTwilio::start(SID, TOKEN).await;
        let client = TwilioClient::new(&fake.config("+84900000001"));

        // Accepted, with the SID Twilio returned.
        let outcome = client
            .send(&Outgoing::new("+84912345678", "Biên nhận 1234"))
            .await;
        assert!(
            matches!(&outcome, SendOutcome::Accepted { provider_id: Some(id) } if id.starts_with("SM")),
            "{outcome:?}"
        );

        // 500, then the retry goes through.
        fake.fail_next(1, Failure::Http500);
        assert!(matches!(
            client.send(&Outgoing::new("+84912345678", "second")).await,
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            client.send(&Outgoing::new("+84912345678", "second")).await,
            SendOutcome::Accepted { .. }
        ));

        // 429 with Retry-After.
        fake.fail_next(
            1,
            Failure::Http429 {
                retry_after_secs: 7,
            },
        );
        assert_eq!(
            client.send(&Outgoing::new("+84912345678", "third")).await,
            SendOutcome::RetryAfter(Duration::from_secs(7))
        );

        // STOP: an opt-out whose reason names no number.
        fake.fail_next(1, Failure::Unsubscribed);
        let outcome = client.send(&Outgoing::new("+84912345678", "fourth")).await;
        match &outcome {
            SendOutcome::OptedOut(reason) => assert!(!reason.contains("84912345678")),
            other => panic!("expected OptedOut, got {other:?}"),
        }

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
    async fn twilio_client_with_wrong_token_is_rejected_by_code() {
        let fake = FakeTwilio::start(SID, TOKEN).await;
        let mut cfg = fake.config("+84900000001");
        cfg.auth_token = "wrong".into();
        let outcome = TwilioClient::new(&cfg)
            .send(&Outgoing::new("+84912345678", "x"))
            .await;
        assert_eq!(
            outcome,
            SendOutcome::Rejected("twilio: error 20003 (HTTP 401)".into())
        );
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn twilio_client_reports_an_unreachable_gateway_as_transient() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = tinbao::config::TwilioConfig {
            account_sid: SID.into(),
            auth_token: TOKEN.into(),
            from: "+84900000001".into(),
            api_url: format!("http://127.0.0.1:{port}"),
            ..Default::default()
        };
        let outcome = TwilioClient::new(&cfg)
            .send(&Outgoing::new("+84912345678", "x"))
            .await;
        match outcome {
            SendOutcome::Transient(reason) => assert!(!reason.contains("84912345678")),
            other => panic!("expected Transient, got {other:?}"),
        }
    }

    #[test]
    fn webhooks_signed_here_pass_tinbaos_verification() {
        let url = "https://tinbao.example/hooks/sms/twilio";
        let params = incoming_sms(SID, "SMabc", "+84912345678", "+84900000001", "Có người bán");
        let signature = sign(TOKEN, url, &params);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("X-Twilio-Signature", signature.parse().unwrap());
        let cfg = tinbao::config::TwilioConfig {
            auth_token: TOKEN.into(),
            ..Default::default()
        };
        let inbound = verify_twilio(&cfg, url, &headers, form_body(&params).as_bytes()).unwrap();
        assert_eq!(inbound.len(), 1);
        assert_eq!(inbound[0].sender, "+84912345678");
        assert_eq!(inbound[0].provider_id.as_deref(), Some("SMabc"));
        assert_eq!(inbound[0].to.as_deref(), Some("+84900000001"));
        assert!(
            matches!(&inbound[0].kind, InboundKind::Message { text, .. } if text == "Có người bán")
        );
        // Signed for another URL: refused.
        let other = sign(TOKEN, "https://other.example/hook", &params);
        headers.insert("X-Twilio-Signature", other.parse().unwrap());
        assert_eq!(
            verify_twilio(&cfg, url, &headers, form_body(&params).as_bytes()),
            Err(HookError::Unauthorized)
        );
    }
}
