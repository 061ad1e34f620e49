//! Officers' email alerts, sent to a real SMTP server on loopback (Python's aiosmtpd, its
//! Mailbox handler writing a maildir) and read back with Python's own email parser.

use crate::helpers::{
    engine_test, free_port, postgres_test, spawn_app_with, tip_json, Engine, TestApp,
};
use sqlx::Connection;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python with aiosmtpd (tests/run.sh exports it).
fn python() -> String {
    std::env::var("TINBAO_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// A real SMTP server on a loopback port, killed on drop.
pub(crate) struct SmtpSink {
    child: Child,
    pub(crate) port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// One message as it arrived.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Mail {
    /// The envelope recipients, as the server saw them.
    pub(crate) rcpt: String,
    pub(crate) subject: String,
    /// The decoded text body.
    pub(crate) body: String,
    /// The message as stored (headers and encoded body).
    pub(crate) raw: String,
    pub(crate) content_type: String,
    /// Attached files: name and content, base64.
    #[serde(default)]
    pub(crate) files: Vec<(String, String)>,
}

/// Reads every message in a maildir as JSON, decoded by Python's `email` package.
const READ_MAILDIR: &str = r#"
import base64, email, email.policy, json, mailbox, sys
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in sorted(box.keys()):
    raw = box.get_bytes(key)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    out.append({
        "rcpt": str(msg["X-RcptTo"]),
        "subject": str(msg["Subject"]),
        "body": part.get_content() if part is not None else "",
        "raw": raw.decode("utf-8", "replace"),
        "content_type": msg.get_content_type() + "; charset=" + str(msg.get_content_charset()),
        "files": [[a.get_filename(), base64.b64encode(a.get_content()).decode()]
                  for a in msg.iter_attachments()],
    })
print(json.dumps(out))
"#;

impl SmtpSink {
    /// Starts aiosmtpd on `port` and waits until it accepts connections.
    async fn start_on(port: u16) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (install python3-aiosmtpd, or set TINBAO_PYTHON)");
        let mut sink = SmtpSink {
            child,
            port,
            maildir,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = sink.child.try_wait() {
                panic!("aiosmtpd exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sink
    }

    pub(crate) async fn start() -> SmtpSink {
        SmtpSink::start_on(free_port()).await
    }

    /// Every message received so far.
    pub(crate) fn messages(&self) -> Vec<Mail> {
        if !self.maildir.join("new").exists() {
            return Vec::new();
        }
        let out = Command::new(python())
            .args(["-c", READ_MAILDIR])
            .arg(&self.maildir)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "reading the maildir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("maildir JSON")
    }

    /// Waits (at most 20 s) until at least `n` messages arrived; returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails = self.messages();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, got {}: {mails:?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Officers around commune 70 (Phường Hoàn Kiếm, Hà Nội): only the first two are alerted
/// for its tips, only the province account for tips that name no commune.
const ACCOUNTS: &str = "INSERT INTO accounts (id, username, display_name, email, role, \
    province_code, commune_code, password_hash, must_change_password, disabled, created_at, \
    updated_at) VALUES \
    ('a1', 'canbo1', 'Cán bộ 1', 'canbo1@hoankiem.test', 'officer', 1, 70, 'x', FALSE, FALSE, 0, 0), \
    ('a2', 'truongcongan', 'Trưởng Công an', 'truong@hoankiem.test', 'chief', 1, 70, 'x', FALSE, FALSE, 0, 0), \
    ('a3', 'nghiviec', 'Đã nghỉ', 'cu@hoankiem.test', 'officer', 1, 70, 'x', FALSE, TRUE, 0, 0), \
    ('a4', 'cuanam', 'Cửa Nam', 'canbo@cuanam.test', 'officer', 1, 73, 'x', FALSE, FALSE, 0, 0), \
    ('a5', 'truongthon', 'Tổ trưởng', 'to5@hoankiem.test', 'village_head', 1, 70, 'x', FALSE, FALSE, 0, 0), \
    ('a6', 'khongthu', 'Không thư', NULL, 'officer', 1, 70, 'x', FALSE, FALSE, 0, 0), \
    ('a7', 'tinh', 'Công an tỉnh', 'pc04@hanoi.test', 'province', 1, NULL, 'x', FALSE, FALSE, 0, 0)";

/// `overdue_alerted_at` of every tip, straight from the database.
async fn overdue_marks(app: &TestApp) -> Vec<Option<i64>> {
    let sql = "SELECT overdue_alerted_at FROM tips ORDER BY created_at";
    match app.engine {
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.config.database_url())
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.pg.as_ref().unwrap().url)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
        }
    }
}

/// Waits (at most 10 s) until the first tip is marked as alerted (the mark follows the
/// last send); returns every mark.
async fn wait_marked(app: &TestApp) -> Vec<Option<i64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let marks = overdue_marks(app).await;
        if marks[0].is_some() {
            return marks;
        }
        assert!(Instant::now() < deadline, "{:?}: never marked", app.engine);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn recipients(mails: &[Mail]) -> Vec<&str> {
    let mut r: Vec<&str> = mails.iter().map(|m| m.rcpt.as_str()).collect();
    r.sort();
    r
}

engine_test!(urgent_and_overdue_tips_alert_the_communes_officers_without_content);
async fn urgent_and_overdue_tips_alert_the_communes_officers_without_content(engine: Engine) {
    const CANARY: &str = "CANARY-5b1e Người ngáo đá cầm dao ở số 12";
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(engine, |c| {
        c.smtp.enabled = true;
        c.smtp.port = smtp.port;
        c.sla_clock_seconds = 1;
        c.public_url = "https://tinbao.example.vn/".into();
    })
    .await;
    app.exec(ACCOUNTS).await;

    let mut tip = tip_json(CANARY);
    tip["category"] = "psychosis".into();
    tip["happening_now"] = true.into();
    let receipt = app.api_tip(tip).await;

    let mails = smtp.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        ["canbo1@hoankiem.test", "truong@hoankiem.test"],
        "{engine:?}: the commune's active officer and chief only"
    );
    let digits: String = receipt.chars().filter(char::is_ascii_digit).collect();
    for m in &mails {
        assert_eq!(m.subject, "Có tin báo KHẨN tại Phường Hoàn Kiếm");
        assert_eq!(m.content_type, "text/plain; charset=utf-8");
        assert!(m.body.contains("Hoàn Kiếm"), "{}", m.body);
        assert!(
            m.body
                .lines()
                .any(|l| l.trim_end() == "https://tinbao.example.vn/console"),
            "the link on a line of its own: {}",
            m.body
        );
        for text in [&m.body, &m.raw, &m.subject] {
            assert!(!text.contains("CANARY"), "{engine:?}: tip text leaked");
            assert!(!text.contains(&receipt) && !text.contains(&digits));
            assert!(!text.contains("psychosis"), "no category beyond urgent");
        }
        // Decoded text only: short words could turn up inside base64 by chance.
        for text in [&m.body, &m.subject] {
            assert!(!text.contains("dao") && !text.contains("ngáo"));
        }
        let id = &app.raw_tip_ids().await[0];
        assert!(!m.raw.contains(id.as_str()), "no tip id in the mail");
    }

    // The SLA clock: past its deadline, one email per officer, once.
    app.exec("UPDATE tips SET due_at = 1").await;
    let mails = smtp.wait_for(4).await;
    let overdue: Vec<&Mail> = mails[2..].iter().collect();
    let mut to: Vec<&str> = overdue.iter().map(|m| m.rcpt.as_str()).collect();
    to.sort();
    assert_eq!(to, ["canbo1@hoankiem.test", "truong@hoankiem.test"]);
    for m in &overdue {
        assert_eq!(m.subject, "1 tin báo đã quá hạn xử lý tại Phường Hoàn Kiếm");
        assert!(m.body.contains("https://tinbao.example.vn/console"));
        assert!(m
            .body
            .starts_with("1 tin báo đã quá hạn xử lý tại Phường Hoàn Kiếm"));
        assert!(!m.raw.contains("CANARY") && !m.body.contains("CANARY"));
    }
    let marks = wait_marked(&app).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        smtp.messages().len(),
        4,
        "{engine:?}: no second overdue alert"
    );
    assert_eq!(overdue_marks(&app).await, marks, "the mark is not moved");

    // A tip naming no commune belongs to the province's queue.
    let mut tip = tip_json("Người lên cơn ngoài đường");
    tip["category"] = "psychosis".into();
    tip["happening_now"] = true.into();
    tip["commune"] = serde_json::Value::Null;
    app.api_tip(tip).await;
    let mails = smtp.wait_for(5).await;
    assert_eq!(mails[4].rcpt, "pc04@hanoi.test");
    assert_eq!(mails[4].subject, "Có tin báo KHẨN tại Thành phố Hà Nội");

    app.stop().await;
}

