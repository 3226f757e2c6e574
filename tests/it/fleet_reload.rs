//! The fleet file reloads with the site config, through the real binary (issue #11 item 5):
//! an edited fleet file takes effect on SIGHUP (min_sites, sites, poll timing, shown in
//! `/status`), a broken one is rejected with file:line:column and changes nothing, and two
//! daemons running different fleet files show the mismatch in `/status` and `/metrics`.
//!
//! The other sites are the library's real status server on 127.0.0.1:0 (`OtherSite`) or
//! a second real daemon; every process is stopped by PID and every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyguard::guard::digest::fleet_digest;
use anyguard::guard::fleet::Fleet;
use anyguard::guard::report::Intent;
use anyguard::status::model::StatusDocument;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::guard_cli::{
    closed_port, fleet_toml, report_doc, service, Daemon, Files, OtherSite, WAIT, WEB,
};
use crate::httpd::free_port;

/// The digest a daemon publishes for the fleet file at `path`.
fn digest_of(path: &Path) -> String {
    fleet_digest(&Fleet::load(path).expect("test fleet file loads"))
}

/// A site config for `site`: status on `listen`, one upstream that is never reached (a
/// closed loopback port; the config guard only needs a peer for the family), web with a
/// check that always passes, and `extra` lines in web.
fn site_config(site: &str, listen: &str, upstream: u16, extra: &str) -> String {
    site_config_with(site, listen, upstream, extra, &["true"])
}

/// [`site_config`] with web's check running `argv`.
fn site_config_with(site: &str, listen: &str, upstream: u16, extra: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let check = format!(
        "type = \"command\"\nargv = [{}]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1",
        argv.join(", ")
    );
    let check = check.as_str();
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"{listen}\"\n\n\
         [fleet]\npath = \"fleet-{site}.toml\"\nsite = \"{site}\"\n\n[[peer]]\nname = \"upstream\"\n\
         address = \"127.0.0.1\"\nport = {upstream}\nremote_asn = 65000\nmode = \"active\"\n\n{}",
        service("web", &[WEB], &format!("drain_time = \"100ms\"\n{extra}"), check)
    )
}

