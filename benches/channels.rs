//! SMS channel benchmark against the real `tinbao` binary (issue 4's figures).
//!
//! Run with `cargo bench --bench channels`. For each engine (SQLite always; PostgreSQL when
//! a server answers) it starts `tinbao serve` as a child process on a free port with a fresh
//! data directory, abuse limits off and the Android SMS Gateway channel on, sending through
//! a fake gateway this benchmark runs on loopback (`POST /3rdparty/v1/messages`, HTTP basic
//! auth, answers 202 `{"id":…,"state":"Pending"}`) with no outbound rate limit. Then:
//!
//! 1. verified webhook events per second: a closed loop over `BENCH_CONCURRENCY` (64)
//!    keep-alive HTTP/1.1 connections POSTing signed `sms:received` webhooks
//!    (`X-Signature` = hex HMAC-SHA256(secret, body ‖ X-Timestamp)) to
//!    `/hooks/sms/android` for `BENCH_SECONDS` (10) after a 2 s warm-up. Every event has its
//!    own id and messageId; the senders cycle over `BENCH_SENDERS` (10000) phone numbers;
//!    every text is a whole tip ("TIN …"). The server answers 200 once the event is durably
//!    in its inbox, so this is the intake rate of the inbox, not of tips. After the load
//!    stops, `SELECT COUNT(*) FROM inbox` is polled until it reaches 0 (at most
//!    `BENCH_BACKLOG_SECONDS`, 180): the processing rate (inbox events turned into tips and
//!    receipts per second), during and after the load;
//! 2. a complete SMS tip at `BENCH_RATE` (200) tips/s on a fresh server: an open loop that
//!    schedules one webhook every 1/rate s for `BENCH_SECONDS`, each a whole tip in one SMS
//!    ("TIN " + 40–120 characters) from its own phone number, over up to
//!    `BENCH_OPEN_CONNECTIONS` (64) connections. Per tip, the time from the *scheduled* send
//!    (no coordinated omission) until the receipt SMS (a 16-digit code) for that number
//!    reaches the fake gateway, and the webhook's HTTP latency. At the end: tips in the
//!    database = webhooks sent, and every number got exactly one receipt.
//! 3. the server's memory: VmRSS sampled every 100 ms, and VmHWM.
//!
//! The receipt arriving at the fake gateway is a stricter measure than issue 4's "webhook
//! in, tip stored, receipt queued": it adds the outbox dispatcher's pick-up and one HTTP
//! call to the gateway.
//!
//! PostgreSQL: `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a server where the benchmark may
//! `CREATE DATABASE tinbao_bench_<random>` (one per phase); it drops them at the end.
//! `BENCH_ENGINES` (`sqlite,postgres`) picks the engines. `BENCH_CLIENT_THREADS` (1) sets
//! the load generator's tokio worker threads; the fake gateway runs on a thread of its own.
//! Client, fake gateway and server share the machine.

#[path = "common/procstat.rs"]
mod procstat;
#[path = "common/server.rs"]
mod server;
use procstat::*;
use server::{PgDatabase, Server};

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ring::hmac;
use serde_json::Value;
use sqlx::Connection;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;

const WARMUP: Duration = Duration::from_secs(2);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const GATEWAY_USER: &str = "bench-gateway";
const GATEWAY_PASSWORD: &str = "bench-gateway-password";
const WEBHOOK_SECRET: &str = "bench-webhook-signing-key";
const DEVICE_ID: &str = "ffffffffceb0b1db0000018e937c815b";
const HOOK_PATH: &str = "/hooks/sms/android";

