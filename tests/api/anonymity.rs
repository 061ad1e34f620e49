//! Anonymity and durability, checked on the real binary: nothing a tipster typed, no
//! receipt and no client address reaches the database files or the log; a receipt shown is
//! a tip kept, even when the process is killed.

use crate::channels::{eventually, post_twilio, SID, TOKEN, WAIT};
use crate::fakes::{telegram, twilio};
use crate::helpers::*;
use reqwest::multipart::Form;
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use tinbao::channels::Transport;
use tinbao::crypto::Receipt;

const CANARY: &str = "CANARY-7f3a9c-Hoàng-Văn-Thụ";

fn hex(bytes: &[u8]) -> (String, String) {
    let lower: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (lower.clone(), lower.to_uppercase())
}

/// Every form in which a secret could sit in a file.
fn assert_absent(what: &str, haystack: &[u8], secrets: &[&str]) {
    for s in secrets {
        let (lo, up) = hex(s.as_bytes());
        for needle in [s.to_string(), lo, up] {
            if let Some(at) = haystack
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                let from = at.saturating_sub(200);
                let to = (at + 200).min(haystack.len());
                panic!(
                    "{what} contains {needle:?}: …{}…",
                    String::from_utf8_lossy(&haystack[from..to])
                );
            }
        }
    }
}

engine_test!(canaries_receipts_and_addresses_never_reach_the_database_or_the_log);
async fn canaries_receipts_and_addresses_never_reach_the_database_or_the_log(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = Form::new()
        .text("category", "dealing")
        .text("province", "1")
        .text("commune", "70")
        .text("village", format!("thôn {CANARY}"))
        .text("place_details", format!("nơi {CANARY}"))
        .text("occurred_at", format!("lúc {CANARY}"))
        .text("description", format!("mô tả {CANARY}"))
        .text("contact_opt_in", "1")
        .text("contact", format!("0912345678 {CANARY}"))
        .text("action", "submit");
    let res = client
        .post(format!("{}/tips", server.base))
        .header("user-agent", format!("UA-{CANARY}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let html = follow_filed(&client, &server.base, res)
        .await
        .text()
        .await
        .unwrap();
    let receipt = crate::tips::receipt_from(&html);
    let digits: String = receipt.chars().filter(char::is_ascii_digit).collect();
    let reply = Form::new()
        .text("receipt", receipt.clone())
        .text("message", format!("trả lời {CANARY}"));
    let res = client
        .post(format!("{}/status/reply", server.base))
        .multipart(reply)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = client
        .post(format!("{}/status", server.base))
        .form(&[("receipt", &receipt)])
        .send()
        .await
        .unwrap();
    let res = follow_filed(&client, &server.base, res).await;
    assert!(res
        .text()
        .await
        .unwrap()
        .contains(&format!("trả lời {CANARY}")));
    let log = server.kill();

    let secrets = [
        CANARY,
        "0912345678",
        receipt.as_str(),
        digits.as_str(),
        "127.0.0.1",
    ];
    let log_text = std::fs::read(&log).unwrap();
    assert_absent("the log", &log_text, &secrets);
    match engine {
        Engine::Sqlite => {
            let var = dir.path().join("var");
            let mut seen = 0;
            for name in ["tinbao.db", "tinbao.db-wal", "tinbao.db-shm"] {
                if let Ok(bytes) = std::fs::read(var.join(name)) {
                    seen += bytes.len();
                    assert_absent(name, &bytes, &secrets);
                }
            }
            assert!(seen > 0, "the database files exist");
        }
        Engine::Postgres => {
            let pg = pg.as_ref().unwrap();
            let out = std::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&pg.url)
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                contains(&out.stdout, b"COPY public.tips"),
                "the dump has the tips"
            );
            assert_absent("the PostgreSQL dump", &out.stdout, &secrets);
        }
    }
}

