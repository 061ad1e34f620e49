//! Erasure that erases (issue 14): a reply address, an inbox event and an outbox message,
//! once erased, are in no byte of the SQLite files (the write-ahead log included) and in
//! no PostgreSQL dump; provider message ids, expired sessions and spent login counters go
//! on the housekeeping sweep.

use crate::channels::{eventually, post_twilio, receipt_in, tip_of, SID, TOKEN, WAIT};
use crate::console_support::create_account;
use crate::fakes::twilio;
use crate::helpers::*;
use std::time::Duration;
use tinbao::accounts::Role;
use tinbao::app::housekeeping::{sweep, PROVIDER_ID_KEPT_MS};
use tinbao::clock::now_ms;
use tinbao::store::SessionRow;

const CANARY: &str = "CANARY-ERASE-5b21-Ngõ-Chợ";

/// Test-only triggers that keep a copy of each sealed value as it is written, so that the
/// test knows the exact bytes to look for once they are erased.
fn capture(engine: Engine) -> Vec<String> {
    let sources = [
        ("inbox", "event", "inbox event"),
        ("tip_contacts", "address", "reply address"),
        ("outbox", "recipient", "outbox recipient"),
        ("outbox", "body", "outbox body"),
    ];
    let mut sql = Vec::new();
    match engine {
        Engine::Sqlite => {
            sql.push("CREATE TABLE erase_capture (what TEXT NOT NULL, bytes BLOB NOT NULL)".into());
            for (i, (table, column, what)) in sources.iter().enumerate() {
                sql.push(format!(
                    "CREATE TRIGGER erase_capture_{i} AFTER INSERT ON {table} WHEN NEW.{column} IS NOT NULL \
                     BEGIN INSERT INTO erase_capture VALUES ('{what}', NEW.{column}); END"
                ));
            }
        }
        Engine::Postgres => {
            sql.push(
                "CREATE TABLE erase_capture (what TEXT NOT NULL, bytes BYTEA NOT NULL)".into(),
            );
            for (i, (table, column, what)) in sources.iter().enumerate() {
                sql.push(format!(
                    "CREATE FUNCTION erase_capture_{i}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.{column} IS NOT NULL THEN INSERT INTO erase_capture VALUES ('{what}', NEW.{column}); \
                     END IF; RETURN NEW; END $$"
                ));
                sql.push(format!(
                    "CREATE TRIGGER erase_capture_{i} AFTER INSERT ON {table} FOR EACH ROW \
                     EXECUTE FUNCTION erase_capture_{i}()"
                ));
            }
        }
    }
    sql
}

/// Removes the capture (its own rows are erased like any other).
fn uncapture(engine: Engine) -> Vec<String> {
    let mut sql: Vec<String> = Vec::new();
    let tables = ["inbox", "tip_contacts", "outbox", "outbox"];
    for (i, table) in tables.iter().enumerate() {
        match engine {
            Engine::Sqlite => sql.push(format!("DROP TRIGGER erase_capture_{i}")),
            Engine::Postgres => {
                sql.push(format!("DROP TRIGGER erase_capture_{i} ON {table}"));
                sql.push(format!("DROP FUNCTION erase_capture_{i}()"));
            }
        }
    }
    sql.push("DROP TABLE erase_capture".into());
    sql
}

