//! Accounts, server-side sessions and login throttling.

use super::{BeginWrite, Pool, Store, StoreResult};

/// A console account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: String,
    pub province_code: Option<i64>,
    pub commune_code: Option<i64>,
    pub village_id: Option<i64>,
    pub password_hash: String,
    pub must_change_password: bool,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_confirmed: bool,
    pub totp_last_step: i64,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const ACCOUNT_COLUMNS: &str =
    "id, username, display_name, email, role, province_code, commune_code, \
    village_id, password_hash, must_change_password, totp_secret, totp_confirmed, totp_last_step, \
    disabled, created_at, updated_at";

/// A server-side session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub token_hash: Vec<u8>,
    pub account_id: String,
    pub stage: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl Store {
    /// Adds an account; fails on a taken username.
    pub async fn insert_account(&self, a: &AccountRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"))
            .bind(&a.id).bind(&a.username).bind(&a.display_name).bind(&a.email).bind(&a.role)
            .bind(a.province_code).bind(a.commune_code).bind(a.village_id).bind(&a.password_hash)
            .bind(a.must_change_password).bind(&a.totp_secret).bind(a.totp_confirmed)
            .bind(a.totp_last_step).bind(a.disabled).bind(a.created_at).bind(a.updated_at)
            .execute(p).await.map(|_| ()))
    }

    /// An account by username.
    pub async fn account_by_username(&self, username: &str) -> StoreResult<Option<AccountRow>> {
        on_pool!(self, p => sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = $1"))
            .bind(username).fetch_optional(p).await)
    }

    /// An account by id.
    pub async fn account(&self, id: &str) -> StoreResult<Option<AccountRow>> {
        on_pool!(self, p => sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
            .bind(id).fetch_optional(p).await)
    }

    /// Accounts of a commune (when given) or else of a province (when given) or all, by name.
    pub async fn accounts(
        &self,
        province: Option<i64>,
        commune: Option<i64>,
    ) -> StoreResult<Vec<AccountRow>> {
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE ($1 IS NULL OR commune_code = $1) \
             AND ($2 IS NULL OR province_code = $2) ORDER BY display_name, username"))
            .bind(commune).bind(province).fetch_all(p).await)
    }

    /// Sets a new password hash and whether it must be changed at the next login.
    pub async fn set_password(
        &self,
        id: &str,
        hash: &str,
        must_change: bool,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "UPDATE accounts SET password_hash = $1, must_change_password = $2, updated_at = $3 WHERE id = $4")
            .bind(hash).bind(must_change).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Sets (or clears) the sealed TOTP secret and whether it is confirmed.
    pub async fn set_totp(
        &self,
        id: &str,
        secret: Option<&[u8]>,
        confirmed: bool,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "UPDATE accounts SET totp_secret = $1, totp_confirmed = $2, totp_last_step = 0, updated_at = $3 WHERE id = $4")
            .bind(secret).bind(confirmed).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Records that a TOTP time step was used; false when it (or a later one) already was,
    /// so a code cannot be replayed, even on another server process.
    pub async fn use_totp_step(&self, id: &str, step: i64) -> StoreResult<bool> {
        let n = on_pool!(self, p => sqlx::query(
            "UPDATE accounts SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Disables or enables an account.
    pub async fn set_disabled(&self, id: &str, disabled: bool, now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE accounts SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled).bind(now).bind(id).execute(p).await.map(|_| ()))
    }

    /// Stores a new session.
    pub async fn insert_session(&self, s: &SessionRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, stage, csrf, created_at, last_seen_at) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(&s.token_hash).bind(&s.account_id).bind(&s.stage).bind(&s.csrf).bind(s.created_at).bind(s.last_seen_at)
            .execute(p).await.map(|_| ()))
    }

    /// A session by the hash of its token.
    pub async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT token_hash, account_id, stage, csrf, created_at, last_seen_at FROM sessions WHERE token_hash = $1")
            .bind(token_hash).fetch_optional(p).await)
    }

    /// A session by the hash of its token, with its account, in one query; `None` when
    /// either is missing.
    pub async fn session_with_account(
        &self,
        token_hash: &[u8],
    ) -> StoreResult<Option<(SessionRow, AccountRow)>> {
        use sqlx::{FromRow, Row};
        // The account's columns keep their names (so `AccountRow` decodes them); the
        // session's, which clash with them, are renamed.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let account: Vec<String> = ACCOUNT_COLUMNS
                .split(',')
                .map(|c| format!("a.{}", c.trim()))
                .collect();
            format!(
                "SELECT s.account_id AS s_account_id, s.stage AS s_stage, s.csrf AS s_csrf, \
                 s.created_at AS s_created_at, s.last_seen_at AS s_last_seen_at, {} \
                 FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1",
                account.join(", ")
            )
        });
        let sql = SQL.as_str();
        on_pool!(self, p => {
            let Some(row) = sqlx::query(sql).bind(token_hash).fetch_optional(p).await? else {
                return Ok(None);
            };
            let session = SessionRow {
                token_hash: token_hash.to_vec(),
                account_id: row.try_get("s_account_id")?,
                stage: row.try_get("s_stage")?,
                csrf: row.try_get("s_csrf")?,
                created_at: row.try_get("s_created_at")?,
                last_seen_at: row.try_get("s_last_seen_at")?,
            };
            Ok(Some((session, AccountRow::from_row(&row)?)))
        })
    }

    /// Marks a session as used now.
    pub async fn touch_session(&self, token_hash: &[u8], now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now).bind(token_hash).execute(p).await.map(|_| ()))
    }

    /// Moves a session to another login stage.
    pub async fn set_session_stage(&self, token_hash: &[u8], stage: &str) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("UPDATE sessions SET stage = $1 WHERE token_hash = $2")
            .bind(stage).bind(token_hash).execute(p).await.map(|_| ()))
    }

    /// Ends one session.
    pub async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash).execute(p).await.map(|_| ()))
    }

    /// Swaps a session for a new one (a new id after the second factor): the old id ends
    /// in the same transaction as the new one begins.
    pub async fn replace_session(&self, old_hash: &[u8], new: &SessionRow) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(old_hash).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO sessions (token_hash, account_id, stage, csrf, created_at, last_seen_at) VALUES ($1,$2,$3,$4,$5,$6)")
                .bind(&new.token_hash).bind(&new.account_id).bind(&new.stage).bind(&new.csrf)
                .bind(new.created_at).bind(new.last_seen_at)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Ends every session of an account but one (a password change keeps its own).
    pub async fn delete_other_sessions(&self, account_id: &str, keep: &[u8]) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
            .bind(account_id).bind(keep).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Ends every session of an account ("log out everywhere", disable, reset).
    pub async fn delete_sessions_of(&self, account_id: &str) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account_id).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Removes sessions idle since `idle_before` or created before `created_before`.
    pub async fn delete_expired_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> StoreResult<u64> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(idle_before).bind(created_before).execute(p).await.map(|r| r.rows_affected()))
    }

    /// When a throttle key is locked until (Unix ms), if it is.
    pub async fn login_locked_until(&self, key: &[u8]) -> StoreResult<Option<i64>> {
        let v: Option<Option<i64>> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT locked_until FROM login_failures WHERE key = $1").bind(key).fetch_optional(p).await)?;
        Ok(v.flatten())
    }

    /// Counts a failed login for a key within a window; locks it for `lock_ms` once it
    /// reaches `max` failures. Returns the failures counted in the window.
    pub async fn record_login_failure(
        &self,
        key: &[u8],
        now: i64,
        window_ms: i64,
        max: i64,
        lock_ms: i64,
    ) -> StoreResult<i64> {
        let start = now - window_ms;
        let failures: i64 = on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO login_failures (key, failures, first_at, locked_until) VALUES ($1, 1, $2, NULL) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_failures.first_at < $3 THEN 1 ELSE login_failures.failures + 1 END, \
               first_at = CASE WHEN login_failures.first_at < $3 THEN $2 ELSE login_failures.first_at END \
             RETURNING failures")
            .bind(key).bind(now).bind(start).fetch_one(p).await)?;
        if failures >= max {
            on_pool!(self, p => sqlx::query("UPDATE login_failures SET locked_until = $1, failures = 0, first_at = $2 WHERE key = $3")
                .bind(now + lock_ms).bind(now).bind(key).execute(p).await.map(|_| ()))?;
        }
        Ok(failures)
    }

    /// Forgets the failures of a key (after a successful login).
    pub async fn clear_login_failures(&self, key: &[u8]) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key).execute(p).await.map(|_| ()))
    }
}
