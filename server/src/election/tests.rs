//! Unit tests of the pure election core: time is a plain `Instant` moved by hand.

use super::*;
use haplane::NodeRecord;

const TIMEOUT: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_secs(1);

fn id(text: &str) -> NodeId {
    NodeId::parse(text).unwrap()
}

fn config(name: &str) -> ElectionConfig {
    ElectionConfig {
        node_id: id(name),
        node_uri: format!("http://{name}"),
        version: "1.0".to_owned(),
        heartbeat_timeout: TIMEOUT,
        safety_margin: MARGIN,
        startup_grace: 2 * POLL,
        started_at_ms: 0,
        pid: 1,
        hostname: "h".to_owned(),
    }
}

fn node(name: &str, mode: HaMode, priority: i64, now: Instant) -> Election {
    Election::new(config(name), mode, priority, now)
}

/// A record as a peer would write it.
fn record(name: &str, status: NodeState, heartbeat: u64, epoch_seen: Epoch) -> NodeRecord {
    NodeRecord {
        node_id: id(name),
        node_uri: format!("http://{name}"),
        status,
        priority: 0,
        heartbeat,
        version: "1.0".to_owned(),
        epoch_seen,
        local_timestamp_ms: 0,
        started_at_ms: 0,
        pid: 2,
        hostname: "h".to_owned(),
        electable: true,
        state_seq: 0,
    }
}

fn claim(epoch: Epoch, name: &str) -> MasterClaim {
    MasterClaim {
        epoch,
        node_id: id(name),
        node_uri: format!("http://{name}"),
        claimed_at: 0,
        reason: "test".to_owned(),
    }
}

/// A successful read of `record` that began and ended at `at`.
fn see(election: &mut Election, record: NodeRecord, at: Instant) {
    election.observe_record(record, at, at);
}

/// Writes our record successfully at `now`.
fn heartbeat(election: &mut Election, now: Instant) {
    election.next_record(0, now);
    election.own_write_finished(now, now, true);
}

/// Makes `election` master of `epoch` at `now`.
fn make_master(election: &mut Election, epoch: Epoch, now: Instant) {
    heartbeat(election, now);
    election.claim_won(claim(epoch, election.config().node_id.as_str()), true, now);
    assert_eq!(election.state(), NodeState::Master);
}

#[test]
fn a_lone_auto_node_claims_after_the_startup_grace_and_a_good_write() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    assert_eq!(a.decide(t0 + 3 * POLL), Decision::Wait, "no write yet");
    heartbeat(&mut a, t0);
    assert_eq!(a.decide(t0 + POLL), Decision::Wait, "still in grace");
    assert_eq!(a.state(), NodeState::HotStandby);
    assert!(matches!(
        a.decide(t0 + 2 * POLL),
        Decision::Claim { epoch: 1, .. }
    ));
}

#[test]
fn only_the_best_candidate_claims_an_empty_plane() {
    let t0 = Instant::now();
    let now = t0 + 3 * POLL;
    let mut a = node("a", HaMode::Auto, 0, t0);
    let mut b = node("b", HaMode::Auto, 5, t0);
    heartbeat(&mut a, now);
    heartbeat(&mut b, now);
    let mut b_record = record("b", NodeState::HotStandby, 1, 0);
    b_record.priority = 5;
    see(&mut a, b_record, now);
    see(&mut b, record("a", NodeState::HotStandby, 1, 0), now);
    assert_eq!(a.decide(now), Decision::Wait);
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 1, .. }));
}

#[test]
fn equal_priority_goes_to_the_lowest_id() {
    let t0 = Instant::now();
    let now = t0 + 3 * POLL;
    let mut b = node("b", HaMode::Auto, 0, t0);
    heartbeat(&mut b, now);
    see(&mut b, record("a", NodeState::HotStandby, 1, 0), now);
    assert_eq!(b.decide(now), Decision::Wait);
}

#[test]
fn a_live_master_is_followed_and_a_silent_one_is_replaced_after_the_timeout() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "a"));
    see(&mut b, record("a", NodeState::Master, 10, 3), t0);
    see(&mut b, record("a", NodeState::Master, 11, 3), t0 + POLL);
    let mut now = t0 + POLL;
    while now < t0 + POLL + TIMEOUT {
        heartbeat(&mut b, now);
        see(&mut b, record("a", NodeState::Master, 11, 3), now);
        assert_eq!(b.decide(now), Decision::Wait, "at {:?}", now - t0);
        assert_eq!(b.active_master(now).map(|c| c.epoch), Some(3));
        now += POLL / 2;
    }
    heartbeat(&mut b, now);
    see(&mut b, record("a", NodeState::Master, 11, 3), now);
    assert!(b.active_master(now).is_none());
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 4, .. }));
}

