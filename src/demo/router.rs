//! The demo's upstream router: one BGP speaker that accepts a session from each site and
//! shows which sites it has a path from for the anycast prefix.
//!
//! It is anyguard's own speaker turned around: each site's session is a passive peer task
//! ([`crate::session::spawn_peer`], the same FSM, codec and Adj-RIB-In bookkeeping the
//! daemon uses) that announces nothing. The peer task reports every change of the routes
//! it received inside the anycast prefix ([`PeerEvent::ServiceRoutes`]) and the session
//! going down ([`PeerEvent::Down`], RFC 4271 §9.1.4: the routes of a closed session are
//! gone); [`RouterTable`] folds those events into the router's view, which is pure and
//! table-tested. Each site connects to a port of its own (all of them come from
//! 127.0.0.1), so a connection's port says which site it is.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::announcer::RibOut;
use crate::config::{PeerConfig, PeerMode};
use crate::session::{spawn_peer, LocalSpeaker, PeerEvent, PeerHandle, StopReason, Tuning};
use crate::status::model::PeerStatus;

/// The router's AS (the sites' upstream; eBGP).
pub const ROUTER_ASN: u32 = 65000;
/// The router's BGP identifier.
pub const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// The router's view of one prefix: which sites it has a path from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterTable {
    prefix: IpNet,
    sites: Vec<String>,
    paths: BTreeSet<String>,
}

/// A change of the router's view, as returned by [`RouterTable::on_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// Sites with a path now, in site order.
    pub paths: Vec<String>,
    /// Sites whose path just appeared.
    pub gained: Vec<String>,
    /// Sites whose path just went.
    pub lost: Vec<String>,
}

impl RouterTable {
    /// An empty table for `prefix`, with sessions from `sites` (in the order shown).
    pub fn new(prefix: IpNet, sites: &[&str]) -> Self {
        RouterTable {
            prefix,
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            paths: BTreeSet::new(),
        }
    }

    /// The prefix shown.
    pub fn prefix(&self) -> IpNet {
        self.prefix
    }

    /// The sites (session names) shown.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// Sites the router has a path from, in site order.
    pub fn paths(&self) -> Vec<String> {
        self.sites
            .iter()
            .filter(|s| self.paths.contains(*s))
            .cloned()
            .collect()
    }

    /// Folds a peer task's event in; the new view when the set of paths changed. Only
    /// the prefix itself counts as a path (a more-specific would be another route).
    pub fn on_event(&mut self, event: &PeerEvent) -> Option<TableChange> {
        let (site, has) = match event {
            PeerEvent::ServiceRoutes { peer, routes } => (peer, routes.contains(&self.prefix)),
            PeerEvent::Down { peer, .. } => (peer, false),
            _ => return None,
        };
        if !self.sites.contains(site) {
            return None;
        }
        let changed = if has {
            self.paths.insert(site.clone())
        } else {
            self.paths.remove(site)
        };
        changed.then(|| TableChange {
            paths: self.paths(),
            gained: if has { vec![site.clone()] } else { vec![] },
            lost: if has { vec![] } else { vec![site.clone()] },
        })
    }
}

/// The router's table as one line: the prefix, how many sites it has a path from (out
/// of all), one column per site (`a` with a path, `.` without) and what just changed.
///
/// ```text
/// router  203.0.113.0/24  2/3 paths  [a b .]  (c withdrawn)
/// ```
pub fn render_table(table: &RouterTable, change: &TableChange) -> String {
    let columns: Vec<&str> = table
        .sites
        .iter()
        .map(|s| {
            if change.paths.contains(s) {
                s.as_str()
            } else {
                "."
            }
        })
        .collect();
    let mut what: Vec<String> = change
        .lost
        .iter()
        .map(|s| format!("{s} withdrawn"))
        .collect();
    what.extend(change.gained.iter().map(|s| format!("{s} announced")));
    format!(
        "router  {}  {}/{} paths  [{}]  ({})",
        table.prefix,
        change.paths.len(),
        table.sites.len(),
        columns.join(" "),
        what.join(", ")
    )
}

/// A running router: one listener and one passive peer task per site.
#[derive(Debug)]
pub struct Router {
    ports: Vec<(String, u16)>,
    peers: Vec<PeerHandle>,
    accept: Vec<JoinHandle<()>>,
    /// The peer tasks' events, for [`RouterTable::on_event`].
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    // Kept so that the peer tasks' route and status channels stay open.
    _routes: watch::Sender<Arc<RibOut>>,
    _status: Vec<watch::Receiver<PeerStatus>>,
}

impl Router {
    /// Binds a port per site on 127.0.0.1 (chosen by the OS) and starts its passive
    /// session; `prefix` is the one whose routes are reported.
    pub async fn start(sites: &[&str], site_asn: u32, prefix: IpNet) -> std::io::Result<Self> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (routes_tx, routes_rx) = watch::channel(Arc::new(RibOut::new()));
        let local = LocalSpeaker {
            router_id: ROUTER_ID,
            asn: ROUTER_ASN,
            restarted: false,
            service_prefixes: vec![prefix],
            tuning: Tuning::default(),
            initial_routes: None,
            bfd: None,
        };
        let mut router = Router {
            ports: Vec::new(),
            peers: Vec::new(),
            accept: Vec::new(),
            events,
            _routes: routes_tx,
            _status: Vec::new(),
        };
        for site in sites {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            let port = listener.local_addr()?.port();
            let (status_tx, status_rx) = watch::channel(PeerStatus::default());
            let peer = spawn_peer(
                session_config(site, site_asn),
                local.clone(),
                routes_rx.clone(),
                status_tx,
                events_tx.clone(),
            );
            let acceptor = peer.acceptor();
            router.accept.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    // A peer task busy with a full queue refuses it: the site retries.
                    acceptor.offer(stream);
                }
            }));
            router.ports.push(((*site).to_owned(), port));
            router.peers.push(peer);
            router._status.push(status_rx);
        }
        Ok(router)
    }

    /// The port each site connects to.
    pub fn port(&self, site: &str) -> Option<u16> {
        self.ports.iter().find(|(s, _)| s == site).map(|(_, p)| *p)
    }

    /// Closes every session (Cease) and stops the listeners.
    pub async fn shutdown(self) {
        for task in &self.accept {
            task.abort();
        }
        for peer in self.peers {
            peer.shutdown(StopReason::DaemonStopping).await;
        }
    }
}

/// The router's side of one site's session: passive (the site connects), eBGP, IPv4.
fn session_config(site: &str, site_asn: u32) -> PeerConfig {
    PeerConfig {
        name: site.to_owned(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        local_address: None,
        remote_asn: site_asn,
        mode: PeerMode::Passive,
        hold_time: Duration::from_secs(9),
        connect_retry: crate::config::DEFAULT_CONNECT_RETRY,
        md5_key: None,
        ttl_security: false,
        max_prefixes: None,
        graceful_restart: None,
        bfd: None,
        ipv4: true,
        ipv6: false,
        next_hop_v4: None,
        next_hop_v6: None,
        reconnect: None,
    }
}
