//! The hash-chained audit log on every engine: an intact chain verifies, and an edited
//! entry, a removed entry and a removed newest entry are each named; concurrent appends
//! extend one contiguous chain.

use crate::helpers::*;
use sqlx::Connection;
use tinbao::audit::{self, BreakKind, Verification};
use tinbao::store::{AuditRecord, Store};
use tinbao::Config;

/// A fresh store on `engine`. Keep the [`PgDb`] bound (`_pg`, not `_`) to the end of the
/// test: dropping it drops the database.
async fn open(engine: Engine, dir: &std::path::Path) -> (Config, Store, Option<PgDb>) {
    let (config, pg) = test_config(engine, dir).await;
    let store = tinbao::app::open_store(&config).await.unwrap();
    (config, store, pg)
}

/// Raw SQL behind the store's back, as an intruder with database access would write it.
async fn raw(config: &Config, sql: &str) {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
}

/// Puts a removed entry back exactly as it was.
async fn reinsert(config: &Config, r: &AuditRecord) {
    let q = |s: &Option<String>| s.as_ref().map_or("NULL".into(), |s| format!("'{s}'"));
    let n = |v: Option<i64>| v.map_or("NULL".into(), |v| v.to_string());
    let blob = |b: &[u8]| {
        if config.database_url().starts_with("sqlite:") {
            format!("x'{}'", hex::encode(b))
        } else {
            format!("'\\x{}'::bytea", hex::encode(b))
        }
    };
    raw(
        config,
        &format!(
            "INSERT INTO audit_log (seq, at, actor_id, action, tip_id, province_code, commune_code, \
             detail, prev_hash, hash) VALUES ({}, {}, {}, '{}', {}, {}, {}, '{}', {}, {})",
            r.seq,
            r.at,
            q(&r.actor_id),
            r.action,
            q(&r.tip_id),
            n(r.province_code),
            n(r.commune_code),
            r.detail,
            blob(&r.prev_hash),
            blob(&r.hash)
        ),
    )
    .await;
}

fn assert_broken(v: &Verification, seq: i64, kind: BreakKind, engine: Engine) {
    let b = v
        .broken
        .as_ref()
        .unwrap_or_else(|| panic!("{engine:?}: expected a break at {seq}, got {v}"));
    assert_eq!((b.seq, b.kind), (seq, kind), "{engine:?}: {v}");
}

async fn append_twenty(store: &Store) {
    for i in 1..=20i64 {
        let tip = format!("tip-{}", i % 3);
        let seq = audit::record(
            store,
            if i % 4 == 0 { None } else { Some("acct-1") },
            if i % 2 == 0 { "tip.open" } else { "tip.status" },
            if i % 5 == 0 { None } else { Some(&tip) },
            Some(1),
            Some(if i % 2 == 0 { 70 } else { 71 }),
            &format!("entry {i}"),
        )
        .await
        .unwrap();
        assert_eq!(seq, i, "seqs start at 1 and are contiguous");
    }
}

