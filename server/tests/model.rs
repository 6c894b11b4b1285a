//! The election model-checked (docs/model-check.md): the real `Election` of every node, driven
//! through a step-by-step copy of the node runtime over an abstract store, explored with
//! stateright over every interleaving of store calls, clock ticks, faults and operator actions,
//! within bounds. Each bounded run here finishes in seconds; `deep` is the long run by hand.
//!
//! Three groups: the current runtime keeps every safety property in each bounded run; the
//! checker finds a violation as soon as one known fix is undone (so it can fail, and prints the
//! trace); and fixed action sequences replay the counterexamples found along the way.

mod model {
    pub mod plane;
    pub mod script;
    pub mod store;
    pub mod trace;
}

use model::plane::{Config, ONE_MASTER, Plane, Runtime, fault};
use model::script::{decode, encode};
use model::store::Reads;
use model::trace::{broken, check, render, replay};

/// Runs the checker on `cfg` (breadth first, to `depth` steps) and fails, printing each trace,
/// if a property is broken.
fn assert_holds(what: &str, cfg: Config, depth: usize) {
    let plane = Plane::new(cfg.clone());
    let report = check(Plane::new(cfg), depth, false);
    println!("{what}: {}", report.summary());
    if let Some((name, trace)) = report.violations.first() {
        let sequence = encode(&plane, &report.paths[0]);
        panic!("{what}: \"{name}\" broken:\n{trace}\nsequence: {sequence}");
    }
}

/// Runs the checker on `cfg` until it finds a violation, which must be of `property`; prints
/// the trace and its action sequence, and returns the sequence.
fn assert_finds(what: &str, cfg: Config, depth: usize, property: &str) -> String {
    let plane = Plane::new(cfg.clone());
    let report = check(Plane::new(cfg), depth, true);
    println!("{what}: {}", report.summary());
    let Some(index) = report
        .violations
        .iter()
        .position(|(name, _)| *name == property)
    else {
        let found: Vec<_> = report.violations.iter().map(|(name, _)| *name).collect();
        panic!("{what}: the checker did not find \"{property}\" broken (found {found:?})");
    };
    let sequence = encode(&plane, &report.paths[index]);
    println!(
        "{what}: \"{property}\" broken:\n{}\nsequence: {sequence}\n",
        report.violations[index].1
    );
    sequence
}

/// Replays `sequence` on `cfg`: how many of its steps were possible (it stops at the first that
/// is not), and the properties broken on the way (printing the trace when some are).
fn replay_breaks(cfg: Config, sequence: &str) -> (usize, Vec<&'static str>) {
    let plane = Plane::new(cfg);
    let actions = decode(&plane, sequence);
    let (states, complete) = replay(&plane, &actions);
    let mut found: Vec<&'static str> = states
        .iter()
        .flat_map(|state| broken(&plane, state))
        .collect();
    found.sort_unstable();
    found.dedup();
    if !found.is_empty() {
        let steps: Vec<_> = states
            .iter()
            .cloned()
            .zip(actions.iter().cloned().map(Some).chain([None]))
            .collect();
        println!("{}", render(&plane, &steps));
    }
    let replayed = if complete {
        actions.len()
    } else {
        states.len() - 1
    };
    (replayed, found)
}

/// Two nodes; the first election (a wins at tick 2) already run, fault-free.
fn after_election() -> Config {
    let mut cfg = Config::new(2);
    cfg.faults = 0;
    cfg.slow = 0;
    cfg.drift = 0;
    cfg.operator = 0;
    cfg.start_at = 2;
    cfg
}

const DEPTH: usize = 400;

// ----- the current runtime: every bounded run keeps every safety property -------------------

#[test]
fn one_fault_of_any_kind_after_the_first_election() {
    let mut cfg = after_election();
    cfg.faults = 1;
    cfg.horizon = 12;
    assert_holds("one fault, ticks 2-12", cfg, DEPTH);
}

#[test]
fn one_fault_of_any_kind_during_the_first_election() {
    let mut cfg = after_election();
    cfg.start_at = 0;
    cfg.faults = 1;
    cfg.horizon = 5;
    assert_holds("one fault, ticks 0-5", cfg, DEPTH);
}

#[test]
fn an_operator_action_with_its_step_down_unanswered_or_not() {
    let mut cfg = after_election();
    cfg.operator = 1;
    cfg.faults = 1;
    cfg.fault_kinds = fault::UNANSWERED;
    cfg.horizon = 10;
    assert_holds("promotion, demotion or priority", cfg, DEPTH);
}

#[test]
fn slow_calls_and_clock_drift() {
    let mut cfg = after_election();
    cfg.slow = 2;
    cfg.drift = 2;
    cfg.horizon = 8;
    assert_holds("two slow calls, two clock lag changes", cfg, DEPTH);
}

#[test]
fn three_nodes_with_a_slow_call_and_clock_drift() {
    let mut cfg = after_election();
    cfg.nodes = 3;
    cfg.slow = 1;
    cfg.drift = 1;
    cfg.horizon = 6;
    assert_holds(
        "three nodes, one slow call, one clock lag change",
        cfg,
        DEPTH,
    );
}

