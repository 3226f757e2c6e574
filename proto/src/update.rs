//! The UPDATE message (RFC 4271 §4.3), its RFC 7606 error handling and End-of-RIB markers
//! (RFC 4724 §2).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
//!
//! One walker ([`walk`]) checks an UPDATE body without allocating and is shared by the owned
//! decoder ([`UpdateMessage::decode_body`]) and the borrowing [`crate::UpdateView`]:
//!
//! - session reset (returned as `Err`): field lengths overrunning the message (RFC 4271
//!   §6.3), a syntactically wrong prefix in any NLRI field (RFC 7606 §5.3), a repeated or
//!   malformed MP_REACH/MP_UNREACH (RFC 7606 §3 g, §7.11), an MP_REACH/MP_UNREACH
//!   overrunning the attribute list (§3 last paragraph, RFC 4760 §7), an unknown well-known
//!   attribute, and any treat-as-withdraw error in an UPDATE without reachable NLRI (§5.2);
//! - treat-as-withdraw: an attribute overrunning the attribute list (RFC 7606 §4), wrong
//!   Optional/Transitive flags (§3 c), a missing mandatory attribute (§3 d), and the
//!   per-attribute cases of §7;
//! - attribute discard: repeated attributes after the first (§3 g), malformed
//!   ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR (§7.6, §7.7, RFC 6793 §6).
//!
//! With several errors the strongest action wins (RFC 7606 §3 j).
//!
//! AS numbers: in a 2-octet session AS_PATH is decoded into `u32` values and AS4_PATH is
//! kept as its own attribute (merging the two, RFC 6793 §4.2.3, is the RIB's business). On
//! encoding in a 2-octet session, an ASN above 65535 becomes AS_TRANS (23456) in AS_PATH and
//! AGGREGATOR, and AS4_PATH / AS4_AGGREGATOR are added unless present (RFC 6793 §4.2.2).
//!
//! ADD-PATH (RFC 7911): path identifiers are parsed when the [`DecodeContext`] says so; the
//! owned types have no place for them, so the owned decoder drops them (the view yields
//! them) and the encoder never writes them.

use ipnet::{IpNet, Ipv4Net};

use bytes::{BufMut, BytesMut};

use crate::attribute::decode::decode_checked;
use crate::attribute::{
    check_attribute, split_attribute, split_mp_reach, type_code, AsPath, AsPathSegmentType,
    MpUnreach, PathAttribute, RawAttribute,
};
use crate::error::{AttributeListFault, DecodeError, EncodeError, ErrorAction, NlriLocation};
use crate::iana::{Afi, Safi};
use crate::message::{DecodeContext, EncodeContext, HEADER_LEN};
use crate::nlri::{encode_prefix, validate_prefixes};
use crate::wire::{patch_len, u16_};

/// An owned UPDATE message: what the announcer builds and what test peers decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateMessage {
    /// IPv4 unicast prefixes withdrawn in the classic field.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes, in wire order.
    pub attributes: Vec<PathAttribute>,
    /// IPv4 unicast prefixes announced in the classic field.
    pub nlri: Vec<Ipv4Net>,
}

/// An UPDATE decoded with RFC 7606: the message with the outcome applied, and the
/// non-fatal errors found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedUpdate {
    /// The UPDATE. Attributes RFC 7606 discards are absent; when the action is
    /// treat-as-withdraw, every announced prefix (classic NLRI and MP_REACH) has been moved
    /// to the withdrawn side and the other attributes dropped.
    pub update: UpdateMessage,
    /// Treat-as-withdraw and attribute-discard errors, in wire order.
    pub findings: Vec<DecodeError>,
}

impl DecodedUpdate {
    /// The strongest action among the findings (RFC 7606 §3 j), `None` when clean.
    pub fn action(&self) -> Option<ErrorAction> {
        self.findings.iter().map(DecodeError::action).max()
    }
}

/// What the walker reports to its user.
pub(crate) trait UpdateVisitor<'a> {
    /// A non-fatal error.
    fn finding(&mut self, e: DecodeError);
    /// A well-formed attribute, first of its type, at `offset` in the attribute list.
    fn attribute(&mut self, offset: usize, a: RawAttribute<'a>);
}

/// The three regions of a walked UPDATE body and the RFC 7606 outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateLayout<'a> {
    pub(crate) withdrawn: &'a [u8],
    pub(crate) attributes: &'a [u8],
    pub(crate) nlri: &'a [u8],
    pub(crate) action: Option<ErrorAction>,
}

