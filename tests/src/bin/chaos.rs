//! Chaos run: three nodes with fast timings (poll 100 ms, timeout 1 s), SDK writers making
//! write-once idempotent entity writes, SDK watchers whose published views are recorded as
//! published, and a sampler that asks every node's GetState every 20 ms, concurrently, recording
//! when each request was sent and its answer received. Seeded random faults: kill -9 + restart,
//! SIGSTOP shorter and longer than the timeout, graceful restarts, store errors / latency / lost
//! acknowledgements / outages through the test-only fault wrapper. The history checker
//! (`haplane_tests::history`) then judges the run: one summary line on stdout, one line per
//! violation on stderr, and a non-zero exit code if any promise was broken.
//!
//! `cargo run -p haplane-tests --bin chaos -- [--profile ci|long] [--store dir|s3] [--seed N]`

use haplane_sdk::{Client, ConnectOptions};
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::history::{self, FinalEntity, History, InjectedFault, Sample, WatcherView};
use haplane_tests::moto::MotoServer;
use haplane_tests::{Plane, PlaneOptions};
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

/// The faults the run draws from.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    ShortStop,
    LongStop,
    GracefulRestart,
    StoreErrors,
    StoreOutage,
}

impl Fault {
    fn draw(rng: &mut StdRng) -> Self {
        match rng.random_range(0..100) {
            0..25 => Fault::Kill,
            25..40 => Fault::ShortStop,
            40..60 => Fault::LongStop,
            60..75 => Fault::GracefulRestart,
            75..90 => Fault::StoreErrors,
            _ => Fault::StoreOutage,
        }
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
            master_id: view.map(|v| v.master_id).unwrap_or_default(),
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

fn control_text(rng: &mut StdRng) -> String {
    format!(
        "latency_ms = {}\nerror_rate = {:.2}\nlost_ack_rate = {:.2}\n",
        rng.random_range(0..60),
        rng.random_range(0.0..0.2),
        rng.random_range(0.0..0.3)
    )
}

struct Run {
    plane: Plane,
    control: std::path::PathBuf,
    clock: Instant,
    targets: Shared<Vec<Target>>,
    history: Shared<History>,
}

impl Run {
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

    /// Injects `fault`; returns what was done, for the fault log.
    async fn inject(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        let timeout = self.plane.options.heartbeat_timeout;
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
                format!("kill -9 {} and restart", self.plane.nodes[index].id)
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
                format!("SIGSTOP {} for {pause:.2?}", self.plane.nodes[index].id)
            }
            Fault::GracefulRestart => {
                let index = self.target(rng).await;
                self.plane.nodes[index].sigterm();
                self.plane.nodes[index]
                    .wait_exit(Duration::from_secs(30))
                    .await;
                self.restart(index).await;
                format!("graceful restart of {}", self.plane.nodes[index].id)
            }
            Fault::StoreErrors | Fault::StoreOutage => {
                let text = match fault {
                    Fault::StoreErrors => control_text(rng),
                    _ => "outage = true\n".to_owned(),
                };
                let _ = std::fs::write(&self.control, &text);
                let hold = timeout.mul_f64(rng.random_range(0.5..2.0));
                tokio::time::sleep(hold).await;
                let _ = std::fs::write(&self.control, "");
                format!(
                    "store faults ({}) for {hold:.2?}",
                    text.trim_end().replace('\n', ", ")
                )
            }
        }
    }
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
        Some("long") => 200,
        None | Some("ci") => 12,
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
    let mut options = PlaneOptions::fast();
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
    let control = plane.dir.path().join("store-faults");
    plane.options.extra_env = vec![(
        "HAPLANE_TEST_STORE_FAULTS".into(),
        control.display().to_string(),
    )];
    plane
        .start_nodes((1..=NODES).map(|i| (format!("n{i}"), Vec::new())).collect())
        .await;
    plane.wait_for_master(RECOVERY_DEADLINE).await;
    let history = History {
        stranded_after: plane.options.failover_bound(),
        ..History::default()
    };
    let mut run = Run {
        plane,
        control,
        clock: Instant::now(),
        targets: Arc::default(),
        history: Arc::new(Mutex::new(history)),
    };
    for index in 0..NODES {
        run.publish_target(index, 0);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let connect = ConnectOptions {
        failover_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_millis(500),
        keep_alive: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
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
    let _ = std::fs::write(&run.control, "");
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
