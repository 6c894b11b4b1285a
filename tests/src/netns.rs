//! A network lab for partition tests: every host (a haplane node, moto, the test's own client)
//! gets a network namespace of its own, joined to the others by a veth pair on one Linux bridge
//! that lives in a "switch" namespace of its own. Hosts have addresses in 10.77.N.0/24 on those
//! links only and no default route, and the switch has no uplink: lab traffic cannot leave the
//! lab, and nothing here touches the root namespace's interfaces.
//!
//! Faults, all made inside the lab's namespaces:
//! - `cut(from, to)`: packets from one host to another are dropped as they reach `to` (iptables
//!   INPUT rule in `to`'s namespace), so the sender sees them vanish in flight; `partition` cuts
//!   both ways and `heal` undoes either.
//! - `impair(host, delay, loss)`: every packet `host` sends out of its link is held for `delay`
//!   and lost with probability `loss`. The kernel of the project's machines has neither the
//!   `netem` qdisc nor tc's drop action, so an iptables NFQUEUE rule hands the packets to a thread
//!   of the test process that gives the verdicts (accept after the delay, or drop) over netlink.
//!
//! The test process itself stays in the root namespace: `Lab::run` runs the test's async body on
//! a runtime whose threads are all in the lab's `client` namespace, so every socket the test
//! opens is a lab socket; `launch` and `spawn` start processes from a thread that entered the
//! target host's namespace. Names are `hplab<pid>-<seq>-<host>`; `Drop` deletes every namespace
//! (and so every link) the lab made, and `cleanup_leftovers` removes those of killed runs.

use crate::{Launched, eventually, launch_with_env, tool, workspace_root};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every lab namespace starts with this, then the owning process id.
const PREFIX: &str = "hplab";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Each host's end of its veth pair.
const LINK: &str = "eth0";
/// The host that `Lab::run` puts the test's own traffic in.
const CLIENT: &str = "client";
/// moto's port on its host.
const MOTO_PORT: u16 = 5000;

/// One host of the lab: a namespace with one link and one address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
}

/// Namespaces, links and faults of one lab; torn down on drop.
#[derive(Debug)]
pub struct Lab {
    hosts: Vec<Host>,
    /// Namespaces created so far, in order (the switch first).
    namespaces: Vec<String>,
    /// Directed cuts in force, as (from, to) host names.
    cuts: Mutex<BTreeSet<(String, String)>>,
    /// Impaired hosts and the thread that delays their packets.
    impairments: Mutex<HashMap<String, Delayer>>,
}

