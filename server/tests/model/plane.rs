//! The model: two or three haplane nodes, each the real `Election` (server/src/election) driven by
//! a step-by-step copy of the node runtime (server/src/node/: `join_plane`, `poll_store`, `poll`,
//! `claim`, `set_mode`, `promote`, `step_down`, `bounded`, and `Publisher`, which answers
//! StepDown at once, outside the loop), over the abstract store of `store.rs`.
//!
//! Time. Global time is `State::time` in ticks of 100 ms. Each node reads its own monotonic clock
//! as global time minus a lag of 0 or 1 tick (`Config::max_lag`); the lag may change at every
//! tick, so a clock may stand still for a tick or jump two. Over any interval two clocks disagree
//! on the time elapsed by at most two ticks: ±1 tick, i.e. ±20 % over the 5-tick heartbeat
//! timeout, and the 2-tick safety margin is exactly what docs/behaviour.md §3.3 needs for it. A
//! node's `Instant` is a fixed base plus its clock in ticks.
//!
//! Steps. Every store call is two or three steps: it begins inside the step that reached it (as
//! `bounded` does: publish first, then call), a write may land in the store at any later step
//! (`Land`), and its answer arrives in a later step (`Answer`), at most the op timeout later by
//! the node's clock unless the node is paused. An answer may be a success, a failure or timeout
//! (the write never lands), or a lost answer (the write landed, the caller sees an error); reads
//! choose among the versions `Reads` allows. Between the steps of one node, every other node,
//! the clock, the store and the operator may move. A paused node takes no step for up to
//! `Config::pause` ticks (its clock runs on, its calls in flight may land); a crash drops the
//! node and its call, and a restart is a new `Election::new` that joins the plane again.
//!
//! What is not copied from the runtime: nudges (a node may poll at any tick anyway, at most
//! once a tick of its clock), the store identity check, record clean-up, `ListStates`, the
//! managed state, and the start-up modes other than AUTO.

use super::script::drive_from;
use super::store::{Reads, Store};
use haplane::{Epoch, HaMode, MasterClaim, NodeId, NodeRecord, NodeState};
use haplane_server::election::{
    Decision, Election, ElectionConfig, Lease, ModeChange, lease_allows_acting,
};
use stateright::{Model, Property};
use std::time::{Duration, Instant};

/// One tick of model time.
pub const TICK: Duration = Duration::from_millis(100);

/// How long the StepDown client waits for an answer, in ticks: the runtime's 2 s against its
/// default 10 s heartbeat timeout, as 1 tick against 5.
const STEP_DOWN_TIMEOUT: u32 = 1;

/// The priority `RaisePriority` gives a node (all start at 0).
const RAISED_PRIORITY: i64 = 5;

/// Which runtime the nodes run: the current one, or one with a known fix undone (each
/// reopens an exclusion window that the current code closed; the checker must find it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Current,
    /// The old lease rule: a write that began inside the lease renews it when its answer comes,
    /// however late, and without a read of the next claim begun after it.
    OldRenewal,
    /// A failed read of a peer's record is taken as a read that found it unchanged.
    FailedReadIsSilence,
    /// Operator promotion claims at once, without StepDown, as if the master had stopped.
    PromoteWithoutStepDown,
    /// A node that stopped acting publishes that only once its next store call has returned,
    /// not before it (as `bounded` does).
    PublishAfterCall,
    /// A restarted process writes the `started_at_ms` and `pid` of the one before it, so
    /// `Election::observe_record` can tell the two apart only by the heartbeat counter, as before
    /// it compared the process too.
    RestartLooksLikeTheOldProcess,
}

/// Kinds of fault (`Config::fault_kinds` is a set of them).
pub mod fault {
    /// A call fails or times out without effect.
    pub const FAIL: u8 = 1;
    /// A write lands but its answer is lost.
    pub const LOST: u8 = 2;
    pub const PAUSE: u8 = 4;
    pub const CRASH: u8 = 8;
    /// A StepDown request to a master that could answer goes unanswered.
    pub const UNANSWERED: u8 = 16;
    pub const ALL: u8 = FAIL | LOST | PAUSE | CRASH | UNANSWERED;
}

/// The size of one model run.
#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: usize,
    /// Heartbeat timeout, in ticks.
    pub timeout: u32,
    /// Safety margin, in ticks (the lease is `timeout - margin`).
    pub margin: u32,
    /// Longest a store call may take before the node gives up, in ticks.
    pub op_timeout: u32,
    /// Largest lag of a node's clock behind global time, in ticks (0 or 1).
    pub max_lag: u32,
    /// Global time does not pass this tick.
    pub horizon: u32,
    /// Failed, timed-out and lost-answer calls, pauses, crashes and unanswered StepDowns, in all.
    pub faults: u8,
    /// Which kinds of fault may happen (`fault::ALL` unless a run looks at one window).
    pub fault_kinds: u8,
    /// Slow calls (answered up to the op timeout after they began, other steps in between), in
    /// all; every other call is made and answered in one step.
    pub slow: u8,
    /// Changes of a clock's lag, in all.
    pub drift: u8,
    /// Promotions, demotions and priority changes, in all.
    pub operator: u8,
    /// Longest pause, in ticks.
    pub pause: u32,
    pub reads: Reads,
    pub runtime: Runtime,
    /// Nodes start already joined (each node's join run once, in order, at time 0, every call
    /// answered at once) instead of joining concurrently.
    pub joined_at_start: bool,
    /// Exploration starts at this tick, after a fault-free run to it (`script::drive`).
    pub start_at: u32,
    /// Check liveness too (runs without operator actions): a master is elected, and one acts
    /// again within a timeout and two polls (and a tick of clock lag) of the last fault.
    pub liveness: bool,
}

impl Config {
    /// The default timings (timeout 5 ticks, margin 2, op timeout 1) for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            timeout: 5,
            margin: 2,
            // docs/behaviour.md §3.4: half the lease (1.5 ticks), whole ticks only.
            op_timeout: 1,
            max_lag: 1,
            horizon: 12,
            faults: 2,
            fault_kinds: fault::ALL,
            slow: 2,
            drift: 2,
            operator: 1,
            pause: 7,
            reads: Reads::Linearizable,
            runtime: Runtime::Current,
            joined_at_start: true,
            start_at: 0,
            liveness: false,
        }
    }

    fn lease(&self) -> u32 {
        self.timeout - self.margin
    }

    /// Whether a fault of `kind` may still happen in `state`.
    fn may(&self, state: &State, kind: u8) -> bool {
        state.faults_left > 0 && self.fault_kinds & kind != 0
    }
}

