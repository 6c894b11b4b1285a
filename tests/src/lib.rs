//! End-to-end harness: builds the `haplane` binary once, starts real nodes on 127.0.0.1:0 against
//! a temporary directory store, and offers clients, signals and condition waits to the tests.

use haplane::pb::{self, ha_service_client::HaServiceClient};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub use haplane;

pub mod history;
pub mod moto;
pub mod netns;
pub mod replica;
pub mod sampler;
pub mod spans;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `haplane` binary, built once per test process with the same profile.
pub fn haplane_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Ok(path) = std::env::var("HAPLANE_BIN") {
            return PathBuf::from(path);
        }
        cargo_build(
            &[
                "-p",
                "haplane-server",
                "--features",
                "test-support",
                "--bin",
                "haplane",
            ],
            "haplane",
        )
    })
}

/// Path of the server's example `leader_only_job` (an embedded participant), built once per test
/// process with the same profile.
pub fn leader_only_job_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        cargo_build(
            &[
                "-p",
                "haplane-server",
                "--features",
                "test-support",
                "--example",
                "leader_only_job",
            ],
            "examples/leader_only_job",
        )
    })
}

/// Path of one of the SDK's examples (`sidecar_job`, `entity_writes`, `tls_and_auth`, ...),
/// built once per test process with the same profile.
pub fn sdk_example_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, path)) = built.iter().find(|(built_name, _)| built_name == name) {
        return path.clone();
    }
    let path = cargo_build(
        &["-p", "haplane-sdk", "--example", name],
        &format!("examples/{name}"),
    );
    built.push((name.to_owned(), path.clone()));
    path
}

/// Builds a target (`-p PACKAGE [--features ...] --bin|--example NAME`) in the harness's own
/// profile, so release benchmarks measure a release node; answers the built file
/// (`output`, relative to the profile's directory).
fn cargo_build(target: &[&str], output: &str) -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", profile])
        .args(target)
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of {target:?} failed");
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let directory = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target_dir.join(directory).join(output)
}

/// Waits until `check` returns `Some`, polling every 20 ms, or panics after `deadline` with
/// `what` in the message.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Timings and extra flags for every node of a plane.
#[derive(Debug, Clone)]
pub struct PlaneOptions {
    pub poll_period: Duration,
    pub heartbeat_timeout: Duration,
    /// Extra `haplane launch` arguments for every node.
    pub extra_args: Vec<String>,
    /// `Some((location, endpoint))`: an S3 store instead of the temporary directory.
    pub s3: Option<(String, String)>,
    /// Extra environment variables for every node.
    pub extra_env: Vec<(String, String)>,
    /// Give every node its own fault control file (`Plane::fault_file`), so store faults can be
    /// asymmetric: one node's store calls fail or slow down while the others' do not.
    pub per_node_faults: bool,
}

impl PlaneOptions {
    /// Poll 100 ms, timeout 1 s.
    pub fn fast() -> Self {
        Self {
            poll_period: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_secs(1),
            extra_args: Vec::new(),
            s3: None,
            extra_env: Vec::new(),
            per_node_faults: false,
        }
    }

    /// Poll 100 ms, timeout 3 s (lease 2.25 s): for tests that need one master to keep its lease
    /// through seconds of work on a loaded CI machine, where a 750 ms lease can lapse (the master
    /// then rightly reports FAILED and a later epoch begins). A crash failover takes ~3 s.
    pub fn steady() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(3),
            ..Self::fast()
        }
    }

    /// Poll 500 ms, timeout 3 s: for planes on moto. The start-up grace (2 polls) of 1 s covers
    /// first heartbeats that launching nodes against moto on a busy machine spreads over more
    /// than 200 ms (so priorities decide the first election), and the 2.25 s lease rides out
    /// moto's latency.
    pub fn for_moto() -> Self {
        Self {
            poll_period: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(3),
            ..Self::fast()
        }
    }

    /// The production defaults: poll 1 s, timeout 10 s.
    pub fn defaults() -> Self {
        Self {
            poll_period: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            ..Self::fast()
        }
    }

    /// The same timings on an S3 store at `endpoint` (moto), under `s3://bucket/prefix`.
    pub fn on_s3(self, location: &str, endpoint: &str) -> Self {
        Self {
            s3: Some((location.to_owned(), endpoint.to_owned())),
            ..self
        }
    }

    /// A timeout + 2 polls, the crash failover bound.
    pub fn failover_bound(&self) -> Duration {
        self.heartbeat_timeout + self.poll_period * 2
    }
}

