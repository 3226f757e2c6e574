//! RFC 7606 case by case: the §7 per-attribute table, plus §3 (flags, missing attributes,
//! repeats, strongest action wins), §4 (attribute overrun) and §5.3 (NLRI). For each case the
//! owned decoder and the borrowing view must agree, and a treat-as-withdraw UPDATE must come
//! back as a withdrawal of everything it announced.
#![allow(clippy::unwrap_used)]

mod common;

use anyguard_proto::attribute::type_code;
use anyguard_proto::{
    Afi, DecodeContext, DecodeError, ErrorAction, Message, MpUnreach, NotificationMessage,
    PathAttribute, Safi, UpdateMessage, UpdateView,
};
use common::{ctx4, frame, hex};

const ORIGIN: &str = "40 01 01 00";
const AS_PATH4: &str = "40 02 06 02 01 0000fde9";
const NEXT_HOP: &str = "40 03 04 c6120001";
const NLRI: &str = "18cb0071";

fn update(attrs: &str, nlri: &str) -> Vec<u8> {
    let a = hex(attrs);
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&hex(nlri));
    frame(2, &body)
}

/// An UPDATE with the three mandatory attributes, `extra`, and one IPv4 prefix.
fn with(extra: &str) -> Vec<u8> {
    update(&format!("{ORIGIN} {AS_PATH4} {NEXT_HOP} {extra}"), NLRI)
}

/// The RFC 7606 action for the frame, checked to be the same through every API.
fn action(f: &[u8], ctx: &DecodeContext) -> Option<ErrorAction> {
    let owned = Message::decode_lenient(f, ctx);
    let view = UpdateView::parse(f, ctx);
    match (owned, view) {
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.action(), ErrorAction::SessionReset);
            assert_eq!(Message::decode(f, ctx).unwrap_err(), a);
            Some(ErrorAction::SessionReset)
        }
        (Ok(d), Ok(v)) => {
            let act = d.findings.iter().map(DecodeError::action).max();
            assert_eq!(act, v.action());
            match act {
                None => assert!(Message::decode(f, ctx).is_ok()),
                Some(a) => assert_eq!(Message::decode(f, ctx).unwrap_err().action(), a),
            }
            if act == Some(ErrorAction::TreatAsWithdraw) {
                let Message::Update(u) = d.message else {
                    panic!()
                };
                assert!(u.nlri.is_empty(), "treat-as-withdraw leaves no NLRI");
                assert!(u
                    .attributes
                    .iter()
                    .all(|a| matches!(a, PathAttribute::MpUnreach(_))));
            }
            act
        }
        (o, v) => panic!("owned {o:?} / view {v:?}"),
    }
}

fn taw(f: &[u8]) {
    assert_eq!(action(f, &ctx4()), Some(ErrorAction::TreatAsWithdraw));
}
fn discard(f: &[u8], ctx: &DecodeContext, gone: u8) {
    assert_eq!(action(f, ctx), Some(ErrorAction::AttributeDiscard));
    let d = Message::decode_lenient(f, ctx).unwrap();
    let Message::Update(u) = d.message else {
        panic!()
    };
    assert!(
        u.attributes.iter().all(|a| a.type_code() != gone),
        "attribute {gone} discarded"
    );
    assert_eq!(u.nlri.len(), 1, "the rest of the UPDATE is processed");
    let v = UpdateView::parse(f, ctx).unwrap();
    assert!(v.attribute(gone).is_none());
}
fn reset(f: &[u8]) {
    assert_eq!(action(f, &ctx4()), Some(ErrorAction::SessionReset));
}

#[test]
fn baseline_update_is_clean() {
    assert_eq!(action(&with(""), &ctx4()), None);
}

#[test]
fn s7_1_origin_bad_length_or_value_is_treat_as_withdraw() {
    taw(&update(
        &format!("40 01 02 0000 {AS_PATH4} {NEXT_HOP}"),
        NLRI,
    ));
    taw(&update(&format!("40 01 00 {AS_PATH4} {NEXT_HOP}"), NLRI));
    taw(&update(&format!("40 01 01 07 {AS_PATH4} {NEXT_HOP}"), NLRI));
}

