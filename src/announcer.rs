//! The announcer: what each peer should be told, and the minimal UPDATEs to get there.
//!
//! Two pure steps, no I/O:
//! 1. [`desired`]: service states + config → the desired Adj-RIB-Out ([`RibOut`]) for one
//!    peer: normal, de-preferred (prepends + community), draining (RFC 8326
//!    GRACEFUL_SHUTDOWN community) or absent (withdrawn).
//! 2. [`diff`]: (what was sent, what is desired) → UPDATE messages. Prefixes that share the
//!    same attributes are batched into one UPDATE; an unchanged route produces nothing, so
//!    a steady state sends no UPDATE at all (operators' pain point: churn).
//!
//! The session driver owns "what was sent" (it is empty again after a session reset) and
//! calls [`diff`] whenever the desired set or the session changes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use anyguard_proto::{
    Afi, AsPath, AsPathSegment, AsPathSegmentType, Community, LargeCommunity, MpReach, MpUnreach,
    Origin, PathAttribute, Safi, UpdateMessage,
};
use ipnet::IpNet;

use crate::config::{NextHop, OnDown, ServiceConfig, DEFAULT_LOCAL_PREF};

/// Path attributes of one announced route, before the session's next hop is filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    /// ORIGIN (IGP for locally originated service prefixes).
    pub origin: Origin,
    /// Fixed next hop, or `None` for "self" (the session's local address).
    pub next_hop: Option<std::net::IpAddr>,
    /// Times our ASN is prepended beyond the one the session adds (eBGP only: an internal
    /// peer gets an empty AS_PATH, RFC 4271 §5.1.2).
    pub prepend: u8,
    /// MED.
    pub med: Option<u32>,
    /// LOCAL_PREF, sent to internal peers only, and to every one of them (§5.1.5).
    pub local_pref: u32,
    /// Standard communities, sorted and deduplicated.
    pub communities: Vec<Community>,
    /// Large communities, sorted and deduplicated.
    pub large_communities: Vec<LargeCommunity>,
}

impl RouteAttrs {
    /// A plain locally originated route: ORIGIN IGP, next hop "self", nothing else.
    pub fn plain() -> Self {
        RouteAttrs {
            origin: Origin::Igp,
            next_hop: None,
            prepend: 0,
            med: None,
            local_pref: DEFAULT_LOCAL_PREF,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }
}

/// The routes one peer should have from us: prefix → attributes.
pub type RibOut = BTreeMap<IpNet, RouteAttrs>;

/// What a session knows when it turns routes into UPDATEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    /// Our ASN.
    pub local_asn: u32,
    /// The peer is in our AS (iBGP: no ASN added to AS_PATH, LOCAL_PREF sent).
    pub ibgp: bool,
    /// Next hop for "self" IPv4 routes (the session's local IPv4 address or configured).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for "self" IPv6 routes.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Largest UPDATE we may build (4096, or 65535 with RFC 8654).
    pub max_message_len: usize,
    /// IPv4 unicast is usable on this session (negotiated, or implied without
    /// capabilities on an IPv4 session, RFC 4760 §8).
    pub ipv4_unicast: bool,
    /// IPv6 unicast was negotiated (RFC 4760).
    pub ipv6_unicast: bool,
    /// Our link-local address on the link the peer is directly connected to: sent besides
    /// the global next hop of "self" IPv6 routes (RFC 2545 §3, next hop length 32).
    pub link_local_v6: Option<Ipv6Addr>,
}

/// How a service's prefixes are presented to the peers right now. Chosen by the service
/// state machine (`crate::service`), after the guard has had its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presentation {
    /// Announced with the configured attributes.
    Normal,
    /// Announced, made less attractive: extra prepends and the de-prefer communities
    /// (`on_down = "deprefer"`). MED alone is not compared across upstream ASes.
    Depreferred,
    /// Announced with GRACEFUL_SHUTDOWN (RFC 8326 §4): routers lower its preference so
    /// traffic moves away before the withdrawal.
    GracefulShutdown,
    /// A de-preferred service being drained: the de-prefer prepends and communities stay
    /// and GRACEFUL_SHUTDOWN is added. Draining must never make a sick site more
    /// attractive to a router that ignores the community (RFC 8326 §4 lets it).
    DepreferredGracefulShutdown,
    /// Not announced.
    Withdrawn,
}