/// A 256-bit set of attribute type codes.
#[derive(Debug, Clone, Copy, Default)]
struct TypeSet([u64; 4]);

impl TypeSet {
    fn insert(&mut self, t: u8) -> bool {
        let (w, b) = (usize::from(t / 64), t % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }
    fn contains(&self, t: u8) -> bool {
        self.0[usize::from(t / 64)] & (1 << (t % 64)) != 0
    }
}

/// Checks an UPDATE body (after the header) without allocating on the success path.
pub(crate) fn walk<'a, V: UpdateVisitor<'a>>(
    body: &'a [u8],
    ctx: &DecodeContext,
    visit: &mut V,
) -> Result<UpdateLayout<'a>, DecodeError> {
    let list = |fault| DecodeError::MalformedAttributeList { fault };
    let (rest, wlen) = u16_(body).map_err(|_| DecodeError::BadMessageLength {
        len: u16::try_from(body.len() + HEADER_LEN).unwrap_or(u16::MAX),
    })?;
    let (withdrawn, rest) = rest
        .split_at_checked(usize::from(wlen))
        .ok_or(list(AttributeListFault::WithdrawnLengthOverrun))?;
    let (rest, alen) = u16_(rest).map_err(|_| list(AttributeListFault::WithdrawnLengthOverrun))?;
    let (attributes, nlri) = rest
        .split_at_checked(usize::from(alen))
        .ok_or(list(AttributeListFault::TotalAttributeLengthOverrun))?;
    validate_prefixes(withdrawn, false, ctx.add_path_ipv4).map_err(|_| {
        DecodeError::InvalidNetworkField {
            location: NlriLocation::Withdrawn,
        }
    })?;
    validate_prefixes(nlri, false, ctx.add_path_ipv4).map_err(|_| {
        DecodeError::InvalidNetworkField {
            location: NlriLocation::Nlri,
        }
    })?;

