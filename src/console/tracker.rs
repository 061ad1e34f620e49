//! The drug-free village tracker in the console: each village's state against plan 000's
//! three criteria and its pledges, its history of assessments, the commune's share of
//! drug-free villages against its target, and the province's roll-up. Officers and
//! chiefs assess (each assessment audited), the chief sets the target, statistics
//! accounts and the province read, a village head reads its own village.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::{ConsoleSession, COMMUNE_POLICE};
use crate::accounts::Role;
use crate::i18n::Texts;
use crate::reports::tracker::{self, AssessmentInput, CommuneTracker, ANSWERS, CRITERIA};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct TrackerQuery {
    #[serde(default)]
    commune: String,
    #[serde(default)]
    province: String,
    #[serde(default)]
    saved: String,
}

/// One village's line: its latest state in words.
pub struct VillageLine {
    id: i64,
    name: String,
    /// Each criterion's answer code (`met`, `not_met`, `unknown`, or `none` never assessed).
    answers: Vec<(String, String)>,
    drug_free: bool,
    assessed_on: String,
    pledges: String,
}

/// One commune's line of the province roll-up.
pub struct CommuneLine {
    code: i64,
    name: String,
    villages: usize,
    assessed: usize,
    drug_free: usize,
    share: String,
    target: i64,
}

#[derive(Template)]
#[template(path = "console_tracker.html")]
pub struct TrackerPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    notice: Option<String>,
    heading: String,
    summary: String,
    share: f64,
    target: i64,
    lines: Vec<VillageLine>,
    communes: Vec<CommuneLine>,
    sets_target: bool,
    target_typed: String,
}

fn answer_label(t: &Texts, a: &str) -> String {
    t.get(&format!("tracker.answer_{a}")).to_owned()
}

fn pledges(t: &Texts, a: &crate::store::AssessmentRow) -> String {
    let mut out = Vec::new();
    if a.village_pledge != 0 {
        out.push(t.get("tracker.village_pledge").to_owned());
    }
    if a.households_pledged > 0 {
        out.push(t.fill(
            "tracker.households",
            &[("n", &a.households_pledged.to_string())],
        ));
    }
    if a.cultivation_risk != 0 {
        out.push(
            t.get(if a.cultivation_pledge != 0 {
                "tracker.cultivation_pledged"
            } else {
                "tracker.cultivation_not_pledged"
            })
            .to_owned(),
        );
    }
    out.join(" · ")
}

fn village_line(t: &Texts, v: &tracker::VillageState) -> VillageLine {
    let latest = v.latest();
    VillageLine {
        id: v.id,
        name: v.name.clone(),
        answers: CRITERIA
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let a = latest.map_or("none", |l| match i {
                    0 => l.no_users.as_str(),
                    1 => l.no_offences.as_str(),
                    _ => l.no_venues.as_str(),
                });
                (t.get(&format!("tracker.{c}")).to_owned(), a.to_owned())
            })
            .collect(),
        drug_free: v.drug_free(),
        assessed_on: latest.map(|l| l.assessed_on.clone()).unwrap_or_default(),
        pledges: latest.map(|l| pledges(t, l)).unwrap_or_default(),
    }
}

