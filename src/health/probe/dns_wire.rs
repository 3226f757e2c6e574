//! The DNS probe's messages (RFC 1035 §4): an A/AAAA query and the addresses in the answer
//! section of its response, encoded and decoded by `hickory-proto` (a fuzzed, well-kept
//! codec) rather than by hand. The header is read first, so a stray datagram (another id,
//! not a response) or a truncated answer is recognised even when the rest of it would not
//! decode; then the whole message is decoded, with hickory's bounds on every length,
//! label and compression pointer (RFC 1035 §4.1.4).

use std::net::IpAddr;

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

/// RR type A (RFC 1035 §3.2.2).
pub(crate) const TYPE_A: RecordType = RecordType::A;
/// RR type AAAA (RFC 3596 §2.1).
pub(crate) const TYPE_AAAA: RecordType = RecordType::AAAA;

/// Why a response was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DnsError {
    /// The name cannot be encoded.
    #[error("invalid name {name:?}: {reason}")]
    BadName {
        /// The name as configured.
        name: String,
        /// hickory's reason.
        reason: String,
    },
    /// The message does not decode (hickory's reason: a length or pointer outside the
    /// message, a label too long, a pointer loop, bad RDATA for its type, ...).
    #[error("malformed response: {0}")]
    Malformed(String),
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

/// Encodes a recursive query for `name` (with or without trailing dot) and `qtype`.
pub(crate) fn build_query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let bad = |reason: String| DnsError::BadName {
        name: name.to_owned(),
        reason,
    };
    let qname = Name::from_ascii(name).map_err(|e| bad(e.to_string()))?;
    if qname.is_root() {
        return Err(bad("the root has no address".to_owned()));
    }
    let mut query = Query::query(qname, qtype);
    query.set_query_class(DNSClass::IN);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query);
    m.to_vec().map_err(|e| bad(e.to_string()))
}

/// Parses a response to query `id`: the addresses of type `qtype` in the answer section.
pub(crate) fn parse_response(
    msg: &[u8],
    id: u16,
    qtype: RecordType,
) -> Result<Vec<IpAddr>, DnsError> {
    let malformed = |e: hickory_proto::ProtoError| DnsError::Malformed(e.to_string());
    let header = Header::from_bytes(msg).map_err(malformed)?;
    if header.id() != id || header.message_type() != MessageType::Response {
        return Err(DnsError::NotOurs);
    }
    if header.truncated() {
        return Err(DnsError::Truncated);
    }
    if header.response_code() != ResponseCode::NoError {
        return Err(DnsError::Rcode(u16::from(header.response_code())));
    }
    let message = Message::from_vec(msg).map_err(malformed)?;
    let mut out = Vec::new();
    for record in message.answers() {
        if record.dns_class() != DNSClass::IN || record.record_type() != qtype {
            continue; // e.g. the CNAME chain leading to the address
        }
        match record.data() {
            RData::A(a) if qtype == RecordType::A => out.push(IpAddr::V4(a.0)),
            RData::AAAA(a) if qtype == RecordType::AAAA => out.push(IpAddr::V6(a.0)),
            other => {
                return Err(DnsError::Malformed(format!(
                    "{qtype} record with {} data",
                    other.record_type()
                )))
            }
        }
    }
    Ok(out)
}

/// Header length (RFC 1035 §4.1.1).
#[cfg(test)]
const HEADER_LEN: usize = 12;
/// Class IN.
#[cfg(test)]
const CLASS_IN: u16 = 1;

/// Builds a response to `query` carrying `answers` (test responders only), byte by byte as
/// a resolver sends it: answer names are compression pointers to the question.
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
        m.extend_from_slice(&u16::from(t).to_be_bytes());
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

    /// A valid response to a query for `h.example.test` A (id 7) with one answer, and the
    /// offset of that answer's name.
    fn one_answer() -> (Vec<u8>, usize) {
        let q = build_query(7, "h.example.test", TYPE_A).unwrap_or_default();
        let r = build_response(&q, 0, &[[198, 51, 100, 53].into()]);
        (r, q.len())
    }

    fn malformed(r: &[u8]) -> String {
        match parse_response(r, 7, TYPE_A) {
            Err(DnsError::Malformed(why)) => why,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn hostile_answers_are_rejected_with_hickorys_reason() {
        let (good, at) = one_answer();
        assert!(parse_response(&good, 7, TYPE_A).is_ok());

        // The answer's name is a compression pointer to itself (a loop).
        let mut looped = good.clone();
        let [hi, lo] = u16::try_from(at).unwrap_or(0).to_be_bytes();
        looped[at] = 0xC0 | hi;
        looped[at + 1] = lo;
        let why = malformed(&looped);
        assert_eq!(
            why,
            format!("label points to data not prior to idx: {at} ptr: {at}")
        );

        // RDLENGTH runs past the end of the message.
        let mut long = good.clone();
        long[at + 10] = 0xFF;
        let why = malformed(&long);
        assert_eq!(
            why,
            "rdata length too large for remaining bytes, need: 65284 remain: 4"
        );

        // An A record of 5 bytes.
        let mut fat = good.clone();
        fat[at + 11] = 5;
        fat.push(0);
        let why = malformed(&fat);
        assert_eq!(why, "incorrect rdata length read: 4 expected: 5");

        // A reserved label type (0b01xxxxxx) in the question.
        let mut label = good;
        label[HEADER_LEN] = 0x41;
        let why = malformed(&label);
        assert_eq!(why, "unrecognized label code: 1000001");
    }

    proptest::proptest! {
        /// Whatever a resolver (or anyone spoofing one) sends: an error or addresses,
        /// never a panic.
        #[test]
        fn any_mutation_of_a_response_decodes_or_fails_without_panic(
            edits in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..80,
        ) {
            let (mut r, _) = one_answer();
            for (i, b) in edits {
                if let Some(x) = r.get_mut(i) {
                    *x = b;
                }
            }
            r.truncate(cut.max(1));
            let _ = parse_response(&r, 7, TYPE_A);
        }
    }
}
