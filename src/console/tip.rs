//! One tip: opening it (decrypted, audited), photos, and every triage action. Each action
//! is checked against the account's scope and written to the audit log.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::{Account, Role};
use crate::audit::AuditError;
use crate::clock::{now_ms, VN_OFFSET_MS};
use crate::i18n::{local_time, Texts};
use crate::state::AppState;
use crate::store::{OutboxStatus, RetentionRule, TipRow};
use crate::tips::{Category, Outcome, Priority, Status};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::HashMap;

/// Loads a tip the account may see, or why not.
async fn tip_in_scope(
    state: &AppState,
    s: &ConsoleSession,
    id: &str,
) -> Result<TipRow, ConsoleError> {
    match state.store.tip(id).await? {
        Some(row) if s.account.sees_tip_in(row.province_code, row.commune_code) => Ok(row),
        _ => Err(ConsoleError::forbidden()),
    }
}

/// The tip named by the route's `{id}`, loaded only if the session may see it; any other
/// request is refused before the handler runs.
pub struct ScopedTip(pub TipRow);

impl axum::extract::FromRequestParts<AppState> for ScopedTip {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(s) = parts.extensions.get::<ConsoleSession>().cloned() else {
            return Err(ConsoleError::forbidden());
        };
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ConsoleError::not_found())?;
        let id = params.get("id").map(String::as_str).unwrap_or_default();
        tip_in_scope(state, &s, id).await.map(ScopedTip)
    }
}

/// Writes an audit entry about a tip (never its content). Every read of a tip goes
/// through here, and a failure fails the request: nothing is shown unaudited.
async fn audit(
    state: &AppState,
    s: &ConsoleSession,
    row: &TipRow,
    action: &str,
    detail: &str,
) -> Result<(), AuditError> {
    state
        .audit
        .record(
            Some(&s.account.id),
            action,
            Some(&row.id),
            row.province_code,
            row.commune_code,
            detail,
        )
        .await
        .map(|_| ())
}

/// Makes a change to a tip, audited first: the entry is committed before `change` runs,
/// so a change is never made without its entry (an audit log that refuses the entry
/// refuses the change). A change that then fails is recorded as `tip.failed` with the
/// action's name (best effort: the failure is already an error page). A change also drops
/// the briefly cached open-tip counts, so the officer who made it sees it counted on the
/// next queue page.
async fn audited<T, E>(
    state: &AppState,
    s: &ConsoleSession,
    row: &TipRow,
    action: &str,
    detail: &str,
    change: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConsoleError>
where
    ConsoleError: From<E>,
{
    audit(state, s, row, action, detail).await?;
    let done = change.await;
    state.console_cache.open.clear();
    match done {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Err(failed) = audit(state, s, row, "tip.failed", action).await {
                tracing::error!(error = %failed, action, "a failed change's audit entry could not be written");
            }
            Err(e.into())
        }
    }
}

/// A line of the tip's timeline.
pub struct Event {
    pub when: String,
    pub who: String,
    pub what: String,
    pub text: String,
    pub kind: &'static str,
}

/// An audit entry's detail as officers read it: states, categories, priorities and
/// communes by their names, not their codes ("Mới → Đang xử lý", "→ Phường Hoàn Kiếm").
/// An entry written before this wording, or one it does not know, is shown as stored.
fn change_in_words(t: Texts, geo: &crate::geo::Geo, action: &str, detail: &str) -> String {
    let named = |prefix: &str, key: &str| -> String {
        let full = format!("{prefix}.{key}");
        let label = t.get(&full);
        if label == full {
            key.to_owned()
        } else {
            label.to_owned()
        }
    };
    let arrow = |f: &dyn Fn(&str) -> String| -> Option<String> {
        let (from, to) = detail.split_once(" → ")?;
        Some(format!("{} → {}", f(from.trim()), f(to.trim())))
    };
    let worded = match action {
        "tip.status" => arrow(&|side: &str| match side.split_once(" (") {
            Some((status, outcome)) => format!(
                "{} ({})",
                named("tipstatus", status),
                named("outcome", outcome.trim_end_matches(')'))
            ),
            None => named("tipstatus", side),
        }),
        "tip.category" => arrow(&|side: &str| match side.split_once('/') {
            Some((category, priority)) => format!(
                "{}, {}",
                named("category", category),
                named("priority", priority).to_lowercase()
            ),
            None => side.to_owned(),
        }),
        "tip.transfer" => detail
            .trim_start_matches('→')
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|code| geo.commune(code))
            .map(|c| format!("→ {}", c.name)),
        "tip.reward" => Some(
            match detail {
                "yes" => t.get("console.reward_mark"),
                _ => t.get("console.reward_unmark"),
            }
            .to_owned(),
        ),
        "tip.duplicate" => Some(format!("#{}", detail.chars().take(8).collect::<String>())),
        "tip.failed" => Some(named("audit", detail)),
        _ => None,
    };
    worded.unwrap_or_else(|| detail.to_owned())
}