/// The attributes a service's prefixes carry in a given presentation, or `None` when they
/// are not announced.
pub fn route_attrs(service: &ServiceConfig, presentation: Presentation) -> Option<RouteAttrs> {
    let mut attrs = RouteAttrs {
        origin: Origin::Igp,
        next_hop: match service.next_hop {
            NextHop::SelfAddress => None,
            NextHop::Address(a) => Some(a),
        },
        prepend: service.as_path_prepend,
        med: service.med,
        local_pref: service.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
        communities: service.communities.clone(),
        large_communities: service.large_communities.clone(),
    };
    let (deprefer, graceful) = match presentation {
        Presentation::Withdrawn => return None,
        Presentation::Normal => (false, false),
        Presentation::Depreferred => (true, false),
        Presentation::GracefulShutdown => (false, true),
        Presentation::DepreferredGracefulShutdown => (true, true),
    };
    if deprefer {
        // eBGP sees the prepends, iBGP the lower LOCAL_PREF (`common_attributes`); both
        // see the de-prefer communities.
        attrs.prepend = attrs.prepend.saturating_add(service.deprefer_prepend);
        attrs.local_pref = service.deprefer_local_pref.unwrap_or(attrs.local_pref / 2);
        attrs
            .communities
            .extend_from_slice(&service.deprefer_communities);
    }
    if graceful {
        attrs.communities.push(Community::GRACEFUL_SHUTDOWN);
        // RFC 8326 §4: receivers lower a GRACEFUL_SHUTDOWN path's LOCAL_PREF to 0; towards
        // an internal peer we send that value ourselves, so a draining route loses even
        // where no policy matches the community.
        attrs.local_pref = 0;
    }
    attrs.communities.sort_unstable();
    attrs.communities.dedup();
    attrs.large_communities.sort_unstable();
    attrs.large_communities.dedup();
    Some(attrs)
}

/// The desired Adj-RIB-Out: every service's prefixes with the attributes of its current
/// presentation. The same for every peer; per-session differences (families, next hop,
/// iBGP) are applied by [`diff`].
pub fn desired<'a>(
    services: impl IntoIterator<Item = (&'a ServiceConfig, Presentation)>,
) -> RibOut {
    let mut out = RibOut::new();
    for (service, presentation) in services {
        if let Some(attrs) = route_attrs(service, presentation) {
            for prefix in &service.prefixes {
                // Two services announcing the same prefix is rejected by the config
                // loader; should it happen anyway, the first one wins deterministically.
                out.entry(*prefix).or_insert_with(|| attrs.clone());
            }
        }
    }
    out
}

/// The presentation for a service whose health says "down".
pub fn down_presentation(service: &ServiceConfig) -> Presentation {
    match service.on_down {
        OnDown::Withdraw => Presentation::Withdrawn,
        OnDown::Deprefer => Presentation::Depreferred,
    }
}

/// Fixed octets of an UPDATE: header (19), withdrawn length (2), attribute length (2).
const UPDATE_OVERHEAD: usize = 19 + 2 + 2;

/// Octets of one prefix in NLRI encoding (RFC 4271 §4.3): length octet + significant octets.
fn prefix_wire_len(p: &IpNet) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8)
}

/// Octets of one encoded path attribute, counting the extended-length form when needed.
fn attr_wire_len(value_len: usize) -> usize {
    if value_len > 255 {
        4 + value_len
    } else {
        3 + value_len
    }
}

/// Turns the difference between what a peer has and what it should have into UPDATEs.
///
/// Minimal: unchanged routes are not re-sent, and an empty difference yields no message.
/// Batched: all withdrawals share messages (IPv4 in the classic field, IPv6 in
/// MP_UNREACH_NLRI), and prefixes with identical attributes share one UPDATE per family,
/// split only where a message would exceed `ctx.max_message_len`.
///
/// Routes of a family the session cannot carry, or that have no usable next hop, are left
/// out (they stay "unsent": see [`sendable`]).
pub fn diff(sent: &RibOut, desired: &RibOut, ctx: &SessionContext) -> Vec<UpdateMessage> {
    let mut updates = Vec::new();

    // One merge walk over the two sorted maps rather than a lookup per prefix: a peer
    // task runs this for every change of the desired set (hundreds of times while 1,000
    // services rise at start-up, on every peer), on the runtime threads the probes share.
    let mut withdrawn: Vec<IpNet> = Vec::new();
    // Group changed or new routes by (family, attributes), preserving prefix order.
    let mut groups: Vec<(bool, &RouteAttrs, Vec<IpNet>)> = Vec::new();
    let mut index: HashMap<(bool, &RouteAttrs), usize> = HashMap::new();
    let mut old = sent.iter().peekable();
    for (prefix, attrs) in desired {
        while let Some((p, _)) = old.next_if(|(p, _)| *p < prefix) {
            withdrawn.push(*p);
        }
        let unchanged = old
            .next_if(|(p, _)| *p == prefix)
            .is_some_and(|(_, a)| a == attrs);
        if unchanged || !family_ok(prefix, ctx) {
            continue;
        }
        let v6 = matches!(prefix, IpNet::V6(_));
        let slot = *index.entry((v6, attrs)).or_insert_with(|| {
            groups.push((v6, attrs, Vec::new()));
            groups.len() - 1
        });
        groups[slot].2.push(*prefix);
    }
    withdrawn.extend(old.map(|(p, _)| *p));
    push_withdrawals(&withdrawn, ctx, &mut updates);
    for (v6, attrs, prefixes) in groups {
        push_announcements(v6, attrs, &prefixes, ctx, &mut updates);
    }
    updates
}

