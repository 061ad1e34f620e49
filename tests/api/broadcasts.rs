//! Campaign broadcasts end to end: residents subscribe on every channel (bot command, SMS
//! keyword, the web page with an emailed confirmation link), a village head writes a
//! broadcast, an officer approves it, the dispatcher delivers it through the fake
//! providers and a real SMTP server, opt-outs during sending count at once; a killed
//! server resumes without skipping or repeating anyone; two servers on one PostgreSQL
//! share the work and the rate.

use crate::alerts::SmtpSink;
use crate::channels::{eventually, post_twilio, post_zalo, SID, WAIT};
use crate::console_support::create_account;
use crate::fakes::{android, telegram, twilio, zalo};
use crate::helpers::{engine_test, postgres_test, spawn_app_with, Engine, Server, TestApp};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tinbao::accounts::{Account, Role};
use tinbao::broadcast::{BroadcastError, Draft};
use tinbao::channels::Transport;

const COMMUNE: i64 = 6172;
const VI: &str =
    "Hưởng ứng Tháng hành động phòng, chống ma túy: họp thôn 19h ngày 26/6 tại nhà văn hóa.";
const EN: &str =
    "Drug prevention action month: village meeting at 7 pm on 26 June in the cultural house.";

async fn account(app: &TestApp, id: &str) -> Account {
    let row = app.state.intake.store().account(id).await.unwrap().unwrap();
    Account::from_row(&row).unwrap()
}

fn draft(villages: Vec<i64>, transports: Vec<Transport>) -> Draft {
    let mut texts = BTreeMap::new();
    texts.insert("vi".to_string(), VI.to_string());
    texts.insert("en".to_string(), EN.to_string());
    Draft {
        title: "Tháng hành động".into(),
        texts,
        transports,
        villages,
        send_at: None,
    }
}

/// A village head (of a new village in the commune) and an officer of the commune.
async fn head_and_officer(app: &TestApp) -> (Account, Account, i64) {
    let (head, _) = create_account(app, Role::VillageHead, "truongthon", None, Some(COMMUNE)).await;
    let (officer, _) = create_account(app, Role::Officer, "canbo", None, Some(COMMUNE)).await;
    let head = account(app, &head).await;
    let village = head.village_id.unwrap();
    (head, account(app, &officer).await, village)
}

async fn wait_done(app: &TestApp, id: &str) {
    let store = app.state.intake.store().clone();
    let id = id.to_owned();
    eventually("the broadcast finishes", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.broadcast(&id).await.unwrap().unwrap().status.as_str() == "done" }
    })
    .await;
}

