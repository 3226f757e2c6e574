//! Conversion of a checked attribute into an owned [`PathAttribute`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::check::{add_path_for, ip_family, split_mp_reach, split_mp_unreach, RawAttribute};
use super::{
    type_code, AsPath, AsPathSegment, AsPathSegmentType, Community, ExtendedCommunity,
    LargeCommunity, MpReach, MpUnreach, Origin, PathAttribute,
};
use crate::message::DecodeContext;
use crate::nlri::PrefixIter;

fn be32(b: &[u8]) -> u32 {
    let mut o = [0u8; 4];
    o.copy_from_slice(&b[..4]);
    u32::from_be_bytes(o)
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(be32(b))
}

fn ipv6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Decodes an AS_PATH/AS4_PATH value already checked by `as_path_ok`.
pub(crate) fn decode_as_path(mut v: &[u8], width: usize) -> AsPath {
    let mut segments = Vec::new();
    while let [kind, count, rest @ ..] = v {
        let n = usize::from(*count) * width;
        let (asns, rest) = rest.split_at(n.min(rest.len()));
        let asns = asns
            .chunks_exact(width)
            .map(|c| {
                if width == 4 {
                    be32(c)
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        segments.push(AsPathSegment {
            kind: AsPathSegmentType::from_code(*kind).unwrap_or(AsPathSegmentType::Sequence),
            asns,
        });
        v = rest;
    }
    AsPath { segments }
}

/// Converts an attribute that passed `check_attribute`.
pub(crate) fn decode_checked(a: &RawAttribute<'_>, ctx: &DecodeContext) -> PathAttribute {
    let v = a.value;
    let raw = || PathAttribute::Unknown {
        // Extended Length is framing, and the low four bits are unused (RFC 4271 §4.3).
        flags: a.flags
            & (super::flags::OPTIONAL | super::flags::TRANSITIVE | super::flags::PARTIAL),
        type_code: a.type_code,
        value: v.to_vec(),
    };
    match a.type_code {
        type_code::ORIGIN => v
            .first()
            .and_then(|&o| Origin::from_code(o))
            .map_or_else(raw, PathAttribute::Origin),
        type_code::AS_PATH => {
            PathAttribute::AsPath(decode_as_path(v, if ctx.four_octet_as { 4 } else { 2 }))
        }
        type_code::NEXT_HOP => PathAttribute::NextHop(ipv4(v)),
        type_code::MULTI_EXIT_DISC => PathAttribute::MultiExitDisc(be32(v)),
        type_code::LOCAL_PREF => PathAttribute::LocalPref(be32(v)),
        type_code::ATOMIC_AGGREGATE => PathAttribute::AtomicAggregate,
        type_code::AGGREGATOR => {
            if v.len() == 8 {
                PathAttribute::Aggregator {
                    asn: be32(v),
                    address: ipv4(&v[4..]),
                }
            } else {
                PathAttribute::Aggregator {
                    asn: u32::from(u16::from_be_bytes([v[0], v[1]])),
                    address: ipv4(&v[2..]),
                }
            }
        }
        type_code::AS4_AGGREGATOR => PathAttribute::As4Aggregator {
            asn: be32(v),
            address: ipv4(&v[4..]),
        },
        type_code::COMMUNITIES => {
            PathAttribute::Communities(v.chunks_exact(4).map(|c| Community(be32(c))).collect())
        }
        type_code::ORIGINATOR_ID => PathAttribute::OriginatorId(ipv4(v)),
        type_code::CLUSTER_LIST => {
            PathAttribute::ClusterList(v.chunks_exact(4).map(ipv4).collect())
        }
        type_code::EXTENDED_COMMUNITIES => PathAttribute::ExtendedCommunities(
            v.chunks_exact(8)
                .map(|c| {
                    let mut o = [0u8; 8];
                    o.copy_from_slice(c);
                    ExtendedCommunity(o)
                })
                .collect(),
        ),
        type_code::LARGE_COMMUNITY => PathAttribute::LargeCommunities(
            v.chunks_exact(12)
                .map(|c| LargeCommunity {
                    global: be32(c),
                    local1: be32(&c[4..]),
                    local2: be32(&c[8..]),
                })
                .collect(),
        ),
        type_code::AS4_PATH => PathAttribute::As4Path(decode_as_path(v, 4)),
        type_code::MP_REACH_NLRI => {
            let Some(p) = split_mp_reach(v) else {
                return raw();
            };
            let Some(is_v6) = ip_family(p.afi, p.safi) else {
                return raw();
            };
            let (next_hop, link_local_next_hop) = match p.next_hop.len() {
                4 => (IpAddr::V4(ipv4(p.next_hop)), None),
                16 => (IpAddr::V6(ipv6(p.next_hop)), None),
                32 => (IpAddr::V6(ipv6(p.next_hop)), Some(ipv6(&p.next_hop[16..]))),
                _ => return raw(),
            };
            let add_path = add_path_for(ctx, p.afi, p.safi);
            let nlri: Vec<IpNet> = PrefixIter::new_unchecked(p.nlri, is_v6, add_path).collect();
            PathAttribute::MpReach(MpReach {
                afi: p.afi,
                safi: p.safi,
                next_hop,
                link_local_next_hop,
                nlri,
            })
        }
        type_code::MP_UNREACH_NLRI => {
            let Some((afi, safi, w)) = split_mp_unreach(v) else {
                return raw();
            };
            match ip_family(afi, safi) {
                Some(is_v6) => {
                    let add_path = add_path_for(ctx, afi, safi);
                    PathAttribute::MpUnreach(MpUnreach {
                        afi,
                        safi,
                        withdrawn: PrefixIter::new_unchecked(w, is_v6, add_path).collect(),
                    })
                }
                // An End-of-RIB marker of any family (RFC 4724 §2) is representable.
                None if w.is_empty() => PathAttribute::MpUnreach(MpUnreach {
                    afi,
                    safi,
                    withdrawn: Vec::new(),
                }),
                None => raw(),
            }
        }
        _ => raw(),
    }
}
