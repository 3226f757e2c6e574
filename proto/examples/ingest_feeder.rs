//! The full-table feeder and the UPDATE sink of `lab/bench/ingest` (issue 15 item 2).
//!
//! A lab tool, not part of the codec: it lives beside the codec because it needs nothing but
//! the encoder and std's blocking sockets (no daemon code, no async runtime). Both modes
//! listen on one address, accept one BGP connection, do a real OPEN/KEEPALIVE exchange
//! (RFC 4271 §8: they wait for the peer's OPEN and KEEPALIVE before anything else) and then:
//!
//! - `feed`: sends a whole table, encoded in memory before the session is even accepted
//!   (the feeder must never be the bottleneck), with large writes. Prints one JSON line as
//!   the first UPDATE byte goes out (`"event":"sending"`, wall-clock time) and one when the
//!   last write returned; then keeps the session up (KEEPALIVE every 3 s) until `--linger`.
//! - `sink`: prints one JSON line per UPDATE received, with its arrival time (wall clock,
//!   the clock the lab's health target logs with) and its withdrawn/announced IPv4 counts.
//!
//! Tables (lab address rule: only 198.18.0.0/15 and 2001:db8::/32):
//! - `v4`: every prefix /15 … /32 inside 198.18.0.0/15, 262,143 distinct prefixes;
//! - `v6`: 200,000 distinct prefixes inside 2001:db8::/32: its 65,536 /48s, then the first
//!   134,464 of its /56s (`v6_prefix`).
//!
//! Shapes: `packed` (500 prefixes per UPDATE, one attribute set per UPDATE) and `varied`
//! (1–10 prefixes per UPDATE, each with its own AS path, MED and communities).
//! `--passes 2` announces the same prefixes again with new attributes (implicit withdraw
//! and replace, RFC 4271 §3.1): as many announcements as prefixes × passes.
//!
//! ```text
//! ingest_feeder feed --listen 198.18.150.2:179 --asn 64500 --table v4 --shape varied [--passes 2] [--linger 600]
//! ingest_feeder sink --listen 198.18.151.2:179 --asn 64497 [--linger 600]
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyguard_proto::{
    frame_len, Afi, Capability, DecodeContext, EncodeContext, Message, MpReach, OpenMessage,
    PathAttribute, Safi, UpdateMessage, UpdateView,
};
use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{attrs, Lcg};

const V6_PREFIXES: u32 = 200_000;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);
const HOLD_TIME: u16 = 90;

