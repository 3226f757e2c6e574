//! BFD Control packets: anything valid the encoder builds decodes back to itself, and no
//! byte string makes the decoder panic.
#![allow(clippy::unwrap_used)]

use anyguard_proto::bfd::{Authentication, ControlPacket, Diag, State};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn state() -> impl Strategy<Value = State> {
    (0u8..4).prop_map(State::from_bits)
}

prop_compose! {
    fn packet()(
        diag in (0u8..32).prop_map(Diag::from_bits),
        state in state(),
        pf in 0u8..3,
        cpi in any::<bool>(),
        demand in any::<bool>(),
        detect_mult in 1u8..=255,
        my in 1u32..,
        your in any::<u32>(),
        tx in any::<u32>(),
        rx in any::<u32>(),
        echo in any::<u32>(),
        auth in option::of((any::<u8>(), vec(any::<u8>(), 0..=229))),
    ) -> ControlPacket {
        // Your Discriminator may only be zero in Down and AdminDown (RFC 5880 §6.8.6).
        let your = if your == 0 && matches!(state, State::Init | State::Up) { 1 } else { your };
        ControlPacket {
            diag,
            state,
            poll: pf == 1,
            final_: pf == 2,
            control_plane_independent: cpi,
            demand,
            detect_mult,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx_us: tx,
            required_min_rx_us: rx,
            required_min_echo_rx_us: echo,
            auth: auth.map(|(auth_type, data)| Authentication { auth_type, data }),
        }
    }
}

proptest! {
    #[test]
    fn control_packet_round_trips(p in packet()) {
        let mut buf = Vec::new();
        p.encode(&mut buf).unwrap();
        prop_assert_eq!(usize::from(buf[3]), buf.len());
        prop_assert_eq!(ControlPacket::decode(&buf).unwrap(), p);
    }

    /// The `bfd` fuzz target's checks, on random bytes.
    #[test]
    fn decode_never_panics_and_round_trips_what_it_accepts(bytes in vec(any::<u8>(), 0..300)) {
        anyguard_proto::fuzzing::check_bfd(&bytes);
    }

    /// Same, on mutations of a valid packet (random bytes rarely pass the version check).
    #[test]
    fn mutated_valid_packets_never_panic(p in packet(), at in 0usize..64, byte in any::<u8>()) {
        let mut buf = Vec::new();
        p.encode(&mut buf).unwrap();
        let i = at % buf.len();
        buf[i] = byte;
        anyguard_proto::fuzzing::check_bfd(&buf);
    }
}

#[test]
fn authentication_data_longer_than_the_length_field_is_refused() {
    let p = ControlPacket {
        diag: Diag::NoDiagnostic,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 7,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 1_000_000,
        required_min_echo_rx_us: 0,
        auth: Some(Authentication {
            auth_type: 1,
            data: vec![0; 230],
        }),
    };
    assert!(p.encode(&mut Vec::new()).is_err());
}
