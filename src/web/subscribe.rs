//! The residents' subscription pages, reached from a village's poster: how to subscribe
//! over SMS, Telegram or Zalo, an email form (confirmed by a link), and the confirmation
//! and unsubscribe links every email carries (`List-Unsubscribe-Post` one-click included).

use super::pages::{lang_links, render, LangLink};
use crate::broadcast::Subscribed;
use crate::channels::Transport;
use crate::i18n::{locales, Texts};
use crate::state::AppState;
use crate::state::Lang;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

/// The subscription routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/subscribe/confirm", get(confirm_page).post(confirm))
        .route("/subscribe/stop", get(stop_page).post(stop))
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
            p.error = Some(t.get("error.internal").to_owned());
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

async fn page(State(state): State<AppState>, lang: Lang, Path(id): Path<String>) -> Response {
    match village_page(&state, lang, &id).await {
        Ok(p) => render(StatusCode::OK, p),
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
}

async fn subscribe_email(
    State(state): State<AppState>,
    lang: Lang,
    Path(id): Path<String>,
    Form(form): Form<EmailForm>,
) -> Response {
    let lang = Lang::known(&form.lang).unwrap_or(lang);
    let mut p = match village_page(&state, lang, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = lang.texts();
    let email = form.email.trim().to_owned();
    p.email = email.clone();
    if !p.email_enabled {
        p.error = Some(t.get("subscribe.no_email").to_owned());
        return render(StatusCode::SERVICE_UNAVAILABLE, p);
    }
    if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        p.error = Some(t.get("subscribe.bad_email").to_owned());
        return render(StatusCode::UNPROCESSABLE_ENTITY, p);
    }
    let language = locales().find(&form.language).map_or(lang.0, |l| l.code);
    let village = p.code.unwrap_or_default();
    match state
        .broadcasts
        .subscribe(Transport::EMAIL, &email, village, language)
        .await
    {
        Ok(Subscribed::Pending { .. }) => {
            p.notice = Some(t.get("subscribe.check_email").to_owned());
            p.email.clear();
            render(StatusCode::OK, p)
        }
        Ok(Subscribed::Active { .. }) => {
            p.notice = Some(t.get("subscribe.already").to_owned());
            p.email.clear();
            render(StatusCode::OK, p)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a subscription");
            p.error = Some(t.get("error.internal").to_owned());
            render(StatusCode::INTERNAL_SERVER_ERROR, p)
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

async fn link_action(state: &AppState, lang: Lang, q: &LinkQuery, stop: bool) -> Response {
    let t = lang.texts();
    let mut p = SubscribePage::new(lang);
    let Ok(id) = q.s.parse::<i64>() else {
        p.error = Some(t.get("subscribe.bad_link").to_owned());
        return render(StatusCode::BAD_REQUEST, p);
    };
    let done = if stop {
        state.broadcasts.unsubscribe(id, &q.t).await
    } else {
        state.broadcasts.confirm(id, &q.t).await
    };
    match done {
        Ok(true) => {
            p.notice = Some(
                t.get(if stop {
                    "subscribe.stopped"
                } else {
                    "subscribe.confirmed"
                })
                .to_owned(),
            );
            render(StatusCode::OK, p)
        }
        Ok(false) => {
            p.error = Some(t.get("subscribe.bad_link").to_owned());
            render(StatusCode::BAD_REQUEST, p)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot change a subscription");
            p.error = Some(t.get("error.internal").to_owned());
            render(StatusCode::INTERNAL_SERVER_ERROR, p)
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
