//! Backups as the operator makes them: `tinbao backup DIR` while the server runs and tips
//! arrive, `tinbao restore DIR` into an empty data folder (or database), with the key file
//! kept apart and checked.

use crate::helpers::*;
use sqlx::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

engine_test!(a_backup_taken_under_load_restores_every_tip_acknowledged_before_it);
async fn a_backup_taken_under_load_restores_every_tip_acknowledged_before_it(engine: Engine) {
    let app = spawn_app(engine).await;
    let work = tempfile::tempdir().unwrap();
    let data = app.dir.path().to_string_lossy().into_owned();
    let mut env = vec![("TINBAO_DATA_DIR", data.as_str())];
    env.extend(PgDb::env(&app.pg));
    for i in 0..10 {
        app.api_tip(tip_json(&format!("tin trước sao lưu {i}")))
            .await;
    }

    // Tips keep arriving, from four clients, while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/tips"));
        let (stop, acked) = (stop.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let res = client
                    .post(&url)
                    .json(&tip_json(&format!("tin trong lúc sao lưu {c}-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let v: serde_json::Value = res.json().await.unwrap();
                let receipt = v["receipt"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push((Instant::now(), receipt));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_dir = work.path().join("backup-1");
    let backup_arg = backup_dir.to_string_lossy().into_owned();
    let started = Instant::now();
    let (ok, out) = cli(work.path(), &["backup", &backup_arg], &env).await;
    assert!(ok, "{out}");
    assert!(out.contains("backup written"), "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at < started)
        .map(|(_, r)| r.clone())
        .collect();
    let during = acked.lock().unwrap().len() - before.len();
    assert!(before.len() >= 4, "tips arrived before the backup");
    assert!(during > 0, "tips arrived while the backup ran");
    // Never the key file; a manifest says what it holds.
    let names: Vec<String> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("key")), "{names:?}");
    let manifest = std::fs::read_to_string(backup_dir.join("backup.toml")).unwrap();
    assert!(manifest.contains("keys = [\"k1\"]"), "{manifest}");

    // A second backup into the same folder is refused, the first one untouched.
    let (ok, out) = cli(work.path(), &["backup", &backup_arg], &env).await;
    assert!(!ok && out.contains("not empty"), "{out}");

    // Restore: without the key file it says what is missing; with another key file it
    // says it is the wrong one; with the right one every acknowledged tip comes back.
    let target = tempfile::tempdir().unwrap();
    let target_data = target.path().to_string_lossy().into_owned();
    let target_pg = PgDb::for_engine(engine).await;
    let mut target_env = vec![("TINBAO_DATA_DIR", target_data.as_str())];
    target_env.extend(PgDb::env(&target_pg));
    let (ok, out) = cli(work.path(), &["restore", &backup_arg], &target_env).await;
    assert!(
        !ok && out.contains("key file") && out.contains("missing"),
        "{out}"
    );
    tinbao::crypto::KeyRing::generate()
        .save(&target.path().join("keys.toml"))
        .unwrap();
    let (ok, out) = cli(work.path(), &["restore", &backup_arg], &target_env).await;
    assert!(!ok && out.contains("wrong key file"), "{out}");
    if let Some(pg) = &target_pg {
        // The refused PostgreSQL restore is dropped before trying again.
        let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("CREATE SCHEMA public")
            .execute(&mut c)
            .await
            .unwrap();
    }
    std::fs::copy(
        app.dir.path().join("keys.toml"),
        target.path().join("keys.toml"),
    )
    .unwrap();
    let (ok, out) = cli(work.path(), &["restore", &backup_arg], &target_env).await;
    assert!(ok, "{out}");
    assert!(out.contains("restored"), "{out}");
    // Nothing is restored over a database.
    let (ok, out) = cli(work.path(), &["restore", &backup_arg], &target_env).await;
    assert!(
        !ok && (out.contains("not empty") || out.contains("already holds")),
        "{out}"
    );

    let restored_url = target_pg.as_ref().map(|pg| pg.url.clone());
    let restored_dir = target.path().to_path_buf();
    let restored = spawn_app_with(engine, move |c| {
        c.data_dir = restored_dir;
        c.database_url = restored_url;
    })
    .await;
    for receipt in &before {
        assert_eq!(
            restored.api_status(receipt).await.status(),
            200,
            "a tip acknowledged before the backup is in it"
        );
    }
    let total = restored.state.store.tip_total().await.unwrap() as usize;
    assert!(total >= 10 + before.len(), "{total}");
    restored.stop().await;
    app.stop().await;
}
