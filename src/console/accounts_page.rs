//! Account management for chiefs (their commune) and admins (everyone).

use super::error::{ConsoleError, Page};
use super::pages::{me, render, texts, MeView};
use super::ConsoleSession;
use crate::accounts::{self, Account, AccountError, NewAccount, Role};
use crate::i18n::Texts;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Form};
use serde::Deserialize;

/// An account line.
pub struct Line {
    pub id: String,
    pub username: String,
    pub name: String,
    pub role: String,
    pub place: String,
    pub disabled: bool,
}

/// A role the manager may grant.
pub struct RoleOpt {
    pub value: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "console_accounts.html")]
struct AccountsPage {
    t: Texts,
    me: Option<MeView>,
    csrf: String,
    lines: Vec<Line>,
    roles: Vec<RoleOpt>,
    fixed_commune: Option<i64>,
    notice: Option<String>,
    password: Option<String>,
    error: Option<String>,
}

fn grantable(manager: &Account) -> &'static [Role] {
    match manager.role {
        Role::Admin => &Role::ALL,
        Role::Chief => &[Role::Officer, Role::VillageHead],
        _ => &[],
    }
}

fn manages(manager: &Account, other: &Account) -> bool {
    match manager.role {
        Role::Admin => manager.id != other.id,
        Role::Chief => {
            other.commune_code == manager.commune_code && grantable(manager).contains(&other.role)
        }
        _ => false,
    }
}

async fn page(
    state: &AppState,
    s: &ConsoleSession,
    status: StatusCode,
    notice: Option<String>,
    password: Option<String>,
    error: Option<String>,
) -> Page {
    let t = texts();
    let geo = state.intake.geo();
    let commune = match s.account.role {
        Role::Chief => s.account.commune_code,
        _ => None,
    };
    let rows = state.store.accounts(None, commune).await?;
    let lines = rows
        .iter()
        .filter_map(Account::from_row)
        .map(|a| Line {
            place: a
                .commune_code
                .and_then(|c| geo.commune(c))
                .map(|c| c.name.clone())
                .or_else(|| {
                    a.province_code
                        .and_then(|p| geo.province(p))
                        .map(|p| p.name.clone())
                })
                .unwrap_or_default(),
            role: t.get(&format!("role.{}", a.role.as_str())).to_owned(),
            id: a.id,
            username: a.username,
            name: a.display_name,
            disabled: a.disabled,
        })
        .collect();
    let roles = grantable(&s.account)
        .iter()
        .map(|r| RoleOpt {
            value: r.as_str(),
            label: t.get(&format!("role.{}", r.as_str())).to_owned(),
        })
        .collect();
    Ok(render(
        status,
        AccountsPage {
            t,
            me: me(s),
            csrf: s.csrf.clone(),
            lines,
            roles,
            fixed_commune: commune,
            notice,
            password,
            error,
        },
    ))
}

/// The accounts of the manager's scope.
pub async fn list(State(state): State<AppState>, Extension(s): Extension<ConsoleSession>) -> Page {
    page(&state, &s, StatusCode::OK, None, None, None).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    province: String,
    #[serde(default)]
    commune: String,
    #[serde(default)]
    village: String,
}

/// Creates an account in the manager's scope; shows its one-time password once.
pub async fn create(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Form(f): Form<CreateForm>,
) -> Page {
    let Some(role) = Role::parse(&f.role).filter(|r| grantable(&s.account).contains(r)) else {
        return Err(ConsoleError::forbidden());
    };
    let store = &state.store;
    let commune = match s.account.role {
        Role::Chief => s.account.commune_code,
        _ => f.commune.trim().parse().ok(),
    };
    let village = match (role, commune, f.village.trim()) {
        (Role::VillageHead, Some(c), name) if !name.is_empty() => {
            Some(store.add_village(c, name).await?)
        }
        _ => None,
    };
    let new = NewAccount {
        username: f.username,
        display_name: f.display_name,
        email: Some(f.email),
        role,
        province_code: f.province.trim().parse().ok(),
        commune_code: commune,
        village_id: village,
    };
    match accounts::create(store, state.intake.geo(), new).await {
        Ok((account, password)) => {
            state.console_cache.people.clear();
            state
                .audit
                .record(
                    Some(&s.account.id),
                    "account.create",
                    None,
                    account.province_code,
                    account.commune_code,
                    &format!("{} ({})", account.username, account.role.as_str()),
                )
                .await?;
            page(
                &state,
                &s,
                StatusCode::OK,
                Some(account.username),
                Some(password),
                None,
            )
            .await
        }
        Err(AccountError::Store(e)) => Err(e.into()),
        Err(e) => {
            page(
                &state,
                &s,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

async fn managed(state: &AppState, s: &ConsoleSession, id: &str) -> Option<Account> {
    let row = state.store.account(id).await.ok()??;
    Account::from_row(&row).filter(|a| manages(&s.account, a))
}

/// After a change to `target`: the cached account lists are stale, and the change is
/// audited (a failed entry fails the request).
async fn changed(
    state: &AppState,
    s: &ConsoleSession,
    action: &str,
    target: &Account,
) -> Result<(), crate::audit::AuditError> {
    state.console_cache.people.clear();
    state
        .audit
        .record(
            Some(&s.account.id),
            action,
            None,
            target.province_code,
            target.commune_code,
            &target.username,
        )
        .await
        .map(|_| ())
}

/// Disables an account of the manager's scope and ends its sessions.
pub async fn disable(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let Some(target) = managed(&state, &s, &id).await else {
        return Err(ConsoleError::forbidden());
    };
    // Disabling goes first: an account to be shut out is shut out even if the audit log
    // then refuses the entry (the request fails and says so).
    accounts::disable(&state.store, &target.id).await?;
    changed(&state, &s, "account.disable", &target).await?;
    page(
        &state,
        &s,
        StatusCode::OK,
        Some(target.username),
        None,
        None,
    )
    .await
}

/// Gives an account of the manager's scope a new one-time password and second factor.
pub async fn reset(
    State(state): State<AppState>,
    Extension(s): Extension<ConsoleSession>,
    Path(id): Path<String>,
) -> Page {
    let Some(target) = managed(&state, &s, &id).await else {
        return Err(ConsoleError::forbidden());
    };
    // On record before it happens: a new password is never handed out unaudited.
    changed(&state, &s, "account.reset", &target).await?;
    let password = accounts::reset(&state.store, &target.id).await?;
    state.console_cache.people.clear();
    page(
        &state,
        &s,
        StatusCode::OK,
        Some(target.username),
        Some(password),
        None,
    )
    .await
}
