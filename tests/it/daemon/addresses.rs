//! Service addresses on an interface (`local_addresses`), in a network namespace of
//! this test's own: added before the first UPDATE (nothing is announced while they cannot
//! be), removed after the withdrawal. Needs root; skipped loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const IFACE: &str = "anyg0";
const ADDRESS: &str = "203.0.113.10/32";

pub(super) fn ip(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn address_present() -> bool {
    ip(&["-o", "addr", "show", "dev", IFACE]).is_ok_and(|out| out.contains(ADDRESS))
}

#[test]
fn local_addresses_come_before_the_announcement_and_go_after_the_withdrawal() {
    // Network namespaces are per thread: the whole scenario (daemon, peer, target and the
    // `ip` commands the daemon runs) lives on this thread, on a current-thread runtime.
    // The namespace, and the interface created in it, vanish with the thread.
    let outcome = std::thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        ip(&["link", "set", "lo", "up"])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(scenario());
        Ok(())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(why)) => eprintln!(
            "SKIPPED local_addresses_come_before_the_announcement_and_go_after_the_withdrawal: \
             {why} (needs root and iproute2)"
        ),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn scenario() {
    let extra = format!("local_addresses = [\"203.0.113.10\"]\nlocal_interface = \"{IFACE}\"");
    let setup = Setup {
        service_extra: &extra,
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;

    // Healthy, but the interface does not exist yet: the address cannot be added, so
    // nothing may be announced.
    target.wait_served("four passes", |p, _| p >= 4).await;
    d.wait_state("up").await;
    d.quiet_for(3 * INTERVAL, "address not on the interface")
        .await;

    // Once the interface exists, the retry adds the address, then the UPDATE goes out.
    // A veth end (the dummy module is not in every kernel); its peer stays down.
    ip(&[
        "link", "add", IFACE, "type", "veth", "peer", "name", "anyg1",
    ])
    .unwrap();
    ip(&["link", "set", IFACE, "up"]).unwrap();
    let u = d.update().await;
    assert!(address_present(), "announced without {ADDRESS} on {IFACE}");
    assert_v4_announcement(&u, 0);

    // Failing: the withdrawal, then the address goes.
    target.set(Answer::Fail);
    assert_v4_withdrawal(&d.update().await);
    for _ in 0..250 {
        if !address_present() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !address_present(),
        "{ADDRESS} still on {IFACE} after the withdrawal"
    );

    // Healthy again: added again before the re-announcement.
    target.set(Answer::Pass);
    let u = d.update().await;
    assert!(address_present());
    assert_v4_announcement(&u, 0);
    d.shutdown().await;
    assert!(!address_present(), "{ADDRESS} left on {IFACE} at exit");
}

/// A second service, `api`, appended to a scenario config.
const API_V4: &str = "198.51.100.0/24";

fn api_service(target: SocketAddr) -> String {
    format!(
        r#"
[[service]]
name = "api"
prefixes = ["{API_V4}"]

[[service.check]]
type = "http"
url = "http://{target}/healthz"
interval = "100ms"
timeout = "50ms"
rise = 2
fall = 2
"#
    )
}

/// An `ip` for the daemon: a script that logs its start, waits for a gate file (at most
/// about 20 s, inside [`GATED_IP_TIMEOUT`], the bound the daemon is given for it) and logs
/// its end. Returns the script, the log and the gate.
/// Wider than the gate's own limit: the call ends when the test opens the gate, never by
/// the daemon's bound, however slowly a loaded machine runs the rest of the test.
const GATED_IP_TIMEOUT: Duration = Duration::from_secs(30);

fn gated_ip(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (log, gate) = (dir.join("ip.log"), dir.join("gate"));
    let script = dir.join("ip.sh");
    std::fs::write(
        &script,
        format!(
            "echo \"start $*\" >> {log}\n\
             i=0\n\
             while [ ! -e {gate} ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done\n\
             echo \"end $*\" >> {log}\n",
            log = log.display(),
            gate = gate.display(),
        ),
    )
    .unwrap();
    (script, log, gate)
}

/// The daemon with web (checked against `web_target`) and api (against `api_target`),
/// its service addresses managed by the gated `ip` `script`; returns once both are
/// announced, with web's config text alone (api is appended to it in the file) and the
/// file's path.
async fn web_and_api_with_gated_ip(
    dir: &Path,
    script: &Path,
    web_target: SocketAddr,
    api_target: SocketAddr,
) -> (Daemon, String, std::path::PathBuf) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let path = dir.join("anyguard.toml");
    let text = config_text(
        &Setup::default(),
        listener.local_addr().unwrap(),
        status_port,
        web_target,
    );
    std::fs::write(&path, format!("{text}{}", api_service(api_target))).unwrap();
    let config = anyguard::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        config_path: Some(path.clone()),
        // Through `sh`: exec'ing a file just written races with forks of other threads
        // (ETXTBSY).
        ip_command: Some(vec!["sh".into(), script.display().to_string()]),
        ip_timeout: Some(GATED_IP_TIMEOUT),
        ..RunOptions::default()
    };
    let mut d = Daemon::launch(&listener, status_port, config, options, false).await;
    let mut announced = Vec::new();
    for _ in 0..4 {
        if announced.len() == 2 {
            break;
        }
        announced.extend(d.update().await.nlri);
    }
    announced.sort();
    assert_eq!(announced, vec![v4(API_V4), v4(SERVICE_V4)]);
    (d, text, path)
}

