//! The police and village-head console: login with a second factor, server-side sessions,
//! CSRF on every form, and one access rule per route, registered with the route itself so
//! that no route can exist without a rule.

mod accounts_page;
mod audit_page;
pub mod auth;
mod broadcasts;
mod error;
mod hotline;
mod pages;
mod queue;
pub mod reports;
mod retention;
mod tip;
mod tracker;

use crate::accounts::{Account, Role};
use crate::clock::now_ms;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use std::sync::Arc;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the login page).
    Public,
    /// A session at any login stage (changing the password, enrolling TOTP).
    Staged,
    /// A fully logged-in session of one of these roles.
    Roles(&'static [Role]),
}

/// One console route and its rule.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// Police roles that work the queue of a commune.
pub const COMMUNE_POLICE: &[Role] = &[Role::Officer, Role::Chief];
/// Who writes campaign broadcasts: village heads and commune chiefs.
pub const BROADCASTERS: &[Role] = &[Role::VillageHead, Role::Chief];
/// Who works with a commune's broadcasts: their writers and the officers who approve.
pub const CAMPAIGN: &[Role] = &[Role::Officer, Role::Chief, Role::VillageHead];
/// Who reads the commune reports (each within its own scope).
pub const REPORT_READERS: &[Role] = &[
    Role::Officer,
    Role::Chief,
    Role::Province,
    Role::Statistics,
    Role::Admin,
];
/// Who reads the drug-free village tracker (each within its own scope; a village head
/// its own village).
pub const TRACKER_READERS: &[Role] = &[
    Role::Officer,
    Role::Chief,
    Role::Province,
    Role::Statistics,
    Role::Admin,
    Role::VillageHead,
];
/// Every role that may read tips.
pub const TIP_READERS: &[Role] = &[Role::Officer, Role::Chief, Role::Province, Role::Admin];

struct Routes {
    router: Router<AppState>,
    specs: Vec<RouteSpec>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, handler));
        self.specs.push(RouteSpec {
            method,
            path,
            access,
        });
        self
    }
}