/// The model of one plane.
pub struct Plane {
    pub cfg: Config,
    ids: Vec<NodeId>,
    /// Tick 0 of every clock.
    base: Instant,
}

/// Where a node's runtime is: what it does when the call in flight answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    Idle,
    JoinLoadClaims,
    JoinProbe,
    JoinWrite,
    JoinScan,
    PollWrite,
    PollProbe,
    PollReadMaster,
    PollScan,
    PollCatchUp,
    ClaimCreate {
        predecessor_stopped: bool,
        by: By,
    },
    ClaimReadBack {
        by: By,
    },
    ClaimWrite {
        by: By,
    },
    /// `set_mode(MASTER)` probes the claims before it asks the election.
    PromoteFirstProbe,
    PromoteProbe {
        attempt: u8,
    },
    /// Waiting for the master's answer to StepDown (no store call in flight), asked at clock
    /// tick `asked`.
    AwaitStepDown {
        attempt: u8,
        target: usize,
        epoch: Epoch,
        asked: u32,
        reply: Option<bool>,
    },
    /// The record write of a command (demotion, priority, StepDown); then idle.
    CommandWrite,
}

/// Who asked for a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum By {
    Poll,
    Promote { attempt: u8 },
}

/// The store call a node is making. The runtime starts it (`bounded`) at `started`; the call
/// is either made and answered in one step, or, if slow, begun in one step and answered later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub op: Op,
    /// The node's clock when the runtime started it, in ticks (for the op timeout) and exactly.
    pub started: u32,
    pub start: Instant,
    /// Set once a slow call has begun: what the store held then.
    pub window: Option<Window>,
    /// For writes: whether it landed (`Some(false)`: a create that found the epoch taken).
    pub landed: Option<bool>,
}

/// What the store held when a read began: a linearizable read returns that or something newer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The current version of each record key.
    pub records: Vec<u32>,
    /// Bit `e`: claim `e` existed.
    pub claims: u64,
}

impl Window {
    fn of(store: &Store) -> Self {
        Self {
            records: store
                .records
                .iter()
                .map(|versions| versions.current().0)
                .collect(),
            claims: store.claims.keys().fold(0, |bits, epoch| bits | 1 << epoch),
        }
    }

    fn has_claim(&self, epoch: Epoch) -> bool {
        self.claims & 1 << epoch != 0
    }
}

/// A store operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    PutRecord(NodeRecord),
    CreateClaim(MasterClaim),
    GetRecord(usize),
    GetClaim(Epoch),
    /// List `nodes/` and read every record (`scan_members`).
    Scan,
    /// List `master/` and read the highest claim (`load_claims`).
    LoadClaims,
}

/// What a node's readers see (the runtime's published `Snapshot`, the part that decides
/// whether the node acts as master).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Published {
    pub state: NodeState,
    pub lease: Lease,
    pub epoch: Epoch,
}

/// One process of a node, from its start to its crash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Life {
    pub election: Election,
    pub published: Published,
    pub pc: Pc,
    pub call: Option<Call>,
    pub joined: bool,
    /// The clock tick of the last poll (at most one a tick).
    pub last_poll: Option<u32>,
    /// Start of the latest own-record write answered with success.
    pub last_ok_write: Option<Instant>,
    /// Per record key, the version this process last read (monotonic reads).
    pub last_read: Vec<u32>,
    /// Bit `e`: this process read claim `e`.
    pub claims_read: u64,
    /// A StepDown request from (node, epoch), not yet answered.
    pub request: Option<(usize, Epoch)>,
    /// The step-down the loop is still to follow (`Command::StepDown`).
    pub queued: Option<Epoch>,
    /// The highest epoch a peer asked this process to leave (`Publisher::step_down_from`).
    pub step_down_from: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// Ticks this node's clock is behind global time.
    pub lag: u32,
    /// Clock readings this node took at the current tick of its clock: each reads one
    /// nanosecond later than the one before, as a real monotonic clock moves on between two
    /// calls (a read begun after a write began must read a later instant).
    pub readings: u32,
    /// Global tick at which a pause began.
    pub paused_since: Option<u32>,
    /// `None` while crashed (or exited after a failed join).
    pub life: Option<Life>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub time: u32,
    pub nodes: Vec<Node>,
    pub store: Store,
    pub faults_left: u8,
    pub slow_left: u8,
    pub drift_left: u8,
    pub operator_left: u8,
    /// Set for good by a step that moved a node's epoch back or made a node act in an epoch
    /// older than one some node acted in before.
    pub epoch_went_back: bool,
    pub highest_acting_epoch: Epoch,
    /// Liveness runs: the global tick of the last fault, pause, resumption or restart.
    pub last_fault: u32,
}

/// How a call in flight is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write succeeded (it lands now if it had not yet).
    Ok,
    /// A write landed (now, if it had not yet) but its answer was lost: the caller sees an error.
    Lost,
    /// The call failed or timed out; a write that had not landed never will.
    Failed,
    /// A create found the epoch taken.
    Exists,
    /// A claim read found the claim, or not.
    Found(bool),
    /// A record read returned this version (0: no record).
    Version(u32),
    /// A scan returned these versions, one per node.
    Versions(Vec<u32>),
    /// `load_claims` found this highest epoch (0: none).
    Highest(Epoch),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Global time passes one tick; nodes whose bit is set in `slow` are a tick behind after it.
    Tick {
        slow: u8,
    },
    /// The runtime's ticker fires: `poll`.
    Poll(usize),
    /// The node makes its store call and gets this answer, in one step.
    Call(usize, Outcome),
    /// The node's store call begins, to be answered in a later step.
    Begin(usize),
    /// The node's write in flight takes effect in the store.
    Land(usize),
    /// The answer to a call that began earlier.
    Answer(usize, Outcome),
    Pause(usize),
    Resume(usize),
    Crash(usize),
    Restart(usize),
    /// Operator: `SetState(MASTER)`.
    Promote(usize),
    /// Operator: `SetState(HOT_STANDBY)`.
    Demote(usize),
    /// Operator: `SetPriority(5)`.
    RaisePriority(usize),
    /// The node answers a StepDown request at once, outside its loop (`Publisher::step_down`).
    AnswerStepDown(usize),
    /// The node's loop follows a step-down it answered: election, record, peers.
    FollowStepDown(usize),
    /// The promoter gets the master's answer, or none (`None`: error or timeout; a request the
    /// master had not taken yet is lost).
    StepDownAnswer(usize, Option<bool>),
}

