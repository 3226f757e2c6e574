//! The UPDATE message (RFC 4271 §4.3).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```

use ipnet::Ipv4Net;

use crate::attribute::PathAttribute;

/// An owned UPDATE message: what the announcer builds and what test peers decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateMessage {
    /// IPv4 unicast prefixes withdrawn in the classic field.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes, in wire order.
    pub attributes: Vec<PathAttribute>,
    /// IPv4 unicast prefixes announced in the classic field.
    pub nlri: Vec<Ipv4Net>,
}
