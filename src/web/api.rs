//! The JSON API: the same intake as the form, for other front ends and for the benchmark.
//! Its OpenAPI document is generated from these types and handlers.

use crate::crypto::Receipt;
use crate::intake::{IntakeError, MessageView, TipInput, TipStatusView};
use crate::state::Action;
use crate::state::AppState;
use crate::state::{pad_to, ClientIp, Lang};
use crate::tips::{Category, Channel, PublicStatus};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tips", post(create_tip))
        .route("/api/v1/tips/status", post(tip_status))
        .route("/api/v1/communes", get(communes))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tinbao",
        description = "Anonymous drug-crime tips for commune police"
    ),
    paths(create_tip, tip_status, communes),
    components(schemas(
        NewTip,
        ReceiptAnswer,
        StatusQuery,
        ApiError,
        FieldProblem,
        TipStatusView,
        MessageView,
        PublicStatus,
        Category,
        CommuneItem
    ))
)]
pub struct ApiDoc;

/// A new tip.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTip {
    /// What the tip is about.
    pub category: String,
    /// Province code (GSO), if known.
    pub province: Option<i64>,
    /// Commune code (GSO), if known.
    pub commune: Option<i64>,
    /// Village, hamlet or residential group, free text or one of the commune's villages.
    #[serde(default)]
    pub village: String,
    #[serde(default)]
    pub place_details: String,
    /// When it happened, as the tipster says it.
    #[serde(default)]
    pub occurred_at: String,
    #[serde(default)]
    pub happening_now: bool,
    pub description: String,
    /// A way to reach the tipster; leaving one gives up anonymity.
    pub contact: Option<String>,
    /// Photos (JPEG, PNG or WebP), base64; metadata is removed before storage.
    #[serde(default)]
    pub photos: Vec<String>,
}

/// The tipster's receipt: the only way back to the tip.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptAnswer {
    /// 16 digits as 4-4-4-4.
    pub receipt: String,
    pub status: PublicStatus,
}

/// A receipt to look up.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusQuery {
    pub receipt: String,
}

/// One problem with one field.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub code: String,
    /// The problem in the requested language.
    pub message: String,
}

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// `invalid`, `malformed`, `rate_limited`, `not_found` or `internal`.
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
}

/// A commune for the form's picker.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommuneItem {
    pub code: i64,
    pub name: String,
}

fn api_error(status: StatusCode, lang: Lang, error: &str, key: &str) -> Response {
    (
        status,
        Json(ApiError {
            error: error.into(),
            message: lang.texts().get(key).to_owned(),
            fields: Vec::new(),
        }),
    )
        .into_response()
}

fn malformed(lang: Lang, rejection: &JsonRejection) -> Response {
    let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    let key = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "error.body_too_large"
    } else {
        "error.bad_request"
    };
    api_error(status, lang, "malformed", key)
}

fn rate_limited(lang: Lang, retry_after: u64) -> Response {
    let mut res = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        lang,
        "rate_limited",
        "error.rate_limited_check",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, retry_after.max(1).into());
    res
}

/// Submit a tip.
#[utoipa::path(post, path = "/api/v1/tips", request_body = NewTip,
    responses((status = 201, body = ReceiptAnswer), (status = 422, body = ApiError),
        (status = 400, body = ApiError), (status = 429, body = ApiError)))]
async fn create_tip(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    body: Result<Json<NewTip>, JsonRejection>,
) -> Response {
    let tip = match body {
        Ok(Json(t)) => t,
        Err(r) => return malformed(lang, &r),
    };
    if let Err(l) = state.limits.check(Action::Submit, ip) {
        return rate_limited(lang, l.retry_after.as_secs());
    }
    let mut photos = Vec::with_capacity(tip.photos.len());
    for p in &tip.photos {
        match base64::engine::general_purpose::STANDARD.decode(p) {
            Ok(b) => photos.push(b),
            Err(_) => {
                return invalid(lang, vec![("photos", "error.photo_corrupt")]);
            }
        }
    }
    let input = TipInput {
        category: tip.category,
        province: tip.province,
        commune: tip.commune,
        village: tip.village,
        place_details: tip.place_details,
        occurred_at: tip.occurred_at,
        happening_now: tip.happening_now,
        description: tip.description,
        contact: tip.contact,
        photos,
    };
    match state.intake.submit(Channel::Api, input).await {
        Ok(receipt) => (
            StatusCode::CREATED,
            Json(ReceiptAnswer {
                receipt: receipt.to_string(),
                status: PublicStatus::Received,
            }),
        )
            .into_response(),
        Err(IntakeError::Invalid(errors)) => {
            invalid(lang, errors.iter().map(|e| (e.field, e.code)).collect())
        }
        Err(e) => {
            tracing::error!(error = %e, "a tip could not be stored");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                "internal",
                "error.internal",
            )
        }
    }
}

fn invalid(lang: Lang, fields: Vec<(&str, &str)>) -> Response {
    let t = lang.texts();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(ApiError {
            error: "invalid".into(),
            message: t.get("form.errors_title").to_owned(),
            fields: fields
                .into_iter()
                .map(|(field, code)| FieldProblem {
                    field: field.into(),
                    code: code.into(),
                    message: t.get(code).to_owned(),
                })
                .collect(),
        }),
    )
        .into_response()
}

/// Look up a tip by its receipt. Unknown and malformed receipts get the same answer, in
/// the same time.
#[utoipa::path(post, path = "/api/v1/tips/status", request_body = StatusQuery,
    responses((status = 200, body = TipStatusView), (status = 404, body = ApiError),
        (status = 429, body = ApiError)))]
async fn tip_status(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    body: Result<Json<StatusQuery>, JsonRejection>,
) -> Response {
    let start = tokio::time::Instant::now();
    let query = match body {
        Ok(Json(q)) => q,
        Err(r) => return malformed(lang, &r),
    };
    if let Err(l) = state.limits.check(Action::Check, ip) {
        return rate_limited(lang, l.retry_after.as_secs());
    }
    let answer = match Receipt::parse(&query.receipt) {
        Err(_) => api_error(StatusCode::NOT_FOUND, lang, "not_found", "status.not_found"),
        Ok(receipt) => match state.intake.status(&receipt).await {
            Ok(Some(view)) => Json(view).into_response(),
            Ok(None) => api_error(StatusCode::NOT_FOUND, lang, "not_found", "status.not_found"),
            Err(e) => {
                tracing::error!(error = %e, "status check failed");
                api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    lang,
                    "internal",
                    "error.internal",
                )
            }
        },
    };
    pad_to(start, state.config.status_floor_ms).await;
    answer
}

#[derive(Deserialize, utoipa::IntoParams)]
struct CommuneQuery {
    /// Province code.
    province: i64,
}

/// The communes of a province, by name.
#[utoipa::path(get, path = "/api/v1/communes", params(CommuneQuery),
    responses((status = 200, body = [CommuneItem])))]
async fn communes(
    State(state): State<AppState>,
    q: Result<Query<CommuneQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return (StatusCode::BAD_REQUEST, Json(Vec::<CommuneItem>::new())).into_response();
    };
    let list: Vec<CommuneItem> = state
        .intake
        .geo()
        .communes_of(q.province)
        .map(|c| CommuneItem {
            code: c.code,
            name: c.name.clone(),
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "public, max-age=86400")],
        Json(list),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}