/// What the runtime sees of an answer.
enum Got {
    Done,
    Failed,
    Exists,
    Record(Option<NodeRecord>),
    Claim(Option<MasterClaim>),
    Records(Vec<Option<NodeRecord>>),
}

impl Plane {
    pub fn new(cfg: Config) -> Self {
        assert!(
            cfg.nodes <= 3 && cfg.max_lag <= 1,
            "the model is sized for 2-3 nodes"
        );
        let ids = ["a", "b", "c"][..cfg.nodes]
            .iter()
            .map(|name| NodeId::parse(name).expect("valid id"))
            .collect();
        Self {
            cfg,
            ids,
            base: Instant::now(),
        }
    }

    pub fn name(&self, node: usize) -> &str {
        self.ids[node].as_str()
    }

    fn index(&self, id: &NodeId) -> usize {
        self.ids
            .iter()
            .position(|known| known == id)
            .expect("claims and records name model nodes")
    }

    pub fn instant(&self, ticks: u32) -> Instant {
        self.base + TICK * ticks
    }

    /// An instant as clock ticks (for traces).
    pub fn ticks(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.base).as_secs_f64() / TICK.as_secs_f64()
    }

    pub fn clock(&self, state: &State, node: usize) -> u32 {
        state.time - state.nodes[node].lag
    }

    /// The instant of `node`'s latest clock reading (tick and readings within it).
    pub fn reading(&self, state: &State, node: usize) -> Instant {
        self.instant(self.clock(state, node))
            + Duration::from_nanos(u64::from(state.nodes[node].readings))
    }

    /// `started_at_ms`: when this process started (a restart starts later, as in node/runtime.rs).
    fn election_config(&self, node: usize, started_at_ms: i64) -> ElectionConfig {
        ElectionConfig {
            node_id: self.ids[node].clone(),
            node_uri: format!("http://{}", self.ids[node]),
            version: "1.0".to_owned(),
            heartbeat_timeout: TICK * self.cfg.timeout,
            safety_margin: TICK * self.cfg.margin,
            // node/runtime.rs: two poll periods; a poll period is one tick here.
            startup_grace: TICK * 2,
            started_at_ms,
            pid: 1,
            hostname: "model".to_owned(),
        }
    }

    /// The epoch `node` acts as master in now, if it does: what its readers see.
    pub fn acting(&self, state: &State, node: usize) -> Option<Epoch> {
        let life = state.nodes[node].life.as_ref()?;
        let now = self.reading(state, node);
        let p = life.published;
        lease_allows_acting(p.state, false, p.lease, now).then_some(p.epoch)
    }

    fn running(state: &State, node: usize) -> Option<&Life> {
        let n = &state.nodes[node];
        n.life.as_ref().filter(|_| n.paused_since.is_none())
    }

    fn idle(state: &State, node: usize) -> Option<&Life> {
        Self::running(state, node).filter(|life| life.joined && life.pc == Pc::Idle)
    }

    /// The answers the call at `node` may get, if answered now: it began when the store held
    /// `window`.
    fn outcomes(&self, state: &State, node: usize, life: &Life, call: &Call) -> Vec<Outcome> {
        let fail = self.cfg.may(state, fault::FAIL);
        let lost = self.cfg.may(state, fault::LOST);
        let store = &state.store;
        let reads = self.cfg.reads;
        let window = call.window.clone().unwrap_or_else(|| Window::of(store));
        let mut out = Vec::new();
        match &call.op {
            Op::PutRecord(_) => {
                out.push(Outcome::Ok);
                if lost {
                    out.push(Outcome::Lost);
                }
                if fail && call.landed.is_none() {
                    out.push(Outcome::Failed);
                }
            }
            Op::CreateClaim(claim) => {
                let wins = call
                    .landed
                    .unwrap_or_else(|| !store.claims.contains_key(&claim.epoch));
                if wins {
                    out.push(Outcome::Ok);
                    if lost {
                        out.push(Outcome::Lost);
                    }
                } else {
                    out.push(Outcome::Exists);
                }
                if fail && call.landed.is_none() {
                    out.push(Outcome::Failed);
                }
            }
            Op::GetRecord(key) => {
                let versions = &store.records[*key];
                for version in versions.readable(reads, window.records[*key], life.last_read[*key])
                {
                    out.push(Outcome::Version(version));
                }
                if fail {
                    out.push(Outcome::Failed);
                }
            }
            Op::GetClaim(epoch) => {
                let present = store.claims.contains_key(epoch);
                if present {
                    out.push(Outcome::Found(true));
                }
                let may_miss = match reads {
                    Reads::Linearizable => !window.has_claim(*epoch),
                    Reads::Stale => life.claims_read & 1 << epoch == 0,
                };
                if !present || may_miss {
                    out.push(Outcome::Found(false));
                }
                if fail {
                    out.push(Outcome::Failed);
                }
            }
            Op::Scan => {
                let mut combos: Vec<Vec<u32>> = vec![Vec::new()];
                for (key, versions) in store.records.iter().enumerate() {
                    // Our own record is only listed (to tell the claimant's absence), not read.
                    let choices = if key == node {
                        vec![versions.current().0]
                    } else {
                        versions.readable(reads, window.records[key], life.last_read[key])
                    };
                    combos = combos
                        .into_iter()
                        .flat_map(|combo| {
                            choices.iter().map(move |version| {
                                let mut next = combo.clone();
                                next.push(*version);
                                next
                            })
                        })
                        .collect();
                }
                out.extend(combos.into_iter().map(Outcome::Versions));
                if fail {
                    out.push(Outcome::Failed);
                }
            }
            Op::LoadClaims => {
                let lowest = match reads {
                    Reads::Linearizable => {
                        Epoch::from(64 - window.claims.leading_zeros()).saturating_sub(1)
                    }
                    Reads::Stale => 0,
                };
                for epoch in lowest..=store.highest_claim() {
                    out.push(Outcome::Highest(epoch));
                }
                if fail {
                    out.push(Outcome::Failed);
                }
            }
        }
        out
    }

    /// Whether global time may pass a tick, with the nodes whose bit is set in `slow` a tick
    /// behind after it. Time waits for every running node to have polled at this tick of its
    /// clock (the runtime's ticker) and to have made every call it started, unless the call is
    /// slow and still within the op timeout.
    fn tick_allowed(&self, state: &State, slow: u8) -> bool {
        if state.time >= self.cfg.horizon {
            return false;
        }
        let lag_changes = state
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, node)| u32::from(slow >> i & 1 == 1) != node.lag)
            .count();
        if lag_changes > usize::from(state.drift_left) {
            return false;
        }
        state.nodes.iter().enumerate().all(|(i, node)| {
            let clock = state.time + 1 - u32::from(slow >> i & 1 == 1);
            if let Some(since) = node.paused_since {
                return state.time + 1 - since <= self.cfg.pause;
            }
            let Some(life) = &node.life else {
                return true;
            };
            let call_done = life.call.as_ref().is_none_or(|call| {
                call.window.is_some() && clock <= call.started + self.cfg.op_timeout
            });
            // The StepDown client gives up after 2 s: a tick at this scale.
            let asking = match life.pc {
                Pc::AwaitStepDown { asked, .. } => clock <= asked + STEP_DOWN_TIMEOUT,
                _ => true,
            };
            let polled = life.pc != Pc::Idle
                || (life.queued.is_none() && life.last_poll == Some(self.clock(state, i)));
            call_done && asking && polled
        })
    }

    /// A new process of `node` starting now: it joins the plane (`join_plane`).
    fn start(&self, state: &mut State, node: usize) {
        let now = Step::new(self, state, node).now();
        let started_at_ms = match self.cfg.runtime {
            Runtime::RestartLooksLikeTheOldProcess => 0,
            _ => i64::from(state.time),
        };
        let config = self.election_config(node, started_at_ms);
        let election = Election::new(config, HaMode::Auto, 0, now);
        let published = Published {
            state: election.state(),
            lease: election.lease(),
            epoch: election.epoch(),
        };
        state.nodes[node].life = Some(Life {
            election,
            published,
            pc: Pc::Idle,
            call: None,
            joined: false,
            last_poll: None,
            last_ok_write: None,
            last_read: vec![0; self.cfg.nodes],
            claims_read: 0,
            request: None,
            queued: None,
            step_down_from: 0,
        });
        Step::new(self, state, node).begin(Op::LoadClaims, Pc::JoinLoadClaims);
    }

    /// Runs every node's join alone and at once, node after node, at time 0.
    fn join_in_order(&self, state: &mut State) {
        for node in 0..self.cfg.nodes {
            self.start(state, node);
            while let Some(call) = state.nodes[node].life.as_ref().and_then(|l| l.call.clone()) {
                let life = state.nodes[node].life.as_ref().expect("joining");
                let outcome = self
                    .outcomes(state, node, life, &call)
                    .into_iter()
                    .rev()
                    .find(|o| !matches!(o, Outcome::Failed | Outcome::Lost))
                    .expect("a successful answer");
                *state = self
                    .next_state(state, Action::Call(node, outcome))
                    .expect("a join step");
            }
        }
    }
}

