//! Chat and SMS channels end to end: the real router and database, the fake providers on
//! loopback. A full conversation on each channel from the first message to the receipt, a
//! police follow-up both ways, an opt-out; signatures, retries, outages.

use crate::fakes::{android, telegram, twilio, zalo};
use crate::helpers::{engine_test, postgres_test, spawn_app_with, Engine, TestApp};
use std::time::Duration;
use tinbao::crypto::Receipt;
use tinbao::store::TipRow;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The 16 digits of the receipt inside a message.
pub(crate) fn receipt_in(text: &str) -> Option<Receipt> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    // The receipt is the only 16-digit run; SMS texts may repeat it.
    text.split(|c: char| !(c.is_ascii_digit() || c == ' ' || c == '-'))
        .map(|part| {
            part.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .find(|d| d.len() == 16)
        .or_else(|| (digits.len() >= 16).then(|| digits[..16].to_owned()))
        .and_then(|d| Receipt::parse(&d).ok())
}

pub(crate) async fn tip_of(app: &TestApp, receipt: &Receipt) -> TipRow {
    let mac = app.state.intake.keys().receipt_mac(receipt);
    app.state
        .intake
        .store()
        .tip_by_receipt(&mac)
        .await
        .unwrap()
        .expect("the receipt names a stored tip")
}

/// Waits until `check` holds, polling.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub(crate) async fn conversation(app: &TestApp, tip: &TipRow) -> Vec<(String, String)> {
    app.state
        .intake
        .conversation(tip)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.author, m.text))
        .collect()
}

// ---------------------------------------------------------------- Telegram

engine_test!(telegram_conversation_gives_a_receipt_and_follow_ups_go_both_ways);
async fn telegram_conversation_gives_a_receipt_and_follow_ups_go_both_ways(engine: Engine) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        c.outbox.backoff_ms = 50;
    })
    .await;
    let chat = 4242;
    let expect = std::cell::Cell::new(0usize);
    let say = |text: &str| {
        tg.push_text(chat, text);
        expect.set(expect.get() + 1);
        expect.get()
    };
    // Each message gets exactly one answer, in order.
    let n = say("/start");
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("ẩn danh"));
    let n = say("/moi");
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("1. Mua bán"));
    let n = say("1");
    tg.wait_for(n, WAIT).await;
    let n = say("hoang van thu");
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("thôn"));
    let n = say("bỏ qua");
    tg.wait_for(n, WAIT).await;
    let n = say("Có người bán ma túy ở quán nước đầu cầu, tối nào cũng có");
    tg.wait_for(n, WAIT).await;
    // A photo, fetched with getFile, stripped like web photos.
    tg.push_photo(chat, "photo-1", crate::helpers::jpeg_with_gps(64, 48), None);
    expect.set(expect.get() + 1);
    let n = expect.get();
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("1 ảnh"));
    let n = say("xong");
    let summary = tg.wait_for(n, WAIT).await[n - 1].1.clone();
    assert!(summary.contains("Xã Hoàng Văn Thụ"), "{summary}");
    let n = say("có");
    let sent = tg.wait_for(n, WAIT).await;
    assert!(sent.iter().all(|(to, _)| *to == chat));
    let receipt = receipt_in(&sent[n - 1].1).expect("a receipt in the last answer");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(tip.channel, "telegram");
    assert_eq!(tip.commune_code, Some(6172));
    assert_eq!(tip.category, "dealing");
    let atts = app.state.intake.store().attachments(&tip.id).await.unwrap();
    assert_eq!(atts.len(), 1, "the photo is stored");
    let photo = app
        .state
        .intake
        .open_attachment(&tip.id, &atts[0].id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !crate::helpers::contains(&photo, b"Exif"),
        "metadata stripped"
    );

    // Police → tipster over Telegram; tipster → police by plain text.
    assert!(app
        .state
        .intake
        .police_message(&tip.id, "Cảm ơn, chúng tôi đã xác minh.")
        .await
        .unwrap());
    expect.set(expect.get() + 1);
    let n = expect.get();
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("đã xác minh"));
    let n = say("Họ lại đến tối nay lúc 9 giờ");
    assert!(tg.wait_for(n, WAIT).await[n - 1].1.contains("Đã gửi"));
    let talk = conversation(&app, &tip).await;
    assert!(talk
        .iter()
        .any(|(a, t)| a == "tipster" && t.contains("9 giờ")));
    // Check by receipt.
    let n = say(&format!("kt {receipt}"));
    let status = tg.wait_for(n, WAIT).await[n - 1].1.clone();
    assert!(status.contains("đã xác minh"), "{status}");

    // Opt-out erases the reply address and the conversation.
    let n = say("/stop");
    tg.wait_for(n, WAIT).await;
    let store = app.state.intake.store().clone();
    let id = tip.id.clone();
    eventually("the reply address is erased", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.tip_contact(&id).await.unwrap().is_none() }
    })
    .await;
    // Only one process ever polled, with no webhook left behind.
    assert_eq!(tg.max_concurrent_pollers(), 1);
    app.stop().await;
}

