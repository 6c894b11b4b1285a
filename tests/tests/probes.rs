//! Probes and metrics an orchestrator and a scraper act on, against real nodes: `/livez` and
//! `/readyz` answer with status codes and name each check, a node whose store is unreachable
//! stays live but not ready, `/metrics` is labelled OpenMetrics (plain text 0.0.4 when asked) and
//! carries the build, lease, member, lag and store-latency series, and `haplane_failovers_total`
//! counts changes of master, not the first election.

use haplane_tests::{Plane, PlaneOptions, eventually};
use serde_json::Value;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

async fn probe(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("probe answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn failovers(url: String) -> Option<u64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("haplane_failovers_total "))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn a_standalone_node_is_live_and_ready_without_polls_or_a_record() {
    let mut plane = Plane::new(PlaneOptions::fast());
    let solo = plane
        .add("solo", &["--ha-mode".into(), "disabled".into()])
        .await;
    // Past two heartbeat timeouts and a poll: a polling node that never polled would be unlive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in ["/livez", "/readyz"] {
        let (status, body) = probe(plane.nodes[solo].url(path)).await;
        assert_eq!(
            (status, &body["ok"]),
            (200, &Value::Bool(true)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn probes_answer_with_codes_and_a_failover_is_counted_once() {
    let mut plane = Plane::start(
        1,
        PlaneOptions {
            per_node_faults: true,
            // The failover counter must move exactly once: steady timings keep the master's lease
            // through the seconds of set-up before the kill.
            ..PlaneOptions::steady()
        },
    )
    .await;
    let master = plane.wait_for_master(DEADLINE).await;
    let hot = plane.add("hot", &[]).await;
    let cold = plane
        .add("cold", &["--ha-mode".into(), "standby".into()])
        .await;
    for index in [master, hot, cold] {
        let url = plane.nodes[index].url("/readyz");
        let body = eventually(DEADLINE, "every node ready", || async {
            let (status, body) = probe(url.clone()).await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(body["ok"], true, "{body}");
        assert_eq!(body["checks"]["managed state"], "ok", "{body}");
        let (status, live) = probe(plane.nodes[index].url("/livez")).await;
        assert_eq!((status, &live["ok"]), (200, &Value::Bool(true)), "{live}");
    }
    // The hot standby's store becomes unreachable: still live, no longer ready, and it says why.
    let hot_id = plane.nodes[hot].id.clone();
    plane.set_faults(&hot_id, "outage = true\n");
    let url = plane.nodes[hot].url("/readyz");
    let body = eventually(DEADLINE, "the hot standby to be unready", || async {
        let (status, body) = probe(url.clone()).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        body["checks"]["store"]
            .as_str()
            .unwrap()
            .contains("no heartbeat written"),
        "{body}"
    );
    let (status, live) = probe(plane.nodes[hot].url("/livez")).await;
    assert_eq!(status, 200, "{live}");
    plane.set_faults(&hot_id, "");
    eventually(DEADLINE, "the hot standby to be ready again", || async {
        (probe(url.clone()).await.0 == 200).then_some(())
    })
    .await;
    // Metrics: OpenMetrics by default, the Prometheus text format when only that is accepted.
    let http = reqwest::Client::new();
    let content_type = |accept: Option<&'static str>| {
        let mut request = http.get(plane.nodes[cold].url("/metrics"));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        async move {
            let response = request.send().await.unwrap();
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert!(
        content_type(None)
            .await
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    assert!(
        content_type(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        ))
        .await
        .starts_with("application/openmetrics-text")
    );
    assert!(
        content_type(Some("text/plain;version=0.0.4"))
            .await
            .starts_with("text/plain; version=0.0.4")
    );
    // The series an operator needs: build, lease left on the master only, live members, the
    // managed-state lag and store latency by operation.
    let text = |index: usize| {
        let url = plane.nodes[index].url("/metrics");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let gauge = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let on_master = text(master).await;
    assert!(
        on_master.contains("haplane_build_info{version=\""),
        "{on_master}"
    );
    assert!(gauge(&on_master, "haplane_lease_remaining_seconds") > 0.0);
    assert_eq!(
        gauge(&text(cold).await, "haplane_lease_remaining_seconds"),
        0.0
    );
    // A master reads its peers' records only in full scans (ListStates, its clean-up): the count
    // is as of the last one.
    let master_node = &plane.nodes[master];
    eventually(DEADLINE, "three live members after scans", || async {
        let mut client = master_node.client().await;
        client
            .list_states(haplane_tests::haplane::pb::ListStatesRequest {})
            .await
            .ok()?;
        (gauge(&text(master).await, "haplane_live_members") == 3.0).then_some(())
    })
    .await;
    assert_eq!(gauge(&on_master, "haplane_state_lag_entries"), 0.0);
    assert!(
        on_master.contains("haplane_store_request_seconds_count{operation=\"put_overwrite\"}"),
        "{on_master}"
    );
    // The first election is no failover; a kill -9 of the master is one, seen by every node.
    let metrics = plane.nodes[cold].url("/metrics");
    assert_eq!(failovers(metrics.clone()).await, Some(0));
    plane.nodes[master].kill9().await;
    plane.wait_for_new_master(master, DEADLINE).await;
    for index in [hot, cold] {
        let url = plane.nodes[index].url("/metrics");
        eventually(DEADLINE, "the failover counted", || async {
            (failovers(url.clone()).await == Some(1)).then_some(())
        })
        .await;
    }
}
