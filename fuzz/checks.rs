//! What each fuzz target checks, one function per target, shared by the libFuzzer targets
//! (`fuzz_targets/*.rs`) and by the corpus replay in the service's own test suite
//! (`tests/api/fuzz_corpus.rs`, stable `cargo test`), so both run the same code. Each
//! function takes any bytes and must not panic; the asserts are properties of the parsers.
//! Uses only crates the service itself depends on.

#![allow(dead_code)]

pub mod telegram_webhook {

    /// The Telegram webhook body, read by `channels::telegram::parse_webhook` exactly as
    /// `POST /hooks/telegram` reads it once the secret header has been checked.
    pub fn check(body: &[u8]) {
        let _ = tinbao::channels::telegram::parse_webhook(body);
    }
}

pub mod zalo_webhook {
    use tinbao::channels::{zalo, HookError};
    use tinbao::config::ZaloConfig;

    const APP_ID: &str = "4318592736451029384";
    const SECRET: &str = "fuzz-oa-secret";

    fn timestamp_of(body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        match v.get("timestamp")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        }
    }

    /// The Zalo OA webhook body. The target signs each input the way Zalo does (with the pub
    /// `zalo::signature`), so the fuzzer's bytes get past the signature check and reach the
    /// event parser through `zalo::verify_and_parse`, the function `POST /hooks/zalo` calls.
    pub fn check(body: &[u8]) {
        let cfg = ZaloConfig {
            enabled: true,
            app_id: APP_ID.into(),
            oa_secret_key: SECRET.into(),
            ..ZaloConfig::default()
        };
        let timestamp = timestamp_of(body).unwrap_or_default();
        let now_ms = timestamp.trim().parse::<i64>().unwrap_or(0);
        let mut headers = axum::http::HeaderMap::new();
        let sig = zalo::signature(APP_ID, body, &timestamp, SECRET);
        headers.insert(
            zalo::SIGNATURE_HEADER,
            sig.parse().expect("hex is a header value"),
        );
        let signed = zalo::verify_and_parse(&cfg, &headers, body, now_ms);
        // A body that carries its timestamp is signed correctly here: refusing the signature
        // would mean the check and the signer disagree.
        if timestamp_of(body).is_some() {
            if let Err(HookError::Unauthorized) = &signed {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                let app_matches = match v.get("app_id") {
                    Some(serde_json::Value::String(s)) => s == APP_ID,
                    Some(serde_json::Value::Number(n)) => n.to_string() == APP_ID,
                    _ => true,
                };
                assert!(!app_matches, "a correctly signed Zalo body was refused");
            }
        }
        // And the same body with no or a wrong signature is always refused.
        let unsigned = zalo::verify_and_parse(&cfg, &axum::http::HeaderMap::new(), body, now_ms);
        assert_eq!(unsigned, Err(HookError::Unauthorized));
    }
}

pub mod twilio_webhook {
    use base64::Engine;
    use tinbao::channels::{sms, HookError};
    use tinbao::config::TwilioConfig;

    const URL: &str = "https://tinbao.example/hooks/sms/twilio";
    const TOKEN: &str = "fuzz-auth-token";

    fn twilio_signature(body: &[u8]) -> String {
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        params.sort();
        let mut s = String::from(URL);
        for (k, v) in params {
            s.push_str(&k);
            s.push_str(&v);
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, s.as_bytes()))
    }

    /// The Twilio form body. The target signs each input as Twilio does (HMAC-SHA1 over the
    /// URL and the sorted parameters) so the bytes reach the parser through
    /// `sms::verify_twilio` and `twilio::delivered_message`, the functions
    /// `POST /hooks/sms/twilio` calls.
    pub fn check(body: &[u8]) {
        let cfg = TwilioConfig {
            enabled: true,
            auth_token: TOKEN.into(),
            ..TwilioConfig::default()
        };
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            sms::TWILIO_SIGNATURE_HEADER,
            twilio_signature(body)
                .parse()
                .expect("base64 is a header value"),
        );
        let parsed = sms::verify_twilio(&cfg, URL, &headers, body);
        assert_ne!(
            parsed,
            Err(HookError::Unauthorized),
            "a signed body was refused"
        );
        let _ = sms::twilio::delivered_message(body);
        let unsigned = sms::verify_twilio(&cfg, URL, &axum::http::HeaderMap::new(), body);
        assert_eq!(unsigned, Err(HookError::Unauthorized));
    }
}

pub mod android_webhook {
    use tinbao::channels::sms::android::{ANDROID_SIGNATURE_HEADER, ANDROID_TIMESTAMP_HEADER};
    use tinbao::channels::{sms, HookError};
    use tinbao::config::AndroidSmsConfig;

    const SECRET: &str = "fuzz-webhook-secret";
    const NOW_S: i64 = 1_780_000_000;

