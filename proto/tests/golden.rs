//! Golden vectors, checked both ways (bytes -> value -> bytes), for every message type and
//! every path attribute.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyguard_proto::capability::code as cap_code;
use anyguard_proto::notification::cease_subcode;
use anyguard_proto::{
    AddPathMode, Afi, AsPath, AsPathSegment, AsPathSegmentType, Capability, Community,
    DecodeContext, ErrorCode, ExtendedCommunity, GracefulRestartFamily, LargeCommunity, Message,
    MpReach, MpUnreach, NotificationMessage, OpenMessage, Origin, PathAttribute, RefreshSubtype,
    RouteRefreshMessage, Safi, UpdateMessage,
};
use common::{ctx4, frame, golden, hex};

const HDR: &str = "ffffffffffffffffffffffffffffffff";

fn v4(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}
fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn keepalive_is_a_bare_header() {
    golden(
        &hex(&format!("{HDR} 0013 04")),
        &Message::Keepalive,
        &DecodeContext::default(),
    );
}

#[test]
fn open_with_every_known_capability_round_trips() {
    let open = OpenMessage {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(198, 18, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast,
            },
            Capability::Multiprotocol {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
            },
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::ExtendedMessage,
            Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]),
            Capability::GracefulRestart {
                restart_state: true,
                notification: false,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    afi: Afi::Ipv4,
                    safi: Safi::Unicast,
                    forwarding_preserved: true,
                }],
            },
            Capability::FourOctetAs { asn: 4_200_000_001 },
            Capability::AddPath(vec![(Afi::Ipv4, Safi::Unicast, AddPathMode::Both)]),
            Capability::Fqdn {
                hostname: "r1".into(),
                domain: "".into(),
            },
            Capability::Unknown {
                code: 128,
                value: vec![],
            },
        ],
    };
    let caps = "0104 00010001 \
                0104 00020001 \
                0200 \
                4600 \
                0600 \
                0506 0001 0001 0002 \
                4006 8078 0001 0180 \
                4104 fa56ea01 \
                4504 0001 0103 \
                4904 02 7231 00 \
                8000";
    let caps_len = hex(caps).len();
    let body = format!(
        "04 5ba0 005a c6120001 {:02x} 02 {:02x} {caps}",
        caps_len + 2,
        caps_len
    );
    let bytes = frame(1, &hex(&body));
    golden(
        &bytes,
        &Message::Open(open.clone()),
        &DecodeContext::default(),
    );
    assert_eq!(open.asn(), 4_200_000_001);
}

#[test]
fn open_without_optional_parameters_round_trips() {
    let open = OpenMessage {
        version: 4,
        my_as: 64500,
        hold_time: 0,
        bgp_identifier: Ipv4Addr::new(198, 18, 0, 2),
        capabilities: vec![],
    };
    golden(
        &hex(&format!("{HDR} 001d 01 04 fbf4 0000 c6120002 00")),
        &Message::Open(open),
        &DecodeContext::default(),
    );
}

#[test]
fn open_with_more_than_255_octets_of_capabilities_uses_rfc9072_format() {
    // 70 Multiprotocol capabilities = 420 octets: too long for a one-octet length.
    let caps: Vec<Capability> = (0..70u16)
        .map(|i| Capability::Multiprotocol {
            afi: Afi::Unknown(100 + i),
            safi: Safi::Unicast,
        })
        .collect();
    let open = OpenMessage {
        version: 4,
        my_as: 64500,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(198, 18, 0, 2),
        capabilities: caps.clone(),
    };
    let mut cap_hex = String::new();
    for i in 0..70u16 {
        cap_hex += &format!("0104{:04x}0001", 100 + i);
    }
    // Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 423,
    // then Capabilities parameter with a 2-octet length 420.
    let body = format!("04 fbf4 005a c6120002 ff ff 01a7 02 01a4 {cap_hex}");
    golden(
        &frame(1, &hex(&body)),
        &Message::Open(open),
        &DecodeContext::default(),
    );
}

#[test]
fn open_capabilities_spread_over_several_parameters_are_flattened() {
    // Cisco/FRR style: one capability per Capabilities parameter.
    let body = "04 fde8 00b4 c6120003 0c 02 06 0104 00010001 02 02 0200";
    let m = Message::decode(&frame(1, &hex(body)), &DecodeContext::default()).unwrap();
    let Message::Open(o) = m else {
        panic!("not an OPEN")
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol {
                afi: Afi::Ipv4,
                safi: Safi::Unicast
            },
            Capability::RouteRefresh
        ]
    );
    assert_eq!(Capability::RouteRefresh.code(), cap_code::ROUTE_REFRESH);
}