impl Lab {
    /// A lab with one host per name plus the `client` host. Fails, saying why, when network
    /// namespaces cannot be made here (not root, no `ip`); whatever was made is removed.
    pub fn new(names: &[&str]) -> Result<Lab, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        cleanup_leftovers();
        let pid = std::process::id();
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{pid}-{seq}-");
        // Labs never share a link, so the third octet only tells runs apart in logs.
        let subnet = ((pid + seq) % 256) as u8;
        let mut lab = Lab {
            hosts: Vec::new(),
            namespaces: Vec::new(),
            cuts: Mutex::new(BTreeSet::new()),
            impairments: Mutex::new(HashMap::new()),
        };
        let switch = format!("{prefix}switch");
        ip(&["netns", "add", &switch])?;
        lab.namespaces.push(switch.clone());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (index, name) in names.iter().copied().chain([CLIENT]).enumerate() {
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "host names are letters and digits: {name:?}"
            );
            let namespace = format!("{prefix}{name}");
            let address = Ipv4Addr::new(10, 77, subnet, 2 + index as u8);
            let port = format!("port{index}");
            ip(&["netns", "add", &namespace])?;
            lab.namespaces.push(namespace.clone());
            // Both ends are created straight in their namespaces: none appears in the root one.
            ip(&[
                "link", "add", LINK, "netns", &namespace, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                LINK,
            ])?;
            ip(&["-n", &namespace, "link", "set", LINK, "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
            lab.hosts.push(Host {
                name: name.to_owned(),
                namespace,
                address,
            });
        }
        Ok(lab)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// The host the test's own traffic comes from (never cut off).
    pub fn client(&self) -> &Host {
        self.host(CLIENT)
    }

    /// Runs the test body on a new multi-threaded runtime whose threads are all in the client's
    /// namespace, so every connection the test makes is a lab connection. A panic in the body
    /// is raised again here.
    pub fn run<F, Fut>(&self, body: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        let namespace = self.client().namespace.as_str();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                enter(namespace).unwrap_or_else(|err| panic!("enter {namespace}: {err}"));
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("lab runtime")
                    .block_on(body())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `crate::launch_with_env` with the node started inside `host`'s namespace (bind it to
    /// `host.address`). Call it from the runtime of `Lab::run`.
    pub async fn launch(
        &self,
        host: &Host,
        workdir: &Path,
        id: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Launched {
        let handle = tokio::runtime::Handle::current();
        let (workdir, id, args, env) = (
            workdir.to_path_buf(),
            id.to_owned(),
            args.to_vec(),
            env.to_vec(),
        );
        on_thread_in(&host.namespace, move || {
            handle.block_on(async move {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                launch_with_env(&workdir, &id, &args, &env).await
            })
        })
        .await
    }

    /// Spawns `command` inside `host`'s namespace, on the current runtime.
    pub async fn spawn(
        &self,
        host: &Host,
        mut command: tokio::process::Command,
    ) -> io::Result<tokio::process::Child> {
        let handle = tokio::runtime::Handle::current();
        on_thread_in(&host.namespace, move || {
            let _runtime = handle.enter();
            command.spawn()
        })
        .await
    }

    /// moto (behind scripts/moto_serial.py, as `crate::moto::MotoServer` runs it) listening on
    /// `host`'s address; waits until it answers. Call it from the runtime of `Lab::run`.
    pub async fn start_moto(&self, host: &Host) -> LabMoto {
        self.assert_inside();
        let root = workspace_root();
        assert!(
            root.join(".venv/bin/moto_server").exists(),
            "moto is not installed: run scripts/setup-s3.sh"
        );
        let mut command = tokio::process::Command::new(root.join(".venv/bin/python"));
        command
            .arg(root.join("scripts/moto_serial.py"))
            .args([
                "-H",
                &host.address.to_string(),
                "-p",
                &MOTO_PORT.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = self.spawn(host, command).await.expect("start moto");
        let endpoint = format!("http://{}:{MOTO_PORT}", host.address);
        eventually(Duration::from_secs(60), "moto to answer", || async {
            reqwest::get(&endpoint).await.ok().map(|_| ())
        })
        .await;
        LabMoto {
            endpoint,
            _child: child,
        }
    }

    /// Panics unless the calling thread is in one of the lab's namespaces: the guard for code
    /// that sends to lab addresses (from the root namespace they would follow its default
    /// route out of the machine).
    fn assert_inside(&self) {
        let current = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| inode(&m))
            .expect("this thread's network namespace");
        let inside = self.hosts.iter().any(|host| {
            let file = Path::new(NETNS_DIR).join(&host.namespace);
            std::fs::metadata(file).is_ok_and(|m| inode(&m) == current)
        });
        assert!(
            inside,
            "lab traffic must be sent from inside the lab: use Lab::run"
        );
    }

    /// Packets from `from` to `to` are lost from now on: dropped as they reach `to`, so `from`
    /// sees them vanish in flight. One direction of a partition.
    pub fn cut(&self, from: &Host, to: &Host) {
        let mut cuts = self.cuts.lock().expect("cuts");
        if cuts.insert((from.name.clone(), to.name.clone())) {
            iptables(
                to,
                &["-A", "INPUT", "-s", &from.address.to_string(), "-j", "DROP"],
            );
        }
    }

    /// `a` and `b` cannot reach each other (both directions cut).
    pub fn partition(&self, a: &Host, b: &Host) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Undoes the cuts between `a` and `b`, in whichever directions they were made.
    pub fn heal(&self, a: &Host, b: &Host) {
        let mut cuts = self.cuts.lock().expect("cuts");
        for (from, to) in [(a, b), (b, a)] {
            if cuts.remove(&(from.name.clone(), to.name.clone())) {
                iptables(
                    to,
                    &["-D", "INPUT", "-s", &from.address.to_string(), "-j", "DROP"],
                );
            }
        }
    }

    /// From now on every packet `host` sends on its link waits `delay` and is lost with
    /// probability `loss` (what `tc qdisc add dev eth0 root netem delay D loss L` would do).
    pub fn impair(&self, host: &Host, delay: Duration, loss: f64) {
        let mut impairments = self.impairments.lock().expect("impairments");
        assert!(
            !impairments.contains_key(&host.name),
            "{} is already impaired",
            host.name
        );
        let delayer = Delayer::start(&host.namespace, delay, loss)
            .unwrap_or_else(|err| panic!("bind the packet queue in {}: {err}", host.name));
        iptables(host, &queue_rule("-A"));
        impairments.insert(host.name.clone(), delayer);
    }

    /// Ends `impair` on `host`; held packets are released at once.
    pub fn clear_impairment(&self, host: &Host) {
        let delayer = self
            .impairments
            .lock()
            .expect("impairments")
            .remove(&host.name)
            .unwrap_or_else(|| panic!("{} is not impaired", host.name));
        iptables(host, &queue_rule("-D"));
        if let Err(err) = delayer.stop() {
            panic!("the packet queue of {} failed: {err}", host.name);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let impairments = std::mem::take(self.impairments.get_mut().expect("impairments"));
        for (name, delayer) in impairments {
            if let Err(err) = delayer.stop() {
                eprintln!("lab: the packet queue of {name} failed: {err}");
            }
        }
        // Hosts first: deleting a host's namespace deletes its veth pair, then the bridge goes.
        for namespace in self.namespaces.iter().rev() {
            remove_namespace(namespace);
        }
    }
}

/// moto running in the lab; stopped on drop.
#[derive(Debug)]
pub struct LabMoto {
    pub endpoint: String,
    _child: tokio::process::Child,
}

/// Removes the namespaces (and the processes in them) of labs whose process has exited, such as
/// a test run that was killed.
pub fn cleanup_leftovers() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let own = std::process::id();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = owner(name) else {
            continue;
        };
        if pid != own && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// The process id in a lab namespace's name `hplab<pid>-<seq>-<host>`.
fn owner(namespace: &str) -> Option<u32> {
    let mut parts = namespace.strip_prefix(PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    parts.next().filter(|host| !host.is_empty())?;
    Some(pid)
}

/// Kills what still runs in `namespace` (processes a lab started) and deletes it.
fn remove_namespace(namespace: &str) {
    if let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    {
        for pid in String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) of a process of this lab, named by its id.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Err(err) = ip(&["netns", "del", namespace]) {
        eprintln!("lab: {err}");
    }
}

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

/// Runs iptables inside `host`'s namespace; panics on failure.
fn iptables(host: &Host, args: &[&str]) {
    let iptables = tool("iptables");
    let what = format!("iptables {} (in {})", args.join(" "), host.name);
    run(
        Command::new("ip")
            .args(["netns", "exec", &host.namespace])
            .arg(iptables)
            .arg("-w")
            .args(args),
        &what,
    )
    .unwrap_or_else(|err| panic!("{err}"));
}

/// The rule that hands every packet leaving the host's link to the delay thread.
fn queue_rule(action: &str) -> [&str; 11] {
    [
        "-t",
        "mangle",
        action,
        "POSTROUTING",
        "-o",
        LINK,
        "-j",
        "NFQUEUE",
        "--queue-num",
        "0",
        "--queue-bypass",
    ]
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("{what}: cannot run it: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn inode(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

/// Moves the calling thread into `namespace`; what it opens or starts afterwards lives there.
fn enter(namespace: &str) -> io::Result<()> {
    let file = std::fs::File::open(Path::new(NETNS_DIR).join(namespace))?;
    // SAFETY: setns(2) on a descriptor we own; it changes only this thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `work` on a new thread inside `namespace` and returns its result.
async fn on_thread_in<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let namespace = namespace.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        enter(&namespace).unwrap_or_else(|err| panic!("enter {namespace}: {err}"));
        let _ = sender.send(work());
    });
    receiver
        .await
        .expect("the namespace thread panicked (its message is above)")
}

/// The thread that gives the verdicts for one impaired host's packet queue.
#[derive(Debug)]
struct Delayer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<()>>,
}

impl Delayer {
    /// Binds queue 0 in `namespace` (returns once it is bound, or why it could not be).
    fn start(namespace: &str, delay: Duration, loss: f64) -> io::Result<Delayer> {
        let namespace = namespace.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let queue = match enter(&namespace).and_then(|()| PacketQueue::bind(0)) {
                Ok(queue) => {
                    let _ = ready.send(Ok(()));
                    queue
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return Ok(());
                }
            };
            queue.serve(delay, loss, &stopped)
        });
        bound.recv().map_err(io::Error::other)??;
        Ok(Delayer { stop, thread })
    }

    fn stop(self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

// nfnetlink_queue (linux/netfilter/nfnetlink_queue.h): messages are a netlink header, a
// `nfgenmsg` (family, version, queue number big-endian) and attributes.
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NETLINK_HEADER: usize = 16;

/// A netlink socket bound to one nfnetlink queue of the thread's namespace.
struct PacketQueue {
    socket: OwnedFd,
    number: u16,
}

impl PacketQueue {
    fn bind(number: u16) -> io::Result<PacketQueue> {
        // SAFETY: socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid (kernel-assigned port id).
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind(2) with a sockaddr_nl of the size we pass.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let queue = PacketQueue { socket, number };
        let acked = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        queue.send(
            NFQNL_MSG_CONFIG,
            acked,
            NFQA_CFG_CMD,
            &[NFQNL_CFG_CMD_BIND, 0, 0, 0],
        )?;
        queue.wait_for_ack()?;
        // Copy the metadata only: the verdict needs the packet id, not the packet.
        let mut params = 0u32.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_META);
        queue.send(NFQNL_MSG_CONFIG, acked, NFQA_CFG_PARAMS, &params)?;
        queue.wait_for_ack()?;
        Ok(queue)
    }

    /// Sends one message with one attribute.
    fn send(&self, kind: u16, flags: u16, attribute: u16, payload: &[u8]) -> io::Result<()> {
        let attribute_length = 4 + payload.len();
        let length = NETLINK_HEADER + 4 + align(attribute_length);
        let mut message = Vec::with_capacity(length);
        message.extend_from_slice(&(length as u32).to_ne_bytes());
        message.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&[0; 8]); // sequence number and port id
        message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
        message.extend_from_slice(&self.number.to_be_bytes());
        message.extend_from_slice(&(attribute_length as u16).to_ne_bytes());
        message.extend_from_slice(&attribute.to_ne_bytes());
        message.extend_from_slice(payload);
        message.resize(length, 0);
        // SAFETY: send(2) of a buffer we own, with its length.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn verdict(&self, id: u32, verdict: u32) -> io::Result<()> {
        let mut payload = verdict.to_be_bytes().to_vec();
        payload.extend_from_slice(&id.to_be_bytes());
        self.send(
            NFQNL_MSG_VERDICT,
            libc::NLM_F_REQUEST as u16,
            NFQA_VERDICT_HDR,
            &payload,
        )
    }

    /// Waits up to `timeout` for data; true if some can be read.
    fn readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_micros().div_ceil(1000).min(1000) as i32;
        // SAFETY: poll(2) on one pollfd we own.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => match io::Error::last_os_error() {
                err if err.kind() == io::ErrorKind::Interrupted => Ok(false),
                err => Err(err),
            },
        }
    }

