//! Police-console benchmark against the real `tinbao` binary, on a database of a million
//! tips.
//!
//! Run with `cargo bench --bench console`. For each engine (SQLite always; PostgreSQL when a
//! server answers) it:
//!
//! 1. seeds `BENCH_TIPS` (1,000,000) tips through the library, sealed exactly as intake
//!    seals them (a data key per tip wrapped under the KEK, description, place, time, …),
//!    with `Store::insert_tips` in batches of `BENCH_BATCH` (2,000), one transaction each.
//!    The spread: 300 communes of Hà Nội, Hồ Chí Minh City and Đà Nẵng, with Phường Hoàn
//!    Kiếm (commune 70, province 1) holding a fifth of all tips (200,000 of a million) and
//!    20 villages, the other communes with Zipf-like shares in code order, Hà Nội's first (so
//!    province 1 holds about 80 % of all tips, a heavy province view); about 85 % closed,
//!    open tips skewed towards recent ones; every category,
//!    priority by the domain rule, deadlines from the default SLA; created over the past
//!    year; channels web, api and hotline; 1 % of tips without a commune (the province's
//!    "unplaced" queue). The seeding time and rate are reported;
//! 2. creates an officer of commune 70 and a province officer of province 1, starts
//!    `tinbao serve` as a child process on a free port (abuse limits off), and logs both in
//!    over HTTP as a person would: password, forced change, TOTP enrolment;
//! 3. measures, with `BENCH_CONCURRENCY` (4) keep-alive HTTP/1.1 clients in a closed loop
//!    for `BENCH_SECONDS` (10) after a 1 s warm-up each: the commune queue (open tips, most
//!    urgent first), the queue with filters (status + category, overdue, village, channel),
//!    keyset pages 2–6 (following the "next page" link), opening a random tip of commune 70
//!    (decrypting it and writing the audit entry), and the province officer's queue
//!    (unplaced tips and per-commune counts). Every answer must be a 200; queue pages must
//!    hold 50 tip links wherever the data has 50 matches, and an opened tip must show its
//!    decrypted description;
//! 4. samples the server's RSS every 100 ms and its CPU time per phase (printed per request:
//!    what a page costs the server whatever else the machine runs) and prints a summary with
//!    ok/MISS lines against the targets: a queue page p95 < 50 ms, opening a tip p95 < 10 ms.
//!
//! Built a second time as `cargo bench --bench reports` (the same seed): the phases are
//! then the reports of the last full month (Vietnam time), about 16,700 of commune 70's
//! 200,000 tips: the commune's monthly report page (three periods: the month, the month
//! before, the same month a year before) against p95 < 300 ms, the same as `.xlsx`
//! against p95 < 1 s, and the province's view of the month over its communes (about 80 %
//! of all tips) against p95 < 1 s.
//!
//! PostgreSQL: `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a server where the benchmark may
//! `CREATE DATABASE tinbao_bench_<random>`; it drops it at the end. After seeding it runs
//! `VACUUM ANALYZE tips`, which autovacuum would have done long before on a live server;
//! SQLite gets nothing of the kind (the server never runs `ANALYZE`).
//!
//! Other knobs: `BENCH_ENGINES` (`sqlite,postgres`), `BENCH_CLIENT_THREADS` (1),
//! `BENCH_SEED` (42, the data's shape; keys and ids are random anyway), and `BENCH_KEEP=1`
//! to keep the SQLite data directory and the PostgreSQL database for inspection (their
//! names are printed). `BENCH_SNAPSHOT=DIR` (the retention bench, SQLite): the first run
//! saves its seeded data folder there, later runs copy it instead of seeding (4 minutes);
//! `BENCH_RETENTION_PHASES` (`pass,backup`) picks what the retention bench measures.

#[path = "common/procstat.rs"]
mod procstat;
use procstat::*;

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinbao::accounts::{self, NewAccount, Role};
use tinbao::config::{Config, SlaConfig};
use tinbao::crypto::{KeyRing, Receipt};
use tinbao::store::{NewTipRecord, Store};
use tinbao::tips::{Category, Channel, Priority, Status};
use tokio::net::TcpStream;

const WARMUP: Duration = Duration::from_secs(1);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Rows on a queue page (src/console/queue.rs).
const PAGE: usize = 50;
/// The targets of the issue, in microseconds.
const QUEUE_P95_TARGET_US: u64 = 50_000;
const OPEN_P95_TARGET_US: u64 = 10_000;

/// The heavy commune: Phường Hoàn Kiếm, Thành phố Hà Nội.
const HEAVY_COMMUNE: i64 = 70;
const HEAVY_PROVINCE: i64 = 1;
/// Its share of all tips (200,000 of 1,000,000).
const HEAVY_SHARE: f64 = 0.2;
const VILLAGES: usize = 20;
/// Provinces whose communes get tips, and how many of each province's communes.
const PROVINCES: [(i64, usize); 3] = [(1, 126), (79, 168), (48, 6)];
/// Keyset pages followed after the first.
const PAGES_DEEP: usize = 5;
/// Tip ids of the heavy commune kept for the "open a tip" phase.
const OPEN_SAMPLE: usize = 20_000;

const DAY_MS: i64 = 86_400_000;

