//! The drug-free village tracker (plan 000's three criteria, plan 004's target): each
//! village's latest assessment, its history, the commune's share of drug-free villages
//! against its target, and the province's roll-up per commune.

use crate::crypto::KeyRing;
use crate::geo::Geo;
use crate::store::{AssessmentRow, Store, StoreError};
use chrono::NaiveDate;

/// The three criteria, in plan 000's order.
pub const CRITERIA: [&str; 3] = ["no_users", "no_offences", "no_venues"];
/// What an assessment says of a criterion.
pub const ANSWERS: [&str; 3] = ["met", "not_met", "unknown"];
/// Longest note kept with an assessment.
pub const MAX_NOTE: usize = 2000;

/// Why an assessment or a target was refused; each has a localised message (`key`).
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("each criterion is met, not met or unknown")]
    BadAnswer,
    #[error("the date is YYYY-MM-DD and not in the future")]
    BadDate,
    #[error("households pledged is a number from 0 to 100000")]
    BadHouseholds,
    #[error("the note is at most 2000 characters")]
    NoteTooLong,
    #[error("a target is a whole percentage from 1 to 100")]
    BadTarget,
    #[error("database error: {0}")]
    Store(#[from] StoreError),
}

impl TrackerError {
    /// The key of its message in the texts.
    pub fn key(&self) -> &'static str {
        match self {
            TrackerError::BadAnswer => "tracker.error_answer",
            TrackerError::BadDate => "tracker.error_date",
            TrackerError::BadHouseholds => "tracker.error_households",
            TrackerError::NoteTooLong => "tracker.error_note",
            TrackerError::BadTarget => "tracker.error_target",
            TrackerError::Store(_) => "error.try_later",
        }
    }
}

/// An assessment as typed.
#[derive(Debug, Clone, Default)]
pub struct AssessmentInput {
    pub assessed_on: String,
    pub answers: [String; 3],
    pub village_pledge: bool,
    pub households_pledged: String,
    pub cultivation_risk: bool,
    pub cultivation_pledge: bool,
    pub note: String,
}

/// Checks an assessment and makes its row (the note sealed to it); `today` bounds the date.
pub fn assessment_row(
    keys: &KeyRing,
    village_id: i64,
    commune_code: i64,
    assessor_id: &str,
    input: &AssessmentInput,
    today: NaiveDate,
    now_ms: i64,
) -> Result<AssessmentRow, TrackerError> {
    for a in &input.answers {
        if !ANSWERS.contains(&a.as_str()) {
            return Err(TrackerError::BadAnswer);
        }
    }
    let day = NaiveDate::parse_from_str(input.assessed_on.trim(), "%Y-%m-%d")
        .map_err(|_| TrackerError::BadDate)?;
    if day > today {
        return Err(TrackerError::BadDate);
    }
    let households = match input.households_pledged.trim() {
        "" => 0,
        h => h
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=100_000).contains(n))
            .ok_or(TrackerError::BadHouseholds)?,
    };
    let note = input.note.trim();
    if note.chars().count() > MAX_NOTE {
        return Err(TrackerError::NoteTooLong);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sealed = (!note.is_empty()).then(|| keys.seal_record("assessment", &id, note.as_bytes()));
    Ok(AssessmentRow {
        id,
        village_id,
        commune_code,
        assessed_on: day.to_string(),
        no_users: input.answers[0].clone(),
        no_offences: input.answers[1].clone(),
        no_venues: input.answers[2].clone(),
        village_pledge: i64::from(input.village_pledge),
        households_pledged: households,
        cultivation_risk: i64::from(input.cultivation_risk),
        cultivation_pledge: i64::from(input.cultivation_risk && input.cultivation_pledge),
        assessor_id: assessor_id.to_owned(),
        note: sealed,
        created_at: now_ms,
    })
}

/// Opens an assessment's note (for the commune's police only).
pub fn open_note(keys: &KeyRing, row: &AssessmentRow) -> Option<String> {
    let sealed = row.note.as_ref()?;
    let clear = keys.open_record("assessment", &row.id, sealed).ok()?;
    String::from_utf8(clear).ok()
}

/// Checks a target share typed in percent.
pub fn parse_target(typed: &str) -> Result<i64, TrackerError> {
    typed
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or(TrackerError::BadTarget)
}

/// Whether an assessment makes its village drug-free: all three criteria met.
pub fn drug_free(a: &AssessmentRow) -> bool {
    [&a.no_users, &a.no_offences, &a.no_venues]
        .iter()
        .all(|c| c.as_str() == "met")
}

/// One village on the tracker: its latest assessment and its history (newest first).
#[derive(Debug, Clone)]
pub struct VillageState {
    pub id: i64,
    pub name: String,
    pub history: Vec<AssessmentRow>,
}

