//! One malformed message per `DecodeError` variant, asserting the NOTIFICATION code,
//! subcode and data that RFC 4271 §6 (RFC 7313 §5, RFC 7607) prescribe, and the RFC 7606
//! action.
#![allow(clippy::unwrap_used)]

mod common;

use anyguard_proto::{
    frame_len, AttributeListFault, DecodeContext, DecodeError, ErrorAction, ErrorCode, Message,
    NlriLocation, NotificationMessage, UpdateView,
};
use common::{ctx4, frame, hex};

fn err(bytes: &[u8], ctx: &DecodeContext) -> DecodeError {
    match Message::decode(bytes, ctx) {
        Err(e) => e,
        Ok(m) => panic!("decoded {m:?}"),
    }
}

fn notification(e: &DecodeError) -> (u8, u8, Vec<u8>) {
    let n = NotificationMessage::from(e);
    (u8::from(n.code), n.subcode, n.data)
}

fn update(attrs: &str, nlri: &str) -> Vec<u8> {
    let a = hex(attrs);
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&hex(nlri));
    frame(2, &body)
}

const OPEN_HEAD: &str = "04 fde9 005a c6120001";
const BASE4: &str = "40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c6120001";

#[test]
fn bad_marker_is_connection_not_synchronized() {
    let mut f = frame(4, &[]);
    f[3] = 0;
    assert_eq!(
        frame_len(&f, &DecodeContext::default()),
        Err(DecodeError::ConnectionNotSynchronized)
    );
    // Detected before the header is complete.
    assert_eq!(
        frame_len(&f[..5], &DecodeContext::default()),
        Err(DecodeError::ConnectionNotSynchronized)
    );
    let e = err(&f, &DecodeContext::default());
    assert_eq!(notification(&e), (1, 1, vec![]));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn keepalive_with_a_body_is_bad_message_length() {
    let e = err(&frame(4, &[0]), &DecodeContext::default());
    assert_eq!(e, DecodeError::BadMessageLength { len: 20 });
    assert_eq!(notification(&e), (1, 2, vec![0x00, 0x14]));
}

#[test]
fn lengths_outside_the_negotiated_maximum_are_bad_message_length() {
    let ctx = DecodeContext::default();
    let mut h = vec![0xff; 16];
    h.extend_from_slice(&hex("1001 02")); // 4097
    assert_eq!(
        frame_len(&h, &ctx),
        Err(DecodeError::BadMessageLength { len: 4097 })
    );
    let ext = DecodeContext {
        extended_message: true,
        ..ctx
    };
    assert_eq!(frame_len(&h, &ext), Ok(None));
    // RFC 8654 §4: an OPEN never exceeds 4096 octets.
    let mut o = vec![0xff; 16];
    o.extend_from_slice(&hex("1001 01"));
    assert_eq!(
        frame_len(&o, &ext),
        Err(DecodeError::BadMessageLength { len: 4097 })
    );
    // Below the header size.
    let mut s = vec![0xff; 16];
    s.extend_from_slice(&hex("0012 04"));
    assert_eq!(
        frame_len(&s, &ctx),
        Err(DecodeError::BadMessageLength { len: 18 })
    );
    // An UPDATE shorter than 23.
    assert_eq!(
        err(&frame(2, &[0, 0]), &ctx),
        DecodeError::BadMessageLength { len: 21 }
    );
    // A NOTIFICATION shorter than 21.
    assert_eq!(
        err(&frame(3, &[6]), &ctx),
        DecodeError::BadMessageLength { len: 20 }
    );
}

#[test]
fn frame_len_asks_for_more_on_a_partial_buffer() {
    let f = frame(4, &[]);
    let ctx = DecodeContext::default();
    for cut in 0..f.len() {
        assert_eq!(frame_len(&f[..cut], &ctx), Ok(None), "cut at {cut}");
    }
    assert_eq!(frame_len(&f, &ctx), Ok(Some(19)));
    let mut two = f.clone();
    two.extend_from_slice(&f);
    assert_eq!(frame_len(&two, &ctx), Ok(Some(19)));
}

#[test]
fn unknown_message_type_is_bad_message_type() {
    let e = err(&frame(6, &[]), &DecodeContext::default());
    assert_eq!(notification(&e), (1, 3, vec![6]));
}

#[test]
fn open_version_three_is_unsupported_version_number() {
    let e = err(
        &frame(1, &hex("03 fde9 005a c6120001 00")),
        &DecodeContext::default(),
    );
    assert_eq!(e, DecodeError::UnsupportedVersionNumber { version: 3 });
    assert_eq!(notification(&e), (2, 1, vec![0, 4]));
}

#[test]
fn open_with_as_zero_is_bad_peer_as() {
    let e = err(
        &frame(1, &hex("04 0000 005a c6120001 00")),
        &DecodeContext::default(),
    );
    assert_eq!(notification(&e), (2, 2, vec![]));
    // RFC 7607: also in the 4-octet AS capability.
    let e = err(
        &frame(1, &hex(&format!("{OPEN_HEAD} 08 02 06 4104 00000000"))),
        &DecodeContext::default(),
    );
    assert_eq!(e, DecodeError::BadPeerAs { asn: 0 });
}

#[test]
fn open_with_identifier_zero_is_bad_bgp_identifier() {
    let e = err(
        &frame(1, &hex("04 fde9 005a 00000000 00")),
        &DecodeContext::default(),
    );
    assert_eq!(notification(&e), (2, 3, vec![]));
}

#[test]
fn open_with_an_authentication_parameter_is_unsupported_optional_parameter() {
    let e = err(
        &frame(1, &hex(&format!("{OPEN_HEAD} 03 01 01 00"))),
        &DecodeContext::default(),
    );
    assert_eq!(
        e,
        DecodeError::UnsupportedOptionalParameter { param_type: 1 }
    );
    assert_eq!(notification(&e), (2, 4, vec![]));
}

#[test]
fn open_with_a_malformed_capability_is_open_error_unspecific() {
    // Multiprotocol capability of length 3.
    let e = err(
        &frame(1, &hex(&format!("{OPEN_HEAD} 07 02 05 0103 000100"))),
        &DecodeContext::default(),
    );
    assert_eq!(
        e,
        DecodeError::MalformedOptionalParameter {
            capability_code: Some(1)
        }
    );
    assert_eq!(notification(&e), (2, 0, vec![]));
    // Opt Parm Len running past the message.
    let e = err(
        &frame(1, &hex(&format!("{OPEN_HEAD} 09 02 02 0200"))),
        &DecodeContext::default(),
    );
    assert_eq!(
        e,
        DecodeError::MalformedOptionalParameter {
            capability_code: None
        }
    );
}

#[test]
fn open_with_hold_time_two_is_unacceptable_hold_time() {
    let e = err(
        &frame(1, &hex("04 fde9 0002 c6120001 00")),
        &DecodeContext::default(),
    );
    assert_eq!(notification(&e), (2, 6, vec![]));
}

#[test]
fn update_withdrawn_length_overrun_is_malformed_attribute_list() {
    let e = err(&frame(2, &hex("0010 18cb0071 0000")), &ctx4());
    assert_eq!(
        e,
        DecodeError::MalformedAttributeList {
            fault: AttributeListFault::WithdrawnLengthOverrun
        }
    );
    assert_eq!(notification(&e), (3, 1, vec![]));
    assert_eq!(e.action(), ErrorAction::SessionReset);
    let e = err(&frame(2, &hex("0000 0010 400101")), &ctx4());
    assert_eq!(
        e,
        DecodeError::MalformedAttributeList {
            fault: AttributeListFault::TotalAttributeLengthOverrun
        }
    );
}

#[test]
fn update_with_unknown_well_known_attribute_is_unrecognized_well_known() {
    let e = err(
        &update(&format!("{BASE4} 40 63 01 aa"), "18cb0071"),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 2, hex("40 63 01 aa")));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn update_without_origin_is_missing_well_known_attribute() {
    let e = err(
        &update("40 02 06 02 01 0000fde9  40 03 04 c6120001", "18cb0071"),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 3, vec![1]));
    assert_eq!(e.action(), ErrorAction::TreatAsWithdraw);
}