engine_test!(the_audit_chain_names_the_first_changed_or_removed_entry);
async fn the_audit_chain_names_the_first_changed_or_removed_entry(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (config, store, _pg) = open(engine, dir.path()).await;

    let empty = audit::verify(&store).await.unwrap();
    assert!(empty.intact(), "{engine:?}: {empty}");
    assert_eq!(empty.checked, 0);

    append_twenty(&store).await;
    let v = audit::verify(&store).await.unwrap();
    assert!(v.intact(), "{engine:?}: {v}");
    assert_eq!(v.checked, 20);
    assert_eq!(v.to_string(), "audit chain intact: 20 entries");
    // Small pages walk the same chain.
    let v3 = audit::verify_with_page_size(&store, 3).await.unwrap();
    assert_eq!(v3, v, "{engine:?}");

    // The reads.
    let last = store.audit_last().await.unwrap().unwrap();
    assert_eq!((last.seq, last.detail.as_str()), (20, "entry 20"));
    let first = store.audit_after(0, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let first = first[0].as_ref().unwrap();
    assert_eq!(first.prev_hash, audit::GENESIS_HASH.to_vec());
    assert_eq!(first.actor_id.as_deref(), Some("acct-1"));
    let for_tip: Vec<i64> = store
        .audit_for_tip("tip-1")
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(for_tip, [1, 4, 7, 13, 16, 19], "{engine:?}");
    let commune: Vec<i64> = store
        .audit_for_scope(None, Some(70), None, 4)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(commune, [20, 18, 16, 14], "{engine:?}: newest first");
    let next: Vec<i64> = store
        .audit_for_scope(Some(1), Some(70), Some(14), 3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(next, [12, 10, 8], "{engine:?}: below the cursor");
    let province = store
        .audit_for_scope(Some(1), None, None, 100)
        .await
        .unwrap();
    assert_eq!(province.len(), 20);
    assert!(store
        .audit_for_scope(Some(2), None, None, 100)
        .await
        .unwrap()
        .is_empty());

    // An edited entry is named as changed.
    raw(
        &config,
        "UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 7",
    )
    .await;
    let v = audit::verify(&store).await.unwrap();
    assert_broken(&v, 7, BreakKind::Changed, engine);
    assert_eq!(v.checked, 6);
    assert!(
        v.to_string()
            .starts_with("audit chain broken at entry 7: changed ("),
        "{v}"
    );
    // Paging does not hide it, wherever the page boundary falls.
    for page in [1, 6, 7, 8] {
        let vp = audit::verify_with_page_size(&store, page).await.unwrap();
        assert_broken(&vp, 7, BreakKind::Changed, engine);
    }
    raw(
        &config,
        "UPDATE audit_log SET detail = 'entry 7' WHERE seq = 7",
    )
    .await;
    assert!(audit::verify(&store).await.unwrap().intact());

    let nine = store.audit_after(8, 1).await.unwrap().remove(0).unwrap();
    // A column of the wrong type is reported, not a panic (SQLite stores anything).
    if engine == Engine::Sqlite {
        raw(
            &config,
            "UPDATE audit_log SET at = 'yesterday' WHERE seq = 9",
        )
        .await;
        let v = audit::verify(&store).await.unwrap();
        assert_broken(&v, 9, BreakKind::Changed, engine);
        raw(&config, "DELETE FROM audit_log WHERE seq = 9").await;
        reinsert(&config, &nine).await;
    }
    // The stored hash itself edited: changed too.
    raw(
        &config,
        "UPDATE audit_log SET hash = prev_hash WHERE seq = 9",
    )
    .await;
    assert_broken(
        &audit::verify(&store).await.unwrap(),
        9,
        BreakKind::Changed,
        engine,
    );
    raw(&config, "DELETE FROM audit_log WHERE seq = 9").await;
    reinsert(&config, &nine).await;
    let v = audit::verify(&store).await.unwrap();
    assert!(v.intact(), "{engine:?}: {v}");

    // A removed middle entry is named as removed.
    let twelve = store.audit_after(11, 1).await.unwrap().remove(0).unwrap();
    raw(&config, "DELETE FROM audit_log WHERE seq = 12").await;
    let v = audit::verify(&store).await.unwrap();
    assert_broken(&v, 12, BreakKind::Removed, engine);
    assert_eq!(v.checked, 11);
    reinsert(&config, &twelve).await;
    assert!(audit::verify(&store).await.unwrap().intact());

    // Entries renumbered to close the gap still break the links.
    raw(&config, "DELETE FROM audit_log WHERE seq = 12").await;
    raw(&config, "UPDATE audit_log SET seq = 12 WHERE seq = 13").await;
    let v = audit::verify(&store).await.unwrap();
    assert!(v.broken.as_ref().is_some_and(|b| b.seq == 12), "{v}");
    raw(&config, "UPDATE audit_log SET seq = 13 WHERE seq = 12").await;
    reinsert(&config, &twelve).await;
    assert!(audit::verify(&store).await.unwrap().intact());

    // The newest entry removed (tail truncation) is detected through the recorded head.
    raw(&config, "DELETE FROM audit_log WHERE seq = 20").await;
    let v = audit::verify(&store).await.unwrap();
    assert_broken(&v, 20, BreakKind::Removed, engine);
    assert_eq!(v.checked, 19);
    // ...and stays detected after later appends, which chain past the gap.
    let seq = audit::record(&store, None, "system.start", None, None, None, "")
        .await
        .unwrap();
    assert_eq!(seq, 21);
    assert_broken(
        &audit::verify(&store).await.unwrap(),
        20,
        BreakKind::Removed,
        engine,
    );
    raw(&config, "DELETE FROM audit_log WHERE seq >= 18").await;
    assert_broken(
        &audit::verify(&store).await.unwrap(),
        18,
        BreakKind::Removed,
        engine,
    );
    // Every entry removed: the recorded head still remembers them.
    raw(&config, "DELETE FROM audit_log").await;
    assert_broken(
        &audit::verify(&store).await.unwrap(),
        1,
        BreakKind::Removed,
        engine,
    );
    // The head record removed with the entries cannot be told from a fresh log, but
    // removed on its own it is reported.
    raw(&config, "DELETE FROM meta WHERE name = 'audit_head'").await;
    assert!(audit::verify(&store).await.unwrap().intact());
    audit::record(&store, None, "system.start", None, None, None, "")
        .await
        .unwrap();
    raw(&config, "DELETE FROM meta WHERE name = 'audit_head'").await;
    assert_broken(
        &audit::verify(&store).await.unwrap(),
        2,
        BreakKind::Removed,
        engine,
    );

    store.close().await;
}

engine_test!(concurrent_appends_extend_one_contiguous_chain);
async fn concurrent_appends_extend_one_contiguous_chain(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (config, store, _pg) = open(engine, dir.path()).await;
    // A second store stands in for a second server process on the same database.
    let other = tinbao::app::open_store(&config).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            audit::record(
                &store,
                Some("acct-1"),
                "tip.open",
                Some(&format!("tip-{i}")),
                Some(1),
                Some(70),
                &format!("task {i}"),
            )
            .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>(), "{engine:?}");
    let v = audit::verify(&store).await.unwrap();
    assert!(v.intact(), "{engine:?}: {v}");
    assert_eq!(v.checked, 50);
    for i in 0..50 {
        let got = store.audit_for_tip(&format!("tip-{i}")).await.unwrap();
        assert_eq!(got.len(), 1, "{engine:?}: task {i} stored once");
        assert_eq!(got[0].detail, format!("task {i}"));
    }
    other.close().await;
    store.close().await;
}

/// Many tasks appending through `writers` (several group-commit writers, each on its own
/// pool, as several server processes would be) and through single appends on `direct`.
/// Returns every seq handed out.
async fn append_from_many_tasks(
    writers: &[audit::AuditLog],
    direct: &Store,
    tasks: i64,
) -> Vec<i64> {
    let mut handles = Vec::new();
    for i in 0..tasks {
        let writer = writers[i as usize % writers.len()].clone();
        let direct = direct.clone();
        handles.push(tokio::spawn(async move {
            let tip = format!("tip-{i}");
            let detail = format!("task {i}");
            if i % 10 == 9 {
                audit::record(
                    &direct,
                    Some("acct-1"),
                    "tip.open",
                    Some(&tip),
                    Some(1),
                    Some(70),
                    &detail,
                )
                .await
            } else {
                writer
                    .record(
                        Some("acct-1"),
                        "tip.open",
                        Some(&tip),
                        Some(1),
                        Some(70),
                        &detail,
                    )
                    .await
            }
        }));
    }
    let mut seqs = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap().unwrap());
    }
    seqs
}

