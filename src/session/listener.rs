//! The BGP listener: one TCP socket on `bgp_listen`, handing each accepted connection to
//! the peer task configured for its source address (passive and both-mode peers).
//! Connections from unknown sources are closed at once and counted (RFC 4271 §8.1.4
//! Event 15 Tcp_CR_Invalid). MD5 keys are installed per peer address on the listening
//! socket, so an unsigned SYN from a keyed peer never completes the handshake.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::api::Acceptor;
use super::transport;

/// Counters of the listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections handed to a peer task.
    pub accepted: u64,
    /// Connections closed because no peer has that source address.
    pub rejected_unknown: u64,
    /// Connections closed because the peer task could not take them.
    pub rejected_busy: u64,
}

enum ListenerCommand {
    Add(IpAddr, Acceptor, oneshot::Sender<()>),
    Remove(IpAddr, oneshot::Sender<()>),
}

/// Handle on the listener task.
#[derive(Debug)]
pub struct Listener {
    socket: Arc<TcpListener>,
    local: SocketAddr,
    cmd: mpsc::Sender<ListenerCommand>,
    stats: watch::Receiver<ListenerStats>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ListenerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenerCommand::Add(a, ..) => write!(f, "Add({a})"),
            ListenerCommand::Remove(a, _) => write!(f, "Remove({a})"),
        }
    }
}

/// Binds `addr` and starts accepting. Peers are added with [`Listener::add_peer`].
pub fn spawn_listener(addr: SocketAddr) -> io::Result<Listener> {
    let socket = Arc::new(transport::listen(addr, &[])?);
    let local = socket.local_addr()?;
    let (cmd, rx) = mpsc::channel(16);
    let (stats_tx, stats) = watch::channel(ListenerStats::default());
    let task = tokio::spawn(accept_loop(socket.clone(), rx, stats_tx));
    Ok(Listener {
        socket,
        local,
        cmd,
        stats,
        task,
    })
}

/// The address a peer's connections come from as seen on this socket (IPv4 peers on an
/// IPv6 socket appear IPv4-mapped).
fn socket_view(local: SocketAddr, peer: IpAddr) -> IpAddr {
    match (local, peer) {
        (SocketAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => peer,
    }
}

impl Listener {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters.
    pub fn stats(&self) -> ListenerStats {
        *self.stats.borrow()
    }

    /// Routes connections from `addr` to a peer task, with its MD5 key if any.
    pub async fn add_peer(
        &self,
        addr: IpAddr,
        acceptor: Acceptor,
        md5: Option<&[u8]>,
    ) -> io::Result<()> {
        if let Some(key) = md5 {
            transport::set_md5_key(&*self.socket, socket_view(self.local, addr), Some(key))?;
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(ListenerCommand::Add(addr.to_canonical(), acceptor, tx))
            .await
            .map_err(|_| io::Error::other("listener stopped"))?;
        rx.await.map_err(|_| io::Error::other("listener stopped"))
    }

    /// Stops routing connections from `addr` and removes its MD5 key.
    pub async fn remove_peer(&self, addr: IpAddr, had_md5: bool) -> io::Result<()> {
        if had_md5 {
            transport::set_md5_key(&*self.socket, socket_view(self.local, addr), None)?;
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(ListenerCommand::Remove(addr.to_canonical(), tx))
            .await
            .map_err(|_| io::Error::other("listener stopped"))?;
        rx.await.map_err(|_| io::Error::other("listener stopped"))
    }

    /// Stops accepting.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

async fn accept_loop(
    socket: Arc<TcpListener>,
    mut cmd: mpsc::Receiver<ListenerCommand>,
    stats: watch::Sender<ListenerStats>,
) {
    let mut peers: HashMap<IpAddr, Acceptor> = HashMap::new();
    loop {
        tokio::select! {
            c = cmd.recv() => match c {
                Some(ListenerCommand::Add(addr, acceptor, done)) => {
                    peers.insert(addr, acceptor);
                    let _ = done.send(());
                }
                Some(ListenerCommand::Remove(addr, done)) => {
                    peers.remove(&addr);
                    let _ = done.send(());
                }
                None => return,
            },
            r = socket.accept() => match r {
                Ok((stream, from)) => {
                    let ip = from.ip().to_canonical();
                    match peers.get(&ip) {
                        Some(acceptor) => {
                            if acceptor.offer(stream) {
                                debug!(%from, "connection handed to peer");
                                stats.send_modify(|s| s.accepted += 1);
                            } else {
                                warn!(%from, "peer task busy; connection closed");
                                stats.send_modify(|s| s.rejected_busy += 1);
                            }
                        }
                        None => {
                            warn!(%from, "connection from unknown address closed");
                            stats.send_modify(|s| s.rejected_unknown += 1);
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}
