//! The floor under the daemon's figures (issue 13, "2,000 checks/s under 5 % of one
//! core"): the same fresh connections the daemon's probes make, at the same rate, against
//! the same targets, by a process that does nothing else — this benchmark's own binary
//! started again as a child (`MANY_SERVICES_FLOOR_CHILD`), its CPU measured exactly as
//! the daemon's is (its CPU-time clock over the same window, divided by the connections
//! the targets accepted).
//!
//! The child is one thread with blocking sockets on a paced schedule: one connection
//! every `1 / rate` seconds (no drift: deadline after deadline), alternating an HTTP
//! probe (connect, `GET` with `Connection: close`, read to the end) and a TCP probe
//! (connect), each closed with a reset (`SO_LINGER` 0) as the daemon's probes are. What
//! it costs is the kernel's work for a loopback connection plus one timer wake per
//! connection: what any prober with a fresh connection per check pays on this machine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchResult;

/// The environment variable that turns this benchmark's binary into the floor child:
/// `HTTP_ADDR,TCP_ADDR|-,N` (`-`: HTTP checks only).
pub(crate) const CHILD_ENV: &str = "MANY_SERVICES_FLOOR_CHILD";

/// The longest the child runs (it is killed when its measurement ends).
const CHILD_LIMIT: Duration = Duration::from_secs(600);

/// The child process; killed when dropped.
pub(crate) struct Floor(Child);

impl Floor {
    /// Starts this binary as the floor child for `n` services (an HTTP probe each and,
    /// with `tcp`, a TCP probe each, every second).
    pub(crate) fn spawn(
        this_bench: &Path,
        n: usize,
        http: SocketAddr,
        tcp: Option<SocketAddr>,
    ) -> BenchResult<Floor> {
        let tcp = tcp.map_or_else(|| "-".to_string(), |a| a.to_string());
        Command::new(this_bench)
            .env(CHILD_ENV, format!("{http},{tcp},{n}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map(Floor)
            .map_err(|e| format!("floor child: {e}"))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's main: runs the paced loop described in the module documentation until
/// killed (or [`CHILD_LIMIT`]).
pub(crate) fn child_main(spec: &str) -> BenchResult<()> {
    let parts: Vec<&str> = spec.split(',').collect();
    let [http, tcp, n] = parts.as_slice() else {
        return Err(format!("{CHILD_ENV}: expected HTTP,TCP,N, got {spec:?}"));
    };
    let http: SocketAddr = http.parse().map_err(|e| format!("{CHILD_ENV}: {e}"))?;
    let tcp: Option<SocketAddr> = match *tcp {
        "-" => None,
        a => Some(a.parse().map_err(|e| format!("{CHILD_ENV}: {e}"))?),
    };
    let n: u32 = n.parse().map_err(|e| format!("{CHILD_ENV}: {e}"))?;
    let per_service = if tcp.is_some() { 2 } else { 1 };
    let rate = (n * per_service).max(1);
    let period = Duration::from_secs(1) / rate;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {http}\r\nUser-Agent: floor\r\nConnection: close\r\n\r\n"
    );
    let started = Instant::now();
    let mut deadline = started;
    let mut body = Vec::with_capacity(256);
    for i in 0u64.. {
        let now = Instant::now();
        if now.duration_since(started) > CHILD_LIMIT {
            break;
        }
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        deadline += period;
        // Errors are not fatal: the parent counts the connections the targets accepted.
        match tcp {
            Some(tcp) if i % 2 == 1 => {
                let _ = tcp_probe(tcp);
            }
            _ => {
                let _ = http_probe(http, request.as_bytes(), &mut body);
            }
        }
    }
    Ok(())
}

fn http_probe(addr: SocketAddr, request: &[u8], body: &mut Vec<u8>) -> std::io::Result<()> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    close_with_reset(&sock);
    sock.write_all(request)?;
    body.clear();
    sock.read_to_end(body)?;
    if body.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not 200"))
    }
}

fn tcp_probe(addr: SocketAddr) -> std::io::Result<()> {
    let sock = TcpStream::connect(addr)?;
    close_with_reset(&sock);
    Ok(())
}

/// As the daemon's probes close: `SO_LINGER` 0, a reset and no TIME_WAIT.
fn close_with_reset(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
}
