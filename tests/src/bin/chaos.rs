//! Chaos run: three nodes with fast timings (poll 100 ms, timeout 1 s) and managed-state snapshots
//! and compaction every 50 log entries, SDK writers making write-once idempotent entity writes, SDK watchers whose published views are recorded as
//! published, and a sampler that asks every node's GetState every 20 ms, concurrently, recording
//! when each request was sent and its answer received. A seeded nemesis injects one fault at a
//! time (see `FAULTS`), each aimed at one node: kill -9 + restart, SIGSTOP shorter and longer
//! than the timeout, graceful restarts, store errors / lost acknowledgements / outages / latency
//! up to the node's store-call bound through that node's own fault control file, operator
//! promotions of a standby over gRPC or REST (alone, or while the master's store is slow),
//! demotions of the master and priority changes. The history checker (`haplane_tests::history`) then judges the run: one
//! summary line on stdout, one line per violation on stderr, and a non-zero exit code if any
//! promise was broken.
//!
//! `cargo run -p haplane-tests --bin chaos -- [--profile ci|long] [--store dir|s3] [--seed N]`

use haplane_sdk::{Client, ConnectOptions};
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::history::{self, FinalEntity, History, InjectedFault, Sample, WatcherView};
use haplane_tests::moto::{self, MotoServer};
use haplane_tests::{Plane, PlaneOptions, allow_non_master, launch_with_env};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tonic::transport::{Channel, Endpoint};

const NODES: usize = 3;
const WRITERS: usize = 2;
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);
const OPERATOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The faults the run draws from.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    ShortStop,
    LongStop,
    GracefulRestart,
    StoreErrors,
    StoreOutage,
    SlowStore,
    Promote,
    SlowMasterPromote,
    Demote,
    Priority,
}

/// Each fault with its weight (out of 100).
const FAULTS: [(Fault, u32); 11] = [
    (Fault::Kill, 12),
    (Fault::ShortStop, 8),
    (Fault::LongStop, 10),
    (Fault::GracefulRestart, 8),
    (Fault::StoreErrors, 8),
    (Fault::StoreOutage, 8),
    (Fault::SlowStore, 12),
    (Fault::Promote, 12),
    (Fault::SlowMasterPromote, 10),
    (Fault::Demote, 7),
    (Fault::Priority, 5),
];

