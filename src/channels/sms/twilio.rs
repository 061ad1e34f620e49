//! Twilio's Programmable Messaging: the signed incoming-message webhook and its delivery
//! reports in, the Messages API out.

use super::header_str;
use super::text::prepare_text;
use crate::channels::{http, rate, HookError, Inbound, InboundKind, Outgoing, PhotoRef};
use crate::channels::{Provider, SendOutcome, Transport};
use crate::config::TwilioConfig;
use axum::http::HeaderMap;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use ring::hmac;
use serde_json::Value;
use std::sync::Arc;

/// The header Twilio signs its webhooks with.
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Twilio attaches at most ten media to one message.
const TWILIO_MAX_MEDIA: usize = 10;
/// Twilio accepts at most 5 MB of media in one message: a larger download is not theirs.
const TWILIO_MAX_MEDIA_BYTES: usize = 5 * 1024 * 1024;
/// A media URL answers with a redirect to its temporary location; a few are followed.
const TWILIO_MEDIA_REDIRECTS: usize = 3;
/// Twilio's error code for a recipient who texted STOP.
const TWILIO_UNSUBSCRIBED: u64 = 21610;

/// Verifies and parses one Twilio incoming-message webhook.
///
/// `url` is the full public URL Twilio posted to, query string included, exactly as
/// configured at Twilio (e.g. `https://example.org/hooks/sms/twilio`); `body` is the raw
/// `application/x-www-form-urlencoded` body. The `X-Twilio-Signature` header must be
/// base64(HMAC-SHA1(auth token, url + each parameter's name and value, sorted by name)),
/// compared in constant time; like Twilio's own libraries, the URL is also tried with
/// its default port added or its port removed, since proxies disagree about ports.
///
/// Returns one [`Inbound`] message, or nothing for a delivery-status callback posted to
/// the same URL. A missing or wrong signature (or no auth token configured) is
/// [`HookError::Unauthorized`]; a signed body without `From` or `MessageSid` is
/// [`HookError::Malformed`].
pub fn verify_twilio(
    cfg: &TwilioConfig,
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Inbound>, HookError> {
    // An empty key would let anyone who knows the scheme sign requests.
    if cfg.auth_token.is_empty() {
        return Err(HookError::Unauthorized);
    }
    let signature = header_str(headers, TWILIO_SIGNATURE_HEADER).ok_or(HookError::Unauthorized)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| HookError::Unauthorized)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        cfg.auth_token.as_bytes(),
    );
    let signed = twilio_url_variants(url).iter().any(|u| {
        hmac::verify(
            &key,
            twilio_signing_string(u, &params).as_bytes(),
            &signature,
        )
        .is_ok()
    });
    if !signed {
        return Err(HookError::Unauthorized);
    }
    parse_twilio(&params)
}

/// What Twilio signs: the URL, then every parameter's name and value, sorted by name
/// (and, for a repeated name, by value), with no separators.
fn twilio_signing_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::with_capacity(
        url.len() + params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
    );
    s.push_str(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The URL as given, plus the same URL with its port removed (when it has one) or with
/// the scheme's default port added (when it has none). Twilio's libraries accept either,
/// because a load balancer may add or drop the port Twilio signed.
fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // Skip user:password@ (Twilio allows credentials in the URL).
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    // A port follows the last ':' unless that colon sits inside an IPv6 literal.
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'));
    let prefix = &url[..authority_start + host_start];
    let suffix = &url[authority_end..];
    match port_colon {
        Some(i) => out.push(format!("{prefix}{}{suffix}", &host_port[..i])),
        None => out.push(format!("{prefix}{host_port}:{default_port}{suffix}")),
    }
    out
}

