//! Real network partitions (the lab of `haplane_tests::netns`): moto and three nodes, each in a
//! network namespace of its own, on an S3 store. The tests cut a master off from the store, a
//! master off from its standbys, a standby off from the store, make the master's store link
//! one-way, delay and drop a master's packets near the store-call time limit, and promote a
//! standby while the master's link is slow, while the test asks every node for its state every
//! 20 ms. Every answer is checked: a node must not answer MASTER for an epoch to a request sent
//! after another node's MASTER answer for a higher epoch came back, no epoch may have two
//! masters, and no node's epoch may go back.

use haplane_tests::haplane::pb::{self, NodeState, ha_service_client::HaServiceClient};
use haplane_tests::history::{self, History, Sample};
use haplane_tests::netns::{Lab, LabMoto};
use haplane_tests::{Node, allow_non_master, eventually, haplane_binary, moto};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const POLL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(2);
/// Store calls of a node holding a lease are bounded by (timeout − margin) / 2, the margin being
/// min(2 s, timeout / 4): 750 ms here.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(750);
const DEADLINE: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const STORE: &str = "s3";

/// One lab at a time, whatever `--test-threads` says: the timings assume the machine is not
/// running three planes at once.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lab for `test`, or `None` after saying loudly why the test cannot run here.
fn lab_or_skip(test: &str) -> Option<Lab> {
    // Built before entering the lab: the client namespace reaches nothing but the lab.
    haplane_binary();
    match Lab::new(&[STORE, NODES[0], NODES[1], NODES[2]]) {
        Ok(lab) => Some(lab),
        Err(why) => {
            println!("SKIPPED: {test}: network namespaces are unavailable because {why}");
            None
        }
    }
}

/// moto and three nodes in the lab.
struct Cluster {
    nodes: Vec<Node>,
    _moto: LabMoto,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(lab: &Lab) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = lab.host(STORE);
        let moto = lab.start_moto(store).await;
        let response = reqwest::Client::new()
            .put(format!("{}/plane", moto.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {response:?}"
        );
        let env = moto::aws_env();
        let launches = NODES.iter().map(|id| {
            let host = lab.host(id);
            let args: Vec<String> = [
                "--node-id",
                id,
                "--bind",
                &format!("{}:0", host.address),
                "--poll-period",
                &format!("{}ms", POLL.as_millis()),
                "--heartbeat-timeout",
                &format!("{}ms", TIMEOUT.as_millis()),
                "--pid-file",
                &format!("{id}.pid"),
                "--persistence-location",
                "s3://plane/lab",
                "--s3-endpoint",
                &moto.endpoint,
            ]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
            let (env, workdir) = (&env, dir.path());
            async move { lab.launch(host, workdir, id, &args, env).await.running() }
        });
        let nodes = futures::future::join_all(launches).await;
        Cluster {
            nodes,
            _moto: moto,
            _dir: dir,
        }
    }

    /// Waits until exactly one of the nodes at `among` is MASTER and all of them name it at the
    /// same epoch; returns its index and epoch.
    async fn wait_for_master(&self, among: &[usize], what: &str) -> (usize, u64) {
        eventually(DEADLINE, what, || async {
            let asks = among
                .iter()
                .map(|&i| async move { self.nodes[i].try_state().await.map(|state| (i, state)) });
            let states: Option<Vec<_>> =
                futures::future::join_all(asks).await.into_iter().collect();
            let states = states?;
            let masters: Vec<_> = states
                .iter()
                .filter(|(_, s)| s.state == NodeState::Master as i32)
                .collect();
            let [(index, master)] = masters.as_slice() else {
                return None;
            };
            states
                .iter()
                .all(|(_, s)| s.master_id == master.node_id && s.epoch == master.epoch)
                .then_some((*index, master.epoch))
        })
        .await
    }

    fn id(&self, index: usize) -> &str {
        &self.nodes[index].id
    }

    /// The last `lines` lines of each node's log.
    fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = node.log_text();
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("--- {} log (last {lines} lines) ---\n{tail}\n", node.id)
            })
            .collect()
    }
}

