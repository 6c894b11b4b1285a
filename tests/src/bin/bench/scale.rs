//! The `scale` suite: managed state under many concurrent writers and many entities, on one-node
//! planes (the master's write path alone; the `state` suite measures a standby beside it).
//!
//! - Acknowledged writes/s with 1, 8 and 64 concurrent writers, each over a fixed window, on the
//!   directory store and on S3 (moto), with the master's store requests per acknowledged write
//!   (the delta of `haplane_store_requests_total` over the window, so the polls' requests in it
//!   count too).
//! - Growth: the rate of each of `GROWTH_WINDOWS` successive windows while 64 writers take a new
//!   plane on the directory store from 0 to `GROWTH_WRITES` entities, and last / first.
//! - Store bytes per live byte: the bytes of the files under the store's `state/` (as the growth
//!   run ends and again at rest, once compaction's minimum age has passed; on S3, of the objects
//!   under the plane's `state/` as the throughput windows end) over the bytes written that are
//!   live (ids plus attributes; every write is a new entity).
//! - Hot-standby readiness: 64 writers write `STANDBY_ENTITIES` entities to a one-node plane,
//!   then a HOT_STANDBY node starts; the time from its start until a Get of the last acknowledged
//!   id succeeds on it with `lag_ms` under `READY_LAG_MS`.
//!
//! Every write is a Put of a new ~30-byte entity with its own id and idempotency key; a write
//! error panics with its message. Figures are printed, never asserted.

use super::{DEADLINE, channel, ms, requests_and_polls, row};
use haplane_tests::haplane::pb::{self, entity_service_client::EntityServiceClient};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent writers of the throughput windows.
const WRITERS: [usize; 3] = [1, 8, 64];
/// Concurrent writers of the growth and hot-standby runs.
const MANY_WRITERS: usize = 64;
/// HTTP/2 connections the writers of a load share.
const CONNECTIONS: usize = 4;
/// Length of each throughput window: (short, long).
const WINDOW: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(10));
/// Writes of the growth run: (short, long).
const GROWTH_WRITES: (u64, u64) = (20_000, 1_000_000);
/// Successive windows the growth run's rate is reported over (each `GROWTH_WRITES / this`).
const GROWTH_WINDOWS: u64 = 10;
/// Entities written before the hot standby starts: (short, long).
const STANDBY_ENTITIES: (u64, u64) = (20_000, 1_000_000);
/// A hot standby further behind than this is not ready.
const READY_LAG_MS: u64 = 1_000;
/// Past the default compaction minimum age (10 s) and the master's compaction period (5 s): the
/// store is "at rest" after this long without writes.
const AT_REST: Duration = Duration::from_secs(17);
/// How long the hot standby may take to be ready before the suite gives up.
const READY_DEADLINE: Duration = Duration::from_secs(600);

/// When a load stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// No new write starts after this long.
    Elapsed(Duration),
    /// After `writes` writes in all; the time is noted at every `writes / windows`-th
    /// acknowledgement.
    Total { writes: u64, windows: u64 },
}

/// What a load wrote.
#[derive(Debug)]
struct Written {
    writes: u64,
    elapsed: Duration,
    /// Bytes of the ids and attributes written (all live: every write is a new entity).
    live_bytes: u64,
    /// The id of the write with the highest seq.
    last_id: String,
    /// For `Until::Total`: when each window's last write was acknowledged, from the start.
    window_ends: Vec<Duration>,
}

