//! Retention by crypto-shredding (issue 14): a closed tip's content is destroyed a set time
//! after it closed (`retention.months`, or a chief's period for a category of the
//! commune), unless an officer holds it as evidence ("giữ làm chứng cứ") until a date.
//! Destroying deletes the tip's data key and every sealed byte (fields, notes, photos;
//! messages keep their row, emptied, for the counts); what reports count stays. A pass
//! runs once a day from `retention.hour` (Vietnam time), taken by one process of many,
//! in short transactions so that intake goes on meanwhile.

use crate::clock::{now_ms, VN_OFFSET_MS};
use crate::config::RetentionConfig;
use crate::store::{ClosedGroup, RetentionRule, Store, StoreError};
use chrono::{Duration, Months, NaiveDate};
use std::time::Duration as StdDuration;

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
            // Let waiting writers (tips arriving) in between batches.
            tokio::task::yield_now().await;
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

/// Runs the day's pass once `retention.hour` has come (Vietnam time), if no process ran
/// it yet today; returns how many tips it destroyed, or `None` when it was not this
/// process's to run.
pub async fn daily_pass(
    store: &Store,
    config: &RetentionConfig,
    now: i64,
) -> Result<Option<u64>, StoreError> {
    let local = chrono::DateTime::from_timestamp_millis(now + VN_OFFSET_MS)
        .map(|t| t.naive_utc())
        .unwrap_or_default();
    if chrono::Timelike::hour(&local) < config.hour.min(23) {
        return Ok(None);
    }
    let day = local.date().to_string();
    if !store.claim_retention_run(&day, now).await? {
        return Ok(None);
    }
    let destroyed = destroy_due(store, config, now).await?;
    store
        .count_retention_run(&day, i64::try_from(destroyed).unwrap_or(i64::MAX))
        .await?;
    tracing::info!(day = %day, destroyed, "retention pass: content of closed tips destroyed");
    Ok(Some(destroyed))
}

/// Looks every `every` whether the day's pass is due, for as long as the process serves.
pub fn spawn(store: Store, config: RetentionConfig, every: StdDuration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = daily_pass(&store, &config, now_ms()).await {
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
