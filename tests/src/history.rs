//! The chaos history checker: what clients and samplers saw during a chaos run, what the store
//! holds at the end, and the verdict on the plane's promises: at most one master per epoch,
//! epochs that never go back for any observer, every acknowledged write present exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Everything observed during a run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// `(epoch, node)` for every observation of `node` acting as master in `epoch`: a GetState
    /// answer of MASTER, or a master view pushed to a client.
    pub masters: Vec<(u64, String)>,
    /// Per observer (a client's watch), the epochs of the views it accepted, in order.
    pub observed_epochs: BTreeMap<String, Vec<u64>>,
    /// Entity ids whose write was acknowledged. Each id is written once, by one writer.
    pub acked: Vec<String>,
    /// Entity ids whose write failed or timed out (they may or may not be present).
    pub unacked: Vec<String>,
    /// Time from each fault until the plane agreed on a master again.
    pub recoveries: Vec<Duration>,
    /// Faults injected.
    pub faults: usize,
    /// Node logs that recorded a panic.
    pub panics: Vec<String>,
}

/// One entity as the final master serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalEntity {
    pub id: String,
    pub version: u64,
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Epochs in which more than one node acted as master.
    pub split_brain_epochs: BTreeMap<u64, BTreeSet<String>>,
    /// Observers that saw an epoch go back.
    pub regressions: Vec<String>,
    /// Acknowledged writes missing from the final state.
    pub lost: Vec<String>,
    /// Writes applied more than once (version above 1 for a write-once id).
    pub duplicated: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.split_brain_epochs.is_empty()
            && self.regressions.is_empty()
            && self.lost.is_empty()
            && self.duplicated.is_empty()
    }
}

/// Checks `history` against the final state.
pub fn check(history: &History, final_state: &[FinalEntity]) -> Verdict {
    let mut by_epoch: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (epoch, node) in &history.masters {
        by_epoch.entry(*epoch).or_default().insert(node.clone());
    }
    let split_brain_epochs = by_epoch
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .collect();
    let regressions = history
        .observed_epochs
        .iter()
        .filter(|(_, epochs)| epochs.windows(2).any(|pair| pair[1] < pair[0]))
        .map(|(observer, _)| observer.clone())
        .collect();
    let versions: BTreeMap<&str, u64> = final_state
        .iter()
        .map(|entity| (entity.id.as_str(), entity.version))
        .collect();
    let lost = history
        .acked
        .iter()
        .filter(|id| !versions.contains_key(id.as_str()))
        .cloned()
        .collect();
    let duplicated = final_state
        .iter()
        .filter(|entity| entity.version > 1)
        .map(|entity| entity.id.clone())
        .collect();
    Verdict {
        split_brain_epochs,
        regressions,
        lost,
        duplicated,
    }
}

/// `4512` → `4,512`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The one summary line of a run.
pub fn summary(label: &str, history: &History, verdict: &Verdict) -> String {
    let max_failover = history.recoveries.iter().max().copied().unwrap_or_default();
    format!(
        "chaos[{label}]: {} faults, {} acked writes ({} not acked), {} lost, {} duplicated, {} split-brain epochs, {} epoch regressions, {} panics, max failover {:.1} s",
        thousands(history.faults),
        thousands(history.acked.len()),
        thousands(history.unacked.len()),
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.split_brain_epochs.len(),
        verdict.regressions.len(),
        history.panics.len(),
        max_failover.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(id: &str, version: u64) -> FinalEntity {
        FinalEntity {
            id: id.into(),
            version,
        }
    }

    fn clean_history() -> History {
        History {
            masters: vec![(1, "a".into()), (1, "a".into()), (2, "b".into())],
            observed_epochs: [("w1".to_owned(), vec![1, 1, 2])].into_iter().collect(),
            acked: vec!["x".into(), "y".into()],
            unacked: vec!["z".into()],
            ..History::default()
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let verdict = check(
            &clean_history(),
            &[entity("x", 1), entity("y", 1), entity("z", 1)],
        );
        assert!(verdict.passed(), "{verdict:?}");
    }

    #[test]
    fn two_masters_in_one_epoch_are_split_brain() {
        let mut history = clean_history();
        history.masters.push((2, "c".into()));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.split_brain_epochs.len(), 1);
        assert!(verdict.split_brain_epochs[&2].contains("c"));
        assert!(!verdict.passed());
    }

    #[test]
    fn a_lost_ack_a_duplicate_and_a_going_back_epoch_are_found() {
        let mut history = clean_history();
        history.observed_epochs.insert("w2".into(), vec![3, 2]);
        let verdict = check(&history, &[entity("x", 2)]);
        assert_eq!(verdict.lost, vec!["y".to_owned()]);
        assert_eq!(verdict.duplicated, vec!["x".to_owned()]);
        assert_eq!(verdict.regressions, vec!["w2".to_owned()]);
        assert!(!verdict.passed());
    }

    #[test]
    fn the_summary_reads_like_the_issue_asks() {
        let mut history = clean_history();
        history.faults = 200;
        history.acked = (0..4512).map(|i| i.to_string()).collect();
        history.recoveries = vec![Duration::from_millis(1400), Duration::from_millis(300)];
        let line = summary("dir", &history, &Verdict::default());
        assert_eq!(
            line,
            "chaos[dir]: 200 faults, 4,512 acked writes (1 not acked), 0 lost, 0 duplicated, 0 split-brain epochs, 0 epoch regressions, 0 panics, max failover 1.4 s"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
