//! The residents' side: the tip form, the receipt, "check my tip", the JSON API, and the
//! cross-cutting HTTP layers (security headers, metrics, language, client address).

pub mod api;
pub mod hooks;
mod pages;
pub mod subscribe;

pub use pages::read_tip_form_body;

use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Instant;

/// The residents' routes: pages, API, webhooks, subscriptions, health, metrics, static files.
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
/// not-found page, the body limit, security headers and request metrics.
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    routes
        .fallback(pages::not_found)
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

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
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
async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
    if state.config.tls() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

/// Request latency by route pattern (never the concrete path, which could carry data).
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("tinbao_http_request_duration_seconds",
        "method" => method, "path" => path, "status" => status)
    .record(start.elapsed().as_secs_f64());
    res
}
