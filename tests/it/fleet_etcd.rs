//! The etcd fleet backend through the real binary (issue #16): three daemons share one
//! real single-node etcd (Debian's `etcd-server`, `/usr/bin/etcd`, started here on
//! loopback ports from the OS with its own data directory, stopped by PID), each with a
//! fake BGP router on loopback that records what the daemon sends on the wire.
//!
//! - every site fails at once: exactly `min_sites` keep announcing (on the wire);
//! - a site whose lease expires (SIGSTOP) stops counting, and counts again when it
//!   comes back;
//! - etcd stopped mid-way: every withdrawal is held (nothing leaves the wire), loudly in
//!   `/status`; etcd back: the withdrawals go through the store, exactly `min_sites` stay;
//! - on a three-member cluster (also on loopback), the member a site is on SIGKILLed: the
//!   site moves to another member, and the decisions after go through the store.
//!
//! Skips loudly when `/usr/bin/etcd` is missing (`.ci/run` installs `etcd-server`).
//! Every wait is bounded; every process is stopped by PID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyguard::status::model::StatusDocument;
use anyguard_proto::{Message, UpdateMessage};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::fakepeer::{self, FakeError, FakePeer};
use crate::guard_cli::{service, Daemon, Files, WAIT, WEB};

const ETCD: &str = "/usr/bin/etcd";

/// A single-node etcd on loopback, stopped by PID on drop.
struct Etcd {
    child: Child,
    client_url: String,
    args: Vec<String>,
}

/// A free loopback port, from the OS.
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// Whether etcd is installed (a loud line when it is not).
fn etcd_installed() -> bool {
    let found = Path::new(ETCD).exists();
    if !found {
        eprintln!("SKIP: {ETCD} is missing (apt-get install etcd-server; .ci/run does)");
    }
    found
}

/// The command line of member `name` of the cluster `initial` (`name=peer URL,…`), on
/// loopback `client` and `peer` ports, its data in `dir`.
fn member_args(name: &str, dir: &Path, client: u16, peer: u16, initial: &str) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--listen-client-urls".into(),
        client_url.clone(),
        "--advertise-client-urls".into(),
        client_url,
        "--listen-peer-urls".into(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        peer_url,
        "--initial-cluster".into(),
        initial.into(),
        "--log-level".into(),
        "error".into(),
    ]
}

impl Etcd {
    /// `None` (and a loud line) when etcd is not installed.
    async fn start(dir: &Path) -> Option<Etcd> {
        if !etcd_installed() {
            return None;
        }
        let (client, peer) = (free_port().await, free_port().await);
        let args = member_args(
            "it",
            &dir.join("etcd-data"),
            client,
            peer,
            &format!("it=http://127.0.0.1:{peer}"),
        );
        let mut etcd = Etcd {
            child: spawn_etcd(&args),
            client_url: format!("http://127.0.0.1:{client}"),
            args,
        };
        etcd.wait_ready().await;
        Some(etcd)
    }

    async fn wait_ready(&mut self) {
        for _ in 0..100 {
            if let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(1),
                etcd_client::Client::connect([self.client_url.as_str()], None),
            )
            .await
            {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), c.get("health-probe", None)).await
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd at {} did not become ready", self.client_url);
    }

    /// SIGKILL by PID (a member that lost quorum can take seconds on SIGTERM).
    async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }

    /// Starts it again on the same ports and data.
    async fn restart(&mut self) {
        self.child = spawn_etcd(&self.args);
        self.wait_ready().await;
    }
}

/// A three-member etcd on loopback (ports from the OS, a data directory each), every
/// member stopped by PID.
struct Cluster {
    members: Vec<Etcd>,
}

