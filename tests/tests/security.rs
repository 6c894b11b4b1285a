//! Security end to end (SPEC 7): HTTP Basic on REST and gRPC with open health checks, TLS through
//! the SDK, the CLI and curl (certificates generated here with rcgen), and secrets kept out of
//! logs and APIs.

use haplane_sdk::{Client, ConnectOptions, Credentials, Error, NodeState};
use haplane_tests::haplane::pb;
use haplane_tests::moto::{self, MotoServer};
use haplane_tests::{
    Node, Plane, PlaneOptions, eventually, haplane_binary, launch_with_env, quick_node_args,
    sdk_example_binary, tool,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

fn options(credentials: Option<Credentials>, ca_pem: Option<Vec<u8>>) -> ConnectOptions {
    let mut options = ConnectOptions::default().with_failover_timeout(DEADLINE);
    if let Some(credentials) = credentials {
        options = options.with_credentials(credentials);
    }
    if let Some(pem) = ca_pem {
        options = options.with_ca_pem(pem);
    }
    options
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
    // The JSON error body every other refusal has: its message and its status.
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(error["error"], 401, "{body}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("credentials required")),
        "{body}"
    );
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
    // Built before the plane starts, so the build does not load the machine under it.
    let example_binary = sdk_example_binary("tls_and_auth");
    let moto = MotoServer::start().await;
    moto.create_bucket("secure").await;
    // t1 must win by priority and stay master through the TLS and credential checks.
    let mut plane = Plane::new(PlaneOptions::for_moto().on_s3("s3://secure/plane", &moto.endpoint));
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
    assert_eq!(first.master_id(), "t1");
    assert!(
        first.master_uri().starts_with("https://"),
        "{}",
        first.master_uri()
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

    // The SDK's TLS-and-auth example reads the plane with the CA file and the credentials from
    // its environment, and fails with a wrong password.
    let example = |password: &str| {
        Command::new(&example_binary)
            .args([&cacert, &uri(&plane.nodes[1])])
            .env("HAPLANE_USER", "ops")
            .env("HAPLANE_PASSWORD", password)
            .output()
    };
    let out = example("other").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("master t1 in epoch"), "{stdout}");
    assert!(stdout.contains("node t2 "), "{stdout}");
    let refused = example("wrong").await.unwrap();
    assert!(!refused.status.success(), "a wrong password is refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A graceful hand-over over TLS: the peers' nudges carry credentials through TLS too.
    plane.nodes[0].sigterm();
    plane.nodes[0].wait_exit(DEADLINE).await;
    let next = eventually(DEADLINE, "t2 to be pushed as master", || async {
        client.master().filter(|view| view.master_id() == "t2")
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

/// A stand-in peer: answers every request with 404 and records whether it carried an
/// `authorization` header.
struct FakePeer {
    uri: String,
    /// The `authorization` value of each request received, if any.
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl FakePeer {
    async fn start() -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
                recorded.lock().unwrap().push(authorization);
                axum::http::StatusCode::NOT_FOUND
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { uri, seen }
    }

    /// Requests so far: how many, and how many carried credentials.
    fn requests(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        (
            seen.len(),
            seen.iter().filter(|with| with.is_some()).count(),
        )
    }

    /// The `authorization` values received.
    fn authorizations(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Stops `node` (SIGTERM), waits until its stop nudge reached this peer with credentials,
    /// then stops `haunting` the store and waits for the node to exit.
    async fn await_stop_nudge(&self, node: &mut Node, haunting: tokio::task::JoinHandle<()>) {
        node.sigterm();
        eventually(
            DEADLINE,
            "the stop nudge to reach the fake peer",
            || async { (self.requests().1 > 0).then_some(()) },
        )
        .await;
        haunting.abort();
        node.wait_exit(DEADLINE).await;
    }

    /// Keeps a live, unelectable standby record `nodes/fake.json` pointing at this peer in the
    /// directory store at `store`, modelled on `model`'s own record, until the task is dropped.
    fn haunt(&self, store: &Path, model: &str) -> tokio::task::JoinHandle<()> {
        let nodes = store.join("nodes");
        let template = std::fs::read_to_string(nodes.join(format!("{model}.json"))).unwrap();
        let mut record: serde_json::Value = serde_json::from_str(&template).unwrap();
        record["node_id"] = "fake".into();
        record["node_uri"] = self.uri.clone().into();
        record["status"] = "STANDBY".into();
        record["priority"] = (-100).into();
        record["electable"] = false.into();
        tokio::spawn(async move {
            for heartbeat in 1u64.. {
                record["heartbeat"] = heartbeat.into();
                let staged = nodes.join(".fake.json.tmp");
                // Ends quietly once the test has removed the directory.
                let written = std::fs::write(&staged, record.to_string())
                    .and_then(|()| std::fs::rename(&staged, nodes.join("fake.json")));
                if written.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

/// Whether `node` (a master, reached by `curl_args`) lists the fake peer as live.
async fn sees_fake_peer(curl_args: &[&str]) -> bool {
    let (ok, body) = curl(curl_args).await;
    ok && serde_json::from_str::<serde_json::Value>(&body)
        .is_ok_and(|states| states["nodes"]["fake"]["live"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_node_sends_no_credentials_to_a_plain_peer_uri_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = format!("admin:{PASSWORD}");

    // Control: without TLS configured, the nudge of a stopping master reaches the fake peer
    // with credentials (the documented risk of running without TLS).
    let plain_peer = FakePeer::start().await;
    let mut plain = auth_node(dir.path(), "plain", &[]).await;
    eventually(DEADLINE, "plain to be master", || async {
        let (status, _, body) =
            get(&plain.url("/v1/server/ha/state"), Some(("admin", PASSWORD))).await;
        (status == 200 && body == "\"MASTER\"").then_some(())
    })
    .await;
    let haunting = plain_peer.haunt(&dir.path().join("store-plain"), "plain");
    let states = plain.url("/v1/server/ha/states");
    eventually(DEADLINE, "plain to see the fake peer live", || async {
        sees_fake_peer(&["-u", &credentials, &states])
            .await
            .then_some(())
    })
    .await;
    plain_peer.await_stop_nudge(&mut plain, haunting).await;

    // A TLS node demotes itself, comes back as master and stops: three nudges, none sent.
    let certs = certificate(dir.path());
    let store = dir.path().join("store-secure");
    std::fs::create_dir(&store).unwrap();
    // Start-up warnings: a key others may read, a store anyone may write to.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let mut secure = auth_node(
        dir.path(),
        "secure",
        &["--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
    let cacert = certs.cert.display().to_string();
    let base = format!("https://{}", secure.address);
    let (state, states) = (
        format!("{base}/v1/server/ha/state"),
        format!("{base}/v1/server/ha/states"),
    );
    let is_master = || async {
        let (ok, body) = curl(&["--cacert", &cacert, "-u", &credentials, &state]).await;
        (ok && body == "\"MASTER\"").then_some(())
    };
    eventually(DEADLINE, "secure to be master", is_master).await;
    let secure_peer = FakePeer::start().await;
    let haunting = secure_peer.haunt(&store, "secure");
    eventually(DEADLINE, "secure to see the fake peer live", || async {
        sees_fake_peer(&["--cacert", &cacert, "-u", &credentials, &states])
            .await
            .then_some(())
    })
    .await;
    for mode in ["HOT_STANDBY", "AUTO"] {
        let form = format!("mode={mode}");
        let (ok, body) = curl(&[
            "--cacert",
            &cacert,
            "-u",
            &credentials,
            "-H",
            "haplane-allow-non-master-access: true",
            "-d",
            &form,
            &state,
        ])
        .await;
        assert!(ok && !body.contains("error"), "{mode}: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(DEADLINE, "secure to be master again", is_master).await;
    secure.sigterm();
    secure.wait_exit(DEADLINE).await;
    haunting.abort();
    assert_eq!(
        secure_peer.requests(),
        (0, 0),
        "the TLS node called the plain peer"
    );
    let log = secure.log_text();
    let refusals = log
        .matches("not calling a peer whose URI is not https")
        .count();
    assert_eq!(refusals, 1, "logged once per peer URI:\n{log}");
    assert!(log.contains(&secure_peer.uri), "{log}");
    assert!(
        log.contains("a file holding secrets is open to its group or others")
            && log.contains("0640"),
        "{log}"
    );
    assert!(
        log.contains("the store directory is world-writable"),
        "{log}"
    );
    assert!(
        !plain.log_text().contains("a file holding secrets"),
        "no secret file, no warning"
    );
}

/// With `--peer-secret-file`, nodes present the peer secret (user `haplane-peer`) to each other,
/// never an operator's password: a switchover still steps the master down, the secret opens
/// `Nudge` and `StepDown` and nothing else, and a fake peer planted in the store receives only
/// the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_present_the_peer_secret_which_opens_only_peer_calls() {
    const PEER_SECRET: &str = "peer-secret-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("peer-secret");
    std::fs::write(&secret_file, format!("{PEER_SECRET}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = dir.path().join("store");
    let launch = |id: &'static str, priority: &'static str| {
        let secret_file = secret_file.display().to_string();
        let args = quick_node_args(
            &store,
            &[
                "--node-id",
                id,
                "--pid-file",
                "pid",
                "--auth-user",
                "admin",
                "--peer-secret-file",
                &secret_file,
                "--priority",
                priority,
            ],
        );
        let dir = dir.path().to_owned();
        async move {
            launch_with_env(&dir, id, &args, &[("HAPLANE_AUTH_PASSWORD", PASSWORD)])
                .await
                .running()
        }
    };
    let state_of = |node: &Node| {
        let url = node.url("/v1/server/ha/state");
        async move { get(&url, Some(("admin", PASSWORD))).await.2 }
    };
    let first = launch("first", "10").await;
    eventually(DEADLINE, "first to be master", || async {
        (state_of(&first).await == "\"MASTER\"").then_some(())
    })
    .await;
    let mut second = launch("second", "0").await;
    eventually(DEADLINE, "second to join as a standby", || async {
        let state = state_of(&second).await;
        state.contains("STANDBY").then_some(())
    })
    .await;

    // A switchover: the promoted node's StepDown, sent with the peer secret, is obeyed.
    let promoted = reqwest::Client::new()
        .post(second.url("/v1/server/ha/state"))
        .basic_auth("admin", Some(PASSWORD))
        .header("haplane-allow-non-master-access", "true")
        .form(&[("mode", "MASTER")])
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status().as_u16(), 200);
    eventually(DEADLINE, "second to be master", || async {
        (state_of(&second).await == "\"MASTER\"").then_some(())
    })
    .await;
    assert!(
        second.log_text().contains("the master stepped down for us"),
        "{}",
        second.log_text()
    );

    // The peer secret opens the peer calls only.
    let header = |user, password| {
        let value = Credentials::new(user, password).authorization().unwrap();
        value.to_str().unwrap().to_owned()
    };
    let peer = header("haplane-peer", PEER_SECRET);
    let (status, _, _) = get(
        &first.url("/v1/server/ha/state"),
        Some(("haplane-peer", PEER_SECRET)),
    )
    .await;
    assert_eq!(status, 401, "REST with the peer secret");
    let refused = grpc_state(&first, Some(&peer)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut nudge = tonic::Request::new(pb::NudgeRequest {
        from_node_id: "second".into(),
    });
    nudge
        .metadata_mut()
        .insert("authorization", peer.parse().unwrap());
    first
        .client()
        .await
        .nudge(nudge)
        .await
        .expect("Nudge with the peer secret");

    // What a record in the store can make a node send: the peer secret, not the password.
    let fake = FakePeer::start().await;
    let haunting = fake.haunt(&store, "second");
    let (credentials, states) = (
        format!("admin:{PASSWORD}"),
        second.url("/v1/server/ha/states"),
    );
    eventually(DEADLINE, "second to see the fake peer live", || async {
        sees_fake_peer(&["-u", &credentials, &states])
            .await
            .then_some(())
    })
    .await;
    fake.await_stop_nudge(&mut second, haunting).await;
    let received = fake.authorizations();
    assert!(!received.is_empty());
    let operator = header("admin", PASSWORD);
    for authorization in received {
        assert_eq!(authorization, peer, "only the peer secret");
        assert_ne!(authorization, operator);
    }
}

#[tokio::test]
async fn failed_logins_are_logged_without_the_password_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path(), "counted", &[]).await;
    let state_url = node.url("/v1/server/ha/state");
    eventually(DEADLINE, "the node to be master", || async {
        let (status, _, body) = get(&state_url, Some(("admin", PASSWORD))).await;
        (status == 200 && body == "\"MASTER\"").then_some(())
    })
    .await;
    const WRONG: &str = "hunter2-not-it";
    for _ in 0..3 {
        let (status, _, _) = get(&state_url, Some(("mallory", WRONG))).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = get(&state_url, None).await;
    assert_eq!(
        status, 401,
        "no credentials: refused, but not a failed login"
    );
    let (status, _, metrics) = get(&node.url("/metrics"), Some(("admin", PASSWORD))).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("haplane_auth_failures_total 3\n"),
        "{metrics}"
    );
    // Without the terminal colours between a field's name and its value.
    let log = node
        .log_text()
        .split('\u{1b}')
        .enumerate()
        .map(|(n, part)| match n {
            0 => part,
            _ => part.split_once('m').map_or(part, |(_, rest)| rest),
        })
        .collect::<String>();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("authentication failed"))
        .collect();
    assert_eq!(failures.len(), 3, "{log}");
    for line in failures {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("client="), "{line}");
        assert!(line.contains("mallory"), "{line}");
        assert!(
            !line.contains(WRONG) && !line.contains("aHVudGVy"),
            "{line}"
        );
    }
}

/// After five failed logins from one address, that address is answered 429 with Retry-After
/// (right password or not) for a while; a client from another address still gets in.
#[tokio::test]
async fn repeated_failed_logins_from_one_address_are_throttled_and_others_still_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path(), "throttled", &[]).await;
    let state_url = node.url("/v1/server/ha/state");
    eventually(DEADLINE, "the node to be master", || async {
        let (status, _, body) = get(&state_url, Some(("admin", PASSWORD))).await;
        (status == 200 && body == "\"MASTER\"").then_some(())
    })
    .await;
    for attempt in 0..5 {
        let (status, _, _) = get(&state_url, Some(("mallory", "wrong"))).await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let throttled = reqwest::Client::new()
        .get(&state_url)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .expect("request");
    assert_eq!(throttled.status().as_u16(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let error: serde_json::Value = throttled.json().await.expect("a JSON body");
    assert_eq!(error["error"], 429, "{error}");
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
        .get(&state_url)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .expect("request from 127.0.0.2");
    assert_eq!(elsewhere.status().as_u16(), 200);
    assert!(
        node.log_text().contains("127.0.0.1"),
        "the failures name the address"
    );
}

#[tokio::test]
async fn the_basic_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let node = auth_node(dir.path(), "schemes", &[]).await;
    let encoded = Credentials::new("admin", PASSWORD)
        .authorization()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap()
        .to_owned();
    for scheme in ["basic", "BASIC", "Basic"] {
        let response = reqwest::Client::new()
            .get(node.url("/v1/server/ha/states"))
            .header("authorization", format!("{scheme} {encoded}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
        let state = grpc_state(&node, Some(&format!("{scheme} {encoded}"))).await;
        assert!(state.is_ok(), "{scheme}: {state:?}");
    }
}

#[tokio::test]
async fn foreign_hosts_and_cross_site_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let args = quick_node_args(
        &dir.path().join("store"),
        &["--node-id", "hosted", "--allowed-host", "ha.example.org"],
    );
    let node = launch_with_env(dir.path(), "hosted", &args, &[])
        .await
        .running();
    eventually(DEADLINE, "the node to be master", || async {
        node.try_state()
            .await
            .filter(|state| state.state == pb::NodeState::Master as i32)
    })
    .await;
    let state_url = node.url("/v1/server/ha/state");
    let status_of = |args: Vec<String>| async move {
        let mut all = vec![
            "-o".to_owned(),
            "/dev/null".to_owned(),
            "-w".to_owned(),
            "%{http_code}".to_owned(),
        ];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (ok, body) = curl(&all).await;
        assert!(ok, "{body}");
        body
    };
    for (host, expected) in [
        ("evil.example", "421"),
        ("evil.example:8081", "421"),
        ("127.0.0.1.nip.io", "421"),
        ("localhost:1", "200"),
        ("ha.example.org", "200"),
        ("[::1]:8081", "200"),
    ] {
        let status = status_of(vec![
            "-H".into(),
            format!("Host: {host}"),
            state_url.clone(),
        ])
        .await;
        assert_eq!(status, expected, "Host: {host}");
    }

    let mut client = tonic::transport::Endpoint::from_shared(node.grpc_uri())
        .unwrap()
        .origin("http://evil.example:8081".parse().unwrap())
        .connect()
        .await
        .map(pb::ha_service_client::HaServiceClient::new)
        .unwrap();
    let refused = client.get_state(pb::GetStateRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let priority_url = node.url("/v1/server/ha/priority");
    let post = |origin: String, priority: &str| {
        vec![
            "-H".to_owned(),
            format!("Origin: {origin}"),
            "-d".into(),
            format!("priority={priority}"),
            priority_url.clone(),
        ]
    };
    assert_eq!(
        status_of(post("http://evil.example".into(), "7")).await,
        "403"
    );
    assert_eq!(status_of(post("null".into(), "7")).await, "403");
    assert_eq!(
        node.state().await.priority,
        0,
        "the refused change did not happen"
    );
    let own = format!("http://{}", node.address);
    assert_eq!(status_of(post(own, "8")).await, "200");
    assert_eq!(
        status_of(post("https://ha.example.org".into(), "9")).await,
        "200"
    );
    assert_eq!(node.state().await.priority, 9);
}
