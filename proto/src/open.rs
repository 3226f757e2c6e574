//! The OPEN message (RFC 4271 §4.2) with optional parameters (RFC 5492, RFC 9072).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use crate::capability::Capability;
use crate::error::{DecodeError, EncodeError};
use crate::message::HEADER_LEN;
use crate::wire::{patch_len, take_, u16_, u32_, u8_};

/// The BGP version this crate speaks.
pub const BGP_VERSION: u8 = 4;
/// The smallest OPEN body (RFC 4271 §4.2): version to Opt Parm Len.
pub const MIN_OPEN_BODY_LEN: usize = 10;
/// AS_TRANS (RFC 6793 §9): the 2-octet stand-in for a 4-octet ASN.
pub const AS_TRANS: u16 = 23456;
/// Optional parameter type Capabilities (RFC 5492 §4).
pub const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: the Non-Ext OP Type value announcing the extended parameter format.
const PARAM_EXTENDED_LENGTH: u8 = 255;

/// A decoded or to-be-sent OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMessage {
    /// BGP version; always 4 on a message we accept.
    pub version: u8,
    /// The 2-octet "My Autonomous System" field: the real ASN, or AS_TRANS (23456) when the
    /// speaker's ASN needs 4 octets (RFC 6793 §4.1). The 4-octet ASN travels in
    /// [`Capability::FourOctetAs`].
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3 (RFC 4271 §4.2).
    pub hold_time: u16,
    /// BGP Identifier.
    pub bgp_identifier: Ipv4Addr,
    /// Capabilities, in the order they appear on the wire. Each Capabilities optional
    /// parameter (type 2) may carry several; we flatten them.
    pub capabilities: Vec<Capability>,
}

impl OpenMessage {
    /// The speaker's real ASN: the 4-octet AS capability if present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs { asn } => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
}

impl OpenMessage {
    /// Builds an OPEN for `asn`, putting AS_TRANS in `my_as` when the ASN needs 4 octets
    /// (RFC 6793 §4.1) and adding the 4-octet AS capability if it is missing.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Self {
        let mut capabilities = capabilities;
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs { .. }))
        {
            capabilities.push(Capability::FourOctetAs { asn });
        }
        OpenMessage {
            version: BGP_VERSION,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_identifier,
            capabilities,
        }
    }

    /// Decodes an OPEN body (after the 19-octet header), RFC 4271 §4.2, §6.2, RFC 9072.
    pub fn decode_body(body: &[u8]) -> Result<OpenMessage, DecodeError> {
        let bad_len = || DecodeError::BadMessageLength {
            len: u16::try_from(body.len() + HEADER_LEN).unwrap_or(u16::MAX),
        };
        let malformed = DecodeError::MalformedOptionalParameter {
            capability_code: None,
        };
        let (i, version) = u8_(body).map_err(|_| bad_len())?;
        let (i, my_as) = u16_(i).map_err(|_| bad_len())?;
        let (i, hold_time) = u16_(i).map_err(|_| bad_len())?;
        let (i, id) = u32_(i).map_err(|_| bad_len())?;
        let (i, opt_len) = u8_(i).map_err(|_| bad_len())?;
        if version != BGP_VERSION {
            return Err(DecodeError::UnsupportedVersionNumber { version });
        }
        if my_as == 0 {
            // RFC 7607 §2.
            return Err(DecodeError::BadPeerAs { asn: 0 });
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::UnacceptableHoldTime { hold_time });
        }
        let bgp_identifier = Ipv4Addr::from(id);
        if id == 0 {
            // RFC 6286 §2.2: the identifier is a non-zero 4-octet value.
            return Err(DecodeError::BadBgpIdentifier {
                identifier: bgp_identifier,
            });
        }
        // RFC 9072 §2: a first parameter type of 255 announces 2-octet lengths.
        let extended = opt_len != 0 && i.first() == Some(&PARAM_EXTENDED_LENGTH);
        let params = if extended {
            let (i, _) = u8_(i).map_err(|_| malformed.clone())?;
            let (i, ext_len) = u16_(i).map_err(|_| malformed.clone())?;
            let (rest, params) = take_(usize::from(ext_len))(i).map_err(|_| malformed.clone())?;
            if !rest.is_empty() {
                return Err(malformed);
            }
            params
        } else {
            let (rest, params) = take_(usize::from(opt_len))(i).map_err(|_| malformed.clone())?;
            if !rest.is_empty() {
                return Err(malformed);
            }
            params
        };
        let mut capabilities = Vec::new();
        let mut p = params;
        while !p.is_empty() {
            let (i, param_type) = u8_(p).map_err(|_| malformed.clone())?;
            let (i, len) = if extended {
                u16_(i).map_err(|_| malformed.clone())?
            } else {
                let (i, l) = u8_(i).map_err(|_| malformed.clone())?;
                (i, u16::from(l))
            };
            let (rest, value) = take_(usize::from(len))(i).map_err(|_| malformed.clone())?;
            p = rest;
            if param_type != PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { param_type });
            }
            let mut c = value;
            while !c.is_empty() {
                let bad = DecodeError::MalformedOptionalParameter {
                    capability_code: c.first().copied(),
                };
                let (i, code) = u8_(c).map_err(|_| bad.clone())?;
                let (i, clen) = u8_(i).map_err(|_| bad.clone())?;
                let (rest, cval) = take_(usize::from(clen))(i).map_err(|_| bad.clone())?;
                c = rest;
                capabilities.push(Capability::decode_value(code, cval)?);
            }
        }
        Ok(OpenMessage {
            version,
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        })
    }

    /// Appends the OPEN body. All capabilities go in one Capabilities parameter; when they
    /// exceed 255 octets the RFC 9072 extended format is used.
    pub(crate) fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_u32(u32::from(self.bgp_identifier));
        let mut caps = BytesMut::new();
        for c in &self.capabilities {
            c.encode(&mut caps)?;
        }
        if caps.is_empty() {
            out.put_u8(0);
        } else if caps.len() + 2 <= usize::from(u8::MAX) {
            out.put_u8(u8::try_from(caps.len() + 2).unwrap_or(u8::MAX));
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u8(u8::try_from(caps.len()).unwrap_or(u8::MAX));
            out.put_slice(&caps);
        } else {
            // RFC 9072 §2: Non-Ext OP Len 255, Non-Ext OP Type 255, 2-octet lengths.
            out.put_u8(u8::MAX);
            out.put_u8(PARAM_EXTENDED_LENGTH);
            let ext_len_pos = out.len();
            out.put_u16(0);
            out.put_u8(PARAM_CAPABILITIES);
            let len_pos = out.len();
            out.put_u16(0);
            out.put_slice(&caps);
            patch_len(out, len_pos, 2, "capabilities parameter length")?;
            patch_len(out, ext_len_pos, 2, "extended optional parameters length")?;
        }
        Ok(())
    }
}