#[tokio::test]
async fn a_withdrawal_does_not_wait_for_another_services_address_change() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log, gate) = gated_ip(dir.path());
    let ip_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let target = Target::start(Answer::Pass).await;
    let (mut d, text, path) =
        web_and_api_with_gated_ip(dir.path(), &script, target.addr, target.addr).await;

    // One reload both removes api (its withdrawal is due) and gives web, which stays
    // announced, a service address (its `ip` call is due).
    let reloaded = text.replace(
        "[[service.check]]",
        "local_addresses = [\"203.0.113.10\"]\n\n[[service.check]]",
    );
    std::fs::write(&path, reloaded).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    let u = d.update().await;
    assert_eq!(u.withdrawn, vec![v4(API_V4)], "{u:?}");
    assert!(
        !ip_log().contains("end"),
        "api's withdrawal waited for web's `ip` call:\n{}",
        ip_log()
    );

    std::fs::write(&gate, "").unwrap();
    for _ in 0..250 {
        if ip_log().contains("end address replace 203.0.113.10/32 dev lo") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ip_log().contains("end address replace 203.0.113.10/32 dev lo"),
        "{}",
        ip_log()
    );
    // web stays announced throughout: nothing else is sent.
    d.quiet_for(3 * INTERVAL, "web's address was added").await;
    d.shutdown().await;
    assert!(ip_log().contains("end address del 203.0.113.10/32 dev lo"));
}

#[tokio::test]
async fn a_sick_service_is_withdrawn_while_another_services_address_add_is_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log, gate) = gated_ip(dir.path());
    let ip_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // web and api with targets of their own: only api turns sick.
    let target = Target::start(Answer::Pass).await;
    let api_target = Target::start(Answer::Pass).await;
    let (mut d, text, path) =
        web_and_api_with_gated_ip(dir.path(), &script, target.addr, api_target.addr).await;
    let api = api_service(api_target.addr);

    // web gets a service address: its `ip` call blocks at the gate.
    let reloaded = text.replace(
        "[[service.check]]",
        "local_addresses = [\"203.0.113.10\"]\n\n[[service.check]]",
    );
    std::fs::write(&path, format!("{reloaded}{api}")).unwrap();
    d.signals.send(DaemonSignal::Reload).await.unwrap();
    for _ in 0..250 {
        if ip_log().contains("start address replace") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ip_log().contains("start address replace"), "{}", ip_log());

    // api turns sick meanwhile: its withdrawal must not wait for web's `ip` call.
    api_target.set(Answer::Fail);
    let u = d.update().await;
    assert_eq!(u.withdrawn, vec![v4(API_V4)], "{u:?}");
    assert!(
        !ip_log().contains("end"),
        "api's withdrawal waited for web's `ip` call:\n{}",
        ip_log()
    );

    // The gate opens: web's address is added; web stayed announced throughout.
    std::fs::write(&gate, "").unwrap();
    for _ in 0..250 {
        if ip_log().contains("end address replace 203.0.113.10/32 dev lo") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ip_log().contains("end address replace 203.0.113.10/32 dev lo"),
        "{}",
        ip_log()
    );
    d.quiet_for(3 * INTERVAL, "web's address was added").await;
    d.shutdown().await;
    assert!(
        ip_log().contains("end address del 203.0.113.10/32 dev lo"),
        "{}",
        ip_log()
    );
}
