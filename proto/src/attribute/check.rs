//! Allocation-free validation of one path attribute (RFC 4271 §6.3, RFC 7606 §3 c, §7,
//! RFC 6793 §6, RFC 8092 §6). Shared by the owned decoder and `UpdateView`; only the error
//! path allocates (the NOTIFICATION data is a copy of the attribute).

use std::net::Ipv4Addr;

use super::{expected_flags, flags, type_code};
use crate::error::DecodeError;
use crate::iana::{Afi, Safi};
use crate::message::DecodeContext;
use crate::nlri::validate_prefixes;

/// One attribute as it sits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawAttribute<'a> {
    /// Flags octet as received.
    pub(crate) flags: u8,
    /// Type code.
    pub(crate) type_code: u8,
    /// Value.
    pub(crate) value: &'a [u8],
    /// Flags, type, length and value: the NOTIFICATION data.
    pub(crate) whole: &'a [u8],
}

/// Splits the first attribute off `i`; `None` when its header or value overruns `i`
/// (RFC 7606 §4).
#[inline]
pub(crate) fn split_attribute(i: &[u8]) -> Option<(RawAttribute<'_>, &[u8])> {
    let (&fl, rest) = i.split_first()?;
    let (&code, rest) = rest.split_first()?;
    let (len, rest) = if fl & flags::EXTENDED_LENGTH != 0 {
        let (l, rest) = rest.split_at_checked(2)?;
        (usize::from(u16::from_be_bytes([l[0], l[1]])), rest)
    } else {
        let (&l, rest) = rest.split_first()?;
        (usize::from(l), rest)
    };
    let (value, rest) = rest.split_at_checked(len)?;
    let whole_len = i.len() - rest.len();
    Some((
        RawAttribute {
            flags: fl,
            type_code: code,
            value,
            whole: &i[..whole_len],
        },
        rest,
    ))
}

/// The parts of an MP_REACH_NLRI value (RFC 4760 §3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MpReachParts<'a> {
    pub(crate) afi: Afi,
    pub(crate) safi: Safi,
    pub(crate) next_hop: &'a [u8],
    pub(crate) nlri: &'a [u8],
}

/// Splits an MP_REACH_NLRI value: AFI (2), SAFI (1), next hop length (1), next hop,
/// reserved (1, ignored on receipt), NLRI.
#[inline]
pub(crate) fn split_mp_reach(v: &[u8]) -> Option<MpReachParts<'_>> {
    let (head, rest) = v.split_at_checked(4)?;
    let (next_hop, rest) = rest.split_at_checked(usize::from(head[3]))?;
    let (_reserved, nlri) = rest.split_first()?;
    Some(MpReachParts {
        afi: Afi::from(u16::from_be_bytes([head[0], head[1]])),
        safi: Safi::from(head[2]),
        next_hop,
        nlri,
    })
}

/// Splits an MP_UNREACH_NLRI value: AFI (2), SAFI (1), withdrawn routes.
#[inline]
pub(crate) fn split_mp_unreach(v: &[u8]) -> Option<(Afi, Safi, &[u8])> {
    let (head, rest) = v.split_at_checked(3)?;
    Some((
        Afi::from(u16::from_be_bytes([head[0], head[1]])),
        Safi::from(head[2]),
        rest,
    ))
}

/// For the families whose prefixes this crate parses (IPv4/IPv6 unicast and multicast),
/// whether the family is IPv6.
#[inline]
pub(crate) fn ip_family(afi: Afi, safi: Safi) -> Option<bool> {
    match (afi, safi) {
        (Afi::Ipv4, Safi::Unicast | Safi::Multicast) => Some(false),
        (Afi::Ipv6, Safi::Unicast | Safi::Multicast) => Some(true),
        _ => None,
    }
}

/// Whether NLRI of this family carry an ADD-PATH identifier (RFC 7911 §3).
#[inline]
pub(crate) fn add_path_for(ctx: &DecodeContext, afi: Afi, safi: Safi) -> bool {
    match (afi, safi) {
        (Afi::Ipv4, Safi::Unicast) => ctx.add_path_ipv4,
        (Afi::Ipv6, Safi::Unicast) => ctx.add_path_ipv6,
        _ => false,
    }
}

/// Whether an MP_REACH next hop length fits the family: 4 for IPv4, 16 or 32 (global plus
/// link-local, RFC 2545 §3) for IPv6, and for IPv4 NLRI also 16 or 32 (RFC 8950 §3).
#[inline]
pub(crate) fn next_hop_len_ok(afi: Afi, len: usize) -> bool {
    match afi {
        Afi::Ipv4 => matches!(len, 4 | 16 | 32),
        Afi::Ipv6 => matches!(len, 16 | 32),
        Afi::Unknown(_) => true,
    }
}

