//! Service addresses on an interface (`local_addresses`), in a network namespace of
//! this test's own: added before the first UPDATE (nothing is announced while they cannot
//! be), removed after the withdrawal. Needs root; skipped loudly otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const IFACE: &str = "anyg0";
const ADDRESS: &str = "203.0.113.10/32";

fn ip(args: &[&str]) -> Result<String, String> {
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