engine_test!(telegram_outage_delays_messages_and_loses_none);
async fn telegram_outage_delays_messages_and_loses_none(engine: Engine) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        c.outbox.backoff_ms = 50;
    })
    .await;
    // teloxide waits 10 s after a 5xx before it reads the answer: one 500 is enough.
    tg.fail_next_method("sendMessage", 1, telegram::Failure::Http500);
    tg.fail_next_method(
        "sendMessage",
        1,
        telegram::Failure::TooManyRequests { retry_after: 1 },
    );
    tg.push_text(77, "/help");
    let sent = tg.wait_for(1, WAIT * 3).await;
    assert!(sent[0].1.contains("MOI"));
    assert_eq!(tg.calls("sendMessage"), 3, "two failures, then accepted");
    // The bot blocked by the user is an opt-out: the message is not sent, for good.
    tg.fail_next_method("sendMessage", 1, telegram::Failure::Blocked);
    tg.push_text(77, "/help");
    let store = app.state.intake.store().clone();
    eventually("the blocked message is marked opted out", || {
        let store = store.clone();
        async move {
            store
                .outbox_counts()
                .await
                .unwrap()
                .iter()
                .any(|(s, n)| s == "opted_out" && *n == 1)
        }
    })
    .await;
    app.stop().await;
}

postgres_test!(only_one_server_polls_telegram_when_several_share_postgresql);
async fn only_one_server_polls_telegram_when_several_share_postgresql() {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(Engine::Postgres, |c| c.telegram = tg.config()).await;
    let second = app.second_instance().await;
    let third = app.second_instance().await;
    for i in 0..5 {
        tg.push_text(500 + i, "/help");
    }
    let sent = tg.wait_for(5, WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(tg.sent().len(), 5, "each message answered once: {sent:?}");
    assert_eq!(tg.max_concurrent_pollers(), 1, "one poller at a time");
    third.stop_keep_db().await;
    second.stop_keep_db().await;
    app.stop().await;
}

engine_test!(telegram_webhook_mode_checks_the_secret_token);
async fn telegram_webhook_mode_checks_the_secret_token(engine: Engine) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        c.telegram.mode = tinbao::config::TelegramMode::Webhook;
        c.telegram.webhook_secret = "s3cret-token".into();
    })
    .await;
    // The server registers its webhook with the secret.
    eventually("the webhook is registered", || async {
        tg.webhook().is_some_and(|(url, secret)| {
            url.ends_with("/hooks/telegram") && secret.as_deref() == Some("s3cret-token")
        })
    })
    .await;
    let mut update = tg.message_update(99, serde_json::json!({"text": "/help"}));
    update["update_id"] = serde_json::json!(5001);
    let post = |secret: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/hooks/telegram"))
            .header("content-type", "application/json")
            .body(update.to_string());
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(app.state.intake.store().inbox_len().await.unwrap(), 0);
    assert_eq!(post(Some("s3cret-token")).await.unwrap().status(), 200);
    // Telegram retries the same update: one answer.
    assert_eq!(post(Some("s3cret-token")).await.unwrap().status(), 200);
    let sent = tg.wait_for(1, WAIT).await;
    assert_eq!(sent[0].0, 99);
    let garbage = app
        .client
        .post(app.url("/hooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-token")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent().len(), 1);
    assert_eq!(tg.calls("getUpdates"), 0, "no polling in webhook mode");
    app.stop().await;
}

