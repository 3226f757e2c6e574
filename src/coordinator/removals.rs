//! Pending removals: the routes a reload takes away (a service removed or renamed, a
//! prefix removed or changed) stay announced, with the attributes they had before the
//! reload, until the all-sites guard lets them go (issue #11, item 1).
//!
//! A reload applies everything else at once; only the withdrawals wait. Each pending
//! removal goes through the same publish-intent-then-confirm handshake as a health
//! withdrawal (`guard::runtime::decide` with the cause "removed from the config", see
//! `docs/guard.md`), decided per (service, prefixes): another site counts only when its
//! report lists the service *with those prefixes*. A service retired in the fleet file
//! is removed at once.
//!
//! The values are plain data with serde, so that a state file can keep them across a
//! restart ([`PendingRemoval`] holds everything needed to announce the routes again).
//! Nothing here does I/O or reads a clock.

use std::time::SystemTime;

use anyguard_proto::{Community, LargeCommunity, Origin};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::announcer::{RibOut, RouteAttrs};
use crate::config::{Config, PeerConfig};

/// Whether `peer` carries `prefix`'s address family (its session negotiates it). A route
/// of a family no configured peer carries is on no wire: removing the last such peer by
/// reload takes the route away like removing its service.
pub fn carries(peer: &PeerConfig, prefix: &IpNet) -> bool {
    match prefix {
        IpNet::V4(_) => peer.ipv4,
        IpNet::V6(_) => peer.ipv6,
    }
}

/// One service's routes that a reload removed and that are still announced until the
/// guard confirms that enough other sites announce them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRemoval {
    /// The service the routes belonged to (its name in the fleet file).
    pub service: String,
    /// The routes, sorted by prefix, with the attributes they were announced with when
    /// the reload removed them.
    pub routes: Vec<SavedRoute>,
    /// When the reload removed them (wall clock, for status).
    pub since: SystemTime,
}

/// One route of a [`PendingRemoval`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// Its path attributes.
    pub attrs: SavedAttrs,
}

/// A serializable copy of [`RouteAttrs`] (the codec's types carry no serde).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAttrs {
    /// ORIGIN code (0 IGP, 1 EGP, 2 INCOMPLETE; RFC 4271 §5.1.1).
    pub origin: u8,
    /// Fixed next hop, or none for "self".
    pub next_hop: Option<std::net::IpAddr>,
    /// Extra prepends.
    pub prepend: u8,
    /// MED.
    pub med: Option<u32>,
    /// LOCAL_PREF (sent to iBGP peers only).
    pub local_pref: u32,
    /// Standard communities as 32-bit values.
    pub communities: Vec<u32>,
    /// Large communities as (global, local1, local2).
    pub large_communities: Vec<(u32, u32, u32)>,
}

impl From<&RouteAttrs> for SavedAttrs {
    fn from(a: &RouteAttrs) -> Self {
        SavedAttrs {
            origin: match a.origin {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            },
            next_hop: a.next_hop,
            prepend: a.prepend,
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities.iter().map(|c| c.0).collect(),
            large_communities: a
                .large_communities
                .iter()
                .map(|c| (c.global, c.local1, c.local2))
                .collect(),
        }
    }
}

impl From<&SavedAttrs> for RouteAttrs {
    fn from(a: &SavedAttrs) -> Self {
        RouteAttrs {
            origin: match a.origin {
                0 => Origin::Igp,
                1 => Origin::Egp,
                // Only the three codes above are ever saved; anything else read back
                // from a state file is announced as the least preferred origin.
                _ => Origin::Incomplete,
            },
            next_hop: a.next_hop,
            prepend: a.prepend,
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities.iter().copied().map(Community).collect(),
            large_communities: a
                .large_communities
                .iter()
                .map(|&(global, local1, local2)| LargeCommunity {
                    global,
                    local1,
                    local2,
                })
                .collect(),
        }
    }
}

impl PendingRemoval {
    /// The prefixes, sorted.
    pub fn prefixes(&self) -> Vec<IpNet> {
        self.routes.iter().map(|r| r.prefix).collect()
    }

