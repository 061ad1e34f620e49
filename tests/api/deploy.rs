//! The deployment: HTTPS as a trusted proxy reports it (`Secure` cookies, HSTS), and the
//! files in `deploy/` read by the tools that will run them (systemd-analyze, caddy, nginx)
//! and by tinbao's own configuration.

use crate::console_support::{create_account, field};
use crate::helpers::*;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::multipart::Form;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tinbao::accounts::Role;
use tinbao::Config;

/// A file of `deploy/`.
fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

fn read_deploy(name: &str) -> String {
    std::fs::read_to_string(deploy_file(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// A client that sends `X-Forwarded-Proto` with every request (as a proxy in front would),
/// or none, and follows no redirect.
fn proxied_client(proto: Option<&str>) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    if let Some(proto) = proto {
        headers.insert("x-forwarded-proto", HeaderValue::from_str(proto).unwrap());
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// What the answers of one walk through the site carried.
#[derive(Default)]
struct Seen {
    /// Every `Set-Cookie` line.
    cookies: Vec<String>,
    /// Each answer's `Strict-Transport-Security`, if any.
    hsts: Vec<Option<String>>,
}

impl Seen {
    fn note(&mut self, res: &reqwest::Response) {
        self.cookies.extend(
            res.headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        self.hsts.push(
            res.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
    }

    /// The `name=value` of the last cookie called `name`.
    fn cookie(&self, name: &str) -> String {
        self.cookies
            .iter()
            .rev()
            .map(|c| c.split(';').next().unwrap())
            .find(|kv| kv.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie among {:?}", self.cookies))
            .to_owned()
    }
}

/// A reader switches the language, an officer logs into the console, a resident files a
/// tip through the form and sees its receipt: every cookie and HSTS header on the way.
async fn walk(app: &TestApp, client: &reqwest::Client, username: &str) -> Seen {
    let mut seen = Seen::default();
    let res = client.get(app.url("/?lang=en")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    seen.note(&res);
    seen.cookie("lang");
    let html = res.text().await.unwrap();
    let submission = field(&html, "name=\"submission\"").expect("a submission token");

    let (_, password) = create_account(app, Role::Officer, username, None, Some(70)).await;
    let res = client.get(app.url("/console/login")).send().await.unwrap();
    seen.note(&res);
    let pre = seen.cookie("tinbao_pre");
    let csrf = field(&res.text().await.unwrap(), "name=\"csrf\"").unwrap();
    let res = client
        .post(app.url("/console/login"))
        .header("cookie", pre)
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "logged in");
    seen.note(&res);
    seen.cookie("tinbao_console");

    let form = Form::new()
        .text("lang", "vi")
        .text("category", "hotspot")
        .text("province", "1")
        .text("commune", "70")
        .text("village", "Tổ dân phố 7")
        .text("place_details", "nhà số 12 cuối ngõ")
        .text("occurred_at", "tối qua")
        .text("description", "Có người bán ma túy ở chợ đêm")
        .text("website", "")
        .text("action", "submit")
        .text("submission", submission);
    let res = client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the tip is filed");
    seen.note(&res);
    let receipt = seen.cookie("tinbao_receipt");
    // The receipt page clears the view cookie: that one too.
    let res = client
        .get(app.url("/tips/receipt"))
        .header("cookie", receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    seen.note(&res);
    assert!(
        res.text().await.unwrap().contains("id=\"receipt\""),
        "the receipt is shown"
    );
    seen
}

/// How many times a `Set-Cookie` line carries the `Secure` attribute.
fn secure_flags(cookie: &str) -> usize {
    cookie
        .split(';')
        .skip(1)
        .filter(|a| a.trim().eq_ignore_ascii_case("secure"))
        .count()
}

engine_test!(https_through_a_trusted_proxy_gets_secure_cookies_and_hsts);
/// With `trust_forwarded_for`, a request the proxy marks `X-Forwarded-Proto: https` gets
/// every cookie `Secure` (language, console session, receipt view) and HSTS on every
/// answer; without the header, or when the header is not trusted, neither.
async fn https_through_a_trusted_proxy_gets_secure_cookies_and_hsts(engine: Engine) {
    let trusted = spawn_app_with(engine, |c| c.trust_forwarded_for = true).await;
    let untrusted = spawn_app_with(engine, |c| c.trust_forwarded_for = false).await;

    let seen = walk(&trusted, &proxied_client(Some("https")), "https1").await;
    for cookie in &seen.cookies {
        assert_eq!(
            secure_flags(cookie),
            1,
            "[{engine:?}] Secure, once: {cookie}"
        );
    }
    for hsts in &seen.hsts {
        assert_eq!(
            hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains"),
            "[{engine:?}] HSTS on every answer"
        );
    }

    for (app, proto, username, case) in [
        (&trusted, None, "plain1", "no X-Forwarded-Proto"),
        (&trusted, Some("http"), "plain2", "X-Forwarded-Proto: http"),
        (
            &untrusted,
            Some("https"),
            "spoof1",
            "an untrusted X-Forwarded-Proto",
        ),
    ] {
        let seen = walk(app, &proxied_client(proto), username).await;
        for cookie in &seen.cookies {
            assert_eq!(
                secure_flags(cookie),
                0,
                "[{engine:?}] {case}: not Secure: {cookie}"
            );
        }
        assert!(
            seen.hsts.iter().all(Option::is_none),
            "[{engine:?}] {case}: no HSTS: {:?}",
            seen.hsts
        );
    }
    trusted.stop().await;
    untrusted.stop().await;
}

/// The path of a tool, looked up in `PATH` and the sbin folders (nginx lives in
/// `/usr/sbin`, often not in a user's `PATH`); `None` skips the test with a note, except
/// under CI, where `tests/run.sh` installs the tool and its absence fails.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {name} (Debian package {package}; tests/run.sh installs it)"
        );
        eprintln!("note: {name} is not installed (Debian package {package}), skipping");
    }
    found
}

/// The command's exit status, standard output and error, for a failure message.
fn report(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines of `systemd-analyze verify` about the unit `file` that say a setting was
/// refused (systemd ignores a misspelt key or a bad value and still exits 0).
fn unit_complaints(analyze: &Path, file: &Path) -> (Output, Vec<String>) {
    let out = Command::new(analyze)
        .arg("verify")
        .arg(file)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let complaints = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.contains(&name))
        .filter(|l| {
            ["Unknown", "Invalid", "Failed", "ignoring", "not executable"]
                .iter()
                .any(|w| l.contains(w))
        })
        .map(str::to_owned)
        .collect();
    (out, complaints)
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze", "systemd") else {
        return;
    };
    let unit = read_deploy("tinbao.service");
    let exec = "ExecStart=/usr/local/bin/tinbao serve";
    assert!(unit.contains(exec), "the unit runs `tinbao serve`");
    // The unit as installed, but running the binary just built (verify checks it exists).
    let unit = unit.replace(
        exec,
        &format!("ExecStart={} serve", env!("CARGO_BIN_EXE_tinbao")),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tinbao.service");
    std::fs::write(&file, &unit).unwrap();
    let (out, complaints) = unit_complaints(&analyze, &file);
    assert!(
        out.status.success() && complaints.is_empty(),
        "{complaints:?}\n{}",
        report(&out)
    );

    // The same check catches a misspelt key and a bad value on this systemd.
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        unit.replace(
            "ProtectSystem=strict",
            "ProtectSystem=strikt\nProtectHomes=yes",
        ),
    )
    .unwrap();
    let (_, complaints) = unit_complaints(&analyze, &bad);
    assert_eq!(complaints.len(), 2, "{complaints:?}");

    // What the unit promises: a user of its own, a read-only system with the data folder
    // its one writable path, the configuration file under /etc/tinbao.
    for line in [
        "User=tinbao",
        "Group=tinbao",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=tinbao",
        "ReadWritePaths=/var/lib/tinbao",
        "Environment=TINBAO_DATA_DIR=/var/lib/tinbao",
        "Environment=TINBAO_CONFIG=/etc/tinbao/tinbao.toml",
        "CapabilityBoundingSet=",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "the unit has {line}"
        );
    }
    let writable: Vec<_> = unit
        .lines()
        .filter(|l| l.starts_with("ReadWritePaths="))
        .collect();
    assert_eq!(writable, ["ReadWritePaths=/var/lib/tinbao"]);
}

#[test]
fn the_caddyfile_passes_caddy_validate_and_logs_no_requests() {
    let Some(caddy) = tool("caddy", "caddy") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let caddyfile = deploy_file("Caddyfile");
    let run = |verb: &str| {
        Command::new(&caddy)
            .arg(verb)
            .arg("--config")
            .arg(&caddyfile)
            .args(["--adapter", "caddyfile"])
            // Caddy's storage (certificates) in a folder of the test's own.
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .output()
            .unwrap()
    };
    let out = run("validate");
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Valid configuration")
            || String::from_utf8_lossy(&out.stderr).contains("Valid configuration"),
        "{}",
        report(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not formatted"),
        "caddy fmt the Caddyfile: {}",
        report(&out)
    );

    // The configuration Caddy runs: no access log, the body limit, tinbao on loopback.
    let out = run("adapt");
    assert!(out.status.success(), "{}", report(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers = json["apps"]["http"]["servers"].as_object().unwrap();
    assert!(!servers.is_empty());
    for (name, server) in servers {
        assert!(server.get("logs").is_none(), "{name} writes an access log");
    }
    let text = json.to_string();
    assert!(text.contains("\"max_size\":67108864"), "{text}");
    assert!(text.contains("\"dial\":\"127.0.0.1:8080\""), "{text}");
}

#[test]
fn the_nginx_example_passes_nginx_t_and_logs_no_requests() {
    let Some(nginx) = tool("nginx", "nginx") else {
        return;
    };
    let example = read_deploy("nginx.conf");
    // Every server block turns the access log off and keeps the error log at `crit`.
    let directives: Vec<&str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let count = |pred: &dyn Fn(&str) -> bool| directives.iter().filter(|l| pred(l)).count();
    let servers = count(&|l| l == "server {");
    assert!(servers >= 1);
    assert_eq!(count(&|l| l == "access_log off;"), servers);
    assert_eq!(count(&|l| l.starts_with("access_log ")), servers);
    assert_eq!(
        count(&|l| l.starts_with("error_log ") && l.ends_with(" crit;")),
        servers
    );
    assert_eq!(count(&|l| l.starts_with("error_log ")), servers);

    // The example as installed, with a self-signed certificate and the log and temporary
    // files in a folder of the test's own, so that it runs without root.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cert = rcgen::generate_simple_self_signed(vec!["tinbao.example.vn".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut conf = example.clone();
    for (from, to) in [
        (
            "/etc/letsencrypt/live/tinbao.example.vn/fullchain.pem",
            format!("{d}/cert.pem"),
        ),
        (
            "/etc/letsencrypt/live/tinbao.example.vn/privkey.pem",
            format!("{d}/key.pem"),
        ),
        ("/var/log/nginx/", format!("{d}/")),
    ] {
        assert!(conf.contains(from), "the example names {from}");
        conf = conf.replace(from, &to);
    }
    std::fs::write(dir.path().join("tinbao.conf"), conf).unwrap();
    let main = format!(
        "pid {d}/nginx.pid;\n\
         error_log {d}/error.log crit;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/tinbao.conf;\n\
         }}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let out = Command::new(&nginx)
        .arg("-t")
        .arg("-p")
        .arg(format!("{d}/"))
        .arg("-e")
        .arg(format!("{d}/error.log"))
        .arg("-c")
        .arg(format!("{d}/nginx.conf"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("test is successful"),
        "{}",
        report(&out)
    );
    assert!(!said.contains("[warn]"), "{}", report(&out));
}

#[test]
fn the_example_configuration_names_real_keys_and_fits_the_unit() {
    let example = read_deploy("tinbao.toml.example");
    // The commented-out settings too: a line `# key = …` or `# [table]` is read as if on.
    let all: String = example
        .lines()
        .map(|l| {
            let on = l.strip_prefix("# ").filter(|rest| {
                rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            });
            format!("{}\n", on.unwrap_or(l))
        })
        .collect();
    let written: toml::Value = toml::from_str(&all).unwrap();
    let known = serde_json::to_value(Config::default()).unwrap();
    fn leaves(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    leaves("", &written, &mut keys);
    assert!(keys.len() >= 10, "{keys:?}");
    for key in &keys {
        let found = key.split('.').try_fold(&known, |v, k| v.get(k)).is_some();
        assert!(
            found,
            "deploy/tinbao.toml.example: {key} is not a configuration key"
        );
    }

    // The unit's environment and the example, as the server reads them.
    let unit = read_deploy("tinbao.service");
    let vars: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(vars.iter().any(|(k, _)| k == "TINBAO_CONFIG"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tinbao.toml");
    std::fs::write(&file, &example).unwrap();
    let config = Config::from_sources(&file, vars).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert!(config.trust_forwarded_for);
    assert_eq!(config.public_url, "https://tinbao.example.vn");
    assert_eq!(config.data_dir, Path::new("/var/lib/tinbao"));
    assert!(config.database_url.is_none(), "SQLite unless uncommented");
    // Everything uncommented still reads.
    std::fs::write(&file, &all).unwrap();
    let config = Config::from_sources(&file, std::iter::empty::<(&str, &str)>()).unwrap();
    assert!(config
        .database_url()
        .starts_with("postgres://tinbao@127.0.0.1/"));
}
