//! Small pieces of HTTP and sockets shared by the integration tests (and the decision
//! latency benchmark, which includes this file): reading a request head, canned answers,
//! a free loopback port.

#![allow(dead_code)]

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest request head read before answering.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// `200 OK` with body `ok`, closing the connection.
pub(crate) const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// `503 Service Unavailable` with body `sick`, closing the connection.
pub(crate) const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsick";

/// Reads an HTTP/1.1 request head (up to [`MAX_HEAD`] bytes). `false` when the connection
/// ended or failed first.
pub(crate) async fn read_request_head(sock: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for configs that need a fixed
/// port, such as the status endpoint).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
