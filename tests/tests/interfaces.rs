//! Every gRPC and REST endpoint of SPEC 5.1–5.2 and its errors, through the generated client and
//! an HTTP client, against a real three-node plane.

use haplane_tests::haplane::pb::{self, NodeState};
use haplane_tests::{Node, Plane, PlaneOptions, allow_non_master, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio_stream::StreamExt;

const DEADLINE: Duration = Duration::from_secs(20);

/// A three-node plane whose master is `n1` (lowest id); returns it with (master, standby).
/// Steady timings: the tests count on epoch 1 and one master across many requests.
async fn plane() -> (Plane, usize, usize) {
    let plane = Plane::start(3, PlaneOptions::steady()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    assert_eq!(plane.nodes[master].id, "n1");
    (plane, master, 1)
}

async fn get(node: &Node, path: &str) -> (StatusCode, String) {
    let response = reqwest::get(node.url(path)).await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn post(
    node: &Node,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(node.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

#[tokio::test]
async fn grpc_get_state_and_list_states_describe_the_plane() {
    let (plane, master, standby) = plane().await;
    let state = plane.nodes[standby].state().await;
    assert_eq!(state.node_id, "n2");
    assert_eq!(state.state, NodeState::HotStandby as i32);
    assert_eq!(state.epoch, 1);
    assert_eq!(state.master_id, "n1");
    assert_eq!(state.master_uri, plane.nodes[master].grpc_uri());
    assert!(!state.plane_id.is_empty());
    let listing = plane.nodes[standby]
        .client()
        .await
        .list_states(pb::ListStatesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listing.plane_id, state.plane_id);
    assert_eq!(listing.own_id, "n2");
    assert_eq!(listing.master_id, "n1");
    assert_eq!(listing.epoch, 1);
    let mut ids: Vec<_> = listing.nodes.iter().map(|n| n.node_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    for node in &listing.nodes {
        assert!(
            node.live && node.heartbeat > 0 && !node.version.is_empty(),
            "{node:?}"
        );
        assert!(node.node_uri.starts_with("http://127.0.0.1:"), "{node:?}");
        assert!(node.local_timestamp_ms > 0);
    }
}

#[tokio::test]
async fn grpc_errors_are_precise() {
    let (plane, master, standby) = plane().await;
    let mut standby_client = plane.nodes[standby].client().await;
    for mode in [0, 99] {
        let status = standby_client
            .set_state(allow_non_master(pb::SetStateRequest { mode }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert!(status.message().contains("mode"), "{status}");
    }
    let status = standby_client
        .set_state(pb::SetStateRequest {
            mode: pb::HaMode::HotStandby as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.metadata().get("haplane-master-id").unwrap(), "n1");
    assert_eq!(
        status
            .metadata()
            .get("haplane-master-uri")
            .unwrap()
            .to_str()
            .unwrap(),
        plane.nodes[master].grpc_uri()
    );
    let status = standby_client
        .set_priority(pb::SetPriorityRequest { priority: 3 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let previous = standby_client
        .set_priority(allow_non_master(pb::SetPriorityRequest {
            priority: i64::MIN,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(previous.previous_priority, 0);
    // RemoveTerminated is master-only even with the override, and refused as such before its
    // argument is read (as REST's guard refuses it).
    for node_id in [None, Some("../x".to_owned())] {
        let status = standby_client
            .remove_terminated(allow_non_master(pb::RemoveTerminatedRequest {
                node_id: node_id.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::FailedPrecondition,
            "{node_id:?}"
        );
    }
    let mut master_client = plane.nodes[master].client().await;
    for (id, code) in [
        ("../x", tonic::Code::InvalidArgument),
        ("", tonic::Code::InvalidArgument),
        ("nobody", tonic::Code::NotFound),
        ("n1", tonic::Code::FailedPrecondition),
    ] {
        let status = master_client
            .remove_terminated(pb::RemoveTerminatedRequest {
                node_id: Some(id.to_owned()),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{id:?}: {status}");
    }
}

#[tokio::test]
async fn remove_terminated_deletes_stopped_nodes_records() {
    let (mut plane, master, _) = plane().await;
    plane.nodes[2].sigterm();
    plane.nodes[2].wait_exit(DEADLINE).await;
    let mut client = plane.nodes[master].client().await;
    let removed = client
        .remove_terminated(pb::RemoveTerminatedRequest { node_id: None })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, ["n3"]);
    assert!(!plane.store_dir().join("nodes/n3.json").exists());
    // One named non-master record.
    let removed = client
        .remove_terminated(pb::RemoveTerminatedRequest {
            node_id: Some("n2".into()),
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, ["n2"]);
}

#[tokio::test]
async fn watch_master_sends_the_current_view_then_each_change_then_unavailable() {
    let (mut plane, master, standby) = plane().await;
    let mut stream = plane.nodes[standby]
        .client()
        .await
        .watch_master(pb::WatchMasterRequest { min_epoch: None })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .expect("first view at once")
        .unwrap()
        .unwrap();
    assert_eq!((first.epoch, first.master_id.as_str()), (1, "n1"));
    assert_eq!(first.members.len(), 3);
    assert!(
        first
            .members
            .iter()
            .all(|m| m.live && m.node_uri.starts_with("http://"))
    );
    plane.nodes[master].kill9().await;
    let next = tokio::time::timeout(DEADLINE, async {
        loop {
            let event = stream.next().await.expect("stream open").expect("a view");
            if !event.master_id.is_empty() {
                return event;
            }
        }
    })
    .await
    .expect("a view naming the new master");
    assert_eq!(next.epoch, 2);
    assert_ne!(next.master_id, "n1");
    // min_epoch filters older views.
    let mut filtered = plane.nodes[standby]
        .client()
        .await
        .watch_master(pb::WatchMasterRequest {
            min_epoch: Some(99),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), filtered.next())
            .await
            .is_err(),
        "no view below min_epoch is sent"
    );
    // On shutdown: the last view, then UNAVAILABLE.
    plane.nodes[standby].sigterm();
    let ending = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.next().await {
                Some(Err(status)) => return status,
                Some(Ok(_)) => {}
                None => panic!("stream ended without a status"),
            }
        }
    })
    .await
    .expect("the stream to end with a status");
    assert_eq!(ending.code(), tonic::Code::Unavailable, "{ending}");
}

#[tokio::test]
async fn grpc_health_and_reflection_are_served() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let (plane, master, standby) = plane().await;
    for (index, expected) in [
        (master, ServingStatus::Serving),
        (standby, ServingStatus::NotServing),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(plane.nodes[index].grpc_uri())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let status = eventually(DEADLINE, "health status", || {
            let mut health = health.clone();
            async move {
                let answer = health
                    .check(HealthCheckRequest {
                        service: "haplane.v1.Master".into(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                (answer.status == expected as i32).then_some(answer.status)
            }
        })
        .await;
        assert_eq!(status, expected as i32);
        let overall = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(overall.status, ServingStatus::Serving as i32);
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = tonic::transport::Endpoint::from_shared(plane.nodes[master].grpc_uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"haplane.v1.HaService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    use tonic_reflection::pb::v1alpha as alpha;
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        format!("{response:?}").contains("haplane.v1.HaService"),
        "v1alpha lists the service: {response:?}"
    );
}

#[tokio::test]
async fn rest_reads_match_brooklyn() {
    let (plane, master, standby) = plane().await;
    let (m, s) = (&plane.nodes[master], &plane.nodes[standby]);
    assert_eq!(
        get(m, "/v1/server/ha/state").await,
        (StatusCode::OK, "\"MASTER\"".into())
    );
    assert_eq!(
        get(s, "/v1/server/ha/state").await,
        (StatusCode::OK, "\"HOT_STANDBY\"".into())
    );
    assert_eq!(
        get(s, "/v1/server/ha/priority").await,
        (StatusCode::OK, "0".into())
    );
    assert_eq!(
        get(s, "/v1/server/up").await,
        (StatusCode::OK, "true".into())
    );
    assert_eq!(
        get(s, "/v1/server/healthy").await,
        (StatusCode::OK, "true".into())
    );

    let (status, body) = get(s, "/v1/server/ha/states").await;
    assert_eq!(status, StatusCode::OK);
    let states = json(&body);
    assert_eq!(states["ownId"], "n2");
    assert_eq!(states["masterId"], "n1");
    assert_eq!(states["epoch"], 1);
    assert!(states["links"].is_object());
    assert!(states["planeId"].as_str().is_some_and(|id| !id.is_empty()));
    let n1 = &states["nodes"]["n1"];
    for field in [
        "nodeId",
        "nodeUri",
        "status",
        "priority",
        "localTimestamp",
        "remoteTimestamp",
        "live",
        "lastSeenAgeMs",
    ] {
        assert!(!n1[field].is_null(), "{field} missing in {n1}");
    }
    assert_eq!(n1["status"], "MASTER");
    assert_eq!(n1["live"], true);

    let (status, body) = get(m, "/v1/server/ha/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = json(&body);
    assert_eq!(metrics["state"], "MASTER");
    assert_eq!(metrics["pollPeriodMs"], 100);
    assert_eq!(metrics["heartbeatTimeoutMs"], 3000);
    let history = metrics["stateHistory"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["state"], "MASTER");

    assert_eq!(get(m, "/v1/server/ha/health").await.0, StatusCode::OK);
    assert_eq!(
        get(s, "/v1/server/ha/health").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(s, "/v1/server/ha/health?standbyok=true").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rest_writes_follow_the_non_master_guard_and_reject_bad_input() {
    let (plane, master, standby) = plane().await;
    let (m, s) = (&plane.nodes[master], &plane.nodes[standby]);
    let (status, body) = post(s, "/v1/server/ha/priority", "priority=4", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let refusal = json(&body);
    assert_eq!(
        refusal["message"],
        "This request is only permitted against an active primary server"
    );
    assert_eq!(refusal["error"], 403);
    assert_eq!(refusal["masterId"], "n1");
    assert_eq!(refusal["masterUri"], m.grpc_uri());
    for (i, header) in [
        "Brooklyn-Allow-Non-Master-Access",
        "AMP-Allow-Non-Master-Access",
        "Haplane-Allow-Non-Master-Access",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = post(
            s,
            "/v1/server/ha/priority",
            &format!("priority={}", i + 1),
            &[(header, "true")],
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, i.to_string()), "{header}");
    }
    assert_eq!(get(s, "/v1/server/ha/priority").await.1, "3");
    // Master-only operations stay forbidden with the header.
    let allow = [("Brooklyn-Allow-Non-Master-Access", "true")];
    assert_eq!(
        post(s, "/v1/server/ha/states/clear", "", &allow).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(s, "/v1/server/ha/states/clear/node", "nodeId=n3", &allow)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    for (path, form, parameter) in [
        ("/v1/server/ha/state", "", "mode"),
        ("/v1/server/ha/state", "mode=PRIMARY", "mode"),
        ("/v1/server/ha/priority", "priority=high", "priority"),
        (
            "/v1/server/ha/priority",
            "priority=99999999999999999999",
            "priority",
        ),
        ("/v1/server/ha/states/clear/node", "", "nodeId"),
        // Named as the form spells it, not as the proto does (`node_id`).
        ("/v1/server/ha/states/clear/node", "nodeId=..%2Fx", "nodeId"),
    ] {
        let (status, body) = post(m, path, form, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {form}: {body}");
        let error = json(&body);
        assert_eq!(error["error"], 400);
        assert_eq!(error["parameter"], parameter, "{body}");
        assert!(
            error["message"].as_str().unwrap().contains(parameter),
            "{body}"
        );
    }
    assert_eq!(
        post(m, "/v1/server/ha/states/clear", "", &[]).await.0,
        StatusCode::OK
    );
    let (status, _) = get(m, "/v1/server/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let deleted = reqwest::Client::new()
        .delete(m.url("/v1/server/ha/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::METHOD_NOT_ALLOWED);
    let huge = format!("priority=1&pad={}", "x".repeat(200 * 1024));
    assert_eq!(
        post(m, "/v1/server/ha/priority", &huge, &[]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // A mode change on the master answers the previous state, as a JSON string.
    let (status, body) = post(m, "/v1/server/ha/state", "mode=hot-standby", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "\"MASTER\""));
    let new = plane.wait_for_new_master(master, DEADLINE).await;
    assert_ne!(new, master);
}
