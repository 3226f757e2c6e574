//! IANA code registries used on the wire: address families, message types, attribute
//! type codes, capability codes and NOTIFICATION codes.
//!
//! Open enums: every registry keeps an `Unknown` variant so that codes we do not know
//! round-trip unchanged.

/// Address Family Identifier (IANA "Address Family Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    /// IPv4 (1).
    Ipv4,
    /// IPv6 (2).
    Ipv6,
    /// Any other AFI, kept as is.
    Unknown(u16),
}

impl From<u16> for Afi {
    fn from(v: u16) -> Self {
        match v {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            other => Afi::Unknown(other),
        }
    }
}

impl From<Afi> for u16 {
    fn from(v: Afi) -> u16 {
        match v {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Unknown(other) => other,
        }
    }
}

/// Subsequent Address Family Identifier (IANA "SAFI Values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    /// Unicast (1).
    Unicast,
    /// Multicast (2).
    Multicast,
    /// Any other SAFI, kept as is.
    Unknown(u8),
}

impl From<u8> for Safi {
    fn from(v: u8) -> Self {
        match v {
            1 => Safi::Unicast,
            2 => Safi::Multicast,
            other => Safi::Unknown(other),
        }
    }
}

impl From<Safi> for u8 {
    fn from(v: Safi) -> u8 {
        match v {
            Safi::Unicast => 1,
            Safi::Multicast => 2,
            Safi::Unknown(other) => other,
        }
    }
}
