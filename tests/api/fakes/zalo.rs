//! A fake Zalo on loopback: the OA message API (`POST /v3.0/oa/message/cs`) and the OAuth
//! token refresh (`POST /v4/oa/access_token`) on one base URL, plus helpers that build and
//! sign webhook events the way Zalo does. The signature is computed here independently
//! of `tinbao::channels::zalo`, so a mistake on one side shows in the tests.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tinbao::config::ZaloConfig;

/// The app id the fake expects and the helpers sign with.
pub const APP_ID: &str = "3608465249409039";
/// The OA secret key webhook events are signed with.
pub const OA_SECRET_KEY: &str = "fake-oa-secret";
/// The app secret key the token refresh must carry in `secret_key`.
pub const APP_SECRET_KEY: &str = "fake-app-secret";
/// The OA's own id (`recipient.id` of user messages).
pub const OA_ID: &str = "388613280878808645";
/// The first access and refresh tokens, as in a fresh configuration.
pub const ACCESS_TOKEN: &str = "fake-access-0";
pub const REFRESH_TOKEN: &str = "fake-refresh-0";

/// Zalo's "access token is invalid" code.
pub const ERR_TOKEN: i64 = -216;
/// Zalo's "no interaction with the OA in the last 7 days" (outside the reply window).
pub const ERR_WINDOW: i64 = -230;

/// How the fake fails the next message calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// HTTP 500.
    Http500,
    /// HTTP 429 with `Retry-After`.
    Http429 { retry_after_secs: u64 },
    /// HTTP 200 with this non-zero `error` code.
    ZaloError { code: i64 },
}

#[derive(Default)]
struct Fake {
    access_token: String,
    refresh_token: String,
    /// The current access token answers ERR_TOKEN until the next refresh.
    expired: bool,
    refreshes: usize,
    fail_queue: VecDeque<FailKind>,
    outside_window: HashSet<String>,
    sent: Vec<(String, String)>,
    /// Every message call, accepted or not.
    calls: usize,
    /// Images served at `/img/{name}`, as Zalo's CDN serves what users send.
    images: HashMap<String, Vec<u8>>,
}

