//! Decoding a full-table-like stream: anyguard's zero-allocation `UpdateView` walk and owned
//! decoder against `bgpkit-parser` and `zettabgp`, on the same bytes in the same run.
//!
//! The stream: 1,000,000 IPv4 /24 prefixes (from 240.0.0.0/4, reserved space, so no real
//! network appears) in UPDATEs of two shapes (60 % in UPDATEs of 500 prefixes sharing one
//! attribute set, 40 % in UPDATEs of 1-10 prefixes with varied AS paths, MEDs and
//! communities) plus 60,000 IPv6 /48 prefixes from 2001:db8::/32 in MP_REACH_NLRI UPDATEs
//! of 1-50 prefixes. Built with anyguard's encoder; frame boundaries are computed once,
//! outside the timed loops, and shared by every decoder.
//!
//! Run: `cargo bench -p anyguard-proto --bench decode`. Prints prefixes/second per decoder
//! and a summary line with the ratio of the zero-allocation walk to the faster competitor.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyguard_proto::{
    frame_len, Afi, DecodeContext, EncodeContext, Message, MpReach, PathAttribute, Safi,
    UpdateMessage, UpdateView,
};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const IPV4_PREFIXES: u32 = 1_000_000;
const IPV6_PREFIXES: u32 = 60_000;

mod common;
use common::{attrs, Lcg};

fn v4(i: u32) -> Ipv4Net {
    // 240.0.0.0/4 holds 2^20 /24s.
    Ipv4Net::new(Ipv4Addr::from(0xF000_0000 | (i << 8)), 24).expect("/24")
}

fn v6(i: u32) -> IpNet {
    let addr = (0x2001_0db8u128 << 96) | (u128::from(i) << 80);
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), 48).expect("/48"))
}

/// Builds the stream and its frame boundaries.
fn build_stream() -> (Vec<u8>, Vec<(usize, usize)>, usize) {
    let mut rng = Lcg(0x5eed);
    let ectx = EncodeContext {
        four_octet_as: true,
        extended_message: false,
    };
    let mut out = BytesMut::new();
    let mut updates = Vec::new();
    let mut next = 0u32;
    let big_share = IPV4_PREFIXES / 10 * 6;
    while next < big_share {
        let n = 500.min(big_share - next);
        updates.push(UpdateMessage {
            withdrawn: vec![],
            attributes: attrs(&mut rng, true),
            nlri: (next..next + n).map(v4).collect(),
        });
        next += n;
    }
    while next < IPV4_PREFIXES {
        let n = (1 + rng.below(10)).min(IPV4_PREFIXES - next);
        updates.push(UpdateMessage {
            withdrawn: vec![],
            attributes: attrs(&mut rng, false),
            nlri: (next..next + n).map(v4).collect(),
        });
        next += n;
    }
    let mut n6 = 0u32;
    let mut six = Vec::new();
    while n6 < IPV6_PREFIXES {
        let n = (1 + rng.below(50)).min(IPV6_PREFIXES - n6);
        let mut a = attrs(&mut rng, false);
        a.retain(|x| !matches!(x, PathAttribute::NextHop(_)));
        a.insert(
            0,
            PathAttribute::MpReach(MpReach {
                afi: Afi::Ipv6,
                safi: Safi::Unicast,
                next_hop: IpAddr::V6("2001:db8::1".parse().expect("v6")),
                link_local_next_hop: Some("fe80::1".parse().expect("v6")),
                nlri: (n6..n6 + n).map(v6).collect(),
            }),
        );
        six.push(UpdateMessage {
            withdrawn: vec![],
            attributes: a,
            nlri: vec![],
        });
        n6 += n;
    }
    // Interleave: one IPv6 UPDATE every so often, as a real table dump would mix them.
    let every = (updates.len() / six.len().max(1)).max(1);
    let mut six = six.into_iter();
    for (i, u) in updates.into_iter().enumerate() {
        Message::Update(u).encode(&ectx, &mut out).expect("encode");
        if i % every == 0 {
            if let Some(s) = six.next() {
                Message::Update(s).encode(&ectx, &mut out).expect("encode");
            }
        }
    }
    for s in six {
        Message::Update(s).encode(&ectx, &mut out).expect("encode");
    }
    let stream = out.to_vec();
    let ctx = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = frame_len(&stream[at..], &ctx)
            .expect("frame")
            .expect("whole");
        frames.push((at, at + n));
        at += n;
    }
    (stream, frames, (IPV4_PREFIXES + IPV6_PREFIXES) as usize)
}

fn ctx() -> DecodeContext {
    DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    }
}

/// The zero-allocation walk: validates every UPDATE (RFC 7606) and visits every prefix,
/// the AS path's origin and the next hop.
fn anyguard_view(stream: &[u8], frames: &[(usize, usize)]) -> usize {
    let ctx = ctx();
    let mut count = 0usize;
    let mut acc = 0u64;
    for &(s, e) in frames {
        let v = UpdateView::parse(&stream[s..e], &ctx).expect("valid");
        for p in v.nlri() {
            acc = acc.wrapping_add(u64::from(p.prefix_len()));
            count += 1;
        }
        if let Some(m) = v.mp_reach() {
            for p in m.nlri() {
                acc = acc.wrapping_add(u64::from(p.prefix_len()));
                count += 1;
            }
        }
        acc = acc.wrapping_add(u64::from(
            v.as_path().and_then(|p| p.origin_asn()).unwrap_or(0),
        ));
    }
    black_box(acc);
    count
}

