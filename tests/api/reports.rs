//! The commune's monthly report (issue 13): a month seeded with known figures gives
//! exactly those figures on the page, in the CSV and in the workbook (read back with
//! calamine), on both engines; month edges in Vietnam time; the statistics role's scope
//! and "< 3"; bad input answered with a clear, localised message.

use crate::console_support::{element_text, login_as, Officer};
use crate::helpers::*;
use calamine::Reader;
use chrono::TimeZone;
use tinbao::accounts::Role;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Unix ms of a Vietnam-time moment.
fn vn(y: i32, m: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono::Utc
        .with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
        .timestamp_millis()
        - 7 * HOUR
}

/// One seeded tip: (created, category, channel, village, priority, due after, acted after,
/// status, outcome, reward).
type Seed = (
    i64,
    &'static str,
    &'static str,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    &'static str,
    Option<&'static str>,
    bool,
);

async fn seed(app: &TestApp, tips: &[Seed]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, s) in tips.iter().enumerate() {
        let receipt = app.api_tip(tip_json(&format!("tin số {i}"))).await;
        let before = app.raw_tip_ids().await;
        let id = before
            .iter()
            .find(|id| !out.iter().any(|(o, _): &(String, String)| o == *id))
            .unwrap()
            .clone();
        let (created, category, channel, village, priority, due, acted, status, outcome, reward) =
            *s;
        app.exec(&format!(
            "UPDATE tips SET created_at = {created}, category = '{category}', channel = '{channel}', \
             village_id = {}, priority = {priority}, due_at = {}, first_action_at = {}, status = '{status}', \
             outcome = {}, reward_eligible = {} WHERE id = '{id}'",
            village.map_or("NULL".into(), |v| v.to_string()),
            created + due,
            acted.map_or("NULL".into(), |a| (created + a).to_string()),
            outcome.map_or("NULL".into(), |o| format!("'{o}'")),
            if reward { "TRUE" } else { "FALSE" },
        ))
        .await;
        out.push((id, receipt));
    }
    out
}

async fn get(u: &Officer, app: &TestApp, path: &str) -> reqwest::Response {
    u.client.get(app.url(path)).send().await.unwrap()
}

/// A row of a report table on the page: the texts of its cells.
fn page_row(html: &str, table: &str, code: &str) -> Vec<String> {
    let start = html
        .find(&format!("id=\"table-{table}\""))
        .unwrap_or_else(|| panic!("table {table}"));
    let rest = &html[start..];
    let row = rest
        .find(&format!("data-code=\"{code}\""))
        .unwrap_or_else(|| panic!("row {table}/{code}"));
    let row = &rest[row..];
    let row = &row[..row.find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|c| {
            let c = &c[c.find('>').unwrap() + 1..];
            c[..c.find("</td>").unwrap()].to_owned()
        })
        .collect()
}