/// `writers` tasks, each putting new entities `scale/<tag>/<n>` on the master at `uri` until
/// `until`; `n` counts the load's writes, so ids and idempotency keys are unique within a tag.
async fn write(uri: &str, writers: usize, tag: &str, until: Until) -> Written {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS.min(writers) {
        channels.push(channel(uri).await);
    }
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let window_ends = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks = (0..writers).map(|writer| {
        let mut client = EntityServiceClient::new(channels[writer % channels.len()].clone());
        let (next, acked, window_ends) = (next.clone(), acked.clone(), window_ends.clone());
        let tag = tag.to_owned();
        tokio::spawn(async move {
            let (mut live_bytes, mut last) = (0, (0, String::new()));
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                match until {
                    Until::Elapsed(duration) if started.elapsed() >= duration => break,
                    Until::Total { writes, .. } if n >= writes => break,
                    _ => {}
                }
                let id = format!("scale/{tag}/{n:08}");
                let attributes_json = format!(r#"{{"w":{writer},"n":{n},"x":"abcdefgh"}}"#);
                live_bytes += (id.len() + attributes_json.len()) as u64;
                let put = client
                    .put(pb::PutRequest {
                        id: id.clone(),
                        attributes_json,
                        expected_version: None,
                        idempotency_key: format!("{tag}-{n}"),
                    })
                    .await
                    .unwrap_or_else(|status| panic!("put {id}: {status}"))
                    .into_inner();
                if put.seq > last.0 {
                    last = (put.seq, id);
                }
                let done = acked.fetch_add(1, Ordering::Relaxed) + 1;
                if let Until::Total { writes, windows } = until
                    && done % (writes / windows) == 0
                {
                    let mut ends = window_ends.lock().expect("window ends");
                    ends.push((done, started.elapsed()));
                }
            }
            (live_bytes, last)
        })
    });
    let mut live_bytes = 0;
    let mut last = (0, String::new());
    for task in futures::future::join_all(tasks).await {
        // A writer's panic (a write error) is the load's, with its message.
        let (bytes, writer_last) =
            task.unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
        live_bytes += bytes;
        last = last.max(writer_last);
    }
    let elapsed = started.elapsed();
    let mut ends = std::mem::take(&mut *window_ends.lock().expect("window ends"));
    ends.sort();
    Written {
        writes: acked.load(Ordering::Relaxed),
        elapsed,
        live_bytes,
        last_id: last.1,
        window_ends: ends.into_iter().map(|(_, at)| at).collect(),
    }
}

/// Store requests the node has made so far (`haplane_store_requests_total`, all labels).
async fn store_requests(node: &haplane_tests::Node) -> f64 {
    requests_and_polls(node).await.0
}

/// Throughput windows with 1, 8 and 64 writers on a one-node plane; answers the live bytes
/// written.
async fn throughput(options: PlaneOptions, label: &str, window: Duration) -> u64 {
    let plane = Plane::start(1, options).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let node = &plane.nodes[master];
    let mut live_bytes = 0;
    for writers in WRITERS {
        let before = store_requests(node).await;
        let written = write(
            &node.grpc_uri(),
            writers,
            &format!("w{writers}"),
            Until::Elapsed(window),
        )
        .await;
        let requests = store_requests(node).await - before;
        live_bytes += written.live_bytes;
        row(
            &format!("scale ({label}): acknowledged writes/s, writers: {writers}"),
            format!(
                "{:.0} ({} in {})",
                written.writes as f64 / written.elapsed.as_secs_f64(),
                written.writes,
                ms(written.elapsed)
            ),
        );
        row(
            &format!("scale ({label}): store requests per write, writers: {writers}"),
            format!("{:.2}", requests / written.writes.max(1) as f64),
        );
    }
    live_bytes
}

