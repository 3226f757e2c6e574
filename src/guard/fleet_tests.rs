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
        fleet.timing(Duration::from_millis(700)),
        GuardTiming {
            stale_after: Duration::from_millis(3500),
            intent_wait: Duration::from_secs(3),
            hand_over: Duration::from_millis(700),
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

#[test]
fn example_etcd_fleet_file_loads_with_the_etcd_backend() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/fleet-etcd.toml");
    let fleet = Fleet::load(&path).unwrap();
    let BackendSettings::Etcd(etcd) = &fleet.backend else {
        panic!("{:?}", fleet.backend)
    };
    assert_eq!(fleet.backend.name(), "etcd");
    assert_eq!(
        etcd.endpoints,
        [
            "http://198.18.10.2:2379",
            "http://198.18.10.3:2379",
            "http://198.18.10.4:2379"
        ]
    );
    assert_eq!(etcd.key_prefix, "/anyguard/prod");
    assert_eq!(etcd.lease_ttl, Duration::from_secs(5));
    assert_eq!(etcd.timeout, Duration::from_secs(1));
    assert!(etcd.auth.is_none() && etcd.tls.is_none());
    assert_eq!(fleet.min_sites("web"), 2);
    // The poll mesh is the default, and the example poll fleet uses it.
    let poll = Fleet::load(&path.with_file_name("fleet.toml")).unwrap();
    assert_eq!(poll.backend, BackendSettings::Poll);
}

#[test]
fn etcd_settings_errors_name_file_line_column_and_key() {
    let site = "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    assert_eq!(
        messages(&format!("backend = \"consul\"\n{site}")),
        [r#"fleet.toml:1:11: backend: unknown backend "consul" ("poll" or "etcd")"#]
    );
    assert_eq!(
        messages(&format!("backend = \"etcd\"\n{site}")),
        [r#"fleet.toml:1:11: backend: backend = "etcd" needs an [etcd] table with endpoints"#]
    );
    let m = messages(&format!(
        "{site}[etcd]\nendpoints = [\"http://198.18.10.2:2379\"]\n"
    ));
    assert_eq!(
        m,
        [
            r#"fleet.toml:4:1: etcd: an [etcd] table needs backend = "etcd" (the fleet uses the poll mesh)"#
        ]
    );
    let text = format!(
        "backend = \"etcd\"\n{site}[etcd]\nendpoints = [\"https://198.18.10.2:2379\", \"http://198.18.10.3\", \"ftp://x:1\"]\n\
         key_prefix = \"anyguard/\"\nlease_ttl = \"1500ms\"\ntimeout = \"2s\"\nuser = \"anyguard\"\n"
    );
    assert_eq!(
        messages(&text),
        [
            r#"fleet.toml:6:14: etcd.endpoints[0]: invalid endpoint "https://198.18.10.2:2379": https:// needs [etcd.tls] with ca_file"#,
            r#"fleet.toml:6:42: etcd.endpoints[1]: invalid endpoint "http://198.18.10.3": missing port (etcd clients usually use 2379)"#,
            r#"fleet.toml:6:64: etcd.endpoints[2]: invalid endpoint "ftp://x:1": scheme "ftp" is not supported, use http or https"#,
            r#"fleet.toml:7:14: etcd.key_prefix: "anyguard/" must start with '/' and not end with '/' (e.g. "/anyguard/prod")"#,
            r#"fleet.toml:8:13: etcd.lease_ttl: must be whole seconds from 2s to 60s, got "1500ms""#,
            "fleet.toml:10:8: etcd.user: needs etcd.password_file",
        ]
    );
    // Unknown keys in [etcd] and [etcd.tls].
    for table in [
        "[etcd]\nendpoints = [\"http://198.18.10.2:2379\"]\n",
        "[etcd]\nendpoints = [\"https://198.18.10.2:2379\"]\n[etcd.tls]\nca_file = \"ca.pem\"\n",
    ] {
        let m = messages(&format!("backend = \"etcd\"\n{site}{table}bogus = 1\n"));
        assert!(m[0].contains("unknown field `bogus`"), "{m:?}");
    }
}

#[test]
fn etcd_tls_and_password_files_are_read_relative_to_the_fleet_file() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_path = dir.path().join("fleet.toml");
    let site = "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    std::fs::write(dir.path().join("ca.pem"), "CA PEM\n").unwrap();
    std::fs::write(dir.path().join("client.pem"), "CERT PEM\n").unwrap();
    std::fs::write(dir.path().join("client.key"), "KEY PEM\n").unwrap();
    std::fs::write(dir.path().join("etcd.password"), "s3cret\nignored\n").unwrap();
    let etcd = "backend = \"etcd\"\n[etcd]\nendpoints = [\"https://198.18.10.2:2379\"]\n\
                user = \"anyguard\"\npassword_file = \"etcd.password\"\n\
                [etcd.tls]\nca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"\nserver_name = \"etcd.example.net\"\n";
    std::fs::write(&fleet_path, format!("{etcd}{site}")).unwrap();
    let fleet = Fleet::load(&fleet_path).unwrap();
    let BackendSettings::Etcd(e) = &fleet.backend else {
        panic!("{:?}", fleet.backend)
    };
    let auth = e.auth.as_ref().unwrap();
    assert_eq!(
        (auth.user.as_str(), auth.password.as_str()),
        ("anyguard", "s3cret")
    );
    assert!(
        !format!("{fleet:?}").contains("s3cret"),
        "the password is never printed"
    );
    let tls = e.tls.as_ref().unwrap();
    assert_eq!(tls.ca_file, dir.path().join("ca.pem"));
    assert_eq!(tls.ca_pem, b"CA PEM\n");
    let id = tls.identity.as_ref().unwrap();
    assert_eq!(
        (id.cert_pem.as_slice(), id.key_pem.as_slice()),
        (&b"CERT PEM\n"[..], &b"KEY PEM\n"[..])
    );
    assert_eq!(tls.server_name.as_deref(), Some("etcd.example.net"));

    std::fs::remove_file(dir.path().join("client.key")).unwrap();
    let err = Fleet::load(&fleet_path).unwrap_err().to_string();
    let (shown, d) = (fleet_path.display(), dir.path().display());
    assert_eq!(
        err,
        format!("{shown}:9:12: etcd.tls.key_file: cannot read {d}/client.key: No such file or directory (os error 2)")
    );
    let no_key = format!("{etcd}{site}").replace("key_file = \"client.key\"\n", "");
    std::fs::write(&fleet_path, no_key).unwrap();
    let err = Fleet::load(&fleet_path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{shown}:8:13: etcd.tls.cert_file: needs etcd.tls.key_file")
    );
    // An http:// endpoint with [etcd.tls] is refused (the TLS settings would go unused).
    let plain = format!("{etcd}{site}").replace("https://", "http://");
    std::fs::write(&fleet_path, plain).unwrap();
    let err = Fleet::load(&fleet_path).unwrap_err().to_string();
    assert!(err.contains("etcd.endpoints[0]: invalid endpoint \"http://198.18.10.2:2379\": http:// with [etcd.tls]: use https://"), "{err}");
}
