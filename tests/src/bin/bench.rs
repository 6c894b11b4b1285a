//! haplane benchmarks: real nodes on loopback, figures printed (never asserted).
//! `cargo run --release -p haplane-tests --bin bench -- [state|scale|fanout|budget|memory|failover|unary|leadership|all] [--long]`
//! (`bare-grpc` / `bare-rest` are the baseline servers the `unary` suite starts as processes.)

use haplane_tests::haplane::pb::{
    self, entity_service_client::EntityServiceClient, ha_service_client::HaServiceClient,
};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

#[path = "bench/scale.rs"]
mod scale;

const DEADLINE: Duration = Duration::from_secs(60);

/// p-th percentile (0..=100) of `samples`, which it sorts.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// A number in `0..bound` from the clock's nanoseconds (good enough to spread samples).
fn rand_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    nanos % bound
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn row(name: &str, value: String) {
    println!("| {name:<58} | {value:>28} |");
}

async fn channel(uri: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(uri.to_owned())
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Managed state on the directory store: sequential acknowledged writes (rate, latency) and how
/// long a hot standby takes to serve each write.
async fn state(long: bool) {
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = 1 - master;
    let mut writer = EntityServiceClient::new(channel(&plane.nodes[master].grpc_uri()).await);
    let mut reader = EntityServiceClient::new(channel(&plane.nodes[standby].grpc_uri()).await);
    let writes = if long { 5_000 } else { 500 };
    let mut latencies = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        let begin = Instant::now();
        writer
            .put(pb::PutRequest {
                id: format!("bench/{i}"),
                attributes_json: format!(r#"{{"i":{i}}}"#),
                expected_version: None,
                idempotency_key: format!("bench-{i}"),
            })
            .await
            .expect("write");
        latencies.push(begin.elapsed());
    }
    let elapsed = started.elapsed();
    row(
        "state: acknowledged writes per second (1 writer, dir store)",
        format!("{:.0}", writes as f64 / elapsed.as_secs_f64()),
    );
    row(
        "state: write latency p50",
        ms(percentile(&mut latencies, 50.0)),
    );
    row(
        "state: write latency p99",
        ms(percentile(&mut latencies, 99.0)),
    );

    let samples = if long { 200 } else { 40 };
    let mut lags = Vec::with_capacity(samples);
    for i in 0..samples {
        // Spread the writes over the tail period so the samples do not all start right after a tail.
        tokio::time::sleep(Duration::from_millis(rand_below(100))).await;
        let id = format!("lag/{i}");
        writer
            .put(pb::PutRequest {
                id: id.clone(),
                attributes_json: "{}".into(),
                expected_version: None,
                idempotency_key: String::new(),
            })
            .await
            .expect("write");
        let acked = Instant::now();
        loop {
            if reader.get(pb::GetRequest { id: id.clone() }).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lags.push(acked.elapsed());
    }
    row(
        "state: hot-standby lag p50 (poll 100 ms)",
        ms(percentile(&mut lags, 50.0)),
    );
    row(
        "state: hot-standby lag p99 (poll 100 ms)",
        ms(percentile(&mut lags, 99.0)),
    );
}

/// Crash failover (kill -9) and graceful hand-over (SIGTERM): time until a client holding a
/// WatchMaster stream on a surviving node is told of the new master.
async fn failover(long: bool, options: PlaneOptions, label: &str) {
    let trials = if long { 20 } else { 5 };
    let mut crash = Vec::new();
    let mut graceful = Vec::new();
    for trial in 0..trials * 2 {
        let kill = trial % 2 == 0;
        let mut plane = Plane::start(3, options.clone()).await;
        let master = plane.wait_for_master(DEADLINE).await;
        let watcher = (master + 1) % 3;
        let mut client = HaServiceClient::new(channel(&plane.nodes[watcher].grpc_uri()).await);
        let mut stream = client
            .watch_master(pb::WatchMasterRequest { min_epoch: None })
            .await
            .expect("watch")
            .into_inner();
        let first = stream.next().await.expect("first view").expect("view");
        let stopped = Instant::now();
        if kill {
            plane.nodes[master].kill9().await;
        } else {
            plane.nodes[master].sigterm();
        }
        loop {
            let event = stream.next().await.expect("stream open").expect("event");
            if !event.master_id.is_empty() && event.epoch > first.epoch {
                break;
            }
        }
        let took = stopped.elapsed();
        if kill {
            crash.push(took)
        } else {
            graceful.push(took)
        }
        eventually(DEADLINE, "plane agreed", || plane.agreed_master()).await;
    }
    row(
        &format!("failover ({label}): crash, told p50 ({trials} trials)"),
        ms(percentile(&mut crash, 50.0)),
    );
    row(
        &format!("failover ({label}): crash, told p99"),
        ms(percentile(&mut crash, 99.0)),
    );
    row(
        &format!("failover ({label}): graceful, told p50"),
        ms(percentile(&mut graceful, 50.0)),
    );
    row(
        &format!("failover ({label}): graceful, told p99"),
        ms(percentile(&mut graceful, 99.0)),
    );
}

/// Switchover: an operator promotes a standby (SetState MASTER with the override) while the
/// master is reachable. Timed from the request until the promoted node answers MASTER; the
/// master first steps down over the StepDown peer RPC, so there is no overlap to wait out.
async fn switchover(long: bool, options: PlaneOptions, label: &str) {
    let trials = if long { 100 } else { 20 };
    let plane = Plane::start(3, options).await;
    let mut master = plane.wait_for_master(DEADLINE).await;
    let mut clients = Vec::new();
    for node in &plane.nodes {
        clients.push(HaServiceClient::new(channel(&node.grpc_uri()).await));
    }
    let mut took = Vec::new();
    for trial in 0..trials {
        let target = (master + 1 + trial % 2) % 3;
        let started = Instant::now();
        clients[target]
            .set_state(haplane_tests::allow_non_master(pb::SetStateRequest {
                mode: pb::HaMode::Master as i32,
            }))
            .await
            .expect("promote");
        loop {
            let state = clients[target]
                .get_state(pb::GetStateRequest {})
                .await
                .expect("state")
                .into_inner();
            if state.state == pb::NodeState::Master as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(started.elapsed());
        master = target;
        // Let the old master write its released record and the plane settle.
        eventually(DEADLINE, "plane agreed", || plane.agreed_master()).await;
    }
    row(
        &format!("switchover ({label}): p50 ({trials} trials)"),
        ms(percentile(&mut took, 50.0)),
    );
    row(
        &format!("switchover ({label}): p99"),
        ms(percentile(&mut took, 99.0)),
    );
}

/// Sums `haplane_store_requests_total` and reads `haplane_polls_total` from a node's /metrics.
async fn requests_and_polls(node: &haplane_tests::Node) -> (f64, f64) {
    let text = reqwest::get(node.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let mut requests = 0.0;
    let mut polls = 0.0;
    for line in text.lines() {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if line.starts_with("haplane_store_requests_total{") {
            requests += value();
        } else if line.starts_with("haplane_polls_total ") {
            polls = value();
        }
    }
    (requests, polls)
}

/// Store requests per poll at steady state for the master and a standby (SPEC budget: standby
/// at most 3, master at most 2; Brooklyn makes N + 4).
async fn budget(long: bool, options: PlaneOptions, label: &str) {
    let plane = Plane::start(3, options).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = (master + 1) % 3;
    // Let start-up scans and the first claims pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (
        requests_and_polls(&plane.nodes[master]).await,
        requests_and_polls(&plane.nodes[standby]).await,
    );
    tokio::time::sleep(Duration::from_secs(if long { 60 } else { 10 })).await;
    let after = (
        requests_and_polls(&plane.nodes[master]).await,
        requests_and_polls(&plane.nodes[standby]).await,
    );
    let per_poll = |b: (f64, f64), a: (f64, f64)| (a.0 - b.0) / (a.1 - b.1).max(1.0);
    row(
        &format!("store requests per poll, master ({label})"),
        format!("{:.2} (Brooklyn: N+4 = 7)", per_poll(before.0, after.0)),
    );
    row(
        &format!("store requests per poll, standby ({label})"),
        format!("{:.2} (Brooklyn: N+4 = 7)", per_poll(before.1, after.1)),
    );
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// WatchMaster fan-out: `count` subscribers on one node of two. Per master change (SetState on
/// alternating nodes), the time from the SetState call to the last subscriber told and to each
/// one; and the node's memory per subscriber. The subscribers run in this process, on the same two
/// cores as the nodes, so their decoding is part of the figure.
async fn fanout(count: usize, changes: usize) {
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let node = 1 - master;
    let idle = rss_bytes(plane.nodes[node].pid());
    eprintln!(
        "fan-out {count}: subscribers on node pid {}",
        plane.nodes[node].pid()
    );
    // 100 streams per HTTP/2 connection.
    let connections = count.div_ceil(100);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(channel(&plane.nodes[node].grpc_uri()).await);
    }
    let (sender, mut receipts) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut ready = Vec::new();
    let mut subscribers = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut client = HaServiceClient::new(channels[i % connections].clone());
        let sender = sender.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        subscribers.spawn(async move {
            let mut stream = client
                .watch_master(pb::WatchMasterRequest { min_epoch: None })
                .await
                .expect("watch")
                .into_inner();
            let _ = stream.next().await;
            let _ = ready_tx.send(());
            loop {
                match stream.next().await {
                    Some(Ok(event)) if event.master_id.is_empty() => {}
                    Some(Ok(event)) => {
                        let _ = sender.send((event.epoch, Instant::now()));
                    }
                    Some(Err(status)) => panic!("subscriber {i}: {status}"),
                    None => panic!("subscriber {i}: stream ended"),
                }
            }
        });
    }
    for r in ready {
        let _ = r.await;
    }
    let subscribed = rss_bytes(plane.nodes[node].pid());
    let mut to_last = Vec::with_capacity(changes);
    let mut to_each = Vec::with_capacity(changes * count);
    let mut promote_to = node;
    let mut epoch = 0;
    for _ in 0..changes {
        // Hand the master role back and forth; the watched node is told of each change either by
        // its own claim or by its peer's nudge.
        let mut ha = HaServiceClient::new(channel(&plane.nodes[promote_to].grpc_uri()).await);
        let mut request = tonic::Request::new(pb::SetStateRequest {
            mode: pb::HaMode::Master as i32,
        });
        request.metadata_mut().insert(
            haplane::wire::ALLOW_NON_MASTER_METADATA,
            "true".parse().expect("ascii"),
        );
        let changed_at = Instant::now();
        ha.set_state(request).await.expect("promote");
        let mut told = Vec::with_capacity(count);
        while told.len() < count {
            let Ok(Some((e, at))) = tokio::time::timeout(DEADLINE, receipts.recv()).await else {
                panic!(
                    "{} of {count} told of epoch {epoch} after promoting node {promote_to}; states {:?}",
                    told.len(),
                    plane.states().await
                );
            };
            if e < epoch {
                continue; // a late receipt of the previous change
            }
            if e > epoch {
                epoch = e;
                told.clear();
            }
            told.push(at.duration_since(changed_at));
        }
        to_last.push(*told.iter().max().expect("receipts"));
        to_each.extend(told);
        promote_to = 1 - promote_to;
    }
    // Before the plane stops, or every subscriber would see its stream break.
    subscribers.shutdown().await;
    let name = |what: &str| format!("fan-out {count}: master change to {what}");
    row(
        &name(&format!("last told, p50 ({changes} changes)")),
        ms(percentile(&mut to_last, 50.0)),
    );
    row(
        &name(&format!("last told, p99 ({changes} changes)")),
        ms(percentile(&mut to_last, 99.0)),
    );
    row(&name("each told, p50"), ms(percentile(&mut to_each, 50.0)));
    row(&name("each told, p99"), ms(percentile(&mut to_each, 99.0)));
    row(
        &format!("fan-out {count}: node memory per subscriber"),
        format!(
            "{:.1} KiB",
            (subscribed.saturating_sub(idle)) as f64 / count as f64 / 1024.0
        ),
    );
}

/// The baseline: a bare tonic server answering GetState with a constant.
#[derive(Debug, Default)]
struct BareHa;

type BareStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::MasterEvent, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl pb::ha_service_server::HaService for BareHa {
    async fn get_state(
        &self,
        _request: tonic::Request<pb::GetStateRequest>,
    ) -> Result<tonic::Response<pb::GetStateResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::GetStateResponse {
            node_id: "bare".into(),
            state: pb::NodeState::Master as i32,
            priority: 0,
            epoch: 1,
            master_id: "bare".into(),
            master_uri: "http://127.0.0.1".into(),
            plane_id: "bare".into(),
            lease_valid_for_ms: None,
        }))
    }
    async fn list_states(
        &self,
        _: tonic::Request<pb::ListStatesRequest>,
    ) -> Result<tonic::Response<pb::ListStatesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn set_state(
        &self,
        _: tonic::Request<pb::SetStateRequest>,
    ) -> Result<tonic::Response<pb::SetStateResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn set_priority(
        &self,
        _: tonic::Request<pb::SetPriorityRequest>,
    ) -> Result<tonic::Response<pb::SetPriorityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn remove_terminated(
        &self,
        _: tonic::Request<pb::RemoveTerminatedRequest>,
    ) -> Result<tonic::Response<pb::RemoveTerminatedResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    type WatchMasterStream = BareStream;
    type WatchRoleStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::RoleEvent, tonic::Status>> + Send>,
    >;
    async fn watch_role(
        &self,
        _: tonic::Request<pb::WatchRoleRequest>,
    ) -> Result<tonic::Response<Self::WatchRoleStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn watch_master(
        &self,
        _: tonic::Request<pb::WatchMasterRequest>,
    ) -> Result<tonic::Response<BareStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn history(
        &self,
        _: tonic::Request<pb::HistoryRequest>,
    ) -> Result<tonic::Response<pb::HistoryResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn nudge(
        &self,
        _: tonic::Request<pb::NudgeRequest>,
    ) -> Result<tonic::Response<pb::NudgeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn step_down(
        &self,
        _: tonic::Request<pb::StepDownRequest>,
    ) -> Result<tonic::Response<pb::StepDownResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
}

