//! Fan-out of master changes: `count` watchers of one node, as gRPC `WatchMaster` streams or REST
//! Server-Sent Events (`/v1/server/ha/watch`), 100 streams per HTTP/2 connection. The watchers run
//! in a separate process (this binary, `fanout-watchers`, a lean client on the `h2` crate that
//! decodes every event whole) pinned to CPU 0 and the watched node is pinned to CPU 1, so
//! decoding is not charged to the node. Per master change (SetState on
//! alternating nodes): the time from the SetState call to the last watcher told and to each one,
//! by the wall clock both processes share; and the node's memory per watcher.

use crate::{DEADLINE, channel, cpu_time, ms, p50_p99, percentile, row, rss_bytes};
use bytes::Bytes;
use haplane_tests::haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane_tests::{Plane, PlaneOptions};
use prost::Message;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Streams per HTTP/2 connection from the watcher process.
const STREAMS_PER_CONNECTION: usize = 100;

/// Microseconds since the Unix epoch: comparable between the two processes on this machine.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// How the watchers watch.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Grpc,
    Sse,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Grpc => "grpc",
            Kind::Sse => "sse",
        }
    }

    /// The kind `name` names (`grpc` or `sse`), as the watcher process and `HAPLANE_FANOUT` take it.
    pub fn named(name: &str) -> Kind {
        [Kind::Grpc, Kind::Sse]
            .into_iter()
            .find(|kind| kind.name() == name)
            .unwrap_or_else(|| panic!("{name} is not grpc or sse"))
    }
}

