//! The audit log's rows: appending under a lock, so that concurrent writers (several
//! connections, several server processes) extend one chain, and reading in the orders the
//! console and the verifier need. The hash itself is the domain's business
//! (`crate::audit`); this module only stores what it is given.

use super::{Engine, Pool, Store, StoreResult};
use sqlx::{FromRow, QueryBuilder, Row};

/// The `meta` row that holds the newest entry's seq and hash, written in the same
/// transaction as the entry, so that deleting the newest entries is detected.
pub const AUDIT_HEAD_META: &str = "audit_head";

/// The PostgreSQL advisory-lock key that serializes appends across every process sharing
/// the database ("tinbaoAU").
const PG_AUDIT_LOCK: i64 = 0x7469_6e62_616f_4155;

/// How often an append is retried when another writer took the same seq. With the locks
/// below this does not happen; the retry guards against a writer that bypassed them.
const APPEND_ATTEMPTS: usize = 5;

/// Entries per `INSERT` statement of a batch (10 binds each).
const APPEND_CHUNK: usize = 100;

const AUDIT_COLUMNS: &str =
    "seq, at, actor_id, action, tip_id, province_code, commune_code, detail, prev_hash, hash";

/// An entry to append: everything but its place in the chain.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEntry<'a> {
    /// Unix time in milliseconds.
    pub at: i64,
    /// The account that acted; `None` for the system itself.
    pub actor_id: Option<&'a str>,
    /// A short stable name such as `tip.open`.
    pub action: &'a str,
    /// The tip acted on, if any.
    pub tip_id: Option<&'a str>,
    /// The province the entry belongs to, for scoped listings.
    pub province_code: Option<i64>,
    /// The commune the entry belongs to, for scoped listings.
    pub commune_code: Option<i64>,
    /// Free text, never tipster content.
    pub detail: &'a str,
}

/// A stored audit entry, as read back.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AuditRecord {
    /// The entry's place in the chain, from 1, without gaps.
    pub seq: i64,
    /// Unix time in milliseconds.
    pub at: i64,
    /// The account that acted; `None` for the system itself.
    pub actor_id: Option<String>,
    /// A short stable name such as `tip.open`.
    pub action: String,
    /// The tip acted on, if any.
    pub tip_id: Option<String>,
    /// The province the entry belongs to.
    pub province_code: Option<i64>,
    /// The commune the entry belongs to.
    pub commune_code: Option<i64>,
    /// Free text.
    pub detail: String,
    /// The previous entry's hash (32 zero bytes for the first).
    pub prev_hash: Vec<u8>,
    /// This entry's hash, as stored.
    pub hash: Vec<u8>,
}

/// A row whose columns could not be decoded (a column of the wrong type written behind
/// tinbao's back). The verifier reports it as changed instead of failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableAuditRow {
    /// The row's seq.
    pub seq: i64,
    /// The decoding error.
    pub reason: String,
}

/// The chain's head: the newest entry's seq and hash (seq 0 and no hash before the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The newest entry's seq.
    pub seq: i64,
    /// The newest entry's hash.
    pub hash: Vec<u8>,
}

impl AuditHead {
    /// The `meta` encoding: the seq as 8 big-endian bytes, then the hash.
    pub fn to_meta(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.hash.len());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v
    }

    /// Decodes [`AuditHead::to_meta`]; `None` when the bytes are not a seq and a
    /// 32-byte hash.
    pub fn from_meta(bytes: &[u8]) -> Option<AuditHead> {
        if bytes.len() != 8 + 32 {
            return None;
        }
        let (seq, hash) = bytes.split_at(8);
        let seq = i64::from_be_bytes(seq.try_into().ok()?);
        (seq > 0).then(|| AuditHead {
            seq,
            hash: hash.to_vec(),
        })
    }
}

/// What the `meta` table says about the chain's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedHead {
    /// No head recorded (an empty log, or the row was deleted).
    Missing,
    /// A head that does not decode.
    Malformed,
    /// The head as of the last append.
    Head(AuditHead),
}

impl Store {
    /// Appends one entry at the end of the chain and returns the stored record.
    ///
    /// `hash(seq, prev_hash)` must compute the entry's hash from `entry`, its seq and the
    /// previous entry's hash (32 zero bytes before the first); it is called while the
    /// append lock is held and may be called again if the append is retried.
    ///
    /// Appends are serialized: `BEGIN IMMEDIATE` takes SQLite's write lock before the head
    /// is read, and a transaction-scoped advisory lock does the same across every process
    /// on PostgreSQL. The new head is written to `meta` in the same transaction.
    pub async fn append_audit<F>(
        &self,
        entry: &NewAuditEntry<'_>,
        hash: F,
    ) -> StoreResult<AuditRecord>
    where
        F: Fn(i64, &[u8]) -> Vec<u8> + Send + Sync,
    {
        let mut stored = self
            .append_audit_batch(std::slice::from_ref(entry), |_, seq, prev| hash(seq, prev))
            .await?;
        Ok(stored.pop().expect("one entry appended"))
    }

