//! The repository conformance suite: every engine must pass the same checks.

use crate::helpers::*;
use tinbao::geo::shipped_units;
use tinbao::store::{NewAttachment, NewMessageRecord, NewTipRecord, Store, WrappedKeyRow};

/// A fresh store on `engine`. Keep the [`PgDb`] bound (`_pg`, not `_`) to the end of the
/// test: dropping it drops the database.
async fn open(engine: Engine, dir: &std::path::Path) -> (Store, Option<PgDb>) {
    let (config, pg) = test_config(engine, dir).await;
    let store = tinbao::app::open_store(&config).await.unwrap();
    (store, pg)
}

fn record(id: &str, mac: u8) -> NewTipRecord {
    NewTipRecord {
        id: id.into(),
        receipt_mac: vec![mac; 32],
        channel: "web",
        category: "dealing",
        priority: 2,
        status: "new",
        happening_now: true,
        province_code: Some(1),
        commune_code: Some(70),
        village_id: None,
        created_at: 1_000,
        due_at: 2_000,
        key_id: "k1".into(),
        wrapped_key: vec![1, 2, 3],
        description: vec![9; 40],
        place_details: None,
        village_text: Some(vec![4; 20]),
        occurred_at: None,
        contact: None,
        attachments: vec![NewAttachment {
            id: format!("{id}-a"),
            content_type: "image/jpeg".into(),
            size: 3,
            body: vec![5, 5, 5],
        }],
        chat: None,
    }
}

