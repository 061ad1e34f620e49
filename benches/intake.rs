//! HTTP intake benchmark against the real `tinbao` binary.
//!
//! Run with `cargo bench --bench intake`. For each engine (SQLite always; PostgreSQL when a
//! server answers) it starts `tinbao serve` as a child process on a free port with a fresh
//! data directory and abuse limits off, then measures:
//!
//! 1. maximum durable throughput: a closed loop over `BENCH_CONCURRENCY` (64) keep-alive
//!    HTTP/1.1 connections for `BENCH_SECONDS` (10) after a 2 s warm-up;
//! 2. latency under a steady `BENCH_RATE` (500) tips/s: an open loop that schedules requests
//!    at fixed intervals whatever the completions, with latency measured from the scheduled
//!    send time (no coordinated omission), over `BENCH_OPEN_CONNECTIONS` (64) connections;
//! 3. the server's memory: VmRSS sampled every 100 ms, and VmHWM at the end.
//!
//! At the end the number of 201 answers is compared with `SELECT COUNT(*) FROM tips`.
//!
//! PostgreSQL: `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a server where the benchmark may
//! `CREATE DATABASE tinbao_bench_<random>`; it drops it at the end. `BENCH_ENGINES`
//! (`sqlite,postgres`) picks the engines. `BENCH_CLIENT_THREADS` (1) sets the load
//! generator's tokio worker threads: the client and the server share the machine.

#[path = "common/procstat.rs"]
mod procstat;
use procstat::*;

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const WARMUP: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const CATEGORIES: [&str; 9] = [
    "dealing",
    "hotspot",
    "users",
    "psychosis",
    "cultivation",
    "school",
    "online",
    "disguised",
    "other",
];

const SENTENCES: [&str; 8] = [
    "Có một nhóm thanh niên thường tụ tập ở cuối ngõ vào buổi tối, ra vào liên tục.",
    "Tôi thấy người lạ đi xe máy không biển số dừng lại đưa gói nhỏ cho mấy người đứng chờ.",
    "Ngôi nhà cuối ngõ đóng cửa cả ngày nhưng đêm thì rất đông người đến rồi đi nhanh.",
    "Mùi khét lạ bốc ra từ phòng trọ tầng hai, hàng xóm đã nhắc nhiều lần mà không thay đổi.",
    "Có bơm kim tiêm vứt ở bãi đất trống gần trường học, các cháu nhỏ hay chơi ở đó.",
    "Một người đàn ông khoảng ba mươi tuổi la hét, đập phá đồ đạc, nói năng không mạch lạc.",
    "Tài khoản trên mạng xã hội rao bán \"kẹo\" và \"nước vui\" giao tận nơi trong phường.",
    "Quán cà phê mở khuya, nhạc to, khách lạ ra vào nhà vệ sinh rất lâu rồi mới đi.",
];

// ---------------------------------------------------------------------------------------
// Configuration

