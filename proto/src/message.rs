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
//!
//! Framing happens here, outside nom: [`frame_len`] cuts one message out of a byte stream and
//! checks the header as soon as it is complete (RFC 4271 §6.1), so a reader knows how much to
//! read and fails early on a desynchronised stream. [`Message::decode`] then decodes one
//! whole frame with the negotiated [`DecodeContext`].
//!
//! Length limits: 19..=4096 octets, or up to 65535 once RFC 8654 Extended Message is
//! negotiated, except OPEN and KEEPALIVE which stay within 4096 (RFC 8654 §4).

use bytes::{BufMut, BytesMut};

use crate::error::{check_len, DecodeError, EncodeError};
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

impl MessageType {
    /// The type code (RFC 4271 §4.1).
    pub fn code(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }

    /// The type for a code, if known.
    pub fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// The smallest valid length for the type, header included (RFC 4271 §4, RFC 2918 §3).
    pub fn min_len(self) -> usize {
        match self {
            MessageType::Open => HEADER_LEN + crate::open::MIN_OPEN_BODY_LEN,
            MessageType::Update => HEADER_LEN + 4,
            MessageType::Notification => HEADER_LEN + 2,
            MessageType::Keepalive => HEADER_LEN,
            // RFC 7313 §5 gives BoRR/EoRR of the wrong length a code of their own, so
            // ROUTE-REFRESH lengths are checked when the body is decoded.
            MessageType::RouteRefresh => HEADER_LEN,
        }
    }

    /// The largest valid length for the type, header included (RFC 4271 §4.1, RFC 8654 §4).
    pub fn max_len(self, extended_message: bool) -> usize {
        match self {
            MessageType::Keepalive => HEADER_LEN,
            MessageType::Open => MAX_MESSAGE_LEN,
            _ if extended_message => MAX_EXTENDED_MESSAGE_LEN,
            _ => MAX_MESSAGE_LEN,
        }
    }
}

/// The marker: sixteen octets of all ones (RFC 4271 §4.1).
pub const MARKER: [u8; 16] = [0xff; 16];

/// How long the next message at the start of `buf` is: `Ok(None)` when more bytes are
/// needed, `Ok(Some(len))` once the whole message (header included) is in `buf`. Marker,
/// length and type are checked as soon as the 19-octet header is present (a bad marker
/// byte is reported even earlier).
pub fn frame_len(buf: &[u8], ctx: &DecodeContext) -> Result<Option<usize>, DecodeError> {
    let marker_seen = buf.len().min(MARKER.len());
    if buf[..marker_seen].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let msg_type = buf[18];
    let ulen = usize::from(len);
    if !(HEADER_LEN..=MAX_EXTENDED_MESSAGE_LEN).contains(&ulen) {
        return Err(DecodeError::BadMessageLength { len });
    }
    let Some(kind) = MessageType::from_code(msg_type) else {
        return Err(DecodeError::BadMessageType { msg_type });
    };
    if ulen < kind.min_len() || ulen > kind.max_len(ctx.extended_message) {
        return Err(DecodeError::BadMessageLength { len });
    }
    Ok((buf.len() >= ulen).then_some(ulen))
}

/// A decoded message with the non-fatal RFC 7606 findings of its UPDATE, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMessage {
    /// The message. For an UPDATE with findings, the RFC 7606 outcome is already applied:
    /// discarded attributes are gone, and a treat-as-withdraw UPDATE has been rewritten into
    /// a withdrawal of every prefix it carried.
    pub message: Message,
    /// Errors whose action is [`crate::ErrorAction::TreatAsWithdraw`] or
    /// [`crate::ErrorAction::AttributeDiscard`], in the order found. The caller logs them;
    /// it must not close the session for them.
    pub findings: Vec<DecodeError>,
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

/// What was negotiated for encoding. The default is the pre-OPEN context: 2-octet AS,
/// 4096-octet frames.
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

impl Message {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Decodes one whole message (header included), strictly: any error, including UPDATE
    /// errors that RFC 7606 handles without a session reset, is returned. The caller checks
    /// [`DecodeError::action`]; to keep going after a treat-as-withdraw or attribute-discard
    /// error, use [`Message::decode_lenient`], which returns the UPDATE with the RFC 7606
    /// outcome applied.
    pub fn decode(frame: &[u8], ctx: &DecodeContext) -> Result<Message, DecodeError> {
        let decoded = Message::decode_lenient(frame, ctx)?;
        match decoded.findings.into_iter().max_by_key(DecodeError::action) {
            Some(strongest) => Err(strongest),
            None => Ok(decoded.message),
        }
    }

    /// Decodes one whole message (header included), applying RFC 7606 to UPDATEs: returns
    /// `Err` only for errors whose action is a session reset (send
    /// `NotificationMessage::from(&err)` and close); non-fatal UPDATE errors come back in
    /// [`DecodedMessage::findings`].
    pub fn decode_lenient(
        frame: &[u8],
        ctx: &DecodeContext,
    ) -> Result<DecodedMessage, DecodeError> {
        let len = match frame_len(frame, ctx)? {
            Some(len) if len == frame.len() => len,
            _ => {
                return Err(DecodeError::BadMessageLength {
                    len: u16::try_from(frame.len()).unwrap_or(u16::MAX),
                })
            }
        };
        let body = &frame[HEADER_LEN..len];
        let plain = |message| DecodedMessage {
            message,
            findings: Vec::new(),
        };
        Ok(match frame[18] {
            1 => plain(Message::Open(OpenMessage::decode_body(body)?)),
            2 => {
                let d = UpdateMessage::decode_body(body, ctx)?;
                DecodedMessage {
                    message: Message::Update(d.update),
                    findings: d.findings,
                }
            }
            3 => plain(Message::Notification(NotificationMessage::decode_body(
                body,
            )?)),
            4 => plain(Message::Keepalive),
            5 => plain(Message::RouteRefresh(RouteRefreshMessage::decode_body(
                body, frame,
            )?)),
            msg_type => return Err(DecodeError::BadMessageType { msg_type }),
        })
    }

    /// Appends one whole message (header included) to `out`. On error `out` is unchanged.
    pub fn encode(&self, ctx: &EncodeContext, out: &mut BytesMut) -> Result<(), EncodeError> {
        crate::wire::atomic(out, |out| {
            let start = out.len();
            out.put_slice(&MARKER);
            out.put_u16(0);
            out.put_u8(self.message_type().code());
            match self {
                Message::Open(m) => m.encode_body(out)?,
                Message::Update(m) => m.encode_body(ctx, out)?,
                Message::Notification(m) => m.encode_body(out),
                Message::Keepalive => {}
                Message::RouteRefresh(m) => m.encode_body(out),
            }
            let len = out.len() - start;
            check_len(
                "message length",
                len,
                self.message_type().max_len(ctx.extended_message),
            )?;
            let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLarge {
                field: "message length",
                actual: len,
                max: MAX_EXTENDED_MESSAGE_LEN,
            })?;
            out[start + 16..start + 18].copy_from_slice(&len16.to_be_bytes());
            Ok(())
        })
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, ctx: &EncodeContext) -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(ctx, &mut out)?;
        Ok(out)
    }
}