#[test]
fn a_master_is_elected_and_one_acts_again_within_timeout_plus_two_polls_of_the_last_fault() {
    let mut cfg = after_election();
    cfg.start_at = 0;
    cfg.liveness = true;
    cfg.horizon = 6;
    assert_holds("no fault: a master is elected", cfg, DEPTH);
    let mut cfg = after_election();
    cfg.liveness = true;
    cfg.faults = 1;
    cfg.fault_kinds = fault::CRASH | fault::PAUSE | fault::FAIL;
    cfg.horizon = 14;
    assert_holds("one crash, pause or failed call: recovery", cfg, DEPTH);
}

/// The long run, by hand (release build advised):
/// `cargo test --release -p haplane-server --test model deep -- --ignored --nocapture`, sized by
/// `HAPLANE_MODEL_{DEPTH,NODES,FAULTS,OPERATOR,SLOW,DRIFT,HORIZON}`.
#[test]
#[ignore = "long: run by hand"]
fn deep() {
    let setting = |name: &str, default: u32| -> u32 {
        std::env::var(format!("HAPLANE_MODEL_{name}"))
            .ok()
            .map_or(default, |value| {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: {value:?}"))
            })
    };
    let narrow = |value: u32| u8::try_from(value).expect("a small budget");
    // The defaults: two nodes from tick 0 (the first election included), one operator action,
    // one slow call, to tick 10; BENCHMARKS.md has its state count and time. One fault more
    // (horizon 9) ran past 18 GiB, and with a clock lag change too past 23 GiB, unfinished.
    let mut cfg = Config::new(setting("NODES", 2) as usize);
    cfg.faults = narrow(setting("FAULTS", 0));
    cfg.operator = narrow(setting("OPERATOR", 1));
    cfg.slow = narrow(setting("SLOW", 1));
    cfg.drift = narrow(setting("DRIFT", 0));
    cfg.horizon = setting("HORIZON", 10);
    assert_holds("deep", cfg, setting("DEPTH", 1000) as usize);
}

// ----- the checker can fail: each known window, its fix undone, is found --------------------

#[test]
fn undone_step_down_before_a_promotion_is_found() {
    let mut cfg = after_election();
    cfg.runtime = Runtime::PromoteWithoutStepDown;
    cfg.operator = 1;
    cfg.horizon = 4;
    assert_finds("promotion without StepDown", cfg, DEPTH, ONE_MASTER);
}

#[test]
fn undone_publish_before_the_store_call_is_found() {
    let mut cfg = after_election();
    cfg.runtime = Runtime::PublishAfterCall;
    cfg.operator = 1;
    cfg.slow = 1;
    cfg.horizon = 4;
    assert_finds("publish after the store call", cfg, DEPTH, ONE_MASTER);
}

#[test]
fn undone_renewal_rule_is_found() {
    let mut cfg = after_election();
    cfg.runtime = Runtime::OldRenewal;
    cfg.faults = 1;
    cfg.fault_kinds = fault::PAUSE;
    cfg.slow = 1;
    cfg.drift = 1;
    cfg.horizon = 7;
    assert_finds("the old renewal rule", cfg, DEPTH, ONE_MASTER);
}

#[test]
fn undone_silence_from_successful_reads_only_is_found() {
    let mut cfg = after_election();
    cfg.runtime = Runtime::FailedReadIsSilence;
    cfg.faults = 3;
    cfg.fault_kinds = fault::PAUSE | fault::FAIL;
    cfg.horizon = 7;
    assert_finds("failed reads as silence", cfg, DEPTH, ONE_MASTER);
}

#[test]
fn undone_restart_detection_is_found() {
    let mut cfg = after_election();
    cfg.runtime = Runtime::RestartLooksLikeTheOldProcess;
    cfg.faults = 2;
    cfg.fault_kinds = fault::CRASH | fault::PAUSE;
    cfg.horizon = 7;
    assert_finds("restart seen by the counter alone", cfg, DEPTH, ONE_MASTER);
}

#[test]
fn a_safety_margin_below_twice_the_clock_drift_is_found() {
    let mut cfg = after_election();
    cfg.margin = 1;
    cfg.faults = 1;
    cfg.fault_kinds = fault::PAUSE;
    cfg.drift = 2;
    cfg.horizon = 9;
    assert_finds(
        "safety margin 1 tick, drift ±1 tick",
        cfg,
        DEPTH,
        ONE_MASTER,
    );
}

#[test]
fn reads_that_may_be_stale_break_exclusion() {
    let mut cfg = after_election();
    cfg.reads = Reads::Stale;
    cfg.operator = 1;
    cfg.faults = 1;
    cfg.fault_kinds = fault::UNANSWERED;
    cfg.horizon = 9;
    assert_finds("monotonic but stale reads", cfg, DEPTH, ONE_MASTER);
}

