//! Running the checker and reading its answers: a counterexample prints as one line per step
//! (node, action, clock) followed by every node's state and the store's contents; a fixed action
//! sequence can be replayed to turn a counterexample into a regression test.

use super::plane::{Action, Life, Op, Outcome, Pc, Plane, SAFETY, State};
use stateright::{Checker, HasDiscoveries, Model};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What one checker run found.
pub struct Report {
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Property name and the readable trace of its discovery.
    pub violations: Vec<(&'static str, String)>,
    /// The action sequences of the discoveries, same order.
    pub paths: Vec<Vec<Action>>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} unique states ({} generated), depth {}, {:.1} s",
            self.unique_states,
            self.states,
            self.max_depth,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Breadth-first search of `plane` to `depth` steps, on two threads; stops at the first
/// violation when `stop_at_first`.
pub fn check(plane: Plane, depth: usize, stop_at_first: bool) -> Report {
    let begun = Instant::now();
    let mut builder = plane.checker().threads(2).target_max_depth(depth);
    if stop_at_first {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = begun.elapsed();
    let plane = checker.model();
    let mut violations = Vec::new();
    let mut paths = Vec::new();
    let mut found: Vec<_> = checker.discoveries().into_iter().collect();
    found.sort_by_key(|(name, _)| *name);
    for (name, path) in found {
        let steps = path.into_vec();
        violations.push((name, render(plane, &steps)));
        paths.push(steps.into_iter().filter_map(|(_, action)| action).collect());
    }
    Report {
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        violations,
        paths,
    }
}

/// Replays `actions` from the initial state; stops early (returning the states so far) at the
/// first action the model does not offer.
pub fn replay(plane: &Plane, actions: &[Action]) -> (Vec<State>, bool) {
    let mut state = plane.init_states().remove(0);
    let mut states = vec![state.clone()];
    for action in actions {
        let mut offered = Vec::new();
        plane.actions(&state, &mut offered);
        if !offered.contains(action) {
            return (states, false);
        }
        state = plane
            .next_state(&state, action.clone())
            .expect("every action changes the state");
        states.push(state.clone());
    }
    (states, true)
}

/// The safety properties `state` breaks.
pub fn broken(plane: &Plane, state: &State) -> Vec<&'static str> {
    plane
        .properties()
        .into_iter()
        .filter(|property| SAFETY.contains(&property.name) && !(property.condition)(plane, state))
        .map(|property| property.name)
        .collect()
}

/// A path as text: the initial state, then each action and the state after it.
pub fn render(plane: &Plane, steps: &[(State, Option<Action>)]) -> String {
    let mut text = String::new();
    let mut previous: Option<&Action> = None;
    for (index, (state, _)) in steps.iter().enumerate() {
        match previous {
            None => {
                let _ = writeln!(text, "initial state (t = {})", state.time);
            }
            Some(action) => {
                let _ = writeln!(
                    text,
                    "{index:>3}. t={:<2} {}",
                    state.time,
                    describe_action(plane, action)
                );
            }
        }
        text.push_str(&describe_state(plane, state));
        previous = steps[index].1.as_ref();
    }
    text
}

fn describe_action(plane: &Plane, action: &Action) -> String {
    let name = |node: &usize| plane.name(*node).to_owned();
    match action {
        Action::Tick { slow } => {
            let behind: Vec<String> = (0..plane.cfg.nodes)
                .filter(|node| slow >> node & 1 == 1)
                .map(|node| name(&node))
                .collect();
            if behind.is_empty() {
                "tick".to_owned()
            } else {
                format!("tick (clock of {} a tick behind)", behind.join(", "))
            }
        }
        Action::Poll(n) => format!("{}: poll", name(n)),
        Action::Land(n) => format!("{}: its write lands in the store", name(n)),
        Action::Begin(n) => format!("{}: its store call begins (slow)", name(n)),
        Action::Call(n, outcome) => format!(
            "{}: store call, answer {}",
            name(n),
            describe_outcome(outcome)
        ),
        Action::Answer(n, outcome) => format!("{}: answer {}", name(n), describe_outcome(outcome)),
        Action::Pause(n) => format!("{}: process paused", name(n)),
        Action::Resume(n) => format!("{}: process resumed", name(n)),
        Action::Crash(n) => format!("{}: crash", name(n)),
        Action::Restart(n) => format!("{}: restart", name(n)),
        Action::Promote(n) => format!("{}: operator promotes it (SetState MASTER)", name(n)),
        Action::Demote(n) => format!("{}: operator demotes it (SetState HOT_STANDBY)", name(n)),
        Action::RaisePriority(n) => format!("{}: operator sets priority 5", name(n)),
        Action::AnswerStepDown(n) => format!("{}: answers a StepDown request", name(n)),
        Action::FollowStepDown(n) => format!("{}: its loop follows the step-down", name(n)),
        Action::StepDownAnswer(n, answer) => match answer {
            Some(stopped) => format!("{}: StepDown answered stepped_down={stopped}", name(n)),
            None => format!("{}: StepDown unanswered (error or timeout)", name(n)),
        },
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Lost => "lost (the write landed, the caller sees an error)".to_owned(),
        Outcome::Failed => "failed / timed out".to_owned(),
        Outcome::Exists => "already exists".to_owned(),
        Outcome::Found(true) => "found".to_owned(),
        Outcome::Found(false) => "not found".to_owned(),
        Outcome::Version(version) => format!("version {version}"),
        Outcome::Versions(versions) => format!("versions {versions:?}"),
        Outcome::Highest(epoch) => format!("highest claim {epoch}"),
    }
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::PutRecord(record) => format!("put own record hb {}", record.heartbeat),
        Op::CreateClaim(claim) => format!("create master/{}", claim.epoch),
        Op::GetRecord(node) => format!("get record of node #{node}"),
        Op::GetClaim(epoch) => format!("get master/{epoch}"),
        Op::Scan => "scan nodes/".to_owned(),
        Op::LoadClaims => "list master/".to_owned(),
    }
}

