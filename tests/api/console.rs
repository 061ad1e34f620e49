//! The police console through the real router, on every engine: access rules for every
//! route and role, CSRF, sessions, throttling, triage, hotline, injection.

use crate::console_support::*;
use crate::helpers::*;
use reqwest::StatusCode;
use tinbao::accounts::Role;
use tinbao::console::{route_specs, Access};

/// Who the table says may use a route. `None` means the route is not in this table: the
/// test fails, so a new route cannot land without a decision here.
fn allowed(method: &str, path: &str) -> Option<&'static [&'static str]> {
    const ALL: &[&str] = &[
        "officer",
        "chief",
        "province",
        "village_head",
        "admin",
        "other_officer",
        "statistics",
    ];
    const READERS: &[&str] = &["officer", "chief", "province", "admin"];
    const POLICE: &[&str] = &["officer", "chief"];
    const MANAGERS: &[&str] = &["chief", "admin"];
    const CAMPAIGN: &[&str] = &["officer", "chief", "village_head"];
    Some(match (method, path) {
        ("GET", "/console/login") | ("POST", "/console/login") => ALL,
        ("GET", "/console/password") | ("POST", "/console/password") => ALL,
        ("GET", "/console/totp") | ("POST", "/console/totp") => ALL,
        ("POST", "/console/logout") | ("POST", "/console/logout-everywhere") => ALL,
        ("GET", "/console") => ALL,
        ("GET", "/console/queue") | ("GET", "/console/events") => {
            &["officer", "chief", "province", "admin", "other_officer"]
        }
        ("GET", "/console/broadcasts") => &["officer", "chief", "village_head", "other_officer"],
        ("GET", "/console/broadcasts/new") | ("POST", "/console/broadcasts/new") => {
            &["chief", "village_head"]
        }
        ("GET", "/console/broadcasts/{broadcast}")
        | ("GET", "/console/broadcasts/{broadcast}/progress")
        | ("POST", "/console/broadcasts/{broadcast}/cancel")
        | ("GET", "/console/villages/{village}/poster") => CAMPAIGN,
        ("POST", "/console/broadcasts/{broadcast}/approve") => POLICE,
        ("POST", "/console/templates/{template}/delete") => &["chief", "village_head"],
        ("POST", "/console/broadcast-settings") => &["chief"],
        ("GET", "/console/tips/{id}") | ("GET", "/console/tips/{id}/photos/{photo}") => READERS,
        ("POST", "/console/tips/{id}/note") => READERS,
        ("POST", "/console/tips/{id}/status")
        | ("POST", "/console/tips/{id}/category")
        | ("POST", "/console/tips/{id}/assign")
        | ("POST", "/console/tips/{id}/message")
        | ("POST", "/console/tips/{id}/duplicate")
        | ("POST", "/console/tips/{id}/hold") => POLICE,
        ("POST", "/console/tips/{id}/transfer") => READERS,
        ("POST", "/console/tips/{id}/reward") => &["chief"],
        // Each reads its own commune's periods.
        ("GET", "/console/retention") => &["officer", "chief", "other_officer"],
        ("POST", "/console/retention") => &["chief"],
        ("GET", "/console/hotline")
        | ("POST", "/console/hotline")
        | ("GET", "/console/hotline/done") => &["officer", "chief", "other_officer"],
        ("GET", "/console/accounts") | ("POST", "/console/accounts") => MANAGERS,
        ("POST", "/console/accounts/{account}/disable")
        | ("POST", "/console/accounts/{account}/reset") => MANAGERS,
        ("GET", "/console/audit") => &["chief", "admin", "other_chief"],
        // Reports: each within its own scope (no commune asked: the account's own).
        ("GET", "/console/reports") | ("GET", "/console/reports/export") => &[
            "officer",
            "chief",
            "province",
            "admin",
            "other_officer",
            "statistics",
        ],
        ("GET", "/console/tracker") => &[
            "officer",
            "chief",
            "province",
            "admin",
            "village_head",
            "other_officer",
            "statistics",
        ],
        ("GET", "/console/tracker/villages/{village}") => &[
            "officer",
            "chief",
            "province",
            "admin",
            "village_head",
            "other_officer",
            "statistics",
        ],
        ("POST", "/console/tracker/villages/{village}") => POLICE,
        ("POST", "/console/tracker/target") => &["chief"],
        ("GET", "/console/reports/province") | ("GET", "/console/reports/province/export") => {
            &["province", "admin"]
        }
        _ => return None,
    })
}

