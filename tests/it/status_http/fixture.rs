//! The realistic status document the status tests serve.

use anyguard::status::model::*;

/// A document with every list non-empty and every optional struct present somewhere, so its
/// JSON shows every key the daemon can serve.
pub(crate) fn realistic_document() -> StatusDocument {
    let at = |t: &str| format!("2026-11-25T{t}Z");
    let counts = |update, keepalive| MessageCounts {
        open: 1,
        update,
        notification: 0,
        keepalive,
        route_refresh: 0,
    };
    StatusDocument {
        daemon: DaemonStatus {
            version: "0.1.0".into(),
            router_id: "198.18.0.2".into(),
            local_asn: 64512,
            site: Some("ams1".into()),
            uptime_seconds: 7384,
            started_at: at("04:00:00"),
            config_generation: 3,
            config_source: "/etc/anyguard/anyguard.toml".into(),
            config_loaded_at: at("05:40:00"),
            last_reload: Some(ReloadStatus {
                at: at("05:50:00"),
                ok: false,
                errors: vec![
                    "/etc/anyguard/anyguard.toml:14:1: peer[1].hold_time: must be 0 or at least 3s"
                        .into(),
                ],
            }),
            ready: true,
            stopping: false,
            stop_reason: None,
            state_file: Some(StateFileStatus {
                path: "/var/lib/anyguard/state.json".into(),
                drains: vec!["ntp".into()],
                addresses: 2,
                last_write: Some(StateWriteStatus {
                    at: at("05:40:12"),
                    ok: true,
                    error: None,
                }),
            }),
        },
        services: vec![
            std::sync::Arc::new(ServiceStatus {
                name: "dns".into(),
                state: "up".into(),
                since: at("04:00:12"),
                reason: "2/2 checks up".into(),
                prefixes: vec!["203.0.113.53/32".into(), "2001:db8:53::/48".into()],
                announcements: vec![
                    AnnouncementStatus {
                        peer: "edge1".into(),
                        state: "announced".into(),
                        prefixes: vec!["203.0.113.53/32".into(), "2001:db8:53::/48".into()],
                    },
                    AnnouncementStatus {
                        peer: "edge2".into(),
                        state: "pending".into(),
                        prefixes: vec![],
                    },
                ],
                checks: vec![
                    CheckStatus {
                        name: "tcp#0".into(),
                        kind: "tcp".into(),
                        target: "198.18.0.2:53".into(),
                        state: "up".into(),
                        rise_count: 3,
                        rise: 3,
                        fall_count: 0,
                        fall: 2,
                        last_results: vec![
                            ProbeResultStatus {
                                at: at("06:03:02"),
                                ok: true,
                                latency_ms: 0.42,
                                detail: String::new(),
                            },
                            ProbeResultStatus {
                                at: at("06:02:57"),
                                ok: true,
                                latency_ms: 0.39,
                                detail: String::new(),
                            },
                        ],
                        older_results: Vec::new(),
                        live: Default::default(),
                    },
                    CheckStatus {
                        name: "resolve".into(),
                        kind: "dns".into(),
                        target: "198.18.0.2:53 example.org A".into(),
                        state: "up".into(),
                        rise_count: 3,
                        rise: 3,
                        fall_count: 0,
                        fall: 2,
                        last_results: vec![ProbeResultStatus {
                            at: at("06:03:01"),
                            ok: true,
                            latency_ms: 1.25,
                            detail: String::new(),
                        }],
                        older_results: Vec::new(),
                        live: Default::default(),
                    },
                ],
                guard: GuardStatus {
                    decision: "allow".into(),
                    reason: "3 sites announcing".into(),
                    intent: "announce".into(),
                    sites_announcing: vec!["fra1".into(), "lhr1".into()],
                    min_sites: 1,
                },
                dampening: DampeningStatus {
                    flaps: 1,
                    hold_down_ms: 0,
                    suppressed_until: None,
                },
            }),
            std::sync::Arc::new(ServiceStatus {
                name: "ntp".into(),
                state: "held".into(),
                since: at("05:58:30"),
                reason: "check http#0 down; guard holds: last site announcing".into(),
                prefixes: vec!["198.51.100.123/32".into()],
                announcements: vec![AnnouncementStatus {
                    peer: "edge1".into(),
                    state: "depreferred".into(),
                    prefixes: vec!["198.51.100.123/32".into()],
                }],
                checks: vec![CheckStatus {
                    name: "http#0".into(),
                    kind: "http".into(),
                    target: "http://198.18.0.2:8080/health".into(),
                    state: "down".into(),
                    rise_count: 0,
                    rise: 2,
                    fall_count: 5,
                    fall: 3,
                    last_results: vec![ProbeResultStatus {
                        at: at("06:03:00"),
                        ok: false,
                        latency_ms: 2000.0,
                        detail: "timed out after 2s".into(),
                    }],
                    older_results: Vec::new(),
                    live: Default::default(),
                }],
                guard: GuardStatus {
                    decision: "held".into(),
                    reason: "no other site announces ntp (min_sites 1)".into(),
                    intent: "withdraw".into(),
                    sites_announcing: vec![],
                    min_sites: 1,
                },
                dampening: DampeningStatus {
                    flaps: 4,
                    hold_down_ms: 60_000,
                    suppressed_until: Some(at("06:04:30")),
                },
            }),
        ],
        peers: vec![
            PeerStatus {
                name: "edge1".into(),
                address: "198.18.0.1".into(),
                remote_asn: 64496,
                state: "established".into(),
                since: at("04:00:05"),
                hold_time: Some(9),
                capabilities: vec!["4-octet-as".into(), "mp-ipv4-unicast".into()],
                messages_sent: counts(4, 2460),
                messages_received: counts(2, 2461),
                prefixes_sent: 3,
                prefixes_received_ipv4: 1,
                prefixes_received_ipv6: 0,
                service_routes_received: vec!["203.0.113.53/32 via AS 64496 64511".into()],
                last_error: None,
                last_notification_sent: Some(NotificationStatus {
                    at: at("03:59:58"),
                    code: 6,
                    subcode: 2,
                    name: "Cease/Administrative Shutdown".into(),
                    communication: Some("anyguard stopping: upgrade".into()),
                }),
                last_notification_received: None,
                established_count: 2,
                session: 0,
                bfd: Some(BfdStatus {
                    state: "up".into(),
                    since: at("04:00:04"),
                    remote_state: "up".into(),
                    local_discriminator: 2_970_135_041,
                    remote_discriminator: 1,
                    tx_interval_ms: 300,
                    detection_time_ms: Some(900),
                    diag: 0,
                    diag_name: "No Diagnostic".into(),
                    remote_diag: 0,
                    up_count: 1,
                    failures: 0,
                    packets_in: 24_601,
                    packets_out: 24_655,
                    bad_packets: 0,
                    note: None,
                }),
            },
            PeerStatus {
                name: "edge2".into(),
                address: "2001:db8::1".into(),
                remote_asn: 64497,
                state: "active".into(),
                since: at("06:01:10"),
                hold_time: None,
                capabilities: vec![],
                messages_sent: counts(0, 10),
                messages_received: counts(0, 9),
                prefixes_sent: 0,
                prefixes_received_ipv4: 0,
                prefixes_received_ipv6: 0,
                service_routes_received: vec![],
                last_error: Some("connect: connection refused".into()),
                last_notification_sent: None,
                last_notification_received: Some(NotificationStatus {
                    at: at("06:01:09"),
                    code: 4,
                    subcode: 0,
                    name: "Hold Timer Expired".into(),
                    communication: None,
                }),
                established_count: 1,
                session: 0,
                bfd: None,
            },
        ],
        bfd: Some(BfdDaemonStatus {
            dropped: BfdDropCounts {
                ttl: 2,
                malformed: 0,
                no_session: 15,
                unknown_discriminator: 1,
                wrong_source: 0,
            },
        }),
        guard: None,
        pending_removals: vec![PendingRemovalStatus {
            service: "web".into(),
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
            decision: "held".into(),
            reason: "removed from the config; withdrawing web would leave 1 of 3 sites \
                     announcing (min_sites 2); b: held, ranked after us, c: withdrawing"
                .into(),
            intent: "held".into(),
            sites_announcing: Vec::new(),
            min_sites: 2,
            since: at("05:50:00.120"),
        }],
        fleet: Some(FleetStatus {
            source: "/etc/anyguard/fleet.toml".into(),
            digest: "5d41f0c2a7e94b1c8f3e2d6a0b9c7e1f4a2d8b6c0e3f5a7d9b1c3e5f7a9b2d4c".into(),
            poll_interval_ms: 1000,
            poll_timeout_ms: 500,
            auth: "hmac-sha256".into(),
            warning: None,
            sites: vec![
                FleetSiteStatus {
                    name: "fra1".into(),
                    rank: 1,
                    status_url: "http://198.18.2.2:9180/status".into(),
                    report_url: "http://198.18.2.2:9181/fleet/report".into(),
                    digest: Some(
                        "5d41f0c2a7e94b1c8f3e2d6a0b9c7e1f4a2d8b6c0e3f5a7d9b1c3e5f7a9b2d4c".into(),
                    ),
                    fleet: "same".into(),
                    last_poll: "ok".into(),
                    poll_failures: failures(&[("timeout", 2), ("request", 1)]),
                },
                FleetSiteStatus {
                    name: "lhr1".into(),
                    rank: 2,
                    status_url: "http://198.18.3.2:9180/status".into(),
                    report_url: "http://198.18.3.2:9181/fleet/report".into(),
                    digest: Some(
                        "9e107d9d372bb6826bd81d3542a419d6e277d4d731479571562f82a2b8f0ce61".into(),
                    ),
                    fleet: "different".into(),
                    last_poll: "report signature is invalid (signature does not match)".into(),
                    poll_failures: failures(&[("bad_signature", 3)]),
                },
            ],
            mismatch: vec!["lhr1".into()],
            backend: "etcd".into(),
            store: Some(StoreStatus {
                endpoints: vec![
                    "https://198.18.10.2:2379".into(),
                    "https://198.18.10.3:2379".into(),
                ],
                key_prefix: "/anyguard/prod".into(),
                connected: true,
                error: None,
                since_ms: Some(7_380_000),
                last_contact_ms: Some(420),
                lease_id: Some("694d8b1f0c2a7e11".into()),
                lease_ttl_ms: 4_000,
                lease_ttl_configured_ms: 5_000,
                revision: 18_342,
                last_txn: Some(StoreTxnStatus {
                    what: "withdraw web 203.0.113.0/24".into(),
                    outcome: "conflict".into(),
                    revision: 18_340,
                    at: at("05:50:00.130"),
                    changed: vec!["fra1: held at revision 18339".into()],
                }),
                last_conflict: Some(StoreTxnStatus {
                    what: "withdraw web 203.0.113.0/24".into(),
                    outcome: "conflict".into(),
                    revision: 18_340,
                    at: at("05:50:00.130"),
                    changed: vec!["fra1: held at revision 18339".into()],
                }),
                withdrawals_committed: 2,
                withdrawals_conflicted: 1,
                publications: 41,
                txn_errors: 0,
                prefixes: vec![
                    StorePrefixStatus {
                        service: "dns".into(),
                        prefix: "198.51.100.0/24".into(),
                        sites_announcing: vec!["ams1".into(), "fra1".into(), "lhr1".into()],
                    },
                    StorePrefixStatus {
                        service: "web".into(),
                        prefix: "203.0.113.0/24".into(),
                        sites_announcing: vec!["ams1".into(), "fra1".into()],
                    },
                ],
            }),
        }),
    }
}

/// Every poll failure reason with `some` counts, the others 0 (as the daemon lists them).
fn failures(some: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    anyguard::guard::view::POLL_FAILURE_REASONS
        .iter()
        .map(|r| {
            let n = some.iter().find(|(s, _)| s == r).map_or(0, |(_, n)| *n);
            ((*r).to_owned(), n)
        })
        .collect()
}
