//! Invariant checks shared by the fuzz targets (`proto/fuzz`) and their regression tests.
//! Each function panics when an invariant is broken; that is its purpose. Not part of the
//! codec proper.
//!
//! Input layout: the first octet selects the [`DecodeContext`] (bit 0 four-octet AS, bit 1
//! extended message, bit 2 ADD-PATH IPv4, bit 3 ADD-PATH IPv6). With bit 7 set the rest is
//! taken as a raw frame; otherwise the rest is a message type octet and a body, and a valid
//! header is built around them so that the fuzzer spends its time inside the messages.

use bytes::BytesMut;

use crate::attribute::flags;
use crate::message::{frame_len, DecodeContext, DecodedMessage, EncodeContext, Message, MARKER};
use crate::notification::NotificationMessage;
use crate::update_view::UpdateView;
use crate::PathAttribute;

fn split_input(data: &[u8]) -> Option<(DecodeContext, Vec<u8>)> {
    let (&sel, rest) = data.split_first()?;
    let ctx = DecodeContext {
        four_octet_as: sel & 1 != 0,
        extended_message: sel & 2 != 0,
        add_path_ipv4: sel & 4 != 0,
        add_path_ipv6: sel & 8 != 0,
    };
    if sel & 0x80 != 0 {
        return Some((ctx, rest.to_vec()));
    }
    let (&msg_type, body) = rest.split_first()?;
    let len = u16::try_from(body.len() + 19).ok()?;
    let mut frame = MARKER.to_vec();
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(msg_type);
    frame.extend_from_slice(body);
    Some((ctx, frame))
}

/// Decodes the input every way the crate offers; checks that nothing panics and that the
/// owned decoder and the borrowing view agree.
pub fn check_decode(data: &[u8]) {
    let Some((ctx, frame)) = split_input(data) else {
        return;
    };
    for cut in [0, 1, 16, 18, 19, frame.len() / 2, frame.len()] {
        if let Some(prefix) = frame.get(..cut) {
            if let Ok(Some(n)) = frame_len(prefix, &ctx) {
                assert!(n <= prefix.len(), "frame_len beyond its input");
            }
        }
    }
    let owned = Message::decode_lenient(&frame, &ctx);
    if let Err(e) = &owned {
        // Total mapping; never panics.
        let n = NotificationMessage::from(e);
        assert!(
            n.data.len() <= frame.len() + 2,
            "NOTIFICATION data larger than the input"
        );
    }
    let is_update = frame.get(18) == Some(&2) && frame.get(..16) == Some(&MARKER[..]);
    if !is_update {
        return;
    }
    let view = UpdateView::parse(&frame, &ctx);
    match (&owned, &view) {
        (
            Ok(DecodedMessage {
                message: Message::Update(u),
                findings,
            }),
            Ok(v),
        ) => {
            let action = findings.iter().map(crate::DecodeError::action).max();
            assert_eq!(action, v.action(), "owned and view actions differ");
            assert_eq!(findings.len(), v.finding_count(), "finding counts differ");
            // Walk everything the view offers.
            let _ = v.attributes().count();
            let _ = v.withdrawals().count();
            let _ = v.communities().count() + v.large_communities().count();
            let _ = v.extended_communities().count() + v.cluster_list().count();
            if let Some(p) = v.as_path() {
                let _ = p.route_len();
            }
            if let Some(m) = v.mp_reach() {
                let _ = (m.next_hop(), m.link_local_next_hop());
            }
            if action.is_none() {
                let nlri: Vec<_> = v.nlri().collect();
                let owned_nlri: Vec<_> = u.nlri.iter().map(|n| ipnet::IpNet::V4(*n)).collect();
                assert_eq!(nlri, owned_nlri, "classic NLRI differ");
                let withdrawn: Vec<_> = v.withdrawn().collect();
                assert_eq!(withdrawn.len(), u.withdrawn.len(), "withdrawn differ");
                assert_eq!(v.is_end_of_rib(), u.is_end_of_rib(), "End-of-RIB differs");
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "owned and view errors differ"),
        (o, v) => panic!("owned {o:?} and view {v:?} disagree"),
    }
}

/// What re-encoding a decoded message changes on purpose: an unknown optional transitive
/// attribute gains the Partial bit (RFC 4271 §5).
pub fn normalise(m: &Message) -> Message {
    let mut m = m.clone();
    if let Message::Update(u) = &mut m {
        for a in &mut u.attributes {
            if let PathAttribute::Unknown { flags: f, .. } = a {
                if *f & flags::OPTIONAL != 0 && *f & flags::TRANSITIVE != 0 {
                    *f |= flags::PARTIAL;
                }
            }
        }
    }
    m
}

/// Decode -> encode -> decode: whatever decodes must encode, decode back to the same value
/// (after [`normalise`]) without findings, and encode to the same bytes again.
pub fn check_round_trip(data: &[u8]) {
    let Some((ctx, frame)) = split_input(data) else {
        return;
    };
    let Ok(first) = Message::decode_lenient(&frame, &ctx) else {
        return;
    };
    let ectx = EncodeContext {
        four_octet_as: ctx.four_octet_as,
        extended_message: ctx.extended_message,
    };
    let mut b1 = BytesMut::new();
    if let Err(e) = first.message.encode(&ectx, &mut b1) {
        panic!("decoded message does not encode: {e:?} {:?}", first.message);
    }
    // The owned types carry no ADD-PATH identifiers and the encoder never writes them
    // (see `update`), so the re-encoded message is read without ADD-PATH.
    let plain = DecodeContext {
        add_path_ipv4: false,
        add_path_ipv6: false,
        ..ctx
    };
    let second = match Message::decode_lenient(&b1, &plain) {
        Ok(d) => d,
        Err(e) => panic!(
            "re-encoded message does not decode: {e:?} {:?}",
            first.message
        ),
    };
    assert!(
        second.findings.is_empty(),
        "re-encoded message has findings: {:?}",
        second.findings
    );
    assert_eq!(
        normalise(&first.message),
        second.message,
        "round trip changed the value"
    );
    let mut b2 = BytesMut::new();
    if let Err(e) = second.message.encode(&ectx, &mut b2) {
        panic!("second encode failed: {e:?}");
    }
    assert_eq!(b1, b2, "encoding is not a fixpoint");
}

/// BFD Control packets (`crate::bfd`): decoding never panics, and whatever decodes encodes
/// back to the same bytes (up to Length: trailing payload is ignored) and decodes equal.
pub fn check_bfd(data: &[u8]) {
    let Ok(packet) = crate::bfd::ControlPacket::decode(data) else {
        return;
    };
    let mut buf = Vec::new();
    if let Err(e) = packet.encode(&mut buf) {
        panic!("decoded BFD packet does not encode: {e}");
    }
    assert_eq!(
        buf.as_slice(),
        &data[..buf.len()],
        "BFD re-encoding differs"
    );
    assert_eq!(
        crate::bfd::ControlPacket::decode(&buf).ok(),
        Some(packet),
        "BFD round trip differs"
    );
}
