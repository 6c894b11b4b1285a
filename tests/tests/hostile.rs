//! Hostile input against a running node: malformed protobuf, invalid UTF-8, truncated HTTP/2,
//! garbage bytes, path-traversal ids, and randomly generated REST requests and protobuf bodies.
//! Each gets a precise error (never INTERNAL / 5xx), and the node keeps serving.

use haplane_tests::haplane::pb;
use haplane_tests::{Plane, PlaneOptions, grpc_frame};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn malformed_input_gets_precise_errors_and_the_node_keeps_serving() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let node = &plane.nodes[master];
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();

    // Undecodable protobuf (a field with a truncated varint) to every unary method kind.
    for method in [
        "haplane.v1.HaService/SetState",
        "haplane.v1.HaService/SetPriority",
        "haplane.v1.EntityService/Put",
    ] {
        let response = grpc
            .post(node.url(&format!("/{method}")))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(grpc_frame(&[0x08, 0xff, 0xff]))
            .send()
            .await
            .unwrap();
        let status = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            status.as_deref(),
            Some("3"),
            "{method}: INVALID_ARGUMENT, {:?}",
            response.headers()
        );
        let message = response
            .headers()
            .get("grpc-message")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("malformed"), "{message}");
    }

    // Invalid UTF-8 and junk forms over REST.
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/v1/server/ha/state", &b"mode=\xff\xfe"[..]),
        ("/v1/server/ha/priority", &b"priority=\xc3\x28"[..]),
        ("/v1/server/ha/priority", &b"%%%&&&==="[..]),
    ] {
        let response = http
            .post(node.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path} {body:?}");
    }
    let response = http
        .put(node.url("/v1/entities/x"))
        .body(b"{\"a\":\"\xff\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    for priority in [i64::MAX, i64::MIN] {
        let response = http
            .post(node.url("/v1/server/ha/priority"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("priority={priority}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "extreme priorities are valid");
    }

    // Truncated HTTP/2 and plain garbage on the port.
    for bytes in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"[..],
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        &b"GET /v1/server/ha/state HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"[..],
    ] {
        let mut socket = tokio::net::TcpStream::connect(&node.address).await.unwrap();
        socket.write_all(bytes).await.unwrap();
        drop(socket);
    }

    let state = node.state().await;
    assert_eq!(
        state.state,
        haplane_tests::haplane::pb::NodeState::Master as i32,
        "still serving"
    );
    assert!(
        node.log_text()
            .lines()
            .all(|line| !line.contains("panicked")),
        "no panic"
    );
}

/// The node peeks at a connection's first bytes to pick the runtime that serves it (HTTP/1.1 on
/// its own). Openings that arrive in pieces are still served in their protocol, and a client
/// that connects and sends nothing holds up nobody. (Which runtime serves is a speed matter, seen
/// in the unary benchmark, not here.)
#[tokio::test]
async fn openings_in_pieces_are_served_and_a_silent_client_blocks_nobody() {
    let plane = Plane::start(1, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let node = &plane.nodes[master];
    let _silent = tokio::net::TcpStream::connect(&node.address).await.unwrap();

    // "PR" could open HTTP/2's preface; "OPFIND ..." makes it an HTTP/1.1 method.
    let mut socket = send_in_two_pieces(
        &node.address,
        b"PR",
        b"OPFIND /v1/server/ha/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = read_answer(&mut socket).await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text:?}");

    // The HTTP/2 preface in two pieces, then an empty SETTINGS frame: the node answers with its
    // own SETTINGS frame (frame type 4 on stream 0).
    let mut socket = send_in_two_pieces(
        &node.address,
        b"PRI * HT",
        b"TP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    )
    .await;
    let mut header = [0u8; 9];
    tokio::time::timeout(DEADLINE, socket.read_exact(&mut header))
        .await
        .expect("a frame")
        .unwrap();
    assert_eq!((header[3], &header[5..9]), (4, &[0u8; 4][..]), "{header:?}");

    assert_eq!(node.state().await.state, pb::NodeState::Master as i32);
}

/// Connects and sends `first`, then `rest` 100 ms later (two TCP segments).
async fn send_in_two_pieces(address: &str, first: &[u8], rest: &[u8]) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(rest).await.unwrap();
    socket
}

/// Everything the node sends until it closes the connection, as text.
async fn read_answer(socket: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, socket.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends one raw HTTP/1.1 request (no client-side path normalisation) and answers its status.
async fn raw_status(address: &str, method: &str, target: &str, body: &[u8]) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let text = read_answer(&mut socket).await;
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {method} {target}: {text:?}"))
}

/// gRPC status of a unary call with `payload` as its (possibly undecodable) message.
async fn grpc_status(grpc: &reqwest::Client, url: &str, payload: &[u8]) -> String {
    let response = grpc
        .post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(grpc_frame(payload))
        .send()
        .await
        .unwrap();
    match response.headers().get("grpc-status") {
        Some(status) => status.to_str().unwrap().to_owned(),
        // Not trailers-only: the status is in the trailers after a message.
        None => {
            let _ = response.bytes().await;
            "0".to_owned()
        }
    }
}

/// Text made of the tokens that matter for ids and paths, percent-encoded where HTTP needs it.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(".."),
            Just("."),
            Just("/"),
            Just("%2e"),
            Just("%2E%2E"),
            Just("%2f"),
            Just("%00"),
            Just("%ff"),
            Just("%c3%28"),
            Just("a"),
            Just("Z9"),
            Just("-"),
            Just("_"),
            Just("%20"),
            Just("\\"),
            Just("&"),
            Just("="),
            Just("99999999999999999999"),
            Just("-9223372036854775808"),
            Just("master"),
            Just("hot-standby"),
            Just("MASTER"),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn path_traversal_ids_and_random_requests_get_4xx_never_5xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plane = runtime.block_on(async {
        let plane = Plane::start(1, PlaneOptions::fast()).await;
        plane.wait_for_master(DEADLINE).await;
        plane
    });
    let node = &plane.nodes[0];

    // Traversal ids that a client library would normalise away, sent raw.
    for target in [
        "/v1/entities/../x",
        "/v1/entities/a/../../x",
        "/v1/entities/%2e%2e/x",
        "/v1/entities/a/%2E%2E/b",
        "/v1/entities/a%2f..%2fb",
        "/v1/entities/a//b",
        "/v1/entities/a%00b",
        "/v1/entities/%ff",
        "/v1/server/ha/states/clear/node?node=../x",
        "/v1/server/ha/states/clear/node?node=%2e%2e%2fx",
    ] {
        for method in ["GET", "PUT", "DELETE", "POST"] {
            let status = runtime.block_on(raw_status(&node.address, method, target, b"{}"));
            assert!((400..500).contains(&status), "{method} {target}: {status}");
        }
    }
    let id = "a".repeat(201);
    let status = runtime.block_on(raw_status(
        &node.address,
        "PUT",
        &format!("/v1/entities/{id}"),
        b"{}",
    ));
    assert_eq!(status, 400, "a 201-character id");
    let grpc = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for id in ["../x", "a/../b", "/x", "a//b", "%2e%2e", ""] {
        use prost::Message;
        let get = pb::GetRequest { id: id.to_owned() }.encode_to_vec();
        let url = node.url("/haplane.v1.EntityService/Get");
        assert_eq!(
            runtime.block_on(grpc_status(&grpc, &url, &get)),
            "3",
            "Get {id:?}"
        );
        let remove = pb::RemoveTerminatedRequest {
            node_id: Some(id.to_owned()),
        }
        .encode_to_vec();
        let url = node.url("/haplane.v1.HaService/RemoveTerminated");
        assert_eq!(
            runtime.block_on(grpc_status(&grpc, &url, &remove)),
            "3",
            "RemoveTerminated {id:?}"
        );
    }

    // Random forms, queries and ids over REST: a 2xx or a 4xx, never a 5xx.
    let requests = (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        prop::sample::select(vec![
            "/v1/server/ha/state?mode=",
            "/v1/server/ha/priority?priority=",
            "/v1/server/ha/states/clear/node?node=",
            "/v1/entities/",
            "/v1/entities?prefix=",
            "/v1/server/ha/states?",
        ]),
        hostile_text(),
        prop_oneof![
            hostile_text().prop_map(|text| format!("mode={text}&priority={text}").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
    );
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&requests, |(method, path, text, body)| {
            let target = format!("{path}{text}");
            let status = runtime.block_on(raw_status(&node.address, method, &target, &body));
            prop_assert!(
                (200..500).contains(&status),
                "{} {}: {}",
                method,
                target,
                status
            );
            Ok(())
        })
        .unwrap();

    // Random bytes as the message of every unary method: never INTERNAL or UNKNOWN.
    let methods = prop::sample::select(vec![
        "haplane.v1.HaService/GetState",
        "haplane.v1.HaService/SetPriority",
        "haplane.v1.HaService/SetState",
        "haplane.v1.HaService/RemoveTerminated",
        "haplane.v1.EntityService/Get",
        "haplane.v1.EntityService/List",
        "haplane.v1.EntityService/Put",
        "haplane.v1.EntityService/Delete",
    ]);
    let mut runner = TestRunner::new(Config::with_cases(200));
    runner
        .run(
            &(methods, prop::collection::vec(any::<u8>(), 0..48)),
            |(method, payload)| {
                let status = runtime.block_on(grpc_status(
                    &grpc,
                    &node.url(&format!("/{method}")),
                    &payload,
                ));
                prop_assert!(
                    status != "13" && status != "2",
                    "{} {:?}: grpc-status {}",
                    method,
                    payload,
                    status
                );
                Ok(())
            },
        )
        .unwrap();

    runtime.block_on(async {
        assert!(node.try_state().await.is_some(), "still serving");
    });
    assert!(
        node.log_text()
            .lines()
            .all(|line| !line.contains("panicked")),
        "no panic"
    );
}
