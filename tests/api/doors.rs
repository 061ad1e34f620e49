//! Every door is limited (issue 11, points 2 to 5 and 14): receipt checks on every route
//! and channel, console logins and their second factor, the subscription form, console
//! sessions, and the messages a refused or failed request shows.

use crate::alerts::SmtpSink;
use crate::channels::{post_twilio, SID, TOKEN, WAIT};
use crate::console_support::{
    client, create_account, extra_session, field, login_as, next_totp_code, totp_code,
};
use crate::fakes::{telegram, twilio};
use crate::helpers::{engine_test, spawn_app_with, tip_json, Engine, TestApp};
use reqwest::multipart::Form;
use std::time::Duration;
use tinbao::accounts::Role;

const UNKNOWN: &str = "1234-1234-1234-1234";

/// A reply through `/status/reply`, as the status page's form sends it.
async fn post_reply(app: &TestApp, receipt: &str, message: &str) -> reqwest::Response {
    let form = Form::new()
        .text("receipt", receipt.to_owned())
        .text("message", message.to_owned())
        .text("lang", "vi");
    app.client
        .post(app.url("/status/reply"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

engine_test!(status_reply_is_a_receipt_check_and_is_limited);
/// 30 wrong receipts on `/status/reply`: the first ten answered, then 429 with
/// `Retry-After` and the localised wait; a right receipt after the limit is still refused
/// (no status page), and so are `/status` and the API.
async fn status_reply_is_a_receipt_check_and_is_limited(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.check_burst = 10;
        c.rate_limit.check_per_hour = 60;
        c.rate_limit.submit_burst = 100;
        c.rate_limit.submit_per_hour = 1000;
    })
    .await;
    // The tip is sent before the limits are spent (the API's submit limit is apart).
    let receipt = app.api_tip(tip_json("tin để tra cứu")).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..30 {
        let res = post_reply(&app, UNKNOWN, "đoán mò").await;
        statuses.push(res.status().as_u16());
        last = Some(res);
    }
    assert!(
        statuses[..10].iter().all(|s| *s == 200),
        "the first ten are answered: {statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|s| *s == 429),
        "the rest are refused: {statuses:?}"
    );
    let last = last.unwrap();
    let retry: u64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let html = last.text().await.unwrap();
    assert!(html.contains("Bạn đã tra cứu quá nhiều lần"), "{html}");
    assert!(!html.contains("{minutes}"));
    assert!(html.contains("đoán mò"), "the typed reply is shown back");

    // The right receipt now: still refused, and nothing of the tip is shown.
    let res = post_reply(&app, &receipt, "tin nhắn thật").await;
    assert_eq!(res.status(), 429);
    let html = res.text().await.unwrap();
    assert!(
        !html.contains("reply-form"),
        "no status page past the limit"
    );
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "one counter for every receipt check");
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(app.api_status(&receipt).await.status(), 429);
    app.stop().await;
}

/// Whether an SMS text says `vi` (SMS texts may lose their accents).
fn says(text: &str, vi: &str) -> bool {
    text.contains(vi) || tinbao::geo::fold(text).contains(&tinbao::geo::fold(vi))
}

