//! The server as a stranger meets it: `/metrics` off the public port, body limits per
//! route, deadlines for slow clients, a cap on connections, private data files.

use crate::helpers::{
    engine_test, free_port, jpeg_with_gps, spawn_app_with, tip_json, Engine, PgDb, Server,
};
use reqwest::multipart::{Form, Part};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "metrics-token-for-tests";

engine_test!(metrics_are_served_only_on_their_own_listener_with_the_token);
/// `/metrics` answers 404 on the public port; on its own listener it needs the bearer
/// token, and holds no series that ticks with each tip or each receipt check.
async fn metrics_are_served_only_on_their_own_listener_with_the_token(engine: Engine) {
    let app = spawn_app_with(engine, |c| c.metrics_token = TOKEN.into()).await;
    let receipt = app.api_tip(tip_json("đếm tôi")).await;
    assert_eq!(app.api_status(&receipt).await.status(), 200);
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str())])
        .send()
        .await
        .unwrap();
    let res = crate::helpers::follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let public = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "no metrics on the public port");
    let own = format!("http://{}/metrics", app.metrics_addr.expect("own listener"));
    let res = app.client.get(&own).send().await.unwrap();
    assert_eq!(res.status(), 401, "no token, no metrics");
    let res = app
        .client
        .get(&own)
        .bearer_auth("metrics-token-for-tests-not")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a wrong token is refused");
    let res = app
        .client
        .get(&own)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("tinbao_http_request_duration_seconds_bucket"));
    assert!(text.contains("path=\"/healthz\""), "{text}");
    assert!(!text.contains("tinbao_tips_total"), "{text}");
    for private in [
        "path=\"/status\"",
        "path=\"/api/v1/tips/status\"",
        "path=\"/api/v1/tips\"",
    ] {
        assert!(!text.contains(private), "{private} counted: {text}");
    }
    assert!(!text.contains("đếm tôi") && !text.contains(&receipt));
    app.stop().await;

    // Without a listener of its own, the public port serves it only behind the token.
    let app = spawn_app_with(engine, |c| {
        c.metrics_listen = "off".into();
        c.metrics_token = TOKEN.into();
    })
    .await;
    assert!(app.metrics_addr.is_none());
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;

    // Off and no token: nowhere.
    let app = spawn_app_with(engine, |c| c.metrics_listen = "off".into()).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}

