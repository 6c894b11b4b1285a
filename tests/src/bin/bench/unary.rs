//! The `unary` suite: unary GetState (gRPC) and `GET /v1/server/ha/state` (REST) against the
//! master of a one-node plane, beside a bare tonic and a bare axum server answering the same call
//! with a constant (this binary's `bare-grpc` / `bare-rest`, in their own processes); plain, then
//! over TLS (haplane with `--tls-cert/--tls-key`, the bare servers with rustls).
//!
//! The load comes from external generators, so the figure is the server's and not this
//! harness's: `h2load` (nghttp2) for gRPC, 4 connections × 16 streams posting the 5-byte frame
//! of an empty message, and `wrk` for REST, 32 HTTP/1.1 keep-alive connections. Every server
//! is started on `SERVER_CPU` alone (so it sizes its runtimes for one core) and every
//! generator runs on `LOAD_CPU` (`taskset`). After a warm-up run of each, the rounds alternate
//! between haplane and the bare server, the order flipping every round; the suite prints per
//! round the requests/s of each, their ratio, the tools' p50 / p99 and the load average, then
//! the median ratio.
//!
//! A run with any failed, errored or timed-out request, any non-2xx answer, or (gRPC, whose
//! failures are HTTP 200) fewer answer bytes than its requests' messages take panics, so a
//! broken server cannot look fast.

use super::{DEADLINE, ms, percentile, row, table_header};
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::{Plane, PlaneOptions};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The CPU every server under test runs on.
const SERVER_CPU: usize = 1;
/// The CPU the load generators run on.
const LOAD_CPU: usize = 0;
/// The gRPC method of the load.
const GET_STATE: &str = "/haplane.v1.HaService/GetState";
/// The REST path of the load.
const STATE_PATH: &str = "/v1/server/ha/state";
/// h2load's HTTP/2 connections, and the streams each keeps in flight.
const H2LOAD_CONNECTIONS: usize = 4;
const H2LOAD_STREAMS: usize = 16;
/// wrk's HTTP/1.1 keep-alive connections (one request in flight on each).
const WRK_CONNECTIONS: usize = 32;
/// Rounds of the short and the long (`--long`) run.
const ROUNDS: (usize, usize) = (3, 7);
/// One measured run of one server.
const RUN: Duration = Duration::from_secs(5);
/// The run of each server before the rounds.
const WARM_UP: Duration = Duration::from_secs(1);

/// Every unary figure: gRPC and REST, plain and over TLS.
pub(super) async fn run(long: bool) {
    let rounds = if long { ROUNDS.1 } else { ROUNDS.0 };
    // Built before any pinning, so the build has both cores.
    haplane_tests::haplane_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let frame = dir.path().join("get_state.grpc");
    // An empty GetStateRequest: uncompressed, length 0.
    std::fs::write(&frame, [0_u8; 5]).expect("write the request frame");
    let certificate = Certificate::new(dir.path());
    for tls in [None, Some(&certificate)] {
        let security = if tls.is_some() { "TLS" } else { "plain" };
        let options = PlaneOptions {
            extra_args: tls.map_or_else(Vec::new, |certificate| certificate.node_args()),
            ..PlaneOptions::defaults()
        };
        let (plane, bare_grpc, bare_rest) = on_cpu(SERVER_CPU, async {
            (
                Plane::start(1, options).await,
                Bare::start("bare-grpc", tls).await,
                Bare::start("bare-rest", tls).await,
            )
        })
        .await;
        let node = &plane.nodes[0].address;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let grpc = |address: &str, answer_bytes| Target {
            url: format!("{scheme}://{address}{GET_STATE}"),
            tool: Tool::H2load {
                frame: frame.clone(),
                answer_bytes,
            },
        };
        let rest = |address: &str| Target {
            url: format!("{scheme}://{address}{STATE_PATH}"),
            tool: Tool::Wrk,
        };
        compare(
            &format!("gRPC GetState, {security}"),
            "bare tonic",
            grpc(node, master_answer_bytes(node, tls).await),
            grpc(
                &bare_grpc.address,
                master_answer_bytes(&bare_grpc.address, tls).await,
            ),
            rounds,
        )
        .await;
        compare(
            &format!("REST GET state, {security}"),
            "bare axum",
            rest(node),
            rest(&bare_rest.address),
            rounds,
        )
        .await;
    }
}

/// Where a load goes and which tool makes it.
struct Target {
    url: String,
    tool: Tool,
}

enum Tool {
    /// gRPC over HTTP/2: POSTs `frame`; each answer is at least `answer_bytes` of DATA.
    H2load { frame: PathBuf, answer_bytes: usize },
    /// HTTP/1.1 GETs.
    Wrk,
}

