//! Campaign broadcasts in the console: village heads and chiefs write them (on a phone),
//! see what they will reach and cost, schedule or send them; officers and chiefs approve
//! them; everyone in scope follows their progress. Village heads see counts of
//! subscribers, never an address, and never a tip. Each village has a printable poster
//! with a QR code to its subscription page.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::{Account, Role};
use crate::broadcast::SUBSCRIBE_TRANSPORTS;
use crate::broadcast::{rules, BroadcastError, Draft, DraftError, Preview, Progress, LANGUAGES};
use crate::channels::sms::{prepare_text, segments};
use crate::channels::Transport;
use crate::clock::now_ms;
use crate::clock::VN_OFFSET_MS;
use crate::i18n::{local_time, Texts};
use crate::state::AppState;
use crate::store::{TemplateRow, Village};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Json};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The villages an account works with: a village head its own, police its commune's.
async fn scope_villages(
    state: &AppState,
    a: &Account,
) -> Result<Vec<Village>, crate::store::StoreError> {
    let Some(commune) = a.commune_code else {
        return Ok(Vec::new());
    };
    let all = state.store.villages(commune).await?;
    Ok(match a.role {
        Role::VillageHead => all
            .into_iter()
            .filter(|v| Some(v.id) == a.village_id)
            .collect(),
        Role::Officer | Role::Chief => all,
        _ => Vec::new(),
    })
}

/// A channel's name as people read it.
fn channel_name(t: &Texts, transport: &str) -> String {
    t.get(&format!("broadcast.channel.{transport}")).to_owned()
}

fn status_word(t: &Texts, status: &str) -> String {
    t.get(&format!("broadcast.status.{status}")).to_owned()
}

// ----- the list ---------------------------------------------------------------------------

/// One village's row: active subscribers per channel, in `SUBSCRIBE_TRANSPORTS` order.
struct VillageCounts {
    id: i64,
    name: String,
    total: i64,
    /// Active subscribers per channel, with the channels' names, for the village's card.
    by_channel: Vec<(String, i64)>,
}

struct ListItem {
    id: String,
    title: String,
    status: String,
    status_class: String,
    when: String,
    villages: usize,
    needs_me: bool,
}

struct TemplateItem {
    id: String,
    name: String,
    title: String,
}

/// The saved templates of the account's commune.
async fn template_items(
    state: &AppState,
    a: &Account,
) -> Result<Vec<TemplateItem>, crate::store::StoreError> {
    let Some(c) = a.commune_code else {
        return Ok(Vec::new());
    };
    Ok(state
        .store
        .templates(c)
        .await?
        .into_iter()
        .map(|t| TemplateItem {
            id: t.id,
            name: t.name,
            title: t.title,
        })
        .collect())
}

#[derive(Template)]
#[template(path = "console_broadcasts.html")]
struct ListPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    channels: Vec<String>,
    villages: Vec<VillageCounts>,
    totals: Vec<i64>,
    broadcasts: Vec<ListItem>,
    templates: Vec<TemplateItem>,
    composes: bool,
    chief: bool,
    approval: bool,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    saved: String,
}

/// Broadcasts of the account's scope, subscriber counts per village and channel, the
/// commune's templates, and (for the chief) whether broadcasts need approval.
pub async fn list(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Query(q): Query<ListQuery>,
) -> Page {
    list_page(&state, &s, q).await
}