impl Cluster {
    /// `None` (and a loud line) when etcd is not installed.
    async fn start(dir: &Path) -> Option<Cluster> {
        if !etcd_installed() {
            return None;
        }
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push((free_port().await, free_port().await));
        }
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let args = member_args(
                    &format!("m{i}"),
                    &dir.join(format!("etcd-m{i}")),
                    *client,
                    *peer,
                    &initial,
                );
                Etcd {
                    child: spawn_etcd(&args),
                    client_url: format!("http://127.0.0.1:{client}"),
                    args,
                }
            })
            .collect();
        // A member answers a read once a quorum has elected a leader.
        for m in &mut members {
            m.wait_ready().await;
        }
        Some(Cluster { members })
    }

    fn endpoints(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.client_url.as_str()).collect()
    }

    async fn kill(&mut self) {
        for m in &mut self.members {
            m.kill().await;
        }
    }
}

fn spawn_etcd(args: &[String]) -> Child {
    Command::new(ETCD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start etcd")
}

/// What one site's router holds, as the daemon told it (true = `WEB` announced), with
/// every change in order.
#[derive(Default)]
struct Rib {
    web: bool,
    changes: Vec<(Instant, bool)>,
}

/// One site: its daemon, the file its health check tests, its router's view.
struct Site {
    name: &'static str,
    daemon: Daemon,
    ok_file: PathBuf,
    rib: Arc<Mutex<Rib>>,
}

fn apply_update(rib: &Mutex<Rib>, u: &UpdateMessage) {
    let announced = u.nlri.iter().any(|p| p.to_string() == WEB);
    let withdrawn = u.withdrawn.iter().any(|p| p.to_string() == WEB);
    let mut r = rib.lock().expect("rib lock");
    let now = if announced {
        true
    } else if withdrawn {
        false
    } else {
        return;
    };
    if r.web != now {
        r.web = now;
        r.changes.push((Instant::now(), now));
    }
}

/// Reads the daemon's messages for as long as the session lives, answering with
/// KEEPALIVEs every second (bounded: one hour of turns at most).
fn watch_router(peer: FakePeer, rib: Arc<Mutex<Rib>>) {
    watch_router_every(peer, rib, Duration::from_secs(1));
}

/// [`watch_router`] with a KEEPALIVE every `keepalive` (each one wakes the daemon's loop).
fn watch_router_every(mut peer: FakePeer, rib: Arc<Mutex<Rib>>, keepalive: Duration) {
    tokio::spawn(async move {
        for _ in 0..3600 {
            match peer.recv_within(keepalive).await {
                Ok(Message::Update(u)) => apply_update(&rib, &u),
                Ok(_) | Err(FakeError::Timeout) => {}
                Err(_) => return,
            }
            peer.send(&Message::Keepalive).await;
        }
    });
}

fn fleet(endpoints: &[&str], prefix: &str, min_sites: usize) -> String {
    fleet_of(&["a", "b", "c"], endpoints, prefix, min_sites)
}

/// The fleet file of the sites `names` (in rank order) on `endpoints`.
fn fleet_of(names: &[&str], endpoints: &[&str], prefix: &str, min_sites: usize) -> String {
    let endpoints = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut t = format!(
        "backend = \"etcd\"\n\n[etcd]\nendpoints = [{endpoints}]\nkey_prefix = \"{prefix}\"\n\
         lease_ttl = \"2s\"\ntimeout = \"500ms\"\n"
    );
    for (i, s) in names.iter().enumerate() {
        // Nobody polls these with etcd; a port nobody listens on.
        t.push_str(&format!(
            "\n[[site]]\nname = \"{s}\"\nstatus_url = \"http://127.0.0.1:{}/status\"\n",
            9 + i
        ));
    }
    t.push_str(&format!(
        "\n[[service]]\nname = \"web\"\nmin_sites = {min_sites}\nprefixes = [\"{WEB}\"]\n"
    ));
    t
}

/// Site `name`'s config: one active peer on loopback `port`, `web` with a check that
/// passes while `ok_file` exists, and `extra` lines in the service.
fn site_config(name: &str, port: u16, ok_file: &Path, extra: &str) -> String {
    site_config_every(name, port, ok_file, extra, 200)
}

/// [`site_config`] with the check every `interval_ms`.
fn site_config_every(
    name: &str,
    port: u16,
    ok_file: &Path,
    extra: &str,
    interval_ms: u64,
) -> String {
    let check = format!(
        "type = \"command\"\nargv = [\"test\", \"-e\", \"{}\"]\ninterval = \"{interval_ms}ms\"\n\
         timeout = \"{}ms\"\nrise = 1\nfall = 1",
        ok_file.display(),
        (interval_ms * 3 / 4).min(150)
    );
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
         [fleet]\npath = \"fleet.toml\"\nsite = \"{name}\"\n\n[[peer]]\nname = \"upstream\"\n\
         address = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\nmode = \"active\"\n\
         hold_time = \"30s\"\n\n{}",
        service("web", &[WEB], extra, &check)
    )
}

