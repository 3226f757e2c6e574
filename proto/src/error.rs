//! Decode and encode errors.
//!
//! [`DecodeError`] follows the error classes of RFC 4271 §6: each variant maps to exactly one
//! NOTIFICATION code/subcode/data (`impl From<&DecodeError> for NotificationMessage`, in
//! `notification.rs`). UPDATE errors also carry the RFC 7606 §2 *action*
//! ([`DecodeError::action`]): only [`ErrorAction::SessionReset`] closes the session;
//! [`ErrorAction::TreatAsWithdraw`] and [`ErrorAction::AttributeDiscard`] are reported to the
//! caller next to the decoded UPDATE (see `update::DecodedUpdate`).
//!
//! Errors hold owned copies of the octets the NOTIFICATION must echo (RFC 4271 §6.3 asks for
//! the offending attribute), never borrowed input slices.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::attribute::type_code;

/// What the receiver of a malformed message must do (RFC 7606 §2), strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorAction {
    /// Drop the offending attribute and process the rest of the UPDATE (RFC 7606 §2).
    AttributeDiscard,
    /// Handle every prefix in the UPDATE as withdrawn (RFC 7606 §2); keep the session.
    TreatAsWithdraw,
    /// Send the NOTIFICATION and close the session (RFC 4271 §6).
    SessionReset,
}

/// Why an UPDATE's attribute list is malformed (RFC 4271 §6.3, RFC 7606 §3, §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeListFault {
    /// Withdrawn Routes Length runs past the message (RFC 4271 §6.3).
    WithdrawnLengthOverrun,
    /// Total Path Attribute Length runs past the message (RFC 4271 §6.3).
    TotalAttributeLengthOverrun,
    /// An attribute's header or value runs past the Total Path Attribute Length
    /// (RFC 7606 §4: treat-as-withdraw).
    AttributeOverrun,
    /// MP_REACH_NLRI or MP_UNREACH_NLRI appears more than once (RFC 7606 §3 g).
    DuplicateMpAttribute,
    /// Another attribute appears more than once: all but the first are discarded
    /// (RFC 7606 §3 g).
    DuplicateAttribute {
        /// The repeated type code.
        type_code: u8,
    },
}

/// Where a malformed prefix was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NlriLocation {
    /// The UPDATE's Withdrawn Routes field.
    Withdrawn,
    /// The UPDATE's NLRI field.
    Nlri,
}

