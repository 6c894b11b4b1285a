//! S3-compatible servers for the tests: moto (from the project venv, see scripts/setup-s3.sh) on
//! a free loopback port, and a lying server that accepts every PUT, ignoring conditions.

use crate::{eventually, free_port, workspace_root};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Dummy credentials moto accepts.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing-secret";

/// The environment a `haplane` process needs to reach moto.
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A running moto server, stopped on drop.
#[derive(Debug)]
pub struct MotoServer {
    pub endpoint: String,
    _child: Child,
}

impl MotoServer {
    pub async fn start() -> Self {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        assert!(
            root.join(".venv/bin/moto_server").exists(),
            "moto is not installed: run scripts/setup-s3.sh"
        );
        let port = free_port();
        // moto behind a lock: see scripts/moto_serial.py (its conditional PUT is not atomic).
        let child = Command::new(python)
            .arg(root.join("scripts/moto_serial.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let probe = endpoint.clone();
        eventually(Duration::from_secs(60), "moto to answer", || {
            let probe = probe.clone();
            async move { reqwest::get(&probe).await.ok().map(|_| ()) }
        })
        .await;
        Self {
            endpoint,
            _child: child,
        }
    }

    /// Creates `bucket` (path-style PUT).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }
}

/// An "S3" server that answers 200 to every request and so ignores `If-None-Match`. Returns its
/// endpoint; it runs until the test's runtime ends.
pub async fn start_lying_s3() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                // One request per connection is enough for the probe; read what arrives, answer OK.
                let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buffer))
                    .await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    endpoint
}