/// One `haplane` process.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub log: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// `http://127.0.0.1:PORT`, for gRPC and REST alike.
    pub fn grpc_uri(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .and_then(|pid| i32::try_from(pid).ok())
            .expect("node is running")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// kill -9.
    pub async fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10)).await;
    }

    /// SIGTERM; does not wait.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal).
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("node was started");
        let status = tokio::time::timeout(deadline, child.wait())
            .await
            .unwrap_or_else(|_| panic!("node {} did not exit within {deadline:?}", self.id))
            .expect("wait for node");
        self.child = None;
        status.code()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's log (stderr) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A gRPC client to this node.
    pub async fn client(&self) -> HaServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(self.grpc_uri())
            .expect("valid uri")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.id));
        HaServiceClient::new(channel)
    }

    /// GetState with a short timeout; `None` if the node does not answer.
    pub async fn try_state(&self) -> Option<pb::GetStateResponse> {
        try_state_at(&self.grpc_uri()).await
    }

    /// GetState; panics if the node does not answer.
    pub async fn state(&self) -> pb::GetStateResponse {
        self.client()
            .await
            .get_state(pb::GetStateRequest {})
            .await
            .unwrap_or_else(|status| panic!("GetState on {}: {status}", self.id))
            .into_inner()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// Arguments for a quick single node: a free loopback port, poll 100 ms, timeout 1 s, its
/// directory store at `store`, then `extra` (last, so a caller may append a flag's value).
pub fn quick_node_args(store: &Path, extra: &[&str]) -> Vec<String> {
    node_args(store, "1s", extra)
}

/// `quick_node_args` with another heartbeat timeout (a `haplane` duration such as "10s").
pub fn node_args(store: &Path, heartbeat_timeout: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--bind",
        "127.0.0.1:0",
        "--poll-period",
        "100ms",
        "--heartbeat-timeout",
        heartbeat_timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--persistence-dir".to_owned(), store.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// GetState of the node at `uri`, bounded to a second; `None` if it does not answer.
pub async fn try_state_at(uri: &str) -> Option<pb::GetStateResponse> {
    let attempt = async {
        let channel = tonic::transport::Endpoint::from_shared(uri.to_owned())
            .ok()?
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_millis(700))
            .connect()
            .await
            .ok()?;
        HaServiceClient::new(channel)
            .get_state(pb::GetStateRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner)
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// What `launch` did: a running node, or the exit code and log of one that refused to start.
#[derive(Debug)]
pub enum Launched {
    Running(Box<Node>),
    Exited { code: Option<i32>, output: String },
}

impl Launched {
    pub fn running(self) -> Node {
        match self {
            Launched::Running(node) => *node,
            Launched::Exited { code, output } => {
                panic!("node exited with {code:?} instead of running:\n{output}")
            }
        }
    }

    pub fn exited(self) -> (Option<i32>, String) {
        match self {
            Launched::Exited { code, output } => (code, output),
            Launched::Running(node) => panic!("node {} is running but should have exited", node.id),
        }
    }
}

/// Starts `haplane launch` with `args` in `workdir`; waits for its "listening" line or its exit.
pub async fn launch(workdir: &Path, id: &str, args: &[String]) -> Launched {
    launch_with_env(workdir, id, args, &[]).await
}

/// `launch` with extra environment variables.
pub async fn launch_with_env(
    workdir: &Path,
    id: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> Launched {
    let log = workdir.join(format!("{id}.log"));
    let stderr = std::fs::File::create(&log).expect("create log");
    let mut child = Command::new(haplane_binary())
        .arg("launch")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workdir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn haplane");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let address = match first {
        Ok(Ok(Some(line))) => line
            .split_whitespace()
            .skip_while(|word| *word != "on")
            .nth(1)
            .map(str::to_owned),
        _ => None,
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    match address {
        Some(address) => Launched::Running(Box::new(Node {
            id: id.to_owned(),
            address,
            log,
            args: args.to_vec(),
            child: Some(child),
        })),
        None => {
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("a node that printed no address exits")
                .expect("wait");
            Launched::Exited {
                code: status.code(),
                output: std::fs::read_to_string(&log).unwrap_or_default(),
            }
        }
    }
}

/// Several nodes on one temporary directory store.
#[derive(Debug)]
pub struct Plane {
    pub dir: tempfile::TempDir,
    pub options: PlaneOptions,
    pub nodes: Vec<Node>,
}

impl Plane {
    /// An empty plane (no nodes yet).
    pub fn new(options: PlaneOptions) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            options,
            nodes: Vec::new(),
        }
    }

    /// `n` AUTO nodes `n1..=n<n>` with priority 0, started together.
    pub async fn start(n: usize, options: PlaneOptions) -> Self {
        let specs: Vec<(String, Vec<String>)> =
            (1..=n).map(|i| (format!("n{i}"), Vec::new())).collect();
        let mut plane = Self::new(options);
        plane.start_nodes(specs).await;
        plane
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The launch arguments of node `id`, with the plane's timings and store.
    pub fn args_for(&self, id: &str, extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.into(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--poll-period".into(),
            format!("{}ms", self.options.poll_period.as_millis()),
            "--heartbeat-timeout".into(),
            format!("{}ms", self.options.heartbeat_timeout.as_millis()),
            "--pid-file".into(),
            format!("{id}.pid"),
        ];
        match &self.options.s3 {
            Some((location, endpoint)) => args.extend([
                "--persistence-location".into(),
                location.clone(),
                "--s3-endpoint".into(),
                endpoint.clone(),
            ]),
            None => args.extend([
                "--persistence-dir".into(),
                self.store_dir().display().to_string(),
            ]),
        }
        args.extend(self.options.extra_args.iter().cloned());
        args.extend(extra.iter().cloned());
        args
    }

    /// Node `id`'s own store-fault control file (see `PlaneOptions::per_node_faults`); write
    /// `server/src/store/faulty.rs`'s lines into it to inject faults into that node alone.
    pub fn fault_file(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.faults"))
    }

    /// Replaces node `id`'s faults with `lines` (an empty string clears them).
    pub fn set_faults(&self, id: &str, lines: &str) {
        std::fs::write(self.fault_file(id), lines).expect("write fault control file");
    }

    fn env(&self, id: &str) -> Vec<(String, String)> {
        let mut env = if self.options.s3.is_some() {
            moto::aws_env()
        } else {
            Vec::new()
        };
        env.extend(self.options.extra_env.iter().cloned());
        if self.options.per_node_faults {
            env.push((
                "HAPLANE_TEST_STORE_FAULTS".into(),
                self.fault_file(id).display().to_string(),
            ));
        }
        env
    }

    async fn launch_args(&self, id: &str, args: &[String]) -> Launched {
        let env = self.env(id);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        launch_with_env(self.dir.path(), id, args, &env).await
    }

    /// Launches one node; it may run or exit.
    pub async fn launch(&self, id: &str, extra: &[String]) -> Launched {
        self.launch_args(id, &self.args_for(id, extra)).await
    }

    /// Launches nodes concurrently and adds them to the plane; all must start.
    pub async fn start_nodes(&mut self, specs: Vec<(String, Vec<String>)>) {
        let launches = specs.iter().map(|(id, extra)| self.launch(id, extra));
        let started = futures::future::join_all(launches).await;
        self.nodes
            .extend(started.into_iter().map(Launched::running));
    }

    /// Adds a running node.
    pub async fn add(&mut self, id: &str, extra: &[String]) -> usize {
        let node = self.launch(id, extra).await.running();
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Restarts node `index` (which must have exited) with its original arguments.
    pub async fn restart(&mut self, index: usize) {
        let (id, args) = (self.nodes[index].id.clone(), self.nodes[index].args.clone());
        self.nodes[index] = self.launch_args(&id, &args).await.running();
    }

    pub fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// States of the running nodes that answer, as (index, state).
    pub async fn states(&self) -> Vec<(usize, pb::GetStateResponse)> {
        let asks = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.is_running())
            .map(|(i, node)| async move { node.try_state().await.map(|s| (i, s)) });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The index of the one running node that is MASTER, if every answering node agrees on it.
    pub async fn agreed_master(&self) -> Option<usize> {
        let states = self.states().await;
        let masters: Vec<_> = states
            .iter()
            .filter(|(_, s)| s.state == pb::NodeState::Master as i32)
            .collect();
        let [(index, master)] = masters.as_slice() else {
            return None;
        };
        let agreed = states
            .iter()
            .all(|(_, s)| s.master_id == master.node_id && s.epoch == master.epoch);
        agreed.then_some(*index)
    }

    /// Waits until exactly one running node is MASTER and every answering node agrees on it;
    /// returns its index.
    pub async fn wait_for_master(&self, deadline: Duration) -> usize {
        eventually(deadline, "exactly one agreed master", || {
            self.agreed_master()
        })
        .await
    }

    /// Waits until a master other than `not` is agreed on; returns its index.
    pub async fn wait_for_new_master(&self, not: usize, deadline: Duration) -> usize {
        eventually(deadline, "a new agreed master", || async {
            self.agreed_master().await.filter(|index| *index != not)
        })
        .await
    }

    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.id.clone()).collect()
    }
}

/// A gRPC frame: compression flag (none), big-endian length, payload.
pub fn grpc_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Metadata that lets SetState / SetPriority act on a non-master.
pub fn allow_non_master<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        haplane::wire::ALLOW_NON_MASTER_METADATA,
        "true".parse().expect("ascii"),
    );
    request
}

/// A command-line tool the tests need: the project venv, `.tools/`, then `PATH`. Panics with
/// the set-up command to run when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let root = workspace_root();
    let local = [
        root.join(".venv/bin").join(name),
        root.join(".tools/node_modules/.bin").join(name),
        PathBuf::from("/usr/sbin").join(name),
    ];
    if let Some(found) = local.into_iter().find(|path| path.exists()) {
        return found;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| panic!("{name} is not installed: run scripts/setup-tools.sh"))
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
