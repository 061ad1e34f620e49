//! The key file: key-encryption keys (KEKs) by id, the current one, and the MAC key used
//! for receipts and pseudonyms. It lives outside the database, mode 0600.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::LessSafeKey;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What can go wrong reading or writing the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file is malformed: {0}")]
    Malformed(String),
    #[error("{0}")]
    Refused(String),
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    current: String,
    mac: String,
    kek: BTreeMap<String, String>,
}

/// The KEK part of a ring: every KEK by id and the current one. A running server swaps
/// it whole when its key file changes; readers work on a snapshot.
pub(super) struct Keks {
    current: String,
    raw: BTreeMap<String, [u8; 32]>,
    keks: BTreeMap<String, LessSafeKey>,
}

impl Keks {
    fn new(current: String, raw: BTreeMap<String, [u8; 32]>) -> Self {
        let keks = raw
            .iter()
            .map(|(id, k)| (id.clone(), super::aes_key(k)))
            .collect();
        Keks { current, raw, keks }
    }

    pub(super) fn current(&self) -> (&str, &LessSafeKey) {
        (&self.current, &self.keks[&self.current])
    }

    pub(super) fn kek(&self, id: &str) -> Option<&LessSafeKey> {
        self.keks.get(id)
    }
}

/// Counts a data key wrapped for a new tip until the tip's key is dropped (after its
/// write), so a process can tell which KEKs it still has writes in flight under.
pub(super) struct WrapGuard(Arc<AtomicUsize>);

impl Drop for WrapGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds the key file's lock (an exclusive lock on `<key file>.lock`) while it lives:
/// whoever reads, changes and writes the key file (a key command, the retention pass)
/// does it under this lock, so no change is lost to another's.
pub struct KeyFileLock(std::fs::File);

impl KeyFileLock {
    /// Waits for the lock of the key file at `path`.
    pub fn take(path: &Path) -> Result<KeyFileLock, KeyFileError> {
        let lock = path.with_extension("lock");
        let err = |source| KeyFileError::Write {
            path: lock.display().to_string(),
            source,
        };
        if let Some(dir) = lock.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&lock).map_err(err)?;
        file.lock().map_err(err)?;
        Ok(KeyFileLock(file))
    }
}

impl Drop for KeyFileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The current KEK before the reload.
    pub previous: String,
    /// The current KEK after it.
    pub current: String,
    /// KEK ids the new file added.
    pub added: Vec<String>,
    /// KEK ids the new file no longer holds.
    pub removed: Vec<String>,
}

/// The keys in force: every KEK still needed, the current one, and the MAC key. The KEKs
/// can be replaced while the ring is shared ([`KeyRing::reload_from`]); the MAC key and
/// the account key derived from it never change for the life of the ring.
pub struct KeyRing {
    keks: RwLock<Arc<Keks>>,
    /// New-tip data keys wrapped and not yet dropped, by KEK id.
    wrapping: Mutex<BTreeMap<String, Arc<AtomicUsize>>>,
    mac_raw: [u8; 32],
    mac: hmac::Key,
    /// Seals account secrets (TOTP); derived from the MAC key so KEK rotation leaves it be.
    account: LessSafeKey,
}

fn decode_key(name: &str, b64: &str) -> Result<[u8; 32], KeyFileError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| KeyFileError::Malformed(format!("{name} is not base64")))?;
    bytes
        .try_into()
        .map_err(|_| KeyFileError::Malformed(format!("{name} is not 32 bytes")))
}

