//! Decision → wire at N services with a real BGP session (issue 13): the daemon binary
//! (`anyguard run`, not a dry run) with a peer played by this process on `[::1]`. Service
//! `flip` has one HTTP check at 250 ms (rise = fall = 1, `on_down = "deprefer"`; a timeout
//! of 200 ms, so that a busy machine does not flip it on its own) against
//! a target that the benchmark turns between 200 and 503; the other N - 1 services keep
//! their HTTP and TCP checks at 1 s against the shared targets. The clock starts when the
//! flip target has written the first answer of the new kind (with rise = fall = 1 that
//! answer is the decision) and stops when the peer has decoded the UPDATE that carries
//! it, as in `benches/decision_latency.rs` (whose peer and HTTP pieces are shared).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyguard_proto::{Message, PathAttribute, UpdateMessage};
use ipnet::IpNet;
use tokio::net::TcpListener;

use super::fakepeer::{self, FakeError, FakePeer};
use super::flip_target::{serve_target, TargetState};
use super::{httpd, BenchResult, Daemon};

const PEER_ASN: u32 = 65000;
/// Longest wait for one UPDATE of the flipped service.
const UPDATE_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for the daemon's session and its first announcement of the service.
const START_WAIT: Duration = Duration::from_secs(60);
/// After the first announcement, time for the other services to settle.
const SETTLE: Duration = Duration::from_secs(4);
/// The flipped service's prefix.
const FLIP_PREFIX: &str = "2001:db8:ffff::/48";

/// Runs `binary` with `n` services and flips service `flip` `reps` times; the samples.
pub(crate) fn measure(
    binary: &Path,
    n: usize,
    reps: usize,
    http: SocketAddr,
    tcp: SocketAddr,
) -> BenchResult<Vec<Duration>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let peer_l = TcpListener::bind("[::1]:0")
            .await
            .map_err(|e| format!("bind [::1]: {e}"))?;
        let target_l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let peer_addr = peer_l.local_addr().map_err(|e| e.to_string())?;
        let target_addr = target_l.local_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(Mutex::new(TargetState {
            healthy: true,
            ..TargetState::default()
        }));
        let server = tokio::spawn(serve_target(target_l, Arc::clone(&state)));
        let dir = std::env::temp_dir().join(format!(
            "anyguard-many-services-decision-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("services.toml");
        let text = config_text(n, &dir, peer_addr, target_addr, http, tcp);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let daemon = Daemon::spawn(binary, &[], &path, &dir)?;
        let result = flips(reps, &peer_l, &state).await;
        drop(daemon);
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
        result
    })
}

fn config_text(
    n: usize,
    dir: &Path,
    peer: SocketAddr,
    flip: SocketAddr,
    http: SocketAddr,
    tcp: SocketAddr,
) -> String {
    let mut text = format!(
        r#"router_id = "198.18.0.2"
local_asn = 65010
state_dir = "{dir}"

[status]
listen = "127.0.0.1:{status_port}"

[[peer]]
name = "bench"
address = "::1"
port = {port}
remote_asn = {PEER_ASN}
hold_time = "9s"

[[service]]
name = "flip"
prefixes = ["{FLIP_PREFIX}"]
on_down = "deprefer"

[[service.check]]
type = "http"
url = "http://{flip}/healthz"
interval = "250ms"
timeout = "200ms"
rise = 1
fall = 1
"#,
        dir = dir.display(),
        status_port = httpd::free_port(),
        port = peer.port(),
    );
    text.push_str(&super::services_text(1..n, http, Some(tcp)));
    text
}

/// Whether `u` announces the flipped prefix, and de-preferred (our ASN more than once).
fn flip_announcement(u: &UpdateMessage) -> Option<bool> {
    let flip: IpNet = FLIP_PREFIX.parse().ok()?;
    let carries = u.attributes.iter().any(|a| match a {
        PathAttribute::MpReach(r) => r.nlri.contains(&flip),
        _ => false,
    });
    if !carries {
        return None;
    }
    u.attributes.iter().find_map(|a| match a {
        PathAttribute::AsPath(p) => {
            Some(p.segments.iter().map(|s| s.asns.len()).sum::<usize>() > 1)
        }
        _ => None,
    })
}

/// The next UPDATE that announces the flipped prefix de-preferred (`depreferred`) or
/// not, and when it was decoded. Other UPDATEs (the other services' announcements, and
/// one that repeats the flipped prefix as it was, packed with others of the same
/// attributes) and KEEPALIVEs are skipped.
async fn next_flip(peer: &mut FakePeer, depreferred: bool, wait: Duration) -> BenchResult<Instant> {
    let deadline = Instant::now() + wait;
    for _ in 0..100_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.recv_within(left).await {
            Ok(Message::Update(u)) => {
                if flip_announcement(&u) == Some(depreferred) {
                    return Ok(Instant::now());
                }
            }
            Ok(Message::Keepalive) => {}
            Ok(other) => return Err(format!("unexpected message {other:?}")),
            Err(FakeError::Timeout) => {
                return Err(format!("no UPDATE of {FLIP_PREFIX} within {wait:?}"))
            }
            Err(e) => return Err(format!("peer: {e:?}")),
        }
    }
    Err("endless UPDATEs of other prefixes".into())
}

async fn flips(
    reps: usize,
    listener: &TcpListener,
    state: &Mutex<TargetState>,
) -> BenchResult<Vec<Duration>> {
    let (stream, _) = tokio::time::timeout(START_WAIT, listener.accept())
        .await
        .map_err(|_| "the daemon did not connect".to_string())?
        .map_err(|e| format!("accept: {e}"))?;
    let mut peer = FakePeer::new(stream);
    // Hold time 0: no KEEPALIVEs either way.
    tokio::time::timeout(
        START_WAIT,
        peer.establish(fakepeer::open(
            PEER_ASN,
            Ipv4Addr::new(198, 18, 0, 1),
            0,
            false,
            true,
        )),
    )
    .await
    .map_err(|_| "no session".to_string())?;
    // The first announcement (the target starts healthy): warm-up, not counted.
    next_flip(&mut peer, false, START_WAIT).await?;
    // Read (and drop) what else comes while the other services settle.
    let settle_end = Instant::now() + SETTLE;
    while Instant::now() < settle_end {
        match peer.recv_within(Duration::from_millis(100)).await {
            Ok(Message::Update(u)) if flip_announcement(&u) == Some(true) => {
                return Err("the flipped service changed before any flip".into())
            }
            Ok(_) | Err(FakeError::Timeout) => {}
            Err(e) => return Err(format!("peer: {e:?}")),
        }
    }
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps {
        let healthy = i % 2 == 1;
        {
            let mut s = state.lock().map_err(|_| "target state poisoned")?;
            s.healthy = healthy;
            s.armed = true;
            s.decided_at = None;
        }
        let at = next_flip(&mut peer, !healthy, UPDATE_WAIT)
            .await
            .map_err(|e| format!("repetition {i}: {e}"))?;
        let decided = state
            .lock()
            .map_err(|_| "target state poisoned")?
            .decided_at
            .ok_or_else(|| format!("repetition {i}: UPDATE before the deciding answer"))?;
        samples.push(at.saturating_duration_since(decided));
    }
    Ok(samples)
}