#[test]
fn s7_2_malformed_as_path_is_treat_as_withdraw() {
    // Unknown segment type, zero-length segment, segment overrun, odd length in 2-octet AS.
    taw(&update(
        &format!("{ORIGIN} 40 02 06 07 01 0000fde9 {NEXT_HOP}"),
        NLRI,
    ));
    taw(&update(
        &format!("{ORIGIN} 40 02 02 02 00 {NEXT_HOP}"),
        NLRI,
    ));
    taw(&update(
        &format!("{ORIGIN} 40 02 06 02 02 0000fde9 {NEXT_HOP}"),
        NLRI,
    ));
    let two = DecodeContext::default();
    let f = update(&format!("{ORIGIN} 40 02 05 02 01 fde9 00 {NEXT_HOP}"), NLRI);
    assert_eq!(action(&f, &two), Some(ErrorAction::TreatAsWithdraw));
    // An empty AS_PATH is valid (iBGP origination).
    assert_eq!(
        action(
            &update(&format!("{ORIGIN} 40 02 00 {NEXT_HOP}"), NLRI),
            &ctx4()
        ),
        None
    );
}

#[test]
fn s7_3_next_hop_bad_length_or_martian_is_treat_as_withdraw() {
    taw(&update(
        &format!("{ORIGIN} {AS_PATH4} 40 03 05 c612000100"),
        NLRI,
    ));
    taw(&update(
        &format!("{ORIGIN} {AS_PATH4} 40 03 04 e0000001"),
        NLRI,
    ));
    taw(&update(
        &format!("{ORIGIN} {AS_PATH4} 40 03 04 ffffffff"),
        NLRI,
    ));
}

#[test]
fn s7_4_med_bad_length_is_treat_as_withdraw() {
    taw(&with("80 04 05 0000000001"));
}

#[test]
fn s7_5_local_pref_bad_length_is_treat_as_withdraw() {
    taw(&with("40 05 02 0064"));
}

#[test]
fn s7_6_atomic_aggregate_with_a_value_is_discarded() {
    discard(&with("40 06 01 00"), &ctx4(), type_code::ATOMIC_AGGREGATE);
}

#[test]
fn s7_7_aggregator_of_the_wrong_length_is_discarded() {
    // Six octets in a 4-octet session, eight in a 2-octet one.
    discard(
        &with("c0 07 06 fde9 c6120009"),
        &ctx4(),
        type_code::AGGREGATOR,
    );
    let two = DecodeContext::default();
    let f = update(
        &format!("{ORIGIN} 40 02 04 02 01 fde9 {NEXT_HOP} c0 07 08 0000fde9 c6120009"),
        NLRI,
    );
    discard(&f, &two, type_code::AGGREGATOR);
}

#[test]
fn s7_8_communities_not_a_multiple_of_four_is_treat_as_withdraw() {
    taw(&with("c0 08 03 ffff00"));
    taw(&with("c0 08 00"));
}

#[test]
fn s7_9_originator_id_bad_length_is_treat_as_withdraw() {
    taw(&with("80 09 03 c61200"));
}

#[test]
fn s7_10_cluster_list_not_a_multiple_of_four_is_treat_as_withdraw() {
    taw(&with("80 0a 05 c612000100"));
    taw(&with("80 0a 00"));
}

#[test]
fn s7_11_mp_reach_with_inconsistent_next_hop_length_resets_the_session() {
    // IPv6 family with a 4-octet next hop.
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} 80 0e 0a 0002 01 04 c6120001 00 00"),
        "",
    ));
    // Next hop length running past the attribute.
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} 80 0e 05 0002 01 20 00"),
        "",
    ));
}

#[test]
fn a_bad_next_hop_in_an_update_without_classic_nlri_is_ignored() {
    // Issue 12 finding 8 (RFC 4760 §3: SHOULD ignore): NEXT_HOP 0.0.0.0 beside an IPv6
    // MP_REACH_NLRI must not treat the IPv6 prefixes as withdrawn.
    let nh = "20010db8000000000000000000000001";
    let mp = format!("80 0e 1c 0002 01 10 {nh} 00 30 20010db80100");
    let f = update(&format!("{ORIGIN} {AS_PATH4} 40 03 04 00000000 {mp}"), "");
    assert_eq!(action(&f, &ctx4()), None);
    // Of the wrong length too.
    let f = update(&format!("{ORIGIN} {AS_PATH4} 40 03 03 000000 {mp}"), "");
    assert_eq!(action(&f, &ctx4()), None);
    // With classic NLRI it is the route's next hop: treat-as-withdraw (RFC 7606 §7.3).
    taw(&update(
        &format!("{ORIGIN} {AS_PATH4} 40 03 04 00000000"),
        NLRI,
    ));
}

