//! Building our OPEN and checking the peer's (RFC 4271 §6.2, RFC 5492, RFC 6286,
//! RFC 6793): the checks run in the order of §6.2 and the first failure picks the
//! OPEN Message Error subcode.
//!
//! "Required" capabilities (RFC 5492 §5, subcode 7): at least one of the address families
//! we are configured for must be usable on the session. A session that can carry none of
//! our routes is refused with Unsupported Capability and the Multiprotocol capabilities we
//! wanted in the data field. A session that carries only some of them comes up, and the
//! missing families are reported in [`Negotiated::missing_families`]: a router that does
//! not take IPv6 on an IPv4 session is a common, deliberate set-up and must not flap.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyguard_proto::notification::open_subcode;
use anyguard_proto::{
    Afi, Capability, ErrorCode, GracefulRestartFamily, NotificationMessage, OpenMessage, Safi,
};

use super::types::{Config, Negotiated, AS_TRANS, BGP_VERSION};

/// Largest Restart Time the 12-bit field carries (RFC 4724 §3).
const MAX_RESTART_TIME: u16 = 4095;

fn families(cfg: &Config) -> Vec<(Afi, Safi)> {
    let mut v = Vec::new();
    if cfg.ipv4 {
        v.push((Afi::Ipv4, Safi::Unicast));
    }
    if cfg.ipv6 {
        v.push((Afi::Ipv6, Safi::Unicast));
    }
    v
}

/// Hold time in whole seconds, saturating at the field's width.
fn secs_u16(d: Duration) -> u16 {
    u16::try_from(d.as_secs()).unwrap_or(u16::MAX)
}

/// Our OPEN. `restart_state` sets the Graceful Restart R bit.
pub(crate) fn build_open(cfg: &Config, restart_state: bool) -> OpenMessage {
    let mut capabilities: Vec<Capability> = families(cfg)
        .into_iter()
        .map(|(afi, safi)| Capability::Multiprotocol { afi, safi })
        .collect();
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::EnhancedRouteRefresh);
    capabilities.push(Capability::ExtendedMessage);
    if let Some(gr) = cfg.graceful_restart {
        capabilities.push(Capability::GracefulRestart {
            restart_state,
            notification: false,
            restart_time: secs_u16(gr.restart_time).min(MAX_RESTART_TIME),
            // F bit set: our announcements do not depend on a BGP-derived forwarding
            // table, so "forwarding state" survives a daemon restart by construction.
            families: families(cfg)
                .into_iter()
                .map(|(afi, safi)| GracefulRestartFamily {
                    afi,
                    safi,
                    forwarding_preserved: true,
                })
                .collect(),
        });
    }
    capabilities.push(Capability::FourOctetAs { asn: cfg.local_asn });
    OpenMessage {
        version: BGP_VERSION,
        my_as: u16::try_from(cfg.local_asn).unwrap_or(AS_TRANS),
        hold_time: secs_u16(cfg.hold_time),
        bgp_identifier: cfg.router_id,
        capabilities,
    }
}

fn open_error(subcode: u8, data: Vec<u8>) -> NotificationMessage {
    NotificationMessage {
        code: ErrorCode::OpenMessage,
        subcode,
        data,
    }
}

/// Encodes a Multiprotocol capability TLV for the Unsupported Capability data field.
fn mp_capability_tlv(afi: Afi, safi: Safi) -> [u8; 6] {
    let [a0, a1] = u16::from(afi).to_be_bytes();
    [1, 4, a0, a1, 0, u8::from(safi)]
}

/// Checks the peer's OPEN against our configuration and negotiates the session.
/// Errors are the NOTIFICATION to send (RFC 4271 §6.2).
pub(crate) fn check_open(
    cfg: &Config,
    open: &OpenMessage,
) -> Result<Negotiated, NotificationMessage> {
    // §6.2: version first; data = the largest version we support, 2 octets.
    if open.version != BGP_VERSION {
        return Err(open_error(
            open_subcode::UNSUPPORTED_VERSION_NUMBER,
            u16::from(BGP_VERSION).to_be_bytes().to_vec(),
        ));
    }

    // Peer AS (RFC 4271 §6.2, RFC 6793 §4.1, RFC 7607: AS 0 is never acceptable).
    let four_octet = open.capabilities.iter().find_map(|c| match c {
        Capability::FourOctetAs { asn } => Some(*asn),
        _ => None,
    });
    let remote_asn = four_octet.unwrap_or(u32::from(open.my_as));
    if open.my_as == 0 || remote_asn == 0 || remote_asn != cfg.remote_asn {
        return Err(open_error(open_subcode::BAD_PEER_AS, Vec::new()));
    }

    // BGP Identifier (RFC 6286 §2.2): non-zero, and different from ours on iBGP.
    if open.bgp_identifier == Ipv4Addr::UNSPECIFIED
        || (cfg.is_ibgp() && open.bgp_identifier == cfg.router_id)
    {
        return Err(open_error(open_subcode::BAD_BGP_IDENTIFIER, Vec::new()));
    }

    // Hold time (RFC 4271 §4.2): zero or at least three seconds.
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(open_subcode::UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    let ours = secs_u16(cfg.hold_time);
    let hold = Duration::from_secs(u64::from(ours.min(open.hold_time)));

    // Capabilities.
    let has = |want: &Capability| open.capabilities.iter().any(|c| c == want);
    let peer_mp: Vec<(Afi, Safi)> = open
        .capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
            _ => None,
        })
        .collect();
    let ipv4_unicast =
        cfg.ipv4 && (peer_mp.is_empty() || peer_mp.contains(&(Afi::Ipv4, Safi::Unicast)));
    let ipv6_unicast = cfg.ipv6 && peer_mp.contains(&(Afi::Ipv6, Safi::Unicast));
    let mut missing = Vec::new();
    let mut missing_tlvs = Vec::new();
    if cfg.ipv4 && !ipv4_unicast {
        missing.push("ipv4-unicast");
        missing_tlvs.extend_from_slice(&mp_capability_tlv(Afi::Ipv4, Safi::Unicast));
    }
    if cfg.ipv6 && !ipv6_unicast {
        missing.push("ipv6-unicast");
        missing_tlvs.extend_from_slice(&mp_capability_tlv(Afi::Ipv6, Safi::Unicast));
    }
    if !ipv4_unicast && !ipv6_unicast {
        return Err(open_error(
            open_subcode::UNSUPPORTED_CAPABILITY,
            missing_tlvs,
        ));
    }
    let peer_gr = open
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::GracefulRestart { .. }));

    Ok(Negotiated {
        remote_open: open.clone(),
        remote_asn,
        remote_id: open.bgp_identifier,
        hold_time: hold,
        keepalive: hold / 3,
        four_octet_as: four_octet.is_some(),
        ipv4_unicast,
        ipv6_unicast,
        route_refresh: has(&Capability::RouteRefresh),
        enhanced_route_refresh: has(&Capability::EnhancedRouteRefresh),
        extended_message: has(&Capability::ExtendedMessage),
        graceful_restart: cfg.graceful_restart.is_some() && peer_gr,
        missing_families: missing,
    })
}