    let mut action: Option<ErrorAction> = None;
    // The first error stronger than attribute discard, kept for RFC 7606 §5.2 (below);
    // cloned only on the error path.
    let mut first_withdraw: Option<DecodeError> = None;
    let mut report = |e: DecodeError, visit: &mut V| {
        let a = e.action();
        if a > ErrorAction::AttributeDiscard && first_withdraw.is_none() {
            first_withdraw = Some(e.clone());
        }
        action = action.max(Some(a));
        visit.finding(e);
    };
    // Whether an MP_REACH_NLRI announces at least one prefix (RFC 7606 §5.2).
    let mut mp_reachable = false;
    let mut seen = TypeSet::default();
    let mut i = attributes;
    while !i.is_empty() {
        let offset = attributes.len() - i.len();
        let Some((a, rest)) = split_attribute(i) else {
            // RFC 7606 §3, last paragraph: treat-as-withdraw needs "the entire NLRI field
            // and/or the MP_REACH_NLRI and MP_UNREACH_NLRI attributes" parsed; when they
            // cannot be, RFC 4271 / RFC 4760 apply and the session is reset. An
            // MP_REACH_NLRI or MP_UNREACH_NLRI overrunning the list is an incorrect MP
            // attribute, which RFC 4760 §7 closes with "UPDATE Message Error" / "Optional
            // Attribute Error" (3/9); the data is the attribute as far as it goes. Any
            // other overrunning attribute stays the treat-as-withdraw of RFC 7606 §4.
            if let Some(&code) = i.get(1) {
                if code == type_code::MP_REACH_NLRI || code == type_code::MP_UNREACH_NLRI {
                    return Err(DecodeError::OptionalAttributeError {
                        type_code: code,
                        attribute: i.to_vec(),
                    });
                }
            }
            report(list(AttributeListFault::AttributeOverrun), visit);
            break;
        };
        i = rest;
        // RFC 6793 §4.1: AS4_PATH and AS4_AGGREGATOR received from a NEW (4-octet)
        // speaker "MUST" be discarded, and the UPDATE processed as if they were absent:
        // the 4-octet AS_PATH and AGGREGATOR already carry the truth.
        if ctx.four_octet_as
            && matches!(a.type_code, type_code::AS4_PATH | type_code::AS4_AGGREGATOR)
        {
            continue;
        }
        if !seen.insert(a.type_code) {
            if a.type_code == type_code::MP_REACH_NLRI || a.type_code == type_code::MP_UNREACH_NLRI
            {
                return Err(list(AttributeListFault::DuplicateMpAttribute));
            }
            report(
                list(AttributeListFault::DuplicateAttribute {
                    type_code: a.type_code,
                }),
                visit,
            );
            continue;
        }
        let check = check_attribute(&a, ctx);
        if a.type_code == type_code::MP_REACH_NLRI
            && matches!(check, Ok(()) | Err(DecodeError::AttributeFlagsError { .. }))
        {
            mp_reachable = split_mp_reach(a.value).is_some_and(|p| !p.nlri.is_empty());
        }
        match check {
            Ok(()) => visit.attribute(offset, a),
            Err(e) if e.action() == ErrorAction::SessionReset => return Err(e),
            // RFC 4760 §3: an UPDATE whose only NLRI is in MP_REACH_NLRI "SHOULD NOT carry
            // the NEXT_HOP attribute. If such a message contains the NEXT_HOP attribute,
            // the BGP speaker that receives the message SHOULD ignore this attribute." A
            // bad one (0.0.0.0, wrong length) must then not withdraw the MP prefixes.
            Err(_) if a.type_code == type_code::NEXT_HOP && nlri.is_empty() => {}
            Err(e @ DecodeError::AttributeFlagsError { .. })
                if a.type_code == type_code::MP_REACH_NLRI
                    || a.type_code == type_code::MP_UNREACH_NLRI =>
            {
                // The value is well-formed: keep it so that its prefixes are withdrawn.
                report(e, visit);
                visit.attribute(offset, a);
            }
            Err(e) => report(e, visit),
        }
    }
    // RFC 7606 §3 d, e: mandatory attributes only matter when something is announced; the
    // classic NLRI also needs NEXT_HOP.
    if !nlri.is_empty() || seen.contains(type_code::MP_REACH_NLRI) {
        let mut mandatory = [type_code::ORIGIN, type_code::AS_PATH, 0];
        if !nlri.is_empty() {
            mandatory[2] = type_code::NEXT_HOP;
        }
        for t in mandatory.into_iter().filter(|&t| t != 0) {
            if !seen.contains(t) {
                report(
                    DecodeError::MissingWellKnownAttribute { type_code: t },
                    visit,
                );
            }
        }
    }
    // RFC 7606 §5.2 (Missing NLRI): an UPDATE with path attributes other than
    // MP_UNREACH_NLRI but no reachable NLRI is not one of the well-specified cases, so the
    // NLRI cannot be trusted to have been parsed as §3 (last paragraph) requires: any error
    // whose approach is other than attribute discard makes it a session reset. The
    // NOTIFICATION is that of the error itself.
    if nlri.is_empty() && !mp_reachable {
        if let Some(error) = first_withdraw {
            return Err(DecodeError::NoReachableNlri {
                error: Box::new(error),
            });
        }
    }
    Ok(UpdateLayout {
        withdrawn,
        attributes,
        nlri,
        action,
    })
}

struct OwnedVisitor<'c> {
    ctx: &'c DecodeContext,
    attributes: Vec<PathAttribute>,
    findings: Vec<DecodeError>,
}

impl<'a> UpdateVisitor<'a> for OwnedVisitor<'_> {
    fn finding(&mut self, e: DecodeError) {
        self.findings.push(e);
    }
    fn attribute(&mut self, _offset: usize, a: RawAttribute<'a>) {
        self.attributes.push(decode_checked(&a, self.ctx));
    }
}

