//! Logging in: password (argon2id), a forced change on first login, TOTP enrolment and
//! verification, throttling kept in the database so it holds across server processes.

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::{cookie_value, stage_path, token_hash, ConsoleSession, SESSION_COOKIE};
use crate::accounts::{self, Account, MIN_PASSWORD};
use crate::clock::now_ms;
use crate::crypto::random_bytes;
use crate::i18n::Texts;
use crate::state::AppState;
use crate::state::{Action, ClientIp, Limited};
use crate::store::SessionRow;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

const PRE_COOKIE: &str = "tinbao_pre";
/// Failures per account before a lockout, and per client address.
const MAX_ACCOUNT_FAILURES: i64 = 5;
const MAX_CLIENT_FAILURES: i64 = 20;
const WINDOW_MS: i64 = 15 * 60_000;
const LOCK_MS: i64 = 15 * 60_000;
/// Wrong second-factor codes per account within [`TOTP_WINDOW_MS`] before the account's
/// second factor locks for [`TOTP_LOCK_MS`]. A right password never resets this count;
/// only a right code does.
const MAX_TOTP_FAILURES: i64 = 5;
const TOTP_WINDOW_MS: i64 = 60 * 60_000;
const TOTP_LOCK_MS: i64 = 60 * 60_000;

/// The localised wait of a locked throttle key, if it is locked now.
async fn locked_message(
    state: &AppState,
    key: &[u8],
    text: &str,
    now: i64,
) -> Result<Option<String>, ConsoleError> {
    match state.store.login_locked_until(key).await? {
        Some(until) if until > now => {
            let minutes = ((until - now) / 60_000 + 1).to_string();
            Ok(Some(texts().fill(text, &[("minutes", &minutes)])))
        }
        _ => Ok(None),
    }
}

/// The per-client limiter's refusal on a login step: the wait, and `Retry-After`.
fn limited_message(l: Limited) -> String {
    texts().fill(
        "console.login_locked",
        &[("minutes", &l.minutes().to_string())],
    )
}

fn with_retry_after(mut res: Response, l: Limited) -> Response {
    res.headers_mut()
        .insert(header::RETRY_AFTER, l.retry_after.as_secs().max(1).into());
    res
}

/// A console cookie (`Secure` over HTTPS: `web::security_headers` adds it to every cookie).
fn cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("ascii cookie")
}

#[derive(Template)]
#[template(path = "console_login.html")]
struct LoginPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    username: String,
    error: Option<String>,
}

fn login_form(status: StatusCode, username: String, error: Option<String>) -> Response {
    let token = hex::encode(random_bytes::<16>());
    let mut res = render(
        status,
        LoginPage {
            t: texts(),
            me: None,
            csrf: token.clone(),
            username,
            error,
        },
    );
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(PRE_COOKIE, &token, 3600));
    res
}

