//! Encoding of one [`PathAttribute`] (RFC 4271 §4.3): the Extended Length flag is set
//! exactly when the value is longer than 255 octets, an unknown optional transitive
//! attribute gets the Partial bit (RFC 4271 §5), and 4-octet ASNs become AS_TRANS in a
//! 2-octet session (RFC 6793 §4.2.2; the AS4_PATH / AS4_AGGREGATOR companions are added by
//! the UPDATE encoder).

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::{expected_flags, flags, AsPath, AsPathSegmentType, PathAttribute};
use crate::error::{check_len, EncodeError};
use crate::iana::Afi;
use crate::message::EncodeContext;
use crate::nlri::encode_prefix;
use crate::open::AS_TRANS;

/// An ASN as written in a 2-octet field.
pub(crate) fn two_octet(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}

/// Appends an AS_PATH-style value with `width`-octet ASNs.
pub(crate) fn encode_as_path(
    path: &AsPath,
    width: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    for seg in &path.segments {
        if seg.asns.is_empty() {
            return Err(EncodeError::EmptyAsPathSegment);
        }
        // A segment holds at most 255 ASNs. A longer sequence is sent as several
        // consecutive segments of the same type, which mean the same path (RFC 4271
        // §9.1.2.2 b: when a prepend overflows the first AS_SEQUENCE, "prepend a new
        // segment of type AS_SEQUENCE"); a set cannot be split without changing its
        // path length, so a longer one stays an error.
        let splittable = matches!(
            seg.kind,
            AsPathSegmentType::Sequence | AsPathSegmentType::ConfedSequence
        );
        if !splittable {
            check_len(
                "AS_PATH segment length",
                seg.asns.len(),
                usize::from(u8::MAX),
            )?;
        }
        for chunk in seg.asns.chunks(usize::from(u8::MAX)) {
            out.put_u8(seg.kind.code());
            out.put_u8(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            for &asn in chunk {
                if width == 4 {
                    out.put_u32(asn);
                } else {
                    out.put_u16(two_octet(asn));
                }
            }
        }
    }
    Ok(())
}

fn check_family(net: &IpNet, afi: Afi, field: &'static str) -> Result<(), EncodeError> {
    match (net, afi) {
        (IpNet::V4(_), Afi::Ipv4) | (IpNet::V6(_), Afi::Ipv6) => Ok(()),
        _ => Err(EncodeError::FamilyMismatch { field }),
    }
}

impl PathAttribute {
    /// The flags this attribute is sent with, before the Extended Length bit.
    fn wire_flags(&self) -> u8 {
        match self {
            PathAttribute::Unknown { flags: f, .. } => {
                let mut f = f & (flags::OPTIONAL | flags::TRANSITIVE | flags::PARTIAL);
                if f & flags::OPTIONAL != 0 && f & flags::TRANSITIVE != 0 {
                    // RFC 4271 §5: we pass on an unrecognised optional transitive attribute,
                    // so it is marked partial.
                    f |= flags::PARTIAL;
                }
                f
            }
            other => expected_flags(other.type_code()).unwrap_or(flags::OPTIONAL),
        }
    }

    /// Appends the attribute.
    pub fn encode(&self, ctx: &EncodeContext, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let fl = self.wire_flags();
        out.put_u8(fl | flags::EXTENDED_LENGTH);
        out.put_u8(self.type_code());
        out.put_u16(0);
        let value_start = out.len();
        self.encode_value(ctx, out)?;
        let len = out.len() - value_start;
        check_len("attribute length", len, usize::from(u16::MAX))?;
        if len <= usize::from(u8::MAX) {
            // Short value: drop the second length octet.
            out.copy_within(value_start.., value_start - 1);
            out.truncate(out.len() - 1);
            out[start] = fl;
            out[start + 2] = u8::try_from(len).unwrap_or(u8::MAX);
        } else {
            let l = u16::try_from(len).unwrap_or(u16::MAX);
            out[start + 2..start + 4].copy_from_slice(&l.to_be_bytes());
        }
        Ok(())
    }

    fn encode_value(&self, ctx: &EncodeContext, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            PathAttribute::Origin(o) => out.put_u8(u8::from(*o)),
            PathAttribute::AsPath(p) => {
                encode_as_path(p, if ctx.four_octet_as { 4 } else { 2 }, out)?
            }
            PathAttribute::As4Path(p) => encode_as_path(p, 4, out)?,
            PathAttribute::NextHop(a) => out.put_slice(&a.octets()),
            PathAttribute::MultiExitDisc(v) | PathAttribute::LocalPref(v) => out.put_u32(*v),
            PathAttribute::AtomicAggregate => {}
            PathAttribute::Aggregator { asn, address } => {
                if ctx.four_octet_as {
                    out.put_u32(*asn);
                } else {
                    out.put_u16(two_octet(*asn));
                }
                out.put_slice(&address.octets());
            }
            PathAttribute::As4Aggregator { asn, address } => {
                out.put_u32(*asn);
                out.put_slice(&address.octets());
            }
            PathAttribute::Communities(cs) => cs.iter().for_each(|c| out.put_u32(c.0)),
            PathAttribute::OriginatorId(a) => out.put_slice(&a.octets()),
            PathAttribute::ClusterList(ids) => ids.iter().for_each(|a| out.put_slice(&a.octets())),
            PathAttribute::ExtendedCommunities(cs) => cs.iter().for_each(|c| out.put_slice(&c.0)),
            PathAttribute::LargeCommunities(cs) => cs.iter().for_each(|c| {
                out.put_u32(c.global);
                out.put_u32(c.local1);
                out.put_u32(c.local2);
            }),
            PathAttribute::MpReach(m) => {
                out.put_u16(u16::from(m.afi));
                out.put_u8(u8::from(m.safi));
                match (m.afi, m.next_hop, m.link_local_next_hop) {
                    (Afi::Ipv4, IpAddr::V4(nh), None) => {
                        out.put_u8(4);
                        out.put_slice(&nh.octets());
                    }
                    // RFC 8950 §3 for IPv4 NLRI, RFC 2545 §3 for IPv6.
                    (Afi::Ipv4 | Afi::Ipv6, IpAddr::V6(nh), ll) => {
                        out.put_u8(if ll.is_some() { 32 } else { 16 });
                        out.put_slice(&nh.octets());
                        if let Some(ll) = ll {
                            out.put_slice(&ll.octets());
                        }
                    }
                    _ => {
                        return Err(EncodeError::FamilyMismatch {
                            field: "MP_REACH_NLRI next hop",
                        })
                    }
                }
                // Reserved (RFC 4760 §3).
                out.put_u8(0);
                for net in &m.nlri {
                    check_family(net, m.afi, "MP_REACH_NLRI prefix")?;
                    encode_prefix(net, out)?;
                }
            }
            PathAttribute::MpUnreach(m) => {
                out.put_u16(u16::from(m.afi));
                out.put_u8(u8::from(m.safi));
                for net in &m.withdrawn {
                    check_family(net, m.afi, "MP_UNREACH_NLRI prefix")?;
                    encode_prefix(net, out)?;
                }
            }
            PathAttribute::Unknown { value, .. } => out.put_slice(value),
        }
        Ok(())
    }
}
