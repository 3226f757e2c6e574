//! The ROUTE-REFRESH message (RFC 2918 §3) with the RFC 7313 message subtypes.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtyp|  SAFI |
//! +-------+-------+-------+-------+
//! ```

use crate::iana::{Afi, Safi};

/// ROUTE-REFRESH subtype (RFC 7313 §3.2): the "Reserved" octet of RFC 2918.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: normal route refresh request.
    Request,
    /// 1: Beginning of Route Refresh (BoRR).
    Begin,
    /// 2: End of Route Refresh (EoRR).
    End,
    /// Any other value (RFC 7313 §5: ignore on receipt).
    Unknown(u8),
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefreshMessage {
    /// Address family.
    pub afi: Afi,
    /// Subtype (RFC 7313).
    pub subtype: RefreshSubtype,
    /// Subsequent address family.
    pub safi: Safi,
}
