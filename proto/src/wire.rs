//! Crate-private wire helpers: nom primitives over plain `&[u8]` with a unit error (every
//! caller maps a short read to the RFC error its region calls for), and length patching for
//! the encoders.

use bytes::BytesMut;
use nom::error::{ErrorKind, ParseError};
use nom::IResult;

use crate::error::{check_len, EncodeError};

/// The nom error used inside frames: the only failure a primitive reports is "too short";
/// the caller knows which RFC error that is in its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short;

impl<I> ParseError<I> for Short {
    fn from_error_kind(_input: I, _kind: ErrorKind) -> Self {
        Short
    }
    fn append(_input: I, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

/// A nom result over bytes with [`Short`] errors.
pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, Short>;

/// One octet.
pub(crate) fn u8_(i: &[u8]) -> PResult<'_, u8> {
    nom::number::complete::be_u8(i)
}

/// Two octets, network order.
pub(crate) fn u16_(i: &[u8]) -> PResult<'_, u16> {
    nom::number::complete::be_u16(i)
}

/// Four octets, network order.
pub(crate) fn u32_(i: &[u8]) -> PResult<'_, u32> {
    nom::number::complete::be_u32(i)
}

/// `n` octets.
pub(crate) fn take_(n: usize) -> impl Fn(&[u8]) -> PResult<'_, &[u8]> {
    move |i| nom::bytes::complete::take(n)(i)
}

/// A region prefixed by a one-octet length.
pub(crate) fn len8_data(i: &[u8]) -> PResult<'_, &[u8]> {
    nom::multi::length_data(nom::number::complete::be_u8)(i)
}

/// Writes the length of everything after `pos + width` into the `width`-octet field at
/// `pos`, checking that it fits.
pub(crate) fn patch_len(
    out: &mut BytesMut,
    pos: usize,
    width: usize,
    field: &'static str,
) -> Result<(), EncodeError> {
    let len = out.len() - pos - width;
    match width {
        1 => {
            check_len(field, len, usize::from(u8::MAX))?;
            out[pos] = u8::try_from(len).map_err(|_| too_large(field, len, u8::MAX.into()))?;
        }
        _ => {
            check_len(field, len, usize::from(u16::MAX))?;
            let v = u16::try_from(len).map_err(|_| too_large(field, len, u16::MAX.into()))?;
            out[pos..pos + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
    Ok(())
}

fn too_large(field: &'static str, actual: usize, max: usize) -> EncodeError {
    EncodeError::TooLarge { field, actual, max }
}

/// Runs `f` appending to `out`; on error, `out` is restored to its length before the call,
/// so a failed encode never leaves a partial message behind.
pub(crate) fn atomic<T>(
    out: &mut BytesMut,
    f: impl FnOnce(&mut BytesMut) -> Result<T, EncodeError>,
) -> Result<T, EncodeError> {
    let start = out.len();
    let r = f(out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}
