//! Decode: one vendor format per file, each turning a payload into `Observation`s. Pure and
//! synchronous; every failure is a `DecodeError` with a stable reason code.

use jiff::Timestamp;

use crate::config::FeedConfig;
use crate::model::{Observation, Rejection};

/// The decoder of one feed (a closed set: one variant per supported format).
#[derive(Debug, Clone)]
pub enum Decoder {
    Placeholder,
}

impl Decoder {
    pub fn for_feed(_feed: &FeedConfig) -> Decoder {
        Decoder::Placeholder
    }

    /// Decode one message. `received_at` is used only where the format defines "now" (SenML
    /// records without a time).
    pub fn decode(
        &self,
        _topic: &str,
        _payload: &[u8],
        _received_at: Timestamp,
    ) -> Result<Vec<Observation>, DecodeError> {
        Err(DecodeError::Empty)
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        "empty_payload"
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Rejection {
        Rejection::new(e.reason(), e.to_string())
    }
}
