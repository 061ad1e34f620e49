//! Broadcast benchmark (issue 5's figures). Run with `cargo bench --bench broadcast`.
//!
//! For each engine (SQLite in a temporary file; PostgreSQL in a fresh database when a
//! server answers at `BENCH_DATABASE_URL` / `TEST_DATABASE_URL`), through the library:
//!
//! 1. fan-out: stores `BENCH_SUBSCRIBERS` (1,000,000) active Android-SMS subscribers of one
//!    village (sealed addresses, keyed pseudonyms, as subscribing does), creates a
//!    broadcast to the village, and times `Broadcasts::fan_out`: every subscriber put in
//!    the durable outbox, in chunks of `fanout_chunk` (20,000) per transaction;
//! 2. sending with limits lifted: a fresh village of `BENCH_SEND` (50,000) subscribers, the
//!    real outbox dispatcher sending through a fake Android SMS Gateway on loopback (it
//!    answers 202 with the message id, as the gateway does), no rate limit: messages/s from
//!    the broadcast's start until every message is settled `sent`;
//! 3. sending with a limit, in a fresh database and dispatcher: `BENCH_LIMITED` (1,500)
//!    subscribers at `BENCH_RATE` (300) messages/s; the fake gateway records when each
//!    message arrived, and the benchmark reports the most messages in any one-second
//!    window.
//!
//! `BENCH_ENGINES` (`sqlite,postgres`) picks the engines. The fake gateway, the dispatcher
//! and the database share the machine's cores.

#[path = "common/server.rs"]
mod server;

use anyhow::Result;
use axum::routing::post;
use axum::{Json, Router};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinbao::broadcast::Broadcasts;
use tinbao::channels::sms::AndroidClient;
use tinbao::channels::Transport;
use tinbao::config::Config;
use tinbao::crypto::KeyRing;
use tinbao::delivery::{Outbox, Providers};
use tinbao::store::{NewBroadcast, Store};

const COMMUNE: i64 = 6172;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fake Android SMS Gateway: counts messages and when they arrived.
struct Fake {
    base: String,
    count: Arc<AtomicU64>,
    times: Arc<Mutex<Vec<Instant>>>,
}

