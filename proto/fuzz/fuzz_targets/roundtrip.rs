//! Fuzz target: decode -> encode -> decode must be stable (see `fuzzing::check_round_trip`).
#![no_main]

use anyguard_proto::fuzzing::check_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_round_trip(data);
});