impl Tool {
    fn describe(&self) -> String {
        match self {
            Tool::H2load { .. } => {
                format!("h2load, {H2LOAD_CONNECTIONS} connections x {H2LOAD_STREAMS} streams")
            }
            Tool::Wrk => format!("wrk, {WRK_CONNECTIONS} connections"),
        }
    }
}

/// What one run measured.
struct Measured {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// The same load against haplane and the bare server `baseline`, in `rounds` alternating runs
/// after a warm-up of each; prints the per-round table and the median ratio.
async fn compare(what: &str, baseline: &str, haplane: Target, bare: Target, rounds: usize) {
    measure(&haplane, WARM_UP).await;
    measure(&bare, WARM_UP).await;
    println!();
    println!(
        "{what}: haplane vs {baseline} ({}; servers on CPU {SERVER_CPU}, load on CPU \
         {LOAD_CPU}; {rounds} rounds of {RUN:?}; goal: ratio >= 1.0)",
        haplane.tool.describe()
    );
    println!();
    println!(
        "| round | haplane req/s | bare req/s | ratio | haplane p50 / p99 | bare p50 / p99 | load avg (1 min) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let load = load_average();
        let (ours, theirs) = if round % 2 == 1 {
            let ours = measure(&haplane, RUN).await;
            (ours, measure(&bare, RUN).await)
        } else {
            let theirs = measure(&bare, RUN).await;
            (measure(&haplane, RUN).await, theirs)
        };
        let ratio = ours.rate / theirs.rate;
        ratios.push(ratio);
        println!(
            "| {round} | {:.0} | {:.0} | {ratio:.2} | {} / {} | {} / {} | {load} |",
            ours.rate,
            theirs.rate,
            ms(ours.p50),
            ms(ours.p99),
            ms(theirs.p50),
            ms(theirs.p99),
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!();
    table_header();
    row(
        &format!("{what}: median ratio haplane / {baseline}"),
        format!(
            "{:.2} ({:.2} .. {:.2})",
            ratios[rounds / 2],
            ratios[0],
            ratios[rounds - 1]
        ),
    );
}

/// One run of `target`'s tool on `LOAD_CPU` for `duration`; panics if any request failed.
async fn measure(target: &Target, duration: Duration) -> Measured {
    match &target.tool {
        Tool::H2load {
            frame,
            answer_bytes,
        } => h2load(&target.url, frame, *answer_bytes, duration).await,
        Tool::Wrk => wrk(&target.url, duration).await,
    }
}

/// Runs `program` with `args` on `LOAD_CPU`; answers its standard output.
async fn run_on_load_cpu(program: &str, args: &[String]) -> String {
    let output = Command::new("taskset")
        .args(["-c", &LOAD_CPU.to_string(), program])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|err| panic!("cannot run {program} under taskset: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn h2load(url: &str, frame: &Path, answer_bytes: usize, duration: Duration) -> Measured {
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let args = [
        "--threads=1",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
    ]
    .map(String::from)
    .into_iter()
    .chain([
        format!("--clients={H2LOAD_CONNECTIONS}"),
        format!("--max-concurrent-streams={H2LOAD_STREAMS}"),
        format!("--duration={}", duration.as_secs()),
        format!("--data={}", frame.display()),
        format!("--log-file={}", log.path().display()),
        url.to_owned(),
    ])
    .collect::<Vec<_>>();
    let output = run_on_load_cpu(&haplane_tests::tool("h2load").display().to_string(), &args).await;
    let failed = |why: &str| -> ! { panic!("h2load {url}: {why}:\n{output}") };
    let numbers = |prefix: &str| -> Vec<f64> {
        let line = output
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| failed(&format!("no {prefix:?} line")));
        line.split([',', ' ', '(', ')'])
            .filter_map(|word| word.parse::<f64>().ok())
            .collect()
    };
    // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    let [_, _, done, succeeded, ref failures @ ..] = numbers("requests: ")[..] else {
        failed("unreadable requests line")
    };
    // "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
    let [ok, ..] = numbers("status codes: ")[..] else {
        failed("unreadable status codes")
    };
    if succeeded == 0.0 || done != succeeded || ok != succeeded || failures.iter().any(|n| *n > 0.0)
    {
        failed("requests failed");
    }
    if !output.contains("Application protocol: h2") {
        failed("not HTTP/2");
    }
    // "traffic: X total, X (N) headers (space savings X%), X (N) data": a gRPC failure is an
    // HTTP 200 whose trailers carry the status and that has no DATA. An answer's size may
    // move by a byte or two (varints), hence the margin.
    let traffic = numbers("traffic: ");
    let data = traffic.last().copied().unwrap_or(0.0);
    if data < 0.9 * succeeded * answer_bytes as f64 {
        failed(&format!(
            "{data} bytes of DATA for {succeeded} answers of {answer_bytes} bytes: calls failed"
        ));
    }
    // "finished in Xs, R req/s, ...": R is over the measured duration.
    let rate = numbers("finished in ").first().copied().unwrap_or(0.0);
    // Each log line: start (µs since the epoch), status, duration (µs).
    let mut latencies: Vec<Duration> = std::fs::read_to_string(log.path())
        .expect("read the h2load log")
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    Measured {
        rate,
        p50: percentile(&mut latencies, 50.0),
        p99: percentile(&mut latencies, 99.0),
    }
}

async fn wrk(url: &str, duration: Duration) -> Measured {
    let args = [
        "--threads=1".to_owned(),
        format!("--connections={WRK_CONNECTIONS}"),
        format!("--duration={}s", duration.as_secs()),
        "--latency".to_owned(),
        url.to_owned(),
    ];
    let output = run_on_load_cpu(&haplane_tests::tool("wrk").display().to_string(), &args).await;
    let failed = |why: &str| -> ! { panic!("wrk {url}: {why}:\n{output}") };
    // wrk prints these lines only when there were any.
    if output.contains("Non-2xx or 3xx responses") || output.contains("Socket errors") {
        failed("requests failed");
    }
    let value = |prefix: &str| {
        output
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
            .unwrap_or_else(|| failed(&format!("no {prefix:?} line")))
    };
    let rate: f64 = value("Requests/sec:")
        .parse()
        .unwrap_or_else(|_| failed("unreadable Requests/sec"));
    if rate <= 0.0 {
        failed("no requests answered");
    }
    // "50%  372.00us" in the latency distribution.
    let latency = |percent| {
        let text = value(percent);
        let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(0));
        let number: f64 = number
            .parse()
            .unwrap_or_else(|_| failed("unreadable latency"));
        let seconds = match unit {
            "us" => number / 1e6,
            "ms" => number / 1e3,
            "s" => number,
            _ => failed("unknown latency unit"),
        };
        Duration::from_secs_f64(seconds)
    };
    Measured {
        rate,
        p50: latency("50%"),
        p99: latency("99%"),
    }
}

/// The 1-minute load average, from /proc.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs `start` with every thread of this process on `cpu` alone, so the processes it starts
/// inherit that CPU; gives the threads their previous CPUs back after.
pub(super) async fn on_cpu<T>(cpu: usize, start: impl Future<Output = T>) -> T {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity only writes into it.
    let mut previous: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above, with its size.
    let read = unsafe { libc::sched_getaffinity(0, size, &mut previous) };
    assert_eq!(
        read,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    let own = std::process::id();
    set_threads_affinity(own, &only_cpu(cpu));
    let started = start.await;
    set_threads_affinity(own, &previous);
    started
}

/// Moves every thread of the process `pid` to `cpu` alone.
pub(super) fn pin(pid: u32, cpu: usize) {
    set_threads_affinity(pid, &only_cpu(cpu));
}

/// The CPU set holding `cpu` alone.
fn only_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data, valid when zeroed.
    let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it is a CPU of this machine).
    unsafe { libc::CPU_SET(cpu, &mut only) };
    only
}