#[test]
fn a_released_claim_is_replaced_without_waiting_for_the_timeout() {
    let t0 = Instant::now();
    let now = t0 + 3 * POLL;
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "a"));
    see(&mut b, record("a", NodeState::Master, 10, 3), t0);
    heartbeat(&mut b, now);
    assert_eq!(b.decide(now), Decision::Wait);
    see(&mut b, record("a", NodeState::Terminated, 11, 3), now);
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 4, .. }));
}

#[test]
fn a_claim_whose_holder_has_not_yet_published_it_is_treated_as_active() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    see(&mut b, record("a", NodeState::HotStandby, 1, 0), t0);
    b.observe_claim(claim(1, "a"));
    heartbeat(&mut b, t0 + 3 * POLL);
    assert_eq!(b.decide(t0 + 3 * POLL), Decision::Wait);
}

#[test]
fn a_master_that_cannot_write_fences_itself_before_observers_time_out() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    let lease_end = t0 + TIMEOUT - MARGIN;
    assert!(a.may_act_as_master(lease_end - Duration::from_millis(1)));
    assert!(!a.may_act_as_master(lease_end));
    a.decide(lease_end);
    assert_eq!(a.state(), NodeState::Failed);
    assert!(!a.record_snapshot(0, lease_end).electable);
    // The store comes back: the node re-joins as a follower and may stand again.
    let later = lease_end + POLL;
    heartbeat(&mut a, later);
    assert!(matches!(a.decide(later), Decision::Claim { epoch: 2, .. }));
}

#[test]
fn a_write_that_began_after_the_lease_lapsed_does_not_revive_a_paused_master() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    let resumed = t0 + TIMEOUT * 3;
    a.next_record(0, resumed);
    a.own_write_finished(resumed, resumed, true);
    assert_eq!(a.state(), NodeState::Failed);
    assert!(!a.may_act_as_master(resumed));
}

#[test]
fn a_master_steps_down_when_a_newer_claim_appears() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    a.observe_claim(claim(2, "b"));
    assert_eq!(a.state(), NodeState::HotStandby);
    assert_eq!(a.epoch(), 2);
    assert!(!a.may_act_as_master(t0 + POLL));
}

#[test]
fn older_claims_never_move_the_epoch_back() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    a.observe_claim(claim(5, "b"));
    a.observe_claim(claim(4, "c"));
    assert_eq!(a.claim().map(|c| c.node_id.as_str()), Some("b"));
}

#[test]
fn a_demoted_master_sits_out_the_next_election_unless_alone() {
    let t0 = Instant::now();
    let now = t0 + 3 * POLL;
    let mut a = node("a", HaMode::Auto, 10, t0);
    make_master(&mut a, 1, now);
    see(&mut a, record("b", NodeState::HotStandby, 1, 1), now);
    assert_eq!(
        a.set_mode(HaMode::HotStandby, now),
        Ok(ModeChange::SteppedDown)
    );
    let published = a.record_snapshot(0, now);
    assert_eq!(published.status, NodeState::HotStandby);
    assert!(!published.electable);
    assert_eq!(a.decide(now), Decision::Wait, "b should win");
    // Once b holds epoch 2, a stands again.
    a.observe_claim(claim(2, "b"));
    assert!(a.record_snapshot(0, now).electable);
    // A demoted master with no one else left stands anyway.
    let later = now + TIMEOUT * 2;
    let mut lone = node("z", HaMode::Auto, 0, t0);
    make_master(&mut lone, 1, later);
    lone.set_mode(HaMode::HotStandby, later).unwrap();
    assert!(matches!(
        lone.decide(later),
        Decision::Claim { epoch: 2, .. }
    ));
}

#[test]
fn promotion_claims_the_next_epoch_even_with_a_live_master() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(7, "a"));
    see(&mut b, record("a", NodeState::Master, 1, 7), t0);
    heartbeat(&mut b, t0);
    assert_eq!(
        b.set_mode(HaMode::Master, t0),
        Ok(ModeChange::Claim { epoch: 8 })
    );
}