/// Vietnamese tip text; descriptions are cut from these to 40–120 characters.
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
    senders: u64,
    backlog_seconds: u64,
    receipt_seconds: u64,
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
            rate: env_num("BENCH_RATE", 200)?,
            open_connections: env_num("BENCH_OPEN_CONNECTIONS", 64)?,
            client_threads: env_num("BENCH_CLIENT_THREADS", 1)?,
            senders: env_num("BENCH_SENDERS", 10_000)?,
            backlog_seconds: env_num("BENCH_BACKLOG_SECONDS", 180)?,
            receipt_seconds: env_num("BENCH_RECEIPT_SECONDS", 60)?,
            engines,
        };
        if s.concurrency == 0
            || s.seconds == 0
            || s.rate == 0
            || s.open_connections == 0
            || s.senders == 0
        {
            bail!(
                "BENCH_CONCURRENCY, BENCH_SECONDS, BENCH_RATE, BENCH_OPEN_CONNECTIONS and \
                 BENCH_SENDERS must be > 0"
            );
        }
        if s.senders > 10_000_000 || s.rate * s.seconds > 10_000_000 {
            bail!("phone numbers have 7 free digits: BENCH_SENDERS and BENCH_RATE × BENCH_SECONDS must be ≤ 10,000,000");
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
    println!("tinbao SMS channel benchmark (Android SMS Gateway webhooks → tips → receipts)");
    println!(
        "  binary {}\n  {} CPU core(s), shared by the server, this load generator ({} client \
         thread(s)) and the fake gateway (1 thread); figures are for all of them on one machine",
        bin.display(),
        cores,
        settings.client_threads.max(1)
    );
    println!(
        "  1. webhooks closed loop: {} connections, {} s (+{} s warm-up), {} senders; \
         backlog limit {} s\n  2. SMS tips open loop: {} tips/s for {} s over up to {} \
         connections; receipts awaited up to {} s",
        settings.concurrency,
        settings.seconds,
        WARMUP.as_secs(),
        settings.senders,
        settings.backlog_seconds,
        settings.rate,
        settings.seconds,
        settings.open_connections,
        settings.receipt_seconds
    );

    let mut results = Vec::new();
    for engine in &settings.engines {
        let pg = match engine.as_str() {
            "sqlite" => false,
            "postgres" | "postgresql" | "pg" => true,
            other => bail!("unknown engine {other:?} in BENCH_ENGINES (sqlite, postgres)"),
        };
        println!("\n== {} ==", if pg { "PostgreSQL" } else { "SQLite" });
        if let Some(r) = bench_engine(&bin, &settings, pg).await? {
            results.push(r);
        }
    }

    print_summary(&settings, cores, &results);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Storage for one phase: a data directory, and a PostgreSQL database when asked.

struct Backend {
    data: tempfile::TempDir,
    pg: Option<PgDatabase>,
}

impl Backend {
    async fn new(pg: bool) -> Result<Option<Backend>> {
        let data = tempfile::Builder::new()
            .prefix("tinbao-bench-channels-")
            .tempdir()?;
        let pg = if pg {
            match PgDatabase::create().await? {
                Some(db) => Some(db),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Backend { data, pg }))
    }

    fn database_url(&self) -> Option<String> {
        self.pg.as_ref().map(|db| db.url.clone())
    }

    async fn probe(&self) -> Result<Probe> {
        match &self.pg {
            Some(db) => Ok(Probe::Pg(sqlx::PgConnection::connect(&db.url).await?)),
            None => {
                // Must match `Config::database_url()`: `<data_dir>/tinbao.db`.
                let path = self.data.path().join("tinbao.db");
                let url = format!("sqlite://{}?mode=ro", path.display());
                let conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .with_context(|| format!("opening {url}"))?;
                Ok(Probe::Sqlite(conn))
            }
        }
    }

    async fn finish(self) {
        if let Some(db) = &self.pg {
            db.drop_now().await;
        }
    }
}

/// A connection of the benchmark's own to the server's database, for counting rows.
enum Probe {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Probe {
    async fn count(&mut self, table: &str) -> Result<i64> {
        // Events waiting: in the inbox, and arrived but not sorted into it yet.
        let sql = match table {
            "inbox" => {
                "SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM inbox_arrivals)".into()
            }
            _ => format!("SELECT COUNT(*) FROM {table}"),
        };
        let n: i64 = match self {
            Probe::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(c).await?,
            Probe::Pg(c) => sqlx::query_scalar(&sql).fetch_one(c).await?,
        };
        Ok(n)
    }

    async fn close(self) {
        match self {
            Probe::Sqlite(c) => {
                c.close().await.ok();
            }
            Probe::Pg(c) => {
                c.close().await.ok();
            }
        }
    }
}

fn server_env(gateway: &FakeGateway) -> Vec<(&'static str, String)> {
    vec![
        ("TINBAO_SMS__ANDROID__ENABLED", "true".into()),
        ("TINBAO_SMS__ANDROID__API_URL", gateway.base.clone()),
        ("TINBAO_SMS__ANDROID__USERNAME", GATEWAY_USER.into()),
        ("TINBAO_SMS__ANDROID__PASSWORD", GATEWAY_PASSWORD.into()),
        ("TINBAO_SMS__ANDROID__WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("TINBAO_SMS__ANDROID__RATE_PER_SECOND", "0".into()),
    ]
}

// ---------------------------------------------------------------------------------------
// One engine

struct EngineResult {
    engine: &'static str,
    hooks: Option<HooksResult>,
    tips: Option<TipsResult>,
}

struct HooksResult {
    http: PhaseResult,
    /// 200s over the whole run, warm-up included.
    accepted_total: u64,
    load_seconds: f64,
    backlog_at_stop: i64,
    backlog_left: i64,
    drain_seconds: f64,
    drained: bool,
    tips: i64,
    receipts: u64,
    peak_rss_kb: u64,
    hwm_kb: u64,
    cpu: CpuUse,
}

impl HooksResult {
    /// Events processed per second during the load (accepted minus what was left).
    fn processed_during_load(&self) -> f64 {
        (self.accepted_total as f64 - self.backlog_at_stop as f64).max(0.0) / self.load_seconds
    }

    /// Events processed per second once the load stopped.
    fn processed_after_load(&self) -> f64 {
        (self.backlog_at_stop - self.backlog_left).max(0) as f64 / self.drain_seconds.max(1e-9)
    }
}

struct TipsResult {
    http: PhaseResult,
    receipt_hist: Histogram<u64>,
    receipts_missing: u64,
    numbers_with_receipt: u64,
    duplicate_receipts: u64,
    unexpected_receipts: u64,
    receipts_without_code: u64,
    tips_in_db: i64,
    inbox_left: i64,
    peak_rss_kb: u64,
    hwm_kb: u64,
    cpu: CpuUse,
}

impl TipsResult {
    fn consistent(&self) -> bool {
        self.http.errors == 0
            && self.http.unsent == 0
            && self.tips_in_db >= 0
            && self.tips_in_db as u64 == self.http.scheduled
            && self.receipts_missing == 0
            && self.duplicate_receipts == 0
            && self.unexpected_receipts == 0
            && self.receipts_without_code == 0
            && self.numbers_with_receipt == self.http.scheduled
    }
}

async fn bench_engine(bin: &Path, settings: &Settings, pg: bool) -> Result<Option<EngineResult>> {
    let engine = if pg { "PostgreSQL" } else { "SQLite" };
    let key = hmac::Key::new(hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    // Unique per run, so event ids never repeat across runs or phases.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    // Phase 1: verified webhook events per second, then the backlog.
    let Some(backend) = Backend::new(pg).await? else {
        return Ok(None);
    };
    let hooks = phase_hooks(bin, settings, &backend, &key, &tag).await;
    backend.finish().await;
    let hooks = match hooks {
        Ok(h) => Some(h),
        Err(e) => {
            println!("  webhook phase FAILED: {e:#}");
            None
        }
    };

    // Phase 2: whole SMS tips at a steady rate, on a fresh server and database.
    let Some(backend) = Backend::new(pg).await? else {
        return Ok(None);
    };
    let tips = phase_tips(bin, settings, &backend, &key, &tag).await;
    backend.finish().await;
    let tips = match tips {
        Ok(t) => Some(t),
        Err(e) => {
            println!("  SMS tip phase FAILED: {e:#}");
            None
        }
    };
    Ok(Some(EngineResult {
        engine,
        hooks,
        tips,
    }))
}

async fn phase_hooks(
    bin: &Path,
    settings: &Settings,
    backend: &Backend,
    key: &hmac::Key,
    tag: &str,
) -> Result<HooksResult> {
    let gateway = FakeGateway::start()?;
    let server = Server::start(
        bin,
        backend.data.path(),
        backend.database_url().as_deref(),
        &server_env(&gateway),
    )
    .await?;
    let pid = server.pid();
    let sampler = RssSampler::start(pid);
    let mut probe = backend.probe().await?;
    let descriptions = Arc::new(descriptions(97));

    let cpu0 = CpuSnapshot::take(pid);
    let load_started = Instant::now();
    let (http, accepted_total) = closed_loop(
        server.addr,
        settings.concurrency,
        WARMUP,
        Duration::from_secs(settings.seconds),
        HookGen {
            key: key.clone(),
            tag: format!("{tag}-h"),
            senders: settings.senders,
            descriptions,
        },
    )
    .await?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let cpu = cpu0.since(pid);
    let load_rss = sampler.take_peak();
    http.print(
        &format!(
            "1. verified webhook events (closed loop, C={})",
            settings.concurrency
        ),
        "200",
        "events",
    );
    println!(
        "    server CPU {:.0}% · client CPU {:.0}% (incl. the fake gateway; 100% = one core) · \
         machine {:.0}% busy · peak RSS {:.1} MB",
        cpu.server_pct,
        cpu.client_pct,
        cpu.machine_pct,
        mb(load_rss)
    );

    // The backlog: poll the inbox until it is empty, or the time limit.
    let backlog_at_stop = probe.count("inbox").await?;
    let drain_started = Instant::now();
    let limit = Duration::from_secs(settings.backlog_seconds);
    let mut backlog_left = backlog_at_stop;
    let mut last_report = Instant::now();
    while backlog_left > 0 && drain_started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        backlog_left = probe.count("inbox").await?;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "    … backlog {backlog_left} after {:.0} s",
                drain_started.elapsed().as_secs_f64()
            );
        }
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let drain_rss = sampler.take_peak();
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let tips = probe.count("tips").await.unwrap_or(-1);
    probe.close().await;
    let peak_rss_kb = load_rss.max(drain_rss).max(sampler.stop());
    server.stop().await;
    let receipts = gateway.total();
    gateway.stop();

    let r = HooksResult {
        http,
        accepted_total,
        load_seconds,
        backlog_at_stop,
        backlog_left,
        drain_seconds,
        drained: backlog_left == 0,
        tips,
        receipts,
        peak_rss_kb,
        hwm_kb,
        cpu,
    };
    println!(
        "    {} events accepted in {:.1} s (warm-up included); inbox backlog when the load \
         stopped: {}",
        r.accepted_total, r.load_seconds, r.backlog_at_stop
    );
    println!(
        "    processing during the load: {:.0} events/s",
        r.processed_during_load()
    );
    if r.drained {
        println!(
            "    backlog processed in {:.1} s after the load → {:.0} events/s",
            r.drain_seconds,
            r.processed_after_load()
        );
    } else {
        println!(
            "    backlog NOT processed within {:.0} s: {} left → {:.0} events/s",
            r.drain_seconds,
            r.backlog_left,
            r.processed_after_load()
        );
    }
    println!(
        "    tips stored {} · receipts at the fake gateway {} · peak RSS {:.1} MB · \
         VmHWM {:.1} MB",
        r.tips,
        r.receipts,
        mb(r.peak_rss_kb),
        mb(r.hwm_kb)
    );
    Ok(r)
}

async fn phase_tips(
    bin: &Path,
    settings: &Settings,
    backend: &Backend,
    key: &hmac::Key,
    tag: &str,
) -> Result<TipsResult> {
    let gateway = FakeGateway::start()?;
    let server = Server::start(
        bin,
        backend.data.path(),
        backend.database_url().as_deref(),
        &server_env(&gateway),
    )
    .await?;
    let pid = server.pid();
    let sampler = RssSampler::start(pid);
    let descriptions = Arc::new(descriptions(101));
    let total = settings.rate * settings.seconds;

    let cpu0 = CpuSnapshot::take(pid);
    let (http, start, period) = open_loop(
        server.addr,
        settings.rate,
        settings.open_connections,
        Duration::from_secs(settings.seconds),
        HookGen {
            key: key.clone(),
            tag: format!("{tag}-t"),
            senders: total.max(1),
            descriptions,
        },
    )
    .await?;
    // Receipts for every accepted tip, or the time limit.
    let deadline = Instant::now() + Duration::from_secs(settings.receipt_seconds);
    while (gateway.numbers() as u64) < http.ok && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu0.since(pid);
    // A moment more, so that a duplicate receipt would be seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = sampler.take_peak();
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let mut probe = backend.probe().await?;
    let inbox_left = probe.count("inbox").await.unwrap_or(-1);
    probe.close().await;
    let peak_rss_kb = rss.max(sampler.stop());
    server.stop().await;

    // Receipt latency per tip, from its scheduled send.
    let arrivals = gateway.arrivals();
    gateway.stop();
    let mut receipt_hist = new_hist();
    let mut missing = 0;
    let mut duplicates = 0;
    let mut without_code = 0;
    let mut expected = std::collections::HashSet::new();
    for i in 0..total {
        let number = phone(TIPS_PREFIX, i);
        let scheduled = start + period.mul_f64(i as f64);
        match arrivals.get(&number) {
            Some(list) if !list.is_empty() => {
                receipt_hist
                    .saturating_record(micros(list[0].0.saturating_duration_since(scheduled)));
                duplicates += list.len() as u64 - 1;
                without_code += list.iter().filter(|(_, t)| !has_receipt_code(t)).count() as u64;
            }
            _ => missing += 1,
        }
        expected.insert(number);
    }
    let unexpected = arrivals
        .iter()
        .filter(|(n, _)| !expected.contains(*n))
        .map(|(_, l)| l.len() as u64)
        .sum();
    let numbers_with_receipt = arrivals.keys().filter(|n| expected.contains(*n)).count() as u64;

    // Tips in the database, after the server stopped.
    let mut probe = backend.probe().await?;
    let tips_in_db = probe.count("tips").await?;
    probe.close().await;

    let r = TipsResult {
        http,
        receipt_hist,
        receipts_missing: missing,
        numbers_with_receipt,
        duplicate_receipts: duplicates,
        unexpected_receipts: unexpected,
        receipts_without_code: without_code,
        tips_in_db,
        inbox_left,
        peak_rss_kb,
        hwm_kb,
        cpu,
    };
    r.http.print(
        &format!(
            "2. SMS tips (open loop, {} tips/s scheduled); webhook HTTP latency",
            settings.rate
        ),
        "200",
        "tips",
    );
    let h = &r.receipt_hist;
    println!(
        "    receipt at the gateway, from scheduled send: p50 {} · p95 {} · p99 {} · \
         p99.9 {} · max {} ms ({} receipts)",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    );
    println!(
        "    server CPU {:.0}% · client CPU {:.0}% · machine {:.0}% busy · peak RSS {:.1} MB · \
         VmHWM {:.1} MB",
        r.cpu.server_pct,
        r.cpu.client_pct,
        r.cpu.machine_pct,
        mb(r.peak_rss_kb),
        mb(r.hwm_kb)
    );
    println!(
        "    check: {} webhooks sent, {} tips in the database, {} numbers with a receipt, \
         {} missing, {} duplicate, {} to unknown numbers, {} without a 16-digit code, inbox \
         left {} → {}",
        r.http.scheduled,
        r.tips_in_db,
        r.numbers_with_receipt,
        r.receipts_missing,
        r.duplicate_receipts,
        r.unexpected_receipts,
        r.receipts_without_code,
        r.inbox_left,
        if r.consistent() { "ok" } else { "MISMATCH" }
    );
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Webhooks

const HOOKS_PREFIX: &str = "+8492";
const TIPS_PREFIX: &str = "+8493";

fn phone(prefix: &str, n: u64) -> String {
    format!("{prefix}{:07}", n % 10_000_000)
}

/// `n` tip descriptions of 40–120 characters (Vietnamese, with diacritics).
fn descriptions(n: usize) -> Vec<String> {
    let text: Vec<char> = SENTENCES.join(" ").chars().collect();
    (0..n)
        .map(|i| {
            let len = 40 + (i * 37) % 81;
            let from = (i * 53) % (text.len() - len);
            let s: String = text[from..from + len].iter().collect();
            // No leading or trailing blank: the length is what the server sees.
            let s = s.trim().to_string();
            let mut s = s;
            while s.chars().count() < 40 {
                s.push('.');
            }
            s
        })
        .collect()
}

/// Builds signed webhooks: event `n` of a phase comes from sender `n % senders`.
#[derive(Clone)]
struct HookGen {
    key: hmac::Key,
    tag: String,
    senders: u64,
    descriptions: Arc<Vec<String>>,
}

struct Hook {
    body: Bytes,
    signature: String,
    timestamp: String,
}

impl HookGen {
    fn make(&self, n: u64, prefix: &str) -> Hook {
        let id = format!("{}-{n}", self.tag);
        let message = format!(
            "TIN {}",
            self.descriptions[n as usize % self.descriptions.len()]
        );
        let body = serde_json::json!({
            "deviceId": DEVICE_ID,
            "event": "sms:received",
            "id": id,
            "webhookId": "tinbao-bench",
            "payload": {
                "messageId": format!("msg-{id}"),
                "message": message,
                "phoneNumber": phone(prefix, n % self.senders),
                "simNumber": 1,
                "receivedAt": "2026-11-23T10:00:00.000+07:00",
            },
        });
        let body = Bytes::from(serde_json::to_vec(&body).expect("json"));
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&body);
        ctx.update(timestamp.as_bytes());
        let signature = hex::encode(ctx.sign().as_ref());
        Hook {
            body,
            signature,
            timestamp,
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP client: one hyper HTTP/1.1 connection per worker, kept alive.

struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

enum Outcome {
    Ok,
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

    async fn post_hook(&mut self, hook: Hook) -> Result<(StatusCode, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        if let Err(e) = sender.ready().await {
            self.sender = None;
            return Err(e.into());
        }
        let req = Request::builder()
            .method(Method::POST)
            .uri(HOOK_PATH)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("X-Signature", hook.signature)
            .header("X-Timestamp", hook.timestamp)
            .body(Full::new(hook.body))?;
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

    async fn submit(&mut self, hook: Hook) -> Outcome {
        match self.post_hook(hook).await {
            Ok((StatusCode::OK, _)) => Outcome::Ok,
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
    /// Closed loop: 200s including the warm-up.
    ok_total: u64,
    errors: Errors,
}

impl WorkerResult {
    fn new() -> WorkerResult {
        WorkerResult {
            hist: new_hist(),
            ok: 0,
            ok_total: 0,
            errors: Errors::default(),
        }
    }
}

struct PhaseResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Successful requests per second over the measured window.
    rate: f64,
    seconds: f64,
    /// Open loop only: requests scheduled, and those never sent.
    scheduled: u64,
    unsent: u64,
}

impl PhaseResult {
    fn from_workers(parts: Vec<WorkerResult>, seconds: f64) -> (PhaseResult, u64) {
        let mut hist = new_hist();
        let mut ok = 0;
        let mut ok_total = 0;
        let mut errors = Errors::default();
        for p in parts {
            hist.add(&p.hist).expect("same bounds");
            ok += p.ok;
            ok_total += p.ok_total;
            errors.merge(p.errors);
        }
        let r = PhaseResult {
            hist,
            ok,
            errors: errors.count,
            error_kinds: errors.kinds,
            rate: ok as f64 / seconds,
            seconds,
            scheduled: 0,
            unsent: 0,
        };
        (r, ok_total)
    }

    fn print(&self, title: &str, ok_name: &str, what: &str) {
        println!("  {title}");
        if self.scheduled > 0 {
            println!(
                "    scheduled {} · {ok_name} {} · errors {} · unsent {} · achieved {:.1} {what}/s \
                 over {:.1} s",
                self.scheduled, self.ok, self.errors, self.unsent, self.rate, self.seconds
            );
            println!(
                "    webhook latency from scheduled send: p50 {} · p95 {} · p99 {} · p99.9 {} · \
                 max {} ms",
                ms(self.hist.value_at_quantile(0.50)),
                ms(self.hist.value_at_quantile(0.95)),
                ms(self.hist.value_at_quantile(0.99)),
                ms(self.hist.value_at_quantile(0.999)),
                ms(self.hist.max())
            );
        } else {
            println!(
                "    {ok_name} {} · errors {} in {:.1} s → {:.0} {what}/s",
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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// C workers, each sending its next webhook as soon as the last one is answered. Requests
/// sent during the warm-up are not measured; the window is [start + warm-up, + duration).
/// Returns the measured phase and the 200s over the whole run.
async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    gen: HookGen,
) -> Result<(PhaseResult, u64)> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut r = WorkerResult::new();
            let mut n = w as u64;
            loop {
                let hook = gen.make(n, HOOKS_PREFIX);
                n += concurrency as u64;
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let outcome = conn.submit(hook).await;
                let done = Instant::now();
                let measured = sent >= measure_from;
                match outcome {
                    Outcome::Ok => {
                        r.ok_total += 1;
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

/// Webhooks scheduled every 1/rate s for `duration`, whatever the completions; each is
/// taken by the next free connection (up to `connections`) and its latency runs from its
/// scheduled time. Webhook `i` comes from its own number. Returns the phase, the clock's
/// start and the period: webhook `i` was scheduled at `start + i × period`.
async fn open_loop(
    addr: SocketAddr,
    rate: u64,
    connections: usize,
    duration: Duration,
    gen: HookGen,
) -> Result<(PhaseResult, Instant, Duration)> {
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
        let gen = gen.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, scheduled)) = next else { break };
                if stop.load(Ordering::Relaxed) {
                    continue; // Drain timeout hit: count as unsent.
                }
                let outcome = conn.submit(gen.make(i, TIPS_PREFIX)).await;
                let latency = micros(Instant::now() - scheduled);
                r.hist.saturating_record(latency);
                match outcome {
                    Outcome::Ok => r.ok += 1,
                    Outcome::Status(s) => r.errors.add(format!("HTTP {}", s.as_u16())),
                    Outcome::Transport(e) => r.errors.add(e),
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
    let (mut result, _) = PhaseResult::from_workers(parts, elapsed);
    result.scheduled = total;
    result.unsent = total - result.ok - result.errors;
    Ok((result, start, period))
}

// ---------------------------------------------------------------------------------------
// The fake Android SMS Gateway, on a thread of its own

type Arrivals = HashMap<String, Vec<(Instant, String)>>;

struct GatewayState {
    authorization: String,
    arrivals: Mutex<Arrivals>,
    total: AtomicU64,
    refused: AtomicU64,
}

struct FakeGateway {
    base: String,
    state: Arc<GatewayState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGateway {
    fn start() -> Result<FakeGateway> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(GatewayState {
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{GATEWAY_USER}:{GATEWAY_PASSWORD}"))
            ),
            arrivals: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/3rdparty/v1/messages", axum::routing::post(gateway_send))
            .route("/3rdparty/v1/message", axum::routing::post(gateway_send))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-gateway".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("gateway runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("gateway listener");
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels the open connections.
            })?;
        Ok(FakeGateway {
            base: format!("http://{addr}"),
            state,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Distinct numbers that received something.
    fn numbers(&self) -> usize {
        self.state.arrivals.lock().expect("gateway lock").len()
    }

    /// Messages accepted (one per recipient).
    fn total(&self) -> u64 {
        self.state.total.load(Ordering::Relaxed)
    }

    fn arrivals(&self) -> Arrivals {
        std::mem::take(&mut *self.state.arrivals.lock().expect("gateway lock"))
    }

    fn stop(mut self) {
        let refused = self.state.refused.load(Ordering::Relaxed);
        if refused > 0 {
            println!("    note: the fake gateway refused {refused} malformed or unauthenticated request(s)");
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn gateway_send(
    State(state): State<Arc<GatewayState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let refuse = |status: StatusCode, message: &str| {
        state.refused.fetch_add(1, Ordering::Relaxed);
        (
            status,
            axum::Json(serde_json::json!({ "message": message })),
        )
            .into_response()
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(state.authorization.as_str());
    if !authorized {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let text = request
        .get("textMessage")
        .and_then(|m| m.get("text"))
        .and_then(Value::as_str)
        .or_else(|| request.get("message").and_then(Value::as_str));
    let Some(text) = text else {
        return refuse(StatusCode::BAD_REQUEST, "a message is required");
    };
    let numbers: Vec<&str> = request
        .get("phoneNumbers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if numbers.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "phoneNumbers is required");
    }
    let n = {
        let mut arrivals = state.arrivals.lock().expect("gateway lock");
        for number in &numbers {
            arrivals
                .entry((*number).to_string())
                .or_default()
                .push((arrived, text.to_string()));
        }
        state
            .total
            .fetch_add(numbers.len() as u64, Ordering::Relaxed)
    };
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "id": format!("bench{n:016}"), "state": "Pending" })),
    )
        .into_response()
}

/// Whether a text holds a 16-digit receipt code (shown as `1234-5678-9012-3456`).
fn has_receipt_code(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .any(|token| {
            let digits: String = token.chars().filter(char::is_ascii_digit).collect();
            digits.len() == 16
        })
}

// ---------------------------------------------------------------------------------------
// Summary

fn print_summary(settings: &Settings, cores: usize, results: &[EngineResult]) {
    println!("\n== Summary ==");
    println!(
        "({} cores shared by server, load generator and fake gateway; webhooks closed loop C={} \
         for {} s; SMS tips open loop {} tips/s for {} s)\n",
        cores, settings.concurrency, settings.seconds, settings.rate, settings.seconds
    );
    println!(
        "| engine | verified events/s | p50 | p99 | errors | backlog at stop | backlog drained in \
         | processed/s during load | processed/s after load | server CPU | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let Some(h) = &r.hooks else {
            println!("| {} | failed | | | | | | | | | |", r.engine);
            continue;
        };
        println!(
            "| {} | {:.0} | {} ms | {} ms | {} | {} | {} | {:.0} | {:.0} | {:.0}% | {:.1} MB |",
            r.engine,
            h.http.rate,
            ms(h.http.hist.value_at_quantile(0.50)),
            ms(h.http.hist.value_at_quantile(0.99)),
            h.http.errors,
            h.backlog_at_stop,
            if h.drained {
                format!("{:.1} s", h.drain_seconds)
            } else {
                format!("not in {:.0} s ({} left)", h.drain_seconds, h.backlog_left)
            },
            h.processed_during_load(),
            h.processed_after_load(),
            h.cpu.server_pct,
            mb(h.peak_rss_kb.max(h.hwm_kb)),
        );
    }
    println!();
    println!(
        "| engine | achieved tips/s | webhook p50 | webhook p99 | receipt p50 | receipt p95 \
         | receipt p99 | receipt max | peak RSS | tips = sent, one receipt each |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let Some(t) = &r.tips else {
            println!("| {} | failed | | | | | | | | |", r.engine);
            continue;
        };
        println!(
            "| {} | {:.1} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {:.1} MB | {} |",
            r.engine,
            t.http.rate,
            ms(t.http.hist.value_at_quantile(0.50)),
            ms(t.http.hist.value_at_quantile(0.99)),
            ms(t.receipt_hist.value_at_quantile(0.50)),
            ms(t.receipt_hist.value_at_quantile(0.95)),
            ms(t.receipt_hist.value_at_quantile(0.99)),
            ms(t.receipt_hist.max()),
            mb(t.peak_rss_kb.max(t.hwm_kb)),
            if t.consistent() {
                format!("yes ({} tips)", t.tips_in_db)
            } else {
                format!(
                    "NO (sent {}, tips {}, receipts to {} numbers, {} missing, {} duplicate)",
                    t.http.scheduled,
                    t.tips_in_db,
                    t.numbers_with_receipt,
                    t.receipts_missing,
                    t.duplicate_receipts
                )
            },
        );
    }
    println!(
        "\n(receipt = from the scheduled webhook send until the receipt SMS reached the fake \
         gateway: stricter than \"tip stored, receipt queued\", it includes the outbox pick-up \
         and one HTTP call)\n"
    );
    let mut failed = false;
    for r in results {
        let mut checks = Vec::new();
        if let Some(h) = &r.hooks {
            if r.engine == "SQLite" {
                checks.push((
                    format!("{} verified webhook events >= 5000/s", r.engine),
                    h.http.rate >= 5000.0,
                    format!("{:.0}", h.http.rate),
                ));
            }
            checks.push((
                format!(
                    "{} backlog processed within {} s",
                    r.engine, settings.backlog_seconds
                ),
                h.drained,
                format!("{:.0} events/s after the load", h.processed_after_load()),
            ));
        } else {
            checks.push((
                format!("{} webhook phase ran", r.engine),
                false,
                "failed".into(),
            ));
        }
        if let Some(t) = &r.tips {
            checks.push((
                format!(
                    "{} webhook p99 @ {}/s < 20 ms (tip stored, receipt queued)",
                    r.engine, settings.rate
                ),
                t.http.hist.value_at_quantile(0.99) < 20_000,
                ms(t.http.hist.value_at_quantile(0.99)),
            ));
            checks.push((
                format!(
                    "{} receipt at gateway p99 @ {}/s < 20 ms (stricter)",
                    r.engine, settings.rate
                ),
                t.receipt_hist.value_at_quantile(0.99) < 20_000 && t.receipts_missing == 0,
                format!(
                    "{} ({} missing)",
                    ms(t.receipt_hist.value_at_quantile(0.99)),
                    t.receipts_missing
                ),
            ));
            checks.push((
                format!("{} tips = webhooks sent, one receipt per number", r.engine),
                t.consistent(),
                format!(
                    "{} sent, {} tips, {} numbers with receipts",
                    t.http.scheduled, t.tips_in_db, t.numbers_with_receipt
                ),
            ));
        } else {
            checks.push((
                format!("{} SMS tip phase ran", r.engine),
                false,
                "failed".into(),
            ));
        }
        for (what, ok, got) in checks {
            failed |= !ok;
            println!("  [{}] {what}: {got}", if ok { "ok" } else { "MISS" });
        }
    }
    if failed {
        println!("\nsome targets were missed (see above)");
    }
}
