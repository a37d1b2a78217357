//! Generated gRPC code for `himaya.v1` and the conversions between wire messages and the
//! domain types of `himaya-record`. Wire types stop here: services work on domain types.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("himaya.v1");
}

/// The encoded descriptor set, served by gRPC reflection so `grpcurl` works unaided.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/himaya_descriptor.bin"));

/// The codec the generated clients and servers use, for a hand-made call (a test that
/// sends bytes no generated type can hold).
pub use tonic_prost::ProstCodec;

pub mod convert;
pub mod status;