async fn list_page(state: &AppState, s: &ConsoleSession, q: ListQuery) -> Page {
    let t = texts();
    let a = &s.account;
    let store = &state.store;
    let villages = scope_villages(state, a).await?;
    let ids: Vec<i64> = villages.iter().map(|v| v.id).collect();
    let mut by_village: HashMap<i64, Vec<i64>> = HashMap::new();
    for (village, transport, n) in store.subscriber_counts(&ids).await? {
        if let Some(i) = SUBSCRIBE_TRANSPORTS
            .iter()
            .position(|t| t.as_str() == transport)
        {
            by_village
                .entry(village)
                .or_insert_with(|| vec![0; SUBSCRIBE_TRANSPORTS.len()])[i] += n;
        }
    }
    let mut totals = vec![0; SUBSCRIBE_TRANSPORTS.len() + 1];
    let villages: Vec<VillageCounts> = villages
        .into_iter()
        .map(|v| {
            let counts = by_village
                .remove(&v.id)
                .unwrap_or_else(|| vec![0; SUBSCRIBE_TRANSPORTS.len()]);
            for (i, n) in counts.iter().enumerate() {
                totals[i] += n;
            }
            let total = counts.iter().sum();
            totals[SUBSCRIBE_TRANSPORTS.len()] += total;
            VillageCounts {
                id: v.id,
                name: v.name,
                by_channel: SUBSCRIBE_TRANSPORTS
                    .iter()
                    .zip(&counts)
                    .map(|(tr, n)| (channel_name(&t, tr.as_str()), *n))
                    .collect(),
                total,
            }
        })
        .collect();
    let broadcasts = state
        .broadcasts
        .list(a)
        .await?
        .into_iter()
        .map(|b| ListItem {
            needs_me: rules::may_approve(a, &b),
            villages: b.villages.split(',').filter(|v| !v.is_empty()).count(),
            when: local_time(b.send_at),
            status: status_word(&t, b.status.as_str()),
            status_class: b.status.as_str().to_owned(),
            id: b.id,
            title: b.title,
        })
        .collect();
    let composes = rules::composes(a);
    let templates = if composes {
        template_items(state, a).await?
    } else {
        Vec::new()
    };
    let approval = match a.commune_code {
        Some(c) => store.broadcast_approval(c).await?,
        None => true,
    };
    let notice = match q.saved.as_str() {
        "settings" => Some(t.get("broadcast.settings_saved").to_owned()),
        "template_deleted" => Some(t.get("broadcast.template_deleted").to_owned()),
        _ => None,
    };
    Ok(render(
        StatusCode::OK,
        ListPage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            channels: SUBSCRIBE_TRANSPORTS
                .iter()
                .map(|c| channel_name(&t, c.as_str()))
                .collect(),
            villages,
            totals,
            broadcasts,
            templates,
            composes,
            chief: a.role == Role::Chief,
            approval,
            notice,
        },
    ))
}

// ----- writing ------------------------------------------------------------------------------

/// The compose form as typed; kept whole on every error.
#[derive(Debug, Default, Clone)]
struct ComposeForm {
    title: String,
    texts: BTreeMap<String, String>,
    channels: Vec<String>,
    villages: Vec<i64>,
    /// "now" or "later".
    when: String,
    /// `YYYY-MM-DDTHH:MM`, Asia/Ho_Chi_Minh.
    send_at: String,
    template_name: String,
    action: String,
    /// The form's submission token (`state::once`): sent twice, it makes one broadcast.
    submission: String,
    /// A fresh form: the channels somebody subscribed on come ticked (never sent).
    tick_subscribed: bool,
}