/// The commune this account's tracker shows, or `None` for a province roll-up (with the
/// province); `Err` when the account may not see what it asked for.
fn scope(
    state: &AppState,
    s: &ConsoleSession,
    q: &TrackerQuery,
) -> Result<(Option<i64>, Option<i64>), ConsoleError> {
    let a = &s.account;
    let geo = state.intake.geo();
    let asked: Option<i64> = q.commune.trim().parse().ok();
    match (a.role, a.commune_code) {
        (Role::Officer | Role::Chief | Role::VillageHead, Some(c)) => match asked {
            Some(x) if x != c => Err(ConsoleError::forbidden()),
            _ => Ok((Some(c), None)),
        },
        (Role::Statistics, Some(c)) => match asked {
            Some(x) if x != c => Err(ConsoleError::forbidden()),
            _ => Ok((Some(c), None)),
        },
        (Role::Province | Role::Statistics, None) => {
            let p = a.province_code.ok_or_else(ConsoleError::forbidden)?;
            match asked {
                Some(x) => match geo.commune(x) {
                    Some(c) if c.province_code == p => Ok((Some(x), None)),
                    Some(_) => Err(ConsoleError::forbidden()),
                    None => Err(ConsoleError::Refused(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        texts().get("report.error_commune").to_owned(),
                    )),
                },
                None => Ok((None, Some(p))),
            }
        }
        (Role::Admin, _) => match (asked, q.province.trim().parse::<i64>().ok()) {
            (Some(c), _) if geo.commune(c).is_some() => Ok((Some(c), None)),
            (None, Some(p)) if geo.province(p).is_some() => Ok((None, Some(p))),
            _ => Err(ConsoleError::Refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                texts().get("report.error_commune").to_owned(),
            )),
        },
        _ => Err(ConsoleError::forbidden()),
    }
}

/// `GET /console/tracker`: a commune's villages (or the province's communes).
pub async fn tracker_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    q: Result<Query<TrackerQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let notice = match q.saved.as_str() {
        "target" => Some(texts().get("tracker.target_saved").to_owned()),
        _ => None,
    };
    page(&state, &s, &q, None, notice, String::new(), StatusCode::OK).await
}

async fn page(
    state: &AppState,
    s: &ConsoleSession,
    q: &TrackerQuery,
    error: Option<String>,
    notice: Option<String>,
    target_typed: String,
    status: StatusCode,
) -> Page {
    let t = texts();
    let (commune, province) = scope(state, s, q)?;
    let geo = state.intake.geo();
    let mut p = TrackerPage {
        t,
        me: me(s),
        csrf: s.csrf.clone(),
        error,
        notice,
        heading: String::new(),
        summary: String::new(),
        share: 0.0,
        target: 0,
        lines: Vec::new(),
        communes: Vec::new(),
        sets_target: false,
        target_typed,
    };
    if let Some(c) = commune {
        let tr: CommuneTracker = tracker::trackers(&state.store, &[c])
            .await?
            .pop()
            .ok_or_else(ConsoleError::forbidden)?;
        let name = geo.commune(c).map(|c| c.name.clone()).unwrap_or_default();
        p.heading = format!("{} — {name}", t.get("tracker.title"));
        p.share = tr.share().unwrap_or(0.0);
        p.target = tr.target;
        p.summary = t.fill(
            "tracker.summary",
            &[
                ("free", &tr.drug_free().to_string()),
                ("total", &tr.villages.len().to_string()),
                ("share", &format!("{:.0}", p.share)),
                ("target", &tr.target.to_string()),
            ],
        );
        p.sets_target = s.account.role == Role::Chief;
        p.lines = tr
            .villages
            .iter()
            // A village head reads its own village only.
            .filter(|v| s.account.role != Role::VillageHead || s.account.village_id == Some(v.id))
            .map(|v| village_line(&t, v))
            .collect();
    } else if let Some(pr) = province {
        let name = geo.province(pr).map(|p| p.name.clone()).unwrap_or_default();
        p.heading = format!("{} — {name}", t.get("tracker.title"));
        p.communes = tracker::province_trackers(&state.store, geo, pr)
            .await?
            .into_iter()
            .map(|(name, tr)| CommuneLine {
                code: tr.commune,
                name,
                villages: tr.villages.len(),
                assessed: tr.assessed(),
                drug_free: tr.drug_free(),
                share: tr.share().map_or_else(String::new, |s| format!("{s:.0}")),
                target: tr.target,
            })
            .collect();
    }
    Ok(render(status, p))
}

