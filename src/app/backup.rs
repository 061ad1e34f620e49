//! `tinbao backup DIR` and `tinbao restore DIR` (issue 14).
//!
//! A backup is a consistent copy of the database taken while the server runs and takes
//! tips: on SQLite `VACUUM INTO` (one read transaction; writers go on), on PostgreSQL
//! `pg_dump` (one snapshot). It never holds the key file: without that file a backup is
//! sealed bytes. Each backup is checked before the command says it is done: the copy
//! opens, is sound, and the key file opens its newest tip. A restore goes only into an
//! empty data folder (or an empty PostgreSQL database) and checks the key file against
//! the backup before anything is written.

use crate::config::Config;
use crate::crypto::{KeyRing, WrappedKey};
use crate::store::{Engine, Store};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The SQLite copy's name in a backup folder.
pub const SQLITE_FILE: &str = "tinbao.db";
/// The PostgreSQL dump's name in a backup folder (`pg_dump --format=custom`).
pub const PG_FILE: &str = "tinbao.pgdump";
/// What a backup folder says of itself.
const MANIFEST: &str = "backup.toml";

/// What a backup made.
#[derive(Debug)]
pub struct Made {
    pub file: PathBuf,
    pub bytes: u64,
    /// Tips in the copy (SQLite), or in the database when the dump began (PostgreSQL).
    pub tips: i64,
}

/// Makes a backup of the running database in `dir`, a new or empty folder.
pub async fn backup(
    config: &Config,
    store: &Store,
    ring: &KeyRing,
    dir: &Path,
) -> anyhow::Result<Made> {
    empty_folder(dir, &[])?;
    let made = match store.engine() {
        Engine::Sqlite => {
            let file = dir.join(SQLITE_FILE);
            store
                .sqlite_copy_into(&file)
                .await
                .context("the copy (VACUUM INTO) failed")?;
            private_file(&file)?;
            let copy = Store::open_sqlite_copy(&file).await?;
            let check = copy.sqlite_quick_check().await?;
            if check != "ok" {
                bail!("the copy in {} is damaged: {check}", file.display());
            }
            keys_open(&copy, ring)
                .await
                .with_context(|| format!("the copy in {} does not open", file.display()))?;
            let tips = copy.tip_total().await?;
            copy.close().await;
            Made {
                bytes: std::fs::metadata(&file)?.len(),
                file,
                tips,
            }
        }
        Engine::Postgres => {
            let file = dir.join(PG_FILE);
            let url = config.database_url();
            let tips = store.tip_total().await?;
            let dump = format!(
                "pg_dump --format=custom --no-owner --no-privileges --file {} --dbname '<database_url>'",
                file.display()
            );
            let out = Command::new("pg_dump")
                .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                .arg(&file)
                .arg("--dbname")
                .arg(&url)
                .output()
                .with_context(|| {
                    format!(
                        "pg_dump is not installed here: install postgresql-client, or run {dump}"
                    )
                })?;
            if !out.status.success() {
                bail!(
                    "pg_dump failed ({}): {}\nthe command was: {dump}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            private_file(&file)?;
            // The dump opens: pg_restore reads its table of contents, tips among it.
            let list = Command::new("pg_restore")
                .arg("--list")
                .arg(&file)
                .output()
                .context("pg_restore is not installed here: install postgresql-client")?;
            let toc = String::from_utf8_lossy(&list.stdout);
            if !list.status.success() || !toc.contains("TABLE DATA public tips") {
                bail!(
                    "the dump {} does not read back: {}",
                    file.display(),
                    String::from_utf8_lossy(&list.stderr).trim()
                );
            }
            // The dump is of this database, whose keys the running server checked.
            keys_open(store, ring).await?;
            Made {
                bytes: std::fs::metadata(&file)?.len(),
                file,
                tips,
            }
        }
    };
    let manifest = format!(
        "# A tinbao backup. It holds no key file: keep that apart (see the README).\n\
         made_at = \"{}\"\nengine = \"{}\"\nfile = \"{}\"\ntips = {}\nkeys = [{}]\nversion = \"{}\"\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        match store.engine() {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        },
        made.file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
        made.tips,
        store
            .key_checks()
            .await?
            .iter()
            .map(|(id, _)| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", "),
        env!("CARGO_PKG_VERSION"),
    );
    let path = dir.join(MANIFEST);
    std::fs::write(&path, manifest).with_context(|| format!("cannot write {}", path.display()))?;
    private_file(&path)?;
    // On the disk before the command says it is done: neither `VACUUM INTO` nor pg_dump
    // syncs what it wrote.
    for file in [&made.file, &path] {
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {} to the disk", file.display()))?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot write the folder {} to the disk", dir.display()))?;
    Ok(made)
}

/// Brings the backup in `dir` back: into the configured SQLite file, whose folder must be
/// empty but for the key file, or into the configured PostgreSQL database, which must
/// hold no tinbao tables. The key file (or `TINBAO_KEYS`) must be the one the backup was
/// sealed under; it is checked before anything is written. Returns the tips restored.
pub async fn restore(config: &Config, dir: &Path) -> anyhow::Result<i64> {
    let url = config.database_url();
    let ring = key_ring(config)?;
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let target = PathBuf::from(path.split('?').next().unwrap_or(path));
        let source = dir.join(SQLITE_FILE);
        if !source.is_file() {
            bail!(
                "{} holds no {SQLITE_FILE}: not a tinbao SQLite backup",
                dir.display()
            );
        }
        let folder = target.parent().map(Path::to_path_buf).unwrap_or_default();
        let folder = if folder.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            folder
        };
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create the data folder {}", folder.display()))?;
        empty_folder(&folder, &[config.key_file()])?;
        let copy = Store::open_sqlite_copy(&source).await?;
        keys_open(&copy, &ring).await.with_context(|| {
            format!(
                "the backup {} cannot be opened with this key file",
                source.display()
            )
        })?;
        copy.close().await;
        let part = folder.join(format!(".{SQLITE_FILE}.restoring"));
        std::fs::copy(&source, &part)
            .with_context(|| format!("cannot copy {} to {}", source.display(), part.display()))?;
        private_file(&part)?;
        std::fs::File::open(&part)?.sync_all()?;
        std::fs::rename(&part, &target)
            .with_context(|| format!("cannot move the copy to {}", target.display()))?;
    } else {
        let source = dir.join(PG_FILE);
        if !source.is_file() {
            bail!(
                "{} holds no {PG_FILE}: not a tinbao PostgreSQL backup",
                dir.display()
            );
        }
        let empty = Store::connect(&url, 2).await?;
        if empty.has_tip_table().await? {
            bail!("the database already holds tinbao's tables: a restore goes only into an empty database (create one, set database_url to it)");
        }
        empty.close().await;
        let out = Command::new("pg_restore")
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--dbname",
            ])
            .arg(&url)
            .arg(&source)
            .output()
            .context("pg_restore is not installed here: install postgresql-client")?;
        if !out.status.success() {
            bail!(
                "pg_restore failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let restored = Store::connect(&url, 2).await?;
        keys_open(&restored, &ring).await.context(
            "the restored database cannot be opened with this key file; \
             drop it and restore again with the right key file",
        )?;
        restored.close().await;
    }
    // Tips under a retention day's key deleted since the backup was taken were destroyed
    // since: their sealed bytes go too, and the key's check.
    let store = super::open_store(config).await?;
    let mut destroyed = 0usize;
    for (id, _) in store.key_checks().await? {
        if ring.has(&id) || crate::retention::day_of_key(&id).is_none() {
            continue;
        }
        loop {
            let gone = store
                .destroy_under_key(&id, crate::clock::now_ms(), 1000)
                .await?;
            destroyed += gone.len();
            if gone.len() < 1000 {
                break;
            }
        }
        store.keys_mark_retired(&id, crate::clock::now_ms()).await?;
    }
    if destroyed > 0 {
        println!("{destroyed} tips in the backup were destroyed since it was made (their day key is gone): their content is not restored");
    }
    store.close().await;
    // Open it as the server will: migrations for a backup of an older version, the keys.
    let store = super::open_store(config).await?;
    super::open_keys(config, &store).await?;
    let tips = store.tip_total().await?;
    store.close().await;
    Ok(tips)
}

