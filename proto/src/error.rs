//! Decode and encode errors. Placeholder to be completed by the codec work.
use thiserror::Error;

/// A failure to decode a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// RFC 4271 §6.1: the marker is not all ones.
    #[error("connection not synchronized: bad marker")]
    ConnectionNotSynchronized,
}

/// A failure to encode a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A field does not fit its wire width.
    #[error("{field} too large: {actual} > {max}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size.
        actual: usize,
        /// The largest allowed.
        max: usize,
    },
}
