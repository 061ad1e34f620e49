//! Anonymity and durability, checked on the real binary: nothing a tipster typed, no
//! receipt and no client address reaches the database files or the log; a receipt shown is
//! a tip kept, even when the process is killed.

use crate::helpers::*;
use reqwest::multipart::Form;

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
    let client = reqwest::Client::new();
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
    let html = client
        .post(format!("{}/tips", server.base))
        .header("user-agent", format!("UA-{CANARY}"))
        .multipart(form)
        .send()
        .await
        .unwrap()
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
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("{}/status", server.base))
        .form(&[("receipt", &receipt)])
        .send()
        .await
        .unwrap();
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