/// Asks every node for its state every `SAMPLE_EVERY` on one connection per node and records
/// each answer as a `history::Sample`. Unlike `haplane_tests::sampler`, it does not wait for an
/// answer before the next request (at most 64 outstanding per node), so a node whose packets are
/// delayed is still asked every 20 ms.
struct Sampler {
    clock: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sampler {
    fn start(nodes: &[Node]) -> Sampler {
        let clock = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = nodes
            .iter()
            .map(|node| {
                let channel = tonic::transport::Endpoint::from_shared(node.grpc_uri())
                    .expect("uri")
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(3))
                    .connect_lazy();
                let client = HaServiceClient::new(channel);
                let (id, samples) = (node.id.clone(), samples.clone());
                tokio::spawn(async move {
                    let outstanding = Arc::new(tokio::sync::Semaphore::new(64));
                    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    for round in 1.. {
                        ticks.tick().await;
                        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                            continue;
                        };
                        let (mut client, id, samples) =
                            (client.clone(), id.clone(), samples.clone());
                        tokio::spawn(async move {
                            let sent = clock.elapsed();
                            let answer = client.get_state(pb::GetStateRequest {}).await;
                            let received = clock.elapsed();
                            drop(permit);
                            if let Ok(answer) = answer {
                                let answer = answer.into_inner();
                                samples.lock().expect("samples").push(Sample {
                                    round,
                                    sent,
                                    received,
                                    node: id,
                                    generation: 0,
                                    epoch: answer.epoch,
                                    state: answer.state(),
                                    master_id: answer.master_id,
                                });
                            }
                        });
                    }
                })
            })
            .collect();
        Sampler {
            clock,
            samples,
            tasks,
        }
    }

    /// The answers so far.
    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    fn stop(self) -> Vec<Sample> {
        for task in &self.tasks {
            task.abort();
        }
        self.samples()
    }
}

/// Each node's answers in the order their requests were sent, as runs of one (state, epoch,
/// master) with the first and last request's sending time: what the plane looked like from the
/// client.
fn timeline(samples: &[Sample], cluster: &Cluster) -> String {
    let mut text = String::new();
    for node in &cluster.nodes {
        let mut mine: Vec<&Sample> = samples.iter().filter(|s| s.node == node.id).collect();
        mine.sort_by_key(|s| s.sent);
        text.push_str(&format!("{}:", node.id));
        let mut runs: Vec<(&Sample, &Sample, usize)> = Vec::new();
        for sample in mine {
            match runs.last_mut() {
                Some((first, last, count))
                    if (first.state, first.epoch, &first.master_id)
                        == (sample.state, sample.epoch, &sample.master_id) =>
                {
                    *last = sample;
                    *count += 1;
                }
                _ => runs.push((sample, sample, 1)),
            }
        }
        for (first, last, count) in runs {
            text.push_str(&format!(
                " [{}..{} ms {:?} e{} master={} x{count}]",
                first.sent.as_millis(),
                last.sent.as_millis(),
                first.state,
                first.epoch,
                first.master_id,
            ));
        }
        text.push('\n');
    }
    text
}

/// Runs `history::check`'s timed rule over every answer (a node must not answer MASTER for an
/// older epoch to a request sent after another node's MASTER answer for a newer epoch arrived;
/// no epoch has two masters; a node's epochs never go back); fails the test
/// with the findings, the timeline and the node logs.
fn assert_one_master_at_a_time(samples: Vec<Sample>, cluster: &Cluster) {
    let masters = samples
        .iter()
        .filter(|s| s.state == NodeState::Master)
        .count();
    assert!(masters > 0, "no answer said MASTER: nothing was checked");
    println!(
        "{} answers checked, {masters} of them MASTER",
        samples.len()
    );
    println!("{}", timeline(&samples, cluster));
    let history = History {
        samples,
        ..History::default()
    };
    let verdict = history::check(&history, &[]);
    let details = history::details(&history, &verdict);
    assert!(
        verdict.passed(),
        "{} overlaps (longest {:?}), {} same-epoch masters, {} epoch regressions:\n{}\n{}",
        verdict.overlaps.len(),
        verdict.longest_overlap(),
        verdict.same_epoch.len(),
        verdict.regressions.len(),
        details[..details.len().min(20)].join("\n"),
        cluster.log_tails(60),
    );
}

