//! The next hop for `next_hop = "self"` routes of the *other* address family than the
//! session's transport: IPv6 routes over an IPv4 session (and the reverse).
//!
//! RFC 4760 §3 puts IPv6 routes in MP_REACH_NLRI with an IPv6 next hop, whatever the
//! session runs over; the session's own local address is of the wrong family. Like BIRD
//! and FRR, we take an address of the other family from the interface that carries the
//! session's local address — on a router link that is the address the router can reach
//! us on. An explicit `next_hop_v6` / `next_hop_v4` always wins. When the interface has
//! none, the routes of that family are not sent to the peer and the driver logs why.
//!
//! For an IPv6 session with a directly connected peer, [`link_local`] finds our link-local
//! address on that link, which RFC 2545 §3 sends besides the global next hop.
//!
//! [`pick`] and [`link_local`] are the pure choices; [`interface_addresses`] reads the
//! kernel's list.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use tracing::{info, warn};

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    pub(crate) interface: String,
    pub(crate) address: IpAddr,
    /// The on-link prefix length (from the netmask).
    pub(crate) prefix_len: u8,
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Our link-local address on the interface that holds `local`, if `peer` is directly
/// connected over it (RFC 2545 §3: "the link-local address … shall be included in the Next
/// Hop field" when the peer "shares a common subnet"): `peer` lies in the on-link prefix of
/// one of that interface's global addresses, or is link-local itself. The lowest one, for
/// a deterministic choice.
pub(crate) fn link_local(
    addresses: &[InterfaceAddress],
    local: Ipv6Addr,
    peer: Ipv6Addr,
) -> Option<Ipv6Addr> {
    let interface = &addresses
        .iter()
        .find(|a| a.address == IpAddr::V6(local))?
        .interface;
    let on_link = is_link_local(&peer)
        || addresses.iter().any(|a| {
            &a.interface == interface
                && !matches!(a.address, IpAddr::V6(v6) if is_link_local(&v6))
                && IpNet::new(a.address, a.prefix_len)
                    .is_ok_and(|net| net.trunc().contains(&IpAddr::V6(peer)))
        });
    if !on_link {
        return None;
    }
    addresses
        .iter()
        .filter(|a| &a.interface == interface)
        .filter_map(|a| match a.address {
            IpAddr::V6(v6) if is_link_local(&v6) => Some(v6),
            _ => None,
        })
        .min()
}

/// An address of the other family than `local`, on the interface(s) that hold `local`:
/// usable as a next hop (no loopback, link-local, unspecified or multicast address), the
/// lowest one for a deterministic choice.
pub(crate) fn pick(addresses: &[InterfaceAddress], local: IpAddr) -> Option<IpAddr> {
    let interfaces: Vec<&str> = addresses
        .iter()
        .filter(|a| a.address == local)
        .map(|a| a.interface.as_str())
        .collect();
    addresses
        .iter()
        .filter(|a| interfaces.contains(&a.interface.as_str()))
        .map(|a| a.address)
        .filter(|a| a.is_ipv4() != local.is_ipv4() && usable(a))
        .min()
}

fn usable(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_unspecified() || v4.is_link_local() || v4.is_multicast())
        }
        // fe80::/10 is link-local (RFC 4291 §2.5.6): not a next hop for another router's
        // table on its own (RFC 2545 §3 sends it only *besides* a global address).
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || is_link_local(v6))
        }
    }
}

/// The host's interface addresses (`getifaddrs`); empty if they cannot be read.
pub(crate) fn interface_addresses() -> Vec<InterfaceAddress> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|ifa| {
        let sa = ifa.address?;
        let (address, full) = if let Some(v4) = sa.as_sockaddr_in() {
            (IpAddr::V4(v4.ip()), 32)
        } else {
            (IpAddr::V6(sa.as_sockaddr_in6()?.ip()), 128)
        };
        // The netmask's leading ones; a host route without one.
        let prefix_len = ifa
            .netmask
            .and_then(|m| {
                m.as_sockaddr_in()
                    .map(|v4| u32::from(v4.ip()).leading_ones())
                    .or_else(|| {
                        m.as_sockaddr_in6()
                            .map(|v6| u128::from(v6.ip()).leading_ones())
                    })
            })
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(full);
        Some(InterfaceAddress {
            interface: ifa.interface_name,
            address,
            prefix_len,
        })
    })
    .collect()
}

