//! The HTTP target of the `http kept+tcp` row (`reuse_connection = true`): answers every
//! request on a connection with `200 ok` framed by `Content-Length` and keeps the
//! connection open, as an application's health endpoint does for a keep-alive client.
//! It counts requests, not connections: with kept connections a probe result is a
//! request. It runs on a thread of its own (a current-thread runtime) and stops when
//! dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// `200 ok`, the connection kept.
const KEEP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Most requests served on one connection (bounded; a 10 s window at 1 s intervals takes
/// a few dozen).
const MAX_REQUESTS: u32 = 1_000_000;

pub(crate) struct KeepAliveTarget {
    pub(crate) addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeepAliveTarget {
    pub(crate) fn start() -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("keep-alive target: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let requests = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&requests);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("keep-alive".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, count) => {}
                    }
                });
            })
            .map_err(|e| format!("keep-alive target thread: {e}"))?;
        Ok(KeepAliveTarget {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for KeepAliveTarget {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, requests: Arc<AtomicU64>) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            for _ in 0..MAX_REQUESTS {
                if !crate::httpd::read_request_head(&mut sock).await {
                    return;
                }
                requests.fetch_add(1, Ordering::Relaxed);
                if sock.write_all(KEEP_OK).await.is_err() {
                    return;
                }
            }
        });
    }
}