    /// Reads one batch of messages into `buffer`; returns the length read (0: nothing, or the
    /// kernel dropped messages because we fell behind, which only loses those packets).
    fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv(2) into a buffer we own, with its length.
        let read = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if read >= 0 {
            return Ok(read as usize);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS) => Ok(0),
            _ => Err(err),
        }
    }

    fn wait_for_ack(&self) -> io::Result<()> {
        let mut buffer = vec![0u8; 8192];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.readable(Duration::from_millis(100))? {
                continue;
            }
            let read = self.receive(&mut buffer)?;
            for (kind, body) in messages(&buffer[..read]) {
                if kind == libc::NLMSG_ERROR as u16 {
                    return match error_code(body) {
                        0 => Ok(()),
                        code => Err(io::Error::from_raw_os_error(-code)),
                    };
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer to the queue configuration",
        ))
    }

    /// Accepts each queued packet `delay` after it arrived (or drops it, with probability
    /// `loss`), in arrival order, until `stop`; then releases what it still holds.
    fn serve(&self, delay: Duration, loss: f64, stop: &AtomicBool) -> io::Result<()> {
        let mut held: VecDeque<(Instant, u32, u32)> = VecDeque::new();
        let mut buffer = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(&(due, id, verdict)) = held.front() {
                if due > now {
                    break;
                }
                self.verdict(id, verdict)?;
                held.pop_front();
            }
            let wait = held.front().map_or(Duration::from_millis(20), |(due, ..)| {
                due.saturating_duration_since(now)
            });
            if !self.readable(wait.min(Duration::from_millis(20)))? {
                continue;
            }
            let read = self.receive(&mut buffer)?;
            let arrived = Instant::now();
            for (kind, body) in messages(&buffer[..read]) {
                if kind == libc::NLMSG_ERROR as u16 && error_code(body) != 0 {
                    return Err(io::Error::from_raw_os_error(-error_code(body)));
                }
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                    continue;
                }
                if let Some(id) = packet_id(body) {
                    let verdict = if rand::random::<f64>() < loss {
                        NF_DROP
                    } else {
                        NF_ACCEPT
                    };
                    held.push_back((arrived + delay, id, verdict));
                }
            }
        }
        for (_, id, verdict) in held {
            self.verdict(id, verdict)?;
        }
        Ok(())
    }
}

