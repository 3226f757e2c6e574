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

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyguard_proto::{Community, LargeCommunity, Origin};
use ipnet::IpNet;

/// Path attributes of one announced route, before the session's next hop is filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    /// ORIGIN (IGP for locally originated service prefixes).
    pub origin: Origin,
    /// Fixed next hop, or `None` for "self" (the session's local address).
    pub next_hop: Option<std::net::IpAddr>,
    /// Times our ASN is prepended beyond the one the session adds (eBGP).
    pub prepend: u8,
    /// MED.
    pub med: Option<u32>,
    /// LOCAL_PREF (sent to iBGP peers only).
    pub local_pref: Option<u32>,
    /// Standard communities, sorted and deduplicated.
    pub communities: Vec<Community>,
    /// Large communities, sorted and deduplicated.
    pub large_communities: Vec<LargeCommunity>,
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
}
