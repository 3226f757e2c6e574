//! What anyguard sends a directly connected IPv6 router, on the wire (issue 12): the real
//! binary in a network namespace of the test's own, a scripted router in a second one,
//! joined by a veth pair (2001:db8:ff::/64). The IPv6 UPDATE must carry MP_REACH_NLRI as
//! its first attribute (RFC 7606 §5.1) and a 32-octet next hop: the global address and the
//! link-local address of the same interface (RFC 2545 §3). Needs root and `ip netns`;
//! skips loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyguard_proto::PathAttribute;

use crate::fakepeer::{self, FakePeer};
use crate::host::{ip, is_root};

fn must(args: &[&str]) {
    assert!(ip(args).is_some(), "ip {}", args.join(" "));
}

const ROUTER: &str = "2001:db8:ff::1";
const HOST: &str = "2001:db8:ff::2";
const PORT: u16 = 1179;

/// The two namespaces and the daemon; all go when dropped, also when the test fails.
struct Lab {
    host: String,
    router: String,
    daemon: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = ip(&["netns", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.router]);
    }
}

/// A listening socket inside namespace `ns`: a thread of its own enters the namespace
/// (setns affects only the calling thread) and binds there; the socket stays in it.
fn listen_in(ns: &str, addr: SocketAddr) -> std::net::TcpListener {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        l
    })
    .join()
    .unwrap()
}

/// The link-local address of `dev` in `ns`.
fn link_local(ns: &str, dev: &str) -> Option<Ipv6Addr> {
    let out = ip(&[
        "-n", ns, "-6", "-o", "addr", "show", "dev", dev, "scope", "link",
    ])?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
}

#[tokio::test]
async fn a_directly_connected_ipv6_router_gets_mp_reach_first_and_a_link_local_next_hop() {
    let tag = std::process::id();
    let (host, router) = (format!("ag-ll-{tag}-h"), format!("ag-ll-{tag}-r"));
    if !is_root() || ip(&["netns", "add", &host]).is_none() {
        eprintln!(
            "!!!! SKIPPED a_directly_connected_ipv6_router_gets_mp_reach_first_and_a_link_local_next_hop: \
             needs root and `ip netns` (root: {})",
            is_root()
        );
        return;
    }
    let mut lab = Lab {
        host: host.clone(),
        router: router.clone(),
        daemon: None,
    };
    must(&["netns", "add", &router]);
    for ns in [&host, &router] {
        // No duplicate address detection: the addresses are usable at once.
        for k in ["all", "default"] {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{k}.accept_dad=0"))
                .status();
        }
    }
    must(&[
        "-n", &host, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns",
        &router,
    ]);
    for (ns, addr) in [(&host, HOST), (&router, ROUTER)] {
        must(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            "eth1",
            "nodad",
        ]);
        must(&["-n", ns, "link", "set", "eth1", "up"]);
        must(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let mut ours = None;
    for _ in 0..50 {
        ours = link_local(&host, "eth1");
        if ours.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ours = ours.expect("the host's link-local address");

    let listener = listen_in(&router, SocketAddr::new(ROUTER.parse().unwrap(), PORT));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "router_id = \"198.18.200.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
             [[peer]]\nname = \"edge\"\naddress = \"{ROUTER}\"\nport = {PORT}\nremote_asn = 65000\n\
             mode = \"active\"\nconnect_retry = \"1s\"\n\n[[service]]\nname = \"web\"\n\
             prefixes = [\"2001:db8:100::/48\"]\ncommunities = [\"65010:100\"]\nmed = 10\n\n\
             [[service.check]]\ntype = \"command\"\nargv = [\"true\"]\ninterval = \"100ms\"\n\
             rise = 1\nfall = 1\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    lab.daemon = Some(
        Command::new("ip")
            .args(["netns", "exec", &host, env!("CARGO_BIN_EXE_anyguard")])
            .args(["--log-format", "human", "run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let daemon_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.200.1".parse().unwrap(),
        90,
        false,
        true,
    ))
    .await;
    let mut reach = None;
    for _ in 0..20 {
        let u = peer.expect_update().await;
        if let Some(PathAttribute::MpReach(m)) = u.attributes.first() {
            reach = Some((m.clone(), u.attributes.clone()));
            break;
        }
        assert!(
            u.attributes
                .iter()
                .all(|a| !matches!(a, PathAttribute::MpReach(_))),
            "MP_REACH_NLRI is not the first attribute: {u:?}\n{}",
            daemon_log()
        );
    }
    let (m, attributes) = reach.unwrap_or_else(|| panic!("no IPv6 UPDATE\n{}", daemon_log()));
    assert_eq!(m.nlri, vec!["2001:db8:100::/48".parse().unwrap()]);
    assert_eq!(m.next_hop, HOST.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(
        m.link_local_next_hop,
        Some(ours),
        "RFC 2545 §3 link-local next hop; attributes {attributes:?}"
    );
    drop(lab);
}
