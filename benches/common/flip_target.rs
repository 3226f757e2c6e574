//! The HTTP health target both latency benchmarks flip between 200 and 503
//! (`decision_latency`, and `many_services` at a thousand services): it records when the
//! first answer of the new kind went out, where the decision → wire clock starts.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::httpd;

/// The HTTP target: answers 200 or 503; records when the first answer of a new kind has
/// been written.
#[derive(Default)]
pub(crate) struct TargetState {
    pub(crate) healthy: bool,
    /// Set by the flip; taken by the first answer written after it.
    pub(crate) armed: bool,
    pub(crate) decided_at: Option<Instant>,
}

pub(crate) async fn serve_target(listener: TcpListener, state: Arc<Mutex<TargetState>>) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if !httpd::read_request_head(&mut sock).await {
                return;
            }
            let (healthy, first) = {
                let Ok(mut s) = state.lock() else { return };
                let first = std::mem::take(&mut s.armed);
                (s.healthy, first)
            };
            let reply = if healthy {
                httpd::OK
            } else {
                httpd::UNAVAILABLE
            };
            // Stamped before the write: the daemon cannot decide before the answer is
            // on its way, so the figure is an upper bound.
            let at = Instant::now();
            if sock.write_all(reply).await.is_ok() && first {
                if let Ok(mut s) = state.lock() {
                    s.decided_at = Some(at);
                }
            }
            let _ = sock.shutdown().await;
        });
    }
}