engine_test!(an_overdue_alert_waits_out_an_smtp_outage);
async fn an_overdue_alert_waits_out_an_smtp_outage(engine: Engine) {
    // Nothing listens on the port yet: every send fails.
    let port = free_port();
    let app = spawn_app_with(engine, |c| {
        c.smtp.enabled = true;
        c.smtp.port = port;
        c.sla_clock_seconds = 1;
    })
    .await;
    app.exec(ACCOUNTS).await;
    app.api_tip(tip_json("Bán ma túy ở quán nước")).await;
    app.exec("UPDATE tips SET due_at = 1").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        overdue_marks(&app).await,
        [None],
        "{engine:?}: not marked while mail fails"
    );

    let smtp = SmtpSink::start_on(port).await;
    let mails = smtp.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        ["canbo1@hoankiem.test", "truong@hoankiem.test"]
    );
    assert_eq!(
        mails[0].subject,
        "1 tin báo đã quá hạn xử lý tại Phường Hoàn Kiếm"
    );
    wait_marked(&app).await;
    app.stop().await;
}

postgres_test!(one_process_runs_the_sla_clock_on_a_shared_postgres);
async fn one_process_runs_the_sla_clock_on_a_shared_postgres() {
    let smtp = SmtpSink::start().await;
    let a = spawn_app_with(Engine::Postgres, |c| {
        c.smtp.enabled = true;
        c.smtp.port = smtp.port;
        c.sla_clock_seconds = 1;
    })
    .await;
    // A second server process on the same database (same keys, another port).
    let b = tinbao::Application::build(a.config.clone()).await.unwrap();
    let (stop_b, stopped) = tokio::sync::oneshot::channel::<()>();
    let b_task = tokio::spawn(b.run(async move {
        let _ = stopped.await;
    }));
    let url = a.pg.as_ref().unwrap().url.clone();
    let outsider = tinbao::store::Store::connect(&url, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lock = outsider.runner_lock(tinbao::store::alerts::SLA_CLOCK_LOCK);
    assert!(!lock.is_runner().await, "a running server holds the clock");
    drop(lock);

    a.exec(ACCOUNTS).await;
    a.api_tip(tip_json("Bán ma túy ở quán nước")).await;
    a.exec("UPDATE tips SET due_at = 1").await;
    let mails = smtp.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        ["canbo1@hoankiem.test", "truong@hoankiem.test"]
    );
    wait_marked(&a).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(smtp.messages().len(), 2, "one alert, not one per process");

    // The lock itself: one holder at a time, freed when its holder goes away.
    let key = 0x7465_7374; // not the clock's key: the servers above still run
    let mut first = outsider.runner_lock(key);
    let mut second = outsider.runner_lock(key);
    assert!(first.is_runner().await);
    assert!(!second.is_runner().await);
    assert!(first.is_runner().await, "the holder stays the runner");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !second.is_runner().await {
        assert!(Instant::now() < deadline, "the lock was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
    outsider.close().await;

    let _ = stop_b.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), b_task).await;
    a.stop().await;
}

#[tokio::test]
async fn on_sqlite_the_process_is_always_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = tinbao::store::Store::connect(&url, 2).await.unwrap();
    let mut first = store.runner_lock(1);
    let mut second = store.runner_lock(1);
    assert!(first.is_runner().await && second.is_runner().await);
    store.close().await;
}
