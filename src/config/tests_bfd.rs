//! Config tests for a peer's `bfd` key: both forms, defaults, bounds, unknown keys.

use std::time::Duration;

use super::tests::{errors, insert, ok};
use super::*;

#[test]
fn bfd_is_off_by_default_and_true_gives_the_defaults() {
    assert_eq!(ok(&insert(6, "")).peers[0].bfd, None);
    assert_eq!(ok(&insert(6, "bfd = false")).peers[0].bfd, None);
    assert_eq!(
        ok(&insert(6, "bfd = true")).peers[0].bfd,
        Some(BfdConfig {
            min_tx: Duration::from_millis(300),
            min_rx: Duration::from_millis(300),
            multiplier: 3,
        })
    );
}

#[test]
fn bfd_table_sets_intervals_and_multiplier_with_defaults_for_the_rest() {
    let c = ok(&insert(
        6,
        "bfd = { min_tx = \"100ms\", min_rx = \"250ms\", multiplier = 5 }",
    ));
    assert_eq!(
        c.peers[0].bfd,
        Some(BfdConfig {
            min_tx: Duration::from_millis(100),
            min_rx: Duration::from_millis(250),
            multiplier: 5,
        })
    );
    let c = ok(&insert(6, "bfd = { multiplier = 1 }"));
    assert_eq!(
        c.peers[0].bfd.map(|b| b.min_tx),
        Some(Duration::from_millis(300))
    );
}

#[test]
fn bfd_intervals_and_multiplier_out_of_range_are_rejected_with_line_and_key() {
    assert_eq!(
        errors(&insert(
            6,
            "bfd = { min_tx = \"5ms\", min_rx = \"2m\", multiplier = 0 }"
        )),
        [
            "t.toml:7:18: peer[0].bfd.min_tx: must be from 10ms to 60s",
            "t.toml:7:34: peer[0].bfd.min_rx: must be from 10ms to 60s",
            "t.toml:7:53: peer[0].bfd.multiplier: must be between 1 and 255, not 0",
        ]
    );
}

#[test]
fn bfd_rejects_unknown_keys_and_other_types() {
    assert_eq!(
        errors(&insert(6, "bfd = { interval = \"1s\" }")),
        [
            "t.toml:7:9: peer[0].bfd.interval: unknown field `interval`, expected one of \
          `min_tx`, `min_rx`, `multiplier`"
        ]
    );
    assert_eq!(
        errors(&insert(6, "bfd = \"on\"")),
        [
            "t.toml:7:7: peer[0].bfd: invalid type: string \"on\", expected a boolean or a \
          table { min_tx, min_rx, multiplier }"
        ]
    );
}