    /// `service prefix, prefix` for logs and keys.
    pub fn key(&self) -> String {
        let prefixes: Vec<String> = self.routes.iter().map(|r| r.prefix.to_string()).collect();
        format!("{} {}", self.service, prefixes.join(","))
    }
}

/// What a reload takes away: per service of `old` (the config before the reload), its
/// routes in `announced` (the desired Adj-RIB-Out just before the reload) that are not in
/// `live` (what the new config's services announce right after it, over the new config's
/// peers). That covers a service removed, a prefix removed or changed, a rename (the new
/// service starts and announces only once its checks have risen) and the last peer of a
/// family removed. Routes that were not announced are
/// not removals: there is nothing to keep.
pub fn removed_by_reload(
    old: &Config,
    announced: &RibOut,
    live: &RibOut,
    since: SystemTime,
) -> Vec<PendingRemoval> {
    old.services
        .iter()
        .filter_map(|svc| {
            let mut routes: Vec<SavedRoute> = svc
                .prefixes
                .iter()
                .filter(|p| !live.contains_key(p))
                .filter_map(|p| {
                    announced.get(p).map(|attrs| SavedRoute {
                        prefix: *p,
                        attrs: attrs.into(),
                    })
                })
                .collect();
            routes.sort_by_key(|r| r.prefix);
            (!routes.is_empty()).then(|| PendingRemoval {
                service: svc.name.clone(),
                routes,
                since,
            })
        })
        .collect()
}

/// The pending removals of one site, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingRemovals {
    list: Vec<PendingRemoval>,
}

impl PendingRemovals {
    /// Takes `removals` in: a prefix already pending, or announced by a configured
    /// service (`live`), is skipped.
    pub fn add(&mut self, live: &RibOut, removals: Vec<PendingRemoval>) {
        for mut r in removals {
            r.routes.retain(|route| {
                !live.contains_key(&route.prefix)
                    && !self
                        .list
                        .iter()
                        .any(|p| p.routes.iter().any(|q| q.prefix == route.prefix))
            });
            if !r.routes.is_empty() {
                self.list.push(r);
            }
        }
    }

    /// Prefixes a configured service announces again (`live`: configured again by a
    /// reload, or a renamed service whose checks have risen) are no longer removals: that
    /// service announces them from now on, and its own withdrawals are guarded.
    pub fn settle(&mut self, live: &RibOut) {
        for r in &mut self.list {
            r.routes.retain(|route| !live.contains_key(&route.prefix));
        }
        self.list.retain(|r| !r.routes.is_empty());
    }

    /// The removal with `key` ([`PendingRemoval::key`]) is done: its routes go.
    pub fn complete(&mut self, key: &str) -> Option<PendingRemoval> {
        let i = self.list.iter().position(|r| r.key() == key)?;
        Some(self.list.remove(i))
    }

    /// Every pending removal.
    pub fn list(&self) -> &[PendingRemoval] {
        &self.list
    }

    /// Adds the routes still pending to `rib` (a configured route with the same prefix
    /// wins; there is none after [`PendingRemovals::settle`]).
    pub fn extend_rib(&self, rib: &mut RibOut) {
        for r in &self.list {
            for route in &r.routes {
                rib.entry(route.prefix)
                    .or_insert_with(|| RouteAttrs::from(&route.attrs));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_attributes_round_trip_through_json() {
        let attrs = RouteAttrs {
            origin: Origin::Egp,
            next_hop: Some("198.18.0.9".parse().unwrap()),
            prepend: 2,
            med: Some(10),
            local_pref: 200,
            communities: vec![Community(0xFDE8_0001), Community::GRACEFUL_SHUTDOWN],
            large_communities: vec![LargeCommunity {
                global: 65000,
                local1: 1,
                local2: 2,
            }],
        };
        let removal = PendingRemoval {
            service: "web".into(),
            routes: vec![SavedRoute {
                prefix: "203.0.113.0/24".parse().unwrap(),
                attrs: (&attrs).into(),
            }],
            since: SystemTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&removal).unwrap();
        let back: PendingRemoval = serde_json::from_str(&json).unwrap();
        assert_eq!(back, removal);
        assert_eq!(RouteAttrs::from(&back.routes[0].attrs), attrs);
        assert_eq!(back.key(), "web 203.0.113.0/24");
    }
}