/// The login form (with a double-submit token: there is no session yet).
pub async fn login_page() -> Response {
    login_form(StatusCode::OK, String::new(), None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// A hash to verify against when the account does not exist, so both cases cost the same.
async fn dummy_hash() -> String {
    static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    HASH.get_or_init(|| accounts::hash_password("tinbao dummy password".into()))
        .await
        .clone()
}

/// Checks the password; on success opens a session at the right login stage.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Page {
    let Ok(Form(f)) = form else {
        return Err(ConsoleError::Denied(StatusCode::BAD_REQUEST));
    };
    let pre = cookie_value(&headers, PRE_COOKIE).unwrap_or("");
    if pre.is_empty() || !crate::crypto::constant_eq(pre.as_bytes(), f.csrf.as_bytes()) {
        return Err(ConsoleError::forbidden());
    }
    let t = texts();
    if let Err(l) = state.limits.check(Action::Login, ip) {
        let res = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            f.username,
            Some(limited_message(l)),
        );
        return Ok(with_retry_after(res, l));
    }
    let store = &state.store;
    let now = now_ms();
    let keys = state.logins.throttle_keys(f.username.trim(), ip, now);
    let (account_key, client_key) = (keys.account, keys.client);
    for (key, text) in [
        (&account_key, "console.login_locked"),
        (&client_key, "console.login_locked"),
        (&keys.totp, "console.totp_locked"),
    ] {
        if let Some(msg) = locked_message(&state, key, text, now).await? {
            return Ok(login_form(
                StatusCode::TOO_MANY_REQUESTS,
                f.username,
                Some(msg),
            ));
        }
    }
    let row = store.account_by_username(f.username.trim()).await?;
    let hash = match row.as_ref() {
        Some(r) => r.password_hash.clone(),
        None => dummy_hash().await,
    };
    let password_ok = accounts::verify_password(f.password.clone(), hash).await;
    let account = row.as_ref().and_then(Account::from_row);
    let Some(account) = account.filter(|a| password_ok && !a.disabled) else {
        // A failure that cannot be counted must not go uncounted: the request fails.
        store
            .record_login_failure(&account_key, now, WINDOW_MS, MAX_ACCOUNT_FAILURES, LOCK_MS)
            .await?;
        store
            .record_login_failure(&client_key, now, WINDOW_MS, MAX_CLIENT_FAILURES, LOCK_MS)
            .await?;
        state
            .audit
            .record(None, "account.login_failed", None, None, None, "")
            .await?;
        return Ok(login_form(
            StatusCode::UNAUTHORIZED,
            f.username,
            Some(t.get("console.login_failed").to_owned()),
        ));
    };
    // Only a whole login clears the account's failures: with a second factor still to
    // come, a right password alone must not reset the count of wrong codes.
    if !needs_second_factor(&account) {
        store.clear_login_failures(&account_key).await?;
    }
    let stage = next_stage(&account, "password_ok");
    let token = hex::encode(random_bytes::<32>());
    let session = SessionRow {
        token_hash: token_hash(&token),
        account_id: account.id.clone(),
        stage: stage.to_owned(),
        csrf: hex::encode(random_bytes::<16>()),
        created_at: now,
        last_seen_at: now,
    };
    store.insert_session(&session).await?;
    // No cookie for a login the audit log does not know of.
    state
        .audit
        .record(
            Some(&account.id),
            "account.login",
            None,
            account.province_code,
            account.commune_code,
            stage,
        )
        .await?;
    let mut res = Redirect::to(stage_path(stage)).into_response();
    let max_age = super::ABSOLUTE_HOURS * 3600;
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(SESSION_COOKIE, &token, max_age));
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(PRE_COOKIE, "", 0));
    Ok(res)
}

/// Whether the account logs in with a second factor.
fn needs_second_factor(account: &Account) -> bool {
    account.role.reads_tips() || account.totp_confirmed
}

/// The stage after `done`: a forced password change, then TOTP, then full.
fn next_stage(account: &Account, done: &str) -> &'static str {
    if done == "password_ok" && account.must_change_password {
        return "password";
    }
    if needs_second_factor(account) {
        if done == "totp_ok" {
            "full"
        } else if account.totp_confirmed {
            "totp"
        } else {
            "enrol"
        }
    } else {
        "full"
    }
}

#[derive(Template)]
#[template(path = "console_password.html")]
struct PasswordPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    error: Option<String>,
    /// A voluntary change (a full session) asks for the current password; the forced
    /// first change follows the one-time password just typed.
    ask_current: bool,
}

fn password_form(s: &ConsoleSession, status: StatusCode, error: Option<String>) -> Response {
    render(
        status,
        PasswordPage {
            t: texts(),
            me: me(s),
            csrf: s.csrf.clone(),
            error,
            ask_current: s.stage == "full",
        },
    )
}