fn routes() -> Routes {
    use Access::*;
    use Method as M;
    let r = Routes {
        router: Router::new(),
        specs: Vec::new(),
    };
    r.add(M::GET, "/console/login", Public, auth::login_page)
        .add(M::POST, "/console/login", Public, auth::login)
        .add(M::GET, "/console/password", Staged, auth::password_page)
        .add(M::POST, "/console/password", Staged, auth::change_password)
        .add(M::GET, "/console/totp", Staged, auth::totp_page)
        .add(M::POST, "/console/totp", Staged, auth::totp_submit)
        .add(M::POST, "/console/logout", Staged, auth::logout)
        .add(
            M::POST,
            "/console/logout-everywhere",
            Roles(&Role::ALL),
            auth::logout_everywhere,
        )
        .add(M::GET, "/console", Roles(&Role::ALL), queue::home)
        .add(
            M::GET,
            "/console/queue",
            Roles(TIP_READERS),
            queue::queue_page,
        )
        .add(M::GET, "/console/events", Roles(TIP_READERS), queue::events)
        .add(
            M::GET,
            "/console/reports",
            Roles(REPORT_READERS),
            reports::report_page,
        )
        .add(
            M::GET,
            "/console/reports/export",
            Roles(REPORT_READERS),
            reports::report_export,
        )
        .add(
            M::GET,
            "/console/tracker",
            Roles(TRACKER_READERS),
            tracker::tracker_page,
        )
        .add(
            M::GET,
            "/console/tracker/villages/{village}",
            Roles(TRACKER_READERS),
            tracker::village,
        )
        .add(
            M::POST,
            "/console/tracker/villages/{village}",
            Roles(COMMUNE_POLICE),
            tracker::assess,
        )
        .add(
            M::GET,
            "/console/retention",
            Roles(COMMUNE_POLICE),
            retention::retention_page,
        )
        .add(
            M::POST,
            "/console/retention",
            Roles(&[Role::Chief]),
            retention::set_retention,
        )
        .add(
            M::POST,
            "/console/tracker/target",
            Roles(&[Role::Chief]),
            tracker::set_target,
        )
        .add(
            M::GET,
            "/console/reports/province",
            Roles(&[Role::Province, Role::Statistics, Role::Admin]),
            reports::province_page,
        )
        .add(
            M::GET,
            "/console/reports/province/export",
            Roles(&[Role::Province, Role::Statistics, Role::Admin]),
            reports::province_export,
        )
        .add(
            M::GET,
            "/console/broadcasts",
            Roles(CAMPAIGN),
            broadcasts::list,
        )
        .add(
            M::GET,
            "/console/broadcasts/new",
            Roles(BROADCASTERS),
            broadcasts::compose,
        )
        .add(
            M::POST,
            "/console/broadcasts/new",
            Roles(BROADCASTERS),
            broadcasts::submit,
        )
        .add(
            M::GET,
            "/console/broadcasts/{broadcast}",
            Roles(CAMPAIGN),
            broadcasts::detail,
        )
        .add(
            M::GET,
            "/console/broadcasts/{broadcast}/progress",
            Roles(CAMPAIGN),
            broadcasts::progress,
        )
        .add(
            M::POST,
            "/console/broadcasts/{broadcast}/approve",
            Roles(COMMUNE_POLICE),
            broadcasts::approve,
        )
        .add(
            M::POST,
            "/console/broadcasts/{broadcast}/cancel",
            Roles(CAMPAIGN),
            broadcasts::cancel,
        )
        .add(
            M::POST,
            "/console/templates/{template}/delete",
            Roles(BROADCASTERS),
            broadcasts::delete_template,
        )
        .add(
            M::POST,
            "/console/broadcast-settings",
            Roles(&[Role::Chief]),
            broadcasts::settings,
        )
        .add(
            M::GET,
            "/console/villages/{village}/poster",
            Roles(CAMPAIGN),
            broadcasts::poster,
        )
        .add(
            M::GET,
            "/console/tips/{id}",
            Roles(TIP_READERS),
            tip::tip_page,
        )
        .add(
            M::GET,
            "/console/tips/{id}/photos/{photo}",
            Roles(TIP_READERS),
            tip::photo,
        )
        .add(
            M::POST,
            "/console/tips/{id}/status",
            Roles(COMMUNE_POLICE),
            tip::set_status,
        )
        .add(
            M::POST,
            "/console/tips/{id}/category",
            Roles(COMMUNE_POLICE),
            tip::set_category,
        )
        .add(
            M::POST,
            "/console/tips/{id}/assign",
            Roles(COMMUNE_POLICE),
            tip::assign,
        )
        .add(
            M::POST,
            "/console/tips/{id}/note",
            Roles(TIP_READERS),
            tip::add_note,
        )
        .add(
            M::POST,
            "/console/tips/{id}/message",
            Roles(COMMUNE_POLICE),
            tip::message,
        )
        .add(
            M::POST,
            "/console/tips/{id}/duplicate",
            Roles(COMMUNE_POLICE),
            tip::duplicate,
        )
        .add(
            M::POST,
            "/console/tips/{id}/transfer",
            Roles(&[Role::Officer, Role::Chief, Role::Province, Role::Admin]),
            tip::transfer,
        )
        .add(
            M::POST,
            "/console/tips/{id}/hold",
            Roles(&[Role::Officer, Role::Chief]),
            tip::hold,
        )
        .add(
            M::POST,
            "/console/tips/{id}/reward",
            Roles(&[Role::Chief]),
            tip::reward,
        )
        .add(
            M::GET,
            "/console/hotline",
            Roles(COMMUNE_POLICE),
            hotline::page,
        )
        .add(
            M::POST,
            "/console/hotline",
            Roles(COMMUNE_POLICE),
            hotline::submit,
        )
        .add(
            M::GET,
            "/console/hotline/done",
            Roles(COMMUNE_POLICE),
            hotline::done,
        )
        .add(
            M::GET,
            "/console/accounts",
            Roles(&[Role::Chief, Role::Admin]),
            accounts_page::list,
        )
        .add(
            M::POST,
            "/console/accounts",
            Roles(&[Role::Chief, Role::Admin]),
            accounts_page::create,
        )
        .add(
            M::POST,
            "/console/accounts/{account}/disable",
            Roles(&[Role::Chief, Role::Admin]),
            accounts_page::disable,
        )
        .add(
            M::POST,
            "/console/accounts/{account}/reset",
            Roles(&[Role::Chief, Role::Admin]),
            accounts_page::reset,
        )
        .add(
            M::GET,
            "/console/audit",
            Roles(&[Role::Chief, Role::Admin]),
            audit_page::list,
        )
}