#[test]
fn a_master_cut_off_from_the_store_is_replaced_and_never_overlaps() {
    let _serial = serial();
    let Some(lab) = lab_or_skip("a_master_cut_off_from_the_store_is_replaced_and_never_overlaps")
    else {
        return;
    };
    lab.run(|| async {
        let cluster = Cluster::start(&lab).await;
        let (old, first_epoch) = cluster.wait_for_master(&[0, 1, 2], "a first master").await;
        let sampler = Sampler::start(&cluster.nodes);
        let t0 = sampler.clock;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let (master, store) = (lab.host(cluster.id(old)), lab.host(STORE));
        let cut = Instant::now();
        lab.partition(master, store);
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let (new, epoch) = cluster
            .wait_for_master(&others, "a new master among the nodes that reach the store")
            .await;
        let failover = cut.elapsed();
        assert!(epoch > first_epoch, "the new master has a newer epoch");
        // The old master sits cut off for another timeout, then comes back.
        tokio::time::sleep(TIMEOUT).await;
        lab.heal(master, store);
        let healed = Instant::now();
        let new_id = cluster.id(new).to_owned();
        let rejoined = eventually(DEADLINE, "the old master to rejoin as a standby", || {
            let node = &cluster.nodes[old];
            let new_id = new_id.clone();
            async move {
                node.try_state().await.filter(|s| {
                    let standing_by = [
                        NodeState::Standby,
                        NodeState::HotStandby,
                        NodeState::HotBackup,
                    ]
                    .contains(&s.state());
                    standing_by && s.master_id == new_id && s.epoch >= epoch
                })
            }
        })
        .await;
        let rejoin = healed.elapsed();
        let (settled, _) = cluster
            .wait_for_master(&[0, 1, 2], "every node to agree on one master")
            .await;
        assert_ne!(settled, old, "the old master does not take over again");
        let samples = sampler.stop();
        println!(
            "old master {} (epoch {first_epoch}) cut off from the store at {} ms; {} master at \
             epoch {epoch} after {failover:?}; healed at {} ms, {} rejoined as {:?} after \
             {rejoin:?}",
            cluster.id(old),
            cut.duration_since(t0).as_millis(),
            new_id,
            healed.duration_since(t0).as_millis(),
            cluster.id(old),
            rejoined.state(),
        );
        assert_one_master_at_a_time(samples, &cluster);
    });
}

#[test]
fn a_master_cut_off_from_its_standbys_but_not_the_store_stays_the_only_master() {
    let _serial = serial();
    let Some(lab) =
        lab_or_skip("a_master_cut_off_from_its_standbys_but_not_the_store_stays_the_only_master")
    else {
        return;
    };
    lab.run(|| async {
        let cluster = Cluster::start(&lab).await;
        let (master, epoch) = cluster.wait_for_master(&[0, 1, 2], "a first master").await;
        let sampler = Sampler::start(&cluster.nodes);
        let t0 = sampler.clock;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let master_host = lab.host(cluster.id(master));
        let standbys: Vec<usize> = (0..3).filter(|&i| i != master).collect();
        let cut = Instant::now();
        for &standby in &standbys {
            lab.partition(master_host, lab.host(cluster.id(standby)));
        }
        // Three timeouts: long enough for any failover to start and finish.
        tokio::time::sleep(TIMEOUT * 3).await;
        let during = sampler.samples();
        let still = cluster
            .wait_for_master(&[0, 1, 2], "the master, still agreed on while cut off")
            .await;
        for &standby in &standbys {
            lab.heal(master_host, lab.host(cluster.id(standby)));
        }
        let healed = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = cluster
            .wait_for_master(&[0, 1, 2], "one master after healing")
            .await;
        let samples = sampler.stop();
        println!(
            "master {} (epoch {epoch}) cut off from its standbys at {} ms, healed at {} ms",
            cluster.id(master),
            cut.duration_since(t0).as_millis(),
            healed.duration_since(t0).as_millis(),
        );
        assert_one_master_at_a_time(samples, &cluster);
        // No failover was needed, so none happened: every answer while cut off names the same
        // master at the same epoch, and only it answered MASTER.
        let master_id = cluster.id(master);
        let strays: Vec<&Sample> = during
            .iter()
            .filter(|s| s.received > cut.duration_since(t0))
            .filter(|s| {
                s.master_id != master_id
                    || s.epoch != epoch
                    || (s.state == NodeState::Master) != (s.node == master_id)
            })
            .collect();
        assert!(
            strays.is_empty(),
            "while cut off from its standbys, {master_id} should have stayed the one master at \
             epoch {epoch}; {} answers said otherwise, the first: {:?}\n{}",
            strays.len(),
            strays.first(),
            cluster.log_tails(40),
        );
        assert_eq!(still, (master, epoch), "the master while cut off");
        assert_eq!(after, (master, epoch), "the master after healing");
    });
}