#[test]
fn hot_backup_and_disabled_never_claim() {
    let t0 = Instant::now();
    let now = t0 + TIMEOUT;
    let mut backup = node("a", HaMode::HotBackup, 100, t0);
    heartbeat(&mut backup, now);
    assert_eq!(backup.decide(now), Decision::Wait);
    assert_eq!(backup.state(), NodeState::HotBackup);
    assert!(!backup.record_snapshot(0, now).electable);
    let mut d = node("d", HaMode::Auto, 0, t0);
    heartbeat(&mut d, now);
    d.set_mode(HaMode::Disabled, now).unwrap();
    assert_eq!(d.decide(now), Decision::Wait);
    assert_eq!(d.state(), NodeState::Failed);
    d.set_mode(HaMode::Auto, now).unwrap();
    assert!(matches!(d.decide(now), Decision::Claim { .. }));
}

#[test]
fn hot_backup_candidates_are_ignored_by_others() {
    let t0 = Instant::now();
    let now = t0 + 3 * POLL;
    let mut b = node("b", HaMode::Auto, 0, t0);
    heartbeat(&mut b, now);
    let mut backup = record("a", NodeState::HotBackup, 1, 0);
    backup.electable = false;
    backup.priority = 100;
    see(&mut b, backup, now);
    assert!(matches!(b.decide(now), Decision::Claim { .. }));
}

#[test]
fn standalone_nodes_are_masters_that_refuse_to_join() {
    let t0 = Instant::now();
    let mut n = node("a", HaMode::Disabled, 0, t0);
    assert_eq!(n.state(), NodeState::Master);
    assert!(n.may_act_as_master(t0 + TIMEOUT * 100));
    assert!(n.set_mode(HaMode::Auto, t0).is_err());
    assert_eq!(n.set_mode(HaMode::Disabled, t0), Ok(ModeChange::Done));
}

#[test]
fn startup_verdicts_follow_the_modes() {
    let t0 = Instant::now();
    // No claim at all.
    assert_eq!(
        node("m", HaMode::Master, 0, t0).startup_verdict(t0),
        StartupVerdict::Proceed
    );
    assert!(matches!(
        node("s", HaMode::Standby, 0, t0).startup_verdict(t0),
        StartupVerdict::Refuse(_)
    ));
    assert_eq!(
        node("b", HaMode::HotBackup, 0, t0).startup_verdict(t0),
        StartupVerdict::Proceed
    );

    // A claim whose holder we have seen once: wait; seen changing: live.
    let mut m = node("m", HaMode::Master, 0, t0);
    let mut s = node("s", HaMode::HotStandby, 0, t0);
    for n in [&mut m, &mut s] {
        n.observe_claim(claim(1, "a"));
        see(n, record("a", NodeState::Master, 5, 1), t0);
        assert_eq!(n.startup_verdict(t0), StartupVerdict::Wait);
    }
    let mut stale_m = m.clone();
    for n in [&mut m, &mut s] {
        see(n, record("a", NodeState::Master, 6, 1), t0 + POLL);
    }
    assert!(matches!(
        m.startup_verdict(t0 + POLL),
        StartupVerdict::Refuse(StartupRefusal::LiveMaster { .. })
    ));
    assert_eq!(s.startup_verdict(t0 + POLL), StartupVerdict::Proceed);
    // Never changing for a timeout (a read begun a timeout after the first still finds the same
    // heartbeat): the crashed master does not block a MASTER start.
    see(
        &mut stale_m,
        record("a", NodeState::Master, 5, 1),
        t0 + TIMEOUT,
    );
    assert_eq!(
        stale_m.startup_verdict(t0 + TIMEOUT),
        StartupVerdict::Proceed
    );
    assert!(matches!(
        stale_m.startup_claim(),
        Decision::Claim { epoch: 2, .. }
    ));
    // A terminated holder is not live.
    see(&mut stale_m, record("a", NodeState::Terminated, 7, 1), t0);
    assert_eq!(stale_m.startup_verdict(t0), StartupVerdict::Proceed);
}

