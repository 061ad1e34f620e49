//! The resident pages: the tip form, the receipt, and "check my tip" with replies. Every
//! page works without JavaScript; a bad input re-renders the page with everything typed.

use crate::crypto::Receipt;
use crate::i18n::local_time;
use crate::i18n::{locales, Texts};
use crate::intake::{FieldError, IntakeError, TipInput, TipStatusView, MAX_PHOTOS};
use crate::state::once;
use crate::state::AppState;
use crate::state::{pad_to, ClientIp, Lang};
use crate::state::{Action, Limited};
use crate::tips::{Category, Channel};
use askama::Template;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(form_page))
        .route("/tips", post(submit_tip))
        .route("/tips/receipt", get(show_receipt))
        .route("/status", get(status_form).post(check_status))
        .route("/status/reply", post(reply))
        .route("/status/view", get(show_status))
        .route("/exit", get(quick_exit))
}

/// A language link in the page header.
pub struct LangLink {
    pub code: &'static str,
    pub name: String,
    pub current: bool,
}

pub(crate) fn lang_links(lang: Lang) -> Vec<LangLink> {
    locales()
        .all()
        .iter()
        .map(|l| LangLink {
            code: l.code,
            name: l.name().to_owned(),
            current: l.code == lang.0,
        })
        .collect()
}

/// One `<option>` or radio choice.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// An error shown beside a field and in the summary.
pub struct ErrorItem {
    pub field: &'static str,
    pub message: String,
}

fn error_items(t: Texts, errors: &[FieldError]) -> Vec<ErrorItem> {
    errors
        .iter()
        .map(|e| ErrorItem {
            field: e.field,
            message: t.get(e.code).to_owned(),
        })
        .collect()
}

/// What the resident typed into the form, kept across re-renders (and held as a draft
/// while the no-script place pickers show it again).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TipForm {
    pub category: String,
    pub province: String,
    pub commune: String,
    pub village: String,
    pub place_details: String,
    pub occurred_at: String,
    pub happening_now: bool,
    pub description: String,
    pub contact_opt_in: bool,
    pub contact: String,
    pub website: String,
    pub lang: String,
    pub action: String,
    /// The reply form's receipt (a POST field, never part of a URL).
    pub receipt: String,
    /// The form's submission token (`web::once`): the same form sent twice files once.
    pub submission: String,
}

impl TipForm {
    fn to_input(&self, photos: Vec<Vec<u8>>) -> TipInput {
        TipInput {
            category: self.category.clone(),
            province: self.province.trim().parse().ok(),
            commune: self.commune.trim().parse().ok(),
            village: self.village.clone(),
            place_details: self.place_details.clone(),
            occurred_at: self.occurred_at.clone(),
            happening_now: self.happening_now,
            description: self.description.clone(),
            contact: self.contact_opt_in.then(|| self.contact.clone()),
            photos,
        }
    }
}

#[derive(Template)]
#[template(path = "form.html")]
pub(crate) struct FormPage {
    t: Texts,
    langs: Vec<LangLink>,
    form: TipForm,
    categories: Vec<Choice>,
    provinces: Vec<Choice>,
    communes: Vec<Choice>,
    villages: Vec<String>,
    errors: Vec<ErrorItem>,
    /// A problem with the whole form (too large, too many tries, a failure): an error box.
    notice: Option<String>,
    /// Photos held from the form's last sending, which need not be chosen again.
    held_photos: usize,
}

impl FormPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    t: Texts,
    langs: Vec<LangLink>,
    /// Empty once the receipt was shown: the page then says so instead.
    receipt: String,
}

#[derive(Template)]
#[template(path = "status_form.html")]
struct StatusFormPage {
    t: Texts,
    langs: Vec<LangLink>,
    error: Option<String>,
    /// A reply that was typed but not sent, shown back so it is not lost.
    kept: String,
    /// The receipt as typed, when it was wrong: shown back to be corrected.
    typed: String,
}

