//! What the monthly reports read: counts only, never a sealed field.

use super::{Pool, Store, StoreResult};

/// One tip as a report counts it: no content, only its kind, place and timings.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportTipRow {
    pub category: String,
    pub channel: String,
    pub village_id: Option<i64>,
    pub priority: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub reward_eligible: bool,
    pub created_at: i64,
    pub due_at: i64,
    pub first_action_at: Option<i64>,
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

#[derive(sqlx::FromRow)]
struct ProvinceTipRow {
    commune_code: i64,
    #[sqlx(flatten)]
    tip: ReportTipRow,
}

impl Store {
    /// The tips of a commune that came in within `[from, to)` (ms).
    pub async fn report_tips(
        &self,
        commune: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ReportTipRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT category, channel, village_id, priority, status, outcome, reward_eligible, created_at, due_at, \
             first_action_at FROM tips WHERE commune_code = $1 AND created_at >= $2 AND created_at < $3")
            .bind(commune).bind(from).bind(to).fetch_all(p).await)
    }

    /// The tips of a province's communes that came in within `[from, to)` (ms), with
    /// their commune.
    pub async fn report_tips_province(
        &self,
        province: i64,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<(i64, ReportTipRow)>> {
        let rows: Vec<ProvinceTipRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT commune_code, category, channel, village_id, priority, status, outcome, reward_eligible, created_at, \
             due_at, first_action_at FROM tips WHERE province_code = $1 AND commune_code IS NOT NULL \
             AND created_at >= $2 AND created_at < $3")
            .bind(province).bind(from).bind(to).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| (r.commune_code, r.tip)).collect())
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
