//! Fleet file tests: the example loads, defaults, every error with file:line:column.

use std::path::PathBuf;

use super::*;
use crate::guard::auth::FleetKey;

fn messages(text: &str) -> Vec<String> {
    match Fleet::parse(text, "fleet.toml") {
        Ok(f) => panic!("accepted: {f:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn example_fleet_file_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/fleet.toml");
    let fleet = Fleet::load(&path).unwrap();
    let names: Vec<&str> = fleet.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        fleet.sites[0].status_url.to_string(),
        "http://198.18.1.2:9180/status"
    );
    assert_eq!(fleet.min_sites("web"), 2);
    assert_eq!(fleet.min_sites("dns"), 1);
    assert_eq!(fleet.min_sites("not-listed"), 1);
    assert_eq!(
        fleet.service("web").unwrap().prefixes,
        Some(vec!["203.0.113.0/24".parse().unwrap()])
    );
    assert_eq!(
        fleet.poll,
        PollSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            stale_after: Duration::from_millis(3500),
            intent_wait: Duration::from_secs(3),
        }
    );
    assert_eq!(fleet.rank("c"), Some(2));
    assert_eq!(
        fleet.sites[0].report_url.to_string(),
        "http://198.18.1.2:9181/fleet/report"
    );
    let auth = fleet.auth.as_ref().unwrap();
    assert!(auth.key_file.ends_with("config/example-fleet.key"));
    let view = fleet.view_for("b");
    let others: Vec<(usize, &str)> = view
        .sites
        .iter()
        .map(|s| (s.rank, s.name.as_str()))
        .collect();
    assert_eq!(others, [(0, "a"), (2, "c")]);
}

#[test]
fn minimal_fleet_gets_the_documented_defaults() {
    let fleet = Fleet::parse(
        "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n\n\
         [[service]]\nname = \"web\"\n",
        "fleet.toml",
    )
    .unwrap();
    assert_eq!(fleet.min_sites("web"), 1);
    assert_eq!(fleet.service("web").unwrap().prefixes, None);
    assert_eq!(
        fleet.timing(),
        GuardTiming {
            stale_after: Duration::from_millis(3500),
            intent_wait: Duration::from_secs(3),
        }
    );
}

#[test]
fn unknown_key_in_every_table_is_rejected_with_its_line() {
    let base = "[poll]\ninterval = \"1s\"\n\n[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n\n[[service]]\nname = \"web\"\n";
    for (after, line) in [
        ("interval = \"1s\"\n", 3),
        ("status_url = \"http://198.18.1.2:9180/status\"\n", 7),
        ("name = \"web\"\n", 10),
    ] {
        let text = base.replacen(after, &format!("{after}bogus = 1\n"), 1);
        let m = messages(&text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with(&format!("fleet.toml:{line}:"))
                && m[0].contains("unknown field `bogus`"),
            "{m:?}"
        );
    }
    let m = messages(&format!("bogus = 1\n{base}"));
    assert!(m[0].starts_with("fleet.toml:1:1:") && m[0].contains("unknown field `bogus`"));
}

#[test]
fn every_error_is_reported_with_file_line_column_and_key() {
    let text = r#"[[site]]
name = "a"
status_url = "https://198.18.1.2/status"

[[site]]
name = "a"
status_url = "not a url"

[[service]]
name = "web"
min_sites = 3
prefixes = ["203.0.113.1/24", "nonsense"]

[[service]]
name = "web"
"#;
    assert_eq!(
        messages(text),
        [
            r#"fleet.toml:3:14: site[0].status_url: invalid status URL "https://198.18.1.2/status": scheme "https" is not supported, use http"#,
            r#"fleet.toml:6:8: site[1].name: duplicate site "a""#,
            r#"fleet.toml:7:14: site[1].status_url: invalid status URL "not a url": invalid uri character"#,
            "fleet.toml:11:13: service[0].min_sites: must be between 1 and the number of sites (2), got 3",
            r#"fleet.toml:12:13: service[0].prefixes[0]: invalid prefix "203.0.113.1/24": host bits set (did you mean 203.0.113.0/24?)"#,
            r#"fleet.toml:12:31: service[0].prefixes[1]: invalid prefix "nonsense": invalid IP address syntax"#,
            r#"fleet.toml:15:8: service[1].name: duplicate service "web""#,
        ]
    );
}

#[test]
fn poll_timing_rules_are_enforced() {
    let site = "\n[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    assert_eq!(
        messages(&format!("[poll]\ninterval = \"soon\"\n{site}")),
        [r#"fleet.toml:2:12: poll.interval: invalid duration "soon" (e.g. "500ms", "1s")"#]
    );
    assert_eq!(
        messages(&format!(
            "[poll]\ninterval = \"1s\"\ntimeout = \"2s\"\n{site}"
        )),
        ["fleet.toml:3:11: poll.timeout: must not exceed poll.interval"]
    );
    assert_eq!(
        messages(&format!(
            "[poll]\nstale_after = \"1s\"\nintent_wait = \"1200ms\"\n{site}"
        )),
        [
            "fleet.toml:2:15: poll.stale_after: must be at least poll.interval + poll.timeout (one poll round)",
            "fleet.toml:3:15: poll.intent_wait: must be at least poll.interval + poll.timeout (one poll round)",
        ]
    );
}

