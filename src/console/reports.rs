//! The commune's monthly report in the console: a page that reads on a phone and prints on
//! A4, and the same figures as `.xlsx` and CSV. For the commune's police, the province, the
//! statistics accounts of its commune or province, and administrators; counts only.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, MeView};
use super::ConsoleSession;
use crate::accounts::Role;
use crate::i18n::Texts;
use crate::reports::export::{self, Table};
use crate::reports::{commune_report, CommuneReport, Period, ReportError};
use crate::state::{AppState, Lang};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use chrono::Datelike;
use serde::Deserialize;

/// The report's query: a commune, and a month or a range of days.
#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    commune: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// `xlsx` or `csv` (exports only).
    #[serde(default)]
    format: String,
}

/// A bar of the per-day chart (SVG user units).
pub struct Bar {
    x: i64,
    y: i64,
    height: i64,
    title: String,
}

#[derive(Template)]
#[template(path = "console_report.html")]
pub struct ReportPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    /// What the form holds.
    commune: String,
    month: String,
    from: String,
    to: String,
    communes: Vec<(i64, String, bool)>,
    heading: String,
    columns: [String; 5],
    tables: Vec<Table>,
    bars: Vec<Bar>,
    chart_width: i64,
    masked: bool,
    /// The query string of the exports.
    query: String,
    /// Whether the account sees a whole province (a link to its view).
    province_view: bool,
    /// Whether the account names the commune by its code (administrators).
    any_commune: bool,
}

/// Last month in Vietnam time.
fn last_month() -> Period {
    let today = crate::reports::vn_day(crate::clock::now_ms());
    let this_month = Period {
        first: today.with_day(1).unwrap_or(today),
        last: today,
    };
    Period::month(&this_month.first.format("%Y-%m").to_string())
        .unwrap_or(this_month)
        .previous()
}

/// The period a query asks for, and what the form shows of it.
fn period_of(q: &ReportQuery) -> Result<Period, ReportError> {
    if !q.from.trim().is_empty() || !q.to.trim().is_empty() {
        Period::range(&q.from, &q.to)
    } else if q.month.trim().is_empty() {
        Ok(last_month())
    } else {
        Period::month(&q.month)
    }
}

/// The commune asked for (or the account's own), and whether its small counts are hidden
/// from this account; `Err` with the message's key.
fn commune_of(
    state: &AppState,
    s: &ConsoleSession,
    q: &ReportQuery,
) -> Result<(i64, bool), &'static str> {
    let a = &s.account;
    let code = match q.commune.trim() {
        "" => a.commune_code.ok_or("report.error_commune")?,
        c => c.parse::<i64>().map_err(|_| "report.error_commune")?,
    };
    let commune = state
        .intake
        .geo()
        .commune(code)
        .ok_or("report.error_commune")?;
    let masked = a
        .reads_reports_of(commune.province_code, code)
        .ok_or("report.error_scope")?;
    Ok((code, masked))
}

/// The communes an account may pick: its province's, or the one it has.
fn choices(state: &AppState, s: &ConsoleSession, chosen: i64) -> Vec<(i64, String, bool)> {
    let geo = state.intake.geo();
    let a = &s.account;
    match (a.commune_code, a.province_code) {
        (None, Some(p)) => geo
            .communes_of(p)
            .map(|c| (c.code, c.name.clone(), c.code == chosen))
            .collect(),
        _ => Vec::new(),
    }
}

async fn build(
    state: &AppState,
    s: &ConsoleSession,
    q: &ReportQuery,
) -> Result<(CommuneReport, bool), (StatusCode, &'static str)> {
    let period = period_of(q).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.key()))?;
    let (commune, masked) = commune_of(state, s, q).map_err(|key| {
        let status = if key == "report.error_scope" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        (status, key)
    })?;
    match commune_report(&state.store, state.intake.geo(), commune, period).await {
        Ok(r) => Ok((r, masked)),
        Err(ReportError::Store(e)) => {
            tracing::error!(error = %e, "a report could not be read");
            Err((StatusCode::SERVICE_UNAVAILABLE, "error.try_later"))
        }
        Err(e) => Err((StatusCode::UNPROCESSABLE_ENTITY, e.key())),
    }
}

