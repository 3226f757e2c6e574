//! Service addresses and state-change hooks, through the real binary in a network namespace
//! of the test's own: the address is on `lo` while the service is announced and gone after
//! the drain, and the hook saw every state change in order. Needs root and `ip netns`;
//! skips loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::host::{ip, is_root};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace and the daemon in it; both go when dropped, also when the test fails.
struct Lab {
    ns: String,
    daemon: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Polls `f` every 50 ms for at most `limit`.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn config(dir: &Path) -> String {
    format!(
        r#"router_id = "198.18.200.2"
local_asn = 65010

[[peer]]
# Nobody is there: the session never comes up, so a withdrawal is "sent" at once.
name = "edge"
address = "198.18.200.1"
remote_asn = 65000
connect_retry = "1s"
next_hop_v6 = "2001:db8:200::2"

[[service]]
name = "web"
prefixes = ["203.0.113.0/24", "2001:db8:100::/48"]
local_addresses = ["203.0.113.10", "2001:db8:100::10"]
drain_file = "{drain}"
drain_time = "300ms"
hold_down = "100ms"
hook = ["sh", "-c", "echo \"$SERVICE $PREVIOUS_STATE>$STATE $PREFIXES\" >> {hook_log}"]

[[service.check]]
type = "command"
argv = ["true"]
interval = "100ms"
rise = 1
fall = 1
"#,
        drain = dir.join("web.drain").display(),
        hook_log = dir.join("hook.log").display(),
    )
}

/// Starts the binary in `ns` with `config` (written to DIR/site.toml), its log in
/// DIR/daemon.log. `ip netns exec` execs the daemon, so the child's pid is the daemon's.
fn start_daemon(ns: &str, dir: &Path, config: &str) -> Child {
    let config_path = dir.join("site.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_anyguard")])
        .args(["--log-format", "human", "run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn addresses_follow_the_announcement_and_hooks_see_every_change() {
    let ns = format!("ag-local-{}", std::process::id());
    if !is_root() || ip(&["netns", "add", &ns]).is_none() {
        eprintln!(
            "!!!! SKIPPED addresses_follow_the_announcement_and_hooks_see_every_change: needs \
             root and `ip netns` (root: {})",
            is_root()
        );
        return;
    }
    let mut lab = Lab {
        ns: ns.clone(),
        daemon: None,
    };
    let dir = tempfile::tempdir().unwrap();
    lab.daemon = Some(start_daemon(&ns, dir.path(), &config(dir.path())));
    let show = || ip(&["-n", &ns, "address", "show", "dev", "lo"]).unwrap_or_default();
    let daemon_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let added = wait_for(Duration::from_secs(10), || {
        let t = show();
        t.contains("inet 203.0.113.10/32") && t.contains("inet6 2001:db8:100::10/128")
    });
    assert!(added, "addresses not added:\n{}\n{}", show(), daemon_log());

    std::fs::write(dir.path().join("web.drain"), b"").unwrap();
    let removed = wait_for(Duration::from_secs(10), || {
        let t = show();
        !t.contains("203.0.113.10") && !t.contains("2001:db8:100::10")
    });
    assert!(
        removed,
        "addresses not removed after the drain:\n{}\n{}",
        show(),
        daemon_log()
    );

    // A clean stop (SIGTERM): the daemon exits by itself within its drain and stop waits.
    let mut daemon = lab.daemon.take().unwrap();
    let pid = daemon.id().to_string();
    // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let exited = wait_for(Duration::from_secs(15), || {
        matches!(daemon.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = daemon.kill();
    }
    let _ = daemon.wait();
    assert!(exited, "daemon did not stop on SIGTERM:\n{}", daemon_log());

    let hooks = std::fs::read_to_string(dir.path().join("hook.log")).unwrap_or_default();
    let prefixes = "203.0.113.0/24 2001:db8:100::/48";
    assert_eq!(
        hooks,
        format!("web starting>up {prefixes}\nweb up>draining {prefixes}\nweb draining>drained {prefixes}\n"),
        "daemon log:\n{}",
        daemon_log()
    );
}

/// `local_interface`: the service addresses go on the named interface (a veth end in the
/// namespace), not on `lo`, and leave it after the drain.
#[test]
fn addresses_go_on_the_named_local_interface_and_only_there() {
    let ns = format!("ag-iface-{}", std::process::id());
    if !is_root() || ip(&["netns", "add", &ns]).is_none() {
        eprintln!(
            "!!!! SKIPPED addresses_go_on_the_named_local_interface_and_only_there: needs root \
             and `ip netns` (root: {})",
            is_root()
        );
        return;
    }
    let mut lab = Lab {
        ns: ns.clone(),
        daemon: None,
    };
    let veth = [
        "-n", &ns, "link", "add", "anyg0", "type", "veth", "peer", "name", "anyg1",
    ];
    assert!(ip(&veth).is_some(), "cannot create the veth pair in {ns}");
    assert!(ip(&["-n", &ns, "link", "set", "anyg0", "up"]).is_some());
    let dir = tempfile::tempdir().unwrap();
    let addresses = "local_addresses = [\"203.0.113.10\", \"2001:db8:100::10\"]\n";
    let text = config(dir.path()).replace(
        addresses,
        &format!("{addresses}local_interface = \"anyg0\"\n"),
    );
    assert!(text.contains("local_interface"), "{text}");
    lab.daemon = Some(start_daemon(&ns, dir.path(), &text));
    let show = |dev: &str| ip(&["-n", &ns, "address", "show", "dev", dev]).unwrap_or_default();
    let daemon_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let added = wait_for(Duration::from_secs(10), || {
        let t = show("anyg0");
        t.contains("inet 203.0.113.10/32") && t.contains("inet6 2001:db8:100::10/128")
    });
    assert!(
        added,
        "addresses not on anyg0:\n{}\n{}",
        show("anyg0"),
        daemon_log()
    );
    let lo = show("lo");
    assert!(
        !lo.contains("203.0.113.10") && !lo.contains("2001:db8:100::10"),
        "an address on lo:\n{lo}"
    );

    std::fs::write(dir.path().join("web.drain"), b"").unwrap();
    let removed = wait_for(Duration::from_secs(10), || {
        let t = show("anyg0");
        !t.contains("203.0.113.10") && !t.contains("2001:db8:100::10")
    });
    assert!(
        removed,
        "addresses still on anyg0 after the drain:\n{}\n{}",
        show("anyg0"),
        daemon_log()
    );
}