/// The part of `desired` that [`diff`] can actually send on this session: what the
/// session's Adj-RIB-Out holds after the UPDATEs went out.
///
/// Usually that is all of it, and then it is `desired` itself, shared: every peer's
/// Adj-RIB-Out (and each confirmation of it to the coordinator) points at the one map
/// the coordinator published, rather than a copy per peer and per change (at 16 peers
/// and 1,000 services the copies made during start-up cost tens of MiB of peak RSS).
pub fn sendable(desired: &Arc<RibOut>, ctx: &SessionContext) -> Arc<RibOut> {
    let ok = |(p, a): (&IpNet, &RouteAttrs)| family_ok(p, ctx) && next_hop_for(p, a, ctx).is_some();
    if desired.iter().all(ok) {
        return Arc::clone(desired);
    }
    Arc::new(
        desired
            .iter()
            .filter(|&e| ok(e))
            .map(|(p, a)| (*p, a.clone()))
            .collect(),
    )
}

fn family_ok(prefix: &IpNet, ctx: &SessionContext) -> bool {
    match prefix {
        IpNet::V4(_) => ctx.ipv4_unicast,
        IpNet::V6(_) => ctx.ipv6_unicast,
    }
}

fn next_hop_for(prefix: &IpNet, attrs: &RouteAttrs, ctx: &SessionContext) -> Option<IpAddr> {
    match (prefix, attrs.next_hop) {
        (IpNet::V4(_), Some(IpAddr::V4(a))) => Some(IpAddr::V4(a)),
        (IpNet::V6(_), Some(IpAddr::V6(a))) => Some(IpAddr::V6(a)),
        (IpNet::V4(_), _) => ctx.next_hop_v4.map(IpAddr::V4),
        (IpNet::V6(_), _) => ctx.next_hop_v6.map(IpAddr::V6),
    }
}

fn push_withdrawals(withdrawn: &[IpNet], ctx: &SessionContext, out: &mut Vec<UpdateMessage>) {
    let v4: Vec<IpNet> = withdrawn
        .iter()
        .filter(|p| matches!(p, IpNet::V4(_)) && ctx.ipv4_unicast)
        .copied()
        .collect();
    let v6: Vec<IpNet> = withdrawn
        .iter()
        .filter(|p| matches!(p, IpNet::V6(_)) && ctx.ipv6_unicast)
        .copied()
        .collect();

    for chunk in chunks(&v4, ctx.max_message_len - UPDATE_OVERHEAD) {
        out.push(UpdateMessage {
            withdrawn: chunk
                .iter()
                .filter_map(|p| match p {
                    IpNet::V4(n) => Some(*n),
                    IpNet::V6(_) => None,
                })
                .collect(),
            attributes: Vec::new(),
            nlri: Vec::new(),
        });
    }
    // MP_UNREACH_NLRI value: AFI (2) + SAFI (1) + prefixes; always sized for the
    // extended-length attribute header (4 octets) to keep the arithmetic simple.
    for chunk in chunks(&v6, ctx.max_message_len - UPDATE_OVERHEAD - 4 - 3) {
        out.push(UpdateMessage {
            withdrawn: Vec::new(),
            attributes: vec![PathAttribute::MpUnreach(MpUnreach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                withdrawn: chunk.to_vec(),
            })],
            nlri: Vec::new(),
        });
    }
}

fn push_announcements(
    v6: bool,
    attrs: &RouteAttrs,
    prefixes: &[IpNet],
    ctx: &SessionContext,
    out: &mut Vec<UpdateMessage>,
) {
    let Some(first) = prefixes.first() else {
        return;
    };
    let Some(next_hop) = next_hop_for(first, attrs, ctx) else {
        return;
    };
    let common = common_attributes(attrs, ctx);
    let common_len: usize = common.iter().map(attribute_len).sum();
    if v6 {
        // RFC 2545 §3: to a directly connected peer, our own ("self") global next hop goes
        // with the link-local address of the same interface; a fixed next hop is another
        // host's, whose link-local address we do not know.
        let link_local = ctx.link_local_v6.filter(|_| attrs.next_hop.is_none());
        // MP_REACH_NLRI value: AFI 2 + SAFI 1 + NH len 1 + NH 16 (32) + reserved 1 + NLRI.
        let nh_len = if link_local.is_some() { 32 } else { 16 };
        let room = ctx
            .max_message_len
            .saturating_sub(UPDATE_OVERHEAD + common_len + 4 + 5 + nh_len);
        for chunk in chunks(prefixes, room) {
            let mut attributes = common.clone();
            attributes.push(PathAttribute::MpReach(MpReach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                next_hop,
                link_local_next_hop: link_local,
                nlri: chunk.to_vec(),
            }));
            sort_attributes(&mut attributes);
            out.push(UpdateMessage {
                withdrawn: Vec::new(),
                attributes,
                nlri: Vec::new(),
            });
        }
    } else {
        let IpAddr::V4(nh) = next_hop else {
            return;
        };
        let room = ctx
            .max_message_len
            .saturating_sub(UPDATE_OVERHEAD + common_len + attr_wire_len(4));
        for chunk in chunks(prefixes, room) {
            let mut attributes = common.clone();
            attributes.push(PathAttribute::NextHop(nh));
            sort_attributes(&mut attributes);
            out.push(UpdateMessage {
                withdrawn: Vec::new(),
                attributes,
                nlri: chunk
                    .iter()
                    .filter_map(|p| match p {
                        IpNet::V4(n) => Some(*n),
                        IpNet::V6(_) => None,
                    })
                    .collect(),
            });
        }
    }
}

