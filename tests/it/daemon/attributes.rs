//! Documented per-service attributes (docs/config.md, `[[service]]`) that no other test
//! sent through the daemon: `med`, `large_communities` (RFC 8092) and `as_path_prepend` in
//! the normal state, and no LOCAL_PREF towards an external peer (RFC 4271 §5.1.5).

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
