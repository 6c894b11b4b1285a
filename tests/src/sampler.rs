//! A sampler for end-to-end exclusion tests: asks every node of a plane its state (gRPC
//! GetState) every 20 ms, one request at a time per node, and records each answer with the
//! instants its request was sent and its answer received, for `history::check`'s timed rule.

use crate::history::Sample;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tonic::transport::Endpoint;

/// How often each node is asked.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A request unanswered this long is dropped (a paused or partitioned node).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Running samplers, one task per node.
#[derive(Debug)]
pub struct Sampler {
    /// The instant every sample's times count from.
    pub clock: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `targets`: `(node id, gRPC URI)`.
    pub fn start(targets: Vec<(String, String)>) -> Self {
        let clock = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = targets
            .into_iter()
            .map(|(node, uri)| {
                tokio::spawn(sample_node(node, uri, clock, samples.clone(), stop.clone()))
            })
            .collect();
        Self {
            clock,
            stop,
            samples,
            tasks,
        }
    }

    /// How long the sampler has run.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Stops sampling and returns every sample, in the order answers arrived.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut samples = std::mem::take(&mut *self.samples.lock().expect("samples lock"));
        samples.sort_by_key(|sample| sample.received);
        samples
    }
}

async fn sample_node(
    node: String,
    uri: String,
    clock: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(endpoint) = Endpoint::from_shared(uri) else {
        return;
    };
    let mut client = HaServiceClient::new(
        endpoint
            .connect_timeout(Duration::from_millis(300))
            .connect_lazy(),
    );
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        round += 1;
        let sent = clock.elapsed();
        let answer =
            tokio::time::timeout(SAMPLE_TIMEOUT, client.get_state(pb::GetStateRequest {})).await;
        let received = clock.elapsed();
        if let Ok(Ok(answer)) = answer {
            let answer = answer.into_inner();
            let sample = Sample {
                round,
                sent,
                received,
                node: node.clone(),
                generation: 0,
                epoch: answer.epoch,
                state: pb::NodeState::try_from(answer.state).unwrap_or_default(),
                master_id: answer.master_id,
            };
            samples.lock().expect("samples lock").push(sample);
        }
    }
}