#[test]
fn s7_11_mp_reach_with_malformed_nlri_resets_the_session() {
    let nh = "20010db8000000000000000000000001";
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} 80 0e 17 0002 01 10 {nh} 00 81 00"),
        "",
    ));
}

#[test]
fn s7_12_mp_unreach_with_malformed_nlri_resets_the_session() {
    reset(&update("80 0f 05 0002 01 30 20", ""));
    reset(&update("80 0f 02 0002", ""));
}

#[test]
fn s7_14_extended_communities_not_a_multiple_of_eight_is_treat_as_withdraw() {
    taw(&with("c0 10 04 00020001"));
}

#[test]
fn rfc6793_malformed_as4_path_and_as4_aggregator_are_discarded() {
    let two = DecodeContext::default();
    let base = format!("{ORIGIN} 40 02 04 02 01 5ba0 {NEXT_HOP}");
    discard(
        &update(&format!("{base} c0 11 03 02 01 00"), NLRI),
        &two,
        type_code::AS4_PATH,
    );
    discard(
        &update(&format!("{base} c0 12 06 5ba0 c6120001"), NLRI),
        &two,
        type_code::AS4_AGGREGATOR,
    );
}

#[test]
fn rfc6793_as4_path_and_as4_aggregator_from_a_four_octet_speaker_are_discarded() {
    // Issue 12 (minor). RFC 6793 §4.1: from a NEW speaker they "MUST" be discarded; they
    // were kept. Well-formed or not, they are dropped without a finding.
    let four = ctx4();
    let base = format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}");
    for as4 in [
        "c0 11 06 02 01 0000fde9",
        "c0 11 03 02 01 00",
        "c0 12 08 0000fde9 c6120001",
    ] {
        let f = update(&format!("{base} {as4}"), NLRI);
        assert_eq!(action(&f, &four), None, "{as4}");
        let Message::Update(u) = Message::decode(&f, &four).unwrap() else {
            panic!()
        };
        assert!(
            u.attributes.iter().all(|a| !matches!(
                a,
                PathAttribute::As4Path(_) | PathAttribute::As4Aggregator { .. }
            )),
            "{as4}: {:?}",
            u.attributes
        );
        assert_eq!(u.nlri.len(), 1);
    }
}

#[test]
fn rfc8092_large_community_not_a_multiple_of_twelve_is_treat_as_withdraw() {
    taw(&with("c0 20 08 0000fde9 00000001"));
}

#[test]
fn s3c_wrong_optional_or_transitive_flags_are_treat_as_withdraw() {
    taw(&with("40 04 04 00000001")); // MED marked well-known
    taw(&with("80 08 04 ffff0000")); // COMMUNITIES marked non-transitive
                                     // The Partial bit alone is not checked.
    assert_eq!(action(&with("e0 08 04 ffff0000"), &ctx4()), None);
}

#[test]
fn s3c_mp_reach_with_wrong_flags_is_treat_as_withdraw_of_its_prefixes() {
    let nh = "20010db8000000000000000000000001";
    let f = update(
        &format!("{ORIGIN} {AS_PATH4} c0 0e 1c 0002 01 10 {nh} 00 30 20010db80100"),
        "",
    );
    taw(&f);
    let Message::Update(u) = Message::decode_lenient(&f, &ctx4()).unwrap().message else {
        panic!()
    };
    assert_eq!(
        u.attributes,
        vec![PathAttribute::MpUnreach(MpUnreach {
            afi: Afi::Ipv6,
            safi: Safi::Unicast,
            withdrawn: vec!["2001:db8:100::/48".parse().unwrap()],
        })]
    );
}

#[test]
fn s3d_missing_mandatory_attributes_are_treat_as_withdraw() {
    taw(&update(&format!("{AS_PATH4} {NEXT_HOP}"), NLRI));
    taw(&update(&format!("{ORIGIN} {NEXT_HOP}"), NLRI));
    taw(&update(&format!("{ORIGIN} {AS_PATH4}"), NLRI));
    // NEXT_HOP is not needed when only MP_REACH announces.
    let nh = "20010db8000000000000000000000001";
    let mp = format!("80 0e 1c 0002 01 10 {nh} 00 30 20010db80100");
    assert_eq!(
        action(&update(&format!("{ORIGIN} {AS_PATH4} {mp}"), ""), &ctx4()),
        None
    );
    // A withdrawal needs no attributes at all.
    assert_eq!(action(&frame(2, &hex("0004 18cb0071 0000")), &ctx4()), None);
}

