//! `haplane stop`: signal the process named in the PID file and wait for it to exit.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why `haplane stop` failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot read pid file {path}: {source}")]
    ReadPidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pid file {0} does not hold a process id")]
    NoPid(PathBuf),
    #[error("cannot signal process {pid}: {source}")]
    Signal {
        pid: libc::pid_t,
        source: std::io::Error,
    },
    #[error("process {pid} did not exit within {}", humantime::format_duration(*.wait))]
    StillRunning { pid: libc::pid_t, wait: Duration },
}

/// Whether `pid` exists and has not exited (an exited child its parent has not reaped yet is a
/// zombie: it has stopped, so it counts as gone).
fn process_is_running(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state letter follows the parenthesised command name.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    state != Some("Z")
}

/// `haplane stop`: SIGTERM to the PID in `pid_file`, then wait (up to `wait`) for it to exit.
pub async fn stop(pid_file: &Path, wait: Duration) -> Result<(), StopError> {
    let text = std::fs::read_to_string(pid_file).map_err(|source| StopError::ReadPidFile {
        path: pid_file.to_owned(),
        source,
    })?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| StopError::NoPid(pid_file.to_owned()))?;
    // SAFETY: kill with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(StopError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let deadline = tokio::time::Instant::now() + wait;
    while process_is_running(pid) {
        if tokio::time::Instant::now() >= deadline {
            return Err(StopError::StillRunning { pid, wait });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
