//! One typed configuration: defaults, then an optional `tinbao.toml`, then `TINBAO_*`
//! environment variables (nested keys with `__`, e.g. `TINBAO_RATE_LIMIT__ENABLED=false`).

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
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
    /// Behind a reverse proxy that is the one way in: use the last `X-Forwarded-For` hop as
    /// the client address (rate limits only), and take `X-Forwarded-Proto: https` as HTTPS
    /// (`Secure` cookies, HSTS). Both headers are ignored otherwise.
    pub trust_forwarded_for: bool,
    /// Largest tip form or reply in bytes (photos included): only those two routes take
    /// it; every other route has a small limit.
    pub max_body_bytes: usize,
    /// Largest body of the small forms (receipt check, login, subscribe, console forms).
    pub max_form_bytes: usize,
    /// Largest JSON body of `POST /api/v1/tips` (photos as base64 included); never above
    /// `max_body_bytes`.
    pub max_api_body_bytes: usize,
    /// Photos decoded at once in this process (0: one less than the cores, at least one).
    pub photo_decoders: usize,
    /// Forms with photos (a body over 1 MiB on `/tips` or `/status/reply`) read and
    /// handled at once in this process (0: the number of cores, at least 2); the others
    /// wait for a place, so the photos in memory stay bounded.
    pub photo_uploads: usize,
    /// How long a form with photos waits for a place before it is answered 503 ("busy,
    /// try again in a minute").
    pub photo_upload_wait_seconds: u64,
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
    /// Reports.
    pub reports: ReportsConfig,
    /// How long a closed tip's content is kept.
    pub retention: RetentionConfig,
}

/// Retention: a closed tip's content (fields, notes, messages, photos) is destroyed this
/// long after it closed, unless held as evidence; a chief may set other periods per
/// category. Its counts stay for the reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Months after closing; 0 keeps content for ever.
    pub months: u32,
    /// The hour (Vietnam time) from which the day's pass runs, in one process of many;
    /// 24 or more: this process runs none.
    pub hour: u32,
    /// Tips destroyed per transaction (short transactions keep intake flowing).
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            months: 12,
            hour: 2,
            batch: 250,
        }
    }
}

/// Reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportsConfig {
    /// Email each commune's chiefs and statistics accounts the past month's workbook from
    /// 07:00 (Vietnam time) on the first of each month (needs `smtp`).
    pub monthly_email: bool,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            monthly_email: true,
        }
    }
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
    /// The Zalo Official Account's name as residents find it in Zalo, for the poster.
    pub zalo_oa_name: String,
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
            zalo_oa_name: String::new(),
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
    /// Receipt checks a client (or a chat/SMS sender) may make per hour, and at once.
    pub check_per_hour: u32,
    pub check_burst: u32,
    /// Console login steps (password or second factor) a client may try per hour, and at
    /// once.
    pub login_per_hour: u32,
    pub login_burst: u32,
    /// Emails a client may make the server send to typed addresses (subscription
    /// confirmations) per hour, and at once.
    pub send_per_hour: u32,
    pub send_burst: u32,
    /// Look-ups of the form's helpers (a commune's village names) a client may make per
    /// hour, and at once.
    pub lookup_per_hour: u32,
    pub lookup_burst: u32,
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
            photo_uploads: 0,
            photo_upload_wait_seconds: 25,
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
            reports: ReportsConfig::default(),
            retention: RetentionConfig::default(),
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
            login_per_hour: 60,
            login_burst: 20,
            send_per_hour: 10,
            send_burst: 5,
            lookup_per_hour: 600,
            lookup_burst: 60,
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
        Config::from_sources(&file, std::env::vars_os())
    }

    /// The configuration from defaults, then the TOML file at `file` when it exists, then
    /// the `TINBAO_*` variables among `vars`.
    ///
    /// Environment values are taken as the text the operator wrote: `+84900000000`, a
    /// Zalo app id of nineteen digits, a bot token or a password of digits stay strings
    /// where the configuration holds strings, and become numbers or booleans only where it
    /// holds numbers or booleans. List keys (`TINBAO_SMS__NUMBERS`) take TOML array syntax.
    pub fn from_sources<I, K, V>(file: &std::path::Path, vars: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let env = EnvText::read(vars)?;
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(env)
            .extract_lossy()
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

/// The `TINBAO_*` environment variables as a configuration source that keeps every value as
/// the text it is (figment's own `Env` guesses types, so `+84900000000` or a long digit id
/// became an integer and was refused where a string is meant). Numbers and booleans are
/// read from that text at extraction (`extract_lossy`), only where the field is one.
struct EnvText {
    dict: Dict,
}

/// Variables that are not configuration keys: the file's path, the key file's contents
/// and the log filter (read elsewhere), and the test suite's own settings.
const NOT_KEYS: &[&str] = &["config", "keys", "log"];

impl EnvText {
    fn read<I, K, V>(vars: I) -> anyhow::Result<EnvText>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let lists = list_keys();
        let mut dict = Dict::new();
        for (name, value) in vars {
            let Some(name) = name.as_ref().to_str() else {
                continue;
            };
            let Some(rest) = name
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("TINBAO_"))
                .map(|_| &name[7..])
            else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if key.is_empty() || NOT_KEYS.contains(&key.as_str()) {
                continue;
            }
            let Some(text) = value.as_ref().to_str() else {
                anyhow::bail!("configuration error: {name} is not valid UTF-8");
            };
            let value = if lists.contains(&key) {
                text.parse::<Value>()
                    .ok()
                    .filter(|v| matches!(v, Value::Array(..)))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "configuration error: {name} is a list: write it as a TOML array, \
                             e.g. [{{number=\"+84912345678\", commune=26734}}]"
                        )
                    })?
            } else {
                Value::from(text.to_owned())
            };
            if let Some(nested) = figment::util::nest(&key, value).into_dict() {
                dict = merge_dicts(dict, nested);
            }
        }
        Ok(EnvText { dict })
    }
}

fn merge_dicts(mut into: Dict, from: Dict) -> Dict {
    for (k, v) in from {
        let merged = match (into.remove(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(tag, b)) => Value::Dict(tag, merge_dicts(a, b)),
            (_, v) => v,
        };
        into.insert(k, merged);
    }
    into
}

