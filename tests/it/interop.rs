//! Smoke interop with real BGP daemons on loopback (GoBGP, BIRD): the session comes up and
//! the daemon's RIB shows our route. Skips loudly when a daemon is not installed. The full
//! interop matrix lives in the lab (network namespaces); this only guards the speaker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use crate::httpd::free_port;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyguard::announcer::{RibOut, RouteAttrs};
use anyguard::config::{PeerConfig, PeerMode};
use anyguard::session::{spawn_peer, LocalSpeaker, StopReason, Tuning};
use anyguard::status::model::PeerStatus;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("anyguard-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn routes() -> Arc<RibOut> {
    let attrs = RouteAttrs::plain();
    Arc::new(
        [("203.0.113.0/24".parse().unwrap(), attrs)]
            .into_iter()
            .collect(),
    )
}

/// Our side: connect from `local` to 127.0.0.1:`port` with a fixed next hop (GoBGP rejects
/// loopback next hops, BIRD wants one on a connected network).
fn peer(port: u16, local: Ipv4Addr, next_hop: Ipv4Addr) -> PeerConfig {
    PeerConfig {
        name: "interop".into(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        local_address: Some(IpAddr::V4(local)),
        remote_asn: 65002,
        mode: PeerMode::Active,
        hold_time: Duration::from_secs(9),
        connect_retry: Duration::from_secs(2),
        md5_key: None,
        ttl_security: false,
        max_prefixes: None,
        graceful_restart: None,
        bfd: None,
        ipv4: true,
        ipv6: false,
        next_hop_v4: Some(next_hop),
        next_hop_v6: None,
        reconnect: None,
    }
}

fn local() -> LocalSpeaker {
    LocalSpeaker {
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        asn: 65001,
        restarted: false,
        service_prefixes: Vec::new(),
        tuning: Tuning {
            idle_hold: Duration::from_millis(300),
            ..Tuning::default()
        },
        initial_routes: None,
        bfd: None,
    }
}

/// Runs `probe` until it returns true (bounded), then stops the session.
async fn with_session(
    port: u16,
    from: Ipv4Addr,
    next_hop: Ipv4Addr,
    mut probe: impl FnMut() -> bool,
) -> (bool, PeerStatus) {
    let (_routes_tx, routes_rx) = watch::channel(routes());
    let (status_tx, mut status) = watch::channel(PeerStatus::default());
    let (events_tx, _events) = mpsc::unbounded_channel();
    let handle = spawn_peer(
        peer(port, from, next_hop),
        local(),
        routes_rx,
        status_tx,
        events_tx,
    );
    let up = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.state == "established"),
    )
    .await
    .is_ok();
    let mut seen = false;
    if up {
        for _ in 0..60 {
            if probe() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let st = status.borrow().clone();
    handle
        .shutdown(StopReason::Operator("interop test done".into()))
        .await;
    (seen, st)
}

#[tokio::test]
async fn gobgp_learns_our_route() {
    let (Some(gobgpd), Some(gobgp)) = (which("gobgpd"), which("gobgp")) else {
        eprintln!("SKIPPED: gobgp interop because gobgpd/gobgp are not installed");
        return;
    };
    let (bgp_port, api_port) = (free_port(), free_port());
    let dir = scratch_dir("gobgp");
    let conf = dir.join("gobgpd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = 65002
  router-id = "198.18.0.2"
  port = {bgp_port}
  local-address-list = ["127.0.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.2"
    peer-as = 65001
  [neighbors.transport.config]
    passive-mode = true
"#
        ),
    )
    .unwrap();
    let mut daemon = Command::new(gobgpd)
        .arg("-f")
        .arg(&conf)
        .arg("--api-hosts")
        .arg(format!("127.0.0.1:{api_port}"))
        .stdout(std::fs::File::create(dir.join("gobgpd.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("gobgpd.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let rib = || {
        std::process::Command::new(&gobgp)
            .args([
                "-u",
                "127.0.0.1",
                "-p",
                &api_port.to_string(),
                "global",
                "rib",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("203.0.113.0/24"))
            .unwrap_or(false)
    };
    let (seen, st) = with_session(
        bgp_port,
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(198, 18, 0, 1),
        rib,
    )
    .await;
    if !seen {
        let out = std::process::Command::new(&gobgp)
            .args(["-u", "127.0.0.1", "-p", &api_port.to_string()])
            .args(["neighbor", "127.0.0.2", "adj-in"])
            .output();
        eprintln!("gobgp adj-in: {out:?}");
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.join("gobgpd.out")).unwrap_or_default()
        );
    }
    let _ = daemon.start_kill();
    let _ = daemon.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        seen,
        "gobgp never showed 203.0.113.0/24; our status: {st:?}"
    );
    eprintln!("gobgp: capabilities {:?}", st.capabilities);
}

#[tokio::test]
async fn bird_learns_our_route() {
    let (Some(bird), Some(birdc)) = (which("bird"), which("birdc")) else {
        eprintln!("SKIPPED: bird interop because bird/birdc are not installed");
        return;
    };
    let bgp_port = free_port();
    let dir = scratch_dir("bird");
    let (conf, sock) = (dir.join("bird.conf"), dir.join("bird.ctl"));
    std::fs::write(
        &conf,
        format!(
            r#"router id 198.18.0.2;
protocol device {{ }}
protocol static {{ ipv4; route 127.0.0.0/8 via "lo"; }}
protocol bgp anyguard {{
  local 127.0.0.1 port {bgp_port} as 65002;
  neighbor 127.0.0.2 as 65001;
  multihop;
  passive on;
  hold time 9;
  ipv4 {{ import all; export none; }};
}}
"#
        ),
    )
    .unwrap();
    let mut daemon = Command::new(bird)
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&sock)
        .arg("-P")
        .arg(dir.join("bird.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("bird.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let show = |what: &[&str]| {
        std::process::Command::new(&birdc)
            .arg("-s")
            .arg(&sock)
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let rib = || {
        std::process::Command::new(&birdc)
            .arg("-s")
            .arg(&sock)
            .args(["show", "route", "protocol", "anyguard"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("203.0.113.0/24"))
            .unwrap_or(false)
    };
    let (seen, st) = with_session(
        bgp_port,
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 2),
        rib,
    )
    .await;
    if !seen {
        eprintln!("{}", show(&["show", "protocols", "all", "anyguard"]));
        eprintln!("{}", show(&["show", "route", "all"]));
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.join("bird.log")).unwrap_or_default()
        );
    }
    let _ = daemon.start_kill();
    let _ = daemon.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(seen, "bird never showed 203.0.113.0/24; our status: {st:?}");
    eprintln!("bird: capabilities {:?}", st.capabilities);
}