/// One option of a select.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console_tip.html")]
struct TipPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    id: String,
    short: String,
    error: Option<String>,
    category: String,
    priority: String,
    status: String,
    outcome: String,
    channel: String,
    place: String,
    village: String,
    received: String,
    due: String,
    overdue: bool,
    happening_now: bool,
    description: String,
    place_details: String,
    occurred_at: String,
    contact: String,
    photos: Vec<String>,
    /// Photos the tipster sent that never arrived (an MMS's media that failed), in all.
    photos_missing: String,
    events: Vec<Event>,
    /// The changes made to the tip, in words, newest first.
    changes: Vec<Event>,
    duplicate_of: String,
    reward: bool,
    can_triage: bool,
    can_reward: bool,
    statuses: Vec<Opt>,
    outcomes: Vec<Opt>,
    categories: Vec<Opt>,
    priorities: Vec<Opt>,
    assignees: Vec<Opt>,
    /// The transfer picker: provinces, the chosen province's communes, the typed reason.
    transfer_provinces: Vec<Opt>,
    transfer_communes: Vec<Opt>,
    transfer_reason: String,
    /// Its content was destroyed under the retention rules.
    destroyed: bool,
    /// What retention does to it, in words: destroyed when, held until when and why, or
    /// when it will be destroyed.
    retention: String,
    /// The evidence hold form, as typed.
    hold_until: String,
    hold_reason: String,
    held: bool,
}

#[derive(Deserialize, Default)]
pub struct TipQuery {
    #[serde(default)]
    error: String,
    /// The transfer picker's province (without script, its "Chọn" button).
    #[serde(default)]
    tp: String,
    /// Set by the picker's redirect: the reason typed is held for this page.
    #[serde(default)]
    kept: String,
}

/// Where the transfer form's reason waits while the no-script picker shows a province's
/// communes (post/redirect/get): bound to the account and the tip, in memory only.
fn transfer_draft_key(account: &str, tip: &str) -> String {
    format!("transfer:{account}:{tip}")
}

/// What the page's forms hold after a refusal: the transfer picker's province and
/// commune and its reason; the evidence hold's day and reason.
#[derive(Default)]
pub struct TransferKept {
    province: Option<i64>,
    commune: Option<i64>,
    reason: String,
    hold_until: String,
    hold_reason: String,
}

fn priority_key(p: i64) -> &'static str {
    match Priority::from_i64(p) {
        Some(Priority::Urgent) => "urgent",
        Some(Priority::High) => "high",
        Some(Priority::Low) => "low",
        _ => "normal",
    }
}

/// The tip, decrypted; the read is audited.
pub async fn tip_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    q: Result<Query<TipQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = texts();
    let error = Some(q.error)
        .filter(|e| !e.is_empty())
        .map(|e| t.get(&format!("console.error_{e}")).to_owned());
    let reason = if q.kept.is_empty() {
        String::new()
    } else {
        state
            .submissions
            .draft(&transfer_draft_key(&s.account.id, &row.id))
            .and_then(|(r, _)| String::from_utf8(r).ok())
            .unwrap_or_default()
    };
    let kept = TransferKept {
        province: q.tp.trim().parse().ok(),
        reason,
        ..TransferKept::default()
    };
    render_tip(&state, &s, row, error, kept, StatusCode::OK).await
}