impl Fault {
    fn draw(rng: &mut StdRng) -> Self {
        let total: u32 = FAULTS.iter().map(|(_, weight)| weight).sum();
        let mut roll = rng.random_range(0..total);
        for (fault, weight) in FAULTS {
            if roll < weight {
                return fault;
            }
            roll -= weight;
        }
        FAULTS[FAULTS.len() - 1].0
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn record(history: &Shared<History>, change: impl FnOnce(&mut History)) {
    if let Ok(mut history) = history.lock() {
        change(&mut history);
    }
}

/// What the sampler asks: one node process.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    uri: String,
    /// How many times the run restarted this node.
    generation: u32,
}

/// Asks node `slot` its state on every 20 ms tick (ticks are shared by all nodes' samplers, so
/// a tick is a round), one request at a time: a tick that comes while a request is still out
/// (a stopped node) is skipped.
async fn sample(
    slot: usize,
    targets: Shared<Vec<Target>>,
    clock: Instant,
    history: Shared<History>,
    stop: Arc<AtomicBool>,
) {
    let mut ticks = tokio::time::interval_at(clock.into(), SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut client: Option<(String, HaServiceClient<Channel>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let tick = ticks.tick().await.into_std();
        let round =
            (tick.duration_since(clock) + SAMPLE_EVERY / 2).as_millis() / SAMPLE_EVERY.as_millis();
        let Some(target) = targets.lock().ok().and_then(|t| t.get(slot).cloned()) else {
            continue;
        };
        if client.as_ref().is_none_or(|(uri, _)| *uri != target.uri) {
            client = Endpoint::from_shared(target.uri.clone())
                .ok()
                .map(|endpoint| {
                    let channel = endpoint
                        .connect_timeout(Duration::from_millis(300))
                        .connect_lazy();
                    (target.uri.clone(), HaServiceClient::new(channel))
                });
        }
        let Some((_, ha)) = client.as_mut() else {
            continue;
        };
        let sent = clock.elapsed();
        let answer =
            tokio::time::timeout(SAMPLE_TIMEOUT, ha.get_state(pb::GetStateRequest {})).await;
        let received = clock.elapsed();
        if let Ok(Ok(answer)) = answer {
            let answer = answer.into_inner();
            let sample = Sample {
                round: u64::try_from(round).unwrap_or(u64::MAX),
                sent,
                received,
                node: target.id,
                generation: target.generation,
                epoch: answer.epoch,
                state: pb::NodeState::try_from(answer.state).unwrap_or_default(),
                master_id: answer.master_id,
            };
            record(&history, |h| h.samples.push(sample));
        }
    }
}

/// Records every view the client publishes, as published, with the time it was seen.
async fn watch(
    name: String,
    client: Client,
    clock: Instant,
    history: Shared<History>,
    stop: Arc<AtomicBool>,
) {
    let mut views = client.watch_master();
    let publish = |view: Option<haplane_sdk::MasterView>| {
        let seen = WatcherView {
            watcher: name.clone(),
            at: clock.elapsed(),
            epoch: view.as_ref().map_or(0, |v| v.epoch),
            master_id: view.map(|v| v.master_id().to_owned()).unwrap_or_default(),
        };
        record(&history, |h| h.views.push(seen));
    };
    publish(views.borrow_and_update().clone());
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), views.changed()).await {
            Ok(Ok(())) => publish(views.borrow_and_update().clone()),
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// Writes `w<k>/<n>` once each, recording which were acknowledged.
async fn write(k: usize, client: Client, history: Shared<History>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{k}/{n}");
        let put = client.put_entity(&id, serde_json::json!({ "n": n }), None);
        match tokio::time::timeout(Duration::from_secs(20), put).await {
            Ok(Ok(_)) => record(&history, |h| h.acked.push(id)),
            _ => record(&history, |h| h.unacked.push(id)),
        }
        n += 1;
    }
}

/// A node's store-call bound once a lease is at stake: (heartbeat timeout − safety margin) / 2,
/// with the default margin min(2 s, timeout / 4) (`server/src/config/mod.rs`).
fn op_timeout(options: &PlaneOptions) -> Duration {
    let margin = Duration::from_secs(2).min(options.heartbeat_timeout / 4);
    (options.heartbeat_timeout - margin) / 2
}

fn error_text(rng: &mut StdRng) -> String {
    format!(
        "latency_ms = {}\nerror_rate = {:.2}\nlost_ack_rate = {:.2}\n",
        rng.random_range(0..60),
        rng.random_range(0.0..0.2),
        rng.random_range(0.0..0.3)
    )
}

/// `a = 1\nb = 2\n` → `a = 1, b = 2`.
fn one_line(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(", ")
}

/// An operator call's outcome, for the fault log.
fn outcome<T>(answer: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> String {
    match answer {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(_) => format!("no answer within {OPERATOR_TIMEOUT:?}"),
    }
}

struct Run {
    plane: Plane,
    clock: Instant,
    targets: Shared<Vec<Target>>,
    history: Shared<History>,
}

impl Run {
    fn id(&self, index: usize) -> String {
        self.plane.nodes[index].id.clone()
    }

    /// Points the sampler at node `index`'s current process (`generation` restarts so far).
    fn publish_target(&self, index: usize, generation: u32) {
        let node = &self.plane.nodes[index];
        if let Ok(mut targets) = self.targets.lock() {
            let target = Target {
                id: node.id.clone(),
                uri: node.grpc_uri(),
                generation,
            };
            match targets.get_mut(index) {
                Some(slot) => *slot = target,
                None => targets.push(target),
            }
        }
    }

    fn note_panics(&self, index: usize) {
        let node = &self.plane.nodes[index];
        if node.log_text().contains("panicked") {
            record(&self.history, |h| h.panics.push(node.id.clone()));
        }
    }

    async fn restart(&mut self, index: usize) {
        self.note_panics(index);
        self.plane.restart(index).await;
        let generation = self
            .targets
            .lock()
            .ok()
            .and_then(|t| t.get(index).map(|target| target.generation + 1))
            .unwrap_or_default();
        self.publish_target(index, generation);
    }

    /// A target: the master six times in ten, else any node.
    async fn target(&self, rng: &mut StdRng) -> usize {
        match (rng.random_bool(0.6), self.plane.agreed_master().await) {
            (true, Some(master)) => master,
            _ => rng.random_range(0..NODES),
        }
    }

    /// The agreed master, or any node when there is none.
    async fn master(&self, rng: &mut StdRng) -> usize {
        match self.plane.agreed_master().await {
            Some(master) => master,
            None => rng.random_range(0..NODES),
        }
    }

    /// A node other than `not`.
    fn other(&self, not: usize, rng: &mut StdRng) -> usize {
        (not + rng.random_range(1..NODES)) % NODES
    }

    async fn ha_client(&self, index: usize) -> Result<HaServiceClient<Channel>, String> {
        let endpoint = Endpoint::from_shared(self.plane.nodes[index].grpc_uri())
            .map_err(|err| err.to_string())?
            .connect_timeout(Duration::from_secs(1));
        let channel = endpoint.connect().await.map_err(|err| err.to_string())?;
        Ok(HaServiceClient::new(channel))
    }

    /// SetState on node `index` with the operator's override metadata; the outcome as text.
    async fn set_state(&self, index: usize, mode: pb::HaMode) -> String {
        let mut client = match self.ha_client(index).await {
            Ok(client) => client,
            Err(err) => return format!("cannot connect: {err}"),
        };
        let request = allow_non_master(pb::SetStateRequest { mode: mode as i32 });
        outcome(tokio::time::timeout(OPERATOR_TIMEOUT, client.set_state(request)).await)
    }

    /// Promotes node `index` as an operator would, over gRPC or REST (one in two), with the
    /// override for a non-master; the path and outcome as text.
    async fn promote(&self, index: usize, rng: &mut StdRng) -> String {
        if rng.random_bool(0.5) {
            let answer = self.set_state(index, pb::HaMode::Master).await;
            return format!("over gRPC: {answer}");
        }
        let post = reqwest::Client::new()
            .post(self.plane.nodes[index].url("/v1/server/ha/state"))
            .header("Brooklyn-Allow-Non-Master-Access", "true")
            .form(&[("mode", "MASTER")])
            .timeout(OPERATOR_TIMEOUT)
            .send();
        let answer = match post.await {
            Ok(response) if response.status().is_success() => "ok".to_owned(),
            Ok(response) => format!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(err) => err.to_string(),
        };
        format!("over REST: {answer}")
    }

    /// SetPriority on node `index` with the operator's override metadata; the outcome as text.
    async fn set_priority(&self, index: usize, priority: i64) -> String {
        let mut client = match self.ha_client(index).await {
            Ok(client) => client,
            Err(err) => return format!("cannot connect: {err}"),
        };
        let request = allow_non_master(pb::SetPriorityRequest { priority });
        outcome(tokio::time::timeout(OPERATOR_TIMEOUT, client.set_priority(request)).await)
    }

    /// Gives node `index` the store faults `text` for `hold`, then clears them.
    async fn store_faults(&self, index: usize, text: &str, hold: Duration) {
        self.plane.set_faults(&self.id(index), text);
        tokio::time::sleep(hold).await;
        self.plane.set_faults(&self.id(index), "");
    }

    /// Injects `fault`; returns what was done, for the fault log.
    async fn inject(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        let timeout = self.plane.options.heartbeat_timeout;
        let op_timeout = op_timeout(&self.plane.options);
        match fault {
            Fault::Kill => {
                let index = self.target(rng).await;
                let killed = Instant::now();
                self.plane.nodes[index].kill9().await;
                // The crash failover: from the kill to a master the survivors agree on.
                if wait_for_agreed_master(&self.plane).await {
                    record(&self.history, |h| h.recoveries.push(killed.elapsed()));
                }
                self.restart(index).await;
                format!("kill -9 {} and restart", self.id(index))
            }
            Fault::ShortStop | Fault::LongStop => {
                let index = self.target(rng).await;
                let pause = match fault {
                    Fault::ShortStop => timeout.mul_f64(rng.random_range(0.1..0.6)),
                    _ => timeout.mul_f64(rng.random_range(1.5..2.5)),
                };
                self.plane.nodes[index].sigstop();
                tokio::time::sleep(pause).await;
                self.plane.nodes[index].sigcont();
                format!("SIGSTOP {} for {pause:.2?}", self.id(index))
            }
            Fault::GracefulRestart => {
                let index = self.target(rng).await;
                self.plane.nodes[index].sigterm();
                self.plane.nodes[index]
                    .wait_exit(Duration::from_secs(30))
                    .await;
                self.restart(index).await;
                format!("graceful restart of {}", self.id(index))
            }
            Fault::StoreErrors | Fault::StoreOutage | Fault::SlowStore => {
                let index = self.target(rng).await;
                let (text, hold) = match fault {
                    Fault::StoreErrors => (error_text(rng), rng.random_range(0.5..2.0)),
                    Fault::StoreOutage => {
                        ("outage = true\n".to_owned(), rng.random_range(0.5..2.0))
                    }
                    _ => {
                        let latency = op_timeout.mul_f64(rng.random_range(0.25..=1.0));
                        (
                            format!("latency_ms = {}\n", latency.as_millis()),
                            rng.random_range(1.0..3.0),
                        )
                    }
                };
                let hold = timeout.mul_f64(hold);
                self.store_faults(index, &text, hold).await;
                format!(
                    "store faults on {} ({}) for {hold:.2?}",
                    self.id(index),
                    one_line(&text)
                )
            }
            Fault::Promote => {
                let master = self.master(rng).await;
                let index = self.other(master, rng);
                let answer = self.promote(index, rng).await;
                format!(
                    "promote {} (master was {}) {answer}",
                    self.id(index),
                    self.id(master)
                )
            }
            Fault::SlowMasterPromote => {
                // The master's store calls slow down (up to its store-call bound), then an
                // operator promotes a standby while the old master still believes in its lease.
                let master = self.master(rng).await;
                let index = self.other(master, rng);
                let latency = op_timeout.mul_f64(rng.random_range(0.3..=1.0));
                let master_id = self.id(master);
                self.plane.set_faults(
                    &master_id,
                    &format!("latency_ms = {}\n", latency.as_millis()),
                );
                tokio::time::sleep(timeout.mul_f64(rng.random_range(0.2..1.0))).await;
                let answer = self.promote(index, rng).await;
                let hold = timeout.mul_f64(rng.random_range(1.0..2.0));
                tokio::time::sleep(hold).await;
                self.plane.set_faults(&master_id, "");
                format!(
                    "store latency {} ms on master {master_id}, then promote {} {answer}",
                    latency.as_millis(),
                    self.id(index)
                )
            }
            Fault::Demote => {
                let master = self.master(rng).await;
                let mode = [
                    pb::HaMode::Standby,
                    pb::HaMode::HotStandby,
                    pb::HaMode::HotBackup,
                ][rng.random_range(0..3)];
                let answer = self.set_state(master, mode).await;
                let hold = timeout.mul_f64(rng.random_range(0.5..2.0));
                tokio::time::sleep(hold).await;
                let back = self.set_state(master, pb::HaMode::Auto).await;
                format!(
                    "demote master {} to {}: {answer}; AUTO again after {hold:.2?}: {back}",
                    self.id(master),
                    mode.as_str_name()
                )
            }
            Fault::Priority => {
                let index = rng.random_range(0..NODES);
                let priority = rng.random_range(0..=5);
                let answer = self.set_priority(index, priority).await;
                format!("priority of {} to {priority}: {answer}", self.id(index))
            }
        }
    }
}

/// A loopback port below the ephemeral range (so no outgoing connection takes it while its node
/// is down) that is free now.
fn fixed_port(rng: &mut StdRng) -> u16 {
    loop {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts the nodes together, each on a fixed port: a restarted node (`Plane::restart` reuses
/// these arguments) comes back at the address its peers and clients know, as a production node
/// keeps its host and port. Each gets its own fault control file, as `per_node_faults` gives a
/// restarted node.
async fn start_nodes(plane: &mut Plane, rng: &mut StdRng) {
    let mut specs = Vec::new();
    for i in 1..=NODES {
        let id = format!("n{i}");
        let mut args = plane.args_for(&id, &[]);
        if let Some(bind) = args.iter().position(|arg| arg == "--bind") {
            args[bind + 1] = format!("127.0.0.1:{}", fixed_port(rng));
        }
        let mut env = match plane.options.s3 {
            Some(_) => moto::aws_env(),
            None => Vec::new(),
        };
        env.push((
            "HAPLANE_TEST_STORE_FAULTS".to_owned(),
            plane.fault_file(&id).display().to_string(),
        ));
        specs.push((id, args, env));
    }
    let workdir = plane.dir.path();
    let launches = specs.iter().map(|(id, args, env)| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        launch_with_env(workdir, id, args, &env).await.running()
    });
    let started = futures::future::join_all(launches).await;
    plane.nodes.extend(started);
}

/// Waits (up to the recovery deadline) until the running nodes agree on one master.
async fn wait_for_agreed_master(plane: &Plane) -> bool {
    tokio::time::timeout(RECOVERY_DEADLINE, async {
        while plane.agreed_master().await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

fn argument(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let faults = match argument(&args, "--profile").as_deref() {
        Some("long") => 300,
        None | Some("ci") => 48,
        Some(other) => {
            eprintln!("--profile: {other:?} is not ci or long");
            return ExitCode::from(2);
        }
    };
    let store = argument(&args, "--store").unwrap_or_else(|| "dir".to_owned());
    let seed = argument(&args, "--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos[{store}] seed {seed}: {faults} faults");
    let mut rng = StdRng::seed_from_u64(seed);

    let moto;
    // Snapshots every 50 entries and a 2 s minimum age, so compaction (and copies jumping to a
    // snapshot) runs all through the faults, not once in a long run.
    let mut options = PlaneOptions {
        per_node_faults: true,
        extra_args: [
            "--state-snapshot-every",
            "50",
            "--state-retention-min-age",
            "2s",
        ]
        .map(String::from)
        .to_vec(),
        ..PlaneOptions::fast()
    };
    match store.as_str() {
        "dir" => {}
        "s3" => {
            moto = MotoServer::start().await;
            moto.create_bucket("chaos").await;
            options = options.on_s3("s3://chaos/plane", &moto.endpoint);
        }
        other => {
            eprintln!("--store: {other:?} is not dir or s3");
            return ExitCode::from(2);
        }
    }
    let mut plane = Plane::new(options);
    start_nodes(&mut plane, &mut rng).await;
    plane.wait_for_master(RECOVERY_DEADLINE).await;
    let history = History {
        stranded_after: plane.options.failover_bound(),
        ..History::default()
    };
    let mut run = Run {
        plane,
        clock: Instant::now(),
        targets: Arc::default(),
        history: Arc::new(Mutex::new(history)),
    };
    for index in 0..NODES {
        run.publish_target(index, 0);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let connect = ConnectOptions::default()
        .with_failover_timeout(Duration::from_secs(15))
        .with_connect_timeout(Duration::from_millis(500))
        .with_keep_alive(Duration::from_millis(300));
    let mut tasks: Vec<_> = (0..NODES)
        .map(|slot| {
            tokio::spawn(sample(
                slot,
                run.targets.clone(),
                run.clock,
                run.history.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for k in 0..WRITERS {
        let client = Client::connect(seeds_of(&run), connect.clone())
            .await
            .expect("SDK client");
        let (history, stop) = (run.history.clone(), stop.clone());
        tasks.push(tokio::spawn(watch(
            format!("client{k}"),
            client.clone(),
            run.clock,
            history.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(write(k, client, history, stop)));
    }

    let mut stuck = false;
    for _ in 0..faults {
        let fault = Fault::draw(&mut rng);
        let at = run.clock.elapsed();
        let what = run.inject(fault, &mut rng).await;
        let until = run.clock.elapsed();
        record(&run.history, |h| {
            h.faults.push(InjectedFault { at, until, what })
        });
        // Recovery once the fault is removed (the node restarted or resumed, the store healed).
        let removed = Instant::now();
        if !wait_for_agreed_master(&run.plane).await {
            eprintln!(
                "chaos[{store}]: no agreed master within {RECOVERY_DEADLINE:?} after {fault:?}"
            );
            stuck = true;
            break;
        }
        record(&run.history, |h| h.recoveries.push(removed.elapsed()));
    }

    // Faults over: the plane must settle on exactly one master by itself.
    for index in 0..NODES {
        run.plane.set_faults(&run.id(index), "");
    }
    let healed = Instant::now();
    let settled = wait_for_agreed_master(&run.plane).await;
    eprintln!(
        "chaos[{store}]: one agreed master {:.2} s after the last fault (bound {:.1} s)",
        healed.elapsed().as_secs_f64(),
        run.plane.options.failover_bound().as_secs_f64()
    );

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    let reader = Client::connect(seeds_of(&run), connect).await;
    let final_state: Vec<FinalEntity> = match reader {
        Ok(reader) => match reader.list_entities("").await {
            Ok(entities) => entities
                .into_iter()
                .map(|e| FinalEntity {
                    id: e.id,
                    version: e.version,
                })
                .collect(),
            Err(err) => {
                eprintln!("chaos[{store}]: cannot read the final state: {err}");
                stuck = true;
                Vec::new()
            }
        },
        Err(err) => {
            eprintln!("chaos[{store}]: cannot connect for the final state: {err}");
            stuck = true;
            Vec::new()
        }
    };
    for index in 0..NODES {
        run.note_panics(index);
    }
    let history = run.history.lock().map(|h| h.clone()).unwrap_or_default();
    let verdict = history::check(&history, &final_state);
    println!("{}", history::summary(&store, seed, &history, &verdict));
    for line in history::details(&history, &verdict) {
        eprintln!("chaos[{store}] seed {seed}: {line}");
    }
    match verdict.passed() && history.panics.is_empty() && settled && !stuck {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn seeds_of(run: &Run) -> Vec<String> {
    run.targets
        .lock()
        .map(|targets| targets.iter().map(|t| t.uri.clone()).collect())
        .unwrap_or_default()
}
