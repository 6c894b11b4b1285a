//! The chaos history checker: what the sampler, the SDK watchers and the writers saw during a
//! chaos run (every observation timed on one monotonic clock, as a `Duration` since the run's
//! start), what the store holds at the end, and the verdict on the plane's promises:
//!
//! - **overlap**: once a node's MASTER answer for epoch `e2` has been received, no other node may
//!   answer MASTER for a lower epoch to a request sent after that moment. (Answers to requests in
//!   flight at the same time are concurrent and prove nothing.) Two nodes answering MASTER in the
//!   same epoch are a violation too.
//! - **epoch regression**: within one node process (`generation`), an answer to a request sent
//!   after another of its answers arrived never carries a lower epoch.
//! - **stranded watcher**: while every answering node agrees on one MASTER node and epoch, an SDK
//!   watcher shows that master within `stranded_after` (timeout + 2 polls).
//! - **lost / duplicated writes**: every acknowledged write-once entity is present exactly once.

use haplane::pb::NodeState;
use std::collections::BTreeMap;
use std::time::Duration;

/// One GetState answer, as the sampler got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The sampling round (all nodes are asked once per round, concurrently).
    pub round: u64,
    /// When the request was sent.
    pub sent: Duration,
    /// When its answer arrived.
    pub received: Duration,
    /// The node asked.
    pub node: String,
    /// How many times the harness had (re)started that node when it was asked.
    pub generation: u32,
    pub epoch: u64,
    pub state: NodeState,
    /// The master the node named (empty for none).
    pub master_id: String,
}

impl Sample {
    fn is_master(&self) -> bool {
        self.state == NodeState::Master
    }

    fn describe(&self) -> String {
        format!(
            "{}#{} {} epoch {} (sent {}, received {})",
            self.node,
            self.generation,
            self.state.as_str_name().trim_start_matches("NODE_STATE_"),
            self.epoch,
            seconds(self.sent),
            seconds(self.received)
        )
    }
}

/// A view an SDK watcher published, recorded as published (not filtered again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherView {
    pub watcher: String,
    /// When the watcher saw it.
    pub at: Duration,
    pub epoch: u64,
    /// Empty while the view names no master (also the watcher's first record if the SDK had
    /// published nothing yet).
    pub master_id: String,
}

/// One fault the nemesis injected, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    pub at: Duration,
    /// When the nemesis removed it.
    pub until: Duration,
    pub what: String,
}

/// Everything observed during a run.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub samples: Vec<Sample>,
    pub views: Vec<WatcherView>,
    /// How long a watcher may show something other than the agreed master (timeout + 2 polls).
    pub stranded_after: Duration,
    /// Entity ids whose write was acknowledged. Each id is written once, by one writer.
    pub acked: Vec<String>,
    /// Entity ids whose write failed or timed out (they may or may not be present).
    pub unacked: Vec<String>,
    /// Time from each fault until the plane agreed on a master again.
    pub recoveries: Vec<Duration>,
    pub faults: Vec<InjectedFault>,
    /// Node logs that recorded a panic.
    pub panics: Vec<String>,
}

impl History {
    /// The last fault injected at or before `at`.
    pub fn fault_before(&self, at: Duration) -> Option<&InjectedFault> {
        self.faults.iter().rev().find(|fault| fault.at <= at)
    }
}

/// One entity as the final master serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalEntity {
    pub id: String,
    pub version: u64,
}

/// A node that kept answering MASTER for an older epoch after another node's MASTER answer for
/// a newer one had arrived: every such answer of one node process in one epoch, grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The earliest-received MASTER answer, by another node, for a higher epoch.
    pub newer: Sample,
    /// The stale node's first and last MASTER answers to requests sent after `newer` arrived.
    pub first_stale: Sample,
    pub last_stale: Sample,
    pub stale_answers: usize,
}

impl Overlap {
    /// How long the stale master provably went on acting after it was superseded.
    pub fn stretch(&self) -> Duration {
        self.last_stale.sent.saturating_sub(self.newer.received)
    }
}

