//! The real binary configured the way an operator writes it: every value through
//! `TINBAO_*` variables, with the digit-only ids, `+84…` numbers and tokens people really
//! use, on both engines.

use crate::fakes::twilio;
use crate::helpers::*;
use sqlx::Connection;
use std::time::Duration;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Twilio auth tokens are 32 hex characters; this one happens to be all digits.
const TOKEN: &str = "12345678901234567890123456789012";
const PUBLIC_URL: &str = "https://tinbao.xa.example.vn";

engine_test!(an_operators_environment_starts_the_server_and_its_numbers_stay_numbers);
async fn an_operators_environment_starts_the_server_and_its_numbers_stay_numbers(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::for_engine(engine).await;
    let tw = twilio::FakeTwilio::start(SID, TOKEN).await;
    let mut env = PgDb::env(&pg);
    env.extend([
        ("TINBAO_PUBLIC_URL", PUBLIC_URL),
        ("TINBAO_DB_POOL_SIZE", "6"),
        ("TINBAO_SLA__URGENT_MINUTES", "45"),
        // Zalo app ids are nineteen digits; the OA's keys may be digits too.
        ("TINBAO_ZALO__ENABLED", "true"),
        ("TINBAO_ZALO__APP_ID", "4318592736451029384"),
        ("TINBAO_ZALO__OA_SECRET_KEY", "0123456789012345678"),
        ("TINBAO_ZALO__APP_SECRET_KEY", "9876543210"),
        ("TINBAO_ZALO__API_URL", "http://127.0.0.1:9"),
        ("TINBAO_ZALO__OAUTH_URL", "http://127.0.0.1:9"),
        // A webhook-mode bot: the secret is digits, the token has its digit prefix.
        ("TINBAO_TELEGRAM__ENABLED", "true"),
        ("TINBAO_TELEGRAM__MODE", "webhook"),
        (
            "TINBAO_TELEGRAM__TOKEN",
            "7412345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        ),
        ("TINBAO_TELEGRAM__WEBHOOK_SECRET", "8472910365"),
        ("TINBAO_TELEGRAM__API_URL", "http://127.0.0.1:9"),
        // Twilio sends from a +84 number; gateway numbers bound to communes as a list.
        ("TINBAO_SMS__TWILIO__ENABLED", "yes"),
        ("TINBAO_SMS__TWILIO__ACCOUNT_SID", SID),
        ("TINBAO_SMS__TWILIO__AUTH_TOKEN", TOKEN),
        ("TINBAO_SMS__TWILIO__FROM", "+84900000000"),
        ("TINBAO_SMS__TWILIO__API_URL", tw.base.as_str()),
        (
            "TINBAO_SMS__NUMBERS",
            "[{number=\"+84900000070\", commune=70}]",
        ),
        ("TINBAO_BROADCAST__SMS_NUMBER", "+84900000070"),
        ("TINBAO_SMTP__USERNAME", "0912345678"),
        ("TINBAO_SMTP__PASSWORD", "20252025"),
        ("TINBAO_OUTBOX__BACKOFF_MS", "50"),
    ]);
    let server = Server::start(dir.path(), &env).await;

    // A resident texts a tip to the commune's number; the receipt comes back by SMS.
    let params = twilio::incoming_sms(
        SID,
        "SM0000000000000000000000000000cf01",
        "+84912345678",
        "+84900000070",
        "TIN Nhà số 12 ngõ 3 có người bán ma túy đá buổi tối",
    );
    let sig = twilio::sign(TOKEN, &format!("{PUBLIC_URL}/hooks/sms/twilio"), &params);
    let status = reqwest::Client::new()
        .post(format!("{}/hooks/sms/twilio", server.base))
        .header("X-Twilio-Signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(twilio::form_body(&params))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        200,
        "{}",
        std::fs::read_to_string(&server.log).unwrap()
    );
    let sent = tw.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(sent[0].0, "+84912345678");
    assert!(
        sent[0].1.chars().filter(char::is_ascii_digit).count() >= 10,
        "the reply carries the receipt: {:?}",
        sent[0].1
    );

    // The tip went to commune 70, as the list in the environment says.
    let communes: Vec<(Option<i64>,)> = match &pg {
        Some(pg) => {
            let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            sqlx::query_as("SELECT commune_code FROM tips")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        None => {
            let url = format!("sqlite://{}", dir.path().join("var/tinbao.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_as("SELECT commune_code FROM tips")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    };
    assert_eq!(communes, vec![(Some(70),)]);
    drop(server);
}
