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
    drop(server);

    let (ok, out) = run_cli(dir.path(), &["keys", "rotate"], &env);
    assert!(ok, "{out}");
    assert!(out.contains("new key k2 is current"));
    let (ok, out) = run_cli(dir.path(), &["keys", "retire", "k1"], &env);
    assert!(!ok && out.contains("still use k1"), "{out}");

    let server = Server::start(dir.path(), &env).await;
    let new = submit(&server.base, "sau khi xoay khóa").await;
    assert_eq!(check(&server.base, &old).await, 200);
    drop(server);
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
