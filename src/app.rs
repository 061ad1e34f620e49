//! Wiring: opening the database and the keys, building the router, serving HTTP or HTTPS.

use crate::channels::Provider;
use crate::clock::now_ms;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::delivery::{Outbox, Providers};
use crate::geo::{shipped_units, Geo};
use crate::intake::Intake;
use crate::state::{AppState, ConsoleCaches, Limits};
use crate::store::{Checkpoints, Engine, Store, TipWriter};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod backup;
pub mod housekeeping;
mod serve;

/// The rustls configuration for `tls_cert` and `tls_key`: HTTP/1.1 only, so that the
/// header and idle deadlines hold for every connection.
async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let loaded = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot read TLS certificate {} / key {}",
                cert.display(),
                key.display()
            )
        })?;
    let mut config = (*loaded.get_inner()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens the store named by the configuration and applies its migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    open_store_with(config, Checkpoints::AtCommit).await
}

/// [`open_store`] with SQLite's checkpoints run as `checkpoints` says: in the background
/// for the server, at commit for the command line.
pub async fn open_store_with(config: &Config, checkpoints: Checkpoints) -> anyhow::Result<Store> {
    let url = config.database_url();
    // The data folder holds the SQLite files and the key file: the service's user only.
    let key_file_here = config.key_file.is_none() && std::env::var_os("TINBAO_KEYS").is_none();
    if url.starts_with("sqlite:") || key_file_here {
        private_dir(&config.data_dir)?;
    }
    let store = Store::connect_with(&url, config.db_pool_size, checkpoints).await?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// Creates `dir` (and its parents) if missing and sets it to 0700, whatever the umask.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make the data folder {} private", dir.display()))?;
    }
    Ok(())
}

/// Loads the key ring and proves it is the one the database was sealed with, and that it
/// holds every KEK the stored data is wrapped under and does not make a retired KEK
/// current: otherwise it refuses, naming what is missing. On the very first start (no key
/// file, nothing sealed yet) it creates the key file.
pub async fn open_keys(config: &Config, store: &Store) -> anyhow::Result<KeyRing> {
    let ring = load_keys(config, store).await?;
    if let Some(problem) = keys_problem(&ring, store).await? {
        bail!("{problem}");
    }
    Ok(ring)
}

/// What is wrong with `ring` for this database, if anything: a KEK that stored data is
/// wrapped under and the ring lacks, or a retired KEK made current.
pub async fn keys_problem(ring: &KeyRing, store: &Store) -> anyhow::Result<Option<String>> {
    let missing: Vec<String> = store
        .keys_in_use()
        .await?
        .into_iter()
        .filter(|(id, _)| !ring.has(id))
        .map(|(id, n)| format!("{id} ({n} tips)"))
        .collect();
    if !missing.is_empty() {
        return Ok(Some(format!(
            "the key file lacks {}, under which data in this database is wrapped. \
             Restore the key file that holds it: without it those tips cannot be read.",
            missing.join(", ")
        )));
    }
    let current = ring.current_id();
    if store.keys_retired().await?.contains(&current) {
        return Ok(Some(format!(
            "the current key {current} was retired: it must not wrap new tips. \
             Use the key file that `tinbao keys retire` left."
        )));
    }
    Ok(None)
}