/// Sets the CPUs of every thread of the process `pid`.
fn set_threads_affinity(pid: u32, cpus: &libc::cpu_set_t) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/task: {err}"));
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        // SAFETY: the set is valid for its size; a thread that has just exited fails with ESRCH.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), cpus) };
    }
}

/// Waits until the gRPC server at `address` answers GetState as MASTER; answers the size of
/// that answer's DATA (the 5-byte frame header and the message).
async fn master_answer_bytes(address: &str, tls: Option<&Certificate>) -> usize {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}"))
        .expect("uri")
        .timeout(Duration::from_secs(2));
    if let Some(certificate) = tls {
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&certificate.pem))
                    .domain_name("localhost"),
            )
            .expect("TLS settings");
    }
    let started = Instant::now();
    loop {
        if let Ok(channel) = endpoint.connect().await
            && let Ok(answer) = HaServiceClient::new(channel)
                .get_state(pb::GetStateRequest {})
                .await
            && answer.get_ref().state == pb::NodeState::Master as i32
        {
            return 5 + answer.get_ref().encoded_len();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{address} did not answer MASTER"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, in PEM files.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

impl Certificate {
    fn new(dir: &Path) -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names).expect("certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let pem = generated.cert.pem();
        std::fs::write(&cert, &pem).expect("write the certificate");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write the key");
        Self { cert, key, pem }
    }

    /// `--tls-cert FILE --tls-key FILE`, for the node and the bare servers alike.
    fn node_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// A baseline server process (this binary).
struct Bare {
    _child: tokio::process::Child,
    address: String,
}

impl Bare {
    /// Starts `bare-grpc` or `bare-rest`, over TLS with `tls`.
    async fn start(kind: &str, tls: Option<&Certificate>) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg(kind)
            .args(tls.map_or_else(Vec::new, Certificate::node_args))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start baseline server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = lines.next_line().await.expect("read").expect("a line");
        let address = line.rsplit(' ').next().expect("address").to_owned();
        Self {
            _child: child,
            address,
        }
    }
}

/// Runs a baseline server on 127.0.0.1:0, printing `listening on ADDRESS` like haplane does:
/// `bare-grpc` (tonic, its default settings) or `bare-rest` (axum), over TLS (rustls) with
/// `--tls-cert FILE --tls-key FILE`.
pub(super) async fn bare_server(kind: &str, args: &[String]) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "bare {kind} listening on {}",
        listener.local_addr().expect("address")
    );
    let flag = |name: &str| {
        let at = args.iter().position(|arg| arg == name)?;
        let path = args.get(at + 1).expect("a file after the flag");
        Some(std::fs::read_to_string(path).expect("read the PEM file"))
    };
    let tls = flag("--tls-cert").zip(flag("--tls-key"));
    if kind == "bare-grpc" {
        bare::grpc(listener, tls).await;
    } else {
        bare::rest(listener, tls).await;
    }
}

