//! The encoding of the last master view, made once and shared: a change of master reaches every
//! watcher at once, and each watch adapter (gRPC frames, SSE JSON) would otherwise encode the same
//! view once per watcher. Keyed by the identity of the view's `Arc`, which every watcher of a
//! node shares, so a cache shared by several nodes in one process is still correct.

use haplane::MasterView;
use std::sync::{Arc, Mutex};

/// The last view encoded and its encoding.
#[derive(Debug, Default)]
pub struct LastEncoded<E> {
    last: Mutex<Option<(Arc<MasterView>, E)>>,
}

impl<E: Clone> LastEncoded<E> {
    /// An empty cache (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }

    /// The encoding of `view`: made by `encode` for the first watcher to send it, cloned for the
    /// others.
    pub fn get(&self, view: &Arc<MasterView>, encode: impl FnOnce(&MasterView) -> E) -> E {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((encoded, encoding)) = last.as_ref()
            && Arc::ptr_eq(encoded, view)
        {
            return encoding.clone();
        }
        let encoding = encode(view);
        *last = Some((Arc::clone(view), encoding.clone()));
        encoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_encoded_once_and_a_new_view_again() {
        let cache = LastEncoded::new();
        let view = Arc::new(MasterView::default());
        let mut encodings = 0;
        let mut encode = |view: &MasterView| {
            encodings += 1;
            Arc::<str>::from(format!("epoch {}", view.epoch))
        };
        let first = cache.get(&view, &mut encode);
        let again = cache.get(&Arc::clone(&view), &mut encode);
        assert!(Arc::ptr_eq(&first, &again), "the same text, not a copy");
        let equal_but_new = Arc::new(MasterView::default());
        cache.get(&equal_but_new, &mut encode);
        let next = Arc::new(MasterView {
            epoch: 2,
            ..MasterView::default()
        });
        assert_eq!(&*cache.get(&next, &mut encode), "epoch 2");
        assert_eq!(encodings, 3, "once per published view");
    }
}
