//! A client of a plane served over TLS with authentication (nodes started with `--tls-cert`,
//! `--tls-key` and `--auth-user`): trusts the plane's CA besides the system roots and sends the
//! credentials with every call. The password comes from the environment, never the command line.
//!
//! ```text
//! HAPLANE_USER=ops HAPLANE_PASSWORD=... cargo run -p haplane-sdk --example tls_and_auth -- \
//!     ca.pem https://node-1.internal:8081 https://node-2.internal:8081
//! ```

use haplane_sdk::{Client, ConnectOptions, Credentials};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(ca_file) = args.next() else {
        eprintln!("usage: tls_and_auth CA_PEM_FILE HTTPS_URI...");
        std::process::exit(2);
    };
    let endpoints: Vec<String> = args.collect();
    let user = std::env::var("HAPLANE_USER")?;
    let password = std::env::var("HAPLANE_PASSWORD")?;
    let options = ConnectOptions::default()
        .with_ca_pem(std::fs::read(&ca_file)?)
        .with_credentials(Credentials::new(user, password));
    let client = Client::connect(endpoints, options).await?;
    let master = client.get_state().await?;
    println!(
        "master {} in epoch {}, state {:?}",
        master.node_id, master.epoch, master.state
    );
    for node in client.list_states().await?.nodes {
        println!("node {} {:?} {}", node.node_id, node.status, node.node_uri);
    }
    Ok(())
}