#[test]
fn notification_with_data_round_trips() {
    let n = NotificationMessage::new(ErrorCode::MessageHeader, 2, vec![0x00, 0x12]);
    golden(
        &hex(&format!("{HDR} 0017 03 01 02 0012")),
        &Message::Notification(n),
        &DecodeContext::default(),
    );
}

#[test]
fn cease_shutdown_communication_round_trips() {
    let n = NotificationMessage::cease_shutdown(cease_subcode::ADMINISTRATIVE_SHUTDOWN, "maint");
    golden(
        &hex(&format!("{HDR} 001b 03 06 02 05 6d61696e74")),
        &Message::Notification(n.clone()),
        &DecodeContext::default(),
    );
    assert_eq!(n.shutdown_communication().unwrap().0, "maint");
}

#[test]
fn cease_shutdown_communication_is_cut_at_a_char_boundary() {
    // 127 two-octet characters = 254 octets, then one more: 256 octets in all.
    let text: String = "é".repeat(128);
    let n = NotificationMessage::cease_shutdown(cease_subcode::ADMINISTRATIVE_RESET, &text);
    assert_eq!(n.data[0], 254);
    assert_eq!(n.data.len(), 255);
    assert_eq!(n.shutdown_communication().unwrap().0, "é".repeat(127));
    let other = NotificationMessage::new(
        ErrorCode::Cease,
        cease_subcode::PEER_DECONFIGURED,
        n.data.clone(),
    );
    assert_eq!(other.shutdown_communication(), None);
}

#[test]
fn route_refresh_and_enhanced_subtypes_round_trip() {
    for (sub, code) in [
        (RefreshSubtype::Request, "00"),
        (RefreshSubtype::Begin, "01"),
        (RefreshSubtype::End, "02"),
        (RefreshSubtype::Unknown(7), "07"),
    ] {
        let rr = RouteRefreshMessage {
            afi: Afi::Ipv6,
            subtype: sub,
            safi: Safi::Unicast,
        };
        golden(
            &hex(&format!("{HDR} 0017 05 0002 {code} 01")),
            &Message::RouteRefresh(rr),
            &DecodeContext::default(),
        );
    }
}

fn update(attributes: Vec<PathAttribute>, nlri: Vec<ipnet::Ipv4Net>) -> Message {
    Message::Update(UpdateMessage {
        withdrawn: vec![],
        attributes,
        nlri,
    })
}

fn base_attrs(path: Vec<u32>) -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath(AsPath::from_sequence(path)),
        PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 1)),
    ]
}

/// ORIGIN IGP, AS_PATH (4-octet) SEQUENCE 65001, NEXT_HOP 198.18.0.1.
const BASE4: &str = "40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c6120001";

#[test]
fn update_with_mandatory_attributes_and_ipv4_nlri_round_trips() {
    let attrs = hex(BASE4);
    let body = format!("0000 {:04x} {BASE4} 18cb0071 18c63364", attrs.len());
    golden(
        &frame(2, &hex(&body)),
        &update(
            base_attrs(vec![65001]),
            vec![v4("203.0.113.0/24"), v4("198.51.100.0/24")],
        ),
        &ctx4(),
    );
}

#[test]
fn update_with_withdrawn_routes_only_round_trips() {
    let m = Message::Update(UpdateMessage {
        withdrawn: vec![
            v4("203.0.113.0/24"),
            v4("198.51.100.128/25"),
            v4("0.0.0.0/0"),
        ],
        attributes: vec![],
        nlri: vec![],
    });
    golden(
        &frame(2, &hex("000a 18cb0071 19c6336480 00 0000")),
        &m,
        &ctx4(),
    );
}

/// Checks one attribute (after the mandatory ones) both ways in an UPDATE with one prefix.
fn attribute_golden(attr_hex: &str, attr: PathAttribute, ctx: &DecodeContext) {
    let base = if ctx.four_octet_as {
        BASE4.to_string()
    } else {
        "40 01 01 00  40 02 04 02 01 fde9  40 03 04 c6120001".to_string()
    };
    let attrs = hex(&format!("{base} {attr_hex}"));
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&hex("18cb0071"));
    let mut attributes = base_attrs(vec![65001]);
    attributes.push(attr);
    golden(
        &frame(2, &body),
        &update(attributes, vec![v4("203.0.113.0/24")]),
        ctx,
    );
}

