//! The NOTIFICATION message (RFC 4271 §4.5) and the Shutdown Communication carried in
//! Cease / Administrative Shutdown and Administrative Reset (RFC 8203, RFC 9003).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313) with their subcodes as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1.
    MessageHeader,
    /// 2.
    OpenMessage,
    /// 3.
    UpdateMessage,
    /// 4.
    HoldTimerExpired,
    /// 5.
    FiniteStateMachine,
    /// 6.
    Cease,
    /// 7 (RFC 7313).
    RouteRefresh,
    /// 8 (RFC 9687): Send Hold Timer Expired.
    SendHoldTimerExpired,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for ErrorCode {
    fn from(v: u8) -> Self {
        match v {
            1 => ErrorCode::MessageHeader,
            2 => ErrorCode::OpenMessage,
            3 => ErrorCode::UpdateMessage,
            4 => ErrorCode::HoldTimerExpired,
            5 => ErrorCode::FiniteStateMachine,
            6 => ErrorCode::Cease,
            7 => ErrorCode::RouteRefresh,
            8 => ErrorCode::SendHoldTimerExpired,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl From<ErrorCode> for u8 {
    fn from(v: ErrorCode) -> u8 {
        match v {
            ErrorCode::MessageHeader => 1,
            ErrorCode::OpenMessage => 2,
            ErrorCode::UpdateMessage => 3,
            ErrorCode::HoldTimerExpired => 4,
            ErrorCode::FiniteStateMachine => 5,
            ErrorCode::Cease => 6,
            ErrorCode::RouteRefresh => 7,
            ErrorCode::SendHoldTimerExpired => 8,
            ErrorCode::Unknown(other) => other,
        }
    }
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header_subcode {
    /// 1: Connection Not Synchronized.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// 2: Bad Message Length.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// 3: Bad Message Type.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492, RFC 9234).
pub mod open_subcode {
    /// 1: Unsupported Version Number.
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    /// 2: Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// 3: Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// 4: Unsupported Optional Parameter.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// 6: Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// 7: Unsupported Capability (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update_subcode {
    /// 1: Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// 2: Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// 3: Missing Well-known Attribute.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// 4: Attribute Flags Error.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// 5: Attribute Length Error.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// 6: Invalid ORIGIN Attribute.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// 8: Invalid NEXT_HOP Attribute.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// 9: Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// 10: Invalid Network Field.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// 11: Malformed AS_PATH.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm_subcode {
    /// 0: Unspecified Error.
    pub const UNSPECIFIED: u8 = 0;
    /// 1: Receive Unexpected Message in OpenSent State.
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    /// 2: Receive Unexpected Message in OpenConfirm State.
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    /// 3: Receive Unexpected Message in Established State.
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486, RFC 8203).
pub mod cease_subcode {
    /// 1: Maximum Number of Prefixes Reached.
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    /// 2: Administrative Shutdown.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// 3: Peer De-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// 4: Administrative Reset.
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    /// 5: Connection Rejected.
    pub const CONNECTION_REJECTED: u8 = 5;
    /// 6: Other Configuration Change.
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    /// 7: Connection Collision Resolution.
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    /// 8: Out of Resources.
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// 9: Hard Reset (RFC 8538).
    pub const HARD_RESET: u8 = 9;
}

/// A NOTIFICATION message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationMessage {
    /// Error code.
    pub code: ErrorCode,
    /// Error subcode (see the `*_subcode` modules).
    pub subcode: u8,
    /// Data, whose meaning depends on code and subcode.
    pub data: Vec<u8>,
}

/// A decoded RFC 9003 Shutdown Communication: a UTF-8 text of at most 255 octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownCommunication(pub String);
