//! The BFD Control packet (RFC 5880 §4.1) and the reception checks of RFC 5880 §6.8.6 that
//! a packet can fail on its own, without a session: version, length against the A bit and
//! the payload, Detect Mult 0, the Multipoint bit, My Discriminator 0, Your Discriminator 0
//! outside Down/AdminDown, and Poll with Final (§4.1). The checks that need a session (is
//! there one for Your Discriminator, is authentication in use) are the daemon's.
//!
//! Not here: the Echo function and authentication (RFC 5880 §6.7). A packet with the A bit
//! decodes, with its Authentication Section kept as opaque bytes, so that the session can
//! discard it as §6.8.6 says ("A bit set and no authentication in use").
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |  (if A)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::BufMut;
use nom::bytes::complete::take;
use nom::sequence::tuple;

use crate::error::{check_len, EncodeError};
use crate::wire::{u32_, u8_, PResult};

/// The protocol version this codec speaks (RFC 5880 §4.1).
pub const BFD_VERSION: u8 = 1;
/// Length of a Control packet without an Authentication Section.
pub const CONTROL_LEN: usize = 24;
/// Shortest packet with the A bit: the mandatory part plus Auth Type and Auth Len.
pub const MIN_AUTH_CONTROL_LEN: usize = CONTROL_LEN + 2;
/// The Length field is one octet: no Control packet is longer.
pub const MAX_CONTROL_LEN: usize = 255;

/// Session state (RFC 5880 §4.1 "Sta"): two bits, every value defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0.
    AdminDown,
    /// 1.
    Down,
    /// 2.
    Init,
    /// 3.
    Up,
}

impl State {
    /// The two-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the two low bits of `v`.
    pub fn from_bits(v: u8) -> State {
        match v & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// Lower-case name, as in RFC 5880 §6.2 and the routers' CLIs.
    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Diagnostic code (RFC 5880 §4.1, IANA "BFD Diagnostic Codes"): five bits, open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: No Diagnostic.
    NoDiagnostic,
    /// 1: Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFunctionFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborSignaledSessionDown,
    /// 4: Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdministrativelyDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// Any other five-bit value (9 is RFC 6428's mis-connectivity defect).
    Unknown(u8),
}

impl Diag {
    /// The five-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            Diag::NoDiagnostic => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Unknown(v) => v & 0x1f,
        }
    }

    /// From the five low bits of `v`.
    pub fn from_bits(v: u8) -> Diag {
        match v & 0x1f {
            0 => Diag::NoDiagnostic,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Unknown(other),
        }
    }

    /// The registry's name.
    pub fn name(self) -> &'static str {
        match self {
            Diag::NoDiagnostic => "No Diagnostic",
            Diag::ControlDetectionTimeExpired => "Control Detection Time Expired",
            Diag::EchoFunctionFailed => "Echo Function Failed",
            Diag::NeighborSignaledSessionDown => "Neighbor Signaled Session Down",
            Diag::ForwardingPlaneReset => "Forwarding Plane Reset",
            Diag::PathDown => "Path Down",
            Diag::ConcatenatedPathDown => "Concatenated Path Down",
            Diag::AdministrativelyDown => "Administratively Down",
            Diag::ReverseConcatenatedPathDown => "Reverse Concatenated Path Down",
            Diag::Unknown(_) => "Unassigned",
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// The optional Authentication Section (RFC 5880 §4.2), kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Auth Type (IANA "BFD Authentication Types").
    pub auth_type: u8,
    /// Everything after Auth Len (its length is Auth Len - 2).
    pub data: Vec<u8>,
}

/// A BFD Control packet (RFC 5880 §4.1). Intervals are in microseconds, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// Diag.
    pub diag: Diag,
    /// Sta.
    pub state: State,
    /// P: Poll.
    pub poll: bool,
    /// F: Final.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// D: Demand.
    pub demand: bool,
    /// Detect Mult, non-zero.
    pub detect_mult: u8,
    /// My Discriminator, non-zero.
    pub my_discriminator: u32,
    /// Your Discriminator; zero only in Down and AdminDown.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, µs.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, µs.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, µs (0: no Echo).
    pub required_min_echo_rx_us: u32,
    /// The Authentication Section; present exactly when the A bit is set.
    pub auth: Option<Authentication>,
}

