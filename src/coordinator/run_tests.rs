//! Tests of the pure helpers in `run.rs`.

#![allow(clippy::unwrap_used)]
use super::*;

fn peer(extra: &str) -> PeerConfig {
    let text = format!(
        "router_id = \"198.18.0.2\"\nlocal_asn = 65010\n[[peer]]\nname = \"edge\"\n\
         address = \"198.18.0.1\"\nremote_asn = 65000\n{extra}\n"
    );
    crate::config::load_str(&text, "t.toml").unwrap().peers[0].clone()
}

#[test]
fn only_a_bfd_change_is_re_tuned_in_place() {
    let plain = peer("");
    let bfd = peer("bfd = true");
    let slow = peer("bfd = { min_tx = \"1s\" }");
    assert!(only_bfd_changed(&plain, &bfd));
    assert!(only_bfd_changed(&bfd, &slow));
    assert!(only_bfd_changed(&bfd, &plain));
    assert!(!only_bfd_changed(&bfd, &bfd), "no change at all");
    let other = peer("bfd = true\nhold_time = \"9s\"");
    assert!(!only_bfd_changed(&plain, &other), "bfd and another key");
}
