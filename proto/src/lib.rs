//! anyguard-proto: a strict BGP-4 wire codec.
//!
//! Pure: no I/O, no logging, no async. Owned message types for what a speaker builds and
//! sends; a borrowing, allocation-free view of UPDATE messages for what it receives (an
//! upstream may send a full Internet table).
//!
//! Entry points: `frame_len` to cut frames out of a byte stream, `Message::decode` and
//! `Message::encode` with the contexts negotiated from the two OPEN messages.
#![warn(missing_docs)]

pub mod attribute;
pub mod capability;
pub mod error;
pub mod iana;
pub mod message;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod route_refresh;
pub mod update;

pub use attribute::{
    AsPath, AsPathSegment, AsPathSegmentType, Community, ExtendedCommunity, LargeCommunity,
    MpReach, MpUnreach, Origin, PathAttribute,
};
pub use capability::{AddPathMode, Capability, GracefulRestartFamily};
pub use error::{DecodeError, EncodeError};
pub use iana::{Afi, Safi};
pub use message::{DecodeContext, EncodeContext, Message, MessageType};
pub use notification::{ErrorCode, NotificationMessage, ShutdownCommunication};
pub use open::OpenMessage;
pub use route_refresh::{RefreshSubtype, RouteRefreshMessage};
pub use update::UpdateMessage;