impl VillageState {
    /// The latest assessment.
    pub fn latest(&self) -> Option<&AssessmentRow> {
        self.history.first()
    }

    pub fn drug_free(&self) -> bool {
        self.latest().is_some_and(drug_free)
    }
}

/// A commune's tracker.
#[derive(Debug, Clone)]
pub struct CommuneTracker {
    pub commune: i64,
    pub villages: Vec<VillageState>,
    pub target: i64,
}

impl CommuneTracker {
    pub fn drug_free(&self) -> usize {
        self.villages.iter().filter(|v| v.drug_free()).count()
    }

    pub fn assessed(&self) -> usize {
        self.villages
            .iter()
            .filter(|v| v.latest().is_some())
            .count()
    }

    /// Share of drug-free villages, in percent (of all the commune's villages).
    pub fn share(&self) -> Option<f64> {
        (!self.villages.is_empty())
            .then(|| self.drug_free() as f64 * 100.0 / self.villages.len() as f64)
    }
}

/// The tracker of each of these communes, in the given order.
pub async fn trackers(store: &Store, communes: &[i64]) -> Result<Vec<CommuneTracker>, StoreError> {
    let mut rows = store.assessments(communes).await?;
    let mut out = Vec::with_capacity(communes.len());
    for &commune in communes {
        let (villages, target) =
            tokio::try_join!(store.villages(commune), store.drugfree_target(commune))?;
        let villages = villages
            .into_iter()
            .map(|v| {
                let history: Vec<AssessmentRow> = rows
                    .iter()
                    .filter(|a| a.village_id == v.id)
                    .cloned()
                    .collect();
                VillageState {
                    id: v.id,
                    name: v.name,
                    history,
                }
            })
            .collect();
        rows.retain(|a| a.commune_code != commune);
        out.push(CommuneTracker {
            commune,
            villages,
            target,
        });
    }
    Ok(out)
}

/// The province's communes, each with its tracker.
pub async fn province_trackers(
    store: &Store,
    geo: &Geo,
    province: i64,
) -> Result<Vec<(String, CommuneTracker)>, StoreError> {
    let communes: Vec<(i64, String)> = geo
        .communes_of(province)
        .map(|c| (c.code, c.name.clone()))
        .collect();
    let codes: Vec<i64> = communes.iter().map(|c| c.0).collect();
    let trackers = trackers(store, &codes).await?;
    Ok(communes.into_iter().map(|c| c.1).zip(trackers).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assessments_are_checked_and_their_notes_sealed() {
        let keys = KeyRing::generate();
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let mut input = AssessmentInput {
            assessed_on: "2026-11-28".into(),
            answers: ["met".into(), "met".into(), "met".into()],
            village_pledge: true,
            households_pledged: "212".into(),
            cultivation_risk: false,
            cultivation_pledge: true,
            note: "Đã rà soát 3 hộ".into(),
        };
        let row = assessment_row(&keys, 5, 70, "acc", &input, today, 1).unwrap();
        assert!(drug_free(&row));
        assert_eq!(
            row.cultivation_pledge, 0,
            "no pledge where there is no risk"
        );
        assert_eq!(open_note(&keys, &row).as_deref(), Some("Đã rà soát 3 hộ"));
        let sealed = row.note.as_ref().unwrap();
        assert!(
            !sealed.windows(4).any(|w| w == "rà ".as_bytes()),
            "sealed, not clear"
        );
        input.answers[2] = "unknown".into();
        assert!(!drug_free(
            &assessment_row(&keys, 5, 70, "acc", &input, today, 1).unwrap()
        ));
        input.answers[2] = "yes".into();
        assert!(matches!(
            assessment_row(&keys, 5, 70, "acc", &input, today, 1),
            Err(TrackerError::BadAnswer)
        ));
        input.answers[2] = "met".into();
        input.assessed_on = "2026-12-04".into();
        assert!(matches!(
            assessment_row(&keys, 5, 70, "acc", &input, today, 1),
            Err(TrackerError::BadDate)
        ));
        input.assessed_on = "2026-12-03".into();
        input.households_pledged = "-1".into();
        assert!(matches!(
            assessment_row(&keys, 5, 70, "acc", &input, today, 1),
            Err(TrackerError::BadHouseholds)
        ));
        assert_eq!(parse_target("50").unwrap(), 50);
        assert_eq!(parse_target(" 75 % ").unwrap(), 75);
        for bad in ["150", "0", "-5", "năm mươi", ""] {
            assert!(
                matches!(parse_target(bad), Err(TrackerError::BadTarget)),
                "{bad}"
            );
        }
    }
}
