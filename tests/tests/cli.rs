//! The `haplane` command line: flag validation (exit 2 naming the flag), configuration layers,
//! the PID file and `haplane stop`, persistence modes, and start-up errors.

use haplane_tests::haplane::pb::NodeState;
use haplane_tests::{Launched, Node, haplane_binary, launch, launch_with_env, quick_node_args};
use std::path::Path;
use std::time::Duration;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Arguments for a quick node on a free port with its store in `dir`.
fn node_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    quick_node_args(&dir.join("store"), extra)
}

fn run(dir: &Path, argv: &[&str]) -> std::process::Output {
    std::process::Command::new(haplane_binary())
        .args(argv)
        .current_dir(dir)
        .output()
        .expect("run haplane")
}

#[test]
fn invalid_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (argv, flag) in [
        (&["launch", "--ha-mode", "primary"][..], "--ha-mode"),
        (&["launch", "--persist", "sometimes"], "--persist"),
        (&["launch", "--poll-period", "soon"], "--poll-period"),
        (&["launch", "--priority", "high"], "--priority"),
        (&["launch", "--node-id", "../etc"], "--node-id"),
        (&["launch", "--bind", "localhost"], "--bind"),
        (&["launch", "--bind", "0.0.0.0:0"], "--advertise-uri"),
        (
            &[
                "launch",
                "--heartbeat-timeout",
                "100ms",
                "--poll-period",
                "1s",
            ],
            "--heartbeat-timeout",
        ),
        (
            &["launch", "--persist", "disabled", "--ha-mode", "master"],
            "--ha-mode",
        ),
        (
            &["launch", "--persist", "clean", "--ha-mode", "standby"],
            "--persist",
        ),
        (&["launch", "--no-such-flag"], "--no-such-flag"),
    ] {
        let output = run(dir.path(), argv);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{argv:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{argv:?} should name {flag}: {stderr}"
        );
    }
}

#[tokio::test]
async fn an_unusable_persistence_directory_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let bad = file.join("store").display().to_string();
    let (code, output) = launch(
        dir.path(),
        "x",
        &args(&["--bind", "127.0.0.1:0", "--persistence-dir", &bad]),
    )
    .await
    .exited();
    assert_eq!(code, Some(1));
    assert!(output.contains("a-file"), "{output}");
}

#[tokio::test]
async fn an_unwritable_pid_file_fails_the_start_before_the_node_joins_the_plane() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let pid_file = dir.path().join("missing-dir").join("pid.txt");
    let mut argv = node_args(dir.path(), &["--node-id", "early", "--pid-file"]);
    argv.push(pid_file.display().to_string());
    let (code, output) = launch(dir.path(), "x", &argv).await.exited();
    assert_eq!(code, Some(1));
    assert!(output.contains("missing-dir"), "{output}");
    // Nothing of the node reached the store: no heartbeat record for peers to see go silent.
    let records = store.join("nodes");
    let written: Vec<_> = std::fs::read_dir(&records)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "records written: {written:?}");
}

#[tokio::test]
async fn flags_beat_environment_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haplane.toml");
    std::fs::write(&config, "priority = 3\nnode_id = \"from-file\"\npoll_period = \"100ms\"\nheartbeat_timeout = \"1s\"\n").unwrap();
    let mut argv = node_args(dir.path(), &["--config"]);
    argv.push(config.display().to_string());
    let node = launch_with_env(dir.path(), "env", &argv, &[("HAPLANE_PRIORITY", "7")])
        .await
        .running();
    let state = node.state().await;
    assert_eq!((state.node_id.as_str(), state.priority), ("from-file", 7));
    drop(node);
    argv.extend(args(&["--priority", "-2"]));
    let node = launch_with_env(dir.path(), "flag", &argv, &[("HAPLANE_PRIORITY", "7")])
        .await
        .running();
    assert_eq!(node.state().await.priority, -2);
}

