//! haplane-sdk: a client of a haplane plane that follows the master over `WatchMaster` (pushed,
//! never polled) and routes calls to it, riding out failovers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), haplane_sdk::Error> {
//! use haplane_sdk::{Client, ConnectOptions};
//! let client = Client::connect(["http://127.0.0.1:8081"], ConnectOptions::default()).await?;
//! let mut views = client.watch_master();
//! while views.changed().await.is_ok() {
//!     if let Some(view) = views.borrow().as_ref() {
//!         println!("epoch {}: master {}", view.epoch, view.master_id());
//!     }
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]
#![warn(clippy::clone_on_ref_ptr)]

mod answers;
mod client;
mod endpoint;
mod entities;
mod entity_reads;
mod error;
mod follow;
mod follower;
mod local_role;
mod master_channel;
mod node_calls;
mod options;
mod probe;
mod transport;
mod view_filter;

pub use answers::{ClaimInfo, Entity, NodeInfo, PlaneStates, StateInfo, Stats};
pub use client::Client;
pub use endpoint::{EndpointOptions, endpoint, is_https};
pub use entity_reads::{EntityChange, ReplicaRead};
pub use error::{Error, Reason};
pub use haplane::{HaMode, MasterRef, MasterView, Member, NodeState};
pub use local_role::{LeaderTerm, LocalRole, NodeRole};
pub use master_channel::MasterChannel;
pub use options::ConnectOptions;
pub use transport::{Credentials, NodeChannel};
pub use view_filter::ViewFilter;
