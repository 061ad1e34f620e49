//! The append-only audit log: every read of a decrypted tip and every change is an entry,
//! and each entry carries the hash of the one before it, so an entry edited or removed in
//! the database breaks the chain and `tinbao audit verify` names it.
//!
//! The hash is SHA-256 without a key: it detects edits and deletions made with SQL, not an
//! attacker who rewrites the rest of the chain and the recorded head after it.

use crate::store::{AuditRecord, NewAuditEntry, RecordedHead, Store, UnreadableAuditRow};
use ring::digest;
use std::fmt;
use tokio::sync::{mpsc, oneshot};

/// The previous hash of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// How many entries [`verify`] holds in memory at once.
pub const VERIFY_PAGE: i64 = 5_000;

/// Separates this hash from any other SHA-256 use, and versions the encoding.
const DOMAIN: &[u8] = b"tinbao.audit.v1";

/// The fields an entry's hash covers, in the order they are encoded.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    /// The entry's place in the chain.
    pub seq: i64,
    /// Unix time in milliseconds.
    pub at: i64,
    /// The account that acted, if any.
    pub actor_id: Option<&'a str>,
    /// The action's stable name.
    pub action: &'a str,
    /// The tip acted on, if any.
    pub tip_id: Option<&'a str>,
    /// The entry's province.
    pub province_code: Option<i64>,
    /// The entry's commune.
    pub commune_code: Option<i64>,
    /// Free text.
    pub detail: &'a str,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: &'a [u8],
}

impl<'a> EntryFields<'a> {
    /// The fields of a stored entry.
    pub fn of(r: &'a AuditRecord) -> EntryFields<'a> {
        EntryFields {
            seq: r.seq,
            at: r.at,
            actor_id: r.actor_id.as_deref(),
            action: &r.action,
            tip_id: r.tip_id.as_deref(),
            province_code: r.province_code,
            commune_code: r.commune_code,
            detail: &r.detail,
            prev_hash: &r.prev_hash,
        }
    }

    /// The canonical hash: SHA-256 over a domain tag and every field, integers as 8
    /// big-endian bytes, byte strings prefixed by their length, optional fields by a
    /// presence byte, so no two different entries share an encoding.
    pub fn hash(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        put_bytes(&mut ctx, DOMAIN);
        ctx.update(&self.seq.to_be_bytes());
        ctx.update(&self.at.to_be_bytes());
        put_opt_str(&mut ctx, self.actor_id);
        put_bytes(&mut ctx, self.action.as_bytes());
        put_opt_str(&mut ctx, self.tip_id);
        put_opt_int(&mut ctx, self.province_code);
        put_opt_int(&mut ctx, self.commune_code);
        put_bytes(&mut ctx, self.detail.as_bytes());
        put_bytes(&mut ctx, self.prev_hash);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

fn put_bytes(ctx: &mut digest::Context, b: &[u8]) {
    ctx.update(&(b.len() as u64).to_be_bytes());
    ctx.update(b);
}

fn put_opt_str(ctx: &mut digest::Context, s: Option<&str>) {
    match s {
        None => ctx.update(&[0]),
        Some(s) => {
            ctx.update(&[1]);
            put_bytes(ctx, s.as_bytes());
        }
    }
}

fn put_opt_int(ctx: &mut digest::Context, v: Option<i64>) {
    match v {
        None => ctx.update(&[0]),
        Some(v) => {
            ctx.update(&[1]);
            ctx.update(&v.to_be_bytes());
        }
    }
}

/// Why an audit entry was not written. A caller that was about to show or change
/// something refuses to, rather than act unaudited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused the entry.
    #[error("the audit entry could not be stored: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The writer task is gone (the process is shutting down).
    #[error("the audit writer has stopped")]
    WriterStopped,
    /// The store answered without the entry (a bug).
    #[error("the audit entry was not appended")]
    NotAppended,
}

/// Appends an entry to the audit log, stamped now, and returns its seq. When this returns
/// `Ok`, the entry is committed and chained.
///
/// `action` is a short stable name chosen by the caller (`tip.open`, `tip.status`,
/// `account.login`…). `detail` is free text for people reading the log: it must NOT hold
/// tipster content (descriptions, places, contacts, messages), since the log is stored in
/// clear; callers are responsible for that.
///
/// The entry gets a transaction of its own; a running server appends through
/// [`AuditLog`], which shares one transaction among concurrent entries.
pub async fn record(
    store: &Store,
    actor_id: Option<&str>,
    action: &str,
    tip_id: Option<&str>,
    province_code: Option<i64>,
    commune_code: Option<i64>,
    detail: &str,
) -> Result<i64, AuditError> {
    let entry = NewAuditEntry {
        at: crate::clock::now_ms(),
        actor_id,
        action,
        tip_id,
        province_code,
        commune_code,
        detail,
    };
    let stored = store
        .append_audit(&entry, |seq, prev_hash| entry_hash(&entry, seq, prev_hash))
        .await?;
    Ok(stored.seq)
}

/// The hash of `entry` at `seq` after `prev_hash`.
fn entry_hash(entry: &NewAuditEntry<'_>, seq: i64, prev_hash: &[u8]) -> Vec<u8> {
    EntryFields {
        seq,
        at: entry.at,
        actor_id: entry.actor_id,
        action: entry.action,
        tip_id: entry.tip_id,
        province_code: entry.province_code,
        commune_code: entry.commune_code,
        detail: entry.detail,
        prev_hash,
    }
    .hash()
    .to_vec()
}

/// Most entries the writer chains in one transaction.
const MAX_BATCH: usize = 256;

/// An entry handed to the writer, owned so it can cross tasks.
struct Pending {
    at: i64,
    actor_id: Option<String>,
    action: String,
    tip_id: Option<String>,
    province_code: Option<i64>,
    commune_code: Option<i64>,
    detail: String,
    done: oneshot::Sender<Result<i64, AuditError>>,
}

impl Pending {
    fn entry(&self) -> NewAuditEntry<'_> {
        NewAuditEntry {
            at: self.at,
            actor_id: self.actor_id.as_deref(),
            action: &self.action,
            tip_id: self.tip_id.as_deref(),
            province_code: self.province_code,
            commune_code: self.commune_code,
            detail: &self.detail,
        }
    }
}

/// The server's audit log: a group-commit writer over the chain.
///
/// Appends are serialized by the chain itself (each entry holds the previous one's hash),
/// so one fsynced transaction per entry makes concurrent requests queue behind each
/// other's disk writes. Instead, one task per process gathers the entries that arrive
/// while a transaction is committing and chains them all in the next one
/// ([`Store::append_audit_batch`]: same lock, head read inside the transaction), so the
/// chain stays one across processes. [`AuditLog::record`] answers each caller only once
/// its entry is committed.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task over `store` (in the current tokio runtime). It ends when
    /// every handle is dropped, after committing what it was given.
    pub fn spawn(store: Store) -> AuditLog {
        let store = store.for_writers();
        let (tx, mut rx) = mpsc::channel::<Pending>(MAX_BATCH * 16);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                commit(&store, &mut batch).await;
            }
        });
        AuditLog { tx }
    }

    /// Appends an entry, stamped now, and returns its seq once it is committed and
    /// chained: the same promise and the same rules for `action` and `detail` (never
    /// tipster content) as [`record`].
    pub async fn record(
        &self,
        actor_id: Option<&str>,
        action: &str,
        tip_id: Option<&str>,
        province_code: Option<i64>,
        commune_code: Option<i64>,
        detail: &str,
    ) -> Result<i64, AuditError> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            at: crate::clock::now_ms(),
            actor_id: actor_id.map(str::to_owned),
            action: action.to_owned(),
            tip_id: tip_id.map(str::to_owned),
            province_code,
            commune_code,
            detail: detail.to_owned(),
            done,
        };
        self.tx
            .send(pending)
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        answer.await.map_err(|_| AuditError::WriterStopped)?
    }
}

