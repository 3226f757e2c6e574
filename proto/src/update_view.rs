//! A zero-allocation, borrowing view of an UPDATE for the receive path: an upstream may
//! send a full table (~1M prefixes) and nothing here allocates per prefix or per attribute.
//!
//! [`UpdateView::parse`] runs the same RFC 7606 walker as the owned decoder (structure, every
//! prefix field, every attribute) once, records where the first well-formed occurrence of
//! each known attribute sits, and reports the outcome: `Err` for a session reset,
//! [`UpdateView::action`] for treat-as-withdraw / attribute discard. Iterators then walk the
//! frame lazily and yield `Copy` values ([`IpNet`], [`Community`], ...).
//!
//! When [`UpdateView::action`] is [`ErrorAction::TreatAsWithdraw`], the caller must handle
//! every prefix of [`UpdateView::nlri`] and [`MpReachView::nlri`] as withdrawn (RFC 7606 §2).
//! Typed accessors never return an attribute that RFC 7606 discards; [`UpdateView::attributes`]
//! is the raw wire list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::attribute::{
    add_path_for, ip_family, split_attribute, split_mp_reach, split_mp_unreach, type_code,
    AsPathSegmentType, Community, ExtendedCommunity, LargeCommunity, Origin, RawAttribute,
};
use crate::error::{DecodeError, ErrorAction};
use crate::iana::{Afi, Safi};
use crate::message::{DecodeContext, HEADER_LEN, MARKER};
use crate::nlri::PrefixIter;
use crate::update::{walk, UpdateVisitor};

/// Highest type code with an index slot.
const INDEXED: usize = 33;

/// A borrowing view of one UPDATE.
#[derive(Debug, Clone)]
pub struct UpdateView<'a> {
    withdrawn: &'a [u8],
    attributes: &'a [u8],
    nlri: &'a [u8],
    ctx: DecodeContext,
    /// Offset + 1 of the first well-formed attribute of each known type; 0 = absent.
    index: [u16; INDEXED],
    action: Option<ErrorAction>,
    finding: Option<DecodeError>,
    finding_count: usize,
    /// Attributes the walk kept (well-formed, first of their type, not processed as absent),
    /// what the owned decoder's `attributes` holds.
    kept: usize,
}

struct ViewVisitor {
    index: [u16; INDEXED],
    finding: Option<DecodeError>,
    count: usize,
    kept: usize,
}

impl<'a> UpdateVisitor<'a> for ViewVisitor {
    fn finding(&mut self, e: DecodeError) {
        self.count += 1;
        let stronger = match &self.finding {
            None => true,
            Some(f) => e.action() > f.action(),
        };
        if stronger {
            self.finding = Some(e);
        }
    }
    fn attribute(&mut self, offset: usize, a: RawAttribute<'a>) {
        self.kept += 1;
        let slot = usize::from(a.type_code);
        if slot < INDEXED {
            // Attribute lists are at most 65535 octets, so offset + 1 fits unless the list
            // is exactly that long and this is its very last octet, which cannot start an
            // attribute (it needs three).
            self.index[slot] = u16::try_from(offset + 1).unwrap_or(0);
        }
    }
}

/// A raw attribute as found on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeView<'a> {
    /// Flags as received.
    pub flags: u8,
    /// Type code.
    pub type_code: u8,
    /// Value.
    pub value: &'a [u8],
}

/// Iterator over the raw attribute list.
#[derive(Debug, Clone)]
pub struct AttributeIter<'a>(&'a [u8]);

impl<'a> Iterator for AttributeIter<'a> {
    type Item = AttributeView<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (a, rest) = split_attribute(self.0)?;
        self.0 = rest;
        Some(AttributeView {
            flags: a.flags,
            type_code: a.type_code,
            value: a.value,
        })
    }
}

/// Iterator over fixed-size records of an attribute value.
#[derive(Debug, Clone)]
pub struct Records<'a, const N: usize>(std::slice::ChunksExact<'a, u8>);