/// A message as the status page shows it.
pub struct MessageLine {
    pub from_police: bool,
    pub when: String,
    pub text: String,
    pub photos: String,
}

#[derive(Template)]
#[template(path = "status.html")]
pub(crate) struct StatusPage {
    t: Texts,
    langs: Vec<LangLink>,
    receipt: String,
    status_label: String,
    status_key: &'static str,
    reward: bool,
    sent_at: String,
    messages: Vec<MessageLine>,
    reply_text: String,
    errors: Vec<ErrorItem>,
    notice: Option<String>,
    /// The reply form's submission token.
    submission: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    t: Texts,
    langs: Vec<LangLink>,
    message: String,
}

pub(crate) fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Why a resident page shows a form again instead of its result: what was typed comes
/// back with the reason, in one place.
pub(crate) enum Refusal {
    /// The tip form again, filled with what was typed, with its errors and notice.
    TipForm(Box<FormPage>, StatusCode),
    /// "Check my tip" again, with a message (a wrong receipt, a failure).
    /// The receipt form again with a message, and the receipt as typed.
    StatusForm(Lang, StatusCode, String, String),
    /// Too many receipt checks from this client: "check my tip" again with the wait, a
    /// `Retry-After`, and any reply that was typed (not sent).
    CheckLimited(Lang, Limited, String),
    /// The tip's status page again, with the reply that was typed and why it was refused.
    Reply(Box<StatusPage>, StatusCode),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::TipForm(page, status) => render(status, *page),
            Refusal::StatusForm(lang, status, message, typed) => render(
                status,
                StatusFormPage {
                    t: lang.texts(),
                    langs: lang_links(lang),
                    error: Some(message),
                    kept: String::new(),
                    typed,
                },
            ),
            Refusal::CheckLimited(lang, limited, kept) => {
                let t = lang.texts();
                let mut res = render(
                    StatusCode::TOO_MANY_REQUESTS,
                    StatusFormPage {
                        t,
                        langs: lang_links(lang),
                        error: Some(limited_message(t, "error.rate_limited_check", limited)),
                        kept,
                        typed: String::new(),
                    },
                );
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    limited.retry_after.as_secs().max(1).into(),
                );
                res
            }
            Refusal::Reply(page, status) => render(status, *page),
        }
    }
}

fn form_page_for(
    state: &AppState,
    lang: Lang,
    mut form: TipForm,
    errors: &[FieldError],
) -> FormPage {
    let t = lang.texts();
    // A form sent back keeps its token, so that it still files once; a new one gets one.
    form.submission = once::token_or_new(&form.submission);
    let geo = state.intake.geo();
    let province: Option<i64> = form.province.trim().parse().ok();
    let commune: Option<i64> = form.commune.trim().parse().ok();
    let categories = Category::ALL
        .iter()
        .map(|c| Choice {
            value: c.as_str().to_owned(),
            label: t.get(&format!("category.{}", c.as_str())).to_owned(),
            selected: form.category == c.as_str(),
        })
        .collect();
    let provinces = geo
        .provinces()
        .iter()
        .map(|p| Choice {
            value: p.code.to_string(),
            label: p.name.clone(),
            selected: Some(p.code) == province,
        })
        .collect();
    let communes = province
        .map(|p| {
            geo.communes_of(p)
                .map(|c| Choice {
                    value: c.code.to_string(),
                    label: c.name.clone(),
                    selected: Some(c.code) == commune,
                })
                .collect()
        })
        .unwrap_or_default();
    FormPage {
        t,
        langs: lang_links(lang),
        errors: error_items(t, errors),
        form,
        categories,
        provinces,
        communes,
        villages: Vec::new(),
        notice: None,
        held_photos: 0,
    }
}

async fn with_villages(state: &AppState, mut page: FormPage) -> FormPage {
    if let Ok(code) = page.form.commune.trim().parse::<i64>() {
        page.villages = super::village_names(state, code).await.to_vec();
    }
    page
}

