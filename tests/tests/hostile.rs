//! Hostile input against a running node: malformed protobuf, invalid UTF-8, truncated HTTP/2 and
//! garbage bytes. Each gets a precise error (never INTERNAL / 500), and the node keeps serving.

use haplane_tests::{Plane, PlaneOptions};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const DEADLINE: Duration = Duration::from_secs(20);

/// A gRPC frame: compression flag, big-endian length, payload.
fn grpc_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

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
