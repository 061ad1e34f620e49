//! What every page and answer promises: localised errors that keep what was typed, the
//! language switch, strict headers, a light page, abuse limits, the API document, health,
//! metrics and HTTPS.

use crate::helpers::*;
use reqwest::multipart::Form;

engine_test!(a_bad_form_rerenders_with_messages_and_everything_typed);
async fn a_bad_form_rerenders_with_messages_and_everything_typed(engine: Engine) {
    let app = spawn_app(engine).await;
    let form = Form::new()
        .text("lang", "vi")
        .text("province", "1")
        .text("commune", "70")
        .text("village", "Thôn <Đông>")
        .text("place_details", "cạnh \"cây đa\"")
        .text("occurred_at", "sáng nay")
        .text("happening_now", "1")
        .text("description", "x".repeat(5001))
        .text("contact_opt_in", "1")
        .text("contact", "")
        .text("action", "submit");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Hãy chọn loại tin báo."), "missing category");
    assert!(html.contains("Nội dung quá dài."), "too long");
    assert!(
        html.contains("hãy điền cách liên lạc"),
        "contact ticked but empty"
    );
    assert!(html.contains(&"x".repeat(5001)), "description kept");
    assert!(
        html.contains("Thôn &#60;Đông&#62;") || html.contains("Thôn &lt;Đông&gt;"),
        "village kept, escaped"
    );
    assert!(html.contains("sáng nay"));
    assert!(html.contains("name=\"happening_now\" value=\"1\" checked"));
    assert!(
        html.contains("<option value=\"70\" selected>"),
        "commune kept"
    );
    assert!(app.raw_tip_ids().await.is_empty());

    // The API answers the same problems as JSON, in the asked language.
    let res = app
        .client
        .post(app.url("/api/v1/tips"))
        .header("accept-language", "en-GB,en;q=0.8")
        .json(&serde_json::json!({"category": "nope", "description": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let v: serde_json::Value = res.json().await.unwrap();
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["category", "description"]);
    assert_eq!(v["fields"][1]["message"], "Please write your tip.");
    app.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_answers() {
    let app = spawn_app_with(Engine::Sqlite, |c| c.max_body_bytes = 64 * 1024).await;
    let res = app
        .client
        .post(app.url("/api/v1/tips"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"], "malformed");
    let res = app
        .client
        .post(app.url("/api/v1/tips"))
        .header("content-type", "application/json")
        .body(format!("{{\"description\":\"{}\"}}", "a".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let form = Form::new()
        .text("description", "giữ lại")
        .text("action", "submit")
        .part(
            "photos",
            reqwest::multipart::Part::bytes(vec![7u8; 200_000]).file_name("a.jpg"),
        );
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
    assert!(
        html.contains("giữ lại"),
        "what was read before the limit is kept"
    );
    // Garbage to every route never crashes the server.
    for path in [
        "/tips",
        "/status",
        "/status/reply",
        "/api/v1/tips",
        "/api/v1/tips/status",
    ] {
        let res = app
            .client
            .post(app.url(path))
            .header("content-type", "multipart/form-data; boundary=x")
            .body("\u{0}\u{1}garbage")
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_client_error() || res.status().is_success(),
            "{path}: {}",
            res.status()
        );
    }
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn english_is_one_click_away_and_sticks() {
    let app = spawn_app(Engine::Sqlite).await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("href=\"/?lang=en\""), "a visible switch");
    let res = app.client.get(app.url("/?lang=en")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("lang=en"));
    assert!(res.text().await.unwrap().contains("Send a tip about drugs"));
    let html = app
        .client
        .get(app.url("/status"))
        .header("cookie", "lang=en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Enter the 16-digit receipt code"));
    app.stop().await;
}

#[tokio::test]
async fn pages_send_strict_headers_and_weigh_under_30_kb() {
    let app = spawn_app(Engine::Sqlite).await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let html = res.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
        "nothing from another origin"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "no inline style"
    );
    assert!(!html.contains("<script>"), "no inline script");
    let css = app
        .client
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let js = app
        .client
        .get(app.url("/static/app.js"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let total = html.len() + css.len() + js.len();
    assert!(total < 30 * 1024, "page weighs {total} bytes");
    // With a province chosen (the largest page a resident sees), still under 30 KB.
    let big = app
        .client
        .post(app.url("/tips"))
        .multipart(
            Form::new()
                .text("province", "1")
                .text("action", "pick_province"),
        )
        .send()
        .await
        .unwrap();
    let big = crate::helpers::follow_filed(&app.client, &app.base, big)
        .await
        .text()
        .await
        .unwrap();
    assert!(big.contains("Phường Hoàn Kiếm"));
    let total = big.len() + css.len() + js.len();
    assert!(total < 30 * 1024, "page with communes weighs {total} bytes");
    app.stop().await;
}

#[tokio::test]
async fn limits_and_the_honeypot_answer_clearly_and_keep_the_text() {
    let app = spawn_app_with(Engine::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.submit_burst = 2;
        c.rate_limit.submit_per_hour = 2;
        c.rate_limit.check_burst = 1;
    })
    .await;
    let honey = Form::new()
        .text("category", "dealing")
        .text("description", "tin có ô bẫy")
        .text("website", "http://spam")
        .text("action", "submit");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(honey)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Ô cuối cùng phải để trống"));
    for _ in 0..2 {
        app.api_tip(tip_json("tin")).await;
    }
    let form = Form::new()
        .text("category", "dealing")
        .text("description", "tin thứ ba")
        .text("action", "submit");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let html = res.text().await.unwrap();
    assert!(html.contains("Bạn đã gửi quá nhiều lần"));
    assert!(html.contains("tin thứ ba"), "text kept");
    let res = app
        .client
        .post(app.url("/api/v1/tips"))
        .json(&tip_json("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(app.api_status("1234123412341234").await.status(), 404);
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", "1234123412341234")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Bạn đã tra cứu quá nhiều lần"));
    assert_eq!(app.raw_tip_ids().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn openapi_health_and_metrics_without_personal_data() {
    let app = spawn_app(Engine::Sqlite).await;
    app.api_tip(tip_json("đếm tôi")).await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/tips"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/tips/status"]["post"].is_object());
    assert!(doc["components"]["schemas"]["NewTip"].is_object());
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("tinbao_tips_total"), "{metrics}");
    assert!(metrics.contains("tinbao_http_request_duration_seconds_bucket"));
    assert!(!metrics.contains("127.0.0.1") && !metrics.contains("đếm tôi"));
    let communes: serde_json::Value = app
        .client
        .get(app.url("/api/v1/communes?province=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(communes.as_array().unwrap().iter().any(|c| c["code"] == 70));
    app.stop().await;
}

#[tokio::test]
async fn https_with_rustls_sends_hsts_and_secure_cookies() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let app = spawn_app_with(Engine::Sqlite, |c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let res = app.client.get(app.url("/?lang=en")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    let receipt = app.api_tip(tip_json("qua https")).await;
    assert_eq!(app.api_status(&receipt).await.status(), 200);
    app.stop().await;
}