#[derive(Deserialize)]
struct FormQuery {
    province: Option<String>,
    lang: Option<String>,
    /// A draft held by a place picker without script (its submission token).
    draft: Option<String>,
}

/// The reader's language for a year (`Secure` over HTTPS: `super::security_headers`).
fn lang_cookie(lang: Lang) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.0
    ))
    .expect("ascii cookie")
}

async fn form_page(
    State(state): State<AppState>,
    lang: Lang,
    Query(q): Query<FormQuery>,
) -> Response {
    if let Some(token) = q.draft.as_deref() {
        return draft_page(&state, lang, token).await;
    }
    let form = TipForm {
        province: q.province.unwrap_or_default(),
        lang: lang.0.to_owned(),
        ..TipForm::default()
    };
    let page = form_page_for(&state, lang, form, &[]);
    let mut res = render(StatusCode::OK, page);
    if q.lang.is_some() {
        res.headers_mut()
            .insert(header::SET_COOKIE, lang_cookie(lang));
    }
    res
}

/// `GET /?draft=TOKEN`: the form again as a place picker left it (no script), with the
/// chosen province's communes or the commune's villages, and the photos held for it. A
/// reload shows it again; Back goes to the page before, never to a POST. Not cached: the
/// draft stays in this process's memory only, for `once::KEEP`, and goes with the tip.
async fn draft_page(state: &AppState, header_lang: Lang, token: &str) -> Response {
    let held = once::valid_token(token).and_then(|t| state.submissions.draft(t));
    let Some((form, photos)) = held.and_then(|(draft, photos)| {
        serde_json::from_slice::<TipForm>(&draft)
            .ok()
            .map(|f| (f, photos))
    }) else {
        // Gone (expired, another process, filed): a new form, saying so.
        let t = header_lang.texts();
        let form = TipForm {
            lang: header_lang.0.to_owned(),
            ..TipForm::default()
        };
        let mut page = form_page_for(state, header_lang, form, &[]);
        page.notice = Some(t.get("form.draft_gone").to_owned());
        return no_store(render(StatusCode::OK, page));
    };
    let lang = form_lang(&form.lang, header_lang);
    let errors = if form.province.trim().is_empty() {
        vec![FieldError {
            field: "province",
            code: "error.unknown_province",
        }]
    } else {
        Vec::new()
    };
    let mut page = with_villages(state, form_page_for(state, lang, form, &errors)).await;
    page.held_photos = photos;
    no_store(render(StatusCode::OK, page))
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Longest text field read from a form: past it the form is refused as too big, with
/// what was read.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Longest photo read from a form (as `PhotoLimits`' default): past it, the same.
const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Most parts read from a form (it has fifteen fields and five photos).
const MAX_PARTS: usize = 64;

/// Reads a form part up to `cap` bytes; `false` when it is longer (what is past the cap
/// is not read).
async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    cap: usize,
) -> Result<(Vec<u8>, bool), MultipartError> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if out.len() + chunk.len() > cap {
            let room = cap - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, false));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, true))
}