/// (category, weight out of 100).
const CATEGORY_WEIGHTS: [(Category, u64); 9] = [
    (Category::Dealing, 25),
    (Category::Hotspot, 15),
    (Category::Users, 20),
    (Category::Psychosis, 5),
    (Category::Cultivation, 3),
    (Category::School, 5),
    (Category::Online, 10),
    (Category::Disguised, 7),
    (Category::Other, 10),
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

/// Every decrypted description ends with this and the tip's number.
const DESCRIPTION_MARK: &str = "(lần ";

// ---------------------------------------------------------------------------------------
// Configuration

struct Settings {
    tips: u64,
    batch: usize,
    concurrency: usize,
    seconds: u64,
    client_threads: usize,
    seed: u64,
    keep: bool,
    engines: Vec<String>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
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
            tips: env_num("BENCH_TIPS", 1_000_000)?,
            batch: env_num("BENCH_BATCH", 2_000)?,
            concurrency: env_num("BENCH_CONCURRENCY", 4)?,
            seconds: env_num("BENCH_SECONDS", 10)?,
            client_threads: env_num("BENCH_CLIENT_THREADS", 1)?,
            seed: env_num("BENCH_SEED", 42)?,
            keep: std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1" || v == "true"),
            engines,
        };
        if s.tips < 1_000 || s.batch == 0 || s.concurrency == 0 || s.seconds == 0 {
            bail!("BENCH_TIPS must be >= 1000; BENCH_BATCH, BENCH_CONCURRENCY, BENCH_SECONDS > 0");
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------
// Entry point

pub fn main() -> Result<()> {
    // `cargo bench` passes `--bench`, which is ignored; the settings come from the environment.
    let settings = Settings::from_env()?;
    // The seeding opens the key file in the data directory, as the child server does; a
    // TINBAO_KEYS inherited from the shell would make the two disagree. Still one thread.
    std::env::remove_var("TINBAO_KEYS");
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
    println!(
        "tinbao {} benchmark",
        if RETENTION {
            "retention"
        } else if REPORTS {
            "reports"
        } else {
            "console"
        }
    );
    println!(
        "  binary {}\n  {} CPU core(s), shared by the server AND this load generator \
         ({} client thread(s)); figures are for both on one machine",
        bin.display(),
        cores,
        settings.client_threads.max(1)
    );
    println!(
        "  {} tips ({} in commune {HEAVY_COMMUNE}); {} clients, {} s per phase (+{} s warm-up)",
        settings.tips,
        heavy_count(settings.tips),
        settings.concurrency,
        settings.seconds,
        WARMUP.as_secs()
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
                        if settings.keep {
                            db.keep();
                        } else {
                            db.drop_now().await;
                        }
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
        "({} tips, {} in commune {HEAVY_COMMUNE}; {} cores shared by server and load \
         generator; closed loop C={}; {} s per phase)\n",
        settings.tips,
        heavy_count(settings.tips),
        cores,
        settings.concurrency,
        settings.seconds
    );
    println!("| engine | seeding | tips/s | DB size | peak RSS | VmHWM |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.0} s | {:.0} | {:.0} MB | {:.1} MB | {:.1} MB |",
            r.engine,
            r.seed_seconds,
            r.seed_rate,
            r.db_bytes as f64 / 1e6,
            mb(r.peak_rss_kb),
            mb(r.hwm_kb)
        );
    }
    println!();
    println!(
        "| engine | phase | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors \
         | server CPU ms/req | target (p95) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &results {
        for p in &r.phases {
            println!(
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | < {} ms |",
                r.engine,
                p.name,
                p.ok + p.errors,
                p.rate,
                ms(p.hist.value_at_quantile(0.50)),
                ms(p.hist.value_at_quantile(0.95)),
                ms(p.hist.value_at_quantile(0.99)),
                ms(p.hist.max()),
                p.errors,
                p.server_cpu_ms,
                p.target_us / 1000,
            );
        }
    }
    println!();
    let mut failed = false;
    for r in &results {
        for p in &r.phases {
            let p95 = p.hist.value_at_quantile(0.95);
            let ok = p.ok > 0 && p95 < p.target_us;
            failed |= !ok;
            println!(
                "  [{}] {} {}: p95 {} ms (target < {} ms)",
                if ok { "ok" } else { "MISS" },
                r.engine,
                p.name,
                ms(p95),
                p.target_us / 1000
            );
            if p.errors > 0 {
                failed = true;
                println!(
                    "  [MISS] {} {}: {} wrong answers (see above)",
                    r.engine, p.name, p.errors
                );
            }
        }
    }
    if failed {
        println!("\nsome targets were missed (see above)");
    }
    Ok(())
}

fn heavy_count(tips: u64) -> u64 {
    (tips as f64 * HEAVY_SHARE) as u64
}

// ---------------------------------------------------------------------------------------
// One engine

enum Engine<'a> {
    Sqlite,
    Postgres(&'a PgDatabase),
}

struct EngineResult {
    engine: &'static str,
    seed_seconds: f64,
    seed_rate: f64,
    db_bytes: u64,
    phases: Vec<PhaseResult>,
    peak_rss_kb: u64,
    hwm_kb: u64,
}

async fn bench_engine(bin: &Path, settings: &Settings, engine: Engine<'_>) -> Result<EngineResult> {
    let data = tempfile::Builder::new()
        .prefix("tinbao-console-bench-")
        .tempdir()?;
    let db_url = match &engine {
        Engine::Sqlite => None,
        Engine::Postgres(db) => Some(db.url.clone()),
    };
    let config = Config {
        data_dir: data.path().to_path_buf(),
        database_url: db_url.clone(),
        ..Config::default()
    };

    // 1. Seeding, accounts (or, for the retention bench on SQLite, a copy of an earlier
    // run's seed: `BENCH_SNAPSHOT`).
    let snapshot = match engine {
        Engine::Sqlite if RETENTION => std::env::var_os("BENCH_SNAPSHOT").map(PathBuf::from),
        _ => None,
    };
    let seeded = match &snapshot {
        Some(dir) if dir.join("tinbao.db").exists() => {
            copy_files(dir, data.path())?;
            println!("  the seed copied from {} (BENCH_SNAPSHOT)", dir.display());
            None
        }
        _ => {
            let seeded = seed(&config, settings).await?;
            if let Some(dir) = &snapshot {
                copy_files(data.path(), dir)?;
                println!("  the seed saved to {} (BENCH_SNAPSHOT)", dir.display());
            }
            Some(seeded)
        }
    };
    let db_bytes = match &engine {
        Engine::Sqlite => ["tinbao.db", "tinbao.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(data.path().join(f)).ok())
            .map(|m| m.len())
            .sum(),
        Engine::Postgres(db) => db.size().await.unwrap_or(0),
    };
    println!("  database size {:.0} MB", db_bytes as f64 / 1e6);

    // 2. The server, and both logins over HTTP.
    let server = Server::start(bin, data.path(), db_url.as_deref()).await?;
    let addr = server.addr;
    let pid = server.pid();
    let sampler = RssSampler::start(pid);
    if RETENTION {
        retention_phases(bin, addr, data.path(), db_url.as_deref()).await?;
        server.stop().await;
        return Ok(EngineResult {
            engine: match engine {
                Engine::Sqlite => "SQLite",
                Engine::Postgres(_) => "PostgreSQL",
            },
            seed_seconds: seeded.as_ref().map_or(0.0, |s| s.seconds),
            seed_rate: seeded.as_ref().map_or(0.0, |s| s.rate),
            db_bytes,
            phases: Vec::new(),
            peak_rss_kb: sampler.stop(),
            hwm_kb: 0,
        });
    }
    let seeded = seeded.context("no seed")?;
    let officer = Arc::new(
        login(addr, &seeded.officer.0, &seeded.officer.1)
            .await
            .context("officer login")?,
    );
    let province = Arc::new(
        login(addr, &seeded.province.0, &seeded.province.1)
            .await
            .context("province officer login")?,
    );
    println!("  logged in over HTTP: officer of commune {HEAVY_COMMUNE}, province officer of {HEAVY_PROVINCE}");

    // 3. The phases.
    let c = &seeded.counts;
    let village = seeded.villages[0];
    let phases = if REPORTS {
        report_phases(&officer, &province)
    } else {
        vec![
            Phase::page(
                "queue, open tips (default)",
                officer.clone(),
                "/console/queue".into(),
                c.open,
            ),
            Phase::page(
                "queue ?status=new&category=dealing",
                officer.clone(),
                "/console/queue?status=new&category=dealing".into(),
                c.new_dealing,
            ),
            Phase::page(
                "queue ?overdue=1",
                officer.clone(),
                "/console/queue?overdue=1".into(),
                c.overdue,
            ),
            Phase::page(
                "queue ?village=<id>",
                officer.clone(),
                format!("/console/queue?village={village}"),
                c.village,
            ),
            Phase::page(
                "queue ?channel=hotline",
                officer.clone(),
                "/console/queue?channel=hotline".into(),
                c.hotline,
            ),
            Phase {
                name: format!("queue keyset pages 2-{}", PAGES_DEEP + 1),
                session: officer.clone(),
                kind: Arc::new(Kind::Pages {
                    first: "/console/queue".into(),
                    depth: PAGES_DEEP,
                    full: c.open >= (PAGES_DEEP as u64 + 1) * PAGE as u64,
                }),
                target_us: QUEUE_P95_TARGET_US,
            },
            Phase {
                name: "open a tip (decrypt + audit)".into(),
                session: officer.clone(),
                kind: Arc::new(Kind::Tip {
                    ids: seeded.sample_ids.clone(),
                }),
                target_us: OPEN_P95_TARGET_US,
            },
            Phase {
                name: "province queue (unplaced + commune counts)".into(),
                session: province.clone(),
                kind: Arc::new(Kind::Province {
                    full: c.unplaced >= PAGE as u64,
                }),
                target_us: QUEUE_P95_TARGET_US,
            },
        ]
    };
    let mut results = Vec::new();
    for phase in phases {
        let cpu0 = CpuSnapshot::take(pid);
        let mut r = run_phase(addr, &phase, settings).await?;
        let cpu = cpu0.since(pid);
        let rss = sampler.take_peak();
        r.print(&cpu, rss);
        results.push(r);
    }

    // 4. Memory, then a clean stop.
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let peak_rss_kb = results
        .iter()
        .map(|r| r.peak_rss_kb)
        .max()
        .unwrap_or(0)
        .max(sampler.stop());
    println!(
        "  memory: peak VmRSS {:.1} MB (sampled every {} ms), VmHWM {:.1} MB",
        mb(peak_rss_kb),
        SAMPLE_EVERY.as_millis(),
        mb(hwm_kb)
    );
    server.stop().await;
    if settings.keep {
        let path = data.keep();
        println!("  kept the data directory {}", path.display());
    }
    Ok(EngineResult {
        engine: match engine {
            Engine::Sqlite => "SQLite",
            Engine::Postgres(_) => "PostgreSQL",
        },
        seed_seconds: seeded.seconds,
        seed_rate: seeded.rate,
        db_bytes,
        phases: results,
        peak_rss_kb,
        hwm_kb,
    })
}

/// Copies the files (not the folders) of `from` into `to`, creating it.
fn copy_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Seeding

/// A small, fast, seedable generator (SplitMix64): the data's shape must not depend on the
/// thread that made it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as u64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What the seeded data should show on the heavy commune's pages, to check the answers.
#[derive(Debug, Default, Clone)]
struct Counts {
    /// Open tips of the heavy commune.
    open: u64,
    /// ... with status new and category dealing.
    new_dealing: u64,
    /// ... past their deadline when seeded (more become overdue later).
    overdue: u64,
    /// ... in the first village.
    village: u64,
    /// ... from the hotline.
    hotline: u64,
    /// Open tips of the heavy province without a commune.
    unplaced: u64,
    closed: u64,
    total: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.open += o.open;
        self.new_dealing += o.new_dealing;
        self.overdue += o.overdue;
        self.village += o.village;
        self.hotline += o.hotline;
        self.unplaced += o.unplaced;
        self.closed += o.closed;
        self.total += o.total;
    }
}

struct Seeded {
    seconds: f64,
    rate: f64,
    counts: Counts,
    villages: Vec<i64>,
    sample_ids: Arc<Vec<String>>,
    /// (username, one-time password)
    officer: (String, String),
    province: (String, String),
}

/// Where tips go: the heavy commune, then the others with a skewed (Zipf-like) weight.
struct Places {
    /// (province, commune) of the light communes, and their cumulative weights.
    light: Vec<(i64, i64)>,
    cumulative: Vec<f64>,
}

impl Places {
    fn new(communes: &[tinbao::store::Commune]) -> Result<Places> {
        let mut light = Vec::new();
        for (province, n) in PROVINCES {
            let mut of: Vec<&tinbao::store::Commune> = communes
                .iter()
                .filter(|c| c.province_code == province && c.code != HEAVY_COMMUNE)
                .collect();
            of.sort_by_key(|c| c.code);
            light.extend(of.iter().take(n).map(|c| (province, c.code)));
        }
        if light.len() < 100 {
            bail!("only {} communes found for the seeding", light.len());
        }
        let mut cumulative = Vec::with_capacity(light.len());
        let mut sum = 0.0;
        for rank in 0..light.len() {
            sum += 1.0 / (rank as f64 + 10.0);
            cumulative.push(sum);
        }
        Ok(Places { light, cumulative })
    }

    /// (province, commune) for a tip; a commune of `None` is an unplaced tip.
    fn pick(&self, rng: &mut Rng) -> (Option<i64>, Option<i64>) {
        if rng.chance(HEAVY_SHARE) {
            return (Some(HEAVY_PROVINCE), Some(HEAVY_COMMUNE));
        }
        if rng.chance(0.01) {
            // No commune given: the province's unplaced queue (a few with no province at all).
            return if rng.chance(0.8) {
                (Some(HEAVY_PROVINCE), None)
            } else {
                (Some(79), None)
            };
        }
        let total = *self.cumulative.last().expect("communes");
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        let (p, c) = self.light[i.min(self.light.len() - 1)];
        (Some(p), Some(c))
    }
}

struct Generator {
    keys: Arc<KeyRing>,
    places: Places,
    villages: Vec<i64>,
    sla: SlaConfig,
    now: i64,
    seed: u64,
}

struct Batch {
    records: Vec<NewTipRecord>,
    counts: Counts,
    sample_ids: Vec<String>,
}

impl Generator {
    fn tip(&self, i: u64, counts: &mut Counts, sample: &mut Vec<String>) -> NewTipRecord {
        let mut rng = Rng::new(self.seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let (province, commune) = self.places.pick(&mut rng);
        let heavy = commune == Some(HEAVY_COMMUNE);
        let mut w = rng.below(100);
        let mut category = Category::Other;
        for (c, weight) in CATEGORY_WEIGHTS {
            if w < weight {
                category = c;
                break;
            }
            w -= weight;
        }
        let happening_now = rng.chance(0.1);
        let priority = Priority::assess(category, happening_now);
        let age = rng.below(365 * DAY_MS as u64) as i64;
        let created_at = self.now - age;
        let due_at = priority.due_at(created_at, &self.sla);
        // Recent tips are mostly open; a backlog of older ones too. About 15 % open overall.
        let open_p = if age < 7 * DAY_MS {
            0.9
        } else if age < 30 * DAY_MS {
            0.4
        } else {
            0.115
        };
        let status = if rng.chance(open_p) {
            match rng.below(10) {
                0..=3 => Status::New,
                4..=6 => Status::Triaged,
                _ => Status::InProgress,
            }
        } else {
            Status::Closed
        };
        let channel = match rng.below(100) {
            0..=69 => Channel::Web,
            70..=84 => Channel::Api,
            _ => Channel::Hotline,
        };
        let village_id = if heavy && rng.chance(0.6) {
            // Skewed too: the first villages are the busiest.
            let a = rng.below(self.villages.len() as u64);
            let b = rng.below(self.villages.len() as u64);
            Some(self.villages[a.min(b) as usize])
        } else {
            None
        };

        let id = uuid::Uuid::new_v4().simple().to_string();
        let (key, wrapped) = self.keys.new_tip_key(&id);
        let mut description = String::new();
        let sentences = 2 + rng.below(3) as usize;
        let first = rng.below(SENTENCES.len() as u64) as usize;
        for k in 0..sentences {
            if k > 0 {
                description.push(' ');
            }
            description.push_str(SENTENCES[(first + k * 3) % SENTENCES.len()]);
        }
        description.push_str(&format!(" {DESCRIPTION_MARK}{i})"));
        let place = rng
            .chance(0.7)
            .then(|| format!("nhà số {} ngõ {}", rng.below(200) + 1, rng.below(60) + 1));
        let village_text = (village_id.is_none() && rng.chance(0.15))
            .then(|| format!("Tổ dân phố số {}", rng.below(30) + 1));
        let occurred = rng
            .chance(0.6)
            .then(|| ["tối qua", "chiều nay", "sáng nay", "tuần trước"][rng.below(4) as usize]);
        let contact = rng
            .chance(0.05)
            .then(|| format!("09{:08}", rng.below(100_000_000)));
        let receipt = Receipt::generate();

        if heavy {
            if rng.chance(OPEN_SAMPLE as f64 / (200_000.0f64).max(1.0)) {
                sample.push(id.clone());
            }
            if status != Status::Closed {
                counts.open += 1;
                counts.new_dealing +=
                    u64::from(status == Status::New && category == Category::Dealing);
                counts.overdue += u64::from(due_at < self.now);
                counts.village += u64::from(village_id == Some(self.villages[0]));
                counts.hotline += u64::from(channel == Channel::Hotline);
            }
        }
        if province == Some(HEAVY_PROVINCE) && commune.is_none() && status != Status::Closed {
            counts.unplaced += 1;
        }
        counts.closed += u64::from(status == Status::Closed);
        counts.total += 1;

        NewTipRecord {
            receipt_mac: self.keys.receipt_mac(&receipt),
            channel: channel.as_str(),
            category: category.as_str(),
            priority: priority.as_i64(),
            status: status.as_str(),
            happening_now,
            province_code: province,
            commune_code: commune,
            village_id,
            created_at,
            due_at,
            key_id: wrapped.key_id.clone(),
            wrapped_key: wrapped.wrapped.clone(),
            description: key.seal_str("description", &description),
            place_details: place.map(|p| key.seal_str("place_details", &p)),
            village_text: village_text.map(|v| key.seal_str("village_text", &v)),
            occurred_at: occurred.map(|o| key.seal_str("occurred_at", o)),
            contact: contact.map(|c| key.seal_str("contact", &c)),
            attachments: Vec::new(),
            chat: None,
            id,
        }
    }

    fn batch(&self, from: u64, to: u64) -> Batch {
        let mut counts = Counts::default();
        let mut sample_ids = Vec::new();
        let records = (from..to)
            .map(|i| self.tip(i, &mut counts, &mut sample_ids))
            .collect();
        Batch {
            records,
            counts,
            sample_ids,
        }
    }
}

async fn seed(config: &Config, settings: &Settings) -> Result<Seeded> {
    let store = tinbao::app::open_store(config).await?;
    store
        .ensure_admin_units(&tinbao::geo::shipped_units())
        .await?;
    let keys = Arc::new(tinbao::app::open_keys(config, &store).await?);
    let geo = tinbao::geo::Geo::load(&store).await?;
    let mut villages = Vec::with_capacity(VILLAGES);
    for n in 1..=VILLAGES {
        villages.push(
            store
                .add_village(HEAVY_COMMUNE, &format!("Tổ dân phố {n}"))
                .await?,
        );
    }
    let officer = make_account(
        &store,
        &geo,
        Role::Officer,
        "bench.officer",
        None,
        Some(HEAVY_COMMUNE),
    )
    .await?;
    let province = make_account(
        &store,
        &geo,
        Role::Province,
        "bench.province",
        Some(HEAVY_PROVINCE),
        None,
    )
    .await?;

    let generator = Arc::new(Generator {
        keys,
        places: Places::new(&store.communes().await?)?,
        villages: villages.clone(),
        sla: config.sla.clone(),
        now: tinbao::clock::now_ms(),
        seed: settings.seed,
    });
    let (engine, writers) = match store.engine() {
        tinbao::store::Engine::Sqlite => ("SQLite", 1),
        tinbao::store::Engine::Postgres => ("PostgreSQL", 2),
    };
    let makers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    println!(
        "  seeding {} tips into {engine}: batches of {} (one transaction each), sealed on {makers} \
         thread(s), {writers} writer(s)…",
        settings.tips, settings.batch
    );

    let started = Instant::now();
    let total = settings.tips;
    let batch = settings.batch as u64;
    let batches = total.div_ceil(batch);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2 * makers + writers);
    let mut threads = Vec::new();
    for t in 0..makers as u64 {
        let generator = generator.clone();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut b = t;
            while b < batches {
                let from = b * batch;
                let to = (from + batch).min(total);
                if tx.blocking_send(generator.batch(from, to)).is_err() {
                    break;
                }
                b += makers as u64;
            }
        }));
    }
    drop(tx);

    let mut counts = Counts::default();
    let mut sample_ids = Vec::new();
    let mut inserted = 0u64;
    let mut last_report = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        let next = rx.recv().await;
        let done = next.is_none();
        if let Some(b) = next {
            counts.add(&b.counts);
            sample_ids.extend(b.sample_ids);
            let store = store.clone();
            inflight.spawn(async move {
                let refs: Vec<&NewTipRecord> = b.records.iter().collect();
                store.insert_tips(&refs).await.map(|_| refs.len() as u64)
            });
        }
        while inflight.len() >= writers || (done && !inflight.is_empty()) {
            let n = inflight
                .join_next()
                .await
                .expect("a task")
                .context("insert task")?
                .context("insert_tips")?;
            inserted += n;
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "    {inserted} tips in {secs:.0} s ({:.0} tips/s)",
                    inserted as f64 / secs
                );
            }
        }
        if done {
            break;
        }
    }
    for t in threads {
        t.join().map_err(|_| anyhow!("a sealing thread panicked"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = inserted as f64 / seconds;
    println!(
        "  seeded {inserted} tips in {seconds:.1} s: {rate:.0} tips/s (sealing and inserting)"
    );
    if store.engine() == tinbao::store::Engine::Postgres {
        // What autovacuum does on a live server after a bulk of inserts.
        let t = Instant::now();
        let mut conn = sqlx::PgConnection::connect(config.database_url().as_str()).await?;
        sqlx::query("VACUUM ANALYZE tips")
            .execute(&mut conn)
            .await?;
        conn.close().await.ok();
        println!("  VACUUM ANALYZE tips: {:.1} s", t.elapsed().as_secs_f64());
    }
    store.close().await;
    println!(
        "  commune {HEAVY_COMMUNE}: {} open tips ({} new+dealing, {} overdue, {} in village {}, \
         {} from the hotline); province {HEAVY_PROVINCE}: {} open unplaced; {:.1} % closed \
         overall",
        counts.open,
        counts.new_dealing,
        counts.overdue,
        counts.village,
        villages[0],
        counts.hotline,
        counts.unplaced,
        counts.closed as f64 * 100.0 / counts.total.max(1) as f64
    );
    if sample_ids.is_empty() {
        bail!("no tip of commune {HEAVY_COMMUNE} was seeded");
    }
    Ok(Seeded {
        seconds,
        rate,
        counts,
        villages,
        sample_ids: Arc::new(sample_ids),
        officer,
        province,
    })
}

async fn make_account(
    store: &Store,
    geo: &tinbao::geo::Geo,
    role: Role,
    username: &str,
    province: Option<i64>,
    commune: Option<i64>,
) -> Result<(String, String)> {
    let (_, password) = accounts::create(
        store,
        geo,
        NewAccount {
            username: username.into(),
            display_name: format!("Cán bộ {username}"),
            email: None,
            role,
            province_code: province,
            commune_code: commune,
            village_id: None,
        },
    )
    .await
    .map_err(|e| anyhow!("creating {username}: {e}"))?;
    Ok((username.to_owned(), password))
}

// ---------------------------------------------------------------------------------------
// HTTP client: one hyper HTTP/1.1 connection per worker, kept alive.

struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
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

    /// A GET (no form) or a form POST, with the cookies given.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        cookies: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Result<Reply> {
        let content = form.map(|fields| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                s.append_pair(k, v);
            }
            ("application/x-www-form-urlencoded", Bytes::from(s.finish()))
        });
        self.send(method, path, cookies, content).await
    }

    /// A request with a body of a content type, or none.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookies: &str,
        content: Option<(&'static str, Bytes)>,
    ) -> Result<Reply> {
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
            .header(header::HOST, self.addr.to_string());
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies);
        }
        let body = match content {
            Some((kind, body)) => {
                req = req.header(header::CONTENT_TYPE, kind);
                body
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body))?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let status = res.status();
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let body = match res.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        Ok(Reply {
            status,
            location,
            set_cookies,
            body,
        })
    }
}

