//! Opening the store the settings name (directory, S3 or none), with the start-up checks that
//! guard it: the NFS lookup-cache check and warnings about loose file modes.

use crate::config::{Settings, StoreLocation};
use crate::store::disabled::NoStore;
use crate::store::fs::DirStore;
use crate::store::s3::{S3Options, S3Store};
use crate::store::{Store, StoreError};
use std::path::Path;
use std::sync::Arc;

/// The store the settings name, checked and ready.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &settings.store {
        StoreLocation::None => Arc::new(NoStore),
        StoreLocation::Directory(path) => {
            let store = DirStore::open(path)?;
            if let Err(problem) = crate::store::nfs::check_directory_store(path) {
                if !settings.accept_nfs_lookup_cache_risk {
                    return Err(StoreError::Generic { message: problem });
                }
                tracing::warn!("{problem}; starting anyway (--accept-nfs-lookup-cache-risk)");
            }
            Arc::new(store)
        }
        StoreLocation::S3 {
            location,
            endpoint,
            path_style,
        } => {
            let mut options = S3Options::from_location(location)?;
            options.endpoint = endpoint.clone();
            options.path_style = *path_style;
            let store = S3Store::connect(options).await?;
            store.probe_conditional_writes().await?;
            Arc::new(store)
        }
    })
}

/// Warns (at start-up, without refusing: a shared deployment may have reasons, and refusing
/// would stop an upgraded node) about secret files that others may read or change, and a store
/// directory anyone may write to (whoever can write a record there can claim mastership or plant
/// peer URIs).
pub(super) fn warn_about_permissions(settings: &Settings) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|metadata| metadata.permissions().mode() & 0o7777)
            .ok()
    };
    for path in &settings.secret_files {
        if let Some(mode) = mode(path).filter(|mode| mode & 0o077 != 0) {
            tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"), "a file holding secrets is open to its group or others; chmod 600 it");
        }
    }
    if let StoreLocation::Directory(root) = &settings.store
        && let Some(mode) = mode(root).filter(|mode| mode & 0o002 != 0)
    {
        tracing::warn!(path = %root.display(), mode = format!("{mode:04o}"), "the store directory is world-writable: any local user can write records; chmod o-w it");
    }
}
