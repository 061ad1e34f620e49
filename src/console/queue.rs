//! The triage queue: a commune's tips most urgent first, then by deadline; filters, counts,
//! keyset pagination; the province's unplaced tips; live "new tip" events.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::Role;
use crate::clock::now_ms;
use crate::i18n::local_time;
use crate::i18n::Texts;
use crate::state::AppState;
use crate::store::{QueueFilter, QueueScope};
use crate::tips::{Category, Channel, Priority, Status};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use futures_util::stream::Stream;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;

/// Where an account lands after logging in.
pub async fn home(Extension(s): Extension<ConsoleSession>) -> Response {
    match s.account.role {
        Role::VillageHead => Redirect::to("/console/broadcasts").into_response(),
        Role::Statistics => Redirect::to("/console/reports").into_response(),
        _ => Redirect::to("/console/queue").into_response(),
    }
}

/// The queue's query string: every field optional.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    village: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    overdue: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    commune: String,
}

/// One option of a filter select.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A queue line as shown.
pub struct Line {
    pub id: String,
    pub short: String,
    pub category: String,
    pub priority: String,
    pub priority_key: &'static str,
    pub status: String,
    pub village: String,
    pub channel: String,
    pub received: String,
    pub due: String,
    /// "còn 3 giờ" or "quá hạn 5 phút"; empty for a closed tip.
    pub countdown: String,
    pub overdue: bool,
    pub assignee: String,
    pub happening_now: bool,
}

/// A commune's counts (province view).
pub struct CommuneCount {
    pub code: i64,
    pub name: String,
    pub open: i64,
    pub overdue: i64,
}

#[derive(Template)]
#[template(path = "console_queue.html")]
struct QueuePage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    heading: String,
    commune_param: String,
    statuses: Vec<Opt>,
    categories: Vec<Opt>,
    villages: Vec<Opt>,
    channels: Vec<Opt>,
    assignees: Vec<Opt>,
    overdue: bool,
    counts: Vec<(String, i64)>,
    /// Open tips past their deadline in this queue.
    overdue_count: i64,
    /// Whether a filter is set (the filters then show unfolded).
    filtering: bool,
    lines: Vec<Line>,
    next: Option<String>,
    commune_counts: Vec<CommuneCount>,
}

/// The time left to a deadline, or past it, in the largest whole unit: "còn 3 giờ",
/// "quá hạn 5 phút".
fn countdown(t: Texts, due_at: i64, now: i64) -> String {
    let minutes = (due_at - now).abs() / 60_000;
    let (n, unit) = match minutes {
        m if m < 60 => (m.max(1), "minutes"),
        m if m < 48 * 60 => (m / 60, "hours"),
        m => (m / (24 * 60), "days"),
    };
    let span = t.fill(&format!("console.span_{unit}"), &[("n", &n.to_string())]);
    let key = if due_at < now {
        "console.overdue_by"
    } else {
        "console.due_in"
    };
    t.fill(key, &[("span", &span)])
}

fn opts(t: Texts, prefix: &str, values: &[&str], chosen: &str) -> Vec<Opt> {
    values
        .iter()
        .map(|v| Opt {
            value: (*v).to_owned(),
            label: t.get(&format!("{prefix}.{v}")).to_owned(),
            selected: *v == chosen,
        })
        .collect()
}

/// The queue scope an account may see, given an optional requested commune.
pub fn scope_for(state: &AppState, s: &ConsoleSession, commune: Option<i64>) -> Option<QueueScope> {
    let a = &s.account;
    match a.role {
        Role::Officer | Role::Chief => a.commune_code.map(QueueScope::Commune),
        Role::Province => match commune.and_then(|c| state.intake.geo().commune(c)) {
            Some(c) if Some(c.province_code) == a.province_code => {
                Some(QueueScope::Commune(c.code))
            }
            Some(_) => None,
            None => a.province_code.map(QueueScope::ProvinceUnplaced),
        },
        Role::Admin => Some(
            commune
                .map(QueueScope::Commune)
                .unwrap_or(QueueScope::Unplaced),
        ),
        Role::VillageHead | Role::Statistics => None,
    }
}

