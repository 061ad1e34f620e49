//! SMS gateways: Twilio's Programmable Messaging ([`twilio`]) and the Android SMS Gateway
//! app ([`android`]). Webhooks come in through [`verify_twilio`] and [`verify_android`]
//! (signature first, then parsing, into [`Inbound`](super::Inbound)); text goes out
//! through [`TwilioClient`] and [`AndroidClient`], one
//! [`SendOutcome`](super::SendOutcome) per attempt. [`text`] knows what an SMS costs.
//!
//! A phone number or a message text must never reach a log: every error here names a
//! field, a status code or a provider error number, never a value from the request.

pub mod android;
pub mod text;
pub mod twilio;

pub use android::{
    verify_android, AndroidClient, ANDROID_SIGNATURE_HEADER, ANDROID_TIMESTAMP_HEADER,
};
pub use text::{prepare_text, segments, strip_diacritics, Segments};
pub use twilio::{verify_twilio, TwilioClient, TWILIO_SIGNATURE_HEADER};

use axum::http::HeaderMap;
use std::time::Duration;

/// A whole send attempt may take this long; the outbox retries a timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP client per gateway: timeouts so a hung provider cannot stall the outbox, and
/// no redirects, so credentials and message bodies go only where configured.
fn http_client() -> reqwest::Client {
    super::http::client_builder(CONNECT_TIMEOUT, SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // Building fails only when the TLS backend cannot start; the default client
        // then reports the same failure on first use.
        .unwrap_or_default()
}

/// A client for media a gateway keeps (MMS): the same timeouts, and at most `redirects`
/// redirects, since the media URL answers with one to the file's temporary location.
fn media_client(redirects: usize) -> reqwest::Client {
    super::http::client_builder(CONNECT_TIMEOUT, SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(redirects))
        .build()
        .unwrap_or_default()
}

/// A header's value as trimmed, non-empty visible ASCII.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A delivery report's message id, when it can be one of ours (not empty, not huge).
fn report_id(id: String) -> Option<String> {
    (!id.is_empty() && id.len() <= 64).then_some(id)
}
