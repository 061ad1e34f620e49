//! Retention by crypto-shredding (issue 14): a closed tip's content is destroyed a set time
//! after it closed (`retention.months`, or a chief's period for a category of the
//! commune), unless an officer holds it as evidence ("giữ làm chứng cứ") until a date.
//! Destroying deletes the tip's data key and every sealed byte (fields, notes, photos;
//! messages keep their row, emptied, for the counts); what reports count stays. A pass
//! runs once a day from `retention.hour` (Vietnam time), taken by one process of many,
//! in short transactions so that intake goes on meanwhile.

use crate::clock::{now_ms, VN_OFFSET_MS};
use crate::config::RetentionConfig;
use crate::crypto::{KeyFileError, KeyFileLock, KeyRing, OpenError, WrappedKey};
use crate::store::{ClosedGroup, Engine, RetentionRule, RewrappedKey, Store, StoreError};
use chrono::{Duration, Months, NaiveDate};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

/// What can stop a retention pass.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the key file: {0}")]
    Keys(#[from] KeyFileError),
    #[error("a tip's data key could not be unwrapped")]
    Sealed(#[from] OpenError),
}

/// A heartbeat older than this belongs to a process that is gone (the server's own rule:
/// three missed beats).
const HOLDER_GONE_AFTER_MS: i64 = 15_000;
const DAY_MS: i64 = 86_400_000;

/// The id of the KEK that wraps the data keys of tips to be destroyed on `day`.
pub fn day_key_id(day: NaiveDate) -> String {
    format!("r{}", day.format("%Y%m%d"))
}

/// The destruction day a KEK id names, if it is a retention day's.
pub fn day_of_key(id: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(id.strip_prefix('r')?, "%Y%m%d").ok()
}

fn vn_day(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms + VN_OFFSET_MS)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The months a rule set keeps a tip of `commune` and `category` (0: for ever).
fn months_for(rules: &[Rule], commune: Option<i64>, category: &str) -> u32 {
    rules
        .iter()
        .find(|r| match &r.rule {
            RetentionRule::Setting {
                commune: c,
                category: k,
            } => commune == Some(*c) && category == k,
            RetentionRule::Default => true,
        })
        .map_or(0, |r| r.months)
}

/// One rule and how many months it keeps content (0: for ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub rule: RetentionRule,
    pub months: u32,
}

/// The rules in force: each chief's setting, then the default for every other tip.
pub async fn rules(store: &Store, default_months: u32) -> Result<Vec<Rule>, StoreError> {
    let mut rules: Vec<Rule> = store
        .retention_settings()
        .await?
        .into_iter()
        .map(|(commune, category, months)| Rule {
            rule: RetentionRule::Setting { commune, category },
            months: u32::try_from(months).unwrap_or(0),
        })
        .collect();
    rules.push(Rule {
        rule: RetentionRule::Default,
        months: default_months,
    });
    Ok(rules)
}

/// The moment `months` calendar months before `at` (ms), in Vietnam time.
pub fn months_before(at: i64, months: u32) -> i64 {
    let local = chrono::DateTime::from_timestamp_millis(at + VN_OFFSET_MS)
        .map(|t| t.naive_utc())
        .unwrap_or_default();
    local
        .checked_sub_months(Months::new(months))
        .map_or(i64::MIN, |t| t.and_utc().timestamp_millis() - VN_OFFSET_MS)
}

/// On SQLite, the pause between two of the pass's transactions, so that a writer waiting
/// for the lock gets it.
const BETWEEN_BATCHES: StdDuration = StdDuration::from_millis(2);

/// Destroys every tip due at `now`, `batch` at a time; returns how many.
pub async fn destroy_due(
    store: &Store,
    config: &RetentionConfig,
    now: i64,
) -> Result<u64, StoreError> {
    let batch = i64::from(config.batch.max(1));
    let mut destroyed = 0u64;
    for r in rules(store, config.months).await? {
        if r.months == 0 {
            continue;
        }
        let cutoff = months_before(now, r.months);
        loop {
            let ids = store.destroy_due(&r.rule, cutoff, now, batch).await?;
            destroyed += ids.len() as u64;
            if (ids.len() as i64) < batch {
                break;
            }
            // Let waiting writers (tips arriving) in between batches. On SQLite a writer
            // that found the lock taken tries again every millisecond (`sqlite_busy`):
            // without a pause this loop takes the lock again first, and tips wait for
            // the whole pass. The batch's log goes to disk meanwhile, outside the lock,
            // not with the next tip's commit.
            match store.engine() {
                Engine::Sqlite => {
                    store.sync_log().await;
                    tokio::time::sleep(BETWEEN_BATCHES).await;
                }
                Engine::Postgres => tokio::task::yield_now().await,
            }
        }
    }
    if destroyed > 0 {
        metrics::counter!("tinbao_tips_destroyed_total").increment(destroyed);
        // Nothing of what was destroyed stays in SQLite's write-ahead log.
        let _ = store.truncate_wal().await;
    }
    Ok(destroyed)
}

/// What will be destroyed on one day: the commune and category, how many tips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcoming {
    pub day: NaiveDate,
    pub commune: Option<i64>,
    pub category: String,
    pub tips: i64,
}