type Shared = Arc<Mutex<Fake>>;

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Zalo; stops when dropped.
pub struct FakeZalo {
    /// `http://127.0.0.1:PORT`: set both `api_url` and `oauth_url` to it.
    pub base: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeZalo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeZalo {
    /// Starts the fake on a random loopback port.
    pub async fn start() -> FakeZalo {
        let state: Shared = Arc::new(Mutex::new(Fake {
            access_token: ACCESS_TOKEN.into(),
            refresh_token: REFRESH_TOKEN.into(),
            ..Fake::default()
        }));
        let app = Router::new()
            .route("/v3.0/oa/message/cs", post(message_cs))
            .route("/v4/oa/access_token", post(access_token))
            .route("/img/{name}", get(image))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Zalo");
        let addr = listener.local_addr().expect("fake Zalo address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeZalo {
            base: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// A Zalo configuration pointing at this fake, with its app id, keys and tokens.
    pub fn config(&self) -> ZaloConfig {
        ZaloConfig {
            enabled: true,
            app_id: APP_ID.into(),
            oa_secret_key: OA_SECRET_KEY.into(),
            app_secret_key: APP_SECRET_KEY.into(),
            access_token: ACCESS_TOKEN.into(),
            refresh_token: REFRESH_TOKEN.into(),
            api_url: self.base.clone(),
            oauth_url: self.base.clone(),
            ..ZaloConfig::default()
        }
    }

    /// Every accepted message, in order: (user id, text).
    pub async fn sent(&self) -> Vec<(String, String)> {
        lock(&self.state).sent.clone()
    }

    /// Waits until at least `n` messages were accepted or `timeout` passed; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sent = self.sent().await;
            if sent.len() >= n || tokio::time::Instant::now() >= deadline {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next `n` message calls fail with `kind` (before any token check).
    pub fn fail_next(&self, n: usize, kind: FailKind) {
        let mut s = lock(&self.state);
        s.fail_queue.extend(std::iter::repeat_n(kind, n));
    }

    /// The current access token answers the token error until the client refreshes.
    pub fn expire_token(&self) {
        lock(&self.state).expired = true;
    }

    /// Successful token refreshes so far.
    pub fn refreshes(&self) -> usize {
        lock(&self.state).refreshes
    }

    /// Message calls so far, accepted or not.
    pub fn calls(&self) -> usize {
        lock(&self.state).calls
    }

    /// Messages to `user_id` answer the reply-window error until [`Self::back_in_window`].
    pub fn outside_window(&self, user_id: &str) {
        lock(&self.state).outside_window.insert(user_id.into());
    }

    /// `user_id` may be messaged again.
    pub fn back_in_window(&self, user_id: &str) {
        lock(&self.state).outside_window.remove(user_id);
    }

    /// Serves `bytes` as an image a user sent; returns its URL.
    pub fn host_image(&self, bytes: Vec<u8>) -> String {
        let mut s = lock(&self.state);
        let name = format!("{}.jpg", s.images.len() + 1);
        s.images.insert(name.clone(), bytes);
        format!("{}/img/{name}", self.base)
    }

    /// The access token the fake accepts now.
    pub fn current_access_token(&self) -> String {
        lock(&self.state).access_token.clone()
    }
}

fn zalo_error(code: i64, message: &str) -> Response {
    Json(json!({ "error": code, "message": message })).into_response()
}

async fn message_cs(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = lock(&state);
    s.calls += 1;
    match s.fail_queue.pop_front() {
        Some(FailKind::Http500) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "fake failure").into_response()
        }
        Some(FailKind::Http429 { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response()
        }
        Some(FailKind::ZaloError { code }) => return zalo_error(code, "fake Zalo error"),
        None => {}
    }
    let token = headers
        .get("access_token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if s.expired || token != s.access_token {
        return zalo_error(ERR_TOKEN, "Access token is invalid");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return zalo_error(-201, "Parameters are invalid");
    };
    let user_id = request
        .pointer("/recipient/user_id")
        .and_then(Value::as_str);
    let text = request.pointer("/message/text").and_then(Value::as_str);
    let (Some(user_id), Some(text)) = (user_id, text) else {
        return zalo_error(-201, "Parameters are invalid");
    };
    if s.outside_window.contains(user_id) {
        return zalo_error(
            ERR_WINDOW,
            "User has not interacted with the OA in the last 7 days",
        );
    }
    s.sent.push((user_id.to_string(), text.to_string()));
    let message_id = format!("fake-msg-{}", s.sent.len());
    Json(json!({
        "error": 0,
        "message": "Success",
        "data": { "message_id": message_id, "user_id": user_id },
    }))
    .into_response()
}

async fn access_token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = lock(&state);
    let secret_ok = headers
        .get("secret_key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == APP_SECRET_KEY);
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    if !secret_ok || field("app_id") != APP_ID {
        return Json(json!({"error": -14002, "error_name": "Invalid app secret"})).into_response();
    }
    if field("grant_type") != "refresh_token" || field("refresh_token") != s.refresh_token {
        return Json(json!({"error": -14014, "error_name": "Invalid refresh token"}))
            .into_response();
    }
    s.refreshes += 1;
    // Zalo's refresh tokens are single-use: each refresh issues a new pair.
    s.access_token = format!("fake-access-{}", s.refreshes);
    s.refresh_token = format!("fake-refresh-{}", s.refreshes);
    s.expired = false;
    Json(json!({
        "access_token": s.access_token,
        "refresh_token": s.refresh_token,
        // Zalo sends it as a string.
        "expires_in": "90000",
    }))
    .into_response()
}

async fn image(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match lock(&state).images.get(&name) {
        Some(bytes) => ([("content-type", "image/jpeg")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Signs a webhook event as Zalo does: returns the raw body and the
/// `X-ZEvent-Signature` value, `mac=` + hex sha256(app_id + body + timestamp + secret).
pub fn signed_event(app_id: &str, oa_secret: &str, event: Value) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&event).unwrap_or_default();
    let timestamp = match event.get("timestamp") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(app_id.as_bytes());
    ctx.update(&body);
    ctx.update(timestamp.as_bytes());
    ctx.update(oa_secret.as_bytes());
    let signature = format!("mac={}", hex::encode(ctx.finish()));
    (body, signature)
}

/// Now, in milliseconds, for event timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `user_send_text` event from `user_id` (the timestamp as a string, as Zalo sends it).
pub fn user_send_text(user_id: &str, text: &str, msg_id: &str, timestamp_ms: i64) -> Value {
    json!({
        "app_id": APP_ID,
        "user_id_by_app": format!("app-{user_id}"),
        "sender": { "id": user_id },
        "recipient": { "id": OA_ID },
        "event_name": "user_send_text",
        "message": { "text": text, "msg_id": msg_id },
        "timestamp": timestamp_ms.to_string(),
    })
}

/// A `user_send_image` event with one image at `url` and an optional caption.
pub fn user_send_image(
    user_id: &str,
    url: &str,
    caption: Option<&str>,
    msg_id: &str,
    timestamp_ms: i64,
) -> Value {
    let mut message = json!({
        "msg_id": msg_id,
        "attachments": [{
            "type": "image",
            "payload": { "thumbnail": url, "url": url },
        }],
    });
    if let Some(caption) = caption {
        message["text"] = json!(caption);
    }
    json!({
        "app_id": APP_ID,
        "user_id_by_app": format!("app-{user_id}"),
        "sender": { "id": user_id },
        "recipient": { "id": OA_ID },
        "event_name": "user_send_image",
        "message": message,
        "timestamp": timestamp_ms.to_string(),
    })
}

/// A `user_send_location` event (coordinates as strings, as Zalo sends them).
pub fn user_send_location(
    user_id: &str,
    latitude: f64,
    longitude: f64,
    msg_id: &str,
    timestamp_ms: i64,
) -> Value {
    json!({
        "app_id": APP_ID,
        "sender": { "id": user_id },
        "recipient": { "id": OA_ID },
        "event_name": "user_send_location",
        "message": {
            "msg_id": msg_id,
            "attachments": [{
                "type": "location",
                "payload": { "coordinates": {
                    "latitude": latitude.to_string(),
                    "longitude": longitude.to_string(),
                } },
            }],
        },
        "timestamp": timestamp_ms.to_string(),
    })
}

fn follow_event(name: &str, user_id: &str, timestamp_ms: i64) -> Value {
    json!({
        "app_id": APP_ID,
        "oa_id": OA_ID,
        "follower": { "id": user_id },
        "user_id_by_app": format!("app-{user_id}"),
        "event_name": name,
        "source": "oa_profile",
        "timestamp": timestamp_ms.to_string(),
    })
}

/// A `follow` event.
pub fn follow(user_id: &str, timestamp_ms: i64) -> Value {
    follow_event("follow", user_id, timestamp_ms)
}

/// An `unfollow` event.
pub fn unfollow(user_id: &str, timestamp_ms: i64) -> Value {
    follow_event("unfollow", user_id, timestamp_ms)
}

#[cfg(test)]
mod smoke {
    use super::*;
    use tinbao::channels::zalo::{
        verify_and_parse, MemoryVault, ZaloClient, ZaloTokens, SIGNATURE_HEADER,
    };
    use tinbao::channels::{InboundKind, Outgoing, PhotoRef, Provider, SendOutcome};

    async fn client(fake: &FakeZalo) -> (ZaloClient, Arc<MemoryVault>) {
        let vault = Arc::new(MemoryVault::new());
        (ZaloClient::new(&fake.config(), vault.clone()), vault)
    }

    #[tokio::test]
    async fn send_is_accepted_and_recorded() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        let outcome = zalo.send(&Outgoing::new("u1", "Cảm ơn bạn")).await;
        assert_eq!(
            outcome,
            SendOutcome::Accepted {
                provider_id: Some("fake-msg-1".into())
            }
        );
        let sent = fake.wait_for(1, Duration::from_secs(2)).await;
        assert_eq!(sent, vec![("u1".to_string(), "Cảm ơn bạn".to_string())]);
    }

    #[tokio::test]
    async fn server_error_is_transient_then_next_attempt_succeeds() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        fake.fail_next(1, FailKind::Http500);
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.sent().await.len(), 1);
    }

    #[tokio::test]
    async fn rate_limit_gives_retry_after() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        fake.fail_next(
            1,
            FailKind::Http429 {
                retry_after_secs: 7,
            },
        );
        assert_eq!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::RetryAfter(Duration::from_secs(7))
        );
        assert!(fake.sent().await.is_empty());
    }

