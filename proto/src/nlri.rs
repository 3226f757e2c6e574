//! NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5) and ADD-PATH path identifiers
//! (RFC 7911 §3).
//!
//! ```text
//! +---------------------------+
//! |   Path Identifier (4) *   |   * only when ADD-PATH receive was negotiated
//! +---------------------------+
//! |   Length (1 octet, bits)  |
//! +---------------------------+
//! |   Prefix (ceil(len/8))    |
//! +---------------------------+
//! ```
//!
//! Strictness (RFC 7606 §5.3): a length beyond the family's maximum or a prefix running
//! past its field make the field syntactically incorrect. Bits beyond the prefix length in
//! its last octet are not an error: RFC 4271 §4.3 pads the prefix "to make the end of the
//! field fall on an octet boundary" and says "the value of trailing bits is irrelevant", so
//! they are cleared (203.0.113.1 as a /25 is 203.0.113.0/25). The same parser backs the
//! owned decoder and the allocation-free [`PrefixIter`].

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::EncodeError;

/// Why a prefix field is syntactically incorrect (RFC 7606 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixFault {
    /// The length octet exceeds 32 (IPv4) or 128 (IPv6).
    LengthTooLong,
    /// The prefix (or its path identifier) runs past the end of its field.
    Overrun,
}

/// Parses one IPv4 prefix, returning it and the rest.
#[inline]
pub(crate) fn parse_ipv4_prefix(i: &[u8]) -> Result<(Ipv4Net, &[u8]), PrefixFault> {
    let (&len, rest) = i.split_first().ok_or(PrefixFault::Overrun)?;
    if len > 32 {
        return Err(PrefixFault::LengthTooLong);
    }
    let n = usize::from(len).div_ceil(8);
    let (octets, rest) = rest.split_at_checked(n).ok_or(PrefixFault::Overrun)?;
    let addr = match *octets {
        [] => 0,
        [a] => u32::from(a) << 24,
        [a, b] => u32::from(u16::from_be_bytes([a, b])) << 16,
        [a, b, c] => u32::from_be_bytes([a, b, c, 0]),
        [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
        _ => return Err(PrefixFault::LengthTooLong),
    };
    let net = Ipv4Net::new(Ipv4Addr::from(addr), len).map_err(|_| PrefixFault::LengthTooLong)?;
    // Trailing bits are irrelevant (RFC 4271 §4.3): keep the network only.
    Ok((net.trunc(), rest))
}

/// Parses one IPv6 prefix, returning it and the rest.
#[inline]
pub(crate) fn parse_ipv6_prefix(i: &[u8]) -> Result<(Ipv6Net, &[u8]), PrefixFault> {
    let (&len, rest) = i.split_first().ok_or(PrefixFault::Overrun)?;
    if len > 128 {
        return Err(PrefixFault::LengthTooLong);
    }
    let n = usize::from(len).div_ceil(8);
    let (octets, rest) = rest.split_at_checked(n).ok_or(PrefixFault::Overrun)?;
    let mut full = [0u8; 16];
    full[..n].copy_from_slice(octets);
    let net = Ipv6Net::new(Ipv6Addr::from(full), len).map_err(|_| PrefixFault::LengthTooLong)?;
    // Trailing bits are irrelevant (RFC 4271 §4.3): keep the network only.
    Ok((net.trunc(), rest))
}

/// Parses one prefix of either family with an optional ADD-PATH identifier.
#[inline]
pub(crate) fn parse_prefix(
    i: &[u8],
    ipv6: bool,
    add_path: bool,
) -> Result<(Option<u32>, IpNet, &[u8]), PrefixFault> {
    let (path_id, i) = if add_path {
        if i.len() < 4 {
            return Err(PrefixFault::Overrun);
        }
        let (id, rest) = i.split_at(4);
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        (Some(id), rest)
    } else {
        (None, i)
    };
    if ipv6 {
        let (net, rest) = parse_ipv6_prefix(i)?;
        Ok((path_id, IpNet::V6(net), rest))
    } else {
        let (net, rest) = parse_ipv4_prefix(i)?;
        Ok((path_id, IpNet::V4(net), rest))
    }
}

/// Checks a whole prefix field without allocating or building addresses; returns the
/// number of prefixes.
pub(crate) fn validate_prefixes(
    mut i: &[u8],
    ipv6: bool,
    add_path: bool,
) -> Result<usize, PrefixFault> {
    let max = if ipv6 { 128 } else { 32 };
    let mut count = 0;
    while !i.is_empty() {
        if add_path {
            i = i.get(4..).ok_or(PrefixFault::Overrun)?;
        }
        let (&len, rest) = i.split_first().ok_or(PrefixFault::Overrun)?;
        if len > max {
            return Err(PrefixFault::LengthTooLong);
        }
        let n = usize::from(len).div_ceil(8);
        i = rest.get(n..).ok_or(PrefixFault::Overrun)?;
        count += 1;
    }
    Ok(count)
}

/// Appends one prefix (no path identifier).
pub(crate) fn encode_prefix(net: &IpNet, out: &mut BytesMut) -> Result<(), EncodeError> {
    if net.addr() != net.network() {
        return Err(EncodeError::HostBitsSet { prefix: *net });
    }
    let len = net.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.put_u8(len);
    match net {
        IpNet::V4(v4) => out.put_slice(&v4.addr().octets()[..n]),
        IpNet::V6(v6) => out.put_slice(&v6.addr().octets()[..n]),
    }
    Ok(())
}

/// A lazy, allocation-free iterator over a prefix field that was validated beforehand
/// (by `UpdateView::parse` or [`PrefixIter::new_checked`]). Yields each prefix as a `Copy`
/// [`IpNet`]; [`PrefixIter::with_path_ids`] also yields ADD-PATH identifiers.
#[derive(Debug, Clone)]
pub struct PrefixIter<'a> {
    data: &'a [u8],
    ipv6: bool,
    add_path: bool,
}