engine_test!(a_receipt_shown_is_a_tip_kept_even_after_sigkill);
async fn a_receipt_shown_is_a_tip_kept_even_after_sigkill(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = client.clone();
        let url = format!("{}/api/v1/tips", server.base);
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .json(&tip_json(&format!("tin số {i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            res.json::<serde_json::Value>().await.unwrap()["receipt"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap());
    }
    // Killed the instant the last receipt was shown: no graceful shutdown, no flush.
    server.kill();
    let server = Server::start(dir.path(), &env).await;
    for r in &receipts {
        let res = client
            .post(format!("{}/api/v1/tips/status", server.base))
            .json(&serde_json::json!({ "receipt": r }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "{engine:?}: a tip whose receipt was shown is there"
        );
    }
    drop(server);
}

// ------------------------------------------------- pseudonyms, receipts, fail-closed reads

const TIP_NUMBER: &str = "+84900000070";

/// One row of a table: every column's value as bytes (blobs as stored, text as UTF-8,
/// numbers as written); NULL is empty.
type DumpRow = BTreeMap<String, Vec<u8>>;

/// Every row of every table of the app's database: a logical dump of the whole of it,
/// on either engine.
async fn dump_all(app: &TestApp) -> Vec<(String, DumpRow)> {
    let mut out = Vec::new();
    match app.engine {
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.config.database_url())
                .await
                .unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                let list = cols
                    .iter()
                    .map(|c| format!("hex(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let rows = sqlx::query(&format!("SELECT {list} FROM \"{t}\""))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                for r in rows {
                    let mut row = DumpRow::new();
                    for (i, col) in cols.iter().enumerate() {
                        let h: Option<String> = r.try_get(i).unwrap();
                        row.insert(col.clone(), hex::decode(h.unwrap_or_default()).unwrap());
                    }
                    out.push((t.clone(), row));
                }
            }
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.pg.as_ref().unwrap().url)
                .await
                .unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            for t in tables {
                let cols: Vec<String> = sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(&t)
                .fetch_all(&mut c)
                .await
                .unwrap();
                let list = cols
                    .iter()
                    .map(|c| format!("\"{c}\"::text"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let rows = sqlx::query(&format!("SELECT {list} FROM \"{t}\""))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                for r in rows {
                    let mut row = DumpRow::new();
                    for (i, col) in cols.iter().enumerate() {
                        let v: Option<String> = r.try_get(i).unwrap();
                        let v = v.unwrap_or_default();
                        // bytea reads as \x and its hex.
                        let bytes = match v.strip_prefix("\\x").map(hex::decode) {
                            Some(Ok(b)) => b,
                            _ => v.into_bytes(),
                        };
                        row.insert(col.clone(), bytes);
                    }
                    out.push((t.clone(), row));
                }
            }
        }
    }
    out
}

/// The values of one column of one table in a dump.
fn column(dump: &[(String, DumpRow)], table: &str, col: &str) -> Vec<Vec<u8>> {
    dump.iter()
        .filter(|(t, _)| t == table)
        .filter_map(|(_, r)| r.get(col).cloned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Where in a dump `needle` occurs, as raw bytes or as lower- or upper-case hex.
fn places(dump: &[(String, DumpRow)], needle: &[u8]) -> Vec<String> {
    let lo: String = needle.iter().map(|b| format!("{b:02x}")).collect();
    let up = lo.to_uppercase();
    let mut at = Vec::new();
    for (t, row) in dump {
        for (c, v) in row {
            if [needle, lo.as_bytes(), up.as_bytes()]
                .iter()
                .any(|n| contains(v, n))
            {
                at.push(format!("{t}.{c}"));
            }
        }
    }
    at.sort();
    at.dedup();
    at
}

/// Everything the server's keys open in the database: conversations, inbox events,
/// outbox messages, subscribers' addresses, and every tip's sealed fields, reply address
/// and messages.
async fn opened_sealed(app: &TestApp, dump: &[(String, DumpRow)]) -> Vec<(String, Vec<u8>)> {
    let keys = app.state.intake.keys();
    let text = |r: &DumpRow, c: &str| String::from_utf8(r[c].clone()).unwrap();
    let mut out = Vec::new();
    let mut open = |what: &str, kind: &str, id: &str, sealed: &[u8]| {
        if sealed.is_empty() {
            return;
        }
        let plain = keys
            .open_record(kind, id, sealed)
            .unwrap_or_else(|_| panic!("{what} opens with the server's keys"));
        out.push((what.to_owned(), plain));
    };
    for (t, r) in dump {
        match t.as_str() {
            "chat_sessions" => open(t, "dialog", &hex::encode(&r["sender"]), &r["state"]),
            "inbox" => open(t, "inbox", &text(r, "ref"), &r["event"]),
            "outbox" => {
                open(
                    "outbox.recipient",
                    "outbox-to",
                    &text(r, "id"),
                    &r["recipient"],
                );
                open("outbox.body", "outbox-body", &text(r, "id"), &r["body"]);
            }
            "subscribers" => open(t, "subscriber", &hex::encode(&r["sender"]), &r["address"]),
            _ => {}
        }
    }
    let intake = &app.state.intake;
    for (t, r) in dump {
        if t != "tips" {
            continue;
        }
        let id = text(r, "id");
        let tip = intake.open_tip(&id).await.unwrap().expect("the tip opens");
        let fields = [
            Some(tip.description),
            tip.place_details,
            tip.village_text,
            tip.occurred_at,
            tip.contact,
        ];
        for f in fields.into_iter().flatten() {
            out.push(("tips (opened)".into(), f.into_bytes()));
        }
        for m in intake.conversation(&tip.row).await.unwrap() {
            out.push(("tip_messages (opened)".into(), m.text.into_bytes()));
        }
    }
    out
}

/// No byte of the database, nor anything its sealed columns hold, has the receipt.
async fn assert_receipt_nowhere(app: &TestApp, receipt: &Receipt, when: &str) {
    let digits = receipt.digits().to_owned();
    let shown = receipt.to_string();
    let spaced = shown.replace('-', " ");
    let dump = dump_all(app).await;
    let engine = app.engine;
    for needle in [&digits, &shown, &spaced] {
        let at = places(&dump, needle.as_bytes());
        assert!(at.is_empty(), "[{engine:?}] {when}: {needle} in {at:?}");
    }
    for (what, plain) in opened_sealed(app, &dump).await {
        for needle in [&digits, &shown, &spaced] {
            assert!(
                !contains(&plain, needle.as_bytes()),
                "[{engine:?}] {when}: {what} opens to the receipt: {}",
                String::from_utf8_lossy(&plain)
            );
        }
    }
}

/// The app with a fake Telegram and a fake Twilio number for commune 70.
async fn chat_app(engine: Engine) -> (TestApp, telegram::FakeTelegram, twilio::FakeTwilio) {
    let tg = telegram::FakeTelegram::start("123456:TEST-token_abc").await;
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let app = spawn_app_with(engine, |c| {
        c.telegram = tg.config();
        c.sms.twilio = tw.config(TIP_NUMBER);
        c.sms.numbers = vec![tinbao::config::SmsNumber {
            number: TIP_NUMBER.into(),
            commune: 70,
        }];
        c.outbox.backoff_ms = 50;
    })
    .await;
    (app, tg, tw)
}

/// Waits until no message waits in the outbox.
async fn outbox_settled(app: &TestApp) {
    let store = app.state.intake.store().clone();
    eventually("every queued message settled", || {
        let store = store.clone();
        async move {
            store
                .outbox_counts()
                .await
                .unwrap()
                .iter()
                .all(|(status, _)| status != "queued")
        }
    })
    .await;
}

/// The receipt in a message: its only run of 16 digits (grouped by spaces or dashes).
fn receipt_in(text: &str) -> Receipt {
    text.split(|c: char| !(c.is_ascii_digit() || c == ' ' || c == '-'))
        .map(|part| {
            part.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .find(|d| d.len() == 16)
        .and_then(|d| Receipt::parse(&d).ok())
        .unwrap_or_else(|| panic!("a receipt in {text:?}"))
}

const SMS_TIP: &str = "TIN Nhà số 12 ngõ 3 có người bán ma túy đá buổi tối";

engine_test!(one_person_who_tips_and_subscribes_shares_no_pseudonym_and_opting_out_deletes);
async fn one_person_who_tips_and_subscribes_shares_no_pseudonym_and_opting_out_deletes(
    engine: Engine,
) {
    let (app, tg, tw) = chat_app(engine).await;
    let store = app.state.intake.store().clone();
    let village = store.add_village(70, "Thôn Đông").await.unwrap();
    let dk = format!("DK {village}");
    // One phone sends a tip by SMS, then subscribes to its village.
    let phone = "+84912345678";
    assert_eq!(post_twilio(&app, "SMp1", phone, SMS_TIP).await, 200);
    tw.wait_for(1, WAIT).await;
    assert_eq!(post_twilio(&app, "SMp2", phone, &dk).await, 200);
    assert!(tw.wait_for(2, WAIT).await[1].1.contains("Thôn Đông"));
    // One Telegram chat talks to the bot, then subscribes.
    let chat = 5151;
    tg.push_text(chat, "/start");
    tg.wait_for(1, WAIT).await;
    tg.push_text(chat, &dk);
    assert!(tg.wait_for(2, WAIT).await[1].1.contains("Thôn Đông"));
    outbox_settled(&app).await;

    let dump = dump_all(&app).await;
    let subscribers = column(&dump, "subscribers", "sender");
    assert_eq!(subscribers.len(), 2, "[{engine:?}] both subscribed");
    let mut linked = column(&dump, "tip_contacts", "sender");
    linked.extend(column(&dump, "chat_sessions", "sender"));
    let keys = app.state.intake.keys();
    let sms_sender = keys.sender_pseudonym(Transport::TWILIO.as_str(), phone);
    let tg_sender = keys.sender_pseudonym(Transport::TELEGRAM.as_str(), &chat.to_string());
    assert!(linked.contains(&sms_sender) && linked.contains(&tg_sender));
    // No value of the subscriptions is anywhere but in them, and no sender pseudonym of
    // a tip or a conversation is among them.
    for s in &subscribers {
        let at = places(&dump, s);
        assert!(
            at.iter().all(|p| p.starts_with("subscribers.")),
            "[{engine:?}] a subscriber pseudonym also in {at:?}"
        );
    }
    for l in &linked {
        let at = places(&dump, l);
        assert!(
            !at.iter().any(|p| p.starts_with("subscribers.")),
            "[{engine:?}] a sender pseudonym is a subscriber's: {at:?}"
        );
    }
    // Still found again by the person's own address.
    let b = &app.state.broadcasts;
    assert_eq!(
        b.subscriptions(Transport::TWILIO, phone)
            .await
            .unwrap()
            .len(),
        1
    );

    // Opting out (SMS STOP, the bot's stop word) leaves no row at all.
    assert_eq!(post_twilio(&app, "SMp3", phone, "STOP").await, 200);
    tg.push_text(chat, "stop");
    let app_ref = &app;
    eventually("both opt-outs delete their subscriptions", || async move {
        column(&dump_all(app_ref).await, "subscribers", "id").is_empty()
    })
    .await;
    assert!(b
        .subscriptions(Transport::TWILIO, phone)
        .await
        .unwrap()
        .is_empty());
    app.stop().await;
}

engine_test!(subscriptions_stored_before_are_rekeyed_once_at_start_up);
async fn subscriptions_stored_before_are_rekeyed_once_at_start_up(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let keys = app.state.intake.keys();
    let village = store.add_village(70, "Thôn Đông").await.unwrap();
    let phone = "+84933000003";
    // A subscription as earlier versions stored it: the sender pseudonym, the address
    // sealed bound to it; and a database that never ran the re-keying.
    let old = keys.sender_pseudonym(Transport::TWILIO.as_str(), phone);
    let sub = tinbao::store::NewSubscriber {
        village_id: village,
        commune_code: 70,
        transport: Transport::TWILIO.as_str().into(),
        address: keys.seal_record("subscriber", &hex::encode(&old), phone.as_bytes()),
        sender: old.clone(),
        language: "vi".into(),
        status: "active",
        now: tinbao::clock::now_ms(),
    };
    assert_eq!(store.insert_subscribers(&[sub]).await.unwrap(), 1);
    app.exec("DELETE FROM meta WHERE name = 'subscriber_pseudonyms_v2'")
        .await;
    let before = app
        .state
        .broadcasts
        .subscriptions(Transport::TWILIO, phone)
        .await
        .unwrap();
    assert!(
        before.is_empty(),
        "[{engine:?}] the old pseudonym is not the new one"
    );

    // The next start re-keys it: found by the address, its address still opens.
    let second = app.second_instance().await;
    let b = &second.state.broadcasts;
    let rows = b.subscriptions(Transport::TWILIO, phone).await.unwrap();
    assert_eq!(rows.len(), 1, "[{engine:?}] re-keyed");
    assert_eq!(rows[0].sender, keys.subscriber_pseudonym_of(&old));
    assert_ne!(rows[0].sender, old);
    assert_eq!(
        tinbao::broadcast::open_subscriber_address(keys, &rows[0]).as_deref(),
        Some(phone)
    );
    second.stop_keep_db().await;
    // Once only: another start changes nothing.
    let third = app.second_instance().await;
    let again = third
        .state
        .broadcasts
        .subscriptions(Transport::TWILIO, phone)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sender, rows[0].sender);
    assert_eq!(
        tinbao::broadcast::rekey_subscribers(&store, keys)
            .await
            .unwrap(),
        0
    );
    third.stop_keep_db().await;
    app.stop().await;
}

engine_test!(a_chat_or_sms_receipt_once_delivered_is_nowhere_but_as_its_hmac);
async fn a_chat_or_sms_receipt_once_delivered_is_nowhere_but_as_its_hmac(engine: Engine) {
    let (app, tg, tw) = chat_app(engine).await;
    // A tip by SMS: the receipt goes back by SMS (after one failed try).
    tw.fail_next(1, twilio::Failure::Http500);
    let phone = "+84912345678";
    assert_eq!(post_twilio(&app, "SMr1", phone, SMS_TIP).await, 200);
    let sent = tw.wait_for(1, WAIT).await;
    let receipt = receipt_in(&sent[0].1);
    assert!(
        app.api_status(&receipt.to_string())
            .await
            .status()
            .is_success(),
        "the receipt names the tip"
    );
    outbox_settled(&app).await;
    assert_receipt_nowhere(&app, &receipt, "after the receipt was sent").await;

    // From a Telegram chat, the tipster adds to the tip by its receipt: the conversation
    // waits for the text knowing which tip.
    let chat = 6161;
    tg.push_text(chat, "tl");
    tg.wait_for(1, WAIT).await;
    tg.push_text(chat, &receipt.to_string());
    tg.wait_for(2, WAIT).await;
    assert_receipt_nowhere(&app, &receipt, "while the chat waits for the text").await;
    tg.push_text(chat, "Thêm: xe máy biển 29A-123");
    let answers = tg.wait_for(3, WAIT).await;
    assert!(answers[2].1.contains("Đã gửi"), "{answers:?}");
    let tip_id = app.raw_tip_ids().await[0].clone();
    let row = app
        .state
        .intake
        .store()
        .tip(&tip_id)
        .await
        .unwrap()
        .unwrap();
    assert!(app
        .state
        .intake
        .conversation(&row)
        .await
        .unwrap()
        .iter()
        .any(|m| m.author == "tipster" && m.text.contains("29A-123")));
    // A status check by SMS with the receipt.
    assert_eq!(
        post_twilio(&app, "SMr2", phone, &format!("KT {receipt}")).await,
        200
    );
    tw.wait_for(2, WAIT).await;
    outbox_settled(&app).await;
    assert_receipt_nowhere(&app, &receipt, "after follow-ups").await;
    app.stop().await;
}

engine_test!(a_tip_or_photo_whose_reading_cannot_be_audited_is_not_shown);
async fn a_tip_or_photo_whose_reading_cannot_be_audited_is_not_shown(engine: Engine) {
    use base64::Engine as _;
    let app = spawn_app(engine).await;
    let mut tip = tip_json(&format!("mô tả {CANARY}"));
    tip["photos"] =
        serde_json::json!(
            [base64::engine::general_purpose::STANDARD.encode(jpeg_with_gps(40, 30))]
        );
    app.api_tip(tip).await;
    let id = app.raw_tip_ids().await[0].clone();
    let photo = app.state.intake.store().attachments(&id).await.unwrap()[0]
        .id
        .clone();
    let jpeg = app
        .state
        .intake
        .open_attachment(&id, &photo)
        .await
        .unwrap()
        .unwrap();
    let (account, _) = crate::console_support::create_account(
        &app,
        tinbao::accounts::Role::Officer,
        "canbo",
        None,
        Some(70),
    )
    .await;
    let (officer, csrf) = crate::console_support::extra_session(&app, &account).await;
    let page = format!("/console/tips/{id}");
    let picture = format!("/console/tips/{id}/photos/{photo}");
    // Readable while the audit log takes entries.
    let res = officer.get(app.url(&page)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains(CANARY));
    let res = officer.get(app.url(&picture)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), jpeg.as_slice());

    // The audit log refuses every entry about a tip.
    let refuse: &[&str] = match engine {
        Engine::Sqlite => &[
            "CREATE TRIGGER refuse_tip_audit BEFORE INSERT ON audit_log \
             WHEN NEW.action LIKE 'tip.%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
        Engine::Postgres => &[
            "CREATE FUNCTION refuse_tip_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.action LIKE 'tip.%' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_tip_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_tip_audit()",
        ],
    };
    for sql in refuse {
        app.exec(sql).await;
    }
    let res = officer.get(app.url(&page)).send().await.unwrap();
    assert!(
        res.status().is_server_error(),
        "[{engine:?}] {}",
        res.status()
    );
    let body = res.text().await.unwrap();
    assert!(!body.contains(CANARY), "[{engine:?}] the tip is not shown");
    assert!(!body.contains("mô tả"), "[{engine:?}] no part of it either");
    let res = officer.get(app.url(&picture)).send().await.unwrap();
    assert!(
        res.status().is_server_error(),
        "[{engine:?}] {}",
        res.status()
    );
    let body = res.bytes().await.unwrap();
    assert!(
        !contains(&body, &jpeg[..64.min(jpeg.len())]) && !body.starts_with(&[0xff, 0xd8]),
        "[{engine:?}] the photo is not sent"
    );
    // A change whose audit fails shows no tip either (it answers an error, not the page),
    // and is not made: the entry is written before the change.
    let store = app.state.intake.store();
    let before = store.tip(&id).await.unwrap().unwrap();
    let changes: [(&str, &[(&str, &str)]); 4] = [
        ("note", &[("text", "ghi chú")]),
        ("message", &[("text", "tin nhắn của công an")]),
        ("status", &[("status", "triaged"), ("outcome", "")]),
        ("category", &[("category", "other"), ("priority", "urgent")]),
    ];
    for (action, fields) in changes {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let res = officer
            .post(app.url(&format!("/console/tips/{id}/{action}")))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_server_error(),
            "[{engine:?}] {action}: {}",
            res.status()
        );
        assert!(!res.text().await.unwrap().contains(CANARY));
    }
    let after = store.tip(&id).await.unwrap().unwrap();
    assert_eq!(after.status, before.status, "[{engine:?}] status unchanged");
    assert_eq!(
        after.priority, before.priority,
        "[{engine:?}] priority unchanged"
    );
    assert!(
        store.notes(&id).await.unwrap().is_empty(),
        "[{engine:?}] no note"
    );
    assert!(
        store.messages(&id).await.unwrap().is_empty(),
        "[{engine:?}] no message to the tipster"
    );
    app.stop().await;
}
