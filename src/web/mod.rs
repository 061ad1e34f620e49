//! The residents' side: the tip form, the receipt, "check my tip", the JSON API, and the
//! cross-cutting HTTP layers (security headers, metrics, language, client address).

pub mod api;
pub mod hooks;
mod pages;
pub mod subscribe;

pub use pages::read_tip_form_body;

use crate::state::{came_over_https, AppState, Lang};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::time::Instant;

/// A `303` to a GET page, never cached: the answer of a form (post/redirect/get), so that
/// a reload or Back never sends it again.
pub(crate) fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// The residents' routes: pages, API, webhooks, subscriptions, health, static files, and
/// `/metrics` (which answers 404 here unless it has no listener of its own and a token).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(pages::router())
        .merge(api::router())
        .merge(hooks::router())
        .merge(subscribe::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/static/{name}", get(static_file))
}

/// The layers every route of the server shares (the residents' and the console's): the
/// not-found page, the body limits, security headers and request metrics.
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    routes
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.store.ping().await {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
    }
}

/// `/metrics` on the public listener: not there, unless `metrics_listen` is `off` and a
/// `metrics_token` guards it.
async fn metrics(State(state): State<AppState>, lang: Lang, headers: HeaderMap) -> Response {
    if state.config.metrics_listener().is_some() || state.config.metrics_token.is_empty() {
        return pages::not_found(lang).await;
    }
    metrics_answer(&state, &headers)
}

/// A commune's village names, for the form's suggestions: read once a minute per commune
/// at most, and only for a commune that exists (so strangers cannot fill the cache); a
/// failed read suggests nothing.
pub(crate) async fn village_names(state: &AppState, commune: i64) -> std::sync::Arc<Vec<String>> {
    if state.intake.geo().commune(commune).is_none() {
        return std::sync::Arc::default();
    }
    let load = async {
        let rows = state.store.villages(commune).await?;
        Ok::<_, crate::store::StoreError>(std::sync::Arc::new(
            rows.into_iter().map(|v| v.name).collect::<Vec<_>>(),
        ))
    };
    match state.villages.get_or(commune.to_string(), load).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "village names could not be read");
            std::sync::Arc::default()
        }
    }
}

/// The router of the metrics listener (`metrics_listen`): `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(state): State<AppState>, headers: HeaderMap| async move {
                    metrics_answer(&state, &headers)
                },
            ),
        )
        .with_state(state)
}