impl ComposeForm {
    fn parse(body: &[u8]) -> ComposeForm {
        let mut f = ComposeForm::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.into_owned();
            match k.as_ref() {
                "title" => f.title = v,
                "channel" => f.channels.push(v),
                "village" => {
                    if let Ok(id) = v.trim().parse() {
                        f.villages.push(id);
                    }
                }
                "when" => f.when = v,
                "send_at" => f.send_at = v,
                "template_name" => f.template_name = v,
                "action" => f.action = v,
                "submission" => f.submission = v,
                k => {
                    if let Some(lang) = k.strip_prefix("text_") {
                        if LANGUAGES.contains(&lang) {
                            f.texts.insert(lang.to_owned(), v);
                        }
                    }
                }
            }
        }
        f
    }

    /// When to send, in ms since the epoch (`None`: now); `Err` when the time is unreadable.
    fn send_at_ms(&self) -> Result<Option<i64>, ()> {
        if self.when != "later" {
            return Ok(None);
        }
        let local = chrono::NaiveDateTime::parse_from_str(self.send_at.trim(), "%Y-%m-%dT%H:%M")
            .map_err(|_| ())?;
        Ok(Some(local.and_utc().timestamp_millis() - VN_OFFSET_MS))
    }

    fn draft(&self, send_at: Option<i64>) -> Draft {
        Draft {
            title: self.title.clone(),
            texts: self.texts.clone(),
            transports: self
                .channels
                .iter()
                .filter_map(|c| Transport::parse(c))
                .filter(|t| SUBSCRIBE_TRANSPORTS.contains(t))
                .collect(),
            villages: self.villages.clone(),
            send_at,
        }
    }
}

struct LanguageField {
    code: &'static str,
    label: String,
    text: String,
    required: bool,
    /// The counter as the server computes it (the script keeps it current as one types).
    counter: String,
}

struct ChannelChoice {
    value: &'static str,
    label: String,
    checked: bool,
    subscribers: i64,
}

struct VillageChoice {
    id: i64,
    name: String,
    checked: bool,
}

struct PreviewView {
    recipients: Vec<(String, i64, bool)>,
    total: i64,
    costs: Vec<String>,
    sms_segments: i64,
    quiet_note: Option<String>,
}

#[derive(Template)]
#[template(path = "console_broadcast_new.html")]
struct ComposePage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    submission: String,
    title: String,
    languages: Vec<LanguageField>,
    channels: Vec<ChannelChoice>,
    villages: Vec<VillageChoice>,
    /// A village head's one village is shown, not chosen.
    fixed_village: bool,
    later: bool,
    send_at: String,
    template_name: String,
    templates: Vec<TemplateItem>,
    errors: Vec<String>,
    notice: Option<String>,
    preview: Option<PreviewView>,
}

fn counter(t: &Texts, text: &str) -> String {
    let s = segments(&prepare_text(text, false));
    t.fill(
        "broadcast.counter",
        &[
            ("chars", &text.chars().count().to_string()),
            ("segments", &s.segments.to_string()),
        ],
    )
}

