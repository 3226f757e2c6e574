//! Inputs the fuzzer found, kept as named regression tests (input layout: see
//! `anyguard_proto::fuzzing`). Each also runs through every check of both fuzz targets.

mod common;

use anyguard_proto::fuzzing::{check_decode, check_round_trip};
use common::hex;

fn both(input: &str) {
    let data = hex(input);
    check_decode(&data);
    check_round_trip(&data);
}

/// The owned decoder drops ADD-PATH identifiers and the encoder never writes them; the
/// round trip used to re-read the encoded message with ADD-PATH still on, so the prefix
/// octets were misread as path identifiers. Found by the `roundtrip` target.
#[test]
fn add_path_update_treated_as_withdraw_round_trips_without_path_ids() {
    both("2f0200000006c0c00f03006a282f020f03006a2fffff000000000000000000000200");
}

/// An AS4_AGGREGATOR of the wrong length from a 4-octet speaker in an UPDATE that announces
/// nothing. Found by the `decode` target after RFC 7606 §5.2 and RFC 6793 §4.1 met.
#[test]
fn malformed_as4_aggregator_from_a_four_octet_speaker_without_nlri() {
    both("010200000006801203000201");
}

/// A NEXT_HOP of length 0 in an UPDATE without NLRI: ignored (RFC 4760 §3), so the
/// UPDATE is an End-of-RIB to the owned decoder and must be one to the view too. Found by
/// the `decode` target.
#[test]
fn ignored_next_hop_without_nlri_is_an_end_of_rib_to_both_decoders() {
    both("010200000003000300");
}
