//! Chaos run: three nodes with fast timings, SDK writers making write-once idempotent entity
//! writes, SDK watchers and a GetState sampler recording who acted as master, and seeded random
//! faults (kill -9 + restart, SIGSTOP shorter and longer than the timeout, graceful restarts,
//! store errors / latency / lost acknowledgements / outages through the test-only fault
//! wrapper). The history checker (`haplane_tests::history`) then judges the run; one summary line
//! is printed and the exit code is non-zero if any promise was broken.
//!
//! `cargo run -p haplane-tests --bin chaos -- [--profile ci|long] [--store dir|s3] [--seed N]`

use haplane_sdk::{Client, ConnectOptions};
use haplane_tests::haplane::pb;
use haplane_tests::history::{self, FinalEntity, History};
use haplane_tests::moto::MotoServer;
use haplane_tests::{Plane, PlaneOptions, try_state_at};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const WRITERS: usize = 2;
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

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

/// Every `period`, asks every node for its state and records those that say MASTER.
async fn sample(uris: Shared<Vec<String>>, history: Shared<History>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let current = uris.lock().map(|u| u.clone()).unwrap_or_default();
        let asks = current.iter().map(|uri| try_state_at(uri));
        for state in futures::future::join_all(asks).await.into_iter().flatten() {
            if state.state == pb::NodeState::Master as i32 {
                record(&history, |h| h.masters.push((state.epoch, state.node_id)));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records every view the client accepts.
async fn watch(name: String, client: Client, history: Shared<History>, stop: Arc<AtomicBool>) {
    let mut views = client.watch_master();
    while !stop.load(Ordering::Relaxed) {
        if tokio::time::timeout(Duration::from_millis(200), views.changed())
            .await
            .is_ok_and(|changed| changed.is_err())
        {
            return;
        }
        let Some(view) = views.borrow_and_update().clone() else {
            continue;
        };
        record(&history, |h| {
            h.observed_epochs
                .entry(name.clone())
                .or_default()
                .push(view.epoch);
            if !view.master_id.is_empty() {
                h.masters.push((view.epoch, view.master_id.clone()));
            }
        });
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
    uris: Shared<Vec<String>>,
    history: Shared<History>,
}

impl Run {
    fn publish_uris(&self) {
        if let Ok(mut uris) = self.uris.lock() {
            *uris = self.plane.nodes.iter().map(|n| n.grpc_uri()).collect();
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
        self.publish_uris();
    }

    /// A target: the master six times in ten, else any node.
    async fn target(&self, rng: &mut StdRng) -> usize {
        match (rng.random_bool(0.6), self.plane.agreed_master().await) {
            (true, Some(master)) => master,
            _ => rng.random_range(0..NODES),
        }
    }

    async fn inject(&mut self, fault: Fault, rng: &mut StdRng) {
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
            }
            Fault::GracefulRestart => {
                let index = self.target(rng).await;
                self.plane.nodes[index].sigterm();
                self.plane.nodes[index]
                    .wait_exit(Duration::from_secs(30))
                    .await;
                self.restart(index).await;
            }
            Fault::StoreErrors | Fault::StoreOutage => {
                let text = match fault {
                    Fault::StoreErrors => control_text(rng),
                    _ => "outage = true\n".to_owned(),
                };
                let _ = std::fs::write(&self.control, text);
                tokio::time::sleep(timeout.mul_f64(rng.random_range(0.5..2.0))).await;
                let _ = std::fs::write(&self.control, "");
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
    println!("chaos[{store}]: seed {seed}, {faults} faults");
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
    let mut run = Run {
        plane,
        control,
        uris: Arc::default(),
        history: Arc::default(),
    };
    run.publish_uris();

    let stop = Arc::new(AtomicBool::new(false));
    let connect = ConnectOptions {
        failover_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_millis(500),
        keep_alive: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
    let seeds = run.uris.lock().map(|u| u.clone()).unwrap_or_default();
    let mut tasks = vec![tokio::spawn(sample(
        run.uris.clone(),
        run.history.clone(),
        stop.clone(),
    ))];
    for k in 0..WRITERS {
        let client = Client::connect(seeds.clone(), connect.clone())
            .await
            .expect("SDK client");
        let (history, stop) = (run.history.clone(), stop.clone());
        tasks.push(tokio::spawn(watch(
            format!("client{k}"),
            client.clone(),
            history.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(write(k, client, history, stop)));
    }

    let mut stuck = false;
    for _ in 0..faults {
        let fault = Fault::draw(&mut rng);
        run.inject(fault, &mut rng).await;
        record(&run.history, |h| h.faults += 1);
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
    let bound = run.plane.options.failover_bound();
    println!(
        "chaos[{store}]: one agreed master {:.2} s after the last fault (bound {:.1} s)",
        healed.elapsed().as_secs_f64(),
        bound.as_secs_f64()
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
    println!("{}", history::summary(&store, &history, &verdict));
    if !verdict.passed() {
        eprintln!("chaos[{store}]: seed {seed} broke a promise: {verdict:?}");
    }
    match verdict.passed() && history.panics.is_empty() && settled && !stuck {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn seeds_of(run: &Run) -> Vec<String> {
    run.uris.lock().map(|u| u.clone()).unwrap_or_default()
}
