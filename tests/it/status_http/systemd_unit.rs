//! `contrib/anyguard.service` is a valid notify unit with watchdog, reload and the
//! capabilities BGP needs; `systemd-analyze verify` accepts it where available.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const UNIT: &str = include_str!("../../../contrib/anyguard.service");

fn directive(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn unit_file_is_notify_with_watchdog_reload_and_bgp_capabilities() {
    assert_eq!(directive("Type"), ["notify"]);
    assert_eq!(directive("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(directive("WatchdogSec").len(), 1);
    // The state file's default home ($STATE_DIRECTORY), writable under ProtectSystem=strict.
    assert_eq!(directive("StateDirectory"), ["anyguard"]);
    let caps = directive("AmbientCapabilities");
    assert_eq!(caps, ["CAP_NET_BIND_SERVICE CAP_NET_ADMIN"]);
    assert_eq!(directive("CapabilityBoundingSet"), caps);
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
    ] {
        assert_eq!(directive(hardening).len(), 1, "{hardening}");
    }
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: unit_file_passes_systemd_analyze_verify because systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let dir = std::env::temp_dir().join(format!("anyguard-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // verify wants the ExecStart binary to exist: point it at a stand-in script.
    let binary = dir.join("anyguard");
    std::fs::write(&binary, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unit = dir.join("anyguard.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/bin/anyguard", &binary.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("anyguard.service"))
        .collect();
    assert!(complaints.is_empty(), "{stderr}");
}