#[test]
fn origin_marked_optional_is_attribute_flags_error() {
    let e = err(
        &update(
            "c0 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c6120001",
            "18cb0071",
        ),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 4, hex("c0 01 01 00")));
    assert_eq!(e.action(), ErrorAction::TreatAsWithdraw);
}

#[test]
fn med_of_three_octets_is_attribute_length_error() {
    let e = err(
        &update(&format!("{BASE4} 80 04 03 000001"), "18cb0071"),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 5, hex("80 04 03 000001")));
    assert_eq!(e.action(), ErrorAction::TreatAsWithdraw);
}

#[test]
fn origin_three_is_invalid_origin_attribute() {
    let e = err(
        &update(
            "40 01 01 03  40 02 06 02 01 0000fde9  40 03 04 c6120001",
            "18cb0071",
        ),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 6, hex("40 01 01 03")));
}

#[test]
fn next_hop_zero_is_invalid_next_hop_attribute() {
    let e = err(
        &update(
            "40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 00000000",
            "18cb0071",
        ),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 8, hex("40 03 04 00000000")));
    assert_eq!(e.action(), ErrorAction::TreatAsWithdraw);
}

#[test]
fn mp_reach_with_a_five_octet_next_hop_is_optional_attribute_error() {
    let attr = "80 0e 0b 0001 01 05 c612000100 00 00";
    let e = err(&update(&format!("{BASE4} {attr}"), ""), &ctx4());
    assert_eq!(notification(&e), (3, 9, hex(attr)));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn an_origin_error_without_reachable_nlri_is_no_reachable_nlri_with_its_notification() {
    // RFC 7606 §5.2: the same ORIGIN error is treat-as-withdraw beside NLRI, a session
    // reset without; the NOTIFICATION stays the ORIGIN's.
    let e = err(&update("40 01 01 03  40 02 06 02 01 0000fde9", ""), &ctx4());
    assert!(matches!(e, DecodeError::NoReachableNlri { .. }));
    assert_eq!(notification(&e), (3, 6, hex("40 01 01 03")));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn mp_reach_overrunning_the_attribute_list_is_optional_attribute_error() {
    let attr = "80 0e 20 0001 01 04 c6120001 00 18cb0071";
    let e = err(&update(&format!("{BASE4} {attr}"), ""), &ctx4());
    assert_eq!(notification(&e), (3, 9, hex(attr)));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn prefix_longer_than_32_is_invalid_network_field() {
    let e = err(&update(BASE4, "21 cb007100 00"), &ctx4());
    assert_eq!(
        e,
        DecodeError::InvalidNetworkField {
            location: NlriLocation::Nlri
        }
    );
    assert_eq!(notification(&e), (3, 10, vec![]));
    assert_eq!(e.action(), ErrorAction::SessionReset);
}

#[test]
fn a_prefix_running_past_the_withdrawn_routes_is_invalid_network_field() {
    // 203.0.113.0/24, then a one-bit prefix whose octet is missing (RFC 7606 §5.3).
    let e = err(&frame(2, &hex("0005 18cb007101 0000")), &ctx4());
    assert_eq!(
        e,
        DecodeError::InvalidNetworkField {
            location: NlriLocation::Withdrawn
        }
    );
}

#[test]
fn trailing_bits_of_a_prefix_are_ignored_not_an_error() {
    // Issue 12 finding 3. RFC 4271 §4.3: "the value of trailing bits is irrelevant".
    // 203.0.113.0/25 with a stray bit in its last octet: the route is 203.0.113.0/25.
    let f = update(BASE4, "19 cb007101");
    let Ok(Message::Update(u)) = Message::decode(&f, &ctx4()) else {
        panic!("refused: {:?}", Message::decode(&f, &ctx4()));
    };
    assert_eq!(
        u.nlri,
        vec!["203.0.113.0/25".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    // The same in the withdrawn routes and in MP_REACH_NLRI (2001:db8:100::/48 with a
    // stray bit in a 49th-bit octet: /49 of 7 octets, last one 0x7f).
    let f = frame(2, &hex("0005 19cb007101 0000"));
    let Ok(Message::Update(u)) = Message::decode(&f, &ctx4()) else {
        panic!("refused: {:?}", Message::decode(&f, &ctx4()));
    };
    assert_eq!(
        u.withdrawn,
        vec!["203.0.113.0/25".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    let nh = "20010db8000000000000000000000001";
    let f = update(
        &format!(
            "40 01 01 00 40 02 06 02 01 0000fde9 80 0e 1d 0002 01 10 {nh} 00 31 20010db80100 7f"
        ),
        "",
    );
    let Ok(Message::Update(u)) = Message::decode(&f, &ctx4()) else {
        panic!("refused: {:?}", Message::decode(&f, &ctx4()));
    };
    let reach = u
        .attributes
        .iter()
        .find_map(|a| match a {
            anyguard_proto::PathAttribute::MpReach(r) => Some(r.clone()),
            _ => None,
        })
        .expect("MP_REACH_NLRI");
    assert_eq!(
        reach.nlri,
        vec!["2001:db8:100::/49".parse::<ipnet::IpNet>().unwrap()]
    );
}

#[test]
fn as_path_with_segment_type_five_is_malformed_as_path() {
    let e = err(
        &update(
            "40 01 01 00  40 02 06 05 01 0000fde9  40 03 04 c6120001",
            "18cb0071",
        ),
        &ctx4(),
    );
    assert_eq!(notification(&e), (3, 11, vec![]));
    assert_eq!(e.action(), ErrorAction::TreatAsWithdraw);
}

#[test]
fn borr_of_the_wrong_length_is_route_refresh_invalid_message_length() {
    let f = frame(5, &hex("0001 01 01 00"));
    let e = err(&f, &DecodeContext::default());
    assert_eq!(notification(&e), (7, 1, f.clone()));
    assert_eq!(u8::from(ErrorCode::RouteRefresh), 7);
    // A plain request of the wrong length is a header error (RFC 4271 §6.1).
    let e = err(&frame(5, &hex("0001 00")), &DecodeContext::default());
    assert_eq!(e, DecodeError::BadMessageLength { len: 22 });
}

#[test]
fn update_view_reports_the_same_errors_as_the_owned_decoder() {
    let f = update(BASE4, "21 cb007100 00");
    assert_eq!(
        UpdateView::parse(&f, &ctx4()).unwrap_err(),
        err(&f, &ctx4())
    );
    let f = update(
        "40 01 01 03  40 02 06 02 01 0000fde9  40 03 04 c6120001",
        "18cb0071",
    );
    let v = UpdateView::parse(&f, &ctx4()).unwrap();
    assert_eq!(v.action(), Some(ErrorAction::TreatAsWithdraw));
    assert_eq!(v.finding(), Some(&err(&f, &ctx4())));
}

#[test]
fn encoding_refuses_to_truncate() {
    use anyguard_proto::{EncodeContext, EncodeError, PathAttribute, UpdateMessage};
    // Host bits set in a prefix to send.
    let u = UpdateMessage {
        withdrawn: vec!["203.0.113.1/24".parse().unwrap()],
        ..Default::default()
    };
    let mut out = bytes::BytesMut::new();
    assert!(matches!(
        Message::Update(u).encode(&EncodeContext::default(), &mut out),
        Err(EncodeError::HostBitsSet { .. })
    ));
    assert!(out.is_empty(), "a failed encode leaves nothing behind");
    // A message over 4096 octets without Extended Message.
    let big = UpdateMessage {
        attributes: vec![PathAttribute::Unknown {
            flags: 0xc0,
            type_code: 99,
            value: vec![0; 5000],
        }],
        ..Default::default()
    };
    let r = Message::Update(big.clone()).encode(&EncodeContext::default(), &mut out);
    assert_eq!(
        r,
        Err(EncodeError::TooLarge {
            field: "message length",
            actual: 5027,
            max: 4096
        })
    );
    let ext = EncodeContext {
        extended_message: true,
        ..EncodeContext::default()
    };
    assert!(Message::Update(big).encode(&ext, &mut out).is_ok());
}

#[test]
fn an_as_sequence_over_255_asns_is_split_into_segments_and_a_set_is_refused() {
    // Issue 12 (minor): RFC 4271 §9.1.2.2 b prepends a new AS_SEQUENCE segment when one
    // is full; a path of 300 ASNs is two segments on the wire, 255 then 45.
    use anyguard_proto::{
        AsPath, AsPathSegment, AsPathSegmentType, EncodeContext, EncodeError, PathAttribute,
        UpdateMessage,
    };
    let path = |kind| AsPath {
        segments: vec![AsPathSegment {
            kind,
            asns: (1..=300).collect(),
        }],
    };
    let update = |p| UpdateMessage {
        attributes: vec![PathAttribute::AsPath(p)],
        ..Default::default()
    };
    let ctx = EncodeContext {
        four_octet_as: true,
        ..EncodeContext::default()
    };
    let mut out = bytes::BytesMut::new();
    Message::Update(update(path(AsPathSegmentType::Sequence)))
        .encode(&ctx, &mut out)
        .unwrap();
    let decoded = Message::decode_lenient(
        &out,
        &DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        },
    )
    .unwrap();
    let Message::Update(u) = decoded.message else {
        panic!()
    };
    let Some(PathAttribute::AsPath(p)) = u.attributes.first() else {
        panic!("{u:?}")
    };
    let lens: Vec<usize> = p.segments.iter().map(|s| s.asns.len()).collect();
    assert_eq!(lens, [255, 45]);
    assert_eq!(p.route_len(), 300);
    let all: Vec<u32> = p.segments.iter().flat_map(|s| s.asns.clone()).collect();
    assert_eq!(all, (1..=300).collect::<Vec<u32>>());
    // A set of 300 cannot be split without changing the path length.
    let r = Message::Update(update(path(AsPathSegmentType::Set))).encode(&ctx, &mut out);
    assert!(matches!(r, Err(EncodeError::TooLarge { .. })), "{r:?}");
}