impl<'a, const N: usize> Records<'a, N> {
    fn new(v: &'a [u8]) -> Self {
        Records(v.chunks_exact(N))
    }
    fn next_array(&mut self) -> Option<[u8; N]> {
        let c = self.0.next()?;
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        Some(a)
    }
}

/// Iterator over COMMUNITIES.
#[derive(Debug, Clone)]
pub struct CommunityIter<'a>(Records<'a, 4>);

impl Iterator for CommunityIter<'_> {
    type Item = Community;
    fn next(&mut self) -> Option<Community> {
        self.0
            .next_array()
            .map(|a| Community(u32::from_be_bytes(a)))
    }
}

/// Iterator over EXTENDED_COMMUNITIES.
#[derive(Debug, Clone)]
pub struct ExtendedCommunityIter<'a>(Records<'a, 8>);

impl Iterator for ExtendedCommunityIter<'_> {
    type Item = ExtendedCommunity;
    fn next(&mut self) -> Option<ExtendedCommunity> {
        self.0.next_array().map(ExtendedCommunity)
    }
}

/// Iterator over LARGE_COMMUNITY.
#[derive(Debug, Clone)]
pub struct LargeCommunityIter<'a>(Records<'a, 12>);

impl Iterator for LargeCommunityIter<'_> {
    type Item = LargeCommunity;
    fn next(&mut self) -> Option<LargeCommunity> {
        self.0.next_array().map(|a| LargeCommunity {
            global: u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
            local1: u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
            local2: u32::from_be_bytes([a[8], a[9], a[10], a[11]]),
        })
    }
}

/// Iterator over CLUSTER_LIST.
#[derive(Debug, Clone)]
pub struct ClusterIter<'a>(Records<'a, 4>);

impl Iterator for ClusterIter<'_> {
    type Item = Ipv4Addr;
    fn next(&mut self) -> Option<Ipv4Addr> {
        self.0.next_array().map(Ipv4Addr::from)
    }
}

/// A borrowed AS_PATH or AS4_PATH.
#[derive(Debug, Clone, Copy)]
pub struct AsPathView<'a> {
    value: &'a [u8],
    width: usize,
}

/// One borrowed AS_PATH segment.
#[derive(Debug, Clone, Copy)]
pub struct AsPathSegmentView<'a> {
    /// Segment type.
    pub kind: AsPathSegmentType,
    asns: &'a [u8],
    width: usize,
}

impl<'a> AsPathSegmentView<'a> {
    /// The ASNs, as 4-octet values whatever the wire width.
    pub fn asns(&self) -> impl Iterator<Item = u32> + 'a {
        let width = self.width;
        self.asns.chunks_exact(width).map(move |c| match c {
            [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
            [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => 0,
        })
    }

    /// Number of ASNs in the segment.
    pub fn len(&self) -> usize {
        self.asns.len() / self.width
    }

    /// Whether the segment is empty (never true on a checked path).
    pub fn is_empty(&self) -> bool {
        self.asns.is_empty()
    }
}

impl<'a> AsPathView<'a> {
    /// The segments in wire order.
    pub fn segments(&self) -> impl Iterator<Item = AsPathSegmentView<'a>> + 'a {
        let width = self.width;
        let mut v = self.value;
        std::iter::from_fn(move || {
            let [kind, count, rest @ ..] = v else {
                return None;
            };
            let n = (usize::from(*count) * width).min(rest.len());
            let (asns, rest) = rest.split_at(n);
            v = rest;
            Some(AsPathSegmentView {
                kind: AsPathSegmentType::from_code(*kind)?,
                asns,
                width,
            })
        })
    }

    /// All ASNs of all segments, in order.
    pub fn asns(&self) -> impl Iterator<Item = u32> + 'a {
        self.segments().flat_map(|s| s.asns())
    }