/// Why a received Control packet is discarded (RFC 5880 §6.8.6, §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BfdDecodeError {
    /// Shorter than the mandatory section.
    #[error("packet of {len} bytes is shorter than the 24-byte mandatory section")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Version other than 1.
    #[error("version {version} is not 1")]
    BadVersion {
        /// Version received.
        version: u8,
    },
    /// Length below the minimum for the A bit (24 without, 26 with), or, without the A
    /// bit, longer than the mandatory section.
    #[error("length {length} is wrong for a packet with the A bit {}", if *.auth { "set" } else { "clear" })]
    BadLength {
        /// The Length field.
        length: u8,
        /// The A bit.
        auth: bool,
    },
    /// Length field beyond the UDP payload.
    #[error("length {length} exceeds the {payload}-byte payload")]
    LengthExceedsPayload {
        /// The Length field.
        length: u8,
        /// Bytes received.
        payload: usize,
    },
    /// Auth Len does not fill the rest of the packet exactly (or is below 2).
    #[error("auth len {auth_len} does not match length {length}")]
    BadAuthLength {
        /// The Auth Len field.
        auth_len: u8,
        /// The Length field.
        length: u8,
    },
    /// Detect Mult 0.
    #[error("detect mult is zero")]
    ZeroDetectMult,
    /// The Multipoint bit (reserved for point-to-multipoint extensions).
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator 0.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator 0 while the state is Init or Up.
    #[error("your discriminator is zero in state {state}")]
    ZeroYourDiscriminator {
        /// State received.
        state: State,
    },
    /// Both Poll and Final (RFC 5880 §4.1: MUST NOT).
    #[error("poll and final both set")]
    PollAndFinal,
}

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

type Fixed = (u8, u8, u8, u8, u32, u32, u32, u32, u32);

fn parse_fixed(i: &[u8]) -> PResult<'_, Fixed> {
    tuple((u8_, u8_, u8_, u8_, u32_, u32_, u32_, u32_, u32_))(i)
}

fn parse_auth(i: &[u8]) -> PResult<'_, (u8, u8, &[u8])> {
    let (i, (auth_type, auth_len)) = tuple((u8_, u8_))(i)?;
    let (i, data) = take(usize::from(auth_len.saturating_sub(2)))(i)?;
    Ok((i, (auth_type, auth_len, data)))
}

