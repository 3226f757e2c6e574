//! Path attributes (RFC 4271 §4.3, §5) and the extensions anyguard speaks: MP_REACH /
//! MP_UNREACH (RFC 4760), COMMUNITIES (RFC 1997), EXTENDED_COMMUNITIES (RFC 4360),
//! AS4_PATH / AS4_AGGREGATOR (RFC 6793), LARGE_COMMUNITY (RFC 8092).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::iana::{Afi, Safi};

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