#[derive(Debug)]
struct Args {
    mode: String,
    listen: SocketAddr,
    asn: u32,
    table: String,
    shape: String,
    passes: u32,
    linger: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: ingest_feeder feed|sink --listen ADDR:PORT ...")?;
    if mode != "feed" && mode != "sink" {
        return Err(format!("unknown mode {mode:?}: feed or sink"));
    }
    let mut a = Args {
        mode,
        listen: SocketAddr::from(([127, 0, 0, 1], 1179)),
        asn: 64500,
        table: "v4".into(),
        shape: "varied".into(),
        passes: 1,
        linger: Duration::from_secs(600),
    };
    while let Some(key) = it.next() {
        let val = it.next().ok_or_else(|| format!("{key}: value missing"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{key} {val}: {e}");
        match key.as_str() {
            "--listen" => a.listen = val.parse().map_err(|e| bad(&e))?,
            "--asn" => a.asn = val.parse().map_err(|e| bad(&e))?,
            "--table" if val == "v4" || val == "v6" => a.table = val,
            "--shape" if val == "packed" || val == "varied" => a.shape = val,
            "--passes" => a.passes = val.parse().map_err(|e| bad(&e))?,
            "--linger" => a.linger = Duration::from_secs(val.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option or value: {key} {val}")),
        }
    }
    if !(1..=32).contains(&a.passes) || a.asn == 0 || a.asn > u32::from(u16::MAX) {
        return Err("--passes 1..32, --asn 1..65535".into());
    }
    Ok(a)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The i-th IPv4 prefix of the table: i in 0..2^18-1 walks /15 (1), /16 (2), … /32 (2^17)
/// inside 198.18.0.0/15.
fn v4_prefix(i: u32) -> Ipv4Net {
    // Prefixes of length 15 + k start at index 2^k - 1.
    let k = 31 - (i + 1).leading_zeros();
    let off = i + 1 - (1 << k);
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let len = 15 + k as u8;
    let addr = base | off.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap_or_default()
}

/// The i-th IPv6 prefix: the 65,536 /48s of 2001:db8::/32, then /56s inside the /48s
/// (distinct from each other; a /56 inside an announced /48 is still its own prefix).
fn v6_prefix(i: u32) -> IpNet {
    let base = 0x2001_0db8u128 << 96;
    let (addr, len) = if i < 1 << 16 {
        (base | (u128::from(i) << 80), 48)
    } else {
        let j = i - (1 << 16);
        (base | (u128::from(j) << 72), 56)
    };
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap_or_default())
}

/// The whole stream of UPDATEs, encoded: (bytes, UPDATE count, prefix announcements).
fn build(a: &Args, next_hop: IpAddr) -> Result<(Vec<u8>, usize, usize), String> {
    let v6 = a.table == "v6";
    let total = if v6 { V6_PREFIXES } else { (1 << 18) - 1 };
    let ectx = EncodeContext {
        four_octet_as: true,
        extended_message: false,
    };
    let mut out = BytesMut::with_capacity(32 << 20);
    let (mut updates, mut announced) = (0, 0);
    for pass in 0..a.passes {
        let mut rng = Lcg(0x5eed + u64::from(pass));
        let mut next = 0u32;
        while next < total {
            let n = if a.shape == "packed" {
                500
            } else {
                1 + rng.below(10)
            }
            .min(total - next);
            let mut at = attrs(&mut rng, a.shape == "packed");
            // eBGP: the path starts with our AS (receivers enforce it) and the next hop is
            // our address on the link (receivers check it is on a connected network).
            for x in &mut at {
                if let PathAttribute::AsPath(p) = x {
                    if let Some(seg) = p.segments.first_mut() {
                        seg.asns.insert(0, a.asn);
                    }
                }
            }
            at.retain(|x| !matches!(x, PathAttribute::NextHop(_)));
            let update = match next_hop {
                IpAddr::V4(nh) => {
                    at.push(PathAttribute::NextHop(nh));
                    UpdateMessage {
                        withdrawn: vec![],
                        attributes: at,
                        nlri: (next..next + n).map(v4_prefix).collect(),
                    }
                }
                IpAddr::V6(_) => {
                    at.insert(
                        0,
                        PathAttribute::MpReach(MpReach {
                            afi: Afi::Ipv6,
                            safi: Safi::Unicast,
                            next_hop,
                            link_local_next_hop: None,
                            nlri: (next..next + n).map(v6_prefix).collect(),
                        }),
                    );
                    UpdateMessage {
                        withdrawn: vec![],
                        attributes: at,
                        nlri: vec![],
                    }
                }
            };
            Message::Update(update)
                .encode(&ectx, &mut out)
                .map_err(|e| format!("encode: {e}"))?;
            updates += 1;
            announced += n as usize;
            next += n;
        }
    }
    Ok((out.to_vec(), updates, announced))
}

/// Reads one whole BGP message: the header's length field says how much more to read (at
/// most 4,096 octets, the size we negotiate), then the codec checks the frame.
fn read_frame(s: &mut TcpStream, ctx: &DecodeContext) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 19];
    s.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    let n = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(19..=4096).contains(&n) {
        return Err(format!("bad message length {n}"));
    }
    buf.resize(n, 0);
    s.read_exact(&mut buf[19..])
        .map_err(|e| format!("read: {e}"))?;
    match frame_len(&buf, ctx) {
        Ok(Some(len)) if len == n => Ok(buf),
        Ok(_) => Err("frame length disagrees with the header".into()),
        Err(e) => Err(format!("bad header: {e}")),
    }
}

/// Accepts one connection and brings the session to Established (RFC 4271 §8.2.2: OPEN
/// received → OPEN and KEEPALIVE sent → KEEPALIVE received).
fn establish(a: &Args, afi: Afi) -> Result<TcpStream, String> {
    let listener = TcpListener::bind(a.listen).map_err(|e| format!("bind {}: {e}", a.listen))?;
    let (mut s, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("timeout: {e}"))?;
    let ctx = DecodeContext::default();
    let open = match Message::decode(&read_frame(&mut s, &ctx)?, &ctx) {
        Ok(Message::Open(o)) => o,
        other => return Err(format!("{peer}: expected OPEN, got {other:?}")),
    };
    if !open
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::FourOctetAs { .. }))
    {
        return Err(format!("{peer}: no 4-octet AS capability"));
    }
    let id = match a.listen.ip() {
        IpAddr::V4(v) => v,
        IpAddr::V6(_) => Ipv4Addr::new(198, 18, 255, 254),
    };
    let mine = OpenMessage {
        version: 4,
        my_as: u16::try_from(a.asn).map_err(|e| format!("asn: {e}"))?,
        hold_time: HOLD_TIME,
        bgp_identifier: id,
        capabilities: vec![
            Capability::Multiprotocol {
                afi,
                safi: Safi::Unicast,
            },
            Capability::FourOctetAs { asn: a.asn },
        ],
    };
    let ectx = EncodeContext::default();
    let mut out = BytesMut::new();
    for m in [Message::Open(mine), Message::Keepalive] {
        m.encode(&ectx, &mut out)
            .map_err(|e| format!("encode: {e}"))?;
    }
    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let ctx4 = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    match Message::decode(&read_frame(&mut s, &ctx4)?, &ctx4) {
        Ok(Message::Keepalive) => Ok(s),
        other => Err(format!("{peer}: expected KEEPALIVE, got {other:?}")),
    }
}