/// A watcher that showed something other than the agreed master for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stranded {
    pub watcher: String,
    pub from: Duration,
    pub to: Duration,
    /// `(node, epoch)` every answering node agreed on.
    pub agreed: (String, u64),
    /// What the watcher showed when the stretch began (`master_id` empty: no master), and since
    /// when it had shown it.
    pub shown: (String, u64),
    pub shown_since: Duration,
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub overlaps: Vec<Overlap>,
    /// Two different nodes that answered MASTER in one epoch: one answer of each.
    pub same_epoch: Vec<(Sample, Sample)>,
    /// `(before, after)`: consecutive answers of one node process whose epoch went back.
    pub regressions: Vec<(Sample, Sample)>,
    pub stranded: Vec<Stranded>,
    /// Acknowledged writes missing from the final state.
    pub lost: Vec<String>,
    /// Writes applied more than once (version above 1 for a write-once id).
    pub duplicated: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.overlaps.is_empty()
            && self.same_epoch.is_empty()
            && self.regressions.is_empty()
            && self.stranded.is_empty()
            && self.lost.is_empty()
            && self.duplicated.is_empty()
    }

    /// The longest overlap stretch (zero without overlaps).
    pub fn longest_overlap(&self) -> Duration {
        self.overlaps
            .iter()
            .map(Overlap::stretch)
            .max()
            .unwrap_or_default()
    }
}

/// Checks `history` against the final state.
pub fn check(history: &History, final_state: &[FinalEntity]) -> Verdict {
    let versions: BTreeMap<&str, u64> = final_state
        .iter()
        .map(|entity| (entity.id.as_str(), entity.version))
        .collect();
    Verdict {
        overlaps: overlaps(&history.samples),
        same_epoch: same_epoch(&history.samples),
        regressions: regressions(&history.samples),
        stranded: stranded(history),
        lost: history
            .acked
            .iter()
            .filter(|id| !versions.contains_key(id.as_str()))
            .cloned()
            .collect(),
        duplicated: final_state
            .iter()
            .filter(|entity| entity.version > 1)
            .map(|entity| entity.id.clone())
            .collect(),
    }
}

fn overlaps(samples: &[Sample]) -> Vec<Overlap> {
    // Per epoch, the earliest-received MASTER answer of each node.
    let mut earliest: BTreeMap<u64, BTreeMap<&str, &Sample>> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.is_master()) {
        let slot = earliest
            .entry(sample.epoch)
            .or_default()
            .entry(&sample.node)
            .or_insert(sample);
        if sample.received < slot.received {
            *slot = sample;
        }
    }
    // Stale answers grouped by (node, generation, epoch), in the order they were sent.
    let mut groups: BTreeMap<(&str, u32, u64), (&Sample, Vec<&Sample>)> = BTreeMap::new();
    for stale in samples.iter().filter(|s| s.is_master()) {
        let newer = earliest
            .range(stale.epoch + 1..)
            .flat_map(|(_, by_node)| by_node.iter())
            .filter(|(node, _)| **node != stale.node)
            .map(|(_, sample)| *sample)
            .min_by_key(|sample| sample.received);
        if let Some(newer) = newer.filter(|newer| stale.sent > newer.received) {
            groups
                .entry((&stale.node, stale.generation, stale.epoch))
                .or_insert((newer, Vec::new()))
                .1
                .push(stale);
        }
    }
    let mut found: Vec<Overlap> = groups
        .into_values()
        .map(|(newer, mut stale)| {
            stale.sort_by_key(|s| s.sent);
            Overlap {
                newer: newer.clone(),
                first_stale: stale[0].clone(),
                last_stale: stale[stale.len() - 1].clone(),
                stale_answers: stale.len(),
            }
        })
        .collect();
    found.sort_by_key(|overlap| overlap.first_stale.sent);
    found
}

fn same_epoch(samples: &[Sample]) -> Vec<(Sample, Sample)> {
    let mut first_by_epoch: BTreeMap<u64, &Sample> = BTreeMap::new();
    let mut found: BTreeMap<(u64, &str), (Sample, Sample)> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.is_master()) {
        let first = *first_by_epoch.entry(sample.epoch).or_insert(sample);
        if first.node != sample.node {
            found
                .entry((sample.epoch, &sample.node))
                .or_insert_with(|| (first.clone(), sample.clone()));
        }
    }
    found.into_values().collect()
}

