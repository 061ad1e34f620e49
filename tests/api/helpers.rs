//! Test support: the real application on a random port, against a fresh SQLite file or a
//! fresh PostgreSQL database, and the real binary as a child process.

#![allow(dead_code)]

use sqlx::Connection;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tinbao::{AppState, Application, Config};
use tokio::sync::oneshot;

/// The engines every feature is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Whether the PostgreSQL case of `test` runs: when `TEST_DATABASE_URL` is set. Under CI
/// (`CI` set) a missing URL fails the test, so PostgreSQL is never silently untested;
/// elsewhere the case is skipped with a note.
pub fn postgres_enabled(test: &str) -> bool {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        true
    } else if std::env::var_os("CI").is_some() {
        panic!("CI must set TEST_DATABASE_URL so that PostgreSQL is tested too");
    } else {
        eprintln!("note: TEST_DATABASE_URL unset, skipping {test}");
        false
    }
}

/// Makes the `async fn NAME(engine: Engine)` written just below it two test cases,
/// `NAME::sqlite` and `NAME::postgres`, each on its own runtime, so one engine's failure
/// never hides the other's result. The body is compiled once; the cases only call it.
/// Arguments after the name go to `#[tokio::test(...)]`. The PostgreSQL case follows
/// [`postgres_enabled`].
///
/// ```ignore
/// engine_test!(receipts_survive_a_restart);
/// /// What the test checks, as usual.
/// async fn receipts_survive_a_restart(engine: Engine) { ... }
///
/// engine_test!(fan_out_keeps_the_rate, flavor = "multi_thread", worker_threads = 2);
/// async fn fan_out_keeps_the_rate(engine: Engine) { ... }
/// ```
macro_rules! engine_test {
    ($name:ident) => {
        $crate::helpers::engine_test!(@cases $name, [::tokio::test]);
    };
    ($name:ident, $($tokio:tt)+) => {
        $crate::helpers::engine_test!(@cases $name, [::tokio::test($($tokio)+)]);
    };
    (@cases $name:ident, [$($attr:tt)+]) => {
        mod $name {
            #[$($attr)+]
            async fn sqlite() {
                super::$name($crate::helpers::Engine::Sqlite).await;
            }

            #[$($attr)+]
            async fn postgres() {
                if $crate::helpers::postgres_enabled(concat!(module_path!(), "::postgres")) {
                    super::$name($crate::helpers::Engine::Postgres).await;
                }
            }
        }
    };
}
pub(crate) use engine_test;

/// Makes the `async fn NAME()` written just below it one test case, `NAME::postgres`, for
/// what only PostgreSQL has (several processes on one database, advisory locks). It runs
/// as [`postgres_enabled`] says; arguments after the name go to `#[tokio::test(...)]`.
///
/// ```ignore
/// postgres_test!(two_servers_share_the_outbox);
/// async fn two_servers_share_the_outbox() { ... }
/// ```
macro_rules! postgres_test {
    ($name:ident) => {
        $crate::helpers::postgres_test!(@case $name, [::tokio::test]);
    };
    ($name:ident, $($tokio:tt)+) => {
        $crate::helpers::postgres_test!(@case $name, [::tokio::test($($tokio)+)]);
    };
    (@case $name:ident, [$($attr:tt)+]) => {
        mod $name {
            #[$($attr)+]
            async fn postgres() {
                if $crate::helpers::postgres_enabled(concat!(module_path!(), "::postgres")) {
                    super::$name().await;
                }
            }
        }
    };
}
pub(crate) use postgres_test;