/// One node's runtime taking a step: the copy of server/src/node/.
struct Step<'a> {
    plane: &'a Plane,
    state: &'a mut State,
    node: usize,
}

impl<'a> Step<'a> {
    fn new(plane: &'a Plane, state: &'a mut State, node: usize) -> Self {
        Self { plane, state, node }
    }

    fn clock(&self) -> u32 {
        self.plane.clock(self.state, self.node)
    }

    /// Reads the node's clock.
    fn now(&mut self) -> Instant {
        self.state.nodes[self.node].readings += 1;
        self.plane.reading(self.state, self.node)
    }

    fn life(&mut self) -> &mut Life {
        self.state.nodes[self.node]
            .life
            .as_mut()
            .expect("a running node")
    }

    fn election(&mut self) -> &mut Election {
        &mut self.life().election
    }

    fn id(&self) -> NodeId {
        self.plane.ids[self.node].clone()
    }

    /// `Runtime::publish` (the part readers decide with).
    /// A master snapshot of an epoch a peer asked us to leave is published stepped down
    /// (`Publisher::publish`).
    fn publish(&mut self) {
        let life = self.life();
        let mut published = Published {
            state: life.election.state(),
            lease: life.election.lease(),
            epoch: life.election.epoch(),
        };
        if published.state == NodeState::Master && published.epoch <= life.step_down_from {
            published.state = life.election.follower_state();
            published.lease = Lease::default();
        }
        life.published = published;
    }

    /// `Runtime::publish_if_stepped_down`.
    fn publish_if_stepped_down(&mut self) {
        let life = self.life();
        if life.published.state != life.election.state()
            || life.published.lease != life.election.lease()
        {
            self.publish();
        }
    }

    /// `Runtime::bounded`: publish a step-down first, then start the call.
    fn begin(&mut self, op: Op, pc: Pc) {
        let start = self.now();
        self.begin_at(op, pc, start);
    }

    fn begin_at(&mut self, op: Op, pc: Pc, start: Instant) {
        if self.plane.cfg.runtime != Runtime::PublishAfterCall {
            self.publish_if_stepped_down();
        }
        let started = self.clock();
        let life = self.life();
        life.call = Some(Call {
            op,
            started,
            start,
            window: None,
            landed: None,
        });
        life.pc = pc;
    }

    fn go_idle(&mut self) {
        self.publish();
        let life = self.life();
        life.pc = Pc::Idle;
        life.call = None;
    }

    /// A failed join: the process exits.
    fn exit(&mut self) {
        self.state.nodes[self.node].life = None;
    }

    /// `write_record`: our record with the heartbeat one higher.
    fn begin_write_record(&mut self, pc: Pc) {
        let start = self.now();
        let record = self.election().next_record(0, start);
        self.begin_at(Op::PutRecord(record), pc, start);
    }

    /// The end of `write_record`; whether it succeeded.
    fn write_answered(&mut self, start: Instant, got: &Got) -> bool {
        let ok = matches!(got, Got::Done);
        let now = self.now();
        if self.plane.cfg.runtime == Runtime::OldRenewal {
            self.election().own_write_finished(start, start, ok);
            if ok {
                // Renewal at once, as if a claim read begun after the write found none.
                self.election()
                    .no_newer_claim(start + Duration::from_nanos(1), start);
            }
        } else {
            self.election().own_write_finished(start, now, ok);
        }
        if ok {
            self.life().last_ok_write = Some(start);
        }
        self.publish_if_stepped_down();
        ok
    }