#[test]
fn removable_records_respect_status_and_age() {
    let t0 = Instant::now();
    let retention = Duration::from_secs(3600);
    let mut a = node("a", HaMode::Auto, 0, t0);
    see(&mut a, record("gone", NodeState::Terminated, 1, 0), t0);
    see(&mut a, record("broken", NodeState::Failed, 1, 0), t0);
    see(&mut a, record("dead", NodeState::HotStandby, 1, 0), t0);
    see(&mut a, record("alive", NodeState::HotStandby, 1, 0), t0);
    let now = t0 + TIMEOUT;
    see(&mut a, record("alive", NodeState::HotStandby, 2, 0), now);
    let names = |ids: Vec<NodeId>| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(names(a.removable(Duration::ZERO, retention, now)), ["gone"]);
    let much_later = t0 + retention;
    assert_eq!(
        names(a.removable(Duration::ZERO, retention, much_later)),
        ["broken", "dead", "gone"],
        "alive changed {TIMEOUT:?} later, so it is not yet past the retention"
    );
    assert_eq!(
        names(a.removable(retention * 2, retention * 2, much_later)),
        Vec::<String>::new()
    );
}

#[test]
fn listing_reports_stale_peers_as_not_live() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    see(&mut a, record("b", NodeState::Master, 1, 1), t0);
    let rows = a.summaries(0, t0 + TIMEOUT);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].record.node_id.as_str(), "a");
    assert!(rows[0].live);
    assert_eq!(rows[1].record.status, NodeState::Master);
    assert!(!rows[1].live);
    assert_eq!(rows[1].last_seen_age, TIMEOUT);
}

// ----- exclusion windows (docs/behaviour.md §9): each test fails on the code before its fix ----

/// Renews `election`'s lease the way a poll does: our record written at `now`, then a read of
/// the next claim, begun just after, finds none.
fn renew(election: &mut Election, now: Instant) {
    heartbeat(election, now);
    let read = now + Duration::from_millis(1);
    election.no_newer_claim(read, read);
}

#[test]
fn a_heartbeat_that_completes_after_the_lease_lapsed_does_not_renew_it() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    let lease_end = t0 + TIMEOUT - MARGIN;
    // A slow write: begun inside the lease, finished after it.
    let started = lease_end - Duration::from_millis(100);
    a.next_record(0, started);
    a.own_write_finished(started, lease_end + Duration::from_secs(1), true);
    let read = lease_end + Duration::from_secs(1);
    a.no_newer_claim(read, read);
    assert!(
        !a.may_act_as_master(lease_end),
        "a late write must not extend the lease"
    );
    assert_eq!(a.state(), NodeState::Failed);
}

#[test]
fn a_heartbeat_renews_only_after_a_later_read_finds_no_newer_claim() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    let lease_end = t0 + TIMEOUT - MARGIN;
    let write = t0 + POLL;
    heartbeat(&mut a, write);
    assert!(
        !a.may_act_as_master(lease_end),
        "no renewal before the claim read"
    );
    // A read that began before the write proves nothing about claims made after the write began.
    a.no_newer_claim(write - Duration::from_millis(1), write);
    assert!(!a.may_act_as_master(lease_end));
    a.no_newer_claim(
        write + Duration::from_millis(1),
        write + Duration::from_millis(2),
    );
    assert!(a.may_act_as_master(lease_end));
    assert!(!a.may_act_as_master(write + TIMEOUT - MARGIN));
}

#[test]
fn failed_reads_of_the_master_are_not_silence() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "a"));
    see(&mut b, record("a", NodeState::Master, 10, 3), t0);
    // Every later read of a's record fails: b learns nothing, however long it waits.
    let mut now = t0;
    while now < t0 + TIMEOUT * 5 {
        now += POLL;
        heartbeat(&mut b, now);
        assert_eq!(b.decide(now), Decision::Wait, "at {:?}", now - t0);
        assert!(b.active_master(now).is_some());
    }
    // A successful read begun a timeout after the first sighting proves the silence.
    see(&mut b, record("a", NodeState::Master, 10, 3), now);
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 4, .. }));
}

#[test]
fn a_read_begun_before_the_timeout_does_not_prove_silence() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "a"));
    see(&mut b, record("a", NodeState::Master, 10, 3), t0);
    let now = t0 + TIMEOUT * 2;
    heartbeat(&mut b, now);
    // A slow read: it began before the timeout was up and returned only now.
    b.observe_record(
        record("a", NodeState::Master, 10, 3),
        t0 + TIMEOUT - Duration::from_millis(1),
        now,
    );
    assert_eq!(b.decide(now), Decision::Wait);
}

