//! The command line: `serve` (the default), `migrate`, `keys …`, `villages …`.

use crate::app::{
    keys_problem, load_keys, open_keys, open_store, Application, KEY_HOLDER_GONE_AFTER_MS,
};
use crate::config::Config;
use crate::crypto::{KeyRing, WrappedKey};
use crate::geo::shipped_units;
use crate::store::{KeyHolderRow, RewrappedKey, Store};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// tinbao: anonymous drug-crime tips for commune police.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply the database migrations and load the administrative units, then exit.
    Migrate,
    /// Manage the key-encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage a commune's villages.
    #[command(subcommand)]
    Villages(VillagesCommand),
    /// Manage console accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Campaign broadcasts.
    #[command(subcommand)]
    Broadcast(BroadcastCommand),
    /// Reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Retention of closed tips' content.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Copy the database, consistently, while the server runs, into a new or empty folder
    /// (never the key file: keep that apart), and check the copy opens.
    Backup {
        /// The folder to write the backup to.
        dir: std::path::PathBuf,
    },
    /// Bring a backup back into an empty data folder (or an empty PostgreSQL database),
    /// after checking the key file opens it.
    Restore {
        /// The backup's folder.
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// What the daily passes will destroy in the coming days (by day, commune and
    /// category), and the tips held as evidence.
    Status {
        /// How many days ahead.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Destroys now the content of every tip past its retention (the daily pass does the
    /// same; with servers running too).
    Run,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// A commune's monthly report (or a range of days with --from and --to), beside the
    /// previous period and the same period a year before; counts only.
    Monthly {
        /// The commune's code.
        #[arg(long)]
        commune: i64,
        /// The month, YYYY-MM (last month by default).
        #[arg(long)]
        month: Option<String>,
        /// First day of a range, YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// Last day of a range, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        /// csv (the default), html or xlsx (xlsx needs -o).
        #[arg(long, default_value = "csv")]
        format: String,
        /// vi or en.
        #[arg(long, default_value = "vi")]
        lang: String,
        /// Write to this file instead of the standard output.
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BroadcastCommand {
    /// Live counts of a broadcast (as its console page shows them), and its results
    /// per village and channel once finished.
    Status { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; prints its one-time password.
    Add {
        /// officer, chief, province, village_head or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        commune: Option<i64>,
        #[arg(long)]
        province: Option<i64>,
        /// The village (for a village head), added to the commune if new.
        #[arg(long)]
        village: Option<String>,
        /// The person's full name.
        #[arg(long)]
        name: String,
        /// Where alerts go.
        #[arg(long)]
        email: Option<String>,
        username: String,
    },
    /// Disable an account and end its sessions.
    Disable { username: String },
    /// Give an account a new one-time password and a fresh second factor.
    Reset { username: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; names the first entry changed or removed.
    Verify,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Show every key id in the file or in use, the current one, how many tips each
    /// wraps, and the running processes with the keys they hold.
    Status,
    /// Add a new KEK and make it current; every running server takes it within a second
    /// (or on SIGHUP), and this waits until they all have.
    Rotate {
        /// Seconds to wait for the running servers to take the new key.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Re-wrap every tip's data key under the current KEK, in batches; refused while a
    /// running server does not hold that KEK yet.
    Rewrap {
        /// Seconds to wait for the running servers to hold the current key.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Remove a KEK that no tip, and no running server, uses any more.
    Retire {
        key_id: String,
        /// Seconds a running server must have had another current key before this one
        /// goes: longer than any tip write can take (see the README).
        #[arg(long, default_value_t = RETIRE_GRACE_SECS)]
        grace: u64,
    },
}

/// The default grace of `keys retire`: a tip wrapped just before its server switched keys
/// is written within this time (its database write is bounded by the pool's 10 s acquire
/// and SQLite's 10 s busy timeout, plus the group-commit queue ahead of it).
const RETIRE_GRACE_SECS: u64 = 120;

#[derive(Subcommand)]
enum VillagesCommand {
    /// Add villages to a commune.
    Add {
        #[arg(long)]
        commune: i64,
        names: Vec<String>,
    },
    /// List a commune's villages.
    List {
        #[arg(long)]
        commune: i64,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TINBAO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
        // These log client addresses at trace level: never, whatever TINBAO_LOG says.
        .add_directive("axum::serve=off".parse().expect("directive"))
        .add_directive("axum_server=off".parse().expect("directive"))
        .add_directive("hyper=off".parse().expect("directive"))
        .add_directive("hyper_util=off".parse().expect("directive"));
    // Logs go to stderr; stdout carries only what a command answers.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reads the command line.
pub fn parse() -> Cli {
    Cli::parse()
}

impl Cli {
    /// Whether the command is a copy of the whole database made beside running servers
    /// (`backup`): it reads and checks a gigabyte while tips arrive, so its process
    /// should give the servers the processor first ([`step_aside`]). Its reads hold no
    /// lock a server's write waits for.
    pub fn runs_beside_servers(&self) -> bool {
        matches!(self.command, Some(Command::Backup { .. }))
    }
}

/// Lowers this process's processor priority (nice 10) for the threads it starts from
/// now on: the thread calling it and every thread it creates. Called before the runtime
/// starts, it covers the whole command, the database's threads included.
pub fn step_aside() {
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        eprintln!("tinbao: could not lower this command's priority ({e}); it runs at the servers' priority");
    }
}

/// Runs the command line.
pub async fn run() -> anyhow::Result<()> {
    run_parsed(Cli::parse()).await
}

/// Runs a command line already read.
pub async fn run_parsed(cli: Cli) -> anyhow::Result<()> {
    init_logging();
    let config = Config::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            let n = store.ensure_admin_units(&shipped_units()).await?;
            open_keys(&config, &store).await?;
            println!("database ready: {n} communes");
            Ok(())
        }
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::Villages(cmd) => villages(config, cmd).await,
        Command::User(cmd) => user(config, cmd).await,
        Command::Broadcast(BroadcastCommand::Status { id }) => broadcast_status(config, &id).await,
        Command::Report(cmd) => report(config, cmd).await,
        Command::Retention(cmd) => retention(config, cmd).await,
        Command::Backup { dir } => {
            let store = open_store(&config).await?;
            let ring = open_keys(&config, &store).await?;
            let made = crate::app::backup::backup(&config, &store, &ring, &dir).await?;
            println!(
                "backup written: {} ({} bytes, {} tips); checked: it opens with this key file. \
                 The key file is not in it: keep that apart.",
                made.file.display(),
                made.bytes,
                made.tips
            );
            Ok(())
        }
        Command::Restore { dir } => {
            let tips = crate::app::backup::restore(&config, &dir).await?;
            println!(
                "restored {tips} tips from {}; they open with this key file",
                dir.display()
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Verify) => {
            if audit_verify(&config).await? {
                Ok(())
            } else {
                bail!("the audit log has been tampered with")
            }
        }
    }
}

async fn retention(config: Config, cmd: RetentionCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let now = crate::clock::now_ms();
    match cmd {
        RetentionCommand::Status { days } => {
            let days = days.clamp(1, 3660);
            let geo = {
                store.ensure_admin_units(&shipped_units()).await?;
                crate::geo::Geo::load(&store).await?
            };
            if config.retention.months == 0 {
                println!("default retention: content kept for ever (retention.months = 0)");
            } else {
                println!(
                    "default retention: {} months after closing",
                    config.retention.months
                );
            }
            for (commune, category, months) in store.retention_settings().await? {
                let name = geo
                    .commune(commune)
                    .map_or(String::new(), |c| c.name.clone());
                println!("  {commune} {name}, {category}: {months} months");
            }
            let coming =
                crate::retention::upcoming(&store, config.retention.months, now, days).await?;
            let total: i64 = coming.iter().map(|u| u.tips).sum();
            println!("to be destroyed in the next {days} days: {total} tips");
            for u in &coming {
                let place = u
                    .commune
                    .and_then(|c| geo.commune(c))
                    .map_or("(no commune)".to_owned(), |c| {
                        format!("{} {}", c.code, c.name)
                    });
                println!("  {}  {place}  {}  {}", u.day, u.category, u.tips);
            }
            let holds = store.retention_holds(now).await?;
            println!("held as evidence: {} tips", holds.len());
            for (id, commune, until) in holds {
                let until =
                    chrono::DateTime::from_timestamp_millis(until - 1 + crate::clock::VN_OFFSET_MS)
                        .map(|t| t.date_naive().to_string())
                        .unwrap_or_default();
                println!(
                    "  {}  commune {}  until {until}",
                    id.chars().take(8).collect::<String>(),
                    commune.map_or("-".to_owned(), |c| c.to_string())
                );
            }
        }
        RetentionCommand::Run => {
            let key_file = crate::app::key_file_of(&config);
            let wait = std::time::Duration::from_secs(30);
            let r =
                crate::retention::pass(&store, &config.retention, key_file.as_deref(), now, wait)
                    .await?;
            println!(
                "destroyed the content of {} tips past their retention in {:.2} s",
                r.destroyed,
                r.destroy_time.as_secs_f64()
            );
            if !r.spent_keys.is_empty() {
                println!("deleted the spent day keys {}", r.spent_keys.join(", "));
            }
            println!(
                "wrapped {} closed tips under their destruction day's key in {:.2} s",
                r.wrapped,
                r.wrap_time.as_secs_f64()
            );
        }
    }
    Ok(())
}

async fn report(config: Config, cmd: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Monthly {
        commune,
        month,
        from,
        to,
        format,
        lang,
        output,
    } = cmd;
    use crate::reports::{commune_report, export, Period};
    let period = match (month, from, to) {
        (_, Some(from), Some(to)) => Period::range(&from, &to),
        (_, Some(_), None) | (_, None, Some(_)) => bail!("a range needs both --from and --to"),
        (Some(m), None, None) => Period::month(&m),
        (None, None, None) => {
            let today = crate::reports::vn_day(crate::clock::now_ms());
            Period::month(&today.format("%Y-%m").to_string()).map(|p| p.previous())
        }
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(texts) = crate::i18n::locales()
        .find(&lang)
        .map(|l| crate::i18n::locales().texts(l.code))
    else {
        bail!("no language {lang} (vi or en)");
    };
    let store = open_store(&config).await?;
    store.ensure_admin_units(&shipped_units()).await?;
    let geo = crate::geo::Geo::load(&store).await?;
    let r = commune_report(&store, &geo, commune, period)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = match format.as_str() {
        "csv" => export::csv(&r, texts, false).into_bytes(),
        "html" => export::html(&r, texts, false)?.into_bytes(),
        "xlsx" if output.is_none() => bail!("an .xlsx workbook is written to a file: add -o FILE"),
        "xlsx" => export::xlsx(&r, texts, false)?,
        other => bail!("no format {other} (csv, html or xlsx)"),
    };
    match output {
        Some(path) => {
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{}: {}", path.display(), r.period.label());
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&body)?;
        }
    }
    Ok(())
}

async fn broadcast_status(config: Config, id: &str) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let Some(b) = store.broadcast(id).await? else {
        bail!("no broadcast {id}");
    };
    let counts = store.broadcast_counts(id).await?;
    let p = crate::broadcast::progress_of(&b, &counts, crate::clock::now_ms());
    let local = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms + crate::clock::VN_OFFSET_MS)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    println!("broadcast {} \"{}\": {}", b.id, b.title, b.status.as_str());
    println!(
        "total {}  queued {}  sent {}  delivered {}  failed {}  opted out {}  cancelled {}  ({}% done{})",
        p.total,
        p.queued,
        p.sent,
        p.delivered,
        p.failed,
        p.opted_out,
        p.cancelled,
        p.percent(),
        if p.fanned_out { "" } else { ", still queueing recipients" }
    );
    if let Some(eta) = p.eta {
        println!("estimated finish {} (Asia/Ho_Chi_Minh)", local(eta));
    }
    for (t, c) in &p.by_transport {
        println!(
            "  {t:<9} queued {}  sent {}  delivered {}  failed {}  opted out {}  cancelled {}",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
    }
    let results = store.broadcast_results(id).await?;
    if !results.is_empty() {
        println!("results kept for the report (village, channel, outcome, count):");
        for r in results {
            println!(
                "  {:<8} {:<9} {:<10} {}",
                r.village_id, r.transport, r.status, r.count
            );
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let scheme = if config.tls() { "https" } else { "http" };
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    println!("tinbao listening on {scheme}://{addr}");
    // On a worker thread, not the main thread that only waits for it.
    tokio::spawn(app.run(shutdown_signal())).await?
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The running processes (heartbeat younger than [`KEY_HOLDER_GONE_AFTER_MS`]).
async fn live_holders(store: &Store) -> anyhow::Result<Vec<KeyHolderRow>> {
    let cutoff = crate::clock::now_ms() - KEY_HOLDER_GONE_AFTER_MS;
    Ok(store
        .keys_holders()
        .await?
        .into_iter()
        .filter(|h| h.heartbeat_at >= cutoff)
        .collect())
}

fn describe(h: &KeyHolderRow) -> String {
    format!(
        "{} (current {}, holds {})",
        h.label, h.current_key, h.known_keys
    )
}

/// Waits up to `wait` seconds until every running process passes `ok`; answers those
/// that still do not.
async fn wait_for_holders(
    store: &Store,
    wait: u64,
    ok: impl Fn(&KeyHolderRow) -> bool,
) -> anyhow::Result<Vec<KeyHolderRow>> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let behind: Vec<_> = live_holders(store)
            .await?
            .into_iter()
            .filter(|h| !ok(h))
            .collect();
        if behind.is_empty() || std::time::Instant::now() >= until {
            return Ok(behind);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn keys(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let path = config.key_file();
    let from_env = std::env::var_os("TINBAO_KEYS").is_some();
    match cmd {
        KeysCommand::Status => keys_status(&config, &store).await?,
        KeysCommand::Rotate { wait } => {
            let _lock = crate::crypto::KeyFileLock::take(&path)?;
            let mut ring = open_keys(&config, &store).await?;
            if from_env {
                bail!(
                    "the keys come from TINBAO_KEYS: rotate the key file, then update the variable"
                );
            }
            let retired = store.keys_retired().await?;
            let id = ring.rotate(&retired);
            let check = ring.key_check(&id).expect("new key");
            // The check first: a server that reloads the file finds it already there.
            store
                .add_key_check(&id, &check, crate::clock::now_ms())
                .await?;
            ring.save(&path)?;
            println!("new key {id} is current; run `tinbao keys rewrap` to move old tips to it");
            let behind = wait_for_holders(&store, wait, |h| h.current_key == id).await?;
            if behind.is_empty() {
                println!("every running server now wraps new tips under {id}");
            } else {
                eprintln!(
                    "warning: {} running server(s) do not wrap new tips under {id} yet: {}. \
                     A server reads its key file every second and on SIGHUP; one started \
                     with TINBAO_KEYS must be restarted with the new keys.",
                    behind.len(),
                    behind.iter().map(describe).collect::<Vec<_>>().join("; ")
                );
            }
        }
        KeysCommand::Rewrap { wait } => {
            let ring = open_keys(&config, &store).await?;
            let current = ring.current_id();
            let behind = wait_for_holders(&store, wait, |h| h.knows(&current)).await?;
            if !behind.is_empty() {
                bail!(
                    "refusing to rewrap: {} running server(s) do not hold {current} yet, and \
                     could not open a tip moved to it: {}. A server reads its key file every \
                     second and on SIGHUP (its log says why it refused a file); one started \
                     with TINBAO_KEYS must be restarted with the new keys.",
                    behind.len(),
                    behind.iter().map(describe).collect::<Vec<_>>().join("; ")
                );
            }
            let mut total = 0u64;
            loop {
                let batch = store.keys_to_rewrap(&current, 500).await?;
                if batch.is_empty() {
                    break;
                }
                let mut out = Vec::with_capacity(batch.len());
                for row in &batch {
                    let wrapped = WrappedKey {
                        key_id: row.key_id.clone(),
                        wrapped: row.wrapped_key.clone(),
                    };
                    // Unwraps under the old KEK, wraps under the current one, and proves
                    // the new wrap opens to the same data key.
                    let new = ring
                        .rewrap(&row.id, &wrapped)
                        .with_context(|| format!("tip {} cannot be unwrapped", row.id))?;
                    out.push(RewrappedKey {
                        id: row.id.clone(),
                        old_key_id: row.key_id.clone(),
                        key_id: new.key_id,
                        wrapped_key: new.wrapped,
                    });
                }
                total += store.keys_store_rewrapped(&out).await?;
            }
            println!("re-wrapped {total} data keys under {current}");
        }
        KeysCommand::Retire { key_id, grace } => {
            if from_env {
                bail!(
                    "the keys come from TINBAO_KEYS: edit the key file, then update the variable"
                );
            }
            let _lock = crate::crypto::KeyFileLock::take(&path)?;
            let mut ring = open_keys(&config, &store).await?;
            retire_when_unused(&store, &ring, &key_id, grace).await?;
            ring.retire(&key_id)?;
            ring.save(&path)?;
            store
                .keys_mark_retired(&key_id, crate::clock::now_ms())
                .await?;
            println!("retired {key_id}");
        }
    }
    Ok(())
}

/// Returns once `key_id` can go: no tip wrapped under it, no running server with it
/// current or with a tip wrapped under it not yet written, and every running server that
/// holds it switched to another key at least `grace` seconds ago (a tip wrapped under it
/// just before the switch is written by then); everything is counted again after waiting.
/// Refuses at once when a tip or a server's current key still uses it.
async fn retire_when_unused(
    store: &Store,
    ring: &KeyRing,
    key_id: &str,
    grace: u64,
) -> anyhow::Result<()> {
    if key_id == ring.current_id() {
        bail!("{key_id} is the current key; rotate first");
    }
    if !ring.has(key_id) {
        bail!("no key {key_id} in the key file");
    }
    let grace_ms = i64::try_from(grace.saturating_mul(1000)).unwrap_or(i64::MAX);
    let give_up = crate::clock::now_ms().saturating_add(grace_ms) + 60_000;
    loop {
        let n = store
            .keys_in_use()
            .await?
            .into_iter()
            .find(|(id, _)| id == key_id)
            .map_or(0, |(_, n)| n);
        if n > 0 {
            bail!("{n} tips still use {key_id}: run `tinbao keys rewrap` first");
        }
        let holders = live_holders(store).await?;
        if let Some(h) = holders.iter().find(|h| h.current_key == key_id) {
            bail!(
                "a running server still wraps new tips under {key_id}: {}. It reads its key \
                 file every second and on SIGHUP (its log says why it refused a file); one \
                 started with TINBAO_KEYS must be restarted with the new keys.",
                describe(h)
            );
        }
        let now = crate::clock::now_ms();
        let ready_at = holders
            .iter()
            // A server that never switched keys never had kN current (it is not now).
            .filter(|h| h.knows(key_id) && h.switched_at > h.started_at)
            .map(|h| h.switched_at.saturating_add(grace_ms))
            .max()
            .unwrap_or(0);
        let writing: Vec<_> = holders.iter().filter(|h| h.is_wrapping(key_id)).collect();
        if ready_at <= now && writing.is_empty() {
            return Ok(());
        }
        if now > give_up {
            bail!(
                "running servers still write tips wrapped under {key_id}: {}",
                writing
                    .iter()
                    .map(|h| describe(h))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        let pause = if ready_at > now {
            eprintln!(
                "waiting {} s: a running server switched away from {key_id} less than {grace} s \
                 ago, and a tip it wrapped under {key_id} just before may still be on its way",
                (ready_at - now + 999) / 1000
            );
            (ready_at - now).clamp(250, 5_000)
        } else {
            1_000
        };
        tokio::time::sleep(std::time::Duration::from_millis(pause as u64)).await;
    }
}

/// `tinbao keys status`: every key id in the file or in use with its count, and the
/// running processes with what they hold.
async fn keys_status(config: &Config, store: &Store) -> anyhow::Result<()> {
    let ring = load_keys(config, store).await?;
    let in_use = store.keys_in_use().await?;
    let current = ring.current_id();
    let mut ids: Vec<String> = ring.ids();
    for (id, _) in &in_use {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids.sort();
    for id in &ids {
        let n = in_use.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n);
        let mark = if *id == current {
            " (current)"
        } else if !ring.has(id) {
            " (MISSING from the key file: these tips cannot be read)"
        } else {
            ""
        };
        println!("{id}{mark}: {n} tips");
    }
    let retired = store.keys_retired().await?;
    if !retired.is_empty() {
        println!("retired: {}", retired.join(", "));
    }
    let now = crate::clock::now_ms();
    let holders = store.keys_holders().await?;
    let live: Vec<_> = holders
        .iter()
        .filter(|h| h.heartbeat_at >= now - KEY_HOLDER_GONE_AFTER_MS)
        .collect();
    println!("running processes: {}", live.len());
    for h in &live {
        println!(
            "  {}: current {} since {} s, holds {}{}, heartbeat {} s ago",
            h.label,
            h.current_key,
            (now - h.switched_at) / 1000,
            h.known_keys,
            if h.wrapping_keys.is_empty() {
                String::new()
            } else {
                format!(", writing under {}", h.wrapping_keys)
            },
            (now - h.heartbeat_at) / 1000
        );
    }
    let gone = holders.len() - live.len();
    if gone > 0 {
        println!("  ({gone} stopped without a clean shutdown; their rows are ignored)");
    }
    if let Some(problem) = keys_problem(&ring, store).await? {
        bail!("{problem}");
    }
    Ok(())
}

async fn villages(config: Config, cmd: VillagesCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.ensure_admin_units(&shipped_units()).await?;
    match cmd {
        VillagesCommand::Add { commune, names } => {
            let geo = crate::geo::Geo::load(&store).await?;
            let Some(c) = geo.commune(commune) else {
                bail!("no commune with code {commune}");
            };
            for name in names {
                let name = name.trim();
                if name.is_empty() {
                    continue;
                }
                store.add_village(commune, name).await?;
                println!("{}: {name}", c.name);
            }
        }
        VillagesCommand::List { commune } => {
            for v in store.villages(commune).await? {
                println!("{}\t{}", v.id, v.name);
            }
        }
    }
    Ok(())
}

async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    use crate::accounts::{self, NewAccount, Role};
    let store = open_store(&config).await?;
    store.ensure_admin_units(&shipped_units()).await?;
    let geo = crate::geo::Geo::load(&store).await?;
    let find = |username: String| {
        let store = store.clone();
        async move {
            store
                .account_by_username(&username)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account {username}"))
        }
    };
    match cmd {
        UserCommand::Add {
            role,
            commune,
            province,
            village,
            name,
            email,
            username,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("role must be officer, chief, province, village_head or admin")
            })?;
            let village_id = match (commune, village.as_deref().map(str::trim)) {
                (Some(c), Some(v)) if !v.is_empty() && geo.commune(c).is_some() => {
                    Some(store.add_village(c, v).await?)
                }
                _ => None,
            };
            let (account, password) = accounts::create(
                &store,
                &geo,
                NewAccount {
                    username,
                    display_name: name,
                    email,
                    role,
                    province_code: province,
                    commune_code: commune,
                    village_id,
                },
            )
            .await?;
            crate::audit::record(
                &store,
                None,
                "account.create",
                None,
                account.province_code,
                account.commune_code,
                &format!(
                    "{} ({}) by the command line",
                    account.username,
                    role.as_str()
                ),
            )
            .await?;
            println!("created {} ({})", account.username, role.as_str());
            println!("one-time password: {password}");
            println!("it must be changed at the first login, with a TOTP app at hand");
        }
        UserCommand::Disable { username } => {
            let row = find(username).await?;
            accounts::disable(&store, &row.id).await?;
            crate::audit::record(
                &store,
                None,
                "account.disable",
                None,
                row.province_code,
                row.commune_code,
                &format!("{} by the command line", row.username),
            )
            .await?;
            println!("disabled {}", row.username);
        }
        UserCommand::Reset { username } => {
            let row = find(username).await?;
            let password = accounts::reset(&store, &row.id).await?;
            crate::audit::record(
                &store,
                None,
                "account.reset",
                None,
                row.province_code,
                row.commune_code,
                &format!("{} by the command line", row.username),
            )
            .await?;
            println!("reset {}", row.username);
            println!("one-time password: {password}");
        }
    }
    Ok(())
}

/// `tinbao audit verify`: opens the store, walks the chain, prints
/// `audit chain intact: N entries` or `audit chain broken at entry SEQ: changed|removed
/// (why)`, and returns whether the chain is intact.
async fn audit_verify(config: &crate::config::Config) -> anyhow::Result<bool> {
    let store = open_store(config).await?;
    let result = crate::audit::verify(&store).await;
    store.close().await;
    let v = result?;
    println!("{v}");
    Ok(v.intact())
}