fn form_for(path: &str, csrf: &str, other_tip: &str) -> Vec<(String, String)> {
    let mut f = vec![("csrf".to_owned(), csrf.to_owned())];
    let extra: &[(&str, &str)] = match path {
        "/console/tips/{id}/status" => &[("status", "triaged")],
        "/console/tips/{id}/category" => &[("category", "dealing"), ("priority", "high")],
        "/console/tips/{id}/assign" => &[("assignee", "")],
        "/console/tips/{id}/note" | "/console/tips/{id}/message" => &[("text", "ghi chú kiểm tra")],
        "/console/tips/{id}/transfer" => &[("commune", "70"), ("reason", "đúng địa bàn")],
        "/console/tips/{id}/reward" => &[("eligible", "1")],
        "/console/retention" => &[("months_cultivation", "6")],
        "/console/tips/{id}/hold" => &[
            ("action", "hold"),
            ("until", "2030-06-30"),
            ("reason", "vụ án đang điều tra"),
        ],
        "/console/hotline" => &[("category", "dealing"), ("description", "cuộc gọi")],
        "/console/accounts" => &[
            ("username", "new-officer"),
            ("display_name", "Mới"),
            ("role", "officer"),
            ("commune", "70"),
        ],
        "/console/password" => &[("password", "x"), ("password_again", "y")],
        "/console/broadcasts/new" => &[
            ("action", "preview"),
            ("title", "Tháng hành động"),
            ("text_vi", "Họp thôn 19h"),
            ("channel", "zalo"),
        ],
        "/console/broadcast-settings" => &[("approval", "on")],
        "/console/totp" => &[("code", "000000")],
        _ => &[],
    };
    f.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    if path == "/console/tips/{id}/duplicate" {
        f.push(("of".into(), other_tip.into()));
    }
    f
}

