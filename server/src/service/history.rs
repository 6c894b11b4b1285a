//! The plane's master history, read from the claims in the store (one per epoch, never
//! changed): `History` over gRPC, `GET /v1/server/ha/history` and `haplane ha history`.

use super::HaCore;
use super::error::ServiceError;
use crate::store::{Store, StoreError, layout};
use futures::StreamExt;
use haplane::MasterClaim;

/// Epochs answered when the caller names no limit, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// Claims read at once.
const READS_AT_ONCE: usize = 16;

impl HaCore {
    /// The newest `limit` claims (0: 100; at most 10,000), newest first. A claim that cannot be
    /// read is skipped with a warning, as the poll skips it.
    pub async fn history(&self, limit: usize) -> Result<Vec<MasterClaim>, ServiceError> {
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            limit => limit.min(MAX_LIMIT),
        };
        let store = &self.inner.store;
        let mut epochs: Vec<_> = store
            .list(layout::CLAIMS)
            .await?
            .iter()
            .filter_map(layout::claim_epoch)
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        epochs.truncate(limit);
        let reads = epochs.into_iter().map(|epoch| async move {
            let key = layout::claim(epoch)?;
            match store.get(&key).await {
                Ok(body) => match serde_json::from_slice::<MasterClaim>(&body) {
                    Ok(claim) if claim.epoch == epoch => Ok(Some(claim)),
                    _ => {
                        tracing::warn!(%key, "unreadable claim skipped in the history");
                        Ok(None)
                    }
                },
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(err) => Err(err),
            }
        });
        let read: Vec<Result<Option<MasterClaim>, StoreError>> = futures::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
        let mut claims = Vec::new();
        for claim in read {
            claims.extend(claim?);
        }
        Ok(claims)
    }
}