/// A fresh PostgreSQL database, dropped (with any connection still open to it) when this
/// handle is dropped, so a test that panics leaves nothing behind. [`PgDb::keep`] leaves
/// the database in place.
pub struct PgDb {
    pub url: String,
    name: String,
    admin: String,
    /// Whether dropping the handle drops the database.
    owned: bool,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
        let name = format!("tinbao_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.split('?').next().unwrap();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        PgDb {
            url,
            name,
            admin,
            owned: true,
        }
    }

    /// A fresh database when the engine is PostgreSQL.
    pub async fn for_engine(engine: Engine) -> Option<PgDb> {
        match engine {
            Engine::Postgres => Some(PgDb::create().await),
            Engine::Sqlite => None,
        }
    }

    /// The environment pointing a `tinbao` process at this database (none for SQLite).
    pub fn env(pg: &Option<PgDb>) -> Vec<(&'static str, &str)> {
        pg.iter()
            .map(|pg| ("TINBAO_DATABASE_URL", pg.url.as_str()))
            .collect()
    }

    /// Lets go of the handle without dropping the database.
    pub fn keep(mut self) {
        self.owned = false;
    }
}

impl Drop for PgDb {
    /// `DROP DATABASE ... WITH (FORCE)` on a thread of its own with its own runtime (a
    /// runtime cannot be entered from the test's), waited for; errors are ignored, since
    /// this also runs while a failed test unwinds.
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropper = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(30), async {
                        let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                        let _ = conn.close().await;
                        Some(())
                    })
                    .await;
                });
            });
        if let Ok(dropper) = dropper {
            let _ = dropper.join();
        }
    }
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub engine: Engine,
    pub addr: SocketAddr,
    /// Where `/metrics` is served (its own listener), when it is.
    pub metrics_addr: Option<SocketAddr>,
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub config: Config,
    pub dir: tempfile::TempDir,
    /// The app's own PostgreSQL database: dropped with the app, even when a test panics.
    pub pg: Option<PgDb>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A configuration for a test: a temp data folder, port 0, no timing floor; on PostgreSQL a
/// fresh database, which lives as long as the returned [`PgDb`].
pub async fn test_config(engine: Engine, dir: &Path) -> (Config, Option<PgDb>) {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        metrics_listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        status_floor_ms: 0,
        ..Config::default()
    };
    config.rate_limit.enabled = false;
    // The monthly report email only where a test asks for it (it would add a message to
    // every test that counts emails).
    config.reports.monthly_email = false;
    // The daily retention pass only where a test runs it (its time of day would decide).
    config.retention.hour = 24;
    let pg = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => {
            let db = PgDb::create().await;
            config.database_url = Some(db.url.clone());
            Some(db)
        }
    };
    (config, pg)
}

/// Starts the real application with a test configuration.
pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, |_| {}).await
}

/// Starts the real application after `tune` adjusts the configuration.
pub async fn spawn_app_with(engine: Engine, tune: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, pg) = test_config(engine, dir.path()).await;
    tune(&mut config);
    start(engine, config, dir, pg).await
}

async fn start(
    engine: Engine,
    config: Config,
    dir: tempfile::TempDir,
    pg: Option<PgDb>,
) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("application builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let scheme = if config.tls() { "https" } else { "http" };
    TestApp {
        engine,
        addr,
        metrics_addr,
        base: format!("{scheme}://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap(),
        state,
        config,
        dir,
        pg,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Submits a tip through the JSON API and returns the receipt.
    pub async fn api_tip(&self, body: serde_json::Value) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/tips"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "tip accepted");
        let v: serde_json::Value = res.json().await.unwrap();
        v["receipt"].as_str().unwrap().to_owned()
    }

    /// Checks a receipt through the JSON API.
    pub async fn api_status(&self, receipt: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/tips/status"))
            .json(&serde_json::json!({ "receipt": receipt }))
            .send()
            .await
            .unwrap()
    }

    /// Stops the server; on PostgreSQL the database goes with it (its [`PgDb`] is dropped).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// The sealed description of a tip, straight from the database.
    pub async fn raw_tip_ids(&self) -> Vec<String> {
        match self.engine {
            Engine::Sqlite => {
                let url = self.config.database_url();
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar("SELECT id FROM tips ORDER BY created_at")
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.pg.as_ref().unwrap().url)
                    .await
                    .unwrap();
                sqlx::query_scalar("SELECT id FROM tips ORDER BY created_at")
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs a query that answers one count.
    pub async fn query_count(&self, sql: &str) -> i64 {
        match self.engine {
            Engine::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.config.database_url())
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.pg.as_ref().unwrap().url)
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    }

    /// Runs a query that answers rows of a text and bytes.
    pub async fn query_pairs(&self, sql: &str) -> Vec<(String, Vec<u8>)> {
        match self.engine {
            Engine::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.config.database_url())
                    .await
                    .unwrap();
                sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
            }
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.pg.as_ref().unwrap().url)
                    .await
                    .unwrap();
                sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
            }
        }
    }

    /// Runs one SQL statement against the app's database (for tampering tests).
    pub async fn exec(&self, sql: &str) {
        match self.engine {
            Engine::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.config.database_url())
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            Engine::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.pg.as_ref().unwrap().url)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
        }
    }
}

