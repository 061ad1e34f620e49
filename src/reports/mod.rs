//! The commune's monthly report (báo cáo tháng, issue 13): what came in, how fast it was
//! acted on and what came of it, for a month or a date range in Vietnam time, beside the
//! previous period and the same period a year before. Counts only: a report never opens
//! a sealed field. Exported as CSV and as an `.xlsx` workbook (one sheet per table, real
//! numbers and dates).

pub mod export;
pub mod mail;
pub mod tracker;

use crate::geo::Geo;
use crate::store::{ReportScope, Store, StoreError, TipSums, WaitRank};
use crate::tips::{Category, Channel, Priority};
use chrono::{Datelike, Duration, NaiveDate};

use crate::clock::VN_OFFSET_MS;
/// The longest range a report covers.
pub const MAX_DAYS: i64 = 731;

/// Why a report could not be made; each has a localised message (`key`).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a month is written YYYY-MM, e.g. 2026-11")]
    BadMonth,
    #[error("a date is written YYYY-MM-DD, and the range ends on or after its start")]
    BadRange,
    #[error("a report covers at most two years")]
    TooLong,
    #[error("no commune with that code")]
    UnknownCommune,
    #[error("no province with that code")]
    UnknownProvince,
    #[error("database error: {0}")]
    Store(#[from] StoreError),
}

impl ReportError {
    /// The key of its message in the texts.
    pub fn key(&self) -> &'static str {
        match self {
            ReportError::BadMonth => "report.error_month",
            ReportError::BadRange => "report.error_range",
            ReportError::TooLong => "report.error_too_long",
            ReportError::UnknownCommune => "report.error_commune",
            ReportError::UnknownProvince => "report.error_province",
            ReportError::Store(_) => "error.try_later",
        }
    }
}

/// The days a report covers, first to last inclusive, in Vietnam time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Period {
    /// A calendar month, `YYYY-MM`.
    pub fn month(s: &str) -> Result<Period, ReportError> {
        let (y, m) = s.trim().split_once('-').ok_or(ReportError::BadMonth)?;
        let (Ok(y), Ok(m)) = (y.parse::<i32>(), m.parse::<u32>()) else {
            return Err(ReportError::BadMonth);
        };
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or(ReportError::BadMonth)?;
        Ok(Period {
            first,
            last: end_of_month(first),
        })
    }

    /// A range of days, `YYYY-MM-DD` to `YYYY-MM-DD` inclusive (the June action month is
    /// 2026-06-01 to 2026-06-30), at most [`MAX_DAYS`].
    pub fn range(from: &str, to: &str) -> Result<Period, ReportError> {
        let parse = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        let (Some(first), Some(last)) = (parse(from), parse(to)) else {
            return Err(ReportError::BadRange);
        };
        if last < first {
            return Err(ReportError::BadRange);
        }
        let p = Period { first, last };
        if p.days() > MAX_DAYS {
            return Err(ReportError::TooLong);
        }
        Ok(p)
    }

    /// Days covered.
    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// Whether it is one whole calendar month.
    pub fn is_month(&self) -> bool {
        self.first.day() == 1 && self.last == end_of_month(self.first)
    }

    /// Its start in Unix milliseconds (00:00 Vietnam time of the first day).
    pub fn from_ms(&self) -> i64 {
        day_start_ms(self.first)
    }

    /// Its end, exclusive (00:00 Vietnam time of the day after the last).
    pub fn to_ms(&self) -> i64 {
        day_start_ms(self.last + Duration::days(1))
    }

    /// The period just before: the previous month for a month, else as many days before.
    pub fn previous(&self) -> Period {
        if self.is_month() {
            let last = self.first - Duration::days(1);
            Period {
                first: last.with_day(1).unwrap_or(last),
                last,
            }
        } else {
            let days = Duration::days(self.days());
            Period {
                first: self.first - days,
                last: self.last - days,
            }
        }
    }

    /// The same period a year before (29 February becomes the 28th).
    pub fn year_before(&self) -> Period {
        let back = |d: NaiveDate| {
            NaiveDate::from_ymd_opt(d.year() - 1, d.month(), d.day())
                .or_else(|| NaiveDate::from_ymd_opt(d.year() - 1, d.month(), d.day() - 1))
                .unwrap_or(d)
        };
        if self.is_month() {
            let first = back(self.first);
            Period {
                first,
                last: end_of_month(first),
            }
        } else {
            Period {
                first: back(self.first),
                last: back(self.last),
            }
        }
    }

    /// `2026-11` for a month, `2026-06-01 – 2026-06-30` otherwise.
    pub fn label(&self) -> String {
        if self.is_month() {
            self.first.format("%Y-%m").to_string()
        } else {
            format!("{} – {}", self.first, self.last)
        }
    }

    /// Each day of the period.
    pub fn each_day(&self) -> impl Iterator<Item = NaiveDate> {
        let first = self.first;
        (0..self.days()).map(move |i| first + Duration::days(i))
    }
}