engine_test!(the_group_commit_writer_chains_concurrent_appends_into_one_valid_chain);
async fn the_group_commit_writer_chains_concurrent_appends_into_one_valid_chain(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (config, store, _pg) = open(engine, dir.path()).await;
    // Two writers on two pools stand in for two server processes on one database;
    // a third pool appends one entry per transaction, as the command line does.
    let other = tinbao::app::open_store(&config).await.unwrap();
    let direct = tinbao::app::open_store(&config).await.unwrap();
    let writers = [
        audit::AuditLog::spawn(store.clone()),
        audit::AuditLog::spawn(other.clone()),
    ];
    let mut seqs = append_from_many_tasks(&writers, &direct, 300).await;
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=300).collect::<Vec<i64>>(),
        "{engine:?}: every append got its own seq, without gaps"
    );
    let v = audit::verify(&store).await.unwrap();
    assert!(v.intact(), "{engine:?}: {v}");
    assert_eq!(v.checked, 300, "{engine:?}");
    for i in 0..300 {
        let got = store.audit_for_tip(&format!("tip-{i}")).await.unwrap();
        assert_eq!(got.len(), 1, "{engine:?}: task {i} stored once");
        assert_eq!(got[0].detail, format!("task {i}"), "{engine:?}");
    }
    // The recorded head follows the newest entry.
    let last = store.audit_last().await.unwrap().unwrap();
    match store.audit_recorded_head().await.unwrap() {
        tinbao::store::RecordedHead::Head(h) => {
            assert_eq!((h.seq, h.hash), (last.seq, last.hash), "{engine:?}")
        }
        other => panic!("{engine:?}: no recorded head: {other:?}"),
    }
    drop(writers);
    for s in [other, direct, store] {
        s.close().await;
    }
}