/// A query string of these fields (only digits and dashes of each kept, at most 10
/// characters: codes and dates), after `lang`.
fn query_string(lang: Lang, fields: &[(&str, &str)]) -> String {
    let mut out = format!("lang={}", lang.0);
    for (k, v) in fields {
        let v: String = v
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '-')
            .take(10)
            .collect();
        if !v.is_empty() {
            out.push_str(&format!("&{k}={v}"));
        }
    }
    out
}

/// `GET /console/reports`: the report page (Vietnamese, or `?lang=en`).
pub async fn report_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    lang: Lang,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = lang.texts();
    let mut page = ReportPage {
        t,
        me: me(&s),
        csrf: s.csrf.clone(),
        error: None,
        commune: q.commune.chars().take(10).collect(),
        month: q.month.chars().take(10).collect(),
        from: q.from.chars().take(10).collect(),
        to: q.to.chars().take(10).collect(),
        communes: Vec::new(),
        heading: String::new(),
        columns: Default::default(),
        tables: Vec::new(),
        bars: Vec::new(),
        chart_width: 0,
        masked: false,
        query: String::new(),
        any_commune: s.account.commune_code.is_none() && s.account.province_code.is_none(),
        province_view: match s.account.role {
            Role::Province | Role::Admin => true,
            Role::Statistics => s.account.commune_code.is_none(),
            _ => false,
        },
    };
    match build(&state, &s, &q).await {
        Ok((r, masked)) => {
            page.communes = choices(&state, &s, r.commune);
            page.heading = format!(
                "{} — {}, {} — {}",
                t.get("report.heading"),
                r.commune_name,
                r.province_name,
                r.period.label()
            );
            page.columns = export::headings(&r, t);
            page.tables = export::tables(&r, t, masked);
            let top = r.now.per_day.iter().map(|d| d.1).max().unwrap_or(0).max(1);
            page.bars = r
                .now
                .per_day
                .iter()
                .enumerate()
                .map(|(i, (d, n))| {
                    let height = n * 100 / top;
                    Bar {
                        x: i as i64 * 10,
                        y: 100 - height,
                        height,
                        title: format!("{}: {n}", d.format("%d/%m")),
                    }
                })
                .collect();
            page.chart_width = r.now.per_day.len() as i64 * 10;
            page.masked = masked;
            page.query = query_string(
                lang,
                &[
                    ("commune", &r.commune.to_string()),
                    ("month", &q.month),
                    ("from", &q.from),
                    ("to", &q.to),
                ],
            );
            if page.month.is_empty() && page.from.is_empty() && r.period.is_month() {
                page.month = r.period.first.format("%Y-%m").to_string();
            }
            Ok(render(StatusCode::OK, page))
        }
        Err((status, key)) => {
            page.error = Some(t.get(key).to_owned());
            page.communes = choices(&state, &s, 0);
            Ok(render(status, page))
        }
    }
}

/// `GET /console/reports/export?format=xlsx|csv&…`: the same report as a file.
pub async fn report_export(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    lang: Lang,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = lang.texts();
    let (r, masked) = match build(&state, &s, &q).await {
        Ok(x) => x,
        Err((status, key)) => return Err(ConsoleError::Refused(status, t.get(key).to_owned())),
    };
    let name = format!(
        "bao-cao-{}-{}",
        r.commune,
        r.period.label().replace(" – ", "_")
    );
    let (body, content_type, ext) = match q.format.as_str() {
        "csv" => (
            export::csv(&r, t, masked).into_bytes(),
            "text/csv; charset=utf-8",
            "csv",
        ),
        _ => (
            export::xlsx(&r, t, masked).map_err(|e| ConsoleError::Internal(Box::new(e)))?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
    };
    Ok(attachment(body, content_type, &format!("{name}.{ext}")))
}

/// The province view's query: a province (for administrators), a month or range, and
/// the column to sort by.
#[derive(Debug, Default, Deserialize)]
pub struct ProvinceQuery {
    #[serde(default)]
    province: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    format: String,
}

/// One commune's line of the province page.
pub struct ProvinceLine {
    code: i64,
    name: String,
    cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "console_report_province.html")]
pub struct ProvincePage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    province: String,
    month: String,
    from: String,
    to: String,
    heading: String,
    columns: Vec<(&'static str, String)>,
    lines: Vec<ProvinceLine>,
    total: Vec<String>,
    /// The period's part of a query string (for sorting, drilling down, exporting).
    period_query: String,
}

