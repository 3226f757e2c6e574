//! Fuzz target: the BFD Control packet decoder never panics and round-trips what it accepts.
#![no_main]

use anyguard_proto::fuzzing::check_bfd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_bfd(data);
});