#[test]
fn s3d_treat_as_withdraw_turns_announcements_into_withdrawals() {
    let f = update(&format!("{AS_PATH4} {NEXT_HOP}"), "18cb0071 18c63364");
    let d = Message::decode_lenient(&f, &ctx4()).unwrap();
    assert_eq!(
        d.findings,
        vec![DecodeError::MissingWellKnownAttribute { type_code: 1 }]
    );
    assert_eq!(
        d.message,
        Message::Update(UpdateMessage {
            withdrawn: vec![
                "203.0.113.0/24".parse().unwrap(),
                "198.51.100.0/24".parse().unwrap()
            ],
            attributes: vec![],
            nlri: vec![],
        })
    );
    let v = UpdateView::parse(&f, &ctx4()).unwrap();
    assert!(v.is_treat_as_withdraw());
    assert_eq!(v.announced().count(), 2);
}

#[test]
fn s3g_repeated_attribute_keeps_the_first_and_discards_the_rest() {
    let f = with("80 04 04 00000001 80 04 04 00000002");
    assert_eq!(action(&f, &ctx4()), Some(ErrorAction::AttributeDiscard));
    let Message::Update(u) = Message::decode_lenient(&f, &ctx4()).unwrap().message else {
        panic!()
    };
    assert_eq!(u.attributes[3], PathAttribute::MultiExitDisc(1));
    assert_eq!(u.attributes.len(), 4);
    assert_eq!(UpdateView::parse(&f, &ctx4()).unwrap().med(), Some(1));
}

#[test]
fn s3g_repeated_mp_reach_or_mp_unreach_resets_the_session() {
    reset(&update("80 0f 03 000201 80 0f 03 000201", ""));
}

#[test]
fn s3j_the_strongest_action_wins() {
    // A discard (ATOMIC_AGGREGATE) and a treat-as-withdraw (MED) together.
    let f = with("40 06 01 00 80 04 03 000001");
    assert_eq!(action(&f, &ctx4()), Some(ErrorAction::TreatAsWithdraw));
    assert_eq!(
        Message::decode_lenient(&f, &ctx4()).unwrap().findings.len(),
        2
    );
}

#[test]
fn s4_attribute_overrunning_the_list_is_treat_as_withdraw() {
    // The last attribute claims 9 octets where 4 remain.
    taw(&with("c0 08 09 ffff0000"));
    // Fewer than three octets left for an attribute header.
    taw(&with("c0 08"));
}

#[test]
fn s5_3_syntactically_wrong_nlri_resets_the_session() {
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}"),
        "18cb00",
    )); // overrun
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}"),
        "21cb00710000",
    )); // > 32
    reset(&update(
        &format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}"),
        "10cb0071",
    )); // a /16, then a length of 113
        // Trailing bits are irrelevant (RFC 4271 §4.3), not a syntax error.
    assert_eq!(
        action(
            &update(&format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}"), "19cb007101"),
            &ctx4()
        ),
        None
    );
}

#[test]
fn unknown_optional_attributes_are_kept_and_unknown_well_known_ones_reset() {
    assert_eq!(action(&with("c0 63 01 aa 80 64 00"), &ctx4()), None);
    reset(&with("40 63 01 aa"));
}

#[test]
fn add_path_identifiers_are_parsed_when_negotiated() {
    let ctx = DecodeContext {
        four_octet_as: true,
        add_path_ipv4: true,
        ..DecodeContext::default()
    };
    let f = update(
        &format!("{ORIGIN} {AS_PATH4} {NEXT_HOP}"),
        "00000007 18cb0071 00000009 18cb0071",
    );
    let Message::Update(u) = Message::decode(&f, &ctx).unwrap() else {
        panic!()
    };
    assert_eq!(u.nlri.len(), 2);
    let v = UpdateView::parse(&f, &ctx).unwrap();
    let ids: Vec<_> = v.nlri().with_path_ids().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![Some(7), Some(9)]);
    // Without ADD-PATH the same bytes are a malformed NLRI field.
    reset(&f);
}