/// The few cookies of the login flow.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, reply: &Reply) {
        for c in &reply.set_cookies {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.0.remove(k.trim());
                } else {
                    self.0.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The value of the hidden `csrf` input of a form.
fn csrf_field(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"")? + 7..];
    Some(v[..v.find('"')?].to_owned())
}

/// The text of the element with this id.
fn element_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].trim().to_owned())
}

fn expect_redirect(reply: &Reply, step: &str, to: &str) -> Result<()> {
    if reply.status != StatusCode::SEE_OTHER || reply.location.as_deref() != Some(to) {
        bail!(
            "{step}: expected 303 to {to}, got {} to {:?}: {}",
            reply.status,
            reply.location,
            reply.text().chars().take(300).collect::<String>()
        );
    }
    Ok(())
}

/// Walks the first login as a person would (password, forced change, TOTP enrolment);
/// returns the `Cookie` header of the full session.
async fn login(addr: SocketAddr, username: &str, one_time: &str) -> Result<String> {
    let mut conn = Conn::new(addr);
    let mut jar = Jar::default();
    let page = conn
        .request(Method::GET, "/console/login", "", None)
        .await?;
    jar.take(&page);
    let csrf = csrf_field(&page.text()).context("no csrf on the login page")?;
    let res = conn
        .request(
            Method::POST,
            "/console/login",
            &jar.header(),
            Some(&[
                ("csrf", &csrf),
                ("username", username),
                ("password", one_time),
            ]),
        )
        .await?;
    jar.take(&res);
    expect_redirect(&res, "login", "/console/password")?;
    let page = conn
        .request(Method::GET, "/console/password", &jar.header(), None)
        .await?;
    let csrf = csrf_field(&page.text()).context("no csrf on the password page")?;
    let password = format!("mật khẩu đo tải của {username}");
    let res = conn
        .request(
            Method::POST,
            "/console/password",
            &jar.header(),
            Some(&[
                ("csrf", &csrf),
                ("password", &password),
                ("password_again", &password),
            ]),
        )
        .await?;
    jar.take(&res);
    expect_redirect(&res, "password change", "/console/totp")?;
    let page = conn
        .request(Method::GET, "/console/totp", &jar.header(), None)
        .await?;
    let html = page.text();
    let secret = element_text(&html, "totp-secret").context("no TOTP secret on the page")?;
    let raw = totp_rs::Secret::Encoded(secret.replace(char::is_whitespace, ""))
        .to_bytes()
        .map_err(|e| anyhow!("TOTP secret: {e:?}"))?;
    let code = accounts::totp(&raw, username)
        .context("TOTP")?
        .generate_current()?;
    let res = conn
        .request(
            Method::POST,
            "/console/totp",
            &jar.header(),
            Some(&[("csrf", &csrf), ("code", &code)]),
        )
        .await?;
    expect_redirect(&res, "TOTP", "/console")?;
    // The session gets a new id once the second factor is accepted.
    jar.take(&res);
    Ok(jar.header())
}