/// The province an account may see, and the report for the query's period.
async fn build_province(
    state: &AppState,
    s: &ConsoleSession,
    q: &ProvinceQuery,
) -> Result<crate::reports::ProvinceReport, (StatusCode, &'static str)> {
    let period = period_of(&ReportQuery {
        month: q.month.clone(),
        from: q.from.clone(),
        to: q.to.clone(),
        ..ReportQuery::default()
    })
    .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.key()))?;
    let a = &s.account;
    let province = match (a.role, a.commune_code, a.province_code) {
        (Role::Admin, _, _) => q
            .province
            .trim()
            .parse::<i64>()
            .map_err(|_| (StatusCode::UNPROCESSABLE_ENTITY, "report.error_province"))?,
        (Role::Province | Role::Statistics, None, Some(p)) => p,
        _ => return Err((StatusCode::FORBIDDEN, "report.error_scope")),
    };
    match crate::reports::province_report(&state.store, state.intake.geo(), province, period).await
    {
        Ok(mut r) => {
            r.sort_by(q.sort.trim());
            Ok(r)
        }
        Err(ReportError::Store(e)) => {
            tracing::error!(error = %e, "a province report could not be read");
            Err((StatusCode::SERVICE_UNAVAILABLE, "error.try_later"))
        }
        Err(e) => Err((StatusCode::UNPROCESSABLE_ENTITY, e.key())),
    }
}

fn period_query(q: &ProvinceQuery, lang: Lang) -> String {
    query_string(
        lang,
        &[
            ("province", &q.province),
            ("month", &q.month),
            ("from", &q.from),
            ("to", &q.to),
        ],
    )
}

/// `GET /console/reports/province`: a row per commune of the province, sortable, with
/// totals, each leading to the commune's report.
pub async fn province_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    lang: Lang,
    q: Result<Query<ProvinceQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = lang.texts();
    let mut page = ProvincePage {
        t,
        me: me(&s),
        csrf: s.csrf.clone(),
        error: None,
        province: q.province.chars().take(10).collect(),
        month: q.month.chars().take(10).collect(),
        from: q.from.chars().take(10).collect(),
        to: q.to.chars().take(10).collect(),
        heading: String::new(),
        columns: crate::reports::PROVINCE_COLUMNS
            .iter()
            .map(|c| (*c, t.get(&format!("report.{c}")).to_owned()))
            .collect(),
        lines: Vec::new(),
        total: Vec::new(),
        period_query: period_query(&q, lang),
    };
    match build_province(&state, &s, &q).await {
        Ok(r) => {
            page.heading = format!(
                "{} — {} — {}",
                t.get("report.province_title"),
                r.province_name,
                r.period.label()
            );
            if page.month.is_empty() && page.from.is_empty() && r.period.is_month() {
                page.month = r.period.first.format("%Y-%m").to_string();
                page.period_query
                    .push_str(&format!("&month={}", page.month));
            }
            page.lines = r
                .rows
                .iter()
                .map(|row| ProvinceLine {
                    code: row.code,
                    name: row.name.clone(),
                    cells: export::province_cells(&row.figures)
                        .iter()
                        .map(export::Value::text)
                        .collect(),
                })
                .collect();
            page.total = export::province_cells(&r.total)
                .iter()
                .map(export::Value::text)
                .collect();
            Ok(render(StatusCode::OK, page))
        }
        Err((status, key)) => {
            page.error = Some(t.get(key).to_owned());
            Ok(render(status, page))
        }
    }
}

/// `GET /console/reports/province/export?format=xlsx|csv&…`: the province view as a file.
pub async fn province_export(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    lang: Lang,
    q: Result<Query<ProvinceQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let t = lang.texts();
    let r = build_province(&state, &s, &q)
        .await
        .map_err(|(status, key)| ConsoleError::Refused(status, t.get(key).to_owned()))?;
    let name = format!(
        "bao-cao-tinh-{}-{}",
        r.province,
        r.period.label().replace(" – ", "_")
    );
    let (body, content_type, ext) = match q.format.as_str() {
        "csv" => (
            export::province_csv(&r, t).into_bytes(),
            "text/csv; charset=utf-8",
            "csv",
        ),
        _ => (
            export::province_xlsx(&r, t).map_err(|e| ConsoleError::Internal(Box::new(e)))?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
    };
    Ok(attachment(body, content_type, &format!("{name}.{ext}")))
}

/// A file to download, never cached.
fn attachment(body: Vec<u8>, content_type: &'static str, name: &str) -> axum::response::Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
