//! What the monthly reports read: counts only, never a sealed field.

use super::{Pool, Store, StoreResult};

/// Whose tips a report counts: a commune's, or a province's (tips placed in a commune).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportScope {
    Commune(i64),
    Province(i64),
}

impl ReportScope {
    /// Its condition on `tips` (bound as `$1`) and the value bound.
    fn filter(self) -> (&'static str, i64) {
        match self {
            ReportScope::Commune(c) => ("commune_code = $1", c),
            ReportScope::Province(p) => ("province_code = $1 AND commune_code IS NOT NULL", p),
        }
    }
}

/// A group of a period's tips, summed: how many, how many acted on (by their deadline),
/// overdue at the period's end (`$4`), their outcomes, still open, rewarded, by hotline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct TipSums {
    pub total: i64,
    pub acted: i64,
    pub in_time: i64,
    pub overdue: i64,
    pub confirmed: i64,
    pub unfounded: i64,
    pub duplicates: i64,
    pub referred: i64,
    pub open: i64,
    pub rewards: i64,
    pub hotline: i64,
}

/// The sums of [`TipSums`] in SQL; `$4` is the moment a tip not acted on by then counts as
/// overdue.
const SUMS: &str = "COUNT(*) AS total, \
    SUM(CASE WHEN first_action_at IS NOT NULL THEN 1 ELSE 0 END) AS acted, \
    SUM(CASE WHEN first_action_at <= due_at THEN 1 ELSE 0 END) AS in_time, \
    SUM(CASE WHEN due_at < $4 AND (first_action_at IS NULL OR first_action_at >= $4) THEN 1 ELSE 0 END) AS overdue, \
    SUM(CASE WHEN outcome = 'actioned' THEN 1 ELSE 0 END) AS confirmed, \
    SUM(CASE WHEN outcome = 'unfounded' THEN 1 ELSE 0 END) AS unfounded, \
    SUM(CASE WHEN outcome = 'duplicate' THEN 1 ELSE 0 END) AS duplicates, \
    SUM(CASE WHEN outcome = 'referred' THEN 1 ELSE 0 END) AS referred, \
    SUM(CASE WHEN status <> 'closed' THEN 1 ELSE 0 END) AS open, \
    SUM(CASE WHEN reward_eligible THEN 1 ELSE 0 END) AS rewards, \
    SUM(CASE WHEN channel = 'hotline' THEN 1 ELSE 0 END) AS hotline";

/// A commune's tips of a period by category, channel and priority, summed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TipGroup {
    pub category: String,
    pub channel: String,
    pub priority: i64,
    #[sqlx(flatten)]
    pub sums: TipSums,
}

#[derive(sqlx::FromRow)]
struct CommuneSums {
    commune_code: i64,
    #[sqlx(flatten)]
    sums: TipSums,
}

/// One of the two ranks of a group's time to first action that a report shows (median
/// and 90th percentile, nearest rank): the group, the wait (ms), its rank (`nth`) and
/// the group's count of acted tips.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct WaitRank {
    pub grp: i64,
    pub wait: i64,
    pub nth: i64,
    pub n: i64,
}

/// A commune's campaign messages of a period, counted: broadcasts started, their kept
/// results per village, channel and outcome, subscriptions gained and lost per village
/// and channel.
#[derive(Debug, Clone, Default)]
pub struct CampaignCounts {
    pub broadcasts: i64,
    pub results: Vec<(i64, String, String, i64)>,
    pub gained: Vec<(i64, String, i64)>,
    pub lost: Vec<(i64, String, i64)>,
}

impl Store {
    /// A commune's tips that came in within `[from, to)` (ms), summed by category, channel
    /// and priority; overdue counted as of `end`. One range scan of the covering index
    /// `tips_commune_created`.
    pub async fn report_tip_groups(
        &self,
        commune: i64,
        from: i64,
        to: i64,
        end: i64,
    ) -> StoreResult<Vec<TipGroup>> {
        let sql = format!(
            "SELECT category, channel, priority, {SUMS} FROM tips WHERE commune_code = $1 \
             AND created_at >= $2 AND created_at < $3 GROUP BY category, channel, priority"
        );
        on_pool!(self, p => sqlx::query_as(&sql).bind(commune).bind(from).bind(to).bind(end).fetch_all(p).await)
    }

