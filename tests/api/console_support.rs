//! Logging into the console as a person would: password, forced change, TOTP.

#![allow(dead_code)]

use crate::helpers::TestApp;
use tinbao::accounts::{self, NewAccount, Role};

/// A logged-in console user.
pub struct Officer {
    pub client: reqwest::Client,
    pub csrf: String,
    pub id: String,
    pub username: String,
    pub password: String,
    pub secret: Vec<u8>,
}

/// The value of a hidden input or element with this name/id in a page.
pub fn field(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    if let Some(v) = rest.find("value=\"") {
        let v = &rest[v + 7..];
        return Some(v[..v.find('"')?].to_owned());
    }
    None
}

/// The text of the element with this id.
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].trim().to_owned())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Creates an account (as `tinbao user add` would).
pub async fn create_account(
    app: &TestApp,
    role: Role,
    username: &str,
    province: Option<i64>,
    commune: Option<i64>,
) -> (String, String) {
    let store = app.state.intake.store();
    let village = match (role, commune) {
        (Role::VillageHead, Some(c)) => Some(store.add_village(c, "Thôn Đông").await.unwrap()),
        _ => None,
    };
    let (account, password) = accounts::create(
        store,
        app.state.intake.geo(),
        NewAccount {
            username: username.into(),
            display_name: format!("Cán bộ {username}"),
            email: Some(format!("{username}@example.test")),
            role,
            province_code: province,
            commune_code: commune,
            village_id: village,
        },
    )
    .await
    .unwrap();
    (account.id, password)
}

/// A current TOTP code for a raw secret.
pub fn totp_code(secret: &[u8]) -> String {
    let totp = accounts::totp(secret, "x").unwrap();
    totp.generate_current().unwrap()
}

/// The code for the next time step (a fresh step, so it is not a replay).
pub fn next_totp_code(secret: &[u8]) -> String {
    let totp = accounts::totp(secret, "x").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + 30)
}

/// Creates an account and walks the whole first login: password, new password, TOTP.
pub async fn login_as(
    app: &TestApp,
    role: Role,
    username: &str,
    province: Option<i64>,
    commune: Option<i64>,
) -> Officer {
    let (id, one_time) = create_account(app, role, username, province, commune).await;
    let c = client();
    let html = c
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = field(&html, "name=\"csrf\"").unwrap();
    let res = c
        .post(app.url("/console/login"))
        .form(&[
            ("csrf", pre.as_str()),
            ("username", username),
            ("password", one_time.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "login answers a redirect");
    assert_eq!(
        res.headers()["location"],
        "/console/password",
        "first login forces a new password"
    );
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let html = c
        .get(app.url("/console/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = field(&html, "name=\"csrf\"").unwrap();
    let password = format!("mật khẩu mới của {username}");
    let mut res = c
        .post(app.url("/console/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("password", password.as_str()),
            ("password_again", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let mut secret = Vec::new();
    if role.reads_tips() {
        assert_eq!(
            res.headers()["location"],
            "/console/totp",
            "TOTP enrolment is required"
        );
        let html = c
            .get(app.url("/console/totp"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("data:image/png;base64,"), "a QR code");
        let text = element_text(&html, "totp-secret").unwrap();
        assert!(text.contains(' '), "the secret is grouped: {text}");
        secret = totp_rs::Secret::Encoded(text.replace(' ', ""))
            .to_bytes()
            .unwrap();
        res = c
            .post(app.url("/console/totp"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("code", totp_code(&secret).as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
    }
    assert_eq!(res.headers()["location"], "/console");
    // The TOTP step gave the session a new id, and with it a new CSRF token.
    let html = c
        .get(app.url("/console/password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = field(&html, "name=\"csrf\"").unwrap();
    Officer {
        client: c,
        csrf,
        id,
        username: username.into(),
        password,
        secret,
    }
}

/// Another full session for an account, as if it logged in on a second device.
pub async fn extra_session(app: &TestApp, account_id: &str) -> (reqwest::Client, String) {
    let (token, csrf) = session_token(app, account_id).await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("tinbao_console={token}; Path=/console"),
        &app.base.parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    (client, csrf)
}

/// A full session for an account (as after password and TOTP): its cookie value
/// (`tinbao_console`, path `/console`) and CSRF token.
pub async fn session_token(app: &TestApp, account_id: &str) -> (String, String) {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let csrf = uuid::Uuid::new_v4().simple().to_string();
    let now = tinbao::clock::now_ms();
    app.state
        .intake
        .store()
        .insert_session(&tinbao::store::SessionRow {
            token_hash: ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
                .as_ref()
                .to_vec(),
            account_id: account_id.to_owned(),
            stage: "full".into(),
            csrf: csrf.clone(),
            created_at: now,
            last_seen_at: now,
        })
        .await
        .unwrap();
    (token, csrf)
}