fn end_of_month(first: NaiveDate) -> NaiveDate {
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(first, |n| n - Duration::days(1))
}

fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
        - VN_OFFSET_MS
}

/// The Vietnam-time day of a moment.
pub fn vn_day(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms + VN_OFFSET_MS)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// One period's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub total: i64,
    /// Every category, in the form's order (zeros included).
    pub by_category: Vec<(Category, i64)>,
    pub by_channel: Vec<(Channel, i64)>,
    /// By village id (`None`: no listed village), most first.
    pub by_village: Vec<(Option<i64>, i64)>,
    pub by_priority: Vec<(Priority, i64)>,
    /// Tips per day of the period.
    pub per_day: Vec<(NaiveDate, i64)>,
    /// Tips acted on (a status change, a message to the tipster, a transfer, a duplicate).
    pub acted: i64,
    /// Of the period's tips, acted on by their deadline.
    pub acted_in_time: i64,
    /// Median and 90th percentile of the time to first action (ms), over acted tips.
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    /// Tips of the period past their deadline and not acted on when the period ended (or
    /// now, for a period not over yet).
    pub overdue_at_end: i64,
    pub confirmed: i64,
    pub unfounded: i64,
    pub duplicates: i64,
    pub referred: i64,
    pub transferred_out: i64,
    pub still_open: i64,
    pub rewards: i64,
    pub hotline_calls: i64,
    pub messages_police: i64,
    pub messages_tipster: i64,
    /// Campaign messages: broadcasts started in the period, messages that reached a
    /// resident (sent or delivered) and were confirmed delivered or failed (broadcasts
    /// finished), subscriptions gained and ended.
    pub broadcasts: i64,
    pub reached: i64,
    pub delivered: i64,
    pub failed: i64,
    pub subscribers_gained: i64,
    pub subscribers_lost: i64,
    /// The same per village and channel.
    pub campaign: Vec<CampaignRow>,
}

/// One village's and channel's campaign counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignRow {
    pub village: i64,
    pub transport: String,
    pub reached: i64,
    pub delivered: i64,
    pub gained: i64,
    pub lost: i64,
}

impl Figures {
    /// Adds a period's campaign counts.
    fn add_campaign(&mut self, c: crate::store::CampaignCounts) {
        self.broadcasts = c.broadcasts;
        let mut rows: Vec<CampaignRow> = Vec::new();
        let mut row = |village: i64, transport: &str| -> usize {
            match rows
                .iter()
                .position(|r| r.village == village && r.transport == transport)
            {
                Some(i) => i,
                None => {
                    rows.push(CampaignRow {
                        village,
                        transport: transport.to_owned(),
                        ..CampaignRow::default()
                    });
                    rows.len() - 1
                }
            }
        };
        let mut cells = Vec::new();
        for (village, transport, status, n) in &c.results {
            let i = row(*village, transport);
            cells.push((i, status.as_str(), *n));
        }
        let gained: Vec<(usize, i64)> = c.gained.iter().map(|(v, t, n)| (row(*v, t), *n)).collect();
        let lost: Vec<(usize, i64)> = c.lost.iter().map(|(v, t, n)| (row(*v, t), *n)).collect();
        for (i, status, n) in cells {
            match status {
                "delivered" => {
                    rows[i].delivered += n;
                    rows[i].reached += n;
                    self.delivered += n;
                    self.reached += n;
                }
                "sent" => {
                    rows[i].reached += n;
                    self.reached += n;
                }
                "failed" => self.failed += n,
                _ => {}
            }
        }
        for (i, n) in gained {
            rows[i].gained += n;
            self.subscribers_gained += n;
        }
        for (i, n) in lost {
            rows[i].lost += n;
            self.subscribers_lost += n;
        }
        rows.sort_by(|a, b| {
            a.village
                .cmp(&b.village)
                .then(a.transport.cmp(&b.transport))
        });
        self.campaign = rows;
    }
}