fn describe_life(plane: &Plane, state: &State, node: usize, life: &Life) -> String {
    let election = &life.election;
    let p = life.published;
    let mut text = format!(
        "{} e{} (published {} e{}",
        election.state(),
        election.epoch(),
        p.state,
        p.epoch
    );
    if let Some(until) = p.lease.until {
        let _ = write!(text, ", lease < {}", plane.ticks(until));
    }
    if let Some(from) = p.lease.acting_from {
        let _ = write!(text, ", acting from {}", plane.ticks(from));
    }
    text.push(')');
    if plane.acting(state, node).is_some() {
        text.push_str(" ACTS AS MASTER");
    }
    match (&life.pc, &life.call) {
        (Pc::Idle, _) => text.push_str("; idle"),
        (pc, Some(call)) => {
            let _ = write!(
                text,
                "; {pc:?}: {} since {}{}",
                describe_op(&call.op),
                call.started,
                match call.landed {
                    Some(true) => ", landed",
                    Some(false) => ", epoch taken",
                    None => "",
                }
            );
        }
        (pc, None) => {
            let _ = write!(text, "; {pc:?}");
        }
    }
    text
}

/// Every node (clock, state, what it is doing) and the store.
pub fn describe_state(plane: &Plane, state: &State) -> String {
    let mut text = String::new();
    for (i, node) in state.nodes.iter().enumerate() {
        let _ = write!(
            text,
            "       {} clock {}{}: ",
            plane.name(i),
            plane.clock(state, i),
            if node.paused_since.is_some() {
                " PAUSED"
            } else {
                ""
            }
        );
        match &node.life {
            Some(life) => text.push_str(&describe_life(plane, state, i, life)),
            None => text.push_str("down"),
        }
        text.push('\n');
    }
    let records: Vec<String> = state
        .store
        .records
        .iter()
        .enumerate()
        .map(|(i, versions)| match versions.current() {
            (version, Some(record)) => format!(
                "{}=v{version}[{} hb{} e{}{}]",
                plane.name(i),
                record.status,
                record.heartbeat,
                record.epoch_seen,
                if record.electable { "" } else { " unelectable" }
            ),
            (_, None) => format!("{}=none", plane.name(i)),
        })
        .collect();
    let claims: Vec<String> = state
        .store
        .claims
        .values()
        .map(|claim| format!("{}:{}", claim.epoch, claim.node_id))
        .collect();
    let _ = writeln!(
        text,
        "       store: {}; claims {{{}}}",
        records.join(" "),
        claims.join(", ")
    );
    text
}