    /// Appends `entries`, in order, at the end of the chain in one transaction, and
    /// returns their stored records: either every entry is committed, contiguous and
    /// chained, or none is.
    ///
    /// `hash(entry, seq, prev_hash)` computes an entry's hash as in
    /// [`Store::append_audit`]; the lock, the head read inside the transaction and the
    /// head written to `meta` are the same, so batches and single appends from any number
    /// of processes extend one chain. This is what the group-commit writer
    /// (`crate::audit::AuditLog`) uses: one fsync for many entries.
    pub async fn append_audit_batch<F>(
        &self,
        entries: &[NewAuditEntry<'_>],
        hash: F,
    ) -> StoreResult<Vec<AuditRecord>>
    where
        F: Fn(&NewAuditEntry<'_>, i64, &[u8]) -> Vec<u8> + Send + Sync,
    {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append_audit(entries, &hash).await {
                Err(e) if attempt < APPEND_ATTEMPTS && e.is_unique_violation() => continue,
                other => return other,
            }
        }
    }

    async fn try_append_audit<F>(
        &self,
        entries: &[NewAuditEntry<'_>],
        hash: &F,
    ) -> StoreResult<Vec<AuditRecord>>
    where
        F: Fn(&NewAuditEntry<'_>, i64, &[u8]) -> Vec<u8> + Send + Sync,
    {
        let engine = self.engine();
        on_pool!(self, p => {
            let mut tx = match engine {
                // IMMEDIATE: take the write lock before reading the head. A deferred
                // transaction that reads first could not upgrade once another connection
                // had written (SQLITE_BUSY without waiting).
                Engine::Sqlite => p.begin_with("BEGIN IMMEDIATE").await?,
                // The lock is taken with the BEGIN, in the same round trip.
                Engine::Postgres => {
                    p.begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({PG_AUDIT_LOCK})"))
                        .await?
                }
            };
            // The head is read under the lock, inside the transaction: another process may
            // have appended since this one last did. Recorded head and newest entry come
            // back in one row.
            let (meta, last_seq, last_hash): (Option<Vec<u8>>, Option<i64>, Option<Vec<u8>>) =
                sqlx::query_as(
                    "SELECT (SELECT value FROM meta WHERE name = $1), \
                     (SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), \
                     (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1)",
                )
                .bind(AUDIT_HEAD_META)
                .fetch_one(&mut *tx)
                .await?;
            let last = last_seq.zip(last_hash);
            let head = next_head(meta.as_deref(), last);
            let mut prev_hash = if head.seq == 0 { vec![0u8; 32] } else { head.hash };
            let mut records = Vec::with_capacity(entries.len());
            for (i, entry) in entries.iter().enumerate() {
                let seq = head.seq + 1 + i as i64;
                let new_hash = hash(entry, seq, &prev_hash);
                records.push(AuditRecord {
                    seq,
                    at: entry.at,
                    actor_id: entry.actor_id.map(str::to_owned),
                    action: entry.action.to_owned(),
                    tip_id: entry.tip_id.map(str::to_owned),
                    province_code: entry.province_code,
                    commune_code: entry.commune_code,
                    detail: entry.detail.to_owned(),
                    prev_hash: std::mem::replace(&mut prev_hash, new_hash.clone()),
                    hash: new_hash,
                });
            }
            let newest = records.last().expect("at least one entry");
            let new_head = AuditHead { seq: newest.seq, hash: newest.hash.clone() }.to_meta();
            // One statement per chunk rather than per entry; the chunk keeps the binds
            // (10 per row) under every engine's limit. On PostgreSQL the last chunk also
            // writes the new head (a data-modifying WITH), one round trip fewer.
            let chunks = records.len().div_ceil(APPEND_CHUNK);
            for (i, chunk) in records.chunks(APPEND_CHUNK).enumerate() {
                let with_head = engine == Engine::Postgres && i + 1 == chunks;
                let mut qb = QueryBuilder::new(if with_head { "WITH appended AS (" } else { "" });
                qb.push(format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) "));
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.seq).push_bind(r.at).push_bind(r.actor_id.as_deref())
                        .push_bind(r.action.as_str()).push_bind(r.tip_id.as_deref())
                        .push_bind(r.province_code).push_bind(r.commune_code)
                        .push_bind(r.detail.as_str()).push_bind(r.prev_hash.as_slice())
                        .push_bind(r.hash.as_slice());
                });
                if with_head {
                    qb.push(") INSERT INTO meta (name, value) VALUES (")
                        .push_bind(AUDIT_HEAD_META)
                        .push(", ")
                        .push_bind(new_head.as_slice())
                        .push(") ON CONFLICT (name) DO UPDATE SET value = excluded.value");
                }
                qb.build().execute(&mut *tx).await?;
            }
            if engine == Engine::Sqlite {
                sqlx::query(
                    "INSERT INTO meta (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .bind(AUDIT_HEAD_META)
                .bind(new_head.as_slice())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(records)
        })
    }

    /// Up to `limit` entries with seq greater than `after_seq`, in seq order: one page of
    /// a walk over the whole log. A row that does not decode comes back as
    /// [`UnreadableAuditRow`] rather than failing the page.
    pub async fn audit_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Result<AuditRecord, UnreadableAuditRow>>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        on_pool!(self, p => {
            let rows = sqlx::query(&sql).bind(after_seq).bind(limit.max(0)).fetch_all(p).await?;
            rows.iter()
                .map(|row| match AuditRecord::from_row(row) {
                    Ok(r) => Ok(Ok(r)),
                    // The seq is the primary key (SQLite's rowid), so it always decodes;
                    // anything else that does not is reported against it.
                    Err(e) => row
                        .try_get::<i64, _>("seq")
                        .map(|seq| Err(UnreadableAuditRow { seq, reason: e.to_string() })),
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Every entry about one tip, in seq order.
    pub async fn audit_for_tip(&self, tip_id: &str) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tip_id = $1 ORDER BY seq");
        on_pool!(self, p => sqlx::query_as(&sql).bind(tip_id).fetch_all(p).await)
    }

    /// Every entry about one tip but those of one action (the console's timeline leaves
    /// out `tip.open`, which a busy tip gathers by the hundred), in seq order.
    pub async fn audit_for_tip_except(
        &self,
        tip_id: &str,
        action: &str,
    ) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tip_id = $1 AND action <> $2 ORDER BY seq"
        );
        on_pool!(self, p => sqlx::query_as(&sql).bind(tip_id).bind(action).fetch_all(p).await)
    }

    /// Up to `limit` entries in a scope, newest first: those of `commune_code` when given,
    /// and of `province_code` when given (both: both must match; neither: every entry).
    /// `before_seq` continues a listing below the last seq already shown.
    pub async fn audit_for_scope(
        &self,
        province_code: Option<i64>,
        commune_code: Option<i64>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        on_pool!(self, p => {
            // Conditions are added only when given, so the (commune_code, seq) index
            // serves the common commune listing.
            let mut qb = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
            if let Some(c) = commune_code {
                qb.push(" AND commune_code = ").push_bind(c);
            }
            if let Some(pc) = province_code {
                qb.push(" AND province_code = ").push_bind(pc);
            }
            if let Some(b) = before_seq {
                qb.push(" AND seq < ").push_bind(b);
            }
            qb.push(" ORDER BY seq DESC LIMIT ").push_bind(limit.max(0));
            qb.build_query_as().fetch_all(p).await.map_err(Into::into)
        })
    }

    /// The newest entry, if any.
    pub async fn audit_last(&self) -> StoreResult<Option<AuditRecord>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1");
        on_pool!(self, p => sqlx::query_as(&sql).fetch_optional(p).await)
    }

    /// The head recorded in `meta` by the last append.
    pub async fn audit_recorded_head(&self) -> StoreResult<RecordedHead> {
        Ok(match self.meta(AUDIT_HEAD_META).await? {
            None => RecordedHead::Missing,
            Some(bytes) => {
                AuditHead::from_meta(&bytes).map_or(RecordedHead::Malformed, RecordedHead::Head)
            }
        })
    }
}

/// Where the next entry goes: after whichever of the recorded head and the newest row is
/// further along. Following the recorded head when rows past it were deleted leaves a gap,
/// so the deletion stays detectable after later appends.
fn next_head(meta: Option<&[u8]>, last: Option<(i64, Vec<u8>)>) -> AuditHead {
    let recorded = meta.and_then(AuditHead::from_meta);
    if meta.is_some() && recorded.is_none() {
        tracing::error!("the recorded audit head is malformed; chaining on the newest entry");
    }
    let last = last.map(|(seq, hash)| AuditHead { seq, hash });
    match (recorded, last) {
        (Some(r), Some(l)) if l.seq > r.seq => l,
        (Some(r), _) => r,
        (None, Some(l)) => l,
        (None, None) => AuditHead {
            seq: 0,
            hash: Vec::new(),
        },
    }
}
