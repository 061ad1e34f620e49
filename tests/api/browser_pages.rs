//! Every page people use, in Chromium at 360 and 1280 px with script on and off (issue 12):
//! nothing wider than the screen, every tap target at least 44 px tall (measured in the
//! page), and every form that creates something (a tip, a reply, a subscription, a hotline
//! call, a broadcast) answered by a GET page, so that a reload or Back makes no second
//! record and shows no second receipt. Screenshots are kept in tests/artifacts.

use crate::browser::{available, Browser};
use crate::browser_flow::{small_targets, submit, text_of, type_id};
use crate::console_support::{login_as, session_token};
use crate::helpers::*;
use fantoccini::{Client, Locator};
use sqlx::Connection;
use tinbao::accounts::Role;

/// Rows in `table` (the browser tests run on SQLite).
async fn rows(app: &TestApp, table: &str) -> i64 {
    let mut c = sqlx::SqliteConnection::connect(&app.config.database_url())
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// Checks the page on screen: it is no wider than the window (a wide table scrolls in
/// its own box), every tap target is big enough, and keeps a screenshot.
async fn check_page(b: &Browser, name: &str) {
    let c = &b.client;
    b.screenshot(name).await.unwrap();
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(fits, serde_json::json!(true), "{name} ({url}) is too wide");
    assert_eq!(
        small_targets(c).await,
        serde_json::json!([]),
        "{name} ({url}): tap targets under 44 px"
    );
}

/// After a form that created something: a reload and Back land on GET pages, with no
/// second record (`count` before and after) and no receipt shown again.
async fn reload_and_back(c: &Client, what: &str, count: impl AsyncFn() -> i64) {
    let filed = count().await;
    c.refresh().await.unwrap();
    assert!(
        c.find(Locator::Id("receipt")).await.is_err(),
        "{what}: the receipt is not shown again after a reload"
    );
    c.back().await.unwrap();
    // Back lands on the form's GET page, never on a POST to send again.
    let page = c.source().await.unwrap();
    assert!(
        !page.contains("ERR_CACHE_MISS"),
        "{what}: Back asks to resend a form"
    );
    c.forward().await.unwrap();
    c.refresh().await.unwrap();
    assert_eq!(
        count().await,
        filed,
        "{what}: one record after reload and Back"
    );
}

/// A console session's cookie as the server sets it, for the loopback test server.
fn console_cookie(token: String) -> fantoccini::cookies::Cookie<'static> {
    fantoccini::cookies::Cookie::parse(format!(
        "tinbao_console={token}; Path=/console; Domain=127.0.0.1; HttpOnly; SameSite=Strict"
    ))
    .unwrap()
}

