//! The pieces a benchmark needs around the real `tinbao` binary: start it as a child
//! process on a free port with a fresh data directory (and extra environment), wait for
//! `/healthz`, stop it with SIGTERM; and a throw-away PostgreSQL database.
#![allow(dead_code)]

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sqlx::Connection;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A free port on loopback (bound, then released).
pub fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// One request on a fresh connection; for health checks, not for load.
pub async fn one_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `tinbao serve` as a child process; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts the server with abuse limits off, logging at `warn`, no key material from the
    /// environment, `database_url` (PostgreSQL) or SQLite in `data_dir`, plus `extra_env`.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        extra_env: &[(&str, String)],
    ) -> Result<Server> {
        let addr = free_addr()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .current_dir(data_dir)
            .env("TINBAO_LISTEN", addr.to_string())
            .env("TINBAO_DATA_DIR", data_dir)
            .env("TINBAO_CONFIG", data_dir.join("no-such-tinbao.toml"))
            .env("TINBAO_RATE_LIMIT__ENABLED", "false")
            .env("TINBAO_LOG", "warn")
            .env_remove("TINBAO_KEYS")
            .env_remove("TINBAO_KEY_FILE")
            .env_remove("TINBAO_TLS_CERT")
            .env_remove("TINBAO_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match database_url {
            Some(url) => cmd.env("TINBAO_DATABASE_URL", url),
            None => cmd.env_remove("TINBAO_DATABASE_URL"),
        };
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Server { child, addr };
        server.wait_healthy().await?;
        println!("  server pid {} listening on {addr}", server.pid());
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited during start-up ({status})");
            }
            match one_request(self.addr, Method::GET, "/healthz").await {
                Ok((StatusCode::OK, _)) => return Ok(()),
                Ok((s, body)) => last = format!("{s}: {}", String::from_utf8_lossy(&body)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("GET /healthz did not answer 200 within {HEALTH_TIMEOUT:?} ({last})")
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (graceful: drains and closes the pool), then SIGKILL after 15 s.
    pub async fn stop(mut self) {
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
// PostgreSQL: a throw-away database

/// The admin URL to create databases on, and where it came from.
pub fn pg_admin_url() -> (String, &'static str) {
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(u) if !u.is_empty() => (u, "BENCH_DATABASE_URL"),
        _ => match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => (u, "TEST_DATABASE_URL"),
            _ => (DEFAULT_PG_URL.to_string(), "default"),
        },
    }
}

pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
    dropped: AtomicBool,
}

impl PgDatabase {
    /// Creates `tinbao_bench_<random>`; `Ok(None)` (with a note) when no server answers.
    pub async fn create() -> Result<Option<PgDatabase>> {
        let (admin_url, source) = pg_admin_url();
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
        for setting in ["server_version", "fsync", "synchronous_commit"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|_| "?".into());
            settings.push(value);
        }
        let [version, fsync, sync_commit] = <[String; 3]>::try_from(settings).expect("three");
        conn.close().await.ok();
        let url = with_database(&admin_url, &name)?;
        println!(
            "  PostgreSQL {version} at {shown}: database {name} \
             (fsync={fsync}, synchronous_commit={sync_commit})"
        );
        if fsync != "on" || sync_commit == "off" {
            println!(
                "  note: this server does not make commits durable; throughput is not durable"
            );
        }
        Ok(Some(PgDatabase {
            admin_url,
            name,
            url,
            dropped: AtomicBool::new(false),
        }))
    }

    pub async fn drop_now(&self) {
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
pub fn with_database(url: &str, name: &str) -> Result<String> {
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
pub fn redact(url: &str) -> String {
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