impl Figures {
    /// Share of the period's tips acted on by their deadline, in percent.
    pub fn share_in_time(&self) -> Option<f64> {
        (self.total > 0).then(|| self.acted_in_time as f64 * 100.0 / self.total as f64)
    }

    /// A period's figures before anything is counted: every category, channel, priority
    /// and day there, at zero.
    fn empty(period: &Period) -> Figures {
        Figures {
            by_category: Category::ALL.iter().map(|c| (*c, 0)).collect(),
            by_channel: Channel::ALL.iter().map(|c| (*c, 0)).collect(),
            by_priority: [
                Priority::Urgent,
                Priority::High,
                Priority::Normal,
                Priority::Low,
            ]
            .iter()
            .map(|p| (*p, 0))
            .collect(),
            per_day: period.each_day().map(|d| (d, 0)).collect(),
            ..Figures::default()
        }
    }

    /// Adds a group of tips, summed by the database.
    fn add(&mut self, s: &TipSums) {
        self.total += s.total;
        self.acted += s.acted;
        self.acted_in_time += s.in_time;
        self.overdue_at_end += s.overdue;
        self.confirmed += s.confirmed;
        self.unfounded += s.unfounded;
        self.duplicates += s.duplicates;
        self.referred += s.referred;
        self.still_open += s.open;
        self.rewards += s.rewards;
        self.hotline_calls += s.hotline;
    }

    /// Takes the median and 90th percentile of the time to first action from a group's
    /// ranks (the store returns the rows at [`nearest_rank`] 50 and 90).
    fn set_waits<'a>(&mut self, ranks: impl IntoIterator<Item = &'a WaitRank>) {
        for r in ranks {
            if r.nth == nearest_rank(50, r.n) {
                self.median_ms = Some(r.wait);
            }
            if r.nth == nearest_rank(90, r.n) {
                self.p90_ms = Some(r.wait);
            }
        }
    }
}

/// The rank (from 1) of the `p`th percentile of `n` sorted values, nearest rank: the
/// same formula as the store's `(n * p + 99) / 100`.
fn nearest_rank(p: i64, n: i64) -> i64 {
    (n * p).div_euclid(100) + i64::from((n * p).rem_euclid(100) != 0)
}

/// A commune's report: the period's figures beside the previous period's and the same
/// period a year before.
#[derive(Debug, Clone)]
pub struct CommuneReport {
    pub commune: i64,
    pub commune_name: String,
    pub province_name: String,
    pub period: Period,
    pub now: Figures,
    pub previous: Figures,
    pub year_before: Figures,
    /// Names of the villages counted (id → name).
    pub villages: Vec<(i64, String)>,
}

impl CommuneReport {
    /// A village's name, or "" for tips without a listed village.
    pub fn village_name(&self, id: Option<i64>) -> &str {
        id.and_then(|id| self.villages.iter().find(|v| v.0 == id))
            .map_or("", |v| v.1.as_str())
    }
}

