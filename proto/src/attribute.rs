//! Path attributes (RFC 4271 §4.3, §5) and the extensions anyguard speaks: MP_REACH /
//! MP_UNREACH (RFC 4760), COMMUNITIES (RFC 1997), EXTENDED_COMMUNITIES (RFC 4360),
//! AS4_PATH / AS4_AGGREGATOR (RFC 6793), LARGE_COMMUNITY (RFC 8092).
//!
//! ```text
//! +---------------------------+---------------------------+
//! | Attr. Flags (1)           | Attr. Type Code (1)       |
//! +---------------------------+---------------------------+
//! | Length (1, or 2 when the Extended Length flag is set) |
//! +-------------------------------------------------------+
//! | Value (Length octets)                                 |
//! +-------------------------------------------------------+
//! ```
//!
//! Owned types live here; `check` validates one attribute without allocating (RFC 7606 §7,
//! shared by the owned decoder and the borrowing `UpdateView`), `decode` turns a checked
//! attribute into a [`PathAttribute`], `encode` writes one, choosing the Extended Length flag
//! by the value's size (RFC 4271 §4.3).
//!
//! Left out: attributes of other families' MP_REACH (kept as `Unknown`), the semantic checks
//! that need the peer type (AS_CONFED segments from an external peer, LOCAL_PREF from an
//! external peer: RFC 7606 §7.2, §7.5), which the session layer applies.

mod check;
pub(crate) use check::{add_path_for, ip_family, split_mp_reach, split_mp_unreach};
pub(crate) mod decode;
mod encode;

pub(crate) use check::{check_attribute, split_attribute, RawAttribute};

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::iana::{Afi, Safi};

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod type_code {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    /// Optional (bit 0).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive (bit 1).
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial (bit 2).
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length (bit 3): a two-octet length field.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// ORIGIN (type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// 0.
    Igp,
    /// 1.
    Egp,
    /// 2.
    Incomplete,
}

impl From<Origin> for u8 {
    fn from(o: Origin) -> u8 {
        match o {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }
    }
}

impl Origin {
    /// The ORIGIN for a wire value, if defined (RFC 4271 §5.1.1).
    pub fn from_code(v: u8) -> Option<Origin> {
        match v {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsPathSegmentType {
    /// 1: AS_SET.
    Set,
    /// 2: AS_SEQUENCE.
    Sequence,
    /// 3: AS_CONFED_SEQUENCE.
    ConfedSequence,
    /// 4: AS_CONFED_SET.
    ConfedSet,
}

impl AsPathSegmentType {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            AsPathSegmentType::Set => 1,
            AsPathSegmentType::Sequence => 2,
            AsPathSegmentType::ConfedSequence => 3,
            AsPathSegmentType::ConfedSet => 4,
        }
    }

    /// The segment type for a wire value, if defined.
    pub fn from_code(v: u8) -> Option<AsPathSegmentType> {
        match v {
            1 => Some(AsPathSegmentType::Set),
            2 => Some(AsPathSegmentType::Sequence),
            3 => Some(AsPathSegmentType::ConfedSequence),
            4 => Some(AsPathSegmentType::ConfedSet),
            _ => None,
        }
    }
}

/// One AS_PATH segment. ASNs are held as 4-octet values whatever the wire width.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsPathSegment {
    /// Segment type.
    pub kind: AsPathSegmentType,
    /// ASNs of the segment (1..=255 on the wire).
    pub asns: Vec<u32>,
}

/// An AS_PATH or AS4_PATH value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    /// Segments in wire order.
    pub segments: Vec<AsPathSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn from_sequence(asns: Vec<u32>) -> Self {
        AsPath {
            segments: vec![AsPathSegment {
                kind: AsPathSegmentType::Sequence,
                asns,
            }],
        }
    }

    /// The path length used in best-path selection (RFC 4271 §9.1.2.2): each AS_SET counts
    /// one, confederation segments count zero (RFC 5065 §5.3).
    pub fn route_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                AsPathSegmentType::Sequence => s.asns.len(),
                AsPathSegmentType::Set => 1,
                AsPathSegmentType::ConfedSequence | AsPathSegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// Whether any ASN needs four octets.
    pub fn has_four_octet_asn(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }
}

/// A standard community (RFC 1997), with the well-known values named as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326 §5).
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// ACCEPT_OWN, 65535:1 (RFC 7611).
    pub const ACCEPT_OWN: Community = Community(0xFFFF_0001);
    /// BLACKHOLE, 65535:666 (RFC 7999).
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);
    /// NO_EXPORT, 65535:65281 (RFC 1997).
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// NO_ADVERTISE, 65535:65282 (RFC 1997).
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED, 65535:65283 (RFC 1997).
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// NOPEER, 65535:65284 (RFC 3765).
    pub const NOPEER: Community = Community(0xFFFF_FF04);

    /// Builds `asn:value`.
    pub const fn new(asn: u16, value: u16) -> Self {
        Community(((asn as u32) << 16) | value as u32)
    }

    /// The high 16 bits (usually an ASN).
    pub const fn asn(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The low 16 bits.
    pub const fn value(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }

    /// The RFC name of a well-known community, if it is one.
    pub fn well_known_name(self) -> Option<&'static str> {
        Some(match self {
            Community::GRACEFUL_SHUTDOWN => "GRACEFUL_SHUTDOWN",
            Community::ACCEPT_OWN => "ACCEPT_OWN",
            Community::BLACKHOLE => "BLACKHOLE",
            Community::NO_EXPORT => "NO_EXPORT",
            Community::NO_ADVERTISE => "NO_ADVERTISE",
            Community::NO_EXPORT_SUBCONFED => "NO_EXPORT_SUBCONFED",
            Community::NOPEER => "NOPEER",
            _ => return None,
        })
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.well_known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.asn(), self.value()),
        }
    }
}

