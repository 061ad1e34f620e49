//! Console accounts: roles and their scope, argon2id passwords, TOTP second factor.

use crate::clock::now_ms;
use crate::crypto::{random_bytes, KeyRing};
use crate::store::{AccountRow, Store};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::net::IpAddr;
use std::sync::Arc;
use totp_rs::{Algorithm, TOTP};

/// What an account may do (DESIGN.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Commune police: the tips of its commune.
    Officer,
    /// Head of the commune police: the commune, accounts, reports.
    Chief,
    /// Province police: tips of the province without a commune, statistics.
    Province,
    /// Village head: broadcasts to its village; never a tip.
    VillageHead,
    /// Configuration and accounts; reading a tip is still audited.
    Admin,
    /// The commune chairman or province leadership: reports and the village tracker of
    /// its commune or province; never a tip, a message or a photo.
    Statistics,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Officer,
        Role::Chief,
        Role::Province,
        Role::VillageHead,
        Role::Admin,
        Role::Statistics,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Chief => "chief",
            Role::Province => "province",
            Role::VillageHead => "village_head",
            Role::Admin => "admin",
            Role::Statistics => "statistics",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role can ever read a tip (and so must use a second factor).
    pub fn reads_tips(self) -> bool {
        !matches!(self, Role::VillageHead | Role::Statistics)
    }
}

/// An account as the console uses it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
    pub must_change_password: bool,
    pub totp_confirmed: bool,
    pub disabled: bool,
}

impl Account {
    /// From the stored row; `None` for an unknown role.
    pub fn from_row(r: &AccountRow) -> Option<Account> {
        Some(Account {
            id: r.id.clone(),
            username: r.username.clone(),
            display_name: r.display_name.clone(),
            email: r.email.clone(),
            role: Role::parse(&r.role)?,
            province_code: r.province_code,
            commune_code: r.commune_code,
            village_id: r.village_id,
            must_change_password: r.must_change_password,
            totp_confirmed: r.totp_confirmed,
            disabled: r.disabled,
        })
    }

    /// Whether this account may see tips of this place (before role checks of the action).
    pub fn sees_tip_in(&self, province: Option<i64>, commune: Option<i64>) -> bool {
        match self.role {
            Role::Officer | Role::Chief => commune.is_some() && commune == self.commune_code,
            Role::Province => province.is_some() && province == self.province_code,
            Role::Admin => true,
            Role::VillageHead | Role::Statistics => false,
        }
    }

    /// Whether this account may read the reports of `commune` (in `province`), and
    /// whether a village's small counts must be hidden from it ("< 3").
    pub fn reads_reports_of(&self, province: i64, commune: i64) -> Option<bool> {
        let own_province = self.province_code == Some(province);
        match self.role {
            Role::Officer | Role::Chief => (self.commune_code == Some(commune)).then_some(false),
            Role::Province => own_province.then_some(true),
            Role::Statistics => match self.commune_code {
                Some(c) => (c == commune).then_some(true),
                None => own_province.then_some(true),
            },
            Role::Admin => Some(false),
            Role::VillageHead => None,
        }
    }
}

/// Why an account could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("that username is taken")]
    Taken,
    #[error("database error: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What is needed to create an account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// A one-time password: 16 characters from an alphabet without look-alikes.
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 64] = random_bytes();
    bytes
        .iter()
        .filter(|b| (**b as usize) < 256 - 256 % ALPHABET.len())
        .take(16)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Hashes a password with argon2id (off the async threads: it is deliberately slow).
pub async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16-byte salt");
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashing")
            .to_string()
    })
    .await
    .expect("hashing task")
}

/// Checks a password against a stored argon2 hash.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// The scope a role needs, checked against the shipped units.
fn check_scope(store_geo: &crate::geo::Geo, a: &NewAccount) -> Result<(), AccountError> {
    match a.role {
        Role::Officer | Role::Chief | Role::VillageHead => {
            let c = a
                .commune_code
                .ok_or(AccountError::Invalid("this role needs --commune"))?;
            let commune = store_geo
                .commune(c)
                .ok_or(AccountError::Invalid("no commune with that code"))?;
            if a.province_code.is_some_and(|p| p != commune.province_code) {
                return Err(AccountError::Invalid("the commune is not in that province"));
            }
            if a.role == Role::VillageHead && a.village_id.is_none() {
                return Err(AccountError::Invalid("a village head needs --village"));
            }
        }
        Role::Province => {
            let p = a
                .province_code
                .ok_or(AccountError::Invalid("this role needs --province"))?;
            store_geo
                .province(p)
                .ok_or(AccountError::Invalid("no province with that code"))?;
        }
        Role::Statistics => {
            // A commune (the chairman) or a province (its leadership).
            match (a.commune_code, a.province_code) {
                (Some(c), _) => {
                    let commune = store_geo
                        .commune(c)
                        .ok_or(AccountError::Invalid("no commune with that code"))?;
                    if a.province_code.is_some_and(|p| p != commune.province_code) {
                        return Err(AccountError::Invalid("the commune is not in that province"));
                    }
                }
                (None, Some(p)) => {
                    store_geo
                        .province(p)
                        .ok_or(AccountError::Invalid("no province with that code"))?;
                }
                (None, None) => {
                    return Err(AccountError::Invalid(
                        "this role needs --commune or --province",
                    ))
                }
            }
        }
        Role::Admin => {}
    }
    if a.username.trim().is_empty() || a.username.len() > 64 {
        return Err(AccountError::Invalid("a username is 1 to 64 characters"));
    }
    Ok(())
}

