//! A compact text form of action sequences, so that a counterexample the checker printed can be
//! kept as a fixed sequence in a regression test. Tokens, separated by white space:
//!
//! - `tick`, or `tick/ab` when the clocks of `a` and `b` are a tick behind after it;
//! - `a.poll`, `a.begin` (a slow call begins), `a.land`, `a.pause`, `a.resume`, `a.crash`,
//!   `a.restart`, `a.promote`, `a.demote`, `a.priority`, `a.stepdown` (answers a StepDown),
//!   `a.follow` (its loop follows the step-down),
//!   `a.yes` / `a.no` (StepDown answered) and `a.silent` (StepDown unanswered);
//! - `a=OUTCOME` (a call made and answered in one step) and `a~OUTCOME` (the answer to a slow
//!   call), OUTCOME one of `ok`, `lost`, `failed`, `exists`, `found`, `none` (claim not
//!   found), `v3` (record version 3), `v3,5` (scan: one version per node), `h2` (highest claim).

use super::plane::{Action, Outcome, Plane, State};
use stateright::Model;

/// `actions` in the text form.
pub fn encode(plane: &Plane, actions: &[Action]) -> String {
    actions
        .iter()
        .map(|action| token(plane, action))
        .collect::<Vec<_>>()
        .join(" ")
}

fn token(plane: &Plane, action: &Action) -> String {
    let n = |node: &usize| plane.name(*node);
    match action {
        Action::Tick { slow: 0 } => "tick".to_owned(),
        Action::Tick { slow } => {
            let behind: String = (0..plane.cfg.nodes)
                .filter(|node| slow >> node & 1 == 1)
                .map(|node| plane.name(node))
                .collect();
            format!("tick/{behind}")
        }
        Action::Poll(node) => format!("{}.poll", n(node)),
        Action::Begin(node) => format!("{}.begin", n(node)),
        Action::Land(node) => format!("{}.land", n(node)),
        Action::Pause(node) => format!("{}.pause", n(node)),
        Action::Resume(node) => format!("{}.resume", n(node)),
        Action::Crash(node) => format!("{}.crash", n(node)),
        Action::Restart(node) => format!("{}.restart", n(node)),
        Action::Promote(node) => format!("{}.promote", n(node)),
        Action::Demote(node) => format!("{}.demote", n(node)),
        Action::RaisePriority(node) => format!("{}.priority", n(node)),
        Action::AnswerStepDown(node) => format!("{}.stepdown", n(node)),
        Action::FollowStepDown(node) => format!("{}.follow", n(node)),
        Action::StepDownAnswer(node, Some(true)) => format!("{}.yes", n(node)),
        Action::StepDownAnswer(node, Some(false)) => format!("{}.no", n(node)),
        Action::StepDownAnswer(node, None) => format!("{}.silent", n(node)),
        Action::Call(node, outcome) => format!("{}={}", n(node), outcome_token(outcome)),
        Action::Answer(node, outcome) => format!("{}~{}", n(node), outcome_token(outcome)),
    }
}

fn outcome_token(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Lost => "lost".to_owned(),
        Outcome::Failed => "failed".to_owned(),
        Outcome::Exists => "exists".to_owned(),
        Outcome::Found(true) => "found".to_owned(),
        Outcome::Found(false) => "none".to_owned(),
        Outcome::Version(version) => format!("v{version}"),
        Outcome::Versions(versions) => format!(
            "v{}",
            versions
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Outcome::Highest(epoch) => format!("h{epoch}"),
    }
}

/// The actions of a text form; panics on a token it cannot read.
pub fn decode(plane: &Plane, text: &str) -> Vec<Action> {
    let node = |name: &str| {
        (0..plane.cfg.nodes)
            .find(|node| plane.name(*node) == name)
            .unwrap_or_else(|| panic!("no node {name:?}"))
    };
    text.split_whitespace()
        .map(|token| {
            if token == "tick" {
                return Action::Tick { slow: 0 };
            }
            if let Some(behind) = token.strip_prefix("tick/") {
                let slow = behind
                    .chars()
                    .map(|name| 1 << node(&name.to_string()))
                    .sum();
                return Action::Tick { slow };
            }
            if let Some((name, outcome)) = token.split_once('=') {
                return Action::Call(node(name), parse_outcome(outcome, plane.cfg.nodes));
            }
            if let Some((name, outcome)) = token.split_once('~') {
                return Action::Answer(node(name), parse_outcome(outcome, plane.cfg.nodes));
            }
            let (name, verb) = token
                .split_once('.')
                .unwrap_or_else(|| panic!("unreadable token {token:?}"));
            let n = node(name);
            match verb {
                "poll" => Action::Poll(n),
                "begin" => Action::Begin(n),
                "land" => Action::Land(n),
                "pause" => Action::Pause(n),
                "resume" => Action::Resume(n),
                "crash" => Action::Crash(n),
                "restart" => Action::Restart(n),
                "promote" => Action::Promote(n),
                "demote" => Action::Demote(n),
                "priority" => Action::RaisePriority(n),
                "stepdown" => Action::AnswerStepDown(n),
                "follow" => Action::FollowStepDown(n),
                "yes" => Action::StepDownAnswer(n, Some(true)),
                "no" => Action::StepDownAnswer(n, Some(false)),
                "silent" => Action::StepDownAnswer(n, None),
                _ => panic!("unreadable token {token:?}"),
            }
        })
        .collect()
}