#[tokio::test]
async fn every_page_fits_and_every_form_files_once_at_360_and_1280_with_and_without_script() {
    if available().is_none() {
        return;
    }
    let app = spawn_app_with(Engine::Sqlite, |c| {
        c.smtp.enabled = true;
        c.smtp.port = free_port();
    })
    .await;
    let store = app.state.intake.store().clone();
    // Accounts past their first login (new password, TOTP); each browser gets a session.
    let officer = login_as(&app, Role::Officer, "canbo", None, Some(70))
        .await
        .id;
    let head = login_as(&app, Role::VillageHead, "truongthon", None, Some(70))
        .await
        .id;
    let admin = login_as(&app, Role::Admin, "quantri", None, None).await.id;
    let village = store
        .account(&head)
        .await
        .unwrap()
        .unwrap()
        .village_id
        .unwrap();
    app.state
        .broadcasts
        .subscribe(
            tinbao::channels::Transport::ANDROID,
            "+84903000001",
            village,
            "vi",
        )
        .await
        .unwrap();

    // A tip of the officer's commune, with a conversation, for the tip page.
    let receipt = app.api_tip(tip_json("Có người bán ma túy ở chợ")).await;
    let tip = app.raw_tip_ids().await[0].clone();
    app.state
        .intake
        .police_message(&tip, "Cảm ơn bạn, chúng tôi đang xác minh.")
        .await
        .unwrap();
    let _ = receipt;
    let tips_before = rows(&app, "tips").await;

    for (width, height, js) in [
        (360, 640, false),
        (360, 640, true),
        (1280, 800, false),
        (1280, 800, true),
    ] {
        let tag = format!("{width}-{}", if js { "js" } else { "nojs" });
        let b = Browser::start(width, height, js)
            .await
            .expect("chromium starts");
        let c = &b.client;

        // A resident: the form, the receipt, reload and Back.
        c.goto(&app.url("/")).await.unwrap();
        check_page(&b, &format!("pages-form-{tag}")).await;
        c.find(Locator::Css("input[name=category][value=dealing]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        type_id(c, "f-description", &format!("Có người bán ma túy ({tag})")).await;
        submit(c, "#submit").await;
        let receipt = text_of(c, "receipt").await;
        assert_eq!(receipt.trim().len(), 19, "{tag}: receipt {receipt}");
        check_page(&b, &format!("pages-receipt-{tag}")).await;
        // "I have written it down" (with script, leaving before it asks to stay).
        c.find(Locator::Id("receipt-kept"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        reload_and_back(c, &format!("tip {tag}"), async || rows(&app, "tips").await).await;

        // The status page, and a reply from it.
        c.goto(&app.url("/status")).await.unwrap();
        check_page(&b, &format!("pages-status-form-{tag}")).await;
        type_id(c, "f-receipt", receipt.trim()).await;
        submit(c, "#status-form button").await;
        c.wait()
            .for_element(Locator::Id("tip-status"))
            .await
            .unwrap();
        check_page(&b, &format!("pages-status-{tag}")).await;
        type_id(c, "f-message", "Tôi bổ sung: họ bán vào buổi tối.").await;
        submit(c, "#reply-form button").await;
        c.wait()
            .for_element(Locator::Id("reply-notice"))
            .await
            .unwrap();
        reload_and_back(c, &format!("reply {tag}"), async || {
            rows(&app, "tip_messages").await
        })
        .await;

        // The village's subscription page and its email form.
        c.goto(&app.url(&format!("/subscribe/{village}")))
            .await
            .unwrap();
        check_page(&b, &format!("pages-subscribe-{tag}")).await;
        type_id(c, "f-email", &format!("dan.{width}.{js}@example.test")).await;
        submit(c, "#subscribe-form button").await;
        c.wait()
            .for_element(Locator::Id("subscribe-notice"))
            .await
            .unwrap();
        reload_and_back(c, &format!("subscription {tag}"), async || {
            rows(&app, "subscribers").await
        })
        .await;

        // The officer: queue, tip, hotline call (reload and Back).
        c.goto(&app.url("/console/login")).await.unwrap();
        let (token, _) = session_token(&app, &officer).await;
        c.add_cookie(console_cookie(token)).await.unwrap();
        c.goto(&app.url("/console")).await.unwrap();
        c.wait().for_element(Locator::Id("queue")).await.unwrap();
        check_page(&b, &format!("pages-queue-{tag}")).await;
        c.goto(&app.url(&format!("/console/tips/{tip}")))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Id("tip-description"))
            .await
            .unwrap();
        check_page(&b, &format!("pages-tip-{tag}")).await;
        c.goto(&app.url("/console/hotline")).await.unwrap();
        check_page(&b, &format!("pages-hotline-{tag}")).await;
        c.find(Locator::Css("#f-cat option[value=dealing]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        type_id(c, "f-desc", "Người gọi báo có mua bán ở bến xe.").await;
        submit(c, "#hotline-form button[type=submit]").await;
        c.wait().for_element(Locator::Id("receipt")).await.unwrap();
        check_page(&b, &format!("pages-hotline-done-{tag}")).await;
        reload_and_back(c, &format!("hotline {tag}"), async || {
            rows(&app, "tips").await
        })
        .await;
        c.goto(&app.url("/console/password")).await.unwrap();
        check_page(&b, &format!("pages-password-{tag}")).await;

        // The village head: broadcasts, compose, preview, send (reload and Back).
        c.delete_all_cookies().await.unwrap();
        let (token, _) = session_token(&app, &head).await;
        c.add_cookie(console_cookie(token)).await.unwrap();
        c.goto(&app.url("/console/broadcasts")).await.unwrap();
        check_page(&b, &format!("pages-broadcasts-{tag}")).await;
        c.goto(&app.url("/console/broadcasts/new")).await.unwrap();
        check_page(&b, &format!("pages-compose-{tag}")).await;
        type_id(c, "f-title", &format!("Họp thôn {tag}")).await;
        type_id(
            c,
            "f-text-vi",
            "Mời bà con họp thôn lúc 19h tại nhà văn hóa.",
        )
        .await;
        submit(c, "#preview-button").await;
        c.wait()
            .for_element(Locator::Id("preview-total"))
            .await
            .unwrap();
        check_page(&b, &format!("pages-preview-{tag}")).await;
        submit(c, "#send-button").await;
        c.wait().for_element(Locator::Id("waiting")).await.unwrap();
        check_page(&b, &format!("pages-broadcast-{tag}")).await;
        reload_and_back(c, &format!("broadcast {tag}"), async || {
            rows(&app, "broadcasts").await
        })
        .await;
        c.goto(&app.url(&format!("/console/villages/{village}/poster")))
            .await
            .unwrap();
        check_page(&b, &format!("pages-poster-{tag}")).await;

        // The administrator: accounts and the audit log.
        c.delete_all_cookies().await.unwrap();
        let (token, _) = session_token(&app, &admin).await;
        c.add_cookie(console_cookie(token)).await.unwrap();
        c.goto(&app.url("/console/accounts")).await.unwrap();
        c.wait().for_element(Locator::Id("accounts")).await.unwrap();
        check_page(&b, &format!("pages-accounts-{tag}")).await;
        c.goto(&app.url("/console/audit")).await.unwrap();
        c.wait().for_element(Locator::Id("audit")).await.unwrap();
        check_page(&b, &format!("pages-audit-{tag}")).await;
        b.close().await.unwrap();
    }
    // Four of each: one per size and script setting, none twice.
    assert_eq!(
        rows(&app, "tips").await,
        tips_before + 8,
        "four tips and four calls"
    );
    assert_eq!(rows(&app, "broadcasts").await, 4);
    app.stop().await;
}

/// The monthly report on a phone (nothing wider than the screen but a table scrolling in
/// its own box, tap targets at least 44 px) and printed on A4: headless Chromium's PDF of
/// it is kept in tests/artifacts/, with screenshots.
#[tokio::test]
async fn the_monthly_report_reads_on_a_phone_and_prints_on_a4() {
    if available().is_none() {
        return;
    }
    let app = spawn_app(Engine::Sqlite).await;
    for i in 0..5 {
        app.api_tip(tip_json(&format!("tin {i}"))).await;
    }
    let chief = login_as(&app, Role::Chief, "truongca", None, Some(70)).await;
    let leader = login_as(&app, Role::Statistics, "lanhdao", Some(1), None).await;
    for name in ["Thôn Một", "Tổ dân phố số 12 có tên rất dài"] {
        app.state
            .intake
            .store()
            .add_village(70, name)
            .await
            .unwrap();
    }
    let month = chrono::DateTime::from_timestamp_millis(tinbao::clock::now_ms() + 7 * 3_600_000)
        .unwrap()
        .format("%Y-%m")
        .to_string();
    for (width, height, js) in [(360, 640, false), (1280, 800, true)] {
        let b = Browser::start(width, height, js)
            .await
            .expect("chromium starts");
        let c = &b.client;
        c.goto(&app.url("/console/login")).await.unwrap();
        let (token, _) = session_token(&app, &chief.id).await;
        c.add_cookie(console_cookie(token)).await.unwrap();
        c.goto(&app.url(&format!("/console/reports?month={month}")))
            .await
            .unwrap();
        let tips = c
            .wait()
            .for_element(Locator::Css("#table-summary tr[data-code=tips] td.num"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(tips, "5");
        check_page(&b, &format!("report-{width}")).await;
        let pdf = c
            .print(fantoccini::wd::PrintConfiguration::default())
            .await
            .unwrap();
        assert!(pdf.starts_with(b"%PDF"), "a PDF");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/artifacts")
            .join(format!("report-{width}.pdf"));
        std::fs::write(&path, &pdf).unwrap();
        // The tracker and its assessment form, then the province's pages.
        c.goto(&app.url("/console/tracker")).await.unwrap();
        c.wait().for_element(Locator::Id("villages")).await.unwrap();
        check_page(&b, &format!("tracker-{width}")).await;
        let first = c
            .find(Locator::Css("#villages td a"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        c.goto(&app.url(&first)).await.unwrap();
        c.wait()
            .for_element(Locator::Id("assess-form"))
            .await
            .unwrap();
        check_page(&b, &format!("tracker-village-{width}")).await;
        // The retention page: the chief's periods per category, what is coming, the holds.
        c.goto(&app.url("/console/retention")).await.unwrap();
        c.wait()
            .for_element(Locator::Id("retention-form"))
            .await
            .unwrap();
        check_page(&b, &format!("retention-{width}")).await;
        c.delete_all_cookies().await.unwrap();
        let (token, _) = session_token(&app, &leader.id).await;
        c.add_cookie(console_cookie(token)).await.unwrap();
        c.goto(&app.url(&format!("/console/reports/province?month={month}")))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Id("province-table"))
            .await
            .unwrap();
        check_page(&b, &format!("report-province-{width}")).await;
        c.goto(&app.url("/console/tracker")).await.unwrap();
        c.wait().for_element(Locator::Id("communes")).await.unwrap();
        check_page(&b, &format!("tracker-province-{width}")).await;
        b.close().await.unwrap();
    }
    app.stop().await;
}