/// Commits one gathered batch and answers every caller in it.
async fn commit(store: &Store, batch: &mut Vec<Pending>) {
    let entries: Vec<NewAuditEntry<'_>> = batch.iter().map(Pending::entry).collect();
    let result = store.append_audit_batch(&entries, entry_hash).await;
    drop(entries);
    match result {
        Ok(records) => {
            for (p, r) in batch.drain(..).zip(records) {
                let _ = p.done.send(Ok(r.seq));
            }
        }
        Err(e) if batch.len() == 1 => {
            let p = batch.pop().expect("one entry");
            let _ = p.done.send(Err(e.into()));
        }
        Err(e) => {
            // The batch's transaction rolled back as a whole, so nothing of it is in the
            // chain. One bad entry must not fail the others: each is tried on its own.
            tracing::warn!(error = %e, entries = batch.len(), "audit batch failed; appending one by one");
            for p in batch.drain(..) {
                let r = store
                    .append_audit_batch(std::slice::from_ref(&p.entry()), entry_hash)
                    .await
                    .map_err(AuditError::from)
                    .and_then(|mut r| r.pop().map(|r| r.seq).ok_or(AuditError::NotAppended));
                let _ = p.done.send(r);
            }
        }
    }
}

/// How an entry broke the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// The entry's content no longer matches its hash (or does not decode).
    Changed,
    /// The entry is missing: a gap in the seqs, a link to a hash that is not the previous
    /// entry's, or a recorded head past the last entry.
    Removed,
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakKind::Changed => "changed",
            BreakKind::Removed => "removed",
        })
    }
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first entry that was changed or removed.
    pub seq: i64,
    /// Whether it was changed or removed.
    pub kind: BreakKind,
    /// What was found, for an operator.
    pub reason: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries read and found sound (those before the break, when there is one).
    pub checked: u64,
    /// The first break, or `None` when the chain is intact.
    pub broken: Option<Break>,
}

