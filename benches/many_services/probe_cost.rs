//! The CPU of one HTTP probe over loopback, in this process (issue 13, "the probes stay
//! cheap"): anyguard's [`HttpProbe`] against a plain hyper 1 client doing the same
//! exchange (a fresh connection, `GET` with `Connection: close`, the status read), a
//! bare TCP connect for scale and anyguard's [`TcpProbe`] beside it, each on a current-thread runtime of its own thread. The
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) over a fixed number of sequential probes
//! is divided by their count; the target answers on other threads, whose CPU is not
//! counted. Figures only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyguard::health::probe::{HttpProbe, TcpProbe};
use anyguard::health::Probe;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use nix::time::{clock_gettime, ClockId};
use tokio::net::{TcpListener, TcpStream};

use super::httpd;
use super::BenchResult;

/// Probes per client, after as many again to warm up.
const PROBES: u32 = 4000;

/// One row: the client and its CPU per probe.
pub(crate) struct ProbeCost {
    pub(crate) client: &'static str,
    pub(crate) cpu_per_probe: Duration,
}

/// Measures each client in turn against one target and returns the rows.
pub(crate) fn measure() -> BenchResult<Vec<ProbeCost>> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let target_stop = Arc::clone(&stop);
    let target = std::thread::spawn(move || -> BenchResult<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?;
            let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string()));
            while !target_stop.load(Ordering::Relaxed) {
                let accepted =
                    tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                let Ok(Ok((mut sock, _))) = accepted else {
                    continue;
                };
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    if httpd::read_request_head(&mut sock).await {
                        let _ = sock.write_all(httpd::OK).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
            Ok(())
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|e| format!("probe target: {e}"))??;
    let rows = (|| {
        Ok(vec![
            ProbeCost {
                client: "anyguard HttpProbe",
                cpu_per_probe: {
                    let probe = Arc::new(HttpProbe::new(
                        &format!("http://{addr}/healthz"),
                        (200, 299),
                        None,
                        None,
                    )?);
                    on_own_thread(move || anyguard_probe(Arc::clone(&probe)))?
                },
            },
            ProbeCost {
                client: "plain hyper client",
                cpu_per_probe: on_own_thread(move || plain_hyper(addr))?,
            },
            ProbeCost {
                client: "TCP connect only",
                cpu_per_probe: on_own_thread(move || tcp_connect(addr))?,
            },
            ProbeCost {
                client: "anyguard TcpProbe",
                cpu_per_probe: {
                    let probe = Arc::new(TcpProbe::new(addr));
                    on_own_thread(move || anyguard_tcp_probe(Arc::clone(&probe)))?
                },
            },
        ])
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = target.join();
    rows
}

fn thread_cpu() -> BenchResult<Duration> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_err(|e| e.to_string())?;
    Ok(Duration::from(t))
}

/// Runs `probe` (one probe per call) [`PROBES`] times after as many warm-up calls, on a
/// current-thread runtime of a new thread, and returns that thread's CPU per call.
fn on_own_thread<F, Fut>(probe: F) -> BenchResult<Duration>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = BenchResult<()>>,
{
    std::thread::spawn(move || -> BenchResult<Duration> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        rt.block_on(async {
            for _ in 0..PROBES {
                probe().await?;
            }
            let t0 = thread_cpu()?;
            for _ in 0..PROBES {
                probe().await?;
            }
            Ok((thread_cpu()? - t0) / PROBES)
        })
    })
    .join()
    .map_err(|_| "probe thread panicked".to_string())?
}

async fn anyguard_probe(probe: Arc<HttpProbe>) -> BenchResult<()> {
    let out = probe.probe().await;
    if out.ok {
        Ok(())
    } else {
        Err(format!("HttpProbe: {}", out.detail))
    }
}

/// The same exchange with hyper and nothing else: what the issue calls a plain client.
async fn plain_hyper(addr: SocketAddr) -> BenchResult<()> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let request = Request::get("/healthz")
        .header(HOST, addr.to_string())
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET: {e}"))?;
    conn.abort();
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}

/// anyguard's TCP probe: a connection established within `connect` never goes to the
/// reactor, and it closes with a reset.
async fn anyguard_tcp_probe(probe: Arc<TcpProbe>) -> BenchResult<()> {
    let out = probe.probe().await;
    if out.ok {
        Ok(())
    } else {
        Err(format!("TcpProbe: {}", out.detail))
    }
}

async fn tcp_connect(addr: SocketAddr) -> BenchResult<()> {
    TcpStream::connect(addr)
        .await
        .map(drop)
        .map_err(|e| format!("connect: {e}"))
}