engine_test!(chat_and_sms_receipt_checks_are_limited_per_sender);
/// `KT` with a receipt over SMS and over Telegram: the eleventh check from one sender gets
/// the localised "try again in N minutes"; another sender is still answered.
async fn chat_and_sms_receipt_checks_are_limited_per_sender(engine: Engine) {
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let app = spawn_app_with(engine, |c| {
        c.sms.twilio = tw.config("+84900000070");
        c.telegram = tg.config();
        c.outbox.backoff_ms = 50;
        c.rate_limit.enabled = true;
        c.rate_limit.check_burst = 10;
        c.rate_limit.check_per_hour = 60;
    })
    .await;
    let phone = "+84912000111";
    for i in 0..11 {
        let sid = format!("SMkt{i:02}");
        assert_eq!(
            post_twilio(&app, &sid, phone, &format!("KT {UNKNOWN}")).await,
            200
        );
        // One at a time, so the answers come in order.
        let sent = tw.wait_for(i + 1, WAIT).await;
        let text = &sent[i].1;
        if i < 10 {
            assert!(says(text, "Không tìm thấy"), "answer {i}: {text}");
        } else {
            assert!(says(text, "tra cứu quá nhiều lần"), "answer {i}: {text}");
            assert!(!text.contains("{minutes}"));
        }
    }
    assert_eq!(
        post_twilio(&app, "SMkt-other", "+84912000222", &format!("KT {UNKNOWN}")).await,
        200
    );
    let sent = tw.wait_for(12, WAIT).await;
    assert!(
        says(&sent[11].1, "Không tìm thấy"),
        "another sender is answered"
    );

    let chat = 7001;
    for i in 0..11 {
        tg.push_text(chat, &format!("KT {UNKNOWN}"));
        let replies = tg.wait_for(i + 1, WAIT).await;
        let text = &replies[i].1;
        if i < 10 {
            assert!(text.contains("Không tìm thấy"), "chat answer {i}: {text}");
        } else {
            assert!(
                text.contains("tra cứu quá nhiều lần"),
                "chat answer {i}: {text}"
            );
        }
    }
    app.stop().await;
}

/// Posts the login form with a fresh pre-session token.
async fn login_post(app: &TestApp, c: &reqwest::Client, user: &str, pw: &str) -> reqwest::Response {
    let html = c
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = field(&html, "name=\"csrf\"").unwrap();
    c.post(app.url("/console/login"))
        .form(&[("csrf", pre.as_str()), ("username", user), ("password", pw)])
        .send()
        .await
        .unwrap()
}

/// The CSRF token of the TOTP page of a session at that stage.
async fn totp_csrf(app: &TestApp, c: &reqwest::Client) -> String {
    let html = c
        .get(app.url("/console/totp"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    field(&html, "name=\"csrf\"").unwrap()
}

/// A six-digit code that is none of the codes a secret accepts now.
fn wrong_code(secret: &[u8]) -> String {
    let right = [totp_code(secret), next_totp_code(secret)];
    (0..1000)
        .map(|n| format!("{:06}", 314_159 + n))
        .find(|c| !right.contains(c))
        .unwrap()
}

engine_test!(totp_guesses_with_the_right_password_lock_the_account);
/// The right password, then a wrong code, over and over: a right password does not
/// reset the count, so the account locks with a clear message, and a right code is
/// refused while it is locked.
async fn totp_guesses_with_the_right_password_lock_the_account(engine: Engine) {
    let app = spawn_app_with(engine, |_| {}).await;
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let wrong = wrong_code(&a.secret);
    let mut locked_at = None;
    for guess in 0..20 {
        let c = client();
        let res = login_post(&app, &c, "officer", &a.password).await;
        if res.status() == 429 {
            let html = res.text().await.unwrap();
            assert!(html.contains("thử lại sau khoảng"), "{html}");
            assert!(!html.contains("{minutes}"));
            locked_at = Some(guess);
            break;
        }
        assert_eq!(res.headers()["location"], "/console/totp");
        let csrf = totp_csrf(&app, &c).await;
        let res = c
            .post(app.url("/console/totp"))
            .form(&[("csrf", csrf.as_str()), ("code", wrong.as_str())])
            .send()
            .await
            .unwrap();
        assert!(
            [401, 429].contains(&res.status().as_u16()),
            "a wrong code is refused"
        );
        if res.status() == 429 {
            let html = res.text().await.unwrap();
            assert!(
                html.contains("Nhập sai mã xác thực quá nhiều lần"),
                "{html}"
            );
            // Even the right code is refused now, on this very session.
            let res = c
                .post(app.url("/console/totp"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("code", next_totp_code(&a.secret).as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 429, "the right code is refused while locked");
        }
    }
    let locked_at = locked_at.expect("20 guesses lock the account");
    assert!(locked_at <= 5, "locked after {locked_at} guesses");
    app.stop().await;
}

engine_test!(login_and_totp_steps_are_limited_per_client);
/// The in-memory per-client limiter stands in front of the password step and the TOTP
/// step: past the burst, 429 with `Retry-After`, whatever the account.
async fn login_and_totp_steps_are_limited_per_client(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.login_burst = 5;
        c.rate_limit.login_per_hour = 5;
    })
    .await;
    // Two steps: the password and the enrolment code.
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let c = client();
    let res = login_post(&app, &c, "officer", &a.password).await;
    assert_eq!(res.headers()["location"], "/console/totp");
    let csrf = totp_csrf(&app, &c).await;
    let wrong = wrong_code(&a.secret);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let res = c
            .post(app.url("/console/totp"))
            .form(&[("csrf", csrf.as_str()), ("code", wrong.as_str())])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        last = Some(res);
    }
    assert_eq!(statuses, [401, 401, 429], "the TOTP step is limited");
    let last = last.unwrap();
    assert!(last.headers().contains_key("retry-after"));
    let res = login_post(&app, &client(), "someone-else", "whatever").await;
    assert_eq!(res.status(), 429, "and so is the password step");
    assert!(res.headers().contains_key("retry-after"));
    let html = res.text().await.unwrap();
    assert!(html.contains("thử lại sau khoảng") && !html.contains("{minutes}"));
    app.stop().await;
}

/// The session cookie a response sets, if any.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("tinbao_console="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .filter(|v| !v.is_empty())
}