/// Attributes shared by every UPDATE of a group (all but NEXT_HOP / MP_REACH).
fn common_attributes(attrs: &RouteAttrs, ctx: &SessionContext) -> Vec<PathAttribute> {
    // RFC 4271 §5.1.2: a speaker originating a route sends an internal peer an empty
    // AS_PATH, an external one its own AS (plus the configured prepends). Prepending our
    // own AS towards an internal peer would make it drop the route as a loop (§9.1.2), so
    // prepends, de-prefer ones included, are for eBGP only.
    let copies = if ctx.ibgp {
        0
    } else {
        usize::from(attrs.prepend) + 1
    };
    let segments = if copies == 0 {
        Vec::new()
    } else {
        vec![AsPathSegment {
            kind: AsPathSegmentType::Sequence,
            asns: vec![ctx.local_asn; copies],
        }]
    };
    let mut v = vec![
        PathAttribute::Origin(attrs.origin),
        PathAttribute::AsPath(AsPath { segments }),
    ];
    if let Some(med) = attrs.med {
        v.push(PathAttribute::MultiExitDisc(med));
    }
    // RFC 4271 §5.1.5: LOCAL_PREF "SHALL" be in every UPDATE to an internal peer, and
    // "MUST NOT" be sent to an external one.
    if ctx.ibgp {
        v.push(PathAttribute::LocalPref(attrs.local_pref));
    }
    if !attrs.communities.is_empty() {
        v.push(PathAttribute::Communities(attrs.communities.clone()));
    }
    if !attrs.large_communities.is_empty() {
        v.push(PathAttribute::LargeCommunities(
            attrs.large_communities.clone(),
        ));
    }
    v
}

/// Upper bound of an attribute's encoded size (4-octet ASNs; AS4_PATH in a 2-octet session
/// is no larger than the AS_PATH it accompanies, so counting AS_PATH twice covers it).
fn attribute_len(a: &PathAttribute) -> usize {
    let value = match a {
        PathAttribute::Origin(_) => 1,
        PathAttribute::AsPath(p) => {
            2 * p
                .segments
                .iter()
                .map(|s| 2 + 4 * s.asns.len())
                .sum::<usize>()
        }
        PathAttribute::NextHop(_) => 4,
        PathAttribute::MultiExitDisc(_) | PathAttribute::LocalPref(_) => 4,
        PathAttribute::Communities(c) => 4 * c.len(),
        PathAttribute::LargeCommunities(c) => 12 * c.len(),
        _ => 0,
    };
    attr_wire_len(value) + 1
}

/// RFC 7606 §5.1: MP_REACH_NLRI and MP_UNREACH_NLRI "SHALL be encoded as the very first
/// path attribute", so that a receiver that finds a later attribute malformed has already
/// read every prefix it must treat as withdrawn. The others follow in ascending order of
/// type (RFC 4271 §5: "SHOULD order path attributes … in ascending order").
fn sort_attributes(attrs: &mut [PathAttribute]) {
    attrs.sort_by_key(|a| {
        let mp = matches!(a, PathAttribute::MpReach(_) | PathAttribute::MpUnreach(_));
        (!mp, type_code(a))
    });
}

fn type_code(a: &PathAttribute) -> u8 {
    match a {
        PathAttribute::Origin(_) => 1,
        PathAttribute::AsPath(_) => 2,
        PathAttribute::NextHop(_) => 3,
        PathAttribute::MultiExitDisc(_) => 4,
        PathAttribute::LocalPref(_) => 5,
        PathAttribute::AtomicAggregate => 6,
        PathAttribute::Aggregator { .. } => 7,
        PathAttribute::Communities(_) => 8,
        PathAttribute::OriginatorId(_) => 9,
        PathAttribute::ClusterList(_) => 10,
        PathAttribute::MpReach(_) => 14,
        PathAttribute::MpUnreach(_) => 15,
        PathAttribute::ExtendedCommunities(_) => 16,
        PathAttribute::As4Path(_) => 17,
        PathAttribute::As4Aggregator { .. } => 18,
        PathAttribute::LargeCommunities(_) => 32,
        PathAttribute::Unknown { type_code, .. } => *type_code,
    }
}