struct Settings {
    concurrency: usize,
    seconds: u64,
    rate: u64,
    open_connections: usize,
    client_threads: usize,
    engines: Vec<String>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let engines = std::env::var("BENCH_ENGINES")
            .unwrap_or_else(|_| "sqlite,postgres".into())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        let s = Settings {
            concurrency: env_num("BENCH_CONCURRENCY", 64)?,
            seconds: env_num("BENCH_SECONDS", 10)?,
            rate: env_num("BENCH_RATE", 500)?,
            open_connections: env_num("BENCH_OPEN_CONNECTIONS", 64)?,
            client_threads: env_num("BENCH_CLIENT_THREADS", 1)?,
            engines,
        };
        if s.concurrency == 0 || s.seconds == 0 || s.rate == 0 || s.open_connections == 0 {
            bail!(
                "BENCH_CONCURRENCY, BENCH_SECONDS, BENCH_RATE and BENCH_OPEN_CONNECTIONS \
                 must be > 0"
            );
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------
// Entry point

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`, which is ignored; the settings come from the environment.
    let settings = Settings::from_env()?;
    let threads = settings.client_threads.max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tinbao"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("tinbao intake benchmark");
    println!(
        "  binary {}\n  {} CPU core(s), shared by the server AND this load generator \
         ({} client thread(s)); figures are for both on one machine",
        bin.display(),
        cores,
        settings.client_threads.max(1)
    );
    println!(
        "  closed loop: {} connections, {} s (+{} s warm-up); open loop: {} tips/s for {} s \
         over up to {} connections",
        settings.concurrency,
        settings.seconds,
        WARMUP.as_secs(),
        settings.rate,
        settings.seconds,
        settings.open_connections
    );

    let mut results = Vec::new();
    for engine in &settings.engines {
        match engine.as_str() {
            "sqlite" => {
                println!("\n== SQLite ==");
                results.push(bench_engine(&bin, &settings, Engine::Sqlite).await?);
            }
            "postgres" | "postgresql" | "pg" => {
                println!("\n== PostgreSQL ==");
                match PgDatabase::create().await {
                    Ok(Some(db)) => {
                        let r = bench_engine(&bin, &settings, Engine::Postgres(&db)).await;
                        db.drop_now().await;
                        results.push(r?);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
            }
            other => bail!("unknown engine {other:?} in BENCH_ENGINES (sqlite, postgres)"),
        }
    }

    println!("\n== Summary ==");
    println!(
        "({} cores shared by server and load generator; closed loop C={}; \
         open loop {} tips/s; {} s each)\n",
        cores, settings.concurrency, settings.rate, settings.seconds
    );
    println!(
        "| engine | max tips/s | p50 @ max | p99 @ max | achieved @ {r}/s | p50 @ {r}/s \
         | p99 @ {r}/s | max @ {r}/s | peak RSS | VmHWM | errors | durable (201s = rows) |",
        r = settings.rate
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &results {
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {:.1} MB | {:.1} MB | {} | {} |",
            r.engine,
            r.closed.rate,
            ms(r.closed.hist.value_at_quantile(0.50)),
            ms(r.closed.hist.value_at_quantile(0.99)),
            r.open.rate,
            ms(r.open.hist.value_at_quantile(0.50)),
            ms(r.open.hist.value_at_quantile(0.99)),
            ms(r.open.hist.max()),
            mb(r.peak_rss_kb),
            mb(r.hwm_kb),
            r.closed.errors + r.open.errors,
            if r.durable_ok {
                format!("yes ({})", r.rows)
            } else {
                format!("NO ({} vs {})", r.created, r.rows)
            },
        );
    }
    println!();
    let mut failed = false;
    for r in &results {
        let target = match r.engine {
            "SQLite" => 2000.0,
            _ => 1000.0,
        };
        let checks = [
            (
                format!("{} max throughput >= {target:.0} tips/s", r.engine),
                r.closed.rate >= target,
                format!("{:.0}", r.closed.rate),
            ),
            (
                format!("{} p99 @ {}/s < 50 ms", r.engine, settings.rate),
                r.open.hist.value_at_quantile(0.99) < 50_000,
                ms(r.open.hist.value_at_quantile(0.99)),
            ),
            (
                format!("{} peak RSS < 100 MB", r.engine),
                r.peak_rss_kb.max(r.hwm_kb) < 100 * 1024,
                format!("{:.1} MB", mb(r.peak_rss_kb.max(r.hwm_kb))),
            ),
            (
                format!("{} every 201 is a stored row", r.engine),
                r.durable_ok,
                format!("{} vs {}", r.created, r.rows),
            ),
        ];
        for (what, ok, got) in checks {
            failed |= !ok;
            println!("  [{}] {what}: {got}", if ok { "ok" } else { "MISS" });
        }
    }
    if failed {
        println!("\nsome targets were missed (see above)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// One engine

enum Engine<'a> {
    Sqlite,
    Postgres(&'a PgDatabase),
}

struct EngineResult {
    engine: &'static str,
    closed: PhaseResult,
    open: PhaseResult,
    peak_rss_kb: u64,
    hwm_kb: u64,
    created: u64,
    rows: i64,
    durable_ok: bool,
}

async fn bench_engine(bin: &Path, settings: &Settings, engine: Engine<'_>) -> Result<EngineResult> {
    let data = tempfile::Builder::new().prefix("tinbao-bench-").tempdir()?;
    let db_url = match &engine {
        Engine::Sqlite => None,
        Engine::Postgres(db) => Some(db.url.clone()),
    };
    let server = Server::start(bin, data.path(), db_url.as_deref()).await?;
    let addr = server.addr;
    let pid = server.pid();
    let sampler = RssSampler::start(pid);
    let created = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(make_bodies(256));

    // 1. Closed loop.
    let cpu0 = CpuSnapshot::take(pid);
    let closed = closed_loop(
        addr,
        settings.concurrency,
        WARMUP,
        Duration::from_secs(settings.seconds),
        bodies.clone(),
        created.clone(),
    )
    .await?;
    let closed_cpu = cpu0.since(pid);
    let closed_rss = sampler.take_peak();
    closed.print(
        &format!("max throughput (closed loop, C={})", settings.concurrency),
        false,
    );
    println!(
        "    server CPU {:.0}% · client CPU {:.0}% (100% = one core) · machine {:.0}% busy \
         (all cores) · peak RSS {:.1} MB",
        closed_cpu.server_pct,
        closed_cpu.client_pct,
        closed_cpu.machine_pct,
        mb(closed_rss)
    );

    // 2. Open loop.
    let cpu0 = CpuSnapshot::take(pid);
    let open = open_loop(
        addr,
        settings.rate,
        settings.open_connections,
        Duration::from_secs(settings.seconds),
        bodies.clone(),
        created.clone(),
    )
    .await?;
    let open_cpu = cpu0.since(pid);
    let open_rss = sampler.take_peak();
    open.print(
        &format!(
            "steady load (open loop, {} tips/s scheduled)",
            settings.rate
        ),
        true,
    );
    println!(
        "    server CPU {:.0}% · client CPU {:.0}% · machine {:.0}% busy · peak RSS {:.1} MB",
        open_cpu.server_pct,
        open_cpu.client_pct,
        open_cpu.machine_pct,
        mb(open_rss)
    );

    // 3. Memory high-water mark, then a clean stop.
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let peak_rss_kb = closed_rss.max(open_rss).max(sampler.stop());
    println!(
        "  memory: peak VmRSS {:.1} MB (sampled every {} ms), VmHWM {:.1} MB",
        mb(peak_rss_kb),
        SAMPLE_EVERY.as_millis(),
        mb(hwm_kb)
    );
    server.stop().await;

    // 4. Durability: every 201 is a row.
    let created = created.load(Ordering::SeqCst);
    let rows = match &engine {
        Engine::Sqlite => {
            let path = data.path().join("tinbao.db");
            let url = format!("sqlite://{}?mode=ro", path.display());
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .with_context(|| format!("opening {url}"))?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tips")
                .fetch_one(&mut conn)
                .await?;
            conn.close().await.ok();
            n
        }
        Engine::Postgres(db) => db.count_tips().await?,
    };
    let durable_ok = rows >= 0 && rows as u64 == created;
    println!(
        "  durability: {created} answers 201, {rows} rows in tips after the server stopped: {}",
        if durable_ok { "match" } else { "MISMATCH" }
    );
    Ok(EngineResult {
        engine: match engine {
            Engine::Sqlite => "SQLite",
            Engine::Postgres(_) => "PostgreSQL",
        },
        closed,
        open,
        peak_rss_kb,
        hwm_kb,
        created,
        rows,
        durable_ok,
    })
}

// ---------------------------------------------------------------------------------------
// Request bodies

fn make_bodies(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            // ~300 characters of Vietnamese: four sentences, rotated.
            let mut description = String::new();
            for k in 0..4 {
                if k > 0 {
                    description.push(' ');
                }
                description.push_str(SENTENCES[(i + k * 3) % SENTENCES.len()]);
            }
            description.push_str(&format!(" (lần {i})"));
            let body = serde_json::json!({
                "category": CATEGORIES[i % CATEGORIES.len()],
                "province": 1,
                "commune": 70,
                "village": format!("Thôn {}", i % 12 + 1),
                "place_details": format!("nhà cuối ngõ {}", i % 40 + 1),
                "occurred_at": if i % 3 == 0 { "tối qua" } else { "chiều nay" },
                "happening_now": i % 7 == 0,
                "description": description,
                "contact": null,
            });
            Bytes::from(serde_json::to_vec(&body).expect("json"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// HTTP client: one hyper HTTP/1.1 connection per worker, kept alive.

struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

enum Outcome {
    Created,
    Status(StatusCode),
    Transport(String),
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        if let Err(e) = sender.ready().await {
            self.sender = None;
            return Err(e.into());
        }
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string());
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body))?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let status = res.status();
        let body = match res.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        Ok((status, body))
    }

    async fn submit(&mut self, body: Bytes) -> Outcome {
        match self.request(Method::POST, "/api/v1/tips", body).await {
            Ok((StatusCode::CREATED, _)) => Outcome::Created,
            Ok((status, _)) => Outcome::Status(status),
            Err(e) => Outcome::Transport(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs .. 5 min, 3 significant digits.
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("histogram")
}

#[derive(Default)]
struct Errors {
    count: u64,
    kinds: BTreeMap<String, u64>,
}

impl Errors {
    fn add(&mut self, kind: String) {
        self.count += 1;
        *self.kinds.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for (k, v) in other.kinds {
            *self.kinds.entry(k).or_default() += v;
        }
    }
}

struct WorkerResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: Errors,
}

struct PhaseResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Successful tips per second over the measured window.
    rate: f64,
    seconds: f64,
    /// Open loop only: requests scheduled in the window, and those never sent.
    scheduled: u64,
    unsent: u64,
}

impl PhaseResult {
    fn from_workers(parts: Vec<WorkerResult>, seconds: f64) -> PhaseResult {
        let mut hist = new_hist();
        let mut ok = 0;
        let mut errors = Errors::default();
        for p in parts {
            hist.add(&p.hist).expect("same bounds");
            ok += p.ok;
            errors.merge(p.errors);
        }
        PhaseResult {
            hist,
            ok,
            errors: errors.count,
            error_kinds: errors.kinds,
            rate: ok as f64 / seconds,
            seconds,
            scheduled: 0,
            unsent: 0,
        }
    }

    fn print(&self, title: &str, open: bool) {
        println!("  {title}");
        if open {
            println!(
                "    scheduled {} · 201 {} · errors {} · unsent {} · \
                 achieved {:.1} tips/s over {:.1} s",
                self.scheduled, self.ok, self.errors, self.unsent, self.rate, self.seconds
            );
            println!(
                "    latency from scheduled send: p50 {} · p95 {} · p99 {} · p99.9 {} · max {} ms",
                ms(self.hist.value_at_quantile(0.50)),
                ms(self.hist.value_at_quantile(0.95)),
                ms(self.hist.value_at_quantile(0.99)),
                ms(self.hist.value_at_quantile(0.999)),
                ms(self.hist.max())
            );
        } else {
            println!(
                "    201 {} · errors {} in {:.1} s → {:.0} tips/s",
                self.ok, self.errors, self.seconds, self.rate
            );
            println!(
                "    latency: p50 {} · p95 {} · p99 {} · max {} ms",
                ms(self.hist.value_at_quantile(0.50)),
                ms(self.hist.value_at_quantile(0.95)),
                ms(self.hist.value_at_quantile(0.99)),
                ms(self.hist.max())
            );
        }
        for (kind, n) in &self.error_kinds {
            println!("    error {kind}: {n}");
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// C workers, each sending its next tip as soon as the last one is answered. Requests sent
/// during the warm-up are not measured; the window is [start + warm-up, + duration).
async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
    created: Arc<AtomicU64>,
) -> Result<PhaseResult> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let bodies = bodies.clone();
        let created = created.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut r = WorkerResult {
                hist: new_hist(),
                ok: 0,
                errors: Errors::default(),
            };
            let mut i = w;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let body = bodies[i % bodies.len()].clone();
                i += concurrency;
                let outcome = conn.submit(body).await;
                let done = Instant::now();
                let measured = sent >= measure_from;
                match outcome {
                    Outcome::Created => {
                        created.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            r.ok += 1;
                            r.hist.saturating_record(micros(done - sent));
                        }
                    }
                    Outcome::Status(s) => {
                        if measured {
                            r.errors.add(format!("HTTP {}", s.as_u16()));
                        }
                    }
                    Outcome::Transport(e) => {
                        if measured {
                            r.errors.add(e);
                        }
                        // Don't spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            r
        }));
    }
    let mut parts = Vec::with_capacity(concurrency);
    for t in tasks {
        parts.push(t.await?);
    }
    Ok(PhaseResult::from_workers(parts, duration.as_secs_f64()))
}

/// Requests scheduled every 1/rate s for `duration`, whatever the completions; each is
/// taken by the next free connection (up to `connections`) and its latency runs from its
/// scheduled time, so queueing in the client counts against the server.
async fn open_loop(
    addr: SocketAddr,
    rate: u64,
    connections: usize,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
    created: Arc<AtomicU64>,
) -> Result<PhaseResult> {
    let total = rate * duration.as_secs();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    // Open the connections before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut c = Conn::new(addr);
        c.connect().await?;
        conns.push(c);
    }
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let rx = rx.clone();
        let bodies = bodies.clone();
        let created = created.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                hist: new_hist(),
                ok: 0,
                errors: Errors::default(),
            };
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, scheduled)) = next else { break };
                if stop.load(Ordering::Relaxed) {
                    continue; // Drain timeout hit: count as unsent.
                }
                let body = bodies[i as usize % bodies.len()].clone();
                let outcome = conn.submit(body).await;
                let latency = micros(Instant::now() - scheduled);
                match outcome {
                    Outcome::Created => {
                        created.fetch_add(1, Ordering::Relaxed);
                        r.ok += 1;
                        r.hist.saturating_record(latency);
                    }
                    Outcome::Status(s) => {
                        r.errors.add(format!("HTTP {}", s.as_u16()));
                        r.hist.saturating_record(latency);
                    }
                    Outcome::Transport(e) => {
                        r.errors.add(e);
                        r.hist.saturating_record(latency);
                    }
                }
            }
            r
        }));
    }
    let start = Instant::now() + Duration::from_millis(5);
    for i in 0..total {
        let at = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        tx.send((i, at)).map_err(|_| anyhow!("workers gone"))?;
    }
    drop(tx);
    // Let the queue drain, but not forever.
    let watchdog = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut parts = Vec::with_capacity(connections);
    for t in tasks {
        parts.push(t.await?);
    }
    let finished = Instant::now();
    watchdog.abort();
    let elapsed = (finished - start).as_secs_f64().max(duration.as_secs_f64());
    let mut result = PhaseResult::from_workers(parts, elapsed);
    result.scheduled = total;
    result.unsent = total - result.ok - result.errors;
    Ok(result)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------------------------------
// The server child process

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(bin: &Path, data_dir: &Path, database_url: Option<&str>) -> Result<Server> {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .current_dir(data_dir)
            .env("TINBAO_LISTEN", addr.to_string())
            .env("TINBAO_DATA_DIR", data_dir)
            .env("TINBAO_CONFIG", data_dir.join("no-such-tinbao.toml"))
            .env("TINBAO_RATE_LIMIT__ENABLED", "false")
            .env("TINBAO_LOG", "warn")
            .env_remove("TINBAO_KEYS")
            .env_remove("TINBAO_KEY_FILE")
            .env_remove("TINBAO_TLS_CERT")
            .env_remove("TINBAO_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match database_url {
            Some(url) => cmd.env("TINBAO_DATABASE_URL", url),
            None => cmd.env_remove("TINBAO_DATABASE_URL"),
        };
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Server { child, addr };
        server.wait_healthy().await?;
        println!("  server pid {} listening on {addr}", server.pid());
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited during start-up ({status})");
            }
            let mut conn = Conn::new(self.addr);
            match conn.request(Method::GET, "/healthz", Bytes::new()).await {
                Ok((StatusCode::OK, _)) => return Ok(()),
                Ok((s, body)) => last = format!("{s}: {}", String::from_utf8_lossy(&body)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("GET /healthz did not answer 200 within {HEALTH_TIMEOUT:?} ({last})")
    }

    /// SIGTERM (graceful: drains and closes the pool), then SIGKILL after 15 s.
    async fn stop(mut self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("  server did not stop on SIGTERM within 15 s; killing it");
        // Drop kills it.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// /proc sampling

// ---------------------------------------------------------------------------------------
// PostgreSQL: a throw-away database

struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: AtomicBool,
}

impl PgDatabase {
    /// Creates `tinbao_bench_<random>`; `Ok(None)` (with a note) when no server answers.
    async fn create() -> Result<Option<PgDatabase>> {
        let (admin_url, source) = match std::env::var("BENCH_DATABASE_URL") {
            Ok(u) if !u.is_empty() => (u, "BENCH_DATABASE_URL"),
            _ => match std::env::var("TEST_DATABASE_URL") {
                Ok(u) if !u.is_empty() => (u, "TEST_DATABASE_URL"),
                _ => (DEFAULT_PG_URL.to_string(), "default"),
            },
        };
        let shown = redact(&admin_url);
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&admin_url),
        )
        .await;
        let mut conn = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                println!("  skipped: PostgreSQL at {shown} ({source}) did not answer: {e}");
                return Ok(None);
            }
            Err(_) => {
                println!("  skipped: PostgreSQL at {shown} ({source}) did not answer within 5 s");
                return Ok(None);
            }
        };
        let name = format!(
            "tinbao_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name} on {shown}"))?;
        let mut settings = Vec::new();
        for setting in ["server_version", "fsync", "synchronous_commit"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|_| "?".into());
            settings.push(value);
        }
        let [version, fsync, sync_commit] = <[String; 3]>::try_from(settings).expect("three");
        conn.close().await.ok();
        let url = with_database(&admin_url, &name)?;
        println!(
            "  PostgreSQL {version} at {shown}: database {name} \
             (fsync={fsync}, synchronous_commit={sync_commit})"
        );
        if fsync != "on" || sync_commit == "off" {
            println!(
                "  note: this server does not make commits durable; throughput is not durable"
            );
        }
        Ok(Some(PgDatabase {
            admin_url,
            name,
            url,
            dropped: AtomicBool::new(false),
        }))
    }

    async fn count_tips(&self) -> Result<i64> {
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tips")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await.ok();
        Ok(n)
    }

    async fn drop_now(&self) {
        if self.dropped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = drop_database(&self.admin_url, &self.name).await {
            eprintln!("  could not drop database {}: {e:#}", self.name);
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(())
}

impl Drop for PgDatabase {
    /// On a panic or error path: drop the database from a thread with its own runtime.
    fn drop(&mut self) {
        if self.dropped.swap(true, Ordering::SeqCst) {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                if let Err(e) = rt.block_on(drop_database(&admin_url, &name)) {
                    eprintln!("  could not drop database {name}: {e:#}");
                }
            }
        })
        .join();
    }
}

/// The same URL with another database name.
fn with_database(url: &str, name: &str) -> Result<String> {
    let scheme_end = url.find("://").ok_or_else(|| anyhow!("not a URL: {url}"))? + 3;
    let (head, query) = match url[scheme_end..].find('?') {
        Some(q) => url.split_at(scheme_end + q),
        None => (url, ""),
    };
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    Ok(format!("{}/{}{}", &head[..authority_end], name, query))
}

/// The URL without its password.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &rest[at..]
                ),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}
