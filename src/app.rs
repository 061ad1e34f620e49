//! Wiring: opening the database and the keys, building the router, serving HTTP or HTTPS.

use crate::channels::Provider;
use crate::clock::now_ms;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::delivery::{Outbox, Providers};
use crate::geo::{shipped_units, Geo};
use crate::intake::Intake;
use crate::state::{AppState, ConsoleCaches, Limits};
use crate::store::{Engine, Store, TipWriter};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::Arc;

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
    let url = config.database_url();
    // The data folder holds the SQLite files and the key file: the service's user only.
    let key_file_here = config.key_file.is_none() && std::env::var_os("TINBAO_KEYS").is_none();
    if url.starts_with("sqlite:") || key_file_here {
        private_dir(&config.data_dir)?;
    }
    let store = Store::connect(&url, config.db_pool_size).await?;
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

/// Loads the key ring and proves it is the one the database was sealed with. On the very
/// first start (no key file, nothing sealed yet) it creates the key file.
pub async fn open_keys(config: &Config, store: &Store) -> anyhow::Result<KeyRing> {
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
        if !ring.ids().any(|id| id == key_id) {
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
        if !checks.iter().any(|(k, _)| k == id) {
            let check = ring.key_check(id).expect("key in ring");
            store.add_key_check(id, &check, now_ms()).await?;
        }
    }
    Ok(ring)
}

/// A built application, bound to its listener and ready to serve.
pub struct Application {
    listener: std::net::TcpListener,
    /// `/metrics` on an address of its own (`metrics_listen`), unless turned off.
    metrics_listener: Option<std::net::TcpListener>,
    state: AppState,
    outbox: Outbox,
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
        let store = open_store(&config).await?;
        let communes = store
            .ensure_admin_units(&shipped_units())
            .await
            .context("cannot load the administrative units")?;
        tracing::debug!(communes, "administrative units ready");
        let keys = Arc::new(open_keys(&config, &store).await?);
        crate::broadcast::rekey_subscribers(&store, &keys)
            .await
            .context("cannot re-key the subscribers' pseudonyms")?;
        let geo = Arc::new(Geo::load(&store).await?);
        let workers = match store.engine() {
            Engine::Sqlite => 1,
            Engine::Postgres => 4,
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
            crate::alerts::spawn(&intake, intake.store().clone(), mailer, &config);
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
        let state = AppState {
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
        };
        Ok(Application {
            listener,
            metrics_listener,
            state,
            outbox,
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
        state.intake.store().close().await;
        Ok(())
    }
}
