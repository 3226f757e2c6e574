//! A scripted BGP peer built on `anyguard_proto`, for integration tests: connect or
//! accept, send messages, and decode everything received. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyguard_proto::{
    Afi, AsPath, AsPathSegment, AsPathSegmentType, Capability, DecodeContext, EncodeContext,
    Message, MpReach, NotificationMessage, OpenMessage, Origin, PathAttribute, Safi, UpdateMessage,
};
use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Default wait for one message.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// What went wrong while waiting for a message.
#[derive(Debug)]
pub(crate) enum FakeError {
    /// Nothing arrived in time.
    Timeout,
    /// The connection closed (clean close or reset).
    Closed,
    /// Bytes that do not decode.
    Decode(anyguard_proto::DecodeError),
}

/// One side of a BGP connection driven by a test.
pub(crate) struct FakePeer {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    /// Context for decoding what we receive (updated by [`FakePeer::establish`]).
    pub(crate) decode: DecodeContext,
    /// Context for encoding what we send.
    pub(crate) encode: EncodeContext,
}

impl FakePeer {
    /// Wraps a connected stream.
    pub(crate) fn new(stream: TcpStream) -> Self {
        FakePeer {
            stream,
            buf: BytesMut::with_capacity(1 << 16),
            decode: DecodeContext::default(),
            encode: EncodeContext::default(),
        }
    }

    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        Ok(FakePeer::new(s))
    }

    /// Connects to `addr` from a given local address (e.g. 127.0.0.2).
    pub(crate) async fn connect_from(local: IpAddr, addr: SocketAddr) -> std::io::Result<Self> {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.bind(SocketAddr::new(local, 0))?;
        let s = tokio::time::timeout(WAIT, sock.connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        Ok(FakePeer::new(s))
    }

    /// Accepts one connection.
    pub(crate) async fn accept(listener: &TcpListener) -> Self {
        let (s, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("no connection within the wait")
            .expect("accept failed");
        FakePeer::new(s)
    }

    /// Sends one message.
    pub(crate) async fn send(&mut self, m: &Message) {
        let mut out = BytesMut::new();
        m.encode(&self.encode, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Sends raw bytes.
    pub(crate) async fn send_raw(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
    }

    /// Receives and decodes the next message.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Result<Message, FakeError> {
        let frame = self.recv_frame_within(wait).await?;
        Message::decode(&frame, &self.decode).map_err(FakeError::Decode)
    }

    /// Receives the next message's frame, undecoded: the bytes on the wire.
    pub(crate) async fn recv_frame_within(
        &mut self,
        wait: Duration,
    ) -> Result<BytesMut, FakeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match anyguard_proto::frame_len(&self.buf, &self.decode) {
                Ok(Some(n)) => return Ok(self.buf.split_to(n)),
                Ok(None) => {}
                Err(e) => return Err(FakeError::Decode(e)),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(FakeError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(FakeError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Receives the next message within [`WAIT`].
    pub(crate) async fn recv(&mut self) -> Result<Message, FakeError> {
        self.recv_within(WAIT).await
    }

    /// Next message, skipping KEEPALIVEs.
    pub(crate) async fn recv_skip_keepalives(&mut self) -> Result<Message, FakeError> {
        for _ in 0..1000 {
            match self.recv().await? {
                Message::Keepalive => continue,
                m => return Ok(m),
            }
        }
        Err(FakeError::Timeout)
    }

    /// Expects an OPEN.
    pub(crate) async fn expect_open(&mut self) -> OpenMessage {
        match self.recv().await {
            Ok(Message::Open(o)) => o,
            other => panic!("expected OPEN, got {other:?}"),
        }
    }

    /// Expects a KEEPALIVE.
    pub(crate) async fn expect_keepalive(&mut self) {
        match self.recv().await {
            Ok(Message::Keepalive) => {}
            other => panic!("expected KEEPALIVE, got {other:?}"),
        }
    }

    /// Expects an UPDATE (skipping KEEPALIVEs).
    pub(crate) async fn expect_update(&mut self) -> UpdateMessage {
        match self.recv_skip_keepalives().await {
            Ok(Message::Update(u)) => u,
            other => panic!("expected UPDATE, got {other:?}"),
        }
    }

    /// Expects a NOTIFICATION (skipping KEEPALIVEs and UPDATEs) within `wait`.
    pub(crate) async fn expect_notification_within(
        &mut self,
        wait: Duration,
    ) -> NotificationMessage {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..100_000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(Message::Notification(n)) => return n,
                Ok(_) => continue,
                Err(e) => panic!("expected NOTIFICATION, got {e:?}"),
            }
        }
        panic!("expected NOTIFICATION, got an endless stream")
    }

    /// Expects a NOTIFICATION within [`WAIT`].
    pub(crate) async fn expect_notification(&mut self) -> NotificationMessage {
        self.expect_notification_within(WAIT).await
    }

    /// Expects the connection to close within `wait` (messages before are skipped).
    pub(crate) async fn expect_closed(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..100_000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Err(FakeError::Closed) => return,
                Err(e) => panic!("expected close, got {e:?}"),
                Ok(_) => continue,
            }
        }
    }

    /// Full handshake as the side that answers: expects the speaker's OPEN, sends ours,
    /// exchanges KEEPALIVEs. Returns the speaker's OPEN; sets the contexts.
    pub(crate) async fn establish(&mut self, ours: OpenMessage) -> OpenMessage {
        let theirs = self.expect_open().await;
        self.send(&Message::Open(ours.clone())).await;
        self.expect_keepalive().await;
        self.send(&Message::Keepalive).await;
        let has = |o: &OpenMessage, c: &Capability| o.capabilities.contains(c);
        let four = |o: &OpenMessage| {
            o.capabilities
                .iter()
                .any(|c| matches!(c, Capability::FourOctetAs { .. }))
        };
        let ext =
            has(&theirs, &Capability::ExtendedMessage) && has(&ours, &Capability::ExtendedMessage);
        self.decode.four_octet_as = four(&theirs) && four(&ours);
        self.decode.extended_message = ext;
        self.encode.four_octet_as = self.decode.four_octet_as;
        self.encode.extended_message = ext;
        theirs
    }
}

/// An OPEN with 4-octet AS, route refresh and the given families.
pub(crate) fn open(asn: u32, id: Ipv4Addr, hold: u16, ipv4: bool, ipv6: bool) -> OpenMessage {
    let mut capabilities = Vec::new();
    if ipv4 {
        capabilities.push(Capability::Multiprotocol {
            afi: Afi::Ipv4,
            safi: Safi::Unicast,
        });
    }
    if ipv6 {
        capabilities.push(Capability::Multiprotocol {
            afi: Afi::Ipv6,
            safi: Safi::Unicast,
        });
    }
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs { asn });
    OpenMessage {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(23456),
        hold_time: hold,
        bgp_identifier: id,
        capabilities,
    }
}