    /// The path length for best-path selection (RFC 4271 §9.1.2.2, RFC 5065 §5.3).
    pub fn route_len(&self) -> usize {
        self.segments()
            .map(|s| match s.kind {
                AsPathSegmentType::Sequence => s.len(),
                AsPathSegmentType::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// The first ASN of the path (the neighbour AS), if any.
    pub fn first_asn(&self) -> Option<u32> {
        self.asns().next()
    }

    /// The last ASN of the path (the origin AS, for a plain sequence), if any.
    pub fn origin_asn(&self) -> Option<u32> {
        self.asns().last()
    }
}

/// A borrowed MP_REACH_NLRI.
#[derive(Debug, Clone)]
pub struct MpReachView<'a> {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    /// The raw next hop field.
    pub next_hop_bytes: &'a [u8],
    nlri: &'a [u8],
    ipv6: Option<bool>,
    add_path: bool,
}

impl<'a> MpReachView<'a> {
    /// The (global) next hop, when it is 4, 16 or 32 octets long.
    pub fn next_hop(&self) -> Option<IpAddr> {
        let b = self.next_hop_bytes;
        match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            16 | 32 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }

    /// The IPv6 link-local next hop, when the field is 32 octets (RFC 2545 §3).
    pub fn link_local_next_hop(&self) -> Option<Ipv6Addr> {
        let ll = self.next_hop_bytes.get(16..32)?;
        let mut o = [0u8; 16];
        o.copy_from_slice(ll);
        Some(Ipv6Addr::from(o))
    }

    /// The announced prefixes; empty for a family this crate does not parse.
    pub fn nlri(&self) -> PrefixIter<'a> {
        match self.ipv6 {
            Some(v6) => PrefixIter::new_unchecked(self.nlri, v6, self.add_path),
            None => PrefixIter::empty(false),
        }
    }

    /// The raw NLRI field.
    pub fn nlri_bytes(&self) -> &'a [u8] {
        self.nlri
    }
}

/// A borrowed MP_UNREACH_NLRI.
#[derive(Debug, Clone)]
pub struct MpUnreachView<'a> {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
    withdrawn: &'a [u8],
    ipv6: Option<bool>,
    add_path: bool,
}

impl<'a> MpUnreachView<'a> {
    /// The withdrawn prefixes; empty for a family this crate does not parse.
    pub fn withdrawn(&self) -> PrefixIter<'a> {
        match self.ipv6 {
            Some(v6) => PrefixIter::new_unchecked(self.withdrawn, v6, self.add_path),
            None => PrefixIter::empty(false),
        }
    }

    /// The raw withdrawn routes field.
    pub fn withdrawn_bytes(&self) -> &'a [u8] {
        self.withdrawn
    }
}

impl<'a> UpdateView<'a> {
    /// Checks an UPDATE given as a whole frame (header included) or as its body, and
    /// returns a view of it. `Err` is a session reset (send `NotificationMessage::from(&e)`);
    /// milder RFC 7606 outcomes are in [`UpdateView::action`].
    pub fn parse(frame_or_body: &'a [u8], ctx: &DecodeContext) -> Result<Self, DecodeError> {
        let is_frame = frame_or_body.len() >= HEADER_LEN
            && frame_or_body[..16] == MARKER
            && frame_or_body[18] == crate::message::MessageType::Update.code();
        if is_frame {
            match crate::message::frame_len(frame_or_body, ctx)? {
                Some(len) if len == frame_or_body.len() => {}
                _ => {
                    return Err(DecodeError::BadMessageLength {
                        len: u16::try_from(frame_or_body.len()).unwrap_or(u16::MAX),
                    })
                }
            }
            UpdateView::parse_body(&frame_or_body[HEADER_LEN..], ctx)
        } else {
            UpdateView::parse_body(frame_or_body, ctx)
        }
    }

