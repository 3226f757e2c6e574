//! How much of the daemon's CPU the kernel spends on the *target's* sockets (issue 13:
//! "2,000 checks/s under 5 % of one core, the target's CPU excluded"), printed beside the
//! measured total, never instead of it.
//!
//! Over loopback a packet is received inside the system call that sent it: the softirq
//! runs when the sender's `connect`, `send` or `close` re-enables bottom halves, and a
//! kernel without `CONFIG_IRQ_TIME_ACCOUNTING` charges it to the sender's system time.
//! So the daemon's CPU clock holds work done for the target: its listener answering the
//! SYN (`tcp_conn_request`, the SYN-ACK), the ACK turning the request into a child
//! socket (`tcp_check_req`, `tcp_v4_syn_recv_sock`, `tcp_child_process`) and waking the
//! accepting thread, the request's bytes queued on the child (`tcp_data_queue`), and the
//! reset tearing the child down (`tcp_validate_incoming`, `tcp_done_with_error`).
//!
//! Measured with `perf` when it is installed and allowed (root, or
//! `perf_event_paranoid` ≤ 1): the daemon's threads sampled on their CPU clock over a
//! window of their own, after the measured one (sampling costs the daemon CPU, so it
//! never overlaps the window whose total is printed), with kernel call chains. A sample
//! counts as the target's when, below the innermost receive of a packet
//! (`__netif_receive_skb_one_core`, `process_backlog`, `net_rx_action`), its chain goes
//! through one of those functions; as shared when it is in the receive path with no
//! owner (IP input, the socket lookup, freeing the packet: a third of the packets are the
//! daemon's own, the SYN-ACK and the ACK of its request). Printed as a lower bound (the
//! target's alone) and an upper one (with the shared part). The attribution is tested in
//! the integration test binary (`tests/it`, which includes this file): a bench target
//! runs no unit tests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kernel functions that only ever run for the target's sockets in the daemon's system
/// calls: its listener, request socket and child socket. The daemon's own socket never
/// receives data or a reset inside its own calls (the answer and the target's FIN are
/// received in the target's `send` and `shutdown`).
const TARGET: &[&str] = &[
    "tcp_conn_request",
    "tcp_v4_conn_request",
    "tcp_v4_send_synack",
    "inet_reqsk_alloc",
    "inet_csk_reqsk_queue_hash_add",
    "tcp_check_req",
    "tcp_v4_syn_recv_sock",
    "tcp_create_openreq_child",
    "inet_csk_clone_lock",
    "inet_csk_complete_hashdance",
    "tcp_child_process",
    "tcp_data_queue",
    "tcp_validate_incoming",
    "tcp_done_with_error",
    "tcp_reset",
    "sock_def_readable",
];

/// Where a received packet's processing starts: a chain is attributed by what lies
/// between its leaf and the innermost of these.
const RECEIVE: &[&str] = &[
    "__netif_receive_skb_one_core",
    "__netif_receive_skb_core",
    "__netif_receive_skb",
    "process_backlog",
    "net_rx_action",
];

/// Samples of the daemon's threads, by whom the kernel worked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    pub(crate) samples: u64,
    /// In the receive path, for the target's sockets.
    pub(crate) target: u64,
    /// In the receive path, for no socket in particular (either end's packets).
    pub(crate) shared: u64,
}

impl Share {
    /// The target's share of the daemon's CPU, lower and upper bound, in [0, 1].
    pub(crate) fn bounds(&self) -> (f64, f64) {
        let n = self.samples.max(1) as f64;
        (
            self.target as f64 / n,
            (self.target + self.shared) as f64 / n,
        )
    }
}

/// Samples process `pid` for `window` with `perf` and attributes its kernel work; `Err`
/// when `perf` is missing, not allowed or saw nothing.
pub(crate) fn measure(pid: u32, window: Duration, dir: &Path) -> Result<Share, String> {
    let data = dir.join(format!("perf-{pid}.data"));
    let secs = format!("{:.1}", window.as_secs_f64());
    // `sleep` bounds the recording; perf stops with it (or when the daemon exits).
    let record = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &secs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("perf record: {e}"))?;
    if !record.status.success() {
        let _ = std::fs::remove_file(&data);
        return Err(format!(
            "perf record: {}",
            String::from_utf8_lossy(&record.stderr).trim()
        ));
    }
    let script = Command::new("perf")
        .args(["script", "-F", "tid,ip,sym", "-i"])
        .arg(&data)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("perf script: {e}"));
    let _ = std::fs::remove_file(&data);
    let share = attribute(&String::from_utf8_lossy(&script?.stdout));
    if share.samples == 0 {
        return Err("perf recorded no samples".into());
    }
    Ok(share)
}