// ---------------------------------------------------------------- Zalo

pub(crate) async fn post_zalo(app: &TestApp, event: serde_json::Value) -> reqwest::StatusCode {
    let (body, sig) = zalo::signed_event(zalo::APP_ID, zalo::OA_SECRET_KEY, event);
    app.client
        .post(app.url("/hooks/zalo"))
        .header("X-ZEvent-Signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

engine_test!(zalo_conversation_signatures_retries_and_the_reply_window);
async fn zalo_conversation_signatures_retries_and_the_reply_window(engine: Engine) {
    let za = zalo::FakeZalo::start().await;
    let app = spawn_app_with(engine, |c| {
        c.zalo = za.config();
        c.outbox.backoff_ms = 50;
    })
    .await;
    let user = "zalo-user-1";
    let now = zalo::now_ms;
    let count = std::cell::Cell::new(0usize);
    let step = |text: &str| {
        count.set(count.get() + 1);
        let n = count.get();
        (zalo::user_send_text(user, text, &format!("m{n}"), now()), n)
    };
    assert_eq!(post_zalo(&app, zalo::follow(user, now())).await, 200);
    count.set(1);
    assert!(za.wait_for(1, WAIT).await[0].1.contains("ẩn danh"));
    for text in ["moi", "5", "Phường Hoàn Kiếm", "bo qua"] {
        let (ev, k) = step(text);
        assert_eq!(post_zalo(&app, ev).await, 200);
        za.wait_for(k, WAIT).await;
    }
    let (ev, k) = step("Có người trồng cây cần sa sau nhà ở ngõ 5");
    // The provider delivers the same message twice: one answer, one tip.
    assert_eq!(post_zalo(&app, ev.clone()).await, 200);
    assert_eq!(post_zalo(&app, ev).await, 200);
    za.wait_for(k, WAIT).await;
    for text in ["bo qua", "co"] {
        let (ev, k) = step(text);
        assert_eq!(post_zalo(&app, ev).await, 200);
        za.wait_for(k, WAIT).await;
    }
    let mut n = count.get();
    let sent = za.wait_for(n, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        za.sent().await.len(),
        n,
        "a retried message got no second answer"
    );
    let receipt = receipt_in(&sent[n - 1].1).expect("a receipt");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(tip.channel, "zalo");
    assert_eq!(tip.commune_code, Some(70));
    assert_eq!(tip.category, "cultivation");

    // Forged, missing, stale and malformed events store nothing.
    let before = app.state.intake.store().inbox_len().await.unwrap();
    let (body, _) = zalo::signed_event(
        zalo::APP_ID,
        zalo::OA_SECRET_KEY,
        zalo::user_send_text(user, "x", "forged", now()),
    );
    let forged = app
        .client
        .post(app.url("/hooks/zalo"))
        .header("X-ZEvent-Signature", "mac=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let missing = app
        .client
        .post(app.url("/hooks/zalo"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let stale = zalo::user_send_text(user, "x", "stale", now() - 3_600_000);
    assert_eq!(post_zalo(&app, stale).await, 401);
    let (bad, sig) = {
        let body = b"{not json".to_vec();
        let sig = format!("mac={}", zalo_signature(&body, &now().to_string()));
        (body, sig)
    };
    let malformed = app
        .client
        .post(app.url("/hooks/zalo"))
        .header("X-ZEvent-Signature", sig)
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let unknown = serde_json::json!({
        "app_id": zalo::APP_ID, "event_name": "oa_send_text",
        "timestamp": now().to_string(), "sender": {"id": "oa"}, "recipient": {"id": user}
    });
    assert_eq!(post_zalo(&app, unknown).await, 200);
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let too_big = app
        .client
        .post(app.url("/hooks/zalo"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(
        app.state.intake.store().inbox_len().await.unwrap(),
        before,
        "nothing stored"
    );

    // Follow-up inside the window reaches the user; outside, the console is told.
    app.state
        .intake
        .police_message(&tip.id, "Đã nhận, cảm ơn bạn")
        .await
        .unwrap();
    n += 1;
    assert!(za.wait_for(n, WAIT).await[n - 1].1.contains("cảm ơn bạn"));
    za.outside_window(user);
    app.state
        .intake
        .police_message(&tip.id, "Bạn còn thông tin gì không?")
        .await
        .unwrap();
    let store = app.state.intake.store().clone();
    let id = tip.id.clone();
    eventually("the undeliverable follow-up is reported", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            store.deliveries(&id).await.unwrap().iter().any(|d| {
                d.status == "failed"
                    && d.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("window"))
            })
        }
    })
    .await;
    // The officer sees it on the tip's page.
    let officer = crate::console_support::login_as(
        &app,
        tinbao::accounts::Role::Officer,
        "officer",
        None,
        Some(70),
    )
    .await;
    let page = officer
        .client
        .get(app.url(&format!("/console/tips/{}", tip.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Không gửi được qua zalo"), "{page}");
    assert!(page.contains("Đã gửi qua zalo"));
    // Unfollow is an opt-out.
    assert_eq!(post_zalo(&app, zalo::unfollow(user, now())).await, 200);
    let store = app.state.intake.store().clone();
    let id = tip.id.clone();
    eventually("the reply address is erased after unfollow", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.tip_contact(&id).await.unwrap().is_none() }
    })
    .await;
    app.stop().await;
}

fn zalo_signature(body: &[u8], timestamp: &str) -> String {
    use ring::digest;
    let mut data = zalo::APP_ID.as_bytes().to_vec();
    data.extend_from_slice(body);
    data.extend_from_slice(timestamp.as_bytes());
    data.extend_from_slice(zalo::OA_SECRET_KEY.as_bytes());
    hex::encode(digest::digest(&digest::SHA256, &data))
}

// ---------------------------------------------------------------- SMS

pub(crate) const SID: &str = "AC00000000000000000000000000000001";
pub(crate) const TOKEN: &str = "twilio-secret";
pub(crate) const TIP_NUMBER: &str = "+84900000070";

pub(crate) async fn post_twilio(
    app: &TestApp,
    sid: &str,
    from: &str,
    body: &str,
) -> reqwest::StatusCode {
    let params = twilio::incoming_sms(SID, sid, from, TIP_NUMBER, body);
    let url = format!("{}/hooks/sms/twilio", app.config.public_url);
    let sig = twilio::sign(TOKEN, &url, &params);
    app.client
        .post(app.url("/hooks/sms/twilio"))
        .header("X-Twilio-Signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(twilio::form_body(&params))
        .send()
        .await
        .unwrap()
        .status()
}

engine_test!(twilio_whole_tip_in_one_sms_follow_ups_and_stop);
async fn twilio_whole_tip_in_one_sms_follow_ups_and_stop(engine: Engine) {
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let app = spawn_app_with(engine, |c| {
        c.sms.twilio = tw.config("+84900000070");
        c.sms.numbers = vec![tinbao::config::SmsNumber {
            number: TIP_NUMBER.into(),
            commune: 70,
        }];
        c.outbox.backoff_ms = 50;
    })
    .await;
    let phone = "+84912345678";
    // The gateway fails twice and rate-limits once before taking the receipt.
    tw.fail_next(2, twilio::Failure::Http500);
    tw.fail_next(
        1,
        twilio::Failure::Http429 {
            retry_after_secs: 1,
        },
    );
    let text = "TIN Nhà số 12 ngõ 3 có người bán ma túy đá buổi tối";
    assert_eq!(post_twilio(&app, "SM1", phone, text).await, 200);
    // Twilio retries the webhook: the same MessageSid is one tip.
    assert_eq!(post_twilio(&app, "SM1", phone, text).await, 200);
    let sent = tw.wait_for(1, WAIT).await;
    assert_eq!(sent[0].0, phone);
    let receipt = receipt_in(&sent[0].1).expect("the receipt by SMS");
    assert_eq!(tw.requests(), 4);
    let tip = tip_of(&app, &receipt).await;
    assert_eq!((tip.channel.as_str(), tip.commune_code), ("sms", Some(70)));
    let store = app.state.intake.store().clone();
    assert_eq!(
        app.raw_tip_ids().await.len(),
        1,
        "one tip despite the retry"
    );
    // A later SMS joins the open tip; a police message goes back by SMS.
    assert_eq!(
        post_twilio(&app, "SM2", phone, "Xe máy biển 29A-123").await,
        200
    );
    let sent = tw.wait_for(2, WAIT).await;
    assert!(sent[1].1.contains("Da gui") || sent[1].1.contains("Đã gửi"));
    let talk = conversation(&app, &tip).await;
    assert!(talk
        .iter()
        .any(|(a, t)| a == "tipster" && t.contains("29A")));
    app.state
        .intake
        .police_message(&tip.id, "Cảm ơn, đã chuyển tổ công tác.")
        .await
        .unwrap();
    let sent = tw.wait_for(3, WAIT).await;
    assert!(sent[2].1.contains("tổ công tác"));
    // Forged signature: 401 and nothing stored.
    let before = store.inbox_len().await.unwrap();
    let forged = app
        .client
        .post(app.url("/hooks/sms/twilio"))
        .header("X-Twilio-Signature", "AAAA")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(twilio::form_body(&twilio::incoming_sms(
            SID, "SM9", phone, TIP_NUMBER, "forged",
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(store.inbox_len().await.unwrap(), before);
    // STOP opts out: the reply address is erased.
    assert_eq!(post_twilio(&app, "SM3", phone, "STOP").await, 200);
    let id = tip.id.clone();
    eventually("STOP erases the reply address", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.tip_contact(&id).await.unwrap().is_none() }
    })
    .await;
    app.stop().await;
}

engine_test!(android_gateway_tip_signatures_and_replay_window);
async fn android_gateway_tip_signatures_and_replay_window(engine: Engine) {
    let gw = android::FakeAndroid::start("user", "pass").await;
    let secret = "android-webhook-secret";
    let app = spawn_app_with(engine, |c| {
        c.sms.android = gw.config(secret);
        c.outbox.backoff_ms = 50;
    })
    .await;
    let post = |body: String, headers: axum::http::HeaderMap| {
        let mut req = app
            .client
            .post(app.url("/hooks/sms/android"))
            .header("content-type", "application/json");
        for (k, v) in headers.iter() {
            req = req.header(k.as_str(), v.to_str().unwrap());
        }
        req.body(body).send()
    };
    let now = chrono::Utc::now().timestamp();
    let body = android::sms_received(
        "ev-1",
        "+84987654321",
        "Có tụ điểm hút ở bãi đất trống sau trường",
    );
    let res = post(body.clone(), android::signed_headers(secret, &body, now))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = gw.wait_for(1, WAIT).await;
    let receipt = receipt_in(&sent[0].1).expect("a receipt");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(tip.channel, "sms");
    assert_eq!(tip.commune_code, None, "an unbound number: unplaced");
    // Wrong, missing and stale signatures: 401, nothing stored.
    let store = app.state.intake.store().clone();
    let before = store.inbox_len().await.unwrap();
    let body2 = android::sms_received("ev-2", "+84987654321", "giả mạo");
    let wrong = post(body2.clone(), android::signed_headers("other", &body2, now))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let missing = post(body2.clone(), axum::http::HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let stale = post(
        body2.clone(),
        android::signed_headers(secret, &body2, now - 3600),
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), 401);
    let junk = "{\"event\": 5}".to_owned();
    let malformed = post(junk.clone(), android::signed_headers(secret, &junk, now))
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(store.inbox_len().await.unwrap(), before);
    // HUY opts out.
    let huy = android::sms_received("ev-3", "+84987654321", "HUY");
    let res = post(huy.clone(), android::signed_headers(secret, &huy, now))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = tip.id.clone();
    eventually("HUY erases the reply address", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.tip_contact(&id).await.unwrap().is_none() }
    })
    .await;
    app.stop().await;
}

engine_test!(android_mms_photos_never_arrive_so_the_tip_notes_it_and_the_tipster_is_told);
async fn android_mms_photos_never_arrive_so_the_tip_notes_it_and_the_tipster_is_told(
    engine: Engine,
) {
    let gw = android::FakeAndroid::start("user", "pass").await;
    let secret = "android-webhook-secret";
    let app = spawn_app_with(engine, |c| {
        c.sms.android = gw.config(secret);
        c.outbox.backoff_ms = 50;
    })
    .await;
    let post = |body: String| {
        let now = chrono::Utc::now().timestamp();
        let mut req = app
            .client
            .post(app.url("/hooks/sms/android"))
            .header("content-type", "application/json");
        for (k, v) in android::signed_headers(secret, &body, now).iter() {
            req = req.header(k.as_str(), v.to_str().unwrap());
        }
        req.body(body).send()
    };
    let unsupported = "khong nhan duoc anh MMS";
    let store = app.state.intake.store().clone();
    // An MMS from someone with no open tip: no tip, and they learn how to send photos.
    let res = post(android::mms_received("mms-0", "+84911000111"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let sent = gw.wait_for(1, WAIT).await;
    assert!(sent[0].1.contains(unsupported), "{}", sent[0].1);
    assert!(
        !sent[0].1.contains("qua ngan"),
        "no text was sent: {}",
        sent[0].1
    );
    assert!(app.raw_tip_ids().await.is_empty(), "[{engine:?}] no tip");
    // A tipster with an open tip sends an MMS: the tip notes the missing photo.
    let phone = "+84987654321";
    let body = android::sms_received("ev-1", phone, "Có tụ điểm hút ở bãi đất trống sau trường");
    assert_eq!(post(body).await.unwrap().status(), 200);
    let sent = gw.wait_for(2, WAIT).await;
    let receipt = receipt_in(&sent[1].1).expect("a receipt");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(
        post(android::mms_received("mms-1", phone))
            .await
            .unwrap()
            .status(),
        200
    );
    let sent = gw.wait_for(3, WAIT).await;
    assert!(sent[2].1.contains(unsupported), "{}", sent[2].1);
    let gaps = store.photo_gaps(&tip.id).await.unwrap();
    assert_eq!(gaps.len(), 1, "[{engine:?}]");
    assert_eq!(gaps[0].missing, 1);
    // No empty message joined the conversation.
    assert!(store.messages(&tip.id).await.unwrap().is_empty());
    app.stop().await;
}

engine_test!(closing_a_tip_erases_its_reply_address_and_no_address_is_stored_in_clear);
async fn closing_a_tip_erases_its_reply_address_and_no_address_is_stored_in_clear(engine: Engine) {
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let app = spawn_app_with(engine, |c| {
        c.sms.twilio = tw.config("+84900000070");
        c.outbox.backoff_ms = 50;
    })
    .await;
    let phone = "+84911122233";
    assert_eq!(
        post_twilio(
            &app,
            "SMx",
            phone,
            "Tin: thanh niên tụ tập hút bóng cười ở công viên"
        )
        .await,
        200
    );
    let sent = tw.wait_for(1, WAIT).await;
    let receipt = receipt_in(&sent[0].1).unwrap();
    let tip = tip_of(&app, &receipt).await;
    let store = app.state.intake.store();
    assert!(store.tip_contact(&tip.id).await.unwrap().is_some());
    if app.engine == crate::helpers::Engine::Sqlite {
        // The number appears nowhere in the database files, in any form.
        for f in std::fs::read_dir(app.dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!crate::helpers::contains(&bytes, b"911122233"));
        }
    }
    store
        .set_status(&tip.id, "closed", Some("actioned"), tinbao::clock::now_ms())
        .await
        .unwrap();
    assert!(store.tip_contact(&tip.id).await.unwrap().is_none());
    app.stop().await;
}