/// The fan-out benchmark: `count` watchers of `kind` over `changes` master changes.
pub async fn run(kind: Kind, count: usize, changes: usize) {
    // The production timings: a node sends HTTP/2 keep-alive pings every poll period, and the
    // tests' 100 ms would make those pings (and their answers) ten times what a deployment sees.
    let mut options = PlaneOptions::defaults();
    options.extra_args = vec!["--max-watchers".into(), (count + 100).to_string()];
    // Started on CPU 1 alone, so each node sizes its serving threads for the one core it has;
    // then the node that is not watched moves to CPU 0.
    let plane = crate::unary::on_cpu(1, Plane::start(2, options)).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let watched = 1 - master;
    crate::unary::pin(plane.nodes[master].pid() as u32, 0);
    let idle = rss_bytes(plane.nodes[watched].pid());
    let mut watchers = tokio::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(std::env::current_exe().expect("own path"))
        .args([
            "fanout-watchers",
            kind.name(),
            &format!("http://{}", plane.nodes[watched].address),
            &count.to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the watcher process");
    let mut lines = BufReader::new(watchers.stdout.take().expect("stdout")).lines();
    let mut next_line = async || {
        tokio::time::timeout(DEADLINE * 3, lines.next_line())
            .await
            .expect("the watcher process answers")
            .expect("read")
            .expect("the watcher process ended")
    };
    assert_eq!(next_line().await, "ready", "watchers subscribed");
    let subscribed = rss_bytes(plane.nodes[watched].pid());
    let watcher_pid = watchers.id().expect("the watcher process runs");
    let node_cpu_before = cpu_time(plane.nodes[watched].pid() as u32);
    let watchers_cpu_before = cpu_time(watcher_pid);

    let (mut to_last, mut each_p50, mut each_p99) = (Vec::new(), Vec::new(), Vec::new());
    // The same, split by what the change does to the watched node: promoting it sends one event;
    // demoting it sends two, "no master" as it steps down and then the new master.
    let (mut promoting, mut demoting) = (Vec::new(), Vec::new());
    let mut promote_to = watched;
    let mut epoch = 0;
    for _ in 0..changes {
        let mut ha = HaServiceClient::new(channel(&plane.nodes[promote_to].grpc_uri()).await);
        let request = haplane_tests::allow_non_master(pb::SetStateRequest {
            mode: pb::HaMode::Master as i32,
        });
        let changed_at = wall_us();
        ha.set_state(request).await.expect("promote");
        // "told EPOCH P50 P99 LAST": every watcher has been told of EPOCH.
        loop {
            let line = next_line().await;
            let fields: Vec<u64> = line
                .strip_prefix("told ")
                .expect("a told line")
                .split(' ')
                .map(|field| field.parse().expect("a number"))
                .collect();
            if fields[0] <= epoch {
                continue;
            }
            epoch = fields[0];
            let since = |at: u64| Duration::from_micros(at.saturating_sub(changed_at));
            each_p50.push(since(fields[1]));
            each_p99.push(since(fields[2]));
            to_last.push(since(fields[3]));
            if promote_to == watched {
                promoting.push(since(fields[3]));
            } else {
                demoting.push(since(fields[3]));
            }
            break;
        }
        promote_to = 1 - promote_to;
    }
    let node_cpu = cpu_time(plane.nodes[watched].pid() as u32) - node_cpu_before;
    let watchers_cpu = cpu_time(watcher_pid) - watchers_cpu_before;
    let _ = watchers.kill().await;
    let what = format!(
        "fan-out, {count} {} watchers",
        match kind {
            Kind::Grpc => "WatchMaster",
            Kind::Sse => "SSE",
        }
    );
    row(
        &format!("{what}: master change to last told, p50 / p99 ({changes} changes)"),
        p50_p99(&mut to_last),
    );
    row(
        &format!("{what}: to last told, changes promoting / demoting the watched node, p50 / p99"),
        format!("{}, {}", p50_p99(&mut promoting), p50_p99(&mut demoting)),
    );
    row(
        &format!("{what}: to each told, median of per-change p50 / p99 of per-change p99"),
        format!(
            "{} / {}",
            ms(percentile(&mut each_p50, 50.0)),
            ms(percentile(&mut each_p99, 99.0))
        ),
    );
    // Where the time goes: the watched node's CPU (the fan-out itself, plus its share of the
    // election) against the watcher process's (decoding), per change.
    row(
        &format!("{what}: CPU per change, watched node / watcher process"),
        format!(
            "{} / {}",
            ms(node_cpu / changes as u32),
            ms(watchers_cpu / changes as u32)
        ),
    );
    row(
        &format!("{what}: node memory per watcher"),
        format!(
            "{:.2} KiB",
            subscribed.saturating_sub(idle) as f64 / count as f64 / 1024.0
        ),
    );
}

/// Arrival times by epoch, shared by the watcher tasks of the one-threaded watcher process (a
/// lock never contended, cheaper than a channel to a collecting task that each arrival wakes).
struct Tally {
    count: usize,
    by_epoch: std::collections::HashMap<u64, Vec<u64>>,
}

impl Tally {
    /// Records a watcher told of `epoch` at `at`; once all have been, prints the `told` line.
    fn told(&mut self, epoch: u64, at: u64) {
        let told = self.by_epoch.entry(epoch).or_default();
        told.push(at);
        if told.len() == self.count {
            told.sort_unstable();
            let at = |p: usize| told[(told.len() - 1) * p / 100];
            println!("told {epoch} {} {} {}", at(50), at(99), at(100));
        }
    }
}

/// The view fields an SSE watcher reads (the whole JSON view is parsed, the others skipped).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SseView {
    epoch: u64,
    master_id: String,
}

/// One HTTP/2 connection of the watcher process to `uri` (`http://HOST:PORT`), on the `h2` crate
/// directly: a lean subscriber, so that the watchers' own cost (on the other core) is mostly
/// decoding, not a client stack's layers.
async fn connect(uri: &str) -> h2::client::SendRequest<Bytes> {
    let address = uri.strip_prefix("http://").expect("a plain http:// URI");
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the node");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            panic!("watcher connection failed: {err}");
        }
    });
    send
}

/// Opens one stream on `connection`: `request`, then `body` if it is not empty.
async fn open(
    connection: &h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: Bytes,
) -> h2::RecvStream {
    let mut ready = connection.clone().ready().await.expect("a stream slot");
    let (response, mut send) = ready
        .send_request(request, body.is_empty())
        .expect("send the request");
    if !body.is_empty() {
        send.send_data(body, true).expect("send the request body");
    }
    let response = response.await.expect("a response");
    assert_eq!(response.status(), http::StatusCode::OK, "watch opened");
    response.into_body()
}

/// The next chunk of `body`, its flow-control capacity given back; `None` at its end.
async fn next_chunk(body: &mut h2::RecvStream) -> Option<Bytes> {
    let chunk = body.data().await?.expect("a chunk");
    let _ = body.flow_control().release_capacity(chunk.len());
    Some(chunk)
}