/// The forced (or voluntary) password change.
pub async fn password_page(Extension(s): Extension<ConsoleSession>) -> Response {
    if s.stage != "password" && s.stage != "full" {
        return Redirect::to(stage_path(&s.stage)).into_response();
    }
    password_form(&s, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

/// Sets the new password, then moves on to the second factor. A voluntary change needs
/// the current password (counted like a login) and ends the account's other sessions.
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Extension(s): Extension<ConsoleSession>,
    Form(f): Form<PasswordForm>,
) -> Page {
    if s.stage != "password" && s.stage != "full" {
        return Ok(Redirect::to(stage_path(&s.stage)).into_response());
    }
    let t = texts();
    if s.stage == "full" {
        if let Err(l) = state.limits.check(Action::Login, ip) {
            let res = password_form(&s, StatusCode::TOO_MANY_REQUESTS, Some(limited_message(l)));
            return Ok(with_retry_after(res, l));
        }
        let now = now_ms();
        let keys = state.logins.throttle_keys(&s.account.username, ip, now);
        if let Some(msg) =
            locked_message(&state, &keys.account, "console.login_locked", now).await?
        {
            return Ok(password_form(&s, StatusCode::TOO_MANY_REQUESTS, Some(msg)));
        }
        let Some(row) = state.store.account(&s.account.id).await? else {
            return Err(ConsoleError::forbidden());
        };
        if !accounts::verify_password(f.current_password.clone(), row.password_hash).await {
            state
                .store
                .record_login_failure(&keys.account, now, WINDOW_MS, MAX_ACCOUNT_FAILURES, LOCK_MS)
                .await?;
            return Ok(password_form(
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(t.get("console.password_current_wrong").to_owned()),
            ));
        }
    }
    let error = if f.password.chars().count() < MIN_PASSWORD {
        Some("console.password_short")
    } else if f.password != f.password_again {
        Some("console.password_mismatch")
    } else if f.password == s.account.username {
        Some("console.password_same")
    } else {
        None
    };
    if let Some(key) = error {
        return Ok(password_form(
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(t.get(key).to_owned()),
        ));
    }
    let store = &state.store;
    let hash = accounts::hash_password(f.password).await;
    store
        .set_password(&s.account.id, &hash, false, now_ms())
        .await?;
    // Whoever else held a session of this account (a stolen cookie, a forgotten device)
    // is out once the password changes.
    store
        .delete_other_sessions(&s.account.id, &s.token_hash)
        .await?;
    state
        .audit
        .record(
            Some(&s.account.id),
            "account.password",
            None,
            s.account.province_code,
            s.account.commune_code,
            "",
        )
        .await?;
    let mut account = s.account.clone();
    account.must_change_password = false;
    let stage = if s.stage == "full" {
        "full"
    } else {
        next_stage(&account, "password_changed")
    };
    store.set_session_stage(&s.token_hash, stage).await?;
    Ok(Redirect::to(stage_path(stage)).into_response())
}

#[derive(Template)]
#[template(path = "console_totp.html")]
struct TotpPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    enrol: bool,
    qr: Option<String>,
    secret: String,
    error: Option<String>,
}

async fn totp_form(
    state: &AppState,
    s: &ConsoleSession,
    status: StatusCode,
    error: Option<String>,
) -> Page {
    let enrol = s.stage == "enrol";
    let (mut qr, mut secret) = (None, String::new());
    if enrol {
        let Some(totp) = state.logins.enrolment_totp(&s.account).await? else {
            return Err(ConsoleError::forbidden());
        };
        qr = totp.get_qr_base64().ok();
        // Grouped in fours, as people copy it into an authenticator app (which ignores
        // the spaces).
        secret = totp
            .get_secret_base32()
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
    }
    Ok(render(
        status,
        TotpPage {
            t: texts(),
            me: None,
            csrf: s.csrf.clone(),
            enrol,
            qr,
            secret,
            error,
        },
    ))
}

