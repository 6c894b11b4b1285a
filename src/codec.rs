//! The protobuf codec of every haplane service: prost's, except that a message that cannot be
//! decoded is `INVALID_ARGUMENT` (the caller sent it) rather than tonic's `INTERNAL`, and that
//! each call starts with a 1 KiB buffer instead of 8 KiB.

use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// haplane's messages are small: a master event or a state answer is a few hundred bytes, and a
/// larger one grows its buffer. Each open stream holds one buffer per direction, so tonic's 8 KiB
/// default made up most of the memory a node spends per watcher.
fn buffer_settings() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// `ProstCodec` with caller-facing decode errors and small buffers.
#[derive(Debug)]
pub struct HaplaneCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for HaplaneCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for HaplaneCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = HaplaneDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        HaplaneDecoder(ProstDecoder::new(buffer_settings()))
    }
}

/// Decodes like `ProstDecoder`, reporting undecodable input as `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct HaplaneDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for HaplaneDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("malformed protobuf message: {}", status.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
