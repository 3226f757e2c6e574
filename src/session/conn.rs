//! Per-connection I/O tasks: a reader that cuts frames out of the byte stream, a writer
//! that drains the send queue and reports progress (RFC 9687), and the outgoing connect.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};

use super::transport::{self, TransportConfig};
use super::wire;
use crate::fsm::ConnId;

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Most octets of messages in one batch to the peer task (see [`ConnInput::Frames`]).
const BATCH: usize = 16 * 1024;
/// Batches read but not yet handled by the peer task, per connection: what a fast sender
/// can make us hold is about READ_AHEAD × READ_CHUNK (never a full table).
const READ_AHEAD: usize = 4;

/// What connection tasks report to the peer task.
#[derive(Debug)]
pub(crate) enum ConnInput {
    /// Outgoing connection established.
    Connected(TcpStream),
    /// Outgoing connection failed.
    ConnectFailed(String),
    /// One or more complete messages back to back: every whole message one read brought.
    /// Batched because a full table is ~50k UPDATEs or more, and the channel hand-off,
    /// wake-up and status publication per message cost more than decoding one
    /// (lab/bench/ingest: ~9 µs per UPDATE when sent one by one). The credit bounds the
    /// batches in flight, so the reader cannot run ahead of the peer task.
    Frames(Bytes, OwnedSemaphorePermit),
    /// The byte stream is not BGP (bad marker, length, type).
    FrameError(anyguard_proto::DecodeError),
    /// Closed by the peer or failed.
    Closed(String),
    /// The socket accepted `bytes`; `drained` when the queue is empty.
    Written { bytes: usize, drained: bool },
    /// Everything queued before mark `n` is written.
    Flushed(u64),
}

/// Commands to a writer task.
#[derive(Debug)]
pub(crate) enum WriteCmd {
    /// Bytes to write.
    Data(Bytes),
    /// Report [`ConnInput::Flushed`] when reached.
    Mark(u64),
    /// Shut the write side down after what is queued.
    Close,
}

pub(crate) type IoTx = mpsc::Sender<(ConnId, ConnInput)>;

/// The live parts of one connection.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) writer: mpsc::UnboundedSender<WriteCmd>,
    /// The socket's write side, shared with the writer task: while nothing waits in the
    /// writer's queue, the peer task writes itself ([`ConnIo::write`]).
    direct: Arc<OwnedWriteHalf>,
    reader: AbortHandle,
    writer_task: Option<JoinHandle<()>>,
    pub(crate) local: Option<SocketAddr>,
    /// Octets queued and not yet written.
    pub(crate) queued: usize,
}

impl ConnIo {
    /// Starts the reader and writer of `stream`.
    pub(crate) fn start(id: ConnId, stream: TcpStream, tx: &IoTx) -> ConnIo {
        let local = stream.local_addr().ok();
        let (rd, wr) = stream.into_split();
        let wr = Arc::new(wr);
        let (wtx, wrx) = mpsc::unbounded_channel();
        ConnIo {
            writer: wtx,
            direct: Arc::clone(&wr),
            reader: tokio::spawn(read_loop(id, rd, tx.clone())).abort_handle(),
            writer_task: Some(tokio::spawn(write_loop(id, wr, wrx, tx.clone()))),
            local,
            queued: 0,
        }
    }

    /// Writes `bytes`: at once, when the writer task has nothing queued and the socket
    /// takes them all (`true`: the caller reports the progress, RFC 9687), else what the
    /// socket did not take is queued for the writer task, behind what waits there. The
    /// direct write saves the UPDATE of a decision a wake-up of the writer task, which
    /// may wait behind probes on a busy runtime (issue 13).
    pub(crate) fn write(&mut self, mut bytes: Bytes) -> bool {
        if self.queued == 0 {
            // Nothing queued: every byte handed to the writer is on the socket, so these
            // cannot overtake any (a mark waiting there still holds: what came before it
            // is written).
            match self.direct.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => {
                    let _ = bytes.split_to(n);
                }
                // Full socket buffer, or an error the writer will meet and report.
                Err(_) => {}
            }
        }
        self.queued = self.queued.saturating_add(bytes.len());
        let _ = self.writer.send(WriteCmd::Data(bytes));
        false
    }

    /// Stops reading at once; lets the writer finish what is queued (at most `grace`),
    /// then closes. Returns the writer task to await.
    pub(crate) fn close(mut self, grace: std::time::Duration) -> JoinHandle<()> {
        self.reader.abort();
        let _ = self.writer.send(WriteCmd::Close);
        let writer = self.writer_task.take();
        tokio::spawn(async move {
            if let Some(writer) = writer {
                let abort = writer.abort_handle();
                if tokio::time::timeout(grace, writer).await.is_err() {
                    abort.abort();
                }
            }
        })
    }
}

impl Drop for ConnIo {
    /// A dropped connection (closed by the peer, or its peer task gone after a panic)
    /// stops reading at once; the writer ends when its queue's sender goes away.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(id: ConnId, mut rd: OwnedReadHalf, tx: IoTx) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let credits = Arc::new(Semaphore::new(READ_AHEAD));
    loop {
        let (mut end, mut bad) = (0, None);
        // At most BATCH octets per batch (one message whatever its size): the peer task
        // handles a batch in one turn, and other peers' tasks (a withdrawal to send) must
        // not wait long behind it.
        loop {
            match wire::frame_len(&buf[end..]) {
                Ok(Some(n)) if end == 0 || end + n <= BATCH => end += n,
                Ok(Some(_)) => break,
                Ok(None) => break,
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if end > 0 {
            let Ok(credit) = credits.clone().acquire_owned().await else {
                return;
            };
            let frames = buf.split_to(end).freeze();
            if tx
                .send((id, ConnInput::Frames(frames, credit)))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        if let Some(e) = bad {
            let _ = tx.send((id, ConnInput::FrameError(e))).await;
            return;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let closed = match rd.read_buf(&mut buf).await {
            Ok(0) => Some("connection closed by peer".to_string()),
            Ok(_) => None,
            Err(e) => Some(format!("read: {e}")),
        };
        if let Some(reason) = closed {
            let _ = tx.send((id, ConnInput::Closed(reason))).await;
            return;
        }
    }
}

/// Writes all of `bytes` on the write side shared with the peer task.
async fn write_all(wr: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match wr.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wr.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write_loop(
    id: ConnId,
    wr: Arc<OwnedWriteHalf>,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    tx: IoTx,
) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriteCmd::Data(b) => {
                if let Err(e) = write_all(&wr, &b).await {
                    let _ = tx
                        .send((id, ConnInput::Closed(format!("write: {e}"))))
                        .await;
                    return;
                }
                let drained = rx.is_empty();
                let progress = ConnInput::Written {
                    bytes: b.len(),
                    drained,
                };
                if tx.send((id, progress)).await.is_err() {
                    return;
                }
            }
            WriteCmd::Mark(n) => {
                let _ = tx.send((id, ConnInput::Flushed(n))).await;
            }
            WriteCmd::Close => {
                // What `AsyncWriteExt::shutdown` does, on the shared half.
                let stream: &TcpStream = (*wr).as_ref();
                let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    }
}

/// Connects in the background and reports the outcome.
pub(crate) fn spawn_connect(id: ConnId, cfg: TransportConfig, tx: IoTx) -> JoinHandle<()> {
    tokio::spawn(async move {
        let input = match transport::connect(&cfg).await {
            Ok(s) => ConnInput::Connected(s),
            Err(e) => ConnInput::ConnectFailed(format!("connect to {}: {e}", cfg.remote)),
        };
        let _ = tx.send((id, input)).await;
    })
}
