//! Capabilities advertisement (RFC 5492) and the capabilities anyguard knows.

use crate::iana::{Afi, Safi};

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