/// Per node process: the first answer, to a request sent after an earlier answer arrived, whose
/// epoch is below that earlier one's (one pair per earlier answer). Answers to requests in flight
/// together may arrive in either order.
fn regressions(samples: &[Sample]) -> Vec<(Sample, Sample)> {
    let mut by_process: BTreeMap<(&str, u32), Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        by_process
            .entry((&sample.node, sample.generation))
            .or_default()
            .push(sample);
    }
    let mut found = Vec::new();
    for by_sent in by_process.values_mut() {
        by_sent.sort_by_key(|s| s.sent);
        let mut by_received = by_sent.clone();
        by_received.sort_by_key(|s| s.received);
        let mut arrived = by_received.iter().peekable();
        let (mut highest, mut reported): (Option<&Sample>, Option<&Sample>) = (None, None);
        for later in by_sent.iter() {
            while let Some(answer) = arrived.next_if(|a| a.received < later.sent) {
                if highest.is_none_or(|h| answer.epoch > h.epoch) {
                    highest = Some(answer);
                }
            }
            let Some(earlier) = highest.filter(|h| later.epoch < h.epoch) else {
                continue;
            };
            if !reported.is_some_and(|r| std::ptr::eq(r, earlier)) {
                found.push((earlier.clone(), (*later).clone()));
                reported = Some(earlier);
            }
        }
    }
    found
}
/// A stretch of consecutive sampling rounds in which every answering node agreed on one master.
#[derive(Debug)]
struct Agreement<'a> {
    from: Duration,
    to: Duration,
    master: &'a str,
    epoch: u64,
}

/// The round's agreed master: exactly one MASTER answer, and every answer names it and its
/// epoch. The round counts as seen when its last answer arrived.
fn agreed_in<'a>(answers: &[&'a Sample]) -> Option<(Duration, &'a str, u64)> {
    let mut masters = answers.iter().filter(|s| s.is_master());
    let master = masters.next()?;
    let agreed = masters.next().is_none()
        && answers
            .iter()
            .all(|s| s.master_id == master.node && s.epoch == master.epoch);
    let seen = answers.iter().map(|s| s.received).max()?;
    agreed.then_some((seen, master.node.as_str(), master.epoch))
}

fn agreements(samples: &[Sample]) -> Vec<Agreement<'_>> {
    let mut rounds: BTreeMap<u64, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        rounds.entry(sample.round).or_default().push(sample);
    }
    let mut found: Vec<Agreement> = Vec::new();
    let mut open = false;
    for answers in rounds.values() {
        match (agreed_in(answers), found.last_mut()) {
            (Some((seen, master, epoch)), Some(last))
                if open && last.master == master && last.epoch == epoch =>
            {
                last.to = last.to.max(seen);
            }
            (Some((seen, master, epoch)), _) => {
                found.push(Agreement {
                    from: seen,
                    to: seen,
                    master,
                    epoch,
                });
                open = true;
            }
            (None, _) => open = false,
        }
    }
    found
}

