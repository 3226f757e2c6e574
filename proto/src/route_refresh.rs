//! The ROUTE-REFRESH message (RFC 2918 §3) with the RFC 7313 message subtypes.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtyp|  SAFI |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;
use crate::iana::{Afi, Safi};
use crate::message::HEADER_LEN;

/// ROUTE-REFRESH subtype (RFC 7313 §3.2): the "Reserved" octet of RFC 2918.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: normal route refresh request.
    Request,
    /// 1: Beginning of Route Refresh (BoRR).
    Begin,
    /// 2: End of Route Refresh (EoRR).
    End,
    /// Any other value (RFC 7313 §5: ignore on receipt).
    Unknown(u8),
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefreshMessage {
    /// Address family.
    pub afi: Afi,
    /// Subtype (RFC 7313).
    pub subtype: RefreshSubtype,
    /// Subsequent address family.
    pub safi: Safi,
}

impl From<u8> for RefreshSubtype {
    fn from(v: u8) -> Self {
        match v {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::Begin,
            2 => RefreshSubtype::End,
            other => RefreshSubtype::Unknown(other),
        }
    }
}

impl From<RefreshSubtype> for u8 {
    fn from(v: RefreshSubtype) -> u8 {
        match v {
            RefreshSubtype::Request => 0,
            RefreshSubtype::Begin => 1,
            RefreshSubtype::End => 2,
            RefreshSubtype::Unknown(other) => other,
        }
    }
}

impl RouteRefreshMessage {
    /// A plain route refresh request (RFC 2918) for one family.
    pub fn request(afi: Afi, safi: Safi) -> Self {
        RouteRefreshMessage {
            afi,
            subtype: RefreshSubtype::Request,
            safi,
        }
    }

    /// Decodes a ROUTE-REFRESH body. `frame` is the whole message, echoed in the RFC 7313 §5
    /// NOTIFICATION when a BoRR/EoRR has the wrong length; any other wrong length is a
    /// header Bad Message Length (RFC 4271 §6.1).
    pub fn decode_body(body: &[u8], frame: &[u8]) -> Result<RouteRefreshMessage, DecodeError> {
        match body {
            [a0, a1, subtype, safi] => Ok(RouteRefreshMessage {
                afi: Afi::from(u16::from_be_bytes([*a0, *a1])),
                subtype: RefreshSubtype::from(*subtype),
                safi: Safi::from(*safi),
            }),
            [_, _, 1 | 2, ..] => Err(DecodeError::InvalidRouteRefreshLength {
                message: frame.to_vec(),
            }),
            _ => Err(DecodeError::BadMessageLength {
                len: u16::try_from(body.len() + HEADER_LEN).unwrap_or(u16::MAX),
            }),
        }
    }

    /// Appends the ROUTE-REFRESH body.
    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u16(u16::from(self.afi));
        out.put_u8(u8::from(self.subtype));
        out.put_u8(u8::from(self.safi));
    }
}
