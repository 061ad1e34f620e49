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
        .route("/api/v1/villages", get(villages))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tinbao",
        description = "Anonymous drug-crime tips for commune police"
    ),
    paths(create_tip, tip_status, communes, villages),
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
#[schema(example = json!({
    "category": "dealing",
    "province": 1,
    "commune": 70,
    "village": "Tổ 5",
    "place_details": "quán nước đầu ngõ",
    "occurred_at": "tối qua, khoảng 9 giờ",
    "happening_now": false,
    "description": "Có người bán ma tuý ở quán nước đầu ngõ, tối nào cũng có."
}))]
pub struct NewTip {
    /// What the tip is about: one of the categories (an unknown one is answered 422).
    #[schema(value_type = Category)]
    pub category: String,
    /// Province code (GSO), if known. A whole number written with a zero fraction
    /// (`1.0`) is read as that integer; any other fraction is answered 400.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = Option<i64>)]
    pub province: Option<i64>,
    /// Commune code (GSO), if known; read like `province`.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = Option<i64>)]
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
#[schema(example = json!({"receipt": "4821-0937-5526-1840", "status": "received"}))]
pub struct ReceiptAnswer {
    /// 16 digits as 4-4-4-4.
    pub receipt: String,
    pub status: PublicStatus,
}

/// A receipt to look up.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"receipt": "4821-0937-5526-1840"}))]
pub struct StatusQuery {
    /// 16 digits, with or without separators. Anything else is answered like an unknown
    /// receipt (404).
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
    /// What went wrong, in the requested language.
    pub message: String,
    /// The fields that do not pass (only with `invalid`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub fields: Vec<FieldProblem>,
}

/// A commune for the form's picker.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommuneItem {
    pub code: i64,
    pub name: String,
}

/// Why the API gives no answer of its own; turned into a JSON error in one place.
#[derive(Debug)]
pub enum Failure {
    /// Not JSON, not the schema, or too large.
    Malformed { too_large: bool },
    /// Too many requests from this client; try again after this many seconds. `message`
    /// is the text's key: which limit it was (tips, receipt checks, look-ups).
    RateLimited {
        retry_after: u64,
        message: &'static str,
    },
    /// Fields that do not pass: (field, message key).
    Invalid(Vec<(&'static str, &'static str)>),
    /// No tip with that receipt (or not a receipt at all: the same answer).
    NotFound,
    /// A service failed: logged, never described.
    Internal(IntakeError),
    /// A receipt check failed: logged; the tipster is told the tip itself is safe.
    CheckFailed(IntakeError),
}

/// A [`Failure`] in the reader's language.
#[derive(Debug)]
pub struct ApiFailure {
    pub lang: Lang,
    pub failure: Failure,
}

impl Failure {
    fn in_lang(self, lang: Lang) -> ApiFailure {
        ApiFailure {
            lang,
            failure: self,
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let t = self.lang.texts();
        let mut args: Vec<(&str, String)> = Vec::new();
        let (status, error, key, fields) = match self.failure {
            Failure::Malformed { too_large: true } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "malformed",
                "error.body_too_large",
                Vec::new(),
            ),
            Failure::Malformed { too_large: false } => (
                StatusCode::BAD_REQUEST,
                "malformed",
                "error.bad_request",
                Vec::new(),
            ),
            Failure::RateLimited {
                retry_after,
                message,
            } => {
                args.push(("minutes", retry_after.div_ceil(60).max(1).to_string()));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    message,
                    Vec::new(),
                )
            }
            Failure::Invalid(ref fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "form.errors_title",
                fields
                    .iter()
                    .map(|(field, code)| FieldProblem {
                        field: (*field).into(),
                        code: (*code).into(),
                        message: t.get(code).to_owned(),
                    })
                    .collect(),
            ),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "status.not_found",
                Vec::new(),
            ),
            Failure::Internal(ref e) => {
                tracing::error!(error = %e, "an API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "error.internal",
                    Vec::new(),
                )
            }
            Failure::CheckFailed(ref e) => {
                tracing::error!(error = %e, "an API status check failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "error.check_failed",
                    Vec::new(),
                )
            }
        };
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut res = (
            status,
            Json(ApiError {
                error: error.into(),
                message: t.fill(key, &args),
                fields,
            }),
        )
            .into_response();
        if let Failure::RateLimited { retry_after, .. } = self.failure {
            res.headers_mut()
                .insert(header::RETRY_AFTER, retry_after.max(1).into());
        }
        res
    }
}

/// Reads an optional whole number: a JSON integer, or a number with a zero fraction (`1.0`,
/// as some JSON encoders write every number), which JSON Schema counts as an integer too.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    // 2^63 as f64: the first float past i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // The cast is exact: a whole f64 inside i64's range.
        Some(f) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom("not a whole number")),
    }
}

fn malformed(rejection: &JsonRejection) -> Failure {
    Failure::Malformed {
        too_large: rejection.status() == StatusCode::PAYLOAD_TOO_LARGE,
    }
}

fn from_intake(e: IntakeError) -> Failure {
    match e {
        IntakeError::Invalid(errors) => {
            Failure::Invalid(errors.iter().map(|e| (e.field, e.code)).collect())
        }
        e => Failure::Internal(e),
    }
}