#[tokio::test]
async fn the_pid_file_is_written_and_stop_terminates_the_node_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let argv = node_args(dir.path(), &["--node-id", "solo"]);
    let mut node: Node = launch(dir.path(), "solo", &argv).await.running();
    let pid_file = dir.path().join("pid.txt");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, node.pid());
    let output = run(dir.path(), &["stop"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(node.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(!pid_file.exists(), "pid file removed on exit");
    let record = std::fs::read_to_string(dir.path().join("store/nodes/solo.json")).unwrap();
    assert!(record.contains("\"TERMINATED\""), "{record}");
    let again = run(dir.path(), &["stop"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pid.txt"));
}

#[tokio::test]
async fn persist_disabled_runs_a_standalone_master_and_rebind_needs_a_plane() {
    let dir = tempfile::tempdir().unwrap();
    let node = launch(
        dir.path(),
        "alone",
        &args(&[
            "--bind",
            "127.0.0.1:0",
            "--persist",
            "disabled",
            "--node-id",
            "alone",
        ]),
    )
    .await
    .running();
    let state = node.state().await;
    assert_eq!(state.state, NodeState::Master as i32);
    assert_eq!(state.master_id, "alone");
    assert!(
        !dir.path().join("haplane-data").exists(),
        "no store was created"
    );
    drop(node);

    let (code, output) = launch(
        dir.path(),
        "rebind",
        &node_args(dir.path(), &["--persist", "rebind"]),
    )
    .await
    .exited();
    assert_eq!(code, Some(1));
    assert!(output.contains("rebind"), "{output}");
    // Once a plane exists, rebind starts.
    let first = launch(
        dir.path(),
        "first",
        &node_args(dir.path(), &["--node-id", "first"]),
    )
    .await
    .running();
    drop(first);
    let rebound = launch(
        dir.path(),
        "rebind2",
        &node_args(dir.path(), &["--persist", "rebind", "--node-id", "second"]),
    )
    .await;
    assert!(matches!(rebound, Launched::Running(_)));
}

#[tokio::test]
async fn the_operator_client_reads_and_hands_over() {
    use haplane_tests::{Plane, PlaneOptions};
    // Steady timings: the master must stay the same node across several CLI processes.
    let plane = Plane::start(2, PlaneOptions::steady()).await;
    let master = plane.wait_for_master(Duration::from_secs(20)).await;
    let endpoints = format!(
        "{},{}",
        plane.nodes[1 - master].grpc_uri(),
        plane.nodes[master].grpc_uri()
    );
    let ha = |argv: &[&str]| {
        let mut all = vec!["ha", "--endpoint", endpoints.as_str()];
        all.extend_from_slice(argv);
        let output = run(plane.dir.path(), &all);
        assert!(
            output.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let state: serde_json::Value = serde_json::from_str(&ha(&["--json", "state"])).unwrap();
    assert_eq!(state["state"], "MASTER");
    assert_eq!(state["nodeId"], plane.nodes[master].id.as_str());
    let states = ha(&["states"]);
    assert!(
        states.contains("HOT_STANDBY") && states.contains("MASTER"),
        "{states}"
    );
    assert_eq!(
        ha(&["--json", "--yes", "priority", "7"]).trim(),
        r#"{"previousPriority":0}"#
    );
    assert_eq!(ha(&["priority"]).trim(), "7");
    assert_eq!(
        ha(&["--yes", "set-state", "hot-standby"]).trim(),
        "previous state MASTER"
    );
    let new = plane
        .wait_for_new_master(master, Duration::from_secs(20))
        .await;
    assert_ne!(new, master);
    let bad = run(
        plane.dir.path(),
        &["ha", "--endpoint", &endpoints, "set-state", "primary"],
    );
    assert_eq!(bad.status.code(), Some(2));
    // A bad node id is a usage error too, found before anything is sent.
    for argv in [
        &["remove-terminated", "a/b"][..],
        &["promote", "../x"],
        &["switchover", "--to", "a b"],
        &["demote", ""],
        &["priority", "3", "--node", "x/y"],
    ] {
        let mut full = vec!["ha", "--yes", "--endpoint", &endpoints];
        full.extend_from_slice(argv);
        let bad = run(plane.dir.path(), &full);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{argv:?}: {stderr}");
    }
    let unreachable = run(
        plane.dir.path(),
        &[
            "ha",
            "--endpoint",
            "http://127.0.0.1:1",
            "--timeout",
            "1s",
            "state",
        ],
    );
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("no haplane endpoint"));
}

#[tokio::test]
async fn node_targeted_commands_reach_the_named_node_and_changes_need_confirmation() {
    use haplane_tests::{Plane, PlaneOptions};
    // Steady timings: the claim history is checked exactly, so no lease may lapse under load.
    let plane = Plane::start(3, PlaneOptions::steady()).await;
    let master = plane.wait_for_master(Duration::from_secs(20)).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != master).collect();
    let (a, b) = (others[0], others[1]);
    let endpoints = plane.nodes[master].grpc_uri();
    let ha = |argv: &[&str]| {
        let mut all = vec!["ha", "--endpoint", endpoints.as_str(), "--timeout", "20s"];
        all.extend_from_slice(argv);
        run(plane.dir.path(), &all)
    };
    let ok = |argv: &[&str]| {
        let output = ha(argv);
        assert!(
            output.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let id = |index: usize| plane.nodes[index].id.clone();
    // Without a terminal and without --yes, a change is refused and nothing changes.
    let refused = ha(&["priority", "--node", &id(b), "9"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let state_of = |index: usize| {
        let uri = plane.nodes[index].grpc_uri();
        async move {
            haplane_tests::try_state_at(&uri)
                .await
                .expect("node answers")
        }
    };
    assert_eq!(state_of(b).await.priority, 0);
    // priority --node sets that standby's priority, not the master's.
    ok(&["--yes", "priority", "--node", &id(b), "9"]);
    assert_eq!(state_of(b).await.priority, 9);
    assert_eq!(state_of(master).await.priority, 0);
    // list is a table of every node; --output json is one document.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "list"])).unwrap();
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 3, "{listed}");
    // switchover to b: b becomes master (the old one hands over), and the answer says so.
    let moved: serde_json::Value = serde_json::from_str(&ok(&[
        "--yes",
        "--output",
        "json",
        "switchover",
        "--to",
        &id(b),
    ]))
    .unwrap();
    assert_eq!(moved["to"], id(b).as_str(), "{moved}");
    assert_eq!(moved["from"], id(master).as_str(), "{moved}");
    assert_eq!(plane.wait_for_master(Duration::from_secs(20)).await, b);
    let again = ha(&["--yes", "switchover", "--to", &id(b)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already master"));
    // promote a; then demote a: the master role moves on (to b, the highest priority).
    ok(&["--yes", "promote", &id(a)]);
    assert_eq!(plane.wait_for_master(Duration::from_secs(20)).await, a);
    let demoted = ok(&["--yes", "demote", &id(a)]);
    assert!(demoted.contains("was MASTER"), "{demoted}");
    let next = plane.wait_for_new_master(a, Duration::from_secs(20)).await;
    assert_ne!(next, a);
    // history: one claim per epoch, newest first, naming each master in turn.
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["--output", "json", "history"])).unwrap();
    let masters: Vec<&str> = history["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|claim| claim["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(
        masters,
        [id(next), id(a), id(b), id(master)]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "{history}"
    );
    let epochs: Vec<u64> = history["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|claim| claim["epoch"].as_u64().unwrap())
        .collect();
    assert!(
        epochs.windows(2).all(|pair| pair[0] > pair[1]),
        "{epochs:?}"
    );
    let table = ok(&["history", "--limit", "2"]);
    assert_eq!(table.lines().count(), 3, "a header and two epochs: {table}");
    let rest: serde_json::Value =
        reqwest::get(plane.nodes[next].url("/v1/server/ha/history?limit=1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(rest["claims"][0]["nodeId"], id(next).as_str(), "{rest}");
    let unknown = ha(&["--yes", "promote", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node"));
}

#[test]
fn config_check_names_each_settings_source_and_fails_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "poll_period = \"500ms\"\npriority = 3\nmax_watchers = 100\n",
    )
    .unwrap();
    let output = std::process::Command::new(haplane_binary())
        .args([
            "config",
            "check",
            "--config",
            "node.toml",
            "--priority",
            "7",
            "--auth-user",
            "admin",
        ])
        .env("HAPLANE_HEARTBEAT_TIMEOUT", "4s")
        .env("HAPLANE_AUTH_PASSWORD", "sekret")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let source_of = |setting: &str| {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(setting))
            .unwrap_or_else(|| panic!("{setting} in {text}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A flag beats the file; the environment and the file are named as such; a secret is masked.
    assert_eq!(source_of("priority"), "command line 7");
    assert_eq!(source_of("poll_period"), "config file \"500ms\"");
    assert_eq!(source_of("heartbeat_timeout"), "environment 4s");
    assert_eq!(source_of("auth_password"), "environment ***");
    assert!(!text.contains("sekret"), "{text}");
    assert!(
        text.contains("defaults: ") && text.contains("safety_margin"),
        "{text}"
    );
    // The effective values, as launch would use them.
    assert!(text.contains("priority             7"), "{text}");
    assert!(text.contains("heartbeat_timeout    4s"), "{text}");
    assert!(text.contains("max_watchers: 100"), "{text}");
    let bad = run(
        dir.path(),
        &["config", "check", "--heartbeat-timeout", "100ms"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--heartbeat-timeout"));
}