async fn fake_gateway() -> Result<Fake> {
    let count = Arc::new(AtomicU64::new(0));
    let times = Arc::new(Mutex::new(Vec::new()));
    let (c, t) = (count.clone(), times.clone());
    let app = Router::new().route(
        "/3rdparty/v1/messages",
        post(move |Json(v): Json<serde_json::Value>| {
            let (c, t) = (c.clone(), t.clone());
            async move {
                let n = c.fetch_add(1, Ordering::Relaxed);
                t.lock().unwrap().push(Instant::now());
                let id = v
                    .get("id")
                    .and_then(|i| i.as_str())
                    .map_or_else(|| format!("fake{n}"), str::to_owned);
                (
                    axum::http::StatusCode::ACCEPTED,
                    Json(serde_json::json!({"id": id, "state": "Pending"})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Fake { base, count, times })
}

fn max_per_second(times: &[Instant]) -> usize {
    let (mut best, mut start) = (0, 0);
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

async fn populate(
    b: &Broadcasts,
    store: &Store,
    village: i64,
    n: usize,
    offset: usize,
) -> Result<()> {
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(b.new_subscriber(
            Transport::ANDROID,
            &format!("+849{:08}", offset + i),
            village,
            COMMUNE,
            if i % 10 == 0 { "en" } else { "vi" },
        ));
        if batch.len() == 10_000 {
            store.insert_subscribers(&batch).await?;
            batch.clear();
        }
    }
    store.insert_subscribers(&batch).await?;
    Ok(())
}

async fn broadcast(store: &Store, id: &str, village: i64) -> Result<()> {
    store
        .insert_broadcast(&NewBroadcast {
            id: id.into(),
            commune_code: COMMUNE,
            author_id: "bench-head".into(),
            title: "Tháng hành động".into(),
            texts: r#"{"vi":"Hưởng ứng Tháng hành động phòng, chống ma túy: họp thôn 19h ngày 26/6.","en":"Action month: village meeting 7 pm, 26 June."}"#.into(),
            transports: "android".into(),
            villages: village.to_string(),
            status: tinbao::store::BroadcastStatus::Scheduled,
            send_at: 0,
            approved_by: Some("bench-officer".into()),
            created_at: 0,
        })
        .await?;
    Ok(())
}

/// Waits until the gateway has taken `expected` messages (watched in memory, so that the
/// wait costs the database nothing), then until every message of the broadcast is settled.
async fn wait_settled(
    store: &Store,
    id: &str,
    total: i64,
    gateway: &AtomicU64,
    expected: u64,
) -> Result<Duration> {
    let start = Instant::now();
    while gateway.load(Ordering::Relaxed) < expected && start.elapsed() < Duration::from_secs(900) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let counts = store.broadcast_counts(id).await?;
        let queued: i64 = counts
            .iter()
            .filter(|c| c.status == "queued")
            .map(|c| c.count)
            .sum();
        let all: i64 = counts
            .iter()
            .filter(|c| c.status != "delivered")
            .map(|c| c.count)
            .sum();
        if all >= total && queued == 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(900) {
            anyhow::bail!("broadcast {id} did not finish: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database, a fake gateway and the broadcast service over them; `rate` is the
/// gateway's limit (0: none).
struct Bench {
    store: Store,
    outbox: Outbox,
    fake: Fake,
    config: Config,
    b: Broadcasts,
}

impl Bench {
    async fn open(url: &str, rate: u32) -> Result<Bench> {
        let store = Store::connect(url, 8).await?;
        store.migrate().await?;
        store
            .ensure_admin_units(&tinbao::geo::shipped_units())
            .await?;
        let keys = Arc::new(KeyRing::generate());
        let fake = fake_gateway().await?;
        let mut config = Config::default();
        config.broadcast.quiet_start = "00:00".into();
        config.broadcast.quiet_end = "00:00".into();
        config.sms.android.enabled = true;
        config.sms.android.api_url = fake.base.clone();
        config.sms.android.username = "u".into();
        config.sms.android.password = "p".into();
        config.sms.android.rate_per_second = rate;
        let outbox = Outbox::new(store.clone(), keys.clone());
        let b = Broadcasts::new(
            store.clone(),
            keys,
            &config.broadcast,
            "http://127.0.0.1",
            outbox.wake_signal(),
        );
        Ok(Bench {
            store,
            outbox,
            fake,
            config,
            b,
        })
    }

    /// Starts the real outbox dispatcher, sending through the fake gateway.
    fn start_dispatcher(&self) {
        let mut providers = Providers::default();
        providers.add(AndroidClient::new(&self.config.sms.android));
        self.outbox
            .spawn_dispatcher(providers, Some(Arc::new(self.b.clone())), &self.config);
    }

    /// A new village with `n` subscribers, a broadcast to it started, and the time from
    /// its start until every message is settled.
    async fn send(&self, id: &str, n: usize, offset: usize) -> Result<Duration> {
        let village = self.store.add_village(COMMUNE, id).await?;
        populate(&self.b, &self.store, village, n, offset).await?;
        broadcast(&self.store, id, village).await?;
        self.store
            .start_broadcast(id, tinbao::clock::now_ms())
            .await?;
        let expected = self.fake.count.load(Ordering::Relaxed) + n as u64;
        let t = Instant::now();
        self.b.fan_out(id).await?;
        wait_settled(&self.store, id, n as i64, &self.fake.count, expected).await?;
        Ok(t.elapsed())
    }
}

/// After the million subscribers were stored in one go (which a village's subscribers
/// never are: they come over months): PostgreSQL's autovacuum of the new table and the
/// checkpoint that the load's write-ahead log calls for are done before the fan-out is
/// timed, not during it; SQLite's log is checkpointed likewise.
async fn settle(url: &str) -> Result<()> {
    use sqlx::Connection;
    let t = Instant::now();
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query("VACUUM ANALYZE subscribers")
            .execute(&mut c)
            .await?;
        sqlx::query("CHECKPOINT").execute(&mut c).await?;
        c.close().await?;
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await?;
        c.close().await?;
    }
    println!(
        "  (vacuumed and checkpointed after storing them: {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(engine: &str, url: &str) -> Result<()> {
    let bench = Bench::open(url, 0).await?;
    let (store, b) = (&bench.store, &bench.b);

    // 1. Fan-out of a million subscribers (no dispatcher yet: only the outbox is timed).
    let n = env_num("BENCH_SUBSCRIBERS", 1_000_000);
    let village = store.add_village(COMMUNE, "Thôn Bench").await?;
    let t = Instant::now();
    populate(b, store, village, n, 0).await?;
    println!(
        "[{engine}] stored {n} subscribers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    settle(url).await?;
    broadcast(store, "fanout", village).await?;
    store
        .start_broadcast("fanout", tinbao::clock::now_ms())
        .await?;
    let t = Instant::now();
    let queued = b.fan_out("fanout").await?;
    let took = t.elapsed();
    println!(
        "[{engine}] FAN-OUT {queued} recipients into the outbox in {:.2} s (target < 5 s): {:.0} rows/s",
        took.as_secs_f64(),
        queued as f64 / took.as_secs_f64()
    );
    store
        .cancel_broadcast("fanout", "bench", tinbao::clock::now_ms())
        .await?;

    // 2. Sending with limits lifted.
    bench.start_dispatcher();
    let send_n = env_num("BENCH_SEND", 50_000);
    let before = bench.fake.count.load(Ordering::Relaxed);
    let took = bench.send("unlimited", send_n, 10_000_000).await?;
    let got = bench.fake.count.load(Ordering::Relaxed) - before;
    println!(
        "[{engine}] SEND {send_n} messages, limits lifted: {:.1} s, {:.0} messages/s (target >= 5,000); gateway took {got}",
        took.as_secs_f64(),
        send_n as f64 / took.as_secs_f64()
    );
    store.close().await;
    Ok(())
}

async fn limited(engine: &str, url: &str) -> Result<()> {
    let rate = env_num("BENCH_RATE", 300);
    let n = env_num("BENCH_LIMITED", 1_500);
    let bench = Bench::open(url, rate as u32).await?;
    bench.start_dispatcher();
    let took = bench.send("limited", n, 0).await?;
    let times = bench.fake.times.lock().unwrap().clone();
    println!(
        "[{engine}] LIMIT {rate}/s: {n} messages in {:.1} s ({:.0}/s), most in any one-second window: {} (limit {rate})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        max_per_second(&times)
    );
    bench.store.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let engines = std::env::var("BENCH_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    for engine in engines.split(',') {
        match engine.trim() {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                run("sqlite", &url).await?;
                let dir2 = tempfile::tempdir()?;
                let url2 = format!("sqlite://{}", dir2.path().join("bench.db").display());
                limited("sqlite", &url2).await?;
            }
            "postgres" => {
                let Some(db) = server::PgDatabase::create().await? else {
                    println!("[postgres] no server answers; skipped");
                    continue;
                };
                let result = run("postgres", &db.url).await;
                db.drop_now().await;
                result?;
                let Some(db2) = server::PgDatabase::create().await? else {
                    continue;
                };
                let result = limited("postgres", &db2.url).await;
                db2.drop_now().await;
                result?;
            }
            other => println!("unknown engine {other}"),
        }
    }
    Ok(())
}