/// One period's figures of a commune, summed by the database (a period not over yet
/// counts as overdue only what is overdue now).
async fn figures(store: &Store, commune: i64, period: &Period) -> Result<Figures, ReportError> {
    let (from, to) = (period.from_ms(), period.to_ms());
    let end = to.min(crate::clock::now_ms());
    let (groups, villages, days, waits, messages, transfers, campaign) = tokio::try_join!(
        store.report_tip_groups(commune, from, to, end),
        store.report_villages(commune, from, to),
        store.report_days(commune, from, to, VN_OFFSET_MS),
        store.report_wait_ranks(ReportScope::Commune(commune), false, from, to),
        store.report_messages(commune, from, to),
        store.report_transfers_out(commune, from, to),
        store.report_campaign(commune, from, to),
    )?;
    let mut f = Figures::empty(period);
    for g in &groups {
        f.add(&g.sums);
        let n = g.sums.total;
        if let Some(c) = f
            .by_category
            .iter_mut()
            .find(|c| c.0.as_str() == g.category)
        {
            c.1 += n;
        }
        if let Some(c) = f.by_channel.iter_mut().find(|c| c.0.as_str() == g.channel) {
            c.1 += n;
        }
        if let Some(p) = f.by_priority.iter_mut().find(|p| p.0 as i64 == g.priority) {
            p.1 += n;
        }
    }
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    for (day, n) in days {
        let i = (epoch + Duration::days(day) - period.first).num_days();
        if let Some(d) = usize::try_from(i).ok().and_then(|i| f.per_day.get_mut(i)) {
            d.1 += n;
        }
    }
    f.set_waits(&waits);
    let mut by_village = villages;
    by_village.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    f.by_village = by_village;
    for (author, n) in messages {
        match author.as_str() {
            "police" => f.messages_police = n,
            "tipster" => f.messages_tipster = n,
            _ => {}
        }
    }
    f.transferred_out = transfers;
    f.add_campaign(campaign);
    Ok(f)
}

/// The report of `commune` for `period`.
pub async fn commune_report(
    store: &Store,
    geo: &Geo,
    commune: i64,
    period: Period,
) -> Result<CommuneReport, ReportError> {
    let c = geo.commune(commune).ok_or(ReportError::UnknownCommune)?;
    let (before, year_ago) = (period.previous(), period.year_before());
    let (now, previous, year_before, villages) = tokio::try_join!(
        figures(store, commune, &period),
        figures(store, commune, &before),
        figures(store, commune, &year_ago),
        async {
            Ok::<_, ReportError>(
                store
                    .villages(commune)
                    .await?
                    .into_iter()
                    .map(|v| (v.id, v.name))
                    .collect::<Vec<_>>(),
            )
        },
    )?;
    Ok(CommuneReport {
        commune,
        commune_name: c.name.clone(),
        province_name: geo
            .province(c.province_code)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        period,
        now,
        previous,
        year_before,
        villages,
    })
}

/// One commune's row of the province view.
#[derive(Debug, Clone)]
pub struct CommuneRow {
    pub code: i64,
    pub name: String,
    pub figures: Figures,
}

/// The province's view of a period: a row per commune (every commune, tips or not) and
/// the totals.
#[derive(Debug, Clone)]
pub struct ProvinceReport {
    pub province: i64,
    pub province_name: String,
    pub period: Period,
    pub rows: Vec<CommuneRow>,
    pub total: Figures,
}

/// The columns the province view sorts by.
pub const PROVINCE_COLUMNS: [&str; 9] = [
    "tips",
    "share_in_time",
    "median_minutes",
    "overdue_at_end",
    "confirmed",
    "unfounded",
    "transferred",
    "still_open",
    "hotline_calls",
];