/// Attributes the samples of `perf script -F tid,ip,sym` output (a header line per
/// sample, then one `address symbol` line per frame, leaf first; samples separated by a
/// blank line).
pub(crate) fn attribute(script: &str) -> Share {
    let mut share = Share::default();
    for sample in script.split("\n\n") {
        let mut frames = sample
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|sym| {
                // `tcp_v4_rcv+0x1c`, `__netif_receive_skb_core.constprop.0`
                let sym = sym.split('+').next().unwrap_or(sym);
                sym.split('.').next().unwrap_or(sym)
            })
            .peekable();
        if frames.peek().is_none() {
            continue;
        }
        share.samples += 1;
        // The frames from the leaf down to the innermost packet's receive, if any.
        let mut above = Vec::new();
        let received = frames.any(|f| {
            above.push(f);
            RECEIVE.contains(&f)
        });
        if !received {
            continue;
        }
        if above.iter().any(|f| TARGET.contains(f)) {
            share.target += 1;
        } else if !above.iter().any(|f| DAEMONS.contains(f)) {
            share.shared += 1;
        }
    }
    share
}

/// The daemon's own socket at work in the receive path: the SYN-ACK of its connect, an
/// ACK on an established socket (the target's ACK of the request; a child's ACK work
/// not under [`TARGET`] counts here too, so the target's share is a lower bound).
const DAEMONS: &[&str] = &[
    "tcp_rcv_synsent_state_process",
    "tcp_finish_connect",
    "tcp_ack",
    "tcp_rcv_established",
];

#[cfg(test)]
mod tests {
    // The bench builds this module with `cfg(test)` too, without the test harness that
    // keeps the tests (tests/it runs them).
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn samples_are_attributed_by_the_socket_below_the_packets_receive() {
        let script = "\
ag-probes-0 100
\tffffffff81000001 inet_csk_clone_lock+0x10
\tffffffff81000002 tcp_check_req+0x20
\tffffffff81000003 tcp_v4_rcv+0x30
\tffffffff81000004 __netif_receive_skb_one_core+0x40
\tffffffff81000005 process_backlog+0x50
\tffffffff81000006 __x64_sys_connect+0x60

ag-probes-0 100
\tffffffff81000001 __inet_lookup_established+0x10
\tffffffff81000003 tcp_v4_rcv+0x30
\tffffffff81000004 __netif_receive_skb_core.constprop.0+0x40

ag-probes-0 100
\tffffffff81000001 tcp_rcv_synsent_state_process+0x10
\tffffffff81000003 tcp_v4_rcv+0x30
\tffffffff81000004 __netif_receive_skb_one_core+0x40

ag-probes-0 100
\tffffffff81000001 __inet_hash_connect+0x10
\tffffffff81000006 __x64_sys_connect+0x60

ag-probes-0 100
\t55d0c0000001 tokio::runtime::time::wheel::Wheel::poll+0x10
";
        let share = attribute(script);
        assert_eq!(
            share,
            Share {
                samples: 5,
                target: 1,
                shared: 1
            }
        );
        assert_eq!(share.bounds(), (0.2, 0.4));
    }

    /// A target function *above* the innermost receive (the packet that a target's
    /// function sent, received further down the same chain) does not make it the target's.
    #[test]
    fn only_the_innermost_packet_counts() {
        let script = "\
ag-probes-0 100
\tffffffff81000001 __inet_lookup_established+0x10
\tffffffff81000003 tcp_v4_rcv+0x30
\tffffffff81000004 __netif_receive_skb_one_core+0x40
\tffffffff81000002 tcp_conn_request+0x20
\tffffffff81000004 __netif_receive_skb_one_core+0x40
";
        assert_eq!(
            attribute(script),
            Share {
                samples: 1,
                target: 0,
                shared: 1
            }
        );
    }
}