/// Checks one AS_PATH/AS4_PATH value: known segment types, non-empty segments that fit
/// (RFC 4271 §4.3, RFC 7606 §7.2).
#[inline]
pub(crate) fn as_path_ok(mut v: &[u8], asn_width: usize) -> bool {
    while !v.is_empty() {
        let [kind, count, rest @ ..] = v else {
            return false;
        };
        if !(1..=4).contains(kind) || *count == 0 {
            return false;
        }
        let n = usize::from(*count) * asn_width;
        let Some((_, rest)) = rest.split_at_checked(n) else {
            return false;
        };
        v = rest;
    }
    true
}

/// Validates one attribute with the RFC 7606 rules. `Ok(())` means the attribute is
/// well-formed and can be converted or used as is.
pub(crate) fn check_attribute(
    a: &RawAttribute<'_>,
    ctx: &DecodeContext,
) -> Result<(), DecodeError> {
    let code = a.type_code;
    let v = a.value;
    let whole = || a.whole.to_vec();
    let length_error = || DecodeError::AttributeLengthError {
        type_code: code,
        attribute: whole(),
    };
    let optional_error = || DecodeError::OptionalAttributeError {
        type_code: code,
        attribute: whole(),
    };
    let Some(expected) = expected_flags(code) else {
        // Unknown: optional ones are kept (RFC 4271 §5), well-known ones are fatal.
        if a.flags & flags::OPTIONAL == 0 {
            return Err(DecodeError::UnrecognizedWellKnownAttribute {
                type_code: code,
                attribute: whole(),
            });
        }
        return Ok(());
    };
    // RFC 7606 §3 c: only the Optional and Transitive bits are checked. For MP_REACH /
    // MP_UNREACH the value is checked first: a malformed NLRI there resets the session
    // (§5.3), while with bad flags alone the prefixes can still be withdrawn.
    let flags_ok = a.flags & (flags::OPTIONAL | flags::TRANSITIVE) == expected;
    let flags_error = || DecodeError::AttributeFlagsError {
        type_code: code,
        attribute: whole(),
    };
    let is_mp = code == type_code::MP_REACH_NLRI || code == type_code::MP_UNREACH_NLRI;
    if !flags_ok && !is_mp {
        return Err(flags_error());
    }
    let len = v.len();
    let len_ok = match code {
        type_code::MULTI_EXIT_DISC | type_code::LOCAL_PREF | type_code::ORIGINATOR_ID => len == 4,
        type_code::ATOMIC_AGGREGATE => len == 0,
        type_code::AGGREGATOR => len == if ctx.four_octet_as { 8 } else { 6 },
        type_code::AS4_AGGREGATOR => len == 8,
        type_code::COMMUNITIES | type_code::CLUSTER_LIST => len != 0 && len % 4 == 0,
        type_code::EXTENDED_COMMUNITIES => len != 0 && len % 8 == 0,
        type_code::LARGE_COMMUNITY => len != 0 && len % 12 == 0,
        type_code::AS4_PATH => len != 0,
        _ => true,
    };
    if !len_ok {
        return Err(length_error());
    }
    match code {
        type_code::ORIGIN => {
            if len != 1 {
                return Err(length_error());
            }
            if v[0] > 2 {
                return Err(DecodeError::InvalidOriginAttribute { attribute: whole() });
            }
        }
        type_code::AS_PATH => {
            let width = if ctx.four_octet_as { 4 } else { 2 };
            if !as_path_ok(v, width) {
                return Err(DecodeError::MalformedAsPath);
            }
        }
        type_code::NEXT_HOP => {
            let [a0, a1, a2, a3] = v else {
                return Err(length_error());
            };
            let nh = Ipv4Addr::new(*a0, *a1, *a2, *a3);
            // RFC 4271 §6.3: not a valid host address; RFC 7606 §7.3: treat-as-withdraw.
            if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                return Err(DecodeError::InvalidNextHopAttribute { attribute: whole() });
            }
        }
        type_code::AS4_PATH if !as_path_ok(v, 4) => return Err(optional_error()),
        type_code::MP_REACH_NLRI => {
            let Some(p) = split_mp_reach(v) else {
                return Err(length_error());
            };
            if !next_hop_len_ok(p.afi, p.next_hop.len()) {
                return Err(optional_error());
            }
            if let Some(ipv6) = ip_family(p.afi, p.safi) {
                let add_path = add_path_for(ctx, p.afi, p.safi);
                if validate_prefixes(p.nlri, ipv6, add_path).is_err() {
                    return Err(optional_error());
                }
            }
        }
        type_code::MP_UNREACH_NLRI => {
            let Some((afi, safi, withdrawn)) = split_mp_unreach(v) else {
                return Err(length_error());
            };
            if let Some(ipv6) = ip_family(afi, safi) {
                let add_path = add_path_for(ctx, afi, safi);
                if validate_prefixes(withdrawn, ipv6, add_path).is_err() {
                    return Err(optional_error());
                }
            }
        }
        _ => {}
    }
    if !flags_ok {
        return Err(flags_error());
    }
    Ok(())
}