/// The owned decoder (allocates the prefix vectors and attributes).
fn anyguard_owned(stream: &[u8], frames: &[(usize, usize)]) -> usize {
    let ctx = ctx();
    let mut count = 0usize;
    for &(s, e) in frames {
        if let Message::Update(u) = Message::decode(&stream[s..e], &ctx).expect("valid") {
            count += u.nlri.len();
            for a in &u.attributes {
                if let PathAttribute::MpReach(m) = a {
                    count += m.nlri.len();
                }
            }
            black_box(&u);
        }
    }
    count
}

fn bgpkit(stream: &Bytes, frames: &[(usize, usize)]) -> usize {
    use bgpkit_parser::models::{AsnLength, BgpMessage};
    use bgpkit_parser::parser::bgp::messages::parse_bgp_message;
    let mut count = 0usize;
    for &(s, e) in frames {
        let mut b = stream.slice(s..e);
        if let Ok(BgpMessage::Update(u)) = parse_bgp_message(&mut b, false, &AsnLength::Bits32) {
            count += u.announced_prefixes.len();
            if let Some(n) = u.attributes.get_reachable_nlri() {
                count += n.prefixes.len();
            }
            black_box(&u);
        }
    }
    count
}

fn zetta(stream: &[u8], frames: &[(usize, usize)]) -> usize {
    use zettabgp::prelude::*;
    let mut params = BgpSessionParams::new(
        65000,
        90,
        BgpTransportMode::IPv4,
        Ipv4Addr::new(198, 18, 0, 254),
        vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::SafiIPv6u,
            BgpCapability::CapASN32(65000),
        ],
    );
    params.has_as32bit = true;
    params.fuzzy_pathid = false;
    let mut count = 0usize;
    for &(s, e) in frames {
        let Ok((_, len)) = params.decode_message_head(&stream[s..e]) else {
            continue;
        };
        let mut u = BgpUpdateMessage::new();
        if u.decode_from(&params, &stream[s + 19..s + 19 + len])
            .is_ok()
        {
            count += u.updates.len();
            for a in &u.attrs {
                if let BgpAttrItem::MPUpdates(m) = a {
                    count += m.addrs.len();
                }
            }
            black_box(&u);
        }
    }
    count
}

/// Median seconds of `runs` timed runs.
fn time_it(runs: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn bench(c: &mut Criterion) {
    let (stream, frames, total) = build_stream();
    let bytes = Bytes::from(stream.clone());
    println!(
        "stream: {} UPDATEs, {:.1} MB, {} prefixes ({} IPv4 /24, {} IPv6 /48)",
        frames.len(),
        stream.len() as f64 / 1e6,
        total,
        IPV4_PREFIXES,
        IPV6_PREFIXES
    );
    // Every decoder must see every prefix, or the comparison means nothing.
    let counts = [
        (
            "anyguard UpdateView (zero-alloc)",
            anyguard_view(&stream, &frames),
        ),
        (
            "anyguard Message::decode (owned)",
            anyguard_owned(&stream, &frames),
        ),
        ("bgpkit-parser 0.23", bgpkit(&bytes, &frames)),
        ("zettabgp 0.6", zetta(&stream, &frames)),
    ];
    for (name, n) in counts {
        assert_eq!(n, total, "{name} saw {n} prefixes, expected {total}");
    }

    let mut g = c.benchmark_group("full_table");
    g.throughput(Throughput::Elements(total as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("anyguard_view", |b| {
        b.iter(|| anyguard_view(&stream, &frames))
    });
    g.bench_function("anyguard_owned", |b| {
        b.iter(|| anyguard_owned(&stream, &frames))
    });
    g.bench_function("bgpkit_parser", |b| b.iter(|| bgpkit(&bytes, &frames)));
    g.bench_function("zettabgp", |b| b.iter(|| zetta(&stream, &frames)));
    g.finish();

    // Summary from a separate median-of-7 timing, so the ratio is printed in one place.
    let runs = 7;
    let view = time_it(runs, || anyguard_view(&stream, &frames));
    let owned = time_it(runs, || anyguard_owned(&stream, &frames));
    let kit = time_it(runs, || bgpkit(&bytes, &frames));
    let zet = time_it(runs, || zetta(&stream, &frames));
    let rate = |s: f64| total as f64 / s;
    println!();
    println!("prefixes/second (median of {runs} full passes):");
    println!("  anyguard UpdateView (zero-alloc) {:>14.0}", rate(view));
    println!("  anyguard Message::decode (owned) {:>14.0}", rate(owned));
    println!("  bgpkit-parser 0.23               {:>14.0}", rate(kit));
    println!("  zettabgp 0.6                     {:>14.0}", rate(zet));
    let (best_name, best) = if kit < zet {
        ("bgpkit-parser", kit)
    } else {
        ("zettabgp", zet)
    };
    println!(
        "SUMMARY: zero-alloc walk {:.0} prefixes/s = {:.2}x the faster competitor ({best_name}, {:.0} prefixes/s); target >= 2x",
        rate(view),
        best / view,
        rate(best)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