/// A next hop of the other family than the session's `local` address, from the interface
/// that holds it; logs the choice, or why the other family's routes will not be sent.
pub(crate) fn for_session(local: IpAddr) -> Option<IpAddr> {
    let found = pick(&interface_addresses(), local);
    let family = if local.is_ipv4() { "IPv6" } else { "IPv4" };
    match found {
        Some(a) => info!(next_hop = %a, "{family} next hop taken from the session's interface"),
        None => warn!(
            %local,
            "no {family} address on the session's interface: {family} routes are not sent to \
             this peer (set next_hop_{})",
            if local.is_ipv4() { "v6" } else { "v4" }
        ),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(interface: &str, address: &str) -> InterfaceAddress {
        let address: IpAddr = address.parse().unwrap_or_else(|e| panic!("{address}: {e}"));
        InterfaceAddress {
            interface: interface.into(),
            address,
            prefix_len: if address.is_ipv4() { 24 } else { 64 },
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn host() -> Vec<InterfaceAddress> {
        vec![
            a("lo", "127.0.0.1"),
            a("lo", "::1"),
            a("eth0", "198.18.1.2"),
            a("eth0", "fe80::1"),
            a("eth0", "2001:db8:1::2"),
            a("eth0", "2001:db8:1::9"),
            a("eth1", "198.18.2.2"),
            a("eth1", "2001:db8:2::2"),
        ]
    }

    #[test]
    fn an_ipv4_session_gets_the_lowest_global_ipv6_address_of_its_interface() {
        assert_eq!(pick(&host(), ip("198.18.1.2")), Some(ip("2001:db8:1::2")));
        assert_eq!(pick(&host(), ip("198.18.2.2")), Some(ip("2001:db8:2::2")));
    }

    #[test]
    fn an_ipv6_session_gets_an_ipv4_address_of_its_interface() {
        assert_eq!(pick(&host(), ip("2001:db8:1::9")), Some(ip("198.18.1.2")));
    }

    #[test]
    fn loopback_and_link_local_addresses_are_never_next_hops() {
        assert_eq!(pick(&host(), ip("127.0.0.1")), None);
        assert_eq!(
            pick(
                &[a("eth0", "198.18.1.2"), a("eth0", "fe80::1")],
                ip("198.18.1.2")
            ),
            None
        );
    }

    #[test]
    fn an_address_on_no_interface_gives_nothing() {
        assert_eq!(pick(&host(), ip("198.18.9.9")), None);
    }

    #[test]
    fn the_kernel_list_contains_the_loopback_address() {
        // Every Linux network namespace has lo with 127.0.0.1 (it may be down, but it is
        // listed).
        let list = interface_addresses();
        assert!(
            list.iter().any(|x| x.address == ip("127.0.0.1")),
            "{list:?}"
        );
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_directly_connected_ipv6_peer_gets_our_link_local_address_of_that_link() {
        // RFC 2545 §3. eth0 has fe80::1 and 2001:db8:1::2/64; the router is 2001:db8:1::1.
        let host = host();
        assert_eq!(
            link_local(&host, v6("2001:db8:1::2"), v6("2001:db8:1::1")),
            Some(v6("fe80::1"))
        );
        // A peer on its link-local address is on the link too.
        assert_eq!(
            link_local(&host, v6("2001:db8:1::2"), v6("fe80::99")),
            Some(v6("fe80::1"))
        );
        // A peer several hops away (not in the on-link prefix): no link-local next hop.
        assert_eq!(
            link_local(&host, v6("2001:db8:1::2"), v6("2001:db8:9::1")),
            None
        );
        // An interface without a link-local address (eth1): none to send.
        assert_eq!(
            link_local(&host, v6("2001:db8:2::2"), v6("2001:db8:2::1")),
            None
        );
        // Loopback sessions are not on a link.
        assert_eq!(link_local(&host, v6("::1"), v6("::1")), None);
    }
}