/// A failure to decode a message, by RFC 4271 §6 error class.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// RFC 4271 §6.1: the marker is not all ones. NOTIFICATION 1/1.
    #[error("connection not synchronized: bad marker")]
    ConnectionNotSynchronized,
    /// RFC 4271 §6.1: the Length field is out of range for the message type.
    /// NOTIFICATION 1/2, data = the length.
    #[error("bad message length {len}")]
    BadMessageLength {
        /// The Length field as received.
        len: u16,
    },
    /// RFC 4271 §6.1: unknown message type. NOTIFICATION 1/3, data = the type.
    #[error("bad message type {msg_type}")]
    BadMessageType {
        /// The Type field as received.
        msg_type: u8,
    },
    /// RFC 4271 §6.2: version is not 4. NOTIFICATION 2/1, data = 4 as two octets.
    #[error("unsupported BGP version {version}")]
    UnsupportedVersionNumber {
        /// The version received.
        version: u8,
    },
    /// RFC 4271 §6.2, RFC 7607: the OPEN (or its 4-octet AS capability) carries AS 0.
    /// NOTIFICATION 2/2.
    #[error("bad peer AS {asn}")]
    BadPeerAs {
        /// The ASN received.
        asn: u32,
    },
    /// RFC 4271 §6.2, RFC 6286 §2.2: the BGP Identifier is 0. NOTIFICATION 2/3.
    #[error("bad BGP identifier {identifier}")]
    BadBgpIdentifier {
        /// The identifier received.
        identifier: Ipv4Addr,
    },
    /// RFC 4271 §6.2: an optional parameter other than Capabilities. NOTIFICATION 2/4.
    #[error("unsupported optional parameter type {param_type}")]
    UnsupportedOptionalParameter {
        /// The parameter type.
        param_type: u8,
    },
    /// RFC 4271 §6.2: a recognised optional parameter (or a capability inside it, or the
    /// parameter lengths themselves) is malformed. NOTIFICATION 2/0 (Unspecific).
    #[error("malformed optional parameter (capability code {capability_code:?})")]
    MalformedOptionalParameter {
        /// The malformed capability, when the fault is inside one.
        capability_code: Option<u8>,
    },
    /// RFC 4271 §6.2: hold time 1 or 2 seconds. NOTIFICATION 2/6.
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime {
        /// The hold time received.
        hold_time: u16,
    },
    /// RFC 4271 §6.3, RFC 7606 §3 g, §4: malformed attribute list. NOTIFICATION 3/1.
    #[error("malformed attribute list: {fault:?}")]
    MalformedAttributeList {
        /// What is wrong.
        fault: AttributeListFault,
    },
    /// RFC 4271 §6.3: an unknown attribute without the Optional bit. NOTIFICATION 3/2,
    /// data = the attribute.
    #[error("unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnownAttribute {
        /// Its type code.
        type_code: u8,
        /// The whole attribute (flags, type, length, value).
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3, RFC 7606 §3 d: a mandatory attribute is missing. NOTIFICATION 3/3,
    /// data = the missing type code.
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnownAttribute {
        /// The missing type code.
        type_code: u8,
    },
    /// RFC 4271 §6.3, RFC 7606 §3 c: Optional/Transitive flags conflict with the type.
    /// NOTIFICATION 3/4, data = the attribute.
    #[error("attribute flags error on type {type_code}")]
    AttributeFlagsError {
        /// Its type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3, RFC 7606 §7: the attribute length is wrong for its type.
    /// NOTIFICATION 3/5, data = the attribute.
    #[error("attribute length error on type {type_code}")]
    AttributeLengthError {
        /// Its type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3, RFC 7606 §7.1: ORIGIN value undefined. NOTIFICATION 3/6,
    /// data = the attribute.
    #[error("invalid ORIGIN attribute")]
    InvalidOriginAttribute {
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3, RFC 7606 §7.3: NEXT_HOP is not a usable host address.
    /// NOTIFICATION 3/8, data = the attribute.
    #[error("invalid NEXT_HOP attribute")]
    InvalidNextHopAttribute {
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3: a recognised optional attribute has an invalid value.
    /// NOTIFICATION 3/9, data = the attribute.
    #[error("optional attribute error on type {type_code}")]
    OptionalAttributeError {
        /// Its type code.
        type_code: u8,
        /// The whole attribute.
        attribute: Vec<u8>,
    },
    /// RFC 4271 §6.3, RFC 7606 §5.3: a prefix is syntactically wrong (length over the
    /// family's maximum, or overrun; bits beyond the length are irrelevant, RFC 4271 §4.3).
    /// NOTIFICATION 3/10.
    #[error("invalid network field in {location:?}")]
    InvalidNetworkField {
        /// Where the prefix was.
        location: NlriLocation,
    },
    /// RFC 4271 §6.3, RFC 7606 §7.2: AS_PATH is syntactically wrong. NOTIFICATION 3/11.
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// RFC 7606 §5.2: an error that would be treat-as-withdraw (or stronger) in an UPDATE
    /// that announces nothing (no NLRI, no MP_REACH_NLRI prefix) yet carries attributes
    /// other than MP_UNREACH_NLRI: its NLRI cannot be trusted to have been parsed, so the
    /// session is reset. The NOTIFICATION is the one of `error`.
    #[error("{error} in an UPDATE without reachable NLRI (RFC 7606 §5.2)")]
    NoReachableNlri {
        /// The first error found, which decides the NOTIFICATION.
        error: Box<DecodeError>,
    },
    /// RFC 7313 §5: a BoRR/EoRR ROUTE-REFRESH whose length is not 4. NOTIFICATION 7/1,
    /// data = the whole message.
    #[error("invalid ROUTE-REFRESH message length")]
    InvalidRouteRefreshLength {
        /// The whole message, header included.
        message: Vec<u8>,
    },
}

impl DecodeError {
    /// The RFC 7606 action for this error. Everything outside UPDATE path attributes is a
    /// session reset (RFC 4271 §6).
    pub fn action(&self) -> ErrorAction {
        use DecodeError as E;
        match self {
            E::MalformedAttributeList { fault } => match fault {
                AttributeListFault::AttributeOverrun => ErrorAction::TreatAsWithdraw,
                AttributeListFault::DuplicateAttribute { .. } => ErrorAction::AttributeDiscard,
                AttributeListFault::WithdrawnLengthOverrun
                | AttributeListFault::TotalAttributeLengthOverrun
                | AttributeListFault::DuplicateMpAttribute => ErrorAction::SessionReset,
            },
            E::MissingWellKnownAttribute { .. }
            | E::AttributeFlagsError { .. }
            | E::InvalidOriginAttribute { .. }
            | E::InvalidNextHopAttribute { .. }
            | E::MalformedAsPath => ErrorAction::TreatAsWithdraw,
            E::AttributeLengthError { type_code, .. }
            | E::OptionalAttributeError { type_code, .. } => malformed_attribute_action(*type_code),
            E::ConnectionNotSynchronized
            | E::BadMessageLength { .. }
            | E::BadMessageType { .. }
            | E::UnsupportedVersionNumber { .. }
            | E::BadPeerAs { .. }
            | E::BadBgpIdentifier { .. }
            | E::UnsupportedOptionalParameter { .. }
            | E::MalformedOptionalParameter { .. }
            | E::UnacceptableHoldTime { .. }
            | E::UnrecognizedWellKnownAttribute { .. }
            | E::InvalidNetworkField { .. }
            | E::NoReachableNlri { .. }
            | E::InvalidRouteRefreshLength { .. } => ErrorAction::SessionReset,
        }
    }
}

/// The RFC 7606 §7 action for a malformed value of attribute `type_code`.
pub(crate) fn malformed_attribute_action(type_code: u8) -> ErrorAction {
    match type_code {
        // RFC 7606 §7.6 (ATOMIC_AGGREGATE), §7.7 (AGGREGATOR), RFC 6793 §6 (AS4_PATH,
        // AS4_AGGREGATOR).
        type_code::ATOMIC_AGGREGATE
        | type_code::AGGREGATOR
        | type_code::AS4_PATH
        | type_code::AS4_AGGREGATOR => ErrorAction::AttributeDiscard,
        // RFC 7606 §7.11, §5.3: the NLRI of an MP attribute cannot be located reliably.
        type_code::MP_REACH_NLRI | type_code::MP_UNREACH_NLRI => ErrorAction::SessionReset,
        // RFC 7606 §7.1-§7.5, §7.8-§7.10, §7.14, RFC 8092 §6: everything else.
        _ => ErrorAction::TreatAsWithdraw,
    }
}

/// A failure to encode a message. Encoding never truncates: a value that does not fit its
/// wire field is an error, and the output buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A field does not fit its wire width.
    #[error("{field} too large: {actual} > {max}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size.
        actual: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A prefix has bits set beyond its length (e.g. 203.0.113.1/24); RFC 7606 §5.3 receivers
    /// would reject it.
    #[error("prefix {prefix} has host bits set")]
    HostBitsSet {
        /// The prefix.
        prefix: ipnet::IpNet,
    },
    /// A prefix or next hop does not belong to the attribute's address family.
    #[error("address family mismatch in {field}")]
    FamilyMismatch {
        /// The field.
        field: &'static str,
    },
    /// An AS_PATH segment with no ASN (RFC 7606 §7.2 would make it malformed).
    #[error("empty AS_PATH segment")]
    EmptyAsPathSegment,
}

/// Checks that `actual` fits `max`, the one width check used by every encoder.
pub(crate) fn check_len(field: &'static str, actual: usize, max: usize) -> Result<(), EncodeError> {
    if actual > max {
        Err(EncodeError::TooLarge { field, actual, max })
    } else {
        Ok(())
    }
}
