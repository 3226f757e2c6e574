//! Glue between the byte stream and `anyguard_proto`: framing and the allocation-free
//! walk of received UPDATEs into the received-route bookkeeping.

use anyguard_proto::{
    Afi, DecodeContext, DecodeError, Message, NotificationMessage, Safi, UpdateMessage, UpdateView,
};

use super::rib_in::RibIn;
use crate::status::model::MessageCounts;

/// Framing context: the reader cannot know when Extended Message is negotiated (it runs
/// ahead of the FSM), so it frames up to 65535 octets; the strict length check against
/// the negotiated maximum happens when the peer task decodes the frame.
const FRAMING: DecodeContext = DecodeContext {
    four_octet_as: false,
    extended_message: true,
    add_path_ipv4: false,
    add_path_ipv6: false,
};

/// Length of the first complete message in `buf`, `None` if more bytes are needed.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    anyguard_proto::frame_len(buf, &FRAMING)
}

/// True for an UPDATE frame.
pub(crate) fn is_update(frame: &[u8]) -> bool {
    frame.get(18) == Some(&2)
}

/// Applies a received UPDATE to the bookkeeping without allocating per prefix: withdrawals
/// first, then announcements (RFC 4271 §3.1 ordering inside one UPDATE). RFC 7606
/// treat-as-withdraw turns announcements into withdrawals; attribute discard changes
/// nothing for counting. `Err` is the NOTIFICATION for a session reset.
pub(crate) fn apply_update(
    frame: &[u8],
    ctx: &DecodeContext,
    rib: &mut RibIn,
) -> Result<(), NotificationMessage> {
    let view = UpdateView::parse(frame, ctx).map_err(|e| NotificationMessage::from(&e))?;
    for p in view.withdrawals() {
        rib.withdraw(p);
    }
    if view.is_treat_as_withdraw() {
        for p in view.announced() {
            rib.withdraw(p);
        }
    } else {
        for p in view.announced() {
            rib.announce(p);
        }
    }
    Ok(())
}

/// Counts one message by type.
pub(super) fn count(c: &mut MessageCounts, m: &Message) {
    match m {
        Message::Open(_) => c.open += 1,
        Message::Update(_) => c.update += 1,
        Message::Notification(_) => c.notification += 1,
        Message::Keepalive => c.keepalive += 1,
        Message::RouteRefresh(_) => c.route_refresh += 1,
    }
}

/// End-of-RIB (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI
/// for the others.
pub(super) fn end_of_rib(afi: Afi) -> UpdateMessage {
    match afi {
        Afi::Ipv4 => UpdateMessage::default(),
        other => UpdateMessage {
            withdrawn: Vec::new(),
            attributes: vec![anyguard_proto::PathAttribute::MpUnreach(
                anyguard_proto::MpUnreach {
                    afi: other,
                    safi: Safi::Unicast,
                    withdrawn: Vec::new(),
                },
            )],
            nlri: Vec::new(),
        },
    }
}