/// Every console route with its rule (the access-matrix test walks this list).
pub fn route_specs() -> Vec<RouteSpec> {
    routes().specs
}

/// The console router, every route behind the guard.
pub fn router(state: AppState) -> Router<AppState> {
    let Routes { router, specs } = routes();
    let specs = Arc::new(specs);
    router.route_layer(axum::middleware::from_fn_with_state((state, specs), guard))
}

/// The logged-in (or logging-in) account of a request.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub account: Account,
    pub stage: String,
    pub csrf: String,
    pub token_hash: Vec<u8>,
}

/// Minutes of inactivity after which a session ends.
pub const IDLE_MINUTES: i64 = 30;
/// Hours after which a session ends whatever happens.
pub const ABSOLUTE_HOURS: i64 = 12;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tinbao_console";

pub(crate) fn cookie_value<'a>(
    req_headers: &'a axum::http::HeaderMap,
    name: &str,
) -> Option<&'a str> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Deletes a session found dead; it is refused whether or not the row goes.
async fn forget_session(store: &crate::store::Store, hash: &[u8]) {
    if let Err(e) = store.delete_session(hash).await {
        tracing::warn!(error = %e, "could not delete an ended console session");
    }
}

/// Loads the session named by the request's cookie, if it is alive.
async fn load_session(state: &AppState, headers: &axum::http::HeaderMap) -> Option<ConsoleSession> {
    let token = cookie_value(headers, SESSION_COOKIE)?;
    let hash = token_hash(token);
    let store = &state.store;
    // The session and its account in one round trip: this runs before every console page.
    let (row, account) = store.session_with_account(&hash).await.ok()??;
    let now = now_ms();
    if row.last_seen_at < now - IDLE_MINUTES * 60_000
        || row.created_at < now - ABSOLUTE_HOURS * 3_600_000
    {
        forget_session(store, &hash).await;
        return None;
    }
    let account = Account::from_row(&account)?;
    if account.disabled {
        forget_session(store, &hash).await;
        return None;
    }
    // A minute's precision is enough for the idle timeout and saves a write per request.
    if now - row.last_seen_at > 60_000 {
        if let Err(e) = store.touch_session(&hash, now).await {
            // The session stays valid; its idle clock just runs from the last touch.
            tracing::warn!(error = %e, "could not note a console session's activity");
        }
    }
    Some(ConsoleSession {
        account,
        stage: row.stage,
        csrf: row.csrf,
        token_hash: hash,
    })
}

/// Where a partly logged-in session must go next.
pub(crate) fn stage_path(stage: &str) -> &'static str {
    match stage {
        "password" => "/console/password",
        "enrol" | "totp" => "/console/totp",
        _ => "/console",
    }
}

/// Most bytes a console form may send.
const MAX_FORM: usize = 256 * 1024;

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn guard(
    State((state, specs)): State<(AppState, Arc<Vec<RouteSpec>>)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(spec) = specs
        .iter()
        .find(|s| s.path == path && s.method == req.method())
    else {
        // Unreachable by construction; deny rather than trust.
        return pages::denied(StatusCode::FORBIDDEN);
    };
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let is_get = req.method() == Method::GET;
    let Some(session) = load_session(&state, req.headers()).await else {
        return if is_get {
            Redirect::to("/console/login").into_response()
        } else {
            pages::denied(StatusCode::FORBIDDEN)
        };
    };
    match spec.access {
        Access::Public | Access::Staged => {}
        Access::Roles(roles) => {
            if session.stage != "full" {
                return Redirect::to(stage_path(&session.stage)).into_response();
            }
            if !roles.contains(&session.account.role) {
                return pages::denied(StatusCode::FORBIDDEN);
            }
        }
    }
    let (parts, body) = req.into_parts();
    let mut req = if is_get {
        Request::from_parts(parts, body)
    } else {
        // Every state-changing form carries the session's CSRF token.
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
            return pages::denied(StatusCode::PAYLOAD_TOO_LARGE);
        };
        let sent = form_field(&bytes, "csrf").unwrap_or_default();
        if !crate::crypto::constant_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            return pages::denied(StatusCode::FORBIDDEN);
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}