    /// `read_claim`'s effect once a claim was read.
    fn read_claim(&mut self, claim: MasterClaim) {
        let was_master = self.election().state() == NodeState::Master;
        self.election().observe_claim(claim);
        if was_master && self.election().state() != NodeState::Master {
            self.publish();
        }
    }

    /// One step of `probe_claims`: read `master/<known + 1>`.
    fn begin_probe(&mut self, pc: Pc) {
        let epoch = self.election().epoch() + 1;
        self.begin(Op::GetClaim(epoch), pc);
    }

    fn probe_answered(&mut self, pc: Pc, start: Instant, got: Got) {
        match got {
            Got::Claim(Some(claim)) => {
                self.read_claim(claim);
                self.begin_probe(pc);
            }
            Got::Claim(None) => {
                let now = self.now();
                self.election().no_newer_claim(start, now);
                self.publish_if_stepped_down();
                self.probed(pc, true);
            }
            _ => self.probed(pc, false),
        }
    }

    /// What follows `probe_claims` for each of its callers.
    fn probed(&mut self, pc: Pc, ok: bool) {
        match pc {
            Pc::JoinProbe if ok => self.begin_write_record(Pc::JoinWrite),
            Pc::JoinProbe => self.exit(),
            Pc::PollProbe => self.poll_read_master(),
            Pc::PromoteFirstProbe if ok => {
                self.publish();
                let now = self.now();
                match self.election().set_mode(HaMode::Master, now) {
                    Ok(ModeChange::Claim { .. }) => {
                        self.begin_probe(Pc::PromoteProbe { attempt: 0 });
                    }
                    Ok(ModeChange::Done | ModeChange::SteppedDown) => {
                        self.begin_write_record(Pc::CommandWrite);
                    }
                    Err(_) => self.go_idle(),
                }
            }
            Pc::PromoteProbe { attempt } if ok => self.promote_after_probe(attempt),
            Pc::PromoteFirstProbe | Pc::PromoteProbe { .. } => self.go_idle(),
            other => unreachable!("not a probe: {other:?}"),
        }
    }

    /// `promote`: ask the master that may be acting to step down, then claim.
    fn promote_after_probe(&mut self, attempt: u8) {
        let now = self.now();
        let me = self.id();
        match self.election().active_master(now) {
            Some(master) if master.node_id != me => {
                if self.plane.cfg.runtime == Runtime::PromoteWithoutStepDown {
                    let epoch = self.election().next_epoch();
                    self.begin_claim(epoch, "promoted by operator", true, By::Promote { attempt });
                    return;
                }
                let target = self.plane.index(&master.node_id);
                if let Some(life) = self.state.nodes[target].life.as_mut() {
                    life.request = Some((self.node, master.epoch));
                }
                let asked = self.clock();
                self.life().pc = Pc::AwaitStepDown {
                    attempt,
                    target,
                    epoch: master.epoch,
                    asked,
                    reply: None,
                };
            }
            _ => {
                let epoch = self.election().next_epoch();
                self.begin_claim(epoch, "promoted by operator", true, By::Promote { attempt });
            }
        }
    }

    /// `read_master_record`.
    fn poll_read_master(&mut self) {
        let me = self.id();
        match self.election().claim().map(|claim| claim.node_id.clone()) {
            Some(holder) if holder != me => {
                let node = self.plane.index(&holder);
                self.begin(Op::GetRecord(node), Pc::PollReadMaster);
            }
            _ => self.poll_scan(),
        }
    }

    fn poll_scan(&mut self) {
        let now = self.now();
        if self.election().wants_membership_scan(now) {
            self.begin(Op::Scan, Pc::PollScan);
        } else {
            self.poll_catch_up();
        }
    }

    /// `scan_members` once its reads are in (`records`: one per node, ours included).
    fn scan_answered(&mut self, start: Instant, records: Vec<Option<NodeRecord>>) {
        let now = self.now();
        let present: Vec<NodeId> = records
            .iter()
            .flatten()
            .map(|record| record.node_id.clone())
            .collect();
        for record in records.into_iter().flatten() {
            self.election().observe_record(record, start, now);
        }
        let claimant = self.election().claim().map(|claim| claim.node_id.clone());
        for id in self.election().peer_ids().into_iter().chain(claimant) {
            if !present.contains(&id) {
                self.election().observe_absent(&id, start, now);
            }
        }
    }

    /// The old mistake of `Runtime::FailedReadIsSilence`: a failed read of `ids` counts as a
    /// read that found their records unchanged.
    fn failed_read_as_silence(&mut self, start: Instant, ids: &[NodeId]) {
        if self.plane.cfg.runtime != Runtime::FailedReadIsSilence {
            return;
        }
        let now = self.now();
        for id in ids {
            if let Some(record) = self.election().peer(id).map(|peer| peer.record.clone()) {
                self.election().observe_record(record, start, now);
            }
        }
    }

    fn poll_catch_up(&mut self) {
        let seen = self.election().highest_epoch_seen();
        if seen > self.election().epoch() {
            self.begin(Op::GetClaim(seen), Pc::PollCatchUp);
        } else {
            self.poll_decide();
        }
    }

    /// The end of `poll_store`, then `poll`'s decision.
    fn poll_decide(&mut self) {
        let now = self.now();
        match self.election().decide(now) {
            Decision::Claim { epoch, reason } => self.begin_claim(epoch, &reason, true, By::Poll),
            Decision::Wait => self.go_idle(),
        }
    }

    /// `claim`: create `master/<epoch>`.
    fn begin_claim(&mut self, epoch: Epoch, reason: &str, predecessor_stopped: bool, by: By) {
        let claim = MasterClaim {
            epoch,
            node_id: self.id(),
            node_uri: format!("http://{}", self.id()),
            claimed_at: 0,
            reason: reason.to_owned(),
        };
        self.begin(
            Op::CreateClaim(claim),
            Pc::ClaimCreate {
                predecessor_stopped,
                by,
            },
        );
    }

    /// What follows `claim` for its caller: `Some(won)`, or `None` for an error.
    fn claim_done(&mut self, by: By, result: Option<bool>) {
        match (by, result) {
            (By::Promote { attempt: 0 }, Some(false)) => {
                self.begin_probe(Pc::PromoteProbe { attempt: 1 });
            }
            _ => self.go_idle(),
        }
    }

