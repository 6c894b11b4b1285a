//! Store outage end to end: with the store unreachable (the test-only fault wrapper, switched on
//! for every node), the master stops acting as master, nobody claims a new epoch, and the plane
//! recovers to exactly one master by itself when the store returns.

use haplane_tests::haplane::pb::{self, entity_service_client::EntityServiceClient};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

async fn write(node: &haplane_tests::Node, id: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    EntityServiceClient::new(channel)
        .put(pb::PutRequest {
            id: id.to_owned(),
            attributes_json: "{}".into(),
            expected_version: None,
            idempotency_key: String::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_stops_the_master_and_the_plane_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("faults");
    let mut options = PlaneOptions::fast();
    options.extra_env = vec![(
        "HAPLANE_TEST_STORE_FAULTS".into(),
        control.display().to_string(),
    )];
    let plane = {
        let mut plane = Plane::new(options);
        plane
            .start_nodes((1..=3).map(|i| (format!("n{i}"), Vec::new())).collect())
            .await;
        plane
    };
    let master = plane.wait_for_master(DEADLINE).await;
    let epoch = plane.nodes[master].state().await.epoch;
    write(&plane.nodes[master], "before").await.unwrap();
    assert!(
        plane.nodes[master]
            .log_text()
            .contains("TEST ONLY: store fault injection is on")
    );

    std::fs::write(&control, "outage = true\n").unwrap();
    let cut = Instant::now();
    eventually(DEADLINE, "the master to stop acting", || async {
        let state = plane.nodes[master].try_state().await?;
        (state.state != pb::NodeState::Master as i32).then_some(())
    })
    .await;
    println!(
        "outage: the master stopped reporting MASTER {:?} after the control file changed (bound: timeout 1 s - margin 250 ms after its last renewal, plus up to 100 ms until the fault wrapper re-reads the file)",
        cut.elapsed()
    );
    let refused = write(&plane.nodes[master], "during").await.unwrap_err();
    assert!(
        matches!(
            refused.code(),
            tonic::Code::FailedPrecondition | tonic::Code::Unavailable
        ),
        "{refused:?}"
    );

    // Three heartbeat timeouts without a store: nobody is MASTER and no epoch moves.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for (index, state) in plane.states().await {
            assert_ne!(
                state.state,
                pb::NodeState::Master as i32,
                "n{} acts as master without a store",
                index + 1
            );
            assert!(
                state.epoch <= epoch,
                "an epoch was claimed during the outage"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(&control, "").unwrap();
    let recovered = plane.wait_for_master(DEADLINE).await;
    let after = plane.nodes[recovered].state().await;
    assert!(after.epoch >= epoch);
    eventually(DEADLINE, "a write on the recovered master", || async {
        write(&plane.nodes[recovered], "after").await.ok()
    })
    .await;
    for node in &plane.nodes {
        assert!(
            !node.log_text().contains("panicked"),
            "{} panicked",
            node.id
        );
    }
}
