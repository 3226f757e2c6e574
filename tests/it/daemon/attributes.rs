//! Documented per-service attributes (docs/config.md, `[[service]]`) that no other test
//! sent through the daemon: `med`, `large_communities` (RFC 8092) and `as_path_prepend` in
//! the normal state, no LOCAL_PREF towards an external peer and `local_pref` towards an
//! internal one (RFC 4271 §5.1.5), `combine = "any"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyguard_proto::LargeCommunity;

use super::*;

#[tokio::test]
async fn med_large_communities_and_prepends_are_in_the_announcement_and_no_local_pref_to_ebgp() {
    let setup = Setup {
        service_extra:
            "med = 50\nlarge_communities = [\"65010:1:2\"]\nas_path_prepend = 2\nlocal_pref = 300",
        ..Setup::default()
    };
    let target = Target::start(Answer::Pass).await;
    let mut d = Daemon::start(&setup, &target).await;
    let u = d.update().await;
    assert_v4_announcement(&u, 2);
    let med = u.attributes.iter().find_map(|a| match a {
        PathAttribute::MultiExitDisc(m) => Some(*m),
        _ => None,
    });
    assert_eq!(med, Some(50), "{u:?}");
    let large = u.attributes.iter().find_map(|a| match a {
        PathAttribute::LargeCommunities(l) => Some(l.clone()),
        _ => None,
    });
    assert_eq!(
        large,
        Some(vec![LargeCommunity {
            global: 65010,
            local1: 1,
            local2: 2
        }]),
        "{u:?}"
    );
    assert!(
        !u.attributes
            .iter()
            .any(|a| matches!(a, PathAttribute::LocalPref(_))),
        "LOCAL_PREF to an external peer: {u:?}"
    );
    d.shutdown().await;
}

/// `combine = "any"`: one of two checks passing is enough (the other, a TCP check of a
/// closed port, is down in /status), where the default "all" would never announce.
#[tokio::test]
async fn combine_any_announces_with_one_of_two_checks_passing() {
    let target = Target::start(Answer::Pass).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let setup = Setup {
        service_extra: "combine = \"any\"",
        ..Setup::default()
    };
    let mut text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    );
    text.push_str(&format!(
        "\n[[service.check]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{}\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2\n",
        free_port()
    ));
    let config = load_str(&text, "combine.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut d = Daemon::launch(&listener, status_port, config, RunOptions::default(), false).await;
    assert_v4_announcement(&d.update().await, 0);
    let url = format!("http://127.0.0.1:{status_port}/status");
    let (_, _, body) = crate::status_http::request(Method::GET, &url, None, "").await;
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let checks = &doc["services"][0]["checks"];
    assert_eq!(checks.as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(doc["services"][0]["state"], "up", "{doc}");
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] != "up"),
        "{doc}"
    );
    d.shutdown().await;
}

/// The daemon with `service_extra` on `web`, its one peer internal (`remote_asn` =
/// `local_asn`), the session established.
async fn ibgp_daemon(target: &Target, service_extra: &str) -> Daemon {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = free_port();
    let setup = Setup {
        service_extra,
        ..Setup::default()
    };
    let text = config_text(
        &setup,
        listener.local_addr().unwrap(),
        status_port,
        target.addr,
    )
    .replace(
        &format!("remote_asn = {PEER_ASN}"),
        &format!("remote_asn = {LOCAL_ASN}"),
    );
    let config = load_str(&text, "ibgp.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (signals, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(config, RunOptions::default(), rx));
    let mut peer = FakePeer::accept(&listener).await;
    peer.establish(fakepeer::open(LOCAL_ASN, PEER_ID, 0, true, false))
        .await;
    Daemon {
        signals,
        task,
        status_port,
        peer,
    }
}

/// LOCAL_PREF and the AS_PATH's ASNs of an UPDATE.
fn local_pref_and_path(u: &UpdateMessage) -> (Option<u32>, Vec<u32>) {
    let lp = u.attributes.iter().find_map(|a| match a {
        PathAttribute::LocalPref(p) => Some(*p),
        _ => None,
    });
    let path = u
        .attributes
        .iter()
        .find_map(|a| match a {
            PathAttribute::AsPath(p) => {
                Some(p.segments.iter().flat_map(|s| s.asns.clone()).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    (lp, path)
}

/// `local_pref` goes in every UPDATE to an internal peer (RFC 4271 §5.1.5).
#[tokio::test]
async fn local_pref_is_sent_to_an_internal_peer() {
    let target = Target::start(Answer::Pass).await;
    let mut d = ibgp_daemon(&target, "local_pref = 300").await;
    let u = d.update().await;
    assert_eq!(u.nlri, vec![v4(SERVICE_V4)], "{u:?}");
    assert_eq!(local_pref_and_path(&u).0, Some(300), "{u:?}");
    d.shutdown().await;
}

#[tokio::test]
async fn an_internal_peer_sees_a_sick_site_de_preferred_by_local_pref_never_by_our_own_as() {
    // Issue 12 finding 1, through the daemon: on iBGP `on_down = "deprefer"` lowers
    // LOCAL_PREF (`deprefer_local_pref`) and the AS_PATH stays empty, prepends or not; an
    // internal peer drops a path with its own AS in it (RFC 4271 §9.1.2).
    let target = Target::start(Answer::Pass).await;
    let mut d = ibgp_daemon(
        &target,
        "on_down = \"deprefer\"\nas_path_prepend = 2\ndeprefer_local_pref = 40",
    )
    .await;
    let u = d.update().await;
    assert_eq!(u.nlri, vec![v4(SERVICE_V4)], "{u:?}");
    assert_eq!(
        local_pref_and_path(&u),
        (Some(100), vec![]),
        "normal: {u:?}"
    );
    // The health target fails: the route stays, de-preferred by LOCAL_PREF alone.
    target.set(Answer::Fail);
    let u = d.update().await;
    assert_eq!(u.nlri, vec![v4(SERVICE_V4)], "{u:?}");
    assert_eq!(
        local_pref_and_path(&u),
        (Some(40), vec![]),
        "de-preferred: {u:?}"
    );
    d.shutdown().await;
}