#[test]
fn huge_poll_durations_are_refused_instead_of_overflowing() {
    // 3 × interval + timeout (the stale_after default) overflowed Duration: a panic while
    // loading the fleet, in the daemon or in `anyguard check`.
    let site = "\n[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    assert_eq!(
        messages(&format!("[poll]\ninterval = \"500000000000years\"\n{site}")),
        ["fleet.toml:2:12: poll.interval: must be at most 30days"]
    );
}

#[test]
fn fleet_without_sites_or_with_bad_syntax_is_rejected() {
    assert_eq!(
        messages("[[service]]\nname = \"web\"\n"),
        ["fleet.toml:1:1: site: the fleet needs at least one [[site]]"]
    );
    let m = messages("[[site]\nname = \"a\"\n");
    assert!(m[0].starts_with("fleet.toml:1:"), "{m:?}");
    let missing = Fleet::load(Path::new("/nonexistent/fleet.toml")).unwrap_err();
    assert!(missing
        .to_string()
        .starts_with("/nonexistent/fleet.toml: cannot read:"));
}

#[test]
fn a_poll_interval_below_the_minimum_is_refused() {
    // "1ns" would poll every other site in a tight loop.
    let site = "\n[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    assert_eq!(
        messages(&format!(
            "[poll]\ninterval = \"1ns\"\ntimeout = \"1ns\"\n{site}"
        )),
        ["fleet.toml:2:12: poll.interval: must be at least 100ms"]
    );
    assert_eq!(
        messages(&format!(
            "[poll]\ninterval = \"99ms\"\ntimeout = \"50ms\"\n{site}"
        )),
        ["fleet.toml:2:12: poll.interval: must be at least 100ms"]
    );
    let fleet = Fleet::parse(
        &format!("[poll]\ninterval = \"100ms\"\ntimeout = \"50ms\"\n{site}"),
        "fleet.toml",
    )
    .unwrap();
    assert_eq!(fleet.poll.interval, MIN_POLL_INTERVAL);
}

#[test]
fn report_url_is_derived_from_the_status_url_unless_given() {
    let fleet = Fleet::parse(
        "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n\
         [[site]]\nname = \"b\"\nstatus_url = \"http://198.18.2.2:9180/status\"\n\
         report_url = \"http://198.18.2.2:9181/fleet/report\"\n",
        "fleet.toml",
    )
    .unwrap();
    assert_eq!(
        fleet.sites[0].report_url.to_string(),
        "http://198.18.1.2:9180/fleet/report"
    );
    assert_eq!(
        fleet.sites[1].report_url.to_string(),
        "http://198.18.2.2:9181/fleet/report"
    );
    assert_eq!(fleet.auth, None);
    assert_eq!(
        messages("[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2/status\"\nreport_url = \"ftp://x/\"\n"),
        [r#"fleet.toml:4:14: site[0].report_url: invalid status URL "ftp://x/": scheme "ftp" is not supported, use http"#]
    );
}

#[test]
fn auth_key_file_is_read_relative_to_the_fleet_file_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_path = dir.path().join("fleet.toml");
    let site = "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    let key = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join("fleet.key"), format!("{key}\n")).unwrap();
    std::fs::write(
        &fleet_path,
        format!("[auth]\nkey_file = \"fleet.key\"\n{site}"),
    )
    .unwrap();
    let fleet = Fleet::load(&fleet_path).unwrap();
    let auth = fleet.auth.unwrap();
    assert_eq!(auth.key_file, dir.path().join("fleet.key"));
    assert_eq!(
        auth.key,
        FleetKey::from_file_bytes(key.as_bytes(), "x").unwrap()
    );

    let shown = fleet_path.display().to_string();
    let load_err = |key_file: &str| {
        std::fs::write(
            &fleet_path,
            format!("[auth]\nkey_file = \"{key_file}\"\n{site}"),
        )
        .unwrap();
        Fleet::load(&fleet_path).unwrap_err().to_string()
    };
    std::fs::write(dir.path().join("empty.key"), "\n").unwrap();
    std::fs::write(dir.path().join("short.key"), "abc\n").unwrap();
    let d = dir.path().display();
    assert_eq!(
        load_err("missing.key"),
        format!("{shown}:2:12: auth.key_file: cannot read key file {d}/missing.key: No such file or directory (os error 2)")
    );
    assert_eq!(
        load_err("empty.key"),
        format!("{shown}:2:12: auth.key_file: key file {d}/empty.key is empty")
    );
    assert_eq!(
        load_err("short.key"),
        format!("{shown}:2:12: auth.key_file: key file {d}/short.key holds 3 bytes; at least 32 are needed (e.g. `openssl rand -hex 32`)")
    );
    let m = messages(&format!("[auth]\n{site}"));
    assert!(m[0].contains("missing field `key_file`"), "{m:?}");
}