engine_test!(small_forms_take_kilobytes_and_the_tip_form_is_read_bounded);
/// A receipt check, a subscription, a login and the API's status check refuse 100 KiB
/// with 413 and the localised text; the tip form still takes photos, and an overlong
/// field stops its reading with the "too big" refusal that keeps what was typed.
async fn small_forms_take_kilobytes_and_the_tip_form_is_read_bounded(engine: Engine) {
    let app = spawn_app_with(engine, |_| {}).await;
    let big = "1".repeat(100 * 1024);
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let html = res.text().await.unwrap();
    assert!(html.contains("Dữ liệu gửi lên quá lớn"), "{html}");
    // In English for an English reader.
    let res = app
        .client
        .post(app.url("/status?lang=en"))
        .form(&[("receipt", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("What you sent is too large"));
    for path in ["/subscribe/1", "/console/login"] {
        let res = app
            .client
            .post(app.url(path))
            .form(&[("email", big.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{path}");
        assert!(res.text().await.unwrap().contains("quá lớn"), "{path}");
    }
    let res = app
        .client
        .post(app.url("/api/v1/tips/status"))
        .json(&serde_json::json!({ "receipt": big }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // A small form within its limit is answered as before.
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", "1234-1234-1234-1234")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The tip form takes a photo far above the small limit.
    let photo = jpeg_with_gps(900, 700);
    assert!(photo.len() > 32 * 1024);
    let form = Form::new()
        .text("category", "dealing")
        .text("province", "1")
        .text("commune", "70")
        .text("description", "có ảnh")
        .text("action", "submit")
        .part("photos", Part::bytes(photo).file_name("a.jpg"));
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "filed: {}", res.text().await.unwrap());

    // An overlong field: refused as too big, what was typed before it kept.
    let form = Form::new()
        .text("category", "dealing")
        .text("village", "giữ thôn này")
        .text("description", "x".repeat(70 * 1024))
        .text("action", "submit");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let html = res.text().await.unwrap();
    assert!(html.contains("quá lớn"));
    assert!(html.contains("giữ thôn này"), "what was typed is kept");
    app.stop().await;
}

/// Reads until the server closes the connection; `None` if it is still open after
/// `guard` (a guard against a hanging test, not a measurement).
async fn read_until_closed(stream: &mut TcpStream, guard: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(guard, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|_| got)
}

engine_test!(slow_clients_are_disconnected);
/// Partial headers, a partial body, and a connection that sends nothing are all closed
/// once their deadline passes (short deadlines here), and the server keeps answering.
async fn slow_clients_are_disconnected(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.header_timeout_seconds = 1;
        c.body_timeout_seconds = 1;
        c.idle_timeout_seconds = 2;
    })
    .await;
    let guard = Duration::from_secs(30);
    // Slow loris: headers that never end.
    let mut loris = TcpStream::connect(app.addr).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut loris, guard).await;
    assert!(got.is_some(), "partial headers keep the connection open");
    // A body that never ends: the request is answered with an error and the
    // connection closed.
    let mut slow_body = TcpStream::connect(app.addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 1000\r\n\r\nreceipt=12",
        )
        .await
        .unwrap();
    let got = read_until_closed(&mut slow_body, guard).await;
    let got = got.expect("a partial body keeps the connection open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    // Nothing at all.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        read_until_closed(&mut idle, guard).await.is_some(),
        "an idle connection stays open"
    );
    // A keep-alive connection, idle after its request, is closed too.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut kept, guard)
        .await
        .expect("an idle keep-alive connection stays open");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

engine_test!(healthz_answers_past_the_connection_cap);
/// With the cap at 20 (below the file limit), 40 idle connections cannot keep `/healthz`
/// from answering: idle ones make way, and the cap is logged once.
async fn healthz_answers_past_the_connection_cap(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let mut env = PgDb::env(&pg);
    env.push(("TINBAO_MAX_CONNECTIONS", "20"));
    let server = Server::start(dir.path(), &env).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The longest idle made way: at least 20 of the 40 are closed.
    let closed = futures_util::future::join_all(
        idle.iter_mut()
            .map(|s| read_until_closed(s, Duration::from_secs(5))),
    )
    .await
    .into_iter()
    .filter(Option::is_some)
    .count();
    assert!(closed >= 20, "only {closed} idle connections closed");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert_eq!(
        log.matches("connection cap reached").count(),
        1,
        "one log line however many times the cap is met: {log}"
    );
    drop(server);
}

/// `tinbao serve` under `umask 000`, as [`Server::start`] starts it otherwise.
async fn start_with_umask_000(dir: &Path, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = dir.join(format!("server-{port}.log"));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_tinbao"))
        .current_dir(dir)
        .env_remove("TINBAO_DATABASE_URL")
        .env_remove("TINBAO_KEYS")
        .env("TINBAO_LISTEN", format!("127.0.0.1:{port}"))
        .env("TINBAO_METRICS_LISTEN", "off")
        .env("TINBAO_DATA_DIR", dir.join("var"))
        .env("TINBAO_STATUS_FLOOR_MS", "0")
        .env("TINBAO_RATE_LIMIT__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let server = Server {
        child: cmd.spawn().expect("start tinbao"),
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

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

engine_test!(data_files_are_private_whatever_the_umask);
/// Under `umask 000`, the data folder is 0700 (even one made 0777 before) and the key
/// file and SQLite's database, WAL and shared-memory files 0600, new or existing.
async fn data_files_are_private_whatever_the_umask(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let var = dir.path().join("var");
    std::fs::create_dir(&var).unwrap();
    set_mode(&var, 0o777);
    let pg = PgDb::for_engine(engine).await;
    let env = PgDb::env(&pg);
    let server = start_with_umask_000(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/tips", server.base))
        .json(&tip_json("riêng tư"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(mode(&var), 0o700);
    assert_eq!(mode(&var.join("keys.toml")), 0o600);
    if engine == Engine::Sqlite {
        for name in ["tinbao.db", "tinbao.db-wal", "tinbao.db-shm"] {
            assert_eq!(mode(&var.join(name)), 0o600, "{name}");
        }
        // Files left readable by an earlier version are fixed at the next start.
        server.kill();
        for name in ["tinbao.db", "tinbao.db-wal", "tinbao.db-shm"] {
            if var.join(name).exists() {
                set_mode(&var.join(name), 0o644);
            }
        }
        set_mode(&var, 0o755);
        let server = start_with_umask_000(dir.path(), &env).await;
        assert_eq!(mode(&var), 0o700);
        for name in ["tinbao.db", "tinbao.db-wal", "tinbao.db-shm"] {
            assert_eq!(mode(&var.join(name)), 0o600, "{name} again");
        }
        drop(server);
    } else {
        drop(server);
    }
}

engine_test!(forms_with_photos_wait_for_an_upload_place_and_text_tips_do_not);
/// With one upload place, a form with photos whose body is still arriving holds it: a
/// second one waits `photo_upload_wait_seconds`, then is answered 503 with `Retry-After`
/// and the localised "busy" text (its body never read); a text-only tip goes through
/// meanwhile; a form that waited longer than `body_timeout_seconds` for the place is
/// still read in full once it has it (the body's clock starts when it is read).
async fn forms_with_photos_wait_for_an_upload_place_and_text_tips_do_not(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.photo_uploads = 1;
        c.photo_upload_wait_seconds = 4;
        c.body_timeout_seconds = 2;
    })
    .await;
    // A slow phone: the headers of a 5 MB form, then a photo 8 KiB at a time.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        b"POST /tips HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
          Content-Length: 5000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\ndealing\r\n\
          --b\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"a.jpg\"\r\n\r\n",
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        loop {
            if slow.write_all(&[0xFF; 8192]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let photos_form = || {
        Form::new()
            .text("category", "dealing")
            .text("province", "1")
            .text("commune", "70")
            .text("description", "có ảnh")
            .text("action", "submit")
            .part(
                "photos",
                Part::bytes(vec![0xFFu8; 2 * 1024 * 1024]).file_name("a.jpg"),
            )
    };
    let started = std::time::Instant::now();
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(photos_form())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(started.elapsed() >= Duration::from_millis(3900));
    assert_eq!(res.headers()["retry-after"], "60");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Máy chủ đang nhận nhiều ảnh cùng lúc"),
        "{html}"
    );
    assert_eq!(app.query_count("SELECT COUNT(*) FROM tips").await, 0);

    // A tip without photos needs no place.
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(
            Form::new()
                .text("category", "dealing")
                .text("province", "1")
                .text("commune", "70")
                .text("description", "không có ảnh, vẫn được nhận")
                .text("action", "submit"),
        )
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    assert_eq!(app.query_count("SELECT COUNT(*) FROM tips").await, 1);

    // A form that waits 3 s (past the 2 s body timeout) until the slow phone gives up is
    // then read, and answered for what it holds (not a photo), not cut off.
    let waiting = {
        let client = app.client.clone();
        let url = app.url("/tips");
        let form = photos_form();
        tokio::spawn(async move { client.post(url).multipart(form).send().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    trickle.abort();
    let res = waiting.await.unwrap().unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Chỉ nhận ảnh JPEG, PNG hoặc WebP"), "{html}");
}
