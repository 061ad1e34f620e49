//! The repository API. One set of methods over SQLite and PostgreSQL: the SQL is shared
//! where both engines speak it (`$n` parameters, `ON CONFLICT`), and written per engine
//! where they differ. No other module writes SQL.

mod records;
mod writer;

pub use chat::{ChatSessionRow, InboxRow, NewInboxEvent, Sorted, TipContactRow};
pub use outbox::{
    DeliveryRow, NewOutboxRow, OutboxRow, OutboxStatus, PRIORITY_BULK, PRIORITY_FOLLOW_UP,
};

pub use records::*;
pub use writer::{InboxWriter, SettleWriter, TipWriter};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// What the repository answers: a value, or a [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in the repository. Services wrap it in their own errors; the web and
/// console edges turn those into answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused a statement or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A group-commit writer has stopped (the process is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    /// A group commit answered a different number of results than items (a bug).
    #[error("a batch commit answered {got} results for {expected} items")]
    BatchMismatch { expected: usize, got: usize },
}

impl StoreError {
    /// Whether a unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_unique_violation(e))
    }
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database behind every module.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite: one connection of its own for the group-commit writers ([`Store::for_writers`]).
    writers: Option<SqlitePool>,
    /// Held by every clone of a store whose SQLite checkpoints run in the background:
    /// the checkpointer stops once the last clone is gone.
    _checkpointer: Option<std::sync::Arc<()>>,
}

/// Who moves SQLite's write-ahead log into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// The connection that commits, once the log passes 1,000 pages (SQLite's default):
    /// for short-lived processes (the command line, tests' side stores).
    AtCommit,
    /// A task of the store's own, on a connection of its own, every 200 ms
    /// ([`CHECKPOINT_EVERY`]): a commit (a tip's) never waits for a checkpoint's writes
    /// and fsync, which on a large database took tens of milliseconds each (issue 14).
    /// For the server.
    Background,
}

/// Runs the same body against whichever pool the store holds.
macro_rules! on_pool {
    // A block: its `?`s convert into the function's `StoreError`, its value is returned as is.
    ($self:expr, $pool:ident => { $($body:tt)* }) => {
        match &$self.pool {
            Pool::Sqlite($pool) => { $($body)* },
            Pool::Postgres($pool) => { $($body)* },
        }
    };
    // One statement's sqlx result, turned into the store's.
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => $body.map_err($crate::store::StoreError::from),
            Pool::Postgres($pool) => $body.map_err($crate::store::StoreError::from),
        }
    };
}

/// Starts a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads first and writes after fails at once
/// with SQLITE_BUSY when another connection committed in between, whatever the busy
/// handler; an immediate one waits for its turn instead.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
           + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
           + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
           + Send {
        self.begin()
    }
}

mod audit;
mod broadcast;
mod chat;
mod lease;
mod outbox;
mod replay;
pub use audit::{
    AuditHead, AuditRecord, NewAuditEntry, RecordedHead, UnreadableAuditRow, AUDIT_HEAD_META,
};
pub use broadcast::{
    BroadcastRow, BroadcastStatus, CountRow, FanoutStep, NewBroadcast, NewSubscriber, ResultRow,
    Settle, SubscriberRow, TemplateRow,
};
pub use replay::PhotoGapRow;

pub mod alerts;

/// A list of names as SQL string literals (`'a','b'`) for an `IN (…)`; quotes are
/// dropped, and the names are ours (transports, ids), never a person's input.
fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an error is a unique-constraint violation.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// How a SQLite connection waits for another's write to end. SQLite's own handler (what
/// `busy_timeout` installs) sleeps 1, 2, 5, 10, … up to 100 ms between tries, so a write
/// that finds the database locked for a fraction of a millisecond (a group commit of the
/// tip or inbox writer) often waits tens of milliseconds. This one tries again every 50 µs
/// for the first 2 ms, then every millisecond, and gives up after about 10 s, as before.
extern "C" fn sqlite_busy(_: *mut std::ffi::c_void, tries: std::ffi::c_int) -> std::ffi::c_int {
    const FAST_TRIES: std::ffi::c_int = 40;
    if tries >= FAST_TRIES + 10_000 {
        return 0;
    }
    let micros = if tries < FAST_TRIES { 50 } else { 1_000 };
    std::thread::sleep(Duration::from_micros(micros));
    1
}

