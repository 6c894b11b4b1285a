//! Prints each change of master of a plane: `cargo run -p haplane-sdk --example follow_master -- http://127.0.0.1:8081`

use haplane_sdk::{Client, ConnectOptions};

#[tokio::main]
async fn main() -> Result<(), haplane_sdk::Error> {
    let endpoints: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::connect(endpoints, ConnectOptions::default()).await?;
    let mut views = client.watch_master();
    loop {
        if let Some(view) = views.borrow_and_update().as_ref() {
            match &view.master {
                Some(master) => {
                    println!("epoch {}: master {} {}", view.epoch, master.id, master.uri)
                }
                None => println!("epoch {}: master (none)", view.epoch),
            }
        }
        if views.changed().await.is_err() {
            return Ok(());
        }
    }
}
