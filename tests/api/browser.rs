//! Headless Chromium driven through WebDriver (chromedriver + fantoccini), for UI tests.
//!
//! Typical use:
//!
//! ```ignore
//! let Some(_) = common::browser::available() else { return Ok(()) }; // skips only outside CI
//! let b = common::browser::Browser::start(360, 640, false).await?;
//! b.client.goto(&url).await?;
//! b.screenshot("home-360").await?;
//! b.close().await?;
//! ```
//!
//! Paths come from `TINBAO_CHROMIUM` / `TINBAO_CHROMEDRIVER` (default `/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `bash tests/run.sh` installs both). When `CI` or
//! `TINBAO_REQUIRE_BROWSER` is set, a missing browser is a test failure, never a skip.
#![allow(dead_code)]

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session. Dropping it kills chromedriver and the browser.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Driver,
    width: u32,
    height: u32,
}

/// The chromedriver process (and the Chromium it starts) plus the temporary profile dir;
/// killed and removed on drop.
struct Driver {
    child: Option<Child>,
    /// Fresh, empty Chromium profile; also holds chromedriver.log.
    profile: tempfile::TempDir,
}

fn env_flag(name: &str) -> bool {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            !(v.is_empty() || v == "0" || v == "false" || v == "no")
        }
        Err(_) => false,
    }
}

fn env_path(name: &str, default: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `(chromium, chromedriver)` if both are installed, else `None`.
///
/// Panics instead of returning `None` when `CI` or `TINBAO_REQUIRE_BROWSER` is set, so a
/// CI run can never silently skip the browser tests.
pub fn available() -> Option<(PathBuf, PathBuf)> {
    let chromium = env_path("TINBAO_CHROMIUM", DEFAULT_CHROMIUM);
    let driver = env_path("TINBAO_CHROMEDRIVER", DEFAULT_CHROMEDRIVER);
    let missing: Vec<String> = [
        ("TINBAO_CHROMIUM", &chromium),
        ("TINBAO_CHROMEDRIVER", &driver),
    ]
    .iter()
    .filter(|(_, p)| !is_executable(p))
    .map(|(var, p)| format!("{} ({var})", p.display()))
    .collect();
    if missing.is_empty() {
        return Some((chromium, driver));
    }
    let msg = format!(
        "headless browser not available: missing or not executable: {}. \
         Run `bash tests/run.sh` (installs Debian packages chromium and chromium-driver) \
         or point TINBAO_CHROMIUM / TINBAO_CHROMEDRIVER at the binaries.",
        missing.join(", ")
    );
    if env_flag("CI") || env_flag("TINBAO_REQUIRE_BROWSER") {
        panic!("{msg} (CI / TINBAO_REQUIRE_BROWSER is set, so this is an error, not a skip)");
    }
    eprintln!("SKIPPING browser test: {msg}");
    None
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Reads width and height from a PNG's IHDR chunk.
pub fn png_size(png: &[u8]) -> anyhow::Result<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        bail!("not a PNG ({} bytes)", png.len());
    }
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    Ok((w, h))
}