// ---------------------------------------------------------------------------------------
// Phases

enum Kind {
    /// One page; `full` when the data has at least a page of matches (then it must hold
    /// exactly 50 tip links).
    Page { path: String, full: bool },
    /// The first page (not measured), then `depth` "next page" links followed (measured).
    Pages {
        first: String,
        depth: usize,
        full: bool,
    },
    /// A random tip of the sample.
    Tip { ids: Arc<Vec<String>> },
    /// The province officer's queue: unplaced tips and the communes' counts.
    Province { full: bool },
    /// A report: a 200 whose body holds `must`.
    Report { path: String, must: &'static str },
}

struct Phase {
    name: String,
    session: Arc<String>,
    kind: Arc<Kind>,
    target_us: u64,
}

impl Phase {
    fn page(name: &str, session: Arc<String>, path: String, matches: u64) -> Phase {
        Phase {
            name: name.to_owned(),
            session,
            kind: Arc::new(Kind::Page {
                path,
                full: matches >= PAGE as u64,
            }),
            target_us: QUEUE_P95_TARGET_US,
        }
    }
}

/// Whether this is `cargo bench --bench retention` (the same source as the console bench).
const RETENTION: bool = matches!(env!("CARGO_CRATE_NAME").as_bytes(), b"retention");
/// Tips per second sent to `POST /api/v1/tips` while the retention pass and the backup
/// run, and intake's p99 target meanwhile.
const INTAKE_RATE: u64 = 500;
const INTAKE_P99_TARGET_US: u64 = 50_000;
/// Tips destroyed per second, at least.
const DESTROY_TARGET_PER_S: f64 = 10_000.0;
/// The retention the pass runs with: of the seed's tips (created over the past year,
/// 85 % closed, closed when created), those closed more than 8 months ago are due, about
/// 300,000 of a million.
const RETENTION_MONTHS: &str = "8";

/// Intake at [`INTAKE_RATE`] from 16 connections (open loop: each sends on its own
/// clock), for as long as `work` runs; answers the latency histogram, the answers that
/// were not 201, and `work`'s output.
async fn intake_while<F>(addr: SocketAddr, work: F) -> Result<Intake>
where
    F: std::future::Future<Output = Result<String>>,
{
    const WORKERS: u64 = 16;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut hist = new_hist();
            let mut times = Vec::new();
            let (mut sent, mut failed) = (0u64, 0u64);
            let every = Duration::from_micros(1_000_000 * WORKERS / INTAKE_RATE);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + every * w as u32 / WORKERS as u32,
                every,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let body = format!(
                    "{{\"category\":\"dealing\",\"province\":1,\"commune\":70,\"description\":\"Có người bán ma tuý ở quán nước đầu ngõ, lần {w}-{sent}\",\"happening_now\":false}}"
                );
                let t = Instant::now();
                let r = conn
                    .send(Method::POST, "/api/v1/tips", "", Some(("application/json", Bytes::from(body))))
                    .await;
                let latency = micros(t.elapsed()).max(1);
                let _ = hist.record(latency);
                times.push((t.duration_since(started), latency));
                sent += 1;
                if !matches!(&r, Ok(reply) if reply.status == StatusCode::CREATED) {
                    failed += 1;
                }
            }
            (hist, times, sent, failed)
        }));
    }
    let out = work.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut intake = Intake {
        hist: new_hist(),
        times: Vec::new(),
        sent: 0,
        failed: 0,
        out: String::new(),
    };
    for t in tasks {
        let (h, times, s, f) = t.await?;
        intake.hist.add(&h)?;
        intake.times.extend(times);
        intake.sent += s;
        intake.failed += f;
    }
    intake.out = out?;
    Ok(intake)
}