impl KeyRing {
    fn build(current: String, raw: BTreeMap<String, [u8; 32]>, mac_raw: [u8; 32]) -> Self {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"tinbao/v1").extract(&mac_raw);
        let okm = prk
            .expand(&[b"account secrets"], &ring::aead::AES_256_GCM)
            .expect("HKDF output of one AES key");
        KeyRing {
            keks: RwLock::new(Arc::new(Keks::new(current, raw))),
            wrapping: Mutex::new(BTreeMap::new()),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &mac_raw),
            account: LessSafeKey::new(ring::aead::UnboundKey::from(okm)),
            mac_raw,
        }
    }

    /// A new ring with one fresh KEK (`k1`) and a fresh MAC key.
    pub fn generate() -> Self {
        let mut raw = BTreeMap::new();
        raw.insert("k1".to_owned(), super::random_bytes());
        Self::build("k1".into(), raw, super::random_bytes())
    }

    /// Parses the key file's TOML text.
    pub fn from_toml(text: &str) -> Result<Self, KeyFileError> {
        let file: KeyFile =
            toml::from_str(text).map_err(|e| KeyFileError::Malformed(e.message().to_owned()))?;
        let mut raw = BTreeMap::new();
        for (id, b64) in &file.kek {
            if id.is_empty() || id.contains(',') {
                return Err(KeyFileError::Malformed(format!("bad key id {id:?}")));
            }
            raw.insert(id.clone(), decode_key(&format!("kek.{id}"), b64)?);
        }
        if !raw.contains_key(&file.current) {
            return Err(KeyFileError::Malformed(format!(
                "current key {} is not in [kek]",
                file.current
            )));
        }
        let mac = decode_key("mac", &file.mac)?;
        Ok(Self::build(file.current, raw, mac))
    }

    /// The key file's TOML text.
    pub fn to_toml(&self) -> String {
        let snap = self.snapshot();
        let file = KeyFile {
            current: snap.current.clone(),
            mac: B64.encode(self.mac_raw),
            kek: snap
                .raw
                .iter()
                .map(|(id, k)| (id.clone(), B64.encode(k)))
                .collect(),
        };
        format!(
            "# tinbao key file. Keep it secret and keep a copy offline:\n\
             # without it no tip in the database can ever be read again.\n{}",
            toml::to_string(&file).expect("key file serialises")
        )
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Writes the key file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let err = |source| KeyFileError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(err)?;
            f.write_all(self.to_toml().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)?;
        Ok(())
    }

    /// Replaces the KEKs of a ring this caller holds alone (the command line's).
    fn edit_keks(&mut self, edit: impl FnOnce(&mut String, &mut BTreeMap<String, [u8; 32]>)) {
        let slot = self
            .keks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut current, mut raw) = (slot.current.clone(), slot.raw.clone());
        edit(&mut current, &mut raw);
        *slot = Arc::new(Keks::new(current, raw));
    }

    /// Adds a new KEK and makes it current; returns its id. `taken` are ids that must not
    /// come back (retired ones).
    pub fn rotate(&mut self, taken: &[String]) -> String {
        let mut id = String::new();
        self.edit_keks(|current, raw| {
            let next = raw
                .keys()
                .chain(taken)
                .filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u32>().ok()))
                .max()
                .unwrap_or(0)
                + 1;
            id = format!("k{next}");
            raw.insert(id.clone(), super::random_bytes());
            *current = id.clone();
        });
        id
    }

    /// Adds a KEK under `id` without making it current (a retention day's key: the data
    /// keys of tips to be destroyed that day are wrapped under it, and it is deleted with
    /// them). `false` when the ring already holds `id`.
    pub fn add_kek(&mut self, id: &str) -> bool {
        if self.has(id) {
            return false;
        }
        self.edit_keks(|_, raw| {
            raw.insert(id.to_owned(), super::random_bytes());
        });
        true
    }

    /// Removes a KEK that is no longer current.
    pub fn retire(&mut self, id: &str) -> Result<(), KeyFileError> {
        let snap = self.snapshot();
        if id == snap.current {
            return Err(KeyFileError::Refused(format!(
                "{id} is the current key; rotate first"
            )));
        }
        if !snap.raw.contains_key(id) {
            return Err(KeyFileError::Refused(format!(
                "no key {id} in the key file"
            )));
        }
        self.edit_keks(|_, raw| {
            raw.remove(id);
        });
        Ok(())
    }

    /// Takes the KEKs of `newer` (the key file read again) in place of this ring's, for
    /// every holder of the ring at once. Refused, leaving this ring as it was, when the
    /// MAC key differs (receipts and pseudonyms would no longer match) or when a KEK id
    /// both hold names different bytes. Answers `None` when nothing changed.
    pub fn reload_from(&self, newer: &KeyRing) -> Result<Option<KeyChange>, KeyFileError> {
        if !super::constant_eq(&self.mac_raw, &newer.mac_raw) {
            return Err(KeyFileError::Refused(
                "its MAC key is not the one in force (receipts and pseudonyms depend on it)".into(),
            ));
        }
        let theirs = newer.snapshot();
        let mut slot = self
            .keks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ours = slot.clone();
        for (id, key) in &theirs.raw {
            if let Some(old) = ours.raw.get(id) {
                if !super::constant_eq(old, key) {
                    return Err(KeyFileError::Refused(format!(
                        "its key {id} is not the {id} in force"
                    )));
                }
            }
        }
        let added: Vec<String> = theirs
            .raw
            .keys()
            .filter(|id| !ours.raw.contains_key(*id))
            .cloned()
            .collect();
        let removed: Vec<String> = ours
            .raw
            .keys()
            .filter(|id| !theirs.raw.contains_key(*id))
            .cloned()
            .collect();
        if added.is_empty() && removed.is_empty() && ours.current == theirs.current {
            return Ok(None);
        }
        *slot = Arc::new(Keks::new(theirs.current.clone(), theirs.raw.clone()));
        Ok(Some(KeyChange {
            previous: ours.current.clone(),
            current: theirs.current.clone(),
            added,
            removed,
        }))
    }

    /// Whether `other` holds the same MAC key (so the same receipts and pseudonyms).
    pub fn same_mac_key(&self, other: &KeyRing) -> bool {
        super::constant_eq(&self.mac_raw, &other.mac_raw)
    }

    /// The KEKs in force now.
    pub(super) fn snapshot(&self) -> Arc<Keks> {
        self.keks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The KEKs in force now, with the current one counted as wrapping one more new tip
    /// key until the guard drops. Taken under the read lock, so a reload that switches
    /// the current key sees the count of every wrap made under the old one.
    pub(super) fn snapshot_for_wrap(&self) -> (Arc<Keks>, WrapGuard) {
        let slot = self
            .keks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let snap = slot.clone();
        let counter = self
            .wrapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(snap.current.clone())
            .or_default()
            .clone();
        counter.fetch_add(1, Ordering::SeqCst);
        drop(slot);
        (snap, WrapGuard(counter))
    }

    /// The id of the KEK that wraps new data keys.
    pub fn current_id(&self) -> String {
        self.snapshot().current.clone()
    }

    /// Every KEK id in the ring.
    pub fn ids(&self) -> Vec<String> {
        self.snapshot().raw.keys().cloned().collect()
    }

    /// Whether the ring holds the KEK `id`.
    pub fn has(&self, id: &str) -> bool {
        self.snapshot().raw.contains_key(id)
    }

    /// KEK ids under which data keys for new tips are wrapped and not yet dropped (their
    /// tips not yet written, or being written).
    pub fn wrapping_ids(&self) -> Vec<String> {
        self.wrapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, n)| n.load(Ordering::SeqCst) > 0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn mac_key(&self) -> &hmac::Key {
        &self.mac
    }

    pub(super) fn account_key(&self) -> &LessSafeKey {
        &self.account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut ring = KeyRing::generate();
        ring.rotate(&[]);
        ring.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = KeyRing::load(&path).unwrap();
        assert_eq!(back.current_id(), "k2");
        assert_eq!(back.ids(), vec!["k1", "k2"]);
        assert_eq!(back.mac_check(), ring.mac_check());
    }

    #[test]
    fn malformed_key_files_are_refused() {
        assert!(KeyRing::from_toml("nonsense").is_err());
        assert!(KeyRing::from_toml("current='k1'\nmac='AAAA'\n[kek]\nk1='AAAA'").is_err());
    }

    #[test]
    fn a_shared_ring_takes_a_rotated_file_and_refuses_a_foreign_one() {
        let shared = KeyRing::generate();
        let mut file = KeyRing::from_toml(&shared.to_toml()).unwrap();
        let (_, old_wrap) = shared.new_tip_key("t1");
        let k2 = file.rotate(&[]);
        let change = shared.reload_from(&file).unwrap().unwrap();
        assert_eq!(change.previous, "k1");
        assert_eq!(change.current, k2);
        assert_eq!(change.added, vec![k2.clone()]);
        assert_eq!(shared.current_id(), k2);
        assert!(
            shared.open_tip_key("t1", &old_wrap).is_ok(),
            "k1 still opens"
        );
        assert_eq!(shared.new_tip_key("t2").1.key_id, k2);
        assert_eq!(shared.reload_from(&file).unwrap(), None, "nothing new");

        // Another MAC key, or other bytes under a known id: refused, the ring unchanged.
        let foreign = KeyRing::generate();
        assert!(shared.reload_from(&foreign).is_err());
        let text = file.to_toml();
        let forged = text.replace(
            &text
                .lines()
                .find(|l| l.starts_with("k1 = "))
                .unwrap()
                .to_owned(),
            &format!("k1 = \"{}\"", B64.encode([7u8; 32])),
        );
        let forged = KeyRing::from_toml(&forged).unwrap();
        assert!(matches!(
            shared.reload_from(&forged),
            Err(KeyFileError::Refused(_))
        ));
        assert_eq!(shared.current_id(), k2);
        assert!(shared.open_tip_key("t1", &old_wrap).is_ok());
    }

    #[test]
    fn a_new_tips_key_counts_as_in_flight_under_its_kek_until_dropped() {
        let shared = KeyRing::generate();
        assert!(shared.wrapping_ids().is_empty());
        let (key, _) = shared.new_tip_key("t1");
        let mut file = KeyRing::from_toml(&shared.to_toml()).unwrap();
        file.rotate(&[]);
        shared.reload_from(&file).unwrap();
        assert_eq!(shared.wrapping_ids(), vec!["k1"]);
        drop(key);
        assert!(shared.wrapping_ids().is_empty());
        let (_k, w) = shared.new_tip_key("t2");
        assert_eq!(shared.wrapping_ids(), vec![w.key_id]);
    }

    #[test]
    fn rotate_never_reuses_a_retired_id() {
        let mut ring = KeyRing::generate();
        assert_eq!(ring.rotate(&["k5".to_owned()]), "k6");
    }
}
