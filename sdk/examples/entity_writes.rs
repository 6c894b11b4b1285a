//! Managed-state writes through failovers: creates an entity only if it is absent, updates it
//! only at the version read (a compare-and-set), and deletes it. Each write carries one
//! idempotency key, so the SDK retries it across a failover and the master applies it once.
//!
//! ```text
//! cargo run -p haplane-sdk --example entity_writes -- http://127.0.0.1:8081 [http://127.0.0.1:8082 ...]
//! ```

use haplane_sdk::{Client, ConnectOptions, Error, Reason};
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let options = ConnectOptions::default().with_failover_timeout(Duration::from_secs(30));
    let client = Client::connect(endpoints, options).await?;

    let id = "examples/counter";
    // Version 0: create only if absent. Run twice, the second run finds it and goes on.
    match client.put_entity(id, json!({"count": 0}), Some(0)).await {
        Ok(created) => println!("created {id}: version {}", created.version),
        Err(err) if err.reason() == Some(&Reason::VersionConflict) => {
            println!("{id} exists already")
        }
        Err(err) => return Err(err),
    }

    // Compare-and-set: increment at the version just read; a concurrent writer makes it fail
    // with VersionConflict, and the loop reads again.
    for _ in 0..3 {
        let current = client.get_entity(id).await?;
        let next = current.attributes["count"].as_i64().unwrap_or(0) + 1;
        match client
            .put_entity(id, json!({"count": next}), Some(current.version))
            .await
        {
            Ok(updated) => println!("count {next}: version {}", updated.version),
            Err(err) if err.reason() == Some(&Reason::VersionConflict) => {
                println!("lost a race at version {}; reading again", current.version)
            }
            Err(err) => return Err(err),
        }
    }

    let last = client.get_entity(id).await?;
    println!("final count {}", last.attributes["count"]);
    let deleted = client.delete_entity(id, Some(last.version)).await?;
    println!("deleted {id} at log position {deleted}");
    Ok(())
}
