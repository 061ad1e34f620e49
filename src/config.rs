//! One typed configuration: defaults, then an optional `tinbao.toml`, then `TINBAO_*`
//! environment variables (nested keys with `__`, e.g. `TINBAO_RATE_LIMIT__ENABLED=false`).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on, `127.0.0.1:8080` by default.
    pub listen: String,
    /// Folder for the SQLite database and the key file.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; SQLite under `data_dir` when unset.
    pub database_url: Option<String>,
    /// Key file; `data_dir/keys.toml` when unset. `TINBAO_KEYS` (the file's contents) wins.
    pub key_file: Option<PathBuf>,
    /// PEM certificate chain: with `tls_key`, the server speaks HTTPS itself.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Use the last `X-Forwarded-For` hop as the client address (behind a reverse proxy).
    pub trust_forwarded_for: bool,
    /// Largest request body in bytes (photos included).
    pub max_body_bytes: usize,
    /// Connections in the database pool.
    pub db_pool_size: u32,
    /// A receipt check always takes at least this long, so a wrong receipt and a right one
    /// cannot be told apart by timing.
    pub status_floor_ms: u64,
    pub rate_limit: RateLimitConfig,
    pub sla: SlaConfig,
    /// The outgoing mail server for officers' alerts.
    pub smtp: SmtpConfig,
    /// The address officers reach the server at, for links in alerts (no trailing slash
    /// needed), `http://127.0.0.1:8080` by default.
    pub public_url: String,
    /// How often, in seconds, the SLA clock looks for tips past their deadline.
    pub sla_clock_seconds: u64,
}

/// In-memory abuse limits, keyed by a daily-keyed hash of the client address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Tips (and replies) a client may submit per hour, and at once.
    pub submit_per_hour: u32,
    pub submit_burst: u32,
    /// Receipt checks a client may make per hour, and at once.
    pub check_per_hour: u32,
    pub check_burst: u32,
}

/// How the outgoing mail server is reached. Alerts name no tip content, but the server
/// still learns who the officers are, so prefer `starttls` or `tls` off the machine.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// Send alerts at all; off by default, so a server without mail still runs.
    pub enabled: bool,
    /// Mail server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Mail server port: 25 by default; usually 587 with `starttls`, 465 with `tls`.
    pub port: u16,
    /// `none` (plain, for a relay on the same machine), `starttls` (required, never
    /// downgraded) or `tls` (TLS from the first byte).
    pub security: SmtpSecurity,
    /// Login for the mail server, with `password`; none by default.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// The sender, `tinbao <noreply@localhost>` by default.
    pub from: String,
}

/// Transport security towards the mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP.
    None,
    /// Plain SMTP upgraded with STARTTLS; the message is not sent when the upgrade fails.
    Starttls,
    /// SMTP inside TLS from the start (SMTPS).
    Tls,
}

/// Response deadlines per priority, in minutes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaConfig {
    pub urgent_minutes: i64,
    pub high_minutes: i64,
    pub normal_minutes: i64,
    pub low_minutes: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("var"),
            database_url: None,
            key_file: None,
            tls_cert: None,
            tls_key: None,
            trust_forwarded_for: false,
            max_body_bytes: 60 * 1024 * 1024,
            db_pool_size: 8,
            status_floor_ms: 250,
            rate_limit: RateLimitConfig::default(),
            sla: SlaConfig::default(),
            smtp: SmtpConfig::default(),
            public_url: "http://127.0.0.1:8080".into(),
            sla_clock_seconds: 60,
        }
    }
}

// By hand, so that printing the configuration never shows the SMTP password.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "tinbao <noreply@localhost>".into(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            submit_per_hour: 30,
            submit_burst: 10,
            check_per_hour: 60,
            check_burst: 10,
        }
    }
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            urgent_minutes: 60,
            high_minutes: 4 * 60,
            normal_minutes: 24 * 60,
            low_minutes: 3 * 24 * 60,
        }
    }
}

impl Config {
    /// Reads `TINBAO_CONFIG` (or `./tinbao.toml` when present) and the environment.
    pub fn load() -> anyhow::Result<Config> {
        let file = std::env::var_os("TINBAO_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tinbao.toml"));
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(
                Env::prefixed("TINBAO_")
                    .split("__")
                    .ignore(&["config", "keys", "log"]),
            );
        figment
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration error: {e}"))
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tinbao.db").display()))
    }

    /// The key file in force.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys.toml"))
    }

    /// Whether the server terminates TLS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}