/// What [`intake_while`] saw: the latencies (and when each request left, from the start),
/// the answers that were not 201, and the work's output.
struct Intake {
    hist: Histogram<u64>,
    times: Vec<(Duration, u64)>,
    sent: u64,
    failed: u64,
    out: String,
}

impl Intake {
    /// The latencies of the requests sent between `from` and `to` (from the start).
    fn window(&self, from: Duration, to: Duration) -> Histogram<u64> {
        let mut hist = new_hist();
        for &(at, latency) in &self.times {
            if at >= from && at < to {
                let _ = hist.record(latency);
            }
        }
        hist
    }
}

/// Runs `tinbao ARGS` on the bench's data, as an operator would, and answers its output.
async fn run_cli(
    bin: &Path,
    data: &Path,
    database_url: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(data)
        .env("TINBAO_DATA_DIR", data)
        .env("TINBAO_CONFIG", data.join("no-such-tinbao.toml"))
        .env("TINBAO_LOG", "warn")
        .env_remove("TINBAO_KEYS")
        .env_remove("TINBAO_KEY_FILE");
    match database_url {
        Some(url) => cmd.env("TINBAO_DATABASE_URL", url),
        None => cmd.env_remove("TINBAO_DATABASE_URL"),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("tinbao {} failed: {text}", args.join(" "));
    }
    Ok(text)
}

