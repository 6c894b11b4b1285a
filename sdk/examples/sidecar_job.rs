//! A sidecar job: it runs beside one haplane node and does leader-only work while that node
//! leads, following the node's own role over `WatchRole` (`LocalRole`), not the master. Every
//! unit of work is appended to a file as `<epoch> <wall-clock ms>`, the time taken before the
//! term is checked, so a unit is only ever recorded inside a valid term.
//!
//! ```text
//! cargo run -p haplane-sdk --example sidecar_job -- http://127.0.0.1:8081 /tmp/units
//! ```

use haplane_sdk::{ConnectOptions, LocalRole};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn wall_clock_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(node), Some(units)) = (args.next(), args.next()) else {
        eprintln!("usage: sidecar_job NODE_URI UNITS_FILE [POLL_MS]");
        std::process::exit(2);
    };
    let poll = Duration::from_millis(args.next().map_or(Ok(1000), |ms| ms.parse())?);
    let options = ConnectOptions::default().with_poll_period(poll);
    let role = LocalRole::follow(&node, &options)?;
    let mut units = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(units)?;
    loop {
        let term = role.leader().await;
        println!("leading in epoch {}", term.epoch());
        loop {
            let at = wall_clock_ms();
            if !term.is_valid() {
                break;
            }
            units.write_all(format!("{} {at}\n", term.epoch()).as_bytes())?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("term {} ended", term.epoch());
    }
}