async fn compose_page(
    state: &AppState,
    s: &ConsoleSession,
    f: ComposeForm,
    errors: Vec<String>,
    notice: Option<String>,
    preview: Option<PreviewView>,
    status: StatusCode,
) -> Page {
    let t = texts();
    let a = &s.account;
    let villages = scope_villages(state, a).await?;
    let ids: Vec<i64> = villages.iter().map(|v| v.id).collect();
    let counts = state.store.subscriber_counts(&ids).await?;
    let chosen: Vec<i64> = if f.villages.is_empty() {
        ids.clone()
    } else {
        f.villages.clone()
    };
    let channels = SUBSCRIBE_TRANSPORTS
        .iter()
        .map(|c| {
            let subscribers = counts
                .iter()
                .filter(|(v, tr, _)| tr == c.as_str() && chosen.contains(v))
                .map(|(_, _, n)| n)
                .sum();
            ChannelChoice {
                value: c.as_str(),
                label: channel_name(&t, c.as_str()),
                checked: if f.tick_subscribed {
                    subscribers > 0
                } else {
                    f.channels.iter().any(|x| x == c.as_str())
                },
                subscribers,
            }
        })
        .collect();
    let languages = LANGUAGES
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let text = f.texts.get(*code).cloned().unwrap_or_default();
            LanguageField {
                code,
                label: t.get(&format!("broadcast.text_{code}")).to_owned(),
                counter: counter(&t, &text),
                text,
                required: i == 0,
            }
        })
        .collect();
    let templates = template_items(state, a).await?;
    Ok(render(
        status,
        ComposePage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            submission: crate::state::once::token_or_new(&f.submission),
            title: f.title,
            languages,
            channels,
            fixed_village: a.role == Role::VillageHead,
            villages: villages
                .into_iter()
                .map(|v| VillageChoice {
                    checked: f.villages.contains(&v.id),
                    id: v.id,
                    name: v.name,
                })
                .collect(),
            later: f.when == "later",
            send_at: f.send_at,
            template_name: f.template_name,
            templates,
            errors,
            notice,
            preview,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct ComposeQuery {
    #[serde(default)]
    template: String,
    /// A previewed (or saved as a template) form held for this page (its submission
    /// token), so that Back and reload never post the form again.
    #[serde(default)]
    draft: String,
    /// `template` after a template was saved from the form.
    #[serde(default)]
    saved: String,
}

/// Where a compose form is held between its POST and the GET that shows it: bound to the
/// account, so that nobody else's session opens it.
fn draft_key(a: &Account, token: &str) -> String {
    format!("broadcast:{}:{token}", a.id)
}

/// Holds the form as sent and answers with a redirect to the compose page that shows it
/// (with its preview), post/redirect/get.
fn hold_and_show(state: &AppState, a: &Account, body: &[u8], f: &ComposeForm, saved: bool) -> Page {
    let token = crate::state::once::token_or_new(&f.submission);
    let mut held = body.to_vec();
    if f.submission.trim() != token {
        held.extend_from_slice(format!("&submission={token}").as_bytes());
    }
    let _ = state
        .submissions
        .hold(&draft_key(a, &token), held, Vec::new());
    let saved = if saved { "&saved=template" } else { "" };
    Ok(Redirect::to(&format!("/console/broadcasts/new?draft={token}{saved}")).into_response())
}

/// The compose form: empty, or filled from a saved template.
pub async fn compose(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Query(q): Query<ComposeQuery>,
) -> Page {
    if !q.draft.is_empty() {
        let held = crate::state::once::valid_token(&q.draft)
            .and_then(|token| state.submissions.draft(&draft_key(&s.account, token)));
        if let Some((body, _)) = held {
            let mut f = ComposeForm::parse(&body);
            f.action.clear();
            if q.saved == "template" {
                let notice = Some(texts().get("broadcast.template_saved").to_owned());
                return compose_page(&state, &s, f, Vec::new(), notice, None, StatusCode::OK).await;
            }
            return preview_page(&state, &s, f, Vec::new(), None).await;
        }
    }
    // Ticked at first: the channels somebody in the account's villages subscribed on
    // (counted once, with the page's own counts).
    let mut f = ComposeForm {
        tick_subscribed: true,
        villages: s.account.village_id.into_iter().collect(),
        ..ComposeForm::default()
    };
    let mut status = StatusCode::OK;
    let mut errors = Vec::new();
    if !q.template.is_empty() {
        match template_of(&state, &s.account, &q.template).await? {
            Some(tpl) => {
                f.title = tpl.title;
                f.texts = serde_json::from_str(&tpl.texts).unwrap_or_default();
                f.tick_subscribed = false;
                f.channels = tpl
                    .transports
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
                f.template_name = tpl.name;
            }
            None => {
                status = StatusCode::NOT_FOUND;
                errors.push(texts().get("broadcast.error.no_template").to_owned());
            }
        }
    }
    compose_page(&state, &s, f, errors, None, None, status).await
}

async fn template_of(
    state: &AppState,
    a: &Account,
    id: &str,
) -> Result<Option<TemplateRow>, crate::store::StoreError> {
    let Some(c) = a.commune_code else {
        return Ok(None);
    };
    Ok(state
        .store
        .templates(c)
        .await?
        .into_iter()
        .find(|t| t.id == id))
}

/// Preview, save as a template, or send (for approval, or at once where the commune
/// turned approval off). Whatever was typed comes back on every error.
pub async fn submit(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    body: Bytes,
) -> Page {
    let f = ComposeForm::parse(&body);
    let (state, s) = (&state, &s);
    let t = texts();
    let a = &s.account;
    let send_at = f.send_at_ms();
    let draft = f.draft(send_at.unwrap_or(None));
    let mut errors: Vec<String> = Vec::new();
    if send_at.is_err() {
        errors.push(t.get("broadcast.error.when").to_owned());
    }
    match f.action.as_str() {
        "template" => {
            let name = f.template_name.trim();
            if name.is_empty() || name.chars().count() > 80 {
                errors.push(t.get("broadcast.error.template_name").to_owned());
            }
            if draft
                .texts
                .get(LANGUAGES[0])
                .is_none_or(|x| x.trim().is_empty())
            {
                errors.push(t.get(DraftError::NoText.key()).to_owned());
            }
            let (Some(commune), true) = (a.commune_code, errors.is_empty()) else {
                return compose_page(
                    state,
                    s,
                    f,
                    errors,
                    None,
                    None,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            };
            let texts: BTreeMap<&String, &str> = draft
                .texts
                .iter()
                .filter(|(_, x)| !x.trim().is_empty())
                .map(|(l, x)| (l, x.trim()))
                .collect();
            state
                .intake
                .store()
                .insert_template(&TemplateRow {
                    id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
                    commune_code: commune,
                    name: name.to_owned(),
                    title: draft.title.trim().to_owned(),
                    texts: serde_json::to_string(&texts).unwrap_or_else(|_| "{}".into()),
                    transports: draft
                        .transports
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    created_by: a.id.clone(),
                    created_at: now_ms(),
                })
                .await?;
            hold_and_show(state, a, &body, &f, true)
        }
        "send" if errors.is_empty() => match create_once(state, a, &draft, &f.submission).await {
            Ok(id) => Ok(Redirect::to(&format!("/console/broadcasts/{id}")).into_response()),
            Err(BroadcastError::Invalid(list)) => {
                let errors = list.iter().map(|e| t.get(e.key()).to_owned()).collect();
                compose_page(
                    state,
                    s,
                    f,
                    errors,
                    None,
                    None,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await
            }
            Err(e) => Err(refusal(e)),
        },
        // A preview that passes is shown by a GET (post/redirect/get); one with errors
        // (also "send" when the time could not be read) comes back at once.
        _ => {
            if errors.is_empty() && state.broadcasts.validate(a, &draft).await?.is_empty() {
                return hold_and_show(state, a, &body, &f, false);
            }
            preview_page(state, s, f, errors, None).await
        }
    }
}

/// The compose form with its preview and whatever does not pass.
async fn preview_page(
    state: &AppState,
    s: &ConsoleSession,
    f: ComposeForm,
    mut errors: Vec<String>,
    notice: Option<String>,
) -> Page {
    let t = texts();
    let a = &s.account;
    let draft = f.draft(f.send_at_ms().unwrap_or(None));
    errors.extend(
        state
            .broadcasts
            .validate(a, &draft)
            .await?
            .iter()
            .map(|e| t.get(e.key()).to_owned()),
    );
    let preview =
        if draft.villages.is_empty() || !state.broadcasts.may_reach(a, &draft.villages).await? {
            None
        } else {
            let p = state.broadcasts.preview(&draft).await?;
            Some(preview_view(state, &t, &draft, &p))
        };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    compose_page(state, s, f, errors, notice, preview, status).await
}

fn preview_view(state: &AppState, t: &Texts, d: &Draft, p: &Preview) -> PreviewView {
    let recipients: Vec<(String, i64, bool)> = p
        .recipients
        .iter()
        .map(|(tr, n)| (channel_name(t, tr.as_str()), *n, d.transports.contains(tr)))
        .collect();
    let total = p
        .recipients
        .iter()
        .filter(|(tr, _)| d.transports.contains(tr))
        .map(|(_, n)| n)
        .sum();
    let costs = p
        .costs
        .iter()
        .map(|c| {
            t.fill(
                if c.ucs2 {
                    "broadcast.cost_ucs2"
                } else {
                    "broadcast.cost_gsm"
                },
                &[
                    ("language", t.get(&format!("broadcast.text_{}", c.language))),
                    ("chars", &c.chars.to_string()),
                    ("segments", &c.segments.to_string()),
                ],
            )
        })
        .collect();
    let sms = d.transports.iter().any(|t| t.is_sms());
    let at = d.send_at.unwrap_or_else(now_ms);
    let quiet = state.broadcasts.quiet_hours();
    let quiet_note = (sms && quiet.is_quiet(at)).then(|| {
        t.fill(
            "broadcast.quiet_note",
            &[("at", &local_time(quiet.next_open(at)))],
        )
    });
    PreviewView {
        recipients,
        total,
        costs,
        sms_segments: p.sms_segments,
        quiet_note,
    }
}

// ----- one broadcast ---------------------------------------------------------------------------

struct CountsView {
    label: String,
    counts: [i64; 6],
}

struct ResultView {
    village: String,
    channel: String,
    outcome: String,
    count: i64,
}

#[derive(Template)]
#[template(path = "console_broadcast.html")]
struct DetailPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    id: String,
    title: String,
    status: String,
    status_class: String,
    when: String,
    texts: Vec<(String, String)>,
    channels: Vec<String>,
    villages: Vec<String>,
    mine: bool,
    can_approve: bool,
    can_cancel: bool,
    progress: Progress,
    percent: i64,
    eta: Option<String>,
    by_transport: Vec<CountsView>,
    results: Vec<ResultView>,
    live: bool,
}

/// What a refused broadcast operation shows.
fn refusal(e: BroadcastError) -> ConsoleError {
    let t = texts();
    match e {
        BroadcastError::Denied => ConsoleError::forbidden(),
        BroadcastError::NotFound => ConsoleError::Refused(
            StatusCode::NOT_FOUND,
            t.get("broadcast.error.not_found").to_owned(),
        ),
        BroadcastError::Conflict => ConsoleError::Refused(
            StatusCode::CONFLICT,
            t.get("broadcast.error.conflict").to_owned(),
        ),
        e => e.into(),
    }
}

/// One broadcast: texts, reach, live progress, results, and the actions the account has.
pub async fn detail(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let t = texts();
    let a = &s.account;
    let b = state.broadcasts.visible(a, &id).await.map_err(refusal)?;
    let loaded = async {
        let progress = state.broadcasts.progress(&b).await?;
        let results = state.broadcasts.results(&b.id).await?;
        let villages = state.store.villages(b.commune_code).await?;
        Ok::<_, BroadcastError>((progress, results, villages))
    };
    let (progress, results, villages) = loaded.await?;
    let village_name = |id: i64| {
        villages
            .iter()
            .find(|v| v.id == id)
            .map_or_else(|| id.to_string(), |v| v.name.clone())
    };
    let texts_by_lang: BTreeMap<String, String> =
        serde_json::from_str(&b.texts).unwrap_or_default();
    Ok(render(
        StatusCode::OK,
        DetailPage {
            me: me(&s),
            csrf: s.csrf.clone(),
            id: b.id.clone(),
            title: b.title.clone(),
            status: status_word(&t, b.status.as_str()),
            status_class: b.status.as_str().to_owned(),
            when: local_time(b.send_at),
            texts: texts_by_lang
                .into_iter()
                .map(|(l, x)| (t.get(&format!("broadcast.text_{l}")).to_owned(), x))
                .collect(),
            channels: b
                .transports
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| channel_name(&t, c))
                .collect(),
            villages: b
                .villages
                .split(',')
                .filter_map(|v| v.parse().ok())
                .map(village_name)
                .collect(),
            mine: b.author_id == a.id,
            can_approve: rules::may_approve(a, &b),
            can_cancel: rules::may_cancel(a, &b),
            percent: progress.percent(),
            eta: progress.eta.map(local_time),
            by_transport: progress
                .by_transport
                .iter()
                .map(|(tr, c)| CountsView {
                    label: channel_name(&t, tr),
                    counts: *c,
                })
                .collect(),
            results: results
                .into_iter()
                .map(|r| ResultView {
                    village: village_name(r.village_id),
                    channel: channel_name(&t, &r.transport),
                    outcome: t.get(&format!("broadcast.outcome.{}", r.status)).to_owned(),
                    count: r.count,
                })
                .collect(),
            live: b.status.is_live(),
            progress,
            t,
        },
    ))
}

/// The live counts as JSON, for the page to poll while a broadcast sends.
pub async fn progress(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let t = texts();
    let b = state
        .broadcasts
        .visible(&s.account, &id)
        .await
        .map_err(refusal)?;
    let p = state.broadcasts.progress(&b).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "status": p.status,
            "status_text": status_word(&t, &p.status),
            "percent": p.percent(),
            "eta": p.eta.map(local_time),
            "progress": p,
        })),
    )
        .into_response())
}