#[test]
fn med_and_local_pref_round_trip() {
    attribute_golden(
        "80 04 04 00000064",
        PathAttribute::MultiExitDisc(100),
        &ctx4(),
    );
    attribute_golden("40 05 04 000000c8", PathAttribute::LocalPref(200), &ctx4());
}

#[test]
fn atomic_aggregate_round_trips() {
    attribute_golden("40 06 00", PathAttribute::AtomicAggregate, &ctx4());
}

#[test]
fn aggregator_round_trips_with_two_and_four_octet_asns() {
    let agg = PathAttribute::Aggregator {
        asn: 65001,
        address: Ipv4Addr::new(198, 18, 0, 9),
    };
    attribute_golden("c0 07 08 0000fde9 c6120009", agg.clone(), &ctx4());
    attribute_golden("c0 07 06 fde9 c6120009", agg, &DecodeContext::default());
}

#[test]
fn communities_with_well_known_values_round_trip() {
    let cs = vec![
        Community::new(65001, 100),
        Community::GRACEFUL_SHUTDOWN,
        Community::NO_EXPORT,
        Community::BLACKHOLE,
    ];
    attribute_golden(
        "c0 08 10 fde90064 ffff0000 ffffff01 ffff029a",
        PathAttribute::Communities(cs.clone()),
        &ctx4(),
    );
    assert_eq!(cs[1].to_string(), "GRACEFUL_SHUTDOWN");
    assert_eq!(cs[3].to_string(), "BLACKHOLE");
    assert_eq!(cs[0].to_string(), "65001:100");
}

#[test]
fn originator_id_and_cluster_list_round_trip() {
    attribute_golden(
        "80 09 04 c6120005",
        PathAttribute::OriginatorId(Ipv4Addr::new(198, 18, 0, 5)),
        &ctx4(),
    );
    attribute_golden(
        "80 0a 08 c6120006 c6120007",
        PathAttribute::ClusterList(vec![
            Ipv4Addr::new(198, 18, 0, 6),
            Ipv4Addr::new(198, 18, 0, 7),
        ]),
        &ctx4(),
    );
}

#[test]
fn extended_communities_round_trip() {
    let ec = ExtendedCommunity([0x00, 0x02, 0xfd, 0xe9, 0x00, 0x00, 0x00, 0x64]);
    attribute_golden(
        "c0 10 08 0002fde900000064",
        PathAttribute::ExtendedCommunities(vec![ec]),
        &ctx4(),
    );
}

#[test]
fn large_communities_round_trip() {
    let lc = LargeCommunity {
        global: 4_200_000_001,
        local1: 1,
        local2: 2,
    };
    attribute_golden(
        "c0 20 0c fa56ea01 00000001 00000002",
        PathAttribute::LargeCommunities(vec![lc]),
        &ctx4(),
    );
}

#[test]
fn as4_path_and_as4_aggregator_round_trip_in_a_two_octet_session() {
    attribute_golden(
        "c0 11 06 02 01 fa56ea01",
        PathAttribute::As4Path(AsPath::from_sequence(vec![4_200_000_001])),
        &DecodeContext::default(),
    );
    attribute_golden(
        "c0 12 08 fa56ea01 c6120009",
        PathAttribute::As4Aggregator {
            asn: 4_200_000_001,
            address: Ipv4Addr::new(198, 18, 0, 9),
        },
        &DecodeContext::default(),
    );
}

#[test]
fn as_path_with_set_and_confederation_segments_round_trips() {
    let path = AsPath {
        segments: vec![
            AsPathSegment {
                kind: AsPathSegmentType::ConfedSequence,
                asns: vec![64512],
            },
            AsPathSegment {
                kind: AsPathSegmentType::ConfedSet,
                asns: vec![64513, 64514],
            },
            AsPathSegment {
                kind: AsPathSegmentType::Sequence,
                asns: vec![65001, 65002],
            },
            AsPathSegment {
                kind: AsPathSegmentType::Set,
                asns: vec![65003],
            },
        ],
    };
    assert_eq!(path.route_len(), 3);
    let body_attrs = "40 01 01 02  40 02 20 03 01 0000fc00 04 02 0000fc01 0000fc02 02 02 0000fde9 0000fdea 01 01 0000fdeb  40 03 04 c6120001";
    let attrs = hex(body_attrs);
    let body = format!("0000 {:04x} {body_attrs} 18cb0071", attrs.len());
    let m = update(
        vec![
            PathAttribute::Origin(Origin::Incomplete),
            PathAttribute::AsPath(path),
            PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 1)),
        ],
        vec![v4("203.0.113.0/24")],
    );
    golden(&frame(2, &hex(&body)), &m, &ctx4());
}

