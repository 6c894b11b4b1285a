//! Limits under load: a node with small, explicit limits (100 streams per HTTP/2 connection,
//! 1,000 watchers, 1,000 connections) pushed past each while 32 callers keep asking GetState.
//! For each: how far the node let it go, how the rest was refused, the node's memory, and the
//! GetState latency during it against before it. Figures are printed, never asserted.

use crate::{DEADLINE, channel, p50_p99, row, rss_bytes};
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::{Plane, PlaneOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

const STREAMS_PER_CONNECTION: usize = 100;
const MAX_WATCHERS: usize = 1_000;
const MAX_CONNECTIONS: usize = 1_000;

/// GetState from 32 callers over 4 connections until `stop`; answers the latencies and errors.
fn background_load(
    uri: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<Duration>, usize)> {
    tokio::spawn(async move {
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(channel(&uri).await);
        }
        let callers = (0..32).map(|i| {
            let mut client = HaServiceClient::new(channels[i % 4].clone());
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let begin = Instant::now();
                    match client.get_state(pb::GetStateRequest {}).await {
                        Ok(_) => latencies.push(begin.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        });
        let (mut all, mut errors) = (Vec::new(), 0);
        for caller in futures::future::join_all(callers).await {
            let (latencies, failed) = caller.expect("caller");
            all.extend(latencies);
            errors += failed;
        }
        (all, errors)
    })
}

/// Runs `phase` under the background load; prints GetState p50 / p99 and errors during it.
async fn under_load<F: Future<Output = ()>>(uri: &str, what: &str, phase: F) {
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(uri.to_owned(), Arc::clone(&stop));
    phase.await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, errors) = load.await.expect("load");
    row(
        &format!("limits: GetState p50 / p99 (errors) while {what}"),
        format!(
            "{} ({errors} of {})",
            p50_p99(&mut latencies),
            latencies.len() + errors
        ),
    );
}

/// The open watchers the node reports on /metrics.
async fn watchers_gauge(address: &str) -> u64 {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix("haplane_watchers "))
        .and_then(|value| value.trim().parse().ok())
        .expect("haplane_watchers in /metrics")
}

pub async fn run() {
    let mut options = PlaneOptions::fast();
    options.extra_args = vec![
        "--max-streams-per-connection".into(),
        STREAMS_PER_CONNECTION.to_string(),
        "--max-watchers".into(),
        MAX_WATCHERS.to_string(),
        "--max-connections".into(),
        MAX_CONNECTIONS.to_string(),
    ];
    let plane = Plane::start(1, options).await;
    plane.wait_for_master(DEADLINE).await;
    let node = &plane.nodes[0];
    let (uri, address, pid) = (node.grpc_uri(), node.address.clone(), node.pid());
    under_load(
        &uri,
        "nothing else runs",
        tokio::time::sleep(Duration::from_secs(2)),
    )
    .await;

    // Streams: twice the per-connection limit of WatchMaster streams on one connection.
    let one = channel(&uri).await;
    let mut held = Vec::new();
    under_load(&uri, "one connection asks 2x its stream limit", async {
        let opens = (0..STREAMS_PER_CONNECTION * 2).map(|_| {
            let mut client = HaServiceClient::new(one.clone());
            tokio::spawn(async move {
                let mut stream = client
                    .watch_master(pb::WatchMasterRequest { min_epoch: None })
                    .await?
                    .into_inner();
                stream.next().await;
                Ok::<_, tonic::Status>(stream)
            })
        });
        let opened: Vec<_> = opens.collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let open = watchers_gauge(&address).await;
        row(
            &format!(
                "limits: streams open on one connection asking {} (max {STREAMS_PER_CONNECTION})",
                STREAMS_PER_CONNECTION * 2
            ),
            format!("{open} open; the rest wait in the client for a free stream (HTTP/2 MAX_CONCURRENT_STREAMS)"),
        );
        for task in opened {
            task.abort();
        }
    })
    .await;
    drop(one);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Watchers: 1,000 past the cap, over connections of 50 streams.
    let before = rss_bytes(pid);
    let mut refused = 0;
    let started = Instant::now();
    under_load(&uri, "2x the watcher cap is asked", async {
        let mut channels = Vec::new();
        for _ in 0..(MAX_WATCHERS * 2).div_ceil(50) {
            channels.push(channel(&uri).await);
        }
        let opens = (0..MAX_WATCHERS * 2).map(|i| {
            let mut client = HaServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(async move {
                client
                    .watch_master(pb::WatchMasterRequest { min_epoch: None })
                    .await
                    .map(|response| response.into_inner())
            })
        });
        for open in futures::future::join_all(opens).await {
            match open.expect("open") {
                Ok(stream) => held.push(stream),
                Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
                Err(status) => panic!("a watch past the cap failed otherwise: {status}"),
            }
        }
    })
    .await;
    row(
        &format!("limits: watches asked 2x --max-watchers {MAX_WATCHERS}"),
        format!(
            "{} open, {refused} refused RESOURCE_EXHAUSTED in {:.1} s; node memory +{:.1} MiB",
            held.len(),
            started.elapsed().as_secs_f64(),
            rss_bytes(pid).saturating_sub(before) as f64 / 1_048_576.0
        ),
    );
    held.clear();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Connections: 1.5x the connection limit of idle TCP connections.
    let mut sockets = Vec::new();
    let mut refused_connects = 0;
    under_load(&uri, "1.5x the connection limit is opened", async {
        for _ in 0..MAX_CONNECTIONS * 3 / 2 {
            match tokio::net::TcpStream::connect(&address).await {
                Ok(socket) => sockets.push(socket),
                Err(_) => refused_connects += 1,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let mut closed = 0;
    for socket in &sockets {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(5), socket.peek(&mut byte)).await
        {
            closed += 1;
        }
    }
    row(
        &format!(
            "limits: {} idle connections opened (--max-connections {MAX_CONNECTIONS})",
            MAX_CONNECTIONS * 3 / 2
        ),
        format!(
            "{closed} closed by the node (oldest idle shed), {refused_connects} connects failed; node memory {:.1} MiB",
            rss_bytes(pid) as f64 / 1_048_576.0
        ),
    );
    drop(sockets);
    let state = HaServiceClient::new(channel(&uri).await)
        .get_state(pb::GetStateRequest {})
        .await
        .expect("the node answers after every limit");
    row(
        "limits: the node after the three",
        format!(
            "answers GetState: {:?}",
            pb::NodeState::try_from(state.into_inner().state).unwrap_or(pb::NodeState::Unspecified)
        ),
    );
}