/// Makes a SQLite database's files readable by the service's user only, whatever the
/// umask: the main file is created 0600 before SQLite opens it (SQLite gives its `-wal`,
/// `-shm` and `-journal` files the main file's mode), and existing files are set to 0600.
fn private_sqlite_files(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file::memory:") {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the database file {}", path.display()))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = std::path::PathBuf::from(format!("{name}{suffix}"));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot make {} private", file.display()))
                }
            }
        }
    }
    Ok(())
}

/// Installs [`sqlite_busy`] on a new connection.
async fn set_busy_handler(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is a live connection, locked for this call; the handler is a
    // plain function and takes no data.
    unsafe {
        libsqlite3_sys::sqlite3_busy_handler(
            handle.as_raw_handle().as_ptr(),
            Some(sqlite_busy),
            std::ptr::null_mut(),
        );
    }
    Ok(())
}

/// The page cache of the writers' connection, in KiB (negative `cache_size`): the pages of
/// the tips' indexes that new tips land in stay in memory.
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// The size (bytes) SQLite's write-ahead log is cut back to after a checkpoint.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How often the background checkpointer copies the write-ahead log into the database.
/// A page that many commits changed in between (a page of a random-keyed index: receipts,
/// de-duplication keys) is copied once, not once per commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The log's length (frames, 4 KiB each) past which the checkpointer also restarts it.
/// Under steady writes a PASSIVE checkpoint never finds the log idle, so SQLite never
/// starts it over: it grew by 200 MB a second under full intake load. Each RESTART holds
/// writers back for some tens of milliseconds under a heavy writer (50–140 ms beside the
/// retention pass): at 32 MB they came every few seconds, a tip's 99th percentile.
const RESTART_AT_FRAMES: i64 = 32_768;

/// How long the checkpointer's RESTART waits for a commit in progress or for readers of
/// the old log before it gives up until its next turn; writers wait for it meanwhile.
const RESTART_WAIT: Duration = Duration::from_millis(25);

/// Starts the background checkpointer of a SQLite database ([`Checkpoints::Background`])
/// on a connection of its own. Every [`CHECKPOINT_EVERY`] a PASSIVE checkpoint copies
/// what the log holds into the database file and syncs it, without taking the write lock:
/// commits go on meanwhile. Once the log is longer than [`RESTART_AT_FRAMES`], a RESTART
/// checkpoint follows: it copies the little committed since, holding writers back for
/// that long (at most [`RESTART_WAIT`] waiting), and the next commit writes the log from
/// its beginning again (`journal_size_limit` cuts the file back). It stops when `alive`
/// can no longer be upgraded (every clone of the store is gone).
async fn spawn_checkpointer(
    opts: SqliteConnectOptions,
    alive: std::sync::Weak<()>,
) -> Result<(), sqlx::Error> {
    use sqlx::ConnectOptions;
    let mut conn = opts.busy_timeout(RESTART_WAIT).connect().await?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        while alive.upgrade().is_some() {
            tick.tick().await;
            let mut r: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await;
            if matches!(r, Ok((_, log, _)) if log > RESTART_AT_FRAMES) {
                let started = std::time::Instant::now();
                r = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
                    .fetch_one(&mut conn)
                    .await;
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint: the write-ahead log restarted"
                );
            }
            match r {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "checkpoint failed; trying again");
                }
                Err(_) => {}
            }
        }
        let _ = sqlx::Connection::close(conn).await;
    });
    Ok(())
}

/// Rows one multi-row statement writes at most: SQLite binds 32,766 values at most,
/// PostgreSQL 65,535; a tip binds 21, an inbox event 5 to 7.
const ROWS_PER_STATEMENT: usize = 1000;