/// Creates an account with a one-time password (returned once, never stored in clear).
pub async fn create(
    store: &Store,
    geo: &crate::geo::Geo,
    new: NewAccount,
) -> Result<(Account, String), AccountError> {
    check_scope(geo, &new)?;
    let province = new.province_code.or_else(|| {
        new.commune_code
            .and_then(|c| geo.commune(c))
            .map(|c| c.province_code)
    });
    let password = one_time_password();
    let now = now_ms();
    let row = AccountRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        username: new.username.trim().to_owned(),
        display_name: new.display_name.trim().to_owned(),
        email: new.email.filter(|e| !e.trim().is_empty()),
        role: new.role.as_str().to_owned(),
        province_code: province,
        commune_code: new.commune_code,
        village_id: new.village_id,
        password_hash: hash_password(password.clone()).await,
        must_change_password: true,
        totp_secret: None,
        totp_confirmed: false,
        totp_last_step: 0,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    store.insert_account(&row).await.map_err(|e| {
        if e.is_unique_violation() {
            AccountError::Taken
        } else {
            AccountError::Store(e)
        }
    })?;
    Ok((Account::from_row(&row).expect("known role"), password))
}

/// Gives an account a new one-time password and a fresh second factor; ends its sessions.
pub async fn reset(store: &Store, account_id: &str) -> Result<String, AccountError> {
    let password = one_time_password();
    let now = now_ms();
    store
        .set_password(
            account_id,
            &hash_password(password.clone()).await,
            true,
            now,
        )
        .await?;
    store.set_totp(account_id, None, false, now).await?;
    store.delete_sessions_of(account_id).await?;
    Ok(password)
}

/// Disables an account and ends its sessions.
pub async fn disable(store: &Store, account_id: &str) -> Result<(), AccountError> {
    store.set_disabled(account_id, true, now_ms()).await?;
    store.delete_sessions_of(account_id).await?;
    Ok(())
}

/// The TOTP generator for a secret (RFC 6238: SHA-1, 6 digits, 30 s).
pub fn totp(secret: &[u8], username: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        secret.to_vec(),
        Some("tinbao".into()),
        username.to_owned(),
    )
    .ok()
}

/// The time step a code matches (the current one, or one either side for clock drift).
pub fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = now_secs / 30;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| totp.generate(s * 30) == code)
        .map(|s| s as i64)
}

/// The keyed parts of logging in, so that the console never holds a key: throttling
/// keys that name neither the account nor the client in clear, and the sealed TOTP secret.
#[derive(Clone)]
pub struct Logins {
    store: Store,
    keys: Arc<KeyRing>,
}

/// The two counters a login attempt is throttled by: its account's and its client's (the
/// client's changes every day). Both are keyed hashes.
pub struct ThrottleKeys {
    pub account: Vec<u8>,
    pub client: Vec<u8>,
    /// The account's second-factor failures: a counter of its own that no password,
    /// right or wrong, resets.
    pub totp: Vec<u8>,
}

impl Logins {
    /// Logins over the store, with the server's keys.
    pub fn new(store: Store, keys: Arc<KeyRing>) -> Logins {
        Logins { store, keys }
    }

    /// The throttling keys for `username` from `client` at `now` (ms).
    pub fn throttle_keys(&self, username: &str, client: IpAddr, now: i64) -> ThrottleKeys {
        let account = self.account_key(username);
        let mut totp = account.clone();
        totp.extend_from_slice(b"/totp");
        ThrottleKeys {
            account,
            totp,
            client: self
                .keys
                .daily_client_key(now / 86_400_000, &client.to_string()),
        }
    }

    /// The account's throttling key alone.
    pub fn account_key(&self, username: &str) -> Vec<u8> {
        self.keys.account_key_for(username)
    }

    /// The TOTP generator an account enrols with: its pending secret, or a new one sealed
    /// and stored (each visit of the enrolment page may reuse the pending one).
    pub async fn enrolment_totp(&self, account: &Account) -> Result<Option<TOTP>, AccountError> {
        let Some(row) = self.store.account(&account.id).await? else {
            return Ok(None);
        };
        let pending = row
            .totp_secret
            .as_deref()
            .and_then(|b| self.keys.open_account_secret(&account.id, b).ok());
        let raw = match pending {
            Some(raw) => raw,
            None => {
                let raw: [u8; 20] = random_bytes();
                let sealed = self.keys.seal_account_secret(&account.id, &raw);
                self.store
                    .set_totp(&account.id, Some(&sealed), false, now_ms())
                    .await?;
                raw.to_vec()
            }
        };
        Ok(totp(&raw, &account.username))
    }

    /// The time step `code` matches for the account's stored secret, if it does.
    pub fn code_step(&self, row: &AccountRow, username: &str, code: &str, now: i64) -> Option<i64> {
        let raw = self
            .keys
            .open_account_secret(&row.id, row.totp_secret.as_deref()?)
            .ok()?;
        let totp = totp(&raw, username)?;
        matching_step(&totp, code, (now / 1000) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_passwords_are_long_and_different() {
        let a = one_time_password();
        assert_eq!(a.len(), 16);
        assert_ne!(a, one_time_password());
    }

    #[tokio::test]
    async fn argon2id_hashes_verify() {
        let h = hash_password("correct horse battery".into()).await;
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), h.clone()).await);
        assert!(!verify_password("wrong".into(), h.clone()).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn totp_accepts_adjacent_steps_only() {
        let t = totp(&[7u8; 20], "a").unwrap();
        let now = 1_800_000_000u64;
        let code = t.generate(now);
        assert_eq!(matching_step(&t, &code, now), Some((now / 30) as i64));
        assert_eq!(matching_step(&t, &code, now + 30), Some((now / 30) as i64));
        assert_eq!(matching_step(&t, &code, now + 300), None);
        assert_eq!(matching_step(&t, "12345", now), None);
    }
}