impl Verification {
    /// Whether the whole chain is intact.
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.broken {
            None => write!(f, "audit chain intact: {} entries", self.checked),
            Some(b) => write!(
                f,
                "audit chain broken at entry {}: {} ({})",
                b.seq, b.kind, b.reason
            ),
        }
    }
}

/// Walks the whole chain from the first entry and reports the first entry that was
/// changed or removed, reading [`VERIFY_PAGE`] entries at a time. Safe to run while the
/// server appends.
pub async fn verify(store: &Store) -> Result<Verification, AuditError> {
    verify_with_page_size(store, VERIFY_PAGE).await
}

/// [`verify`] with another page size (at least 1).
pub async fn verify_with_page_size(
    store: &Store,
    page_size: i64,
) -> Result<Verification, AuditError> {
    let page_size = page_size.max(1);
    // Read before the walk: every entry up to this head was committed before the walk
    // began, so each must be found.
    let head_before = store.audit_recorded_head().await?;
    let mut checked = 0u64;
    let mut expected = 1i64;
    let mut prev: Vec<u8> = GENESIS_HASH.to_vec();
    let mut last: Option<(i64, Vec<u8>)> = None;
    let broken = |checked, seq, kind, reason: String| {
        Ok(Verification {
            checked,
            broken: Some(Break { seq, kind, reason }),
        })
    };
    loop {
        let page = store.audit_after(expected - 1, page_size).await?;
        let n = page.len();
        for row in page {
            let r = match row {
                Ok(r) => r,
                Err(UnreadableAuditRow { seq, reason }) if seq == expected => {
                    return broken(
                        checked,
                        seq,
                        BreakKind::Changed,
                        format!("unreadable: {reason}"),
                    );
                }
                Err(UnreadableAuditRow { seq, .. }) => {
                    return broken(checked, expected, BreakKind::Removed, gap(expected, seq));
                }
            };
            if r.seq != expected {
                return broken(checked, expected, BreakKind::Removed, gap(expected, r.seq));
            }
            if r.hash.as_slice() != EntryFields::of(&r).hash() {
                return broken(
                    checked,
                    r.seq,
                    BreakKind::Changed,
                    "its content does not match its hash".into(),
                );
            }
            if r.prev_hash != prev {
                let what = if r.seq == 1 {
                    "it does not start the chain".to_owned()
                } else {
                    format!(
                        "it does not link to entry {}: an entry was removed or replaced",
                        r.seq - 1
                    )
                };
                return broken(checked, r.seq, BreakKind::Removed, what);
            }
            checked += 1;
            expected = r.seq + 1;
            prev = r.hash.clone();
            last = Some((r.seq, r.hash));
        }
        if (n as i64) < page_size {
            break;
        }
    }
    let last_seq = last.as_ref().map_or(0, |(s, _)| *s);
    match head_before {
        RecordedHead::Head(h) if h.seq > last_seq => {
            let reason = if h.seq == last_seq + 1 {
                format!("the newest entry {} is gone", h.seq)
            } else {
                format!("the newest entries {}..={} are gone", last_seq + 1, h.seq)
            };
            return broken(checked, last_seq + 1, BreakKind::Removed, reason);
        }
        RecordedHead::Head(h) => {
            // The walk found the entry at the recorded head; its hash must be the one
            // recorded with it, or it was rewritten together with its own hash.
            if h.seq == last_seq && last.as_ref().is_some_and(|(_, hash)| *hash != h.hash) {
                return broken(
                    checked,
                    h.seq,
                    BreakKind::Changed,
                    "it does not match the recorded head".into(),
                );
            }
        }
        RecordedHead::Missing | RecordedHead::Malformed => {}
    }
    // Read after the walk: every entry walked was committed with a head at least as far,
    // so a head behind the walk, or none, means the head record was tampered with.
    match store.audit_recorded_head().await? {
        RecordedHead::Missing if last_seq == 0 => {}
        RecordedHead::Head(h) if h.seq >= last_seq => {}
        RecordedHead::Head(h) => {
            return broken(
                checked,
                h.seq + 1,
                BreakKind::Changed,
                format!(
                    "entries {}..={last_seq} are past the recorded head {}",
                    h.seq + 1,
                    h.seq
                ),
            );
        }
        RecordedHead::Missing => {
            return broken(
                checked,
                last_seq + 1,
                BreakKind::Removed,
                "the recorded head is gone, so removed newest entries cannot be ruled out".into(),
            );
        }
        RecordedHead::Malformed => {
            return broken(
                checked,
                last_seq + 1,
                BreakKind::Changed,
                "the recorded head is unreadable".into(),
            );
        }
    }
    Ok(Verification {
        checked,
        broken: None,
    })
}

fn gap(expected: i64, found: i64) -> String {
    if found == expected + 1 {
        format!("entry {expected} is missing")
    } else {
        format!("entries {expected}..={} are missing", found - 1)
    }
}