    /// The answer to the call in flight arrived.
    fn answer(&mut self, outcome: Outcome) {
        let call = self.life().call.take().expect("a call in flight");
        let pc = std::mem::replace(&mut self.life().pc, Pc::Idle);
        if matches!(outcome, Outcome::Lost | Outcome::Failed) {
            self.state.faults_left -= 1;
        }
        let got = self.got(&call, outcome);
        self.resume(pc, call, got);
    }

    /// Applies the store side of an answer and says what the runtime sees.
    fn got(&mut self, call: &Call, outcome: Outcome) -> Got {
        let node = self.node;
        match (&call.op, outcome) {
            (_, Outcome::Failed) => Got::Failed,
            (Op::PutRecord(record), outcome) => {
                if call.landed.is_none() {
                    self.state.store.put_record(node, record.clone());
                }
                if outcome == Outcome::Ok {
                    Got::Done
                } else {
                    Got::Failed
                }
            }
            (Op::CreateClaim(claim), outcome) => {
                let created = call
                    .landed
                    .unwrap_or_else(|| self.state.store.create_claim(claim.clone()));
                match outcome {
                    Outcome::Ok if created => Got::Done,
                    Outcome::Exists => Got::Exists,
                    _ => Got::Failed,
                }
            }
            (Op::GetRecord(key), Outcome::Version(version)) => {
                let record = self.read_version(*key, version);
                Got::Record(record)
            }
            (Op::GetClaim(epoch), Outcome::Found(found)) => {
                if found {
                    self.remember_claim(*epoch);
                }
                Got::Claim(found.then(|| self.state.store.claims[epoch].clone()))
            }
            (Op::Scan, Outcome::Versions(versions)) => Got::Records(
                versions
                    .into_iter()
                    .enumerate()
                    .map(|(key, version)| self.read_version(key, version))
                    .collect(),
            ),
            (Op::LoadClaims, Outcome::Highest(epoch)) => {
                if epoch > 0 {
                    self.remember_claim(epoch);
                }
                Got::Claim(self.state.store.claims.get(&epoch).cloned())
            }
            (op, outcome) => unreachable!("{outcome:?} does not answer {op:?}"),
        }
    }

    /// Monotonic reads: what this process read bounds its later stale reads. (Linearizable
    /// reads need no memory: keeping it would only split equal states.)
    fn remember_claim(&mut self, epoch: Epoch) {
        if self.plane.cfg.reads == Reads::Stale {
            self.life().claims_read |= 1 << epoch;
        }
    }

    fn read_version(&mut self, key: usize, version: u32) -> Option<NodeRecord> {
        if self.plane.cfg.reads == Reads::Stale {
            let life = self.life();
            life.last_read[key] = life.last_read[key].max(version);
        }
        self.state.store.records[key]
            .get(version)
            .expect("a kept version")
            .cloned()
    }

    /// The runtime goes on from `pc` with the answer.
    fn resume(&mut self, pc: Pc, call: Call, got: Got) {
        let start = call.start;
        match pc {
            Pc::JoinLoadClaims => match got {
                Got::Claim(claim) => {
                    if let Some(claim) = claim {
                        self.read_claim(claim);
                    }
                    self.begin_probe(Pc::JoinProbe);
                }
                _ => self.exit(),
            },
            Pc::JoinProbe | Pc::PollProbe | Pc::PromoteFirstProbe | Pc::PromoteProbe { .. } => {
                self.probe_answered(pc, start, got);
            }
            Pc::JoinWrite => {
                if self.write_answered(start, &got) {
                    self.begin(Op::Scan, Pc::JoinScan);
                } else {
                    self.exit();
                }
            }
            Pc::JoinScan => match got {
                Got::Records(records) => {
                    self.scan_answered(start, records);
                    // AUTO: the start-up verdict is Proceed; take up the follower state.
                    let now = self.now();
                    self.election().decide(now);
                    self.life().joined = true;
                    self.go_idle();
                }
                _ => self.exit(),
            },
            Pc::PollWrite => {
                self.write_answered(start, &got);
                self.begin_probe(Pc::PollProbe);
            }
            Pc::PollReadMaster => {
                let Op::GetRecord(node) = call.op else {
                    unreachable!("the master's record is read")
                };
                let holder = self.plane.ids[node].clone();
                let now = self.now();
                match got {
                    Got::Record(Some(record)) => {
                        self.election().observe_record(record, start, now);
                    }
                    Got::Record(None) => self.election().observe_absent(&holder, start, now),
                    _ => self.failed_read_as_silence(start, &[holder]),
                }
                self.poll_scan();
            }
            Pc::PollScan => {
                match got {
                    Got::Records(records) => self.scan_answered(start, records),
                    _ => {
                        let peers = self.election().peer_ids();
                        self.failed_read_as_silence(start, &peers);
                    }
                }
                self.poll_catch_up();
            }
            Pc::PollCatchUp => {
                if let Got::Claim(Some(claim)) = got {
                    self.read_claim(claim);
                }
                self.poll_decide();
            }
            Pc::ClaimCreate {
                predecessor_stopped,
                by,
            } => {
                let Op::CreateClaim(claim) = call.op else {
                    unreachable!("a claim is created")
                };
                match got {
                    Got::Done => {
                        let now = self.now();
                        self.election().claim_won(claim, predecessor_stopped, now);
                        self.publish();
                        self.begin_write_record(Pc::ClaimWrite { by });
                    }
                    Got::Exists => self.begin(Op::GetClaim(claim.epoch), Pc::ClaimReadBack { by }),
                    _ => self.claim_done(by, None),
                }
            }
            Pc::ClaimReadBack { by } => match got {
                Got::Claim(Some(claim)) => {
                    self.read_claim(claim);
                    self.claim_done(by, Some(false));
                }
                _ => self.claim_done(by, None),
            },
            Pc::ClaimWrite { by } => {
                self.write_answered(start, &got);
                self.publish();
                let won = self.election().state() == NodeState::Master;
                self.claim_done(by, Some(won));
            }
            Pc::CommandWrite => {
                self.write_answered(start, &got);
                self.go_idle();
            }
            Pc::Idle | Pc::AwaitStepDown { .. } => unreachable!("no call in flight at {pc:?}"),
        }
    }

    /// The ticker fires: `poll_store` begins with `decide` and our record.
    fn poll(&mut self) {
        let clock = self.clock();
        self.life().last_poll = Some(clock);
        let now = self.now();
        self.election().decide(now);
        self.begin_write_record(Pc::PollWrite);
    }