fn other_names(doc: &StatusDocument) -> Vec<String> {
    doc.fleet
        .as_ref()
        .map(|f| f.sites.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default()
}

fn announcing(doc: &StatusDocument) -> Vec<String> {
    doc.services
        .first()
        .map(|s| s.guard.sites_announcing.clone())
        .unwrap_or_default()
}

/// Sends SIGHUP and waits for this reload attempt's outcome to show in `/status`.
async fn sighup(daemon: &Daemon, what: &str) -> StatusDocument {
    let before = daemon
        .doc()
        .await
        .daemon
        .last_reload
        .map(|r| r.at)
        .unwrap_or_default();
    // Reload times are RFC 3339 with milliseconds: one apart from the last.
    tokio::time::sleep(Duration::from_millis(5)).await;
    daemon.signal(Signal::SIGHUP);
    daemon
        .doc_until(what, |d| {
            d.daemon
                .last_reload
                .as_ref()
                .is_some_and(|r| r.at != before)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_fleet_file_takes_effect_on_sighup_and_a_broken_one_changes_nothing() {
    let files = Files::new();
    let fleet_path = files.dir().join("fleet-a.toml");
    let self_url = format!("http://127.0.0.1:{}/status", closed_port().await);
    let fleet = |sites: &[(&str, String)], min_sites: u32, interval: &str| {
        fleet_toml(
            sites,
            &[&format!("name = \"web\"\nmin_sites = {min_sites}")],
        )
        .replace("interval = \"1s\"", &format!("interval = \"{interval}\""))
        .replace("timeout = \"500ms\"", "timeout = \"200ms\"")
    };
    // The other sites publish the digest of the second fleet file, so they show as
    // "different" first and "same" once a reloaded it.
    let (b, c) = (
        OtherSite::start("b", true).await,
        OtherSite::start("c", true).await,
    );
    let d_site = OtherSite::start("d", true).await;
    let first = fleet(
        &[("a", self_url.clone()), ("b", b.url()), ("c", c.url())],
        2,
        "1s",
    );
    let second = fleet(
        &[("a", self_url.clone()), ("b", b.url()), ("d", d_site.url())],
        3,
        "300ms",
    );
    std::fs::write(&fleet_path, &second).expect("write");
    let second_digest = digest_of(&fleet_path);
    std::fs::write(&fleet_path, &first).expect("write");
    let first_digest = digest_of(&fleet_path);
    assert_ne!(first_digest, second_digest);
    let b = other_site_from(b, "b", &second_digest);
    let c = other_site_from(c, "c", &first_digest);
    let d_site = other_site_from(d_site, "d", &second_digest);

    let upstream = closed_port().await;
    let config_path = files.write("a.toml", &site_config("a", "127.0.0.1:0", upstream, ""));
    let daemon = Daemon::start(&config_path).await;
    let doc = daemon
        .doc_until("web up, b and c announcing", |d| {
            d.services.first().is_some_and(|s| s.state == "up") && announcing(d) == ["b", "c"]
        })
        .await;
    let f = doc.fleet.clone().expect("fleet status");
    assert_eq!(f.digest, first_digest);
    assert_eq!(
        doc.guard.as_ref().and_then(|g| g.fleet_digest.clone()),
        Some(first_digest.clone()),
        "the report carries the digest"
    );
    assert_eq!(f.source, fleet_path.display().to_string());
    assert_eq!(f.poll_interval_ms, 1000);
    assert_eq!(other_names(&doc), ["b", "c"]);
    assert_eq!(
        f.mismatch,
        ["b"],
        "b publishes the second fleet's digest: {f:#?}"
    );
    assert_eq!(doc.services[0].guard.min_sites, 2);

    // With min_sites 2 and b and c announcing, taking a out of service is accepted.
    files.write(
        "a.toml",
        &site_config("a", "127.0.0.1:0", upstream, "disabled = true"),
    );
    let doc = sighup(&daemon, "the disabling reload").await;
    assert_eq!(
        doc.daemon.last_reload.as_ref().map(|r| r.ok),
        Some(true),
        "{doc:#?}"
    );
    files.write("a.toml", &site_config("a", "127.0.0.1:0", upstream, ""));
    let doc = sighup(&daemon, "the re-enabling reload").await;
    assert_eq!(
        doc.daemon.config_generation, 3,
        "{:#?}",
        doc.daemon.last_reload
    );
    daemon
        .doc_until("web up again", |d| {
            d.services.first().is_some_and(|s| s.state == "up")
        })
        .await;

    // The fleet file is edited: min_sites 3, c replaced by d, polls every 300 ms. The site
    // config is unchanged; SIGHUP re-reads both.
    std::fs::write(&fleet_path, &second).expect("write");
    let doc = sighup(&daemon, "the fleet reload").await;
    let reload = doc.daemon.last_reload.clone().expect("last_reload");
    assert!(reload.ok, "{reload:#?}");
    assert_eq!(doc.daemon.config_generation, 4);
    let f = doc.fleet.clone().expect("fleet status");
    assert_eq!(f.digest, second_digest);
    assert_eq!(f.poll_interval_ms, 300);
    assert_eq!(f.poll_timeout_ms, 200);
    assert_eq!(other_names(&doc), ["b", "d"]);
    assert_eq!(doc.services[0].guard.min_sites, 3);
    // b's report survived the reload (no poll needed to count it), d is polled by the
    // restarted poller, and now only c (gone from the fleet) ran another file.
    let doc = daemon
        .doc_until("d polled, agreeing", |d| {
            announcing(d) == ["b", "d"]
                && d.fleet.as_ref().is_some_and(|f| {
                    f.mismatch.is_empty() && f.sites.iter().all(|s| s.fleet == "same")
                })
        })
        .await;
    assert_eq!(
        doc.guard.as_ref().and_then(|g| g.fleet_digest.clone()),
        Some(second_digest.clone())
    );
    let logged = daemon.log.lock().expect("log").clone();
    assert!(
        logged.iter().any(|l| l.contains("fleet file reloaded")
            && l.contains("sites added d; sites removed c")
            && l.contains("poll timing")
            && l.contains("web min_sites 2 → 3")),
        "{logged:#?}"
    );

    // The reload accepted above is now rejected: with min_sites 3, a is needed.
    files.write(
        "a.toml",
        &site_config("a", "127.0.0.1:0", upstream, "disabled = true"),
    );
    let doc = sighup(&daemon, "the rejected reload").await;
    let reload = doc.daemon.last_reload.clone().expect("last_reload");
    assert!(!reload.ok, "{reload:#?}");
    assert_eq!(
        reload.errors,
        [format!(
            "all-sites guard: service web prefix {WEB} would be announced by 2 of 3 sites \
             (min_sites 3): announced by b, d; a: service disabled"
        )]
    );
    assert_eq!(doc.daemon.config_generation, 4);
    assert_eq!(doc.services[0].state, "up");

    // A broken fleet file: the whole reload is rejected with file:line:column, nothing
    // changes (same generation, digest, timing, sites).
    let broken = second.replace("min_sites = 3", "min_sites = 0");
    std::fs::write(&fleet_path, &broken).expect("write");
    files.write(
        "a.toml",
        &site_config("a", "127.0.0.1:0", upstream, "hold_down = \"2s\""),
    );
    let doc = sighup(&daemon, "the broken fleet reload").await;
    let reload = doc.daemon.last_reload.clone().expect("last_reload");
    let line = broken
        .lines()
        .position(|l| l == "min_sites = 0")
        .expect("line")
        + 1;
    assert_eq!(
        reload.errors,
        [format!(
            "{}:{line}:13: service[0].min_sites: must be between 1 and the number of sites \
             (3), got 0",
            fleet_path.display()
        )]
    );
    assert_eq!(doc.daemon.config_generation, 4);
    let f = doc.fleet.clone().expect("fleet status");
    assert_eq!(
        (f.digest.as_str(), f.poll_interval_ms),
        (second_digest.as_str(), 300)
    );
    assert_eq!(other_names(&doc), ["b", "d"]);
    assert_eq!(doc.services[0].guard.min_sites, 3);

    // Removing [fleet] by reload would turn the guard off: refused.
    std::fs::write(&fleet_path, &second).expect("write");
    let without = site_config("a", "127.0.0.1:0", upstream, "")
        .replace("[fleet]\npath = \"fleet-a.toml\"\nsite = \"a\"\n", "");
    files.write("a.toml", &without);
    let doc = sighup(&daemon, "the reload without [fleet]").await;
    let reload = doc.daemon.last_reload.clone().expect("last_reload");
    assert_eq!(
        reload.errors,
        [
            "[fleet] cannot be removed by reload: that would turn the all-sites guard off while \
          services are announced; restart the daemon with the new config to run without the guard"
        ]
    );
    // And a site the new fleet does not list.
    files.write(
        "a.toml",
        &site_config("a", "127.0.0.1:0", upstream, "").replace("site = \"a\"", "site = \"zz\""),
    );
    let doc = sighup(&daemon, "the reload naming an unknown site").await;
    let reload = doc.daemon.last_reload.clone().expect("last_reload");
    assert_eq!(
        reload.errors,
        [format!(
            "site \"zz\" is not listed in the fleet {} (sites: a, b, d)",
            fleet_path.display()
        )]
    );
    assert_eq!(doc.daemon.config_generation, 4);
    assert!(doc.guard.is_some() && doc.fleet.is_some());

    // Another `[fleet] path` is accepted: the same fleet elsewhere keeps its digest (the
    // path is no part of it).
    let moved = files.write("fleet-moved.toml", &format!("# moved\n{second}"));
    files.write(
        "a.toml",
        &site_config("a", "127.0.0.1:0", upstream, "")
            .replace("path = \"fleet-a.toml\"", "path = \"fleet-moved.toml\""),
    );
    let doc = sighup(&daemon, "the reload moving the fleet file").await;
    assert!(
        doc.daemon.last_reload.as_ref().is_some_and(|r| r.ok),
        "{doc:#?}"
    );
    assert_eq!(doc.daemon.config_generation, 5);
    let f = doc.fleet.clone().expect("fleet status");
    assert_eq!(f.source, moved.display().to_string());
    assert_eq!(f.digest, second_digest);

    drop((b, c, d_site));
    daemon.stop().await;
}

/// `site` (already serving) publishing `digest` from now on.
fn other_site_from(site: OtherSite, name: &str, digest: &str) -> OtherSite {
    let mut doc = report_doc(name, true, Intent::None);
    if let Some(g) = doc.guard.as_mut() {
        std::sync::Arc::make_mut(g).fleet_digest = Some(digest.to_owned());
    }
    site.doc.send_replace(doc);
    site
}

/// `GET path` on `addr` with a fresh connection; the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let fetch = async {
        let mut sock = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        sock.write_all(request.as_bytes()).await.expect("send");
        let mut text = String::new();
        sock.read_to_string(&mut text).await.expect("read");
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };
    tokio::time::timeout(WAIT, fetch)
        .await
        .expect("GET in time")
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_with_different_fleet_files_show_the_mismatch_in_status_and_metrics() {
    let files = Files::new();
    let (port_a, port_b) = (free_port(), free_port());
    let sites = [
        ("a", format!("http://127.0.0.1:{port_a}/status")),
        ("b", format!("http://127.0.0.1:{port_b}/status")),
    ];
    let text = fleet_toml(&sites, &["name = \"web\"\nmin_sites = 1"]);
    files.write("fleet-a.toml", &text);
    // b's copy was re-rendered by config management: comments, spacing, another spelling
    // of the same timing. Same meaning, same digest.
    let b_text = format!(
        "# rendered for b\n{}",
        text.replace(
            "interval = \"1s\"",
            "interval   = \"1000ms\"  # every second"
        )
    );
    files.write("fleet-b.toml", &b_text);
    let upstream = closed_port().await;
    let a_cfg = files.write(
        "a.toml",
        &site_config("a", &format!("127.0.0.1:{port_a}"), upstream, ""),
    );
    let b_cfg = files.write(
        "b.toml",
        &site_config("b", &format!("127.0.0.1:{port_b}"), upstream, ""),
    );
    let a = Daemon::start(&a_cfg).await;
    let b = Daemon::start(&b_cfg).await;
    let agree = |other: &'static str| {
        move |d: &StatusDocument| {
            d.fleet.as_ref().is_some_and(|f| {
                f.mismatch.is_empty()
                    && f.sites.iter().any(|s| s.name == other && s.fleet == "same")
            })
        }
    };
    let doc_a = a.doc_until("a agreeing with b", agree("b")).await;
    let doc_b = b.doc_until("b agreeing with a", agree("a")).await;
    let digest_a = doc_a.fleet.expect("fleet").digest;
    assert_eq!(doc_b.fleet.expect("fleet").digest, digest_a);
    assert_eq!(
        metric(
            &http_get(a.status, "/metrics").await,
            "anyguard_guard_fleet_digest_mismatch{site=\"b\"}"
        ),
        Some(0.0)
    );

    // b gets a new fleet file (min_sites 2) and reloads; a still runs the old one.
    files.write(
        "fleet-b.toml",
        &b_text.replace("min_sites = 1", "min_sites = 2"),
    );
    let doc = sighup(&b, "b's fleet reload").await;
    assert!(
        doc.daemon.last_reload.as_ref().is_some_and(|r| r.ok),
        "{doc:#?}"
    );
    let digest_b = doc.fleet.expect("fleet").digest;
    assert_ne!(digest_b, digest_a);
    let differs = |other: &'static str| {
        move |d: &StatusDocument| d.fleet.as_ref().is_some_and(|f| f.mismatch == [other])
    };
    let doc_a = a.doc_until("a showing b's other fleet", differs("b")).await;
    let site_b = &doc_a.fleet.as_ref().expect("fleet").sites[0];
    assert_eq!(
        (
            site_b.name.as_str(),
            site_b.digest.as_deref(),
            site_b.fleet.as_str()
        ),
        ("b", Some(digest_b.as_str()), "different")
    );
    b.doc_until("b showing a's other fleet", differs("a")).await;
    let metrics_a = http_get(a.status, "/metrics").await;
    assert_eq!(
        metric(
            &metrics_a,
            "anyguard_guard_fleet_digest_mismatch{site=\"b\"}"
        ),
        Some(1.0),
        "{metrics_a}"
    );
    let info = format!(
        "anyguard_guard_fleet_info{{source=\"{}\",digest=\"{digest_a}\"}}",
        files.dir().join("fleet-a.toml").display()
    );
    assert_eq!(metric(&metrics_a, &info), Some(1.0), "{metrics_a}");
    assert_eq!(
        metric(
            &http_get(b.status, "/metrics").await,
            "anyguard_guard_fleet_digest_mismatch{site=\"a\"}"
        ),
        Some(1.0)
    );
    // `anyguard status` warns.
    let table = anyguard::status::client::run(&format!("http://{}", a.status), false, false)
        .await
        .expect("anyguard status");
    assert!(
        table.contains(&format!(
            "WARNING: sites run different fleet files: here {}, b {}",
            &digest_a[..12],
            &digest_b[..12]
        )),
        "{table}"
    );

    // The rollout completes: a gets the same file and reloads; the warning goes.
    files.write(
        "fleet-a.toml",
        &text.replace("min_sites = 1", "min_sites = 2"),
    );
    sighup(&a, "a's fleet reload").await;
    a.doc_until("a agreeing again", agree("b")).await;
    b.doc_until("b agreeing again", agree("a")).await;
    assert_eq!(
        metric(
            &http_get(a.status, "/metrics").await,
            "anyguard_guard_fleet_digest_mismatch{site=\"b\"}"
        ),
        Some(0.0)
    );

    a.stop().await;
    b.stop().await;
}

/// web's state in `/status` and its intent in the published report.
fn web_state(doc: &StatusDocument) -> (String, Option<Intent>) {
    (
        doc.services
            .first()
            .map(|s| s.state.clone())
            .unwrap_or_default(),
        doc.guard
            .as_ref()
            .and_then(|g| g.services.first())
            .map(|r| r.intent),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_service_stays_held_across_a_fleet_reload_and_a_lowered_min_sites_releases_it() {
    let files = Files::new();
    let fleet_path = files.dir().join("fleet-a.toml");
    let b = OtherSite::start("b", true).await;
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{}/status", closed_port().await),
        ),
        ("b", b.url()),
        (
            "c",
            format!("http://127.0.0.1:{}/status", closed_port().await),
        ),
    ];
    let fleet = |min_sites: u32, interval: &str| {
        fleet_toml(
            &sites,
            &[&format!("name = \"web\"\nmin_sites = {min_sites}")],
        )
        .replace("interval = \"1s\"", &format!("interval = \"{interval}\""))
        .replace("timeout = \"500ms\"", "timeout = \"200ms\"")
    };
    std::fs::write(&fleet_path, fleet(2, "1s")).expect("write");
    let healthy = files.write("healthy", "");
    let healthy_arg = healthy.display().to_string();
    let upstream = closed_port().await;
    let config = site_config_with(
        "a",
        "127.0.0.1:0",
        upstream,
        "",
        &["test", "-e", &healthy_arg],
    );
    let config_path = files.write("a.toml", &config);
    let daemon = Daemon::start(&config_path).await;
    daemon
        .doc_until("web up with b announcing", |d| {
            web_state(d).0 == "up" && announcing(d) == ["b"]
        })
        .await;

    // web fails: only b (one site) would be left for min_sites 2, so the guard holds it.
    std::fs::remove_file(&healthy).expect("remove");
    daemon
        .doc_until("web held", |d| {
            web_state(d) == ("held".to_owned(), Some(Intent::Held))
        })
        .await;

    // A fleet reload that restarts the poller (other timing) keeps the hold.
    std::fs::write(&fleet_path, fleet(2, "500ms")).expect("write");
    let doc = sighup(&daemon, "the timing reload").await;
    assert!(
        doc.daemon.last_reload.as_ref().is_some_and(|r| r.ok),
        "{doc:#?}"
    );
    assert_eq!(doc.fleet.as_ref().map(|f| f.poll_interval_ms), Some(500));
    assert_eq!(web_state(&doc), ("held".to_owned(), Some(Intent::Held)));
    // Several poll rounds later it is still held, never withdrawing.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let doc = daemon.doc().await;
        assert_eq!(
            web_state(&doc),
            ("held".to_owned(), Some(Intent::Held)),
            "{doc:#?}"
        );
    }

    // min_sites lowered to 1: b alone is enough now, and the held site withdraws through
    // the intent protocol.
    std::fs::write(&fleet_path, fleet(1, "500ms")).expect("write");
    let doc = sighup(&daemon, "the min_sites reload").await;
    assert!(
        doc.daemon.last_reload.as_ref().is_some_and(|r| r.ok),
        "{doc:#?}"
    );
    let doc = daemon
        .doc_until("web withdrawn", |d| {
            web_state(d) == ("down".to_owned(), Some(Intent::None))
        })
        .await;
    assert_eq!(doc.services[0].guard.min_sites, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_added_by_reload_starts_the_guard() {
    let files = Files::new();
    let b = OtherSite::start("b", true).await;
    let sites = [
        (
            "a",
            format!("http://127.0.0.1:{}/status", closed_port().await),
        ),
        ("b", b.url()),
    ];
    files.write(
        "fleet-a.toml",
        &fleet_toml(&sites, &["name = \"web\"\nmin_sites = 1"]),
    );
    let upstream = closed_port().await;
    let with = site_config("a", "127.0.0.1:0", upstream, "");
    let without = with.replace("[fleet]\npath = \"fleet-a.toml\"\nsite = \"a\"\n", "");
    assert_ne!(with, without);
    let config_path = files.write("a.toml", &without);
    let daemon = Daemon::start(&config_path).await;
    let doc = daemon.doc_until("web up", |d| web_state(d).0 == "up").await;
    assert!(doc.guard.is_none() && doc.fleet.is_none());
    assert_eq!(doc.services[0].guard.decision, "disabled");

    files.write("a.toml", &with);
    let doc = sighup(&daemon, "the reload adding [fleet]").await;
    assert!(
        doc.daemon.last_reload.as_ref().is_some_and(|r| r.ok),
        "{doc:#?}"
    );
    assert_eq!(doc.daemon.site.as_deref(), Some("a"));
    let doc = daemon
        .doc_until("the guard polling b", |d| announcing(d) == ["b"])
        .await;
    assert_eq!(
        doc.services[0].guard.decision, "allow",
        "{:#?}",
        doc.services[0].guard
    );
    assert!(doc.guard.as_ref().is_some_and(|g| g.fleet_digest.is_some()));
    assert_eq!(other_names(&doc), ["b"]);
    daemon.stop().await;
}
