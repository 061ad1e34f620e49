//! Housekeeping (issue 14): every minute, any serving process deletes what is no longer
//! needed (expired console sessions, spent login-failure counters, provider message ids
//! of settled messages) and, on SQLite, empties the write-ahead log so no earlier copy of
//! an erased row (a reply address, an inbox event, an outbox message) stays on disk. Each
//! step is idempotent, so several processes may sweep at once.

use crate::clock::now_ms;
use crate::store::{Store, StoreResult, Swept};
use std::time::Duration;

/// How often a serving process sweeps.
pub const EVERY: Duration = Duration::from_secs(60);
/// A message's provider id is kept this long after it settled, for its delivery report.
pub const PROVIDER_ID_KEPT_MS: i64 = 72 * 3_600_000;
/// Login-failure counters older than the longest throttle window (and not locked).
const LOGIN_FAILURE_KEPT_MS: i64 = 3_600_000;

/// One sweep as of `now` (ms).
pub async fn sweep(store: &Store, now: i64) -> StoreResult<Swept> {
    let idle = crate::console::IDLE_MINUTES * 60_000;
    let absolute = crate::console::ABSOLUTE_HOURS * 3_600_000;
    let swept = Swept {
        sessions: store
            .delete_expired_sessions(now - idle, now - absolute)
            .await?,
        login_failures: store
            .forget_login_failures(now - LOGIN_FAILURE_KEPT_MS, now)
            .await?,
        provider_ids: store.forget_provider_ids(now - PROVIDER_ID_KEPT_MS).await?,
    };
    if !store.truncate_wal().await? {
        tracing::debug!("the write-ahead log is in use; emptied at the next sweep");
    }
    Ok(swept)
}

/// Sweeps every [`EVERY`] for as long as the process serves.
pub fn spawn(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep(&store, now_ms()).await {
                Ok(s) if s != Swept::default() => tracing::info!(
                    sessions = s.sessions,
                    login_failures = s.login_failures,
                    provider_ids = s.provider_ids,
                    "housekeeping: expired data deleted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again later"),
            }
        }
    });
}
