//! What every console page shares: the header's account line, rendering, error pages.

use super::error::ConsoleError;
use super::{ConsoleSession, COMMUNE_POLICE};
use crate::accounts::Role;
use crate::i18n::{locales, Texts, DEFAULT_LANG};
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The logged-in account as the header shows it.
pub struct MeView {
    pub name: String,
    pub role: String,
    pub reads_tips: bool,
    pub commune_police: bool,
    pub manages: bool,
    pub campaigns: bool,
    pub reports: bool,
    pub tracker: bool,
}

/// The console speaks Vietnamese (the police's language).
pub fn texts() -> Texts {
    locales().texts(DEFAULT_LANG)
}

/// The header line for a session.
pub fn me(s: &ConsoleSession) -> Option<MeView> {
    let t = texts();
    (s.stage == "full").then(|| MeView {
        name: s.account.display_name.clone(),
        role: t
            .get(&format!("role.{}", s.account.role.as_str()))
            .to_owned(),
        reads_tips: s.account.role.reads_tips(),
        commune_police: COMMUNE_POLICE.contains(&s.account.role),
        manages: matches!(s.account.role, Role::Chief | Role::Admin),
        campaigns: super::CAMPAIGN.contains(&s.account.role),
        reports: super::REPORT_READERS.contains(&s.account.role),
        tracker: super::TRACKER_READERS.contains(&s.account.role),
    })
}

/// Renders a template; a failure is a server error like any other.
pub fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console_message.html")]
pub struct MessagePage {
    pub t: Texts,
    pub me: Option<MeView>,
    pub csrf: String,
    pub heading: Option<String>,
    pub class: &'static str,
    pub message: String,
    pub extra: Option<String>,
}

/// A page with one message (errors, results).
pub fn message(
    s: Option<&ConsoleSession>,
    status: StatusCode,
    class: &'static str,
    message: String,
) -> Response {
    render(
        status,
        MessagePage {
            t: texts(),
            me: s.and_then(me),
            csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
            heading: None,
            class,
            message,
            extra: None,
        },
    )
}

/// "You are not allowed", with the given status.
pub fn denied(status: StatusCode) -> Response {
    message(
        None,
        status,
        "errors",
        texts().get("console.denied").to_owned(),
    )
}