impl<'a> PrefixIter<'a> {
    /// An iterator over `data`, after checking the whole field (RFC 7606 §5.3).
    pub fn new_checked(data: &'a [u8], ipv6: bool, add_path: bool) -> Result<Self, PrefixFault> {
        validate_prefixes(data, ipv6, add_path)?;
        Ok(PrefixIter {
            data,
            ipv6,
            add_path,
        })
    }

    /// An iterator over a field already validated by the caller.
    pub(crate) fn new_unchecked(data: &'a [u8], ipv6: bool, add_path: bool) -> Self {
        PrefixIter {
            data,
            ipv6,
            add_path,
        }
    }

    /// An empty iterator.
    pub(crate) fn empty(ipv6: bool) -> Self {
        PrefixIter {
            data: &[],
            ipv6,
            add_path: false,
        }
    }

    /// Yields `(path identifier, prefix)` pairs instead; the identifier is `None` unless
    /// ADD-PATH was negotiated for this family.
    pub fn with_path_ids(self) -> PathIdPrefixIter<'a> {
        PathIdPrefixIter(self)
    }

    /// The raw field this iterator walks.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    #[inline]
    fn next_pair(&mut self) -> Option<(Option<u32>, IpNet)> {
        if self.data.is_empty() {
            return None;
        }
        // The field was validated when the iterator was made; only the (cheap, panic-free)
        // structural checks run again here.
        match parse_prefix(self.data, self.ipv6, self.add_path) {
            Ok((id, net, rest)) => {
                self.data = rest;
                Some((id, net))
            }
            // Unreachable for validated input; stop rather than panic.
            Err(_) => {
                self.data = &[];
                None
            }
        }
    }
}

impl Iterator for PrefixIter<'_> {
    type Item = IpNet;

    #[inline]
    fn next(&mut self) -> Option<IpNet> {
        self.next_pair().map(|(_, net)| net)
    }
}

/// [`PrefixIter`] yielding ADD-PATH identifiers too.
#[derive(Debug, Clone)]
pub struct PathIdPrefixIter<'a>(PrefixIter<'a>);

impl Iterator for PathIdPrefixIter<'_> {
    type Item = (Option<u32>, IpNet);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_pair()
    }
}