#[test]
fn one_way_links_and_delay_near_the_operation_timeout_never_give_two_masters() {
    let _serial = serial();
    let Some(lab) =
        lab_or_skip("one_way_links_and_delay_near_the_operation_timeout_never_give_two_masters")
    else {
        return;
    };
    lab.run(|| async {
        let cluster = Cluster::start(&lab).await;
        let (old, first_epoch) = cluster.wait_for_master(&[0, 1, 2], "a first master").await;
        let sampler = Sampler::start(&cluster.nodes);
        let t0 = sampler.clock;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let store = lab.host(STORE);

        // One way: what the master sends reaches the store, what the store sends back is lost.
        // A request in flight at the cut lands unanswered; moto closes every connection after
        // one answer, so later requests never get past the handshake.
        let master = lab.host(cluster.id(old));
        let cut = Instant::now();
        lab.cut(store, master);
        let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
        let (new, epoch) = cluster
            .wait_for_master(
                &others,
                "a new master while the old one cannot hear the store",
            )
            .await;
        let failover = cut.elapsed();
        assert!(epoch > first_epoch, "the new master has a newer epoch");
        lab.heal(store, master);
        let (current, current_epoch) = cluster
            .wait_for_master(&[0, 1, 2], "one master once the link works both ways")
            .await;

        // Every packet the master sends waits most of a store call's time limit, and 2 % are
        // lost: its store calls run close to (and with a retransmission past) the limit.
        let delay = OPERATION_TIMEOUT * 4 / 5;
        let slow = lab.host(cluster.id(current));
        let delayed = Instant::now();
        lab.impair(slow, delay, 0.02);
        tokio::time::sleep(TIMEOUT * 5).await;
        lab.clear_impairment(slow);
        let cleared = Instant::now();
        let (last, last_epoch) = cluster
            .wait_for_master(&[0, 1, 2], "one master once the delay is gone")
            .await;
        let samples = sampler.stop();
        println!(
            "{} (epoch {first_epoch}) could not hear the store from {} ms; {} master at epoch \
             {epoch} after {failover:?}; {} (epoch {current_epoch}) delayed by {delay:?} with 2 % \
             loss from {} to {} ms; then {} master at epoch {last_epoch}",
            cluster.id(old),
            cut.duration_since(t0).as_millis(),
            cluster.id(new),
            cluster.id(current),
            delayed.duration_since(t0).as_millis(),
            cleared.duration_since(t0).as_millis(),
            cluster.id(last),
        );
        assert_one_master_at_a_time(samples, &cluster);
    });
}

#[test]
fn a_standby_cut_off_from_the_store_does_not_depose_a_live_master() {
    let _serial = serial();
    let Some(lab) = lab_or_skip("a_standby_cut_off_from_the_store_does_not_depose_a_live_master")
    else {
        return;
    };
    lab.run(|| async {
        let cluster = Cluster::start(&lab).await;
        let (master, epoch) = cluster.wait_for_master(&[0, 1, 2], "a first master").await;
        let sampler = Sampler::start(&cluster.nodes);
        let t0 = sampler.clock;
        tokio::time::sleep(Duration::from_secs(1)).await;

        // The standby's reads of the master's record fail for two timeouts: failed reads are
        // no evidence of silence, so when the link comes back it finds the master alive.
        let standby = (master + 1) % 3;
        let (standby_host, store) = (lab.host(cluster.id(standby)), lab.host(STORE));
        let cut = Instant::now();
        lab.partition(standby_host, store);
        tokio::time::sleep(TIMEOUT * 2).await;
        lab.heal(standby_host, store);
        let healed = Instant::now();
        tokio::time::sleep(TIMEOUT).await;
        let after = cluster
            .wait_for_master(&[0, 1, 2], "one master after healing")
            .await;
        let samples = sampler.stop();
        println!(
            "standby {} cut off from the store at {} ms, healed at {} ms; master {} (epoch \
             {epoch}) before, {} (epoch {}) after",
            cluster.id(standby),
            cut.duration_since(t0).as_millis(),
            healed.duration_since(t0).as_millis(),
            cluster.id(master),
            cluster.id(after.0),
            after.1,
        );
        assert_one_master_at_a_time(samples, &cluster);
        assert_eq!(
            after,
            (master, epoch),
            "the master stayed live throughout: no failover\n{}",
            cluster.log_tails(40)
        );
    });
}

