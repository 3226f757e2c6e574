//! anyguard-proto: a strict BGP-4 wire codec.
//!
//! Pure: no I/O, no logging, no async. Owned message types for what a speaker builds and
//! sends; a borrowing, allocation-free view of UPDATE messages for what it receives (an
//! upstream may send a full Internet table).
//!
//! Entry points: `frame_len` to cut frames out of a byte stream, `Message::decode` and
//! `Message::encode` with the contexts negotiated from the two OPEN messages. The BFD
//! Control packet (RFC 5880 §4.1), the other protocol anyguard speaks, is [`bfd`].
#![warn(missing_docs)]

pub mod attribute;
pub mod bfd;
pub mod capability;
pub mod error;
pub mod fuzzing;
pub mod iana;
pub mod message;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod route_refresh;
pub mod update;
pub mod update_view;
mod wire;

pub use attribute::{
    AsPath, AsPathSegment, AsPathSegmentType, Community, ExtendedCommunity, LargeCommunity,
    MpReach, MpUnreach, Origin, PathAttribute,
};
pub use capability::{AddPathMode, Capability, GracefulRestartFamily};
pub use error::{AttributeListFault, DecodeError, EncodeError, ErrorAction, NlriLocation};
pub use iana::{Afi, Safi};
pub use message::{frame_len, DecodeContext, DecodedMessage, EncodeContext, Message, MessageType};
pub use nlri::{PrefixFault, PrefixIter};
pub use notification::{ErrorCode, NotificationMessage, ShutdownCommunication};
pub use open::OpenMessage;
pub use route_refresh::{RefreshSubtype, RouteRefreshMessage};
pub use update::{DecodedUpdate, UpdateMessage};
pub use update_view::UpdateView;
