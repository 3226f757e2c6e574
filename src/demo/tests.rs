//! Table tests of the demo's pure parts: the router's table and its line, the story's
//! expectations and progress, what it explains, the keys and the output style.

use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::interactive::{key_action, KeyAction};
use super::output::{Kind, Style};
use super::router::{render_table, RouterTable, TableChange};
use super::site::{SitePlan, MIN_SITES, PREFIX};
use super::story::{
    explain, site_changes, steps, Expect, Observation, Progress, SiteView, Step, Tick, STEP_TIMEOUT,
};
use crate::session::PeerEvent;
use crate::status::model::ReloadStatus;

const ABC: [&str; 3] = ["a", "b", "c"];

fn routes(peer: &str, routes: &[&str]) -> PeerEvent {
    PeerEvent::ServiceRoutes {
        peer: peer.into(),
        routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
    }
}

fn down(peer: &str) -> PeerEvent {
    PeerEvent::Down {
        peer: peer.into(),
        reason: "hold timer expired".into(),
    }
}

// ----- the router's table -------------------------------------------------------------------

#[test]
fn a_route_for_the_prefix_adds_a_path_and_its_withdrawal_removes_it() {
    let mut t = RouterTable::new(PREFIX, &ABC);
    let c = t.on_event(&routes("b", &["203.0.113.0/24"])).unwrap();
    assert_eq!(
        c,
        TableChange {
            paths: vec!["b".into()],
            gained: vec!["b".into()],
            lost: vec![],
        }
    );
    t.on_event(&routes("a", &["203.0.113.0/24"])).unwrap();
    assert_eq!(t.paths(), ["a", "b"], "in site order");
    // The same routes again: no change, nothing to print.
    assert_eq!(t.on_event(&routes("a", &["203.0.113.0/24"])), None);
    let c = t.on_event(&routes("a", &[])).unwrap();
    assert_eq!(c.paths, ["b"]);
    assert_eq!(c.lost, ["a"]);
}

#[test]
fn a_session_going_down_takes_its_sites_path_away() {
    let mut t = RouterTable::new(PREFIX, &ABC);
    t.on_event(&routes("c", &["203.0.113.0/24"]));
    let c = t.on_event(&down("c")).unwrap();
    assert!(c.paths.is_empty());
    assert_eq!(c.lost, ["c"]);
    // Down again (a reconnect that failed): nothing changed.
    assert_eq!(t.on_event(&down("c")), None);
}

#[test]
fn more_specifics_unknown_sessions_and_other_events_are_not_paths() {
    let mut t = RouterTable::new(PREFIX, &ABC);
    assert_eq!(t.on_event(&routes("a", &["203.0.113.128/25"])), None);
    assert_eq!(t.on_event(&routes("z", &["203.0.113.0/24"])), None);
    let established = PeerEvent::Established {
        peer: "a".into(),
        capabilities: vec![],
    };
    assert_eq!(t.on_event(&established), None);
    assert!(t.paths().is_empty());
    assert_eq!(t.prefix(), "203.0.113.0/24".parse::<IpNet>().unwrap());
    assert_eq!(t.sites(), ["a", "b", "c"]);
}

#[test]
fn the_table_line_shows_the_paths_per_site_and_what_changed() {
    let mut t = RouterTable::new(PREFIX, &ABC);
    let lines: Vec<String> = [
        routes("a", &["203.0.113.0/24"]),
        routes("c", &["203.0.113.0/24"]),
        routes("b", &["203.0.113.0/24"]),
        routes("c", &[]),
        down("a"),
    ]
    .iter()
    .filter_map(|e| t.on_event(e).map(|c| render_table(&t, &c)))
    .collect();
    assert_eq!(
        lines,
        [
            "router  203.0.113.0/24  1/3 paths  [a . .]  (a announced)",
            "router  203.0.113.0/24  2/3 paths  [a . c]  (c announced)",
            "router  203.0.113.0/24  3/3 paths  [a b c]  (b announced)",
            "router  203.0.113.0/24  2/3 paths  [a b .]  (c withdrawn)",
            "router  203.0.113.0/24  1/3 paths  [. b .]  (a withdrawn)",
        ]
    );
}

// ----- the story's expectations --------------------------------------------------------------

fn view(state: Option<&str>, removal: Option<&str>, reload: Option<bool>) -> SiteView {
    SiteView {
        state: state.map(Into::into),
        reason: format!("{} because", state.unwrap_or("gone")),
        removal: removal.map(Into::into),
        removal_reason: "withdrawing web would leave 1 of 3 sites announcing (min_sites 2)".into(),
        last_reload: reload.map(|ok| ReloadStatus {
            at: "2026-12-07T13:00:00.000Z".into(),
            ok,
            errors: if ok { vec![] } else { vec!["rejected".into()] },
        }),
    }
}

