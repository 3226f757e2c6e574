//! TCP probe: up when a connection to the address is established.
//!
//! The connection is closed with a reset (`SO_LINGER` 0), as HAProxy closes its health
//! check connections: one RST instead of the FIN/ACK exchange, and no TIME_WAIT on either
//! side — at a thousand TCP checks a second, TIME_WAIT alone would hold tens of thousands
//! of ephemeral ports (60 s each on Linux) and run out of them within a minute.
//!
//! A connection whose handshake is over when `connect` returns (on loopback it always is)
//! never goes to the reactor ([`connect`], which the HTTP probe uses too).

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::TcpStream;

use super::{Probe, ProbeOutcome};

/// `type = "tcp"`.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    address: SocketAddr,
    /// The detail of a pass (`connected to …`), formatted once: a copy per probe, not a
    /// formatting of the address (issue 13: two thousand probes a second).
    connected: Box<str>,
}

impl TcpProbe {
    /// Probes `address`.
    pub fn new(address: SocketAddr) -> Self {
        TcpProbe {
            address,
            connected: format!("connected to {address}").into(),
        }
    }
}

impl Probe for TcpProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(async {
            // Dropped at once: closed with a reset (set before connecting).
            match connect(self.address).await {
                Ok(_) => Ok(String::from(&*self.connected)),
                Err(e) => Err(format!("connect to {}: {e}", self.address)),
            }
        })
        .await
    }
}

/// An established probe connection; dropping it closes it with a reset. The TCP probe
/// only drops it; the HTTP probe writes its request on it first ([`super::http`]).
#[derive(Debug)]
pub(super) enum Connected {
    /// Established within `connect`: not registered with the reactor (yet).
    Now(Socket),
    /// Established later, waited for on the reactor.
    Later(TcpStream),
}

impl Connected {
    /// The connection as a tokio stream, registered with the reactor if it was not.
    pub(super) fn into_stream(self) -> std::io::Result<TcpStream> {
        match self {
            Connected::Now(socket) => TcpStream::from_std(socket.into()),
            Connected::Later(stream) => Ok(stream),
        }
    }
}

/// Connects to `address` for a probe; the socket closes with a reset (`SO_LINGER` 0, set
/// before connecting, so that no path — an error, the timeout dropping the probe — ends
/// it with a FIN).
///
/// When the handshake is over by the time a non-blocking `connect` returns `EINPROGRESS`
/// (on loopback, the SYN, the SYN-ACK and the ACK are all processed inside that system
/// call), a second `connect` returns 0 — or the error the handshake ended with, such as
/// `ECONNREFUSED` — and the socket never goes to the reactor: no `epoll_ctl` to add it and
/// remove it again, and no turn of the runtime to learn that it is writable (issue 13).
/// Only a connection still in progress (`EALREADY`) is registered and waited for, and
/// its error read as tokio's `connect` reads it (`SO_ERROR`).
pub(super) async fn connect(address: SocketAddr) -> std::io::Result<Connected> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_linger(Some(Duration::ZERO))?;
    let to = SockAddr::from(address);
    match socket.connect(&to) {
        Ok(()) => return Ok(Connected::Now(socket)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    match socket.connect(&to) {
        Ok(()) => return Ok(Connected::Now(socket)),
        Err(e) if e.raw_os_error() == Some(libc::EISCONN) => return Ok(Connected::Now(socket)),
        Err(e) if e.raw_os_error() == Some(libc::EALREADY) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(Connected::Later(stream)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_probe_passes_on_a_listening_port_and_fails_on_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let up = TcpProbe::new(addr).probe().await;
        assert!(up.ok, "{up:?}");
        assert_eq!(up.detail, format!("connected to {addr}"));
        drop(listener);
        let down = TcpProbe::new(addr).probe().await;
        assert!(!down.ok, "{down:?}");
        assert!(
            down.detail.starts_with(&format!("connect to {addr}: ")),
            "{down:?}"
        );
    }

    /// A connect still in progress when `connect` returns (the listener's accept queue is
    /// full, so its SYN is dropped and sent again after a second) goes to the reactor and
    /// passes once the handshake completes; the fast path does not take it for an error.
    #[tokio::test]
    async fn a_connect_still_in_progress_waits_on_the_reactor_and_passes_once_accepted() {
        let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap_or_else(|e| panic!("{e}"));
        full.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap_or_else(|e| panic!("bind: {e}"));
        // Backlog 0 holds one connection: the filler's.
        full.listen(0).unwrap_or_else(|e| panic!("listen: {e}"));
        let addr = full
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| panic!("no address"));
        let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("filler: {e}"));
        let probe = tokio::spawn(async move { connect(addr).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !probe.is_finished(),
            "connected through a full accept queue"
        );
        // Room in the queue: the probe's retransmitted SYN is accepted.
        let (accepted, _) = full.accept().unwrap_or_else(|e| panic!("accept: {e}"));
        drop((accepted, filler));
        let connected = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .unwrap_or_else(|_| panic!("the probe's connect never completed"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        assert!(matches!(connected, Connected::Later(_)), "{connected:?}");
    }
}
