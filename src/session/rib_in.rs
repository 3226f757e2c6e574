//! Bookkeeping of what a peer announces to us. anyguard keeps no RIB: it counts prefixes
//! per family (for max-prefix, RFC 4486, and the status page) and keeps the few routes
//! that match our service prefixes (other sites' announcements, for the guard).
//!
//! Counting must survive re-announcements (an UPDATE for a prefix the peer already
//! announced is an implicit withdraw, RFC 4271 §3.1, not a new prefix) without keeping a
//! RIB, in memory that does not grow with the table. Chosen structure:
//! - IPv4 prefixes up to /24 — nearly the whole Internet table — live in one bitmap with a
//!   bit per possible prefix: 2^0 + … + 2^24 bits ≈ 4 MiB, allocated on the first such
//!   prefix. Exact: no error, whatever the churn.
//! - Longer IPv4 prefixes and all IPv6 prefixes set one bit of a fixed 2^24-bit (2 MiB)
//!   hashed bitmap per family (keyed SipHash with a per-session random key, so a peer
//!   cannot aim collisions). Re-announcements and unknown withdrawals are exact no-ops;
//!   the count is the linear-counting estimate n ≈ −m·ln(1 − set/m) (Whang et al. 1990),
//!   which corrects for collisions on average. Error: below 0.1 % (standard error) up to
//!   ≈1M prefixes; two colliding prefixes share a bit, so withdrawing one also "withdraws"
//!   the other (an expected n²/2m such pairs: ≈1.6k for a 230k IPv6 table).
//!
//! A plain "announced minus withdrawn" counter would need no memory but counts every
//! re-announcement again (with a flapping upstream it drifts without bound), and an exact
//! hash set costs 20–30 octets per prefix (≈25 MB for a full table), so both were
//! rejected. Whole-table memory per peer: at most 4 + 2 + 2 MiB, allocated lazily.

use std::collections::{BTreeSet, HashSet};

use ipnet::{IpNet, Ipv4Net};

/// Bits in the IPv4 bitmap: every prefix of length 0..=24.
const V4_BITMAP_BITS: usize = (1 << 25) - 1;
/// Most service routes kept per peer (more-specifics of a service prefix included).
pub const MAX_SERVICE_ROUTES: usize = 4096;

/// Exact set of IPv4 prefixes with a flat bitmap for /0–/24.
#[derive(Debug, Default)]
struct V4Set {
    bitmap: Vec<u64>,
    /// Bits set in `bitmap`.
    count: u64,
    long: HashedSet,
}

impl V4Set {
    fn index(net: &Ipv4Net) -> Option<usize> {
        let len = net.prefix_len();
        if len > 24 {
            return None;
        }
        let addr = u32::from(net.network());
        let bits = if len == 0 {
            0
        } else {
            addr >> (32 - u32::from(len))
        };
        // Prefixes of length l start at bit 2^l - 1.
        let base = (1usize << len) - 1;
        usize::try_from(bits).ok().map(|b| base + b)
    }

    fn insert(&mut self, net: &Ipv4Net) {
        match Self::index(net) {
            Some(i) => {
                if self.bitmap.is_empty() {
                    self.bitmap = vec![0; V4_BITMAP_BITS.div_ceil(64)];
                }
                let (w, b) = (i / 64, i % 64);
                if self.bitmap[w] & (1 << b) == 0 {
                    self.bitmap[w] |= 1 << b;
                    self.count += 1;
                }
            }
            None => self
                .long
                .insert(&(u32::from(net.network()), net.prefix_len())),
        }
    }

    fn remove(&mut self, net: &Ipv4Net) {
        match Self::index(net) {
            Some(i) => {
                let (w, b) = (i / 64, i % 64);
                if let Some(word) = self.bitmap.get_mut(w) {
                    if *word & (1 << b) != 0 {
                        *word &= !(1 << b);
                        self.count -= 1;
                    }
                }
            }
            None => self
                .long
                .remove(&(u32::from(net.network()), net.prefix_len())),
        }
    }

    fn len(&self) -> u64 {
        self.count.saturating_add(self.long.estimate())
    }
}

/// Bits of a hashed bitmap (2 MiB).
const HASHED_BITS: u64 = 1 << 24;

/// Fixed-size hashed bitmap with linear counting.
#[derive(Debug, Default)]
struct HashedSet {
    bits: Vec<u64>,
    set: u64,
    hasher: std::collections::hash_map::RandomState,
}