fn obs(paths: [bool; 3], sites: [SiteView; 3]) -> Observation {
    Observation {
        paths,
        sites,
        reload_before: Default::default(),
    }
}

fn up() -> SiteView {
    view(Some("up"), None, None)
}

#[test]
fn every_expectation_is_met_by_its_own_picture_only() {
    let all_up = obs([true; 3], [up(), up(), up()]);
    let c_down = obs(
        [true, true, false],
        [up(), up(), view(Some("down"), None, None)],
    );
    let held = obs(
        [true, true, false],
        [
            view(Some("held"), None, None),
            view(Some("held"), None, None),
            view(Some("down"), None, None),
        ],
    );
    let removal = |c: SiteView| {
        obs(
            [true, true, false],
            [
                view(None, Some("held"), Some(true)),
                view(None, Some("held"), Some(true)),
                c,
            ],
        )
    };
    let removal_held = removal(view(None, None, Some(true)));
    let recovered = obs(
        [true; 3],
        [
            view(Some("up"), None, Some(true)),
            view(Some("up"), None, Some(true)),
            view(Some("up"), None, Some(true)),
        ],
    );
    let cases: [(Expect, &Observation); 5] = [
        (Expect::AllUp, &all_up),
        (Expect::Withdrawn { site: 2 }, &c_down),
        (Expect::HealthHeld, &held),
        (Expect::RemovalHeld, &removal_held),
        (Expect::Recovered, &recovered),
    ];
    for (expect, picture) in &cases {
        for (other, _) in &cases {
            let met = other.met(picture, MIN_SITES);
            // AllUp also holds in the recovered picture (it only adds the reloads).
            let same = other == expect || (*other == Expect::AllUp && *expect == Expect::Recovered);
            assert_eq!(met, same, "{other:?} in the picture of {expect:?}");
        }
    }
}

#[test]
fn a_site_still_pending_or_a_third_path_is_not_the_guard_holding() {
    // c's removal still waits for reports: not settled yet.
    let pending = obs(
        [true, true, true],
        [
            view(None, Some("held"), Some(true)),
            view(None, Some("held"), Some(true)),
            view(None, Some("pending"), Some(true)),
        ],
    );
    assert!(!Expect::RemovalHeld.met(&pending, MIN_SITES));
    // Health: b up is not "held" (the story wants every site failing).
    let b_up = obs(
        [true, true, false],
        [
            view(Some("held"), None, None),
            up(),
            view(Some("down"), None, None),
        ],
    );
    assert!(!Expect::HealthHeld.met(&b_up, MIN_SITES));
    // A reload refused by the config guard keeps the route: that is holding too.
    let refused = obs(
        [true, true, false],
        [
            view(Some("up"), None, Some(false)),
            view(None, Some("held"), Some(true)),
            view(None, None, Some(true)),
        ],
    );
    assert!(Expect::RemovalHeld.met(&refused, MIN_SITES));
}

#[test]
fn a_push_counts_only_once_each_site_has_a_new_reload_outcome() {
    let mut o = obs(
        [true; 3],
        [
            view(Some("up"), None, Some(true)),
            view(Some("up"), None, Some(true)),
            view(Some("up"), None, Some(true)),
        ],
    );
    // The last reload each site had before the push is the one it still shows.
    o.reload_before = [0, 1, 2].map(|i| o.sites[i].last_reload.clone());
    assert!(!Expect::Recovered.met(&o, MIN_SITES));
    o.reload_before[1] = None;
    assert!(!Expect::Recovered.met(&o, MIN_SITES));
    o.reload_before = Default::default();
    assert!(Expect::Recovered.met(&o, MIN_SITES));
}

// ----- the story's progress ------------------------------------------------------------------

fn two_steps() -> Vec<Step> {
    steps().into_iter().take(2).collect()
}