/// Reads the tip form (and the reply form) as it arrives, bounded: each text field, each
/// photo, the number of parts and photos, and (through the route's body limit) the whole.
/// On a broken or oversized upload it stops reading and returns what was read so far
/// with the error's text key.
async fn read_tip_form(mut multipart: Multipart) -> (TipForm, Vec<Vec<u8>>, Option<&'static str>) {
    const TOO_BIG: &str = "error.body_too_large";
    let mut form = TipForm::default();
    let mut photos = Vec::new();
    let mut parts = 0;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return (form, photos, Some(multipart_error(&e))),
        };
        parts += 1;
        if parts > MAX_PARTS {
            return (form, photos, Some(TOO_BIG));
        }
        let name = field.name().unwrap_or("").to_owned();
        if name == "photos" || name == "photo" {
            if field.file_name().is_none_or(str::is_empty) {
                continue;
            }
            // One more than allowed is kept, so that intake names the problem; the rest
            // are skipped unread.
            if photos.len() > MAX_PHOTOS {
                continue;
            }
            // One byte past the photo limit is read and kept, so that intake names the
            // photo as too large (the rest of it is skipped unkept).
            match read_part(&mut field, MAX_PHOTO_BYTES + 1).await {
                Ok((b, false)) => photos.push(b),
                Ok((b, true)) if b.is_empty() => {}
                Ok((b, true)) => photos.push(b),
                Err(e) => return (form, photos, Some(multipart_error(&e))),
            }
            continue;
        }
        let (bytes, whole) = match read_part(&mut field, MAX_FIELD_BYTES).await {
            Ok(read) => read,
            Err(e) => return (form, photos, Some(multipart_error(&e))),
        };
        let value = String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "category" => form.category = value,
            "province" => form.province = value,
            "commune" => form.commune = value,
            "village" => form.village = value,
            "place_details" => form.place_details = value,
            "occurred_at" => form.occurred_at = value,
            "happening_now" => form.happening_now = !value.is_empty(),
            // The reply form's message is the tip form's description slot.
            "description" | "message" => form.description = value,
            "contact_opt_in" => form.contact_opt_in = !value.is_empty(),
            "contact" => form.contact = value,
            "website" => form.website = value,
            "lang" => form.lang = value,
            "action" => form.action = value,
            "receipt" => form.receipt = value,
            "submission" => form.submission = value,
            _ => {}
        }
        if !whole {
            return (form, photos, Some(TOO_BIG));
        }
    }
    (form, photos, None)
}

fn multipart_error(e: &MultipartError) -> &'static str {
    // The route's limit (`web::limit_body`) wraps the body in `Limited`; its error comes
    // through multer and axum boxed several times, so look down the whole chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut over_limit = false;
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>()
            || err.to_string().contains("length limit exceeded")
        {
            over_limit = true;
            break;
        }
        source = err.source();
    }
    if over_limit || e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "error.body_too_large"
    } else {
        "error.bad_request"
    }
}

/// A small form's body over its limit (`web::limit_body`): "check my tip" again on its
/// own route, else the error page, with the localised "too big" text.
pub(super) fn too_big(lang: Lang, path: &str) -> Response {
    let t = lang.texts();
    let message = t.get("error.body_too_large").to_owned();
    if path == "/status" {
        return Refusal::StatusForm(lang, StatusCode::PAYLOAD_TOO_LARGE, message, String::new())
            .into_response();
    }
    render(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorPage {
            t,
            langs: lang_links(lang),
            message,
        },
    )
}