fn tail_of(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium whose viewport is
    /// `width` x `height` CSS px (device scale factor 1, so screenshots are exactly that many
    /// pixels). `javascript: false` disables scripts entirely.
    pub async fn start(width: u32, height: u32, javascript: bool) -> anyhow::Result<Browser> {
        let Some((chromium, chromedriver)) = available() else {
            bail!("chromium/chromedriver not installed (see common::browser::available)");
        };
        let profile = tempfile::Builder::new()
            .prefix("tinbao-chromium-")
            .tempdir()
            .context("creating a temporary Chromium profile dir")?;
        let user_data = profile.path().join("profile");
        std::fs::create_dir(&user_data)?;
        let log_path = profile.path().join("chromedriver.log");

        // The port is free when probed but could be taken before chromedriver binds it: retry.
        let mut last_err = anyhow!("chromedriver did not start");
        let mut started = None;
        for _ in 0..3 {
            let port = free_port()?;
            match spawn_driver(&chromedriver, port, &log_path).await {
                Ok(child) => {
                    started = Some((child, port));
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let Some((child, port)) = started else {
            return Err(last_err);
        };
        // From here on, Drop cleans up chromedriver and Chromium whatever happens.
        let driver = Driver {
            child: Some(child),
            profile,
        };

        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--no-default-browser-check".into(),
            "--password-store=basic".into(),
            "--force-device-scale-factor=1".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let mut prefs = serde_json::Map::new();
        if !javascript {
            args.push("--blink-settings=scriptEnabled=false".into());
            prefs.insert(
                "profile.managed_default_content_settings.javascript".into(),
                serde_json::json!(2),
            );
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), serde_json::json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.to_string_lossy(),
                "args": args,
                "prefs": prefs,
            }),
        );

        let url = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            fantoccini::ClientBuilder::new(
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .capabilities(caps)
            .connect(&url),
        )
        .await
        .map_err(|_| anyhow!("timed out after 60s creating a Chromium WebDriver session"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "starting headless Chromium via chromedriver; log tail:\n{}",
                tail_of(&driver.profile.path().join("chromedriver.log"), 3000)
            )
        })?;
        let browser = Browser {
            client,
            driver,
            width,
            height,
        };
        browser.fit_viewport(javascript).await?;
        Ok(browser)
    }

    /// Makes the viewport exactly width x height: measured from a screenshot (works without
    /// JavaScript), and also via `window.innerWidth/innerHeight` when scripts are enabled.
    async fn fit_viewport(&self, javascript: bool) -> anyhow::Result<()> {
        let (w, h) = (self.width, self.height);
        self.client.set_window_size(w, h).await?;
        let mut size = (0, 0);
        for _ in 0..3 {
            size = png_size(&self.client.screenshot().await?)?;
            if javascript {
                let v = self
                    .client
                    .execute("return [window.innerWidth, window.innerHeight];", vec![])
                    .await?;
                let js = (
                    v[0].as_u64().unwrap_or(0) as u32,
                    v[1].as_u64().unwrap_or(0) as u32,
                );
                if js != size {
                    bail!("viewport mismatch: innerWidth/innerHeight {js:?}, screenshot {size:?}");
                }
            }
            if size == (w, h) {
                return Ok(());
            }
            // Window chrome takes some space: grow the window by the difference.
            let (ww, wh) = self.client.get_window_size().await?;
            let nw = (ww as i64 + w as i64 - size.0 as i64).max(1) as u32;
            let nh = (wh as i64 + h as i64 - size.1 as i64).max(1) as u32;
            self.client.set_window_size(nw, nh).await?;
        }
        bail!("could not make the viewport {w}x{h} CSS px; it is {size:?}")
    }

    /// Saves a PNG screenshot of the viewport to `tests/artifacts/<name>.png` (relative to the
    /// crate root) and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("artifacts")
            .join(format!("{name}.png"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Ends the WebDriver session (closing Chromium), then stops chromedriver.
    pub async fn close(self) -> anyhow::Result<()> {
        let res = tokio::time::timeout(Duration::from_secs(20), self.client.clone().close()).await;
        drop(self); // kills chromedriver and anything left of Chromium
        match res {
            Ok(r) => r.context("closing the WebDriver session"),
            Err(_) => bail!("timed out closing the WebDriver session"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chromium normally stays in chromedriver's process group; any process that left it is
        // found by the unique profile dir on its command line.
        let mut targets = pids_with_cmdline(&self.profile.path().to_string_lossy());
        if let Some(child) = &self.child {
            targets.push(format!("-{}", child.id())); // the whole process group
        }
        if !targets.is_empty() {
            // sh's builtin kill: needs no procps, and takes process groups.
            let _ = Command::new("sh")
                .arg("-c")
                .arg("kill -KILL \"$@\" 2>/dev/null; true")
                .arg("sh")
                .args(&targets)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pids_with_cmdline(needle: &str) -> Vec<String> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                pids.push(pid.to_string());
            }
        }
    }
    pids
}

async fn spawn_driver(chromedriver: &Path, port: u16, log: &Path) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let logf = std::fs::File::create(log)?;
    let mut child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning {}", chromedriver.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "chromedriver exited early ({status}):\n{}",
                tail_of(log, 3000)
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "chromedriver did not listen on {addr} within 20s:\n{}",
                tail_of(log, 3000)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