/// A client that sends only this session cookie.
fn with_cookie(app: &TestApp, token: &str) -> reqwest::Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("tinbao_console={token}; Path=/console"),
        &app.base.parse().unwrap(),
    );
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

engine_test!(the_session_id_changes_after_the_totp_step);
/// A session id known before the second factor is worth nothing after it.
async fn the_session_id_changes_after_the_totp_step(engine: Engine) {
    let app = spawn_app_with(engine, |_| {}).await;
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let c = client();
    let res = login_post(&app, &c, "officer", &a.password).await;
    let before = session_cookie(&res).expect("a session at the TOTP stage");
    let csrf = totp_csrf(&app, &c).await;
    let res = c
        .post(app.url("/console/totp"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", next_totp_code(&a.secret).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console");
    let after = session_cookie(&res).expect("a new session id after the TOTP step");
    assert_ne!(before, after);
    let old = with_cookie(&app, &before);
    let res = old.get(app.url("/console/queue")).send().await.unwrap();
    assert_eq!(
        res.headers()["location"],
        "/console/login",
        "the old id is dead"
    );
    let new = with_cookie(&app, &after);
    assert_eq!(
        new.get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the browser got the new cookie"
    );
    app.stop().await;
}

/// The CSRF token of a full session (from the password page).
async fn full_csrf(app: &TestApp, c: &reqwest::Client) -> String {
    let html = c
        .get(app.url("/console/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    field(&html, "name=\"csrf\"").unwrap()
}

engine_test!(changing_the_password_needs_the_current_one_and_ends_other_sessions);
/// A voluntary password change without the current password is refused (what was typed
/// is not lost: nothing changes); with it, the account's other sessions end, this one
/// stays.
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(engine: Engine) {
    let app = spawn_app_with(engine, |_| {}).await;
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let (other, _) = extra_session(&app, &a.id).await;
    assert_eq!(
        other
            .get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let csrf = full_csrf(&app, &a.client).await;
    let new = "một mật khẩu mới hẳn";
    let res = a
        .client
        .post(app.url("/console/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("password", new),
            ("password_again", new),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "no change without the current password");
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Mật khẩu hiện tại không đúng"));
    let res = a
        .client
        .post(app.url("/console/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current_password", "không phải mật khẩu"),
            ("password", new),
            ("password_again", new),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "nor with a wrong one");
    assert_eq!(
        other
            .get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "a refused change ends nothing"
    );
    let res = a
        .client
        .post(app.url("/console/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current_password", a.password.as_str()),
            ("password", new),
            ("password_again", new),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = other.get(app.url("/console/queue")).send().await.unwrap();
    assert_eq!(
        res.headers()["location"],
        "/console/login",
        "the other session ended"
    );
    assert_eq!(
        a.client
            .get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "this session goes on"
    );
    // The new password is the one that logs in now.
    let res = login_post(&app, &client(), "officer", new).await;
    assert_eq!(res.headers()["location"], "/console/totp");
    app.stop().await;
}

/// Reads a live event stream until it ends; `false` if it is still open after 20 s.
async fn stream_ends(mut res: reqwest::Response) -> bool {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = res.chunk().await {}
    })
    .await
    .is_ok()
}

engine_test!(live_events_stop_after_logout_and_when_the_account_is_disabled);
/// `/console/events` stops streaming once its session is logged out, or once its
/// account is disabled.
async fn live_events_stop_after_logout_and_when_the_account_is_disabled(engine: Engine) {
    let app = spawn_app_with(engine, |_| {}).await;
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let csrf = full_csrf(&app, &a.client).await;
    let res = a
        .client
        .get(app.url("/console/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res2 = a
        .client
        .get(app.url("/console/events"))
        .send()
        .await
        .unwrap();
    let res = a
        .client
        .post(app.url("/console/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, res));
    let (status, res) = res.unwrap();
    assert_eq!(status, 303);
    assert!(stream_ends(res).await, "the stream ends after logout");
    assert!(stream_ends(res2).await, "every stream of the session ends");

    let b = login_as(&app, Role::Officer, "officer2", None, Some(70)).await;
    let res = b
        .client
        .get(app.url("/console/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Disabled by the store alone, as another server process would see it.
    app.state
        .intake
        .store()
        .set_disabled(&b.id, true, tinbao::clock::now_ms())
        .await
        .unwrap();
    assert!(
        stream_ends(res).await,
        "the stream ends once the account is disabled"
    );
    app.stop().await;
}

/// The subscription form's token and its cookie, as a browser gets them with the page.
pub(crate) async fn subscribe_token(app: &TestApp, village: i64) -> (String, String) {
    let res = app
        .client
        .get(app.url(&format!("/subscribe/{village}")))
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("tinbao_subscribe="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .expect("the page sets the form's cookie");
    let html = res.text().await.unwrap();
    let token = field(&html, "name=\"form_token\"").expect("the form carries its token");
    assert_eq!(cookie, token);
    (format!("tinbao_subscribe={cookie}"), token)
}

/// Posts the subscription form with a token (or none).
async fn post_subscribe(
    app: &TestApp,
    village: i64,
    token: Option<&(String, String)>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    let mut req = app.client.post(app.url(&format!("/subscribe/{village}")));
    if let Some((cookie, token)) = token {
        form.push(("form_token", token));
        req = req.header("cookie", cookie);
    }
    req.form(&form).send().await.unwrap()
}

async fn emails_queued(app: &TestApp) -> i64 {
    let counts = app.state.intake.store().outbox_counts().await.unwrap();
    counts.iter().map(|(_, n)| n).sum()
}

engine_test!(subscribing_by_email_is_guarded_and_mails_once);
/// 50 posts of one address: one confirmation email, the same answer each time; a blind
/// post (no token) and a filled honeypot send nothing; an address already subscribed
/// gets the same answer as a new one.
async fn subscribing_by_email_is_guarded_and_mails_once(engine: Engine) {
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(engine, |c| {
        c.smtp.enabled = true;
        c.smtp.port = smtp.port;
        c.outbox.backoff_ms = 50;
    })
    .await;
    let (head, _) = create_account(&app, Role::VillageHead, "truongthon", None, Some(6172)).await;
    let village = app
        .state
        .intake
        .store()
        .account(&head)
        .await
        .unwrap()
        .unwrap()
        .village_id
        .unwrap();

    // Blind: no token, or a token without its cookie.
    let res = post_subscribe(&app, village, None, &[("email", "mu@example.test")]).await;
    assert_eq!(res.status(), 403);
    let html = res.text().await.unwrap();
    assert!(html.contains("mu@example.test"), "what was typed is kept");
    let (_, token) = subscribe_token(&app, village).await;
    let res = app
        .client
        .post(app.url(&format!("/subscribe/{village}")))
        .form(&[("email", "mu@example.test"), ("form_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The honeypot.
    let t = subscribe_token(&app, village).await;
    let res = post_subscribe(
        &app,
        village,
        Some(&t),
        &[("email", "bot@example.test"), ("website", "http://spam")],
    )
    .await;
    assert_eq!(res.status(), 422);
    assert_eq!(emails_queued(&app).await, 0, "nothing sent so far");

    // The same address 50 times: one email, 50 identical answers.
    let mut answers = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let t = subscribe_token(&app, village).await;
        let res = post_subscribe(&app, village, Some(&t), &[("email", "Lan@Example.test")]).await;
        let res = crate::helpers::follow_filed(&app.client, &app.base, res).await;
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        let notice = html
            .lines()
            .find(|l| l.contains("Sắp xong"))
            .expect("the notice")
            .to_owned();
        answers.insert(notice);
    }
    assert_eq!(answers.len(), 1, "the same answer every time");
    assert_eq!(emails_queued(&app).await, 1, "one confirmation email");
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);

    // Confirmed, the address gets the very same answer and no email.
    let body = &mails[0].body;
    let start = body.find("/subscribe/confirm").unwrap();
    let rest = &body[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let confirm = app.client.post(app.url(&rest[..end])).send().await.unwrap();
    let confirm = crate::helpers::follow_filed(&app.client, &app.base, confirm).await;
    assert_eq!(confirm.status(), 200);
    let t = subscribe_token(&app, village).await;
    let res = post_subscribe(&app, village, Some(&t), &[("email", "lan@example.test")]).await;
    let res = crate::helpers::follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        answers.iter().all(|a| html.contains(a.as_str())),
        "same answer"
    );
    assert_eq!(emails_queued(&app).await, 1);
    app.stop().await;
}

engine_test!(pending_subscriptions_are_bounded_and_purged);
/// A village with as many pending subscriptions as allowed refuses more (no email); once
/// they lapse they are deleted and a new one is mailed.
async fn pending_subscriptions_are_bounded_and_purged(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.smtp.enabled = true;
        c.smtp.port = crate::helpers::free_port();
    })
    .await;
    let (head, _) = create_account(&app, Role::VillageHead, "truongthon", None, Some(6172)).await;
    let store = app.state.intake.store().clone();
    let village = store
        .account(&head)
        .await
        .unwrap()
        .unwrap()
        .village_id
        .unwrap();
    let subs: Vec<_> = (0..tinbao::broadcast::MAX_PENDING_PER_VILLAGE)
        .map(|i| {
            let mut s = app.state.broadcasts.new_subscriber(
                tinbao::channels::Transport::EMAIL,
                &format!("p{i}@example.test"),
                village,
                6172,
                "vi",
            );
            s.status = "pending";
            s
        })
        .collect();
    store.insert_subscribers(&subs).await.unwrap();
    let t = subscribe_token(&app, village).await;
    let res = post_subscribe(&app, village, Some(&t), &[("email", "new@example.test")]).await;
    assert_eq!(res.status(), 503, "too many waiting");
    assert!(
        res.text().await.unwrap().contains("new@example.test"),
        "kept"
    );
    assert_eq!(emails_queued(&app).await, 0);
    // A day later they have lapsed: purged, and the new address is mailed.
    app.exec(&format!(
        "UPDATE subscribers SET updated_at = updated_at - {}",
        tinbao::broadcast::PENDING_EMAIL_MS + 60_000
    ))
    .await;
    let t = subscribe_token(&app, village).await;
    let res = post_subscribe(&app, village, Some(&t), &[("email", "new@example.test")]).await;
    assert_eq!(
        res.status(),
        303,
        "taken, and answered by the village's page"
    );
    assert_eq!(emails_queued(&app).await, 1);
    let counts = store.pending_subscriber_counts(village).await.unwrap();
    assert_eq!(counts, (1, 1), "the lapsed ones are gone");
    app.stop().await;
}

engine_test!(village_lookups_are_limited_per_client);
/// The form's village look-up (`/api/v1/villages`) is a door too: past the per-client
/// burst it answers 429 with `Retry-After` and the localised wait; another client is not
/// held back by the first.
async fn village_lookups_are_limited_per_client(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.lookup_burst = 3;
        c.rate_limit.lookup_per_hour = 3;
        c.trust_forwarded_for = true;
    })
    .await;
    let store = app.state.intake.store().clone();
    store.add_village(70, "Thôn Đông").await.unwrap();
    let lookup = |from: &'static str| {
        app.client
            .get(app.url("/api/v1/villages?commune=70"))
            .header("x-forwarded-for", from)
            .header("accept-language", "vi")
            .send()
    };
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let res = lookup("203.0.113.7").await.unwrap();
        statuses.push(res.status().as_u16());
        last = Some(res);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let last = last.unwrap();
    assert!(last.headers().contains_key("retry-after"));
    let body: serde_json::Value = last.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("tra cứu danh sách"),
        "{body}"
    );
    let other = lookup("203.0.113.8").await.unwrap();
    assert_eq!(other.status(), 200);
    let names: Vec<String> = other.json().await.unwrap();
    assert_eq!(names, ["Thôn Đông"]);
    app.stop().await;
}

engine_test!(subscribing_is_limited_per_client);
/// Past the per-client burst the form answers 429 with `Retry-After`, keeps the address,
/// and sends nothing.
async fn subscribing_is_limited_per_client(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.send_burst = 3;
        c.rate_limit.send_per_hour = 3;
        c.smtp.enabled = true;
        c.smtp.port = crate::helpers::free_port();
    })
    .await;
    let (head, _) = create_account(&app, Role::VillageHead, "truongthon", None, Some(6172)).await;
    let store = app.state.intake.store().clone();
    let village = store
        .account(&head)
        .await
        .unwrap()
        .unwrap()
        .village_id
        .unwrap();
    let mut statuses = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let t = subscribe_token(&app, village).await;
        let email = format!("a{i}@example.test");
        let res = post_subscribe(&app, village, Some(&t), &[("email", email.as_str())]).await;
        statuses.push(res.status().as_u16());
        last = Some(res);
    }
    assert_eq!(statuses, [303, 303, 303, 429, 429]);
    let last = last.unwrap();
    assert!(last.headers().contains_key("retry-after"));
    let html = last.text().await.unwrap();
    assert!(html.contains("a4@example.test"), "what was typed is kept");
    assert!(html.contains("phút") && !html.contains("{minutes}"));
    assert_eq!(emails_queued(&app).await, 3);
    app.stop().await;
}

engine_test!(api_limits_and_failed_checks_say_what_happened);
/// The API's 429 for tips has its own text with the minutes filled; a status check that
/// fails says the tip is safe, never that it was not saved.
async fn api_limits_and_failed_checks_say_what_happened(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.submit_burst = 1;
        c.rate_limit.submit_per_hour = 1;
    })
    .await;
    let receipt = app.api_tip(tip_json("tin đầu tiên")).await;
    for lang in ["vi", "en"] {
        let res = app
            .client
            .post(app.url("/api/v1/tips"))
            .header("accept-language", lang)
            .json(&tip_json("tin thứ hai"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
        let v: serde_json::Value = res.json().await.unwrap();
        let message = v["message"].as_str().unwrap();
        assert!(!message.contains('{'), "{message}");
        assert!(message.chars().any(|c| c.is_ascii_digit()), "{message}");
        let check_text = if lang == "vi" { "tra cứu" } else { "checks" };
        assert!(
            !message.contains(check_text),
            "not the receipt-check text: {message}"
        );
    }

    // Break what a status check reads: the tip's sealed data no longer opens.
    app.exec("UPDATE tips SET wrapped_key = NULL").await;
    for (lang, safe) in [("vi", "an toàn"), ("en", "safe")] {
        let res = app
            .client
            .post(app.url("/api/v1/tips/status"))
            .header("accept-language", lang)
            .json(&serde_json::json!({ "receipt": receipt }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let v: serde_json::Value = res.json().await.unwrap();
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(safe), "{message}");
        assert!(
            !message.contains("CHƯA") && !message.contains("NOT"),
            "{message}"
        );
        let res = app
            .client
            .post(app.url(&format!("/status?lang={lang}")))
            .form(&[("receipt", receipt.as_str()), ("lang", lang)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let html = res.text().await.unwrap();
        assert!(html.contains(safe), "{html}");
        assert!(!html.contains("CHƯA được lưu") && !html.contains("NOT saved"));
    }
    app.stop().await;
}