    /// `Publisher::step_down`: a peer's switchover request, answered at once whatever the loop
    /// is doing: readers see this node stepped down before the answer leaves.
    fn answer_step_down(&mut self) {
        let now = self.now();
        let life = self.life();
        let (from, epoch) = life.request.take().expect("a request");
        let current = life.published;
        let stopped = if current.state == NodeState::Master && current.epoch > epoch {
            false
        } else {
            life.step_down_from = life.step_down_from.max(epoch);
            if current.state == NodeState::Master {
                life.published.state = life.election.follower_state();
                life.published.lease = Lease::default();
            }
            let p = life.published;
            !lease_allows_acting(p.state, false, p.lease, now)
        };
        if stopped {
            life.queued = Some(epoch);
        }
        let me = self.node;
        if let Some(asker) = self.state.nodes[from].life.as_mut()
            && let Pc::AwaitStepDown {
                target,
                epoch: asked,
                reply,
                ..
            } = &mut asker.pc
            && *target == me
            && *asked == epoch
            && reply.is_none()
        {
            *reply = Some(stopped);
        }
    }

    /// `Runtime::step_down`: the loop follows a step-down already answered.
    fn follow_step_down(&mut self) {
        let epoch = self.life().queued.take().expect("a step-down to follow");
        let was_master = self.election().state() == NodeState::Master;
        let now = self.now();
        self.election().step_down_for(epoch, now);
        self.publish();
        if was_master && self.election().state() != NodeState::Master {
            self.begin_write_record(Pc::CommandWrite);
        } else {
            self.go_idle();
        }
    }

    /// `ask_to_step_down` returned: claim the next epoch.
    fn step_down_answered(&mut self, stopped: bool) {
        let Pc::AwaitStepDown { attempt, .. } = self.life().pc else {
            unreachable!("awaiting a StepDown answer")
        };
        let epoch = self.election().next_epoch();
        self.begin_claim(
            epoch,
            "promoted by operator",
            stopped,
            By::Promote { attempt },
        );
    }
}