/// The tip page: the tip decrypted (the read is audited), its conversation, changes and
/// forms; `error` on top and the transfer form as `kept`.
async fn render_tip(
    state: &AppState,
    s: &ConsoleSession,
    row: TipRow,
    error: Option<String>,
    kept: TransferKept,
    status: StatusCode,
) -> Page {
    let id = row.id.clone();
    let intake = &state.intake;
    let store = &state.store;
    let t = texts();
    // The row read by `ScopedTip` is the one opened: the tip is read once per request.
    let opened = intake.open_row(row.clone())?;
    // The audit entry's commit (an fsync) overlaps the reads the page needs; the page is
    // still rendered only once the entry is committed. The trail read here may miss this
    // very entry, which the timeline leaves out anyway (it skips `tip.open`).
    let reads = async {
        tokio::try_join!(
            async { store.messages(&id).await },
            async { store.notes(&id).await },
            async { store.attachments(&id).await },
            async { store.audit_for_tip_except(&id, "tip.open").await },
            async { store.deliveries(&id).await },
            async { store.photo_gaps(&id).await },
            // The commune's accounts name the timeline's people and fill the assignee list.
            async {
                Ok::<_, crate::store::StoreError>(match row.commune_code {
                    Some(c) => state
                        .console_cache
                        .people
                        .get_or(c.to_string(), store.accounts(None, Some(c)))
                        .await
                        .unwrap_or_default(),
                    None => Vec::new(),
                })
            },
            async {
                Ok::<_, crate::store::StoreError>(match row.village_id {
                    Some(v) => store.village(v).await.unwrap_or_default(),
                    None => None,
                })
            },
        )
    };
    let (audited, reads) = tokio::join!(audit(state, s, &row, "tip.open", ""), reads);
    // Fail closed: a tip whose reading could not be audited is not shown.
    audited?;
    let (messages, notes, attachments, trail, deliveries, gaps, accounts, village) = reads?;
    let messages = intake.open_conversation(&row, messages, &attachments)?;
    let notes = intake.open_notes(&row, notes)?;
    let photos = attachments;
    let people: HashMap<String, String> = accounts
        .iter()
        .map(|a| (a.id.clone(), a.display_name.clone()))
        .collect();
    let name_of = |id: &Option<String>| {
        id.as_ref()
            .map(|i| {
                people
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| i.chars().take(8).collect())
            })
            .unwrap_or_default()
    };
    let mut events: Vec<(i64, Event)> = Vec::new();
    for m in messages {
        let police = m.author == "police";
        events.push((
            m.created_at,
            Event {
                when: local_time(m.created_at),
                who: if police {
                    t.get("status.from_police").to_owned()
                } else {
                    t.get("console.tip").to_owned()
                },
                what: if m.photos > 0 {
                    t.fill("status.photos_count", &[("n", &m.photos.to_string())])
                } else {
                    // Whether a police message reached the tipster's chat or phone.
                    deliveries
                        .iter()
                        .filter(|d| d.message_id.as_deref() == Some(m.id.as_str()))
                        .map(|d| {
                            let channel = d.transport.as_str();
                            match OutboxStatus::parse(&d.status) {
                                Some(OutboxStatus::Sent | OutboxStatus::Delivered) => {
                                    t.fill("console.delivery_sent", &[("channel", channel)])
                                }
                                Some(
                                    OutboxStatus::Failed
                                    | OutboxStatus::OptedOut
                                    | OutboxStatus::Cancelled,
                                ) => t.fill(
                                    "console.delivery_failed",
                                    &[
                                        ("channel", channel),
                                        ("reason", d.last_error.as_deref().unwrap_or("")),
                                    ],
                                ),
                                _ => t.fill("console.delivery_queued", &[("channel", channel)]),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
                text: m.text,
                kind: if police { "police" } else { "tipster" },
            },
        ));
    }
    for (author, at, text) in notes {
        events.push((
            at,
            Event {
                when: local_time(at),
                who: name_of(&Some(author)),
                what: t.get("console.notes").to_owned(),
                text,
                kind: "note",
            },
        ));
    }
    let missing_text = |n: i64| t.fill("console.photos_missing", &[("n", &n.to_string())]);
    for g in &gaps {
        events.push((
            g.created_at,
            Event {
                when: local_time(g.created_at),
                who: t.get("console.tip").to_owned(),
                what: t.get("console.photos").to_owned(),
                text: missing_text(g.missing),
                kind: "note",
            },
        ));
    }
    let photos_missing = match gaps.iter().map(|g| g.missing).sum::<i64>() {
        0 => String::new(),
        n => missing_text(n),
    };
    events.sort_by_key(|(at, _)| *at);
    // The record of changes, apart from the conversation: each in words, newest first;
    // reads (opening the tip, viewing a photo) are in the audit log, not here.
    let geo = intake.geo();
    let mut changes: Vec<Event> = trail
        .iter()
        .filter(|a| a.action != "tip.open" && a.action != "tip.photo")
        .map(|a| Event {
            when: local_time(a.at),
            who: name_of(&a.actor_id),
            what: t.get(&format!("audit.{}", a.action)).to_owned(),
            text: change_in_words(t, geo, &a.action, &a.detail),
            kind: "audit",
        })
        .collect();
    changes.reverse();
    let place = match (
        row.commune_code.and_then(|c| geo.commune(c)),
        row.province_code.and_then(|p| geo.province(p)),
    ) {
        (Some(c), Some(p)) => format!("{}, {}", c.name, p.name),
        (None, Some(p)) => p.name.clone(),
        (Some(c), None) => c.name.clone(),
        (None, None) => String::new(),
    };
    let village = match (row.village_id, &opened.village_text) {
        (Some(_), _) => village.map(|x| x.name).unwrap_or_default(),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    let role = s.account.role;
    // A destroyed tip has nothing left to change: its forms are gone.
    let destroyed = row.destroyed_at.is_some();
    let can_triage = matches!(role, Role::Officer | Role::Chief) && !destroyed;
    let retention = retention_text(state, &row, t, &name_of).await?;
    let opt = |prefix: &str, values: Vec<&str>, chosen: &str| -> Vec<Opt> {
        values
            .into_iter()
            .map(|v| Opt {
                value: v.to_owned(),
                label: t.get(&format!("{prefix}.{v}")).to_owned(),
                selected: v == chosen,
            })
            .collect()
    };
    let mut assignees = vec![Opt {
        value: String::new(),
        label: t.get("console.nobody").to_owned(),
        selected: row.assignee_id.is_none(),
    }];
    for a in accounts {
        if (a.role == "officer" || a.role == "chief") && !a.disabled {
            assignees.push(Opt {
                selected: row.assignee_id.as_deref() == Some(a.id.as_str()),
                value: a.id,
                label: a.display_name,
            });
        }
    }
    let geo = intake.geo();
    let transfer_province = kept.province.or(row.province_code).unwrap_or(1);
    let transfer_provinces = geo
        .provinces()
        .iter()
        .map(|p| Opt {
            value: p.code.to_string(),
            label: p.name.clone(),
            selected: p.code == transfer_province,
        })
        .collect();
    let transfer_communes = geo
        .communes_of(transfer_province)
        .map(|c| Opt {
            value: c.code.to_string(),
            label: c.name.clone(),
            selected: Some(c.code) == kept.commune,
        })
        .collect();
    Ok(render(
        status,
        TipPage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            short: row.id.chars().take(8).collect(),
            error,
            category: t.get(&format!("category.{}", row.category)).to_owned(),
            priority: t
                .get(&format!("priority.{}", priority_key(row.priority)))
                .to_owned(),
            status: t.get(&format!("tipstatus.{}", row.status)).to_owned(),
            outcome: row
                .outcome
                .as_ref()
                .map(|o| t.get(&format!("outcome.{o}")).to_owned())
                .unwrap_or_default(),
            channel: t.get(&format!("channel.{}", row.channel)).to_owned(),
            place,
            village,
            received: local_time(row.created_at),
            due: local_time(row.due_at),
            overdue: row.due_at < now_ms() && row.status != "closed",
            happening_now: row.happening_now,
            description: opened.description,
            place_details: opened.place_details.unwrap_or_default(),
            occurred_at: opened.occurred_at.unwrap_or_default(),
            contact: opened.contact.unwrap_or_default(),
            photos: photos.into_iter().map(|p| p.id).collect(),
            photos_missing,
            events: events.into_iter().map(|(_, e)| e).collect(),
            changes,
            duplicate_of: row.duplicate_of.clone().unwrap_or_default(),
            reward: row.reward_eligible,
            can_triage,
            can_reward: role == Role::Chief,
            statuses: opt(
                "tipstatus",
                vec!["new", "triaged", "in_progress", "closed"],
                &row.status,
            ),
            outcomes: opt(
                "outcome",
                Outcome::ALL.iter().map(|o| o.as_str()).collect(),
                row.outcome.as_deref().unwrap_or(""),
            ),
            categories: opt(
                "category",
                Category::ALL.iter().map(|c| c.as_str()).collect(),
                &row.category,
            ),
            priorities: opt(
                "priority",
                vec!["urgent", "high", "normal", "low"],
                priority_key(row.priority),
            ),
            assignees,
            transfer_provinces,
            transfer_communes,
            transfer_reason: kept.reason,
            destroyed,
            retention,
            hold_until: kept.hold_until,
            hold_reason: kept.hold_reason,
            held: row.hold_until.is_some_and(|h| h > now_ms()),
            id: row.id,
        },
    ))
}

/// The day a moment falls on in Vietnam time, as the console writes dates.
fn vn_day(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms + VN_OFFSET_MS)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// 00:00 of a day in Vietnam time, in Unix ms.
fn vn_day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
        - VN_OFFSET_MS
}

/// What retention does to this tip, in words.
async fn retention_text(
    state: &AppState,
    row: &TipRow,
    t: Texts,
    name_of: &impl Fn(&Option<String>) -> String,
) -> Result<String, ConsoleError> {
    let date = |d: NaiveDate| d.format("%d/%m/%Y").to_string();
    if let Some(at) = row.destroyed_at {
        return Ok(t.fill("console.destroyed", &[("date", &date(vn_day(at)))]));
    }
    if let Some(until) = row.hold_until.filter(|h| *h > now_ms()) {
        let reason = state.intake.hold_reason(row).await?.unwrap_or_default();
        let who = name_of(&row.hold_by);
        // Held to the end of the day before `until` (00:00 of the next day).
        return Ok(t.fill(
            "console.held",
            &[
                ("date", &date(vn_day(until - 1))),
                ("who", &who),
                ("reason", &reason),
            ],
        ));
    }
    let (Some(closed), true) = (row.closed_at, row.status == "closed") else {
        return Ok(String::new());
    };
    let rules = crate::retention::rules(&state.store, state.config.retention.months).await?;
    let months = rules
        .iter()
        .find(|r| match &r.rule {
            RetentionRule::Setting { commune, category } => {
                row.commune_code == Some(*commune) && row.category == *category
            }
            RetentionRule::Default => true,
        })
        .map_or(0, |r| r.months);
    if months == 0 {
        return Ok(String::new());
    }
    let due = vn_day(closed)
        .checked_add_months(chrono::Months::new(months))
        .unwrap_or_default();
    Ok(t.fill("console.destroy_due", &[("date", &date(due))]))
}

#[derive(Deserialize)]
pub struct HoldForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

/// The longest hold: ten years.
const MAX_HOLD_DAYS: i64 = 3653;

/// Holds a tip as evidence ("giữ làm chứng cứ") to the end of a day, or releases the hold;
/// audited, the reason sealed with the tip's key. A refusal shows the page again with the
/// day and reason typed.
pub async fn hold(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<HoldForm>,
) -> Page {
    let id = row.id.clone();
    if row.destroyed_at.is_some() {
        return back(&id, Some("destroyed"));
    }
    if f.action == "release" {
        let change = state.store.set_hold(&id, None, now_ms());
        audited(&state, &s, &row, "tip.release", "", change).await?;
        return back(&id, None);
    }
    let kept = TransferKept {
        hold_until: f.until.clone(),
        hold_reason: f.reason.clone(),
        ..TransferKept::default()
    };
    let today = vn_day(now_ms());
    let until = NaiveDate::parse_from_str(f.until.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| *d > today && (*d - today).num_days() <= MAX_HOLD_DAYS);
    let reason = clean_text(&f.reason).filter(|r| r.chars().count() <= 500);
    let (Some(until), Some(reason)) = (until, reason) else {
        let key = if until.is_none() {
            "hold_date"
        } else {
            "hold_reason"
        };
        let error = Some(texts().get(&format!("console.error_{key}")).to_owned());
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return render_tip(&state, &s, row, error, kept, status).await;
    };
    let sealed = state.intake.seal_hold_reason(&row, reason)?;
    let end = vn_day_start(until + chrono::Duration::days(1));
    let change = state
        .store
        .set_hold(&id, Some((end, &s.account.id, &sealed)), now_ms());
    audited(&state, &s, &row, "tip.hold", &until.to_string(), change).await?;
    back(&id, None)
}

/// One photo of a tip, only to an authorised session, never cached.
pub async fn photo(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Path((id, photo)): Path<(String, String)>,
) -> Page {
    let Some(jpeg) = state.intake.open_attachment(&id, &photo).await? else {
        return Err(ConsoleError::not_found());
    };
    // Fail closed: a photo whose viewing could not be audited is not sent.
    audit(&state, &s, &row, "tip.photo", &photo).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

fn back(id: &str, error: Option<&str>) -> Page {
    Ok(match error {
        Some(e) => Redirect::to(&format!("/console/tips/{id}?error={e}")).into_response(),
        None => Redirect::to(&format!("/console/tips/{id}")).into_response(),
    })
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    outcome: String,
}

/// Moves a tip along the status machine; closing needs an outcome.
pub async fn set_status(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<StatusForm>,
) -> Page {
    let id = row.id.clone();
    let (Some(from), Some(to)) = (Status::parse(&row.status), Status::parse(&f.status)) else {
        return back(&id, Some("bad_input"));
    };
    if from == to {
        return back(&id, None);
    }
    if !from.can_become(to) {
        return back(&id, Some("bad_transition"));
    }
    let outcome = Outcome::parse(&f.outcome);
    if to == Status::Closed && outcome.is_none() {
        return back(&id, Some("outcome_required"));
    }
    let outcome = (to == Status::Closed).then_some(outcome).flatten();
    let detail = format!(
        "{} → {}{}",
        from.as_str(),
        to.as_str(),
        outcome
            .map(|o| format!(" ({})", o.as_str()))
            .unwrap_or_default()
    );
    let change = state
        .store
        .set_status(&id, to.as_str(), outcome.map(|o| o.as_str()), now_ms());
    audited(&state, &s, &row, "tip.status", &detail, change).await?;
    back(&id, None)
}

#[derive(Deserialize)]
pub struct CategoryForm {
    #[serde(default)]
    category: String,
    #[serde(default)]
    priority: String,
}

/// Changes category and priority; the deadline follows the priority.
pub async fn set_category(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<CategoryForm>,
) -> Page {
    let id = row.id.clone();
    let priority = match f.priority.as_str() {
        "urgent" => Priority::Urgent,
        "high" => Priority::High,
        "normal" => Priority::Normal,
        "low" => Priority::Low,
        _ => return back(&id, Some("bad_input")),
    };
    let Some(category) = Category::parse(&f.category) else {
        return back(&id, Some("bad_input"));
    };
    let due = priority.due_at(row.created_at, &state.config.sla);
    let detail = format!(
        "{}/{} → {}/{}",
        row.category,
        priority_key(row.priority),
        category.as_str(),
        f.priority
    );
    let change =
        state
            .store
            .set_category_priority(&id, category.as_str(), priority.as_i64(), due, now_ms());
    audited(&state, &s, &row, "tip.category", &detail, change).await?;
    back(&id, None)
}

#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    assignee: String,
}

async fn officer_of(state: &AppState, commune: Option<i64>, id: &str) -> Option<Account> {
    let row = state.store.account(id).await.ok()??;
    let a = Account::from_row(&row)?;
    (matches!(a.role, Role::Officer | Role::Chief)
        && !a.disabled
        && a.commune_code == commune
        && commune.is_some())
    .then_some(a)
}

/// Assigns the tip to an officer of its commune (or nobody).
pub async fn assign(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<AssignForm>,
) -> Page {
    let id = row.id.clone();
    let assignee = if f.assignee.is_empty() {
        None
    } else {
        match officer_of(&state, row.commune_code, &f.assignee).await {
            Some(a) => Some(a),
            None => return back(&id, Some("bad_input")),
        }
    };
    let detail = assignee
        .as_ref()
        .map(|a| a.display_name.clone())
        .unwrap_or_else(|| "—".into());
    let change = state
        .store
        .set_assignee(&id, assignee.as_ref().map(|a| a.id.as_str()), now_ms());
    audited(&state, &s, &row, "tip.assign", &detail, change).await?;
    back(&id, None)
}

#[derive(Deserialize)]
pub struct TextForm {
    #[serde(default)]
    text: String,
}

fn clean_text(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty() && t.chars().count() <= crate::intake::MAX_TEXT).then_some(t)
}

/// Adds an internal note (sealed like the tip).
pub async fn add_note(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<TextForm>,
) -> Page {
    let id = row.id.clone();
    let Some(text) = clean_text(&f.text) else {
        return back(&id, Some("bad_input"));
    };
    let change = state.intake.add_note(&row, &s.account.id, text);
    audited(&state, &s, &row, "tip.note", "", change).await?;
    back(&id, None)
}

/// Writes to the tipster, who reads it with the receipt.
pub async fn message(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<TextForm>,
) -> Page {
    let id = row.id.clone();
    let Some(text) = clean_text(&f.text) else {
        return back(&id, Some("bad_input"));
    };
    let change = state.intake.police_message(&id, text);
    audited(&state, &s, &row, "tip.message", "", change).await?;
    back(&id, None)
}

#[derive(Deserialize)]
pub struct DuplicateForm {
    #[serde(default)]
    of: String,
}

/// Marks the tip as a duplicate of another tip of the same commune (and closes it); its
/// tipster still receives the police's messages on the original.
pub async fn duplicate(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<DuplicateForm>,
) -> Page {
    let id = row.id.clone();
    let of = f.of.trim().trim_start_matches('#');
    let store = &state.store;
    let original = match store.tip(of).await {
        Ok(Some(o)) => Some(o),
        _ => None,
    };
    let Some(original) = original.filter(|o| o.id != row.id && o.commune_code == row.commune_code)
    else {
        return back(&id, Some("unknown_tip"));
    };
    let change = store.set_duplicate(&id, &original.id, now_ms());
    audited(&state, &s, &row, "tip.duplicate", &original.id, change).await?;
    back(&id, None)
}

#[derive(Deserialize)]
pub struct TransferForm {
    #[serde(default)]
    province: String,
    #[serde(default)]
    commune: String,
    #[serde(default)]
    reason: String,
    /// "pick" (without script, list the province's communes) or "transfer".
    #[serde(default)]
    action: String,
}

/// Moves the tip to another commune's queue, with a reason (kept as a sealed note). The
/// commune is picked by province, then name; a refusal shows the page again with the
/// error and everything chosen and typed.
pub async fn transfer(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<TransferForm>,
) -> Page {
    let id = row.id.clone();
    let kept = TransferKept {
        province: f.province.trim().parse().ok(),
        commune: f.commune.trim().parse().ok(),
        reason: f.reason.clone(),
        ..TransferKept::default()
    };
    if f.action == "pick" {
        // The province's communes by a redirect to the tip page (Back and reload never post
        // the form again), the reason held for it.
        let key = transfer_draft_key(&s.account.id, &id);
        let held = if f.reason.is_empty() {
            false
        } else {
            state
                .submissions
                .hold(&key, f.reason.clone().into_bytes(), Vec::new())
                .is_ok()
        };
        let province = kept.province.unwrap_or(1);
        let kept = if held { "&kept=1" } else { "" };
        return Ok(Redirect::to(&format!(
            "/console/tips/{id}?tp={province}{kept}#transfer-form"
        ))
        .into_response());
    }
    let refuse = |key: &str| texts().get(&format!("console.error_{key}")).to_owned();
    let commune = kept
        .commune
        .and_then(|c| state.intake.geo().commune(c))
        .cloned()
        .filter(|c| {
            s.account.role != Role::Province || Some(c.province_code) == s.account.province_code
        });
    let Some(commune) = commune else {
        let error = Some(refuse("unknown_commune"));
        return render_tip(
            &state,
            &s,
            row,
            error,
            kept,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let Some(reason) = clean_text(&f.reason).map(str::to_owned) else {
        let error = Some(refuse("reason_required"));
        return render_tip(
            &state,
            &s,
            row,
            error,
            kept,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let note = format!(
        "{} → {}: {reason}",
        texts().get("console.transfer"),
        commune.name
    );
    let change = state.intake.transfer(&row, &s.account.id, &commune, &note);
    let detail = format!("→ {}", commune.code);
    audited(&state, &s, &row, "tip.transfer", &detail, change).await?;
    let _ = state
        .submissions
        .take_photos(&transfer_draft_key(&s.account.id, &id));
    // The tip may now be outside this account's scope.
    if s.account
        .sees_tip_in(Some(commune.province_code), Some(commune.code))
    {
        back(&id, None)
    } else {
        Ok(Redirect::to("/console/queue").into_response())
    }
}

#[derive(Deserialize)]
pub struct RewardForm {
    #[serde(default)]
    eligible: String,
}

/// Marks the tip reward-eligible: the tipster's status page then explains how to claim.
pub async fn reward(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    ScopedTip(row): ScopedTip,
    Form(f): Form<RewardForm>,
) -> Page {
    let id = row.id.clone();
    let eligible = f.eligible == "1";
    let change = state.store.set_reward(&id, eligible, now_ms());
    let detail = if eligible { "yes" } else { "no" };
    audited(&state, &s, &row, "tip.reward", detail, change).await?;
    back(&id, None)
}