/// What the passes of the next `days` days will destroy (as things stand: a hold placed
/// or a tip reopened meanwhile takes it out), by day, commune and category.
pub async fn upcoming(
    store: &Store,
    default_months: u32,
    now: i64,
    days: i64,
) -> Result<Vec<Upcoming>, StoreError> {
    let until = now + days * 86_400_000;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let today = chrono::DateTime::from_timestamp_millis(now + VN_OFFSET_MS)
        .map(|t| t.date_naive())
        .unwrap_or(epoch);
    let mut out = Vec::new();
    for r in rules(store, default_months).await? {
        if r.months == 0 {
            continue;
        }
        let groups: Vec<ClosedGroup> = store
            .retention_upcoming(&r.rule, months_before(until, r.months), now)
            .await?;
        for g in groups {
            let closed = epoch + Duration::days(g.closed_day);
            // Due the day its period ends (already due: today's pass).
            let day = closed
                .checked_add_months(Months::new(r.months))
                .unwrap_or(closed)
                .max(today);
            out.push(Upcoming {
                day,
                commune: g.commune_code,
                category: g.category,
                tips: g.tips,
            });
        }
    }
    out.sort_by(|a, b| (a.day, a.commune, &a.category).cmp(&(b.day, b.commune, &b.category)));
    out.dedup_by(|b, a| {
        if (a.day, a.commune, &a.category) == (b.day, b.commune, &b.category) {
            a.tips += b.tips;
            true
        } else {
            false
        }
    });
    Ok(out)
}

/// Wraps the data keys of closed tips (not held) under the KEK of the day they are to be
/// destroyed, creating those KEKs in the key file (under its lock) and waiting (up to
/// `wait`) until every running server holds them. A backup taken from then on holds
/// those tips' keys only under that day's KEK, which the pass deletes from the key file
/// with them: the backup cannot open them either. Returns how many were wrapped.
pub async fn wrap_for_destruction(
    store: &Store,
    config: &RetentionConfig,
    key_file: &Path,
    now: i64,
    wait: StdDuration,
) -> Result<u64, RetentionError> {
    let rules = rules(store, config.months).await?;
    let today = vn_day(now);
    // Closed again since the last passes: their day moved.
    let since = now - 2 * DAY_MS;
    let mut after = String::new();
    let mut total = 0u64;
    loop {
        let started = std::time::Instant::now();
        let rows = store.retention_to_wrap(now, since, &after, 500).await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        let mut plan = Vec::new();
        for row in rows {
            let months = months_for(&rules, row.commune_code, &row.category);
            if months == 0 {
                continue;
            }
            let closed = vn_day(row.closed_at);
            let day = closed
                .checked_add_months(Months::new(months))
                .unwrap_or(closed);
            // Due today or before: this pass destroys it anyway.
            if day <= today {
                continue;
            }
            let id = day_key_id(day);
            if row.key_id != id {
                plan.push((row, id));
            }
        }
        if plan.is_empty() {
            continue;
        }
        let needed: BTreeSet<String> = plan.iter().map(|p| p.1.clone()).collect();
        let ring = ensure_keks(store, key_file, &needed, now).await?;
        if !holders_know(store, &needed, wait).await? {
            tracing::warn!(keys = ?needed, "retention: a running server does not hold the day keys yet; wrapping waits for the next pass");
            return Ok(total);
        }
        let mut out = Vec::with_capacity(plan.len());
        for (row, id) in plan {
            let wrapped = WrappedKey {
                key_id: row.key_id.clone(),
                wrapped: row.wrapped_key,
            };
            let new = ring.rewrap_to(&row.id, &wrapped, &id)?;
            out.push(RewrappedKey {
                id: row.id,
                old_key_id: row.key_id,
                key_id: new.key_id,
                wrapped_key: new.wrapped,
            });
        }
        total += store.keys_store_rewrapped(&out).await?;
        store.sync_log().await;
        // Wrapping is never urgent (a tip's day is weeks or months away) and a backlog
        // can take minutes of both cores: it works half of the time, so that tips
        // arriving meanwhile find the database and a core free.
        tokio::time::sleep(started.elapsed()).await;
    }
    Ok(total)
}

/// Adds the KEKs `ids` to the key file where missing (their checks in the database
/// first, as `keys rotate` does), under the key file's lock; answers the file's ring.
async fn ensure_keks(
    store: &Store,
    key_file: &Path,
    ids: &BTreeSet<String>,
    now: i64,
) -> Result<KeyRing, RetentionError> {
    let _lock = KeyFileLock::take(key_file)?;
    let mut ring = KeyRing::load(key_file)?;
    let mut added = false;
    for id in ids {
        if ring.add_kek(id) {
            if let Some(check) = ring.key_check(id) {
                store.add_key_check(id, &check, now).await?;
            }
            added = true;
        }
    }
    if added {
        ring.save(key_file)?;
    }
    Ok(ring)
}