/// Turns verified webhook parameters into an [`Inbound`].
fn parse_twilio(params: &[(String, String)]) -> Result<Vec<Inbound>, HookError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // A status callback for a message we sent carries MessageStatus and no content:
    // acknowledged, nothing to do.
    if get("MessageStatus").is_some() && get("Body").is_none() && get("NumMedia").is_none() {
        return Ok(vec![]);
    }
    let sender = get("From")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HookError::Malformed("missing From".into()))?;
    let sid = get("MessageSid")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HookError::Malformed("missing MessageSid".into()))?;
    let mut photos = Vec::new();
    for i in 0..TWILIO_MAX_MEDIA {
        let Some(url) = get(&format!("MediaUrl{i}")).filter(|s| !s.is_empty()) else {
            continue;
        };
        // MMS may carry a vCard or a video; only images become photos.
        let is_image = get(&format!("MediaContentType{i}"))
            .is_none_or(|t| t.to_ascii_lowercase().starts_with("image/"));
        if is_image {
            photos.push(PhotoRef::Url(url.to_string()));
        }
    }
    Ok(vec![Inbound {
        transport: Transport::TWILIO,
        sender: sender.to_string(),
        provider_id: Some(sid.to_string()),
        to: get("To").filter(|s| !s.is_empty()).map(str::to_string),
        kind: InboundKind::Message {
            text: get("Body").unwrap_or_default().to_string(),
            photos,
            location: None,
        },
    }])
}

/// The message a verified status callback says reached the handset: its `MessageSid`
/// when `MessageStatus=delivered`; `None` for other statuses and for incoming messages.
pub fn delivered_message(body: &[u8]) -> Option<String> {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if get("MessageStatus").as_deref() != Some("delivered") || get("Body").is_some() {
        return None;
    }
    super::report_id(get("MessageSid")?)
}

/// Sends SMS through Twilio's Messages API. Cheap to clone: the connection pool and the
/// credentials are shared.
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    /// For MMS media: follows Twilio's redirect to the media's temporary location
    /// (reqwest drops the credentials when a redirect leaves the host).
    media_http: reqwest::Client,
    /// Media are fetched only under this URL (`{api_url}/`), with the account's
    /// credentials.
    media_base: Arc<str>,
    messages_url: Arc<str>,
    account_sid: Arc<str>,
    auth_token: Arc<str>,
    from: Arc<str>,
    /// Where Twilio reports each message's delivery (our webhook), when set.
    status_callback: Option<Arc<str>>,
    /// Send without diacritics (`sms.strip_diacritics`).
    strip_diacritics: bool,
    rate: Option<u32>,
}