#[test]
fn unknown_optional_transitive_attribute_gets_the_partial_bit_on_reencoding() {
    // Received without Partial (0xc0), sent on with it (0xe0).
    let received = "c0 63 02 abcd";
    let attrs = hex(&format!("{BASE4} {received}"));
    let body = format!("0000 {:04x} {BASE4} {received} 18cb0071", attrs.len());
    let m = Message::decode(&frame(2, &hex(&body)), &ctx4()).unwrap();
    let Message::Update(u) = &m else { panic!() };
    assert_eq!(
        u.attributes[3],
        PathAttribute::Unknown {
            flags: 0xc0,
            type_code: 0x63,
            value: vec![0xab, 0xcd]
        }
    );
    let out = m.to_bytes(&common::ectx4()).unwrap();
    let expected = frame(
        2,
        &hex(&format!(
            "0000 {:04x} {BASE4} e0 63 02 abcd 18cb0071",
            attrs.len()
        )),
    );
    assert_eq!(out.to_vec(), expected);
    // And once partial, it round-trips exactly.
    golden(
        &expected,
        &Message::decode(&expected, &ctx4()).unwrap(),
        &ctx4(),
    );
}

#[test]
fn extended_length_flag_is_honoured_on_decode_and_chosen_by_size_on_encode() {
    // COMMUNITIES with the Extended Length flag although short: accepted...
    let attrs_hex = format!("{BASE4} d0 08 0004 ffff0000");
    let attrs = hex(&attrs_hex);
    let body = format!("0000 {:04x} {attrs_hex} 18cb0071", attrs.len());
    let m = Message::decode(&frame(2, &hex(&body)), &ctx4()).unwrap();
    let Message::Update(u) = &m else { panic!() };
    assert_eq!(
        u.attributes[3],
        PathAttribute::Communities(vec![Community::GRACEFUL_SHUTDOWN])
    );
    // ...and re-encoded with a one-octet length.
    let out = m.to_bytes(&common::ectx4()).unwrap();
    assert_eq!(out.len(), frame(2, &hex(&body)).len() - 1);
    // 64 communities = 256 octets: the encoder sets Extended Length.
    let many: Vec<Community> = (0..64).map(|i| Community::new(65001, i)).collect();
    let mut hexv = String::from("d0 08 0100");
    for i in 0..64u16 {
        hexv += &format!("fde9{i:04x}");
    }
    attribute_golden(&hexv, PathAttribute::Communities(many), &ctx4());
}

#[test]
fn mp_reach_ipv6_with_link_local_next_hop_round_trips() {
    let mp = MpReach {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
        next_hop: IpAddr::V6("2001:db8::1".parse().unwrap()),
        link_local_next_hop: Some("fe80::1".parse::<Ipv6Addr>().unwrap()),
        nlri: vec![net("2001:db8:100::/48"), net("2001:db8:200::/40")],
    };
    let attrs = "90 0e 0034 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00 30 20010db80100 28 20010db802";
    // 0x34 = 52 = 4 + 32 + 1 + 7 + 6 + 2 ... computed below instead of by hand.
    let a = hex(attrs);
    let value_len = a.len() - 4;
    let attrs = attrs.replacen("0034", &format!("{value_len:04x}"), 1);
    let full = format!("{BASE4} {attrs}");
    // Encoder picks a one-octet length for a short value.
    let encoded_attrs = format!("{BASE4} 80 0e {value_len:02x} {}", &attrs[10..]);
    let m = update(
        vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::from_sequence(vec![65001])),
            PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 1)),
            PathAttribute::MpReach(mp),
        ],
        vec![],
    );
    // Decode the extended-length form, encode and decode the short form.
    let ext = frame(2, &hex(&format!("0000 {:04x} {full}", hex(&full).len())));
    assert_eq!(Message::decode(&ext, &ctx4()).unwrap(), m);
    let short = frame(
        2,
        &hex(&format!(
            "0000 {:04x} {encoded_attrs}",
            hex(&encoded_attrs).len()
        )),
    );
    golden(&short, &m, &ctx4());
}

