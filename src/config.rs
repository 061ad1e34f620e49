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
    /// Largest tip form or reply in bytes (photos included): only those two routes take
    /// it; every other route has a small limit.
    pub max_body_bytes: usize,
    /// Largest body of the small forms (receipt check, login, subscribe, console forms).
    pub max_form_bytes: usize,
    /// Largest JSON body of `POST /api/v1/tips` (photos as base64 included); never above
    /// `max_body_bytes`.
    pub max_api_body_bytes: usize,
    /// Photos decoded at once in this process (0: the number of cores).
    pub photo_decoders: usize,
    /// `/metrics` is served only here (`host:port`), never on `listen`; `off` turns this
    /// listener off (then `/metrics` is served on `listen` only when `metrics_token` is set).
    pub metrics_listen: String,
    /// When set, `/metrics` answers only with `Authorization: Bearer <token>`.
    pub metrics_token: String,
    /// Seconds a client has to send a request's headers (and, with TLS, its handshake).
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's body.
    pub body_timeout_seconds: u64,
    /// Seconds a connection may wait idle for its next request.
    pub idle_timeout_seconds: u64,
    /// Open connections at most; at the cap an idle one is closed for a newcomer, or the
    /// newcomer is refused. Keep it below the process's open-file limit.
    pub max_connections: usize,
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
    /// The Telegram bot.
    pub telegram: TelegramConfig,
    /// The Zalo Official Account.
    pub zalo: ZaloConfig,
    /// SMS gateways (Twilio, Android SMS Gateway) and gateway numbers bound to communes.
    pub sms: SmsConfig,
    /// The durable outbox of outgoing chat and SMS messages.
    pub outbox: OutboxConfig,
    /// Campaign broadcasts: quiet hours, email to subscribers, fan-out.
    pub broadcast: BroadcastConfig,
}

/// Campaign broadcasts of village heads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BroadcastConfig {
    /// No bulk SMS from this local time (Asia/Ho_Chi_Minh, `HH:MM`)…
    pub quiet_start: String,
    /// …until this one; `21:00`–`07:00` by default. Equal times turn quiet hours off.
    pub quiet_end: String,
    /// Emails to subscribers per second through `smtp` (0: no limit).
    pub email_rate_per_second: u32,
    /// Subscribers written to the outbox per transaction when a broadcast fans out.
    pub fanout_chunk: i64,
    /// The SMS number residents text `DK <village>` to, shown on posters.
    pub sms_number: String,
    /// The Telegram bot's user name (without `@`), for the poster's link.
    pub telegram_bot: String,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            quiet_start: "21:00".into(),
            quiet_end: "07:00".into(),
            email_rate_per_second: 10,
            fanout_chunk: 20_000,
            sms_number: String::new(),
            telegram_bot: String::new(),
        }
    }
}

/// The Telegram bot (Bot API through teloxide, over rustls).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelegramConfig {
    pub enabled: bool,
    /// The bot token from @BotFather.
    pub token: String,
    /// The Bot API base URL, `https://api.telegram.org` by default.
    pub api_url: String,
    /// `polling` (default; works behind NAT) or `webhook` (`POST /hooks/telegram`).
    pub mode: TelegramMode,
    /// In webhook mode, the secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token`.
    pub webhook_secret: String,
    /// Long-polling timeout in seconds.
    pub poll_timeout_seconds: u32,
    /// Messages per second to all chats (Telegram allows about 30).
    pub rate_per_second: u32,
}

/// How Telegram updates reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    Polling,
    Webhook,
}

/// The Zalo Official Account: webhook `POST /hooks/zalo`, sending through the OA API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ZaloConfig {
    pub enabled: bool,
    /// The Zalo app id (part of every event signature).
    pub app_id: String,
    /// The OA secret key that signs webhook events (`X-ZEvent-Signature`).
    pub oa_secret_key: String,
    /// The app's secret key, sent when refreshing the access token.
    pub app_secret_key: String,
    /// The first access and refresh tokens; later ones are kept sealed in the database.
    pub access_token: String,
    pub refresh_token: String,
    /// The OA API base URL, `https://openapi.zalo.me` by default.
    pub api_url: String,
    /// The OAuth base URL, `https://oauth.zaloapp.com` by default.
    pub oauth_url: String,
    /// Events whose timestamp is older (or further in the future) than this are refused.
    pub max_age_seconds: i64,
    /// Messages per second through the OA API.
    pub rate_per_second: u32,
}

/// SMS gateways.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SmsConfig {
    pub twilio: TwilioConfig,
    pub android: AndroidSmsConfig,
    /// Send SMS without Vietnamese diacritics (GSM 7-bit: 160 characters a segment
    /// instead of 70).
    pub strip_diacritics: bool,
    /// Gateway numbers bound to a commune: tips texted to that number go to its queue.
    pub numbers: Vec<SmsNumber>,
}