fn base_attrs(asn: u32) -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath(AsPath {
            segments: vec![AsPathSegment {
                kind: AsPathSegmentType::Sequence,
                asns: vec![asn],
            }],
        }),
    ]
}

/// An UPDATE announcing IPv4 prefixes from `asn` with next hop 198.18.0.2.
pub(crate) fn announce_v4(asn: u32, prefixes: Vec<Ipv4Net>) -> UpdateMessage {
    let mut attributes = base_attrs(asn);
    attributes.push(PathAttribute::NextHop(Ipv4Addr::new(198, 18, 0, 2)));
    UpdateMessage {
        withdrawn: Vec::new(),
        attributes,
        nlri: prefixes,
    }
}

/// An UPDATE announcing IPv6 prefixes (MP_REACH_NLRI) with next hop 2001:db8::2.
pub(crate) fn announce_v6(asn: u32, prefixes: Vec<Ipv6Net>) -> UpdateMessage {
    let mut attributes = base_attrs(asn);
    attributes.push(PathAttribute::MpReach(MpReach {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
        next_hop: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        link_local_next_hop: None,
        nlri: prefixes.into_iter().map(IpNet::V6).collect(),
    }));
    UpdateMessage {
        withdrawn: Vec::new(),
        attributes,
        nlri: Vec::new(),
    }
}

/// Every IPv4 prefix from /16 to /32 inside 198.18.0.0/15 (262,142 prefixes), lazily.
pub(crate) fn benchmark_v4_prefixes() -> impl Iterator<Item = Ipv4Net> {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    (16u8..=32).flat_map(move |len| {
        let count = 1u32 << (len - 15);
        (0..count).map(move |i| {
            let addr = base | (i << (32 - u32::from(len)));
            Ipv4Net::new(Ipv4Addr::from(addr), len).expect("valid prefix")
        })
    })
}

/// The i-th /52 inside 2001:db8::/32 (up to 2^20).
pub(crate) fn benchmark_v6_prefix(i: u32) -> Ipv6Net {
    let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
    Ipv6Net::new(Ipv6Addr::from(base | (u128::from(i) << 76)), 52).expect("valid prefix")
}
