//! What every HTTP provider shares, written once: the client (timeouts, user agent), the
//! capped body read behind every download, the bounds on a provider's Retry-After, and
//! the words for a request that never got an answer. None of it logs or returns a URL,
//! a header or a body: provider URLs can hold tokens, bodies addresses and texts.

use std::time::Duration;

/// Shortest wait a provider's Retry-After is taken as, so a strange value does not
/// hammer the provider.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest, so a strange value does not park the outbox for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The settings every provider's client shares: `connect` to open a connection (TLS
/// included), `total` for a whole request, tinbao's user agent. Redirects stay reqwest's
/// default; a provider that must not follow them (credentials, bodies) says so.
pub fn client_builder(connect: Duration, total: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect)
        .timeout(total)
        .tcp_nodelay(true)
        .user_agent(concat!("tinbao/", env!("CARGO_PKG_VERSION")))
}

/// A client from [`client_builder`]'s settings. Building fails only when the TLS backend
/// cannot start, which the crate's features rule out; the default client would then
/// report the same failure on first use.
pub fn client(connect: Duration, total: Duration) -> reqwest::Client {
    client_builder(connect, total).build().unwrap_or_default()
}

/// Why a request never got an answer, in words that carry no URL (reqwest's own message
/// names it, and a Bot API URL holds the token) and no request content.
pub fn network_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer body"
    } else if e.is_request() {
        "request failed"
    } else {
        "network error"
    }
}

/// A provider's wait, within [`MIN_RETRY_AFTER`] and [`MAX_RETRY_AFTER`].
pub fn bound_retry_after(wait: Duration) -> Duration {
    wait.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// The wait a 429 asks for: `Retry-After` in seconds (its date form is used by none of
/// the providers), [`MIN_RETRY_AFTER`] when absent or unreadable; bounded.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let asked = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MIN_RETRY_AFTER);
    bound_retry_after(asked)
}

/// Why a capped read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The body is longer than allowed (said by its length, or found while reading).
    #[error("larger than allowed")]
    TooLarge,
    /// The connection failed while reading.
    #[error("{0}")]
    Network(&'static str),
}

/// Reads a body of at most `max` bytes, stopping as soon as it is known to be longer.
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Network(network_failure(&e)))?
    {
        if out.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Downloads `url` into memory (a photo, a file), refusing more than `max` bytes. The
/// error starts with `what` and names neither the URL nor anything in it.
pub async fn download(
    client: &reqwest::Client,
    url: reqwest::Url,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{what}: {}", network_failure(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{what}: HTTP {}", status.as_u16()));
    }
    read_capped(response, max)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn with_retry_after(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn retry_after_reads_seconds_within_bounds() {
        assert_eq!(retry_after(&with_retry_after("7")), Duration::from_secs(7));
        assert_eq!(
            retry_after(&with_retry_after(" 3 ")),
            Duration::from_secs(3)
        );
        assert_eq!(retry_after(&with_retry_after("0")), MIN_RETRY_AFTER);
        assert_eq!(retry_after(&with_retry_after("86400")), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(&with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")),
            MIN_RETRY_AFTER
        );
        assert_eq!(retry_after(&HeaderMap::new()), MIN_RETRY_AFTER);
    }
}
