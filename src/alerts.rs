//! Officers' alerts by email: a new urgent tip, and tips past their deadline (the SLA
//! clock). An alert says only that there is an urgent (or overdue) tip in a commune, with
//! a link to the console: never a tip's category beyond "urgent", text, place, id or
//! receipt, because mail crosses servers the police do not control.
//!
//! Delivery rules:
//! - Urgent: sent when the tip is stored, retried a few times on SMTP failure. If it never
//!   goes out (or the event was missed), the overdue alert is the backstop.
//! - Overdue: tips are marked alerted only after at least one officer accepted the mail,
//!   or when their queue has no officer with an email (nobody could ever be told; the
//!   console still shows the tip as late). On SMTP failure they stay unmarked and the next
//!   tick tries again, so an alert is late rather than lost.
//! - With several processes on one PostgreSQL, only the holder of an advisory lock runs
//!   the SLA clock. Each process alerts the urgent tips it stored itself.

use crate::channels::email::Mailer;
use crate::clock::now_ms;
use crate::config::Config;
use crate::geo::Geo;
use crate::intake::{Intake, NewTipEvent};
use crate::store::alerts::{OverdueTip, SLA_CLOCK_LOCK};
use crate::store::{Store, StoreResult};
use crate::tips::Priority;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Most overdue tips one tick handles; the rest wait for the next tick.
const OVERDUE_BATCH: i64 = 1000;
/// Waits between attempts at an urgent alert the SMTP server did not take.
const URGENT_RETRY: [u64; 4] = [10, 30, 60, 120];

/// Whose queue a tip sits in, which decides who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Queue {
    /// The commune's officers and chiefs.
    Commune(i64),
    /// The province's accounts (a tip that names no commune).
    Province(i64),
    /// Neither is known: nobody to tell.
    Nowhere,
}

impl Queue {
    /// The queue of a tip from its codes.
    pub fn of(province: Option<i64>, commune: Option<i64>) -> Queue {
        match (commune, province) {
            (Some(c), _) => Queue::Commune(c),
            (None, Some(p)) => Queue::Province(p),
            (None, None) => Queue::Nowhere,
        }
    }

    /// The name officers know the place by: the commune, or the province (for the
    /// subject), and with its province (for the body).
    fn names(self, geo: &Geo) -> (String, String) {
        match self {
            Queue::Commune(code) => match geo.commune(code) {
                Some(c) => {
                    let full = match geo.province(c.province_code) {
                        Some(p) => format!("{}, {}", c.name, p.name),
                        None => c.name.clone(),
                    };
                    (c.name.clone(), full)
                }
                None => {
                    let name = format!("xã/phường mã {code}");
                    (name.clone(), name)
                }
            },
            Queue::Province(code) => {
                let name = geo
                    .province(code)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| format!("tỉnh/thành phố mã {code}"));
                let full = format!("{name} (chưa rõ xã, phường)");
                (name, full)
            }
            Queue::Nowhere => ("nơi chưa rõ".into(), "nơi chưa rõ".into()),
        }
    }

    /// The addresses to alert for this queue.
    async fn recipients(self, store: &Store) -> StoreResult<Vec<String>> {
        match self {
            Queue::Commune(c) => store.commune_alert_emails(c).await,
            Queue::Province(p) => store.province_alert_emails(p).await,
            Queue::Nowhere => Ok(Vec::new()),
        }
    }
}

/// The console link for alerts.
fn console_link(public_url: &str) -> String {
    format!("{}/console", public_url.trim_end_matches('/'))
}

const FOOTER: &str = "Thư này không chứa nội dung tin báo: hãy đăng nhập bảng điều khiển để xem.\n\
                      Thư gửi tự động từ hệ thống tinbao, vui lòng không trả lời.\n";

/// Subject and body of the urgent alert. Only the place and the link: no tip content.
pub fn urgent_message(geo: &Geo, queue: Queue, public_url: &str) -> (String, String) {
    let (short, full) = queue.names(geo);
    let subject = format!("Có tin báo KHẨN tại {short}");
    let body = format!(
        "Có tin báo KHẨN tại {full}.\n\n\
         Mở hàng đợi tin báo để xử lý ngay:\n{}\n\n{FOOTER}",
        console_link(public_url)
    );
    (subject, body)
}

/// Subject and body of the overdue alert for `count` tips of one queue.
pub fn overdue_message(
    geo: &Geo,
    queue: Queue,
    count: usize,
    public_url: &str,
) -> (String, String) {
    let (short, full) = queue.names(geo);
    let subject = format!("{count} tin báo đã quá hạn xử lý tại {short}");
    let body = format!(
        "{count} tin báo đã quá hạn xử lý tại {full}.\n\n\
         Mở hàng đợi tin báo:\n{}\n\n{FOOTER}",
        console_link(public_url)
    );
    (subject, body)
}

/// Groups overdue tips by the queue that must hear of them.
pub fn group_by_queue(tips: Vec<OverdueTip>) -> BTreeMap<Queue, Vec<String>> {
    let mut groups: BTreeMap<Queue, Vec<String>> = BTreeMap::new();
    for t in tips {
        groups
            .entry(Queue::of(t.province_code, t.commune_code))
            .or_default()
            .push(t.id);
    }
    groups
}

/// Starts the alert jobs: urgent tips as `intake` stores them, and the SLA clock every
/// `config.sla_clock_seconds`. Both stop once the store is closed.
pub fn spawn(intake: &Intake, store: Store, mailer: Mailer, config: &Config) {
    let public_url = config.public_url.clone();
    let period = Duration::from_secs(config.sla_clock_seconds.max(1));
    tokio::spawn(urgent_listener(
        intake.clone(),
        store.clone(),
        mailer.clone(),
        public_url.clone(),
    ));
    tokio::spawn(sla_clock(intake.clone(), store, mailer, public_url, period));
}

