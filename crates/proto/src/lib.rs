//! Generated gRPC code for `himaya.v1` and the conversions between wire messages and the
//! domain types of `himaya-record`. Wire types stop here: services work on domain types.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("himaya.v1");
}

/// The encoded descriptor set, served by gRPC reflection so `grpcurl` works unaided.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/himaya_descriptor.bin"));

pub mod convert;
pub mod status;