/// `anyguard check --config` of site `name`'s config with `web` disabled: judged against
/// the other sites as the store shows them.
async fn check_disabling(files: &Files, name: &str) -> crate::guard_cli::Run {
    let path = files.write(
        &format!("{name}-off.toml"),
        &site_config(name, 9, &files.dir().join("unused"), "disabled = true"),
    );
    let path = path.display().to_string();
    crate::guard_cli::check(files.dir(), &["--config", &path]).await
}

/// Starts the three sites, each with its router, and waits until every one announces
/// `web` on the wire and the store shows all three announcing it.
async fn start_sites(files: &Files) -> Vec<Site> {
    start_named_sites(files, &["a", "b", "c"], 200).await
}

/// Starts the sites `names` as [`start_sites`] does, their checks every `interval_ms`.
async fn start_named_sites(files: &Files, names: &[&'static str], interval_ms: u64) -> Vec<Site> {
    let mut sites = Vec::new();
    for &name in names {
        let ok_file = files.write(&format!("ok-{name}"), "");
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = upstream.local_addr().expect("addr").port();
        let config = site_config_every(name, port, &ok_file, "", interval_ms);
        let path = files.write(&format!("{name}.toml"), &config);
        let daemon = Daemon::start(&path).await;
        let mut peer = FakePeer::accept(&upstream).await;
        peer.establish(fakepeer::open(
            65000,
            "198.18.0.1".parse().expect("id"),
            30,
            true,
            false,
        ))
        .await;
        let rib = Arc::new(Mutex::new(Rib::default()));
        watch_router(peer, Arc::clone(&rib));
        sites.push(Site {
            name,
            daemon,
            ok_file,
            rib,
        });
    }
    for s in &sites {
        wait_for(&format!("{} announcing on the wire", s.name), || {
            s.rib.lock().expect("rib").web
        })
        .await;
        s.daemon
            .doc_until("the store shows every site announcing web", |d| {
                store_sites(d) == names
            })
            .await;
    }
    sites
}

/// The sites the store says announce `WEB`, as this daemon's `/status` shows them.
fn store_sites(d: &StatusDocument) -> Vec<String> {
    d.fleet
        .as_ref()
        .and_then(|f| f.store.as_ref())
        .and_then(|s| s.prefixes.iter().find(|p| p.prefix == WEB))
        .map(|p| p.sites_announcing.clone())
        .unwrap_or_default()
}

fn guard_of(d: &StatusDocument) -> &anyguard::status::model::GuardStatus {
    &d.services
        .iter()
        .find(|s| s.name == "web")
        .expect("web in status")
        .guard
}

async fn wait_for(what: &str, pred: impl Fn() -> bool) {
    for _ in 0..(WAIT.as_millis() / 50) {
        if pred() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

fn on_wire(sites: &[Site]) -> Vec<&'static str> {
    sites
        .iter()
        .filter(|s| s.rib.lock().expect("rib").web)
        .map(|s| s.name)
        .collect()
}

/// The fewest sites announcing at any moment since `since`, replaying every router's
/// changes in time order (each router starts `since` announcing).
fn fewest_since(sites: &[Site], since: Instant) -> usize {
    let mut events: Vec<(Instant, usize, bool)> = Vec::new();
    for (i, s) in sites.iter().enumerate() {
        for (t, up) in &s.rib.lock().expect("rib").changes {
            if *t >= since {
                events.push((*t, i, *up));
            }
        }
    }
    events.sort_by_key(|e| e.0);
    let mut state: BTreeMap<usize, bool> = (0..sites.len()).map(|i| (i, true)).collect();
    let mut fewest = sites.len();
    for (_, i, up) in events {
        state.insert(i, up);
        fewest = fewest.min(state.values().filter(|v| **v).count());
    }
    fewest
}

fn signal(d: &Daemon, s: Signal) {
    let pid = d.child.id().expect("running");
    kill(Pid::from_raw(i32::try_from(pid).expect("pid")), s).expect("signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_site_failing_at_once_leaves_exactly_min_sites_and_an_expired_lease_stops_counting() {
    let files = Files::new();
    let Some(mut etcd) = Etcd::start(files.dir()).await else {
        return;
    };
    files.write("fleet.toml", &fleet(&[&etcd.client_url], "/it/fail", 2));
    let sites = start_sites(&files).await;
    // `anyguard check` reads the store: with b and c announcing, a may drop web.
    let run = check_disabling(&files, "a").await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stdout.contains("b: announcing web") && run.stdout.contains("c: announcing web"),
        "{run:#?}"
    );

    // Every health check fails within the same instant.
    let t0 = Instant::now();
    for s in &sites {
        std::fs::remove_file(&s.ok_file).expect("remove ok file");
    }
    // One site withdraws, two hold; then nothing moves for a while.
    wait_for("one site withdrawn", || on_wire(&sites).len() == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = on_wire(&sites);
    assert_eq!(kept.len(), 2, "exactly min_sites keep announcing: {kept:?}");
    assert_eq!(
        fewest_since(&sites, t0),
        2,
        "never fewer than min_sites on the wire"
    );
    let withdrawn = sites.iter().find(|s| !kept.contains(&s.name)).expect("one");
    let held: Vec<&Site> = sites.iter().filter(|s| kept.contains(&s.name)).collect();
    // Now a held site may not drop web: the store shows one other site announcing.
    let run = check_disabling(&files, held[0].name).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("would be announced by 1 of 3 sites (min_sites 2)")
            && run
                .stderr
                .contains(&format!("{}: not announcing", withdrawn.name)),
        "{run:#?}"
    );
    // As with the poll mesh's ranks: the later-ranked of the two counts the first-ranked
    // one (held, ranked before it); the first-ranked one does not count the later one, held
    // and ranked after it (it yields), so no withdrawal relies on a site that may itself
    // withdraw next.
    for (k, h) in held.iter().enumerate() {
        let d = h.daemon.doc().await;
        let g = guard_of(&d);
        assert_eq!(g.decision, "held", "{}: {g:?}", h.name);
        if k == 0 {
            assert!(
                g.reason.contains("would leave 0 of 3")
                    && g.reason
                        .contains(&format!("{}: held {WEB}, ranked after us", held[1].name)),
                "{g:?}"
            );
        } else {
            assert!(g.reason.contains("would leave 1 of 3"), "{g:?}");
        }
        let store = d
            .fleet
            .as_ref()
            .and_then(|f| f.store.as_ref())
            .expect("store");
        assert!(store.connected && store.lease_id.is_some(), "{store:?}");
    }
    let d = withdrawn.daemon.doc().await;
    let store = d
        .fleet
        .as_ref()
        .and_then(|f| f.store.as_ref())
        .expect("store");
    assert_eq!(d.fleet.as_ref().map(|f| f.backend.as_str()), Some("etcd"));
    assert_eq!(store.withdrawals_committed, 1, "{store:?}");
    assert!(
        store
            .last_txn
            .as_ref()
            .is_some_and(|t| t.outcome == "committed"),
        "{store:?}"
    );

    // A held site freezes: its lease expires and the others stop counting it.
    let (frozen, other) = (held[0], held[1]);
    signal(&frozen.daemon, Signal::SIGSTOP);
    other
        .daemon
        .doc_until("the frozen site's records gone from the store", |d| {
            !store_sites(d).iter().any(|s| s == frozen.name)
        })
        .await;
    // The withdrawn site recovers: the held one counts it, but not the frozen one, so it
    // keeps holding (with the frozen site counted it would have withdrawn).
    std::fs::write(&withdrawn.ok_file, "").expect("ok file");
    wait_for("the recovered site announcing", || {
        withdrawn.rib.lock().expect("rib").web
    })
    .await;
    let d = other
        .daemon
        .doc_until("the recovered site counted", |d| {
            guard_of(d).sites_announcing == [withdrawn.name]
        })
        .await;
    assert_eq!(guard_of(&d).decision, "held", "{:?}", guard_of(&d));
    assert!(
        guard_of(&d)
            .reason
            .contains(&format!("{}: no lease in etcd", frozen.name)),
        "{:?}",
        guard_of(&d)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(other.rib.lock().expect("rib").web, "still held");

    // The frozen site comes back: a new session, a new lease, its records again; now two
    // others count and one of the two sick sites withdraws.
    signal(&frozen.daemon, Signal::SIGCONT);
    wait_for("one of the sick sites withdrawn", || {
        on_wire(&sites).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(on_wire(&sites).len(), 2, "{:?}", on_wire(&sites));
    assert!(
        withdrawn.rib.lock().expect("rib").web,
        "the healthy one stays"
    );
    assert_eq!(fewest_since(&sites, t0), 2, "never fewer than min_sites");

    for s in sites {
        s.daemon.stop().await;
    }
    etcd.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sites_failing_at_once_settle_at_min_sites_through_the_store_and_a_conflict_shows_what_beat_it(
) {
    // Five sites, min_sites 2, every check failing in the same instant: the sites race
    // their `held` publications against each other's withdrawals, and a withdrawal that
    // relied on a record that changed meanwhile conflicts. Its transaction's else branch
    // reads the records it compared, so the site decides and tries again on what beat it
    // (shown in `last_txn.changed`) rather than on a snapshot the watch has not brought up
    // to it. Exactly two stay, held; each other site's withdrawal committed in etcd.
    let names = ["a", "b", "c", "d", "e"];
    let files = Files::new();
    let Some(mut etcd) = Etcd::start(files.dir()).await else {
        return;
    };
    files.write(
        "fleet.toml",
        &fleet_of(&names, &[&etcd.client_url], "/it/five", 2),
    );
    // Checks every 20 ms: the five notice within a few milliseconds of each other, so
    // their publications and withdrawals race.
    let sites = start_named_sites(&files, &names, 20).await;
    let t0 = Instant::now();
    for s in &sites {
        std::fs::remove_file(&s.ok_file).expect("remove ok file");
    }
    wait_for("three sites withdrawn", || on_wire(&sites).len() == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Which two stay depends on when each check notices (up to an interval apart): a
    // site that fails first may withdraw relying on sites not yet held.
    let kept = on_wire(&sites);
    assert_eq!(kept.len(), 2, "exactly min_sites keep announcing: {kept:?}");
    assert_eq!(fewest_since(&sites, t0), 2, "never fewer than min_sites");
    let mut conflicts = 0;
    for s in &sites {
        let d = s.daemon.doc().await;
        let g = guard_of(&d);
        let store = store_of(&d);
        conflicts += store.withdrawals_conflicted;
        if kept.contains(&s.name) {
            assert_eq!(g.decision, "held", "{}: {g:?}", s.name);
        } else {
            // Its one withdrawal went through the store (its reason now only says web is
            // not announced here).
            assert_eq!(store.withdrawals_committed, 1, "{}: {store:?}", s.name);
            assert_eq!(g.decision, "allow", "{}: {g:?}", s.name);
        }
        // Every conflict of the site was answered by its else branch's read: the latest
        // one names what beat it, records of the fleet's other sites as they were then.
        match &store.last_conflict {
            Some(t) => assert!(
                store.withdrawals_conflicted > 0
                    && t.outcome == "conflict"
                    && !t.changed.is_empty()
                    && t.changed.iter().all(|c| names
                        .iter()
                        .any(|n| *n != s.name && c.starts_with(&format!("{n}: ")))),
                "{}: {store:?}",
                s.name
            ),
            None => assert_eq!(store.withdrawals_conflicted, 0, "{}: {store:?}", s.name),
        }
    }
    eprintln!("five sites failing at once: {conflicts} withdrawal conflicts in all");

    for s in sites {
        s.daemon.stop().await;
    }
    etcd.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_stopped_every_withdrawal_is_held_loudly_until_it_is_back() {
    let files = Files::new();
    let Some(mut etcd) = Etcd::start(files.dir()).await else {
        return;
    };
    files.write("fleet.toml", &fleet(&[&etcd.client_url], "/it/outage", 1));
    let sites = start_sites(&files).await;

    etcd.kill().await;
    for s in &sites {
        s.daemon
            .doc_until("the store not connected", |d| {
                d.fleet
                    .as_ref()
                    .and_then(|f| f.store.as_ref())
                    .is_some_and(|s| !s.connected && s.error.is_some())
            })
            .await;
    }
    // Every site fails while etcd is down: nothing may leave the wire.
    let t0 = Instant::now();
    for s in &sites {
        std::fs::remove_file(&s.ok_file).expect("remove ok file");
    }
    for s in &sites {
        let d = s
            .daemon
            .doc_until("web held for etcd", |d| guard_of(d).decision == "held")
            .await;
        assert!(
            guard_of(&d).reason.contains("ETCD UNREACHABLE"),
            "{:?}",
            guard_of(&d)
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        on_wire(&sites).len(),
        3,
        "nothing withdrawn while etcd is down"
    );
    assert_eq!(fewest_since(&sites, t0), 3);
    let log = sites[0].daemon.log.lock().expect("log").join("\n");
    assert!(log.contains("ETCD UNREACHABLE"), "the alarm is logged");

    // etcd is back: the sites reconnect and withdraw through the store, min_sites 1 stays.
    etcd.restart().await;
    wait_for("two sites withdrawn", || on_wire(&sites).len() == 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(on_wire(&sites).len(), 1, "{:?}", on_wire(&sites));
    assert_eq!(fewest_since(&sites, t0), 1);

    for s in sites {
        s.daemon.stop().await;
    }
    etcd.kill().await;
}

fn store_of(d: &StatusDocument) -> anyguard::status::model::StoreStatus {
    d.fleet
        .as_ref()
        .and_then(|f| f.store.clone())
        .expect("fleet.store in status")
}

/// The member the daemon's latest session is with (its log's last `connected to etcd`).
fn connected_endpoint(d: &Daemon) -> Option<String> {
    let log = d.log.lock().expect("log lock");
    log.iter().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["fields"]["message"].as_str()? != "all-sites guard: connected to etcd" {
            return None;
        }
        v["fields"]["endpoint"].as_str().map(str::to_owned)
    })
}

/// How many times the daemon logged the etcd alarm (once per session lost, or per new
/// error while not connected).
fn alarms(d: &Daemon) -> usize {
    d.log
        .lock()
        .expect("log lock")
        .iter()
        .filter(|l| l.contains("ETCD UNREACHABLE: withdrawals are held"))
        .count()
}

/// The client's gaps with several members (issue 16, checked against etcd 3.4): its lease
/// keep-alive stream does not reconnect after an error, and its own balancing keeps
/// sending requests to a dead member. The driver covers both by ending its session at the
/// first error and starting a new one with the next member. Here the member site a is on
/// is SIGKILLed: a moves to another member with a new lease; then every site fails at
/// once and every decision goes through the store: no alarm after the move, exactly
/// `min_sites` 1 kept, never fewer on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_left_for_another_and_every_decision_after_goes_through_the_store() {
    let files = Files::new();
    let Some(mut cluster) = Cluster::start(files.dir()).await else {
        return;
    };
    files.write("fleet.toml", &fleet(&cluster.endpoints(), "/it/members", 1));
    let sites = start_sites(&files).await;
    let a = &sites[0];
    let before = connected_endpoint(&a.daemon).expect("a's session in its log");
    let lease_before = store_of(&a.daemon.doc().await).lease_id;
    let dead = cluster
        .members
        .iter()
        .position(|m| m.client_url == before)
        .expect("a is on one of the members");
    cluster.members[dead].kill().await;

    a.daemon
        .doc_until("a connected again with a new lease", |d| {
            let s = store_of(d);
            s.connected && s.lease_id.is_some() && s.lease_id != lease_before
        })
        .await;
    let after = connected_endpoint(&a.daemon).expect("a's new session in its log");
    assert_ne!(after, before, "a moved to a live member");
    assert!(alarms(&a.daemon) >= 1, "losing the member was loud");
    for s in &sites {
        s.daemon
            .doc_until("every site connected", |d| store_of(d).connected)
            .await;
    }
    let alarms_before: Vec<usize> = sites.iter().map(|s| alarms(&s.daemon)).collect();

    let t0 = Instant::now();
    for s in &sites {
        std::fs::remove_file(&s.ok_file).expect("remove ok file");
    }
    wait_for("two sites withdrawn", || on_wire(&sites).len() == 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(on_wire(&sites).len(), 1, "{:?}", on_wire(&sites));
    assert_eq!(fewest_since(&sites, t0), 1, "never fewer than min_sites");
    for s in &sites {
        let d = s.daemon.doc().await;
        assert!(store_of(&d).connected, "{}: {:?}", s.name, store_of(&d));
        assert!(
            !guard_of(&d).reason.contains("ETCD UNREACHABLE"),
            "{}: {:?}",
            s.name,
            guard_of(&d)
        );
    }
    let alarms_after: Vec<usize> = sites.iter().map(|s| alarms(&s.daemon)).collect();
    assert_eq!(
        alarms_before, alarms_after,
        "no request went to the dead member after the move"
    );

    for s in sites {
        s.daemon.stop().await;
    }
    cluster.kill().await;
}

/// Site `name`'s config for the hand-over test: `hand_over = "2s"`, and `web` only when
/// `web` (its check every 100 ms while `ok_file` exists).
fn hand_over_site(name: &str, port: u16, ok_file: &Path, web: bool) -> String {
    let check = format!(
        "type = \"command\"\nargv = [\"test\", \"-e\", \"{}\"]\ninterval = \"100ms\"\n\
         timeout = \"80ms\"\nrise = 1\nfall = 1",
        ok_file.display()
    );
    let service = if web {
        service("web", &[WEB], "", &check)
    } else {
        String::new()
    };
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:0\"\n\n\
         [fleet]\npath = \"fleet.toml\"\nsite = \"{name}\"\nhand_over = \"2s\"\n\n[[peer]]\n\
         name = \"upstream\"\naddress = \"127.0.0.1\"\nport = {port}\nremote_asn = 65000\n\
         mode = \"active\"\nhold_time = \"90s\"\n\n{service}"
    )
}

/// Make-before-break with etcd, and a hold that only waits for the hand-over ends by
/// itself: b starts announcing, a's config guard accepts a reload without `web` (b
/// announces in the store), and the removal waits for b's hand-over. After the reload
/// a has no check to probe, its lease keep-alives come every 20 s (`lease_ttl` 60 s) and
/// its session's KEEPALIVEs every 30 s (hold time 90 s, the router's every 20 s): nothing
/// but the hand-over's deadline wakes it in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_through_the_store_waits_for_the_hand_over_and_ends_by_itself_when_it_is_up() {
    let files = Files::new();
    let Some(mut etcd) = Etcd::start(files.dir()).await else {
        return;
    };
    files.write(
        "fleet.toml",
        &fleet_of(&["a", "b"], &[&etcd.client_url], "/it/handover", 1).replace(
            "lease_ttl = \"2s\"\ntimeout = \"500ms\"",
            "lease_ttl = \"60s\"\ntimeout = \"500ms\"",
        ),
    );
    let mut sites = Vec::new();
    let mut configs = Vec::new();
    for name in ["a", "b"] {
        let ok_file = files.dir().join(format!("ok-{name}"));
        if name == "a" {
            files.write("ok-a", "");
        }
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = upstream.local_addr().expect("addr").port();
        let path = files.write(
            &format!("{name}.toml"),
            &hand_over_site(name, port, &ok_file, true),
        );
        configs.push((path.clone(), port, ok_file.clone()));
        let daemon = Daemon::start(&path).await;
        let mut peer = FakePeer::accept(&upstream).await;
        peer.establish(fakepeer::open(
            65000,
            "198.18.0.1".parse().expect("id"),
            90,
            true,
            false,
        ))
        .await;
        let rib = Arc::new(Mutex::new(Rib::default()));
        watch_router_every(peer, Arc::clone(&rib), Duration::from_secs(20));
        sites.push(Site {
            name,
            daemon,
            ok_file,
            rib,
        });
    }
    let (a, b) = (&sites[0], &sites[1]);
    wait_for("a announcing on the wire", || {
        a.rib.lock().expect("rib").web
    })
    .await;
    a.daemon
        .doc_until("the store showing a alone", |d| store_sites(d) == ["a"])
        .await;

    // b recovers; its router has the route from `announced`.
    files.write("ok-b", "");
    wait_for("b announcing on the wire", || {
        b.rib.lock().expect("rib").web
    })
    .await;
    let announced = b.rib.lock().expect("rib").changes[0].0;
    a.daemon
        .doc_until("the store showing b announcing", |d| {
            store_sites(d) == ["a", "b"]
        })
        .await;
    // A config without web: the config guard counts b (it announces), so the reload is
    // accepted; the removal then waits for b's hand-over.
    let (path, port, ok_file) = &configs[0];
    files.write("a.toml", &hand_over_site("a", *port, ok_file, false));
    assert_eq!(path, &files.dir().join("a.toml"));
    signal(&a.daemon, Signal::SIGHUP);
    let doc = a
        .daemon
        .doc_until("the removal waiting for the hand-over", |d| {
            d.pending_removals
                .first()
                .is_some_and(|r| r.reason.contains("for the hand-over"))
        })
        .await;
    let removal = &doc.pending_removals[0];
    assert_eq!(removal.decision, "held", "{removal:?}");
    assert!(
        removal
            .reason
            .starts_with("removed from the config; waiting ")
            && removal.reason.contains("b: announcing for ")
            && removal.reason.contains(" of hand_over 2s"),
        "{removal:?}"
    );
    wait_for("a withdrawn on the wire", || {
        !a.rib.lock().expect("rib").web
    })
    .await;
    let withdrawn = a
        .rib
        .lock()
        .expect("rib")
        .changes
        .iter()
        .find(|(_, up)| !up)
        .map(|(t, _)| *t)
        .expect("a's withdrawal");
    let margin = withdrawn.saturating_duration_since(announced);
    assert!(
        margin >= Duration::from_secs(2),
        "a's withdrawal reached its router {margin:?} after b's announcement reached b's"
    );
    // Ended by its deadline, not by the next keep-alive (every 20 s).
    assert!(
        margin < Duration::from_secs(5),
        "a's removal waited {margin:?}: the hold did not end by itself at the hand-over"
    );
    let log = a.daemon.log.lock().expect("log").join("\n");
    assert!(
        log.contains("removal by reload waits for the hand-over"),
        "{log}"
    );
    for s in sites {
        s.daemon.stop().await;
    }
    etcd.kill().await;
}
