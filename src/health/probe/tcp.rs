//! TCP probe: up when a connection to the address is established.

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
                Ok(_) => Ok(format!("connected to {}", self.address)),
                Err(e) => Err(format!("connect to {}: {e}", self.address)),
            }
        })
        .await
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
        drop(listener);
        let down = TcpProbe::new(addr).probe().await;
        assert!(!down.ok, "{down:?}");
        assert!(
            down.detail.starts_with(&format!("connect to {addr}: ")),
            "{down:?}"
        );
    }
}
