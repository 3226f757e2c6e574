//! Fuzz target: `frame_len`, `Message::decode_lenient` and `UpdateView` must never panic,
//! and the owned decoder and the view must agree (they share one walker).
#![no_main]

use anyguard_proto::fuzzing::check_decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_decode(data);
});
