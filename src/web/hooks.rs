//! Provider webhooks: Zalo OA, Telegram (webhook mode), Twilio and the Android SMS
//! Gateway. Each checks the provider's signature on the raw bytes, parses, and hands the
//! events to the chat service, answering only once they are durably stored: a forged or
//! missing signature gets 401 and stores nothing, a malformed body 400, an oversized one
//! 413, an unknown event 200 and is ignored, a database failure 503 (the provider retries).
//! Twilio signs no time: its message ids are remembered long after the retry window, and a
//! replayed request is answered 200 with no effect (Twilio's `I-Twilio-Idempotency-Token`
//! header is not signed, so it proves nothing and is not relied on).

use crate::channels::{sms, telegram, zalo, HookError, Inbound};
use crate::clock::now_ms;
use crate::config::TelegramMode;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// Largest webhook body: provider events are small; photos are fetched separately.
pub const MAX_HOOK_BYTES: usize = 256 * 1024;

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/zalo", post(zalo_hook))
        .route("/hooks/telegram", post(telegram_hook))
        .route("/hooks/sms/twilio", post(twilio_hook))
        .route("/hooks/sms/android", post(android_hook))
        .layer(DefaultBodyLimit::max(MAX_HOOK_BYTES))
}

/// Why a webhook was not taken; turned into the provider's answer in one place.
#[derive(Debug)]
enum HookRefusal {
    /// The channel is off: as if the route did not exist.
    Disabled,
    /// Not the provider's signature or format (401, 400), counted per provider.
    Refused(&'static str, HookError),
    /// Nothing could be stored: 503, and the provider tries again later.
    Unavailable(String),
}

impl IntoResponse for HookRefusal {
    fn into_response(self) -> Response {
        match self {
            HookRefusal::Disabled => StatusCode::NOT_FOUND.into_response(),
            HookRefusal::Refused(provider, e) => {
                let (status, reason) = match e {
                    HookError::Unauthorized => (StatusCode::UNAUTHORIZED, "signature"),
                    HookError::Stale => (StatusCode::UNAUTHORIZED, "stale"),
                    HookError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
                };
                metrics::counter!("tinbao_webhook_refused_total",
                    "provider" => provider, "reason" => reason)
                .increment(1);
                (status, reason).into_response()
            }
            HookRefusal::Unavailable(why) => {
                tracing::error!(error = %why, "could not store a provider's webhook");
                (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
            }
        }
    }
}

type HookAnswer = Result<Response, HookRefusal>;

/// Stores the events, then answers `ok` (the provider's expected body).
async fn accept(state: &AppState, events: Vec<Inbound>, ok: Response) -> HookAnswer {
    if !events.is_empty() {
        state
            .chat
            .accept(events)
            .await
            .map_err(|e| HookRefusal::Unavailable(e.to_string()))?;
    }
    Ok(ok)
}

/// [`accept`] for a provider whose signature covers no time (Twilio): a message id
/// accepted before, however long ago, is a replay, answered `ok` with no effect, so the
/// provider does not retry and a captured request makes no tip or follow-up.
async fn accept_unreplayed(state: &AppState, events: Vec<Inbound>, ok: Response) -> HookAnswer {
    if !events.is_empty() {
        state
            .chat
            .accept_unreplayed(events)
            .await
            .map_err(|e| HookRefusal::Unavailable(e.to_string()))?;
    }
    Ok(ok)
}

/// Records a provider's delivery report, then answers `ok`.
async fn delivered(state: &AppState, provider_id: &str, ok: Response) -> HookAnswer {
    crate::delivery::mark_delivered(&state.store, provider_id)
        .await
        .map_err(|e| HookRefusal::Unavailable(e.to_string()))?;
    Ok(ok)
}

fn json_ok() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"ok\":true}",
    )
        .into_response()
}

async fn zalo_hook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> HookAnswer {
    let cfg = &state.config.zalo;
    if !cfg.enabled {
        return Err(HookRefusal::Disabled);
    }
    let events = zalo::verify_and_parse(cfg, &headers, &body, now_ms())
        .map_err(|e| HookRefusal::Refused("zalo", e))?;
    accept(&state, events, json_ok()).await
}

async fn telegram_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> HookAnswer {
    let cfg = &state.config.telegram;
    if !cfg.enabled || cfg.mode != TelegramMode::Webhook {
        return Err(HookRefusal::Disabled);
    }
    let refused = |e| HookRefusal::Refused("telegram", e);
    telegram::verify_webhook(&cfg.webhook_secret, &headers).map_err(refused)?;
    let event = telegram::parse_webhook(&body).map_err(refused)?;
    accept(&state, event.into_iter().collect(), json_ok()).await
}

async fn twilio_hook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> HookAnswer {
    let cfg = &state.config.sms.twilio;
    if !cfg.enabled {
        return Err(HookRefusal::Disabled);
    }
    // Twilio signs the URL it was configured with: ours, as the public sees it.
    let url = format!(
        "{}/hooks/sms/twilio",
        state.config.public_url.trim_end_matches('/')
    );
    let events = sms::verify_twilio(cfg, &url, &headers, &body)
        .map_err(|e| HookRefusal::Refused("twilio", e))?;
    // An empty TwiML answer: the receipt goes through the outbox, not the reply.
    let ok = (
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response();
    match sms::twilio::delivered_message(&body) {
        Some(sid) => delivered(&state, &sid, ok).await,
        None => accept_unreplayed(&state, events, ok).await,
    }
}

async fn android_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> HookAnswer {
    let cfg = &state.config.sms.android;
    if !cfg.enabled {
        return Err(HookRefusal::Disabled);
    }
    let events = sms::verify_android(cfg, &headers, &body, now_ms())
        .map_err(|e| HookRefusal::Refused("android", e))?;
    match sms::android::delivered_message(&body) {
        Some(id) => delivered(&state, &id, json_ok()).await,
        None => accept(&state, events, json_ok()).await,
    }
}
