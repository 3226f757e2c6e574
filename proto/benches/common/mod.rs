//! The synthetic UPDATE streams' building blocks, shared by the decode benchmark and the
//! ingest feeder (`examples/ingest_feeder.rs`): a deterministic generator and the path
//! attributes of the "packed" (shared) and "varied" UPDATE shapes.

use std::net::Ipv4Addr;

use anyguard_proto::{AsPath, Community, LargeCommunity, Origin, PathAttribute};

/// A small deterministic generator (no dependency, same stream every run).
pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// The attributes of one UPDATE: `shared` is the packed shape (3 ASNs, MED, 3 communities),
/// otherwise a varied one (2-8 ASNs, a MED half the time, 0-4 communities).
pub(crate) fn attrs(rng: &mut Lcg, shared: bool) -> Vec<PathAttribute> {
    let path_len = if shared { 3 } else { 2 + rng.below(7) };
    let path: Vec<u32> = (0..path_len)
        .map(|_| {
            if rng.below(4) == 0 {
                4_200_000_000 + rng.below(1000)
            } else {
                64512 + rng.below(1000)
            }
        })
        .collect();
    let mut a = vec![
        PathAttribute::Origin(if rng.below(5) == 0 {
            Origin::Incomplete
        } else {
            Origin::Igp
        }),
        PathAttribute::AsPath(AsPath::from_sequence(path)),
        PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 1 + (rng.below(200) as u8))),
    ];
    if shared || rng.below(2) == 0 {
        a.push(PathAttribute::MultiExitDisc(rng.below(1000)));
    }
    let n_comm = if shared { 3 } else { rng.below(5) };
    if n_comm > 0 {
        a.push(PathAttribute::Communities(
            (0..n_comm)
                .map(|_| Community::new(64512 + rng.below(100) as u16, rng.below(65535) as u16))
                .collect(),
        ));
    }
    if rng.below(8) == 0 {
        a.push(PathAttribute::LargeCommunities(vec![LargeCommunity {
            global: 4_200_000_001,
            local1: 1,
            local2: rng.below(100),
        }]));
    }
    a
}