/// An extended community (RFC 4360): eight octets, kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedCommunity(pub [u8; 8]);

/// A large community (RFC 8092): `global:local1:local2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global Administrator (an ASN).
    pub global: u32,
    /// Local Data Part 1.
    pub local1: u32,
    /// Local Data Part 2.
    pub local2: u32,
}

/// MP_REACH_NLRI (type 14, RFC 4760 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// Next hop: one global address, plus for IPv6 an optional link-local address
    /// (RFC 2545 §3: next hop length 32).
    pub next_hop: IpAddr,
    /// IPv6 link-local next hop, when the length is 32.
    pub link_local_next_hop: Option<std::net::Ipv6Addr>,
    /// Reachable prefixes.
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (type 15, RFC 4760 §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<IpNet>,
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathAttribute {
    /// Type 1.
    Origin(Origin),
    /// Type 2. ASNs are 4-octet when the session negotiated 4-octet AS (RFC 6793).
    AsPath(AsPath),
    /// Type 3.
    NextHop(Ipv4Addr),
    /// Type 4.
    MultiExitDisc(u32),
    /// Type 5.
    LocalPref(u32),
    /// Type 6.
    AtomicAggregate,
    /// Type 7: (ASN, address); the ASN is 2 or 4 octets on the wire by session.
    Aggregator {
        /// Aggregating AS.
        asn: u32,
        /// Aggregating speaker.
        address: Ipv4Addr,
    },
    /// Type 8.
    Communities(Vec<Community>),
    /// Type 9.
    OriginatorId(Ipv4Addr),
    /// Type 10.
    ClusterList(Vec<Ipv4Addr>),
    /// Type 14.
    MpReach(MpReach),
    /// Type 15.
    MpUnreach(MpUnreach),
    /// Type 16.
    ExtendedCommunities(Vec<ExtendedCommunity>),
    /// Type 17.
    As4Path(AsPath),
    /// Type 18.
    As4Aggregator {
        /// Aggregating AS.
        asn: u32,
        /// Aggregating speaker.
        address: Ipv4Addr,
    },
    /// Type 32.
    LargeCommunities(Vec<LargeCommunity>),
    /// Any other attribute, kept raw. On re-encoding an optional transitive unknown
    /// attribute gets the Partial bit set (RFC 4271 §5).
    Unknown {
        /// Attribute flags as received.
        flags: u8,
        /// Attribute type code.
        type_code: u8,
        /// Attribute value.
        value: Vec<u8>,
    },
}

impl PathAttribute {
    /// The attribute type code.
    pub fn type_code(&self) -> u8 {
        match self {
            PathAttribute::Origin(_) => type_code::ORIGIN,
            PathAttribute::AsPath(_) => type_code::AS_PATH,
            PathAttribute::NextHop(_) => type_code::NEXT_HOP,
            PathAttribute::MultiExitDisc(_) => type_code::MULTI_EXIT_DISC,
            PathAttribute::LocalPref(_) => type_code::LOCAL_PREF,
            PathAttribute::AtomicAggregate => type_code::ATOMIC_AGGREGATE,
            PathAttribute::Aggregator { .. } => type_code::AGGREGATOR,
            PathAttribute::Communities(_) => type_code::COMMUNITIES,
            PathAttribute::OriginatorId(_) => type_code::ORIGINATOR_ID,
            PathAttribute::ClusterList(_) => type_code::CLUSTER_LIST,
            PathAttribute::MpReach(_) => type_code::MP_REACH_NLRI,
            PathAttribute::MpUnreach(_) => type_code::MP_UNREACH_NLRI,
            PathAttribute::ExtendedCommunities(_) => type_code::EXTENDED_COMMUNITIES,
            PathAttribute::As4Path(_) => type_code::AS4_PATH,
            PathAttribute::As4Aggregator { .. } => type_code::AS4_AGGREGATOR,
            PathAttribute::LargeCommunities(_) => type_code::LARGE_COMMUNITY,
            PathAttribute::Unknown { type_code, .. } => *type_code,
        }
    }
}

/// The Optional and Transitive flags a known attribute must carry (RFC 4271 §5 and each
/// attribute's RFC), or `None` for a type this crate does not know.
pub(crate) fn expected_flags(code: u8) -> Option<u8> {
    use flags::{OPTIONAL, TRANSITIVE};
    Some(match code {
        type_code::ORIGIN
        | type_code::AS_PATH
        | type_code::NEXT_HOP
        | type_code::LOCAL_PREF
        | type_code::ATOMIC_AGGREGATE => TRANSITIVE,
        type_code::MULTI_EXIT_DISC
        | type_code::ORIGINATOR_ID
        | type_code::CLUSTER_LIST
        | type_code::MP_REACH_NLRI
        | type_code::MP_UNREACH_NLRI => OPTIONAL,
        type_code::AGGREGATOR
        | type_code::COMMUNITIES
        | type_code::EXTENDED_COMMUNITIES
        | type_code::AS4_PATH
        | type_code::AS4_AGGREGATOR
        | type_code::LARGE_COMMUNITY => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}
