//! Directory store (local disk or NFS): overwrite by rename of a staged file, create-if-absent by
//! `link()` of a staged file (atomic on NFSv3+); files 0600, directories 0700.

use super::{Key, PutMode, Store, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Staged files start with this; `list` never returns them.
const STAGING_PREFIX: &str = ".staging-";

/// A store rooted at one directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Opens (creating if needed, mode 0700) the directory `root` and checks it is writable.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        create_dirs(&root).map_err(|err| classify(&root, err))?;
        let store = Self { root };
        let probe = store
            .root
            .join(format!("{STAGING_PREFIX}probe-{}", std::process::id()));
        write_staged(&probe, b"probe").map_err(|err| StoreError::Generic {
            message: format!(
                "persistence directory {} is not writable: {err}",
                store.root.display()
            ),
        })?;
        let _ = fs::remove_file(&probe);
        Ok(store)
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }
}

fn create_dirs(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

fn write_staged(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

fn staging_path(target: &Path) -> PathBuf {
    let name = format!(
        "{STAGING_PREFIX}{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    target.with_file_name(name)
}

/// Maps an I/O error on `path` to a store condition.
fn classify(path: &Path, err: io::Error) -> StoreError {
    let key = path.display().to_string();
    match err.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound { key },
        io::ErrorKind::AlreadyExists => StoreError::AlreadyExists { key },
        io::ErrorKind::PermissionDenied => StoreError::Generic {
            message: format!("{key}: permission denied"),
        },
        _ => StoreError::Unavailable {
            message: format!("{key}: {err}"),
        },
    }
}

fn put_blocking(target: &Path, body: &[u8], mode: PutMode) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        create_dirs(parent)?;
    }
    let staged = staging_path(target);
    write_staged(&staged, body)?;
    let published = match mode {
        PutMode::Overwrite => fs::rename(&staged, target),
        PutMode::Create => fs::hard_link(&staged, target),
    };
    if mode == PutMode::Create || published.is_err() {
        let _ = fs::remove_file(&staged);
    }
    published?;
    if let Some(parent) = target.parent() {
        // Make the new directory entry durable; a failure here does not undo the write.
        let _ = fs::File::open(parent).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

fn list_blocking(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(STAGING_PREFIX) {
            continue;
        }
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type()?.is_dir() {
            list_blocking(&entry.path(), &key, out)?;
        } else {
            out.push(key);
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Generic {
            message: format!("store task failed: {err}"),
        })?
}

#[async_trait]
impl Store for DirStore {
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let path = self.path_of(key);
        blocking(move || {
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| classify(&path, e))
        })
        .await
    }

    async fn put(&self, key: &Key, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path_of(key);
        blocking(move || put_blocking(&path, &body, mode).map_err(|e| classify(&path, e))).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>, StoreError> {
        let folder = prefix.trim_end_matches('/').to_owned();
        let dir = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(&Key::parse(&folder)?)
        };
        let wanted = prefix.to_owned();
        blocking(move || {
            let mut names = Vec::new();
            list_blocking(&dir, &folder, &mut names).map_err(|e| classify(&dir, e))?;
            let mut keys: Vec<Key> = names
                .iter()
                .filter(|name| name.starts_with(&wanted))
                .filter_map(|name| Key::parse(name).ok())
                .collect();
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let path = self.path_of(key);
        blocking(move || fs::remove_file(&path).map_err(|e| classify(&path, e))).await
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn directory_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirStore::open(dir.path().join("plane")).unwrap());
        super::super::conformance::run_all(store).await;
    }

    #[tokio::test]
    async fn files_are_private_and_staging_files_are_not_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("plane");
        let store = DirStore::open(&root).unwrap();
        let key = Key::parse("nodes/a.json").unwrap();
        store
            .put(&key, Bytes::from_static(b"{}"), PutMode::Create)
            .await
            .unwrap();
        store
            .put(&key, Bytes::from_static(b"{}"), PutMode::Overwrite)
            .await
            .unwrap();
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.join("nodes/a.json")), 0o600);
        assert_eq!(mode(root.join("nodes")), 0o700);
        assert_eq!(mode(root.clone()), 0o700);
        let names: Vec<_> = fs::read_dir(root.join("nodes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["a.json".to_owned()]);
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = DirStore::open(file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