    /// The Android SMS Gateway's JSON body. The target signs each input as the gateway does
    /// (hex HMAC-SHA256 over body + timestamp) so the bytes reach the parser through
    /// `sms::verify_android` and `android::delivered_message`, the functions
    /// `POST /hooks/sms/android` calls.
    pub fn check(body: &[u8]) {
        let cfg = AndroidSmsConfig {
            enabled: true,
            webhook_secret: SECRET.into(),
            ..AndroidSmsConfig::default()
        };
        let timestamp = NOW_S.to_string();
        let mut signed = body.to_vec();
        signed.extend_from_slice(timestamp.as_bytes());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let signature = hex::encode(ring::hmac::sign(&key, &signed));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(ANDROID_SIGNATURE_HEADER, signature.parse().unwrap());
        headers.insert(ANDROID_TIMESTAMP_HEADER, timestamp.parse().unwrap());
        let parsed = sms::verify_android(&cfg, &headers, body, NOW_S * 1000);
        assert!(
            !matches!(parsed, Err(HookError::Unauthorized | HookError::Stale)),
            "a signed, fresh body was refused"
        );
        let _ = sms::android::delivered_message(body);
    }
}

pub mod tip_form_multipart {
    const CONTENT_TYPES: [&str; 4] = [
        "multipart/form-data; boundary=tinbaofuzz",
        "multipart/form-data; boundary=\"tinbao fuzz\"",
        "multipart/form-data; boundary=-",
        "multipart/form-data",
    ];

    /// The tip form's multipart body (`POST /tips`, `POST /status/reply`), read by the same
    /// reader the handlers use, through `web::read_tip_form_body`. The first input byte picks
    /// the Content-Type header's shape; the rest is the body.
    pub fn check(data: &[u8]) {
        let Some((&pick, body)) = data.split_first() else {
            return;
        };
        let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let rt = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
        });
        let (photos, _broken) = rt.block_on(tinbao::web::read_tip_form_body(
            content_type,
            axum::body::Bytes::copy_from_slice(body),
        ));
        assert!(photos <= tinbao::intake::MAX_PHOTOS + 1);
    }
}

pub mod sms_text {
    use tinbao::channels::sms::{prepare_text, segments, strip_diacritics};

    /// SMS text handling (channels/sms/text.rs): segment counting, diacritic stripping and the
    /// text readied for a gateway, on any UTF-8 an SMS or a reply can carry.
    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let s = segments(text);
        assert!(s.segments >= 1);
        let _ = strip_diacritics(text);
        let plain = prepare_text(text, false);
        let stripped = prepare_text(text, true);
        let _ = segments(&plain);
        let st = segments(&stripped);
        assert!(st.segments >= 1);
    }
}

pub mod chat_commands {
    use std::sync::OnceLock;

    use tinbao::channels::InboundKind;
    use tinbao::dialog::bot::Bot;
    use tinbao::dialog::engine::{step, Context, DialogState};
    use tinbao::geo::Geo;
    use tinbao::store::{Commune, Province};

    fn world() -> &'static (Bot, Geo) {
        static WORLD: OnceLock<(Bot, Geo)> = OnceLock::new();
        WORLD.get_or_init(|| {
            let units = tinbao::geo::shipped_units();
            let mut provinces: Vec<Province> = units
                .iter()
                .map(|u| Province {
                    code: u.province_code,
                    name: u.province_name.clone(),
                })
                .collect();
            provinces.dedup_by_key(|p| p.code);
            let communes = units
                .iter()
                .map(|u| Commune {
                    code: u.commune_code,
                    province_code: u.province_code,
                    name: u.commune_name.clone(),
                })
                .collect();
            (
                Bot::shipped().expect("the shipped bot loads"),
                Geo::new(provinces, communes),
            )
        })
    }

    /// What a person types to the bots: the dialog engine's command and answer parsing
    /// (`dialog::engine::step` with the shipped bot and communes) over a conversation of
    /// several messages (one per input line), and the one-message subscription parser
    /// (`dialog::direct_subscription`) the SMS and Telegram paths use.
    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let (bot, geo) = world();
        let _ = tinbao::dialog::direct_subscription(text);
        let _ = tinbao::geo::fold(text);
        let mut state = DialogState::new("vi");
        for (i, line) in text.split('\n').take(16).enumerate() {
            let _ = tinbao::dialog::direct_subscription(line);
            let receipt_ref = |r: &tinbao::crypto::Receipt| format!("ref-{}", r.digits().len());
            let ctx = Context {
                geo,
                has_open_tip: i % 2 == 1,
                receipt_ref: &receipt_ref,
            };
            let input = InboundKind::Message {
                text: line.to_owned(),
                photos: vec![],
                location: None,
            };
            let _ = step(bot, &mut state, &input, &ctx);
        }
    }
}

pub mod photo_decode {
    use tinbao::intake::photo::{sanitize, PhotoLimits};

    /// Photo decoding (intake/photo.rs): `photo::sanitize`, which every channel's photos go
    /// through. The parsers, the orientation and the resizer run the same code at any size;
    /// the pixel limit here is 65,536 rather than the default 40 million so that an input
    /// declaring a large image costs a fraction of a millisecond, not a 160 MB buffer, and a
    /// campaign reaches millions of runs on two cores (the default limit itself is tested in
    /// `intake::photo`). A long strip (3000 × 20) still reaches the resizer.
    pub fn check(data: &[u8]) {
        let limits = PhotoLimits {
            max_pixels: 1 << 16,
            ..PhotoLimits::default()
        };
        if let Ok(clean) = sanitize(data, &limits) {
            assert!(clean.width <= 2560 && clean.height <= 2560);
        }
    }
}
