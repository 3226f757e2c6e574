//! Property tests: any message the encoder can build decodes back to itself, and the
//! borrowing view sees the same prefixes and attributes as the owned decoder.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyguard_proto::{
    AddPathMode, Afi, AsPath, AsPathSegment, AsPathSegmentType, Capability, Community,
    DecodeContext, EncodeContext, ErrorCode, ExtendedCommunity, GracefulRestartFamily,
    LargeCommunity, Message, MpReach, MpUnreach, NotificationMessage, OpenMessage, Origin,
    PathAttribute, RefreshSubtype, RouteRefreshMessage, Safi, UpdateMessage, UpdateView,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn afi() -> impl Strategy<Value = Afi> {
    any::<u16>().prop_map(Afi::from)
}
fn safi() -> impl Strategy<Value = Safi> {
    any::<u8>().prop_map(Safi::from)
}
fn ip_family() -> impl Strategy<Value = (Afi, Safi)> {
    (
        prop_oneof![Just(Afi::Ipv4), Just(Afi::Ipv6)],
        prop_oneof![Just(Safi::Unicast), Just(Safi::Multicast)],
    )
}
fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}
fn v6net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
}
fn host_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0x0100_0000u32..=0xDFFF_FFFF).prop_map(Ipv4Addr::from)
}

const KNOWN_CAPS: [u8; 9] = [1, 2, 5, 6, 64, 65, 69, 70, 73];

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        (afi(), safi()).prop_map(|(afi, safi)| Capability::Multiprotocol { afi, safi }),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        vec((afi(), safi(), afi()), 0..4).prop_map(Capability::ExtendedNextHop),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            vec((afi(), safi(), any::<bool>()), 0..4)
        )
            .prop_map(|(restart_state, notification, restart_time, fams)| {
                Capability::GracefulRestart {
                    restart_state,
                    notification,
                    restart_time,
                    families: fams
                        .into_iter()
                        .map(|(afi, safi, forwarding_preserved)| GracefulRestartFamily {
                            afi,
                            safi,
                            forwarding_preserved,
                        })
                        .collect(),
                }
            }),
        (1u32..).prop_map(|asn| Capability::FourOctetAs { asn }),
        vec(
            (afi(), safi(), any::<u8>().prop_map(AddPathMode::from)),
            1..4
        )
        .prop_map(Capability::AddPath),
        ("[a-z0-9-]{0,20}", "[a-z.]{0,20}")
            .prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (
            any::<u8>().prop_filter("unknown code", |c| !KNOWN_CAPS.contains(c)),
            vec(any::<u8>(), 0..16)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = OpenMessage> {
    (
        1u16..,
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        vec(capability(), 0..12),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| OpenMessage {
            version: 4,
            my_as,
            hold_time,
            bgp_identifier: Ipv4Addr::from(id),
            capabilities,
        })
}

fn as_path(four: bool) -> impl Strategy<Value = AsPath> {
    let asn = if four {
        (1u32..).boxed()
    } else {
        (1u32..=65535).boxed()
    };
    let kind = prop_oneof![
        Just(AsPathSegmentType::Sequence),
        Just(AsPathSegmentType::Set),
        Just(AsPathSegmentType::ConfedSequence),
        Just(AsPathSegmentType::ConfedSet),
    ];
    vec(
        (kind, vec(asn, 1..12)).prop_map(|(kind, asns)| AsPathSegment { kind, asns }),
        0..4,
    )
    .prop_map(|segments| AsPath { segments })
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    ip_family().prop_flat_map(|(afi, safi)| {
        let nlri = if afi == Afi::Ipv4 {
            vec(v4net().prop_map(IpNet::V4), 0..20).boxed()
        } else {
            vec(v6net().prop_map(IpNet::V6), 0..20).boxed()
        };
        let nh = prop_oneof![
            host_v4().prop_map(|a| (IpAddr::V4(a), None)),
            (any::<u128>(), option::of(any::<u128>()))
                .prop_map(|(g, ll)| (IpAddr::V6(Ipv6Addr::from(g)), ll.map(Ipv6Addr::from))),
        ]
        .prop_filter("IPv6 family needs an IPv6 next hop", move |(nh, _)| {
            afi == Afi::Ipv4 || nh.is_ipv6()
        });
        (nh, nlri).prop_map(move |((next_hop, link_local_next_hop), nlri)| MpReach {
            afi,
            safi,
            next_hop,
            link_local_next_hop,
            nlri,
        })
    })
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    ip_family().prop_flat_map(|(afi, safi)| {
        let nets = if afi == Afi::Ipv4 {
            vec(v4net().prop_map(IpNet::V4), 0..20).boxed()
        } else {
            vec(v6net().prop_map(IpNet::V6), 0..20).boxed()
        };
        nets.prop_map(move |withdrawn| MpUnreach {
            afi,
            safi,
            withdrawn,
        })
    })
}

const KNOWN_ATTRS: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32];