/// [`open_keys`] without the check of the KEKs the data uses (for `tinbao keys status`,
/// which shows what is missing rather than refusing).
pub async fn load_keys(config: &Config, store: &Store) -> anyhow::Result<KeyRing> {
    let checks = store.key_checks().await?;
    let path = config.key_file();
    let ring = if let Ok(text) = std::env::var("TINBAO_KEYS") {
        KeyRing::from_toml(&text).context("TINBAO_KEYS holds a malformed key file")?
    } else if path.exists() {
        KeyRing::load(&path)?
    } else if checks.is_empty() {
        let ring = KeyRing::generate();
        ring.save(&path)?;
        tracing::info!(path = %path.display(), "created a new key file (mode 0600): back it up");
        ring
    } else {
        bail!(
            "the key file {} is missing, but this database holds data sealed under keys {}. \
             Restore the key file (or set TINBAO_KEYS); without it no tip can be read.",
            path.display(),
            checks
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    for (key_id, check) in &checks {
        if !ring.has(key_id) {
            bail!(
                "key {key_id} is missing from the key file, but data in this database is sealed \
                 under it. Restore the key file that holds {key_id}."
            );
        }
        if !ring.verify_key_check(key_id, check) {
            bail!(
                "key {key_id} in the key file is not the key this database was sealed with. \
                 Refusing to start: check TINBAO_KEY_FILE / TINBAO_KEYS."
            );
        }
    }
    match store.meta("mac_check").await? {
        Some(stored) if stored != ring.mac_check() => bail!(
            "the MAC key in the key file is not the one this database uses for receipts. \
             Refusing to start: check TINBAO_KEY_FILE / TINBAO_KEYS."
        ),
        Some(_) => {}
        None => store.set_meta("mac_check", &ring.mac_check()).await?,
    }
    for id in ring.ids() {
        if !checks.iter().any(|(k, _)| *k == id) {
            let check = ring.key_check(&id).expect("key in ring");
            store.add_key_check(&id, &check, now_ms()).await?;
        }
    }
    Ok(ring)
}

/// The key file a process reads, unless the keys come from `TINBAO_KEYS`.
pub fn key_file_of(config: &Config) -> Option<std::path::PathBuf> {
    std::env::var_os("TINBAO_KEYS")
        .is_none()
        .then(|| config.key_file())
}

/// How often a serving process looks at its key file.
const KEY_FILE_POLL: Duration = Duration::from_secs(1);
/// How often a serving process writes its heartbeat row.
pub const KEY_HEARTBEAT: Duration = Duration::from_secs(5);
/// A heartbeat row older than this belongs to a process that is gone (three beats).
pub const KEY_HOLDER_GONE_AFTER_MS: i64 = 15_000;
/// Rows of processes gone this long are deleted by any serving process.
const KEY_HOLDER_FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Keeps a serving process's key ring in step with its key file and tells the database
/// what the process holds. The key file is read every second (a few hundred bytes) and
/// on SIGHUP; a new text is parsed and checked before anything changes: a malformed file,
/// another MAC key, other bytes under a known id, a KEK that does not match its check in
/// the database, or a file that drops a KEK stored data still uses is refused with a log
/// line, and the ring in force stays as it was.
struct KeyWatch {
    store: Store,
    keys: Arc<KeyRing>,
    /// `None` when the keys come from `TINBAO_KEYS` (nothing to watch).
    path: Option<std::path::PathBuf>,
    /// The last text read, so an unchanged file costs one read and no parse.
    last_text: Option<Vec<u8>>,
    row: crate::store::KeyHolderRow,
}

impl KeyWatch {
    fn new(config: &Config, store: Store, keys: Arc<KeyRing>) -> KeyWatch {
        let path = if std::env::var_os("TINBAO_KEYS").is_some() {
            None
        } else {
            Some(config.key_file())
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        let now = now_ms();
        let row = crate::store::KeyHolderRow {
            process_id: uuid::Uuid::new_v4().simple().to_string(),
            label: format!("{host} pid {}", std::process::id()),
            current_key: keys.current_id(),
            known_keys: String::new(),
            wrapping_keys: String::new(),
            switched_at: now,
            started_at: now,
            heartbeat_at: now,
        };
        KeyWatch {
            store,
            keys,
            path,
            last_text: None,
            row,
        }
    }

    /// Writes this process's row: current KEK, every KEK held, KEKs with writes in flight.
    async fn beat(&mut self) {
        let current = self.keys.current_id();
        if current != self.row.current_key {
            self.row.current_key = current;
            self.row.switched_at = now_ms();
        }
        self.row.known_keys = self.keys.ids().join(",");
        self.row.wrapping_keys = self.keys.wrapping_ids().join(",");
        self.row.heartbeat_at = now_ms();
        if let Err(e) = self.store.keys_heartbeat(&self.row).await {
            tracing::warn!(error = %e, "cannot record this process's keys in the database");
        }
        let _ = self
            .store
            .keys_forget_holders_before(now_ms() - KEY_HOLDER_FORGET_AFTER_MS)
            .await;
    }

    /// Reads the key file and takes its keys if it changed and passes every check.
    async fn poll(&mut self, forced: bool) {
        let Some(path) = self.path.clone() else {
            if forced {
                tracing::info!("the keys come from TINBAO_KEYS: nothing to reload");
            }
            return;
        };
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) => {
                if forced || self.last_text.is_some() {
                    tracing::error!(path = %path.display(), error = %e,
                        "cannot read the key file: keeping the keys in force");
                }
                self.last_text = None;
                return;
            }
        };
        if !forced && self.last_text.as_deref() == Some(text.as_slice()) {
            return;
        }
        self.last_text = Some(text.clone());
        match self.reload(&text).await {
            Ok(Some(change)) => {
                tracing::info!(
                    current = %change.current, previous = %change.previous,
                    added = %change.added.join(","), removed = %change.removed.join(","),
                    "key file reloaded"
                );
                // Tell the key commands at once, not at the next beat.
                self.beat().await;
            }
            Ok(None) => {
                if forced {
                    tracing::info!("key file unchanged");
                }
            }
            Err(why) => tracing::error!(
                path = %path.display(), current = %self.keys.current_id(),
                "key file refused, the keys in force stay: {why}"
            ),
        }
    }

    async fn reload(&self, text: &[u8]) -> Result<Option<crate::crypto::KeyChange>, String> {
        let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8".to_owned())?;
        let newer = KeyRing::from_toml(text).map_err(|e| e.to_string())?;
        if !self.keys.same_mac_key(&newer) {
            return Err("its MAC key is not the one in force".into());
        }
        let db = |e: crate::store::StoreError| format!("cannot check it against the database: {e}");
        for (id, check) in self.store.key_checks().await.map_err(db)? {
            if newer.has(&id) && !newer.verify_key_check(&id, &check) {
                return Err(format!("its key {id} is not the {id} this database uses"));
            }
        }
        if let Some(problem) = keys_problem(&newer, &self.store)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(problem);
        }
        let live_cutoff = now_ms() - KEY_HOLDER_GONE_AFTER_MS;
        for h in self.store.keys_holders().await.map_err(db)? {
            if h.heartbeat_at >= live_cutoff && !newer.has(&h.current_key) {
                return Err(format!(
                    "it drops {}, the current key of running process {}",
                    h.current_key, h.label
                ));
            }
        }
        let change = self.keys.reload_from(&newer).map_err(|e| e.to_string())?;
        if let Some(c) = &change {
            for id in &c.added {
                if let Some(check) = self.keys.key_check(id) {
                    self.store
                        .add_key_check(id, &check, now_ms())
                        .await
                        .map_err(db)?;
                }
            }
        }
        Ok(change)
    }

    /// Watches until the process stops: the file every second, SIGHUP, the heartbeat.
    fn spawn(mut self) -> (tokio::task::JoinHandle<()>, Store, String) {
        let (store, id) = (self.store.clone(), self.row.process_id.clone());
        let task = tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut poll = tokio::time::interval(KEY_FILE_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut beat = tokio::time::interval(KEY_HEARTBEAT);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = poll.tick() => self.poll(false).await,
                    _ = beat.tick() => self.beat().await,
                    _ = hangup => {
                        tracing::info!("SIGHUP: reading the key file again");
                        self.poll(true).await;
                    }
                }
            }
        });
        (task, store, id)
    }
}

