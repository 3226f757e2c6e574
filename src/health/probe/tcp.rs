//! TCP probe: up when a connection to the address is established.
//!
//! The connection is closed with a reset (`SO_LINGER` 0), as HAProxy closes its health
//! check connections: one RST instead of the FIN/ACK exchange, and no TIME_WAIT on either
//! side — at a thousand TCP checks a second, TIME_WAIT alone would hold tens of thousands
//! of ephemeral ports (60 s each on Linux) and run out of them within a minute.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{Probe, ProbeOutcome};

/// `type = "tcp"`.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    address: SocketAddr,
}

impl TcpProbe {
    /// Probes `address`.
    pub fn new(address: SocketAddr) -> Self {
        TcpProbe { address }
    }
}

impl Probe for TcpProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(async {
            match TcpStream::connect(self.address).await {
                Ok(stream) => {
                    close_with_reset(&stream);
                    Ok(format!("connected to {}", self.address))
                }
                Err(e) => Err(format!("connect to {}: {e}", self.address)),
            }
        })
        .await
    }
}

/// Makes dropping `stream` send a RST instead of a FIN (`SO_LINGER` with a zero timeout):
/// a probe's connection has nothing left to deliver when it is dropped, and the
/// target keeps no TIME_WAIT or FIN_WAIT state for it. A failure (which Linux does not
/// have for a connected socket) leaves the ordinary close.
pub(super) fn close_with_reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
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
        drop(listener);
        let down = TcpProbe::new(addr).probe().await;
        assert!(!down.ok, "{down:?}");
        assert!(
            down.detail.starts_with(&format!("connect to {addr}: ")),
            "{down:?}"
        );
    }
}