fn print_intake(what: &str, hist: &Histogram<u64>, sent: u64, failed: u64, seconds: f64) {
    let p99 = hist.value_at_quantile(0.99);
    println!(
        "  intake at {INTAKE_RATE}/s {what}: {sent} sent in {seconds:.1} s ({:.0}/s), {failed} not 201 · p50 {} · p99 {} · max {} ms  [{}]",
        sent as f64 / seconds.max(0.001),
        ms(hist.value_at_quantile(0.5)),
        ms(p99),
        ms(hist.max()),
        if p99 < INTAKE_P99_TARGET_US && failed == 0 { "ok" } else { "MISS" }
    );
}

/// The retention bench: intake alone, then the retention pass (about 300,000 tips due)
/// and a backup, each while tips arrive.
async fn retention_phases(
    bin: &Path,
    addr: SocketAddr,
    data: &Path,
    db_url: Option<&str>,
) -> Result<()> {
    let t = Instant::now();
    let alone = intake_while(addr, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(String::new())
    })
    .await?;
    print_intake(
        "alone",
        &alone.hist,
        alone.sent,
        alone.failed,
        t.elapsed().as_secs_f64(),
    );

    // `BENCH_RETENTION_PHASES` (`pass,backup`): which of the two to measure.
    let phases = std::env::var("BENCH_RETENTION_PHASES").unwrap_or_else(|_| "pass,backup".into());
    if phases.split(',').any(|p| p.trim() == "pass") {
        retention_pass(bin, addr, data, db_url).await?;
    }
    if phases.split(',').any(|p| p.trim() == "backup") {
        backup_phase(bin, addr, data, db_url).await?;
    }
    Ok(())
}

