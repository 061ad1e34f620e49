//! Envelope encryption as the operator meets it: sealed fields stay bound to their place,
//! a wrong or missing key stops the server with a clear message, and keys rotate.

use crate::helpers::*;
use tinbao::intake::IntakeError;

engine_test!(a_sealed_field_moved_to_another_tip_or_field_fails_to_open);
async fn a_sealed_field_moved_to_another_tip_or_field_fails_to_open(engine: Engine) {
    let app = spawn_app(engine).await;
    app.api_tip(tip_json("tin A")).await;
    app.api_tip(tip_json("tin B")).await;
    let ids = app.raw_tip_ids().await;
    let (a, b) = (&ids[0], &ids[1]);
    assert_eq!(
        app.state
            .intake
            .open_tip(b)
            .await
            .unwrap()
            .unwrap()
            .description,
        "tin B"
    );
    app.exec(&format!("UPDATE tips SET description = (SELECT description FROM tips WHERE id = '{a}') WHERE id = '{b}'")).await;
    assert!(
        matches!(
            app.state.intake.open_tip(b).await,
            Err(IntakeError::Sealed(_))
        ),
        "moved to another tip"
    );
    app.exec(&format!(
        "UPDATE tips SET description = place_details WHERE id = '{a}'"
    ))
    .await;
    assert!(
        matches!(
            app.state.intake.open_tip(a).await,
            Err(IntakeError::Sealed(_))
        ),
        "moved to another field"
    );
    app.exec(&format!("UPDATE tips SET wrapped_key = (SELECT wrapped_key FROM tips WHERE id = '{a}') WHERE id = '{b}'")).await;
    assert!(
        matches!(
            app.state.intake.open_tip(b).await,
            Err(IntakeError::Sealed(_))
        ),
        "a data key moved to another tip"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_key_stops_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let receipt = {
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/tips", server.base))
            .json(&tip_json("bí mật"))
            .send()
            .await
            .unwrap();
        res.json::<serde_json::Value>().await.unwrap()["receipt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    drop(server);
    let key_file = dir.path().join("var/keys.toml");
    let good = std::fs::read_to_string(&key_file).unwrap();

    std::fs::remove_file(&key_file).unwrap();
    let (ok, out) = run_cli(dir.path(), &["serve"], &[("TINBAO_LISTEN", "127.0.0.1:0")]);
    assert!(!ok);
    assert!(
        out.contains("key file") && out.contains("is missing"),
        "{out}"
    );
    assert!(
        !key_file.exists(),
        "no new key file is made over sealed data"
    );

    tinbao::crypto::KeyRing::generate().save(&key_file).unwrap();
    let (ok, out) = run_cli(dir.path(), &["serve"], &[("TINBAO_LISTEN", "127.0.0.1:0")]);
    assert!(!ok);
    assert!(
        out.contains("not the key this database was sealed with"),
        "{out}"
    );

    let (ok, out) = run_cli(
        dir.path(),
        &["serve"],
        &[("TINBAO_LISTEN", "127.0.0.1:0"), ("TINBAO_KEYS", "garbage")],
    );
    assert!(!ok);
    assert!(
        out.contains("TINBAO_KEYS holds a malformed key file"),
        "{out}"
    );

    // The right key, from the environment this time, opens everything again.
    std::fs::remove_file(&key_file).unwrap();
    let server = Server::start(dir.path(), &[("TINBAO_KEYS", &good)]).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/tips/status", server.base))
        .json(&serde_json::json!({ "receipt": receipt }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn check(base: &str, receipt: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/tips/status"))
        .json(&serde_json::json!({ "receipt": receipt }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn submit(base: &str, text: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/tips"))
        .json(&tip_json(text))
        .send()
        .await
        .unwrap();
    res.json::<serde_json::Value>().await.unwrap()["receipt"]
        .as_str()
        .unwrap()
        .to_owned()
}

engine_test!(keys_rotate_rewrap_and_retire);
async fn keys_rotate_rewrap_and_retire(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    let old = submit(&server.base, "trước khi xoay khóa").await;
    stop(server);

    let (ok, out) = run_cli(dir.path(), &["keys", "rotate"], &env);
    assert!(ok, "{out}");
    assert!(out.contains("new key k2 is current"));
    let (ok, out) = run_cli(dir.path(), &["keys", "retire", "k1"], &env);
    assert!(!ok && out.contains("still use k1"), "{out}");

    let server = Server::start(dir.path(), &env).await;
    let new = submit(&server.base, "sau khi xoay khóa").await;
    assert_eq!(check(&server.base, &old).await, 200);
    stop(server);
    let (_, out) = run_cli(dir.path(), &["keys", "status"], &env);
    assert!(
        out.contains("k1: 1 tips") && out.contains("k2 (current): 1 tips"),
        "{out}"
    );

    let (ok, out) = run_cli(dir.path(), &["keys", "rewrap"], &env);
    assert!(
        ok && out.contains("re-wrapped 1 data keys under k2"),
        "{out}"
    );
    let (ok, out) = run_cli(dir.path(), &["keys", "retire", "k1"], &env);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(dir.path().join("var/keys.toml")).unwrap();
    assert!(!text.contains("k1 ="), "k1 is gone from the key file");

    let server = Server::start(dir.path(), &env).await;
    assert_eq!(check(&server.base, &old).await, 200);
    assert_eq!(check(&server.base, &new).await, 200);
    drop(server);
}

/// Stops a server as systemd does (SIGTERM), so it removes its row of held keys.
fn stop(mut server: Server) {
    let pid = server.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = server.child.wait();
}

/// Sends a signal by name to a running server.
fn signal(server: &Server, name: &str) {
    let pid = server.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Waits (up to 10 s) until the server's log contains `needle`.
async fn log_shows(server: &Server, needle: &str) -> bool {
    for _ in 0..100 {
        if std::fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Runs one SQL statement on the database of the servers in `dir`.
async fn sql(engine: Engine, dir: &std::path::Path, pg: &Option<PgDb>, statement: &str) {
    use sqlx::Connection;
    match engine {
        Engine::Sqlite => {
            let url = format!("sqlite://{}", dir.join("var/tinbao.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&pg.as_ref().unwrap().url)
                .await
                .unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
    }
}

// The issue's reproduction: 4 tips, rotate, rewrap, retire k1, then 3 tips through the
// same running server, restart: all 7 open. On main the 3 were wrapped under k1 (the
// server never saw k2), k1 was gone, and they answered 500 for ever.
engine_test!(the_issues_rotation_sequence_on_a_running_server_keeps_every_tip);
async fn the_issues_rotation_sequence_on_a_running_server_keeps_every_tip(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    let mut receipts = Vec::new();
    for i in 0..4 {
        receipts.push(submit(&server.base, &format!("tin {i}")).await);
    }
    let (ok, out) = cli(dir.path(), &["keys", "rotate"], &env).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("every running server now wraps new tips under k2"),
        "{out}"
    );
    let (ok, out) = cli(dir.path(), &["keys", "rewrap"], &env).await;
    assert!(
        ok && out.contains("re-wrapped 4 data keys under k2"),
        "{out}"
    );
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k1", "--grace", "2"], &env).await;
    assert!(ok, "{out}");
    for i in 4..7 {
        receipts.push(submit(&server.base, &format!("tin {i}")).await);
    }
    for r in &receipts {
        assert_eq!(check(&server.base, r).await, 200, "before the restart");
    }
    stop(server);

    let (ok, out) = cli(dir.path(), &["keys", "status"], &env).await;
    assert!(ok, "{out}");
    assert!(out.contains("k2 (current): 7 tips"), "{out}");
    assert!(!out.contains("k1:"), "{out}");
    let server = Server::start(dir.path(), &env).await;
    for r in &receipts {
        assert_eq!(check(&server.base, r).await, 200, "after the restart");
    }
    stop(server);
}

// rotate → rewrap → retire k1 through the command line while a client keeps sending
// tips to two running servers; after a restart every acknowledged tip opens.
engine_test!(
    key_commands_while_tips_arrive_lose_no_tip,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn key_commands_while_tips_arrive_lose_no_tip(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let a = Server::start(dir.path(), &env).await;
    let b = Server::start(dir.path(), &env).await;
    let mut receipts = Vec::new();
    for i in 0..3 {
        receipts.push(submit(&a.base, &format!("trước {i}")).await);
    }
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let running = running.clone();
        let bases = [a.base.clone(), b.base.clone()];
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut got = Vec::new();
            let mut i = 0usize;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let res = client
                    .post(format!("{}/api/v1/tips", bases[i % 2]))
                    .json(&tip_json(&format!("trong khi xoay {i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201, "every tip is taken during the rotation");
                let v: serde_json::Value = res.json().await.unwrap();
                got.push(v["receipt"].as_str().unwrap().to_owned());
                i += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            got
        })
    };
    let (ok, out) = cli(dir.path(), &["keys", "rotate"], &env).await;
    assert!(
        ok && out.contains("every running server now wraps"),
        "{out}"
    );
    let (ok, out) = cli(dir.path(), &["keys", "rewrap"], &env).await;
    assert!(ok && out.contains("under k2"), "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k1", "--grace", "2"], &env).await;
    assert!(ok && out.contains("retired k1"), "{out}");
    // And once more, with the tips still arriving.
    let (ok, out) = cli(dir.path(), &["keys", "rotate"], &env).await;
    assert!(ok && out.contains("new key k3 is current"), "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "rewrap"], &env).await;
    assert!(ok && out.contains("under k3"), "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k2", "--grace", "2"], &env).await;
    assert!(ok && out.contains("retired k2"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let during = sender.await.unwrap();
    assert!(during.len() > 10, "tips kept arriving: {}", during.len());
    receipts.extend(during);
    stop(a);
    stop(b);

    let server = Server::start(dir.path(), &env).await;
    for r in &receipts {
        assert_eq!(check(&server.base, r).await, 200, "every tip opens");
    }
    stop(server);
    let (ok, out) = cli(dir.path(), &["keys", "status"], &env).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("k3 (current): {} tips", receipts.len())),
        "{out}"
    );
}

// A server that cannot take the new key (its keys come from TINBAO_KEYS) holds up the
// commands that would strand it: rewrap (it could not open a moved tip) and retire (it
// still wraps new tips under k1). So does a heartbeat row of a process still on k1.
engine_test!(rewrap_and_retire_wait_for_every_running_server);
async fn rewrap_and_retire_wait_for_every_running_server(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let a = Server::start(dir.path(), &env).await;
    let keys = std::fs::read_to_string(dir.path().join("var/keys.toml")).unwrap();
    let mut env_b = env.clone();
    env_b.push(("TINBAO_KEYS", keys.as_str()));
    let b = Server::start(dir.path(), &env_b).await;

    let (ok, out) = cli(dir.path(), &["keys", "rotate", "--wait", "3"], &env).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("do not wrap new tips under k2 yet") && out.contains("current k1"),
        "{out}"
    );
    let (ok, out) = cli(dir.path(), &["keys", "rewrap", "--wait", "1"], &env).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("refusing to rewrap") && out.contains("do not hold k2"),
        "{out}"
    );
    let (_, out) = cli(dir.path(), &["keys", "status"], &env).await;
    assert!(out.contains("running processes: 2"), "{out}");

    // No tip uses k1, but a running server whose current key is k1 still stops retire.
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k1", "--grace", "0"], &env).await;
    assert!(!ok, "{out}");
    assert!(out.contains("still wraps new tips under k1"), "{out}");
    assert!(std::fs::read_to_string(dir.path().join("var/keys.toml"))
        .unwrap()
        .contains("k1 ="));

    // Once it is gone, a row left by a process still on k1 holds them up the same way.
    stop(b);
    let now = tinbao::clock::now_ms();
    sql(
        engine,
        dir.path(),
        &pg,
        &format!(
            "INSERT INTO key_holders (process_id, label, current_key, known_keys, wrapping_keys, \
             switched_at, started_at, heartbeat_at) VALUES ('stale', 'old host pid 1', 'k1', 'k1', '', \
             {now}, {now}, {})",
            now + 600_000
        ),
    )
    .await;
    let (ok, out) = cli(dir.path(), &["keys", "rewrap", "--wait", "1"], &env).await;
    assert!(!ok && out.contains("old host pid 1"), "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k1", "--grace", "0"], &env).await;
    assert!(!ok && out.contains("old host pid 1"), "{out}");
    sql(
        engine,
        dir.path(),
        &pg,
        "DELETE FROM key_holders WHERE process_id = 'stale'",
    )
    .await;
    let (ok, out) = cli(dir.path(), &["keys", "rewrap", "--wait", "1"], &env).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "retire", "k1", "--grace", "0"], &env).await;
    assert!(ok && out.contains("retired k1"), "{out}");
    let later = submit(&a.base, "sau").await;
    assert_eq!(check(&a.base, &later).await, 200);
    stop(a);
}

// A broken or foreign key file written under a running server is refused with a log line:
// the server keeps serving with the keys it had; the good file, rotated, is then taken
// (also on SIGHUP).
engine_test!(a_bad_key_file_under_a_running_server_changes_nothing);
async fn a_bad_key_file_under_a_running_server_changes_nothing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    let first = submit(&server.base, "trước").await;
    let path = dir.path().join("var/keys.toml");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, "current = 'k1'\n[kek]\nk1 = 'not a key'\n").unwrap();
    assert!(log_shows(&server, "key file refused").await);
    let second = submit(&server.base, "khi tệp hỏng").await;
    assert_eq!(check(&server.base, &first).await, 200);
    assert_eq!(check(&server.base, &second).await, 200);

    // Another MAC key: refused too, even on SIGHUP.
    tinbao::crypto::KeyRing::generate().save(&path).unwrap();
    signal(&server, "HUP");
    assert!(log_shows(&server, "SIGHUP: reading the key file again").await);
    assert!(log_shows(&server, "MAC key is not the one in force").await);
    let third = submit(&server.base, "khi tệp lạ").await;
    for r in [&first, &second, &third] {
        assert_eq!(check(&server.base, r).await, 200);
    }

    // The good file back, rotated: the server takes it.
    std::fs::write(&path, &good).unwrap();
    let (ok, out) = cli(dir.path(), &["keys", "rotate"], &env).await;
    assert!(
        ok && out.contains("every running server now wraps new tips under k2"),
        "{out}"
    );
    assert!(log_shows(&server, "key file reloaded").await);
    let fourth = submit(&server.base, "sau").await;
    stop(server);
    let (_, out) = cli(dir.path(), &["keys", "status"], &env).await;
    assert!(
        out.contains("k1: 3 tips") && out.contains("k2 (current): 1 tips"),
        "{out}"
    );
    let server = Server::start(dir.path(), &env).await;
    for r in [&first, &second, &third, &fourth] {
        assert_eq!(check(&server.base, r).await, 200);
    }
    stop(server);
}

// A tip stored under a KEK the key file no longer holds stops the server at start, even
// when that KEK's check row is gone too (what `retire` on main left behind).
engine_test!(a_kek_in_use_missing_from_the_key_file_stops_the_start);
async fn a_kek_in_use_missing_from_the_key_file_stops_the_start(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = Server::start(dir.path(), &env).await;
    submit(&server.base, "dưới k1").await;
    stop(server);
    let (ok, out) = cli(dir.path(), &["keys", "rotate"], &env).await;
    assert!(ok, "{out}");
    let path = dir.path().join("var/keys.toml");
    let mut ring = tinbao::crypto::KeyRing::load(&path).unwrap();
    ring.retire("k1").unwrap();
    ring.save(&path).unwrap();
    sql(
        engine,
        dir.path(),
        &pg,
        "DELETE FROM key_checks WHERE key_id = 'k1'",
    )
    .await;
    let mut serve_env = env.clone();
    serve_env.push(("TINBAO_LISTEN", "127.0.0.1:0"));
    let (ok, out) = cli(dir.path(), &["serve"], &serve_env).await;
    assert!(!ok, "{out}");
    assert!(out.contains("the key file lacks k1 (1 tips)"), "{out}");
    let (ok, out) = cli(dir.path(), &["keys", "status"], &env).await;
    assert!(
        !ok && out.contains("k1 (MISSING from the key file"),
        "{out}"
    );
}