#[test]
fn the_story_begins_waits_lingers_then_moves_on_and_finishes() {
    let t0 = Instant::now();
    let mut p = Progress::new(two_steps(), MIN_SITES);
    let linger = p.steps()[0].linger;
    let all_up = obs([true; 3], [up(), up(), up()]);
    let nothing = Observation::default();
    assert_eq!(p.poll(t0, &nothing), Tick::Begin(0));
    assert_eq!(p.current().map(|s| s.expect), Some(Expect::AllUp));
    assert_eq!(p.poll(t0 + Duration::from_secs(1), &nothing), Tick::Wait);
    assert_eq!(p.fewest_paths(), None);
    let met_at = t0 + Duration::from_secs(2);
    assert_eq!(p.poll(met_at, &all_up), Tick::Met(0));
    assert_eq!(p.fewest_paths(), Some(3));
    // Lingering: the step stays on screen for its time, whatever is seen.
    assert_eq!(p.poll(met_at + linger / 2, &nothing), Tick::Wait);
    assert_eq!(p.poll(met_at + linger, &all_up), Tick::Begin(1));
    let c_down = obs(
        [true, true, false],
        [up(), up(), view(Some("down"), None, None)],
    );
    p.on_paths(2);
    let t = met_at + linger + Duration::from_secs(1);
    assert_eq!(p.poll(t, &c_down), Tick::Met(1));
    let end = t + p.steps()[1].linger;
    assert_eq!(p.poll(end, &c_down), Tick::Finished);
    assert_eq!(p.poll(end, &c_down), Tick::Finished);
    assert_eq!(p.fewest_paths(), Some(2));
}

#[test]
fn a_step_not_reached_in_time_times_out() {
    let t0 = Instant::now();
    let mut p = Progress::new(two_steps(), MIN_SITES);
    assert_eq!(p.poll(t0, &Observation::default()), Tick::Begin(0));
    let just_before = t0 + STEP_TIMEOUT - Duration::from_millis(1);
    assert_eq!(p.poll(just_before, &Observation::default()), Tick::Wait);
    assert_eq!(
        p.poll(t0 + STEP_TIMEOUT, &Observation::default()),
        Tick::TimedOut(0)
    );
    assert_eq!(
        p.poll(t0 + STEP_TIMEOUT, &Observation::default()),
        Tick::Finished
    );
}

#[test]
fn paths_lost_before_every_site_was_up_do_not_count_and_later_dips_do() {
    let t0 = Instant::now();
    let mut p = Progress::new(two_steps(), MIN_SITES);
    p.poll(t0, &Observation::default());
    p.on_paths(1); // sessions still coming up
    assert_eq!(p.fewest_paths(), None);
    p.poll(t0, &obs([true; 3], [up(), up(), up()]));
    p.on_paths(1);
    p.on_paths(3);
    assert_eq!(p.fewest_paths(), Some(1));
}

#[test]
fn the_story_is_the_issues_and_every_site_fails_before_the_bad_config() {
    let s = steps();
    let expects: Vec<Expect> = s.iter().map(|s| s.expect).collect();
    assert_eq!(
        expects,
        [
            Expect::AllUp,
            Expect::Withdrawn { site: 2 },
            Expect::HealthHeld,
            Expect::AllUp,
            Expect::RemovalHeld,
            Expect::Recovered,
        ]
    );
    assert_eq!(s[2].health, [false; 3]);
    assert_eq!(s[4].push, Some(false));
    assert_eq!(s[5].push, Some(true));
    // Under a minute even if every step took its whole linger plus a few seconds.
    let lingers: Duration = s.iter().map(|s| s.linger).sum();
    assert!(lingers < Duration::from_secs(30), "{lingers:?}");
}

// ----- what the story explains ---------------------------------------------------------------

#[test]
fn the_held_steps_give_each_sites_reason_from_status() {
    let held = obs(
        [true, true, false],
        [
            view(Some("held"), None, None),
            view(Some("held"), None, None),
            view(Some("down"), None, None),
        ],
    );
    assert_eq!(
        explain(Expect::HealthHeld, &held, &ABC, 2),
        [
            "guard holds: the router keeps 2 paths (min_sites 2) though every check fails",
            "a: held because",
            "b: held because",
        ]
    );
    let removal = obs(
        [true, true, false],
        [
            view(None, Some("held"), Some(true)),
            view(Some("up"), None, Some(false)),
            view(None, None, Some(true)),
        ],
    );
    assert_eq!(
        explain(Expect::RemovalHeld, &removal, &ABC, 2),
        [
            "guard holds: the router keeps 2 paths (min_sites 2) though no site's config has the service",
            "a: removal held: withdrawing web would leave 1 of 3 sites announcing (min_sites 2)",
            "b: refused the config: rejected",
            "c: accepted the config and withdrew (the others confirmed announcing)",
        ]
    );
    assert_eq!(
        explain(Expect::Withdrawn { site: 2 }, &removal, &ABC, 2),
        ["c withdrawn: the router has 2 paths (min_sites 2)"]
    );
}