/// A gateway number bound to a commune.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmsNumber {
    /// The number residents text, as the gateway reports it (e.g. `+84912345678`).
    pub number: String,
    /// The commune code its tips go to.
    pub commune: i64,
}

/// Twilio's Programmable Messaging.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TwilioConfig {
    pub enabled: bool,
    pub account_sid: String,
    /// Signs webhooks (`X-Twilio-Signature`) and authenticates sending.
    pub auth_token: String,
    /// The sending number.
    pub from: String,
    /// `https://api.twilio.com` by default.
    pub api_url: String,
    /// Messages per second through this gateway.
    pub rate_per_second: u32,
}

/// The Android SMS Gateway app (sms-gate.app), local or cloud server.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AndroidSmsConfig {
    pub enabled: bool,
    /// The gateway's API base URL, `https://api.sms-gate.app` by default.
    pub api_url: String,
    pub username: String,
    pub password: String,
    /// The webhook signing key (`X-Signature`).
    pub webhook_secret: String,
    /// Replay window for `X-Timestamp`, 300 seconds by default.
    pub max_age_seconds: i64,
    /// Messages per second through this gateway.
    pub rate_per_second: u32,
}

/// The durable outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles each attempt.
    pub backoff_ms: u64,
    /// Longest retry delay in seconds.
    pub max_backoff_seconds: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_attempts: 8,
            backoff_ms: 1000,
            max_backoff_seconds: 600,
        }
    }
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            enabled: false,
            token: String::new(),
            api_url: "https://api.telegram.org".into(),
            mode: TelegramMode::Polling,
            webhook_secret: String::new(),
            poll_timeout_seconds: 25,
            rate_per_second: 30,
        }
    }
}

impl Default for ZaloConfig {
    fn default() -> Self {
        ZaloConfig {
            enabled: false,
            app_id: String::new(),
            oa_secret_key: String::new(),
            app_secret_key: String::new(),
            access_token: String::new(),
            refresh_token: String::new(),
            api_url: "https://openapi.zalo.me".into(),
            oauth_url: "https://oauth.zaloapp.com".into(),
            max_age_seconds: 300,
            rate_per_second: 50,
        }
    }
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            enabled: false,
            account_sid: String::new(),
            auth_token: String::new(),
            from: String::new(),
            api_url: "https://api.twilio.com".into(),
            rate_per_second: 10,
        }
    }
}

impl Default for AndroidSmsConfig {
    fn default() -> Self {
        AndroidSmsConfig {
            enabled: false,
            api_url: "https://api.sms-gate.app".into(),
            username: String::new(),
            password: String::new(),
            webhook_secret: String::new(),
            max_age_seconds: 300,
            rate_per_second: 1,
        }
    }
}

/// Secrets print as `<redacted>` when set.
fn redact(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("enabled", &self.enabled)
            .field("token", &redact(&self.token))
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .field("webhook_secret", &redact(&self.webhook_secret))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ZaloConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZaloConfig")
            .field("enabled", &self.enabled)
            .field("app_id", &self.app_id)
            .field("oa_secret_key", &redact(&self.oa_secret_key))
            .field("app_secret_key", &redact(&self.app_secret_key))
            .field("api_url", &self.api_url)
            .field("oauth_url", &self.oauth_url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsConfig")
            .field("twilio.enabled", &self.twilio.enabled)
            .field("twilio.api_url", &self.twilio.api_url)
            .field("twilio.auth_token", &redact(&self.twilio.auth_token))
            .field("android.enabled", &self.android.enabled)
            .field("android.api_url", &self.android.api_url)
            .field("android.password", &redact(&self.android.password))
            .field(
                "android.webhook_secret",
                &redact(&self.android.webhook_secret),
            )
            .field("strip_diacritics", &self.strip_diacritics)
            .field("numbers", &self.numbers)
            .finish()
    }
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
            max_form_bytes: 16 * 1024,
            max_api_body_bytes: 8 * 1024 * 1024,
            photo_decoders: 0,
            metrics_listen: "127.0.0.1:9464".into(),
            metrics_token: String::new(),
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            max_connections: 1000,
            db_pool_size: 8,
            status_floor_ms: 250,
            rate_limit: RateLimitConfig::default(),
            sla: SlaConfig::default(),
            smtp: SmtpConfig::default(),
            public_url: "http://127.0.0.1:8080".into(),
            sla_clock_seconds: 60,
            telegram: TelegramConfig::default(),
            zalo: ZaloConfig::default(),
            sms: SmsConfig::default(),
            outbox: OutboxConfig::default(),
            broadcast: BroadcastConfig::default(),
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

    /// Whether `/metrics` has a listener of its own.
    pub fn metrics_listener(&self) -> Option<&str> {
        let l = self.metrics_listen.trim();
        (!l.is_empty() && !l.eq_ignore_ascii_case("off")).then_some(l)
    }

    /// Whether the server terminates TLS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}