/// `tinbao retention run` (about 300,000 tips due, 8 months' retention) while tips arrive.
async fn retention_pass(
    bin: &Path,
    addr: SocketAddr,
    data: &Path,
    db_url: Option<&str>,
) -> Result<()> {
    let t = Instant::now();
    let env = [("TINBAO_RETENTION__MONTHS", RETENTION_MONTHS)];
    let pass = intake_while(
        addr,
        run_cli(bin, data, db_url, &["retention", "run"], &env),
    )
    .await?;
    let seconds = t.elapsed().as_secs_f64();
    let out = &pass.out;
    for line in out.lines() {
        println!("  tinbao retention run: {line}");
    }
    let figure = |after: &str| {
        out.split(after)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    let destroyed = figure("destroyed the content of ").unwrap_or(0.0);
    let destroy_s = figure("past their retention in ").unwrap_or(f64::MAX);
    let rate = destroyed / destroy_s;
    println!(
        "  destroyed {destroyed:.0} tips in {destroy_s:.2} s: {rate:.0} tips/s (target >= {DESTROY_TARGET_PER_S:.0}) [{}]",
        if rate >= DESTROY_TARGET_PER_S { "ok" } else { "MISS" }
    );
    print_intake(
        "during the pass",
        &pass.hist,
        pass.sent,
        pass.failed,
        seconds,
    );
    // The pass's two parts apart: the destruction, then the wrap (the process's start
    // counted with the destruction).
    let destroy_end = Duration::from_secs_f64(destroy_s.min(seconds) + 0.2);
    let end = Duration::from_secs_f64(seconds);
    for (what, from, to) in [
        ("while destroying", Duration::ZERO, destroy_end),
        ("while wrapping", destroy_end, end),
    ] {
        let hist = pass.window(from, to);
        println!(
            "    {what} ({:.1} s): p50 {} · p99 {} · max {} ms [{}]",
            to.saturating_sub(from).as_secs_f64(),
            ms(hist.value_at_quantile(0.5)),
            ms(hist.value_at_quantile(0.99)),
            ms(hist.max()),
            if hist.value_at_quantile(0.99) < INTAKE_P99_TARGET_US {
                "ok"
            } else {
                "MISS"
            }
        );
    }
    Ok(())
}

/// `tinbao backup` of the whole database while tips arrive.
async fn backup_phase(
    bin: &Path,
    addr: SocketAddr,
    data: &Path,
    db_url: Option<&str>,
) -> Result<()> {
    let backup = data.join("bench-backup");
    let t = Instant::now();
    let arg = backup.to_string_lossy().into_owned();
    let b = intake_while(addr, run_cli(bin, data, db_url, &["backup", &arg], &[])).await?;
    let seconds = t.elapsed().as_secs_f64();
    println!("  tinbao backup: {} ({seconds:.1} s)", b.out.trim());
    print_intake("during the backup", &b.hist, b.sent, b.failed, seconds);
    let _ = std::fs::remove_dir_all(&backup);
    Ok(())
}

/// Whether this is `cargo bench --bench reports` (the same source as the console bench).
const REPORTS: bool = matches!(env!("CARGO_CRATE_NAME").as_bytes(), b"reports");

/// The reports' phases: last month's report of commune 70 as a page and as a workbook, and
/// the province's view of the month.
fn report_phases(officer: &Arc<String>, province: &Arc<String>) -> Vec<Phase> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let month = tinbao::reports::mail::due_month(now).label();
    vec![
        Phase {
            name: format!("commune report page, {month}"),
            session: officer.clone(),
            kind: Arc::new(Kind::Report {
                path: format!("/console/reports?month={month}"),
                must: "id=\"table-summary\"",
            }),
            target_us: 300_000,
        },
        Phase {
            name: format!("commune report .xlsx, {month}"),
            session: officer.clone(),
            kind: Arc::new(Kind::Report {
                path: format!("/console/reports/export?format=xlsx&month={month}"),
                must: "xl/worksheets/sheet1.xml",
            }),
            target_us: 1_000_000,
        },
        Phase {
            name: format!("province view, {month}"),
            session: province.clone(),
            kind: Arc::new(Kind::Report {
                path: format!("/console/reports/province?month={month}&sort=tips"),
                must: "id=\"province-table\"",
            }),
            target_us: 1_000_000,
        },
    ]
}

fn tip_links(html: &str) -> usize {
    html.matches("href=\"/console/tips/").count()
}

/// The "next page" link of a queue page, unescaped.
fn next_link(html: &str) -> Option<String> {
    let at = html.find("href=\"/console/queue?after=")? + 6;
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// Checks a queue page; `Err` names what is wrong.
fn check_queue(reply: &Reply, full: bool) -> Result<String, String> {
    if reply.status != StatusCode::OK {
        return Err(format!("HTTP {}", reply.status.as_u16()));
    }
    let html = reply.text().into_owned();
    let n = tip_links(&html);
    if (full && n != PAGE) || n > PAGE {
        return Err(format!("{n} tip links instead of {PAGE}"));
    }
    Ok(html)
}

struct WorkerResult {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl WorkerResult {
    fn record(&mut self, measured: bool, latency: Duration, outcome: Result<(), String>) {
        if !measured {
            return;
        }
        self.hist.saturating_record(micros(latency));
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }
}

async fn timed_get(conn: &mut Conn, path: &str, cookies: &str) -> (Duration, Result<Reply>) {
    let sent = Instant::now();
    let r = conn.request(Method::GET, path, cookies, None).await;
    (sent.elapsed(), r)
}

/// C clients in a closed loop, each on its own connection with the phase's session.
async fn run_phase(addr: SocketAddr, phase: &Phase, settings: &Settings) -> Result<PhaseResult> {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let duration = Duration::from_secs(settings.seconds);
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(settings.concurrency);
    let kind = phase.kind.clone();
    for w in 0..settings.concurrency {
        let kind = kind.clone();
        let cookies = phase.session.clone();
        let seed = settings.seed ^ (w as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut rng = Rng::new(seed);
            let mut r = WorkerResult {
                hist: new_hist(),
                ok: 0,
                errors: BTreeMap::new(),
            };
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let measured = now >= measure_from;
                match &*kind {
                    Kind::Report { path, must } => {
                        let (lat, res) = timed_get(&mut conn, path, &cookies).await;
                        let outcome = res.map_err(|e| e.to_string()).and_then(|reply| {
                            if reply.status != StatusCode::OK {
                                Err(format!("HTTP {}", reply.status.as_u16()))
                            } else if !reply.body.windows(must.len()).any(|w| w == must.as_bytes())
                            {
                                Err(format!("no {must:?} in the answer"))
                            } else {
                                Ok(())
                            }
                        });
                        r.record(measured, lat, outcome);
                    }
                    Kind::Page { path, full } => {
                        let (lat, res) = timed_get(&mut conn, path, &cookies).await;
                        let outcome = res
                            .map_err(|e| e.to_string())
                            .and_then(|reply| check_queue(&reply, *full).map(|_| ()));
                        r.record(measured, lat, outcome);
                    }
                    Kind::Pages { first, depth, full } => {
                        let (_, res) = timed_get(&mut conn, first, &cookies).await;
                        let mut next = res
                            .map_err(|e| e.to_string())
                            .and_then(|reply| check_queue(&reply, *full))
                            .map(|html| next_link(&html));
                        for _ in 0..*depth {
                            let path = match next {
                                Ok(Some(p)) => p,
                                Ok(None) => {
                                    if *full {
                                        r.record(
                                            measured,
                                            Duration::ZERO,
                                            Err("no next link".into()),
                                        );
                                    }
                                    break;
                                }
                                Err(e) => {
                                    r.record(measured, Duration::ZERO, Err(format!("page 1: {e}")));
                                    break;
                                }
                            };
                            let (lat, res) = timed_get(&mut conn, &path, &cookies).await;
                            let html = res
                                .map_err(|e| e.to_string())
                                .and_then(|reply| check_queue(&reply, *full));
                            r.record(
                                measured,
                                lat,
                                html.as_ref().map(|_| ()).map_err(Clone::clone),
                            );
                            next = html.map(|h| next_link(&h));
                        }
                    }
                    Kind::Tip { ids } => {
                        let id = &ids[rng.below(ids.len() as u64) as usize];
                        let (lat, res) =
                            timed_get(&mut conn, &format!("/console/tips/{id}"), &cookies).await;
                        let outcome = match res {
                            Err(e) => Err(e.to_string()),
                            Ok(reply) if reply.status != StatusCode::OK => {
                                Err(format!("HTTP {}", reply.status.as_u16()))
                            }
                            Ok(reply) if !reply.text().contains(DESCRIPTION_MARK) => {
                                Err("no decrypted description on the page".into())
                            }
                            Ok(_) => Ok(()),
                        };
                        r.record(measured, lat, outcome);
                    }
                    Kind::Province { full } => {
                        let (lat, res) = timed_get(&mut conn, "/console/queue", &cookies).await;
                        let outcome = res
                            .map_err(|e| e.to_string())
                            .and_then(|reply| check_queue(&reply, *full))
                            .and_then(|html| {
                                if html.contains("href=\"/console/queue?commune=") {
                                    Ok(())
                                } else {
                                    Err("no commune counts".into())
                                }
                            });
                        r.record(measured, lat, outcome);
                    }
                }
                if !r.errors.is_empty() && r.ok == 0 && r.errors.values().sum::<u64>() > 100 {
                    // Don't spin on a broken page.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            r
        }));
    }
    let mut parts = Vec::with_capacity(settings.concurrency);
    for t in tasks {
        parts.push(t.await?);
    }
    Ok(PhaseResult::from_workers(
        phase.name.clone(),
        phase.target_us,
        parts,
        duration.as_secs_f64(),
    ))
}

// ---------------------------------------------------------------------------------------
// Measurements

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs .. 5 min, 3 significant digits.
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("histogram")
}