/// Every leaf of a configuration value with its dotted key.
fn leaves(value: &Value) -> Vec<(String, &Value)> {
    fn walk<'v>(prefix: &str, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
        match value {
            Value::Dict(_, d) => {
                for (k, v) in d {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// The dotted keys whose value is a list, read off the defaults.
fn list_keys() -> Vec<String> {
    match Value::serialize(Config::default()) {
        Ok(value) => leaves(&value)
            .into_iter()
            .filter(|(_, v)| matches!(v, Value::Array(..)))
            .map(|(k, _)| k)
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        Metadata::named("TINBAO_* environment variable(s)").interpolater(|_, keys| {
            let keys: Vec<_> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("TINBAO_{}", keys.join("__"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value an operator really writes for each key, by dotted key. Digit-only ids and
    /// secrets, `+84…` numbers and leading zeros are here on purpose.
    fn operator_value(key: &str) -> Option<&'static str> {
        Some(match key {
            "listen" => "0.0.0.0:8443",
            "data_dir" => "/var/lib/tinbao",
            "database_url" => "postgres://tinbao@127.0.0.1:5432/tinbao",
            "key_file" => "/etc/tinbao/keys.toml",
            "tls_cert" => "/etc/tinbao/cert.pem",
            "tls_key" => "/etc/tinbao/key.pem",
            "trust_forwarded_for" => "true",
            "max_body_bytes" => "52428800",
            "db_pool_size" => "16",
            "status_floor_ms" => "300",
            "max_form_bytes" => "32768",
            "max_api_body_bytes" => "10485760",
            "photo_decoders" => "2",
            "photo_uploads" => "3",
            "photo_upload_wait_seconds" => "20",
            "metrics_listen" => "127.0.0.1:9464",
            "metrics_token" => "0123456789",
            "header_timeout_seconds" => "15",
            "body_timeout_seconds" => "45",
            "idle_timeout_seconds" => "90",
            "max_connections" => "2000",
            "rate_limit.login_per_hour" => "20",
            "rate_limit.login_burst" => "5",
            "rate_limit.send_per_hour" => "6",
            "rate_limit.send_burst" => "3",
            "rate_limit.lookup_per_hour" => "300",
            "rate_limit.lookup_burst" => "30",
            "rate_limit.enabled" => "false",
            "rate_limit.submit_per_hour" => "20",
            "rate_limit.submit_burst" => "5",
            "rate_limit.check_per_hour" => "40",
            "rate_limit.check_burst" => "8",
            "sla.urgent_minutes" => "30",
            "sla.high_minutes" => "180",
            "sla.normal_minutes" => "1440",
            "sla.low_minutes" => "4320",
            "smtp.enabled" => "true",
            "smtp.host" => "mail.congan.example.vn",
            "smtp.port" => "587",
            "smtp.security" => "starttls",
            "smtp.username" => "0912345678",
            "smtp.password" => "20252025",
            "smtp.from" => "Tin báo xã <noreply@xa.example.vn>",
            "public_url" => "https://tinbao.xa.example.vn",
            "sla_clock_seconds" => "30",
            "telegram.enabled" => "true",
            "telegram.token" => "7412345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "telegram.api_url" => "http://127.0.0.1:8081",
            "telegram.mode" => "webhook",
            "telegram.webhook_secret" => "8472910365",
            "telegram.poll_timeout_seconds" => "20",
            "telegram.rate_per_second" => "25",
            "zalo.enabled" => "true",
            "zalo.app_id" => "4318592736451029384",
            "zalo.oa_secret_key" => "0123456789012345678",
            "zalo.app_secret_key" => "9876543210",
            "zalo.access_token" => "00000123456789",
            "zalo.refresh_token" => "1.5e3",
            "zalo.api_url" => "https://openapi.zalo.me",
            "zalo.oauth_url" => "https://oauth.zaloapp.com",
            "zalo.max_age_seconds" => "600",
            "zalo.rate_per_second" => "40",
            "sms.twilio.enabled" => "1",
            "sms.twilio.account_sid" => "AC0123456789abcdef0123456789abcdef",
            "sms.twilio.auth_token" => "12345678901234567890123456789012",
            "sms.twilio.from" => "+84900000000",
            "sms.twilio.api_url" => "https://api.twilio.com",
            "sms.twilio.rate_per_second" => "5",
            "sms.android.enabled" => "yes",
            "sms.android.api_url" => "http://192.168.1.20:8080",
            "sms.android.username" => "0987654321",
            "sms.android.password" => "123456",
            "sms.android.webhook_secret" => "0042",
            "sms.android.max_age_seconds" => "120",
            "sms.android.rate_per_second" => "2",
            "sms.strip_diacritics" => "on",
            "sms.numbers" => "[{number=\"+84912345678\", commune=26734}]",
            "outbox.max_attempts" => "10",
            "outbox.backoff_ms" => "500",
            "outbox.max_backoff_seconds" => "300",
            "broadcast.quiet_start" => "21:30",
            "broadcast.quiet_end" => "06:00",
            "broadcast.email_rate_per_second" => "5",
            "broadcast.fanout_chunk" => "10000",
            "broadcast.sms_number" => "+84912345678",
            "broadcast.telegram_bot" => "tinbao_xa_bot",
            "broadcast.zalo_oa_name" => "Công an phường Hoàn Kiếm",
            "reports.monthly_email" => "false",
            "retention.months" => "24",
            "retention.hour" => "3",
            "retention.batch" => "1000",
            _ => return None,
        })
    }

    /// Every leaf key of the configuration, dotted, read off a configuration with every
    /// optional value present.
    fn leaf_keys() -> Vec<String> {
        let mut full = Config {
            database_url: Some(String::new()),
            key_file: Some(PathBuf::new()),
            tls_cert: Some(PathBuf::new()),
            tls_key: Some(PathBuf::new()),
            ..Config::default()
        };
        full.smtp.username = Some(String::new());
        full.smtp.password = Some(String::new());
        let value = Value::serialize(full).unwrap();
        leaves(&value).into_iter().map(|(k, _)| k).collect()
    }

    fn env_name(key: &str) -> String {
        format!("TINBAO_{}", key.to_ascii_uppercase().replace('.', "__"))
    }

    fn lookup<'a>(value: &'a Value, key: &str) -> &'a Value {
        key.split('.').fold(value, |v, k| match v {
            Value::Dict(_, d) => d.get(k).unwrap_or_else(|| panic!("{key}: no {k}")),
            other => panic!("{key}: {other:?} is not a table"),
        })
    }

    #[test]
    fn every_key_is_read_from_the_environment_as_operators_write_it() {
        let keys = leaf_keys();
        let missing: Vec<_> = keys
            .iter()
            .filter(|k| operator_value(k).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "give these keys a real-looking value in operator_value: {missing:?}"
        );
        let vars: Vec<(String, String)> = keys
            .iter()
            .map(|k| (env_name(k), operator_value(k).unwrap().to_owned()))
            .chain([("TINBAO_CHROMIUM".into(), "/usr/bin/chromium".into())])
            .collect();
        let config =
            Config::from_sources(std::path::Path::new("/nonexistent/tinbao.toml"), vars).unwrap();
        let read = Value::serialize(&config).unwrap();
        for key in &keys {
            let written = operator_value(key).unwrap();
            let got = lookup(&read, key);
            let same = match got {
                Value::String(_, s) => s == written,
                Value::Bool(_, b) => Some(*b) == Value::from(written).to_bool_lossy(),
                Value::Num(_, n) => {
                    let wrote = Value::from(written).to_num_lossy();
                    n.to_u128_lossy() == wrote.and_then(|w| w.to_u128_lossy())
                }
                Value::Array(..) => key == "sms.numbers",
                other => panic!("{key}: unexpected {other:?}"),
            };
            assert!(same, "{key}: wrote {written:?}, read {got:?}");
        }
        assert_eq!(config.zalo.app_id, "4318592736451029384");
        assert_eq!(config.sms.twilio.from, "+84900000000");
        assert_eq!(config.zalo.refresh_token, "1.5e3");
        assert_eq!(config.sms.android.webhook_secret, "0042");
        assert_eq!(config.sms.numbers.len(), 1);
        assert_eq!(config.sms.numbers[0].number, "+84912345678");
        assert_eq!(config.sms.numbers[0].commune, 26734);
        assert_eq!(config.telegram.mode, TelegramMode::Webhook);
        assert_eq!(config.smtp.security, SmtpSecurity::Starttls);
        assert!(config.sms.twilio.enabled && config.sms.android.enabled);
    }

    #[test]
    fn the_file_then_the_environment_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tinbao.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:80\"\n[zalo]\napp_id = \"111\"\nenabled = true\n",
        )
        .unwrap();
        let none: [(&str, &str); 0] = [];
        let c = Config::from_sources(&file, none).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.zalo.app_id.as_str()),
            ("0.0.0.0:80", "111")
        );
        assert!(c.zalo.enabled);
        let c = Config::from_sources(&file, [("TINBAO_ZALO__APP_ID", "0222")]).unwrap();
        assert_eq!(
            c.zalo.app_id, "0222",
            "the environment wins, leading zero kept"
        );
        assert!(
            c.zalo.enabled,
            "a nested key set elsewhere in the file stays"
        );
        let err = Config::from_sources(&file, [("TINBAO_DB_POOL_SIZE", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DB_POOL_SIZE"), "{err}");
        let err = Config::from_sources(&file, [("TINBAO_SMS__NUMBERS", "+84912345678")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOML array"), "{err}");
    }
}
