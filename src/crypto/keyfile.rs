//! The key file: key-encryption keys (KEKs) by id, the current one, and the MAC key used
//! for receipts and pseudonyms. It lives outside the database, mode 0600.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::LessSafeKey;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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

/// The keys in force: every KEK still needed, the current one, and the MAC key.
pub struct KeyRing {
    current: String,
    raw: BTreeMap<String, [u8; 32]>,
    keks: BTreeMap<String, LessSafeKey>,
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
        let keks = raw
            .iter()
            .map(|(id, k)| (id.clone(), super::aes_key(k)))
            .collect();
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"tinbao/v1").extract(&mac_raw);
        let okm = prk
            .expand(&[b"account secrets"], &ring::aead::AES_256_GCM)
            .expect("HKDF output of one AES key");
        KeyRing {
            current,
            raw,
            keks,
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
        let file = KeyFile {
            current: self.current.clone(),
            mac: B64.encode(self.mac_raw),
            kek: self
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

    /// Adds a new KEK and makes it current; returns its id.
    pub fn rotate(&mut self) -> String {
        let next = self
            .raw
            .keys()
            .filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u32>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        let key: [u8; 32] = super::random_bytes();
        self.raw.insert(id.clone(), key);
        self.keks.insert(id.clone(), super::aes_key(&key));
        self.current = id.clone();
        id
    }

    /// Removes a KEK that is no longer current.
    pub fn retire(&mut self, id: &str) -> Result<(), KeyFileError> {
        if id == self.current {
            return Err(KeyFileError::Refused(format!(
                "{id} is the current key; rotate first"
            )));
        }
        if self.raw.remove(id).is_none() {
            return Err(KeyFileError::Refused(format!(
                "no key {id} in the key file"
            )));
        }
        self.keks.remove(id);
        Ok(())
    }

    /// The id of the KEK that wraps new data keys.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Every KEK id in the ring.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.raw.keys().map(String::as_str)
    }

    pub(super) fn current_kek(&self) -> (&str, &LessSafeKey) {
        (&self.current, &self.keks[&self.current])
    }

    pub(super) fn kek(&self, id: &str) -> Option<&LessSafeKey> {
        self.keks.get(id)
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
        ring.rotate();
        ring.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = KeyRing::load(&path).unwrap();
        assert_eq!(back.current_id(), "k2");
        assert_eq!(back.ids().collect::<Vec<_>>(), vec!["k1", "k2"]);
        assert_eq!(back.mac_check(), ring.mac_check());
    }

    #[test]
    fn malformed_key_files_are_refused() {
        assert!(KeyRing::from_toml("nonsense").is_err());
        assert!(KeyRing::from_toml("current='k1'\nmac='AAAA'\n[kek]\nk1='AAAA'").is_err());
    }
}