/// An assessment as the history page shows it.
pub struct AssessmentLine {
    assessed_on: String,
    assessor: String,
    answers: Vec<(String, String)>,
    drug_free: bool,
    pledges: String,
    /// The sealed note, opened for the commune's police only.
    note: Option<String>,
}

#[derive(Template)]
#[template(path = "console_tracker_village.html")]
pub struct VillagePage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    notice: Option<String>,
    village_id: i64,
    heading: String,
    history: Vec<AssessmentLine>,
    assesses: bool,
    criteria: Vec<(&'static str, String)>,
    answers: Vec<(&'static str, String)>,
    form: AssessForm,
    today: String,
}

/// The assessment form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AssessForm {
    #[serde(default)]
    assessed_on: String,
    #[serde(default)]
    no_users: String,
    #[serde(default)]
    no_offences: String,
    #[serde(default)]
    no_venues: String,
    #[serde(default)]
    village_pledge: String,
    #[serde(default)]
    households_pledged: String,
    #[serde(default)]
    cultivation_risk: String,
    #[serde(default)]
    cultivation_pledge: String,
    #[serde(default)]
    note: String,
}

impl AssessForm {
    fn answer(&self, criterion: &str) -> &str {
        match criterion {
            "no_users" => &self.no_users,
            "no_offences" => &self.no_offences,
            _ => &self.no_venues,
        }
    }
}

/// The village an account may see, with its commune; a village head only its own.
async fn village_in_scope(
    state: &AppState,
    s: &ConsoleSession,
    id: &str,
) -> Result<crate::store::Village, ConsoleError> {
    let id: i64 = id.parse().map_err(|_| ConsoleError::forbidden())?;
    let v = state
        .store
        .village(id)
        .await?
        .ok_or_else(ConsoleError::forbidden)?;
    let q = TrackerQuery {
        commune: v.commune_code.to_string(),
        ..TrackerQuery::default()
    };
    scope(state, s, &q)?;
    if s.account.role == Role::VillageHead && s.account.village_id != Some(v.id) {
        return Err(ConsoleError::forbidden());
    }
    Ok(v)
}