/// The metrics, to whoever shows the token when one is set.
fn metrics_answer(state: &AppState, headers: &HeaderMap) -> Response {
    let token = state.config.metrics_token.as_bytes();
    if !token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::crypto::constant_eq(token, given.trim().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is needed\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Routes that take photos, and so the large body limit (`max_body_bytes`).
const PHOTO_ROUTES: &[&str] = &["/tips", "/status/reply"];

/// A form body larger than this (or of no declared length) on a [`PHOTO_ROUTES`] route
/// carries photos: it waits for one of the `photo_uploads` places. Text alone is far less.
const UPLOAD_PLACE_BYTES: u64 = 1024 * 1024;

/// The console's sign-in steps: small forms, open to anyone.
const SMALL_CONSOLE_ROUTES: &[&str] = &["/console/login", "/console/totp", "/console/password"];

/// The console's other forms (a hotline call, a broadcast): as much as its guard reads.
const CONSOLE_BODY_BYTES: usize = 256 * 1024;

/// The body limit of each route: photos on the tip form and the reply, a few megabytes of
/// JSON on the API's tip, the webhooks' own; kilobytes (`max_form_bytes`) everywhere
/// else. A small body is read here, whole, before the handler runs, so that an oversized
/// one gets a localised 413 however it is sent; large ones are cut while being read.
async fn limit_body(
    State(state): State<AppState>,
    lang: Lang,
    req: Request,
    next: Next,
) -> Response {
    let config = &state.config;
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if path.starts_with("/hooks/") {
        return next.run(req).await; // hooks.rs sets its own limit
    }
    let limit = if PHOTO_ROUTES.contains(&path.as_str()) {
        config.max_body_bytes
    } else if path == "/api/v1/tips" {
        config.max_api_body_bytes.min(config.max_body_bytes)
    } else if path.starts_with("/console/") && !SMALL_CONSOLE_ROUTES.contains(&path.as_str()) {
        CONSOLE_BODY_BYTES
    } else {
        config.max_form_bytes.min(config.max_body_bytes)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if path.starts_with("/api/") || PHOTO_ROUTES.contains(&path.as_str()) {
        // A form that may carry photos is read and handled only in one of the process's
        // upload places: its photos stay in memory from the first byte to the answer.
        let _place = if PHOTO_ROUTES.contains(&path.as_str())
            && req.method() == axum::http::Method::POST
            && declared.is_none_or(|n| n > UPLOAD_PLACE_BYTES)
        {
            let wait = std::time::Duration::from_secs(config.photo_upload_wait_seconds);
            match tokio::time::timeout(wait, state.uploads.acquire()).await {
                Ok(Ok(place)) => Some(place),
                _ => return pages::busy_uploads(lang),
            }
        } else {
            None
        };
        // Read by the handler, which answers an oversized body in its own way.
        let (parts, body) = req.into_parts();
        let body = Body::new(Limited::new(body, limit));
        return next.run(Request::from_parts(parts, body)).await;
    }
    if declared.is_some_and(|n| n > limit as u64) {
        return pages::too_big(lang, &path);
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) if e.is::<LengthLimitError>() => pages::too_big(lang, &path),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "the request body could not be read\n",
        )
            .into_response(),
    }
}

/// The static files, embedded: (name, content type, bytes).
const STATIC: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/static/app.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/static/console.js"),
    ),
];

async fn static_file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match STATIC.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Strict headers on every response; pages are never cached unless they say otherwise.
/// An answer to a request that came over HTTPS (tinbao's own TLS, or a trusted proxy's
/// `X-Forwarded-Proto`) carries HSTS and marks every cookie `Secure`; one over plain HTTP
/// neither.
async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let https = came_over_https(&state.config, req.headers());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
        secure_cookies(h);
    }
    res
}

/// Adds `Secure` to every `Set-Cookie` that lacks it: here, once, so that no handler can
/// forget it and no cookie set over HTTPS is ever sent back over plain HTTP.
fn secure_cookies(h: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = h
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| {
            let secure = v.to_str().is_ok_and(|c| {
                c.split(';')
                    .skip(1)
                    .any(|a| a.trim().eq_ignore_ascii_case("secure"))
            });
            if secure {
                return v.clone();
            }
            let marked = [v.as_bytes(), b"; Secure"].concat();
            HeaderValue::from_bytes(&marked).unwrap_or_else(|_| v.clone())
        })
        .collect();
    if cookies.is_empty() {
        return;
    }
    h.remove(header::SET_COOKIE);
    for cookie in cookies {
        h.append(header::SET_COOKIE, cookie);
    }
}

/// What a tipster opens or sends (the tip and status forms, a tip, a reply, a receipt check,
/// a chat or SMS message), by any method: never counted, so that no series rises with each
/// tip, shows when someone went to check a receipt, or tells a found receipt from a wrong one.
const UNCOUNTED: &[&str] = &[
    "/tips",
    "/status",
    "/status/reply",
    "/api/v1/tips",
    "/api/v1/tips/status",
    "/hooks/zalo",
    "/hooks/telegram",
    "/hooks/sms/twilio",
    "/hooks/sms/android",
];

/// Request latency by route pattern (never the concrete path, which could carry data).
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    if UNCOUNTED.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("tinbao_http_request_duration_seconds",
        "method" => method, "path" => path, "status" => status)
    .record(start.elapsed().as_secs_f64());
    res
}
