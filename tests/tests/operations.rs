//! Operators' tools against a real plane: the web console in headless Chromium, HAProxy routing by
//! the health check, a Python client and a Python sidecar generated from proto/, grpcurl, and curl
//! on the SSE streams.
//! Tools come from scripts/setup-tools.sh.

use haplane_tests::{Plane, PlaneOptions, free_port, tool, workspace_root};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const DEADLINE: Duration = Duration::from_secs(20);

/// Taken by every test here, so they run one at a time: Chromium, HAProxy and the Python tools
/// are heavy enough on a 2-core CI machine to starve another test's plane of the store writes
/// that keep its master's lease, and a master that loses its lease rightly reports FAILED.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A child process killed when the test ends, with its stdout read line by line.
struct Tool {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Tool {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tool");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next stdout line that satisfies `wanted`, within the deadline.
    async fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read")
                    .unwrap_or_else(|| panic!("output ended before {what}"));
                if wanted(&line) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {what} within {DEADLINE:?}"))
    }
}

async fn output(program: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .expect("run tool");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_lists_describes_calls_and_health_checks() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let grpcurl = tool("grpcurl");
    let address = plane.nodes[master].address.clone();
    let list = output(&grpcurl, &["-plaintext", &address, "list"]).await;
    assert!(list.contains("haplane.v1.HaService"), "{list}");
    assert!(list.contains("grpc.health.v1.Health"), "{list}");
    let described = output(
        &grpcurl,
        &["-plaintext", &address, "describe", "haplane.v1.HaService"],
    )
    .await;
    assert!(described.contains("rpc WatchMaster"), "{described}");
    let state = output(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            "{}",
            &address,
            "haplane.v1.HaService/GetState",
        ],
    )
    .await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["state"], "NODE_STATE_MASTER");
    for (index, expected) in [(master, "\"SERVING\""), (1 - master, "\"NOT_SERVING\"")] {
        let health = output(
            &grpcurl,
            &[
                "-plaintext",
                "-d",
                r#"{"service":"haplane.v1.Master"}"#,
                &plane.nodes[index].address,
                "grpc.health.v1.Health/Check",
            ],
        )
        .await;
        assert!(health.contains(expected), "node {index}: {health}");
    }
}