fn parse_cursor(s: &str) -> Option<(i64, i64, String)> {
    let mut it = s.splitn(3, '.');
    let p = it.next()?.parse().ok()?;
    let d = it.next()?.parse().ok()?;
    let id = it.next()?;
    (id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| (p, d, id.to_owned()))
}

/// The queue page.
pub async fn queue_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = texts();
    let Some(scope) = scope_for(&state, &s, q.commune.parse().ok()) else {
        return Err(ConsoleError::forbidden());
    };
    let store = &state.store;
    let geo = state.intake.geo();
    let now = now_ms();
    let filter = QueueFilter {
        status: Status::parse(&q.status).map(|s| s.as_str().to_owned()),
        category: Category::parse(&q.category).map(|c| c.as_str().to_owned()),
        village_id: q.village.parse().ok(),
        channel: Channel::parse(&q.channel).map(|c| c.as_str().to_owned()),
        assignee_id: match q.assignee.as_str() {
            "" => None,
            "me" => Some(s.account.id.clone()),
            other => Some(other.to_owned()),
        },
        overdue_at: (q.overdue == "1").then_some(now),
        after: parse_cursor(&q.after),
    };
    const PAGE: i64 = 50;
    let mut rows = store.queue(scope, &filter, PAGE + 1).await?;
    let has_next = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let cache = &state.console_cache;
    // The open counts and the overdue count, cached together for a few seconds.
    let load_counts = async {
        let mut counts = store.open_status_counts(scope).await?;
        counts.push(("overdue".to_owned(), store.overdue_count(scope, now).await?));
        Ok::<_, crate::store::StoreError>(counts)
    };
    let mut counts = cache.open.get_or(format!("{scope:?}"), load_counts).await?;
    let closed = cache
        .closed
        .get_or(format!("{scope:?}"), store.closed_count(scope))
        .await?;
    counts.push(("closed".to_owned(), closed));
    let (commune_code, heading) = match scope {
        QueueScope::Commune(c) => (
            Some(c),
            geo.commune(c).map(|c| c.name.clone()).unwrap_or_default(),
        ),
        QueueScope::ProvinceUnplaced(p) => (
            None,
            format!(
                "{} — {}",
                t.get("console.province_unplaced"),
                geo.province(p).map(|p| p.name.as_str()).unwrap_or("")
            ),
        ),
        QueueScope::Unplaced => (None, t.get("console.province_unplaced").to_owned()),
    };
    let villages = match commune_code {
        Some(c) => store.villages(c).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let village_names: HashMap<i64, String> =
        villages.iter().map(|v| (v.id, v.name.clone())).collect();
    let officers = match commune_code {
        Some(c) => store.accounts(None, Some(c)).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let officer_names: HashMap<String, String> = officers
        .iter()
        .map(|a| (a.id.clone(), a.display_name.clone()))
        .collect();
    let next = if has_next {
        rows.last().map(|r| {
            let mut qs = format!("after={}.{}.{}", r.priority, r.due_at, r.id);
            for (k, v) in [
                ("status", &q.status),
                ("category", &q.category),
                ("village", &q.village),
                ("channel", &q.channel),
                ("assignee", &q.assignee),
                ("overdue", &q.overdue),
                ("commune", &q.commune),
            ] {
                if !v.is_empty() {
                    qs.push_str(&format!(
                        "&{k}={}",
                        form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                    ));
                }
            }
            qs
        })
    } else {
        None
    };
    let lines = rows
        .into_iter()
        .map(|r| {
            let prio = Priority::from_i64(r.priority).unwrap_or(Priority::Normal);
            let prio_key = match prio {
                Priority::Urgent => "urgent",
                Priority::High => "high",
                Priority::Normal => "normal",
                Priority::Low => "low",
            };
            Line {
                short: r.id.chars().take(8).collect(),
                category: t.get(&format!("category.{}", r.category)).to_owned(),
                priority: t.get(&format!("priority.{prio_key}")).to_owned(),
                priority_key: prio_key,
                status: t.get(&format!("tipstatus.{}", r.status)).to_owned(),
                village: r
                    .village_id
                    .and_then(|v| village_names.get(&v).cloned())
                    .unwrap_or_default(),
                channel: t.get(&format!("channel.{}", r.channel)).to_owned(),
                received: local_time(r.created_at),
                due: local_time(r.due_at),
                countdown: if r.status == "closed" {
                    String::new()
                } else {
                    countdown(t, r.due_at, now)
                },
                overdue: r.due_at < now && r.status != "closed",
                assignee: r
                    .assignee_id
                    .and_then(|a| officer_names.get(&a).cloned())
                    .unwrap_or_default(),
                happening_now: r.happening_now,
                id: r.id,
            }
        })
        .collect();
    let commune_counts = match (s.account.role, s.account.province_code) {
        (Role::Province, Some(p)) => cache
            .communes
            .get_or(format!("province:{p}"), store.commune_counts(p, now))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(code, open, overdue)| CommuneCount {
                name: geo
                    .commune(code)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                code,
                open,
                overdue,
            })
            .collect(),
        _ => Vec::new(),
    };
    let statuses = opts(
        t,
        "tipstatus",
        &["new", "triaged", "in_progress", "closed"],
        &q.status,
    );
    let categories = opts(
        t,
        "category",
        &Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        &q.category,
    );
    let channels = opts(
        t,
        "channel",
        &Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        &q.channel,
    );
    let villages = villages
        .into_iter()
        .map(|v| Opt {
            selected: v.id.to_string() == q.village,
            value: v.id.to_string(),
            label: v.name,
        })
        .collect();
    let mut assignees = vec![Opt {
        value: "me".into(),
        label: t.get("console.assigned_to_me").to_owned(),
        selected: q.assignee == "me",
    }];
    assignees.extend(
        officers
            .into_iter()
            .filter(|a| a.role == "officer" || a.role == "chief")
            .map(|a| Opt {
                selected: a.id == q.assignee,
                value: a.id,
                label: a.display_name,
            }),
    );
    let count_of = |key: &str| {
        counts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let overdue_count = count_of("overdue");
    let counts = ["new", "triaged", "in_progress", "closed"]
        .iter()
        .map(|st| (t.get(&format!("tipstatus.{st}")).to_owned(), count_of(st)))
        .collect();
    let filtering = [&q.status, &q.category, &q.village, &q.channel, &q.assignee]
        .iter()
        .any(|v| !v.is_empty())
        || q.overdue == "1";
    Ok(render(
        StatusCode::OK,
        QueuePage {
            t,
            me: me(&s),
            csrf: s.csrf.clone(),
            heading,
            commune_param: q.commune.clone(),
            statuses,
            categories,
            villages,
            channels,
            assignees,
            overdue: q.overdue == "1",
            counts,
            overdue_count,
            filtering,
            lines,
            next,
            commune_counts,
        },
    ))
}

/// How often a live event stream checks that its session still stands.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the session behind a live stream still stands: not logged out, not expired,
/// its account not disabled. A failed look-up ends the stream too (the browser
/// reconnects through the guard).
async fn session_stands(state: &AppState, token_hash: &[u8]) -> bool {
    let Ok(Some((row, account))) = state.store.session_with_account(token_hash).await else {
        return false;
    };
    let now = now_ms();
    row.stage == "full"
        && !account.disabled
        && row.last_seen_at >= now - super::IDLE_MINUTES * 60_000
        && row.created_at >= now - super::ABSOLUTE_HOURS * 3_600_000
}

/// Server-sent events: "a new tip arrived in your scope" (no content), for the live queue.
/// The stream ends within [`SESSION_CHECK`] of a logout or of the account being disabled.
pub async fn events(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.intake.subscribe();
    let account = s.account.clone();
    let token_hash = s.token_hash.clone();
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((rx, check), move |(mut rx, mut check)| {
        let account = account.clone();
        let state = state.clone();
        let token_hash = token_hash.clone();
        async move {
            loop {
                tokio::select! {
                    _ = check.tick() => {
                        if !session_stands(&state, &token_hash).await {
                            return None;
                        }
                    }
                    ev = rx.recv() => match ev {
                        Ok(ev) if account.sees_tip_in(ev.province_code, ev.commune_code) => {
                            let prio = if ev.priority == Priority::Urgent {
                                "urgent"
                            } else {
                                "normal"
                            };
                            let event = Event::default().event("tip").data(prio);
                            return Some((Ok(event), (rx, check)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let event = Event::default().event("tip").data("many");
                            return Some((Ok(event), (rx, check)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
