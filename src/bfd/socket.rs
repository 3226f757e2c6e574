//! The UDP sockets of single-hop BFD (RFC 5881): a receiving socket per family on port 3784
//! that reports each datagram's TTL / hop limit (IP_RECVTTL, IPV6_RECVHOPLIMIT), and a
//! sending socket per family on one source port in 49152–65535 (§4) that sends with TTL /
//! hop limit 255 (§5).

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{self as nixsock, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// RFC 5881 §4: the destination port of single-hop Control packets.
pub const CONTROL_PORT: u16 = 3784;
/// RFC 5881 §4: the source port range.
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// RFC 5881 §5: the TTL / hop limit sent, and the only one accepted.
pub const TTL: u8 = 255;
/// Receive buffer: a Control packet is at most 255 bytes; anything longer is truncated and
/// dropped.
pub const RECV_BUF: usize = 512;
/// Random source ports tried before giving up.
const PORT_ATTEMPTS: usize = 64;

/// One datagram received.
#[derive(Debug)]
pub struct Datagram {
    /// Payload length in the buffer.
    pub len: usize,
    /// Sender.
    pub from: SocketAddr,
    /// TTL / hop limit of the packet; `None` if the kernel did not say.
    pub ttl: Option<u8>,
    /// The payload did not fit the buffer.
    pub truncated: bool,
}

/// A receiving socket.
#[derive(Debug)]
pub struct RxSocket {
    udp: UdpSocket,
    cmsg: Vec<u8>,
}

impl RxSocket {
    /// Binds `addr` (port 3784 in the daemon) and asks for the TTL of every datagram.
    pub fn bind(addr: SocketAddr) -> io::Result<RxSocket> {
        let socket = new_socket(addr)?;
        match addr {
            SocketAddr::V4(_) => nixsock::setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)?,
            SocketAddr::V6(_) => nixsock::setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?,
        }
        socket.bind(&addr.into())?;
        Ok(RxSocket {
            udp: UdpSocket::from_std(socket.into())?,
            cmsg: nix::cmsg_space!(libc::c_int),
        })
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Receives one datagram into `buf` with its TTL.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Datagram> {
        let cmsg = &mut self.cmsg;
        let fd = self.udp.as_raw_fd();
        self.udp
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = nixsock::recvmsg::<SockaddrStorage>(
                    fd,
                    &mut iov,
                    Some(cmsg.as_mut_slice()),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut ttl = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    match c {
                        ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                            ttl = u8::try_from(t).ok();
                        }
                        _ => {}
                    }
                }
                let from = msg
                    .address
                    .as_ref()
                    .and_then(sockaddr)
                    .ok_or_else(|| io::Error::other("datagram without a sender address"))?;
                Ok(Datagram {
                    len: msg.bytes,
                    from,
                    ttl,
                    truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                })
            })
            .await
    }
}

fn sockaddr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
}

/// A sending socket.
#[derive(Debug)]
pub struct TxSocket {
    udp: UdpSocket,
}

impl TxSocket {
    /// Binds the unspecified address of `v6`'s family on a random port in 49152–65535,
    /// TTL / hop limit 255: the kernel picks the source address.
    pub fn bind(v6: bool, seed: u64) -> io::Result<TxSocket> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        TxSocket::bind_to(ip, seed)
    }

    /// The same with a given source address (a peer's `local_address`: the router knows
    /// us by the BGP session's address and matches BFD packets on it).
    pub fn bind_to(ip: IpAddr, seed: u64) -> io::Result<TxSocket> {
        let v6 = ip.is_ipv6();
        let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
        let mut x = seed | 1;
        let mut last = io::Error::other("no source port tried");
        for _ in 0..PORT_ATTEMPTS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = SOURCE_PORTS.start() + u16::try_from(x % span).unwrap_or(0);
            let addr = SocketAddr::new(ip, port);
            let socket = new_socket(addr)?;
            if v6 {
                socket.set_unicast_hops_v6(u32::from(TTL))?;
            } else {
                socket.set_ttl_v4(u32::from(TTL))?;
            }
            match socket.bind(&addr.into()) {
                Ok(()) => {
                    return Ok(TxSocket {
                        udp: UdpSocket::from_std(socket.into())?,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Sends without waiting: a Control packet that cannot go now is lost like any other
    /// (the detection time absorbs it), and the driver must never stall on one peer.
    pub fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()> {
        self.udp.try_send_to(payload, to).map(|_| ())
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}