/// Approves a waiting broadcast (an officer or the chief, never its author).
pub async fn approve(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let done = state.broadcasts.approve(&s.account, &id).await;
    acted(&state, &s, &id, "broadcast.approve", done).await
}

/// Cancels a broadcast until it finishes; what was sent stays in its results.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let done = state.broadcasts.cancel(&s.account, &id).await;
    acted(&state, &s, &id, "broadcast.cancel", done).await
}

/// Creates the broadcast once per submission token: the form sent again (a double click,
/// a reload) leads to the same broadcast. Its id.
async fn create_once(
    state: &AppState,
    a: &crate::accounts::Account,
    draft: &Draft,
    submission: &str,
) -> Result<String, BroadcastError> {
    use crate::state::once;
    let token = once::token_or_new(submission);
    let create = async {
        let b = state.broadcasts.create(a, draft).await?;
        // Created: a failed entry is logged, not allowed to make the form send it again.
        if let Err(e) = state
            .audit
            .record(
                Some(&a.id),
                "broadcast.create",
                None,
                a.province_code,
                a.commune_code,
                &b.id,
            )
            .await
        {
            tracing::error!(error = %e, "a broadcast's creation could not be audited");
        }
        Ok::<_, BroadcastError>(b.id)
    };
    state.submissions.file_once(&token, create).await
}

