//! The few DNS messages the DNS probe needs (RFC 1035 §4): an A/AAAA query and the
//! answer section of its response. Strict and bounded: every read is checked against the
//! message length, compression pointers are followed only to skip names, and at most
//! [`MAX_LABELS`] labels are walked per name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RR type A (RFC 1035 §3.2.2).
pub(crate) const TYPE_A: u16 = 1;
/// RR type AAAA (RFC 3596 §2.1).
pub(crate) const TYPE_AAAA: u16 = 28;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Header length (RFC 1035 §4.1.1).
const HEADER_LEN: usize = 12;
/// Bound on labels walked in one name (a name has at most 127).
const MAX_LABELS: usize = 128;

/// Why a response was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DnsError {
    /// The name cannot be encoded.
    #[error("invalid name {0:?}")]
    BadName(String),
    /// The message ends early or a length points outside it.
    #[error("malformed response")]
    Malformed,
    /// Not a response to our query (id or QR bit).
    #[error("not a response to our query")]
    NotOurs,
    /// TC bit set: the answer did not fit in UDP (TCP fallback is not supported).
    #[error("truncated response (TCP fallback not supported)")]
    Truncated,
    /// RCODE other than NOERROR.
    #[error("rcode {0}")]
    Rcode(u16),
}

/// Encodes a recursive query for `name` (without trailing dot) and `qtype`.
pub(crate) fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut m = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    encode_name(&mut m, name)?;
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

fn encode_name(m: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let name = name.trim_end_matches('.');
    if name.len() > 253 {
        return Err(DnsError::BadName(name.to_owned()));
    }
    for label in name.split('.') {
        let len = u8::try_from(label.len()).map_err(|_| DnsError::BadName(name.to_owned()))?;
        if len == 0 || len > 63 {
            return Err(DnsError::BadName(name.to_owned()));
        }
        m.push(len);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    Ok(())
}

/// Parses a response to query `id`: the addresses of type `qtype` in the answer section.
pub(crate) fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Result<Vec<IpAddr>, DnsError> {
    let mut r = Reader { msg, pos: 0 };
    let rid = r.u16()?;
    let flags = r.u16()?;
    if rid != id || flags & 0x8000 == 0 {
        return Err(DnsError::NotOurs);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    let rcode = flags & 0x000F;
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    r.skip(4)?; // NSCOUNT, ARCOUNT
    for _ in 0..qdcount {
        r.skip_name()?;
        r.skip(4)?;
    }
    let mut out = Vec::new();
    for _ in 0..ancount {
        r.skip_name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        r.skip(4)?; // TTL
        let len = usize::from(r.u16()?);
        let data = r.take(len)?;
        if class != CLASS_IN || rtype != qtype {
            continue; // e.g. the CNAME chain leading to the address
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => {
                let b: [u8; 4] = data.try_into().map_err(|_| DnsError::Malformed)?;
                out.push(IpAddr::V4(Ipv4Addr::from(b)));
            }
            (TYPE_AAAA, 16) => {
                let b: [u8; 16] = data.try_into().map_err(|_| DnsError::Malformed)?;
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => return Err(DnsError::Malformed),
        }
    }
    Ok(out)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Malformed)?;
        let s = self.msg.get(self.pos..end).ok_or(DnsError::Malformed)?;
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), DnsError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Skips a possibly compressed name (RFC 1035 §4.1.4); a pointer ends it.
    fn skip_name(&mut self) -> Result<(), DnsError> {
        for _ in 0..MAX_LABELS {
            let len = self.take(1)?[0];
            match len & 0xC0 {
                0xC0 => return self.skip(1),
                0x00 if len == 0 => return Ok(()),
                0x00 => self.skip(usize::from(len))?,
                _ => return Err(DnsError::Malformed),
            }
        }
        Err(DnsError::Malformed)
    }
}

/// Builds a response to `query` carrying `answers` (test responders only).
#[cfg(test)]
pub(crate) fn build_response(query: &[u8], rcode: u16, answers: &[IpAddr]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&query[..2]);
    m.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    let an = u16::try_from(answers.len()).unwrap_or(u16::MAX);
    m.extend_from_slice(&an.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&query[HEADER_LEN..]);
    for a in answers {
        m.extend_from_slice(&[0xC0, 0x0C]); // pointer to the question name
        let (t, data) = match a {
            IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
            IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
        };
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&300u32.to_be_bytes());
        let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&data);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encodes_header_name_type_and_class() {
        let q = build_query(0x1234, "a.example.test.", TYPE_AAAA).unwrap_or_default();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x01a\x07example\x04test\x00\x00\x1c\x00\x01");
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(build_query(1, "a..b", TYPE_A).is_err());
        assert!(build_query(1, &"x".repeat(64), TYPE_A).is_err());
    }

    #[test]
    fn response_answers_are_parsed_through_compression_pointers() {
        let q = build_query(7, "h.example.test", TYPE_A).unwrap_or_default();
        let answers: Vec<IpAddr> = vec![[198, 51, 100, 53].into(), [198, 51, 100, 54].into()];
        let r = build_response(&q, 0, &answers);
        assert_eq!(parse_response(&r, 7, TYPE_A), Ok(answers));
    }

    #[test]
    fn wrong_id_rcode_truncation_and_short_messages_are_errors() {
        let q = build_query(7, "h.example.test", TYPE_A).unwrap_or_default();
        let r = build_response(&q, 0, &[[198, 51, 100, 53].into()]);
        assert_eq!(parse_response(&r, 8, TYPE_A), Err(DnsError::NotOurs));
        assert_eq!(
            parse_response(&q, 7, TYPE_A),
            Err(DnsError::NotOurs),
            "a query is not a response"
        );
        let nx = build_response(&q, 3, &[]);
        assert_eq!(parse_response(&nx, 7, TYPE_A), Err(DnsError::Rcode(3)));
        let mut tc = r.clone();
        tc[2] |= 0x02;
        assert_eq!(parse_response(&tc, 7, TYPE_A), Err(DnsError::Truncated));
        for cut in 0..r.len() {
            assert!(
                parse_response(&r[..cut], 7, TYPE_A).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn other_types_in_the_answer_are_skipped() {
        let q = build_query(9, "h.example.test", TYPE_A).unwrap_or_default();
        let r = build_response(
            &q,
            0,
            &["2001:db8::1".parse().unwrap_or(IpAddr::from([0; 4]))],
        );
        assert_eq!(parse_response(&r, 9, TYPE_A), Ok(vec![]));
    }
}
