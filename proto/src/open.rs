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

use crate::capability::Capability;

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
