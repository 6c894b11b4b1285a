//! Managed state end to end: writes on the master, reads on hot copies, refusal on a STANDBY,
//! acknowledged writes surviving a crash failover exactly once, a paused master fenced off, and
//! the persistence modes across a restart of the whole plane.

use haplane_tests::haplane::pb::{self, entity_service_client::EntityServiceClient};
use haplane_tests::{Plane, PlaneOptions, eventually};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(20);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn entities(uri: &str) -> Option<EntityServiceClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(uri.to_owned())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    Some(EntityServiceClient::new(channel))
}

fn put(id: &str, json: &str, key: &str) -> pb::PutRequest {
    pb::PutRequest {
        id: id.into(),
        attributes_json: json.into(),
        expected_version: None,
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn the_master_writes_hot_copies_read_the_same_version_and_a_standby_refuses() {
    let mut plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let hot = plane.add("hot", &[]).await;
    let backup = plane
        .add("backup", &args(&["--ha-mode", "hot-backup"]))
        .await;
    let standby = plane.add("cold", &args(&["--ha-mode", "standby"])).await;
    let mut writer = entities(&plane.nodes[master].grpc_uri()).await.unwrap();
    writer
        .put(put("apps/web", r#"{"replicas":2}"#, ""))
        .await
        .unwrap();
    let written = writer
        .put(put("apps/web", r#"{"replicas":3}"#, ""))
        .await
        .unwrap()
        .into_inner();
    let entity = written.entity.unwrap();
    assert_eq!(entity.version, 2);
    for reader in [hot, backup] {
        let uri = plane.nodes[reader].grpc_uri();
        let read = eventually(DEADLINE, "the hot copy to catch up", || async {
            let answer = entities(&uri)
                .await?
                .get(pb::GetRequest {
                    id: "apps/web".into(),
                })
                .await
                .ok()?
                .into_inner();
            (answer.entity.as_ref()?.version == 2).then_some(answer)
        })
        .await;
        assert_eq!(read.entity.unwrap().attributes_json, r#"{"replicas":3}"#);
        assert_eq!(read.as_of_seq, written.seq);
    }
    let refused = entities(&plane.nodes[standby].grpc_uri())
        .await
        .unwrap()
        .get(pb::GetRequest {
            id: "apps/web".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("state not loaded"), "{refused}");
    // Same code as "not the master", told apart by the google.rpc.ErrorInfo reason.
    let info = tonic_types::StatusExt::get_details_error_info(&refused).expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("STATE_NOT_LOADED", "haplane.v1")
    );
    let rest = reqwest::get(plane.nodes[standby].url("/v1/entities/apps/web"))
        .await
        .unwrap();
    assert_eq!(rest.status(), reqwest::StatusCode::FORBIDDEN);
    // Writes anywhere but the master are refused, naming the master.
    let refused = entities(&plane.nodes[hot].grpc_uri())
        .await
        .unwrap()
        .put(put("apps/db", "{}", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.metadata().get("haplane-master-id").unwrap(),
        plane.nodes[master].id.as_str()
    );
    let info = tonic_types::StatusExt::get_details_error_info(&refused).expect("ErrorInfo");
    assert_eq!(info.reason, "NOT_MASTER");
    assert_eq!(info.metadata["masterId"], plane.nodes[master].id);
    assert_eq!(info.metadata["masterUri"], plane.nodes[master].grpc_uri());
}

#[tokio::test]
async fn rest_entities_take_versions_and_idempotency_keys() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let url = plane.nodes[master].url("/v1/entities/svc/a");
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method,
                body: &'static str,
                headers: Vec<(&'static str, &'static str)>| {
        let mut request = client.request(method, &url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let created = send(
        reqwest::Method::PUT,
        r#"{"x":1}"#,
        vec![("Idempotency-Key", "once")],
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 200);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let again = send(
        reqwest::Method::PUT,
        r#"{"x":1}"#,
        vec![("Idempotency-Key", "once")],
    )
    .await
    .unwrap();
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["version"], 1, "a retried key is applied once");
    let stale = send(
        reqwest::Method::PUT,
        r#"{"x":2}"#,
        vec![("If-Match", "\"7\"")],
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), 412);
    let bad = send(reqwest::Method::PUT, "[1,2]", vec![]).await.unwrap();
    assert_eq!(bad.status(), 400);
    let traversal = client
        .get(plane.nodes[master].url("/v1/entities/a/..%2F..%2Fetc"))
        .send()
        .await
        .unwrap();
    assert_eq!(traversal.status(), 400);
    let updated = send(
        reqwest::Method::PUT,
        r#"{"x":2}"#,
        vec![("If-Match", "\"1\"")],
    )
    .await
    .unwrap();
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let listed: serde_json::Value = client
        .get(plane.nodes[master].url("/v1/entities?prefix=svc/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["entities"][0]["attributes"]["x"], 2);
    assert_eq!(
        send(reqwest::Method::DELETE, "", vec![])
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn an_idempotency_key_names_one_write_and_another_write_with_it_is_refused() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await.unwrap();
    let first = client
        .put(put("keys/a", r#"{"n":1}"#, "k"))
        .await
        .unwrap()
        .into_inner();
    // Another entity, or a delete, under the same key: refused, naming both writes, and nothing
    // is written (answering the first write's outcome would acknowledge a write never applied).
    let other = client
        .put(put("keys/b", r#"{"n":1}"#, "k"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::InvalidArgument, "{other}");
    let bad_request = tonic_types::StatusExt::get_details_bad_request(&other).expect("BadRequest");
    assert_eq!(bad_request.field_violations[0].field, "idempotency key");
    assert!(
        other.message().contains("put of keys/a") && other.message().contains("put of keys/b"),
        "{other}"
    );
    let missing = client
        .get(pb::GetRequest {
            id: "keys/b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing}");
    let delete = client
        .delete(pb::DeleteRequest {
            id: "keys/a".into(),
            expected_version: None,
            idempotency_key: "k".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), tonic::Code::InvalidArgument, "{delete}");
    assert!(delete.message().contains("delete of keys/a"), "{delete}");
    // The write the key names is still answered as a retry.
    let retried = client
        .put(put("keys/a", r#"{"n":1}"#, "k"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.seq, first.seq);
    assert_eq!(retried.entity.unwrap().version, 1);
    // Two writes sent at once under one key (often in one group-committed entry): exactly one
    // is applied.
    let mut pairs = Vec::new();
    for i in 0..10 {
        let key = format!("pair{i}");
        let (mut left, mut right) = (client.clone(), client.clone());
        let (a, b) = (format!("pairs/{i}a"), format!("pairs/{i}b"));
        pairs.push(tokio::spawn(async move {
            let (left, right) = tokio::join!(
                left.put(put(&a, "{}", &key)),
                right.put(put(&b, "{}", &key))
            );
            (a, left.map(|_| ()), b, right.map(|_| ()))
        }));
    }
    for pair in pairs {
        let (a, left, b, right) = pair.await.unwrap();
        let (applied, refused) = match (left, right) {
            (Ok(()), Err(refusal)) => (a, (b, refusal)),
            (Err(refusal), Ok(())) => (b, (a, refusal)),
            other => panic!("one of {a} and {b} must be applied: {other:?}"),
        };
        assert_eq!(
            refused.1.code(),
            tonic::Code::InvalidArgument,
            "{}",
            refused.1
        );
        let read = |id: String| {
            let mut client = client.clone();
            async move { client.get(pb::GetRequest { id }).await }
        };
        assert_eq!(
            read(applied)
                .await
                .unwrap()
                .into_inner()
                .entity
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            read(refused.0).await.unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
    // REST: the same refusal as 400.
    let http = reqwest::Client::new();
    let reused = http
        .put(plane.nodes[master].url("/v1/entities/keys/c"))
        .header("Idempotency-Key", "k")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 400);
    let body = reused.text().await.unwrap();
    assert!(body.contains("put of keys/a"), "{body}");
}

/// Writes `count` entities `w/<i>`, each with its own idempotency key, retrying each against
/// whichever node is master until it is acknowledged. Returns the acknowledged indices.
async fn write_through_failovers(uris: Vec<String>, count: usize) -> Vec<usize> {
    let mut acknowledged = Vec::new();
    for i in 0..count {
        let deadline = Instant::now() + DEADLINE;
        'retry: loop {
            assert!(Instant::now() < deadline, "write {i} never acknowledged");
            for uri in &uris {
                let Some(mut client) = entities(uri).await else {
                    continue;
                };
                let request = put(
                    &format!("w/{i:04}"),
                    &format!(r#"{{"i":{i}}}"#),
                    &format!("key-{i}"),
                );
                if client.put(request).await.is_ok() {
                    acknowledged.push(i);
                    break 'retry;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    acknowledged
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_failover_exactly_once() {
    let mut plane = Plane::start(3, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let uris: Vec<String> = plane.nodes.iter().map(|n| n.grpc_uri()).collect();
    let writer = tokio::spawn(write_through_failovers(uris, 120));
    // Let some writes land, then crash the master mid-stream.
    let master_uri = plane.nodes[master].grpc_uri();
    eventually(DEADLINE, "some writes", || async {
        let listing = entities(&master_uri)
            .await?
            .list(pb::ListRequest {
                prefix: "w/".into(),
                ..Default::default()
            })
            .await
            .ok()?;
        (listing.into_inner().entities.len() >= 20).then_some(())
    })
    .await;
    plane.nodes[master].kill9().await;
    let acknowledged = writer.await.unwrap();
    assert_eq!(acknowledged.len(), 120);
    let new = plane.wait_for_new_master(master, DEADLINE).await;
    let listing = entities(&plane.nodes[new].grpc_uri())
        .await
        .unwrap()
        .list(pb::ListRequest {
            prefix: "w/".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let by_id: BTreeMap<_, _> = listing.entities.iter().map(|e| (e.id.clone(), e)).collect();
    for i in acknowledged {
        let entity = by_id
            .get(&format!("w/{i:04}"))
            .unwrap_or_else(|| panic!("acknowledged write {i} lost"));
        assert_eq!(entity.version, 1, "write {i} applied more than once");
    }
}

#[tokio::test]
async fn a_paused_master_cannot_write_after_the_takeover() {
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let old = plane.wait_for_master(DEADLINE).await;
    let old_uri = plane.nodes[old].grpc_uri();
    entities(&old_uri)
        .await
        .unwrap()
        .put(put("before", "{}", ""))
        .await
        .unwrap();
    plane.nodes[old].sigstop();
    let new = plane.wait_for_new_master(old, DEADLINE).await;
    let new_uri = plane.nodes[new].grpc_uri();
    // The new master has fenced the log and accepts writes.
    eventually(DEADLINE, "the new master to accept writes", || async {
        entities(&new_uri)
            .await?
            .put(put("after", "{}", ""))
            .await
            .ok()
    })
    .await;
    plane.nodes[old].sigcont();
    let refused = entities(&old_uri)
        .await
        .unwrap()
        .put(put("late", "{}", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    let listing = entities(&new_uri)
        .await
        .unwrap()
        .list(pb::ListRequest {
            prefix: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listing.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["after", "before"]);
    assert!(
        !std::fs::read_dir(plane.store_dir().join("state/log"))
            .unwrap()
            .any(|entry| std::fs::read_to_string(entry.unwrap().path())
                .unwrap()
                .contains("\"late\"")),
        "the late write never reached the log"
    );
}

#[tokio::test]
async fn the_state_survives_a_restart_of_the_plane_with_auto_and_rebind_and_clean_empties_it() {
    let options = PlaneOptions {
        extra_args: args(&["--state-snapshot-every", "100"]),
        // 130 fsync'd writes to one master: steady timings keep its lease through them.
        ..PlaneOptions::steady()
    };
    let mut plane = Plane::start(2, options).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let mut client = entities(&plane.nodes[master].grpc_uri()).await.unwrap();
    // Enough writes to cross a snapshot (every 100 entries).
    for i in 0..130 {
        client
            .put(put(&format!("e/{i:03}"), &format!(r#"{{"i":{i}}}"#), ""))
            .await
            .unwrap();
    }
    for node in &plane.nodes {
        node.sigterm();
    }
    for node in &mut plane.nodes {
        node.wait_exit(DEADLINE).await;
    }
    assert!(
        plane
            .store_dir()
            .join("state/snapshots")
            .read_dir()
            .unwrap()
            .count()
            >= 1
    );
    for persist in ["auto", "rebind"] {
        let index = plane
            .add(&format!("r-{persist}"), &args(&["--persist", persist]))
            .await;
        plane.wait_for_master(DEADLINE).await;
        let uri = plane.nodes[index].grpc_uri();
        let listing = eventually(DEADLINE, "the state back", || async {
            entities(&uri)
                .await?
                .list(pb::ListRequest {
                    prefix: "e/".into(),
                    ..Default::default()
                })
                .await
                .ok()
        })
        .await
        .into_inner();
        assert_eq!(listing.entities.len(), 130, "--persist {persist}");
        plane.nodes[index].sigterm();
        plane.nodes[index].wait_exit(DEADLINE).await;
    }
    let index = plane.add("r-clean", &args(&["--persist", "clean"])).await;
    plane.wait_for_master(DEADLINE).await;
    let uri = plane.nodes[index].grpc_uri();
    let listing = eventually(DEADLINE, "an empty state", || async {
        entities(&uri)
            .await?
            .list(pb::ListRequest {
                prefix: String::new(),
                ..Default::default()
            })
            .await
            .ok()
    })
    .await
    .into_inner();
    assert!(listing.entities.is_empty());
}

#[tokio::test]
async fn lists_come_in_pages_that_cover_a_prefix_once_over_grpc_rest_and_the_sdk() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let uri = plane.nodes[master].grpc_uri();
    let mut grpc = entities(&uri).await.expect("channel");
    for i in 0..25 {
        grpc.put(put(&format!("p/{i:02}"), r#"{"n":1}"#, &format!("k{i}")))
            .await
            .unwrap();
    }
    grpc.put(put("q/other", "{}", "other")).await.unwrap();
    // gRPC, pages of 10: 10, 10, 5, each id once, in order.
    let mut token = String::new();
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    loop {
        let page = grpc
            .list(pb::ListRequest {
                prefix: "p/".into(),
                page_size: 10,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(page.entities.len());
        ids.extend(page.entities.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(ids, expected);
    // REST: the same pages; bad input is 400 naming the parameter.
    let client = reqwest::Client::new();
    let get = |query: String| {
        let url = plane.nodes[master].url(&format!("/v1/entities?prefix=p/&{query}"));
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let first: serde_json::Value = get("pageSize=20".into()).await.json().await.unwrap();
    assert_eq!(first["entities"].as_array().unwrap().len(), 20);
    let next = first["nextPageToken"].as_str().unwrap().to_owned();
    let last: serde_json::Value = get(format!("pageSize=20&pageToken={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["entities"].as_array().unwrap().len(), 5);
    assert_eq!(last["nextPageToken"], serde_json::Value::Null);
    for (query, parameter) in [
        ("pageSize=many", "pageSize"),
        ("pageToken=../x", "pageToken"),
    ] {
        let refused = get(query.into()).await;
        assert_eq!(refused.status(), 400, "{query}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["parameter"], parameter, "{body}");
    }
    // The SDK pages for its caller.
    let sdk = haplane_sdk::Client::connect([uri], haplane_sdk::ConnectOptions::default())
        .await
        .unwrap();
    let all = sdk.list_entities("p/").await.unwrap();
    assert_eq!(all.len(), 25);
}