engine_test!(every_console_route_allows_or_denies_every_role_as_the_table_says);
async fn every_console_route_allows_or_denies_every_role_as_the_table_says(engine: Engine) {
    let app = spawn_app(engine).await;
    app.api_tip(tip_json("tin trong phường Hoàn Kiếm")).await;
    let mut with_photo = tip_json("tin có ảnh");
    with_photo["photos"] = serde_json::json!([base64_jpeg()]);
    app.api_tip(with_photo).await;
    let ids = app.raw_tip_ids().await;
    let tip = ids[1].clone();
    let other_tip = ids[0].clone();
    let photo = app.state.intake.store().attachments(&tip).await.unwrap()[0]
        .id
        .clone();
    let (target, _) = create_account(&app, Role::Officer, "target", None, Some(70)).await;

    // (name, role, province, commune) of every kind of user the table speaks of.
    let kinds: [(&str, Role, Option<i64>, Option<i64>); 7] = [
        ("officer", Role::Officer, None, Some(70)),
        ("chief", Role::Chief, None, Some(70)),
        ("province", Role::Province, Some(1), None),
        ("village_head", Role::VillageHead, None, Some(70)),
        ("admin", Role::Admin, None, None),
        // An officer of another commune (Phường Cửa Nam, also in Hà Nội).
        ("other_officer", Role::Officer, None, Some(73)),
        // The commune chairman: reports, never a tip.
        ("statistics", Role::Statistics, None, Some(70)),
    ];
    let mut users = Vec::new();
    for (name, role, province, commune) in kinds {
        users.push((name, login_as(&app, role, name, province, commune).await));
    }
    // A broadcast the village head wrote to its village, and a template of commune 70.
    let head = users.iter().find(|u| u.0 == "village_head").unwrap();
    let head = tinbao::accounts::Account::from_row(
        &app.state
            .intake
            .store()
            .account(&head.1.id)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let village = head.village_id.unwrap();
    let broadcast = app
        .state
        .broadcasts
        .create(
            &head,
            &tinbao::broadcast::Draft {
                title: "Tháng hành động".into(),
                texts: [("vi".to_string(), "Họp thôn 19h".to_string())].into(),
                transports: vec![tinbao::channels::Transport::ZALO],
                villages: vec![village],
                send_at: None,
            },
        )
        .await
        .unwrap()
        .id;
    app.state
        .intake
        .store()
        .insert_template(&tinbao::store::TemplateRow {
            id: "tpl1".into(),
            commune_code: 70,
            name: "26/6".into(),
            title: "Ngày 26/6".into(),
            texts: r#"{"vi":"Họp thôn"}"#.into(),
            transports: "zalo".into(),
            created_by: head.id.clone(),
            created_at: 0,
        })
        .await
        .unwrap();

    let mut spare = 0;
    let specs = route_specs();
    for spec in &specs {
        let Some(who) = allowed(spec.method.as_str(), spec.path) else {
            panic!(
                "{} {} has no row in the access table",
                spec.method, spec.path
            );
        };
        let path = spec
            .path
            .replace("{id}", &tip)
            .replace("{photo}", &photo)
            .replace("{account}", &target)
            .replace("{broadcast}", &broadcast)
            .replace("{template}", "tpl1")
            .replace("{village}", &village.to_string());
        for (name, main_user) in users.iter() {
            // Ending sessions: use a spare account of the same kind, keep the main one.
            let (client, csrf) = if spec.path.contains("logout") {
                let (_, role, province, commune) =
                    kinds.iter().find(|k| k.0 == *name).copied().unwrap();
                spare += 1;
                let (id, _) =
                    create_account(&app, role, &format!("spare{spare}"), province, commune).await;
                extra_session(&app, &id).await
            } else {
                (main_user.client.clone(), main_user.csrf.clone())
            };
            let user = Session { client, csrf };
            let is_get = spec.method.as_str() == "GET";
            if !is_get && spec.access != Access::Public {
                // Without the CSRF token: 403 whoever asks.
                let res = user
                    .client
                    .post(app.url(&path))
                    .form(&[("x", "1")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{name} {path} without CSRF"
                );
            }
            let res = if spec.path == "/console/login" && !is_get {
                // The login form carries its own double-submit token.
                let html = user
                    .client
                    .get(app.url("/console/login"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let pre = field(&html, "name=\"csrf\"").unwrap();
                user.client
                    .post(app.url(&path))
                    .form(&[
                        ("csrf", pre.as_str()),
                        ("username", "nobody"),
                        ("password", "wrong"),
                    ])
                    .send()
                    .await
                    .unwrap()
            } else if is_get {
                if spec.path == "/console/events" {
                    // A stream: only the status line matters.
                    tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        user.client.get(app.url(&path)).send(),
                    )
                    .await
                    .unwrap()
                    .unwrap()
                } else {
                    user.client.get(app.url(&path)).send().await.unwrap()
                }
            } else {
                user.client
                    .post(app.url(&path))
                    .form(&form_for(spec.path, &user.csrf, &other_tip))
                    .send()
                    .await
                    .unwrap()
            };
            let status = res.status();
            // Another commune's officer is refused every tip, broadcast and village of
            // commune 70 (its role would allow the route).
            let scoped = ["{id}", "{broadcast}", "{village}"]
                .iter()
                .any(|p| spec.path.contains(p));
            let expect_allowed = who.contains(name) && !(*name == "other_officer" && scoped);
            if expect_allowed {
                assert!(
                    status != StatusCode::FORBIDDEN && !status.is_server_error(),
                    "{name} may {} {path}: {status}",
                    spec.method
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} may not {} {path}",
                    spec.method
                );
            }
        }
    }
    app.stop().await;
}

struct Session {
    client: reqwest::Client,
    csrf: String,
}

fn base64_jpeg() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(jpeg_with_gps(40, 30))
}

engine_test!(triage_reply_hotline_and_the_tipster_sees_the_answer);
async fn triage_reply_hotline_and_the_tipster_sees_the_answer(engine: Engine) {
    let app = spawn_app(engine).await;
    let receipt = app.api_tip(tip_json("Có người bán ma túy ở chợ")).await;
    let dup_receipt = app
        .api_tip(tip_json("Cũng báo việc bán ma túy ở chợ"))
        .await;
    let ids = app.raw_tip_ids().await;
    let (tip, dup) = (ids[0].clone(), ids[1].clone());
    let chief = login_as(&app, Role::Chief, "chief", None, Some(70)).await;
    let officer = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let post = |u: &Officer, path: String, form: Vec<(&'static str, String)>| {
        let mut form = form;
        form.push(("csrf", u.csrf.clone()));
        let req = u.client.post(app.url(&path)).form(&form);
        async move { req.send().await.unwrap() }
    };

    let queue = officer
        .client
        .get(app.url("/console/queue"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(queue.contains(&format!("/console/tips/{tip}")));
    let page = officer
        .client
        .get(app.url(&format!("/console/tips/{tip}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Có người bán ma túy ở chợ"),
        "decrypted for the officer"
    );

    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/status"),
            vec![("status", "triaged".into())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/assign"),
            vec![("assignee", officer.id.clone())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/note"),
            vec![("text", "ghi chú nội bộ bí mật".into())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/message"),
            vec![("text", "Cảm ơn bạn, chúng tôi đang xác minh.".into())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{dup}/duplicate"),
            vec![("of", tip.clone())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/message"),
            vec![("text", "Đã bắt giữ đối tượng.".into())]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        post(
            &chief,
            format!("/console/tips/{tip}/reward"),
            vec![("eligible", "1".into())]
        )
        .await
        .status(),
        303
    );
    // A closed tip needs an outcome.
    let res = post(
        &officer,
        format!("/console/tips/{tip}/status"),
        vec![("status", "closed".into())],
    )
    .await;
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .contains("error=outcome_required"));
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{tip}/status"),
            vec![("status", "closed".into()), ("outcome", "actioned".into())]
        )
        .await
        .status(),
        303
    );

    let row = app.state.intake.store().tip(&tip).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.outcome.as_deref()),
        ("closed", Some("actioned"))
    );
    let triage = app
        .state
        .intake
        .store()
        .triage(&tip)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(triage.assignee_id.as_deref(), Some(officer.id.as_str()));
    assert!(triage.reward_eligible);

    // The tipster reads the answer and the reward note; the duplicate's tipster too.
    let v: serde_json::Value = app.api_status(&receipt).await.json().await.unwrap();
    assert_eq!(v["status"], "processed");
    assert_eq!(v["reward_eligible"], true);
    let texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Cảm ơn bạn, chúng tôi đang xác minh.",
            "Đã bắt giữ đối tượng."
        ]
    );
    let html = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str())])
        .send()
        .await
        .unwrap();
    let html = crate::helpers::follow_filed(&app.client, &app.base, html)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"reward\""));
    let v: serde_json::Value = app.api_status(&dup_receipt).await.json().await.unwrap();
    assert!(
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == "Đã bắt giữ đối tượng."),
        "the duplicate's tipster still gets answers"
    );

    // The tipster answers; it shows in the timeline.
    app.client
        .post(app.url("/status/reply"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("receipt", receipt.clone())
                .text("message", "Xe máy biển 29A"),
        )
        .send()
        .await
        .unwrap();
    let page = officer
        .client
        .get(app.url(&format!("/console/tips/{tip}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Xe máy biển 29A") && page.contains("ghi chú nội bộ bí mật"));
    // The conversation comes first; the changes follow apart, in words, without the
    // photo views and openings.
    let (talk, rest) = page.split_at(page.find("id=\"changes\"").expect("the changes"));
    let rest = &rest[..rest.find("</details>").unwrap()];
    assert!(talk.contains("Xe máy biển 29A"));
    assert!(rest.contains("Đã phân loại → Đã đóng (Đã xử lý)"), "{rest}");
    assert!(rest.contains("Đánh dấu đủ điều kiện khen thưởng"));
    assert!(!rest.contains("in_progress") && !rest.contains("actioned"));
    assert!(!page.contains("Xem ảnh") && !page.contains(">Mở tin báo"));

    // Every read and change is in the audit log, and the chain holds.
    let trail = app.state.intake.store().audit_for_tip(&tip).await.unwrap();
    let actions: Vec<&str> = trail.iter().map(|a| a.action.as_str()).collect();
    for a in [
        "tip.open",
        "tip.status",
        "tip.assign",
        "tip.note",
        "tip.message",
        "tip.reward",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
    assert!(
        trail.iter().all(|a| !a.detail.contains("ma túy")),
        "no tip content in the audit log"
    );
    assert!(tinbao::audit::verify(app.state.intake.store())
        .await
        .unwrap()
        .intact());

    // Hotline: the duty officer types a call and reads the receipt out.
    let res = post(
        &officer,
        "/console/hotline".into(),
        vec![
            ("category", "psychosis".into()),
            ("happening_now", "1".into()),
            ("description", "Người gọi báo có người ngáo đá".into()),
            ("submission", "0123456789abcdef0123456789abcdef".into()),
        ],
    )
    .await;
    let again = post(
        &officer,
        "/console/hotline".into(),
        vec![
            ("category", "psychosis".into()),
            ("happening_now", "1".into()),
            ("description", "Người gọi báo có người ngáo đá".into()),
            ("submission", "0123456789abcdef0123456789abcdef".into()),
        ],
    )
    .await;
    assert_eq!(again.status(), 303, "the same call sent twice");
    // The officer's client keeps cookies: the view cookie rides with the session's.
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/hotline/done");
    let res = officer
        .client
        .get(app.url("/console/hotline/done"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let hotline_receipt = element_text(&html, "receipt").unwrap();
    // Its reload shows no receipt.
    let reload = officer
        .client
        .get(app.url("/console/hotline/done"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!reload.contains(&hotline_receipt));
    let hotline_tips = app
        .state
        .intake
        .store()
        .queue(
            tinbao::store::QueueScope::Commune(70),
            &Default::default(),
            50,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.channel == "hotline")
        .count();
    assert_eq!(hotline_tips, 1, "[{engine:?}] one call, one tip");
    let v: serde_json::Value = app.api_status(&hotline_receipt).await.json().await.unwrap();
    assert_eq!(v["category"], "psychosis");
    let rows = app
        .state
        .intake
        .store()
        .queue(
            tinbao::store::QueueScope::Commune(70),
            &Default::default(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rows[0].channel, "hotline");
    assert_eq!(rows[0].priority, 0, "most urgent first");

    // Transfer to another commune: it leaves this queue.
    assert_eq!(
        post(
            &officer,
            format!("/console/tips/{}/transfer", rows[0].id),
            vec![
                ("commune", "73".into()),
                ("reason", "đúng địa bàn Cửa Nam".into())
            ]
        )
        .await
        .status(),
        303
    );
    let moved = app
        .state
        .intake
        .store()
        .tip(&rows[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.commune_code, Some(73));
    assert_eq!(
        officer
            .client
            .get(app.url(&format!("/console/tips/{}", rows[0].id)))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    app.stop().await;
}

engine_test!(the_queue_reads_at_a_glance_countdowns_overdue_count_and_assignee);
async fn the_queue_reads_at_a_glance_countdowns_overdue_count_and_assignee(engine: Engine) {
    let app = spawn_app(engine).await;
    app.api_tip(tip_json("Có người bán ma túy ở chợ")).await;
    app.api_tip(tip_json("Tụ điểm ở bãi đất trống")).await;
    let ids = app.raw_tip_ids().await;
    let now = tinbao::clock::now_ms();
    // One tip five minutes late, one due in three hours.
    app.exec(&format!(
        "UPDATE tips SET due_at = {} WHERE id = '{}'",
        now - 5 * 60_000 - 20_000,
        ids[0]
    ))
    .await;
    app.exec(&format!(
        "UPDATE tips SET due_at = {} WHERE id = '{}'",
        now + 3 * 3_600_000 + 20 * 60_000,
        ids[1]
    ))
    .await;
    let officer = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let queue = officer
        .client
        .get(app.url("/console/queue"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(queue.contains("quá hạn 5 phút"), "{queue}");
    assert!(queue.contains("còn 3 giờ"), "{queue}");
    assert!(queue.contains("id=\"overdue-count\""));
    assert!(queue.contains("QUÁ HẠN: <b>1</b>"), "{queue}");
    assert!(queue.contains("Chưa giao"), "an unassigned tip says so");
    // The filters fold away until one is set.
    assert!(queue.contains("<details class=\"filters-fold\" id=\"filters-fold\">"));
    let filtered = officer
        .client
        .get(app.url("/console/queue?overdue=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(filtered.contains("id=\"filters-fold\" open"));
    assert!(filtered.contains(&format!("/console/tips/{}", ids[0])));
    assert!(!filtered.contains(&format!("/console/tips/{}", ids[1])));
    app.stop().await;
}

engine_test!(province_officers_route_unplaced_tips_and_see_commune_counts);
async fn province_officers_route_unplaced_tips_and_see_commune_counts(engine: Engine) {
    let app = spawn_app(engine).await;
    let mut t = tip_json("tin chưa rõ xã");
    t["commune"] = serde_json::Value::Null;
    app.api_tip(t).await;
    app.api_tip(tip_json("tin ở Hoàn Kiếm")).await;
    let p = login_as(&app, Role::Province, "tinh", Some(1), None).await;
    let html = p
        .client
        .get(app.url("/console/queue"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids = app.raw_tip_ids().await;
    assert!(
        html.contains(&format!("/console/tips/{}", ids[0])),
        "the unplaced tip"
    );
    assert!(
        !html.contains(&format!("/console/tips/{}", ids[1])),
        "not the commune's tip"
    );
    assert!(html.contains("Phường Hoàn Kiếm"), "counts per commune");
    let res = p
        .client
        .post(app.url(&format!("/console/tips/{}/transfer", ids[0])))
        .form(&[
            ("csrf", p.csrf.as_str()),
            ("commune", "70"),
            ("reason", "địa chỉ thuộc Hoàn Kiếm"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        app.state
            .intake
            .store()
            .tip(&ids[0])
            .await
            .unwrap()
            .unwrap()
            .commune_code,
        Some(70)
    );
    // A commune in another province is refused.
    // Phường Thục Phán is in Cao Bằng, not Hà Nội.
    let res = p
        .client
        .post(app.url(&format!("/console/tips/{}/transfer", ids[0])))
        .form(&[
            ("csrf", p.csrf.as_str()),
            ("commune", "1273"),
            ("reason", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"f-tr\" name=\"reason\" maxlength=\"500\" value=\"x\""));
    // The picker without script: a province's communes by name, the reason kept.
    let res = p
        .client
        .post(app.url(&format!("/console/tips/{}/transfer", ids[0])))
        .form(&[
            ("csrf", p.csrf.as_str()),
            ("action", "pick"),
            ("province", "1"),
            ("reason", "giữ lý do này"),
        ])
        .send()
        .await
        .unwrap();
    // Answered by a redirect to the tip page (Back and reload never post it again).
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains("tp=1&kept=1"), "{to}");
    let res = p.client.get(app.url(&to)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<option value=\"70\">Phường Hoàn Kiếm</option>"),
        "{html}"
    );
    assert!(html.contains("value=\"giữ lý do này\""));
    // No commune chosen: refused, the reason kept.
    let res = p
        .client
        .post(app.url(&format!("/console/tips/{}/transfer", ids[0])))
        .form(&[
            ("csrf", p.csrf.as_str()),
            ("action", "transfer"),
            ("province", "1"),
            ("commune", ""),
            ("reason", "giữ lý do này"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("value=\"giữ lý do này\""));
    app.stop().await;
}

engine_test!(anything_a_tipster_typed_renders_inert_in_the_console);
async fn anything_a_tipster_typed_renders_inert_in_the_console(engine: Engine) {
    let app = spawn_app(engine).await;
    let payloads = [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "<style>body{display:none}</style>",
        "\"><iframe src=//evil>",
    ];
    let all = payloads.join(" ");
    let receipt = app
        .api_tip(serde_json::json!({
            "category": "other", "province": 1, "commune": 70,
            "village": payloads[0], "place_details": all, "occurred_at": payloads[1],
            "description": all, "contact": all
        }))
        .await;
    app.client
        .post(app.url("/status/reply"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("receipt", receipt)
                .text("message", all.clone()),
        )
        .send()
        .await
        .unwrap();
    let officer = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let id = app.raw_tip_ids().await[0].clone();
    for path in [format!("/console/tips/{id}"), "/console/queue".to_owned()] {
        let html = officer
            .client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for p in payloads {
            assert!(!html.contains(p), "{p} rendered raw on {path}");
        }
        assert!(
            !html.contains("<script>a")
                && !html.contains("<img src=x")
                && !html.contains("<iframe")
        );
    }
    let html = officer
        .client
        .get(app.url(&format!("/console/tips/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "shown as text"
    );
    app.stop().await;
}

engine_test!(sessions_expire_log_out_everywhere_and_failed_logins_lock_across_processes);
async fn sessions_expire_log_out_everywhere_and_failed_logins_lock_across_processes(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let a = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    assert_eq!(
        a.client
            .get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Idle for more than 30 minutes: back to the login page.
    app.exec(&format!(
        "UPDATE sessions SET last_seen_at = last_seen_at - {}",
        31 * 60_000
    ))
    .await;
    let res = a
        .client
        .get(app.url("/console/queue"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console/login");

    // A fresh login (a new TOTP step), then a 12-hour-old session ends too.
    let login = |c: reqwest::Client, password: String| {
        let app = &app;
        async move {
            let html = c
                .get(app.url("/console/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let pre = field(&html, "name=\"csrf\"").unwrap();
            c.post(app.url("/console/login"))
                .form(&[
                    ("csrf", pre.as_str()),
                    ("username", "officer"),
                    ("password", password.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let c1 = client();
    let res = login(c1.clone(), a.password.clone()).await;
    assert_eq!(
        res.headers()["location"],
        "/console/totp",
        "TOTP every time"
    );
    let html = c1
        .get(app.url("/console/totp"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = field(&html, "name=\"csrf\"").unwrap();
    // The code already used at enrolment cannot be replayed.
    let res = c1
        .post(app.url("/console/totp"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", totp_code(&a.secret).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = c1
        .post(app.url("/console/totp"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", next_totp_code(&a.secret).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console");
    assert_eq!(
        c1.get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.exec(&format!(
        "UPDATE sessions SET created_at = created_at - {}",
        13 * 3_600_000
    ))
    .await;
    assert_eq!(
        c1.get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );

    // Five wrong passwords lock the account, on this process and on another one.
    for _ in 0..5 {
        let res = login(client(), "sai mật khẩu".into()).await;
        assert_eq!(res.status(), 401);
        assert!(res
            .text()
            .await
            .unwrap()
            .contains("Sai tên đăng nhập hoặc mật khẩu."));
    }
    let res = login(client(), a.password.clone()).await;
    assert_eq!(res.status(), 429, "locked even with the right password");
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Đăng nhập sai quá nhiều lần"));
    let second = app.second_instance().await;
    let html = client()
        .get(second.url("/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("csrf"));
    let c2 = client();
    let html = c2
        .get(second.url("/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = field(&html, "name=\"csrf\"").unwrap();
    let res = c2
        .post(second.url("/console/login"))
        .form(&[
            ("csrf", pre.as_str()),
            ("username", "officer"),
            ("password", a.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        429,
        "the lock holds on another server process"
    );
    second.stop_keep_db().await;

    // Log out everywhere ends every session of the account.
    app.exec("DELETE FROM login_failures").await;
    let b = login_as(&app, Role::Chief, "chief", None, Some(70)).await;
    let c3 = client();
    let html = c3
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = field(&html, "name=\"csrf\"").unwrap();
    c3.post(app.url("/console/login"))
        .form(&[
            ("csrf", pre.as_str()),
            ("username", "chief"),
            ("password", b.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let res = b
        .client
        .post(app.url("/console/logout-everywhere"))
        .form(&[("csrf", b.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        b.client
            .get(app.url("/console/queue"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(
        c3.get(app.url("/console/totp"))
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "the other device's session is gone"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_creates_accounts_and_verifies_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_cli(
        dir.path(),
        &[
            "user",
            "add",
            "--role",
            "officer",
            "--commune",
            "70",
            "--name",
            "Nguyễn Văn A",
            "--email",
            "a@example.test",
            "an",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("one-time password: "));
    let (ok, out) = run_cli(
        dir.path(),
        &["user", "add", "--role", "officer", "--name", "B", "b"],
        &[],
    );
    assert!(!ok && out.contains("this role needs --commune"), "{out}");
    let (ok, out) = run_cli(dir.path(), &["user", "reset", "an"], &[]);
    assert!(ok && out.contains("one-time password: "), "{out}");
    let (ok, out) = run_cli(dir.path(), &["user", "disable", "an"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = run_cli(dir.path(), &["audit", "verify"], &[]);
    assert!(ok && out.contains("audit chain intact: 3 entries"), "{out}");
    // Edit one entry behind tinbao's back: verify names it.
    let db = dir.path().join("var/tinbao.db");
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET detail = 'sửa' WHERE seq = 2")
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, out) = run_cli(dir.path(), &["audit", "verify"], &[]);
    assert!(!ok && out.contains("broken at entry 2"), "{out}");
}
