//! Linux socket options for BGP transport: TCP MD5 signatures (RFC 2385), GTSM
//! (RFC 5082), local address binding and the peer port.
//!
//! socket2 covers TTL/hop limits, address reuse and binding; TCP_MD5SIG, IP_MINTTL and
//! IPV6_MINHOPCOUNT need `libc::setsockopt`, so this is the one module of the daemon that
//! allows `unsafe`, with a `// SAFETY:` note per block.
//!
//! GTSM on a shared listener: IP_MINTTL applies to every connection of a socket, so the
//! listener cannot require TTL 255 for some peers only. The minimum is set on each accepted
//! connection of a GTSM peer instead ([`apply_gtsm`]): the SYN itself is not filtered, but
//! every later segment with a lower TTL is dropped by the kernel, so a spoofed session
//! never gets past the handshake. The listening socket sends with TTL 255 for everyone, so
//! that the SYN-ACK reaches a GTSM peer. MD5 keys, in contrast, are per peer address on the
//! listening socket ([`set_md5_key`]) and are inherited by accepted connections.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Largest TCP MD5 key Linux accepts (TCP_MD5SIG_MAXKEYLEN).
pub const MD5_MAX_KEY_LEN: usize = 80;
const TCP_MD5SIG: libc::c_int = 14;
const IP_MINTTL: libc::c_int = 21;
const IPV6_MINHOPCOUNT: libc::c_int = 73;
/// The TTL / hop limit a GTSM speaker sends and the least it accepts (RFC 5082 §3).
pub const GTSM_TTL: u32 = 255;
/// Lowest TTL accepted from a directly connected GTSM peer.
pub const GTSM_MIN_TTL: u32 = 254;

/// `struct tcp_md5sig` from `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Transport settings of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Peer address and port.
    pub remote: SocketAddr,
    /// Local address to bind, if any.
    pub local_address: Option<IpAddr>,
    /// RFC 2385 key.
    pub md5_key: Option<Vec<u8>>,
    /// RFC 5082 GTSM.
    pub ttl_security: bool,
}

fn sockaddr_storage(ip: IpAddr) -> libc::sockaddr_storage {
    let sa: socket2::SockAddr = SocketAddr::new(ip, 0).into();
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value, and the
    // copy below writes at most `sa.len()` bytes, which socket2 guarantees fits in it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = usize::try_from(sa.len())
        .unwrap_or(0)
        .min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both pointers are valid for `len` bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            std::ptr::addr_of_mut!(storage).cast::<u8>(),
            len,
        );
    }
    storage
}

fn setsockopt<T>(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
    // SAFETY: `value` points to a live, initialised `T` of exactly `len` bytes for the
    // duration of the call; the kernel only reads it.
    let rc = unsafe { libc::setsockopt(fd, level, name, std::ptr::from_ref(value).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs (or with `None` removes) the RFC 2385 key for `peer` on a socket: a
/// listening socket (inherited by accepted connections) or one about to connect.
pub fn set_md5_key(fd: &impl AsRawFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or(&[]);
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tcp md5 key longer than {MD5_MAX_KEY_LEN} octets"),
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage(peer),
        flags: 0,
        prefixlen: 0,
        keylen: u16::try_from(key.len()).unwrap_or(0),
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, TCP_MD5SIG, &sig)
}

/// RFC 5082 on a connected or connecting socket: send with TTL/hop limit 255, drop what
/// arrives with less than 254.
pub fn apply_gtsm(fd: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let min: libc::c_int = libc::c_int::try_from(GTSM_MIN_TTL).unwrap_or(254);
    let out: libc::c_int = libc::c_int::try_from(GTSM_TTL).unwrap_or(255);
    if v6 {
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &out)?;
        setsockopt(raw, libc::IPPROTO_IPV6, IPV6_MINHOPCOUNT, &min)
    } else {
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_TTL, &out)?;
        setsockopt(raw, libc::IPPROTO_IP, IP_MINTTL, &min)
    }
}

/// Connects to a peer with the configured local address, MD5 key and GTSM.
pub async fn connect(cfg: &TransportConfig) -> io::Result<TcpStream> {
    let domain = Domain::for_address(cfg.remote);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(local) = cfg.local_address {
        socket.bind(&SocketAddr::new(local, 0).into())?;
    }
    if let Some(key) = &cfg.md5_key {
        set_md5_key(&socket, cfg.remote.ip(), Some(key))?;
    }
    if cfg.ttl_security {
        apply_gtsm(&socket, cfg.remote.is_ipv6())?;
    }
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(cfg.remote).await
}

/// Prepares an accepted connection of a peer: GTSM if configured, no Nagle delay.
pub fn accepted(stream: &TcpStream, cfg: &TransportConfig) -> io::Result<()> {
    SockRef::from(stream).set_tcp_nodelay(true)?;
    if cfg.ttl_security {
        apply_gtsm(stream, cfg.remote.is_ipv6())?;
    }
    Ok(())
}

/// A listening socket for BGP with the MD5 keys of the given peers installed.
pub fn listen(addr: SocketAddr, md5: &[(IpAddr, Vec<u8>)]) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped peers on a [::] listener too.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    // The SYN-ACK must already leave with TTL 255 for a GTSM peer, whose kernel drops
    // anything lower; TTL 255 is harmless for the others.
    if addr.is_ipv6() {
        socket.set_unicast_hops_v6(GTSM_TTL)?;
        if !socket.only_v6()? {
            socket.set_ttl_v4(GTSM_TTL).ok();
        }
    } else {
        socket.set_ttl_v4(GTSM_TTL)?;
    }
    for (peer, key) in md5 {
        set_md5_key(&socket, *peer, Some(key))?;
    }
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(std::net::TcpListener::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(remote: SocketAddr, key: Option<&[u8]>, gtsm: bool) -> TransportConfig {
        TransportConfig {
            remote,
            local_address: Some(IpAddr::from([127, 0, 0, 1])),
            md5_key: key.map(<[u8]>::to_vec),
            ttl_security: gtsm,
        }
    }

    #[tokio::test]
    async fn md5_signed_connection_is_accepted_and_unsigned_one_is_not() {
        let peer = IpAddr::from([127, 0, 0, 1]);
        let listener = match listen(
            "127.0.0.1:0".parse().unwrap(),
            &[(peer, b"s3cret".to_vec())],
        ) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED: md5 test because TCP_MD5SIG is unavailable: {e}");
                return;
            }
        };
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });

        let signed = tokio::time::timeout(
            Duration::from_secs(5),
            connect(&cfg(addr, Some(b"s3cret"), true)),
        )
        .await
        .expect("signed connect timed out")
        .unwrap();
        let server = accept.await.unwrap().unwrap();
        accepted(&server, &cfg(addr, Some(b"s3cret"), true)).unwrap();
        drop((signed, server));

        // Without the key the SYN is dropped by the kernel: the connect never completes.
        let unsigned =
            tokio::time::timeout(Duration::from_millis(700), connect(&cfg(addr, None, false)))
                .await;
        assert!(unsigned.is_err() || unsigned.unwrap().is_err());
    }

    #[test]
    fn md5_key_longer_than_80_octets_is_refused() {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = set_md5_key(&s, IpAddr::from([127, 0, 0, 1]), Some(&[0; 81])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