/// The first whole event in `unread` (a gRPC frame, or SSE text up to its blank line) and what
/// follows it; `None` until one has arrived whole.
fn next_event(unread: &[u8], grpc: bool) -> Option<(&[u8], &[u8])> {
    let end = if grpc {
        let prefix = unread.get(1..5)?;
        5 + u32::from_be_bytes(prefix.try_into().expect("4")) as usize
    } else {
        memchr::memmem::find(unread, b"\n\n")? + 2
    };
    (unread.len() >= end).then(|| unread.split_at(end))
}

/// A whole event decoded: a gRPC frame into a `MasterEvent`, an SSE event's `data:` line as the
/// JSON view. The epoch if it names a master (`Some(None)` if not); `None` for an SSE comment.
fn decode(event: &[u8], grpc: bool) -> Option<Option<u64>> {
    let (epoch, master_id) = if grpc {
        let event = pb::MasterEvent::decode(&event[5..]).expect("a MasterEvent");
        (event.epoch, event.master_id)
    } else {
        let data = event
            .split(|byte| *byte == b'\n')
            .find_map(|line| line.strip_prefix(b"data:"))?;
        let view: SseView = serde_json::from_slice(data).expect("a JSON view");
        (view.epoch, view.master_id)
    };
    Some((!master_id.is_empty()).then_some(epoch))
}

/// The watcher process: `count` watchers of the node at `uri`. Prints `ready` once each has its
/// first view, then for every epoch all of them have been told of, `told EPOCH P50 P99 LAST`
/// (wall-clock microseconds of the arrivals). Every event is decoded whole: a gRPC one into a
/// `MasterEvent`, an SSE one's JSON into the fields it carries.
pub async fn watchers(args: &[String]) {
    let [kind, uri, count] = args else {
        panic!("usage: fanout-watchers grpc|sse URI COUNT");
    };
    let count: usize = count.parse().expect("COUNT");
    let tally = std::sync::Arc::new(std::sync::Mutex::new(Tally {
        count,
        by_epoch: Default::default(),
    }));
    let told = move |epoch: u64| {
        let at = wall_us();
        tally.lock().expect("a tally").told(epoch, at);
    };
    let (ready, mut ready_count) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut connections = Vec::new();
    for _ in 0..count.div_ceil(STREAMS_PER_CONNECTION) {
        connections.push(connect(uri).await);
    }
    let grpc = matches!(Kind::named(kind), Kind::Grpc);
    // The one WatchMasterRequest every gRPC watcher sends.
    let watch_request = Bytes::from(haplane_tests::grpc_frame(
        &pb::WatchMasterRequest { min_epoch: None }.encode_to_vec(),
    ));
    for i in 0..count {
        let connection = connections[i % connections.len()].clone();
        let (told, ready) = (told.clone(), ready.clone());
        let (request, body) = if grpc {
            let request = http::Request::post(format!("{uri}/haplane.v1.HaService/WatchMaster"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("a request");
            (request, watch_request.clone())
        } else {
            let request = http::Request::get(format!("{uri}/v1/server/ha/watch"))
                .body(())
                .expect("a request");
            (request, Bytes::new())
        };
        tokio::spawn(async move {
            let mut body = open(&connection, request, body).await;
            // The part of an event that arrived without its end, if any.
            let mut pending = bytes::BytesMut::new();
            let mut first = true;
            while let Some(chunk) = next_chunk(&mut body).await {
                // Events are read in place from the chunk, copied only when one spans two.
                let joined;
                let mut unread: &[u8] = if pending.is_empty() {
                    &chunk
                } else {
                    pending.extend_from_slice(&chunk);
                    joined = pending.split().freeze();
                    &joined
                };
                while let Some((event, rest)) = next_event(unread, grpc) {
                    unread = rest;
                    // `None` for a keep-alive comment.
                    let Some(told_of) = decode(event, grpc) else {
                        continue;
                    };
                    if first {
                        first = false;
                        let _ = ready.send(());
                    } else if let Some(epoch) = told_of {
                        told(epoch);
                    }
                }
                pending.extend_from_slice(unread);
            }
            panic!("watcher {i}: stream ended");
        });
    }
    drop(ready);
    for _ in 0..count {
        ready_count.recv().await.expect("every watcher subscribes");
    }
    println!("ready");
    std::future::pending::<()>().await;
}