// ----- two masters the checker found in the election core, since fixed (docs/model-check.md) -
//
// Each is a fixed action sequence the checker produced, replayed on the current runtime.

/// a crashes while b is paused; a's new process heartbeats from 1 again and, by the time b
/// resumes, a's record holds the very counter b last saw from a's old process. Compared by the
/// counter alone, b takes "unchanged for a timeout" for silence and claims while a acts.
/// Re-recorded with `undone_restart_detection_is_found` (the first recording no longer replayed
/// once restarts started later).
const RESTARTED_HEARTBEAT_REPEATS: &str = "tick a.crash b.pause tick tick a.restart a=h1 a=none \
    a=ok a=v6,4 a.poll a=ok a=none a=v7,4 tick a.poll a=ok a=none a=v8,4 tick a.poll a=ok a=none \
    b.resume b.poll b=ok a=v9,5 b=none a=ok a=ok b=v10 b=v10,5 b=found b=ok";

/// b is promoted; its StepDown to a goes unanswered, so it claims epoch 2 without proof that a
/// stopped; it is paused with the create in flight, so its own lease has lapsed when the claim is
/// won: `claim_won` fences it and forgets that a must be waited out. b's next poll sees its own
/// (not acting) claim as the highest, a's record below it, no active master, and claims epoch 3
/// as if a had stopped, while a, which has not read the new claims yet, acts in epoch 1.
const PROMOTION_FENCED_BY_A_LAPSED_LEASE: &str = "tick b.promote a.poll a=ok a=none b=none \
    b=none b.silent b.pause tick a.poll a=ok a=none tick a.poll a=ok a=none tick b.resume a.poll \
    a=ok a=none b=ok b=ok b=none b=ok b=ok b.poll b=ok b=none tick a.poll a=ok a=found a=found \
    a=none a=v7 b.poll b=ok b=none";

/// The sequence breaks exclusion when a restart looks like the old process, and not on the
/// current runtime, where b sees a's new process as a change (the replay may stop early there:
/// b no longer claims, so its later steps are not possible).
#[test]
fn a_restarted_peer_whose_heartbeat_repeats_is_not_taken_for_silent() {
    let mut cfg = after_election();
    cfg.faults = 2;
    cfg.fault_kinds = fault::CRASH | fault::PAUSE;
    cfg.horizon = 9;
    cfg.runtime = Runtime::RestartLooksLikeTheOldProcess;
    let steps: Vec<&str> = RESTARTED_HEARTBEAT_REPEATS.split_whitespace().collect();
    let (replayed, found) = replay_breaks(cfg.clone(), RESTARTED_HEARTBEAT_REPEATS);
    assert_eq!(replayed, steps.len(), "the sequence no longer replays");
    assert_eq!(
        found,
        [ONE_MASTER],
        "the counterexample still breaks exclusion"
    );
    cfg.runtime = Runtime::Current;
    let (replayed, found) = replay_breaks(cfg, RESTARTED_HEARTBEAT_REPEATS);
    assert!(found.is_empty(), "broken: {found:?}");
    // The current runtime follows the schedule at least until b, resumed, has read a's record.
    let read_after_resume = steps
        .iter()
        .position(|step| *step == "b.resume")
        .expect("b resumes")
        + 3;
    assert!(
        replayed >= read_after_resume,
        "diverged at step {replayed}, before b read a's record"
    );
}

#[test]
fn a_promotion_whose_claim_lands_after_the_lease_still_waits_out_the_master() {
    let mut cfg = after_election();
    cfg.faults = 2;
    cfg.operator = 1;
    cfg.horizon = 7;
    let (replayed, found) = replay_breaks(cfg, PROMOTION_FENCED_BY_A_LAPSED_LEASE);
    assert_eq!(
        replayed,
        PROMOTION_FENCED_BY_A_LAPSED_LEASE
            .split_whitespace()
            .count(),
        "the sequence no longer replays"
    );
    assert!(found.is_empty(), "broken: {found:?}");
}

/// The runs in which the checker found them by itself, which hold since the fixes. The first:
/// two faults (crash, pause) after the first election. Long: run by hand.
#[test]
#[ignore = "long: run by hand"]
fn two_crashes_or_pauses_after_the_first_election() {
    let mut cfg = after_election();
    cfg.faults = 2;
    cfg.fault_kinds = fault::CRASH | fault::PAUSE;
    cfg.horizon = 9;
    assert_holds("two crashes or pauses", cfg, DEPTH);
}

/// ... and the second: a promotion with slow store calls and an unanswered StepDown.
#[test]
#[ignore = "long: run by hand"]
fn a_promotion_with_slow_calls_and_an_unanswered_step_down() {
    let mut cfg = after_election();
    cfg.operator = 1;
    cfg.faults = 1;
    cfg.fault_kinds = fault::UNANSWERED;
    cfg.slow = 2;
    cfg.horizon = 8;
    assert_holds("promotion, slow calls, StepDown unanswered", cfg, DEPTH);
}
