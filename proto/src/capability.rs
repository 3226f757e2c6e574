//! Capabilities advertisement (RFC 5492) and the capabilities anyguard knows: Multiprotocol
//! (RFC 4760 §8), Route Refresh (RFC 2918), Extended Next Hop (RFC 8950), Extended Message
//! (RFC 8654), Graceful Restart (RFC 4724 §3), 4-octet AS (RFC 6793), ADD-PATH (RFC 7911 §4),
//! Enhanced Route Refresh (RFC 7313) and FQDN (draft-walton-bgp-hostname-capability).
//! Any other capability is kept as raw bytes.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```
//!
//! Reserved fields (the Multiprotocol reserved octet, unused Graceful Restart flag bits)
//! are written as zero and ignored on receipt, as the RFCs ask.

use bytes::{BufMut, BytesMut};

use crate::error::{check_len, DecodeError, EncodeError};
use crate::iana::{Afi, Safi};
use crate::wire::{len8_data, patch_len};

/// ADD-PATH send/receive mode (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    /// 1: able to receive multiple paths.
    Receive,
    /// 2: able to send multiple paths.
    Send,
    /// 3: both.
    Both,
    /// Any other value, kept as is.
    Unknown(u8),
}

/// One address family entry of the Graceful Restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// "Forwarding State" (F) bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// A capability from an OPEN message's Capabilities optional parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Code 1: Multiprotocol Extensions (RFC 4760 §8).
    Multiprotocol {
        /// Address family.
        afi: Afi,
        /// Subsequent address family.
        safi: Safi,
    },
    /// Code 2: Route Refresh (RFC 2918).
    RouteRefresh,
    /// Code 5: Extended Next Hop Encoding (RFC 8950): (NLRI AFI, NLRI SAFI, next-hop AFI).
    ExtendedNextHop(Vec<(Afi, Safi, Afi)>),
    /// Code 6: Extended Message (RFC 8654).
    ExtendedMessage,
    /// Code 64: Graceful Restart (RFC 4724 §3).
    GracefulRestart {
        /// "Restart State" (R) bit.
        restart_state: bool,
        /// "Graceful Notification" (N) bit (RFC 8538).
        notification: bool,
        /// Restart Time in seconds (12 bits).
        restart_time: u16,
        /// Per-family entries.
        families: Vec<GracefulRestartFamily>,
    },
    /// Code 65: Support for 4-octet AS number (RFC 6793).
    FourOctetAs {
        /// The speaker's 4-octet ASN.
        asn: u32,
    },
    /// Code 69: ADD-PATH (RFC 7911).
    AddPath(Vec<(Afi, Safi, AddPathMode)>),
    /// Code 70: Enhanced Route Refresh (RFC 7313).
    EnhancedRouteRefresh,
    /// Code 73: FQDN (draft-walton-bgp-hostname-capability).
    Fqdn {
        /// Host name.
        hostname: String,
        /// Domain name.
        domain: String,
    },
    /// Any other capability, kept as raw bytes so it round-trips.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

/// Capability codes (IANA "Capability Codes").
pub mod code {
    /// Multiprotocol Extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route Refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended Next Hop Encoding (RFC 8950).
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    /// Extended Message (RFC 8654).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful Restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS number (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// ADD-PATH (RFC 7911).
    pub const ADD_PATH: u8 = 69;
    /// Enhanced Route Refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// FQDN (draft-walton-bgp-hostname-capability).
    pub const FQDN: u8 = 73;
}

impl From<u8> for AddPathMode {
    fn from(v: u8) -> Self {
        match v {
            1 => AddPathMode::Receive,
            2 => AddPathMode::Send,
            3 => AddPathMode::Both,
            other => AddPathMode::Unknown(other),
        }
    }
}

impl From<AddPathMode> for u8 {
    fn from(v: AddPathMode) -> u8 {
        match v {
            AddPathMode::Receive => 1,
            AddPathMode::Send => 2,
            AddPathMode::Both => 3,
            AddPathMode::Unknown(other) => other,
        }
    }
}