impl HashedSet {
    fn slot<T: std::hash::Hash>(&self, key: &T) -> (usize, u32) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key) % HASHED_BITS;
        let word = usize::try_from(h / 64).unwrap_or(0);
        let bit = u32::try_from(h % 64).unwrap_or(0);
        (word, bit)
    }

    fn insert<T: std::hash::Hash>(&mut self, key: &T) {
        if self.bits.is_empty() {
            self.bits = vec![0; usize::try_from(HASHED_BITS / 64).unwrap_or(0)];
        }
        let (w, b) = self.slot(key);
        if self.bits[w] & (1 << b) == 0 {
            self.bits[w] |= 1 << b;
            self.set += 1;
        }
    }

    fn remove<T: std::hash::Hash>(&mut self, key: &T) {
        let (w, b) = self.slot(key);
        if let Some(word) = self.bits.get_mut(w) {
            if *word & (1 << b) != 0 {
                *word &= !(1 << b);
                self.set -= 1;
            }
        }
    }

    /// Linear-counting estimate of the distinct keys present.
    fn estimate(&self) -> u64 {
        if self.set == 0 {
            return 0;
        }
        #[allow(clippy::cast_precision_loss)]
        let (m, s) = (HASHED_BITS as f64, self.set as f64);
        let full = (1.0 - s / m).max(1.0 / m);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (-m * full.ln()).round() as u64;
        n.max(self.set)
    }

    fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.set = 0;
    }
}

/// Our service prefixes, grouped by length: whether a received route is equal to or
/// inside one of them costs one set lookup per distinct length (a handful) instead of one
/// comparison per service — with 1,000 services and a full table from a peer that is the
/// difference between ~10 and 1,000 steps per received prefix (issue 13: per-event work
/// must not grow with the number of services).
#[derive(Debug, Default)]
struct ServicePrefixes {
    /// Per family, ascending by length: the networks of that length, left-aligned in 128
    /// bits (an IPv4 network in the top 32), so that both families share one lookup.
    v4: Vec<(u8, HashSet<u128>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl ServicePrefixes {
    fn new(prefixes: &[IpNet]) -> Self {
        let mut sp = ServicePrefixes::default();
        for p in prefixes {
            let by_len = match p {
                IpNet::V4(_) => &mut sp.v4,
                IpNet::V6(_) => &mut sp.v6,
            };
            let len = p.prefix_len();
            let network = aligned(p) & mask(len);
            match by_len.binary_search_by_key(&len, |(l, _)| *l) {
                Ok(i) => {
                    by_len[i].1.insert(network);
                }
                Err(i) => by_len.insert(i, (len, HashSet::from([network]))),
            }
        }
        sp
    }

    /// True when `net` equals or lies inside one of the prefixes.
    fn covers(&self, net: &IpNet) -> bool {
        let by_len = match net {
            IpNet::V4(_) => &self.v4,
            IpNet::V6(_) => &self.v6,
        };
        let addr = aligned(net);
        by_len
            .iter()
            .take_while(|(len, _)| *len <= net.prefix_len())
            .any(|(len, set)| set.contains(&(addr & mask(*len))))
    }
}

/// `net`'s network left-aligned in 128 bits (an IPv4 network in the top 32).
fn aligned(net: &IpNet) -> u128 {
    match net {
        IpNet::V4(n) => u128::from(u32::from(n.network())) << 96,
        IpNet::V6(n) => u128::from(n.network()),
    }
}

/// The left-aligned mask of a prefix length (0 → nothing).
fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Received-route bookkeeping of one session.
#[derive(Debug, Default)]
pub struct RibIn {
    v4: V4Set,
    v6: HashedSet,
    services: ServicePrefixes,
    service_routes: BTreeSet<IpNet>,
    service_routes_changed: bool,
}

impl RibIn {
    /// Empty bookkeeping that watches routes equal to or inside `services`.
    pub fn new(services: Vec<IpNet>) -> Self {
        RibIn {
            services: ServicePrefixes::new(&services),
            ..RibIn::default()
        }
    }

    /// The peer announced `net` (new or replacing an earlier announcement).
    pub fn announce(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.v4.insert(&n),
            IpNet::V6(n) => self.v6.insert(&(u128::from(n.network()), n.prefix_len())),
        }
        if self.services.covers(&net)
            && self.service_routes.len() < MAX_SERVICE_ROUTES
            && self.service_routes.insert(net)
        {
            self.service_routes_changed = true;
        }
    }

    /// The peer withdrew `net` (unknown prefixes are ignored).
    pub fn withdraw(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.v4.remove(&n),
            IpNet::V6(n) => self.v6.remove(&(u128::from(n.network()), n.prefix_len())),
        }
        if self.service_routes.remove(&net) {
            self.service_routes_changed = true;
        }
    }

    /// IPv4 prefixes currently announced.
    pub fn ipv4(&self) -> u64 {
        self.v4.len()
    }

    /// IPv6 prefixes currently announced.
    pub fn ipv6(&self) -> u64 {
        self.v6.estimate()
    }

    /// Both families.
    pub fn total(&self) -> u64 {
        self.ipv4().saturating_add(self.ipv6())
    }

    /// Received routes matching our service prefixes.
    pub fn service_routes(&self) -> &BTreeSet<IpNet> {
        &self.service_routes
    }

    /// True once after the service routes changed.
    pub fn take_service_routes_changed(&mut self) -> bool {
        std::mem::take(&mut self.service_routes_changed)
    }