/// The configured key ring, without creating one: a restore needs the backup's.
fn key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    if let Ok(text) = std::env::var("TINBAO_KEYS") {
        return KeyRing::from_toml(&text).context("TINBAO_KEYS holds a malformed key file");
    }
    let path = config.key_file();
    if !path.exists() {
        bail!(
            "the key file {} is missing: a backup never holds it. Put the key file back \
             (or set TINBAO_KEYS) before restoring; without it no tip can be read",
            path.display()
        );
    }
    Ok(KeyRing::load(&path)?)
}

/// Proves `ring` opens the database: every key the data is sealed under is in the ring
/// with the same bytes, the receipt key is the same, and the newest tip opens.
async fn keys_open(store: &Store, ring: &KeyRing) -> anyhow::Result<()> {
    for (id, check) in store.key_checks().await? {
        // A retention day's key deleted since the backup: its tips' content is gone, as
        // it is in the live database (the restore removes their sealed bytes).
        if !ring.has(&id) && crate::retention::day_of_key(&id).is_some() {
            continue;
        }
        if !ring.has(&id) {
            bail!("the data is sealed under key {id}, which the key file lacks: wrong or old key file");
        }
        if !ring.verify_key_check(&id, &check) {
            bail!("key {id} in the key file is not the key {id} the data was sealed with: wrong key file");
        }
    }
    if let Some(stored) = store.meta("mac_check").await? {
        if stored != ring.mac_check() {
            bail!("the receipt key in the key file is not the one the data uses: wrong key file");
        }
    }
    if let Some(tip) = store.sealed_sample().await? {
        let wrapped = WrappedKey {
            key_id: tip.key_id,
            wrapped: tip.wrapped_key.unwrap_or_default(),
        };
        let opened = ring
            .open_tip_key(&tip.id, &wrapped)
            .ok()
            .and_then(|key| key.open("description", &tip.description).ok());
        if opened.is_none() {
            bail!("the newest tip does not open with the key file: wrong key file");
        }
    }
    Ok(())
}

/// Refuses a folder holding anything but `allowed` (creating it when missing).
fn empty_folder(dir: &Path, allowed: &[PathBuf]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    let allowed: Vec<PathBuf> = allowed
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let known = std::fs::canonicalize(&path).is_ok_and(|p| allowed.contains(&p));
        if !known {
            bail!(
                "{} is not empty (it holds {}): refusing to overwrite anything",
                dir.display(),
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Makes a file readable by the service's user only.
fn private_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    Ok(())
}
