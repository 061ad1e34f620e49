//! The command line: `serve` (the default), `migrate`, `keys …`, `villages …`.

use crate::app::{open_keys, open_store, Application};
use crate::config::Config;
use crate::crypto::WrappedKey;
use crate::geo::shipped_units;
use crate::store::WrappedKeyRow;
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
    /// Show the key ids, the current one, and how many tips each still wraps.
    Status,
    /// Add a new KEK and make it current; new tips use it.
    Rotate,
    /// Re-wrap every tip's data key under the current KEK.
    Rewrap,
    /// Remove a KEK that no tip uses any more.
    Retire { key_id: String },
}

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

/// Runs the command line.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
        Command::Audit(AuditCommand::Verify) => {
            if audit_verify(&config).await? {
                Ok(())
            } else {
                bail!("the audit log has been tampered with")
            }
        }
    }
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

async fn keys(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let mut ring = open_keys(&config, &store).await?;
    let path = config.key_file();
    let from_env = std::env::var_os("TINBAO_KEYS").is_some();
    match cmd {
        KeysCommand::Status => {
            for id in ring.ids() {
                let n = store.tips_under_key(id).await?;
                let mark = if id == ring.current_id() {
                    " (current)"
                } else {
                    ""
                };
                println!("{id}{mark}: {n} tips");
            }
        }
        KeysCommand::Rotate => {
            if from_env {
                bail!(
                    "the keys come from TINBAO_KEYS: rotate the key file, then update the variable"
                );
            }
            let id = ring.rotate();
            let check = ring.key_check(&id).expect("new key");
            ring.save(&path)?;
            store
                .add_key_check(&id, &check, crate::clock::now_ms())
                .await?;
            println!("new key {id} is current; run `tinbao keys rewrap` to move old tips to it");
        }
        KeysCommand::Rewrap => {
            let mut total = 0usize;
            loop {
                let batch = store.keys_to_rewrap(ring.current_id(), 1000).await?;
                if batch.is_empty() {
                    break;
                }
                let mut out = Vec::with_capacity(batch.len());
                for row in &batch {
                    let wrapped = WrappedKey {
                        key_id: row.key_id.clone(),
                        wrapped: row.wrapped_key.clone(),
                    };
                    let new = ring
                        .rewrap(&row.id, &wrapped)
                        .with_context(|| format!("tip {} cannot be unwrapped", row.id))?;
                    out.push(WrappedKeyRow {
                        id: row.id.clone(),
                        key_id: new.key_id,
                        wrapped_key: new.wrapped,
                    });
                }
                store.store_rewrapped(&out).await?;
                total += out.len();
            }
            println!("re-wrapped {total} data keys under {}", ring.current_id());
        }
        KeysCommand::Retire { key_id } => {
            if from_env {
                bail!(
                    "the keys come from TINBAO_KEYS: edit the key file, then update the variable"
                );
            }
            let n = store.tips_under_key(&key_id).await?;
            if n > 0 {
                bail!("{n} tips still use {key_id}: run `tinbao keys rewrap` first");
            }
            ring.retire(&key_id)?;
            ring.save(&path)?;
            store.remove_key_check(&key_id).await?;
            println!("retired {key_id}");
        }
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