fn stranded(history: &History) -> Vec<Stranded> {
    let mut by_watcher: BTreeMap<&str, Vec<&WatcherView>> = BTreeMap::new();
    for view in &history.views {
        by_watcher.entry(&view.watcher).or_default().push(view);
    }
    let agreements = agreements(&history.samples);
    let mut found = Vec::new();
    for (watcher, views) in &mut by_watcher {
        views.sort_by_key(|v| v.at);
        for agreement in &agreements {
            // The watcher's stretches within the agreement: from each change (or the start),
            // the view in force; consecutive wrong views make one stretch.
            let from = agreement.from.max(views[0].at);
            if from > agreement.to {
                continue;
            }
            let current = views.partition_point(|v| v.at <= from) - 1;
            let mut wrong_since: Option<(Duration, &WatcherView)> = None;
            let changes = std::iter::once((from, views[current]))
                .chain(
                    views[current + 1..]
                        .iter()
                        .take_while(|v| v.at <= agreement.to)
                        .map(|v| (v.at, *v)),
                )
                .map(Some)
                .chain([None]);
            for change in changes {
                let right = change.is_some_and(|(_, view)| {
                    view.master_id == agreement.master && view.epoch == agreement.epoch
                });
                if let Some((since, shown)) = wrong_since.filter(|_| right || change.is_none()) {
                    let to = change.map_or(agreement.to, |(at, _)| at);
                    if to.saturating_sub(since) > history.stranded_after {
                        found.push(Stranded {
                            watcher: watcher.to_string(),
                            from: since,
                            to,
                            agreed: (agreement.master.to_owned(), agreement.epoch),
                            shown: (shown.master_id.clone(), shown.epoch),
                            shown_since: shown.at,
                        });
                    }
                    wrong_since = None;
                }
                if let Some((at, view)) = change.filter(|_| !right) {
                    wrong_since.get_or_insert((at, view));
                }
            }
        }
    }
    found
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

fn seconds(at: Duration) -> String {
    format!("{:.3} s", at.as_secs_f64())
}

/// The one summary line of a run.
pub fn summary(label: &str, seed: u64, history: &History, verdict: &Verdict) -> String {
    let max_failover = history.recoveries.iter().max().copied().unwrap_or_default();
    format!(
        "chaos[{label}] seed {seed}: {} faults, {} samples, {} acked writes ({} not acked), {} lost, {} duplicated, {} overlaps (longest {:.2} s), {} same-epoch masters, {} epoch regressions, {} stranded watchers, {} panics, max failover {:.1} s",
        thousands(history.faults.len()),
        thousands(history.samples.len()),
        thousands(history.acked.len()),
        thousands(history.unacked.len()),
        thousands(verdict.lost.len()),
        thousands(verdict.duplicated.len()),
        verdict.overlaps.len(),
        verdict.longest_overlap().as_secs_f64(),
        verdict.same_epoch.len(),
        verdict.regressions.len(),
        verdict.stranded.len(),
        history.panics.len(),
        max_failover.as_secs_f64()
    )
}

/// One line per violation (the ones the summary only counts), each naming the samples that
/// prove it and the last fault injected before it began.
pub fn details(history: &History, verdict: &Verdict) -> Vec<String> {
    let after = |at: Duration| match history.fault_before(at) {
        Some(fault) => format!(
            "; last fault before: {} at {} (until {})",
            fault.what,
            seconds(fault.at),
            seconds(fault.until)
        ),
        None => "; before any fault".to_owned(),
    };
    // For a stretch: the last fault injected at or before `from`, and every one begun until `to`.
    let during = |from: Duration, to: Duration| {
        let faults: Vec<String> = history
            .faults
            .iter()
            .filter(|fault| fault.at > from && fault.at <= to)
            .map(|fault| format!("{} at {}", fault.what, seconds(fault.at)))
            .collect();
        match faults.is_empty() {
            true => after(from),
            false => format!("{}; faults during it: {}", after(from), faults.join("; ")),
        }
    };
    let mut lines = Vec::new();
    for overlap in &verdict.overlaps {
        lines.push(format!(
            "overlap: {} answered MASTER {} times over {:.3} s after {} had arrived: first {}, last {}{}",
            overlap.first_stale.node,
            overlap.stale_answers,
            overlap.stretch().as_secs_f64(),
            overlap.newer.describe(),
            overlap.first_stale.describe(),
            overlap.last_stale.describe(),
            after(overlap.newer.received)
        ));
    }
    for (first, second) in &verdict.same_epoch {
        lines.push(format!(
            "same-epoch masters: {} and {}{}",
            first.describe(),
            second.describe(),
            after(first.received.min(second.received))
        ));
    }
    for (before, after_it) in &verdict.regressions {
        lines.push(format!(
            "epoch regression: {} then {}{}",
            before.describe(),
            after_it.describe(),
            after(before.received)
        ));
    }
    for stranded in &verdict.stranded {
        let shown = match stranded.shown.0.as_str() {
            "" => format!("no master (epoch {})", stranded.shown.1),
            master => format!("{master} epoch {}", stranded.shown.1),
        };
        lines.push(format!(
            "stranded watcher: {} showed {shown} (published at {}) from {} to {} while the nodes agreed on {} epoch {}{}",
            stranded.watcher,
            seconds(stranded.shown_since),
            seconds(stranded.from),
            seconds(stranded.to),
            stranded.agreed.0,
            stranded.agreed.1,
            during(stranded.shown_since, stranded.to)
        ));
    }
    lines.extend(verdict.lost.iter().map(|id| format!("lost write: {id}")));
    lines.extend(
        verdict
            .duplicated
            .iter()
            .map(|id| format!("duplicated write: {id}")),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: NodeState = NodeState::Master;
    const STANDBY: NodeState = NodeState::HotStandby;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `node` answered `state` in `epoch` naming `master`, asked at `sent` ms, answered at
    /// `received` ms, in round `round`, in its first process.
    fn answer(
        round: u64,
        (sent, received): (u64, u64),
        node: &str,
        epoch: u64,
        state: NodeState,
        master: &str,
    ) -> Sample {
        Sample {
            round,
            sent: ms(sent),
            received: ms(received),
            node: node.into(),
            generation: 0,
            epoch,
            state,
            master_id: master.into(),
        }
    }

    /// Rounds `rounds` every `period` ms from `start` ms, in which all three nodes agree on
    /// `master` in `epoch`; each request takes 5 ms.
    fn agreed_rounds(
        rounds: std::ops::Range<u64>,
        (start, period): (u64, u64),
        master: &str,
        epoch: u64,
    ) -> Vec<Sample> {
        let mut samples = Vec::new();
        for round in rounds.clone() {
            let sent = start + (round - rounds.start) * period;
            for node in ["n1", "n2", "n3"] {
                let state = if node == master { MASTER } else { STANDBY };
                samples.push(answer(round, (sent, sent + 5), node, epoch, state, master));
            }
        }
        samples
    }

    fn view(watcher: &str, at: u64, epoch: u64, master: &str) -> WatcherView {
        WatcherView {
            watcher: watcher.into(),
            at: ms(at),
            epoch,
            master_id: master.into(),
        }
    }

    fn entity(id: &str, version: u64) -> FinalEntity {
        FinalEntity {
            id: id.into(),
            version,
        }
    }

    /// n1 masters epoch 1 for a second, then a clean failover to n2 in epoch 2, and a watcher
    /// that follows within 100 ms.
    fn clean_failover() -> History {
        let mut samples = agreed_rounds(0..50, (0, 20), "n1", 1);
        // The hand-over round: n1's last MASTER answer was sent (1000) before n2's first MASTER
        // answer arrived (1004) though it arrived later (1010): concurrent, not an overlap.
        samples.push(answer(50, (1000, 1010), "n1", 1, MASTER, "n1"));
        samples.push(answer(50, (999, 1004), "n2", 2, MASTER, "n2"));
        samples.push(answer(50, (1000, 1006), "n3", 1, STANDBY, "n1"));
        samples.extend(agreed_rounds(51..150, (1020, 20), "n2", 2));
        History {
            samples,
            views: vec![
                view("w1", 10, 1, "n1"),
                view("w1", 1005, 1, ""),
                view("w1", 1100, 2, "n2"),
            ],
            stranded_after: ms(1200),
            acked: vec!["x".into(), "y".into()],
            unacked: vec!["z".into()],
            ..History::default()
        }
    }

    #[test]
    fn a_clean_failover_with_concurrent_answers_passes() {
        let verdict = check(
            &clean_failover(),
            &[entity("x", 1), entity("y", 1), entity("z", 1)],
        );
        assert!(verdict.passed(), "{verdict:?}");
    }

    #[test]
    fn the_measured_overlap_of_4_5_seconds_fails() {
        // The user's run: n1 masters epoch 1; n2 is promoted and answers MASTER in epoch 2 from
        // 10 s on, while n1 (its store calls slowed to 1.5 s) goes on answering MASTER in epoch
        // 1 for 203 sampling rounds, about 22 ms apart: 4,461 ms.
        let mut samples = agreed_rounds(0..455, (0, 22), "n1", 1);
        let promoted = 10_010;
        for k in 0..203 {
            let sent = promoted + k * 22;
            let round = 455 + k;
            samples.push(answer(round, (sent, sent + 4), "n2", 2, MASTER, "n2"));
            samples.push(answer(round, (sent, sent + 6), "n1", 1, MASTER, "n1"));
            samples.push(answer(round, (sent, sent + 3), "n3", 2, STANDBY, "n2"));
        }
        let history = History {
            samples,
            stranded_after: ms(12_000),
            ..History::default()
        };
        let verdict = check(&history, &[]);
        assert!(!verdict.passed());
        assert_eq!(verdict.overlaps.len(), 1, "{:?}", verdict.overlaps);
        let overlap = &verdict.overlaps[0];
        assert_eq!(
            (overlap.newer.node.as_str(), overlap.newer.epoch),
            ("n2", 2)
        );
        assert_eq!(overlap.newer.received, ms(promoted + 4));
        assert_eq!(
            (overlap.first_stale.node.as_str(), overlap.first_stale.epoch),
            ("n1", 1)
        );
        // The first round's n1 answer was sent with n2's, so it is concurrent; the other 202
        // were asked after n2's answer arrived.
        assert_eq!(overlap.stale_answers, 202);
        assert_eq!(overlap.first_stale.sent, ms(promoted + 22));
        assert_eq!(overlap.stretch(), ms(202 * 22 - 4));
        assert_eq!(verdict.longest_overlap(), ms(4440));
        assert!(verdict.same_epoch.is_empty() && verdict.regressions.is_empty());
    }

    #[test]
    fn one_stale_answer_sent_after_the_newer_one_arrived_fails() {
        let mut history = clean_failover();
        // n1 answers MASTER for epoch 1 to a request sent 1 ms after n2's answer arrived.
        history
            .samples
            .push(answer(51, (1005, 1012), "n1", 1, MASTER, "n1"));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.overlaps.len(), 1);
        assert_eq!(verdict.overlaps[0].stale_answers, 1);
        assert_eq!(verdict.overlaps[0].stretch(), ms(1));
        assert!(!verdict.passed());
    }

    #[test]
    fn two_masters_in_one_epoch_fail() {
        let mut history = clean_failover();
        history
            .samples
            .push(answer(60, (1200, 1205), "n3", 2, MASTER, "n3"));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.same_epoch.len(), 1);
        let (first, second) = &verdict.same_epoch[0];
        assert_eq!((first.node.as_str(), second.node.as_str()), ("n2", "n3"));
        assert!(!verdict.passed());
    }

    #[test]
    fn an_epoch_going_back_within_one_process_fails() {
        let mut history = clean_failover();
        history
            .samples
            .push(answer(150, (3100, 3105), "n3", 1, STANDBY, "n1"));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.regressions.len(), 1, "{:?}", verdict.regressions);
        let (before, after) = &verdict.regressions[0];
        assert_eq!(
            (before.node.as_str(), before.epoch, after.epoch),
            ("n3", 2, 1)
        );
        assert!(!verdict.passed());
    }

    #[test]
    fn answers_to_concurrent_requests_may_arrive_in_either_order() {
        let mut history = clean_failover();
        let restarted = |sent, received, epoch| Sample {
            generation: 1,
            ..answer(150, (sent, received), "n3", epoch, STANDBY, "n2")
        };
        // Asked at 3100 and 3101, the answer with epoch 3 arrives first: no regression.
        history.samples.push(restarted(3101, 3110, 3));
        history.samples.push(restarted(3100, 3120, 2));
        assert!(check(&history, &[entity("x", 1), entity("y", 1)]).passed());
        // Asked after the epoch-3 answer arrived, epoch 2 is one (reported once).
        history.samples.push(restarted(3115, 3125, 2));
        history.samples.push(restarted(3130, 3135, 2));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.regressions.len(), 1, "{:?}", verdict.regressions);
        let (before, after) = &verdict.regressions[0];
        assert_eq!((before.epoch, after.epoch, after.sent), (3, 2, ms(3115)));
    }

    #[test]
    fn a_restarted_process_may_start_lower() {
        let mut history = clean_failover();
        let mut restarted = answer(150, (3100, 3105), "n3", 0, NodeState::Initializing, "");
        restarted.generation = 1;
        history.samples.push(restarted);
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert!(verdict.passed(), "{verdict:?}");
    }

    #[test]
    fn a_stranded_watcher_fails() {
        let mut history = clean_failover();
        // w2 saw n1 step down and then nothing more while all nodes agreed on n2 for 2 s.
        history.views.push(view("w2", 10, 1, "n1"));
        history.views.push(view("w2", 1008, 1, ""));
        // w3 kept showing n1 until 2,500 ms.
        history.views.push(view("w3", 10, 1, "n1"));
        history.views.push(view("w3", 2500, 2, "n2"));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert_eq!(verdict.stranded.len(), 2, "{:?}", verdict.stranded);
        let w2 = &verdict.stranded[0];
        assert_eq!(w2.watcher, "w2");
        assert_eq!(w2.agreed, ("n2".to_owned(), 2));
        assert_eq!(
            (w2.shown.clone(), w2.shown_since),
            ((String::new(), 1), ms(1008))
        );
        // From the first agreed round on n2 (round 51, seen at 1025) to the last (round 149, seen at 2985).
        assert_eq!((w2.from, w2.to), (ms(1025), ms(2985)));
        let w3 = &verdict.stranded[1];
        assert_eq!((w3.from, w3.to), (ms(1025), ms(2500)));
        assert_eq!(w3.shown, ("n1".to_owned(), 1));
        assert!(!verdict.passed());
    }

    #[test]
    fn a_watcher_that_catches_up_within_the_bound_passes() {
        let mut history = clean_failover();
        history.views.push(view("w2", 10, 1, "n1"));
        history.views.push(view("w2", 2200, 2, "n2"));
        assert!(check(&history, &[entity("x", 1), entity("y", 1)]).passed());
        // A stretch must lie inside one agreement: a round in which n3 names no master ends it,
        // leaving two agreements of 960 ms each.
        let mut history = clean_failover();
        history.views.push(view("w2", 10, 1, "n1"));
        history
            .samples
            .retain(|s| !(s.round == 100 && s.node == "n3"));
        history
            .samples
            .push(answer(100, (2000, 2005), "n3", 2, STANDBY, ""));
        let verdict = check(&history, &[entity("x", 1), entity("y", 1)]);
        assert!(verdict.passed(), "{verdict:?}");
    }

    #[test]
    fn lost_and_duplicated_writes_fail() {
        let verdict = check(&clean_failover(), &[entity("x", 2)]);
        assert_eq!(verdict.lost, vec!["y".to_owned()]);
        assert_eq!(verdict.duplicated, vec!["x".to_owned()]);
        assert!(!verdict.passed());
    }

    #[test]
    fn the_summary_counts_and_the_details_name_samples_and_faults() {
        let mut history = clean_failover();
        history.faults = vec![InjectedFault {
            at: ms(900),
            until: ms(950),
            what: "promote n2".into(),
        }];
        history.acked = (0..4512).map(|i| i.to_string()).collect();
        history.recoveries = vec![ms(1400), ms(300)];
        history
            .samples
            .push(answer(51, (1005, 1012), "n1", 1, MASTER, "n1"));
        let verdict = check(&history, &[]);
        let line = summary("dir", 7, &history, &verdict);
        assert_eq!(
            line,
            "chaos[dir] seed 7: 1 faults, 451 samples, 4,512 acked writes (1 not acked), 4,512 lost, 0 duplicated, 1 overlaps (longest 0.00 s), 0 same-epoch masters, 0 epoch regressions, 0 stranded watchers, 0 panics, max failover 1.4 s"
        );
        let details = details(&history, &verdict);
        assert_eq!(
            details[0],
            "overlap: n1 answered MASTER 1 times over 0.001 s after n2#0 MASTER epoch 2 (sent 0.999 s, received 1.004 s) had arrived: first n1#0 MASTER epoch 1 (sent 1.005 s, received 1.012 s), last n1#0 MASTER epoch 1 (sent 1.005 s, received 1.012 s); last fault before: promote n2 at 0.900 s (until 0.950 s)"
        );
        assert_eq!(details.len(), 1 + 4512);
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