/// Waits (up to `wait`) until every running server holds every KEK of `ids`.
async fn holders_know(
    store: &Store,
    ids: &BTreeSet<String>,
    wait: StdDuration,
) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let live = now_ms() - HOLDER_GONE_AFTER_MS;
        let behind = store
            .keys_holders()
            .await?
            .into_iter()
            .filter(|h| h.heartbeat_at >= live)
            .any(|h| ids.iter().any(|id| !h.knows(id)));
        if !behind {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
}

/// Deletes from the key file every retention day's KEK whose day has come and that no
/// tip uses any more (their tips destroyed): from then on no copy of the database, a
/// backup included, can open what they wrapped. Returns the ids deleted.
pub async fn retire_spent_days(
    store: &Store,
    key_file: &Path,
    now: i64,
) -> Result<Vec<String>, RetentionError> {
    let today = vn_day(now);
    let in_use: BTreeSet<String> = store
        .keys_in_use()
        .await?
        .into_iter()
        .map(|k| k.0)
        .collect();
    let _lock = KeyFileLock::take(key_file)?;
    let mut ring = KeyRing::load(key_file)?;
    let spent: Vec<String> = ring
        .ids()
        .into_iter()
        .filter(|id| day_of_key(id).is_some_and(|d| d <= today) && !in_use.contains(id))
        .collect();
    for id in &spent {
        // Its check goes first: a server starting meanwhile does not ask for it.
        store.keys_mark_retired(id, now).await?;
        ring.retire(id)?;
    }
    if !spent.is_empty() {
        ring.save(key_file)?;
    }
    Ok(spent)
}

/// What a pass did, and how long each part took.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub destroyed: u64,
    pub destroy_time: StdDuration,
    /// Day KEKs deleted from the key file.
    pub spent_keys: Vec<String>,
    /// Tips wrapped under their destruction day's KEK.
    pub wrapped: u64,
    pub wrap_time: StdDuration,
}

/// A whole pass: destroys what is due, deletes the spent day keys, and wraps newly closed
/// tips under their day's key (none of the key work when the keys come from
/// `TINBAO_KEYS`: `key_file` is `None`). Returns how many tips it destroyed.
pub async fn pass(
    store: &Store,
    config: &RetentionConfig,
    key_file: Option<&Path>,
    now: i64,
    wait: StdDuration,
) -> Result<PassReport, RetentionError> {
    // Its own connection on SQLite, whose commits do not wait for the disk: the pass
    // ends with a checkpoint that does (in `destroy_due`), and a crash before loses only
    // work the next pass does again.
    let store = &store.for_maintenance().await?;
    let started = std::time::Instant::now();
    let mut report = PassReport {
        destroyed: destroy_due(store, config, now).await?,
        destroy_time: started.elapsed(),
        ..PassReport::default()
    };
    if let Some(path) = key_file {
        report.spent_keys = retire_spent_days(store, path, now).await?;
        let started = std::time::Instant::now();
        report.wrapped = wrap_for_destruction(store, config, path, now, wait).await?;
        report.wrap_time = started.elapsed();
        if !report.spent_keys.is_empty() || report.wrapped > 0 {
            tracing::info!(
                deleted_day_keys = %report.spent_keys.join(","),
                wrapped = report.wrapped,
                "retention: day keys"
            );
        }
    }
    Ok(report)
}

/// Runs the day's pass once `retention.hour` has come (Vietnam time), if no process ran
/// it yet today; returns how many tips it destroyed, or `None` when it was not this
/// process's to run.
pub async fn daily_pass(
    store: &Store,
    config: &RetentionConfig,
    key_file: Option<&Path>,
    now: i64,
) -> Result<Option<u64>, RetentionError> {
    let local = chrono::DateTime::from_timestamp_millis(now + VN_OFFSET_MS)
        .map(|t| t.naive_utc())
        .unwrap_or_default();
    // 24 or more: this process runs no daily pass (another does, or `retention run`).
    if config.hour > 23 || chrono::Timelike::hour(&local) < config.hour {
        return Ok(None);
    }
    let day = local.date().to_string();
    if !store.claim_retention_run(&day, now).await? {
        return Ok(None);
    }
    let destroyed = pass(store, config, key_file, now, StdDuration::from_secs(30))
        .await?
        .destroyed;
    store
        .count_retention_run(&day, i64::try_from(destroyed).unwrap_or(i64::MAX))
        .await?;
    tracing::info!(day = %day, destroyed, "retention pass: content of closed tips destroyed");
    Ok(Some(destroyed))
}

/// Looks every `every` whether the day's pass is due, for as long as the process serves.
pub fn spawn(store: Store, config: RetentionConfig, key_file: Option<PathBuf>, every: StdDuration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = daily_pass(&store, &config, key_file.as_deref(), now_ms()).await {
                tracing::warn!(error = %e, "retention pass failed; the next one goes on");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months_in_vietnam_time() {
        let at = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 30, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
                - VN_OFFSET_MS
        };
        assert_eq!(months_before(at(2027, 12, 3), 12), at(2026, 12, 3));
        assert_eq!(months_before(at(2027, 3, 31), 1), at(2027, 2, 28));
        assert_eq!(months_before(at(2027, 1, 1), 0), at(2027, 1, 1));
    }
}