/// A form with photos that found no place to be read within `photo_upload_wait_seconds`:
/// 503, try again in a minute (its body was not read; the form keeps what was typed).
pub(super) fn busy_uploads(lang: Lang) -> Response {
    let t = lang.texts();
    let mut res = render(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorPage {
            t,
            langs: lang_links(lang),
            message: t.get("error.busy_uploads").to_owned(),
        },
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    res
}

fn form_lang(form_lang: &str, header_lang: Lang) -> Lang {
    Lang::known(form_lang).unwrap_or(header_lang)
}

async fn rerender_form(
    state: &AppState,
    lang: Lang,
    status: StatusCode,
    form: TipForm,
    errors: &[FieldError],
    notice: Option<String>,
    photos: &[Vec<u8>],
) -> Refusal {
    let mut page = with_villages(state, form_page_for(state, lang, form, errors)).await;
    page.notice = notice;
    // The photos wait for the corrected form, unless they are what was wrong (then the
    // message names the problem and they are chosen again).
    let photo_error = errors.iter().any(|e| e.field == "photos");
    if !photos.is_empty() && !photo_error {
        if state
            .submissions
            .hold_photos(&page.form.submission, photos.to_vec())
        {
            page.held_photos = photos.len();
        } else if page.notice.is_none() {
            page.notice = Some(page.t.get("form.photos_again").to_owned());
        }
    }
    Refusal::TipForm(Box::new(page), status)
}

fn limited_message(t: Texts, key: &str, l: Limited) -> String {
    t.fill(key, &[("minutes", &l.minutes().to_string())])
}

async fn submit_tip(
    State(state): State<AppState>,
    header_lang: Lang,
    ClientIp(ip): ClientIp,
    multipart: Multipart,
) -> Result<Response, Refusal> {
    let (form, mut photos, broken) = read_tip_form(multipart).await;
    let lang = form_lang(&form.lang, header_lang);
    let t = lang.texts();
    // Photos held when this form was sent back with an error come with it again.
    if let Some(token) = once::valid_token(&form.submission) {
        let mut held = state.submissions.take_photos(token);
        if !held.is_empty() {
            held.append(&mut photos);
            photos = held;
        }
    }
    if let Some(code) = broken {
        let status = if code == "error.body_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        let notice = Some(t.get(code).to_owned());
        return Err(rerender_form(&state, lang, status, form, &[], notice, &photos).await);
    }
    if form.action == "pick_province" || form.action == "pick_commune" {
        // Not a refusal: the form again with the province's communes or the commune's
        // villages (no script), by a redirect to a GET of the draft held for it, so that
        // Back and reload never send the form again.
        let mut draft = form.clone();
        draft.submission = once::token_or_new(&form.submission);
        draft.action.clear();
        let anchor = if form.action == "pick_province" {
            "f-commune"
        } else {
            "f-village"
        };
        let fields = serde_json::to_vec(&draft).unwrap_or_default();
        photos = match state.submissions.hold(&draft.submission, fields, photos) {
            Ok(()) => {
                let to = format!("/?draft={}#{anchor}", draft.submission);
                return Ok(super::see_other(&to));
            }
            Err(photos) => photos,
        };
        let errors = if form.province.trim().is_empty() {
            vec![FieldError {
                field: "province",
                code: "error.unknown_province",
            }]
        } else {
            Vec::new()
        };
        return Ok(
            rerender_form(&state, lang, StatusCode::OK, form, &errors, None, &photos)
                .await
                .into_response(),
        );
    }
    if !form.website.is_empty() {
        let errors = [FieldError {
            field: "website",
            code: "error.honeypot",
        }];
        return Err(rerender_form(
            &state,
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            &errors,
            None,
            &photos,
        )
        .await);
    }
    if let Err(l) = state.limits.check(Action::Submit, ip) {
        let notice = Some(limited_message(t, "error.rate_limited", l));
        return Err(rerender_form(
            &state,
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            form,
            &[],
            notice,
            &photos,
        )
        .await);
    }
    // Something happening now, or a person in psychosis, must reach the police of a
    // place: without a province it would wait in no queue and alert nobody.
    let urgent = form.happening_now || form.category == Category::Psychosis.as_str();
    let mut errors = Vec::new();
    if urgent && form.province.trim().is_empty() && form.commune.trim().is_empty() {
        errors.push(FieldError {
            field: "province",
            code: "error.urgent_place",
        });
    }
    // A contact typed without its box ticked is neither dropped nor kept unasked.
    if !form.contact_opt_in && !form.contact.trim().is_empty() {
        errors.push(FieldError {
            field: "contact",
            code: "error.contact_unticked",
        });
    }
    if !errors.is_empty() {
        return Err(rerender_form(
            &state,
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            &errors,
            None,
            &photos,
        )
        .await);
    }
    // Kept for the form if intake sends it back (a few megabytes, only with photos).
    let input = form.to_input(photos.clone());
    // One submission, one tip: the same token again waits for the first and gets its
    // receipt page (once); a form without a token (an old page) files as it is.
    let token = once::token_or_new(&form.submission);
    let file = async {
        let receipt = state.intake.submit(Channel::Web, input).await?;
        let keys = state.intake.keys();
        Ok::<_, IntakeError>(once::seal_view(
            keys,
            RECEIPT_VIEW,
            &token,
            &receipt,
            once::now_s(),
        ))
    };
    match state.submissions.file_once(&token, file).await {
        Ok(view) => Ok(once::view_redirect(
            &state,
            "/tips/receipt",
            RECEIPT_COOKIE,
            &view,
            &token,
        )),
        Err(IntakeError::Invalid(errors)) => Err(rerender_form(
            &state,
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            &errors,
            None,
            &photos,
        )
        .await),
        Err(e) => {
            tracing::error!(error = %e, "a tip could not be stored");
            let notice = Some(t.get("error.internal").to_owned());
            Err(rerender_form(
                &state,
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                form,
                &[],
                notice,
                &photos,
            )
            .await)
        }
    }
}

/// `GET /exit`, the form's "quick exit": straight to an everyday site (the script also
/// replaces the page in the history, so Back does not return to the form).
async fn quick_exit() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "https://www.google.com/"),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

