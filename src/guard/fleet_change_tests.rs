//! Fleet reload tests: the change summary, when the poller restarts, the view carried over.

use std::time::{Duration, Instant};

use super::*;
use crate::guard::report::{SiteReport, REPORT_VERSION};
use crate::guard::view::PollOutcome;

fn fleet(sites: &[(&str, &str)], extra: &str) -> Fleet {
    let mut t = String::from("[poll]\ninterval = \"1s\"\ntimeout = \"500ms\"\n");
    for (name, host) in sites {
        t.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\nstatus_url = \"http://{host}:9180/status\"\n"
        ));
    }
    t.push_str(extra);
    Fleet::parse(&t, "fleet.toml").unwrap()
}

const ABC: [(&str, &str); 3] = [
    ("a", "198.18.1.2"),
    ("b", "198.18.2.2"),
    ("c", "198.18.3.2"),
];
const WEB2: &str = "\n[[service]]\nname = \"web\"\nmin_sites = 2\n";

#[test]
fn an_unchanged_fleet_is_an_empty_change_and_keeps_the_poller() {
    let f = fleet(&ABC, WEB2);
    let change = FleetChange::between(&f, "a", &f.clone(), "a");
    assert!(change.is_empty());
    assert!(!change.restarts_poller);
    assert_eq!(
        change.describe(),
        format!("fleet unchanged ({})", short(&fleet_digest(&f)))
    );
}

#[test]
fn min_sites_alone_changes_without_restarting_the_poller() {
    let old = fleet(&ABC, WEB2);
    let new = fleet(&ABC, "\n[[service]]\nname = \"web\"\nmin_sites = 3\n[[service]]\nname = \"dns\"\nmin_sites = 2\n");
    let change = FleetChange::between(&old, "a", &new, "a");
    assert!(!change.restarts_poller);
    assert_eq!(
        change.min_sites_changed,
        [("web".to_owned(), 2, 3), ("dns".to_owned(), 1, 2)]
    );
    assert!(
        change
            .describe()
            .ends_with(": web min_sites 2 → 3; dns min_sites 1 → 2"),
        "{}",
        change.describe()
    );
}

#[test]
fn sites_added_removed_moved_and_reordered_restart_the_poller() {
    let old = fleet(&ABC, WEB2);
    let new = fleet(
        &[
            ("c", "198.18.3.2"),
            ("a", "198.18.1.2"),
            ("d", "198.18.4.2"),
        ],
        WEB2,
    );
    let change = FleetChange::between(&old, "a", &new, "a");
    assert!(change.restarts_poller);
    assert_eq!(change.sites_added, ["d"]);
    assert_eq!(change.sites_removed, ["b"]);
    assert!(change.reordered, "c now comes before a");
    assert!(change.urls_changed.is_empty());
    let d = change.describe();
    assert!(
        d.ends_with(": sites added d; sites removed b; site order (hold ranks)"),
        "{d}"
    );

    let moved = fleet(
        &[
            ("a", "198.18.1.2"),
            ("b", "198.18.2.9"),
            ("c", "198.18.3.2"),
        ],
        WEB2,
    );
    let change = FleetChange::between(&old, "a", &moved, "a");
    assert!(change.restarts_poller);
    assert_eq!(change.urls_changed, ["b"]);
    assert!(!change.reordered);

    let slower = Fleet::parse(
        "[poll]\ninterval = \"2s\"\n[[site]]\nname = \"a\"\nstatus_url = \"http://198.18.1.2:9180/status\"\n\
         [[site]]\nname = \"b\"\nstatus_url = \"http://198.18.2.2:9180/status\"\n\
         [[site]]\nname = \"c\"\nstatus_url = \"http://198.18.3.2:9180/status\"\n[[service]]\nname = \"web\"\nmin_sites = 2\n",
        "fleet.toml",
    )
    .unwrap();
    let change = FleetChange::between(&old, "a", &slower, "a");
    assert!(change.restarts_poller && change.poll_changed);
    assert!(change.describe().ends_with(": poll timing"));
}

#[test]
fn renaming_this_site_restarts_the_poller() {
    let old = fleet(&ABC, WEB2);
    let change = FleetChange::between(&old, "a", &old.clone(), "b");
    assert!(!change.is_empty());
    assert!(change.restarts_poller, "b is now local and a is polled");
    assert_eq!(change.renamed, Some(("a".to_owned(), "b".to_owned())));
}

fn report(site: &str) -> SiteReport {
    SiteReport {
        version: REPORT_VERSION,
        site: site.to_owned(),
        generation: 1,
        fleet_digest: None,
        services: Vec::new(),
    }
}

#[test]
fn the_carried_view_keeps_every_report_of_a_site_that_stays_with_its_request_time() {
    let old = fleet(&ABC, WEB2);
    let t0 = Instant::now();
    let mut view = old.view_for("a");
    view.record(
        "b",
        PollOutcome {
            requested_at: t0,
            result: Ok(report("b")),
        },
        t0,
    );
    view.record(
        "c",
        PollOutcome {
            requested_at: t0 + Duration::from_millis(5),
            result: Ok(report("c")),
        },
        t0 + Duration::from_millis(5),
    );
    // c first, b moved to another URL, d new.
    let new = fleet(
        &[
            ("c", "198.18.3.2"),
            ("a", "198.18.1.2"),
            ("b", "198.18.2.9"),
            ("d", "198.18.4.2"),
        ],
        WEB2,
    );
    let carried = carry_view(&view, &new, "a");
    let got: Vec<(&str, usize, Option<Instant>)> = carried
        .sites
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.rank,
                s.last_poll.as_ref().map(|p| p.requested_at),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c", 0, Some(t0 + Duration::from_millis(5))),
            ("b", 2, Some(t0)),
            ("d", 3, None),
        ]
    );
    assert_eq!(
        carried.site("b").unwrap().last_poll,
        view.site("b").unwrap().last_poll
    );

    // A site removed from the fleet is forgotten.
    let without_c = fleet(&[("a", "198.18.1.2"), ("b", "198.18.2.2")], WEB2);
    let carried = carry_view(&view, &without_c, "a");
    assert_eq!(carried.sites.len(), 1);
    assert!(carried.site("c").is_none());
}
