//! haplane benchmarks: real nodes on loopback, figures printed (never asserted).
//! `cargo run --release -p haplane-tests --bin bench -- [state|scale|fanout|budget|memory|failover|unary|limits|leadership|all] [--long]`
//! (`fanout-watchers` is the watcher process the `fanout` suite starts; see `bench/fanout.rs`.)
//! (`bare-grpc` / `bare-rest` [`--tls-cert FILE --tls-key FILE`] are the baseline servers the
//! `unary` suite starts as processes; see `bench/unary.rs`.)

use haplane_tests::haplane::pb::{
    self, entity_service_client::EntityServiceClient, ha_service_client::HaServiceClient,
};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

#[path = "bench/fanout.rs"]
mod fanout;
#[path = "bench/limits.rs"]
mod limits;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/unary.rs"]
mod unary;

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

/// `samples`' p50 and p99 (it sorts them), as "P50 ms / P99 ms".
fn p50_p99(samples: &mut [Duration]) -> String {
    format!(
        "{} / {}",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0))
    )
}

fn row(name: &str, value: String) {
    println!("| {name:<58} | {value:>28} |");
}

/// The header of the table `row` adds to.
fn table_header() {
    println!("| {:<58} | {:>28} |", "figure", "value");
    println!("|{:-<60}|{:-<30}|", "", "");
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
/// CPU time (user + system) the process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the third on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
    };
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks.
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let total = ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0);
    Duration::from_secs_f64(total as f64 / per_second)
}

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The watcher process has one core: one thread, so an arrival wakes no other thread.
    let runtime = if args.first().is_some_and(|a| a == "fanout-watchers") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    runtime.expect("a Tokio runtime").block_on(run(args));
}

async fn run(args: Vec<String>) {
    if args.first().is_some_and(|a| a == "fanout-watchers") {
        fanout::watchers(&args[1..]).await;
        return;
    }
    if let Some(kind) = args.first().filter(|a| a.starts_with("bare-")) {
        unary::bare_server(kind, &args[1..]).await;
        return;
    }
    let long = args.iter().any(|a| a == "--long");
    let suite = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    table_header();
    if matches!(suite, "state" | "all") {
        state(long).await;
    }
    if matches!(suite, "scale" | "all") {
        scale::run(long).await;
    }
    if matches!(suite, "fanout" | "all") {
        let changes = if long { 100 } else { 20 };
        // `HAPLANE_FANOUT=grpc:10000` (or `sse:N`) runs that one case.
        if let Ok(only) = std::env::var("HAPLANE_FANOUT") {
            let (kind, count) = only.split_once(':').expect("HAPLANE_FANOUT=grpc|sse:COUNT");
            let count = count.parse().expect("a watcher count");
            fanout::run(fanout::Kind::named(kind), count, changes).await;
            return;
        }
        fanout::run(fanout::Kind::Grpc, 1_000, changes).await;
        fanout::run(fanout::Kind::Grpc, 10_000, changes).await;
        fanout::run(fanout::Kind::Sse, 10_000, changes).await;
        if long {
            fanout::run(fanout::Kind::Grpc, 50_000, changes).await;
        }
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
        unary::run(long).await;
    }
    if matches!(suite, "limits" | "all") {
        limits::run().await;
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