/// The start of a statement inserting new tips: their columns, in the order [`TipRows`]
/// gives them (a macro, so that each engine's statement is one constant).
macro_rules! tip_insert {
    () => {
        "INSERT INTO tips (id, receipt_mac, channel, category, priority, status, \
         happening_now, province_code, commune_code, village_id, created_at, updated_at, due_at, \
         key_id, wrapped_key, description, place_details, village_text, occurred_at, contact, \
         closed_at) "
    };
}

/// PostgreSQL's: a column an array, the rows `UNNEST`ed (see [`TipRows`]).
const TIP_INSERT_UNNEST: &str = concat!(
    tip_insert!(),
    "SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::text[], $4::text[], $5::int8[], \
     $6::text[], $7::bool[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $11::int8[], \
     $12::int8[], $13::text[], $14::bytea[], $15::bytea[], $16::bytea[], $17::bytea[], \
     $18::bytea[], $19::bytea[], $20::int8[])"
);

/// Writes the rows of a batch of new tips, the way each engine takes many rows best.
trait TipRows {
    fn insert_tip_rows<'a>(
        &'a mut self,
        tips: &'a [&'a NewTipRecord],
    ) -> futures_util::future::BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// On SQLite a multi-row `VALUES`, at most [`ROWS_PER_STATEMENT`] rows a statement.
impl TipRows for sqlx::SqliteConnection {
    fn insert_tip_rows<'a>(
        &'a mut self,
        tips: &'a [&'a NewTipRecord],
    ) -> futures_util::future::BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            for chunk in tips.chunks(ROWS_PER_STATEMENT) {
                let mut rows = QueryBuilder::new(tip_insert!());
                rows.push_values(chunk, |mut b, t| {
                    b.push_bind(&t.id)
                        .push_bind(&t.receipt_mac)
                        .push_bind(t.channel)
                        .push_bind(t.category)
                        .push_bind(t.priority)
                        .push_bind(t.status)
                        .push_bind(t.happening_now)
                        .push_bind(t.province_code)
                        .push_bind(t.commune_code)
                        .push_bind(t.village_id)
                        .push_bind(t.created_at)
                        .push_bind(t.created_at)
                        .push_bind(t.due_at)
                        .push_bind(&t.key_id)
                        .push_bind(&t.wrapped_key)
                        .push_bind(&t.description)
                        .push_bind(&t.place_details)
                        .push_bind(&t.village_text)
                        .push_bind(&t.occurred_at)
                        .push_bind(&t.contact)
                        .push_bind(t.closed_at());
                });
                rows.build().execute(&mut *self).await?;
            }
            Ok(())
        })
    }
}

/// On PostgreSQL one statement whatever the batch's size: a column an array, the rows
/// `UNNEST`ed. A `VALUES` of as many rows as the batch was a new statement for every
/// batch size, parsed and planned each time (issue 15).
impl TipRows for sqlx::PgConnection {
    fn insert_tip_rows<'a>(
        &'a mut self,
        tips: &'a [&'a NewTipRecord],
    ) -> futures_util::future::BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            fn col<'t, T>(tips: &[&'t NewTipRecord], f: impl Fn(&'t NewTipRecord) -> T) -> Vec<T> {
                tips.iter().map(|t| f(t)).collect()
            }
            sqlx::query(TIP_INSERT_UNNEST)
                .bind(col(tips, |t| t.id.as_str()))
                .bind(col(tips, |t| t.receipt_mac.as_slice()))
                .bind(col(tips, |t| t.channel))
                .bind(col(tips, |t| t.category))
                .bind(col(tips, |t| t.priority))
                .bind(col(tips, |t| t.status))
                .bind(col(tips, |t| t.happening_now))
                .bind(col(tips, |t| t.province_code))
                .bind(col(tips, |t| t.commune_code))
                .bind(col(tips, |t| t.village_id))
                .bind(col(tips, |t| t.created_at))
                .bind(col(tips, |t| t.due_at))
                .bind(col(tips, |t| t.key_id.as_str()))
                .bind(col(tips, |t| t.wrapped_key.as_slice()))
                .bind(col(tips, |t| t.description.as_slice()))
                .bind(col(tips, |t| t.place_details.as_deref()))
                .bind(col(tips, |t| t.village_text.as_deref()))
                .bind(col(tips, |t| t.occurred_at.as_deref()))
                .bind(col(tips, |t| t.contact.as_deref()))
                .bind(col(tips, |t| t.closed_at()))
                .execute(&mut *self)
                .await?;
            Ok(())
        })
    }
}

