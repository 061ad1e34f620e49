//! A resident on a small phone with JavaScript off: fill the form, read the receipt, check
//! the tip with it. Screenshots are kept in tests/artifacts.

use crate::browser::{available, Browser};
use crate::helpers::*;
use fantoccini::Locator;

#[tokio::test]
async fn a_resident_reports_and_checks_a_tip_at_360px_without_javascript() {
    if available().is_none() {
        return;
    }
    let app = spawn_app(Engine::Sqlite).await;
    let b = Browser::start(360, 640, false)
        .await
        .expect("chromium starts");
    let c = &b.client;
    c.goto(&app.url("/")).await.unwrap();
    b.screenshot("form-360-nojs").await.unwrap();
    // The 113 line is the first thing on the page, whole on the screen, and its call
    // button is a thumb's size.
    for id in ["call-113", "urgent-113"] {
        let el = c.find(Locator::Id(id)).await.unwrap();
        assert!(el.is_displayed().await.unwrap(), "{id} shown");
        let (x, _, w, _) = el.rectangle().await.unwrap();
        assert!(x >= 0.0 && x + w <= 360.0, "{id} fits 360 px: {x} + {w}");
    }
    // Every tap target on the form is at least 44 px tall, measured in the page.
    assert_eq!(small_targets(c).await, serde_json::json!([]), "on the form");
    let call = c.find(Locator::Css("#call-113 a.call")).await.unwrap();
    let (_, y, _, h) = call.rectangle().await.unwrap();
    assert!(h >= 44.0, "the call button is {h} px tall");
    assert!(y < 640.0, "visible without scrolling: {y}");
    c.wait()
        .for_element(Locator::Css("input[name=category][value=hotspot]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#f-province option[value='1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("textarea[name=description]"))
        .await
        .unwrap()
        .send_keys("Có tụ điểm sử dụng ma túy sau chợ, tối nào cũng đông người.")
        .await
        .unwrap();
    // A photo chosen before the province: kept across the province button's reload.
    let photo = app.dir.path().join("anh-cho.jpg");
    std::fs::write(&photo, jpeg_with_gps(64, 48)).unwrap();
    c.find(Locator::Id("f-photos"))
        .await
        .unwrap()
        .send_keys(photo.to_str().unwrap())
        .await
        .unwrap();
    // Without script the province button lists the communes, keeping what was typed.
    submit(c, "#pick-province").await;
    c.wait()
        .for_element(Locator::Id("photos-held"))
        .await
        .expect("the photo is held, not to be chosen again");
    // The picker's answer is a GET page (post/redirect/get): a reload shows the same
    // draft and sends nothing again.
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").starts_with("draft="), "{url}");
    c.refresh().await.unwrap();
    c.wait()
        .for_element(Locator::Id("photos-held"))
        .await
        .expect("still held after a reload");
    let kept = c
        .wait()
        .for_element(Locator::Css("textarea[name=description]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        kept.as_deref(),
        Some("Có tụ điểm sử dụng ma túy sau chợ, tối nào cũng đông người.")
    );
    c.wait()
        .for_element(Locator::Css("#f-commune option[value='70']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=village]"))
        .await
        .unwrap()
        .send_keys("Tổ 9")
        .await
        .unwrap();
    b.screenshot("form-360-filled").await.unwrap();
    submit(c, "#submit").await;

    let receipt = c
        .wait()
        .for_element(Locator::Id("receipt"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(receipt.trim().len(), 19, "receipt {receipt}");
    b.screenshot("receipt-360").await.unwrap();
    assert_eq!(
        small_targets(c).await,
        serde_json::json!([]),
        "on the receipt"
    );
    // A reload: one tip, and the receipt is not shown again.
    c.refresh().await.unwrap();
    c.wait()
        .for_element(Locator::Id("receipt-shown"))
        .await
        .unwrap();
    assert!(!c.source().await.unwrap().contains(receipt.trim()));
    b.screenshot("receipt-reloaded-360").await.unwrap();
    assert_eq!(app.raw_tip_ids().await.len(), 1, "one tip");

    c.goto(&app.url("/status")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=receipt]"))
        .await
        .unwrap()
        .send_keys(receipt.trim())
        .await
        .unwrap();
    submit(c, "#status-form button").await;
    let Ok(found) = c.wait().for_element(Locator::Id("tip-status")).await else {
        panic!("no status: {}", c.source().await.unwrap());
    };
    let status = found.text().await.unwrap();
    assert_eq!(status, "Đã tiếp nhận");
    b.screenshot("status-360").await.unwrap();
    assert_eq!(
        small_targets(c).await,
        serde_json::json!([]),
        "on the status page"
    );

    // The police answer; the resident reads it and replies, still without script.
    let ids = app.raw_tip_ids().await;
    app.state
        .intake
        .police_message(&ids[0], "Cảm ơn bạn, chúng tôi đang xác minh.")
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#reply-form textarea"))
        .await
        .unwrap()
        .send_keys("Thêm: có xe máy biển 29")
        .await
        .unwrap();
    submit(c, "#reply-form button").await;
    // The click returns before the answer page has loaded: wait for it.
    let mut page = String::new();
    for _ in 0..100 {
        page = c.source().await.unwrap();
        if page.contains("Thêm: có xe máy biển 29") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("chúng tôi đang xác minh"), "{page}");
    assert!(page.contains("Thêm: có xe máy biển 29"), "{page}");
    b.screenshot("reply-360").await.unwrap();
    // A reload after the reply sends nothing again: it asks for the receipt.
    c.refresh().await.unwrap();
    c.wait()
        .for_element(Locator::Css("#status-form input[name=receipt]"))
        .await
        .unwrap();
    let store = app.state.intake.store();
    assert_eq!(store.messages(&ids[0]).await.unwrap().len(), 2, "one reply");
    b.close().await.unwrap();
    let opened = app.state.intake.open_tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!(opened.row.category, "hotspot");
    let photos = app.state.intake.store().attachments(&ids[0]).await.unwrap();
    assert!(
        photos.iter().any(|p| p.message_id.is_none()),
        "the photo held across the reload was filed with the tip"
    );
    assert_eq!(opened.row.commune_code, Some(70));
    app.stop().await;
}

#[tokio::test]
async fn with_javascript_the_commune_list_follows_the_province_and_search_ignores_accents() {
    if available().is_none() {
        return;
    }
    let app = spawn_app(Engine::Sqlite).await;
    app.state
        .store
        .add_village(70, "Tổ dân phố số 3")
        .await
        .unwrap();
    let b = Browser::start(1280, 800, true)
        .await
        .expect("chromium starts");
    let c = &b.client;
    c.goto(&app.url("/")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#f-province option[value='1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The script fetches the communes; wait until they arrive.
    let mut n = 0;
    for _ in 0..50 {
        n = c
            .find_all(Locator::Css("#f-commune option"))
            .await
            .unwrap()
            .len();
        if n > 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(n > 100, "Hà Nội's communes are listed ({n})");
    let search = c
        .wait()
        .for_element(Locator::Css("input[type=search]"))
        .await
        .unwrap();
    search.send_keys("hoan kiem").await.unwrap();
    let options = c.find_all(Locator::Css("#f-commune option")).await.unwrap();
    let mut labels = Vec::new();
    for o in &options[1..] {
        labels.push(o.text().await.unwrap());
    }
    assert_eq!(labels, ["Phường Hoàn Kiếm"]);
    // The only match is chosen, and its villages come as suggestions at once.
    let mut suggested = Vec::new();
    for _ in 0..50 {
        suggested = c.find_all(Locator::Css("#villages option")).await.unwrap();
        if !suggested.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(suggested.len(), 1, "the commune's village is suggested");
    assert_eq!(
        suggested[0].attr("value").await.unwrap().as_deref(),
        Some("Tổ dân phố số 3")
    );
    b.screenshot("form-1280-js").await.unwrap();
    // Sending without a description is caught before anything is uploaded.
    c.find(Locator::Css("input[name=category][value=dealing]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let missing = c
        .wait()
        .for_element(Locator::Id("desc-missing"))
        .await
        .unwrap();
    assert_eq!(missing.text().await.unwrap(), "Hãy viết nội dung tin báo.");
    assert!(app.raw_tip_ids().await.is_empty(), "nothing was sent");
    b.screenshot("form-1280-js-missing").await.unwrap();
    // Written, it files; the receipt card's buttons appear with script.
    c.find(Locator::Id("f-description"))
        .await
        .unwrap()
        .send_keys("Có người bán ma túy ở phố Hàng Bạc mỗi tối")
        .await
        .unwrap();
    c.find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let actions = c
        .wait()
        .for_element(Locator::Id("receipt-actions"))
        .await
        .unwrap();
    for _ in 0..50 {
        if actions.is_displayed().await.unwrap() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        actions.is_displayed().await.unwrap(),
        "copy, save, print shown"
    );
    for id in ["copy-receipt", "save-receipt", "print-receipt"] {
        let (_, _, _, h) = c
            .find(Locator::Id(id))
            .await
            .unwrap()
            .rectangle()
            .await
            .unwrap();
        assert!(h >= 44.0, "{id} is {h} px tall");
    }
    c.find(Locator::Id("receipt-kept"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.screenshot("receipt-1280-js").await.unwrap();
    assert_eq!(app.raw_tip_ids().await.len(), 1);
    b.close().await.unwrap();
    app.stop().await;
}

/// Logs into the console in the browser: password, then the TOTP code.
async fn console_login(c: &fantoccini::Client, base: &str, username: &str, password: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=username]"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    submit(c, "#login-form button").await;
}

#[tokio::test]
async fn an_officer_logs_in_with_totp_triages_and_replies_and_the_tipster_reads_it() {
    use crate::console_support::{create_account, next_totp_code};
    use tinbao::accounts::Role;
    if available().is_none() {
        return;
    }
    let app = spawn_app(Engine::Sqlite).await;
    let receipt = app
        .api_tip(tip_json("Có người bán ma túy trước cổng chợ Đồng Xuân"))
        .await;
    let (_, one_time) = create_account(&app, Role::Officer, "canbo", None, Some(70)).await;

    let b = Browser::start(1280, 800, true)
        .await
        .expect("chromium starts");
    let c = &b.client;
    console_login(c, &app.base, "canbo", &one_time).await;
    // First login: a new password, then TOTP enrolment with a QR code and a text secret.
    c.wait()
        .for_element(Locator::Css("#password-form input[name=password]"))
        .await
        .unwrap()
        .send_keys("mật khẩu mới rất dài")
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#password-form input[name=password_again]"))
        .await
        .unwrap()
        .send_keys("mật khẩu mới rất dài")
        .await
        .unwrap();
    submit(c, "#password-form button").await;
    let secret_text = c
        .wait()
        .for_element(Locator::Id("totp-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    b.screenshot("console-totp-1280").await.unwrap();
    let secret = totp_rs::Secret::Encoded(secret_text.replace(' ', ""))
        .to_bytes()
        .unwrap();
    let code = crate::console_support::totp_code(&secret);
    c.wait()
        .for_element(Locator::Css("#totp-form input[name=code]"))
        .await
        .unwrap()
        .send_keys(&code)
        .await
        .unwrap();
    submit(c, "#totp-form button").await;

    // The queue, then the tip.
    c.wait().for_element(Locator::Id("queue")).await.unwrap();
    // A new tip appears in the open queue without a reload (server-sent events).
    let before = c.find_all(Locator::Css("#queue li")).await.unwrap().len();
    let mut urgent = tip_json("Người ngáo đá đang la hét ở chợ");
    urgent["category"] = "psychosis".into();
    urgent["happening_now"] = true.into();
    app.api_tip(urgent).await;
    let mut after = before;
    for _ in 0..50 {
        after = c.find_all(Locator::Css("#queue li")).await.unwrap().len();
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(after, before + 1, "the new tip appeared live");
    b.screenshot("console-queue-1280").await.unwrap();
    // The urgent tip is first now; open the market tip, the older one.
    c.wait()
        .for_element(Locator::Css("#queue li:last-child a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let description = c
        .wait()
        .for_element(Locator::Id("tip-description"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(description, "Có người bán ma túy trước cổng chợ Đồng Xuân");
    c.wait()
        .for_element(Locator::Css("#f-status option[value=in_progress]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(c, "#status-form button").await;
    c.wait()
        .for_element(Locator::Css("#message-form textarea"))
        .await
        .unwrap()
        .send_keys("Cảm ơn bạn. Công an phường đang xác minh.")
        .await
        .unwrap();
    submit(c, "#message-form button").await;
    let status = c
        .wait()
        .for_element(Locator::Id("tip-status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "Đang xử lý");
    b.screenshot("console-tip-1280").await.unwrap();
    b.close().await.unwrap();

    // The same officer on a phone: a second login needs a fresh TOTP code.
    let phone = Browser::start(360, 640, false)
        .await
        .expect("chromium starts");
    let c = &phone.client;
    console_login(c, &app.base, "canbo", "mật khẩu mới rất dài").await;
    c.wait()
        .for_element(Locator::Css("#totp-form input[name=code]"))
        .await
        .unwrap()
        .send_keys(&next_totp_code(&secret))
        .await
        .unwrap();
    submit(c, "#totp-form button").await;
    c.wait().for_element(Locator::Id("queue")).await.unwrap();
    phone.screenshot("console-queue-360").await.unwrap();
    assert_eq!(
        small_targets(c).await,
        serde_json::json!([]),
        "on the queue"
    );
    // On a phone the filters are folded away: the first tip shows on the first screen.
    let first = c.find(Locator::Css("#queue li")).await.unwrap();
    let (_, y, _, _) = first.rectangle().await.unwrap();
    assert!(
        y < 640.0,
        "the first tip is on the first screen (top at {y} px)"
    );
    c.wait()
        .for_element(Locator::Css("#queue a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("tip-description"))
        .await
        .unwrap();
    phone.screenshot("console-tip-360").await.unwrap();

    // The tipster reads the reply with the receipt.
    c.goto(&app.url("/status")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=receipt]"))
        .await
        .unwrap()
        .send_keys(&receipt)
        .await
        .unwrap();
    submit(c, "#status-form button").await;
    let status = c
        .wait()
        .for_element(Locator::Id("tip-status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "Đang xác minh");
    let page = c.source().await.unwrap();
    assert!(page.contains("Công an phường đang xác minh."));
    phone.screenshot("tipster-reads-reply-360").await.unwrap();

    // The officer transfers the tip with the picker, no script: province, "Chọn", then
    // the commune by name; a refusal first keeps the reason typed.
    let tip_id = app.raw_tip_ids().await[0].clone();
    c.goto(&app.url(&format!("/console/tips/{tip_id}")))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("f-tr"))
        .await
        .unwrap()
        .send_keys("Địa chỉ thuộc phường Cửa Nam")
        .await
        .unwrap();
    submit(c, "#transfer-submit").await;
    let kept = c
        .wait()
        .for_element(Locator::Id("f-tr"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Địa chỉ thuộc phường Cửa Nam"));
    c.find(Locator::Css("#f-tp option[value='1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(c, "#transfer-pick").await;
    // A GET page (post/redirect/get): Back and reload never post the form again.
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("tp=1"), "{url}");
    c.refresh().await.unwrap();
    c.wait()
        .for_element(Locator::Css("#f-tc option[value='73']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    phone.screenshot("console-transfer-360").await.unwrap();
    submit(c, "#transfer-submit").await;
    let moved = app.state.store.tip(&tip_id).await.unwrap().unwrap();
    assert_eq!(moved.commune_code, Some(73), "moved to Cửa Nam");
    phone.close().await.unwrap();
    app.stop().await;
}

/// The page's visible tap targets (links, buttons, choices, fields, foldouts) under 44 px
/// tall, named with their height; the honeypot is not one.
pub(crate) async fn small_targets(c: &fantoccini::Client) -> serde_json::Value {
    c.execute(
        "return Array.from(document.querySelectorAll('a, button, label.choice, select, \
         input:not([type=hidden]):not([type=radio]):not([type=checkbox]), summary'))\
         .filter(e => e.offsetParent !== null && !e.closest('.hp'))\
         .filter(e => e.getBoundingClientRect().height < 44)\
         .map(e => e.tagName + '#' + e.id + ' ' + (e.textContent || '').trim().slice(0, 30) \
              + ' ' + e.getBoundingClientRect().height);",
        vec![],
    )
    .await
    .unwrap()
}

/// Clicks the button that sends a form, then waits until the browser has replaced the
/// page with the answer (a click returns before the next page has loaded).
pub(crate) async fn submit(c: &fantoccini::Client, button: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.wait()
        .for_element(Locator::Css(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..200 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{button}: no new page after 10 s");
}

/// Waits for the element with this id and types into it.
pub(crate) async fn type_id(c: &fantoccini::Client, id: &str, text: &str) {
    c.wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// The text of the element with this id, once it is there.
pub(crate) async fn text_of(c: &fantoccini::Client, id: &str) -> String {
    c.wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A village head on a small phone: the broadcasts page, the compose form whose counter
/// follows the typing, the preview, and the broadcast waiting for approval; nothing is
/// wider than the screen.
#[tokio::test]
async fn a_village_head_writes_a_broadcast_on_a_phone() {
    use crate::console_support::login_as;
    use tinbao::accounts::Role;
    use tinbao::channels::Transport;
    if available().is_none() {
        return;
    }
    let app = spawn_app(Engine::Sqlite).await;
    let head = login_as(&app, Role::VillageHead, "truongthon", None, Some(70)).await;
    let row = app
        .state
        .intake
        .store()
        .account(&head.id)
        .await
        .unwrap()
        .unwrap();
    let village = row.village_id.unwrap();
    for phone in ["+84903000001", "+84903000002"] {
        app.state
            .broadcasts
            .subscribe(Transport::ANDROID, phone, village, "vi")
            .await
            .unwrap();
    }

    let b = Browser::start(360, 640, true)
        .await
        .expect("chromium starts");
    let c = &b.client;
    let fits = |c: &fantoccini::Client| {
        let c = c.clone();
        async move {
            c.execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap()
                == serde_json::Value::Bool(true)
        }
    };
    console_login(c, &app.base, "truongthon", &head.password).await;
    let counts = c
        .wait()
        .for_element(Locator::Css(&format!("#village-{village}")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(counts.contains('2'), "two subscribers: {counts}");
    assert!(
        counts.contains("Tin nhắn SMS"),
        "channel names people know: {counts}"
    );
    assert!(!counts.contains("Twilio"));
    assert!(fits(c).await, "the list fits a 360 px screen");
    // The poster comes first on the village's card, whole on the screen.
    let poster = c
        .find(Locator::Css(&format!("#village-{village} .poster-link")))
        .await
        .unwrap();
    let (x, _, w, h) = poster.rectangle().await.unwrap();
    assert!(
        x >= 0.0 && x + w <= 360.0,
        "the poster link fits: {x} + {w}"
    );
    assert!(h >= 44.0, "the poster link is {h} px tall");
    b.screenshot("console-broadcasts-360").await.unwrap();
    assert_eq!(
        small_targets(c).await,
        serde_json::json!([]),
        "on the broadcasts"
    );
    submit(c, "#new-broadcast").await;
    // Only the channels somebody subscribed on come ticked.
    for (channel, ticked) in [("android", true), ("zalo", false), ("telegram", false)] {
        let selected = c
            .find(Locator::Css(&format!(
                "input[name=channel][value={channel}]"
            )))
            .await
            .unwrap()
            .prop("checked")
            .await
            .unwrap();
        assert_eq!(selected.as_deref() == Some("true"), ticked, "{channel}");
    }
    type_id(c, "f-title", "Ngày 26/6").await;
    let text = "Mời bà con họp thôn lúc 19h tại nhà văn hóa để nghe phổ biến về ma túy.";
    type_id(c, "f-text-vi", text).await;
    // The counter follows the typing (UCS-2: 70 characters fit one SMS).
    let counter = text_of(c, "count-vi").await;
    let chars = text.chars().count();
    let segments = if chars <= 70 { 1 } else { chars.div_ceil(67) };
    assert_eq!(counter, format!("{chars} ký tự · {segments} tin SMS"));
    submit(c, "#preview-button").await;
    let total = text_of(c, "preview-total").await;
    assert_eq!(total, "2");
    assert!(fits(c).await, "the preview fits a 360 px screen");
    b.screenshot("console-broadcast-preview-360").await.unwrap();
    submit(c, "#send-button").await;
    c.wait().for_element(Locator::Id("waiting")).await.unwrap();
    assert!(fits(c).await, "the broadcast page fits a 360 px screen");
    b.screenshot("console-broadcast-360").await.unwrap();
    app.stop().await;
}