#[tokio::test]
async fn a_generated_python_client_reads_the_plane_and_sees_a_failover() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut plane = Plane::start(3, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = (master + 1) % 3;
    let mut client = Tool::spawn(
        Command::new(tool("python3"))
            .arg(workspace_root().join("tests/python/ha_client.py"))
            .arg(workspace_root())
            .arg(&plane.nodes[standby].address),
    );
    let state = client
        .line_where("state", |l| l.starts_with("state "))
        .await;
    assert_eq!(
        state,
        format!(
            "state {} NODE_STATE_HOT_STANDBY n1",
            plane.nodes[standby].id
        )
    );
    let nodes = client
        .line_where("nodes", |l| l.starts_with("nodes "))
        .await;
    assert_eq!(nodes, "nodes n1,n2,n3");
    let watch = client
        .line_where("watch", |l| l.starts_with("watch "))
        .await;
    assert_eq!(watch, "watch 1 n1");
    plane.nodes[master].kill9().await;
    let changed = client
        .line_where("changed", |l| l.starts_with("changed "))
        .await;
    assert!(changed.starts_with("changed 2 "), "{changed}");
    assert!(!changed.ends_with(" n1"), "{changed}");
    let status = client.child.wait().await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn curl_on_the_sse_endpoint_receives_the_master_then_a_change() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = 1 - master;
    let mut curl = Tool::spawn(
        Command::new(tool("curl")).args(["-sN", &plane.nodes[standby].url("/v1/server/ha/watch")]),
    );
    let first = curl
        .line_where("a data line", |l| l.starts_with("data:"))
        .await;
    let view: serde_json::Value =
        serde_json::from_str(first.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(view["masterId"], "n1");
    assert_eq!(view["epoch"], 1);
    plane.nodes[master].kill9().await;
    let changed = curl
        .line_where("a data line naming the new master", |l| {
            l.starts_with("data:")
                && l.contains(&format!("\"masterId\":\"{}\"", plane.nodes[standby].id))
        })
        .await;
    assert!(changed.contains("\"epoch\":2"), "{changed}");
}

#[tokio::test]
async fn haproxy_routes_every_request_to_the_master_and_follows_a_failover() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Every answer through the proxy must come from the master, so the master must keep its
    // lease throughout: steady timings (lease 2.25 s) ride out a loaded CI machine, where the
    // fast 1 s timeout (lease 750 ms) once let a new master's renewal land late (it reported
    // FAILED, as it must, and the proxy still sent it requests until its next check).
    let mut plane = Plane::start(3, PlaneOptions::steady()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let port = free_port();
    let check_interval = Duration::from_millis(200);
    // The shipped configuration, pointed at this plane: its three `server` lines (which follow
    // `default-server`, so they take its check settings) name our nodes.
    let shipped = std::fs::read_to_string(workspace_root().join("deploy/haproxy.cfg")).unwrap();
    let mut node_addresses = plane.nodes.iter().map(|node| node.address.clone());
    let config: String = shipped
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace(
            "inter 500ms",
            &format!("inter {}ms", check_interval.as_millis()),
        )
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server ") {
            Some(rest) => {
                let name = rest.split_whitespace().next().unwrap_or("node");
                let address = node_addresses
                    .next()
                    .expect("three nodes for three server lines");
                format!("    server {name} {address} check\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert!(
        node_addresses.next().is_none(),
        "every node has a server line"
    );
    let config_path = plane.dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let _haproxy = Tool::spawn(
        Command::new(tool("haproxy"))
            .args(["-db", "-f"])
            .arg(&config_path),
    );
    let proxy = format!("http://127.0.0.1:{port}/v1/server/ha/state");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let ask = || async { client.get(&proxy).send().await.ok()?.text().await.ok() };
    // HAProxy starts with every server up until its first check: wait for a run of answers
    // that all come from the master.
    let all_from_master = || async {
        for _ in 0..10 {
            if ask().await.as_deref() != Some("\"MASTER\"") {
                return None;
            }
        }
        Some(())
    };
    haplane_tests::eventually(DEADLINE, "HAProxy to route to the master", all_from_master).await;
    for _ in 0..30 {
        assert_eq!(
            ask().await.as_deref(),
            Some("\"MASTER\""),
            "every request reaches the master"
        );
    }
    let killed = Instant::now();
    plane.nodes[master].kill9().await;
    plane.wait_for_new_master(master, DEADLINE).await;
    println!(
        "plane agreed on a new master {:?} after kill -9",
        killed.elapsed()
    );
    haplane_tests::eventually(DEADLINE, "HAProxy to route to the new master", || async {
        (ask().await.as_deref() == Some("\"MASTER\"")).then_some(())
    })
    .await;
    println!(
        "HAProxy sent requests to the new master {:?} after kill -9 (timeout {:?} + check interval {:?})",
        killed.elapsed(),
        plane.options.heartbeat_timeout,
        check_interval
    );
    for _ in 0..30 {
        assert_eq!(ask().await.as_deref(), Some("\"MASTER\""));
    }
}

#[tokio::test]
async fn the_console_shows_the_plane_and_changes_a_priority_in_chromium() {
    let _turn = ONE_AT_A_TIME.lock().await;
    use fantoccini::{ClientBuilder, Locator};
    let plane = Plane::start(3, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = (master + 1) % 3;
    // Two entities for the entity browser.
    let http = reqwest::Client::new();
    for id in ["apps/web", "apps/db"] {
        let put = http
            .put(plane.nodes[master].url(&format!("/v1/entities/{id}")))
            .body(r#"{"replicas":2}"#)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{put:?}");
    }
    let driver_port = free_port();
    let _driver =
        Tool::spawn(Command::new(tool("chromedriver")).arg(format!("--port={driver_port}")));
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": tool("chromium"),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.path().display()), "--window-size=412,915"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = haplane_tests::eventually(DEADLINE, "chromedriver to accept a session", || {
        let capabilities = capabilities.clone();
        let connector = connector.clone();
        async move {
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{driver_port}"))
                .await
                .ok()
        }
    })
    .await;

    // A standby's console warns that it is not the master, and names it.
    browser.goto(&plane.nodes[standby].url("/")).await.unwrap();
    let banner = browser
        .wait()
        .for_element(Locator::Id("banner"))
        .await
        .unwrap();
    let banner_text = haplane_tests::eventually(DEADLINE, "the banner text", || async {
        let text = banner.text().await.ok()?;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(
        banner_text.contains("not the master") && banner_text.contains(&plane.nodes[master].id),
        "{banner_text}"
    );
    // ...and links to the master's console.
    let link = browser
        .find(Locator::Id("master-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(link.as_deref(), Some(plane.nodes[master].url("/").as_str()));

    // The master's console: three rows, the master highlighted, no banner.
    browser.goto(&plane.nodes[master].url("/")).await.unwrap();
    let rows = haplane_tests::eventually(DEADLINE, "three rows", || async {
        let rows = browser
            .find_all(Locator::Css("#nodes tbody tr"))
            .await
            .ok()?;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 3);
    // The table is re-rendered on every refresh: find and read the row in one attempt.
    let highlighted = haplane_tests::eventually(DEADLINE, "the highlighted master row", || async {
        let row = browser.find(Locator::Css("#nodes tr.master")).await.ok()?;
        row.attr("data-node-id").await.ok().flatten()
    })
    .await;
    assert_eq!(highlighted, plane.nodes[master].id);
    assert!(
        !browser
            .find(Locator::Id("banner"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );

    // Manage menu: change this node's priority; REST confirms it.
    browser
        .find(Locator::Css("#manage summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = browser.find(Locator::Id("priority-input")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys("42").await.unwrap();
    browser
        .find(Locator::Id("priority-set"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let priority_url = plane.nodes[master].url("/v1/server/ha/priority");
    haplane_tests::eventually(DEADLINE, "the new priority over REST", || async {
        let text = reqwest::get(&priority_url).await.ok()?.text().await.ok()?;
        (text == "42").then_some(())
    })
    .await;

    // The entity browser lists this copy's entities and its lag; the timeline shows epoch 1.
    let entity_rows = haplane_tests::eventually(DEADLINE, "the entity rows", || async {
        let rows = browser
            .find_all(Locator::Css("#entities tbody tr"))
            .await
            .ok()?;
        (rows.len() == 2).then_some(rows.len())
    })
    .await;
    assert_eq!(entity_rows, 2);
    let summary = browser
        .find(Locator::Id("entities-summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        summary.contains("lag") && summary.contains("as of log position"),
        "{summary}"
    );
    let epochs = haplane_tests::eventually(DEADLINE, "a timeline bar", || async {
        let bars = browser
            .find_all(Locator::Css("#timeline rect.epoch"))
            .await
            .ok()?;
        (!bars.is_empty()).then_some(bars.len())
    })
    .await;
    assert_eq!(epochs, 1);

    // A page of another origin that posts a form to the master is refused (Origin check): the
    // priority stays 42.
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}/", evil.local_addr().unwrap());
    let target = plane.nodes[master].url("/v1/server/ha/priority");
    let page = format!(
        r#"<html><body><form id="f" method="POST" action="{target}"><input name="priority" value="99"></form>
           <script>document.getElementById("f").submit();</script></body></html>"#
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(evil, app).await });
    browser.goto(&evil_url).await.unwrap();
    let refused = haplane_tests::eventually(DEADLINE, "the cross-site POST answered", || async {
        let url = browser.current_url().await.ok()?;
        (url.as_str() == target).then_some(())?;
        browser.source().await.ok()
    })
    .await;
    assert!(
        refused.contains("refused") || refused.contains("403"),
        "{refused}"
    );
    let text = reqwest::get(&priority_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "42", "a cross-site form changed the priority");

    // Promotion from the standby's console asks first: declined, nothing changes; accepted, the
    // standby becomes master and the timeline shows the change.
    browser.goto(&plane.nodes[standby].url("/")).await.unwrap();
    browser
        .wait()
        .for_element(Locator::Css("#manage summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let promote = browser.find(Locator::Id("promote")).await.unwrap();
    promote.click().await.unwrap();
    let question = browser.get_alert_text().await.unwrap();
    assert!(
        question.contains("Promote") && question.contains(&plane.nodes[standby].id),
        "{question}"
    );
    browser.dismiss_alert().await.unwrap();
    let message = browser
        .find(Locator::Id("message"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(message, "Cancelled");
    assert_eq!(plane.wait_for_master(DEADLINE).await, master);
    promote.click().await.unwrap();
    browser.accept_alert().await.unwrap();
    plane.wait_for_new_master(master, DEADLINE).await;
    assert_eq!(plane.wait_for_master(DEADLINE).await, standby);
    haplane_tests::eventually(DEADLINE, "two epochs and a failover mark", || async {
        let bars = browser
            .find_all(Locator::Css("#timeline rect.epoch"))
            .await
            .ok()?;
        let marks = browser
            .find_all(Locator::Css("#timeline line.failover"))
            .await
            .ok()?;
        (bars.len() == 2 && marks.len() == 1).then_some(())
    })
    .await;

    let screenshot = browser.screenshot().await.unwrap();
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let path = artifacts.join("console.png");
    std::fs::write(&path, &screenshot).unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("console screenshot saved to {}", path.display());
    browser.close().await.unwrap();
}

#[tokio::test]
async fn each_node_tells_its_own_role_and_only_the_master_a_lease() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = 1 - master;
    // gRPC GetState: the lease only on the master, and within one lease length (timeout less
    // the margin: 1 s - 250 ms).
    let lease = plane.nodes[master].state().await.lease_valid_for_ms;
    assert!(lease.is_some_and(|ms| ms > 0 && ms <= 750), "{lease:?}");
    assert_eq!(plane.nodes[standby].state().await.lease_valid_for_ms, None);
    // REST: the same fields.
    let role = |index: usize| {
        let url = plane.nodes[index].url("/v1/server/ha/role");
        async move {
            let text = output(&tool("curl"), &["-sf", &url]).await;
            serde_json::from_str::<serde_json::Value>(&text).expect("role JSON")
        }
    };
    let master_role = role(master).await;
    assert_eq!(master_role["leader"], true, "{master_role}");
    assert!(
        master_role["leaseValidForMs"]
            .as_u64()
            .is_some_and(|ms| ms <= 750)
    );
    let standby_role = role(standby).await;
    assert_eq!(standby_role["leader"], false, "{standby_role}");
    assert_eq!(standby_role["leaseValidForMs"], serde_json::Value::Null);
    // The SSE role stream of the standby: not leader, then leader once the master is killed.
    let mut curl = Tool::spawn(
        Command::new(tool("curl"))
            .args(["-sN", &plane.nodes[standby].url("/v1/server/ha/role/watch")]),
    );
    let first = curl.line_where("a role", |l| l.starts_with("data:")).await;
    assert!(first.contains("\"leader\":false"), "{first}");
    plane.nodes[master].kill9().await;
    let leading = curl
        .line_where("the standby leading", |l| {
            l.starts_with("data:") && l.contains("\"leader\":true")
        })
        .await;
    assert!(leading.contains("\"epoch\":2"), "{leading}");
    assert!(leading.contains("\"leaseValidForMs\":"), "{leading}");
}

#[tokio::test]
async fn a_python_sidecar_on_the_generated_client_works_only_while_its_node_leads() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut plane = Plane::start(2, PlaneOptions::fast()).await;
    let master = plane.wait_for_master(DEADLINE).await;
    let standby = 1 - master;
    let mut sidecar = Tool::spawn(
        Command::new(tool("python3"))
            .arg(workspace_root().join("tests/python/sidecar.py"))
            .arg(workspace_root())
            .arg(&plane.nodes[standby].address)
            .arg("2"),
    );
    let first = sidecar
        .line_where("its first role", |l| l.starts_with("role "))
        .await;
    assert_eq!(first, "role False 1 none");
    plane.nodes[master].kill9().await;
    let leading = sidecar
        .line_where("leadership", |l| l.starts_with("role True"))
        .await;
    assert!(leading.starts_with("role True 2 "), "{leading}");
    let work = sidecar.line_where("work", |l| l.starts_with("work ")).await;
    assert_eq!(work, "work 2", "no work before its node led");
    assert!(sidecar.child.wait().await.unwrap().success());
}
