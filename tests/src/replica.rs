//! A replica of the embedded-participant example (`server/examples/leader_only_job.rs`) as a
//! child process: started on a directory store with poll 100 ms and timeout 1 s, signalled, its
//! store faults set through its own control file, and its units of work read back.

use crate::leader_only_job_binary;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// One replica of the example job.
pub struct Replica {
    pub id: String,
    pub units: PathBuf,
    pub faults: PathBuf,
    pub log: PathBuf,
    pub store: PathBuf,
    pub child: Option<Child>,
}

impl Replica {
    pub fn new(dir: &Path, id: &str) -> Self {
        Replica {
            id: id.to_owned(),
            units: dir.join(format!("{id}.units")),
            faults: dir.join(format!("{id}.faults")),
            log: dir.join(format!("{id}.log")),
            store: dir.join("store"),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(leader_only_job_binary())
            .args(["--dir", self.store.to_str().unwrap(), "--id", &self.id])
            .args(["--units", self.units.to_str().unwrap()])
            .args(["--poll-period", "100ms", "--heartbeat-timeout", "1s"])
            .env("HAPLANE_TEST_STORE_FAULTS", &self.faults)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start leader_only_job");
        self.child = Some(child);
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        // SAFETY: a signal to our own child.
        let rc = unsafe { libc::kill(i32::try_from(pid).expect("pid"), signal) };
        assert_eq!(rc, 0, "kill {signal} {}", self.id);
    }

    pub async fn wait_exit(&mut self) {
        if let Some(mut child) = self.child.take() {
            let waited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
            assert!(waited.is_ok(), "{} did not exit", self.id);
        }
    }

    pub fn units_text(&self) -> String {
        std::fs::read_to_string(&self.units).unwrap_or_default()
    }
}

/// Replicas named `ids`, on one store in `dir`, each started.
pub fn start_all(dir: &Path, ids: &[&str]) -> Vec<Replica> {
    ids.iter()
        .map(|id| {
            let mut replica = Replica::new(dir, id);
            replica.start();
            replica
        })
        .collect()
}

/// Waits (up to 30 s) for one of `replicas` to be working in an epoch above `after_epoch`;
/// answers its index and epoch.
pub async fn leader_after(replicas: &[Replica], after_epoch: u64) -> (usize, u64) {
    let units: Vec<PathBuf> = replicas.iter().map(|r| r.units.clone()).collect();
    crate::spans::working_after(&units, after_epoch).await
}

/// Resigns every replica still running and waits for it to exit.
pub async fn stop_all(replicas: &mut [Replica]) {
    for replica in replicas {
        if replica.child.is_some() {
            replica.signal(libc::SIGTERM);
            replica.wait_exit().await;
        }
    }
}

/// Every replica's units of work, by id, as `spans::spans` reads them.
pub fn all_units(replicas: &[Replica]) -> Vec<(String, String)> {
    replicas
        .iter()
        .map(|replica| (replica.id.clone(), replica.units_text()))
        .collect()
}