/// Total length of the files under `dir`, recursively.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("directory entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                bytes_under(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Total size of the objects under `prefix` in moto's `bucket`: ListObjectsV2 page by page,
/// unsigned (moto does not check signatures), read from the XML's `<Size>` elements.
async fn s3_bytes_under(endpoint: &str, bucket: &str, prefix: &str) -> u64 {
    let http = reqwest::Client::new();
    let mut total = 0;
    let mut token = None;
    loop {
        let mut query = vec![("list-type", "2".to_owned()), ("prefix", prefix.to_owned())];
        query.extend(token.take().map(|token| ("continuation-token", token)));
        let body = http
            .get(format!("{endpoint}/{bucket}"))
            .query(&query)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("list objects")
            .text()
            .await
            .expect("list body");
        let element = |name: &str| {
            let open = format!("<{name}>");
            body.split(open.as_str())
                .skip(1)
                .filter_map(|rest| rest.split('<').next())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        total += element("Size")
            .iter()
            .map(|size| size.parse::<u64>().expect("object size"))
            .sum::<u64>();
        match element("NextContinuationToken").pop() {
            Some(next) => token = Some(next),
            None => return total,
        }
    }
}

/// 64 writers take a new one-node plane on the directory store from 0 to `writes` entities; the
/// rate of each window, last / first, then the store's bytes per live byte.
async fn growth(writes: u64) {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let written = write(
        &plane.nodes[master].grpc_uri(),
        MANY_WRITERS,
        "growth",
        Until::Total {
            writes,
            windows: GROWTH_WINDOWS,
        },
    )
    .await;
    let per_window = writes / GROWTH_WINDOWS;
    let mut rates = Vec::new();
    let mut start = Duration::ZERO;
    for (window, end) in written.window_ends.iter().enumerate() {
        let rate = per_window as f64 / (*end - start).as_secs_f64();
        rates.push(rate);
        let first = window as u64 * per_window;
        row(
            &format!(
                "scale (dir, {MANY_WRITERS} writers): writes/s, writes {first}..{}",
                first + per_window
            ),
            format!("{rate:.0}"),
        );
        start = *end;
    }
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        row(
            "scale (dir): growth, last window's rate / first's",
            format!("{:.2}", last / first),
        );
    }
    for moment in ["as the load ends", "at rest"] {
        if moment == "at rest" {
            tokio::time::sleep(AT_REST).await;
        }
        let stored = bytes_under(&plane.store_dir().join("state"));
        row(
            &format!("scale (dir): store bytes per live byte, {writes} entities, {moment}"),
            format!(
                "{:.1} ({stored} / {})",
                stored as f64 / written.live_bytes as f64,
                written.live_bytes
            ),
        );
    }
}

/// `entities` written by 64 writers to a one-node plane, then a HOT_STANDBY started: the time
/// from its start until it serves the last acknowledged id with `lag_ms` under `READY_LAG_MS`.
async fn standby_ready(entities: u64) {
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let written = write(
        &plane.nodes[master].grpc_uri(),
        MANY_WRITERS,
        "standby",
        Until::Total {
            writes: entities,
            windows: 1,
        },
    )
    .await;
    let started = Instant::now();
    let hot = plane
        .add("hot", &["--ha-mode".into(), "hot-standby".into()])
        .await;
    let reader = EntityServiceClient::new(channel(&plane.nodes[hot].grpc_uri()).await);
    let last_id = written.last_id;
    eventually(READY_DEADLINE, "the hot standby to be ready", || {
        let (mut reader, id) = (reader.clone(), last_id.clone());
        async move {
            let answer = reader.get(pb::GetRequest { id }).await.ok()?.into_inner();
            (answer.lag_ms < READY_LAG_MS).then_some(())
        }
    })
    .await;
    row(
        &format!("scale: new hot standby ready over {entities} entities"),
        ms(started.elapsed()),
    );
}

/// The short or the long profile's value.
fn pick<T>(long: bool, (short, long_value): (T, T)) -> T {
    if long { long_value } else { short }
}

pub(crate) async fn run(long: bool) {
    let window = pick(long, WINDOW);
    throughput(PlaneOptions::fast(), "dir", window).await;
    let moto = haplane_tests::moto::MotoServer::start().await;
    moto.create_bucket("scale").await;
    let live_bytes = throughput(
        PlaneOptions::fast().on_s3("s3://scale/plane", &moto.endpoint),
        "S3, moto",
        window,
    )
    .await;
    let stored = s3_bytes_under(&moto.endpoint, "scale", "plane/state/").await;
    row(
        "scale (S3, moto): store bytes per live byte",
        format!(
            "{:.1} ({stored} / {live_bytes})",
            stored as f64 / live_bytes as f64
        ),
    );
    growth(pick(long, GROWTH_WRITES)).await;
    standby_ready(pick(long, STANDBY_ENTITIES)).await;
}