engine_test!(every_engine_passes_the_repository_conformance_suite);
async fn every_engine_passes_the_repository_conformance_suite(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _pg) = open(engine, dir.path()).await;
    assert!(store.ping().await);
    // Migrations are idempotent, and so is loading the shipped units.
    store.migrate().await.unwrap();
    assert_eq!(
        store.ensure_admin_units(&shipped_units()).await.unwrap(),
        3321
    );
    assert_eq!(
        store.ensure_admin_units(&shipped_units()).await.unwrap(),
        3321
    );
    assert_eq!(store.provinces().await.unwrap().len(), 34);
    assert_eq!(store.communes().await.unwrap().len(), 3321);

    let v1 = store.add_village(70, "Thôn A").await.unwrap();
    assert_eq!(store.add_village(70, "Thôn A").await.unwrap(), v1);
    store.add_village(70, "Thôn B").await.unwrap();
    let names: Vec<String> = store
        .villages(70)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["Thôn A", "Thôn B"]);

    store.add_key_check("k1", b"check", 1).await.unwrap();
    store.add_key_check("k1", b"other", 2).await.unwrap();
    assert_eq!(
        store.key_checks().await.unwrap(),
        vec![("k1".to_owned(), b"check".to_vec())]
    );
    assert_eq!(store.meta("m").await.unwrap(), None);
    store.set_meta("m", b"1").await.unwrap();
    store.set_meta("m", b"2").await.unwrap();
    assert_eq!(store.meta("m").await.unwrap(), Some(b"2".to_vec()));

    let a = record("tip-a", 1);
    let b = record("tip-b", 2);
    store.insert_tips(&[&a, &b]).await.unwrap();
    let dup = record("tip-c", 1);
    let err = store.insert_tips(&[&dup]).await.unwrap_err();
    assert!(err.is_unique_violation(), "a receipt MAC is unique");
    assert!(
        store.tip("tip-c").await.unwrap().is_none(),
        "the failed batch left nothing"
    );

    let got = store.tip_by_receipt(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(got.id, "tip-b");
    assert!(got.happening_now);
    assert_eq!(got.village_text, Some(vec![4; 20]));
    assert_eq!(got.place_details, None);
    assert!(store.tip_by_receipt(&[3; 32]).await.unwrap().is_none());

    store
        .add_message(&NewMessageRecord {
            id: "m1".into(),
            tip_id: "tip-a".into(),
            author: "police",
            created_at: 5_000,
            body: vec![7; 10],
            attachments: vec![NewAttachment {
                id: "m1-a".into(),
                content_type: "image/jpeg".into(),
                size: 1,
                body: vec![8],
            }],
            outbox: Vec::new(),
            photos_missing: 2,
        })
        .await
        .unwrap();
    let msgs = store.messages("tip-a").await.unwrap();
    assert_eq!(msgs.len(), 1);
    // Photos that never arrived are noted with the message, in its transaction.
    let gaps = store.photo_gaps("tip-a").await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].missing, gaps[0].created_at), (2, 5_000));
    assert_eq!(msgs[0].author, "police");
    let atts = store.attachments("tip-a").await.unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[1].message_id.as_deref(), Some("m1"));
    assert_eq!(
        store.attachment_body("tip-a", "m1-a").await.unwrap(),
        Some(vec![8])
    );
    assert_eq!(
        store.attachment_body("tip-b", "m1-a").await.unwrap(),
        None,
        "only the tip's own"
    );
    assert_eq!(store.tip("tip-a").await.unwrap().unwrap().updated_at, 5_000);

    assert_eq!(store.tips_under_key("k1").await.unwrap(), 2);
    let todo = store.keys_to_rewrap("k2", 10).await.unwrap();
    assert_eq!(todo.len(), 2);
    store
        .store_rewrapped(
            &todo
                .iter()
                .map(|r| WrappedKeyRow {
                    id: r.id.clone(),
                    key_id: "k2".into(),
                    wrapped_key: vec![0],
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(store.tips_under_key("k1").await.unwrap(), 0);
    assert!(store.keys_to_rewrap("k2", 10).await.unwrap().is_empty());
    store.close().await;
}

engine_test!(a_batch_larger_than_one_statement_binds_is_stored_whole_or_not_at_all);
/// 2,500 tips in one `insert_tips` (more than one statement can bind on SQLite) are all
/// stored; a batch whose last tip repeats a receipt stores none of its tips.
async fn a_batch_larger_than_one_statement_binds_is_stored_whole_or_not_at_all(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _pg) = open(engine, dir.path()).await;
    store.ensure_admin_units(&shipped_units()).await.unwrap();
    let tips: Vec<NewTipRecord> = (0..2500u32)
        .map(|i| {
            let mut t = record(&format!("big{i:05}"), 0);
            t.receipt_mac = i.to_be_bytes().repeat(8);
            t.attachments.clear();
            t
        })
        .collect();
    let refs: Vec<&NewTipRecord> = tips.iter().collect();
    store.insert_tips(&refs).await.unwrap();
    let count = |store: Store| async move {
        let mut n = 0;
        for t in &["big00000", "big01234", "big02499"] {
            n += i64::from(store.tip(t).await.unwrap().is_some());
        }
        n
    };
    assert_eq!(count(store.clone()).await, 3);

    let mut again: Vec<NewTipRecord> = (0..1500u32)
        .map(|i| {
            let mut t = record(&format!("more{i:05}"), 0);
            t.receipt_mac = (100_000 + i).to_be_bytes().repeat(8);
            t.attachments.clear();
            t
        })
        .collect();
    again[1499].receipt_mac = 7u32.to_be_bytes().repeat(8); // big00007's
    let refs: Vec<&NewTipRecord> = again.iter().collect();
    assert!(store
        .insert_tips(&refs)
        .await
        .unwrap_err()
        .is_unique_violation());
    assert!(store.tip("more00000").await.unwrap().is_none());
}

engine_test!(arrivals_are_sorted_into_the_inbox_in_order_and_retries_dropped);
/// Events are stored as arrivals (a retry too) and counted as waiting; sorting moves them
/// into the inbox oldest first, one per de-duplication key: a retry in the same batch, in
/// a later batch, or after the original was processed is dropped, while a key older than
/// its window counts as new again. Batches larger than one statement binds are whole.
async fn arrivals_are_sorted_into_the_inbox_in_order_and_retries_dropped(engine: Engine) {
    use tinbao::store::{NewInboxEvent, Sorted};
    let dir = tempfile::tempdir().unwrap();
    let (store, _pg) = open(engine, dir.path()).await;
    let now = 1_800_000_000_000i64;
    let event = |n: usize, key: &str, at: i64| NewInboxEvent {
        reference: format!("ref-{n:05}"),
        transport: "android",
        sender: format!("sender-{}", n % 7).into_bytes(),
        received_at: at,
        event: format!("sealed-{n}").into_bytes(),
        dedupe_key: key.as_bytes().to_vec(),
        dedupe_after: at - 60_000,
    };
    // 2,500 events, every fifth a retry of the one before it.
    let events: Vec<NewInboxEvent> = (0..2500)
        .map(|n| {
            let key = if n % 5 == 4 { n - 1 } else { n };
            event(n, &format!("key-{key}"), now)
        })
        .collect();
    let refs: Vec<&NewInboxEvent> = events.iter().collect();
    store.insert_inbox(&refs).await.unwrap();
    assert_eq!(store.inbox_len().await.unwrap(), 2500);
    assert_eq!(
        store.sort_arrivals(1500).await.unwrap(),
        Sorted {
            new: 1200,
            retries: 300
        }
    );
    assert_eq!(store.inbox_len().await.unwrap(), 2200);
    // Retries of events sorted in the first batch, arriving later.
    let late = [
        event(3000, "key-0", now + 1000),
        event(3001, "key-1498", now + 1000),
    ];
    store
        .insert_inbox(&late.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        store.sort_arrivals(5000).await.unwrap(),
        Sorted {
            new: 800,
            retries: 202
        }
    );
    assert_eq!(store.sort_arrivals(5000).await.unwrap(), Sorted::default());
    assert_eq!(store.inbox_len().await.unwrap(), 2000);

    // In the order they arrived, each one's sealed bytes with its reference.
    // Seven senders (n % 7); every fifth event (n % 5 == 4) was a retry. One event a
    // sender is claimed until it is finished: each sender's oldest.
    async fn claim(store: &Store, now: i64) -> Vec<usize> {
        let rows = store.claim_inbox(now, now + 60_000, 5000).await.unwrap();
        let mut got = Vec::new();
        for r in &rows {
            let n: usize = r.reference[4..].parse().unwrap();
            assert_eq!(r.event, format!("sealed-{n}").into_bytes());
            assert_eq!(r.sender, format!("sender-{}", n % 7).into_bytes());
            store.finish_inbox(r.id).await.unwrap();
            got.push(n);
        }
        got.sort();
        got
    }
    assert_eq!(claim(&store, now).await, vec![0, 1, 2, 3, 5, 6, 11]);
    assert_eq!(claim(&store, now).await, vec![7, 8, 10, 12, 13, 16, 18]);

    // Past its window, a key is new again.
    let much_later = now + 10 * 60_000;
    store
        .insert_inbox(&[&event(4000, "key-2", much_later)])
        .await
        .unwrap();
    assert_eq!(
        store.sort_arrivals(10).await.unwrap(),
        Sorted { new: 1, retries: 0 }
    );
    store.close().await;
}