struct PhaseResult {
    name: String,
    target_us: u64,
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Answers per second over the measured window.
    rate: f64,
    peak_rss_kb: u64,
    /// Server CPU time per answer, in ms (set when printed).
    server_cpu_ms: f64,
}

impl PhaseResult {
    fn from_workers(
        name: String,
        target_us: u64,
        parts: Vec<WorkerResult>,
        seconds: f64,
    ) -> PhaseResult {
        let mut hist = new_hist();
        let mut ok = 0;
        let mut error_kinds = BTreeMap::new();
        for p in parts {
            hist.add(&p.hist).expect("same bounds");
            ok += p.ok;
            for (k, v) in p.errors {
                *error_kinds.entry(k).or_default() += v;
            }
        }
        let errors = error_kinds.values().sum();
        PhaseResult {
            name,
            target_us,
            hist,
            ok,
            errors,
            error_kinds,
            rate: (ok + errors) as f64 / seconds,
            peak_rss_kb: 0,
            server_cpu_ms: 0.0,
        }
    }

    fn print(&mut self, cpu: &CpuUse, rss_kb: u64) {
        self.peak_rss_kb = rss_kb;
        println!("  {}", self.name);
        println!(
            "    {} ok · {} errors → {:.0} req/s · p50 {} · p95 {} · p99 {} · max {} ms",
            self.ok,
            self.errors,
            self.rate,
            ms(self.hist.value_at_quantile(0.50)),
            ms(self.hist.value_at_quantile(0.95)),
            ms(self.hist.value_at_quantile(0.99)),
            ms(self.hist.max())
        );
        // CPU time per answer: what a page costs the server, whatever else runs on the
        // machine (latency on a shared machine over-states it).
        self.server_cpu_ms = if self.rate > 0.0 {
            cpu.server_pct / 100.0 / self.rate * 1000.0
        } else {
            0.0
        };
        println!(
            "    server CPU {:.0}% · client CPU {:.0}% (100% = one core) · machine {:.0}% busy \
             · peak RSS {:.1} MB · server CPU per request {:.1} ms",
            cpu.server_pct,
            cpu.client_pct,
            cpu.machine_pct,
            mb(rss_kb),
            self.server_cpu_ms
        );
        for (kind, n) in &self.error_kinds {
            println!("    error {kind}: {n}");
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
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
            // No daily retention pass in the measured server (`retention run` is measured).
            .env("TINBAO_RETENTION__HOUR", "24")
            .env("TINBAO_LOG", "warn")
            .env_remove("TINBAO_KEYS")
            .env_remove("TINBAO_KEY_FILE")
            .env_remove("TINBAO_TLS_CERT")
            .env_remove("TINBAO_TLS_KEY")
            .env_remove("TINBAO_SMTP__ENABLED")
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
        let t = Instant::now();
        server.wait_healthy().await?;
        println!(
            "  server pid {} listening on {addr} (healthy after {:.1} s)",
            server.pid(),
            t.elapsed().as_secs_f64()
        );
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
            match conn.request(Method::GET, "/healthz", "", None).await {
                Ok(r) if r.status == StatusCode::OK => return Ok(()),
                Ok(r) => last = format!("{}: {}", r.status, r.text()),
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
        for setting in ["server_version", "shared_buffers", "work_mem"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|_| "?".into());
            settings.push(value);
        }
        let [version, shared_buffers, work_mem] = <[String; 3]>::try_from(settings).expect("three");
        conn.close().await.ok();
        let url = with_database(&admin_url, &name)?;
        println!(
            "  PostgreSQL {version} at {shown}: database {name} \
             (shared_buffers={shared_buffers}, work_mem={work_mem})"
        );
        Ok(Some(PgDatabase {
            admin_url,
            name,
            url,
            dropped: AtomicBool::new(false),
        }))
    }

    async fn size(&self) -> Result<u64> {
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await.ok();
        Ok(n.max(0) as u64)
    }

    /// Leaves the database in place (BENCH_KEEP=1).
    fn keep(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        println!("  kept the database {} ({})", self.name, redact(&self.url));
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