/// Audits a done action and goes back to the broadcast's page; or says why not.
async fn acted(
    state: &AppState,
    s: &ConsoleSession,
    id: &str,
    action: &str,
    done: Result<(), BroadcastError>,
) -> Page {
    let a = &s.account;
    done.map_err(refusal)?;
    state
        .audit
        .record(
            Some(&a.id),
            action,
            None,
            a.province_code,
            a.commune_code,
            id,
        )
        .await?;
    Ok(Redirect::to(&format!("/console/broadcasts/{id}")).into_response())
}

/// Deletes one of the commune's saved templates.
pub async fn delete_template(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let Some(commune) = s.account.commune_code else {
        return Err(ConsoleError::forbidden());
    };
    if !state.store.delete_template(commune, &id).await? {
        return Err(refusal(BroadcastError::NotFound));
    }
    Ok(Redirect::to("/console/broadcasts?saved=template_deleted").into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    approval: String,
}

/// The chief turns approval of the commune's broadcasts on or off.
pub async fn settings(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    axum::Form(f): axum::Form<SettingsForm>,
) -> Page {
    let a = &s.account;
    let Some(commune) = a.commune_code else {
        return Err(ConsoleError::forbidden());
    };
    let on = f.approval == "on";
    state
        .store
        .set_broadcast_approval(commune, on, now_ms())
        .await?;
    state
        .audit
        .record(
            Some(&a.id),
            "broadcast.settings",
            None,
            a.province_code,
            a.commune_code,
            if on { "approval on" } else { "approval off" },
        )
        .await?;
    Ok(Redirect::to("/console/broadcasts?saved=settings").into_response())
}

// ----- the poster --------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console_poster.html")]
struct PosterPage {
    t: Texts,
    village: String,
    commune: String,
    url: String,
    qr: String,
    sms_line: Option<String>,
    chat_line: String,
    telegram: Option<String>,
    /// `public_url` is still the default: the head is warned on screen.
    default_url: bool,
}

/// A QR code as an SVG drawing (one square per dark module, four modules of quiet zone).
pub fn qr_svg(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    const BORDER: i32 = 4;
    let size = qr.size();
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + BORDER, y + BORDER));
            }
        }
    }
    let d = size + 2 * BORDER;
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {d} {d}\" class=\"qr\" \
         role=\"img\" shape-rendering=\"crispEdges\"><rect width=\"{d}\" height=\"{d}\" \
         fill=\"#fff\"/><path id=\"qr-modules\" d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