fn parse_outcome(text: &str, nodes: usize) -> Outcome {
    let number = |digits: &str| {
        digits
            .parse::<u32>()
            .unwrap_or_else(|_| panic!("unreadable outcome {text:?}"))
    };
    match text {
        "ok" => Outcome::Ok,
        "lost" => Outcome::Lost,
        "failed" => Outcome::Failed,
        "exists" => Outcome::Exists,
        "found" => Outcome::Found(true),
        "none" => Outcome::Found(false),
        _ if text.starts_with('h') => Outcome::Highest(u64::from(number(&text[1..]))),
        _ if text.starts_with('v') && text.contains(',') => {
            let versions: Vec<u32> = text[1..].split(',').map(number).collect();
            assert_eq!(versions.len(), nodes, "a scan reads one version per node");
            Outcome::Versions(versions)
        }
        _ if text.starts_with('v') => Outcome::Version(number(&text[1..])),
        _ => panic!("unreadable outcome {text:?}"),
    }
}

/// A plain run of `plane` from `state` until global time `until`: at every tick each node in
/// turn (a, b, c) takes its steps, every call answered with success and the newest version,
/// until all are done; then time passes. The `events` (tick, token) are taken in order, each as
/// soon as it is on offer at its tick, before any plain step. Returns the actions taken (to
/// replay or to print) and the state reached. (`Config::start_at` runs it without events.)
pub fn drive_from(
    plane: &Plane,
    mut state: State,
    until: u32,
    events: &[(u32, &str)],
) -> (Vec<Action>, State) {
    let mut taken = Vec::new();
    let mut events = events.iter().peekable();
    loop {
        let mut offered = Vec::new();
        plane.actions(&state, &mut offered);
        let next = events
            .next_if(|(tick, token)| {
                *tick <= state.time && offered.contains(&decode(plane, token)[0])
            })
            .map(|(_, token)| decode(plane, token).remove(0))
            .or_else(|| default_step(&offered))
            .or_else(|| {
                (state.time < until)
                    .then_some(Action::Tick { slow: 0 })
                    .filter(|tick| offered.contains(tick))
            });
        if let (Some(Action::Tick { .. }), Some((tick, token))) = (&next, events.peek()) {
            assert!(
                *tick > state.time,
                "{token} was never possible at tick {tick}"
            );
        }
        let Some(action) = next else {
            assert!(events.next().is_none(), "events left after tick {until}");
            return (taken, state);
        };
        state = plane
            .next_state(&state, action.clone())
            .expect("every action changes the state");
        taken.push(action);
    }
}

/// The first node step on offer: a call answered with success (the newest version), a poll,
/// a StepDown handled or answered.
fn default_step(offered: &[Action]) -> Option<Action> {
    let successful = |outcome: &Outcome| !matches!(outcome, Outcome::Failed | Outcome::Lost);
    let node_of = |action: &Action| match action {
        Action::Call(node, outcome) | Action::Answer(node, outcome) if successful(outcome) => {
            Some(*node)
        }
        Action::Poll(node) | Action::AnswerStepDown(node) | Action::FollowStepDown(node) => {
            Some(*node)
        }
        Action::StepDownAnswer(node, Some(_)) => Some(*node),
        _ => None,
    };
    let first = offered.iter().filter_map(node_of).min()?;
    // Reads offer their versions oldest first: the last answer on offer is the newest; a
    // claim read finds the claim if it may.
    offered
        .iter()
        .filter(|action| node_of(action) == Some(first))
        .max_by_key(|action| match action {
            Action::Call(_, outcome) | Action::Answer(_, outcome) => {
                u8::from(*outcome != Outcome::Found(false))
            }
            _ => 0,
        })
        .cloned()
}