/// The baseline servers: the same generated gRPC service answering a constant, and axum
/// answering the constant state.
mod bare {
    use haplane_tests::haplane::pb;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Identity, Server, ServerTlsConfig};

    /// tonic's `Server` with its defaults (`TCP_NODELAY` on accepted sockets, as `serve`
    /// sets it), and its rustls TLS when given a PEM certificate and key.
    pub(super) async fn grpc(listener: TcpListener, tls: Option<(String, String)>) {
        let mut server = Server::builder();
        if let Some((cert, key)) = tls {
            server = server
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .expect("TLS settings");
        }
        server
            .add_service(pb::ha_service_server::HaServiceServer::new(BareHa))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
            .expect("serve");
    }

    /// `axum::serve`, or over TLS the same hyper connection builder behind a tokio-rustls
    /// acceptor (what axum-server does); `TCP_NODELAY` on accepted sockets either way.
    pub(super) async fn rest(listener: TcpListener, tls: Option<(String, String)>) {
        let app = axum::Router::new().route(
            super::STATE_PATH,
            axum::routing::get(|| async { axum::Json("MASTER") }),
        );
        let Some((cert, key)) = tls else {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            return axum::serve(listener, app).await.expect("serve");
        };
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(
                            TokioIo::new(tls),
                            TowerToHyperService::new(app),
                        )
                        .await;
                }
            });
        }
    }

    /// GetState answered with a constant; every other method unimplemented.
    #[derive(Debug, Default)]
    struct BareHa;

    type Stream<T> =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

    type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

    fn unimplemented<T>() -> Answer<T> {
        Err(tonic::Status::unimplemented("bare"))
    }

    #[tonic::async_trait]
    impl pb::ha_service_server::HaService for BareHa {
        async fn get_state(
            &self,
            _: tonic::Request<pb::GetStateRequest>,
        ) -> Answer<pb::GetStateResponse> {
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
        ) -> Answer<pb::ListStatesResponse> {
            unimplemented()
        }
        async fn set_state(
            &self,
            _: tonic::Request<pb::SetStateRequest>,
        ) -> Answer<pb::SetStateResponse> {
            unimplemented()
        }
        async fn set_priority(
            &self,
            _: tonic::Request<pb::SetPriorityRequest>,
        ) -> Answer<pb::SetPriorityResponse> {
            unimplemented()
        }
        async fn remove_terminated(
            &self,
            _: tonic::Request<pb::RemoveTerminatedRequest>,
        ) -> Answer<pb::RemoveTerminatedResponse> {
            unimplemented()
        }
        type WatchMasterStream = Stream<pb::MasterEvent>;
        type WatchRoleStream = Stream<pb::RoleEvent>;
        async fn watch_role(
            &self,
            _: tonic::Request<pb::WatchRoleRequest>,
        ) -> Answer<Self::WatchRoleStream> {
            unimplemented()
        }
        async fn watch_master(
            &self,
            _: tonic::Request<pb::WatchMasterRequest>,
        ) -> Answer<Self::WatchMasterStream> {
            unimplemented()
        }
        async fn history(
            &self,
            _: tonic::Request<pb::HistoryRequest>,
        ) -> Answer<pb::HistoryResponse> {
            unimplemented()
        }
        async fn nudge(&self, _: tonic::Request<pb::NudgeRequest>) -> Answer<pb::NudgeResponse> {
            unimplemented()
        }
        async fn step_down(
            &self,
            _: tonic::Request<pb::StepDownRequest>,
        ) -> Answer<pb::StepDownResponse> {
            unimplemented()
        }
    }
}