/// Submit a tip.
#[utoipa::path(post, path = "/api/v1/tips", request_body = NewTip,
    responses(
        (status = 201, description = "Stored; the receipt is shown once", body = ReceiptAnswer),
        (status = 400, description = "Not JSON, no JSON content type, or not this schema",
            body = ApiError),
        (status = 413, description = "The body is larger than the server takes",
            body = ApiError),
        (status = 422, description = "Fields that do not pass, each named", body = ApiError),
        (status = 429, description = "Too many tips from this client", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "The tip could not be stored", body = ApiError)))]
async fn create_tip(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    body: Result<Json<NewTip>, JsonRejection>,
) -> Result<(StatusCode, Json<ReceiptAnswer>), ApiFailure> {
    let Json(tip) = body.map_err(|r| malformed(&r).in_lang(lang))?;
    state.limits.check(Action::Submit, ip).map_err(|l| {
        Failure::RateLimited {
            retry_after: l.retry_after.as_secs(),
            message: "error.rate_limited_api",
        }
        .in_lang(lang)
    })?;
    let mut photos = Vec::with_capacity(tip.photos.len());
    for p in &tip.photos {
        let photo = base64::engine::general_purpose::STANDARD
            .decode(p)
            .map_err(|_| Failure::Invalid(vec![("photos", "error.photo_corrupt")]).in_lang(lang))?;
        photos.push(photo);
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
    let receipt = state
        .intake
        .submit(Channel::Api, input)
        .await
        .map_err(|e| from_intake(e).in_lang(lang))?;
    Ok((
        StatusCode::CREATED,
        Json(ReceiptAnswer {
            receipt: receipt.to_string(),
            status: PublicStatus::Received,
        }),
    ))
}

/// Look up a tip by its receipt. Unknown and malformed receipts get the same answer, in
/// the same time.
#[utoipa::path(post, path = "/api/v1/tips/status", request_body = StatusQuery,
    responses(
        (status = 200, description = "The tip's status and the police's messages",
            body = TipStatusView),
        (status = 400, description = "Not JSON, no JSON content type, or not this schema",
            body = ApiError),
        (status = 404, description = "No tip with this receipt", body = ApiError),
        (status = 413, description = "The body is larger than the server takes",
            body = ApiError),
        (status = 429, description = "Too many checks from this client", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "The tip could not be read", body = ApiError)))]
async fn tip_status(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    body: Result<Json<StatusQuery>, JsonRejection>,
) -> Result<Json<TipStatusView>, ApiFailure> {
    let start = tokio::time::Instant::now();
    let Json(query) = body.map_err(|r| malformed(&r).in_lang(lang))?;
    state.limits.check(Action::Check, ip).map_err(|l| {
        Failure::RateLimited {
            retry_after: l.retry_after.as_secs(),
            message: "error.rate_limited_check",
        }
        .in_lang(lang)
    })?;
    let answer = match Receipt::parse(&query.receipt) {
        Err(_) => Err(Failure::NotFound),
        Ok(receipt) => match state.intake.status(&receipt).await {
            Ok(Some(view)) => Ok(Json(view)),
            Ok(None) => Err(Failure::NotFound),
            Err(e) => Err(Failure::CheckFailed(e)),
        },
    };
    // Every receipt answer takes the same time, whatever it says.
    pad_to(start, state.config.status_floor_ms).await;
    answer.map_err(|f| f.in_lang(lang))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CommuneQuery {
    /// Province code.
    province: i64,
}

/// The communes of a province, by name.
#[utoipa::path(get, path = "/api/v1/communes", params(CommuneQuery),
    responses(
        (status = 200, description = "The communes, by name (empty for an unknown province)",
            body = [CommuneItem]),
        (status = 400, description = "No province, or not an integer", body = ApiError)))]
async fn communes(
    State(state): State<AppState>,
    lang: Lang,
    q: Result<Query<CommuneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = q.map_err(|_| Failure::Malformed { too_large: false }.in_lang(lang))?;
    let list: Vec<CommuneItem> = state
        .intake
        .geo()
        .communes_of(q.province)
        .map(|c| CommuneItem {
            code: c.code,
            name: c.name.clone(),
        })
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=86400")],
        Json(list),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct VillageQuery {
    /// Commune code.
    commune: i64,
}

/// The villages (thôn, bản, tổ dân phố) a commune lists, by name: the form's suggestions.
#[utoipa::path(get, path = "/api/v1/villages", params(VillageQuery),
    responses(
        (status = 200, description = "The commune's village names (empty for an unknown commune)",
            body = [String]),
        (status = 400, description = "No commune, or not an integer", body = ApiError),
        (status = 429, description = "Too many look-ups from this client", body = ApiError,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
async fn villages(
    State(state): State<AppState>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    q: Result<Query<VillageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(q) = q.map_err(|_| Failure::Malformed { too_large: false }.in_lang(lang))?;
    state.limits.check(Action::Lookup, ip).map_err(|l| {
        Failure::RateLimited {
            retry_after: l.retry_after.as_secs(),
            message: "error.rate_limited_lookup",
        }
        .in_lang(lang)
    })?;
    let names = super::village_names(&state, q.commune).await;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(names.as_slice()),
    )
        .into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}