/// A JSON tip with sensible defaults.
pub fn tip_json(description: &str) -> serde_json::Value {
    serde_json::json!({
        "category": "dealing",
        "province": 1,
        "commune": 70,
        "village": "Tổ 5",
        "place_details": "quán nước đầu ngõ",
        "description": description,
        "happening_now": false
    })
}

/// A small JPEG carrying EXIF with GPS coordinates.
pub fn jpeg_with_gps(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, 128])
    });
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&img)
        .unwrap();
    tinbao::intake::photo::fixtures::with_exif(&plain, 1)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The real `tinbao` binary as a child process, with its output in a file.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
    pub dir: PathBuf,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `tinbao serve` on `dir` with extra environment, waits for `/healthz`.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        // stderr carries the log; stdout only the banner with the listen address.
        let log = dir.join(format!("server-{port}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let out = std::fs::File::create(dir.join(format!("server-{port}.out"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinbao"));
        cmd.arg("serve")
            .current_dir(dir)
            .env_remove("TINBAO_DATABASE_URL")
            .env_remove("TINBAO_KEYS")
            .env("TINBAO_LISTEN", format!("127.0.0.1:{port}"))
            .env("TINBAO_METRICS_LISTEN", "off")
            .env("TINBAO_DATA_DIR", dir.join("var"))
            .env("TINBAO_STATUS_FLOOR_MS", "0")
            .env("TINBAO_RATE_LIMIT__ENABLED", "false")
            .env("TINBAO_LOG", "trace")
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start tinbao");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            dir: dir.to_path_buf(),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await {
                if r.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "server did not start: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
    }

    /// Kills the server at once (SIGKILL), like a power cut of the process.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `tinbao` binary with arguments; returns (success, stdout + stderr).
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinbao"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("TINBAO_DATABASE_URL")
        .env_remove("TINBAO_KEYS")
        .env("TINBAO_DATA_DIR", dir.join("var"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tinbao");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs the CLI on a blocking thread, so that tips keep arriving meanwhile.
pub async fn cli(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&dir, &args, &env)
    })
    .await
    .unwrap()
}

impl TestApp {
    /// A second server process on the same database (and key file). It holds no [`PgDb`]:
    /// stopping or dropping it never drops the shared database.
    pub async fn second_instance(&self) -> TestApp {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".into();
        let dir = tempfile::tempdir().unwrap();
        start(self.engine, config, dir, None).await
    }

    /// Stops a server without dropping the shared database.
    pub async fn stop_keep_db(mut self) {
        if let Some(pg) = self.pg.take() {
            pg.keep();
        }
        self.stop().await;
    }
}

/// A filed form's answer as a browser sees it: the `303` to the page that shows its
/// result, followed with the cookie it set. `client` must not follow redirects itself.
pub async fn follow_filed(
    client: &reqwest::Client,
    base: &str,
    res: reqwest::Response,
) -> reqwest::Response {
    assert_eq!(res.status(), 303, "a filed form redirects");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let mut req = client.get(format!("{base}{to}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}
