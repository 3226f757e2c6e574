//! DNS probe: one UDP query to a configured resolver for an A or AAAA record.
//!
//! Up when the resolver answers NOERROR and the answer holds every expected address (or,
//! with none configured, at least one address). Replies from another address or with
//! another id are ignored (bounded by the runner's timeout).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use super::dns_wire::{build_query, parse_response, DnsError, TYPE_A, TYPE_AAAA};
use super::{Probe, ProbeOutcome};

/// Largest UDP answer we accept (EDNS0 is not used, so 512 is the norm).
const MAX_UDP: usize = 4096;

/// `type = "dns"`.
#[derive(Debug, Clone)]
pub struct DnsProbe {
    server: SocketAddr,
    name: String,
    qtype: RecordType,
    expect: Vec<IpAddr>,
}

impl DnsProbe {
    /// Queries `server` for `name` (`record_type` "A" or "AAAA").
    pub fn new(
        server: SocketAddr,
        name: &str,
        record_type: &str,
        expect: Vec<IpAddr>,
    ) -> Result<Self, String> {
        let qtype = match record_type {
            "A" => TYPE_A,
            "AAAA" => TYPE_AAAA,
            other => return Err(format!("unsupported record type {other:?}")),
        };
        // Validate the name once, here.
        build_query(0, name, qtype).map_err(|e| e.to_string())?;
        Ok(DnsProbe {
            server,
            name: name.to_owned(),
            qtype,
            expect,
        })
    }

    async fn check(&self) -> Result<String, String> {
        let bind: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("bind: {e}"))?;
        socket
            .connect(self.server)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.server))?;
        let id: u16 = rand::random();
        let query = build_query(id, &self.name, self.qtype).map_err(|e| e.to_string())?;
        socket
            .send(&query)
            .await
            .map_err(|e| format!("send to {}: {e}", self.server))?;
        let mut buf = vec![0u8; MAX_UDP];
        let answers = loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| format!("receive from {}: {e}", self.server))?;
            match parse_response(&buf[..n], id, self.qtype) {
                // A stray datagram (late answer to an earlier probe): keep waiting.
                Err(DnsError::NotOurs) => continue,
                Err(e) => return Err(format!("{} from {}: {e}", self.name, self.server)),
                Ok(a) => break a,
            }
        };
        let list = answers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let missing: Vec<String> = self
            .expect
            .iter()
            .filter(|e| !answers.contains(e))
            .map(ToString::to_string)
            .collect();
        if answers.is_empty() {
            Err(format!("{}: no address in the answer", self.name))
        } else if !missing.is_empty() {
            Err(format!(
                "{}: answer [{list}] lacks {}",
                self.name,
                missing.join(", ")
            ))
        } else {
            Ok(format!("{}: [{list}]", self.name))
        }
    }
}

impl Probe for DnsProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(self.check()).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::dns_wire::build_response;
    use super::*;

    /// A UDP responder on 127.0.0.1:0 answering every query with `rcode` and `answers`,
    /// first sending a stray datagram with a wrong id. Serves `count` queries, then ends.
    async fn responder(rcode: u16, answers: Vec<IpAddr>, count: usize) -> SocketAddr {
        raw_responder(count, move |query| build_response(query, rcode, &answers)).await
    }

    /// A UDP responder on 127.0.0.1:0 answering every query with `reply(query)`, first
    /// sending a stray datagram with a wrong id. Serves `count` queries, then ends.
    async fn raw_responder(
        count: usize,
        reply: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = sock.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for _ in 0..count {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let mut stray = build_response(&buf[..n], 0, &[]);
                stray[0] ^= 0xFF;
                let _ = sock.send_to(&stray, from).await;
                let _ = sock.send_to(&reply(&buf[..n]), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn dns_probe_fails_with_the_decoders_reason_on_a_hostile_answer() {
        // The answer's name is a compression pointer to itself.
        let server = raw_responder(1, |query| {
            let mut r = build_response(query, 0, &[v4("198.51.100.53")]);
            let [hi, lo] = u16::try_from(query.len()).unwrap_or(0).to_be_bytes();
            r[query.len()] = 0xC0 | hi;
            r[query.len() + 1] = lo;
            r
        })
        .await;
        let p =
            DnsProbe::new(server, "h.example.test", "A", vec![]).unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            format!(
                "h.example.test from {server}: malformed response: label points to data not \
                 prior to idx: 32 ptr: 32"
            )
        );
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0; 4]))
    }

    #[tokio::test]
    async fn dns_probe_passes_when_expected_answers_are_present() {
        let server = responder(0, vec![v4("198.51.100.53"), v4("198.51.100.54")], 1).await;
        let p = DnsProbe::new(
            server,
            "health.example.test",
            "A",
            vec![v4("198.51.100.54")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            out.detail,
            "health.example.test: [198.51.100.53, 198.51.100.54]"
        );
    }

    #[tokio::test]
    async fn dns_probe_fails_when_an_expected_answer_is_missing() {
        let server = responder(0, vec![v4("198.51.100.53")], 1).await;
        let p = DnsProbe::new(
            server,
            "health.example.test",
            "A",
            vec![v4("198.51.100.99")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            "health.example.test: answer [198.51.100.53] lacks 198.51.100.99"
        );
    }

    #[tokio::test]
    async fn dns_probe_fails_on_nxdomain_and_on_empty_answers() {
        let server = responder(3, vec![], 1).await;
        let p =
            DnsProbe::new(server, "nx.example.test", "A", vec![]).unwrap_or_else(|e| panic!("{e}"));
        let out = p.probe().await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            format!("nx.example.test from {server}: rcode 3")
        );
        let server = responder(0, vec![], 1).await;
        let p = DnsProbe::new(server, "e.example.test", "AAAA", vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.probe().await.detail,
            "e.example.test: no address in the answer"
        );
    }
}