/// Splits prefixes into runs whose NLRI encoding fits in `room` octets.
fn chunks(prefixes: &[IpNet], room: usize) -> Vec<&[IpNet]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        let len = prefix_wire_len(p);
        if used + len > room && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += len;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

/// One line for logs saying how the desired Adj-RIB-Out changed ("announce 203.0.113.0/24
/// (prepend 3, communities 65535:0); withdraw 198.51.100.0/24"), or `None` when it did not.
/// This is what a dry run shows instead of sending, and what operators read to learn why
/// a route appeared or went.
pub fn describe_change(old: &RibOut, new: &RibOut) -> Option<String> {
    describe(
        new.iter().filter(|(p, a)| old.get(*p) != Some(*a)),
        old.keys().filter(|p| !new.contains_key(*p)),
    )
}

/// [`describe_change`] from `old` to `old` with `patch` applied (each prefix's route now,
/// `None`: not announced; sorted by prefix, each prefix once), without walking `old`.
pub fn describe_patch(old: &RibOut, patch: &[(IpNet, Option<RouteAttrs>)]) -> Option<String> {
    describe(
        patch.iter().filter_map(|(p, a)| {
            a.as_ref()
                .filter(|a| old.get(p) != Some(*a))
                .map(|a| (p, a))
        }),
        patch
            .iter()
            .filter(|(p, a)| a.is_none() && old.contains_key(p))
            .map(|(p, _)| p),
    )
}