/// An operator promotes a standby while every packet the master sends waits 300 ms: the master
/// still holds its lease, but each of its polls takes two round trips of its slow link. The
/// promoted node must not act before the old master has stopped.
#[test]
fn promoting_a_standby_while_the_masters_link_is_slow_never_overlaps() {
    let _serial = serial();
    let Some(lab) =
        lab_or_skip("promoting_a_standby_while_the_masters_link_is_slow_never_overlaps")
    else {
        return;
    };
    lab.run(|| async {
        let cluster = Cluster::start(&lab).await;
        let (old, first_epoch) = cluster.wait_for_master(&[0, 1, 2], "a first master").await;
        let sampler = Sampler::start(&cluster.nodes);
        let t0 = sampler.clock;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let slow = lab.host(cluster.id(old));
        let delay = Duration::from_millis(300);
        lab.impair(slow, delay, 0.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let target = (old + 1) % 3;
        let promoted = Instant::now();
        cluster.nodes[target]
            .client()
            .await
            .set_state(allow_non_master(pb::SetStateRequest {
                mode: pb::HaMode::Master as i32,
            }))
            .await
            .expect("promote");
        let new = eventually(DEADLINE, "the promoted node to act as master", || async {
            let state = cluster.nodes[target].try_state().await?;
            (state.state == NodeState::Master as i32).then_some(state)
        })
        .await;
        let took = promoted.elapsed();
        assert!(new.epoch > first_epoch, "{new:?}");
        // Keep sampling through the old master's slow polls after the hand-over.
        tokio::time::sleep(TIMEOUT * 2).await;
        lab.clear_impairment(slow);
        let (last, last_epoch) = cluster
            .wait_for_master(&[0, 1, 2], "one master once the delay is gone")
            .await;
        let samples = sampler.stop();
        println!(
            "{} (epoch {first_epoch}) delayed by {delay:?}; {} promoted at {} ms, master at \
             epoch {} after {took:?}; then {} master at epoch {last_epoch}",
            cluster.id(old),
            cluster.id(target),
            promoted.duration_since(t0).as_millis(),
            new.epoch,
            cluster.id(last),
        );
        assert_one_master_at_a_time(samples, &cluster);
    });
}

/// The lab's own sanity: what `impair` holds back arrives late, what it loses never arrives, and
/// a cut stops the answers until it is healed.
#[test]
fn the_lab_delays_and_cuts_what_it_is_told_to() {
    let _serial = serial();
    let Some(lab) = lab_or_skip("the_lab_delays_and_cuts_what_it_is_told_to") else {
        return;
    };
    lab.run(|| async {
        let store = lab.host(STORE);
        let moto = lab.start_moto(store).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let ask = || async {
            let start = Instant::now();
            client
                .get(&moto.endpoint)
                .send()
                .await
                .map(|_| start.elapsed())
        };
        let quick = ask().await.expect("moto answers");
        lab.impair(lab.client(), Duration::from_millis(300), 0.0);
        let slow = ask().await.expect("moto answers through the delay");
        lab.clear_impairment(lab.client());
        // The request waits 300 ms on its way out.
        assert!(
            slow >= Duration::from_millis(300),
            "{quick:?} then {slow:?}"
        );
        lab.impair(lab.client(), Duration::ZERO, 1.0);
        assert!(ask().await.is_err(), "every packet is lost");
        lab.clear_impairment(lab.client());
        lab.cut(store, lab.client());
        assert!(ask().await.is_err(), "the answers are cut off");
        lab.heal(lab.client(), store);
        ask().await.expect("moto answers once healed");
        println!("GET took {quick:?}, then {slow:?} with 300 ms delay");
    });
}
