//! The residents' side: the tip form, the receipt, "check my tip", the JSON API, and the
//! cross-cutting HTTP layers (security headers, metrics, language, client address).

pub mod api;
pub mod hooks;
pub mod limits;
mod pages;
pub mod subscribe;

use crate::app::AppState;
use crate::i18n::{locales, Texts};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The whole router: resident pages, API, health and metrics.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .merge(pages::router())
        .merge(api::router())
        .merge(hooks::router())
        .merge(subscribe::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/static/{name}", get(static_file))
        .merge(crate::console::router(state.clone()))
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
    if state.intake.store().ping().await {
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

/// The reader's language: `?lang=`, then the `lang` cookie, then (for the API only)
/// `Accept-Language`, else Vietnamese.
#[derive(Debug, Clone, Copy)]
pub struct Lang(pub &'static str);

impl Lang {
    /// The texts in this language.
    pub fn texts(self) -> Texts {
        locales().texts(self.0)
    }

    /// A language a form sent back, if it is one we have.
    pub fn known(code: &str) -> Option<Lang> {
        locales().find(code).map(|l| Lang(l.code))
    }
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_param<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .uri
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let all = locales();
        if let Some(l) = query_param(parts, "lang").or_else(|| cookie(parts, "lang")) {
            if let Some(lang) = Lang::known(l) {
                return Ok(lang);
            }
        }
        // Pages are Vietnamese unless the reader switches; programs calling the API may
        // ask for their language.
        if !parts.uri.path().starts_with("/api/") {
            return Ok(Lang(crate::i18n::DEFAULT_LANG));
        }
        let accept = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Lang(all.negotiate(accept)))
    }
}

/// The client's address, used only as a rate-limit key through a daily-keyed hash.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(ip))
    }
}

/// Waits until `floor` has passed since `start`, so answers take the same time whatever
/// they say.
pub async fn pad_to(start: tokio::time::Instant, floor_ms: u64) {
    tokio::time::sleep_until(start + std::time::Duration::from_millis(floor_ms)).await;
}
