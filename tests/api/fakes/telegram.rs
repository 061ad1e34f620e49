//! A fake Telegram Bot API on loopback, speaking the documented wire format: `GET` or
//! `POST /bot<token>/<method>` with parameters in the query string, a JSON body or a form
//! body; answers `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}`
//! (with `parameters.retry_after` on 429). Files are served at
//! `/file/bot<token>/<file_path>`.
//!
//! Tests fill the update queue (`push_text`, `push_photo`, `push_location`, `push_raw`),
//! which `getUpdates` long-polls as Telegram does: an offset confirms (drops) every update
//! before it, and a waiting poll answers as soon as something arrives. `sendMessage`
//! records what was sent and can be told to fail first ([`FakeTelegram::fail_next`]).

#![allow(dead_code)]

use axum::extract::{FromRequest as _, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How the next call of a method fails, as the Bot API would fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 500 `Internal Server Error`.
    Http500,
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after`.
    TooManyRequests { retry_after: u32 },
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
}

/// The same thing under the name the brief uses.
pub type FailKind = Failure;

/// The fake bot's own id (`getMe`, `from` of sent messages).
pub const BOT_ID: i64 = 7_000_000_001;

#[derive(Default)]
struct Queue {
    /// Unconfirmed updates, oldest first, each with its id.
    updates: VecDeque<(i64, Value)>,
    next_update_id: i64,
    /// file_id → file_path, and file_path → bytes.
    files: HashMap<String, String>,
    blobs: HashMap<String, Vec<u8>>,
    next_file: u64,
    sent: Vec<(i64, String)>,
    /// When each message was taken.
    sent_at: Vec<std::time::Instant>,
    next_message_id: i64,
    failures: HashMap<String, VecDeque<Failure>>,
    calls: HashMap<String, usize>,
    pollers: usize,
    max_pollers: usize,
    last_offset: Option<i64>,
    webhook: Option<(String, Option<String>)>,
}

struct Inner {
    token: String,
    queue: Mutex<Queue>,
    /// Woken when an update is pushed.
    arrived: Notify,
    /// Woken when a message is recorded as sent.
    sent: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A test that panicked while holding the lock has failed already; go on.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake Bot API; stops when dropped.
pub struct FakeTelegram {
    /// Base URL to put in `telegram.api_url`, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The bot token the fake accepts (any other is 401 `Unauthorized`).
    pub token: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTelegram {
    /// Starts the fake on 127.0.0.1 (random port) for one bot token.
    pub async fn start(token: &str) -> FakeTelegram {
        let inner = Arc::new(Inner {
            token: token.to_string(),
            queue: Mutex::new(Queue {
                next_update_id: 100_000,
                next_message_id: 1,
                ..Queue::default()
            }),
            arrived: Notify::new(),
            sent: Notify::new(),
        });
        let app = Router::new()
            .route("/file/{bot}/{*path}", get(download))
            .route("/{bot}/{method}", any(method))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Telegram");
        let addr = listener.local_addr().expect("fake Telegram address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram {
            base: format!("http://{addr}"),
            token: token.to_string(),
            inner,
            server,
        }
    }

    /// A `TelegramConfig` pointing at this fake (polling, enabled, short poll timeout).
    pub fn config(&self) -> tinbao::config::TelegramConfig {
        tinbao::config::TelegramConfig {
            enabled: true,
            token: self.token.clone(),
            api_url: self.base.clone(),
            poll_timeout_seconds: 2,
            ..tinbao::config::TelegramConfig::default()
        }
    }

    /// Queues a text message from the private chat `chat_id`; returns its update id.
    pub fn push_text(&self, chat_id: i64, text: &str) -> i64 {
        self.push_message(chat_id, json!({ "text": text }))
    }

    /// Queues a photo (with an optional caption) from the private chat `chat_id`, served
    /// by getFile under `file_id` as `bytes`. A smaller thumbnail size comes first, as
    /// Telegram sends it. Returns the update id.
    pub fn push_photo(
        &self,
        chat_id: i64,
        file_id: &str,
        bytes: Vec<u8>,
        caption: Option<&str>,
    ) -> i64 {
        let size = bytes.len();
        self.add_file(file_id, bytes);
        self.add_file(&format!("{file_id}-thumb"), vec![0xff, 0xd8, 0xff, 0xd9]);
        let mut fields = json!({
            "photo": [
                {"file_id": format!("{file_id}-thumb"), "file_unique_id": format!("u{file_id}-t"),
                 "width": 90, "height": 67, "file_size": 4},
                {"file_id": file_id, "file_unique_id": format!("u{file_id}"),
                 "width": 1280, "height": 960, "file_size": size},
            ]
        });
        if let Some(caption) = caption {
            fields["caption"] = json!(caption);
        }
        self.push_message(chat_id, fields)
    }

    /// Queues a location from the private chat `chat_id`; returns its update id.
    pub fn push_location(&self, chat_id: i64, latitude: f64, longitude: f64) -> i64 {
        self.push_message(
            chat_id,
            json!({ "location": { "latitude": latitude, "longitude": longitude } }),
        )
    }

    /// Queues an update as given. Its `update_id` is set to the next id unless it has one
    /// (then later ids follow it). Returns the update id.
    pub fn push_raw(&self, mut update: Value) -> i64 {
        let id = {
            let mut q = self.inner.lock();
            let id = match update.get("update_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => q.next_update_id,
            };
            q.next_update_id = q.next_update_id.max(id + 1);
            if let Some(obj) = update.as_object_mut() {
                obj.insert("update_id".into(), json!(id));
            }
            q.updates.push_back((id, update));
            id
        };
        self.inner.arrived.notify_waiters();
        id
    }

    /// A private-chat message update (not queued) with the given extra message fields,
    /// for tests that want to change it before [`push_raw`](Self::push_raw).
    pub fn message_update(&self, chat_id: i64, fields: Value) -> Value {
        let message_id = {
            let mut q = self.inner.lock();
            q.next_message_id += 1;
            q.next_message_id
        };
        let mut message = json!({
            "message_id": message_id,
            "date": now(),
            "chat": {"id": chat_id, "type": "private", "first_name": "Tipster"},
            "from": {"id": chat_id, "is_bot": false, "first_name": "Tipster", "language_code": "vi"},
        });
        if let (Some(m), Some(f)) = (message.as_object_mut(), fields.as_object()) {
            m.extend(f.clone());
        }
        json!({ "message": message })
    }

    fn push_message(&self, chat_id: i64, fields: Value) -> i64 {
        let update = self.message_update(chat_id, fields);
        self.push_raw(update)
    }

    /// Serves `bytes` for `file_id` through getFile and the file URL.
    pub fn add_file(&self, file_id: &str, bytes: Vec<u8>) {
        let mut q = self.inner.lock();
        q.next_file += 1;
        let path = format!("photos/file_{}.jpg", q.next_file);
        q.files.insert(file_id.to_string(), path.clone());
        q.blobs.insert(path, bytes);
    }

    /// Updates still queued (not yet confirmed by an offset).
    pub fn pending(&self) -> usize {
        self.inner.lock().updates.len()
    }

    /// The offset of the latest getUpdates call that gave one.
    pub fn last_offset(&self) -> Option<i64> {
        self.inner.lock().last_offset
    }

    /// The most getUpdates calls that were ever waiting at the same time.
    pub fn max_concurrent_pollers(&self) -> usize {
        self.inner.lock().max_pollers
    }

    /// getUpdates calls waiting right now.
    pub fn current_pollers(&self) -> usize {
        self.inner.lock().pollers
    }

    /// The most messages taken within any one second so far.
    pub fn max_per_second(&self) -> usize {
        let times = self.inner.lock().sent_at.clone();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// Messages sent so far, as (chat id, text), in order.
    pub fn sent(&self) -> Vec<(i64, String)> {
        self.inner.lock().sent.clone()
    }

    /// Waits until at least `n` messages were sent, then returns them all; panics when
    /// `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(i64, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.sent.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "fake Telegram: expected {n} sent messages within {timeout:?}, got {}",
                    self.sent().len()
                );
            }
        }
    }

    /// Makes the next `n` sendMessage calls fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fail_next_method("sendMessage", n, failure);
    }

    /// Makes the next `n` calls of `method` (e.g. `getUpdates`, `getFile`; any case) fail.
    pub fn fail_next_method(&self, method: &str, n: usize, failure: Failure) {
        let mut q = self.inner.lock();
        let queue = q.failures.entry(method.to_ascii_lowercase()).or_default();
        queue.extend(std::iter::repeat_n(failure, n));
    }

    /// How many times `method` (any case) was called, failed calls included.
    pub fn calls(&self, method: &str) -> usize {
        let method = method.to_ascii_lowercase();
        self.inner.lock().calls.get(&method).copied().unwrap_or(0)
    }

    /// The webhook URL and secret set with setWebhook, if any.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.inner.lock().webhook.clone()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