impl Store {
    /// Opens the database named by `url` (`sqlite://path` or `postgres://…`), creating a
    /// SQLite file when missing.
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Store> {
        Store::connect_with(url, pool_size, Checkpoints::AtCommit).await
    }

    /// [`Store::connect`], with SQLite's checkpoints run as `checkpoints` says (PostgreSQL
    /// has a checkpointer of its own).
    pub async fn connect_with(
        url: &str,
        pool_size: u32,
        checkpoints: Checkpoints,
    ) -> anyhow::Result<Store> {
        use anyhow::Context;
        let mut checkpointer = None;
        let mut writers = None;
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).context("bad PostgreSQL URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(pool_size.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .context("cannot connect to PostgreSQL")?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .context("bad SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before a receipt is shown. The tip writer
                // batches commits so this costs one fsync per batch, not per tip.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // Deleted rows are overwritten, not left in free space (issue 14).
                .pragma("secure_delete", "on")
                // A log that grew (a long reader held checkpoints back) is cut back to
                // this size once it has been checkpointed.
                .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
                .busy_timeout(Duration::from_secs(10));
            let opts = match checkpoints {
                Checkpoints::AtCommit => opts,
                Checkpoints::Background => opts.pragma("wal_autocheckpoint", "0"),
            };
            private_sqlite_files(opts.get_filename())?;
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size.max(2))
                .after_connect(|conn, _| Box::pin(async move { set_busy_handler(conn).await }))
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("cannot open SQLite database {url}"))?;
            // The group-commit writers' own connection: SQLite empties a connection's page
            // cache whenever another connection wrote since its last transaction, so
            // writers taking turns on the pool's connections read every index page anew
            // from the file for each batch; one connection, the only one writing tips,
            // keeps its cache (issue 15).
            writers = Some(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| Box::pin(async move { set_busy_handler(conn).await }))
                    .connect_with(
                        opts.clone()
                            .pragma("cache_size", WRITER_CACHE_KIB.to_string()),
                    )
                    .await
                    .with_context(|| format!("cannot open SQLite database {url}"))?,
            );
            if checkpoints == Checkpoints::Background {
                let alive = std::sync::Arc::new(());
                spawn_checkpointer(opts, std::sync::Arc::downgrade(&alive))
                    .await
                    .with_context(|| format!("cannot open SQLite database {url}"))?;
                checkpointer = Some(alive);
            }
            Pool::Sqlite(pool)
        } else {
            anyhow::bail!("database URL must start with sqlite:// or postgres://");
        };
        Ok(Store {
            pool,
            writers,
            _checkpointer: checkpointer,
        })
    }

    /// The store the group-commit writers (tips, inbox events, settlements, the audit log)
    /// write through: on SQLite a connection of their own, whose page cache no other
    /// connection's write empties; on PostgreSQL the same pool.
    pub fn for_writers(&self) -> Store {
        match &self.writers {
            Some(w) => Store {
                pool: Pool::Sqlite(w.clone()),
                writers: None,
                _checkpointer: self._checkpointer.clone(),
            },
            None => self.clone(),
        }
    }

    /// The store a long maintenance job (the retention pass) writes through: on SQLite a
    /// connection of its own whose commits do not wait for the disk (`synchronous =
    /// NORMAL`). Each of the job's many short transactions holds the database's one write
    /// lock, and an fsync under it made tips wait for it; a crash now forgets at most the
    /// job's last transactions (the next pass does them again), and the next commit of
    /// a writer with `FULL` (a tip) puts them on disk with its own. On PostgreSQL the same
    /// pool.
    pub async fn for_maintenance(&self) -> StoreResult<Store> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let opts = (*p.connect_options())
                    .clone()
                    .synchronous(SqliteSynchronous::Normal);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| Box::pin(async move { set_busy_handler(conn).await }))
                    .connect_with(opts)
                    .await?;
                Ok(Store {
                    pool: Pool::Sqlite(pool),
                    writers: None,
                    _checkpointer: self._checkpointer.clone(),
                })
            }
            Pool::Postgres(_) => Ok(self.clone()),
        }
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// Applies the engine's migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        on_pool!(self, p => { sqlx::query("SELECT 1").execute(p).await.is_ok() })
    }

    /// Closes every connection (a clean shutdown).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    // ---- administrative units ----

    /// Loads the shipped provinces and communes when the tables are empty; returns how many
    /// communes the database holds.
    pub async fn ensure_admin_units(&self, units: &[AdminUnitRow]) -> StoreResult<i64> {
        let have: i64 = on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM communes").fetch_one(p).await)?;
        if have > 0 {
            return Ok(have);
        }
        let mut provinces: Vec<&AdminUnitRow> = Vec::new();
        for u in units {
            if provinces
                .last()
                .is_none_or(|p| p.province_code != u.province_code)
            {
                provinces.push(u);
            }
        }
        provinces.dedup_by_key(|u| u.province_code);
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut qb = QueryBuilder::new("INSERT INTO provinces (code, name, kind) ");
            qb.push_values(&provinces, |mut b, u| {
                b.push_bind(u.province_code).push_bind(&u.province_name).push_bind(&u.province_kind);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute(&mut *tx).await?;
            for chunk in units.chunks(500) {
                let mut qb = QueryBuilder::new("INSERT INTO communes (code, province_code, name, kind) ");
                qb.push_values(chunk, |mut b, u| {
                    b.push_bind(u.commune_code).push_bind(u.province_code)
                        .push_bind(&u.commune_name).push_bind(&u.commune_kind);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(units.len() as i64)
    }

    /// Every province, by code.
    pub async fn provinces(&self) -> StoreResult<Vec<Province>> {
        on_pool!(self, p => sqlx::query_as("SELECT code, name FROM provinces ORDER BY code").fetch_all(p).await)
    }

    /// Every commune, with its province, by province then name.
    pub async fn communes(&self) -> StoreResult<Vec<Commune>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT code, province_code, name FROM communes ORDER BY province_code, code"
        ).fetch_all(p).await)
    }

    /// A commune's villages, by name.
    pub async fn villages(&self, commune: i64) -> StoreResult<Vec<Village>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, commune_code, name FROM villages WHERE commune_code = $1 ORDER BY name"
        ).bind(commune).fetch_all(p).await)
    }

    /// Adds a village to a commune (idempotent); returns its id.
    pub async fn add_village(&self, commune: i64, name: &str) -> StoreResult<i64> {
        on_pool!(self, p => {
            sqlx::query("INSERT INTO villages (commune_code, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(commune).bind(name).execute(p).await?;
            sqlx::query_scalar("SELECT id FROM villages WHERE commune_code = $1 AND name = $2")
                .bind(commune).bind(name).fetch_one(p).await.map_err(Into::into)
        })
    }

    // ---- keys ----

    /// The stored KEK checks.
    pub async fn key_checks(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        on_pool!(self, p => sqlx::query_as("SELECT key_id, check_value FROM key_checks ORDER BY key_id").fetch_all(p).await)
    }

    /// Records a KEK check (once per key id).
    pub async fn add_key_check(&self, key_id: &str, check: &[u8], now: i64) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("INSERT INTO key_checks (key_id, check_value, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(key_id).bind(check).bind(now).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Forgets a retired KEK's check.
    pub async fn remove_key_check(&self, key_id: &str) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("DELETE FROM key_checks WHERE key_id = $1").bind(key_id).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// A value from the meta table.
    pub async fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        on_pool!(self, p => sqlx::query_scalar("SELECT value FROM meta WHERE name = $1").bind(name).fetch_optional(p).await)
    }

    /// Sets a value in the meta table.
    pub async fn set_meta(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        on_pool!(self, p => sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name).bind(value).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Up to `limit` tips whose data key is wrapped under another KEK than `current` (and
    /// not under a retention day's).
    pub async fn keys_to_rewrap(
        &self,
        current: &str,
        limit: i64,
    ) -> StoreResult<Vec<WrappedKeyRow>> {
        on_pool!(self, p => sqlx::query_as(
            // A retention day's KEK (`r…`) keeps its tips: it is deleted with them.
            "SELECT id, key_id, wrapped_key FROM tips WHERE key_id <> $1 AND key_id NOT LIKE 'r%' \
             AND wrapped_key IS NOT NULL LIMIT $2"
        ).bind(current).bind(limit).fetch_all(p).await)
    }

    /// Stores re-wrapped data keys in one transaction.
    pub async fn store_rewrapped(&self, rows: &[WrappedKeyRow]) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            for r in rows {
                sqlx::query("UPDATE tips SET key_id = $1, wrapped_key = $2 WHERE id = $3")
                    .bind(&r.key_id).bind(&r.wrapped_key).bind(&r.id).execute(&mut *tx).await?;
            }
            Ok(tx.commit().await?)
        })
    }

    /// How many tips still have a data key wrapped under `key_id`.
    pub async fn tips_under_key(&self, key_id: &str) -> StoreResult<i64> {
        on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM tips WHERE key_id = $1 AND wrapped_key IS NOT NULL")
            .bind(key_id).fetch_one(p).await)
    }

    // ---- tips ----

    /// Inserts tips in one transaction (the tip writer's batch): their rows in one
    /// statement ([`TipRows`]; a statement per tip was a round trip to SQLite's thread and
    /// back per tip, the most of intake's context switches, issue 15), then what some
    /// tips carry.
    pub async fn insert_tips(&self, tips: &[&NewTipRecord]) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            TipRows::insert_tip_rows(&mut *tx, tips).await?;
            for t in tips {
                for a in &t.attachments {
                    sqlx::query("INSERT INTO attachments (id, tip_id, message_id, created_at, content_type, size, body) VALUES ($1,$2,NULL,$3,$4,$5,$6)")
                        .bind(&a.id).bind(&t.id).bind(t.created_at).bind(&a.content_type).bind(a.size).bind(&a.body)
                        .execute(&mut *tx).await?;
                }
                if let Some(chat) = &t.chat {
                    sqlx::query("INSERT INTO tip_contacts (tip_id, transport, sender, address, created_at, last_inbound_at) VALUES ($1,$2,$3,$4,$5,$5)")
                        .bind(&t.id).bind(chat.contact.transport).bind(&chat.contact.sender).bind(&chat.contact.address)
                        .bind(t.created_at)
                        .execute(&mut *tx).await?;
                    outbox::insert_outbox_rows!(tx, &chat.outbox);
                    if let Some(inbox_id) = chat.inbox_id {
                        sqlx::query("DELETE FROM inbox WHERE id = $1").bind(inbox_id).execute(&mut *tx).await?;
                    }
                    if chat.photos_missing > 0 {
                        sqlx::query("INSERT INTO photo_gaps (id, tip_id, missing, created_at) VALUES ($1, $2, $3, $4)")
                            .bind(uuid::Uuid::new_v4().simple().to_string()).bind(&t.id)
                            .bind(chat.photos_missing).bind(t.created_at)
                            .execute(&mut *tx).await?;
                    }
                }
            }
            Ok(tx.commit().await?)
        })
    }

    /// The tip whose receipt has this MAC.
    pub async fn tip_by_receipt(&self, receipt_mac: &[u8]) -> StoreResult<Option<TipRow>> {
        on_pool!(self, p => sqlx::query_as(&format!("SELECT {TIP_COLUMNS} FROM tips WHERE receipt_mac = $1"))
            .bind(receipt_mac).fetch_optional(p).await)
    }

    /// A tip by id.
    pub async fn tip(&self, id: &str) -> StoreResult<Option<TipRow>> {
        on_pool!(self, p => sqlx::query_as(&format!("SELECT {TIP_COLUMNS} FROM tips WHERE id = $1"))
            .bind(id).fetch_optional(p).await)
    }

    /// A tip's messages, oldest first.
    pub async fn messages(&self, tip_id: &str) -> StoreResult<Vec<MessageRow>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, tip_id, author, created_at, body FROM tip_messages WHERE tip_id = $1 ORDER BY created_at, id"
        ).bind(tip_id).fetch_all(p).await)
    }

    /// Metadata of a tip's attachments (not their bytes), oldest first.
    pub async fn attachments(&self, tip_id: &str) -> StoreResult<Vec<AttachmentMeta>> {
        on_pool!(self, p => sqlx::query_as(
            "SELECT id, message_id, created_at, content_type, size FROM attachments WHERE tip_id = $1 ORDER BY created_at, id"
        ).bind(tip_id).fetch_all(p).await)
    }

    /// One attachment's sealed bytes, only if it belongs to `tip_id`.
    pub async fn attachment_body(&self, tip_id: &str, id: &str) -> StoreResult<Option<Vec<u8>>> {
        on_pool!(self, p => sqlx::query_scalar("SELECT body FROM attachments WHERE tip_id = $1 AND id = $2")
            .bind(tip_id).bind(id).fetch_optional(p).await)
    }

    /// Adds a message (and its photos) to a tip's conversation, in one transaction.
    pub async fn add_message(&self, m: &NewMessageRecord) -> StoreResult<()> {
        on_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO tip_messages (id, tip_id, author, created_at, body) VALUES ($1,$2,$3,$4,$5)")
                .bind(&m.id).bind(&m.tip_id).bind(m.author).bind(m.created_at).bind(&m.body)
                .execute(&mut *tx).await?;
            for a in &m.attachments {
                sqlx::query("INSERT INTO attachments (id, tip_id, message_id, created_at, content_type, size, body) VALUES ($1,$2,$3,$4,$5,$6,$7)")
                    .bind(&a.id).bind(&m.tip_id).bind(&m.id).bind(m.created_at).bind(&a.content_type).bind(a.size).bind(&a.body)
                    .execute(&mut *tx).await?;
            }
            // A message from the police is acting on the tip (kept for the reports).
            sqlx::query("UPDATE tips SET updated_at = $1, \
                 first_action_at = CASE WHEN $3 = 'police' THEN COALESCE(first_action_at, $1) ELSE first_action_at END \
                 WHERE id = $2").bind(m.created_at).bind(&m.tip_id).bind(m.author)
                .execute(&mut *tx).await?;
            outbox::insert_outbox_rows!(tx, &m.outbox);
            if m.photos_missing > 0 {
                sqlx::query("INSERT INTO photo_gaps (id, tip_id, missing, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(uuid::Uuid::new_v4().simple().to_string()).bind(&m.tip_id)
                    .bind(m.photos_missing).bind(m.created_at)
                    .execute(&mut *tx).await?;
            }
            Ok(tx.commit().await?)
        })
    }
}

mod accounts;
mod console;
pub use accounts::{AccountRow, SessionRow};
pub use console::{NoteRow, QueueFilter, QueueRow, QueueScope, TriageRow};

mod keys;
pub use keys::{KeyHolderRow, RewrappedKey};

mod backup;
pub use backup::SealedSample;

mod erasure;
pub use erasure::Swept;

mod retention;
pub use retention::{ClosedGroup, RetentionRule, ToWrapRow};

mod reports;
pub use reports::{CampaignCounts, ReportScope, TipGroup, TipSums, WaitRank};

mod tracker;
pub use tracker::AssessmentRow;