    /// Like [`UpdateView::parse`] for a body (after the 19-octet header).
    pub fn parse_body(body: &'a [u8], ctx: &DecodeContext) -> Result<Self, DecodeError> {
        let mut v = ViewVisitor {
            index: [0; INDEXED],
            finding: None,
            count: 0,
            kept: 0,
        };
        let layout = walk(body, ctx, &mut v)?;
        Ok(UpdateView {
            withdrawn: layout.withdrawn,
            attributes: layout.attributes,
            nlri: layout.nlri,
            ctx: *ctx,
            index: v.index,
            action: layout.action,
            finding: v.finding,
            finding_count: v.count,
            kept: v.kept,
        })
    }

    /// The strongest RFC 7606 action among the non-fatal errors, `None` when clean.
    pub fn action(&self) -> Option<ErrorAction> {
        self.action
    }

    /// The first error with the strongest action, for logging.
    pub fn finding(&self) -> Option<&DecodeError> {
        self.finding.as_ref()
    }

    /// How many non-fatal errors were found.
    pub fn finding_count(&self) -> usize {
        self.finding_count
    }

    /// Whether every announced prefix must be handled as withdrawn (RFC 7606 §2).
    pub fn is_treat_as_withdraw(&self) -> bool {
        self.action == Some(ErrorAction::TreatAsWithdraw)
    }