fn error(status: StatusCode, description: &str) -> Response {
    let body = json!({ "ok": false, "error_code": status.as_u16(), "description": description });
    (status, Json(body)).into_response()
}

fn failure(f: Failure) -> Response {
    match f {
        Failure::Http500 => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Failure::Blocked => error(
            StatusCode::FORBIDDEN,
            "Forbidden: bot was blocked by the user",
        ),
        Failure::TooManyRequests { retry_after } => {
            let body = json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after}"),
                "parameters": { "retry_after": retry_after },
            });
            (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
        }
    }
}

/// A parameter value as sent in a query string, form or multipart field: JSON-typed
/// parameters (numbers, arrays) arrive as JSON text.
fn field_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// The request's parameters: query string, then a JSON, form or multipart body, as the
/// Bot API accepts them. `None` for a body it cannot read.
async fn params(query: Option<&str>, request: Request) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.into_owned(), field_value(&v));
        }
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if content_type.starts_with("multipart/form-data") {
        // teloxide sends some methods (setWebhook) as multipart, for the certificate.
        let mut form = Multipart::from_request(request, &()).await.ok()?;
        while let Some(field) = form.next_field().await.ok()? {
            let name = field.name()?.to_string();
            let text = field.text().await.ok()?;
            out.insert(name, field_value(&text));
        }
        return Some(out);
    }
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .ok()?;
    if body.is_empty() {
        return Some(out);
    }
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return None,
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_urlencoded::parse(&body) {
            out.insert(k.into_owned(), field_value(&v));
        }
    } else {
        return None;
    }
    Some(out)
}