fn ipv4_prefixes(field: &[u8], add_path: bool) -> Vec<Ipv4Net> {
    crate::nlri::PrefixIter::new_unchecked(field, false, add_path)
        .filter_map(|n| match n {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect()
}

impl UpdateMessage {
    /// Decodes an UPDATE body (after the header) with RFC 7606 error handling: `Err` only
    /// for session-reset errors.
    pub fn decode_body(body: &[u8], ctx: &DecodeContext) -> Result<DecodedUpdate, DecodeError> {
        let mut v = OwnedVisitor {
            ctx,
            attributes: Vec::new(),
            findings: Vec::new(),
        };
        let layout = walk(body, ctx, &mut v)?;
        let mut update = UpdateMessage {
            withdrawn: ipv4_prefixes(layout.withdrawn, ctx.add_path_ipv4),
            attributes: v.attributes,
            nlri: ipv4_prefixes(layout.nlri, ctx.add_path_ipv4),
        };
        if layout.action == Some(ErrorAction::TreatAsWithdraw) {
            update = update.into_withdrawal();
        }
        Ok(DecodedUpdate {
            update,
            findings: v.findings,
        })
    }

    /// The RFC 7606 treat-as-withdraw rewrite: every announced prefix becomes a withdrawal,
    /// all other attributes are dropped.
    pub fn into_withdrawal(self) -> UpdateMessage {
        let mut withdrawn = self.withdrawn;
        withdrawn.extend(self.nlri);
        let mut unreach: Vec<MpUnreach> = Vec::new();
        for a in self.attributes {
            let (afi, safi, nets) = match a {
                PathAttribute::MpReach(r) => (r.afi, r.safi, r.nlri),
                PathAttribute::MpUnreach(u) => (u.afi, u.safi, u.withdrawn),
                _ => continue,
            };
            match unreach.iter_mut().find(|u| u.afi == afi && u.safi == safi) {
                Some(u) => u.withdrawn.extend(nets),
                None => unreach.push(MpUnreach {
                    afi,
                    safi,
                    withdrawn: nets,
                }),
            }
        }
        UpdateMessage {
            withdrawn,
            attributes: unreach.into_iter().map(PathAttribute::MpUnreach).collect(),
            nlri: Vec::new(),
        }
    }

    /// The End-of-RIB marker for IPv4 unicast: an empty UPDATE (RFC 4724 §2).
    pub fn end_of_rib_ipv4() -> Self {
        UpdateMessage::default()
    }

    /// The End-of-RIB marker for a family: an empty UPDATE for IPv4 unicast, otherwise an
    /// UPDATE with only an empty MP_UNREACH_NLRI (RFC 4724 §2).
    pub fn end_of_rib(afi: Afi, safi: Safi) -> Self {
        if (afi, safi) == (Afi::Ipv4, Safi::Unicast) {
            return UpdateMessage::end_of_rib_ipv4();
        }
        UpdateMessage {
            withdrawn: Vec::new(),
            attributes: vec![PathAttribute::MpUnreach(MpUnreach {
                afi,
                safi,
                withdrawn: Vec::new(),
            })],
            nlri: Vec::new(),
        }
    }

    /// The family this UPDATE marks the End-of-RIB of, if it is such a marker.
    pub fn is_end_of_rib(&self) -> Option<(Afi, Safi)> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some((Afi::Ipv4, Safi::Unicast)),
            [PathAttribute::MpUnreach(u)] if u.withdrawn.is_empty() => Some((u.afi, u.safi)),
            _ => None,
        }
    }

    /// Appends the UPDATE body.
    pub(crate) fn encode_body(
        &self,
        ctx: &EncodeContext,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let wpos = out.len();
        out.put_u16(0);
        for net in &self.withdrawn {
            encode_prefix(&IpNet::V4(*net), out)?;
        }
        patch_len(out, wpos, 2, "withdrawn routes length")?;
        let apos = out.len();
        out.put_u16(0);
        let has = |t: u8| self.attributes.iter().any(|a| a.type_code() == t);
        for a in &self.attributes {
            a.encode(ctx, out)?;
            if ctx.four_octet_as {
                continue;
            }
            // RFC 6793 §4.2.2: a NEW speaker talking to an OLD one carries 4-octet ASNs in
            // AS4_PATH / AS4_AGGREGATOR, without confederation segments.
            match a {
                PathAttribute::AsPath(p) if p.has_four_octet_asn() && !has(type_code::AS4_PATH) => {
                    let as4 = AsPath {
                        segments: p
                            .segments
                            .iter()
                            .filter(|s| {
                                matches!(
                                    s.kind,
                                    AsPathSegmentType::Sequence | AsPathSegmentType::Set
                                )
                            })
                            .cloned()
                            .collect(),
                    };
                    PathAttribute::As4Path(as4).encode(ctx, out)?;
                }
                PathAttribute::Aggregator { asn, address }
                    if *asn > u32::from(u16::MAX) && !has(type_code::AS4_AGGREGATOR) =>
                {
                    PathAttribute::As4Aggregator {
                        asn: *asn,
                        address: *address,
                    }
                    .encode(ctx, out)?;
                }
                _ => {}
            }
        }
        patch_len(out, apos, 2, "total path attribute length")?;
        for net in &self.nlri {
            encode_prefix(&IpNet::V4(*net), out)?;
        }
        Ok(())
    }
}