/// TOTP enrolment (QR code and text secret) or verification.
pub async fn totp_page(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
) -> Page {
    if s.stage != "enrol" && s.stage != "totp" {
        return Ok(Redirect::to(stage_path(&s.stage)).into_response());
    }
    totp_form(&state, &s, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct TotpForm {
    #[serde(default)]
    code: String,
}

/// Checks a TOTP code (once per time step), then completes the login.
pub async fn totp_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Extension(s): Extension<ConsoleSession>,
    Form(f): Form<TotpForm>,
) -> Page {
    if s.stage != "enrol" && s.stage != "totp" {
        return Ok(Redirect::to(stage_path(&s.stage)).into_response());
    }
    if let Err(l) = state.limits.check(Action::Login, ip) {
        let res = totp_form(
            &state,
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            Some(limited_message(l)),
        )
        .await?;
        return Ok(with_retry_after(res, l));
    }
    let store = &state.store;
    let now = now_ms();
    let keys = state.logins.throttle_keys(&s.account.username, ip, now);
    let account_key = keys.account;
    for (key, text) in [
        (&keys.totp, "console.totp_locked"),
        (&account_key, "console.login_locked"),
    ] {
        if let Some(msg) = locked_message(&state, key, text, now).await? {
            return totp_form(&state, &s, StatusCode::TOO_MANY_REQUESTS, Some(msg)).await;
        }
    }
    let Some(row) = store.account(&s.account.id).await? else {
        return Err(ConsoleError::forbidden());
    };
    let step = state
        .logins
        .code_step(&row, &s.account.username, &f.code, now);
    let fresh = match step {
        Some(step) => store.use_totp_step(&s.account.id, step).await?,
        None => false,
    };
    if !fresh {
        let client_key = keys.client;
        store
            .record_login_failure(&account_key, now, WINDOW_MS, MAX_ACCOUNT_FAILURES, LOCK_MS)
            .await?;
        store
            .record_login_failure(&client_key, now, WINDOW_MS, MAX_CLIENT_FAILURES, LOCK_MS)
            .await?;
        store
            .record_login_failure(
                &keys.totp,
                now,
                TOTP_WINDOW_MS,
                MAX_TOTP_FAILURES,
                TOTP_LOCK_MS,
            )
            .await?;
        if let Some(msg) = locked_message(&state, &keys.totp, "console.totp_locked", now).await? {
            return totp_form(&state, &s, StatusCode::TOO_MANY_REQUESTS, Some(msg)).await;
        }
        let msg = texts().get("console.totp_wrong").to_owned();
        return totp_form(&state, &s, StatusCode::UNAUTHORIZED, Some(msg)).await;
    }
    if s.stage == "enrol" {
        store
            .set_totp(&s.account.id, row.totp_secret.as_deref(), true, now)
            .await?;
        // set_totp resets the step; record this one again so the code cannot be replayed.
        store
            .use_totp_step(&s.account.id, step.unwrap_or_default())
            .await?;
    }
    store.clear_login_failures(&account_key).await?;
    store.clear_login_failures(&keys.totp).await?;
    // The audit entry first: a session becomes full only once its login is on record.
    state
        .audit
        .record(
            Some(&s.account.id),
            "account.totp",
            None,
            s.account.province_code,
            s.account.commune_code,
            &s.stage,
        )
        .await?;
    // A new session id for the logged-in session: whatever id was known before the
    // second factor (a fixed or sniffed cookie) is worth nothing after it.
    let token = hex::encode(random_bytes::<32>());
    let session = SessionRow {
        token_hash: token_hash(&token),
        account_id: s.account.id.clone(),
        stage: "full".to_owned(),
        csrf: hex::encode(random_bytes::<16>()),
        created_at: now,
        last_seen_at: now,
    };
    store.replace_session(&s.token_hash, &session).await?;
    let mut res = Redirect::to("/console").into_response();
    let max_age = super::ABSOLUTE_HOURS * 3600;
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(SESSION_COOKIE, &token, max_age));
    Ok(res)
}

/// Ends this session.
pub async fn logout(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
) -> Page {
    // A session that could not be ended must not look ended.
    state.store.delete_session(&s.token_hash).await?;
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(SESSION_COOKIE, "", 0));
    Ok(res)
}

/// Ends every session of this account, on every device.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
) -> Page {
    let store = &state.store;
    store.delete_sessions_of(&s.account.id).await?;
    state
        .audit
        .record(
            Some(&s.account.id),
            "account.logout_everywhere",
            None,
            s.account.province_code,
            s.account.commune_code,
            "",
        )
        .await?;
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, cookie(SESSION_COOKIE, "", 0));
    Ok(res)
}