#[test]
fn a_claimant_without_a_record_counts_as_acting_until_reads_prove_it_absent() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "a"));
    let mut now = t0 + TIMEOUT * 3;
    heartbeat(&mut b, now);
    assert_eq!(b.decide(now), Decision::Wait, "never read: may be acting");
    b.observe_absent(&id("a"), now, now);
    assert_eq!(b.decide(now), Decision::Wait, "absent once");
    now += TIMEOUT;
    heartbeat(&mut b, now);
    b.observe_absent(&id("a"), now, now);
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 4, .. }));
}

#[test]
fn a_master_seen_only_in_its_record_blocks_claims_and_raises_the_next_epoch() {
    // A store rolled back to an older copy: the highest claim left is 3, but a live node's
    // record says it is master of epoch 5.
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(3, "c"));
    see(&mut b, record("c", NodeState::Terminated, 9, 3), t0);
    see(&mut b, record("a", NodeState::Master, 40, 5), t0);
    let now = t0 + 3 * POLL;
    heartbeat(&mut b, now);
    see(&mut b, record("a", NodeState::Master, 41, 5), now);
    assert_eq!(b.decide(now), Decision::Wait, "a may be acting");
    assert_eq!(
        b.active_master(now)
            .map(|m| (m.epoch, m.node_id.to_string())),
        Some((5, "a".to_owned()))
    );
    // a steps down: the next claim must be above every epoch a record has seen.
    see(&mut b, record("a", NodeState::Failed, 42, 5), now);
    assert!(matches!(b.decide(now), Decision::Claim { epoch: 6, .. }));
    heartbeat(&mut b, now);
    assert_eq!(
        b.set_mode(HaMode::Master, now),
        Ok(ModeChange::Claim { epoch: 6 })
    );
}

#[test]
fn a_master_that_learns_of_a_newer_claim_stops_acting_at_once() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 1, t0);
    renew(&mut a, t0 + POLL);
    a.observe_claim(claim(2, "b"));
    assert!(!a.may_act_as_master(t0 + POLL));
    // A write and claim read after that cannot bring the lease back.
    renew(&mut a, t0 + 2 * POLL);
    assert!(!a.may_act_as_master(t0 + 2 * POLL));
}

#[test]
fn a_promoted_node_that_could_not_reach_the_master_acts_only_after_a_timeout() {
    let t0 = Instant::now();
    let mut b = node("b", HaMode::Auto, 0, t0);
    b.observe_claim(claim(1, "a"));
    see(&mut b, record("a", NodeState::Master, 10, 1), t0);
    heartbeat(&mut b, t0);
    assert_eq!(
        b.set_mode(HaMode::Master, t0),
        Ok(ModeChange::Claim { epoch: 2 })
    );
    b.claim_won(claim(2, "b"), false, t0);
    assert_eq!(b.state(), NodeState::Master);
    assert!(!b.may_act_as_master(t0 + TIMEOUT - Duration::from_millis(1)));
    // Its own lease is kept up meanwhile, and it acts once the old master's must be over.
    let mut now = t0;
    while now < t0 + TIMEOUT {
        now += POLL;
        renew(&mut b, now);
        assert_eq!(b.decide(now), Decision::Wait);
        assert_eq!(b.state(), NodeState::Master, "at {:?}", now - t0);
    }
    assert!(b.may_act_as_master(now));
}

#[test]
fn a_master_asked_to_step_down_stops_acting_and_sits_out_its_epoch() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 10, t0);
    make_master(&mut a, 4, t0);
    assert!(!a.step_down_for(3, t0), "the asker is behind: decline");
    assert!(a.may_act_as_master(t0));
    assert!(a.step_down_for(4, t0));
    assert!(!a.may_act_as_master(t0));
    let published = a.record_snapshot(0, t0);
    assert_eq!(published.status, NodeState::HotStandby);
    assert!(!published.electable, "it must not win the epoch back");
}

#[test]
fn a_node_that_found_its_store_replaced_stops_and_stays_out() {
    let t0 = Instant::now();
    let mut a = node("a", HaMode::Auto, 0, t0);
    make_master(&mut a, 2, t0);
    a.store_replaced("plane id changed".to_owned(), t0 + POLL);
    assert!(!a.may_act_as_master(t0 + POLL));
    assert_eq!(a.state(), NodeState::Failed);
    let later = t0 + TIMEOUT * 3;
    heartbeat(&mut a, later);
    assert_eq!(a.decide(later), Decision::Wait);
    assert_eq!(a.state(), NodeState::Failed);
    assert!(!a.record_snapshot(0, later).electable);
    assert!(a.set_mode(HaMode::Master, later).is_err());
}