#[test]
fn site_changes_name_the_new_state_with_its_reason() {
    let before = [up(), up(), view(None, Some("held"), None)];
    let after = [up(), view(Some("held"), None, None), view(None, None, None)];
    assert_eq!(
        site_changes(&before, &after, &ABC),
        [
            ("b: service held (held because)".to_owned(), true),
            ("c: removal done: withdrawn".to_owned(), false)
        ]
    );
    let gone = [up(), up(), view(None, Some("pending"), None)];
    assert_eq!(
        site_changes(&[up(), up(), up()], &gone, &ABC),
        [
            ("c: service not configured".to_owned(), false),
            (
                "c: removal pending (withdrawing web would leave 1 of 3 sites announcing (min_sites 2))"
                    .to_owned(),
                true
            )
        ]
    );
    let back = [up(), up(), up()];
    assert_eq!(
        site_changes(&before, &back, &ABC),
        [
            ("c: service up (up because)".to_owned(), false),
            (
                "c: removal over: the service is configured again".to_owned(),
                false
            )
        ]
    );
    assert!(site_changes(&after, &after, &ABC).is_empty());
    let reloaded = [
        view(Some("up"), None, Some(true)),
        view(Some("up"), None, Some(false)),
        up(),
    ];
    assert_eq!(
        site_changes(&[up(), up(), up()], &reloaded, &ABC),
        [
            ("a: config reloaded".to_owned(), false),
            ("b: reload refused: rejected".to_owned(), true)
        ]
    );
}

// ----- keys, style, configs ------------------------------------------------------------------

#[test]
fn keys_map_to_actions() {
    let got: Vec<Option<KeyAction>> = b"abcCxsh?q \nz".iter().map(|b| key_action(*b)).collect();
    assert_eq!(
        got,
        [
            Some(KeyAction::Flip(0)),
            Some(KeyAction::Flip(1)),
            Some(KeyAction::Flip(2)),
            Some(KeyAction::Flip(2)),
            Some(KeyAction::ToggleConfig),
            Some(KeyAction::Show),
            Some(KeyAction::Help),
            Some(KeyAction::Help),
            Some(KeyAction::Quit),
            None,
            None,
            None,
        ]
    );
}

#[test]
fn plain_output_has_no_escape_codes_and_colour_has() {
    let at = Duration::from_millis(12_345);
    let plain = Style { colour: false };
    assert_eq!(
        plain.line(at, Kind::Step, "step 1/6"),
        "[ 12.3s] ==> step 1/6"
    );
    assert_eq!(plain.line(at, Kind::Good, "held"), "[ 12.3s]     ok: held");
    assert_eq!(
        plain.line(at, Kind::Bad, "late"),
        "[ 12.3s]     FAILED: late"
    );
    let colour = Style { colour: true }.line(at, Kind::RouterLow, "router");
    assert!(
        colour.contains("\x1b[1;31m") && colour.ends_with("\x1b[0m"),
        "{colour:?}"
    );
    assert_eq!(Style::router_kind(3, 3, 2), Kind::RouterFull);
    assert_eq!(Style::router_kind(2, 3, 2), Kind::RouterShort);
    assert_eq!(Style::router_kind(1, 3, 2), Kind::RouterLow);
}

#[test]
fn the_generated_site_configs_and_fleet_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.key"), "00".repeat(32)).unwrap();
    let fleet = super::site::fleet_toml(&[("a", 1), ("b", 2), ("c", 3)]);
    std::fs::write(dir.path().join("fleet.toml"), &fleet).unwrap();
    let plan = SitePlan {
        name: "b".into(),
        status_port: 2,
        router_port: 17900,
        target_url: "http://127.0.0.1:8080/healthz".into(),
    };
    for with_service in [true, false] {
        let path = dir.path().join("b.toml");
        std::fs::write(&path, plan.config_toml(with_service, 1)).unwrap();
        let c = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.services.len(), usize::from(with_service));
        assert_eq!(c.router_id.to_string(), "198.18.2.2");
        assert!(c.peers[0].ipv4, "the session keeps IPv4 without services");
        let f = crate::guard::fleet::Fleet::load(&dir.path().join("fleet.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.min_sites("web"), MIN_SITES);
    }
    assert_eq!(plan.status_url(), "http://127.0.0.1:2/status");
}

#[test]
fn a_port_base_gives_three_ports_and_must_leave_room() {
    assert_eq!(super::status_ports(Some(9280)).unwrap(), [9280, 9281, 9282]);
    assert!(super::status_ports(Some(65535)).is_err());
    let picked = super::status_ports(None).unwrap();
    assert!(picked[0] != picked[1] && picked[1] != picked[2] && picked[0] != picked[2]);
}