    /// Forgets everything (session reset), keeping the allocation of the bitmap.
    pub fn clear(&mut self) {
        self.v4.bitmap.iter_mut().for_each(|w| *w = 0);
        self.v4.count = 0;
        self.v4.long.clear();
        self.v6.clear();
        if !self.service_routes.is_empty() {
            self.service_routes.clear();
            self.service_routes_changed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv6Net;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn reannouncing_a_prefix_does_not_count_it_twice() {
        let mut r = RibIn::new(vec![]);
        r.announce(n("203.0.113.0/24"));
        r.announce(n("203.0.113.0/24"));
        r.announce(n("2001:db8::/32"));
        r.announce(n("2001:db8::/32"));
        assert_eq!((r.ipv4(), r.ipv6()), (1, 1));
        r.withdraw(n("203.0.113.0/24"));
        r.withdraw(n("203.0.113.0/24"));
        r.withdraw(n("198.51.100.0/24"));
        assert_eq!((r.ipv4(), r.ipv6()), (0, 1));
    }

    #[test]
    fn every_prefix_length_has_its_own_bit() {
        let mut r = RibIn::new(vec![]);
        for len in 0..=32u8 {
            r.announce(IpNet::V4(
                Ipv4Net::new(Ipv4Addr::new(198, 51, 100, 0), len)
                    .unwrap()
                    .trunc(),
            ));
        }
        r.announce(n("0.0.0.0/0"));
        r.announce(n("255.255.255.0/24"));
        assert_eq!(r.ipv4(), 34);
        for len in 0..=128u8 {
            r.announce(IpNet::V6(
                Ipv6Net::new("2001:db8::1".parse().unwrap(), len)
                    .unwrap()
                    .trunc(),
            ));
        }
        assert_eq!(r.ipv6(), 129);
        r.clear();
        assert_eq!(r.total(), 0);
    }

    #[test]
    fn service_routes_are_kept_and_reported_once() {
        let mut r = RibIn::new(vec![n("203.0.113.0/24")]);
        r.announce(n("198.51.100.0/24"));
        assert!(!r.take_service_routes_changed());
        r.announce(n("203.0.113.0/24"));
        r.announce(n("203.0.113.128/25"));
        assert!(r.take_service_routes_changed());
        assert!(!r.take_service_routes_changed());
        assert_eq!(r.service_routes().len(), 2);
        r.withdraw(n("203.0.113.128/25"));
        assert!(r.take_service_routes_changed());
    }

    #[test]
    fn a_route_counts_as_a_service_route_exactly_when_a_service_prefix_covers_it() {
        let services = [
            "203.0.113.0/24",
            "198.51.100.128/25",
            "198.51.100.7/32",
            "2001:db8:1::/48",
            "2001:db8:2:3::/64",
            // Not truncated in the config's text: matched as its network.
            "2001:db8:ff::1/48",
        ];
        let s = ServicePrefixes::new(&services.map(n));
        for (route, covered) in [
            ("203.0.113.0/24", true),
            ("203.0.113.0/25", true),
            ("203.0.113.255/32", true),
            ("203.0.112.0/23", false),
            ("203.0.114.0/24", false),
            ("198.51.100.128/25", true),
            ("198.51.100.192/26", true),
            ("198.51.100.0/25", false),
            ("198.51.100.0/24", false),
            ("198.51.100.7/32", true),
            ("198.51.100.6/32", false),
            ("0.0.0.0/0", false),
            ("2001:db8:1::/48", true),
            ("2001:db8:1:ffff::/64", true),
            ("2001:db8::/32", false),
            ("2001:db8:2:3::/64", true),
            ("2001:db8:2:3::1/128", true),
            ("2001:db8:2:4::/64", false),
            ("2001:db8:2::/48", false),
            ("2001:db8:ff:1::/64", true),
            ("::/0", false),
        ] {
            assert_eq!(s.covers(&n(route)), covered, "{route}");
            // The linear rule this replaces, as the reference.
            let linear = services.iter().any(|p| n(p).trunc().contains(&n(route)));
            assert_eq!(linear, covered, "{route} (reference)");
        }
        assert!(ServicePrefixes::new(&[n("0.0.0.0/0")]).covers(&n("198.18.0.1/32")));
        assert!(!ServicePrefixes::new(&[n("0.0.0.0/0")]).covers(&n("2001:db8::/32")));
        assert!(ServicePrefixes::new(&[n("::/0")]).covers(&n("2001:db8::/32")));
        assert!(!ServicePrefixes::new(&[]).covers(&n("203.0.113.0/24")));
    }

    #[test]
    fn hashed_counts_stay_close_for_many_prefixes() {
        let mut r = RibIn::new(vec![]);
        let base = u128::from("2001:db8::".parse::<Ipv6Addr>().unwrap());
        for i in 0..200_000u128 {
            let net = Ipv6Net::new(Ipv6Addr::from(base | (i << 76)), 52).unwrap();
            r.announce(IpNet::V6(net));
        }
        let est = r.ipv6();
        assert!(est.abs_diff(200_000) < 1_000, "{est}");
        for i in 0..10u32 {
            let net =
                Ipv4Net::new(Ipv4Addr::new(198, 18, 0, u8::try_from(i).unwrap()), 32).unwrap();
            r.announce(IpNet::V4(net));
            r.announce(IpNet::V4(net));
        }
        assert_eq!(r.ipv4(), 10);
    }
}
