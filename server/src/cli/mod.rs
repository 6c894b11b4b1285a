//! The operator's commands: the client of running nodes (`haplane ha …`, built on the SDK), the
//! settings check (`haplane config check`) and the managed-state repair that works on the store
//! itself (`haplane state …`).

pub mod config;
pub mod ha;
pub mod state;