/// The receipt page's cookie and the kind its receipt is sealed for.
const RECEIPT_COOKIE: &str = "tinbao_receipt";
const RECEIPT_VIEW: &str = "receipt-view";
/// The status page's, after a reply.
const STATUS_COOKIE: &str = "tinbao_status";
const STATUS_VIEW: &str = "status-view";
/// The status page's, after a receipt check.
const CHECK_VIEW: &str = "status-check-view";

/// `GET /tips/receipt`: the receipt of the tip just sent, once; afterwards (a reload,
/// Back, the URL opened later) the page says the receipt was shown and how to check.
async fn show_receipt(
    State(state): State<AppState>,
    lang: Lang,
    headers: axum::http::HeaderMap,
) -> Response {
    let t = lang.texts();
    let receipt = once::take_view(&state, &headers, RECEIPT_COOKIE, RECEIPT_VIEW)
        .map(|r| r.to_string())
        .unwrap_or_default();
    let page = render(
        StatusCode::OK,
        ReceiptPage {
            t,
            langs: lang_links(lang),
            receipt,
        },
    );
    once::shown_once(page, RECEIPT_COOKIE, "/tips/receipt")
}

/// `GET /status/view`: the tip's status page after a reply was sent, once; without its
/// cookie, the receipt form.
async fn show_status(
    State(state): State<AppState>,
    lang: Lang,
    headers: axum::http::HeaderMap,
) -> Response {
    let t = lang.texts();
    // After a reply (with its notice), or after a receipt check.
    let (receipt, replied) = match once::take_view(&state, &headers, STATUS_COOKIE, STATUS_VIEW) {
        Some(r) => (r, true),
        None => match once::take_view(&state, &headers, STATUS_COOKIE, CHECK_VIEW) {
            Some(r) => (r, false),
            None => {
                let res = (StatusCode::SEE_OTHER, [(header::LOCATION, "/status")]).into_response();
                return once::shown_once(res, STATUS_COOKIE, "/status/view");
            }
        },
    };
    let page = match state.intake.status(&receipt).await {
        Ok(Some(view)) => {
            let mut page = status_page(t, lang, &receipt, view);
            if replied {
                page.notice = Some(t.get("status.reply_sent").to_owned());
            }
            render(StatusCode::OK, page)
        }
        Ok(None) => Refusal::StatusForm(
            lang,
            StatusCode::OK,
            t.get("status.not_found").into(),
            String::new(),
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status check failed");
            Refusal::StatusForm(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                t.get("error.check_failed").into(),
                String::new(),
            )
            .into_response()
        }
    };
    once::shown_once(page, STATUS_COOKIE, "/status/view")
}