#[test]
fn mp_reach_ipv4_and_mp_unreach_round_trip() {
    let reach = MpReach {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
        next_hop: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        link_local_next_hop: None,
        nlri: vec![net("203.0.113.0/24")],
    };
    let attrs = "80 0e 0d 0001 01 04 c6120001 00 18cb0071  40 01 01 00  40 02 00";
    let m = update(
        vec![
            PathAttribute::MpReach(reach),
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::default()),
        ],
        vec![],
    );
    golden(
        &frame(2, &hex(&format!("0000 {:04x} {attrs}", hex(attrs).len()))),
        &m,
        &ctx4(),
    );

    let unreach = MpUnreach {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
        withdrawn: vec![net("2001:db8:100::/48")],
    };
    let attrs = "80 0f 0a 0002 01 30 20010db80100";
    let m = update(vec![PathAttribute::MpUnreach(unreach)], vec![]);
    golden(
        &frame(2, &hex(&format!("0000 {:04x} {attrs}", hex(attrs).len()))),
        &m,
        &ctx4(),
    );
}

#[test]
fn ipv4_nlri_with_ipv6_next_hop_round_trips() {
    // RFC 8950: IPv4 NLRI with an IPv6 next hop in MP_REACH.
    let reach = MpReach {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
        next_hop: IpAddr::V6("2001:db8::1".parse().unwrap()),
        link_local_next_hop: None,
        nlri: vec![net("198.51.100.0/24")],
    };
    let attrs =
        "80 0e 19 0001 01 10 20010db8000000000000000000000001 00 18c63364  40 01 01 00  40 02 00";
    let m = update(
        vec![
            PathAttribute::MpReach(reach),
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::default()),
        ],
        vec![],
    );
    golden(
        &frame(2, &hex(&format!("0000 {:04x} {attrs}", hex(attrs).len()))),
        &m,
        &ctx4(),
    );
}

#[test]
fn end_of_rib_markers_are_built_and_recognised_for_both_families() {
    let eor4 = UpdateMessage::end_of_rib_ipv4();
    golden(
        &hex(&format!("{HDR} 0017 02 0000 0000")),
        &Message::Update(eor4.clone()),
        &ctx4(),
    );
    assert_eq!(eor4.is_end_of_rib(), Some((Afi::Ipv4, Safi::Unicast)));
    assert_eq!(UpdateMessage::end_of_rib(Afi::Ipv4, Safi::Unicast), eor4);

    let eor6 = UpdateMessage::end_of_rib(Afi::Ipv6, Safi::Unicast);
    golden(
        &hex(&format!("{HDR} 001d 02 0000 0006 800f03 0002 01")),
        &Message::Update(eor6.clone()),
        &ctx4(),
    );
    assert_eq!(eor6.is_end_of_rib(), Some((Afi::Ipv6, Safi::Unicast)));

    let not = UpdateMessage {
        withdrawn: vec![v4("203.0.113.0/24")],
        ..Default::default()
    };
    assert_eq!(not.is_end_of_rib(), None);
}

#[test]
fn four_octet_asn_in_a_two_octet_session_becomes_as_trans_plus_as4_path() {
    let u = UpdateMessage {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::from_sequence(vec![4_200_000_001, 65001])),
            PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 1)),
            PathAttribute::Aggregator {
                asn: 4_200_000_001,
                address: Ipv4Addr::new(198, 18, 0, 1),
            },
        ],
        nlri: vec![v4("203.0.113.0/24")],
    };
    let out = Message::Update(u).to_bytes(&Default::default()).unwrap();
    let attrs = "40 01 01 00  40 02 06 02 02 5ba0 fde9  c0 11 0a 02 02 fa56ea01 0000fde9  40 03 04 c6120001  c0 07 06 5ba0 c6120001  c0 12 08 fa56ea01 c6120001";
    let expected = frame(
        2,
        &hex(&format!("0000 {:04x} {attrs} 18cb0071", hex(attrs).len())),
    );
    assert_eq!(common::to_hex(&out), common::to_hex(&expected));
}
