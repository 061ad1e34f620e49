//! The audit log of a scope, for chiefs (their commune) and admins (everything).

use super::error::Page;
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::Role;
use crate::i18n::{local_time, Texts};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;

use axum::Extension;
use std::collections::HashMap;

/// An audit line as shown.
pub struct Line {
    pub seq: i64,
    pub when: String,
    pub who: String,
    pub action: String,
    pub tip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console_audit.html")]
struct AuditPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    lines: Vec<Line>,
}

/// The newest 200 entries of the scope.
pub async fn list(State(state): State<AppState>, Extension(s): Extension<ConsoleSession>) -> Page {
    let store = &state.store;
    let commune = match s.account.role {
        Role::Chief => s.account.commune_code,
        _ => None,
    };
    let entries = store.audit_for_scope(None, commune, None, 200).await?;
    let names: HashMap<String, String> = store
        .accounts(None, commune)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.id, a.display_name))
        .collect();
    let lines = entries
        .into_iter()
        .map(|e| Line {
            seq: e.seq,
            when: local_time(e.at),
            who: e
                .actor_id
                .map(|a| {
                    names
                        .get(&a)
                        .cloned()
                        .unwrap_or_else(|| a.chars().take(8).collect())
                })
                .unwrap_or_default(),
            action: texts().get(&format!("audit.{}", e.action)).to_owned(),
            tip: e.tip_id.unwrap_or_default(),
            detail: e.detail,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        AuditPage {
            t: texts(),
            me: me(&s),
            csrf: s.csrf.clone(),
            lines,
        },
    ))
}