/// Every byte the database keeps: the SQLite files (database, WAL, shared memory), or a
/// plain `pg_dump` (bytea as hex, so the needles are looked for in hex there).
async fn everything_stored(app: &TestApp) -> Vec<u8> {
    match app.engine {
        Engine::Sqlite => {
            let mut all = Vec::new();
            for f in std::fs::read_dir(app.dir.path()).unwrap() {
                let path = f.unwrap().path();
                if path.to_string_lossy().contains("tinbao.db") {
                    all.extend(std::fs::read(&path).unwrap());
                }
            }
            all
        }
        Engine::Postgres => {
            let url = app.pg.as_ref().unwrap().url.clone();
            let out = std::process::Command::new("pg_dump")
                .args(["--format=plain", "--dbname", &url])
                .output()
                .expect("pg_dump");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

fn needle(engine: Engine, bytes: &[u8]) -> Vec<u8> {
    match engine {
        Engine::Sqlite => bytes.to_vec(),
        Engine::Postgres => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    }
}

engine_test!(erased_reply_addresses_inbox_events_and_outbox_messages_leave_no_byte_behind);
async fn erased_reply_addresses_inbox_events_and_outbox_messages_leave_no_byte_behind(
    engine: Engine,
) {
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let app = spawn_app_with(engine, |c| {
        c.sms.twilio = tw.config("+84900000070");
        c.outbox.backoff_ms = 50;
    })
    .await;
    for sql in capture(engine) {
        app.exec(&sql).await;
    }
    let store = app.state.intake.store().clone();

    // A tip by SMS: an inbox event, a reply address, the receipt's outbox message.
    let phone = "+84911122233";
    let text = format!("Tin: có người bán ma túy ở {CANARY}");
    assert_eq!(post_twilio(&app, "SMe1", phone, &text).await, 200);
    let sent = tw.wait_for(1, WAIT).await;
    let receipt = receipt_in(&sent[0].1).unwrap();
    let tip = tip_of(&app, &receipt).await;
    eventually("the receipt's message settled", || {
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
    let captured = app
        .query_pairs("SELECT what, bytes FROM erase_capture")
        .await;
    for what in [
        "inbox event",
        "reply address",
        "outbox recipient",
        "outbox body",
    ] {
        assert!(
            captured.iter().any(|(w, _)| w == what),
            "[{engine:?}] {what} captured: {captured:?}"
        );
    }
    // The check can see them: the open tip's reply address is stored.
    let address = &captured.iter().find(|c| c.0 == "reply address").unwrap().1;
    assert!(
        contains(&everything_stored(&app).await, &needle(engine, address)),
        "[{engine:?}] the reply address is found while the tip is open"
    );

    // Closing the tip erases its reply address; the inbox event went when it was
    // processed, the message's recipient and text when it settled.
    store
        .set_status(&tip.id, "closed", Some("actioned"), now_ms())
        .await
        .unwrap();

    // Provider ids stay for delivery reports, then go with the sweep.
    let ids = "SELECT COUNT(*) FROM outbox WHERE provider_id IS NOT NULL";
    assert!(app.query_count(ids).await >= 1, "[{engine:?}]");
    // An expired session and a spent login counter go too; a live session stays.
    let (account, _) =
        create_account(&app, Role::Officer, "erasure_officer", Some(1), Some(70)).await;
    let now = now_ms();
    for (token, age) in [
        (b"old-session".to_vec(), 13 * 3_600_000),
        (b"new-session".to_vec(), 60_000),
    ] {
        store
            .insert_session(&SessionRow {
                token_hash: token,
                account_id: account.clone(),
                stage: "full".into(),
                csrf: "x".into(),
                created_at: now - age,
                last_seen_at: now - age,
            })
            .await
            .unwrap();
    }
    store
        .record_login_failure(b"spent-key", now - 2 * 3_600_000, 900_000, 5, 900_000)
        .await
        .unwrap();
    let swept = sweep(&store, now).await.unwrap();
    assert_eq!(
        (swept.sessions, swept.login_failures, swept.provider_ids),
        (1, 1, 0),
        "[{engine:?}] the expired session and the spent counter; ids kept for now"
    );
    assert_eq!(
        app.query_count("SELECT COUNT(*) FROM sessions").await,
        1,
        "[{engine:?}] only the live session is left"
    );
    assert_eq!(
        app.query_count("SELECT COUNT(*) FROM login_failures").await,
        0
    );
    let swept = sweep(&store, now + PROVIDER_ID_KEPT_MS + 60_000)
        .await
        .unwrap();
    assert!(swept.provider_ids >= 1, "[{engine:?}] {swept:?}");
    assert_eq!(app.query_count(ids).await, 0, "[{engine:?}]");

    match engine {
        // The test's own connection erases the capture as the app's do: overwriting.
        Engine::Sqlite => {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&app.config.database_url())
                .await
                .unwrap();
            sqlx::query("PRAGMA secure_delete = ON")
                .execute(&mut c)
                .await
                .unwrap();
            for sql in uncapture(engine) {
                sqlx::query(&sql).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
        }
        Engine::Postgres => {
            for sql in uncapture(engine) {
                app.exec(&sql).await;
            }
        }
    }
    let mut truncated = false;
    for _ in 0..50 {
        sweep(&store, now_ms()).await.unwrap();
        if store.truncate_wal().await.unwrap() {
            truncated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(truncated, "[{engine:?}] the WAL was emptied");
    let stored = everything_stored(&app).await;
    for (what, bytes) in &captured {
        assert!(
            !contains(&stored, &needle(engine, bytes)),
            "[{engine:?}] the erased {what} is still stored"
        );
    }
    assert!(!contains(&stored, CANARY.as_bytes()));
    assert!(!contains(&stored, b"911122233"));
    app.stop().await;
}
