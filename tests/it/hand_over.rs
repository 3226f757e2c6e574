//! Make-before-break through the real binary (`[fleet] hand_over`, `guard::hand_over`): a
//! site whose withdrawal is held lets go only once the other site has been announcing for
//! the hand-over time, measured at fake BGP routers of both sites, and `/status` and the
//! log say what it waits for meanwhile.
//!
//! Two `anyguard run` daemons (sites a and b) poll each other on loopback; each has its
//! own fake router (`fakepeer`), read by a task of its own that stamps every UPDATE for
//! `web` as it arrives. Every wait is bounded; the daemons are stopped by PID.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fakepeer::{self, FakeError, FakePeer};
use crate::guard_cli::{fleet_toml, service, Daemon, Files, WAIT, WEB};
use crate::httpd::free_port;

const HAND_OVER: Duration = Duration::from_secs(2);

/// A site config: status on `port`, one active peer on loopback, `web` up while `flag`
/// exists (checked every 100 ms, rise and fall 1), the hand-over 2 s.
fn site(name: &str, status_port: u16, upstream: u16, flag: &Path) -> String {
    let check = format!(
        "type = \"command\"\nargv = [\"test\", \"-e\", {:?}]\ninterval = \"100ms\"\n\
         timeout = \"80ms\"\nrise = 1\nfall = 1",
        flag.display().to_string()
    );
    format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n\n\
         [fleet]\npath = \"fleet.toml\"\nsite = \"{name}\"\nhand_over = \"2s\"\n\n[[peer]]\nname = \"upstream\"\n\
         address = \"127.0.0.1\"\nport = {upstream}\nremote_asn = 65000\nmode = \"active\"\n\n{}",
        service("web", &[WEB], "drain_time = \"100ms\"", &check)
    )
}

/// An UPDATE for `web` seen by a site's router: when, and whether it announced it.
type Seen = (Instant, bool);

/// Accepts the site's session, establishes it and hands every UPDATE for `web` to the
/// returned channel, stamped as it arrives (a task of its own, so that no wait of the test
/// delays the stamp).
async fn router(upstream: TcpListener) -> mpsc::UnboundedReceiver<Seen> {
    let mut peer = FakePeer::accept(&upstream).await;
    peer.establish(fakepeer::open(
        65000,
        "198.18.0.1".parse().expect("id"),
        90,
        true,
        false,
    ))
    .await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match peer.recv_within(Duration::from_secs(60)).await {
                Ok(anyguard_proto::Message::Update(u)) => {
                    let at = Instant::now();
                    if u.nlri.iter().any(|p| p.to_string() == WEB) {
                        let _ = tx.send((at, true));
                    }
                    if u.withdrawn.iter().any(|p| p.to_string() == WEB) {
                        let _ = tx.send((at, false));
                    }
                }
                Ok(_) => {}
                Err(FakeError::Timeout | FakeError::Closed | FakeError::Decode(_)) => return,
            }
        }
    });
    rx
}

/// The next UPDATE for `web` that announces (`true`) or withdraws it, within [`WAIT`].
async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>, announced: bool, what: &str) -> Instant {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((at, a))) if a == announced => return at,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("{what}: no such UPDATE within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_site_withdraws_only_hand_over_after_the_other_site_announces_and_says_why_it_waits()
{
    let files = Files::new();
    let (port_a, port_b) = (free_port(), free_port());
    files.write(
        "fleet.toml",
        &fleet_toml(
            &[
                ("a", format!("http://127.0.0.1:{port_a}/status")),
                ("b", format!("http://127.0.0.1:{port_b}/status")),
            ],
            &["name = \"web\"\nmin_sites = 1"],
        ),
    );
    let (flag_a, flag_b) = (files.dir().join("a.up"), files.dir().join("b.up"));
    files.write("a.up", "");
    let listener = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (up_a, up_b) = (listener().await, listener().await);
    let port = |l: &TcpListener| l.local_addr().expect("addr").port();
    let a_cfg = files.write("a.toml", &site("a", port_a, port(&up_a), &flag_a));
    let b_cfg = files.write("b.toml", &site("b", port_b, port(&up_b), &flag_b));
    let a = Daemon::start(&a_cfg).await;
    let b = Daemon::start(&b_cfg).await;
    let mut at_a = router(up_a).await;
    let mut at_b = router(up_b).await;
    next(&mut at_a, true, "a announcing web").await;

    // a fails while b does not announce: a is the last site, its withdrawal is held.
    std::fs::remove_file(&flag_a).expect("a fails");
    let doc = a
        .doc_until("a held", |d| {
            d.services[0].state == "held" && d.services[0].reason.contains("b: not announcing")
        })
        .await;
    assert_eq!(doc.services[0].guard.decision, "held");

    // b recovers and announces; its router has the route from `announced`.
    files.write("b.up", "");
    let announced = next(&mut at_b, true, "b announcing web").await;
    // a's /status while it waits, sampled until its router sees the withdrawal.
    let watcher = {
        let status = a.status;
        tokio::spawn(async move {
            let mut reasons = Vec::new();
            let until = Instant::now() + WAIT;
            while Instant::now() < until {
                let url = format!("http://{status}");
                if let Ok(text) = anyguard::status::client::run(&url, true, false).await {
                    let doc: anyguard::status::model::StatusDocument =
                        serde_json::from_str(&text).expect("status JSON");
                    let s = &doc.services[0];
                    reasons.push((s.guard.decision.clone(), s.reason.clone()));
                    if s.state == "down" {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            reasons
        })
    };
    let withdrawn = next(&mut at_a, false, "a withdrawing web").await;
    let margin = withdrawn.saturating_duration_since(announced);
    assert!(
        margin >= HAND_OVER,
        "a's withdrawal reached its router {margin:?} after b's announcement reached b's: \
         less than the hand-over {HAND_OVER:?}"
    );
    let reasons = watcher.await.expect("status watcher");
    let waiting: Vec<&(String, String)> = reasons
        .iter()
        .filter(|(_, r)| r.contains("for the hand-over"))
        .collect();
    let first = waiting
        .first()
        .unwrap_or_else(|| panic!("/status never said a waits for the hand-over: {reasons:#?}"));
    assert_eq!(first.0, "held", "{first:?}");
    assert!(
        first.1.starts_with("held: health failing; waiting ")
            && first.1.contains("b: announcing for ")
            && first.1.contains(" of hand_over 2s"),
        "{first:?}"
    );
    let log = a.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        log.iter()
            .any(|l| l.contains("withdrawal waits for the hand-over")
                && l.contains("b: announcing for ")),
        "{log:#?}"
    );
    a.stop().await;
    b.stop().await;
}
