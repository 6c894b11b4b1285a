//! The S3 store against a real S3-compatible server (moto): the store conformance suite,
//! pagination, the conditional-write probe, and the election, failover and managed state on S3.

use haplane_server::store::s3::{S3Options, S3Store};
use haplane_server::store::{PutMode, Store, conformance};
use haplane_tests::haplane::pb;
use haplane_tests::moto::{self, MotoServer};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

async fn store(moto: &MotoServer, bucket: &str, prefix: &str) -> S3Store {
    moto.create_bucket(bucket).await;
    let mut options = S3Options::from_location(&format!("s3://{bucket}/{prefix}")).unwrap();
    options.endpoint = Some(moto.endpoint.clone());
    options.static_credentials = Some((moto::ACCESS_KEY.into(), moto::SECRET_KEY.into()));
    S3Store::connect(options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_passes_the_conformance_suite_and_the_probe() {
    let moto = MotoServer::start().await;
    let s3 = store(&moto, "conformance", "plane/a").await;
    s3.probe_conditional_writes().await.unwrap();
    conformance::run_all(Arc::new(s3.clone())).await;
    // The probe leaves nothing behind.
    assert!(s3.list("probe/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_listing_follows_pagination() {
    let moto = MotoServer::start().await;
    let s3 = Arc::new(store(&moto, "pages", "").await);
    let total = 1_010;
    for batch in (0..total).collect::<Vec<_>>().chunks(50) {
        let puts = batch.iter().map(|i| {
            let s3 = s3.clone();
            async move {
                let key = haplane_server::store::Key::parse(&format!("many/{i:05}.json")).unwrap();
                s3.put(&key, bytes::Bytes::from_static(b"{}"), PutMode::Overwrite)
                    .await
                    .unwrap();
            }
        });
        futures::future::join_all(puts).await;
    }
    let keys = s3.list("many/").await.unwrap();
    assert_eq!(keys.len(), total);
    assert_eq!(keys[1_009].as_str(), "many/01009.json");
}

#[tokio::test]
async fn launch_refuses_a_server_that_ignores_conditional_writes() {
    let endpoint = moto::start_lying_s3().await;
    let plane = Plane::new(PlaneOptions::fast().on_s3("s3://liar/plane", &endpoint));
    let (code, output) = plane.launch("n1", &[]).await.exited();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("If-None-Match"), "{output}");
    assert!(
        output.contains(&endpoint),
        "the message names the endpoint: {output}"
    );
}

#[tokio::test]
async fn election_failover_and_hand_over_work_on_s3() {
    let moto = MotoServer::start().await;
    moto.create_bucket("plane").await;
    let mut plane = Plane::new(PlaneOptions::for_moto().on_s3("s3://plane/prod", &moto.endpoint));
    plane
        .start_nodes(vec![
            ("n1".into(), vec![]),
            ("n2".into(), vec!["--priority".into(), "3".into()]),
            ("n3".into(), vec![]),
        ])
        .await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "n2");
    let epoch = plane.nodes[master].state().await.epoch;

    // Managed state is replicated through S3 too.
    let mut writer = pb::entity_service_client::EntityServiceClient::new(
        tonic::transport::Endpoint::from_shared(plane.nodes[master].grpc_uri())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    writer
        .put(pb::PutRequest {
            id: "on/s3".into(),
            attributes_json: "{}".into(),
            expected_version: None,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let hot_uri = plane.nodes[(master + 1) % 3].grpc_uri();
    eventually(DEADLINE, "the hot standby to read the entity", || async {
        let channel = tonic::transport::Endpoint::from_shared(hot_uri.clone())
            .ok()?
            .connect()
            .await
            .ok()?;
        pb::entity_service_client::EntityServiceClient::new(channel)
            .get(pb::GetRequest { id: "on/s3".into() })
            .await
            .ok()
    })
    .await;

    let killed = Instant::now();
    plane.nodes[master].kill9().await;
    let next = plane.wait_for_new_master(master, DEADLINE).await;
    println!("S3 crash failover observed after {:?}", killed.elapsed());
    assert_eq!(plane.nodes[next].state().await.epoch, epoch + 1);

    let stopped = Instant::now();
    plane.nodes[next].sigterm();
    let last = plane
        .wait_for_new_master(next, Duration::from_secs(3))
        .await;
    println!("S3 graceful hand-over took {:?}", stopped.elapsed());
    assert_eq!(plane.nodes[last].state().await.epoch, epoch + 2);
}