/// A village's printable poster: a QR code to its subscription page and the SMS and chat
/// keywords, for the village head to put up at the cultural house.
/// Whether the public address is still the loopback default, which no resident's phone
/// can reach.
fn is_default_url(url: &str) -> bool {
    let host = url
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    host.is_empty()
        || host.starts_with("127.")
        || host.starts_with("localhost")
        || host.starts_with("[::1]")
        || host.starts_with("0.0.0.0")
}

pub async fn poster(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let t = texts();
    let villages = scope_villages(&state, &s.account).await?;
    let Some(v) = id
        .parse::<i64>()
        .ok()
        .and_then(|id| villages.into_iter().find(|v| v.id == id))
    else {
        // Another commune's village, or none: the same answer.
        return Err(ConsoleError::forbidden());
    };
    let cfg = state.broadcasts.config();
    let url = format!(
        "{}/subscribe/{}",
        state.config.public_url.trim_end_matches('/'),
        v.id
    );
    let Some(qr) = qr_svg(&url) else {
        return Err(ConsoleError::internal(
            "the QR code does not fit the address",
        ));
    };
    let keyword = format!("DK {}", v.id);
    Ok(render(
        StatusCode::OK,
        PosterPage {
            sms_line: (!cfg.sms_number.is_empty()).then(|| {
                t.fill(
                    "broadcast.poster_sms",
                    &[("keyword", &keyword), ("number", &cfg.sms_number)],
                )
            }),
            chat_line: match (
                cfg.zalo_oa_name.trim(),
                cfg.telegram_bot.trim().trim_start_matches('@'),
            ) {
                ("", "") => t.fill("broadcast.poster_chat", &[("keyword", &keyword)]),
                (oa, "") => t.fill(
                    "broadcast.poster_zalo",
                    &[("keyword", &keyword), ("oa", oa)],
                ),
                ("", bot) => t.fill(
                    "broadcast.poster_bot",
                    &[("keyword", &keyword), ("bot", bot)],
                ),
                (oa, bot) => t.fill(
                    "broadcast.poster_zalo_bot",
                    &[("keyword", &keyword), ("oa", oa), ("bot", bot)],
                ),
            },
            default_url: is_default_url(&state.config.public_url),
            t,
            commune: state
                .intake
                .geo()
                .commune(v.commune_code)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            village: v.name,
            url,
            qr,
            telegram: (!cfg.telegram_bot.is_empty())
                .then(|| format!("https://t.me/{}?start=dk{}", cfg.telegram_bot, v.id)),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::is_default_url;

    #[test]
    fn only_a_loopback_or_empty_public_url_is_the_default() {
        for url in [
            "",
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:80",
        ] {
            assert!(is_default_url(url), "{url}");
        }
        for url in [
            "https://tinbao.xa.example.vn",
            "http://10.0.0.5:8080",
            "https://127x.vn",
        ] {
            assert!(!is_default_url(url), "{url}");
        }
    }
}
