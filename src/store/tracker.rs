//! The drug-free village tracker's rows: assessments (their note sealed) and the
//! commune's target.

use super::{Pool, Store, StoreResult};

/// One assessment of a village.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssessmentRow {
    pub id: String,
    pub village_id: i64,
    pub commune_code: i64,
    /// `YYYY-MM-DD`, the day it was assessed.
    pub assessed_on: String,
    /// Each criterion: `met`, `not_met` or `unknown`.
    pub no_users: String,
    pub no_offences: String,
    pub no_venues: String,
    pub village_pledge: i64,
    pub households_pledged: i64,
    pub cultivation_risk: i64,
    pub cultivation_pledge: i64,
    pub assessor_id: String,
    /// Sealed (`KeyRing::seal_record`, kind `assessment`, bound to the id).
    pub note: Option<Vec<u8>>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, village_id, commune_code, assessed_on, no_users, no_offences, no_venues, \
     village_pledge, households_pledged, cultivation_risk, cultivation_pledge, assessor_id, note, created_at";

impl Store {
    /// Stores an assessment.
    pub async fn insert_assessment(&self, a: &AssessmentRow) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(&format!(
            "INSERT INTO village_assessments ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"))
            .bind(&a.id).bind(a.village_id).bind(a.commune_code).bind(&a.assessed_on).bind(&a.no_users)
            .bind(&a.no_offences).bind(&a.no_venues).bind(a.village_pledge).bind(a.households_pledged)
            .bind(a.cultivation_risk).bind(a.cultivation_pledge).bind(&a.assessor_id).bind(&a.note)
            .bind(a.created_at)
            .execute(p).await.map(|_| ()))
    }

    /// Every assessment of the villages of these communes, newest first per village.
    pub async fn assessments(&self, communes: &[i64]) -> StoreResult<Vec<AssessmentRow>> {
        if communes.is_empty() {
            return Ok(Vec::new());
        }
        let list = communes
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM village_assessments WHERE commune_code IN ({list}) \
             ORDER BY village_id, assessed_on DESC, created_at DESC"))
            .fetch_all(p).await)
    }

    /// The commune's target share of drug-free villages, in percent (50 unless set).
    pub async fn drugfree_target(&self, commune: i64) -> StoreResult<i64> {
        let t: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT drugfree_target FROM commune_settings WHERE commune_code = $1")
            .bind(commune).fetch_optional(p).await)?;
        Ok(t.unwrap_or(50))
    }

    /// Sets the commune's target share of drug-free villages.
    pub async fn set_drugfree_target(
        &self,
        commune: i64,
        percent: i64,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO commune_settings (commune_code, updated_at, drugfree_target) VALUES ($1,$2,$3) \
             ON CONFLICT (commune_code) DO UPDATE SET drugfree_target = excluded.drugfree_target, \
             updated_at = excluded.updated_at")
            .bind(commune).bind(now).bind(percent).execute(p).await.map(|_| ()))
    }
}