impl ProvinceReport {
    /// Sorts the rows by one of [`PROVINCE_COLUMNS`], largest first (by name otherwise).
    pub fn sort_by(&mut self, column: &str) {
        let key = |f: &Figures| -> f64 {
            match column {
                "tips" => f.total as f64,
                "share_in_time" => f.share_in_time().unwrap_or(-1.0),
                "median_minutes" => f.median_ms.map_or(-1.0, |m| m as f64),
                "overdue_at_end" => f.overdue_at_end as f64,
                "confirmed" => f.confirmed as f64,
                "unfounded" => f.unfounded as f64,
                "transferred" => f.transferred_out as f64,
                "still_open" => f.still_open as f64,
                "hotline_calls" => f.hotline_calls as f64,
                _ => 0.0,
            }
        };
        if PROVINCE_COLUMNS.contains(&column) {
            self.rows.sort_by(|a, b| {
                key(&b.figures)
                    .total_cmp(&key(&a.figures))
                    .then_with(|| a.name.cmp(&b.name))
            });
        } else {
            self.rows.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

/// The province's view of `period`: the figures of each of its communes, and the totals.
pub async fn province_report(
    store: &Store,
    geo: &Geo,
    province: i64,
    period: Period,
) -> Result<ProvinceReport, ReportError> {
    let p = geo.province(province).ok_or(ReportError::UnknownProvince)?;
    let (from, to) = (period.from_ms(), period.to_ms());
    let end = to.min(crate::clock::now_ms());
    let scope = ReportScope::Province(province);
    let (sums, ranks, total_ranks, transfers) = tokio::try_join!(
        store.report_commune_sums(province, from, to, end),
        store.report_wait_ranks(scope, true, from, to),
        store.report_wait_ranks(scope, false, from, to),
        store.report_transfers_province(province, from, to),
    )?;
    let mut total = Figures::empty(&period);
    total.set_waits(&total_ranks);
    total.transferred_out = transfers.iter().map(|t| t.1).sum();
    let rows = geo
        .communes_of(province)
        .map(|c| {
            let mut figures = Figures::empty(&period);
            if let Some((_, s)) = sums.iter().find(|s| s.0 == c.code) {
                figures.add(s);
                total.add(s);
            }
            figures.set_waits(ranks.iter().filter(|r| r.grp == c.code));
            figures.transferred_out = transfers.iter().find(|t| t.0 == c.code).map_or(0, |t| t.1);
            CommuneRow {
                code: c.code,
                name: c.name.clone(),
                figures,
            }
        })
        .collect();
    let mut report = ProvinceReport {
        province,
        province_name: p.name.clone(),
        period,
        rows,
        total,
    };
    report.sort_by("");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_ranges_are_read_in_vietnam_time_and_bounded() {
        let nov = Period::month("2026-11").unwrap();
        assert_eq!(nov.days(), 30);
        assert!(nov.is_month());
        // 00:00 on 1 November in Vietnam is 17:00 on 31 October UTC.
        assert_eq!(nov.from_ms(), 1_793_466_000_000);
        assert_eq!(vn_day(nov.from_ms()), nov.first);
        assert_eq!(vn_day(nov.from_ms() - 1), nov.first - Duration::days(1));
        assert_eq!(nov.previous(), Period::month("2026-10").unwrap());
        assert_eq!(nov.year_before(), Period::month("2025-11").unwrap());
        assert_eq!(
            Period::month("2026-01").unwrap().previous(),
            Period::month("2025-12").unwrap()
        );
        let june = Period::range("2026-06-01", "2026-06-30").unwrap();
        assert!(june.is_month());
        let action = Period::range("2026-06-20", "2026-06-26").unwrap();
        assert_eq!(
            action.previous().last,
            NaiveDate::from_ymd_opt(2026, 6, 19).unwrap()
        );
        assert_eq!(action.label(), "2026-06-20 – 2026-06-26");
        for bad in ["2026-13", "2026-00", "26-1x", "", "2026"] {
            assert!(
                matches!(Period::month(bad), Err(ReportError::BadMonth)),
                "{bad}"
            );
        }
        assert!(matches!(
            Period::range("2026-06-30", "2026-06-01"),
            Err(ReportError::BadRange)
        ));
        assert!(matches!(
            Period::range("2024-01-01", "2026-06-01"),
            Err(ReportError::TooLong)
        ));
        let leap = Period::range("2028-02-29", "2028-03-01").unwrap();
        assert_eq!(
            leap.year_before().first,
            NaiveDate::from_ymd_opt(2027, 2, 28).unwrap()
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(nearest_rank(50, 1), 1);
        assert_eq!(nearest_rank(90, 1), 1);
        assert_eq!(nearest_rank(50, 10), 5);
        assert_eq!(nearest_rank(90, 10), 9);
        assert_eq!(nearest_rank(90, 11), 10);
        for n in 1..500 {
            assert_eq!(nearest_rank(50, n), (n * 50 + 99) / 100);
            assert_eq!(nearest_rank(90, n), (n * 90 + 99) / 100);
        }
        let mut f = Figures::default();
        f.set_waits(&[
            WaitRank {
                grp: 1,
                wait: 60_000,
                nth: 2,
                n: 3,
            },
            WaitRank {
                grp: 1,
                wait: 90_000,
                nth: 3,
                n: 3,
            },
        ]);
        assert_eq!((f.median_ms, f.p90_ms), (Some(60_000), Some(90_000)));
    }
}
