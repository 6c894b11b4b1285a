//! haplane benchmarks: real nodes on loopback, figures printed (never asserted).
//! `cargo run --release -p haplane-tests --bin bench -- [state|fanout|budget|memory|failover|unary|all] [--long]`
//! (`bare-grpc` / `bare-rest` are the baseline servers the `unary` suite starts as processes.)

use haplane_tests::haplane::pb::{
    self, entity_service_client::EntityServiceClient, ha_service_client::HaServiceClient,
};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

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

/// WatchMaster fan-out: `count` subscribers on one standby; per master change, the spread from
/// the first subscriber told to each of the others, and the node's memory per subscriber.
async fn fanout(count: usize) {
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let node = 1 - master;
    let idle = rss_bytes(plane.nodes[node].pid());
    // 100 streams per HTTP/2 connection.
    let connections = count.div_ceil(100);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(channel(&plane.nodes[node].grpc_uri()).await);
    }
    let (sender, mut receipts) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut ready = Vec::new();
    for i in 0..count {
        let mut client = HaServiceClient::new(channels[i % connections].clone());
        let sender = sender.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let mut stream = client
                .watch_master(pb::WatchMasterRequest { min_epoch: None })
                .await
                .expect("watch")
                .into_inner();
            let _ = stream.next().await;
            let _ = ready_tx.send(());
            while let Some(Ok(event)) = stream.next().await {
                if !event.master_id.is_empty() {
                    let _ = sender.send((event.epoch, Instant::now()));
                }
            }
        });
    }
    for r in ready {
        let _ = r.await;
    }
    let subscribed = rss_bytes(plane.nodes[node].pid());
    let mut spreads = Vec::new();
    let mut promote_to = node;
    for _ in 0..3 {
        // Hand the master role back and forth; the watched node learns of each change.
        let mut ha = HaServiceClient::new(channel(&plane.nodes[promote_to].grpc_uri()).await);
        let mut request = tonic::Request::new(pb::SetStateRequest {
            mode: pb::HaMode::Master as i32,
        });
        request
            .metadata_mut()
            .insert("allow-non-master-access", "true".parse().expect("ascii"));
        ha.set_state(request).await.expect("promote");
        let mut times = Vec::with_capacity(count);
        let mut epoch = 0;
        while times.len() < count {
            let (e, at) = tokio::time::timeout(DEADLINE, receipts.recv())
                .await
                .expect("notified")
                .expect("open");
            if e > epoch {
                epoch = e;
                times.clear();
            }
            times.push(at);
        }
        let first = *times.iter().min().expect("receipts");
        spreads.extend(times.iter().map(|t| t.duration_since(first)));
        promote_to = 1 - promote_to;
    }
    row(
        &format!("fan-out {count} subscribers: first to each told, p50"),
        ms(percentile(&mut spreads, 50.0)),
    );
    row(
        &format!("fan-out {count} subscribers: first to each told, p99"),
        ms(percentile(&mut spreads, 99.0)),
    );
    row(
        &format!("fan-out {count} subscribers: node memory per subscriber"),
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
    async fn watch_master(
        &self,
        _: tonic::Request<pb::WatchMasterRequest>,
    ) -> Result<tonic::Response<BareStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("bare"))
    }
    async fn nudge(
        &self,
        _: tonic::Request<pb::NudgeRequest>,
    ) -> Result<tonic::Response<pb::NudgeResponse>, tonic::Status> {
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

/// Load: `concurrency` callers for `duration` after a warm-up; answers (requests/s, latencies).
async fn load<F, Fut>(concurrency: usize, duration: Duration, call: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let run = |length: Duration| {
        let call = call.clone();
        async move {
            let until = Instant::now() + length;
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
            all
        }
    };
    run(Duration::from_secs(1)).await;
    let started = Instant::now();
    let latencies = run(duration).await;
    (
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    )
}

async fn grpc_load(address: &str, concurrency: usize, duration: Duration) -> (f64, Vec<Duration>) {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(&format!("http://{address}")).await);
    }
    load(concurrency, duration, move |worker| {
        let mut client = HaServiceClient::new(channels[worker % channels.len()].clone());
        async move {
            client
                .get_state(pb::GetStateRequest {})
                .await
                .expect("GetState");
        }
    })
    .await
}

async fn rest_load(address: &str, concurrency: usize, duration: Duration) -> (f64, Vec<Duration>) {
    let http = reqwest::Client::new();
    let url = format!("http://{address}/v1/server/ha/state");
    load(concurrency, duration, move |_| {
        let request = http.get(&url);
        async move {
            let body = request
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body");
            assert_eq!(body, "\"MASTER\"");
        }
    })
    .await
}

fn unary_rows(what: &str, haplane: (f64, Vec<Duration>), bare: (f64, Vec<Duration>)) {
    let (rate, mut latencies) = haplane;
    let (bare_rate, mut bare_latencies) = bare;
    row(
        &format!("{what}: requests/s haplane / bare (ratio)"),
        format!("{rate:.0} / {bare_rate:.0} ({:.2})", rate / bare_rate),
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
    let duration = Duration::from_secs(if long { 20 } else { 5 });
    let concurrency = 32;
    let plane = Plane::start(1, PlaneOptions::defaults()).await;
    plane.wait_for_master(DEADLINE).await;
    let node = plane.nodes[0].address.clone();
    let (_grpc_child, bare_grpc) = start_bare("bare-grpc").await;
    let (_rest_child, bare_rest) = start_bare("bare-rest").await;
    let haplane = grpc_load(&node, concurrency, duration).await;
    let bare = grpc_load(&bare_grpc, concurrency, duration).await;
    unary_rows(
        &format!("gRPC GetState, {concurrency} in flight"),
        haplane,
        bare,
    );
    let haplane = rest_load(&node, concurrency, duration).await;
    let bare = rest_load(&bare_rest, concurrency, duration).await;
    unary_rows(
        &format!("REST GET state, {concurrency} in flight"),
        haplane,
        bare,
    );
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
    if matches!(suite, "fanout" | "all") {
        fanout(1_000).await;
        fanout(10_000).await;
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
    if matches!(suite, "failover" | "all") {
        failover(long, PlaneOptions::fast(), "poll 100ms, timeout 1s").await;
        let defaults = PlaneOptions::defaults();
        failover(long, defaults, "defaults: poll 1s, timeout 10s").await;
    }
}