// By hand, so the auth token never reaches a log.
impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    /// A client for `{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, sending
    /// from `cfg.from` with HTTP basic auth (account SID, auth token).
    pub fn new(cfg: &TwilioConfig) -> TwilioClient {
        let base = cfg.api_url.trim_end_matches('/');
        TwilioClient {
            http: super::http_client(),
            media_http: super::media_client(TWILIO_MEDIA_REDIRECTS),
            media_base: format!("{base}/").into(),
            messages_url: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                cfg.account_sid
            )
            .into(),
            account_sid: cfg.account_sid.as_str().into(),
            auth_token: cfg.auth_token.as_str().into(),
            from: cfg.from.as_str().into(),
            status_callback: None,
            strip_diacritics: false,
            rate: rate(cfg.rate_per_second),
        }
    }

    /// Asks Twilio to report each message's delivery to `url` (the Twilio webhook).
    pub fn with_status_callback(mut self, url: &str) -> TwilioClient {
        self.status_callback = Some(url.into());
        self
    }

    /// Sends texts without diacritics (see [`prepare_text`]).
    pub fn with_strip_diacritics(mut self, strip: bool) -> TwilioClient {
        self.strip_diacritics = strip;
        self
    }

    /// Fetches one MMS media file the webhook named: only a URL under the configured API
    /// base (Twilio's own, never one a request could point elsewhere), with the
    /// account's basic auth, at most `max_bytes` (and Twilio's 5 MB), within the
    /// client's timeouts. Errors name the failure, never the URL.
    async fn fetch_media(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, String> {
        if !url.starts_with(&*self.media_base) {
            return Err("twilio media: not under the configured API URL".into());
        }
        let url = reqwest::Url::parse(url).map_err(|_| "twilio media: not a URL".to_string())?;
        let response = self
            .media_http
            .get(url)
            .basic_auth(&*self.account_sid, Some(&*self.auth_token))
            .send()
            .await
            .map_err(|e| format!("twilio media: {}", http::network_failure(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("twilio media: HTTP {}", status.as_u16()));
        }
        http::read_capped(response, max_bytes.min(TWILIO_MAX_MEDIA_BYTES))
            .await
            .map_err(|e| format!("twilio media: {e}"))
    }

    /// Sends one SMS. 200/201 is [`SendOutcome::Accepted`] with the message SID; 429 is
    /// [`SendOutcome::RetryAfter`] (`Retry-After`, else 1 s); 5xx, other statuses and
    /// network failures are [`SendOutcome::Transient`]; error 21610 (the person texted
    /// STOP) is [`SendOutcome::OptedOut`]; any other 4xx is [`SendOutcome::Rejected`]
    /// naming only Twilio's error code, since Twilio's messages quote the number.
    async fn send_text(&self, to: &str, text: &str) -> SendOutcome {
        let response = self
            .http
            .post(&*self.messages_url)
            .basic_auth(&*self.account_sid, Some(&*self.auth_token))
            .form(&{
                let mut form = vec![("To", to), ("From", &*self.from), ("Body", text)];
                if let Some(url) = &self.status_callback {
                    form.push(("StatusCallback", url.as_ref()));
                }
                form
            })
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return SendOutcome::Transient(format!("twilio: {}", http::network_failure(&e)))
            }
        };
        let status = response.status();
        if status.is_success() {
            let sid = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_string));
            return SendOutcome::Accepted { provider_id: sid };
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return SendOutcome::RetryAfter(http::retry_after(response.headers()));
        }
        if !status.is_client_error() {
            return SendOutcome::Transient(format!("twilio: HTTP {}", status.as_u16()));
        }
        let code = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_u64));
        match code {
            Some(TWILIO_UNSUBSCRIBED) => {
                SendOutcome::OptedOut("twilio: error 21610, recipient unsubscribed".into())
            }
            Some(code) => {
                SendOutcome::Rejected(format!("twilio: error {code} (HTTP {})", status.as_u16()))
            }
            None => SendOutcome::Rejected(format!("twilio: HTTP {}", status.as_u16())),
        }
    }
}