/// The NOTIFICATION (code, subcode, data) a session reset sends, the same through the owned
/// decoder and the view.
fn notification(f: &[u8]) -> (u8, u8, Vec<u8>) {
    assert_eq!(action(f, &ctx4()), Some(ErrorAction::SessionReset));
    let e = UpdateView::parse(f, &ctx4()).unwrap_err();
    let n = NotificationMessage::from(&e);
    (u8::from(n.code), n.subcode, n.data.to_vec())
}

#[test]
fn s3_mp_reach_overrunning_the_attribute_list_resets_the_session_with_optional_attribute_error() {
    // Issue 12 finding 5: treat-as-withdraw needs the MP attributes parsed (RFC 7606 §3,
    // last paragraph); an MP_REACH_NLRI claiming 0x30 octets where 0x1c remain cannot be,
    // so the IPv6 prefixes would be neither replaced nor withdrawn. RFC 4760 §7: 3/9.
    let nh = "20010db8000000000000000000000001";
    let mp = format!("80 0e 30 0002 01 10 {nh} 00 30 20010db80100");
    let f = update(&format!("{ORIGIN} {AS_PATH4} {NEXT_HOP} {mp}"), NLRI);
    let (code, subcode, data) = notification(&f);
    assert_eq!((code, subcode), (3, 9));
    assert_eq!(data, hex(&mp), "the attribute as far as it goes");
    // MP_UNREACH_NLRI likewise, and with its length octet cut off.
    let f = update(
        &format!("{ORIGIN} {AS_PATH4} {NEXT_HOP} 80 0f 09 0002 01 30"),
        NLRI,
    );
    assert_eq!(notification(&f).1, 9);
    let f = update(&format!("{ORIGIN} {AS_PATH4} {NEXT_HOP} 90 0f 00"), NLRI);
    assert_eq!(notification(&f), (3, 9, hex("90 0f 00")));
    // Another attribute overrunning the list stays treat-as-withdraw (RFC 7606 §4).
    taw(&with("c0 08 09 ffff0000"));
}

#[test]
fn s5_2_a_malformed_attribute_in_an_update_without_reachable_nlri_resets_the_session() {
    // Issue 12 finding 5: a malformed ORIGIN and no NLRI at all was accepted silently.
    // RFC 7606 §5.2: attributes other than MP_UNREACH_NLRI and no reachable NLRI, plus an
    // error stronger than attribute discard: session reset, with that error's NOTIFICATION.
    let f = update(&format!("40 01 01 07 {AS_PATH4}"), "");
    assert_eq!(notification(&f), (3, 6, hex("40 01 01 07")));
    assert!(matches!(
        UpdateView::parse(&f, &ctx4()).unwrap_err(),
        DecodeError::NoReachableNlri { .. }
    ));
    // Beside a classic withdrawal, and beside an MP_REACH_NLRI that announces nothing.
    let mut body = hex("0004 18cb0071");
    let attrs = hex(&format!("{ORIGIN} 80 04 03 000001"));
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&attrs);
    assert_eq!(notification(&frame(2, &body)).1, 5, "MED length: 3/5");
    let nh = "20010db8000000000000000000000001";
    let f = update(
        &format!("40 01 01 07 {AS_PATH4} 80 0e 15 0002 01 10 {nh} 00"),
        "",
    );
    assert_eq!(notification(&f).1, 6);
    // An overrunning attribute with nothing announced: 3/1.
    assert_eq!(
        notification(&update(&format!("{ORIGIN} c0 08 09 ffff0000"), "")).1,
        1
    );
    // Attribute discard stays attribute discard; an MP_REACH_NLRI with prefixes is
    // reachable NLRI, so its treat-as-withdraw stands; so does the classic NLRI's.
    assert_eq!(
        action(
            &update(&format!("{ORIGIN} {AS_PATH4} 40 06 01 00"), ""),
            &ctx4()
        ),
        Some(ErrorAction::AttributeDiscard)
    );
    taw(&update(
        &format!("40 01 01 07 {AS_PATH4} 80 0e 1c 0002 01 10 {nh} 00 30 20010db80100"),
        "",
    ));
    taw(&update(&format!("40 01 01 07 {AS_PATH4} {NEXT_HOP}"), NLRI));
    // A withdrawal alone, an End-of-RIB, and the ignored NEXT_HOP stay clean.
    assert_eq!(action(&frame(2, &hex("0004 18cb0071 0000")), &ctx4()), None);
    assert_eq!(action(&update("80 0f 03 000201", ""), &ctx4()), None);
}
