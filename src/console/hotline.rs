//! Hotline intake: the duty officer types a tip received by phone and reads the receipt
//! to the caller. The tip goes through the same intake as every channel.

use super::error::Page;
use super::pages::{self, me, render, texts, MeView};
use super::ConsoleSession;
use crate::i18n::Texts;
use crate::intake::{IntakeError, TipInput};
use crate::state::{once, AppState};
use crate::tips::{Category, Channel};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

/// One category choice.
pub struct Choice {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console_hotline.html")]
struct HotlinePage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    commune: String,
    categories: Vec<Choice>,
    villages: Vec<String>,
    form: HotlineForm,
    errors: Vec<String>,
}

/// The hotline form as typed (kept on a bad input).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct HotlineForm {
    #[serde(default)]
    category: String,
    #[serde(default)]
    village: String,
    #[serde(default)]
    place_details: String,
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    happening_now: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    contact: String,
    /// The form's submission token (`state::once`): a call sent twice is one tip.
    #[serde(default)]
    submission: String,
}

/// The receipt page's cookie, path and sealing kind.
const HOTLINE_COOKIE: &str = "tinbao_hotline";
const HOTLINE_DONE: &str = "/console/hotline/done";
const HOTLINE_VIEW: &str = "hotline-view";

async fn page_for(
    state: &AppState,
    s: &ConsoleSession,
    form: HotlineForm,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let mut form = form;
    form.submission = once::token_or_new(&form.submission);
    let t = texts();
    let commune = s
        .account
        .commune_code
        .and_then(|c| state.intake.geo().commune(c))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let villages = match s.account.commune_code {
        Some(c) => state
            .intake
            .store()
            .villages(c)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect(),
        None => Vec::new(),
    };
    let categories = Category::ALL
        .iter()
        .map(|c| Choice {
            value: c.as_str(),
            label: t.get(&format!("category.{}", c.as_str())).to_owned(),
            selected: form.category == c.as_str(),
        })
        .collect();
    render(
        status,
        HotlinePage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            commune,
            categories,
            villages,
            form,
            errors,
        },
    )
}

/// The hotline form.
pub async fn page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
) -> Response {
    page_for(
        &state,
        &s,
        HotlineForm::default(),
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

/// Stores the call as a tip of the officer's commune and shows the receipt to read out.
pub async fn submit(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Form(f): Form<HotlineForm>,
) -> Page {
    let t = texts();
    let input = TipInput {
        category: f.category.clone(),
        province: s.account.province_code,
        commune: s.account.commune_code,
        village: f.village.clone(),
        place_details: f.place_details.clone(),
        occurred_at: f.occurred_at.clone(),
        happening_now: !f.happening_now.is_empty(),
        description: f.description.clone(),
        contact: Some(f.contact.clone()).filter(|c| !c.trim().is_empty()),
        photos: Vec::new(),
    };
    // One call, one tip: the form sent again (a double click, a reload) files nothing
    // more and leads to the same receipt page, shown once.
    let token = once::token_or_new(&f.submission);
    let file = async {
        let receipt = state.intake.submit(Channel::Hotline, input).await?;
        // The officer counts this call on the next queue page.
        state.console_cache.open.clear();
        // The call is stored whatever happens to its audit entry: its receipt must
        // reach the caller, so a failed entry is reported, not allowed to hide it.
        if let Err(e) = state
            .audit
            .record(
                Some(&s.account.id),
                "tip.hotline",
                None,
                s.account.province_code,
                s.account.commune_code,
                "",
            )
            .await
        {
            tracing::error!(error = %e, "the hotline call's audit entry could not be written");
        }
        let keys = state.intake.keys();
        Ok::<_, IntakeError>(once::seal_view(
            keys,
            HOTLINE_VIEW,
            &token,
            &receipt,
            once::now_s(),
        ))
    };
    match state.submissions.file_once(&token, file).await {
        Ok(view) => Ok(once::view_redirect(
            &state,
            HOTLINE_DONE,
            HOTLINE_COOKIE,
            &view,
            &token,
        )),
        Err(IntakeError::Invalid(errors)) => {
            let errors = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, t.get(e.code)))
                .collect();
            Ok(page_for(&state, &s, f, errors, StatusCode::UNPROCESSABLE_ENTITY).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /console/hotline/done`: the call's receipt to read out, once; a reload says it
/// was shown (the tip is in the queue).
pub async fn done(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    headers: axum::http::HeaderMap,
) -> Response {
    let t = texts();
    let receipt = once::take_view(&state, &headers, HOTLINE_COOKIE, HOTLINE_VIEW);
    let page = render(
        StatusCode::OK,
        pages::MessagePage {
            t,
            me: me(&s),
            csrf: s.csrf.clone(),
            heading: Some(t.get("console.hotline").to_owned()),
            class: "note",
            message: match receipt {
                Some(_) => t.get("console.hotline_receipt"),
                None => t.get("console.hotline_shown"),
            }
            .to_owned(),
            extra: receipt.map(|r| r.to_string()),
        },
    );
    once::shown_once(page, HOTLINE_COOKIE, HOTLINE_DONE)
}