fn android_post(
    app: &TestApp,
    secret: &str,
    event: &str,
    from: &str,
    text: &str,
) -> reqwest::RequestBuilder {
    let body = android::sms_received(event, from, text);
    let mut req = app
        .client
        .post(app.url("/hooks/sms/android"))
        .header("content-type", "application/json");
    let headers = android::signed_headers(secret, &body, chrono::Utc::now().timestamp());
    for (k, v) in headers.iter() {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    req.body(body)
}

/// The link of `path` (e.g. `/subscribe/confirm`) in a text, made local to the app.
fn link_in(app: &TestApp, text: &str, path: &str) -> String {
    let start = text.find(path).expect("the link is in the mail");
    let rest = &text[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    app.url(&rest[..end])
}

engine_test!(
    every_channel_from_subscription_to_delivery_with_opt_outs_during_sending,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn every_channel_from_subscription_to_delivery_with_opt_outs_during_sending(engine: Engine) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let za = zalo::FakeZalo::start().await;
    let tw = twilio::FakeTwilio::start(SID, crate::channels::TOKEN).await;
    let gw = android::FakeAndroid::start("user", "pass").await;
    let smtp = SmtpSink::start().await;
    let secret = "android-webhook-secret";
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        // Slow enough that the last chats are still waiting when one says STOP.
        c.telegram.rate_per_second = 2;
        c.zalo = za.config();
        c.sms.twilio = tw.config("+84900000070");
        c.sms.android = gw.config(secret);
        c.smtp.enabled = true;
        c.smtp.port = smtp.port;
        c.outbox.backoff_ms = 50;
        c.broadcast.quiet_start = "00:00".into();
        c.broadcast.quiet_end = "00:00".into();
    })
    .await;
    let (head, officer, village) = head_and_officer(&app).await;
    let dk = format!("DK {village}");

    // Telegram: six chats, one by the poster's link.
    let chats: Vec<i64> = (9001..=9006).collect();
    for (i, chat) in chats.iter().enumerate() {
        let text = if i == 0 {
            format!("/start dk{village}")
        } else {
            dk.clone()
        };
        tg.push_text(*chat, &text);
    }
    let replies = tg.wait_for(chats.len(), WAIT).await;
    assert!(
        replies.iter().all(|(_, t)| t.contains("Thôn Đông")),
        "{replies:?}"
    );
    // Zalo, Twilio and the Android gateway: the same keyword.
    let now = zalo::now_ms();
    assert_eq!(
        post_zalo(&app, zalo::user_send_text("zalo-sub", &dk, "zm1", now)).await,
        200
    );
    assert!(za.wait_for(1, WAIT).await[0].1.contains("Thôn Đông"));
    assert_eq!(post_twilio(&app, "SMsub1", "+84911000001", &dk).await, 200);
    assert!(tw.wait_for(1, WAIT).await[0].1.contains("Thôn Đông"));
    let res = android_post(&app, secret, "sub-1", "+84922000002", &dk)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(gw.wait_for(1, WAIT).await[0].1.contains("Thôn Đông"));
    // Email: the web page, then the emailed confirmation link.
    let page = app
        .client
        .get(app.url(&format!("/subscribe/{village}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(&format!("DK {village}")));
    // The form carries a token the page set (nothing posts it blind).
    let (cookie, token) = crate::doors::subscribe_token(&app, village).await;
    let bad = app
        .client
        .post(app.url(&format!("/subscribe/{village}")))
        .header("cookie", &cookie)
        .form(&[
            ("email", "not an address"),
            ("language", "en"),
            ("form_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(
        bad.text().await.unwrap().contains("not an address"),
        "what was typed is kept"
    );
    let ok = app
        .client
        .post(app.url(&format!("/subscribe/{village}?lang=en")))
        .header("cookie", &cookie)
        .form(&[
            ("email", "Dan@Example.test"),
            ("language", "en"),
            ("lang", "en"),
            ("form_token", &token),
        ])
        .send()
        .await
        .unwrap();
    // Post/redirect/get: the village's page says what comes next; a reload sends nothing.
    let ok = crate::helpers::follow_filed(&app.client, &app.base, ok).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("Almost done"));
    let mails = smtp.wait_for(1).await;
    let confirm = link_in(&app, &mails[0].body, "/subscribe/confirm");
    let confirmed = app.client.post(&confirm).send().await.unwrap();
    let confirmed = crate::helpers::follow_filed(&app.client, &app.base, confirmed).await;
    assert_eq!(confirmed.status(), 200);
    let forged = app
        .client
        .post(confirm.replace("t=", "t=0"))
        .send()
        .await
        .unwrap();
    let forged = crate::helpers::follow_filed(&app.client, &app.base, forged).await;
    assert_eq!(forged.status(), 400);

    let store = app.state.intake.store().clone();
    let counts = store.subscriber_counts(&[village]).await.unwrap();
    let count = |t: &str| counts.iter().find(|c| c.1 == t).map_or(0, |c| c.2);
    assert_eq!(
        [
            count("telegram"),
            count("zalo"),
            count("twilio"),
            count("android"),
            count("email")
        ],
        [6, 1, 1, 1, 1]
    );

    // The head writes; the head cannot approve; the officer does.
    let b = &app.state.broadcasts;
    let all = vec![
        Transport::TELEGRAM,
        Transport::ZALO,
        Transport::TWILIO,
        Transport::ANDROID,
        Transport::EMAIL,
    ];
    let row = b
        .create(&head, &draft(vec![village], all.clone()))
        .await
        .unwrap();
    assert_eq!(row.status.as_str(), "pending");
    assert!(matches!(
        b.approve(&head, &row.id).await,
        Err(BroadcastError::Denied)
    ));
    // Not another village.
    let other = store.add_village(COMMUNE, "Thôn Tây").await.unwrap();
    match b.create(&head, &draft(vec![other], all.clone())).await {
        Err(BroadcastError::Invalid(e)) => {
            assert!(e
                .iter()
                .any(|e| e.key() == "broadcast.error.not_your_village"))
        }
        other => panic!("a head sent to another village: {other:?}"),
    }
    b.approve(&officer, &row.id).await.unwrap();

    // Sending: as soon as the first chat has it, a chat still waiting says STOP.
    let before = tg.sent().len();
    tg.wait_for(before + 1, WAIT).await;
    let got: Vec<i64> = tg.sent()[before..].iter().map(|(c, _)| *c).collect();
    let leaver = *chats.iter().rev().find(|c| !got.contains(c)).unwrap();
    tg.push_text(leaver, "STOP");
    wait_done(&app, &row.id).await;

    // Twilio was asked for a delivery report and sends it: the message counts as
    // delivered.
    let callbacks = tw.status_callbacks();
    let (sid, url) = callbacks.last().expect("a status callback was requested");
    assert_eq!(
        url,
        &format!(
            "{}/hooks/sms/twilio",
            app.config.public_url.trim_end_matches('/')
        )
    );
    let params = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
        ("ApiVersion", "2010-04-01"),
    ];
    let report = app
        .client
        .post(app.url("/hooks/sms/twilio"))
        .header(
            "X-Twilio-Signature",
            twilio::sign(crate::channels::TOKEN, url, &params),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(twilio::form_body(&params))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    let b_row = app
        .state
        .intake
        .store()
        .broadcast(&row.id)
        .await
        .unwrap()
        .unwrap();
    let progress = app.state.broadcasts.progress(&b_row).await.unwrap();
    let twilio_counts = progress
        .by_transport
        .iter()
        .find(|(t, _)| t == "twilio")
        .map(|(_, c)| *c)
        .unwrap();
    assert_eq!(twilio_counts[2], 1, "delivered: {twilio_counts:?}");

    let broadcast_to = |sent: &[(i64, String)], chat: i64| {
        sent.iter()
            .filter(|(c, t)| *c == chat && t.contains("Tháng hành động"))
            .count()
    };
    let sent = tg.sent();
    let reached: Vec<usize> = chats.iter().map(|c| broadcast_to(&sent, *c)).collect();
    for (chat, n) in chats.iter().zip(&reached) {
        let expected = usize::from(*chat != leaver);
        // The leaver's message may have been on its way when STOP arrived; nobody
        // gets two.
        assert!(
            *n == expected || (*chat == leaver && *n <= 1),
            "chat {chat}: {n}"
        );
    }
    assert!(
        tg.max_per_second() <= 2,
        "Telegram's limit held: {}",
        tg.max_per_second()
    );
    assert!(za
        .sent()
        .await
        .iter()
        .any(|(u, t)| u == "zalo-sub" && t.contains("Tháng hành động")));
    assert!(tw
        .sent()
        .iter()
        .any(|(n, t)| n == "+84911000001" && t.contains("Tháng hành động")));
    assert!(gw
        .sent()
        .iter()
        .any(|(n, t)| n == "+84922000002" && t.contains("Tháng hành động")));
    let mails = smtp.wait_for(2).await;
    let news = mails
        .iter()
        .find(|m| m.body.contains("action month"))
        .expect("the English text by email");
    assert!(news.raw.contains("List-Unsubscribe: <"), "{}", news.raw);
    assert!(news
        .raw
        .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    // Counts and the kept results.
    let done = store.broadcast(&row.id).await.unwrap().unwrap();
    let p = b.progress(&done).await.unwrap();
    assert_eq!(p.total, 10);
    assert_eq!(p.queued, 0);
    assert_eq!(p.sent + p.opted_out, 10, "{p:?}");
    let results = b.results(&row.id).await.unwrap();
    assert_eq!(results.iter().map(|r| r.count).sum::<i64>(), 10);
    assert!(results.iter().all(|r| r.village_id == village));

    // The email's unsubscribe link (one click) ends it and erases the address.
    let stop = link_in(&app, &news.body, "/subscribe/stop");
    let res = app
        .client
        .post(&stop)
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = crate::helpers::follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.status(), 200);
    let s: i64 = stop
        .split("s=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Opting out deletes the subscription: no pseudonym, address or village is kept.
    assert!(store.subscriber(s).await.unwrap().is_none());
    // The leaver's STOP ended its subscription too.
    let leaver_sub = b
        .subscriptions(Transport::TELEGRAM, &leaver.to_string())
        .await
        .unwrap();
    assert!(leaver_sub.is_empty());
    app.stop().await;
}

engine_test!(provider_opt_out_signals_end_subscriptions);
async fn provider_opt_out_signals_end_subscriptions(engine: Engine) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let za = zalo::FakeZalo::start().await;
    let tw = twilio::FakeTwilio::start(SID, crate::channels::TOKEN).await;
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        c.zalo = za.config();
        c.sms.twilio = tw.config("+84900000070");
        c.outbox.backoff_ms = 50;
        c.broadcast.quiet_start = "00:00".into();
        c.broadcast.quiet_end = "00:00".into();
        c.broadcast.fanout_chunk = 100;
    })
    .await;
    let (head, officer, village) = head_and_officer(&app).await;
    let b = &app.state.broadcasts;
    for chat in ["7001", "7002"] {
        b.subscribe(Transport::TELEGRAM, chat, village, "vi")
            .await
            .unwrap();
    }
    b.subscribe(Transport::TWILIO, "+84933000003", village, "vi")
        .await
        .unwrap();
    b.subscribe(Transport::ZALO, "zalo-leaver", village, "vi")
        .await
        .unwrap();
    // Zalo's unfollow is an opt-out.
    assert_eq!(
        post_zalo(&app, zalo::unfollow("zalo-leaver", zalo::now_ms())).await,
        200
    );
    let store = app.state.intake.store().clone();
    eventually("the unfollow ends the subscription", || {
        let b = b.clone();
        async move {
            b.subscriptions(Transport::ZALO, "zalo-leaver")
                .await
                .unwrap()
                .is_empty()
        }
    })
    .await;
    // Telegram's "bot was blocked" and Twilio's 21610 during the broadcast.
    tg.fail_next_method("sendMessage", 1, telegram::Failure::Blocked);
    tw.fail_next(1, twilio::Failure::Unsubscribed);
    let row = b
        .create(
            &head,
            &draft(
                vec![village],
                vec![Transport::TELEGRAM, Transport::TWILIO, Transport::ZALO],
            ),
        )
        .await
        .unwrap();
    b.approve(&officer, &row.id).await.unwrap();
    wait_done(&app, &row.id).await;
    let p = b
        .progress(&store.broadcast(&row.id).await.unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!((p.total, p.sent, p.opted_out), (3, 1, 2), "{p:?}");
    assert!(b
        .subscriptions(Transport::TWILIO, "+84933000003")
        .await
        .unwrap()
        .is_empty());
    let left: usize = [
        b.subscriptions(Transport::TELEGRAM, "7001")
            .await
            .unwrap()
            .len(),
        b.subscriptions(Transport::TELEGRAM, "7002")
            .await
            .unwrap()
            .len(),
    ]
    .iter()
    .sum();
    assert_eq!(left, 1, "the chat that blocked the bot is unsubscribed");
    // Cancelling a finished broadcast is refused; a pending one can be cancelled.
    assert!(matches!(
        b.cancel(&officer, &row.id).await,
        Err(BroadcastError::Conflict)
    ));
    let second = b
        .create(&head, &draft(vec![village], vec![Transport::TELEGRAM]))
        .await
        .unwrap();
    b.cancel(&head, &second.id).await.unwrap();
    assert_eq!(
        store
            .broadcast(&second.id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "cancelled"
    );
    app.stop().await;
}

/// Subscribes `n` numbers through signed Android gateway webhooks (as residents would).
async fn subscribe_by_sms(base: &str, secret: &str, village: i64, n: usize) {
    let client = reqwest::Client::new();
    for i in 0..n {
        let body = android::sms_received(&format!("sub-{i}"), &phone(i), &format!("DK {village}"));
        let mut req = client
            .post(format!("{base}/hooks/sms/android"))
            .header("content-type", "application/json");
        let headers = android::signed_headers(secret, &body, chrono::Utc::now().timestamp());
        for (k, v) in headers.iter() {
            req = req.header(k.as_str(), v.to_str().unwrap());
        }
        assert_eq!(req.body(body).send().await.unwrap().status(), 200);
    }
}

fn phone(i: usize) -> String {
    format!("+8491{i:07}")
}

engine_test!(a_fanout_whose_cursor_was_lost_redoes_its_chunks_without_doubling_or_miscounting);
/// Chunks written (on PostgreSQL two at once, each in its own transaction) but the cursor
/// never moved past them, as when the process dies between the two: the fan-out done
/// again skips the rows already there, reaches everyone once, and counts each once.
async fn a_fanout_whose_cursor_was_lost_redoes_its_chunks_without_doubling_or_miscounting(
    engine: Engine,
) {
    const N: i64 = 450;
    let app = spawn_app_with(engine, |c| {
        c.broadcast.fanout_chunk = 100;
    })
    .await;
    let store = app.state.intake.store().clone();
    let b = &app.state.broadcasts;
    let village = store.add_village(COMMUNE, "Thôn Đông").await.unwrap();
    for i in 0..N {
        b.subscribe(
            Transport::TELEGRAM,
            &(500_000 + i).to_string(),
            village,
            "vi",
        )
        .await
        .unwrap();
    }
    let mut texts = BTreeMap::new();
    texts.insert("vi".to_string(), VI.to_string());
    store
        .insert_broadcast(&tinbao::store::NewBroadcast {
            id: "lostcursor".into(),
            commune_code: COMMUNE,
            author_id: "head".into(),
            title: "Tháng hành động".into(),
            texts: serde_json::to_string(&texts).unwrap(),
            transports: "telegram".into(),
            villages: village.to_string(),
            status: tinbao::store::BroadcastStatus::Scheduled,
            send_at: i64::MAX / 2,
            approved_by: Some("officer".into()),
            created_at: 0,
        })
        .await
        .unwrap();
    // Sending, under a lease of this test's (the server's runner keeps off it).
    let now = tinbao::clock::now_ms();
    app.exec(&format!(
        "UPDATE broadcasts SET status = 'sending', started_at = {now}, fanout_until = {} WHERE id = 'lostcursor'",
        now + 600_000
    ))
    .await;
    let row = store.broadcast("lostcursor").await.unwrap().unwrap();
    let (_, step) = store
        .fanout_chunks(&row, 100, 2, now, now + 600_000)
        .await
        .unwrap();
    let written = match engine {
        Engine::Postgres => 200,
        Engine::Sqlite => 100,
    };
    assert_eq!(
        (step.inserted, step.done, step.skipped),
        (written, false, false)
    );
    // The cursor's move is lost; the lease runs out.
    app.exec("UPDATE broadcasts SET fanout_cursor = 0, queued = 0, fanout_until = 0 WHERE id = 'lostcursor'")
        .await;
    let ours = b.fan_out("lostcursor").await.unwrap();
    eventually("the fan-out is done again", || {
        let store = store.clone();
        async move {
            store
                .broadcast("lostcursor")
                .await
                .unwrap()
                .unwrap()
                .fanout_done
                == 1
        }
    })
    .await;
    let rows = app
        .query_count("SELECT COUNT(*) FROM outbox WHERE broadcast_id = 'lostcursor'")
        .await;
    let people = app
        .query_count(
            "SELECT COUNT(DISTINCT subscriber_id) FROM outbox WHERE broadcast_id = 'lostcursor'",
        )
        .await;
    assert_eq!((rows, people), (N, N), "everyone once");
    if ours > 0 {
        assert_eq!(
            ours,
            (N as u64) - written,
            "the redone chunks wrote nothing twice"
        );
    }
    let queued = store.broadcast("lostcursor").await.unwrap().unwrap().queued;
    assert_eq!(queued, N, "each message counted once");
    app.stop().await;
}

#[tokio::test]
async fn a_killed_server_resumes_the_broadcast_without_skipping_or_repeating_anyone() {
    const N: usize = 300;
    let gw = android::FakeAndroid::start("user", "pass").await;
    let secret = "android-webhook-secret";
    let dir = tempfile::tempdir().unwrap();
    let api = gw.base.clone();
    let env = [
        ("TINBAO_SMS__ANDROID__ENABLED", "true"),
        ("TINBAO_SMS__ANDROID__API_URL", api.as_str()),
        ("TINBAO_SMS__ANDROID__USERNAME", "user"),
        ("TINBAO_SMS__ANDROID__PASSWORD", "pass"),
        ("TINBAO_SMS__ANDROID__WEBHOOK_SECRET", secret),
        ("TINBAO_SMS__ANDROID__RATE_PER_SECOND", "100"),
        ("TINBAO_BROADCAST__QUIET_START", "00:00"),
        ("TINBAO_BROADCAST__QUIET_END", "00:00"),
        ("TINBAO_BROADCAST__FANOUT_CHUNK", "100"),
    ];
    let server = Server::start(dir.path(), &env).await;
    let db = format!("sqlite://{}", dir.path().join("var/tinbao.db").display());
    let store = tinbao::store::Store::connect(&db, 2).await.unwrap();
    let village = store.add_village(COMMUNE, "Thôn Bắc").await.unwrap();
    subscribe_by_sms(&server.base, secret, village, N).await;
    gw.wait_for(N, WAIT * 3).await;
    let counts = store.subscriber_counts(&[village]).await.unwrap();
    assert_eq!(counts, vec![(village, "android".to_string(), N as i64)]);
    // An approved broadcast, due now.
    let mut texts = BTreeMap::new();
    texts.insert("vi".to_string(), VI.to_string());
    store
        .insert_broadcast(&tinbao::store::NewBroadcast {
            id: "crashtest".into(),
            commune_code: COMMUNE,
            author_id: "head".into(),
            title: "Tháng hành động".into(),
            texts: serde_json::to_string(&texts).unwrap(),
            transports: "android".into(),
            villages: village.to_string(),
            status: tinbao::store::BroadcastStatus::Scheduled,
            send_at: 0,
            approved_by: Some("officer".into()),
            created_at: 0,
        })
        .await
        .unwrap();
    let is_broadcast = |(_, t): &(String, String)| t.contains("Tháng hành động");
    // Kill it in the middle of sending.
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.sent().iter().filter(|m| is_broadcast(m)).count() < N / 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sending did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let at_kill = gw.sent().iter().filter(|m| is_broadcast(m)).count();
    assert!(at_kill < N, "killed mid-broadcast ({at_kill} of {N})");
    let server = Server::start(dir.path(), &env).await;
    // The killed process's leases run out first (15 s); a busy machine is slow.
    let deadline = tokio::time::Instant::now() + WAIT * 9;
    loop {
        let b = store.broadcast("crashtest").await.unwrap().unwrap();
        if b.status.as_str() == "done" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broadcast did not finish: {b:?}, outbox {:?}, gateway took {}, log: {}",
            store.broadcast_counts("crashtest").await.unwrap(),
            gw.sent().len(),
            std::fs::read_to_string(&server.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every subscriber has exactly one accepted message.
    let mut per: HashMap<String, usize> = HashMap::new();
    for (n, _) in gw.sent().iter().filter(|m| is_broadcast(m)) {
        *per.entry(n.clone()).or_default() += 1;
    }
    assert_eq!(per.len(), N, "nobody skipped");
    assert!(per.values().all(|n| *n == 1), "nobody got two");
    let counts = store.broadcast_counts("crashtest").await.unwrap();
    let sent: i64 = counts
        .iter()
        .filter(|c| c.status == "sent")
        .map(|c| c.count)
        .sum();
    assert_eq!(sent, N as i64);
    drop(server);
    store.close().await;
}

postgres_test!(two_servers_on_postgresql_share_a_broadcast_and_its_rate);
async fn two_servers_on_postgresql_share_a_broadcast_and_its_rate() {
    const N: usize = 120;
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(Engine::Postgres, |c| {
        c.telegram = tg.config();
        c.telegram.rate_per_second = 30;
    })
    .await;
    let second = app.second_instance().await;
    let (head, officer, village) = head_and_officer(&app).await;
    let b = &app.state.broadcasts;
    for i in 0..N {
        b.subscribe(
            Transport::TELEGRAM,
            &(100_000 + i).to_string(),
            village,
            "vi",
        )
        .await
        .unwrap();
    }
    let row = b
        .create(&head, &draft(vec![village], vec![Transport::TELEGRAM]))
        .await
        .unwrap();
    b.approve(&officer, &row.id).await.unwrap();
    wait_done(&app, &row.id).await;
    let sent = tg.sent();
    let mut per: HashMap<i64, usize> = HashMap::new();
    for (c, _) in &sent {
        *per.entry(*c).or_default() += 1;
    }
    assert_eq!(per.len(), N, "everyone reached");
    assert!(per.values().all(|n| *n == 1), "nobody got two");
    assert!(
        tg.max_per_second() <= 30,
        "two processes together kept 30/s: {}",
        tg.max_per_second()
    );
    second.stop_keep_db().await;
    app.stop().await;
}

engine_test!(the_console_writes_previews_approves_and_follows_a_broadcast);
/// The console as village heads and officers use it: the head sees counts (never an
/// address), writes on the compose page, previews recipients and SMS segments, keeps
/// everything typed on an error, cannot reach another village, read a tip or approve its
/// own broadcast; an officer approves; the page follows the progress to the results.
async fn the_console_writes_previews_approves_and_follows_a_broadcast(engine: Engine) {
    use crate::console_support::{element_text, login_as};
    let gw = android::FakeAndroid::start("user", "pass").await;
    let app = spawn_app_with(engine, |c| {
        c.sms.android = gw.config("android-webhook-secret");
        c.broadcast.quiet_start = "00:00".into();
        c.broadcast.quiet_end = "00:00".into();
        c.broadcast.zalo_oa_name = "Công an phường Hoàn Kiếm".into();
        c.broadcast.telegram_bot = "tinbao_hk_bot".into();
    })
    .await;
    let head = login_as(&app, Role::VillageHead, "truongthon", None, Some(COMMUNE)).await;
    let officer = login_as(&app, Role::Officer, "canbo", None, Some(COMMUNE)).await;
    let village = account(&app, &head.id).await.village_id.unwrap();
    let other = app
        .state
        .intake
        .store()
        .add_village(COMMUNE, "Thôn Tây")
        .await
        .unwrap();
    let phones: Vec<String> = (0..3).map(|i| format!("+8490300000{i}")).collect();
    for p in &phones {
        app.state
            .broadcasts
            .subscribe(Transport::ANDROID, p, village, "vi")
            .await
            .unwrap();
    }
    app.api_tip(crate::helpers::tip_json("tin không cho trưởng thôn"))
        .await;
    let tip = app.raw_tip_ids().await[0].clone();
    let get =
        |who: &crate::console_support::Officer, path: &str| who.client.get(app.url(path)).send();

    // Home is the broadcasts page: counts per channel, never an address, no tip.
    let home = get(&head, "/console").await.unwrap();
    assert_eq!(home.headers()["location"], "/console/broadcasts");
    let list = get(&head, "/console/broadcasts").await.unwrap();
    assert_eq!(list.status(), 200);
    let html = list.text().await.unwrap();
    assert!(html.contains(&format!("id=\"village-{village}\"")));
    assert!(!html.contains("Thôn Tây"), "only the head's village");
    assert!(!phones.iter().any(|p| html.contains(&p[3..])), "no address");
    for path in [format!("/console/tips/{tip}"), "/console/queue".into()] {
        assert_eq!(get(&head, &path).await.unwrap().status(), 403, "{path}");
    }

    // Preview: recipients per channel and the SMS cost, everything typed kept.
    let form = |action: &str, villages: &[i64]| {
        let mut f: Vec<(String, String)> = vec![
            ("csrf".into(), head.csrf.clone()),
            ("action".into(), action.into()),
            ("title".into(), "Tháng hành động".into()),
            ("text_vi".into(), VI.into()),
            ("text_en".into(), EN.into()),
            ("channel".into(), "android".into()),
            ("when".into(), "now".into()),
        ];
        f.extend(villages.iter().map(|v| ("village".into(), v.to_string())));
        f
    };
    let post = |f: Vec<(String, String)>| {
        head.client
            .post(app.url("/console/broadcasts/new"))
            .form(&f)
            .send()
    };
    // Post/redirect/get: the preview is a GET of the form held for it (Back and reload
    // never post it again); only this account's session opens it.
    let preview = post(form("preview", &[village])).await.unwrap();
    assert_eq!(preview.status(), 303);
    let shown = preview.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        shown.starts_with("/console/broadcasts/new?draft="),
        "{shown}"
    );
    let preview = get(&head, &shown).await.unwrap();
    assert_eq!(preview.status(), 200);
    let html = preview.text().await.unwrap();
    let again = get(&head, &shown).await.unwrap().text().await.unwrap();
    assert_eq!(
        element_text(&again, "preview-total").as_deref(),
        Some("3"),
        "a reload shows the same preview"
    );
    let theirs = get(&officer, &shown).await.unwrap().text().await.unwrap();
    assert!(
        !theirs.contains("họp thôn 19h ngày 26/6"),
        "another account's session does not open the head's draft"
    );
    assert_eq!(element_text(&html, "preview-total").as_deref(), Some("3"));
    // The Vietnamese text is UCS-2: 86 characters take 2 segments, for 3 people.
    assert_eq!(element_text(&html, "preview-sms").as_deref(), Some("6"));
    assert!(html.contains("86 ký tự · 2 tin SMS"), "the counter");
    assert!(html.contains("họp thôn 19h ngày 26/6"), "the text is kept");

    // Another village: refused, with the text kept and nothing created.
    let refused = post(form("send", &[other])).await.unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("Bạn chỉ gửi được tới thôn của mình"));
    assert!(html.contains("họp thôn 19h ngày 26/6"));
    let bad_time = {
        let mut f = form("send", &[village]);
        f.push(("when".into(), "later".into()));
        f.retain(|(k, v)| !(k == "when" && v == "now"));
        f.push(("send_at".into(), "ngày mai".into()));
        post(f).await.unwrap()
    };
    assert_eq!(bad_time.status(), 422);
    assert!(bad_time
        .text()
        .await
        .unwrap()
        .contains("Thời gian hẹn gửi không đúng"));
    assert!(app
        .state
        .broadcasts
        .list(&account(&app, &head.id).await)
        .await
        .unwrap()
        .is_empty());

    // Saved as a template, then sent for approval.
    let mut tpl = form("template", &[village]);
    tpl.push(("template_name".into(), "Ngày 26/6".into()));
    let saved = post(tpl).await.unwrap();
    assert_eq!(saved.status(), 303);
    let shown = saved.headers()["location"].to_str().unwrap().to_owned();
    let saved = get(&head, &shown).await.unwrap();
    assert_eq!(saved.status(), 200);
    let html = saved.text().await.unwrap();
    assert!(html.contains("Đã lưu mẫu tin"));
    assert!(html.contains("họp thôn 19h ngày 26/6"), "the text is kept");
    // Sent twice (a double click): one broadcast, the same page.
    let mut once_form = form("send", &[village]);
    once_form.push((
        "submission".into(),
        "fedcba9876543210fedcba9876543210".into(),
    ));
    let sent = post(once_form.clone()).await.unwrap();
    assert_eq!(sent.status(), 303);
    let page = sent.headers()["location"].to_str().unwrap().to_owned();
    let id = page.rsplit('/').next().unwrap().to_owned();
    let twice = post(once_form).await.unwrap();
    assert_eq!(twice.headers()["location"].to_str().unwrap(), page);
    assert_eq!(
        app.state
            .broadcasts
            .list(&account(&app, &head.id).await)
            .await
            .unwrap()
            .len(),
        1,
        "one broadcast"
    );
    let html = get(&head, &page).await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"waiting\""));
    assert!(
        !html.contains("approve-form"),
        "no approve button for its author"
    );
    let own = head
        .client
        .post(app.url(&format!("{page}/approve")))
        .form(&[("csrf", head.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 403, "the head cannot approve");

    // The officer sees it waiting and approves; the messages go out.
    let html = get(&officer, "/console/broadcasts")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("chờ bạn duyệt"));
    let approved = officer
        .client
        .post(app.url(&format!("{page}/approve")))
        .form(&[("csrf", officer.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 303);
    let got = gw.wait_for(3, WAIT).await;
    let mut to: Vec<String> = got.iter().map(|(p, _)| p.clone()).collect();
    to.sort();
    assert_eq!(to, phones);
    wait_done(&app, &id).await;
    // The gateway reports two handsets reached; a report for an unknown message
    // changes nothing.
    let mut ids = gw.message_ids();
    ids.sort();
    ids.push("unknown-message".into());
    for (i, mid) in ids.iter().skip(1).enumerate() {
        let body = android::sms_delivered(&format!("dlr-{i}"), mid, &phones[0]);
        let mut req = app
            .client
            .post(app.url("/hooks/sms/android"))
            .header("content-type", "application/json");
        let headers = android::signed_headers(
            "android-webhook-secret",
            &body,
            chrono::Utc::now().timestamp(),
        );
        for (k, v) in headers.iter() {
            req = req.header(k.as_str(), v.to_str().unwrap());
        }
        assert_eq!(req.body(body).send().await.unwrap().status(), 200);
    }
    let progress: serde_json::Value = get(&head, &format!("{page}/progress"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["status"], "done");
    assert_eq!(progress["percent"], 100);
    // Delivered messages are among the sent ones.
    assert_eq!(progress["progress"]["sent"], 3);
    assert_eq!(progress["progress"]["delivered"], 2);
    let html = get(&head, &page).await.unwrap().text().await.unwrap();
    assert_eq!(element_text(&html, "pg-delivered").as_deref(), Some("2"));
    // The results kept for the report follow the reports too.
    let kept: Vec<(String, i64)> = app
        .state
        .broadcasts
        .results(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.status, r.count))
        .collect();
    assert_eq!(kept, vec![("delivered".into(), 2), ("sent".into(), 1)]);
    assert!(html.contains("id=\"results\""), "results kept");
    // The poster: the subscription address as a QR code and the SMS keyword.
    let poster = get(&head, &format!("/console/villages/{village}/poster"))
        .await
        .unwrap();
    assert_eq!(poster.status(), 200);
    let html = poster.text().await.unwrap();
    assert!(html.contains("<svg") && html.contains("id=\"qr-modules\""));
    assert!(html.contains(&format!("/subscribe/{village}")));
    assert!(html.contains(&format!("DK {village}")));
    // It names the accounts, and warns that the address is still the loopback default
    // (these tests leave `public_url` as it is by default).
    assert!(html.contains("tìm “Công an phường Hoàn Kiếm”"), "{html}");
    assert!(html.contains("@tinbao_hk_bot"));
    assert!(app.config.public_url.starts_with("http://127.0.0.1"));
    assert!(html.contains("id=\"poster-default-url\""));
    let foreign = get(&head, &format!("/console/villages/{other}/poster"))
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    app.stop().await;
}