    #[tokio::test]
    async fn expired_token_is_refreshed_once_and_saved() {
        let fake = FakeZalo::start().await;
        let (zalo, vault) = client(&fake).await;
        fake.expire_token();
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.refreshes(), 1);
        assert_eq!(fake.calls(), 2, "one rejected call, one retry");
        let saved = vault.current().expect("refreshed tokens saved");
        assert_eq!(saved.access_token, fake.current_access_token());
        assert_eq!(saved.refresh_token, "fake-refresh-1");
        assert!(saved.expires_at_ms > now_ms());
        // The fresh token is used from now on, without another refresh.
        assert!(matches!(
            zalo.send(&Outgoing::new("u2", "b")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.refreshes(), 1);
    }

    #[tokio::test]
    async fn concurrent_sends_with_an_expired_token_refresh_only_once() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        fake.expire_token();
        let sends = (0..8).map(|i| {
            let zalo = zalo.clone();
            async move { zalo.send(&Outgoing::new(format!("u{i}"), "x")).await }
        });
        let outcomes = futures_util::future::join_all(sends).await;
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })));
        assert_eq!(fake.refreshes(), 1);
    }

    #[tokio::test]
    async fn token_still_rejected_after_refresh_is_transient() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        // Both the first call and the retry answer the token error.
        fake.fail_next(2, FailKind::ZaloError { code: ERR_TOKEN });
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Transient(_)
        ));
        assert_eq!(fake.refreshes(), 1);
    }

    #[tokio::test]
    async fn outside_reply_window_is_rejected_without_user_data() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        fake.outside_window("u-quiet");
        match zalo.send(&Outgoing::new("u-quiet", "secret text")).await {
            SendOutcome::Rejected(reason) => {
                assert!(reason.contains("window"), "{reason}");
                assert!(!reason.contains("u-quiet") && !reason.contains("secret text"));
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert!(fake.sent().await.is_empty());
    }

    #[tokio::test]
    async fn blocked_user_is_an_opt_out() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        fake.fail_next(1, FailKind::ZaloError { code: -244 });
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::OptedOut(_)
        ));
    }

    #[tokio::test]
    async fn vault_tokens_win_over_configuration() {
        let fake = FakeZalo::start().await;
        // Refresh once through a first client, so the configured tokens are stale.
        let (first, vault) = client(&fake).await;
        fake.expire_token();
        assert!(matches!(
            first.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Accepted { .. }
        ));
        let second = ZaloClient::new(&fake.config(), vault.clone());
        assert!(matches!(
            second.send(&Outgoing::new("u1", "b")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.refreshes(), 1, "the saved token was reused");
    }

    #[tokio::test]
    async fn known_expiry_in_the_past_refreshes_before_sending() {
        let fake = FakeZalo::start().await;
        let vault = Arc::new(MemoryVault::with(ZaloTokens {
            access_token: ACCESS_TOKEN.into(),
            refresh_token: REFRESH_TOKEN.into(),
            expires_at_ms: now_ms() - 1000,
        }));
        let zalo = ZaloClient::new(&fake.config(), vault.clone());
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.refreshes(), 1);
        assert_eq!(fake.calls(), 1, "no call was spent on the old token");
    }

    #[tokio::test]
    async fn images_are_fetched_within_the_size_limit() {
        let fake = FakeZalo::start().await;
        let (zalo, _) = client(&fake).await;
        let url = fake.host_image(vec![7u8; 1000]);
        assert_eq!(
            zalo.fetch_photo(&PhotoRef::Url(url.clone()), 1000).await,
            Ok(vec![7u8; 1000])
        );
        let too_big = zalo.fetch_photo(&PhotoRef::Url(url.clone()), 999).await;
        assert!(too_big.is_err());
        let missing = zalo
            .fetch_photo(&PhotoRef::Url(format!("{}/img/none.jpg", fake.base)), 1000)
            .await;
        let err = missing.expect_err("404 is an error");
        assert!(!err.contains("none.jpg"), "the error names no URL: {err}");
    }

    #[tokio::test]
    async fn unreachable_zalo_is_transient() {
        let fake = FakeZalo::start().await;
        let mut cfg = fake.config();
        drop(fake);
        // Nothing listens on port 9 of loopback.
        cfg.api_url = "http://127.0.0.1:9".into();
        let zalo = ZaloClient::new(&cfg, Arc::new(MemoryVault::new()));
        assert!(matches!(
            zalo.send(&Outgoing::new("u1", "a")).await,
            SendOutcome::Transient(_)
        ));
    }

    #[test]
    fn signed_events_pass_the_adapter() {
        let cfg = ZaloConfig {
            app_id: APP_ID.into(),
            oa_secret_key: OA_SECRET_KEY.into(),
            ..ZaloConfig::default()
        };
        let now = now_ms();
        let events = [
            user_send_text("u1", "xin chào", "m1", now),
            user_send_image("u1", "https://cdn.example/1.jpg", Some("ảnh"), "m2", now),
            user_send_location("u1", 21.03, 105.85, "m3", now),
            follow("u1", now),
            unfollow("u1", now),
        ];
        let mut kinds = Vec::new();
        for event in events {
            let (body, signature) = signed_event(APP_ID, OA_SECRET_KEY, event);
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE_HEADER, signature.parse().expect("header value"));
            let inbound = verify_and_parse(&cfg, &headers, &body, now).expect("accepted");
            assert_eq!(inbound.len(), 1);
            assert_eq!(inbound[0].sender, "u1");
            kinds.push(inbound[0].kind.clone());
        }
        assert!(matches!(kinds[0], InboundKind::Message { ref text, .. } if text == "xin chào"));
        assert!(matches!(kinds[1], InboundKind::Message { ref photos, .. } if photos.len() == 1));
        assert!(matches!(
            kinds[2],
            InboundKind::Message {
                location: Some(_),
                ..
            }
        ));
        assert_eq!(kinds[3], InboundKind::Follow);
        assert_eq!(kinds[4], InboundKind::Unfollow);
    }
}
