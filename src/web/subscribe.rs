//! The residents' subscription pages, reached from a village's poster: how to subscribe
//! over SMS, Telegram or Zalo, an email form (confirmed by a link), and the confirmation
//! and unsubscribe links every email carries (`List-Unsubscribe-Post` one-click included).
//!
//! The email form is a door that makes the server write to a typed address, so it is
//! guarded: a per-client limit, a honeypot field, and a form token (a double-submit
//! cookie set with the page) so that nothing posts it blind. Its answer is the same
//! whether the address was new, pending or already subscribed.

use super::pages::{lang_links, render, LangLink};
use crate::broadcast::Subscribed;
use crate::channels::Transport;
use crate::crypto::{constant_eq, random_bytes};
use crate::i18n::{locales, Texts};
use crate::state::{Action, AppState, ClientIp, Lang};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

/// The subscription routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/subscribe/confirm", get(confirm_page).post(confirm))
        .route("/subscribe/stop", get(stop_page).post(stop))
        .route("/subscribe/done", get(done_page))
        .route("/subscribe/{village}", get(page).post(subscribe_email))
}

#[derive(Template)]
#[template(path = "subscribe.html")]
struct SubscribePage {
    t: Texts,
    langs: Vec<LangLink>,
    village: Option<String>,
    code: Option<i64>,
    sms_number: String,
    telegram: Option<String>,
    email_enabled: bool,
    email: String,
    notice: Option<String>,
    error: Option<String>,
    action: Option<String>,
    button: String,
    /// The form's token (also set as a cookie with the page); empty on link pages.
    form_token: String,
    /// The honeypot field as it was sent.
    website: String,
}

/// The cookie that carries the email form's token.
const FORM_COOKIE: &str = "tinbao_subscribe";

/// A fresh form token for `page`, and the cookie that goes with it.
fn with_form_token(status: StatusCode, mut page: SubscribePage) -> Response {
    let token = hex::encode(random_bytes::<16>());
    page.form_token = token.clone();
    let mut res = render(status, page);
    // `Secure` over HTTPS is added by `super::security_headers`, for every cookie.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FORM_COOKIE}={token}; Path=/subscribe; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl SubscribePage {
    fn new(lang: Lang) -> SubscribePage {
        SubscribePage {
            t: lang.texts(),
            langs: lang_links(lang),
            village: None,
            code: None,
            sms_number: String::new(),
            telegram: None,
            email_enabled: false,
            email: String::new(),
            notice: None,
            error: None,
            action: None,
            button: String::new(),
            form_token: String::new(),
            website: String::new(),
        }
    }
}

async fn village_page(state: &AppState, lang: Lang, id: &str) -> Result<SubscribePage, Response> {
    let t = lang.texts();
    let not_found = || {
        let mut p = SubscribePage::new(lang);
        p.error = Some(t.get("subscribe.no_village").to_owned());
        render(StatusCode::NOT_FOUND, p)
    };
    let Ok(id) = id.trim().parse::<i64>() else {
        return Err(not_found());
    };
    let village = match state.store.village(id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a village");
            let mut p = SubscribePage::new(lang);
            p.error = Some(t.get("error.try_later").to_owned());
            return Err(render(StatusCode::INTERNAL_SERVER_ERROR, p));
        }
    };
    let commune = state
        .intake
        .geo()
        .commune(village.commune_code)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let cfg = state.broadcasts.config();
    let mut p = SubscribePage::new(lang);
    p.village = Some(format!("{}, {commune}", village.name));
    p.code = Some(village.id);
    p.sms_number = cfg.sms_number.clone();
    p.telegram = (!cfg.telegram_bot.is_empty())
        .then(|| format!("https://t.me/{}?start=dk{}", cfg.telegram_bot, village.id));
    p.email_enabled = state.config.smtp.enabled;
    Ok(p)
}