    /// A province's tips that came in within `[from, to)` (ms), summed per commune;
    /// overdue counted as of `end`.
    pub async fn report_commune_sums(
        &self,
        province: i64,
        from: i64,
        to: i64,
        end: i64,
    ) -> StoreResult<Vec<(i64, TipSums)>> {
        let sql = format!(
            "SELECT commune_code, {SUMS} FROM tips WHERE province_code = $1 AND commune_code IS NOT NULL \
             AND created_at >= $2 AND created_at < $3 GROUP BY commune_code"
        );
        let rows: Vec<CommuneSums> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(province).bind(from).bind(to).bind(end).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| (r.commune_code, r.sums)).collect())
    }

    /// A commune's tips of `[from, to)` per village (`None`: no listed village).
    pub async fn report_villages(
        &self,
        commune: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(Option<i64>, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT village_id, COUNT(*) FROM tips WHERE commune_code = $1 AND created_at >= $2 \
             AND created_at < $3 GROUP BY village_id")
            .bind(commune).bind(from).bind(to).fetch_all(p).await)
    }

    /// A commune's tips of `[from, to)` per day, the day numbered from 1970-01-01 after
    /// shifting each moment by `offset` ms (Vietnam time: +7 h).
    pub async fn report_days(
        &self,
        commune: i64,
        from: i64,
        to: i64,
        offset: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT (created_at + $4) / 86400000 AS day, COUNT(*) FROM tips WHERE commune_code = $1 \
             AND created_at >= $2 AND created_at < $3 GROUP BY 1")
            .bind(commune).bind(from).bind(to).bind(offset).fetch_all(p).await)
    }

    /// The median and 90th-percentile time to first action (nearest rank) of the tips of
    /// `[from, to)` that were acted on: one group for a commune, and for a province one
    /// per commune (`per_commune`) or the province's own (group = its code).
    pub async fn report_wait_ranks(
        &self,
        scope: ReportScope,
        per_commune: bool,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<WaitRank>> {
        let (filter, code) = scope.filter();
        let grp = match (scope, per_commune) {
            (ReportScope::Province(_), false) => "province_code",
            _ => "commune_code",
        };
        let sql = format!(
            "SELECT grp, wait, nth, n FROM (SELECT {grp} AS grp, \
             CASE WHEN first_action_at > created_at THEN first_action_at - created_at ELSE 0 END AS wait, \
             ROW_NUMBER() OVER (PARTITION BY {grp} ORDER BY first_action_at - created_at) AS nth, \
             COUNT(*) OVER (PARTITION BY {grp}) AS n \
             FROM tips WHERE {filter} AND created_at >= $2 AND created_at < $3 AND first_action_at IS NOT NULL) w \
             WHERE nth = (n * 50 + 99) / 100 OR nth = (n * 90 + 99) / 100"
        );
        on_pool!(self, p => sqlx::query_as(&sql).bind(code).bind(from).bind(to).fetch_all(p).await)
    }

    /// Tips moved out of each commune of a province within `[from, to)`.
    pub async fn report_transfers_province(
        &self,
        province: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT commune_code, COUNT(*) FROM audit_log WHERE province_code = $1 AND commune_code IS NOT NULL \
             AND action = 'tip.transfer' AND at >= $2 AND at < $3 GROUP BY commune_code")
            .bind(province).bind(from).bind(to).fetch_all(p).await)
    }

    /// Follow-up messages of a commune's tips written within `[from, to)`, by author
    /// (`police`, `tipster`).
    pub async fn report_messages(
        &self,
        commune: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        on_pool!(self, p => sqlx::query_as(
            // CROSS JOIN: SQLite then walks the period's messages (by time) and looks each
            // tip up, instead of walking all the commune's tips.
            "SELECT m.author, COUNT(*) FROM tip_messages m CROSS JOIN tips t \
             WHERE t.id = m.tip_id AND t.commune_code = $1 AND m.created_at >= $2 AND m.created_at < $3 \
             GROUP BY m.author")
            .bind(commune).bind(from).bind(to).fetch_all(p).await)
    }

    /// The campaign counts of a commune within `[from, to)` (ms); lost subscriptions by
    /// their Vietnam-time day.
    pub async fn report_campaign(
        &self,
        commune: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<CampaignCounts> {
        let (from_day, to_day) = (
            super::broadcast::vn_day_number(from),
            super::broadcast::vn_day_number(to),
        );
        on_pool!(self, p => {
            let broadcasts: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM broadcasts WHERE commune_code = $1 AND started_at >= $2 AND started_at < $3")
                .bind(commune).bind(from).bind(to).fetch_one(p).await?;
            let results = sqlx::query_as(
                "SELECT r.village_id, r.transport, r.status, CAST(SUM(r.count) AS BIGINT) FROM broadcast_results r \
                 JOIN broadcasts b ON b.id = r.broadcast_id WHERE b.commune_code = $1 AND b.started_at >= $2 \
                 AND b.started_at < $3 GROUP BY r.village_id, r.transport, r.status")
                .bind(commune).bind(from).bind(to).fetch_all(p).await?;
            let gained = sqlx::query_as(
                "SELECT village_id, transport, COUNT(*) FROM subscribers WHERE commune_code = $1 AND status = 'active' \
                 AND created_at >= $2 AND created_at < $3 GROUP BY village_id, transport")
                .bind(commune).bind(from).bind(to).fetch_all(p).await?;
            let lost = sqlx::query_as(
                "SELECT village_id, transport, CAST(SUM(count) AS BIGINT) FROM subscriber_losses WHERE commune_code = $1 \
                 AND day >= $2 AND day < $3 GROUP BY village_id, transport")
                .bind(commune).bind(from_day).bind(to_day).fetch_all(p).await?;
            Ok(CampaignCounts { broadcasts, results, gained, lost })
        })
    }

    /// Who gets a commune's monthly report by email: the commune's chiefs and statistics
    /// accounts with an address, active: `(commune, role, email)`.
    pub async fn report_recipients(&self) -> StoreResult<Vec<(i64, String, String)>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT commune_code, role, email FROM accounts WHERE role IN ('chief', 'statistics') \
             AND commune_code IS NOT NULL AND disabled = $1 AND email IS NOT NULL AND email <> '' \
             ORDER BY commune_code, email")
            .bind(false).fetch_all(p).await)
    }

    /// Takes the sending of a commune's report for a month: `true` for the one caller
    /// that may send it (of any number of processes), `false` once it was taken.
    pub async fn claim_report_mailing(
        &self,
        commune: i64,
        month: &str,
        now: i64,
    ) -> StoreResult<bool> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO report_mailings (commune_code, month, sent_at) VALUES ($1, $2, $3) \
             ON CONFLICT (commune_code, month) DO NOTHING")
            .bind(commune).bind(month).bind(now).execute(p).await.map(|r| r.rows_affected() == 1))
    }

    /// Gives a mailing back after it could not be sent, for the next pass to try again.
    pub async fn release_report_mailing(&self, commune: i64, month: &str) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM report_mailings WHERE commune_code = $1 AND month = $2")
            .bind(commune).bind(month).execute(p).await.map(|_| ()))
    }

    /// Tips moved out of a commune within `[from, to)` (each transfer is audited with the
    /// commune the tip was in).
    pub async fn report_transfers_out(&self, commune: i64, from: i64, to: i64) -> StoreResult<i64> {
        on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE commune_code = $1 AND action = 'tip.transfer' AND at >= $2 AND at < $3")
            .bind(commune).bind(from).bind(to).fetch_one(p).await)
    }
}