    /// IPv4 prefixes of the Withdrawn Routes field.
    pub fn withdrawn(&self) -> PrefixIter<'a> {
        PrefixIter::new_unchecked(self.withdrawn, false, self.ctx.add_path_ipv4)
    }

    /// IPv4 prefixes of the classic NLRI field.
    pub fn nlri(&self) -> PrefixIter<'a> {
        PrefixIter::new_unchecked(self.nlri, false, self.ctx.add_path_ipv4)
    }

    /// The raw attribute list, in wire order, including anything RFC 7606 discards.
    pub fn attributes(&self) -> AttributeIter<'a> {
        AttributeIter(self.attributes)
    }

    /// The first well-formed attribute of a known type (see `attribute::type_code`).
    pub fn attribute(&self, code: u8) -> Option<AttributeView<'a>> {
        let off = usize::from(*self.index.get(usize::from(code))?).checked_sub(1)?;
        let (a, _) = split_attribute(self.attributes.get(off..)?)?;
        Some(AttributeView {
            flags: a.flags,
            type_code: a.type_code,
            value: a.value,
        })
    }

    fn value(&self, code: u8) -> Option<&'a [u8]> {
        self.attribute(code).map(|a| a.value)
    }

    fn u32_value(&self, code: u8) -> Option<u32> {
        match self.value(code)? {
            [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// ORIGIN.
    pub fn origin(&self) -> Option<Origin> {
        Origin::from_code(*self.value(type_code::ORIGIN)?.first()?)
    }

    /// AS_PATH (ASNs widened to 4 octets in a 2-octet session).
    pub fn as_path(&self) -> Option<AsPathView<'a>> {
        Some(AsPathView {
            value: self.value(type_code::AS_PATH)?,
            width: if self.ctx.four_octet_as { 4 } else { 2 },
        })
    }

    /// AS4_PATH.
    pub fn as4_path(&self) -> Option<AsPathView<'a>> {
        Some(AsPathView {
            value: self.value(type_code::AS4_PATH)?,
            width: 4,
        })
    }

    /// NEXT_HOP.
    pub fn next_hop(&self) -> Option<Ipv4Addr> {
        self.u32_value(type_code::NEXT_HOP).map(Ipv4Addr::from)
    }

    /// MULTI_EXIT_DISC.
    pub fn med(&self) -> Option<u32> {
        self.u32_value(type_code::MULTI_EXIT_DISC)
    }

    /// LOCAL_PREF.
    pub fn local_pref(&self) -> Option<u32> {
        self.u32_value(type_code::LOCAL_PREF)
    }

    /// ATOMIC_AGGREGATE present.
    pub fn atomic_aggregate(&self) -> bool {
        self.attribute(type_code::ATOMIC_AGGREGATE).is_some()
    }

    /// ORIGINATOR_ID.
    pub fn originator_id(&self) -> Option<Ipv4Addr> {
        self.u32_value(type_code::ORIGINATOR_ID).map(Ipv4Addr::from)
    }

    /// CLUSTER_LIST.
    pub fn cluster_list(&self) -> ClusterIter<'a> {
        ClusterIter(Records::new(
            self.value(type_code::CLUSTER_LIST).unwrap_or(&[]),
        ))
    }

    /// COMMUNITIES.
    pub fn communities(&self) -> CommunityIter<'a> {
        CommunityIter(Records::new(
            self.value(type_code::COMMUNITIES).unwrap_or(&[]),
        ))
    }

    /// EXTENDED_COMMUNITIES.
    pub fn extended_communities(&self) -> ExtendedCommunityIter<'a> {
        ExtendedCommunityIter(Records::new(
            self.value(type_code::EXTENDED_COMMUNITIES).unwrap_or(&[]),
        ))
    }

    /// LARGE_COMMUNITY.
    pub fn large_communities(&self) -> LargeCommunityIter<'a> {
        LargeCommunityIter(Records::new(
            self.value(type_code::LARGE_COMMUNITY).unwrap_or(&[]),
        ))
    }

    /// MP_REACH_NLRI.
    pub fn mp_reach(&self) -> Option<MpReachView<'a>> {
        let p = split_mp_reach(self.value(type_code::MP_REACH_NLRI)?)?;
        Some(MpReachView {
            afi: p.afi,
            safi: p.safi,
            next_hop_bytes: p.next_hop,
            nlri: p.nlri,
            ipv6: ip_family(p.afi, p.safi),
            add_path: add_path_for(&self.ctx, p.afi, p.safi),
        })
    }

    /// MP_UNREACH_NLRI.
    pub fn mp_unreach(&self) -> Option<MpUnreachView<'a>> {
        let (afi, safi, withdrawn) = split_mp_unreach(self.value(type_code::MP_UNREACH_NLRI)?)?;
        Some(MpUnreachView {
            afi,
            safi,
            withdrawn,
            ipv6: ip_family(afi, safi),
            add_path: add_path_for(&self.ctx, afi, safi),
        })
    }

    /// The family this UPDATE marks the End-of-RIB of (RFC 4724 §2), if it is one.
    pub fn is_end_of_rib(&self) -> Option<(Afi, Safi)> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        // Only the attributes the walk kept count, as in the owned decoder: AS4_PATH and
        // AS4_AGGREGATOR from a 4-octet speaker (RFC 6793 §4.1) and a NEXT_HOP in an UPDATE
        // without classic NLRI (RFC 4760 §3) are processed as if absent.
        let only = match self.kept {
            0 => return Some((Afi::Ipv4, Safi::Unicast)),
            1 => self.attribute(type_code::MP_UNREACH_NLRI)?,
            _ => return None,
        };
        let (afi, safi, w) = split_mp_unreach(only.value)?;
        w.is_empty().then_some((afi, safi))
    }

    /// Total prefixes announced (classic plus MP_REACH), counted without allocating.
    pub fn announced_count(&self) -> usize {
        self.nlri().count() + self.mp_reach().map_or(0, |m| m.nlri().count())
    }

    /// A prefix iterator over everything announced: classic NLRI then MP_REACH.
    pub fn announced(&self) -> impl Iterator<Item = IpNet> + 'a {
        let mp = self.mp_reach().map(|m| m.nlri()).into_iter().flatten();
        self.nlri().chain(mp)
    }

    /// A prefix iterator over everything withdrawn: classic field then MP_UNREACH.
    pub fn withdrawals(&self) -> impl Iterator<Item = IpNet> + 'a {
        let mp = self
            .mp_unreach()
            .map(|m| m.withdrawn())
            .into_iter()
            .flatten();
        self.withdrawn().chain(mp)
    }
}