engine_test!(a_failed_entry_in_a_batch_does_not_lose_or_corrupt_the_others);
async fn a_failed_entry_in_a_batch_does_not_lose_or_corrupt_the_others(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (config, store, _pg) = open(engine, dir.path()).await;
    // A trigger that refuses one kind of entry: the batch holding it fails as a whole,
    // and the writer must still commit every other entry of that batch.
    let triggers: &[&str] = match engine {
        Engine::Sqlite => &["CREATE TRIGGER refuse_bad BEFORE INSERT ON audit_log \
             WHEN NEW.action = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END"],
        Engine::Postgres => &[
            "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.action = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_bad()",
        ],
    };
    for sql in triggers {
        raw(&config, sql).await;
    }
    let writer = audit::AuditLog::spawn(store.clone());
    let mut handles = Vec::new();
    for i in 0..120i64 {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let action = if i % 17 == 5 { "bad" } else { "tip.open" };
            let tip = format!("tip-{i}");
            let r = writer
                .record(None, action, Some(&tip), None, Some(70), "")
                .await;
            (i, action, r)
        }));
    }
    let mut good = Vec::new();
    for h in handles {
        let (i, action, r) = h.await.unwrap();
        match action {
            "bad" => assert!(r.is_err(), "{engine:?}: entry {i} was refused"),
            _ => good.push((i, r.unwrap_or_else(|e| panic!("{engine:?}: {i}: {e}")))),
        }
    }
    let v = audit::verify(&store).await.unwrap();
    assert!(v.intact(), "{engine:?}: {v}");
    assert_eq!(v.checked as usize, good.len(), "{engine:?}");
    let mut seqs: Vec<i64> = good.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=good.len() as i64).collect::<Vec<_>>(),
        "{engine:?}"
    );
    for (i, seq) in good {
        let got = store.audit_for_tip(&format!("tip-{i}")).await.unwrap();
        assert_eq!(got.len(), 1, "{engine:?}: entry {i} stored once");
        assert_eq!(
            got[0].seq, seq,
            "{engine:?}: entry {i} where its caller was told"
        );
    }
    drop(writer);
    store.close().await;
}

postgres_test!(server_processes_and_the_command_line_extend_one_chain_on_postgres);
async fn server_processes_and_the_command_line_extend_one_chain_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (config, store, _pg) = open(Engine::Postgres, dir.path()).await;
    store
        .ensure_admin_units(&tinbao::geo::shipped_units())
        .await
        .unwrap();
    let url = config.database_url();
    // Real other processes: each `tinbao user add` appends one entry in a transaction of
    // its own while this process's writers append in batches.
    let clis: Vec<_> = (0..4)
        .map(|i| {
            let dir = dir.path().to_path_buf();
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                run_cli(
                    &dir,
                    &[
                        "user",
                        "add",
                        "--role",
                        "officer",
                        "--commune",
                        "70",
                        "--name",
                        "Cán bộ",
                        &format!("officer{i}"),
                    ],
                    &[("TINBAO_DATABASE_URL", &url)],
                )
            })
        })
        .collect();
    let other = tinbao::app::open_store(&config).await.unwrap();
    let writers = [
        audit::AuditLog::spawn(store.clone()),
        audit::AuditLog::spawn(other.clone()),
    ];
    let seqs = append_from_many_tasks(&writers, &other, 200).await;
    for c in clis {
        let (ok, out) = c.await.unwrap();
        assert!(ok, "{out}");
    }
    assert_eq!(seqs.len(), 200);
    let (ok, out) = run_cli(
        dir.path(),
        &["audit", "verify"],
        &[("TINBAO_DATABASE_URL", &url)],
    );
    assert!(
        ok && out.contains("audit chain intact: 204 entries"),
        "{out}"
    );
    drop(writers);
    other.close().await;
    store.close().await;
}