fn keepalive() -> Vec<u8> {
    let mut out = BytesMut::new();
    // A KEEPALIVE has no field that can fail to encode.
    let _ = Message::Keepalive.encode(&EncodeContext::default(), &mut out);
    out.to_vec()
}

fn feed(a: &Args) -> Result<(), String> {
    let v6 = a.table == "v6";
    let nh = a.listen.ip();
    if v6 != nh.is_ipv6() {
        return Err(
            "--table v6 needs an IPv6 --listen address (the next hop), v4 an IPv4 one".into(),
        );
    }
    let built = Instant::now();
    let (stream, updates, announced) = build(a, nh)?;
    println!(
        "{{\"event\":\"built\",\"updates\":{updates},\"prefix_announcements\":{announced},\"bytes\":{},\"build_s\":{:.3}}}",
        stream.len(),
        built.elapsed().as_secs_f64()
    );
    let mut s = establish(a, if v6 { Afi::Ipv6 } else { Afi::Ipv4 })?;
    // Drain what the receiver sends (KEEPALIVEs) so that its writes never block.
    let mut rd = s.try_clone().map_err(|e| format!("clone: {e}"))?;
    std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(rd.read(&mut sink), Ok(n) if n > 0) {}
    });
    println!("{{\"event\":\"sending\",\"t\":{:.6}}}", now());
    let _ = std::io::stdout().flush();
    for chunk in stream.chunks(4 << 20) {
        s.write_all(chunk).map_err(|e| format!("write: {e}"))?;
    }
    println!("{{\"event\":\"sent\",\"t\":{:.6}}}", now());
    let _ = std::io::stdout().flush();
    linger(&mut s, a.linger)
}

fn linger(s: &mut TcpStream, linger: Duration) -> Result<(), String> {
    let until = Instant::now() + linger;
    let ka = keepalive();
    while Instant::now() < until {
        s.write_all(&ka).map_err(|e| format!("write: {e}"))?;
        std::thread::sleep(KEEPALIVE_EVERY);
    }
    Ok(())
}

fn sink(a: &Args) -> Result<(), String> {
    let mut s = establish(a, Afi::Ipv4)?;
    println!("{{\"event\":\"established\",\"t\":{:.6}}}", now());
    let _ = std::io::stdout().flush();
    let mut w = s.try_clone().map_err(|e| format!("clone: {e}"))?;
    let linger_for = a.linger;
    std::thread::spawn(move || linger(&mut w, linger_for));
    let ctx = DecodeContext {
        four_octet_as: true,
        ..DecodeContext::default()
    };
    s.set_read_timeout(Some(a.linger))
        .map_err(|e| format!("timeout: {e}"))?;
    let until = Instant::now() + a.linger;
    while Instant::now() < until {
        let frame = read_frame(&mut s, &ctx)?;
        let t = now();
        if frame.get(18) != Some(&2) {
            continue;
        }
        let v = UpdateView::parse(&frame, &ctx).map_err(|e| format!("UPDATE: {e}"))?;
        println!(
            "{{\"event\":\"update\",\"t\":{t:.6},\"withdrawn\":{},\"nlri\":{}}}",
            v.withdrawn().count(),
            v.nlri().count()
        );
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

fn main() -> ExitCode {
    let run = parse_args().and_then(|a| if a.mode == "feed" { feed(&a) } else { sink(&a) });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest_feeder: {e}");
            ExitCode::FAILURE
        }
    }
}
