//! The protobuf codec of every haplane service: prost's, except that a message that cannot be
//! decoded is `INVALID_ARGUMENT` (the caller sent it) rather than tonic's `INTERNAL`.

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// `ProstCodec` with caller-facing decode errors.
#[derive(Debug)]
pub struct HaplaneCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for HaplaneCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::new())
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
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        HaplaneDecoder(self.0.decoder())
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
