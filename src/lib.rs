//! haplane's wire contract: the generated protobuf types (`pb`) and the plain domain types the
//! server and SDK share, with one conversion module between them.

#![warn(missing_docs)]
#![warn(clippy::clone_on_ref_ptr)]

pub mod codec;
pub mod convert;
pub mod domain;
pub mod wire;

pub use domain::*;

/// Generated protobuf messages and tonic services for `haplane.v1`. The generated code is not
/// ours to document or restyle, so the crate's lints are off here.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::clone_on_ref_ptr)]
pub mod pb {
    tonic::include_proto!("haplane.v1");

    /// Encoded descriptor set of `proto/`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/haplane_descriptor.bin"));
}
