//! The commune's retention page: how long each category's closed tips keep their content
//! (the chief sets it, audited; officers read it), what the next 30 days' passes will
//! destroy, and the tips held as evidence.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::Role;
use crate::clock::{now_ms, VN_OFFSET_MS};
use crate::i18n::Texts;
use crate::state::AppState;
use crate::tips::Category;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;
use std::collections::HashMap;

/// The longest period a chief may set, in months (ten years).
pub const MAX_MONTHS: i64 = 120;

/// One category's line: its period as set (empty: the default) and as typed.
pub struct CategoryLine {
    code: String,
    label: String,
    value: String,
}

/// One line of what is coming: the day, the category, how many tips.
pub struct ComingLine {
    day: String,
    category: String,
    tips: i64,
}

#[derive(Template)]
#[template(path = "console_retention.html")]
struct RetentionPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    notice: Option<String>,
    default_text: String,
    can_set: bool,
    lines: Vec<CategoryLine>,
    coming: Vec<ComingLine>,
    /// Held tips: short id, full id, until.
    holds: Vec<(String, String, String)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RetentionQuery {
    #[serde(default)]
    saved: String,
}

async fn page(
    state: &AppState,
    s: &ConsoleSession,
    typed: Option<&HashMap<String, String>>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Page {
    let commune = s.account.commune_code.ok_or_else(ConsoleError::forbidden)?;
    let t = texts();
    let now = now_ms();
    let months = state.config.retention.months;
    let settings: HashMap<String, i64> = state
        .store
        .retention_settings()
        .await?
        .into_iter()
        .filter(|(c, _, _)| *c == commune)
        .map(|(_, category, m)| (category, m))
        .collect();
    let lines = Category::ALL
        .iter()
        .map(|c| {
            let code = c.as_str().to_owned();
            let value = match typed {
                Some(typed) => typed.get(&code).cloned().unwrap_or_default(),
                None => settings.get(&code).map(i64::to_string).unwrap_or_default(),
            };
            CategoryLine {
                label: t.get(&format!("category.{code}")).to_owned(),
                code,
                value,
            }
        })
        .collect();
    let coming = crate::retention::upcoming(&state.store, months, now, 30)
        .await?
        .into_iter()
        .filter(|u| u.commune == Some(commune))
        .map(|u| ComingLine {
            day: u.day.format("%d/%m/%Y").to_string(),
            category: t.get(&format!("category.{}", u.category)).to_owned(),
            tips: u.tips,
        })
        .collect();
    let holds = state
        .store
        .retention_holds(now)
        .await?
        .into_iter()
        .filter(|h| h.1 == Some(commune))
        .map(|(id, _, until)| {
            let day = chrono::DateTime::from_timestamp_millis(until - 1 + VN_OFFSET_MS)
                .map(|d| d.date_naive().format("%d/%m/%Y").to_string())
                .unwrap_or_default();
            (id.chars().take(8).collect(), id, day)
        })
        .collect();
    let default_text = if months == 0 {
        t.get("retention.default_forever").to_owned()
    } else {
        t.fill("retention.default", &[("months", &months.to_string())])
    };
    Ok(render(
        status,
        RetentionPage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            error,
            notice,
            default_text,
            can_set: s.account.role == Role::Chief,
            lines,
            coming,
            holds,
        },
    ))
}

/// `GET /console/retention`.
pub async fn retention_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Query(q): Query<RetentionQuery>,
) -> Page {
    let notice = (q.saved == "1").then(|| texts().get("retention.saved").to_owned());
    page(&state, &s, None, None, notice, StatusCode::OK).await
}

/// `POST /console/retention`: the chief's period per category, in months (empty: the
/// default; 0: kept for ever), audited. A refusal shows everything typed again.
pub async fn set_retention(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Form(form): Form<HashMap<String, String>>,
) -> Page {
    let commune = s.account.commune_code.ok_or_else(ConsoleError::forbidden)?;
    let mut typed = HashMap::new();
    let mut chosen = Vec::new();
    let mut bad = false;
    for c in Category::ALL {
        let code = c.as_str();
        let value: String = form
            .get(&format!("months_{code}"))
            .map(|v| v.trim().chars().take(6).collect())
            .unwrap_or_default();
        let months = if value.is_empty() {
            None
        } else {
            match value.parse::<i64>() {
                Ok(m) if (0..=MAX_MONTHS).contains(&m) => Some(m),
                _ => {
                    bad = true;
                    None
                }
            }
        };
        chosen.push((code, months));
        typed.insert(code.to_owned(), value);
    }
    if bad {
        let error = Some(texts().fill(
            "retention.error_months",
            &[("max", &MAX_MONTHS.to_string())],
        ));
        return page(
            &state,
            &s,
            Some(&typed),
            error,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let detail = chosen
        .iter()
        .map(|(c, m)| format!("{c}={}", m.map_or("-".to_owned(), |m| m.to_string())))
        .collect::<Vec<_>>()
        .join(", ");
    state
        .audit
        .record(
            Some(&s.account.id),
            "commune.retention",
            None,
            s.account.province_code,
            Some(commune),
            &detail,
        )
        .await?;
    let now = now_ms();
    for (category, months) in chosen {
        state
            .store
            .set_retention(commune, category, months, now)
            .await?;
    }
    Ok(Redirect::to("/console/retention?saved=1").into_response())
}