impl Model for Plane {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut state = State {
            time: 0,
            nodes: (0..self.cfg.nodes)
                .map(|_| Node {
                    lag: 0,
                    readings: 0,
                    paused_since: None,
                    life: None,
                })
                .collect(),
            store: Store::new(self.cfg.nodes),
            faults_left: self.cfg.faults,
            slow_left: self.cfg.slow,
            drift_left: self.cfg.drift,
            operator_left: self.cfg.operator,
            epoch_went_back: false,
            highest_acting_epoch: 0,
            last_fault: 0,
        };
        if self.cfg.joined_at_start {
            self.join_in_order(&mut state);
        } else {
            for node in 0..self.cfg.nodes {
                self.start(&mut state, node);
            }
        }
        if self.cfg.start_at > 0 {
            state = drive_from(self, state, self.cfg.start_at, &[]).1;
        }
        vec![state]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let lags: u8 = if self.cfg.max_lag == 0 {
            1
        } else {
            1 << self.cfg.nodes
        };
        for slow in 0..lags {
            if self.tick_allowed(state, slow) {
                actions.push(Action::Tick { slow });
            }
        }
        let operator = state.operator_left > 0;
        for (i, node) in state.nodes.iter().enumerate() {
            let Some(life) = &node.life else {
                actions.push(Action::Restart(i));
                continue;
            };
            if let Some(call) = &life.call
                && call.window.is_some()
                && call.landed.is_none()
                && matches!(call.op, Op::PutRecord(_) | Op::CreateClaim(_))
            {
                actions.push(Action::Land(i));
            }
            if self.cfg.may(state, fault::CRASH) {
                actions.push(Action::Crash(i));
            }
            if node.paused_since.is_some() {
                actions.push(Action::Resume(i));
                continue;
            }
            if self.cfg.may(state, fault::PAUSE) {
                actions.push(Action::Pause(i));
            }
            if let Some(call) = &life.call {
                let outcomes = self.outcomes(state, i, life, call);
                if call.window.is_some() {
                    actions.extend(outcomes.into_iter().map(|o| Action::Answer(i, o)));
                } else {
                    actions.extend(outcomes.into_iter().map(|o| Action::Call(i, o)));
                    if state.slow_left > 0 {
                        actions.push(Action::Begin(i));
                    }
                }
            }
            if life.request.is_some() {
                actions.push(Action::AnswerStepDown(i));
            }
            if let Pc::AwaitStepDown { target, reply, .. } = &life.pc {
                if let Some(stopped) = reply {
                    actions.push(Action::StepDownAnswer(i, Some(*stopped)));
                }
                // No answer: free while the master cannot answer, a fault otherwise.
                if Self::running(state, *target).is_none() || self.cfg.may(state, fault::UNANSWERED)
                {
                    actions.push(Action::StepDownAnswer(i, None));
                }
            }
            let Some(idle) = Self::idle(state, i) else {
                continue;
            };
            if idle.queued.is_some() {
                actions.push(Action::FollowStepDown(i));
                continue;
            }
            if idle.last_poll != Some(self.clock(state, i)) {
                actions.push(Action::Poll(i));
            }
            if operator {
                actions.push(Action::Promote(i));
                actions.push(Action::Demote(i));
                actions.push(Action::RaisePriority(i));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        // A fault spends the budget; a restart, an exit or a resumption is an event too.
        let running = |state: &State| -> Vec<bool> {
            state
                .nodes
                .iter()
                .map(|node| node.life.is_some() && node.paused_since.is_none())
                .collect()
        };
        let before = (state.faults_left, running(&state));
        let epochs: Vec<Option<Epoch>> = state
            .nodes
            .iter()
            .map(|node| node.life.as_ref().map(|life| life.election.epoch()))
            .collect();
        match action {
            Action::Tick { slow } => {
                state.time += 1;
                for (i, node) in state.nodes.iter_mut().enumerate() {
                    let lag = u32::from(slow >> i & 1 == 1);
                    if lag != node.lag {
                        state.drift_left -= 1;
                    }
                    if lag != node.lag + 1 {
                        // The clock moved on to a new tick.
                        node.readings = 0;
                    }
                    node.lag = lag;
                }
            }
            Action::Begin(node) => {
                state.slow_left -= 1;
                let window = Window::of(&state.store);
                let life = state.nodes[node].life.as_mut().expect("a running node");
                life.call.as_mut().expect("a call to make").window = Some(window);
            }
            Action::Poll(node) => Step::new(self, &mut state, node).poll(),
            Action::Land(node) => {
                let call = state.nodes[node]
                    .life
                    .as_mut()
                    .and_then(|life| life.call.as_mut())
                    .expect("a write in flight");
                let landed = match &call.op {
                    Op::PutRecord(record) => {
                        state.store.put_record(node, record.clone());
                        true
                    }
                    Op::CreateClaim(claim) => state.store.create_claim(claim.clone()),
                    op => unreachable!("{op:?} is not a write"),
                };
                call.landed = Some(landed);
            }
            Action::Call(node, outcome) | Action::Answer(node, outcome) => {
                Step::new(self, &mut state, node).answer(outcome);
            }
            Action::Pause(node) => {
                state.faults_left -= 1;
                state.nodes[node].paused_since = Some(state.time);
            }
            Action::Resume(node) => state.nodes[node].paused_since = None,
            Action::Crash(node) => {
                state.faults_left -= 1;
                state.nodes[node].life = None;
                state.nodes[node].paused_since = None;
            }
            Action::Restart(node) => self.start(&mut state, node),
            Action::Promote(node) => {
                state.operator_left -= 1;
                Step::new(self, &mut state, node).begin_probe(Pc::PromoteFirstProbe);
            }
            Action::Demote(node) => {
                state.operator_left -= 1;
                let mut step = Step::new(self, &mut state, node);
                let now = step.now();
                // Done or SteppedDown: either way the record is written, then published.
                step.election()
                    .set_mode(HaMode::HotStandby, now)
                    .expect("a plane member may be demoted");
                step.begin_write_record(Pc::CommandWrite);
            }
            Action::RaisePriority(node) => {
                state.operator_left -= 1;
                let mut step = Step::new(self, &mut state, node);
                step.election().set_priority(RAISED_PRIORITY);
                step.begin_write_record(Pc::CommandWrite);
            }
            Action::AnswerStepDown(node) => Step::new(self, &mut state, node).answer_step_down(),
            Action::FollowStepDown(node) => Step::new(self, &mut state, node).follow_step_down(),
            Action::StepDownAnswer(node, answer) => {
                let master_reachable = state.nodes[node]
                    .life
                    .as_ref()
                    .and_then(|life| match life.pc {
                        Pc::AwaitStepDown { target, .. } => Some(target),
                        _ => None,
                    })
                    .is_some_and(|target| Self::running(&state, target).is_some());
                if answer.is_none() {
                    if master_reachable {
                        state.faults_left -= 1;
                    }
                    // Unanswered: a request not yet taken was lost on the way.
                    for target in state.nodes.iter_mut().filter_map(|n| n.life.as_mut()) {
                        if target.request.is_some_and(|(from, _)| from == node) {
                            target.request = None;
                        }
                    }
                }
                Step::new(self, &mut state, node).step_down_answered(answer == Some(true));
            }
        }
        if self.cfg.liveness && before != (state.faults_left, running(&state)) {
            state.last_fault = state.time;
        }
        for (node, before) in state.nodes.iter().zip(epochs) {
            if let (Some(before), Some(life)) = (before, &node.life)
                && life.election.epoch() < before
            {
                state.epoch_went_back = true;
            }
        }
        for node in 0..self.cfg.nodes {
            if let Some(epoch) = self.acting(&state, node) {
                if epoch < state.highest_acting_epoch {
                    state.epoch_went_back = true;
                }
                state.highest_acting_epoch = state.highest_acting_epoch.max(epoch);
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(ONE_MASTER, |plane: &Plane, state: &State| {
                (0..plane.cfg.nodes)
                    .filter(|node| plane.acting(state, *node).is_some())
                    .count()
                    <= 1
            }),
            Property::always(EPOCHS_FORWARD, |_: &Plane, state: &State| {
                !state.epoch_went_back
            }),
            Property::always(LEASE_FROM_HEARTBEAT, |plane: &Plane, state: &State| {
                (0..plane.cfg.nodes).all(|node| {
                    plane.acting(state, node).is_none()
                        || state.nodes[node]
                            .life
                            .as_ref()
                            .and_then(|life| life.last_ok_write)
                            .is_some_and(|start| {
                                plane.reading(state, node) < start + TICK * plane.cfg.lease()
                            })
                })
            }),
            Property::always(CLAIM_HELD, |plane: &Plane, state: &State| {
                (0..plane.cfg.nodes).all(|node| {
                    plane.acting(state, node).is_none_or(|epoch| {
                        state
                            .store
                            .claims
                            .get(&epoch)
                            .is_some_and(|claim| claim.node_id == plane.ids[node])
                    })
                })
            }),
        ];
        if self.cfg.liveness {
            properties.push(Property::eventually(
                MASTER_ELECTED,
                |plane: &Plane, state: &State| {
                    (0..plane.cfg.nodes).any(|node| plane.acting(state, node).is_some())
                },
            ));
            properties.push(Property::always(
                RECOVERS,
                |plane: &Plane, state: &State| {
                    let cfg = &plane.cfg;
                    // A poll is one tick.
                    let bound = cfg.timeout + 2 + cfg.max_lag;
                    let settled = state.time >= state.last_fault.max(cfg.start_at) + bound;
                    !settled
                        || (0..cfg.nodes)
                            .filter(|node| plane.acting(state, *node).is_some())
                            .count()
                            == 1
                },
            ));
        }
        properties
    }
}

/// No two nodes act as master at one instant (docs/behaviour.md §9.1).
pub const ONE_MASTER: &str = "one master at any instant";
/// No node's epoch moves back, and no node acts in an epoch older than one acted in before.
pub const EPOCHS_FORWARD: &str = "epochs never go back";
/// A node acts only inside the lease of an own-record write that completed successfully.
pub const LEASE_FROM_HEARTBEAT: &str = "a master acts only inside a completed heartbeat's lease";
/// Claims are create-if-absent and never change; an acting master holds the claim of its epoch.
pub const CLAIM_HELD: &str = "an acting master holds its epoch's claim, never overwritten";
/// Liveness: some node acts as master before the horizon.
pub const MASTER_ELECTED: &str = "a master is elected";
/// Liveness: a timeout and two polls (and a tick of lag) after the last fault, one node acts.
pub const RECOVERS: &str = "one master within timeout + 2 polls of the last fault";

/// The safety properties, in the order `properties` lists them.
pub const SAFETY: [&str; 4] = [ONE_MASTER, EPOCHS_FORWARD, LEASE_FROM_HEARTBEAT, CLAIM_HELD];