engine_test!(a_seeded_month_gives_exactly_its_figures_on_the_page_in_csv_and_in_xlsx);
async fn a_seeded_month_gives_exactly_its_figures_on_the_page_in_csv_and_in_xlsx(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let v1 = store.add_village(70, "Thôn Một").await.unwrap();
    let v2 = store.add_village(70, "Thôn Hai").await.unwrap();
    let seeded = seed(
        &app,
        &[
            // 00:01 on 1 November, Vietnam time: November's (17:01 on 31 October UTC).
            (
                vn(2026, 11, 1, 0, 1),
                "dealing",
                "web",
                Some(v1),
                2,
                24 * HOUR,
                Some(30 * MIN),
                "closed",
                Some("actioned"),
                true,
            ),
            // 23:59 on 30 November: November's, not yet due when it ends.
            (
                vn(2026, 11, 30, 23, 59),
                "hotspot",
                "hotline",
                Some(v1),
                1,
                4 * HOUR,
                None,
                "new",
                None,
                false,
            ),
            // Acted on late (2 h for a 1 h deadline).
            (
                vn(2026, 11, 15, 10, 0),
                "dealing",
                "telegram",
                None,
                0,
                HOUR,
                Some(2 * HOUR),
                "closed",
                Some("unfounded"),
                false,
            ),
            // Never acted on, overdue when the month ends.
            (
                vn(2026, 11, 20, 8, 0),
                "psychosis",
                "sms",
                Some(v2),
                0,
                HOUR,
                None,
                "triaged",
                None,
                false,
            ),
            // 23:59 on 31 October: the previous month's.
            (
                vn(2026, 10, 31, 23, 59),
                "users",
                "web",
                None,
                2,
                24 * HOUR,
                None,
                "new",
                None,
                false,
            ),
            // 00:01 on 1 December: not November's.
            (
                vn(2026, 12, 1, 0, 1),
                "dealing",
                "web",
                None,
                2,
                24 * HOUR,
                None,
                "new",
                None,
                false,
            ),
            // A year before.
            (
                vn(2025, 11, 10, 9, 0),
                "online",
                "zalo",
                None,
                2,
                24 * HOUR,
                None,
                "new",
                None,
                false,
            ),
        ],
    )
    .await;
    // A police message and a reply on the first tip, both in November.
    assert!(app
        .state
        .intake
        .police_message(&seeded[0].0, "Cảm ơn bạn.")
        .await
        .unwrap());
    let receipt = tinbao::crypto::Receipt::parse(&seeded[0].1).unwrap();
    assert!(app
        .state
        .intake
        .reply(&receipt, "Tôi bổ sung.", Vec::new())
        .await
        .unwrap());
    app.exec(&format!(
        "UPDATE tip_messages SET created_at = {}",
        vn(2026, 11, 5, 9, 0)
    ))
    .await;
    // The police message marked the tip acted on now; the seeded time stands.
    app.exec(&format!(
        "UPDATE tips SET first_action_at = {} WHERE id = '{}'",
        vn(2026, 11, 1, 0, 31),
        seeded[0].0
    ))
    .await;

    // A broadcast started in November with its kept results, and subscriptions gained
    // and ended in November.
    app.exec(&format!(
        "INSERT INTO broadcasts (id, commune_code, author_id, title, texts, transports, villages, status, \
         send_at, created_at, started_at) VALUES ('b1', 70, 'x', 'Tháng hành động', '{{}}', 'zalo,android', \
         '{v1},{v2}', 'done', {t}, {t}, {t})",
        t = vn(2026, 11, 3, 8, 0)
    ))
    .await;
    for (village, transport, status, n) in [
        (v1, "zalo", "delivered", 4),
        (v1, "zalo", "sent", 2),
        (v2, "android", "failed", 1),
        (v2, "android", "sent", 1),
    ] {
        app.exec(&format!(
            "INSERT INTO broadcast_results (broadcast_id, village_id, transport, status, count) \
             VALUES ('b1', {village}, '{transport}', '{status}', {n})"
        ))
        .await;
    }
    for phone in ["+84903000001", "+84903000002", "+84903000003"] {
        app.state
            .broadcasts
            .subscribe(tinbao::channels::Transport::ANDROID, phone, v1, "vi")
            .await
            .unwrap();
    }
    app.exec(&format!(
        "UPDATE subscribers SET created_at = {}",
        vn(2026, 11, 12, 9, 0)
    ))
    .await;
    let mut one = 0;
    for id in 1..100 {
        if store.subscriber(id).await.unwrap().is_some() {
            one = id;
            break;
        }
    }
    assert!(store.opt_out_subscriber(one).await.unwrap());
    app.exec(&format!(
        "UPDATE subscriber_losses SET day = {}",
        (vn(2026, 11, 20, 12, 0) + 7 * HOUR) / (24 * HOUR)
    ))
    .await;

    let chief = login_as(&app, Role::Chief, "truongcax", None, Some(70)).await;
    let res = get(&chief, &app, "/console/reports?month=2026-11").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let expect: &[(&str, &str, [&str; 3])] = &[
        ("summary", "tips", ["4", "1", "1"]),
        ("summary", "acted", ["2", "0", "0"]),
        ("summary", "acted_in_time", ["1", "0", "0"]),
        ("summary", "share_in_time", ["25.0", "0.0", "0.0"]),
        ("summary", "median_minutes", ["30", "", ""]),
        ("summary", "p90_minutes", ["120", "", ""]),
        // October's tip was due at 23:59 on 1 November: not overdue when October ended.
        ("summary", "overdue_at_end", ["1", "0", "1"]),
        ("summary", "confirmed", ["1", "0", "0"]),
        ("summary", "unfounded", ["1", "0", "0"]),
        ("summary", "still_open", ["2", "1", "1"]),
        ("summary", "rewards", ["1", "0", "0"]),
        ("summary", "hotline_calls", ["1", "0", "0"]),
        ("summary", "messages_police", ["1", "0", "0"]),
        ("summary", "messages_tipster", ["1", "0", "0"]),
        ("summary", "broadcasts", ["1", "0", "0"]),
        ("summary", "reached", ["7", "0", "0"]),
        ("summary", "delivered", ["4", "0", "0"]),
        ("summary", "failed", ["1", "0", "0"]),
        // Three joined, one of them stopped: two subscriptions of November remain.
        ("summary", "subscribers_gained", ["2", "0", "0"]),
        ("summary", "subscribers_lost", ["1", "0", "0"]),
        ("category", "dealing", ["2", "0", "0"]),
        ("category", "hotspot", ["1", "0", "0"]),
        ("category", "psychosis", ["1", "0", "0"]),
        ("category", "users", ["0", "1", "0"]),
        ("category", "online", ["0", "0", "1"]),
        ("channel", "hotline", ["1", "0", "0"]),
        ("channel", "web", ["1", "1", "0"]),
        ("priority", "urgent", ["2", "0", "0"]),
        ("priority", "normal", ["1", "1", "1"]),
    ];
    for (table, code, values) in expect {
        let row = page_row(&html, table, code);
        assert_eq!(&row[1..], values, "[{engine:?}] {table}/{code}: {row:?}");
    }
    assert_eq!(page_row(&html, "village", &v1.to_string())[1], "2");
    assert_eq!(page_row(&html, "village", &v2.to_string())[1], "1");
    for (code, n) in [
        (format!("{v1}:zalo:reached"), "6"),
        (format!("{v1}:zalo:delivered"), "4"),
        (format!("{v2}:android:reached"), "1"),
        (format!("{v1}:android:subscribers_gained"), "2"),
        (format!("{v1}:android:subscribers_lost"), "1"),
    ] {
        assert_eq!(
            page_row(&html, "campaign", &code)[1],
            n,
            "[{engine:?}] {code}"
        );
    }
    assert_eq!(page_row(&html, "day", "2026-11-01")[1], "1");
    assert_eq!(page_row(&html, "day", "2026-11-30")[1], "1");
    assert_eq!(page_row(&html, "day", "2026-11-02")[1], "0");
    assert!(html.contains("<svg id=\"per-day\""), "the chart, inline");
    assert!(!html.contains("tin số"), "no tip's words in a report");

    // The CSV carries the same numbers.
    let res = get(
        &chief,
        &app,
        "/console/reports/export?format=csv&month=2026-11",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("bao-cao-70-2026-11.csv"));
    let csv = res.text().await.unwrap();
    for (table, code, values) in expect {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("{table},{code},")))
            .unwrap_or_else(|| panic!("csv {table}/{code}"));
        let cells: Vec<&str> = line.rsplitn(4, ',').collect();
        assert_eq!(
            [cells[2], cells[1], cells[0]],
            *values,
            "[{engine:?}] csv {line}"
        );
    }

    // The workbook: one sheet per table, numbers as numbers, days as dates.
    let res = get(
        &chief,
        &app,
        "/console/reports/export?format=xlsx&month=2026-11",
    )
    .await;
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap().to_vec();
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let names = book.sheet_names();
    assert_eq!(
        names,
        [
            "Tổng hợp",
            "Theo loại tin",
            "Theo kênh",
            "Theo mức ưu tiên",
            "Theo thôn, tổ dân phố",
            "Tuyên truyền theo thôn, kênh",
            "Theo ngày"
        ]
    );
    let summary = book.worksheet_range("Tổng hợp").unwrap();
    let cell = |code: &str, col: u32| {
        let row = summary
            .rows()
            .position(|r| matches!(&r[0], calamine::Data::String(s) if s == code))
            .unwrap_or_else(|| panic!("xlsx {code}"));
        summary.get_value((row as u32, col)).cloned().unwrap()
    };
    assert_eq!(cell("tips", 2), calamine::Data::Float(4.0));
    assert_eq!(cell("tips", 3), calamine::Data::Float(1.0));
    assert_eq!(cell("share_in_time", 2), calamine::Data::Float(25.0));
    assert_eq!(cell("p90_minutes", 2), calamine::Data::Float(120.0));
    assert_eq!(cell("overdue_at_end", 2), calamine::Data::Float(1.0));
    let days = book.worksheet_range("Theo ngày").unwrap();
    let first = days.get_value((3, 0)).unwrap();
    assert!(
        matches!(first, calamine::Data::DateTime(_)),
        "a day is a date: {first:?}"
    );
    assert_eq!(days.get_value((3, 2)), Some(&calamine::Data::Float(1.0)));
    assert_eq!(days.height(), 3 + 30, "a row per day of November");

    // In English too.
    let html = get(&chief, &app, "/console/reports?month=2026-11&lang=en")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Tips received"));
    assert_eq!(page_row(&html, "summary", "tips")[1], "4");
    app.stop().await;
}