/// Graceful Restart flags (RFC 4724 §3, RFC 8538 §2).
const GR_RESTART_STATE: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0FFF;
const GR_FORWARDING: u8 = 0x80;

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol { .. } => code::MULTIPROTOCOL,
            Capability::RouteRefresh => code::ROUTE_REFRESH,
            Capability::ExtendedNextHop(_) => code::EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => code::EXTENDED_MESSAGE,
            Capability::GracefulRestart { .. } => code::GRACEFUL_RESTART,
            Capability::FourOctetAs { .. } => code::FOUR_OCTET_AS,
            Capability::AddPath(_) => code::ADD_PATH,
            Capability::EnhancedRouteRefresh => code::ENHANCED_ROUTE_REFRESH,
            Capability::Fqdn { .. } => code::FQDN,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Decodes one capability value (RFC 5492 §4). A known code whose value is malformed
    /// is an error (RFC 4271 §6.2 Unspecific); a value we cannot represent (e.g. a 16-bit
    /// SAFI above 255 in Extended Next Hop, a non-UTF-8 host name) is kept as `Unknown`.
    pub(crate) fn decode_value(cap_code: u8, v: &[u8]) -> Result<Capability, DecodeError> {
        let bad = || DecodeError::MalformedOptionalParameter {
            capability_code: Some(cap_code),
        };
        let unknown = || Capability::Unknown {
            code: cap_code,
            value: v.to_vec(),
        };
        let be16 = |a: u8, b: u8| u16::from_be_bytes([a, b]);
        Ok(match cap_code {
            code::MULTIPROTOCOL => match v {
                [a0, a1, _reserved, safi] => Capability::Multiprotocol {
                    afi: Afi::from(be16(*a0, *a1)),
                    safi: Safi::from(*safi),
                },
                _ => return Err(bad()),
            },
            code::ROUTE_REFRESH if v.is_empty() => Capability::RouteRefresh,
            code::EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
            code::ENHANCED_ROUTE_REFRESH if v.is_empty() => Capability::EnhancedRouteRefresh,
            code::ROUTE_REFRESH | code::EXTENDED_MESSAGE | code::ENHANCED_ROUTE_REFRESH => {
                return Err(bad())
            }
            code::EXTENDED_NEXT_HOP => {
                if v.len() % 6 != 0 {
                    return Err(bad());
                }
                let mut entries = Vec::with_capacity(v.len() / 6);
                for e in v.chunks_exact(6) {
                    let Ok(safi) = u8::try_from(be16(e[2], e[3])) else {
                        return Ok(unknown());
                    };
                    entries.push((
                        Afi::from(be16(e[0], e[1])),
                        Safi::from(safi),
                        Afi::from(be16(e[4], e[5])),
                    ));
                }
                Capability::ExtendedNextHop(entries)
            }
            code::GRACEFUL_RESTART => {
                if v.len() < 2 || (v.len() - 2) % 4 != 0 {
                    return Err(bad());
                }
                let head = be16(v[0], v[1]);
                let families = v[2..]
                    .chunks_exact(4)
                    .map(|e| GracefulRestartFamily {
                        afi: Afi::from(be16(e[0], e[1])),
                        safi: Safi::from(e[2]),
                        forwarding_preserved: e[3] & GR_FORWARDING != 0,
                    })
                    .collect();
                Capability::GracefulRestart {
                    restart_state: head & GR_RESTART_STATE != 0,
                    notification: head & GR_NOTIFICATION != 0,
                    restart_time: head & GR_TIME_MASK,
                    families,
                }
            }
            code::FOUR_OCTET_AS => match v {
                [a, b, c, d] => {
                    let asn = u32::from_be_bytes([*a, *b, *c, *d]);
                    if asn == 0 {
                        // RFC 7607 §2: AS 0 in the capability is Bad Peer AS.
                        return Err(DecodeError::BadPeerAs { asn });
                    }
                    Capability::FourOctetAs { asn }
                }
                _ => return Err(bad()),
            },
            code::ADD_PATH => {
                if v.is_empty() || v.len() % 4 != 0 {
                    return Err(bad());
                }
                Capability::AddPath(
                    v.chunks_exact(4)
                        .map(|e| {
                            (
                                Afi::from(be16(e[0], e[1])),
                                Safi::from(e[2]),
                                AddPathMode::from(e[3]),
                            )
                        })
                        .collect(),
                )
            }
            code::FQDN => {
                let parsed = (|| {
                    let (rest, host) = len8_data(v).ok()?;
                    let (rest, domain) = len8_data(rest).ok()?;
                    rest.is_empty().then_some((host, domain))
                })();
                let Some((host, domain)) = parsed else {
                    return Err(bad());
                };
                match (std::str::from_utf8(host), std::str::from_utf8(domain)) {
                    (Ok(h), Ok(d)) => Capability::Fqdn {
                        hostname: h.to_owned(),
                        domain: d.to_owned(),
                    },
                    _ => unknown(),
                }
            }
            _ => unknown(),
        })
    }

    /// Appends code, length and value (RFC 5492 §4).
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u8(self.code());
        let len_pos = out.len();
        out.put_u8(0);
        match self {
            Capability::Multiprotocol { afi, safi } => {
                out.put_u16(u16::from(*afi));
                out.put_u8(0);
                out.put_u8(u8::from(*safi));
            }
            Capability::RouteRefresh
            | Capability::ExtendedMessage
            | Capability::EnhancedRouteRefresh => {}
            Capability::ExtendedNextHop(entries) => {
                for (afi, safi, nh_afi) in entries {
                    out.put_u16(u16::from(*afi));
                    out.put_u16(u16::from(u8::from(*safi)));
                    out.put_u16(u16::from(*nh_afi));
                }
            }
            Capability::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families,
            } => {
                check_len(
                    "graceful restart time",
                    usize::from(*restart_time),
                    usize::from(GR_TIME_MASK),
                )?;
                let mut head = *restart_time;
                if *restart_state {
                    head |= GR_RESTART_STATE;
                }
                if *notification {
                    head |= GR_NOTIFICATION;
                }
                out.put_u16(head);
                for f in families {
                    out.put_u16(u16::from(f.afi));
                    out.put_u8(u8::from(f.safi));
                    out.put_u8(if f.forwarding_preserved {
                        GR_FORWARDING
                    } else {
                        0
                    });
                }
            }
            Capability::FourOctetAs { asn } => out.put_u32(*asn),
            Capability::AddPath(entries) => {
                for (afi, safi, mode) in entries {
                    out.put_u16(u16::from(*afi));
                    out.put_u8(u8::from(*safi));
                    out.put_u8(u8::from(*mode));
                }
            }
            Capability::Fqdn { hostname, domain } => {
                for s in [hostname, domain] {
                    let len = u8::try_from(s.len()).map_err(|_| EncodeError::TooLarge {
                        field: "FQDN name",
                        actual: s.len(),
                        max: 255,
                    })?;
                    out.put_u8(len);
                    out.put_slice(s.as_bytes());
                }
            }
            Capability::Unknown { value, .. } => out.put_slice(value),
        }
        patch_len(out, len_pos, 1, "capability length")
    }
}
