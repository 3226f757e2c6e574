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
//!
//! The data of a NOTIFICATION built from a [`DecodeError`] follows RFC 4271 §6 to the
//! letter (see the `From` impl); which errors close the session is RFC 7606's business
//! ([`DecodeError::action`]).

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;

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
    /// 0: Unspecific (RFC 4271 §6.2: a recognised optional parameter is malformed).
    pub const UNSPECIFIC: u8 = 0;
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

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
pub mod route_refresh_subcode {
    /// 1: Invalid Message Length.
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
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
    /// 10: BFD Down (RFC 9384): the BFD session protecting the BGP session went down.
    pub const BFD_DOWN: u8 = 10;
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

/// The largest Shutdown Communication in octets (RFC 9003 §2).
pub const MAX_SHUTDOWN_COMMUNICATION_LEN: usize = 255;

impl NotificationMessage {
    /// A NOTIFICATION with the given code, subcode and data.
    pub fn new(code: ErrorCode, subcode: u8, data: Vec<u8>) -> Self {
        NotificationMessage {
            code,
            subcode,
            data,
        }
    }

    /// A Cease NOTIFICATION (normally subcode 2 Administrative Shutdown or 4 Administrative
    /// Reset) carrying an RFC 9003 Shutdown Communication: a length octet and UTF-8 text,
    /// cut at a character boundary so that it fits 255 octets.
    pub fn cease_shutdown(subcode: u8, communication: &str) -> Self {
        let mut end = communication.len().min(MAX_SHUTDOWN_COMMUNICATION_LEN);
        while !communication.is_char_boundary(end) {
            end -= 1;
        }
        let text = &communication.as_bytes()[..end];
        let mut data = Vec::with_capacity(text.len() + 1);
        // `end` <= 255 by construction.
        data.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
        data.extend_from_slice(text);
        NotificationMessage::new(ErrorCode::Cease, subcode, data)
    }

    /// The RFC 9003 Shutdown Communication of a Cease / Administrative Shutdown or
    /// Administrative Reset NOTIFICATION, if it carries a well-formed, non-empty one.
    /// Octets after the communication are ignored.
    pub fn shutdown_communication(&self) -> Option<ShutdownCommunication> {
        if self.code != ErrorCode::Cease
            || !(self.subcode == cease_subcode::ADMINISTRATIVE_SHUTDOWN
                || self.subcode == cease_subcode::ADMINISTRATIVE_RESET)
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        if text.is_empty() {
            return None;
        }
        std::str::from_utf8(text)
            .ok()
            .map(|s| ShutdownCommunication(s.to_owned()))
    }

    /// Decodes a NOTIFICATION body (after the header), RFC 4271 §4.5.
    pub fn decode_body(body: &[u8]) -> Result<NotificationMessage, DecodeError> {
        match body {
            [code, subcode, data @ ..] => Ok(NotificationMessage::new(
                ErrorCode::from(*code),
                *subcode,
                data.to_vec(),
            )),
            _ => Err(DecodeError::BadMessageLength {
                len: u16::try_from(body.len() + crate::message::HEADER_LEN).unwrap_or(u16::MAX),
            }),
        }
    }

    /// Appends the NOTIFICATION body.
    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(self.code));
        out.put_u8(self.subcode);
        out.put_slice(&self.data);
    }
}

impl From<&DecodeError> for NotificationMessage {
    /// The NOTIFICATION that RFC 4271 §6 (and RFC 7313 §5, RFC 7607) prescribe for the
    /// error: code, subcode and data.
    fn from(e: &DecodeError) -> Self {
        use DecodeError as E;
        let (code, subcode, data) = match e {
            E::ConnectionNotSynchronized => (
                ErrorCode::MessageHeader,
                header_subcode::CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            ),
            E::BadMessageLength { len } => (
                ErrorCode::MessageHeader,
                header_subcode::BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec(),
            ),
            E::BadMessageType { msg_type } => (
                ErrorCode::MessageHeader,
                header_subcode::BAD_MESSAGE_TYPE,
                vec![*msg_type],
            ),
            E::UnsupportedVersionNumber { .. } => (
                ErrorCode::OpenMessage,
                open_subcode::UNSUPPORTED_VERSION_NUMBER,
                // RFC 4271 §6.2: the largest locally supported version, two octets.
                u16::from(crate::open::BGP_VERSION).to_be_bytes().to_vec(),
            ),
            E::BadPeerAs { .. } => (
                ErrorCode::OpenMessage,
                open_subcode::BAD_PEER_AS,
                Vec::new(),
            ),
            E::BadBgpIdentifier { .. } => (
                ErrorCode::OpenMessage,
                open_subcode::BAD_BGP_IDENTIFIER,
                Vec::new(),
            ),
            E::UnsupportedOptionalParameter { .. } => (
                ErrorCode::OpenMessage,
                open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
            ),
            E::MalformedOptionalParameter { .. } => {
                (ErrorCode::OpenMessage, open_subcode::UNSPECIFIC, Vec::new())
            }
            E::UnacceptableHoldTime { .. } => (
                ErrorCode::OpenMessage,
                open_subcode::UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
            ),
            E::MalformedAttributeList { .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                Vec::new(),
            ),
            E::UnrecognizedWellKnownAttribute { attribute, .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                attribute.clone(),
            ),
            E::MissingWellKnownAttribute { type_code } => (
                ErrorCode::UpdateMessage,
                update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE,
                vec![*type_code],
            ),
            E::AttributeFlagsError { attribute, .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::ATTRIBUTE_FLAGS_ERROR,
                attribute.clone(),
            ),
            E::AttributeLengthError { attribute, .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::ATTRIBUTE_LENGTH_ERROR,
                attribute.clone(),
            ),
            E::InvalidOriginAttribute { attribute } => (
                ErrorCode::UpdateMessage,
                update_subcode::INVALID_ORIGIN_ATTRIBUTE,
                attribute.clone(),
            ),
            E::InvalidNextHopAttribute { attribute } => (
                ErrorCode::UpdateMessage,
                update_subcode::INVALID_NEXT_HOP_ATTRIBUTE,
                attribute.clone(),
            ),
            E::OptionalAttributeError { attribute, .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                attribute.clone(),
            ),
            E::InvalidNetworkField { .. } => (
                ErrorCode::UpdateMessage,
                update_subcode::INVALID_NETWORK_FIELD,
                Vec::new(),
            ),
            E::MalformedAsPath => (
                ErrorCode::UpdateMessage,
                update_subcode::MALFORMED_AS_PATH,
                Vec::new(),
            ),
            E::NoReachableNlri { error } => return NotificationMessage::from(&**error),
            E::InvalidRouteRefreshLength { message } => (
                ErrorCode::RouteRefresh,
                route_refresh_subcode::INVALID_MESSAGE_LENGTH,
                message.clone(),
            ),
        };
        NotificationMessage::new(code, subcode, data)
    }
}
