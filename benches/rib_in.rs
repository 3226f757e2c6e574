//! Received-route bookkeeping at 1 and at 1,000 services (issue 13: per-event work must not
//! grow with the number of services). Every route a peer announces is counted
//! (`session::rib_in::RibIn`) and checked against our service prefixes (a peer's route
//! inside one of them is another site's announcement, kept for the guard). The check used
//! to compare each route with every service prefix; it now looks the route up once per
//! distinct service-prefix length.
//!
//! Feed: the lab ingest table (`proto/examples/ingest_feeder.rs`): every IPv4 prefix /15–/32
//! inside 198.18.0.0/15 (262,143) and 200,000 IPv6 prefixes inside 2001:db8::/32 (its
//! 65,536 /48s, then /56s); none is inside a service prefix, so every route pays the whole
//! check, as a full table from a router would. Services: 1 or 1,000 prefixes (/32s in
//! 203.0.113.0/24 and 198.51.100.0/24, /48s in 2001:db8:ffff::/32 … as the benchmarks' configs
//! use). Reference in the same run: the same feed through a copy of the old linear rule
//! (`any(|s| s.contains(route))`) with the same prefixes.
//!
//! Run: `cargo bench --bench rib_in` (`RIB_IN_ROUNDS`, default 5, at most 50). Prints ns per
//! route (best of the rounds) and the ratios. Figures only: nothing here asserts on time.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyguard::session::rib_in::RibIn;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

fn feed() -> Vec<IpNet> {
    let mut routes = Vec::with_capacity(462_143);
    let base4 = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    for len in 15..=32u8 {
        for i in 0..(1u32 << (len - 15)) {
            let addr = base4 | (i << (32 - u32::from(len)));
            routes.push(IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(addr), len).expect("len"),
            ));
        }
    }
    let base6 = u128::from("2001:db8::".parse::<Ipv6Addr>().expect("v6"));
    for i in 0..200_000u128 {
        let (len, net) = if i < 65_536 {
            (48, base6 | (i << 80))
        } else {
            (56, base6 | ((i - 65_536) << 72))
        };
        routes.push(IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(net), len).expect("len"),
        ));
    }
    routes
}

/// `n` service prefixes of the kinds the benchmarks' configs use, none covering the feed.
fn services(n: usize) -> Vec<IpNet> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("203.0.113.{}/32", (i / 4) % 256),
            1 => format!("198.51.100.{}/32", (i / 4) % 256),
            _ => format!("2001:db8:ffff:{:x}::/64", i),
        })
        .map(|s| s.parse().expect("prefix"))
        .collect()
}

/// Best time of `rounds` passes of `f` over the feed.
fn best(rounds: usize, mut f: impl FnMut() -> usize) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn per_route(d: Duration, routes: usize) -> f64 {
    d.as_secs_f64() * 1e9 / routes as f64
}

fn main() {
    let rounds = std::env::var("RIB_IN_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(5)
        .clamp(1, 50);
    let routes = feed();
    println!(
        "rib_in: {} routes per pass, best of {rounds} passes",
        routes.len()
    );
    println!("| services | RibIn::announce (ns/route) | old linear check alone (ns/route) |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for n in [1usize, 10, 100, 1_000] {
        let prefixes = services(n);
        let rib = best(rounds, || {
            let mut r = RibIn::new(prefixes.clone());
            for net in &routes {
                r.announce(*net);
            }
            usize::try_from(r.total()).unwrap_or(0) + r.service_routes().len()
        });
        let linear = best(rounds, || {
            routes
                .iter()
                .filter(|net| prefixes.iter().any(|s| s.contains(*net)))
                .count()
        });
        let (a, b) = (
            per_route(rib, routes.len()),
            per_route(linear, routes.len()),
        );
        println!("| {n} | {a:.1} | {b:.1} |");
        rows.push((n, a, b));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "1,000 services against 1: RibIn::announce {:.2}×; the old linear check alone {:.1}×",
            last.1 / first.1,
            last.2 / first.2
        );
    }
}
