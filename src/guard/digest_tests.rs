//! Fleet digest tests: what the canonical form ignores and what it does not.

use std::time::Instant;

use super::*;
use crate::guard::report::SiteReport;
use crate::guard::view::{PollFailure, PollOutcome};

const BASE: &str = r#"
[poll]
interval = "1s"
timeout = "500ms"

[[site]]
name = "a"
status_url = "http://198.18.1.2:9180/status"

[[site]]
name = "b"
status_url = "http://198.18.2.2:9180/status"

[[service]]
name = "web"
min_sites = 2
prefixes = ["203.0.113.0/24", "198.51.100.0/24"]

[[service]]
name = "dns"
"#;

fn digest(text: &str) -> String {
    fleet_digest(&Fleet::parse(text, "fleet.toml").unwrap())
}

#[test]
fn digest_is_sha256_hex_of_the_canonical_form() {
    let fleet = Fleet::parse(BASE, "fleet.toml").unwrap();
    let d = fleet_digest(&fleet);
    assert_eq!(d.len(), 64);
    assert!(d
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(
        canonical_form(&fleet),
        r#"{"canonical":2,"poll":{"interval_ns":1000000000,"timeout_ns":500000000,"stale_after_ns":3500000000,"intent_wait_ns":3000000000},"signed":false,"sites":[{"name":"a","status_url":"http://198.18.1.2:9180/status","report_url":"http://198.18.1.2:9180/fleet/report"},{"name":"b","status_url":"http://198.18.2.2:9180/status","report_url":"http://198.18.2.2:9180/fleet/report"}],"services":[{"name":"dns","min_sites":1,"prefixes":null},{"name":"web","min_sites":2,"prefixes":["198.51.100.0/24","203.0.113.0/24"]}]}"#
    );
    // The source path is no part of it: every site keeps the file where it likes.
    let elsewhere = Fleet::parse(BASE, "/etc/anyguard/fleet.toml").unwrap();
    assert_eq!(fleet_digest(&elsewhere), d);
}

#[test]
fn comments_whitespace_spelling_defaults_and_service_order_do_not_change_the_digest() {
    let base = digest(BASE);
    let variants = [
        // Comments and blank lines.
        BASE.replace("[poll]", "# edited by config management\n\n[poll]   # timing"),
        // Another spelling of the same duration.
        BASE.replace("interval = \"1s\"", "interval = \"1000ms\""),
        // The default stale_after written out.
        BASE.replace("[poll]\n", "[poll]\nstale_after = \"3500ms\"\n"),
        // min_sites = 1 written out for dns.
        BASE.replace("name = \"dns\"", "name = \"dns\"\nmin_sites = 1"),
        // Services in another order, prefixes in another order.
        BASE.replace(
            "[[service]]\nname = \"web\"\nmin_sites = 2\nprefixes = [\"203.0.113.0/24\", \"198.51.100.0/24\"]\n\n[[service]]\nname = \"dns\"\n",
            "[[service]]\nname = \"dns\"\n\n[[service]]\nname = \"web\"\nmin_sites = 2\nprefixes = [\"198.51.100.0/24\", \"203.0.113.0/24\"]\n",
        ),
    ];
    for v in &variants {
        assert_ne!(v, BASE, "the variant must differ from the base text");
        assert_eq!(digest(v), base, "{v}");
    }
}

#[test]
fn everything_the_guard_acts_on_changes_the_digest() {
    let base = digest(BASE);
    let a = "[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n";
    let b = "[[site]]\nname = \"b\"\nstatus_url = \"http://198.18.2.2:9180/status\"\n";
    let variants = [
        BASE.replace("timeout = \"500ms\"", "timeout = \"400ms\""),
        BASE.replace("min_sites = 2", "min_sites = 1"),
        BASE.replace("198.18.2.2:9180", "198.18.2.3:9180"),
        BASE.replace(", \"198.51.100.0/24\"", ""),
        // Site order is the hold rank.
        BASE.replace(&format!("{a}\n{b}"), &format!("{b}\n{a}")),
        BASE.replace("name = \"dns\"\n", "name = \"dns\"\n\n[[site]]\nname = \"c\"\nstatus_url = \"http://198.18.3.2:9180/status\"\n"),
    ];
    for v in &variants {
        assert_ne!(v, BASE);
        assert_ne!(digest(v), base, "{v}");
    }
}

fn view_with(reports: &[(&str, Result<Option<&str>, ()>)]) -> FleetView {
    let mut view = FleetView::unpolled(reports.iter().enumerate().map(|(i, (n, _))| (i + 1, *n)));
    let at = Instant::now();
    for (name, outcome) in reports {
        let result = match outcome {
            Ok(digest) => Ok(SiteReport {
                version: crate::guard::report::REPORT_VERSION,
                site: (*name).to_owned(),
                generation: 1,
                fleet_digest: digest.map(str::to_owned),
                services: Vec::new(),
            }),
            Err(()) => Err(PollFailure::Status(503)),
        };
        view.record(
            name,
            PollOutcome {
                requested_at: at,
                result,
            },
            at,
        );
    }
    view
}

#[test]
fn agreement_per_site_is_same_different_or_unknown() {
    let mut view = view_with(&[
        ("b", Ok(Some("d1"))),
        ("c", Ok(Some("d2"))),
        ("d", Ok(None)),
        ("e", Err(())),
    ]);
    view.sites.push(crate::guard::view::PeerSiteView {
        name: "f".into(),
        rank: 9,
        last_poll: None,
        failures: Default::default(),
        announcing: Default::default(),
    });
    let got: Vec<_> = digest_agreement(&view, "d1")
        .into_iter()
        .map(|(n, d, a)| (n, d, a.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("b", Some("d1"), "same"),
            ("c", Some("d2"), "different"),
            ("d", None, "unknown"),
            ("e", None, "unknown"),
            ("f", None, "unknown"),
        ]
    );
}