fn align(length: usize) -> usize {
    length.div_ceil(4) * 4
}

/// The (type, body after the netlink header) of each message in `buffer`.
fn messages(buffer: &[u8]) -> Vec<(u16, &[u8])> {
    let mut found = Vec::new();
    let mut offset = 0;
    while offset + NETLINK_HEADER <= buffer.len() {
        let word = |at: usize| u32::from_ne_bytes(buffer[at..at + 4].try_into().expect("4 bytes"));
        let length = word(offset) as usize;
        let kind = u16::from_ne_bytes([buffer[offset + 4], buffer[offset + 5]]);
        if length < NETLINK_HEADER || offset + length > buffer.len() {
            break;
        }
        found.push((kind, &buffer[offset + NETLINK_HEADER..offset + length]));
        offset += align(length);
    }
    found
}

/// The (negative errno, or 0 for an acknowledgement) of an NLMSG_ERROR body.
fn error_code(body: &[u8]) -> i32 {
    body.get(..4).map_or(-libc::EIO, |code| {
        i32::from_ne_bytes(code.try_into().expect("4 bytes"))
    })
}

/// The packet id in a queued-packet message body (after its `nfgenmsg`).
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut attributes = body.get(4..)?;
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && length >= 8 {
            return Some(u32::from_be_bytes(
                attributes[4..8].try_into().expect("4 bytes"),
            ));
        }
        attributes = attributes.get(align(length)..).unwrap_or_default();
    }
    None
}
