//! Security end to end (SPEC 7): HTTP Basic on REST and gRPC with open health checks, TLS through
//! the SDK, the CLI and curl (certificates generated here with rcgen), and secrets kept out of
//! logs and APIs.

use haplane_sdk::{Client, ConnectOptions, Credentials, Error, NodeState};
use haplane_tests::haplane::pb;
use haplane_tests::moto::{self, MotoServer};
use haplane_tests::{
    Node, Plane, PlaneOptions, eventually, haplane_binary, launch_with_env, quick_node_args, tool,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

fn options(credentials: Option<Credentials>, ca_pem: Option<Vec<u8>>) -> ConnectOptions {
    ConnectOptions {
        failover_timeout: DEADLINE,
        credentials,
        ca_pem,
        ..ConnectOptions::default()
    }
}

async fn get(url: &str, credentials: Option<(&str, &str)>) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("request");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (
        response.status().as_u16(),
        challenge,
        response.text().await.unwrap(),
    )
}

async fn grpc_state(
    node: &Node,
    authorization: Option<&str>,
) -> Result<pb::GetStateResponse, tonic::Status> {
    let mut request = tonic::Request::new(pb::GetStateRequest {});
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    node.client()
        .await
        .get_state(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn grpc_health(node: &Node) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_uri())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "haplane.v1.Master".into(),
        })
        .await
        .expect("health is open")
        .into_inner()
        .status
}

async fn auth_node(dir: &Path, id: &str, extra: &[&str]) -> Node {
    let mut flags = vec!["--node-id", id, "--pid-file", "pid", "--auth-user", "admin"];
    flags.extend(extra);
    let args = quick_node_args(&dir.join(format!("store-{id}")), &flags);
    launch_with_env(
        dir,
        id,
        &args,
        &[("HAPLANE_AUTH_PASSWORD", PASSWORD), ("RUST_LOG", "debug")],
    )
    .await
    .running()
}

#[tokio::test]
async fn credentials_are_required_on_rest_and_grpc_but_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path(), "guarded", &[]).await;
    let state_url = node.url("/v1/server/ha/state");
    eventually(DEADLINE, "the node to be master", || async {
        let (status, _, body) = get(&state_url, Some(("admin", PASSWORD))).await;
        (status == 200 && body == "\"MASTER\"").then_some(())
    })
    .await;

    let (status, challenge, body) = get(&state_url, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.unwrap().starts_with("Basic realm=\"haplane\""));
    assert!(body.contains("credentials required"), "{body}");
    let (status, _, body) = get(&state_url, Some(("admin", "wrong"))).await;
    assert_eq!((status, body.contains("invalid credentials")), (401, true));
    let (status, _, _) = get(&node.url("/v1/server/ha/states"), Some(("root", PASSWORD))).await;
    assert_eq!(status, 401, "a user that does not exist");
    let (status, _, body) = get(&node.url("/v1/server/ha/health"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "\"MASTER\""),
        "health is open"
    );

    let refused = grpc_state(&node, None).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = grpc_state(&node, Some("Basic YWRtaW46d3Jvbmc="))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        grpc_health(&node).await,
        1,
        "gRPC health is open and SERVING"
    );

    let wrong = Client::connect(
        [node.grpc_uri()],
        options(Some(Credentials::new("admin", "wrong")), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            wrong,
            Error::Rejected {
                code: tonic::Code::Unauthenticated,
                ..
            }
        ),
        "{wrong:?}"
    );
    let client = Client::connect(
        [node.grpc_uri()],
        options(Some(Credentials::new("admin", PASSWORD)), None),
    )
    .await
    .unwrap();
    assert_eq!(client.get_state().await.unwrap().state, NodeState::Master);
    let states = client.list_states().await.unwrap();
    let (_, _, rest_states) =
        get(&node.url("/v1/server/ha/states"), Some(("admin", PASSWORD))).await;

    let cli = Command::new(haplane_binary())
        .args([
            "ha",
            "--endpoint",
            &node.grpc_uri(),
            "--auth-user",
            "admin",
            "state",
        ])
        .env("HAPLANE_AUTH_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success() && printed.contains("MASTER"),
        "{printed} {cli:?}"
    );
    let cli = Command::new(haplane_binary())
        .args([
            "ha",
            "--endpoint",
            &node.grpc_uri(),
            "--timeout",
            "2s",
            "state",
        ])
        .env_remove("HAPLANE_AUTH_PASSWORD")
        .output()
        .await
        .unwrap();
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("Unauthenticated"),
        "{cli:?}"
    );

    let log = node.log_text();
    assert!(log.contains("DEBUG"), "the node logged at debug level");
    for place in [log.as_str(), &format!("{states:?}"), &rest_states] {
        assert!(!place.contains(PASSWORD), "the password leaked: {place}");
        assert!(
            !place.contains("Y29ycmVjdCBob3JzZ"),
            "the encoded password leaked"
        );
    }

    let protected = auth_node(dir.path(), "protected", &["--auth-health"]).await;
    let (status, _, _) = get(&protected.url("/v1/server/ha/health"), None).await;
    assert_eq!(status, 401, "--auth-health protects the health check");
}

struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

fn certificate(dir: &Path) -> Certificate {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let pem = generated.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    Certificate { cert, key, pem }
}

async fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new(tool("curl"))
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .await
        .expect("run curl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_and_auth_end_to_end_on_s3_with_secrets_kept_out_of_logs() {
    let moto = MotoServer::start().await;
    moto.create_bucket("secure").await;
    let mut plane = Plane::new(PlaneOptions::fast().on_s3("s3://secure/plane", &moto.endpoint));
    let certs = certificate(plane.dir.path());
    let users = plane.dir.path().join("users");
    std::fs::write(
        &users,
        format!("# operators\nadmin:{PASSWORD}\nops:other\n"),
    )
    .unwrap();
    plane.options.extra_args = vec![
        "--tls-cert".into(),
        certs.cert.display().to_string(),
        "--tls-key".into(),
        certs.key.display().to_string(),
        "--auth-users-file".into(),
        users.display().to_string(),
    ];
    plane.options.extra_env = vec![("RUST_LOG".into(), "debug".into())];
    plane
        .start_nodes(vec![
            ("t1".into(), vec!["--priority".into(), "5".into()]),
            ("t2".into(), vec![]),
        ])
        .await;
    let uri = |node: &Node| format!("https://{}", node.address);

    let client = Client::connect(
        [uri(&plane.nodes[1])],
        options(
            Some(Credentials::new("ops", "other")),
            Some(certs.pem.clone().into_bytes()),
        ),
    )
    .await
    .unwrap();
    let first = client.wait_for_master(DEADLINE).await.unwrap();
    assert_eq!(first.master_id, "t1");
    assert!(
        first.master_uri.starts_with("https://"),
        "{}",
        first.master_uri
    );
    client
        .put_entity("secure/a", serde_json::json!({"n": 1}), None)
        .await
        .unwrap();

    let state_url = format!("{}/v1/server/ha/state", uri(&plane.nodes[0]));
    let cacert = certs.cert.display().to_string();
    let credentials = format!("admin:{PASSWORD}");
    let (ok, body) = curl(&["--cacert", &cacert, "-u", &credentials, &state_url]).await;
    assert!(ok && body == "\"MASTER\"", "{body}");
    let (ok, body) = curl(&["--cacert", &cacert, "-w", "%{http_code}", &state_url]).await;
    assert!(ok && body.ends_with("401"), "{body}");
    let (ok, body) = curl(&["-u", &credentials, &state_url]).await;
    assert!(!ok, "an untrusted certificate is refused: {body}");
    let plain = format!("http://{}/v1/server/ha/state", plane.nodes[0].address);
    let (ok, body) = curl(&["-u", &credentials, "-w", "%{http_code}", &plain]).await;
    assert!(
        !ok || !body.ends_with("200"),
        "plain HTTP is not served: {body}"
    );

    // A graceful hand-over over TLS: the peers' nudges carry credentials through TLS too.
    plane.nodes[0].sigterm();
    plane.nodes[0].wait_exit(DEADLINE).await;
    let next = eventually(DEADLINE, "t2 to be pushed as master", || async {
        client.master().filter(|view| view.master_id == "t2")
    })
    .await;
    assert!(next.epoch > first.epoch);
    let entity = client.get_entity("secure/a").await.unwrap();
    assert_eq!(entity.attributes["n"], 1);
    let states = client.list_states().await.unwrap();

    let key = std::fs::read_to_string(&certs.key).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();
    for (place, text) in [
        ("t1 log", plane.nodes[0].log_text()),
        ("t2 log", plane.nodes[1].log_text()),
        ("ListStates", format!("{states:?}")),
    ] {
        for secret in [PASSWORD, moto::SECRET_KEY, key_body.as_str()] {
            assert!(!text.contains(secret), "{place} holds a secret: {secret}");
        }
    }
    assert!(plane.nodes[1].log_text().contains("DEBUG"));
    assert!(
        !plane.nodes[0].log_text().contains("nudge not delivered"),
        "the stopping master reached its peer over TLS with credentials"
    );
}