async fn urgent_listener(intake: Intake, store: Store, mailer: Mailer, public_url: String) {
    let mut events = intake.subscribe();
    loop {
        match events.recv().await {
            Ok(event) if event.priority == Priority::Urgent => {
                if store.is_closed() {
                    return;
                }
                // Its own task: a slow SMTP server must not make the listener lag.
                tokio::spawn(alert_urgent(
                    intake.clone(),
                    store.clone(),
                    mailer.clone(),
                    public_url.clone(),
                    event,
                ));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                // The overdue alert will still cover any urgent tip among them.
                tracing::warn!(missed, "alerts fell behind the new-tip events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn alert_urgent(
    intake: Intake,
    store: Store,
    mailer: Mailer,
    public_url: String,
    event: NewTipEvent,
) {
    let queue = Queue::of(event.province_code, event.commune_code);
    let (subject, body) = urgent_message(intake.geo(), queue, &public_url);
    let mut waits = URGENT_RETRY.iter();
    loop {
        let outcome = match queue.recipients(&store).await {
            Ok(to) if to.is_empty() => {
                tracing::warn!(
                    ?queue,
                    "urgent tip, but no officer of its queue has an email"
                );
                return;
            }
            Ok(to) => mailer
                .send_alert(&to, &subject, &body)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("database error: {e}")),
        };
        match outcome {
            Ok(delivered) => {
                metrics::counter!("tinbao_alert_emails_total", "kind" => "urgent")
                    .increment(delivered as u64);
                tracing::info!(?queue, delivered, "urgent-tip alert sent");
                return;
            }
            Err(e) => match waits.next() {
                Some(secs) if !store.is_closed() => {
                    tracing::warn!(?queue, error = %e, retry_in_s = secs, "urgent-tip alert failed");
                    tokio::time::sleep(Duration::from_secs(*secs)).await;
                }
                _ => {
                    tracing::error!(?queue, error = %e,
                        "urgent-tip alert not sent; the overdue alert will follow at the deadline");
                    return;
                }
            },
        }
    }
}

async fn sla_clock(
    intake: Intake,
    store: Store,
    mailer: Mailer,
    public_url: String,
    period: Duration,
) {
    let mut lock = store.runner_lock(SLA_CLOCK_LOCK);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.is_closed() {
            return;
        }
        if !lock.is_runner().await {
            continue;
        }
        if let Err(e) = overdue_tick(intake.geo(), &store, &mailer, &public_url).await {
            tracing::warn!(error = %e, "the SLA clock could not read or mark overdue tips");
        }
    }
}

/// One pass of the SLA clock: one email per queue with overdue, unalerted tips.
async fn overdue_tick(
    geo: &Geo,
    store: &Store,
    mailer: &Mailer,
    public_url: &str,
) -> StoreResult<()> {
    let tips = store.overdue_unalerted(now_ms(), OVERDUE_BATCH).await?;
    for (queue, ids) in group_by_queue(tips) {
        let to = queue.recipients(store).await?;
        if to.is_empty() {
            // Nobody could ever be told; marking keeps the clock from rescanning them.
            tracing::warn!(
                ?queue,
                tips = ids.len(),
                "overdue tips, but nobody to alert"
            );
            store.mark_overdue_alerted(&ids, now_ms()).await?;
            continue;
        }
        let (subject, body) = overdue_message(geo, queue, ids.len(), public_url);
        match mailer.send_alert(&to, &subject, &body).await {
            Ok(delivered) => {
                metrics::counter!("tinbao_alert_emails_total", "kind" => "overdue")
                    .increment(delivered as u64);
                tracing::info!(?queue, tips = ids.len(), delivered, "overdue alert sent");
                store.mark_overdue_alerted(&ids, now_ms()).await?;
            }
            Err(e) => {
                // Left unmarked: the next tick tries again.
                tracing::warn!(?queue, error = %e, "overdue alert failed; will retry");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Commune, Province};

    fn geo() -> Geo {
        Geo::new(
            vec![Province {
                code: 1,
                name: "Thành phố Hà Nội".into(),
            }],
            vec![Commune {
                code: 70,
                province_code: 1,
                name: "Phường Hoàn Kiếm".into(),
            }],
        )
    }

    #[test]
    fn tips_group_by_commune_then_province() {
        let tip = |id: &str, p, c| OverdueTip {
            id: id.into(),
            province_code: p,
            commune_code: c,
        };
        let groups = group_by_queue(vec![
            tip("a", Some(1), Some(70)),
            tip("b", Some(1), None),
            tip("c", Some(1), Some(70)),
            tip("d", None, None),
        ]);
        assert_eq!(groups[&Queue::Commune(70)], vec!["a", "c"]);
        assert_eq!(groups[&Queue::Province(1)], vec!["b"]);
        assert_eq!(groups[&Queue::Nowhere], vec!["d"]);
    }

    #[test]
    fn messages_name_the_place_and_link_only() {
        let (subject, body) = urgent_message(&geo(), Queue::Commune(70), "https://x.vn/");
        assert_eq!(subject, "Có tin báo KHẨN tại Phường Hoàn Kiếm");
        assert!(body.contains("Phường Hoàn Kiếm, Thành phố Hà Nội"));
        assert!(body.contains("https://x.vn/console\n"));
        let (subject, _) = overdue_message(&geo(), Queue::Province(1), 3, "https://x.vn");
        assert_eq!(subject, "3 tin báo đã quá hạn xử lý tại Thành phố Hà Nội");
        let (subject, _) = urgent_message(&geo(), Queue::Commune(999), "https://x.vn");
        assert_eq!(subject, "Có tin báo KHẨN tại xã/phường mã 999");
    }
}