engine_test!(statistics_accounts_read_reports_of_their_scope_and_never_a_tip);
async fn statistics_accounts_read_reports_of_their_scope_and_never_a_tip(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let v1 = store.add_village(70, "Thôn Một").await.unwrap();
    let now = tinbao::clock::now_ms();
    let seeded = seed(
        &app,
        &[
            (
                now,
                "dealing",
                "web",
                Some(v1),
                2,
                HOUR,
                None,
                "new",
                None,
                false,
            ),
            (
                now,
                "dealing",
                "web",
                Some(v1),
                2,
                HOUR,
                None,
                "new",
                None,
                false,
            ),
        ],
    )
    .await;
    let tip = &seeded[0].0;
    let month = chrono::DateTime::from_timestamp_millis(now + 7 * HOUR)
        .unwrap()
        .format("%Y-%m")
        .to_string();
    // The commune chairman.
    let chairman = login_as(&app, Role::Statistics, "chutich", None, Some(70)).await;
    let home = get(&chairman, &app, "/console").await;
    assert_eq!(home.headers()["location"], "/console/reports");
    let res = get(&chairman, &app, &format!("/console/reports?month={month}")).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert_eq!(
        page_row(&html, "village", &v1.to_string())[1],
        "&#60; 3",
        "[{engine:?}] a village's two tips read < 3"
    );
    assert_eq!(
        page_row(&html, "summary", "tips")[1],
        "2",
        "totals stay exact"
    );
    let csv = get(
        &chairman,
        &app,
        &format!("/console/reports/export?format=csv&month={month}"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        csv.contains(&format!("village,{v1},Thôn Một,< 3,")),
        "{csv}"
    );
    // Another commune of the province: refused.
    let res = get(
        &chairman,
        &app,
        &format!("/console/reports?month={month}&commune=73"),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("không xem được báo cáo của xã, phường này"));
    // Never a tip, a photo, a message or the queue.
    for path in [
        format!("/console/tips/{tip}"),
        format!("/console/tips/{tip}/photos/x"),
        "/console/queue".to_owned(),
        "/console/hotline".to_owned(),
        "/console/broadcasts".to_owned(),
    ] {
        assert_eq!(get(&chairman, &app, &path).await.status(), 403, "{path}");
    }
    let res = chairman
        .client
        .post(app.url(&format!("/console/tips/{tip}/message")))
        .form(&[("csrf", chairman.csrf.as_str()), ("text", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The province's leadership: any commune of its province, none outside it.
    let leader = login_as(&app, Role::Statistics, "lanhdaotinh", Some(1), None).await;
    let res = get(
        &leader,
        &app,
        &format!("/console/reports?month={month}&commune=73"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = get(
        &leader,
        &app,
        &format!("/console/reports?month={month}&commune=70"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(page_row(&html, "summary", "tips")[1], "2");
    assert!(html.contains("<option value=\"73\">"), "a commune picker");
    let outside = tinbao::geo::shipped_units()
        .iter()
        .find(|c| c.province_code != 1)
        .unwrap()
        .commune_code;
    let res = get(
        &leader,
        &app,
        &format!("/console/reports?month={month}&commune={outside}"),
    )
    .await;
    assert_eq!(res.status(), 403);
    // The commune police see the exact small counts.
    let officer = login_as(&app, Role::Officer, "canbo", None, Some(70)).await;
    let html = get(&officer, &app, &format!("/console/reports?month={month}"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(page_row(&html, "village", &v1.to_string())[1], "2");
    app.stop().await;
}

engine_test!(bad_report_requests_get_a_clear_localised_message);
async fn bad_report_requests_get_a_clear_localised_message(engine: Engine) {
    let app = spawn_app(engine).await;
    let chief = login_as(&app, Role::Chief, "truongcax", None, Some(70)).await;
    let cases = [
        ("month=2026-13", "Tháng phải viết dạng NNNN-TT"),
        ("month=tháng 11", "Tháng phải viết dạng NNNN-TT"),
        ("from=2024-01-01&to=2026-06-30", "nhiều nhất hai năm"),
        (
            "from=2026-06-30&to=2026-06-01",
            "ngày kết thúc không trước ngày bắt đầu",
        ),
        ("from=2026-06-01", "Ngày phải viết dạng"),
    ];
    for (q, says) in cases {
        let res = get(&chief, &app, &format!("/console/reports?{q}")).await;
        assert_eq!(res.status(), 422, "{q}");
        let html = res.text().await.unwrap();
        assert!(
            element_text(&html, "report-error").is_some_and(|e| e.contains(says)),
            "[{engine:?}] {q}: {html}"
        );
        let res = get(
            &chief,
            &app,
            &format!("/console/reports/export?format=xlsx&{q}"),
        )
        .await;
        assert_eq!(res.status(), 422, "export {q}");
    }
    let admin = login_as(&app, Role::Admin, "quantri", None, None).await;
    let res = get(
        &admin,
        &app,
        "/console/reports?month=2026-11&commune=999999",
    )
    .await;
    assert_eq!(res.status(), 422);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Không có xã, phường với mã này"));
    let res = get(
        &admin,
        &app,
        "/console/reports?month=2026-11&lang=en&commune=x",
    )
    .await;
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("There is no commune with that code"));
    // The June action month as a range: it is a whole month, compared with May.
    let res = get(
        &chief,
        &app,
        "/console/reports?from=2026-06-01&to=2026-06-30",
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("(2026-05)"), "the previous month beside it");
    app.stop().await;
}

engine_test!(the_province_sees_a_row_per_commune_sorted_with_totals_and_exports);
async fn the_province_sees_a_row_per_commune_sorted_with_totals_and_exports(engine: Engine) {
    let app = spawn_app(engine).await;
    let created = vn(2026, 11, 10, 9, 0);
    let mut seeds: Vec<Seed> = Vec::new();
    for _ in 0..3 {
        seeds.push((
            created,
            "dealing",
            "web",
            None,
            2,
            HOUR,
            Some(MIN),
            "triaged",
            None,
            false,
        ));
    }
    seeds.push((
        created, "hotspot", "hotline", None, 2, HOUR, None, "new", None, false,
    ));
    let seeded = seed(&app, &seeds).await;
    // The last tip belongs to Phường Cửa Nam (73), the others to Hoàn Kiếm (70).
    app.exec(&format!(
        "UPDATE tips SET commune_code = 73 WHERE id = '{}'",
        seeded[3].0
    ))
    .await;
    let leader = login_as(&app, Role::Statistics, "lanhdao", Some(1), None).await;
    let res = get(
        &leader,
        &app,
        "/console/reports/province?month=2026-11&sort=tips",
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let row70 = page_row_of(&html, "province-table", "70");
    let row73 = page_row_of(&html, "province-table", "73");
    assert_eq!(row70[1], "3", "[{engine:?}] {row70:?}");
    assert_eq!(row70[2], "100.0", "all acted on in time");
    assert_eq!(row73[1], "1");
    assert_eq!(row73[4], "1", "overdue");
    assert!(
        html.find("data-code=\"70\"").unwrap() < html.find("data-code=\"73\"").unwrap(),
        "sorted by tips, most first"
    );
    let communes = html.matches("<tr data-code=").count() - 1;
    assert_eq!(
        communes,
        tinbao::geo::shipped_units()
            .iter()
            .filter(|u| u.province_code == 1)
            .count(),
        "every commune of the province has a row"
    );
    let total = html[html.find("data-code=\"total\"").unwrap()..].to_owned();
    assert!(total.contains("<th class=\"num\">4</th>"), "{total}");
    assert!(
        html.contains("href=\"/console/reports?commune=70&amp;"),
        "drill-down"
    );
    // The drill-down: the commune's report, with a village's small counts hidden.
    let res = get(&leader, &app, "/console/reports?commune=70&month=2026-11").await;
    assert_eq!(res.status(), 200);
    let csv = get(
        &leader,
        &app,
        "/console/reports/province/export?format=csv&month=2026-11",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("70,Phường Hoàn Kiếm,3,100.0,")),
        "{csv}"
    );
    assert!(csv.lines().any(|l| l.starts_with(",Tổng cộng,4,")));
    let bytes = get(
        &leader,
        &app,
        "/console/reports/province/export?format=xlsx&month=2026-11",
    )
    .await
    .bytes()
    .await
    .unwrap()
    .to_vec();
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let sheet = book.worksheet_range("Các xã, phường").unwrap();
    let row = sheet
        .rows()
        .find(|r| r[0] == calamine::Data::Float(70.0))
        .expect("Hoàn Kiếm's row");
    assert_eq!(row[2], calamine::Data::Float(3.0));
    // A commune's chairman does not see the province; an unknown month is refused.
    let chairman = login_as(&app, Role::Statistics, "chutich", None, Some(70)).await;
    let res = get(&chairman, &app, "/console/reports/province?month=2026-11").await;
    assert_eq!(res.status(), 403);
    let res = get(&leader, &app, "/console/reports/province?month=2026-13").await;
    assert_eq!(res.status(), 422);
    app.stop().await;
}

/// A row of a table on the page, by its `data-code`.
fn page_row_of(html: &str, table: &str, code: &str) -> Vec<String> {
    let start = html.find(&format!("id=\"{table}\"")).unwrap();
    let rest = &html[start..];
    let row = &rest[rest.find(&format!("data-code=\"{code}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|c| {
            let c = &c[c.find('>').unwrap() + 1..];
            let c = &c[..c.find("</td>").unwrap()];
            // A cell's link: its text.
            match (c.find('>'), c.rfind("</a>")) {
                (Some(i), Some(j)) if c.starts_with("<a") => c[i + 1..j].to_owned(),
                _ => c.to_owned(),
            }
        })
        .collect()
}

engine_test!(villages_are_assessed_against_the_three_criteria_and_the_share_meets_a_target);
async fn villages_are_assessed_against_the_three_criteria_and_the_share_meets_a_target(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let head = login_as(&app, Role::VillageHead, "truongthon", None, Some(70)).await;
    let v1 = store.add_village(70, "Thôn Một").await.unwrap();
    let v2 = store.add_village(70, "Thôn Hai").await.unwrap();
    let officer = login_as(&app, Role::Officer, "canbo", None, Some(70)).await;
    let post = |who: &Officer, path: String, fields: Vec<(&'static str, String)>| {
        let mut form = vec![("csrf", who.csrf.clone())];
        form.extend(fields);
        who.client.post(app.url(&path)).form(&form).send()
    };
    let met = |note: &str| {
        vec![
            ("assessed_on", "2026-11-28".to_owned()),
            ("no_users", "met".to_owned()),
            ("no_offences", "met".to_owned()),
            ("no_venues", "met".to_owned()),
            ("village_pledge", "1".to_owned()),
            ("households_pledged", "120".to_owned()),
            ("note", note.to_owned()),
        ]
    };
    let res = post(
        &officer,
        format!("/console/tracker/villages/{v1}"),
        met("Đã rà soát 3 hộ"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 303, "[{engine:?}]");
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, format!("/console/tracker/villages/{v1}?saved=1"));
    let html = get(&officer, &app, &to).await.text().await.unwrap();
    assert!(html.contains("Đã lưu đánh giá"));
    assert!(html.contains("Đã rà soát 3 hộ"), "the police read the note");
    assert!(html.contains("120 hộ ký cam kết"));
    // Bad input: refused with a clear message, what was typed kept, nothing stored.
    let mut bad = met("ghi chú giữ lại");
    bad[1].1 = "yes".into();
    let res = post(&officer, format!("/console/tracker/villages/{v2}"), bad)
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Mỗi tiêu chí phải chọn"));
    assert!(html.contains("ghi chú giữ lại"));
    let mut future = met("");
    future[0].1 = "2099-01-01".into();
    let res = post(&officer, format!("/console/tracker/villages/{v2}"), future)
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let mut partly = met("");
    partly[3].1 = "unknown".into();
    let res = post(&officer, format!("/console/tracker/villages/{v2}"), partly)
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // One of three villages drug-free, against the default target.
    let html = get(&officer, &app, "/console/tracker")
        .await
        .text()
        .await
        .unwrap();
    let summary = element_text(&html, "tracker-summary").unwrap();
    assert!(
        summary.contains("1/3") && summary.contains("(33%)") && summary.contains("mục tiêu 50%"),
        "[{engine:?}] {summary}"
    );
    // The chief sets the target: 150 % is refused, 60 % kept.
    let chief = login_as(&app, Role::Chief, "truongca", None, Some(70)).await;
    let res = post(
        &chief,
        "/console/tracker/target".into(),
        vec![("target", "150".into())],
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("từ 1 đến 100"));
    assert!(html.contains("value=\"150\""), "what was typed is kept");
    let res = post(
        &chief,
        "/console/tracker/target".into(),
        vec![("target", "60".into())],
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 303);
    let html = get(&chief, &app, "/console/tracker")
        .await
        .text()
        .await
        .unwrap();
    assert!(element_text(&html, "tracker-summary")
        .unwrap()
        .contains("mục tiêu 60%"));
    // Every assessment and the target are in the audit log.
    let audit = get(&chief, &app, "/console/audit")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(audit.matches("village.assess").count(), 2, "[{engine:?}]");
    assert!(audit.contains("commune.drugfree_target"));
    // The commune chairman reads, without the note, and cannot assess.
    let chairman = login_as(&app, Role::Statistics, "chutich", None, Some(70)).await;
    let html = get(&chairman, &app, &format!("/console/tracker/villages/{v1}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Không ma túy"));
    assert!(
        !html.contains("Đã rà soát"),
        "the sealed note is for the police"
    );
    let res = post(
        &chairman,
        format!("/console/tracker/villages/{v2}"),
        met(""),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    // A village head reads its own village only.
    let html = get(&head, &app, "/console/tracker")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("data-village=").count(), 1);
    assert_eq!(
        get(&head, &app, &format!("/console/tracker/villages/{v1}"))
            .await
            .status(),
        403
    );
    // The province's roll-up: a row per commune.
    let leader = login_as(&app, Role::Statistics, "lanhdao", Some(1), None).await;
    let html = get(&leader, &app, "/console/tracker")
        .await
        .text()
        .await
        .unwrap();
    let row = page_row_of(&html, "communes", "70");
    assert_eq!(
        &row[1..],
        ["3", "2", "1", "33", "60"],
        "[{engine:?}] {row:?}"
    );
    app.stop().await;
}

engine_test!(the_past_months_workbook_is_emailed_once_by_two_processes);
/// From 07:00 on the first of the month, the commune's chief and statistics accounts get
/// last month's workbook by email, read back from a real SMTP server on loopback; two
/// server processes on one database send it once. Officers get none.
async fn the_past_months_workbook_is_emailed_once_by_two_processes(engine: Engine) {
    use base64::Engine as _;
    let smtp = crate::alerts::SmtpSink::start().await;
    let app = spawn_app_with(engine, |c| {
        c.smtp.enabled = true;
        c.smtp.port = smtp.port;
        c.sla_clock_seconds = 1;
        c.reports.monthly_email = true;
    })
    .await;
    crate::console_support::create_account(&app, Role::Chief, "truongca", None, Some(70)).await;
    crate::console_support::create_account(&app, Role::Statistics, "chutich", None, Some(70)).await;
    crate::console_support::create_account(&app, Role::Officer, "canbo", None, Some(70)).await;
    let due = tinbao::reports::mail::due_month(tinbao::clock::now_ms());
    let created = due.from_ms() + 10 * HOUR;
    seed(
        &app,
        &[(
            created,
            "dealing",
            "web",
            None,
            2,
            HOUR,
            Some(MIN),
            "triaged",
            None,
            false,
        )],
    )
    .await;
    let second = app.second_instance().await;
    // (The seeded tip is long overdue: its officers' alert comes too, and is not counted.)
    let reports = |all: Vec<crate::alerts::Mail>| -> Vec<crate::alerts::Mail> {
        all.into_iter()
            .filter(|m| m.subject.starts_with("Báo cáo tháng"))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut mails = reports(smtp.messages());
    while mails.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        mails = reports(smtp.messages());
    }
    // Several passes of both processes later, still two.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let after = reports(smtp.messages()).len();
    assert_eq!(after, 2, "[{engine:?}] sent once, to two: {after}");
    let mut to: Vec<&str> = mails.iter().map(|m| m.rcpt.as_str()).collect();
    to.sort();
    assert_eq!(to, ["chutich@example.test", "truongca@example.test"]);
    for m in &mails {
        assert!(m.subject.contains(&due.label()), "{}", m.subject);
        assert!(m.body.contains("chỉ có số liệu"), "{}", m.body);
        let (name, data) = &m.files[0];
        assert_eq!(name, &format!("bao-cao-70-{}.xlsx", due.label()));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let mut book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        let summary = book.worksheet_range("Tổng hợp").unwrap();
        let tips = summary
            .rows()
            .find(|r| matches!(&r[0], calamine::Data::String(s) if s == "tips"))
            .unwrap()[2]
            .clone();
        assert_eq!(tips, calamine::Data::Float(1.0), "[{engine:?}]");
    }
    second.stop_keep_db().await;
    app.stop().await;
}
