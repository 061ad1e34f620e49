//! Retention by crypto-shredding (issue 14): a closed tip past its retention loses its
//! data key and every sealed byte (fields, notes, messages, photos), its counts stay in
//! the reports, a tip held as evidence survives until its hold ends, and the console says
//! what happened.

use crate::console_support::*;
use crate::helpers::*;
use std::time::Duration;
use tinbao::accounts::Role;
use tinbao::clock::now_ms;

const DAY: i64 = 86_400_000;

engine_test!(a_closed_tip_past_retention_is_destroyed_and_still_counted_and_a_held_one_survives);
async fn a_closed_tip_past_retention_is_destroyed_and_still_counted_and_a_held_one_survives(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let intake = app.state.intake.clone();
    let store = app.state.store.clone();
    let officer = login_as(&app, Role::Officer, "ret_officer", Some(1), Some(70)).await;

    // Three tips: one to be destroyed (with a photo, a reply, a police message, a note),
    // one held as evidence, one closed today.
    let mut ids = Vec::new();
    for text in ["tin sẽ bị huỷ", "tin được giữ", "tin mới đóng"] {
        let receipt = app.api_tip(tip_json(text)).await;
        ids.push((receipt, app.raw_tip_ids().await.last().unwrap().clone()));
    }
    let (gone_receipt, gone) = ids[0].clone();
    let (held, fresh) = (ids[1].1.clone(), ids[2].1.clone());
    let receipt = tinbao::crypto::Receipt::parse(&gone_receipt).unwrap();
    assert!(intake
        .reply(&receipt, "thêm ảnh", vec![jpeg_with_gps(64, 48)])
        .await
        .unwrap());
    assert!(intake.police_message(&gone, "cảm ơn").await.unwrap());
    let row = store.tip(&gone).await.unwrap().unwrap();
    intake
        .add_note(&row, &officer.id, "ghi chú nội bộ")
        .await
        .unwrap();
    assert_eq!(store.attachments(&gone).await.unwrap().len(), 1);

    // Two closed 13 months ago, one today.
    let long_ago = now_ms() - 400 * DAY;
    for (id, at) in [(&gone, long_ago), (&held, long_ago), (&fresh, now_ms())] {
        store
            .set_status(id, "closed", Some("actioned"), at)
            .await
            .unwrap();
    }

    // The officer holds the second as evidence; a bad day is refused, the reason kept.
    let hold = |until: String, reason: &'static str| {
        let (client, csrf, url) = (
            officer.client.clone(),
            officer.csrf.clone(),
            app.url(&format!("/console/tips/{held}/hold")),
        );
        async move {
            client
                .post(url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("action", "hold"),
                    ("until", until.as_str()),
                    ("reason", reason),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = hold("2020-01-01".into(), "vụ án số 12/2026").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Hãy chọn ngày giữ đến"), "{html}");
    assert!(
        html.contains("vụ án số 12/2026"),
        "the reason typed is kept"
    );
    let until = chrono::DateTime::from_timestamp_millis(now_ms() + 7 * 3_600_000 + 20 * DAY)
        .unwrap()
        .date_naive();
    let res = hold(until.to_string(), "vụ án số 12/2026").await;
    assert_eq!(res.status(), 303);

    // What the pass will destroy, as the operator sees it.
    let dir = tempfile::tempdir().unwrap();
    let data = app.dir.path().to_string_lossy().into_owned();
    let mut env = vec![("TINBAO_DATA_DIR", data.as_str())];
    env.extend(PgDb::env(&app.pg));
    let (ok, out) = cli(dir.path(), &["retention", "status"], &env).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("to be destroyed in the next 30 days: 1 tips"),
        "{out}"
    );
    assert!(out.contains("held as evidence: 1 tips"), "{out}");
    let (ok, out) = cli(dir.path(), &["retention", "run"], &env).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("destroyed the content of 1 tips past"),
        "{out}"
    );

    // Gone: key, fields, photo, note, message texts; the tip and its counts stay.
    let row = store.tip(&gone).await.unwrap().unwrap();
    assert!(row.destroyed_at.is_some());
    assert!(row.wrapped_key.is_none());
    assert!(row.description.is_empty() && row.place_details.is_none());
    assert!(store.attachments(&gone).await.unwrap().is_empty());
    assert!(store.notes(&gone).await.unwrap().is_empty());
    let messages = store.messages(&gone).await.unwrap();
    assert_eq!(messages.len(), 2, "messages are still counted");
    assert!(messages.iter().all(|m| m.body.is_empty()));
    let opened = intake.open_tip(&gone).await.unwrap().unwrap();
    assert!(opened.description.is_empty());
    // The tipster can no longer add to it, and is told why.
    match intake.reply(&receipt, "còn nữa", Vec::new()).await {
        Err(tinbao::intake::IntakeError::Invalid(e)) => {
            assert_eq!(e[0].code, "error.tip_destroyed")
        }
        other => panic!("{other:?}"),
    }
    // The month's figures count it still.
    let month = tinbao::reports::Period::month(
        &tinbao::reports::vn_day(now_ms())
            .format("%Y-%m")
            .to_string(),
    )
    .unwrap();
    let report = tinbao::reports::commune_report(&store, intake.geo(), 70, month)
        .await
        .unwrap();
    assert_eq!(report.now.total, 3);
    assert_eq!(report.now.confirmed, 3);

    // The console says what happened to each.
    let page = |id: String| {
        let (client, url) = (
            officer.client.clone(),
            app.url(&format!("/console/tips/{id}")),
        );
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let html = page(gone.clone()).await;
    assert!(html.contains("Nội dung tin đã được huỷ ngày"), "{html}");
    assert!(!html.contains("tin sẽ bị huỷ") && !html.contains("id=\"note-form\""));
    let html = page(held.clone()).await;
    assert!(
        html.contains("Đang giữ làm chứng cứ đến hết ngày"),
        "{html}"
    );
    assert!(html.contains("vụ án số 12/2026") && html.contains("tin được giữ"));
    let html = page(fresh.clone()).await;
    assert!(html.contains("Nội dung sẽ được huỷ từ ngày"), "{html}");

    // The held tip survives until its hold ends, then goes with the next pass.
    let retention = app.config.retention.clone();
    assert_eq!(
        tinbao::retention::destroy_due(&store, &retention, now_ms())
            .await
            .unwrap(),
        0
    );
    assert!(store
        .tip(&held)
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_none());
    assert_eq!(
        tinbao::retention::destroy_due(&store, &retention, now_ms() + 22 * DAY)
            .await
            .unwrap(),
        1
    );
    assert!(store
        .tip(&held)
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_some());
    assert!(store
        .tip(&fresh)
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_none());
    app.stop().await;
}

engine_test!(a_chiefs_period_for_a_category_and_the_daily_pass_taken_once);
async fn a_chiefs_period_for_a_category_and_the_daily_pass_taken_once(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.store.clone();
    let mut ids = Vec::new();
    for category in ["dealing", "cultivation"] {
        let mut tip = tip_json("tin");
        tip["category"] = category.into();
        app.api_tip(tip).await;
        ids.push(app.raw_tip_ids().await.last().unwrap().clone());
    }
    // Both closed 7 months ago: kept by the default 12 months, but the chief keeps
    // cultivation tips 6 months only.
    for id in &ids {
        store
            .set_status(id, "closed", Some("unfounded"), now_ms() - 210 * DAY)
            .await
            .unwrap();
    }
    let chief = login_as(&app, Role::Chief, "ret_chief", Some(1), Some(70)).await;
    let save = |months: &'static str| {
        let (client, csrf, url) = (
            chief.client.clone(),
            chief.csrf.clone(),
            app.url("/console/retention"),
        );
        async move {
            client
                .post(url)
                .form(&[("csrf", csrf.as_str()), ("months_cultivation", months)])
                .send()
                .await
                .unwrap()
        }
    };
    let res = save("sáu").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Số tháng phải là số nguyên"), "{html}");
    assert!(html.contains("value=\"sáu\""), "what was typed is kept");
    assert_eq!(save("6").await.status(), 303);
    let html = chief
        .client
        .get(app.url("/console/retention?saved=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Đã lưu thời hạn lưu trữ"), "{html}");
    assert!(
        html.contains("id=\"retention-coming\""),
        "one tip is coming: {html}"
    );
    // An officer reads the periods but cannot change them.
    let officer = login_as(&app, Role::Officer, "ret_reader", Some(1), Some(70)).await;
    let res = officer
        .client
        .post(app.url("/console/retention"))
        .form(&[("csrf", officer.csrf.as_str()), ("months_dealing", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let mut config = app.config.retention.clone();
    config.hour = 0;
    // Of two processes, one takes the day's pass.
    let now = now_ms();
    let (a, b) = tokio::join!(
        tinbao::retention::daily_pass(&store, &config, None, now),
        tinbao::retention::daily_pass(&store, &config, None, now),
    );
    let runs: Vec<u64> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(runs, vec![1], "one pass, one tip");
    assert!(store
        .tip(&ids[0])
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_none());
    assert!(store
        .tip(&ids[1])
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_some());
    // Reopening stops the clock: a reopened tip is never destroyed.
    store
        .set_status(&ids[0], "in_progress", None, now_ms())
        .await
        .unwrap();
    assert!(store
        .tip(&ids[0])
        .await
        .unwrap()
        .unwrap()
        .closed_at
        .is_none());
    let later = now_ms() + 400 * DAY;
    assert_eq!(
        tinbao::retention::destroy_due(&store, &config, later)
            .await
            .unwrap(),
        0
    );
    app.stop().await;
}

engine_test!(a_backup_taken_before_a_tip_is_destroyed_cannot_open_it_afterwards);
async fn a_backup_taken_before_a_tip_is_destroyed_cannot_open_it_afterwards(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.store.clone();
    let key_file = app.dir.path().join("keys.toml");
    let config = app.config.retention.clone();
    let wait = Duration::from_secs(20);
    app.api_tip(tip_json("tin sẽ đóng rồi bị huỷ")).await;
    let closing = app.raw_tip_ids().await[0].clone();
    app.api_tip(tip_json("tin vẫn đang xử lý")).await;
    let open = app.raw_tip_ids().await[1].clone();
    store
        .set_status(&closing, "closed", Some("actioned"), now_ms())
        .await
        .unwrap();

    // Today's pass wraps the closed tip's key under the KEK of the day it is to be
    // destroyed, once the running server holds that KEK.
    let now = now_ms();
    tinbao::retention::pass(&store, &config, Some(&key_file), now, wait)
        .await
        .unwrap();
    let row = store.tip(&closing).await.unwrap().unwrap();
    let day_key = row.key_id.clone();
    assert!(day_key.starts_with('r'), "{day_key}");
    assert_eq!(store.tip(&open).await.unwrap().unwrap().key_id, "k1");
    let opened = app.state.intake.open_tip(&closing).await.unwrap().unwrap();
    assert_eq!(opened.description, "tin sẽ đóng rồi bị huỷ");

    // A backup now, then a pass thirteen months on: destroyed, its day key deleted.
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("b");
    let data = app.dir.path().to_string_lossy().into_owned();
    let mut env = vec![("TINBAO_DATA_DIR", data.as_str())];
    env.extend(PgDb::env(&app.pg));
    let (ok, out) = cli(work.path(), &["backup", backup.to_str().unwrap()], &env).await;
    assert!(ok, "{out}");
    let later = now + 400 * DAY;
    assert_eq!(
        tinbao::retention::pass(&store, &config, Some(&key_file), later, wait)
            .await
            .unwrap()
            .destroyed,
        1
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !text.contains(&day_key),
        "the day key is gone from the key file"
    );
    assert!(store
        .tip(&closing)
        .await
        .unwrap()
        .unwrap()
        .destroyed_at
        .is_some());

    // The backup still holds the tip's key, wrapped under a KEK no key file has now.
    let ring = tinbao::crypto::KeyRing::load(&key_file).unwrap();
    if engine == Engine::Sqlite {
        let copy = tinbao::store::Store::open_sqlite_copy(&backup.join("tinbao.db"))
            .await
            .unwrap();
        let old = copy.tip(&closing).await.unwrap().unwrap();
        assert_eq!(old.key_id, day_key);
        let wrapped = tinbao::crypto::WrappedKey {
            key_id: old.key_id.clone(),
            wrapped: old.wrapped_key.clone().unwrap(),
        };
        assert!(ring.open_tip_key(&closing, &wrapped).is_err());
        copy.close().await;
    }

    // Restored with today's key file: the open tip is back, the destroyed one is not.
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(&key_file, target.path().join("keys.toml")).unwrap();
    let target_pg = PgDb::for_engine(engine).await;
    let target_data = target.path().to_string_lossy().into_owned();
    let mut target_env = vec![("TINBAO_DATA_DIR", target_data.as_str())];
    target_env.extend(PgDb::env(&target_pg));
    let (ok, out) = cli(
        work.path(),
        &["restore", backup.to_str().unwrap()],
        &target_env,
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1 tips in the backup were destroyed since"),
        "{out}"
    );
    let restored_url = target_pg.as_ref().map(|pg| pg.url.clone());
    let restored_dir = target.path().to_path_buf();
    let restored = spawn_app_with(engine, move |c| {
        c.data_dir = restored_dir;
        c.database_url = restored_url;
    })
    .await;
    let gone = restored
        .state
        .intake
        .open_tip(&closing)
        .await
        .unwrap()
        .unwrap();
    assert!(gone.row.destroyed_at.is_some() && gone.description.is_empty());
    let kept = restored
        .state
        .intake
        .open_tip(&open)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.description, "tin vẫn đang xử lý");
    restored.stop().await;
    app.stop().await;
}
