//! What a request tells about its reader: the language, whether it came over HTTPS and,
//! for rate limits only, the client's address.

use super::AppState;
use crate::config::Config;
use crate::i18n::{locales, Texts};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

/// Whether a request reached the reader over HTTPS: tinbao serves TLS itself, or
/// `trust_forwarded_for` is set and the proxy's `X-Forwarded-Proto` says `https` (its last
/// value, the one the nearest proxy wrote). Without that setting the header is ignored,
/// since anyone can send it.
pub fn came_over_https(config: &Config, headers: &HeaderMap) -> bool {
    if config.tls() {
        return true;
    }
    config.trust_forwarded_for
        && headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Waits until `floor` has passed since `start`, so answers take the same time whatever
/// they say.
pub async fn pad_to(start: tokio::time::Instant, floor_ms: u64) {
    tokio::time::sleep_until(start + std::time::Duration::from_millis(floor_ms)).await;
}