fn int(params: &Map<String, Value>, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Counts a waiting getUpdates call for as long as it lives (even if the client hangs up).
struct Poller(Arc<Inner>);

impl Poller {
    fn enter(inner: Arc<Inner>) -> Poller {
        {
            let mut q = inner.lock();
            q.pollers += 1;
            q.max_pollers = q.max_pollers.max(q.pollers);
        }
        Poller(inner)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.0.lock().pollers -= 1;
    }
}

async fn method(
    State(inner): State<Arc<Inner>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    if bot.strip_prefix("bot") != Some(inner.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Some(p) = params(query.as_deref(), request).await else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: can't parse request body",
        );
    };
    // Method names are case-insensitive (teloxide sends `SendMessage`).
    let method = method.to_ascii_lowercase();
    let failed = {
        let mut q = inner.lock();
        *q.calls.entry(method.clone()).or_default() += 1;
        q.failures.get_mut(&method).and_then(VecDeque::pop_front)
    };
    if let Some(f) = failed {
        return failure(f);
    }
    match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "tinbao test", "username": "tinbao_test_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "getupdates" => get_updates(inner, &p).await,
        "sendmessage" => send_message(&inner, &p),
        "getfile" => get_file(&inner, &p),
        "setwebhook" => {
            let Some(url) = string(&p, "url") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: bad webhook: URL is empty",
                );
            };
            let mut q = inner.lock();
            q.webhook = if url.is_empty() {
                None
            } else {
                Some((url, string(&p, "secret_token")))
            };
            ok(json!(true))
        }
        "deletewebhook" => {
            inner.lock().webhook = None;
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let q = inner.lock();
            let url = q.webhook.as_ref().map(|w| w.0.clone()).unwrap_or_default();
            ok(
                json!({"url": url, "has_custom_certificate": false, "pending_update_count": q.updates.len()}),
            )
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn get_updates(inner: Arc<Inner>, p: &Map<String, Value>) -> Response {
    if inner.lock().webhook.is_some() {
        return error(
            StatusCode::CONFLICT,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        );
    }
    let offset = int(p, "offset");
    let limit = int(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(int(p, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    let _poller = Poller::enter(inner.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = inner.arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch: Vec<Value> = {
            let mut q = inner.lock();
            if let Some(offset) = offset {
                q.last_offset = Some(offset);
                if offset >= 0 {
                    // An offset confirms every update before it: they are gone for good.
                    while q.updates.front().is_some_and(|(id, _)| *id < offset) {
                        q.updates.pop_front();
                    }
                } else {
                    // A negative offset keeps only the last -offset updates.
                    let keep = offset.unsigned_abs() as usize;
                    while q.updates.len() > keep {
                        q.updates.pop_front();
                    }
                }
            }
            q.updates
                .iter()
                .take(limit)
                .map(|(_, u)| u.clone())
                .collect()
        };
        if !batch.is_empty() {
            return ok(Value::Array(batch));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send_message(inner: &Inner, p: &Map<String, Value>) -> Response {
    let Some(chat_id) = int(p, "chat_id") else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: chat not found");
    };
    let text = string(p, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
        );
    }
    if text.chars().count() > 4096 {
        return error(StatusCode::BAD_REQUEST, "Bad Request: message is too long");
    }
    let message_id = {
        let mut q = inner.lock();
        q.next_message_id += 1;
        q.sent.push((chat_id, text.clone()));
        q.sent_at.push(std::time::Instant::now());
        q.next_message_id
    };
    inner.sent.notify_waiters();
    ok(json!({
        "message_id": message_id,
        "date": now(),
        "chat": {"id": chat_id, "type": "private", "first_name": "Tipster"},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "tinbao test", "username": "tinbao_test_bot"},
        "text": text,
    }))
}

fn get_file(inner: &Inner, p: &Map<String, Value>) -> Response {
    let file_id = string(p, "file_id").unwrap_or_default();
    let q = inner.lock();
    let Some(path) = q.files.get(&file_id) else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: invalid file_id");
    };
    let size = q.blobs.get(path).map_or(0, Vec::len);
    ok(json!({
        "file_id": file_id,
        "file_unique_id": format!("u{file_id}"),
        "file_size": size,
        "file_path": path,
    }))
}

async fn download(
    State(inner): State<Arc<Inner>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot.strip_prefix("bot") != Some(inner.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match inner.lock().blobs.get(&path) {
        Some(bytes) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinbao::channels::telegram::TelegramClient;
    use tinbao::channels::{InboundKind, Outgoing, PhotoRef, Provider, SendOutcome};

    const TOKEN: &str = "123456:TEST-token_abc";

    async fn fake_and_client() -> (FakeTelegram, TelegramClient) {
        let fake = FakeTelegram::start(TOKEN).await;
        let client = TelegramClient::new(&fake.config()).expect("client");
        (fake, client)
    }

    fn text_of(kind: &InboundKind) -> &str {
        match kind {
            InboundKind::Message { text, .. } => text,
            _ => panic!("not a message"),
        }
    }

    #[tokio::test]
    async fn get_updates_returns_pushed_messages_and_honours_offset() {
        let (fake, client) = fake_and_client().await;
        let first = fake.push_text(555, "/start");
        let second = fake.push_location(555, 21.0, 105.8);

        let got = client.get_updates(0, 1).await.expect("updates");
        assert_eq!(
            got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [first, second]
        );
        let inbound = got[0].1.as_ref().expect("inbound");
        assert_eq!(inbound.sender, "555");
        assert_eq!(text_of(&inbound.kind), "/start");
        match &got[1].1.as_ref().expect("inbound").kind {
            InboundKind::Message { location, .. } => assert_eq!(*location, Some((21.0, 105.8))),
            _ => panic!("not a message"),
        }

        // Confirming the first leaves the second; confirming both leaves nothing.
        let got = client.get_updates(first + 1, 1).await.expect("updates");
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [second]);
        let got = client.get_updates(second + 1, 0).await.expect("updates");
        assert!(got.is_empty());
        assert_eq!(fake.pending(), 0);
        assert_eq!(fake.last_offset(), Some(second + 1));
    }

    #[tokio::test]
    async fn long_poll_answers_as_soon_as_an_update_arrives() {
        let (fake, client) = fake_and_client().await;
        let poll = tokio::spawn({
            let client = client.clone();
            async move { client.get_updates(0, 30).await }
        });
        while fake.current_pollers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        fake.push_text(7, "hello");
        let got = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .expect("answered early")
            .expect("join")
            .expect("updates");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(got.len(), 1);
        assert_eq!(fake.max_concurrent_pollers(), 1);
    }

    #[tokio::test]
    async fn concurrent_pollers_are_counted() {
        let (fake, client) = fake_and_client().await;
        let polls: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.get_updates(0, 1).await })
            })
            .collect();
        for poll in polls {
            poll.await.expect("join").expect("updates");
        }
        assert_eq!(fake.max_concurrent_pollers(), 2);
        assert_eq!(fake.current_pollers(), 0);
    }

    #[tokio::test]
    async fn ignored_updates_keep_their_id_but_give_no_inbound() {
        let (fake, client) = fake_and_client().await;
        let mut group = fake.message_update(-100, json!({"text": "in a group"}));
        group["message"]["chat"] = json!({"id": -100, "type": "group", "title": "Xóm"});
        let id = fake.push_raw(group);
        let got = client.get_updates(0, 0).await.expect("updates");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, id);
        assert!(got[0].1.is_none());
    }

    #[tokio::test]
    async fn send_is_accepted_and_recorded() {
        let (fake, client) = fake_and_client().await;
        let outcome = client.send(&Outgoing::new("555", "Cảm ơn bạn")).await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Accepted {
                    provider_id: Some(_)
                }
            ),
            "{outcome:?}"
        );
        let sent = fake.wait_for(1, Duration::from_secs(2)).await;
        assert_eq!(sent, vec![(555, "Cảm ơn bạn".to_string())]);
    }

    #[tokio::test]
    async fn send_to_a_non_numeric_chat_is_rejected_without_a_call() {
        let (fake, client) = fake_and_client().await;
        assert!(matches!(
            client.send(&Outgoing::new("@someone", "x")).await,
            SendOutcome::Rejected(_)
        ));
        assert_eq!(fake.calls("sendMessage"), 0);
    }

    #[tokio::test]
    async fn send_on_server_error_is_transient() {
        let (fake, client) = fake_and_client().await;
        fake.fail_next(1, Failure::Http500);
        // teloxide pauses 10 s after a 5xx before it reads the answer.
        assert!(matches!(
            client.send(&Outgoing::new("555", "x")).await,
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            client.send(&Outgoing::new("555", "x")).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(fake.sent().len(), 1);
    }

    #[tokio::test]
    async fn send_on_flood_limit_says_when_to_retry() {
        let (fake, client) = fake_and_client().await;
        fake.fail_next(1, Failure::TooManyRequests { retry_after: 3 });
        assert_eq!(
            client.send(&Outgoing::new("555", "x")).await,
            SendOutcome::RetryAfter(Duration::from_secs(3))
        );
        assert!(fake.sent().is_empty());
    }

    #[tokio::test]
    async fn send_to_a_person_who_blocked_the_bot_is_an_opt_out() {
        let (fake, client) = fake_and_client().await;
        fake.fail_next(1, Failure::Blocked);
        match client.send(&Outgoing::new("555", "x")).await {
            SendOutcome::OptedOut(reason) => assert!(!reason.contains("555")),
            other => panic!("expected an opt-out, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_token_is_never_an_opt_out() {
        let fake = FakeTelegram::start(TOKEN).await;
        let mut cfg = fake.config();
        cfg.token = "999:wrong".into();
        let client = TelegramClient::new(&cfg).expect("client");
        assert!(matches!(
            client.send(&Outgoing::new("555", "x")).await,
            SendOutcome::Transient(_)
        ));
        let err = client.get_updates(0, 0).await.expect_err("unauthorized");
        assert!(!err.contains("999:wrong"));
    }

    #[tokio::test]
    async fn fetch_photo_returns_the_largest_photo_bytes() {
        let (fake, client) = fake_and_client().await;
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        fake.push_photo(9, "PHOTO-1", bytes.clone(), Some("ở chợ"));
        let got = client.get_updates(0, 1).await.expect("updates");
        let inbound = got[0].1.as_ref().expect("inbound");
        let InboundKind::Message { text, photos, .. } = &inbound.kind else {
            panic!("not a message");
        };
        assert_eq!(text, "ở chợ");
        assert_eq!(photos, &[PhotoRef::TelegramFile("PHOTO-1".into())]);
        assert_eq!(
            client
                .fetch_photo(&PhotoRef::TelegramFile("PHOTO-1".into()), 1 << 20)
                .await
                .expect("photo"),
            bytes
        );
        assert!(client
            .fetch_photo(&PhotoRef::TelegramFile("PHOTO-1".into()), 100)
            .await
            .is_err());
        assert!(client
            .fetch_photo(&PhotoRef::TelegramFile("no-such-file".into()), 1 << 20)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn webhook_blocks_polling_until_deleted() {
        let (fake, client) = fake_and_client().await;
        client
            .set_webhook("https://tinbao.example/hooks/telegram", "s3cret")
            .await
            .expect("set");
        assert_eq!(
            fake.webhook(),
            Some((
                "https://tinbao.example/hooks/telegram".into(),
                Some("s3cret".into())
            ))
        );
        assert!(client.get_updates(0, 0).await.is_err());
        client.delete_webhook().await.expect("delete");
        assert!(client.get_updates(0, 0).await.is_ok());
    }
}