/// A built application, bound to its listener and ready to serve.
pub struct Application {
    listener: std::net::TcpListener,
    /// `/metrics` on an address of its own (`metrics_listen`), unless turned off.
    metrics_listener: Option<std::net::TcpListener>,
    state: AppState,
    outbox: Outbox,
    keys: KeyWatch,
}

impl Application {
    /// Opens everything the configuration names and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with(config, Vec::new()).await
    }

    /// As [`Application::build`], with more providers than the configuration names
    /// (each replaces a configured one of the same transport): a provider defined
    /// outside tinbao, or a test's fake.
    pub async fn build_with(
        config: Config,
        extra_providers: Vec<Arc<dyn Provider>>,
    ) -> anyhow::Result<Application> {
        let store = open_store_with(&config, Checkpoints::Background).await?;
        let communes = store
            .ensure_admin_units(&shipped_units())
            .await
            .context("cannot load the administrative units")?;
        tracing::debug!(communes, "administrative units ready");
        let keys = Arc::new(open_keys(&config, &store).await?);
        crate::broadcast::rekey_subscribers(&store, &keys)
            .await
            .context("cannot re-key the subscribers' pseudonyms")?;
        let key_watch = KeyWatch::new(&config, store.clone(), keys.clone());
        let geo = Arc::new(Geo::load(&store).await?);
        // SQLite has one writer. On PostgreSQL a tip writer for every two cores: on 2
        // cores one writer (bigger batches, one pipeline) took 15,900–16,700 tips/s at 64
        // connections and 23,200 at 256, four took 13,700–14,700 and 21,800–22,100,
        // eight 11,700–13,200 and 17,100 (issue 15).
        let workers = match store.engine() {
            Engine::Sqlite => 1,
            Engine::Postgres => {
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
            }
        };
        let writer = TipWriter::spawn(store.clone(), workers);
        let audit = crate::audit::AuditLog::spawn(store.clone());
        let intake = Intake::new(store.clone(), writer, keys.clone(), geo, config.sla.clone());
        let bot = crate::dialog::bot::Bot::shipped()?;
        let mut providers = Providers::from_config(&config, &store, &keys)?;
        for p in extra_providers {
            providers.add_shared(p);
        }
        let listener = std::net::TcpListener::bind(&config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let metrics_listener = match config.metrics_listener() {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).with_context(|| {
                    format!(
                        "cannot listen on {addr} for /metrics (metrics_listen; `off` turns it off)"
                    )
                })?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        crate::intake::photo::set_decoders(config.photo_decoders);
        // Officers' email alerts (src/alerts.rs): urgent tips and the SLA clock,
        // started last so that a failed build leaves no job behind.
        if config.smtp.enabled {
            let mailer = crate::channels::email::Mailer::new(&config.smtp)?;
            crate::alerts::spawn(&intake, intake.store().clone(), mailer.clone(), &config);
            if config.reports.monthly_email {
                crate::reports::mail::spawn(
                    intake.store().clone(),
                    intake.shared_geo(),
                    mailer,
                    std::time::Duration::from_secs(config.sla_clock_seconds.max(1)),
                );
            }
        }
        // Chat and SMS: the inbox processor, the outbox dispatcher, Telegram polling.
        let outbox = Outbox::new(store.clone(), keys.clone());
        let photos = Arc::new(providers.clone());
        let chat = crate::dialog::Chat::new(
            intake.clone(),
            bot,
            outbox.clone(),
            Some(photos),
            config.sms.numbers.clone(),
        );
        chat.spawn_processor();
        let broadcasts = crate::broadcast::Broadcasts::new(
            store.clone(),
            keys.clone(),
            &config.broadcast,
            &config.public_url,
            outbox.wake_signal(),
        );
        broadcasts.spawn_runner();
        chat.attach_broadcasts(broadcasts.clone());
        let limits = Arc::new(Limits::new(&config.rate_limit));
        chat.attach_sender_limit(limits.clone());
        // Broadcast fan-out hands the outbox rows; the broadcasts compose their messages.
        outbox.spawn_dispatcher(providers, Some(Arc::new(broadcasts.clone())), &config);
        crate::dialog::telegram_poll::spawn_webhook_registration(&config)?;
        crate::dialog::telegram_poll::spawn_poller(&config, chat.clone(), store.clone())?;
        let upload_places = match config.photo_uploads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            n => n,
        };
        let state = AppState::new(crate::state::Shared {
            chat,
            broadcasts,
            limits,
            config: Arc::new(config),
            logins: crate::accounts::Logins::new(store.clone(), keys),
            store,
            intake,
            audit,
            metrics: crate::state::metrics_handle(),
            console_cache: Arc::new(ConsoleCaches::default()),
            submissions: Arc::default(),
            villages: Arc::new(crate::state::TtlCache::new(std::time::Duration::from_secs(
                60,
            ))),
            uploads: tokio::sync::Semaphore::new(upload_places),
        });
        Ok(Application {
            listener,
            metrics_listener,
            state,
            outbox,
            keys: key_watch,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Where `/metrics` is served, when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state (tests reach the intake service through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The outbox: messages queued here go out through the providers.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Serves until `shutdown` completes, then drains connections.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        // This process's keys are in the database before it takes its first tip, and the
        // key file is watched from now on.
        let mut keys = self.keys;
        keys.poll(false).await;
        keys.beat().await;
        let (key_task, key_store, process_id) = keys.spawn();
        housekeeping::spawn(state.store.clone());
        crate::retention::spawn(
            state.store.clone(),
            state.config.retention.clone(),
            key_file_of(&state.config),
            housekeeping::EVERY,
        );
        let limits = state.limits.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                limits.shrink();
            }
        });
        let routes = crate::web::router().merge(crate::console::router(state.clone()));
        let router = crate::web::finish(routes, state.clone());
        let config = state.config.clone();
        let limits = serve::ConnLimits::from_config(&config);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key).await?),
            _ => None,
        };
        // One shutdown signal for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics_task = self.metrics_listener.map(|listener| {
            let router = crate::web::metrics_router(state.clone());
            let limits = serve::ConnLimits {
                max_connections: 64,
                ..limits
            };
            let mut stopped = stopped.clone();
            tokio::spawn(serve::serve(listener, router, None, limits, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let mut stopped_main = stopped;
        serve::serve(self.listener, router, tls, limits, async move {
            let _ = stopped_main.wait_for(|s| *s).await;
        })
        .await?;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        key_task.abort();
        let _ = key_task.await;
        if let Err(e) = key_store.keys_forget_holder(&process_id).await {
            tracing::warn!(error = %e, "cannot remove this process's key row");
        }
        state.intake.store().close().await;
        Ok(())
    }
}
