//! Spans of leader-only work, read from the units files that the leadership examples write
//! (`<epoch> <wall-clock ms>` per unit), and the check that no two overlap and epochs increase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A span of leader-only work: one replica, one epoch, first and last unit (wall-clock ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub replica: String,
    pub epoch: u64,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The spans in units files' lines (`<epoch> <ms>`), per replica and epoch, ordered by start.
pub fn spans(units: &[(String, String)]) -> Vec<Span> {
    let mut by_term: BTreeMap<(String, u64), (u64, u64)> = BTreeMap::new();
    for (replica, text) in units {
        for line in text.lines() {
            let Some((epoch, at)) = line.split_once(' ') else {
                continue; // a line cut short by kill -9
            };
            let (Ok(epoch), Ok(at)) = (epoch.parse::<u64>(), at.trim().parse::<u64>()) else {
                continue;
            };
            let span = by_term.entry((replica.clone(), epoch)).or_insert((at, at));
            span.0 = span.0.min(at);
            span.1 = span.1.max(at);
        }
    }
    let mut spans: Vec<Span> = by_term
        .into_iter()
        .map(|((replica, epoch), (start_ms, end_ms))| Span {
            replica,
            epoch,
            start_ms,
            end_ms,
        })
        .collect();
    spans.sort_by_key(|span| (span.start_ms, span.epoch));
    spans
}

/// What is wrong with a history of spans: two that overlap, an epoch that does not increase, or
/// one epoch worked in by two replicas.
pub fn violations(spans: &[Span]) -> Vec<String> {
    let mut found = Vec::new();
    for pair in spans.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if after.start_ms <= before.end_ms {
            found.push(format!("overlap: {before:?} and {after:?}"));
        }
        if after.epoch <= before.epoch {
            found.push(format!(
                "epoch does not increase: {before:?} then {after:?}"
            ));
        }
    }
    found
}

/// The time between the end of the span in `epoch` and the start of the next span.
pub fn gap_after(history: &[Span], epoch: u64) -> u64 {
    let index = history
        .iter()
        .position(|span| span.epoch == epoch)
        .expect("a span in the faulted epoch");
    let next = history.get(index + 1).expect("a span after the fault");
    next.start_ms.saturating_sub(history[index].end_ms)
}

/// The last whole unit in a units file: (epoch, ms).
pub fn last_unit(units: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(units).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|line| line.split(' ').count() == 2)?;
    let (epoch, at) = line.split_once(' ')?;
    Some((epoch.parse().ok()?, at.parse().ok()?))
}

/// Wall-clock milliseconds, as the examples write them.
pub fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("ms")
}

/// Waits (up to 30 s) until one of `units` files is being written (a unit within the last 100
/// ms) in an epoch above `after_epoch`; answers its index and epoch.
pub async fn working_after(units: &[PathBuf], after_epoch: u64) -> (usize, u64) {
    crate::eventually(
        std::time::Duration::from_secs(30),
        "a replica working in a newer epoch",
        || async {
            units.iter().enumerate().find_map(|(index, file)| {
                let (epoch, at) = last_unit(file)?;
                (epoch > after_epoch && now_ms().saturating_sub(at) < 100).then_some((index, epoch))
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_fails_overlaps_and_epochs_that_do_not_increase() {
        let units = |a: &str, b: &str| {
            vec![
                ("a".to_owned(), a.to_owned()),
                ("b".to_owned(), b.to_owned()),
            ]
        };
        let clean = spans(&units("1 100\n1 110\n3 400\n", "2 200\n2 250\n"));
        assert_eq!(clean.len(), 3);
        assert!(violations(&clean).is_empty(), "{clean:?}");
        // b starts while a still works (the paused-leader failure).
        let overlap = spans(&units("1 100\n1 300\n", "2 200\n"));
        assert!(
            violations(&overlap)[0].starts_with("overlap"),
            "{overlap:?}"
        );
        // A later span with an older epoch (a stale leader acting after its successor).
        let stale = spans(&units("2 100\n2 110\n", "1 200\n"));
        assert!(violations(&stale)[0].starts_with("epoch"), "{stale:?}");
        // Two replicas in one epoch.
        let shared = spans(&units("1 100\n", "1 200\n"));
        assert!(!violations(&shared).is_empty(), "{shared:?}");
        // A torn last line (kill -9 mid-write) is skipped, not misread.
        assert_eq!(spans(&units("1 100\n1 1", "")).len(), 1);
    }
}
