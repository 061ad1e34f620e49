//! A sixth provider: one file implementing `Provider` (`fakes/pigeon.rs`) and one line
//! registering it (`Application::build_with`), and the dispatcher treats it like the five
//! tinbao ships: each message once, retries, Retry-After, its rate, opt-outs.

use crate::fakes::pigeon::{Pigeon, PIGEON};
use crate::helpers::{engine_test, test_config, Engine};
use std::sync::Arc;
use std::time::Duration;
use tinbao::channels::{Outgoing, SendOutcome};
use tinbao::store::OutboxStatus;
use tinbao::Application;
use tokio::sync::oneshot;

/// The pigeons' rate.
const RATE: u32 = 5;

engine_test!(
    a_sixth_provider_is_one_file_and_one_line,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn a_sixth_provider_is_one_file_and_one_line(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    // `_pg` drops the PostgreSQL database at the end.
    let (mut config, _pg) = test_config(engine, dir.path()).await;
    config.outbox.backoff_ms = 50;
    let pigeon = Pigeon::new(RATE);
    let app = Application::build_with(config, vec![Arc::new(pigeon.clone())])
        .await
        .expect("application builds");
    let outbox = app.outbox().clone();
    let store = app.state().store.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));

    pigeon.script(
        "coop-windy",
        vec![
            SendOutcome::Transient("headwind".into()),
            SendOutcome::Transient("headwind".into()),
        ],
    );
    pigeon.script(
        "coop-busy",
        vec![SendOutcome::RetryAfter(Duration::from_secs(1))],
    );
    pigeon.script(
        "coop-gone",
        vec![SendOutcome::OptedOut("the coop was abandoned".into())],
    );
    let mut expected = Vec::new();
    for i in 0..12 {
        expected.push((format!("coop-{i}"), format!("message {i}")));
    }
    for to in ["coop-windy", "coop-busy"] {
        expected.push((to.to_owned(), format!("for {to}")));
    }
    for (to, text) in &expected {
        outbox
            .queue(PIGEON, &Outgoing::new(to.as_str(), text.as_str()))
            .await
            .unwrap();
    }
    outbox
        .queue(PIGEON, &Outgoing::new("coop-gone", "for coop-gone"))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = store.outbox_counts().await.unwrap();
        let queued = counts
            .iter()
            .any(|(s, n)| s == OutboxStatus::Queued.as_str() && *n > 0);
        if !queued {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "[{engine:?}] the pigeons did not finish: {counts:?}, saw {:?}",
            pigeon.attempts()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Each message went exactly once, with its text.
    let mut delivered = pigeon.delivered();
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected, "[{engine:?}]");
    let count = |st: OutboxStatus| {
        counts
            .iter()
            .find(|(s, _)| s == st.as_str())
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        count(OutboxStatus::Sent),
        expected.len() as i64,
        "[{engine:?}] {counts:?}"
    );
    // The opt-out settled as one, and was tried once.
    assert_eq!(count(OutboxStatus::OptedOut), 1, "[{engine:?}] {counts:?}");
    assert_eq!(pigeon.attempts_to("coop-gone").len(), 1);

    // Transient failures were retried until taken, under one idempotency key.
    let windy = pigeon.attempts_to("coop-windy");
    assert_eq!(windy.len(), 3, "[{engine:?}] {windy:?}");
    assert!(windy[2].accepted && !windy[0].accepted && !windy[1].accepted);
    assert!(windy[0].key.is_some());
    assert!(windy.iter().all(|a| a.key == windy[0].key));

    // A Retry-After was waited out before the message went again.
    let busy = pigeon.attempts_to("coop-busy");
    assert_eq!(busy.len(), 2, "[{engine:?}] {busy:?}");
    assert!(
        busy[1].at.duration_since(busy[0].at) >= Duration::from_millis(900),
        "[{engine:?}] retried after {:?}",
        busy[1].at.duration_since(busy[0].at)
    );

    // The pigeons' rate held: never more than RATE in any one second.
    let busiest = pigeon.busiest_second();
    assert!(
        busiest <= RATE as usize,
        "[{engine:?}] {busiest} attempts in one second"
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
