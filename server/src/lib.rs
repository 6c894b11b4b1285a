//! haplane-server: one HA node. The election core is pure (`election`), the runtime loop
//! (`node`) drives it against a `Store`, and gRPC / REST adapters serve one `HaCore`.

pub mod store;
pub mod clock;
pub mod election;