impl ControlPacket {
    /// Decodes one UDP payload. Bytes after Length are ignored (RFC 5880 §6.8.6 only
    /// discards a Length greater than the payload).
    pub fn decode(payload: &[u8]) -> Result<ControlPacket, BfdDecodeError> {
        let short = BfdDecodeError::TooShort { len: payload.len() };
        let (rest, fixed) = parse_fixed(payload).map_err(|_| short)?;
        let (vd, sf, detect_mult, length, my, your, tx, rx, echo) = fixed;
        let version = vd >> 5;
        if version != BFD_VERSION {
            return Err(BfdDecodeError::BadVersion { version });
        }
        let auth_bit = sf & FLAG_AUTH != 0;
        let min = if auth_bit {
            MIN_AUTH_CONTROL_LEN
        } else {
            CONTROL_LEN
        };
        let len = usize::from(length);
        if len < min || (!auth_bit && len != CONTROL_LEN) {
            return Err(BfdDecodeError::BadLength {
                length,
                auth: auth_bit,
            });
        }
        if len > payload.len() {
            return Err(BfdDecodeError::LengthExceedsPayload {
                length,
                payload: payload.len(),
            });
        }
        if detect_mult == 0 {
            return Err(BfdDecodeError::ZeroDetectMult);
        }
        if sf & FLAG_MULTIPOINT != 0 {
            return Err(BfdDecodeError::Multipoint);
        }
        if my == 0 {
            return Err(BfdDecodeError::ZeroMyDiscriminator);
        }
        let state = State::from_bits(sf >> 6);
        if your == 0 && matches!(state, State::Init | State::Up) {
            return Err(BfdDecodeError::ZeroYourDiscriminator { state });
        }
        if sf & FLAG_POLL != 0 && sf & FLAG_FINAL != 0 {
            return Err(BfdDecodeError::PollAndFinal);
        }
        let auth = if auth_bit {
            // The auth section is bounded by Length, not by the payload.
            let region = rest.get(..len - CONTROL_LEN).unwrap_or_default();
            let bad = BfdDecodeError::BadAuthLength {
                auth_len: region.get(1).copied().unwrap_or(0),
                length,
            };
            let (after, (auth_type, auth_len, data)) = parse_auth(region).map_err(|_| bad)?;
            if auth_len < 2 || !after.is_empty() {
                return Err(bad);
            }
            Some(Authentication {
                auth_type,
                data: data.to_vec(),
            })
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diag::from_bits(vd),
            state,
            poll: sf & FLAG_POLL != 0,
            final_: sf & FLAG_FINAL != 0,
            control_plane_independent: sf & FLAG_CPI != 0,
            demand: sf & FLAG_DEMAND != 0,
            detect_mult,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx_us: tx,
            required_min_rx_us: rx,
            required_min_echo_rx_us: echo,
            auth,
        })
    }

    /// Appends the packet to `buf`. The A bit follows `auth`; M is never set.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let auth_len = match &self.auth {
            Some(a) => {
                check_len(
                    "bfd authentication data",
                    a.data.len(),
                    MAX_CONTROL_LEN - MIN_AUTH_CONTROL_LEN,
                )?;
                a.data.len() + 2
            }
            None => 0,
        };
        let length = u8::try_from(CONTROL_LEN + auth_len).map_err(|_| EncodeError::TooLarge {
            field: "bfd length",
            actual: CONTROL_LEN + auth_len,
            max: MAX_CONTROL_LEN,
        })?;
        let mut flags = self.state.code() << 6;
        for (on, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if on {
                flags |= bit;
            }
        }
        buf.put_u8((BFD_VERSION << 5) | self.diag.code());
        buf.put_u8(flags);
        buf.put_u8(self.detect_mult);
        buf.put_u8(length);
        buf.put_u32(self.my_discriminator);
        buf.put_u32(self.your_discriminator);
        buf.put_u32(self.desired_min_tx_us);
        buf.put_u32(self.required_min_rx_us);
        buf.put_u32(self.required_min_echo_rx_us);
        if let Some(a) = &self.auth {
            buf.put_u8(a.auth_type);
            // Checked above: data + 2 fits the 255-byte packet.
            buf.put_u8(u8::try_from(auth_len).unwrap_or(u8::MAX));
            buf.put_slice(&a.data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Up, no flags, Detect Mult 3, Length 24, My 1, Your 2, 300 ms TX and RX, no Echo.
    const UP: &str = "20c0031800000001000000020004 93e0000493e000000000";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn up_packet() -> ControlPacket {
        ControlPacket {
            diag: Diag::NoDiagnostic,
            state: State::Up,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 1,
            your_discriminator: 2,
            desired_min_tx_us: 300_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    #[test]
    fn golden_up_packet_decodes_and_encodes() {
        let bytes = hex(UP);
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), up_packet());
        assert_eq!(encoded(&up_packet()), bytes);
    }

    fn encoded(p: &ControlPacket) -> Vec<u8> {
        let mut b = Vec::new();
        p.encode(&mut b).unwrap();
        b
    }

    #[test]
    fn trailing_payload_after_length_is_ignored() {
        let mut b = encoded(&up_packet());
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(ControlPacket::decode(&b).unwrap(), up_packet());
    }

    #[test]
    fn packet_with_auth_section_round_trips() {
        let mut p = up_packet();
        p.auth = Some(Authentication {
            auth_type: 1,
            data: b"\x01secret".to_vec(),
        });
        let b = encoded(&p);
        assert_eq!(b[3] as usize, b.len());
        assert_eq!(b[1] & FLAG_AUTH, FLAG_AUTH);
        assert_eq!(ControlPacket::decode(&b).unwrap(), p);
    }

    #[test]
    fn every_malformed_variant_is_reported() {
        let good = encoded(&up_packet());
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            ControlPacket::decode(&b)
        };
        assert_eq!(
            ControlPacket::decode(&good[..23]),
            Err(BfdDecodeError::TooShort { len: 23 })
        );
        assert_eq!(
            with(&|b| b[0] = (2 << 5) | (b[0] & 0x1f)),
            Err(BfdDecodeError::BadVersion { version: 2 })
        );
        assert_eq!(
            with(&|b| b[3] = 20),
            Err(BfdDecodeError::BadLength {
                length: 20,
                auth: false
            })
        );
        assert_eq!(
            with(&|b| {
                b[3] = 28;
                b.extend_from_slice(&[0; 4]);
            }),
            Err(BfdDecodeError::BadLength {
                length: 28,
                auth: false
            })
        );
        assert_eq!(
            with(&|b| b[1] |= FLAG_AUTH),
            Err(BfdDecodeError::BadLength {
                length: 24,
                auth: true
            })
        );
        assert_eq!(
            with(&|b| {
                b[1] |= FLAG_AUTH;
                b[3] = 30;
                b.extend_from_slice(&[1, 6, 0]);
            }),
            Err(BfdDecodeError::LengthExceedsPayload {
                length: 30,
                payload: 27
            })
        );
        assert_eq!(
            with(&|b| {
                b[1] |= FLAG_AUTH;
                b[3] = 28;
                b.extend_from_slice(&[1, 6, 0, 0]);
            }),
            Err(BfdDecodeError::BadAuthLength {
                auth_len: 6,
                length: 28
            })
        );
        assert_eq!(
            with(&|b| {
                b[1] |= FLAG_AUTH;
                b[3] = 26;
                b.extend_from_slice(&[1, 1]);
            }),
            Err(BfdDecodeError::BadAuthLength {
                auth_len: 1,
                length: 26
            })
        );
        assert_eq!(with(&|b| b[2] = 0), Err(BfdDecodeError::ZeroDetectMult));
        assert_eq!(
            with(&|b| b[1] |= FLAG_MULTIPOINT),
            Err(BfdDecodeError::Multipoint)
        );
        assert_eq!(
            with(&|b| b[4..8].fill(0)),
            Err(BfdDecodeError::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(&|b| b[8..12].fill(0)),
            Err(BfdDecodeError::ZeroYourDiscriminator { state: State::Up })
        );
        assert_eq!(
            with(&|b| {
                b[8..12].fill(0);
                b[1] = (State::Init.code() << 6) | (b[1] & 0x3f);
            }),
            Err(BfdDecodeError::ZeroYourDiscriminator { state: State::Init })
        );
        assert_eq!(
            with(&|b| b[1] |= FLAG_POLL | FLAG_FINAL),
            Err(BfdDecodeError::PollAndFinal)
        );
    }

    #[test]
    fn your_discriminator_zero_is_fine_in_down_and_admin_down() {
        for state in [State::Down, State::AdminDown] {
            let mut p = up_packet();
            p.state = state;
            p.your_discriminator = 0;
            assert_eq!(ControlPacket::decode(&encoded(&p)).unwrap(), p);
        }
    }

    #[test]
    fn diag_codes_round_trip_through_five_bits() {
        for v in 0..32u8 {
            assert_eq!(Diag::from_bits(v).code(), v);
        }
        for v in 0..4u8 {
            assert_eq!(State::from_bits(v).code(), v);
        }
    }
}
