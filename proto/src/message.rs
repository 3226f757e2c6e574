//! The BGP message header (RFC 4271 §4.1), framing, and the [`Message`] sum type.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                           Marker (16 x 0xff)                  +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::notification::NotificationMessage;
use crate::open::OpenMessage;
use crate::route_refresh::RouteRefreshMessage;
use crate::update::UpdateMessage;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message once RFC 8654 Extended Message is negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// Message type codes (RFC 4271 §4.1, RFC 2918).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1.
    Open,
    /// 2.
    Update,
    /// 3.
    Notification,
    /// 4.
    Keepalive,
    /// 5.
    RouteRefresh,
}

/// What was negotiated for decoding, built once from the two OPENs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// Both sides advertised 4-octet AS (RFC 6793): AS_PATH and AGGREGATOR use 4 octets.
    pub four_octet_as: bool,
    /// Both sides advertised Extended Message (RFC 8654): frames up to 65535 octets.
    pub extended_message: bool,
    /// We advertised receiving ADD-PATH for IPv4 unicast (RFC 7911): NLRI carry a path id.
    pub add_path_ipv4: bool,
    /// Same for IPv6 unicast.
    pub add_path_ipv6: bool,
}

impl Default for DecodeContext {
    /// The context before OPENs are exchanged: 2-octet AS, 4096-octet frames, no ADD-PATH.
    fn default() -> Self {
        DecodeContext {
            four_octet_as: false,
            extended_message: false,
            add_path_ipv4: false,
            add_path_ipv6: false,
        }
    }
}

/// What was negotiated for encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeContext {
    /// Encode AS_PATH / AGGREGATOR with 4-octet ASNs.
    pub four_octet_as: bool,
    /// Allow frames up to 65535 octets.
    pub extended_message: bool,
}

/// Any BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(OpenMessage),
    /// UPDATE.
    Update(UpdateMessage),
    /// NOTIFICATION.
    Notification(NotificationMessage),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefreshMessage),
}