fn update(four: bool) -> impl Strategy<Value = UpdateMessage> {
    let optional = (
        option::of(any::<u32>().prop_map(PathAttribute::MultiExitDisc)),
        option::of(any::<u32>().prop_map(PathAttribute::LocalPref)),
        any::<bool>(),
        option::of(
            (
                if four {
                    (1u32..).boxed()
                } else {
                    (1u32..=65535).boxed()
                },
                host_v4(),
            )
                .prop_map(|(asn, address)| PathAttribute::Aggregator { asn, address }),
        ),
        option::of(
            vec(any::<u32>().prop_map(Community), 1..20).prop_map(PathAttribute::Communities),
        ),
        option::of(host_v4().prop_map(PathAttribute::OriginatorId)),
        option::of(vec(host_v4(), 1..5).prop_map(PathAttribute::ClusterList)),
        option::of(
            vec(any::<[u8; 8]>().prop_map(ExtendedCommunity), 1..5)
                .prop_map(PathAttribute::ExtendedCommunities),
        ),
        option::of(
            vec(
                (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(global, local1, local2)| {
                    LargeCommunity {
                        global,
                        local1,
                        local2,
                    }
                }),
                1..5,
            )
            .prop_map(PathAttribute::LargeCommunities),
        ),
        option::of(mp_reach().prop_map(PathAttribute::MpReach)),
        option::of(mp_unreach().prop_map(PathAttribute::MpUnreach)),
        option::of(
            (
                prop_oneof![Just(0xe0u8), Just(0x80u8)],
                any::<u8>().prop_filter("unknown type", |t| !KNOWN_ATTRS.contains(t)),
                vec(any::<u8>(), 0..16),
            )
                .prop_map(|(flags, type_code, value)| PathAttribute::Unknown {
                    flags,
                    type_code,
                    value,
                }),
        ),
    );
    let origin = prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ];
    (
        vec(v4net(), 0..20),
        vec(v4net(), 0..20),
        origin,
        as_path(four),
        host_v4(),
        optional,
        any::<bool>(),
    )
        .prop_map(|(withdrawn, nlri, origin, path, nh, opt, with_path)| {
            let (med, lp, atomic, agg, comm, orig, cl, ext, large, reach, unreach, unknown) = opt;
            let announces = !nlri.is_empty() || reach.is_some();
            let mut attributes = Vec::new();
            if announces || with_path {
                attributes.push(PathAttribute::Origin(origin));
                attributes.push(PathAttribute::AsPath(path));
                if !nlri.is_empty() || with_path {
                    attributes.push(PathAttribute::NextHop(nh));
                }
            }
            attributes.extend(med);
            attributes.extend(lp);
            if atomic {
                attributes.push(PathAttribute::AtomicAggregate);
            }
            attributes.extend(agg);
            attributes.extend(comm);
            attributes.extend(orig);
            attributes.extend(cl);
            attributes.extend(ext);
            attributes.extend(large);
            attributes.extend(reach);
            attributes.extend(unreach);
            attributes.extend(unknown);
            UpdateMessage {
                withdrawn,
                attributes,
                nlri,
            }
        })
}

fn message(four: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Keepalive),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..64)).prop_map(|(c, s, d)| {
            Message::Notification(NotificationMessage::new(ErrorCode::from(c), s, d))
        }),
        (afi(), any::<u8>(), safi()).prop_map(|(afi, st, safi)| Message::RouteRefresh(
            RouteRefreshMessage {
                afi,
                subtype: RefreshSubtype::from(st),
                safi,
            }
        )),
        open().prop_map(Message::Open),
        update(four).prop_map(Message::Update),
    ]
}

fn contexts(four: bool) -> (DecodeContext, EncodeContext) {
    (
        DecodeContext {
            four_octet_as: four,
            extended_message: true,
            ..DecodeContext::default()
        },
        EncodeContext {
            four_octet_as: four,
            extended_message: true,
        },
    )
}

fn check(m: &Message, four: bool) -> Result<(), TestCaseError> {
    let (dctx, ectx) = contexts(four);
    let bytes = m
        .to_bytes(&ectx)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let back = Message::decode(&bytes, &dctx)
        .map_err(|e| TestCaseError::fail(format!("decode: {e:?}")))?;
    prop_assert_eq!(&back, m);
    if let Message::Update(u) = m {
        let v = UpdateView::parse(&bytes, &dctx)
            .map_err(|e| TestCaseError::fail(format!("view: {e:?}")))?;
        prop_assert_eq!(v.action(), None);
        let nlri: Vec<IpNet> = u.nlri.iter().map(|n| IpNet::V4(*n)).collect();
        prop_assert_eq!(v.nlri().collect::<Vec<_>>(), nlri);
        let wd: Vec<IpNet> = u.withdrawn.iter().map(|n| IpNet::V4(*n)).collect();
        prop_assert_eq!(v.withdrawn().collect::<Vec<_>>(), wd);
        prop_assert_eq!(v.attributes().count(), u.attributes.len());
        prop_assert_eq!(v.is_end_of_rib(), u.is_end_of_rib());
        for a in &u.attributes {
            match a {
                PathAttribute::MpReach(r) => {
                    let mv = v.mp_reach().unwrap();
                    prop_assert_eq!(mv.next_hop(), Some(r.next_hop));
                    prop_assert_eq!(mv.nlri().collect::<Vec<_>>(), r.nlri.clone());
                }
                PathAttribute::MpUnreach(r) => {
                    prop_assert_eq!(
                        v.mp_unreach().unwrap().withdrawn().collect::<Vec<_>>(),
                        r.withdrawn.clone()
                    );
                }
                PathAttribute::Communities(c) => {
                    prop_assert_eq!(&v.communities().collect::<Vec<Community>>(), c)
                }
                PathAttribute::LargeCommunities(c) => {
                    prop_assert_eq!(&v.large_communities().collect::<Vec<_>>(), c)
                }
                PathAttribute::AsPath(p) => {
                    let asns: Vec<u32> = p
                        .segments
                        .iter()
                        .flat_map(|s| s.asns.iter().copied())
                        .collect();
                    prop_assert_eq!(v.as_path().unwrap().asns().collect::<Vec<_>>(), asns);
                    prop_assert_eq!(v.as_path().unwrap().route_len(), p.route_len());
                }
                _ => {}
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_message_decodes_back_to_itself_in_a_four_octet_session(m in message(true)) {
        check(&m, true)?;
    }

    #[test]
    fn any_message_decodes_back_to_itself_in_a_two_octet_session(m in message(false)) {
        check(&m, false)?;
    }
}
