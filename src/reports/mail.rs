//! The monthly report by email: from 07:00 Vietnam time on the first day of each month,
//! each commune's chiefs and statistics accounts with an address get the past month's
//! workbook (counts only). Of any number of server processes exactly one sends each
//! commune's email: the sending is claimed in the database first (`report_mailings`),
//! and given back if no recipient took it.

use super::{commune_report, export, Period};
use crate::channels::email::Mailer;
use crate::geo::Geo;
use crate::i18n::locales;
use crate::store::Store;
use chrono::{Datelike, NaiveDate};
use std::sync::Arc;
use std::time::Duration;

/// The hour (Vietnam time) on the first of a month from which last month's report goes.
pub const SEND_HOUR: i64 = 7;

/// The latest month whose report is due at `now_ms`: last month from 07:00 on the 1st,
/// the month before until then.
pub fn due_month(now_ms: i64) -> Period {
    let today = super::vn_day(now_ms);
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let send_at = Period { first, last: first }.from_ms() + SEND_HOUR * 3_600_000;
    let last = month_before(first);
    if now_ms >= send_at {
        last
    } else {
        month_before(last.first)
    }
}

fn month_before(first: NaiveDate) -> Period {
    let prev_last = first - chrono::Duration::days(1);
    let prev_first =
        NaiveDate::from_ymd_opt(prev_last.year(), prev_last.month(), 1).unwrap_or(prev_last);
    Period {
        first: prev_first,
        last: prev_last,
    }
}

/// Starts the monthly mailing job: a pass every `period`.
pub fn spawn(store: Store, geo: Arc<Geo>, mailer: Mailer, period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            if let Err(e) = mail_due(&store, &geo, &mailer, crate::clock::now_ms()).await {
                tracing::warn!(error = %e, "the monthly report emails could not be prepared");
            }
        }
    });
}

/// One pass: every commune with recipients whose report for the due month was not sent
/// yet gets it. Returns how many communes' emails this process sent.
pub async fn mail_due(
    store: &Store,
    geo: &Geo,
    mailer: &Mailer,
    now_ms: i64,
) -> Result<usize, super::ReportError> {
    let period = due_month(now_ms);
    let month = period.label();
    let recipients = store.report_recipients().await?;
    let mut communes: Vec<i64> = recipients.iter().map(|r| r.0).collect();
    communes.dedup();
    let t = locales().texts("vi");
    let mut sent = 0;
    for commune in communes {
        if !store.claim_report_mailing(commune, &month, now_ms).await? {
            continue;
        }
        let report = match commune_report(store, geo, commune, period).await {
            Ok(r) => r,
            Err(e) => {
                store.release_report_mailing(commune, &month).await?;
                return Err(e);
            }
        };
        let subject = format!(
            "{} {} — {}",
            t.get("report.title"),
            month,
            report.commune_name
        );
        let body = format!(
            "{}\n\n{}: {}\n{}: {}\n\n{}",
            t.get("report.mail_intro"),
            t.get("report.tips"),
            report.now.total,
            t.get("report.share_in_time"),
            report
                .now
                .share_in_time()
                .map_or_else(|| "—".to_owned(), |s| format!("{s:.1}")),
            t.get("report.mail_footer")
        );
        let name = format!("bao-cao-{commune}-{month}.xlsx");
        let mut delivered = 0;
        let mut failed = false;
        // The chief reads exact counts; statistics accounts get a village's small counts
        // as "< 3", as on their pages.
        for (masked, role) in [(false, "chief"), (true, "statistics")] {
            let to: Vec<String> = recipients
                .iter()
                .filter(|r| r.0 == commune && r.1 == role)
                .map(|r| r.2.clone())
                .collect();
            if to.is_empty() {
                continue;
            }
            let book = match export::xlsx(&report, t, masked) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "a monthly workbook could not be written");
                    failed = true;
                    continue;
                }
            };
            let file = (
                name.as_str(),
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                book,
            );
            match mailer.send_with_file(&to, &subject, &body, file).await {
                Ok(n) => delivered += n,
                Err(e) => {
                    tracing::warn!(commune, error = %e, "a monthly report email was not taken");
                    failed = true;
                }
            }
        }
        if delivered == 0 && failed {
            store.release_report_mailing(commune, &month).await?;
        } else {
            metrics::counter!("tinbao_report_emails_total").increment(delivered as u64);
            tracing::info!(commune, month = %month, delivered, "monthly report emailed");
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
            - crate::clock::VN_OFFSET_MS
    }

    #[test]
    fn last_month_is_due_from_seven_on_the_first() {
        assert_eq!(due_month(at(2026, 12, 1, 7)).label(), "2026-11");
        assert_eq!(due_month(at(2026, 12, 1, 6)).label(), "2026-10");
        assert_eq!(due_month(at(2026, 12, 3, 14)).label(), "2026-11");
        assert_eq!(due_month(at(2027, 1, 1, 8)).label(), "2026-12");
        assert_eq!(due_month(at(2027, 1, 1, 6)).label(), "2026-11");
        assert!(due_month(at(2026, 3, 15, 0)).is_month());
    }
}