async fn status_form(State(_): State<AppState>, lang: Lang) -> Response {
    render(
        StatusCode::OK,
        StatusFormPage {
            t: lang.texts(),
            langs: lang_links(lang),
            error: None,
            kept: String::new(),
            typed: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct StatusRequest {
    #[serde(default)]
    receipt: String,
    #[serde(default)]
    lang: String,
}

fn status_page(t: Texts, lang: Lang, receipt: &Receipt, view: TipStatusView) -> StatusPage {
    let key = view.status.as_str();
    StatusPage {
        t,
        langs: lang_links(lang),
        receipt: receipt.to_string(),
        status_label: t.get(&format!("status.{key}")).to_owned(),
        status_key: key,
        reward: view.reward_eligible,
        sent_at: local_time(view.created_at),
        messages: view
            .messages
            .into_iter()
            .map(|m| MessageLine {
                from_police: m.author == "police",
                when: local_time(m.created_at),
                photos: if m.photos > 0 {
                    t.fill("status.photos_count", &[("n", &m.photos.to_string())])
                } else {
                    String::new()
                },
                text: m.text,
            })
            .collect(),
        reply_text: String::new(),
        errors: Vec::new(),
        notice: None,
        submission: once::new_token(),
    }
}

fn status_form_error(lang: Lang, status: StatusCode, message: String) -> Refusal {
    Refusal::StatusForm(lang, status, message, String::new())
}

async fn check_status(
    State(state): State<AppState>,
    header_lang: Lang,
    ClientIp(ip): ClientIp,
    form: Result<Form<StatusRequest>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Refusal> {
    let start = tokio::time::Instant::now();
    let (receipt, lang) = match &form {
        Ok(Form(f)) => (f.receipt.as_str(), form_lang(&f.lang, header_lang)),
        Err(_) => ("", header_lang),
    };
    let t = lang.texts();
    if let Err(l) = state.limits.check(Action::Check, ip) {
        return Err(Refusal::CheckLimited(lang, l, String::new()));
    }
    // A wrong receipt comes back in the field, to be corrected rather than typed again.
    let typed: String = receipt.chars().take(40).collect();
    let response = match Receipt::parse(receipt) {
        Err(_) => Err(Refusal::StatusForm(
            lang,
            StatusCode::OK,
            t.get("status.bad_receipt").to_owned(),
            typed,
        )),
        Ok(receipt) => match state.intake.status(&receipt).await {
            // Post/redirect/get: the status page is a GET, shown once, so Back from it (or
            // from a reply sent on it) never asks to send the receipt again.
            Ok(Some(_)) => {
                let token = once::new_token();
                state.submissions.slot(&token);
                let view = once::seal_view(
                    state.intake.keys(),
                    CHECK_VIEW,
                    &token,
                    &receipt,
                    once::now_s(),
                );
                Ok(once::view_redirect(
                    &state,
                    "/status/view",
                    STATUS_COOKIE,
                    &view,
                    &token,
                ))
            }
            Ok(None) => Err(Refusal::StatusForm(
                lang,
                StatusCode::OK,
                t.get("status.not_found").to_owned(),
                typed,
            )),
            Err(e) => {
                tracing::error!(error = %e, "status check failed");
                // The tip is stored; only this look-up failed. Say so, calmly.
                Err(status_form_error(
                    lang,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t.get("error.check_failed").to_owned(),
                ))
            }
        },
    };
    pad_to(start, state.config.status_floor_ms).await;
    response
}

async fn reply(
    State(state): State<AppState>,
    header_lang: Lang,
    ClientIp(ip): ClientIp,
    multipart: Multipart,
) -> Result<Response, Refusal> {
    let start = tokio::time::Instant::now();
    let (form, photos, broken) = read_tip_form(multipart).await;
    let lang = form_lang(&form.lang, header_lang);
    let t = lang.texts();
    // A reply names a receipt and answers whether it is one: a receipt check like
    // `/status`, counted before anything is looked up.
    if let Err(l) = state.limits.check(Action::Check, ip) {
        return Err(Refusal::CheckLimited(lang, l, form.description));
    }
    let Ok(receipt) = Receipt::parse(&form.receipt) else {
        pad_to(start, state.config.status_floor_ms).await;
        return Err(status_form_error(
            lang,
            StatusCode::OK,
            t.get("status.bad_receipt").to_owned(),
        ));
    };
    let limited = state.limits.check(Action::Submit, ip).err();
    // Filed, it answers with a redirect; otherwise the status page with why not.
    let errors = match (broken, limited) {
        (Some(code), _) => vec![ErrorItem {
            field: "message",
            message: t.get(code).to_owned(),
        }],
        (None, Some(l)) => vec![ErrorItem {
            field: "message",
            message: limited_message(t, "error.rate_limited", l),
        }],
        (None, None) => match reply_once(&state, &form, &receipt, photos).await {
            Ok(Some(view)) => {
                pad_to(start, state.config.status_floor_ms).await;
                let token = once::valid_token(&form.submission).unwrap_or_default();
                return Ok(once::view_redirect(
                    &state,
                    "/status/view",
                    STATUS_COOKIE,
                    &view,
                    token,
                ));
            }
            Ok(None) => {
                pad_to(start, state.config.status_floor_ms).await;
                return Err(status_form_error(
                    lang,
                    StatusCode::OK,
                    t.get("status.not_found").to_owned(),
                ));
            }
            Err(IntakeError::Invalid(errors)) => error_items(t, &errors),
            Err(e) => {
                tracing::error!(error = %e, "a reply could not be stored");
                vec![ErrorItem {
                    field: "message",
                    message: t.get("error.reply_failed").to_owned(),
                }]
            }
        },
    };
    let view = match state.intake.status(&receipt).await {
        Ok(Some(view)) => view,
        Ok(None) => {
            pad_to(start, state.config.status_floor_ms).await;
            return Err(status_form_error(
                lang,
                StatusCode::OK,
                t.get("status.not_found").to_owned(),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "status check failed");
            return Err(status_form_error(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                t.get("error.check_failed").to_owned(),
            ));
        }
    };
    let mut page = status_page(t, lang, &receipt, view);
    pad_to(start, state.config.status_floor_ms).await;
    page.reply_text = form.description.clone();
    page.errors = errors;
    if let Some(token) = once::valid_token(&form.submission) {
        page.submission = token.to_owned();
    }
    Err(Refusal::Reply(
        Box::new(page),
        StatusCode::UNPROCESSABLE_ENTITY,
    ))
}

/// Files a reply once per submission token: `Some(view)` (the cookie value that shows the
/// status page) once filed, `None` when the receipt names no tip.
async fn reply_once(
    state: &AppState,
    form: &TipForm,
    receipt: &Receipt,
    photos: Vec<Vec<u8>>,
) -> Result<Option<String>, IntakeError> {
    let token = once::token_or_new(&form.submission);
    let file = async {
        match state.intake.reply(receipt, &form.description, photos).await {
            Ok(true) => {}
            Ok(false) => return Err(None),
            Err(e) => return Err(Some(e)),
        }
        let keys = state.intake.keys();
        Ok(once::seal_view(
            keys,
            STATUS_VIEW,
            &token,
            receipt,
            once::now_s(),
        ))
    };
    match state.submissions.file_once(&token, file).await {
        Ok(view) => Ok(Some(view)),
        Err(None) => Ok(None),
        Err(Some(e)) => Err(e),
    }
}

pub(super) async fn not_found(lang: Lang) -> Response {
    let t = lang.texts();
    render(
        StatusCode::NOT_FOUND,
        ErrorPage {
            t,
            langs: lang_links(lang),
            message: t.get("error.not_found").to_owned(),
        },
    )
}

/// The tip form's multipart reader on a raw request body, as `POST /tips` and
/// `POST /status/reply` read it: the photos read and the error key of a broken upload.
/// Public for the fuzz targets (`fuzz/`), which must run the handlers' own reader; the
/// default body limit applies as it does behind the router's.
pub async fn read_tip_form_body(
    content_type: &str,
    body: axum::body::Bytes,
) -> (usize, Option<&'static str>) {
    use axum::extract::FromRequest;
    let request = axum::http::Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body));
    let Ok(request) = request else {
        return (0, Some("error.bad_request"));
    };
    let multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(_) => return (0, Some("error.bad_request")),
    };
    let (_form, photos, broken) = read_tip_form(multipart).await;
    (photos.len(), broken)
}