#[derive(Deserialize)]
struct PageQuery {
    /// Set by the redirect after the email form was taken (post/redirect/get).
    #[serde(default)]
    sent: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    match village_page(&state, lang, &id).await {
        Ok(mut p) => {
            if q.sent.is_some() && p.email_enabled {
                p.notice = Some(lang.texts().get("subscribe.check_email").to_owned());
            }
            with_form_token(StatusCode::OK, p)
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    form_token: String,
    /// The honeypot: people leave it empty.
    #[serde(default)]
    website: String,
}

async fn subscribe_email(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<EmailForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(_) => EmailForm {
            email: String::new(),
            language: String::new(),
            lang: String::new(),
            form_token: String::new(),
            website: String::new(),
        },
    };
    let lang = Lang::known(&form.lang).unwrap_or(lang);
    let mut p = match village_page(&state, lang, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = lang.texts();
    let email = form.email.trim().to_owned();
    p.email = email.clone();
    p.website = form.website.clone();
    if !p.email_enabled {
        p.error = Some(t.get("subscribe.no_email").to_owned());
        return render(StatusCode::SERVICE_UNAVAILABLE, p);
    }
    // Every refusal below keeps what was typed and carries a fresh token.
    let sent_token = cookie(&headers, FORM_COOKIE).unwrap_or("");
    if sent_token.is_empty() || !constant_eq(sent_token.as_bytes(), form.form_token.as_bytes()) {
        p.error = Some(t.get("subscribe.form_expired").to_owned());
        return with_form_token(StatusCode::FORBIDDEN, p);
    }
    if !form.website.is_empty() {
        p.error = Some(t.get("error.honeypot").to_owned());
        return with_form_token(StatusCode::UNPROCESSABLE_ENTITY, p);
    }
    if let Err(l) = state.limits.check(Action::Send, ip) {
        p.error = Some(t.fill(
            "error.rate_limited",
            &[("minutes", &l.minutes().to_string())],
        ));
        let mut res = with_form_token(StatusCode::TOO_MANY_REQUESTS, p);
        res.headers_mut()
            .insert(header::RETRY_AFTER, l.retry_after.as_secs().max(1).into());
        return res;
    }
    if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        p.error = Some(t.get("subscribe.bad_email").to_owned());
        return with_form_token(StatusCode::UNPROCESSABLE_ENTITY, p);
    }
    let language = locales().find(&form.language).map_or(lang.0, |l| l.code);
    let village = p.code.unwrap_or_default();
    match state
        .broadcasts
        .subscribe(Transport::EMAIL, &email, village, language)
        .await
    {
        // The same answer whether the address was new, pending or already subscribed:
        // the page never tells whether someone subscribed.
        // Answered by a redirect to the village's page with the notice: a reload or Back
        // sends nothing again.
        Ok(Subscribed::Pending { .. }) | Ok(Subscribed::Active { .. }) => {
            super::see_other(&format!("/subscribe/{village}?sent=1&lang={}", lang.0))
        }
        Ok(Subscribed::Busy) => {
            p.error = Some(t.get("subscribe.busy").to_owned());
            with_form_token(StatusCode::SERVICE_UNAVAILABLE, p)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a subscription");
            p.error = Some(t.get("error.try_later").to_owned());
            with_form_token(StatusCode::INTERNAL_SERVER_ERROR, p)
        }
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    s: String,
    #[serde(default)]
    t: String,
}

fn link_page(lang: Lang, path: &str, q: &LinkQuery, button_key: &str) -> Response {
    let t = lang.texts();
    let mut p = SubscribePage::new(lang);
    p.action = Some(format!(
        "{path}?s={}&t={}",
        urlencoding(&q.s),
        urlencoding(&q.t)
    ));
    p.button = t.get(button_key).to_owned();
    render(StatusCode::OK, p)
}

/// Keeps only what a link's parameters may hold (digits and hex), so nothing else is
/// echoed into the page.
fn urlencoding(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect()
}

async fn confirm_page(lang: Lang, Query(q): Query<LinkQuery>) -> Response {
    link_page(lang, "/subscribe/confirm", &q, "subscribe.confirm_button")
}

async fn stop_page(lang: Lang, Query(q): Query<LinkQuery>) -> Response {
    link_page(lang, "/subscribe/stop", &q, "subscribe.stop_button")
}

/// What a confirm or stop link did, as the page after it says.
const OUTCOMES: [&str; 4] = [
    "subscribe.confirmed",
    "subscribe.stopped",
    "subscribe.bad_link",
    "error.try_later",
];

/// Follows a confirm or stop link, then answers with a redirect to the page that says
/// what happened (`/subscribe/done`), so that a reload does not post it again.
async fn link_action(state: &AppState, lang: Lang, q: &LinkQuery, stop: bool) -> Response {
    let outcome = match q.s.parse::<i64>() {
        Err(_) => "subscribe.bad_link",
        Ok(id) => {
            let done = if stop {
                state.broadcasts.unsubscribe(id, &q.t).await
            } else {
                state.broadcasts.confirm(id, &q.t).await
            };
            match done {
                Ok(true) if stop => "subscribe.stopped",
                Ok(true) => "subscribe.confirmed",
                Ok(false) => "subscribe.bad_link",
                Err(e) => {
                    tracing::error!(error = %e, "cannot change a subscription");
                    "error.try_later"
                }
            }
        }
    };
    super::see_other(&format!("/subscribe/done?r={outcome}&lang={}", lang.0))
}

#[derive(Deserialize)]
struct DoneQuery {
    #[serde(default)]
    r: String,
}

/// `GET /subscribe/done?r=…`: what a confirm or stop link did.
async fn done_page(lang: Lang, Query(q): Query<DoneQuery>) -> Response {
    let t = lang.texts();
    let mut p = SubscribePage::new(lang);
    match OUTCOMES.iter().find(|k| **k == q.r) {
        Some(k) if k.starts_with("subscribe.con") || k.starts_with("subscribe.sto") => {
            p.notice = Some(t.get(k).to_owned());
            render(StatusCode::OK, p)
        }
        Some(k) => {
            p.error = Some(t.get(k).to_owned());
            let status = if k.starts_with("error.") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            render(status, p)
        }
        None => {
            p.error = Some(t.get("subscribe.bad_link").to_owned());
            render(StatusCode::NOT_FOUND, p)
        }
    }
}

async fn confirm(
    State(state): State<AppState>,
    lang: Lang,
    Query(q): Query<LinkQuery>,
) -> Response {
    link_action(&state, lang, &q, false).await
}

/// Also the RFC 8058 one-click target (its body, `List-Unsubscribe=One-Click`, is not
/// needed).
async fn stop(State(state): State<AppState>, lang: Lang, Query(q): Query<LinkQuery>) -> Response {
    link_action(&state, lang, &q, true).await
}