/// Runs a baseline server on 127.0.0.1:0, printing `listening on ADDRESS` like haplane does.
async fn bare_server(kind: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "bare {kind} listening on {}",
        listener.local_addr().expect("address")
    );
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    if kind == "bare-grpc" {
        tonic::transport::Server::builder()
            .add_service(pb::ha_service_server::HaServiceServer::new(BareHa))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    } else {
        let app = axum::Router::new().route(
            "/v1/server/ha/state",
            axum::routing::get(|| async { axum::Json("MASTER") }),
        );
        let listener = incoming.into_inner();
        axum::serve(listener, app).await.expect("serve");
    }
}

/// Starts this binary as a baseline server process; answers it and its address.
async fn start_bare(kind: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .arg(kind)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start baseline server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = lines.next_line().await.expect("read").expect("a line");
    let address = line.rsplit(' ').next().expect("address").to_owned();
    (child, address)
}

/// One request of a load: called with the caller's index, resolves when answered.
type Call = std::sync::Arc<dyn Fn(usize) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Load: `concurrency` callers for `duration`; answers (requests/s, latencies).
async fn load(call: &Call, concurrency: usize, duration: Duration) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let until = started + duration;
    let workers = (0..concurrency).map(|worker| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let begin = Instant::now();
                call(worker).await;
                latencies.push(begin.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for worker in futures::future::join_all(workers).await {
        all.extend(worker.expect("worker"));
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// GetState over 4 HTTP/2 connections.
async fn grpc_call(address: &str) -> Call {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(&format!("http://{address}")).await);
    }
    std::sync::Arc::new(move |worker| {
        let mut client = HaServiceClient::new(channels[worker % channels.len()].clone());
        Box::pin(async move {
            client
                .get_state(pb::GetStateRequest {})
                .await
                .expect("GetState");
        })
    })
}

/// GET /v1/server/ha/state over a keep-alive pool.
fn rest_call(address: &str) -> Call {
    let http = reqwest::Client::new();
    let url = format!("http://{address}/v1/server/ha/state");
    std::sync::Arc::new(move |_| {
        let request = http.get(&url);
        Box::pin(async move {
            let body = request
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body");
            assert_eq!(body, "\"MASTER\"");
        })
    })
}

/// The same load against haplane and a bare server, in `rounds` alternating runs (the order
/// flips each round, so drift on a shared machine hits both) after a warm-up of each; prints
/// the median requests/s of each, their ratio, the spread of per-round ratios, and latencies.
async fn side_by_side(what: &str, haplane: Call, bare: Call, rounds: usize, duration: Duration) {
    let concurrency = 32;
    let warm_up = Duration::from_secs(1);
    load(&haplane, concurrency, warm_up).await;
    load(&bare, concurrency, warm_up).await;
    let (mut rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut latencies, mut bare_latencies) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ((rate, ours), (bare_rate, theirs)) = if round % 2 == 0 {
            let ours = load(&haplane, concurrency, duration).await;
            (ours, load(&bare, concurrency, duration).await)
        } else {
            let theirs = load(&bare, concurrency, duration).await;
            (load(&haplane, concurrency, duration).await, theirs)
        };
        latencies.extend(ours);
        bare_latencies.extend(theirs);
        rates.push(rate);
        bare_rates.push(bare_rate);
        ratios.push(rate / bare_rate);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (rate, bare_rate) = (median(&mut rates), median(&mut bare_rates));
    let what = format!("{what}, {concurrency} in flight");
    row(
        &format!("{what}: requests/s haplane / bare (ratio)"),
        format!("{rate:.0} / {bare_rate:.0} ({:.2})", rate / bare_rate),
    );
    ratios.sort_by(f64::total_cmp);
    row(
        &format!("{what}: ratio per round, {rounds} rounds of {duration:?}"),
        format!("{:.2} .. {:.2}", ratios[0], ratios[rounds - 1]),
    );
    row(
        &format!("{what}: p50 haplane / bare"),
        format!(
            "{} / {}",
            ms(percentile(&mut latencies, 50.0)),
            ms(percentile(&mut bare_latencies, 50.0))
        ),
    );
    row(
        &format!("{what}: p99 haplane / bare"),
        format!(
            "{} / {}",
            ms(percentile(&mut latencies, 99.0)),
            ms(percentile(&mut bare_latencies, 99.0))
        ),
    );
}

/// Unary GetState (gRPC) and GET state (REST) against a master, beside bare tonic / axum
/// servers in their own processes, same load, same run.
async fn unary(long: bool) {
    let rounds = if long { 10 } else { 5 };
    let duration = Duration::from_secs(2);
    let plane = Plane::start(1, PlaneOptions::defaults()).await;
    plane.wait_for_master(DEADLINE).await;
    let node = plane.nodes[0].address.clone();
    let (_grpc_child, bare_grpc) = start_bare("bare-grpc").await;
    let (_rest_child, bare_rest) = start_bare("bare-rest").await;
    side_by_side(
        "gRPC GetState",
        grpc_call(&node).await,
        grpc_call(&bare_grpc).await,
        rounds,
        duration,
    )
    .await;
    side_by_side(
        "REST GET state",
        rest_call(&node),
        rest_call(&bare_rest),
        rounds,
        duration,
    )
    .await;
}

/// Leadership for users' services: three replicas of the embedded-participant example (poll
/// 100 ms, timeout 1 s) through kill -9 of the leader and graceful resigns, alternately; the gap
/// is from the old leader's last unit of work to the new leader's first (units every 10 ms).
async fn leadership(long: bool) {
    use haplane_tests::replica::{all_units, leader_after, start_all, stop_all};
    use haplane_tests::spans::{gap_after, spans};
    let trials = if long { 20 } else { 6 };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replicas = start_all(dir.path(), &["r1", "r2", "r3"]);
    let (mut leader, mut epoch) = leader_after(&replicas, 0).await;
    let mut ended = Vec::new();
    for trial in 0..trials * 2 {
        let crash = trial % 2 == 0;
        replicas[leader].signal(if crash { libc::SIGKILL } else { libc::SIGTERM });
        replicas[leader].wait_exit().await;
        ended.push((crash, epoch));
        let old = leader;
        (leader, epoch) = leader_after(&replicas, epoch).await;
        replicas[old].start();
        // Let the restarted replica join before the next fault.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_all(&mut replicas).await;
    let history = spans(&all_units(&replicas));
    for (crash, name, goal) in [
        (true, "kill -9", "goal <= timeout + 2 polls = 1200 ms"),
        (false, "resign", "goal <= 1 poll = 100 ms"),
    ] {
        let mut gaps: Vec<Duration> = ended
            .iter()
            .filter(|(was_crash, _)| *was_crash == crash)
            .map(|(_, epoch)| Duration::from_millis(gap_after(&history, *epoch)))
            .collect();
        let max = gaps.iter().max().copied().unwrap_or_default();
        row(
            &format!(
                "leader-only work gap after {name}, p50 / max ({} trials)",
                gaps.len()
            ),
            format!("{} / {}", ms(percentile(&mut gaps, 50.0)), ms(max)),
        );
        row(&format!("  ({name}: {goal})"), String::new());
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(kind) = args.first().filter(|a| a.starts_with("bare-")) {
        bare_server(kind).await;
        return;
    }
    let long = args.iter().any(|a| a == "--long");
    let suite = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    println!("| {:<58} | {:>28} |", "figure", "value");
    println!("|{:-<60}|{:-<30}|", "", "");
    if matches!(suite, "state" | "all") {
        state(long).await;
    }
    if matches!(suite, "scale" | "all") {
        scale::run(long).await;
    }
    if matches!(suite, "fanout" | "all") {
        let changes = if long { 100 } else { 20 };
        fanout(1_000, changes).await;
        fanout(10_000, changes).await;
    }
    if matches!(suite, "budget" | "all") {
        budget(long, PlaneOptions::fast(), "directory store").await;
        let moto = haplane_tests::moto::MotoServer::start().await;
        moto.create_bucket("budget").await;
        budget(
            long,
            PlaneOptions::fast().on_s3("s3://budget/plane", &moto.endpoint),
            "S3 (moto)",
        )
        .await;
    }
    if matches!(suite, "memory" | "all") {
        let plane = Plane::start(1, PlaneOptions::defaults()).await;
        plane.wait_for_master(DEADLINE).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        row(
            "idle node resident memory (release, master)",
            format!(
                "{:.1} MiB",
                rss_bytes(plane.nodes[0].pid()) as f64 / 1048576.0
            ),
        );
    }
    if matches!(suite, "unary" | "all") {
        unary(long).await;
    }
    if matches!(suite, "switchover" | "all") {
        switchover(
            long,
            PlaneOptions::defaults(),
            "defaults: poll 1s, timeout 10s",
        )
        .await;
    }
    if matches!(suite, "leadership" | "all") {
        leadership(long).await;
    }
    if matches!(suite, "failover" | "all") {
        failover(long, PlaneOptions::fast(), "poll 100ms, timeout 1s").await;
        let defaults = PlaneOptions::defaults();
        failover(long, defaults, "defaults: poll 1s, timeout 10s").await;
    }
}