async fn village_page(
    state: &AppState,
    s: &ConsoleSession,
    v: crate::store::Village,
    form: AssessForm,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Page {
    let t = texts();
    let police = COMMUNE_POLICE.contains(&s.account.role);
    let mut tr = tracker::trackers(&state.store, &[v.commune_code]).await?;
    let history = tr
        .pop()
        .and_then(|c| c.villages.into_iter().find(|x| x.id == v.id))
        .map(|x| x.history)
        .unwrap_or_default();
    let people = state
        .store
        .accounts(None, Some(v.commune_code))
        .await?
        .into_iter()
        .map(|a| (a.id, a.display_name))
        .collect::<Vec<_>>();
    let keys = state.intake.keys();
    let history = history
        .iter()
        .map(|a| AssessmentLine {
            assessed_on: a.assessed_on.clone(),
            assessor: people
                .iter()
                .find(|p| p.0 == a.assessor_id)
                .map_or_else(|| t.get("tracker.someone").to_owned(), |p| p.1.clone()),
            answers: CRITERIA
                .iter()
                .zip([&a.no_users, &a.no_offences, &a.no_venues])
                .map(|(c, x)| (t.get(&format!("tracker.{c}")).to_owned(), x.clone()))
                .collect(),
            drug_free: tracker::drug_free(a),
            pledges: pledges(&t, a),
            note: if police {
                tracker::open_note(keys, a)
            } else {
                None
            },
        })
        .collect();
    let commune = state
        .intake
        .geo()
        .commune(v.commune_code)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let today = crate::reports::vn_day(crate::clock::now_ms()).to_string();
    Ok(render(
        status,
        VillagePage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            error,
            notice,
            village_id: v.id,
            heading: format!("{}, {commune}", v.name),
            history,
            assesses: police,
            criteria: CRITERIA
                .iter()
                .map(|c| (*c, t.get(&format!("tracker.{c}_long")).to_owned()))
                .collect(),
            answers: ANSWERS.iter().map(|a| (*a, answer_label(&t, a))).collect(),
            form: AssessForm {
                assessed_on: if form.assessed_on.is_empty() {
                    today.clone()
                } else {
                    form.assessed_on
                },
                ..form
            },
            today,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct SavedQuery {
    #[serde(default)]
    saved: String,
}

/// `GET /console/tracker/villages/{village}`: a village's history of assessments (and,
/// for the commune's police, the form for a new one).
pub async fn village(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
    q: Result<Query<SavedQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let v = village_in_scope(&state, &s, &id).await?;
    let notice = q
        .ok()
        .filter(|q| q.0.saved == "1")
        .map(|_| texts().get("tracker.saved").to_owned());
    village_page(
        &state,
        &s,
        v,
        AssessForm::default(),
        None,
        notice,
        StatusCode::OK,
    )
    .await
}

/// `POST /console/tracker/villages/{village}`: a new assessment, audited before it is
/// stored; a refusal shows the form again with what was typed.
pub async fn assess(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
    Form(f): Form<AssessForm>,
) -> Page {
    let v = village_in_scope(&state, &s, &id).await?;
    let input = AssessmentInput {
        assessed_on: f.assessed_on.clone(),
        answers: [
            f.no_users.clone(),
            f.no_offences.clone(),
            f.no_venues.clone(),
        ],
        village_pledge: !f.village_pledge.is_empty(),
        households_pledged: f.households_pledged.clone(),
        cultivation_risk: !f.cultivation_risk.is_empty(),
        cultivation_pledge: !f.cultivation_pledge.is_empty(),
        note: f.note.clone(),
    };
    let now = crate::clock::now_ms();
    let today = crate::reports::vn_day(now);
    let row = match tracker::assessment_row(
        state.intake.keys(),
        v.id,
        v.commune_code,
        &s.account.id,
        &input,
        today,
        now,
    ) {
        Ok(row) => row,
        Err(e) => {
            let error = Some(texts().get(e.key()).to_owned());
            return village_page(
                &state,
                &s,
                v,
                f,
                error,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let province = state
        .intake
        .geo()
        .commune(v.commune_code)
        .map(|c| c.province_code);
    let detail = format!(
        "village {}: {} {} {} on {}",
        v.id, row.no_users, row.no_offences, row.no_venues, row.assessed_on
    );
    state
        .audit
        .record(
            Some(&s.account.id),
            "village.assess",
            None,
            province,
            Some(v.commune_code),
            &detail,
        )
        .await?;
    state.store.insert_assessment(&row).await?;
    Ok(Redirect::to(&format!("/console/tracker/villages/{}?saved=1", v.id)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct TargetForm {
    #[serde(default)]
    target: String,
}

/// `POST /console/tracker/target`: the chief sets the commune's target share (audited).
pub async fn set_target(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Form(f): Form<TargetForm>,
) -> Page {
    let commune = s.account.commune_code.ok_or_else(ConsoleError::forbidden)?;
    let percent = match tracker::parse_target(&f.target) {
        Ok(p) => p,
        Err(e) => {
            let error = Some(texts().get(e.key()).to_owned());
            let q = TrackerQuery::default();
            let typed: String = f.target.chars().take(10).collect();
            return page(
                &state,
                &s,
                &q,
                error,
                None,
                typed,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let province = s.account.province_code;
    state
        .audit
        .record(
            Some(&s.account.id),
            "commune.drugfree_target",
            None,
            province,
            Some(commune),
            &format!("{percent}%"),
        )
        .await?;
    state
        .store
        .set_drugfree_target(commune, percent, crate::clock::now_ms())
        .await?;
    Ok(Redirect::to("/console/tracker?saved=target").into_response())
}