fn describe<'a>(
    announced: impl Iterator<Item = (&'a IpNet, &'a RouteAttrs)>,
    withdrawn: impl Iterator<Item = &'a IpNet>,
) -> Option<String> {
    let announced: Vec<String> = announced
        .map(|(p, a)| {
            let mut notes = Vec::new();
            if a.prepend > 0 {
                notes.push(format!("prepend {}", a.prepend));
            }
            if let Some(med) = a.med {
                notes.push(format!("med {med}"));
            }
            if !a.communities.is_empty() {
                let c: Vec<String> = a
                    .communities
                    .iter()
                    .map(|c| format!("{}:{}", c.asn(), c.value()))
                    .collect();
                notes.push(format!("communities {}", c.join(" ")));
            }
            if notes.is_empty() {
                p.to_string()
            } else {
                format!("{p} ({})", notes.join(", "))
            }
        })
        .collect();
    let withdrawn: Vec<String> = withdrawn.map(ToString::to_string).collect();
    let mut parts = Vec::new();
    if !announced.is_empty() {
        parts.push(format!("announce {}", announced.join(", ")));
    }
    if !withdrawn.is_empty() {
        parts.push(format!("withdraw {}", withdrawn.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::service_config;

    fn service(name: &str, prefixes: &[&str]) -> ServiceConfig {
        ServiceConfig {
            communities: vec![Community::new(65010, 100)],
            deprefer_communities: vec![Community::new(65010, 666)],
            ..service_config(name, prefixes)
        }
    }

    fn ctx() -> SessionContext {
        SessionContext {
            local_asn: 65010,
            ibgp: false,
            next_hop_v4: Some("198.18.0.2".parse().unwrap()),
            next_hop_v6: Some("2001:db8::2".parse().unwrap()),
            max_message_len: 4096,
            ipv4_unicast: true,
            ipv6_unicast: true,
            link_local_v6: None,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn unchanged_routes_produce_no_update() {
        let web = service("web", &["203.0.113.0/24", "2001:db8:100::/48"]);
        let rib = desired([(&web, Presentation::Normal)]);
        assert!(diff(&rib, &rib, &ctx()).is_empty());
    }

    #[test]
    fn new_ipv4_route_is_one_update_with_next_hop_self_and_own_asn() {
        let web = service("web", &["203.0.113.0/24"]);
        let rib = desired([(&web, Presentation::Normal)]);
        let ups = diff(&RibOut::new(), &rib, &ctx());
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].nlri, vec!["203.0.113.0/24".parse().unwrap()]);
        assert!(ups[0].withdrawn.is_empty());
        assert_eq!(
            ups[0].attributes,
            vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath {
                    segments: vec![AsPathSegment {
                        kind: AsPathSegmentType::Sequence,
                        asns: vec![65010],
                    }]
                }),
                PathAttribute::NextHop("198.18.0.2".parse().unwrap()),
                PathAttribute::Communities(vec![Community::new(65010, 100)]),
            ]
        );
    }

    #[test]
    fn ipv6_route_travels_in_mp_reach_with_the_ipv6_next_hop() {
        let web = service("web", &["2001:db8:100::/48"]);
        let ups = diff(
            &RibOut::new(),
            &desired([(&web, Presentation::Normal)]),
            &ctx(),
        );
        assert_eq!(ups.len(), 1);
        assert!(ups[0].nlri.is_empty());
        let mp = ups[0]
            .attributes
            .iter()
            .find_map(|a| match a {
                PathAttribute::MpReach(m) => Some(m),
                _ => None,
            })
            .expect("MP_REACH present");
        assert_eq!(mp.afi, Afi::Ipv6);
        assert_eq!(mp.next_hop, "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(mp.nlri, vec![net("2001:db8:100::/48")]);
        assert!(!ups[0]
            .attributes
            .iter()
            .any(|a| matches!(a, PathAttribute::NextHop(_))));
    }

    #[test]
    fn withdrawal_uses_classic_field_for_ipv4_and_mp_unreach_for_ipv6() {
        let web = service("web", &["203.0.113.0/24", "2001:db8:100::/48"]);
        let rib = desired([(&web, Presentation::Normal)]);
        let ups = diff(&rib, &RibOut::new(), &ctx());
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0].withdrawn, vec!["203.0.113.0/24".parse().unwrap()]);
        assert_eq!(
            ups[1].attributes,
            vec![PathAttribute::MpUnreach(MpUnreach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                withdrawn: vec![net("2001:db8:100::/48")],
            })]
        );
    }

    #[test]
    fn graceful_shutdown_reannounces_with_the_rfc8326_community_only_changed_routes() {
        let web = service("web", &["203.0.113.0/24"]);
        let dns = service("dns", &["198.51.100.0/24"]);
        let before = desired([(&web, Presentation::Normal), (&dns, Presentation::Normal)]);
        let after = desired([
            (&web, Presentation::GracefulShutdown),
            (&dns, Presentation::Normal),
        ]);
        let ups = diff(&before, &after, &ctx());
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].nlri, vec!["203.0.113.0/24".parse().unwrap()]);
        assert!(ups[0].attributes.contains(&PathAttribute::Communities(vec![
            Community::new(65010, 100),
            Community::GRACEFUL_SHUTDOWN
        ])));
    }

    #[test]
    fn deprefer_adds_prepends_and_the_deprefer_community() {
        let web = service("web", &["203.0.113.0/24"]);
        let ups = diff(
            &RibOut::new(),
            &desired([(&web, Presentation::Depreferred)]),
            &ctx(),
        );
        assert!(ups[0].attributes.contains(&PathAttribute::AsPath(AsPath {
            segments: vec![AsPathSegment {
                kind: AsPathSegmentType::Sequence,
                asns: vec![65010; 4],
            }]
        })));
        assert!(ups[0].attributes.contains(&PathAttribute::Communities(vec![
            Community::new(65010, 100),
            Community::new(65010, 666)
        ])));
    }

    #[test]
    fn draining_a_depreferred_service_keeps_the_prepends_and_adds_graceful_shutdown() {
        let web = service("web", &["203.0.113.0/24"]);
        let before = desired([(&web, Presentation::Depreferred)]);
        let after = desired([(&web, Presentation::DepreferredGracefulShutdown)]);
        let ups = diff(&before, &after, &ctx());
        assert_eq!(ups.len(), 1);
        assert!(ups[0].attributes.contains(&PathAttribute::AsPath(AsPath {
            segments: vec![AsPathSegment {
                kind: AsPathSegmentType::Sequence,
                asns: vec![65010; 4],
            }]
        })));
        assert!(ups[0].attributes.contains(&PathAttribute::Communities(vec![
            Community::new(65010, 100),
            Community::new(65010, 666),
            Community::GRACEFUL_SHUTDOWN
        ])));
    }

    #[test]
    fn route_changes_are_described_in_one_line_and_no_change_in_none() {
        let web = service("web", &["203.0.113.0/24"]);
        let dns = service("dns", &["198.51.100.0/24"]);
        let normal = desired([(&web, Presentation::Normal), (&dns, Presentation::Normal)]);
        let sick = desired([(&web, Presentation::Depreferred)]);
        assert_eq!(
            describe_change(&normal, &sick).as_deref(),
            Some(
                "announce 203.0.113.0/24 (prepend 3, communities 65010:100 65010:666); \
                 withdraw 198.51.100.0/24"
            )
        );
        assert_eq!(describe_change(&sick, &sick), None);
        assert_eq!(
            describe_change(&RibOut::new(), &desired([(&dns, Presentation::Normal)])).as_deref(),
            Some("announce 198.51.100.0/24 (communities 65010:100)")
        );
    }

    #[test]
    fn a_patch_is_described_as_the_change_it_makes() {
        let web = service("web", &["203.0.113.0/24"]);
        let dns = service("dns", &["198.51.100.0/24"]);
        let api = service("api", &["2001:db8:1::/48"]);
        let normal = desired([(&web, Presentation::Normal), (&dns, Presentation::Normal)]);
        let after = desired([
            (&web, Presentation::Depreferred),
            (&api, Presentation::Normal),
        ]);
        // What the shell patches in: each moved service's prefixes, sorted by prefix
        // (dns withdrawn, web de-preferred, api new), and one entry that did not change.
        let mut patch: Vec<(IpNet, Option<RouteAttrs>)> = vec![
            (net("198.51.100.0/24"), None),
            (
                net("203.0.113.0/24"),
                after.get(&net("203.0.113.0/24")).cloned(),
            ),
            (
                net("2001:db8:1::/48"),
                after.get(&net("2001:db8:1::/48")).cloned(),
            ),
            (net("2001:db8:2::/48"), None),
        ];
        patch.sort_unstable_by_key(|(p, _)| *p);
        assert!(describe_change(&normal, &after).is_some());
        assert_eq!(
            describe_patch(&normal, &patch),
            describe_change(&normal, &after)
        );
        assert_eq!(describe_patch(&after, &[]), None);
    }

    /// The attributes of the one UPDATE announcing `web` in `presentation` on `ctx`.
    fn announced(
        web: &ServiceConfig,
        presentation: Presentation,
        ctx: &SessionContext,
    ) -> Vec<PathAttribute> {
        let ups = diff(&RibOut::new(), &desired([(web, presentation)]), ctx);
        assert_eq!(ups.len(), 1, "{ups:?}");
        ups[0].attributes.clone()
    }

    fn as_path(attrs: &[PathAttribute]) -> Vec<u32> {
        attrs
            .iter()
            .find_map(|a| match a {
                PathAttribute::AsPath(p) => {
                    Some(p.segments.iter().flat_map(|s| s.asns.clone()).collect())
                }
                _ => None,
            })
            .expect("AS_PATH")
    }

    fn local_pref(attrs: &[PathAttribute]) -> Option<u32> {
        attrs.iter().find_map(|a| match a {
            PathAttribute::LocalPref(lp) => Some(*lp),
            _ => None,
        })
    }

    #[test]
    fn ibgp_deprefer_lowers_local_pref_and_never_prepends_our_own_asn() {
        // Issue 12 finding 1: `prepend + !ibgp` copies of our ASN went to internal peers,
        // which drop such a path as a loop (RFC 4271 §9.1.2): "deprefer" acted as withdraw.
        let web = ServiceConfig {
            as_path_prepend: 2,
            on_down: OnDown::Deprefer,
            ..service("web", &["203.0.113.0/24"])
        };
        let ibgp = SessionContext {
            ibgp: true,
            ..ctx()
        };
        let normal = announced(&web, Presentation::Normal, &ibgp);
        assert_eq!(as_path(&normal), Vec::<u32>::new());
        assert_eq!(
            local_pref(&normal),
            Some(100),
            "LOCAL_PREF in every iBGP UPDATE"
        );
        let depreferred = announced(&web, Presentation::Depreferred, &ibgp);
        assert_eq!(as_path(&depreferred), Vec::<u32>::new());
        assert_eq!(
            local_pref(&depreferred),
            Some(50),
            "half the normal one by default"
        );
        assert!(depreferred.contains(&PathAttribute::Communities(vec![
            Community::new(65010, 100),
            Community::new(65010, 666)
        ])));
        let draining = announced(&web, Presentation::DepreferredGracefulShutdown, &ibgp);
        assert_eq!(as_path(&draining), Vec::<u32>::new());
        assert_eq!(local_pref(&draining), Some(0), "RFC 8326 §4");
        // eBGP: our AS, the prepends, the de-prefer prepends; never LOCAL_PREF.
        let ebgp = announced(&web, Presentation::Depreferred, &ctx());
        assert_eq!(as_path(&ebgp), vec![65010; 1 + 2 + 3]);
        assert_eq!(local_pref(&ebgp), None);
        // A configured de-prefer LOCAL_PREF.
        let web = ServiceConfig {
            local_pref: Some(300),
            deprefer_local_pref: Some(120),
            ..web
        };
        assert_eq!(
            local_pref(&announced(&web, Presentation::Normal, &ibgp)),
            Some(300)
        );
        assert_eq!(
            local_pref(&announced(&web, Presentation::Depreferred, &ibgp)),
            Some(120)
        );
    }

    #[test]
    fn ibgp_gets_local_pref_and_no_own_asn() {
        let mut web = service("web", &["203.0.113.0/24"]);
        web.local_pref = Some(200);
        let ibgp = SessionContext {
            ibgp: true,
            ..ctx()
        };
        let ups = diff(
            &RibOut::new(),
            &desired([(&web, Presentation::Normal)]),
            &ibgp,
        );
        assert!(ups[0].attributes.contains(&PathAttribute::LocalPref(200)));
        assert!(ups[0]
            .attributes
            .contains(&PathAttribute::AsPath(AsPath::default())));
        let ebgp = diff(
            &RibOut::new(),
            &desired([(&web, Presentation::Normal)]),
            &ctx(),
        );
        assert!(!ebgp[0]
            .attributes
            .iter()
            .any(|a| matches!(a, PathAttribute::LocalPref(_))));
    }

    #[test]
    fn prefixes_sharing_attributes_are_batched_and_split_at_the_message_size() {
        let many: Vec<String> = (0..2000u32)
            .map(|i| format!("198.18.{}.{}/32", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let web = service("web", &refs);
        let ups = diff(
            &RibOut::new(),
            &desired([(&web, Presentation::Normal)]),
            &ctx(),
        );
        // 2000 × 5 octets = 10000 octets of NLRI: three 4096-octet messages.
        assert_eq!(ups.len(), 3);
        assert_eq!(ups.iter().map(|u| u.nlri.len()).sum::<usize>(), 2000);
    }

    #[test]
    fn families_the_session_cannot_carry_are_left_out() {
        let web = service("web", &["203.0.113.0/24", "2001:db8:100::/48"]);
        let v4only = SessionContext {
            ipv6_unicast: false,
            ..ctx()
        };
        let rib = desired([(&web, Presentation::Normal)]);
        let ups = diff(&RibOut::new(), &rib, &v4only);
        assert_eq!(ups.len(), 1);
        assert!(ups[0]
            .attributes
            .iter()
            .all(|a| !matches!(a, PathAttribute::MpReach(_))));
        assert_eq!(sendable(&Arc::new(rib), &v4only).len(), 1);
    }

    #[test]
    fn a_session_that_can_carry_every_route_shares_the_desired_map_instead_of_copying_it() {
        let web = service("web", &["203.0.113.0/24", "2001:db8:100::/48"]);
        let rib = Arc::new(desired([(&web, Presentation::Normal)]));
        assert!(Arc::ptr_eq(&sendable(&rib, &ctx()), &rib));
        let v4only = SessionContext {
            ipv6_unicast: false,
            ..ctx()
        };
        let part = sendable(&rib, &v4only);
        assert!(!Arc::ptr_eq(&part, &rib));
        assert_eq!(
            part.keys().collect::<Vec<_>>(),
            vec![&net("203.0.113.0/24")]
        );
    }

    #[test]
    fn diff_withdraws_before_between_and_after_the_desired_prefixes_and_skips_unchanged_ones() {
        let names = [
            "198.18.0.1/32",
            "198.18.0.2/32",
            "198.18.0.3/32",
            "198.18.0.4/32",
        ];
        let sent: RibOut = names
            .iter()
            .map(|n| (net(n), RouteAttrs::plain()))
            .collect();
        let mut desired = RibOut::new();
        let changed = RouteAttrs {
            med: Some(7),
            ..RouteAttrs::plain()
        };
        desired.insert(net("198.18.0.2/32"), changed);
        desired.insert(net("198.18.0.3/32"), RouteAttrs::plain());
        desired.insert(net("198.18.0.5/32"), RouteAttrs::plain());
        let ups = diff(&sent, &desired, &ctx());
        let withdrawn: Vec<String> = ups
            .iter()
            .flat_map(|u| &u.withdrawn)
            .map(ToString::to_string)
            .collect();
        assert_eq!(withdrawn, ["198.18.0.1/32", "198.18.0.4/32"]);
        let announced: Vec<Vec<String>> = ups
            .iter()
            .filter(|u| !u.nlri.is_empty())
            .map(|u| u.nlri.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(announced, [vec!["198.18.0.2/32"], vec!["198.18.0.5/32"]]);
    }

    #[test]
    fn mp_reach_nlri_is_the_first_attribute_on_the_wire() {
        // Issue 12 finding 6 (RFC 7606 §5.1). Communities (8) and a MED (4) would sort
        // before MP_REACH_NLRI (14) by type code.
        let web = ServiceConfig {
            med: Some(10),
            ..service("web", &["2001:db8:100::/48"])
        };
        let rib = desired([(&web, Presentation::Normal)]);
        let ups = diff(&RibOut::new(), &rib, &ctx());
        assert_eq!(ups.len(), 1);
        let mut wire = bytes::BytesMut::new();
        anyguard_proto::Message::Update(ups[0].clone())
            .encode(
                &anyguard_proto::EncodeContext {
                    four_octet_as: true,
                    extended_message: false,
                },
                &mut wire,
            )
            .unwrap();
        // Header 19, withdrawn length 2 (0), attribute length 2: the first attribute's
        // flags at 23, its type code at 24.
        assert_eq!(&wire[19..21], &[0, 0]);
        assert_eq!(wire[24], 14, "first attribute type {}", wire[24]);
        // The rest in ascending order: ORIGIN, AS_PATH, MED, COMMUNITIES.
        let codes: Vec<u8> = ups[0].attributes.iter().map(type_code).collect();
        assert_eq!(codes, [14, 1, 2, 4, 8]);
        // A withdrawal of IPv6 prefixes carries MP_UNREACH_NLRI only.
        let ups = diff(&rib, &RibOut::new(), &ctx());
        assert!(matches!(ups[0].attributes[0], PathAttribute::MpUnreach(_)));
    }

    #[test]
    fn withdrawn_presentation_removes_the_service_from_the_rib() {
        let web = service("web", &["203.0.113.0/24"]);
        assert!(desired([(&web, Presentation::Withdrawn)]).is_empty());
        assert_eq!(down_presentation(&web), Presentation::Withdrawn);
    }
}