impl Provider for TwilioClient {
    fn transport(&self) -> Transport {
        Transport::TWILIO
    }

    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            let text = prepare_text(&message.text, self.strip_diacritics);
            self.send_text(&message.to, &text).await
        })
    }

    fn fetch_photo<'a>(
        &'a self,
        photo: &'a PhotoRef,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            match photo {
                PhotoRef::Url(url) => self.fetch_media(url, max_bytes).await,
                PhotoRef::Bytes(b) => Ok(b.clone()),
                PhotoRef::TelegramFile(_) | PhotoRef::Withheld => {
                    Err("not a Twilio media file".into())
                }
            }
        })
    }

    fn rate_per_second(&self) -> Option<u32> {
        self.rate
    }

    fn is_sms(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    const HOOK_URL: &str = "https://example.org/hooks/sms/twilio";

    fn twilio_cfg(token: &str) -> TwilioConfig {
        TwilioConfig {
            auth_token: token.into(),
            ..TwilioConfig::default()
        }
    }

    fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
        let tag = hmac::sign(&key, twilio_signing_string(url, &owned).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    }

    fn form(params: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    fn twilio_headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            TWILIO_SIGNATURE_HEADER,
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    // Twilio's published test vector (twilio-python's request validator tests).
    const VECTOR_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const VECTOR_PARAMS: &[(&str, &str)] = &[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ];

    #[test]
    fn twilio_signing_matches_twilios_published_vector() {
        assert_eq!(
            twilio_sign("12345", VECTOR_URL, VECTOR_PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // The vector has no MessageSid: reaching the parser proves the signature passed.
        let result = verify_twilio(
            &twilio_cfg("12345"),
            VECTOR_URL,
            &twilio_headers("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            &form(VECTOR_PARAMS),
        );
        assert_eq!(
            result,
            Err(HookError::Malformed("missing MessageSid".into()))
        );
    }

    #[test]
    fn twilio_signing_sorts_repeated_parameters_by_value() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            twilio_sign("12345", VECTOR_URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn twilio_signature_over_the_default_port_is_accepted_without_it() {
        // Twilio's vector for the same request signed as https://mycompany.com:443/….
        let result = verify_twilio(
            &twilio_cfg("12345"),
            VECTOR_URL,
            &twilio_headers("kvajT1Ptam85bY51eRf/AJRuM3w="),
            &form(VECTOR_PARAMS),
        );
        assert!(matches!(result, Err(HookError::Malformed(_))), "{result:?}");
        // And one signed without a port is accepted when the proxy reports one.
        let with_port = VECTOR_URL.replace(".com", ".com:1234");
        let result = verify_twilio(
            &twilio_cfg("12345"),
            &with_port,
            &twilio_headers("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            &form(VECTOR_PARAMS),
        );
        assert!(matches!(result, Err(HookError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn twilio_url_variants_add_or_remove_the_port() {
        assert_eq!(
            twilio_url_variants("https://a.example/x?y=1"),
            vec!["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            twilio_url_variants("http://u:p@a.example:8080"),
            vec!["http://u:p@a.example:8080", "http://u:p@a.example"]
        );
        assert_eq!(
            twilio_url_variants("https://[::1]/h"),
            vec!["https://[::1]/h", "https://[::1]:443/h"]
        );
        assert_eq!(twilio_url_variants("not a url"), vec!["not a url"]);
    }

    fn twilio_sms_params<'a>() -> Vec<(&'a str, &'a str)> {
        vec![
            ("ToCountry", "VN"),
            ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("NumMedia", "2"),
            ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
            ("SmsStatus", "received"),
            ("Body", "Có người bán ma túy ở chợ & bến xe"),
            ("To", "+84900000001"),
            ("NumSegments", "1"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "+84912345678"),
            ("MediaUrl0", "https://api.twilio.com/media/ME1"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl1", "https://api.twilio.com/media/ME2"),
            ("MediaContentType1", "text/vcard"),
            ("ApiVersion", "2010-04-01"),
        ]
    }

    #[test]
    fn twilio_signed_message_becomes_an_inbound_message() {
        let params = twilio_sms_params();
        let sig = twilio_sign("tok", HOOK_URL, &params);
        let got = verify_twilio(
            &twilio_cfg("tok"),
            HOOK_URL,
            &twilio_headers(&sig),
            &form(&params),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![Inbound {
                transport: Transport::TWILIO,
                sender: "+84912345678".into(),
                provider_id: Some("SM0123456789abcdef0123456789abcdef".into()),
                to: Some("+84900000001".into()),
                kind: InboundKind::Message {
                    text: "Có người bán ma túy ở chợ & bến xe".into(),
                    photos: vec![PhotoRef::Url("https://api.twilio.com/media/ME1".into())],
                    location: None,
                },
            }]
        );
    }

    #[test]
    fn twilio_wrong_or_missing_signature_is_unauthorized() {
        let params = twilio_sms_params();
        let body = form(&params);
        let cfg = twilio_cfg("tok");
        let wrong_key = twilio_sign("other", HOOK_URL, &params);
        let wrong_url = twilio_sign("tok", "https://evil.example/hooks/sms/twilio", &params);
        for sig in [
            wrong_key.as_str(),
            wrong_url.as_str(),
            "not base64!",
            "AAAA",
        ] {
            assert_eq!(
                verify_twilio(&cfg, HOOK_URL, &twilio_headers(sig), &body),
                Err(HookError::Unauthorized),
                "{sig}"
            );
        }
        assert_eq!(
            verify_twilio(&cfg, HOOK_URL, &HeaderMap::new(), &body),
            Err(HookError::Unauthorized)
        );
        // A changed body no longer matches.
        let good = twilio_sign("tok", HOOK_URL, &params);
        let mut tampered = params.clone();
        tampered[5] = ("Body", "something else");
        assert_eq!(
            verify_twilio(&cfg, HOOK_URL, &twilio_headers(&good), &form(&tampered)),
            Err(HookError::Unauthorized)
        );
        // No token configured: nothing verifies, not even a signature under "".
        let empty = twilio_sign("", HOOK_URL, &params);
        assert_eq!(
            verify_twilio(&twilio_cfg(""), HOOK_URL, &twilio_headers(&empty), &body),
            Err(HookError::Unauthorized)
        );
    }

    #[test]
    fn twilio_without_from_is_malformed_and_status_callbacks_are_ignored() {
        let params = [("MessageSid", "SM1"), ("Body", "hi")];
        let sig = twilio_sign("tok", HOOK_URL, &params);
        assert_eq!(
            verify_twilio(
                &twilio_cfg("tok"),
                HOOK_URL,
                &twilio_headers(&sig),
                &form(&params)
            ),
            Err(HookError::Malformed("missing From".into()))
        );
        let status = [
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("From", "+84900000001"),
            ("To", "+84912345678"),
        ];
        let sig = twilio_sign("tok", HOOK_URL, &status);
        assert_eq!(
            verify_twilio(
                &twilio_cfg("tok"),
                HOOK_URL,
                &twilio_headers(&sig),
                &form(&status)
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn delivery_reports_name_the_delivered_message_only() {
        let twilio = |body: &str| delivered_message(body.as_bytes());
        assert_eq!(
            twilio("MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1").as_deref(),
            Some("SM1")
        );
        assert_eq!(twilio("MessageSid=SM1&MessageStatus=sent"), None);
        assert_eq!(twilio("MessageStatus=delivered"), None);
        // An incoming message is never a report, whatever it says.
        assert_eq!(
            twilio("MessageSid=SM1&MessageStatus=delivered&Body=hi"),
            None
        );
    }

    #[tokio::test]
    async fn twilio_media_is_fetched_only_under_the_configured_api_url() {
        let client = TwilioClient::new(&TwilioConfig {
            account_sid: "AC1".into(),
            auth_token: "tok".into(),
            api_url: "https://api.twilio.com/".into(),
            ..TwilioConfig::default()
        });
        // Refused before any request: another host, a look-alike host, no URL at all.
        for url in [
            "https://evil.example/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            "https://api.twilio.com.evil.example/x",
            "https://api.twilio.com@evil.example/x",
            "file:///etc/passwd",
        ] {
            let got = client
                .fetch_photo(&PhotoRef::Url(url.into()), 1024)
                .await
                .unwrap_err();
            assert!(
                got.contains("not under the configured API URL"),
                "{url}: {got}"
            );
            assert!(!got.contains("evil"), "the error names no URL: {got}");
        }
        assert!(client
            .fetch_photo(&PhotoRef::TelegramFile("f".into()), 1024)
            .await
            .is_err());
    }

    proptest! {
        #[test]
        fn twilio_never_panics_on_arbitrary_input(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            sig in "[ -~]{0,80}",
            url in ".{0,60}",
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&sig) { headers.insert(TWILIO_SIGNATURE_HEADER, v); }
            let _ = verify_twilio(&twilio_cfg("tok"), &url, &headers, &body);
            let _ = twilio_url_variants(&url);
        }

        #[test]
        fn twilio_never_panics_on_signed_bodies(
            body in prop_oneof![
                "[A-Za-z0-9%=&+._~-]{0,200}",
                ".{0,200}",
                proptest::collection::vec(
                    (prop_oneof![Just("From".to_string()), Just("MessageSid".to_string()),
                        Just("Body".to_string()), Just("MediaUrl0".to_string()),
                        Just("MediaContentType0".to_string()), Just("MessageStatus".to_string()),
                        ".{0,12}"], ".{0,30}"),
                    0..12,
                ).prop_map(|pairs| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()),
            ],
            url in prop_oneof![Just(HOOK_URL.to_string()), ".{0,60}"],
        ) {
            let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"tok");
            let sig = base64::engine::general_purpose::STANDARD
                .encode(hmac::sign(&key, twilio_signing_string(&url, &params).as_bytes()).as_ref());
            let result = verify_twilio(&twilio_cfg("tok"), &url, &twilio_headers(&sig), body.as_bytes());
            prop_assert_ne!(result.clone(), Err(HookError::Unauthorized));
            if let Ok(messages) = result {
                prop_assert!(messages.len() <= 1);
            }
        }
    }
}
