//! The HTTP probe's bytes, sans-IO: the request it sends and a reader of the response
//! (RFC 9112), for plain and TLS connections alike.
//!
//! The response head is parsed with `httparse`; this module adds what a client needs
//! around it: where the head ends, interim (1xx) responses, the body's framing
//! (RFC 9112 §6.3) and the chunked coding (RFC 9112 §7.1, chunk sizes parsed by
//! `httparse` too). Every buffer is bounded ([`MAX_HEAD`], [`MAX_HEADERS`],
//! [`MAX_BODY`], [`MAX_CHUNK_LINE`]), so a hostile or broken target gets a precise
//! [`ResponseError`] instead of memory; time is bounded by the check's timeout, which the
//! runner applies around the whole probe.
//!
//! For a check that keeps its connection (`reuse_connection`), [`ResponseReader::end`]
//! reads the rest of the answer (a chunked body's trailer section) and says whether the
//! connection can carry the next request: only after exactly one answer framed by its
//! length or its chunks, whose head does not end persistence (RFC 9112 §9.3), with no
//! byte after it ([`EndsReuse`] names why not).
//!
//! Left out: trailers' contents (skipped: the body is what is matched), `Content-Encoding`
//! (the body is matched as received), responses to anything but a `GET`.

use std::fmt::Write as _;

/// At most this much of the body is read; the rest is never read (the connection closes).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A response head (status line and header fields, interim 1xx heads included) larger
/// than this fails the probe.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// More header fields than this in one head fail the probe (hyper's limit, which the
/// probe used before).
pub(crate) const MAX_HEADERS: usize = 100;

/// A chunk-size line (with its extensions) longer than this fails the probe.
pub(crate) const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Room made for each read.
const READ_SIZE: usize = 4 * 1024;

/// The first read's room: a health check's answer head is a few hundred bytes, and a
/// buffer this small comes from the allocator's per-thread cache, where 4 KiB took its
/// slower path at every probe (issue 13); a longer answer grows it by [`READ_SIZE`].
const FIRST_READ: usize = 1024;

/// How much of an offending line or value goes into an error.
const EXCERPT: usize = 80;

/// The probe's request: `GET` with `Host`, `User-Agent` and, unless the connection is to
/// be kept (`keep`), `Connection: close` (one connection per probe), built once per check.
/// A kept connection sends no `Connection` field at all: persistence is HTTP/1.1's default
/// (RFC 9112 §9.3), and `keep-alive` is an HTTP/1.0 token an HTTP/1.1 request need not carry.
pub(crate) fn encode_request(path: &str, host: &str, keep: bool) -> Box<[u8]> {
    let close = if keep { "" } else { "Connection: close\r\n" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: anyguard/{}\r\n{close}\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
    .into_boxed_slice()
}

/// Why a connection cannot carry the next probe's request after an answer (a kept
/// connection, `reuse_connection`): the probe's result stands, the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EndsReuse {
    /// `Connection: close` in the answer's head (RFC 9112 §9.6).
    #[error("the answer says Connection: close")]
    ConnectionClose,
    /// An HTTP/1.0 answer without `Connection: keep-alive` (RFC 9112 §9.3).
    #[error("an HTTP/1.0 answer without keep-alive")]
    Http10,
    /// 101: the connection no longer speaks HTTP/1.1.
    #[error("101 Switching Protocols")]
    SwitchingProtocols,
    /// Neither `Content-Length` nor chunked: the body ends with the connection
    /// (RFC 9112 §6.3 item 8).
    #[error("the body runs to the close (no Content-Length, not chunked)")]
    CloseDelimited,
    /// More body than the probe reads ([`MAX_BODY`]): the rest would be read as the next
    /// answer.
    #[error("the body is longer than the {max} bytes the probe reads")]
    BodyTooLong {
        /// The limit.
        max: usize,
    },
    /// A trailer section that is not header fields, or too large.
    #[error("malformed trailer section")]
    BadTrailers,
    /// The server ended the connection after (or within) the answer.
    #[error("the server closed the connection")]
    Closed,
    /// Bytes after the answer, which no request asked for.
    #[error("{count} bytes after the answer")]
    BytesAfter {
        /// How many were read.
        count: usize,
    },
}

/// Whether a connection can carry the next request, once an answer is read
/// ([`ResponseReader::end`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// At the start of the next answer, nothing more read.
    Keep,
    /// Not: why.
    End(EndsReuse),
}

/// Why a response cannot be used. Excerpts of the input are copied (escaped, bounded), so
/// the error holds no slice of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    /// The connection ended before any byte of a response.
    #[error("connection closed without a response")]
    ClosedEmpty,
    /// The connection ended within the response head.
    #[error("connection closed after {received} bytes of the response head")]
    ClosedInHead {
        /// Bytes of the unfinished head.
        received: usize,
    },
    /// The head is not HTTP/1.x.
    #[error("malformed response head: {reason} in line {line}: {excerpt:?}")]
    Malformed {
        /// `httparse`'s reason (`invalid response status`, `invalid header name`, …).
        reason: httparse::Error,
        /// The offending line, 1 for the status line.
        line: usize,
        /// The start of that line.
        excerpt: String,
    },
    /// No end of the head within [`MAX_HEAD`] bytes.
    #[error("response head larger than {max} bytes")]
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// More header fields than [`MAX_HEADERS`].
    #[error("more than {max} header fields in the response head")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A `Content-Length` that is not one decimal number (RFC 9112 §6.3 item 5).
    #[error("invalid Content-Length {value:?}")]
    BadContentLength {
        /// The field's value(s).
        value: String,
    },
    /// The connection ended before `Content-Length` bytes of body.
    #[error("connection closed after {received} of {expected} body bytes")]
    ClosedInBody {
        /// Body bytes received.
        received: u64,
        /// The `Content-Length`.
        expected: u64,
    },
    /// The connection ended inside a chunked body, before its last chunk.
    #[error("connection closed inside the chunked body after {received} bytes")]
    ClosedInChunks {
        /// Body bytes decoded.
        received: usize,
    },
    /// A chunk-size line that is not hexadecimal digits (with optional extensions).
    #[error("malformed chunk size line: {excerpt:?}")]
    BadChunkSize {
        /// The start of the line.
        excerpt: String,
    },
    /// A chunk-size line longer than [`MAX_CHUNK_LINE`].
    #[error("chunk size line longer than {max} bytes")]
    ChunkLineTooLong {
        /// The limit.
        max: usize,
    },
    /// A chunk's data not followed by CRLF (RFC 9112 §7.1).
    #[error("chunk data not followed by CRLF: {excerpt:?}")]
    BadChunkEnd {
        /// The two bytes found instead.
        excerpt: String,
    },
}

/// How the body of a response ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: 204, 304 (and 1xx, which are not final).
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length { remaining: u64, expected: u64 },
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked(Chunk),
    /// Neither: the body ends when the connection does.
    Close,
}

/// Where a chunked body is (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes still to come.
    Data { remaining: u64 },
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at the trailer section (RFC 9112 §7.1.2).
    Trailers,
}

#[derive(Debug)]
enum State {
    /// Reading the head (of an interim response, then of the final one).
    Head,
    /// The final head is read (its status); the body (if asked for) is next.
    Body {
        status: u16,
        framing: Framing,
        body: Vec<u8>,
        /// Whether the head lets the connection carry another request (RFC 9112 §9.3).
        persistent: Result<(), EndsReuse>,
    },
}

/// Reads one HTTP/1.1 response from the bytes a connection delivers, sans-IO: the driver
/// reads into [`ResponseReader::read_buf`], says when the connection ended
/// ([`ResponseReader::closed`]), and asks for the status ([`ResponseReader::head`]) and
/// then, if it wants it, the body ([`ResponseReader::body`]). Once the connection has
/// ended, both answer `Some` or an error, never "read more" (so a driver that reads until
/// it has an answer ends).
#[derive(Debug)]
pub(crate) struct ResponseReader {
    /// Bytes received; `buf[..pos]` is consumed.
    buf: Vec<u8>,
    pos: usize,
    /// Where the search for the end of the head goes on (an index into `buf`).
    scanned: usize,
    /// Bytes of interim heads consumed, counted against [`MAX_HEAD`].
    interim: usize,
    closed: bool,
    state: State,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            interim: 0,
            closed: false,
            state: State::Head,
        }
    }
}

impl ResponseReader {
    /// Where the next read goes: the buffer, consumed bytes dropped, with room for a read
    /// at its end (reads append).
    pub(crate) fn read_buf(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(FIRST_READ);
        } else if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        &mut self.buf
    }

    /// The connection ended (a read returned 0).
    pub(crate) fn closed(&mut self) {
        self.closed = true;
    }

    /// The final response's status code once its head is complete; `None` to read more.
    pub(crate) fn head(&mut self) -> Result<Option<u16>, ResponseError> {
        loop {
            if let State::Body { status, .. } = self.state {
                return Ok(Some(status));
            }
            let from = self.scanned.max(self.pos);
            let Some(end) = head_end(&self.buf, from) else {
                self.scanned = self.buf.len().saturating_sub(2).max(self.pos);
                let pending = self.buf.len() - self.pos;
                if self.interim + pending > MAX_HEAD {
                    return Err(ResponseError::HeadTooLarge { max: MAX_HEAD });
                }
                if self.closed {
                    return Err(match (self.interim, pending) {
                        (0, 0) => ResponseError::ClosedEmpty,
                        _ => ResponseError::ClosedInHead {
                            received: self.interim + pending,
                        },
                    });
                }
                return Ok(None);
            };
            if self.interim + (end - self.pos) > MAX_HEAD {
                return Err(ResponseError::HeadTooLarge { max: MAX_HEAD });
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let head = &self.buf[self.pos..end];
            match response.parse(head) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or_default();
                    // RFC 9110 §15.2: a 1xx is interim, the final response follows
                    // (101 ends HTTP/1.1 on the connection: final for this probe).
                    if (100..200).contains(&status) && status != 101 {
                        self.interim += len;
                        self.pos += len;
                        self.scanned = self.pos;
                        continue;
                    }
                    let framing = framing(status, response.headers)?;
                    let persistent = persistence(status, response.version, response.headers);
                    self.pos += len;
                    self.state = State::Body {
                        status,
                        framing,
                        body: Vec::new(),
                        persistent,
                    };
                    return Ok(Some(status));
                }
                // A blank line before the status line (skipped by httparse): the head
                // ends further on.
                Ok(httparse::Status::Partial) => self.scanned = end,
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ResponseError::TooManyHeaders { max: MAX_HEADERS })
                }
                Err(reason) => return Err(malformed(head, reason)),
            }
        }
    }

    /// The body (at most [`MAX_BODY`] bytes of it, decoded) once it is complete or that
    /// long; `None` to read more. Only after [`ResponseReader::head`] gave the status.
    pub(crate) fn body(&mut self) -> Result<Option<Vec<u8>>, ResponseError> {
        if self.head()?.is_none() {
            return Ok(None);
        }
        let closed = self.closed;
        let State::Body { framing, body, .. } = &mut self.state else {
            // `head` answered: the state is `Body`.
            return Ok(None);
        };
        loop {
            let input = &self.buf[self.pos..];
            let room = MAX_BODY - body.len();
            match framing {
                Framing::Empty => return Ok(Some(std::mem::take(body))),
                Framing::Length {
                    remaining,
                    expected,
                } => {
                    let take = bounded(*remaining, input.len().min(room));
                    body.extend_from_slice(&input[..take]);
                    self.pos += take;
                    *remaining -= take as u64;
                    if *remaining == 0 || body.len() >= MAX_BODY {
                        return Ok(Some(std::mem::take(body)));
                    }
                    if closed {
                        return Err(ResponseError::ClosedInBody {
                            received: *expected - *remaining,
                            expected: *expected,
                        });
                    }
                    return Ok(None);
                }
                Framing::Close => {
                    let take = input.len().min(room);
                    body.extend_from_slice(&input[..take]);
                    self.pos += take;
                    if closed || body.len() >= MAX_BODY {
                        return Ok(Some(std::mem::take(body)));
                    }
                    return Ok(None);
                }
                Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(input) {
                    Ok(httparse::Status::Complete((len, 0))) => {
                        // The last chunk: the trailer section is left to `end`
                        // (RFC 9112 §7.1.2), read only for a connection to be kept.
                        self.pos += len;
                        *framing = Framing::Chunked(Chunk::Trailers);
                        return Ok(Some(std::mem::take(body)));
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.pos += len;
                        *framing = Framing::Chunked(Chunk::Data { remaining: size });
                    }
                    Ok(httparse::Status::Partial) if input.len() > MAX_CHUNK_LINE => {
                        return Err(ResponseError::ChunkLineTooLong {
                            max: MAX_CHUNK_LINE,
                        })
                    }
                    Ok(httparse::Status::Partial) => {
                        return more_chunks(closed, body.len());
                    }
                    Err(httparse::InvalidChunkSize) => {
                        return Err(ResponseError::BadChunkSize {
                            excerpt: first_line(input),
                        })
                    }
                },
                Framing::Chunked(Chunk::Data { remaining }) => {
                    let take = bounded(*remaining, input.len().min(room));
                    body.extend_from_slice(&input[..take]);
                    self.pos += take;
                    *remaining -= take as u64;
                    if body.len() >= MAX_BODY {
                        return Ok(Some(std::mem::take(body)));
                    }
                    if *remaining > 0 {
                        return more_chunks(closed, body.len());
                    }
                    *framing = Framing::Chunked(Chunk::DataEnd);
                }
                Framing::Chunked(Chunk::DataEnd) => match input {
                    [b'\r', b'\n', ..] => {
                        self.pos += 2;
                        *framing = Framing::Chunked(Chunk::Size);
                    }
                    [_, _, ..] => {
                        return Err(ResponseError::BadChunkEnd {
                            excerpt: excerpt(&input[..2]),
                        })
                    }
                    _ => return more_chunks(closed, body.len()),
                },
                Framing::Chunked(Chunk::Trailers) => return Ok(Some(std::mem::take(body))),
            }
        }
    }

    /// Once [`ResponseReader::body`] answered: reads what is left of the answer (the
    /// trailer section of a chunked body) and says whether the connection is at the start
    /// of the next answer; `None` to read more (never once the connection has ended).
    pub(crate) fn end(&mut self) -> Result<Option<Reuse>, ResponseError> {
        let State::Body {
            framing,
            persistent,
            ..
        } = &mut self.state
        else {
            return Ok(None);
        };
        if let Err(why) = persistent {
            return Ok(Some(Reuse::End(why.clone())));
        }
        match framing {
            Framing::Empty | Framing::Length { remaining: 0, .. } => {}
            Framing::Close => return Ok(Some(Reuse::End(EndsReuse::CloseDelimited))),
            Framing::Chunked(Chunk::Trailers) => {
                let input = &self.buf[self.pos..];
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(input, &mut fields) {
                    Ok(httparse::Status::Complete((len, _))) => {
                        self.pos += len;
                        *framing = Framing::Empty;
                    }
                    Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
                        return Ok(Some(Reuse::End(EndsReuse::BadTrailers)))
                    }
                    Ok(httparse::Status::Partial) if self.closed => {
                        return Ok(Some(Reuse::End(EndsReuse::Closed)))
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Ok(Some(Reuse::End(EndsReuse::BadTrailers))),
                }
            }
            // Still inside the body: `body` stopped at its bound.
            Framing::Length { .. } | Framing::Chunked(_) => {
                return Ok(Some(Reuse::End(EndsReuse::BodyTooLong { max: MAX_BODY })))
            }
        }
        let after = self.buf.len() - self.pos;
        Ok(Some(if after > 0 {
            Reuse::End(EndsReuse::BytesAfter { count: after })
        } else if self.closed {
            Reuse::End(EndsReuse::Closed)
        } else {
            Reuse::Keep
        }))
    }

    /// Whether no byte of an answer has arrived (a kept connection found closed then was
    /// closed before this request: it is tried again on a new one).
    pub(crate) fn nothing_received(&self) -> bool {
        matches!(self.state, State::Head) && self.interim == 0 && self.buf.len() == self.pos
    }
}

/// Whether a final answer lets the connection carry another request (RFC 9112 §9.3):
/// not after `Connection: close`; by default in HTTP/1.1; in HTTP/1.0 only with
/// `Connection: keep-alive`. A 101 ends HTTP/1.1 on the connection (RFC 9110 §15.2.2).
fn persistence(
    status: u16,
    version: Option<u8>,
    headers: &[httparse::Header<'_>],
) -> Result<(), EndsReuse> {
    if status == 101 {
        return Err(EndsReuse::SwitchingProtocols);
    }
    let tokens = || {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    };
    if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
        return Err(EndsReuse::ConnectionClose);
    }
    match version {
        Some(1) => Ok(()),
        _ if tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive")) => Ok(()),
        _ => Err(EndsReuse::Http10),
    }
}

/// A chunked body needs more bytes: read more, unless the connection has ended.
fn more_chunks(closed: bool, received: usize) -> Result<Option<Vec<u8>>, ResponseError> {
    if closed {
        Err(ResponseError::ClosedInChunks { received })
    } else {
        Ok(None)
    }
}

/// `remaining` bytes of which at most `available` are here.
fn bounded(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// The index just after the blank line that ends a head in `buf`, searched from `from`
/// (lines end in CRLF or, leniently as httparse is, LF).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let lf = i + off;
        match buf.get(lf + 1..lf + 3) {
            Some([b'\n', _]) => return Some(lf + 2),
            Some([b'\r', b'\n']) => return Some(lf + 3),
            None if buf.get(lf + 1) == Some(&b'\n') => return Some(lf + 2),
            _ => i = lf + 1,
        }
    }
    None
}

/// The framing of a final response's body from its status and header fields
/// (RFC 9112 §6.3; the request is always a `GET`).
fn framing(status: u16, headers: &[httparse::Header<'_>]) -> Result<Framing, ResponseError> {
    // Item 1: no body after 1xx, 204 and 304.
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    // Items 3 and 4: Transfer-Encoding overrides Content-Length; chunked only as the final
    // coding, otherwise the body runs to the close.
    let mut last_coding = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        for coding in h.value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if !coding.is_empty() {
                last_coding = Some(coding);
            }
        }
    }
    if let Some(coding) = last_coding {
        return Ok(if coding.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    // Item 5: one length, repeated identically at most (in one field or several).
    let lengths = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    let mut length: Option<u64> = None;
    for part in lengths.clone().flat_map(|h| h.value.split(|&b| b == b',')) {
        match parse_length(part.trim_ascii()) {
            Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
            _ => {
                let values: Vec<_> = lengths.map(|h| String::from_utf8_lossy(h.value)).collect();
                return Err(ResponseError::BadContentLength {
                    value: truncate(&values.join(", ")),
                });
            }
        }
    }
    Ok(match length {
        Some(n) => Framing::Length {
            remaining: n,
            expected: n,
        },
        None => Framing::Close,
    })
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces), fitting in u64.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The error for a head httparse refused, naming the offending line: the status line for a
/// bad version or status, otherwise the first header line httparse refuses on its own.
fn malformed(head: &[u8], reason: httparse::Error) -> ResponseError {
    // Leading blank lines are skipped by httparse; count them so line numbers match.
    let mut lines = head
        .split(|&b| b == b'\n')
        .enumerate()
        .skip_while(|(_, l)| l.is_empty() || *l == b"\r");
    let status_line = lines.next();
    let at = match reason {
        httparse::Error::Version | httparse::Error::Status => status_line,
        _ => lines.find(|(_, line)| {
            let mut one = line.to_vec();
            if one.last() != Some(&b'\r') {
                one.push(b'\r');
            }
            one.extend_from_slice(b"\n\r\n");
            let mut headers = [httparse::EMPTY_HEADER; 1];
            httparse::parse_headers(&one, &mut headers).is_err()
        }),
    }
    .or(status_line);
    let (line, text) = at.map_or((1, &b""[..]), |(i, l)| (i + 1, l));
    ResponseError::Malformed {
        reason,
        line,
        excerpt: excerpt(text.strip_suffix(b"\r").unwrap_or(text)),
    }
}

/// The first line of `input` (without its line end), as an excerpt.
fn first_line(input: &[u8]) -> String {
    let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
    excerpt(line.strip_suffix(b"\r").unwrap_or(line))
}

/// At most [`EXCERPT`] bytes of `bytes` as text (invalid UTF-8 replaced).
fn excerpt(bytes: &[u8]) -> String {
    let cut = bytes.len().min(EXCERPT);
    let mut text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if cut < bytes.len() {
        let _ = write!(text, "… ({} bytes)", bytes.len());
    }
    text
}

/// At most [`EXCERPT`] bytes of `text`.
fn truncate(text: &str) -> String {
    excerpt(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader makes of `input` delivered in pieces of `step` bytes, then the close
    /// if `close`: the status, and the body when `body` is asked for.
    fn read(
        input: &[u8],
        step: usize,
        close: bool,
        body: bool,
    ) -> Result<(u16, Option<Vec<u8>>), ResponseError> {
        let mut r = ResponseReader::default();
        let mut pieces = input.chunks(step.max(1));
        let mut status = None;
        loop {
            if status.is_none() {
                status = r.head()?;
            }
            if let Some(code) = status {
                if !body {
                    return Ok((code, None));
                }
                if let Some(b) = r.body()? {
                    return Ok((code, Some(b)));
                }
            }
            match pieces.next() {
                Some(p) => r.read_buf().extend_from_slice(p),
                None if close && !r.closed => r.closed(),
                None => panic!("reader wants more than the whole input"),
            }
        }
    }

    /// `read` at every piece size from 1 byte to the whole input: all the same.
    fn read_all_ways(
        input: &[u8],
        close: bool,
        body: bool,
    ) -> Result<(u16, Option<Vec<u8>>), ResponseError> {
        let whole = read(input, input.len(), close, body);
        for step in 1..input.len() {
            assert_eq!(read(input, step, close, body), whole, "pieces of {step}");
        }
        whole
    }

    fn ok(code: u16, body: &str) -> Result<(u16, Option<Vec<u8>>), ResponseError> {
        Ok((code, Some(body.as_bytes().to_vec())))
    }

    #[test]
    fn the_request_names_the_path_and_host_and_closes_the_connection() {
        assert_eq!(
            &*encode_request("/healthz?x=1", "[::1]:8080", false),
            format!(
                "GET /healthz?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: anyguard/{}\r\n\
                 Connection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes()
        );
    }

    #[test]
    fn the_request_on_a_kept_connection_has_no_connection_field() {
        assert_eq!(
            &*encode_request("/healthz", "h:80", true),
            format!(
                "GET /healthz HTTP/1.1\r\nHost: h:80\r\nUser-Agent: anyguard/{}\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes()
        );
    }

    /// What `end` says after the whole answer (body read) of `input` in pieces of `step`,
    /// then the close if `close`.
    fn reuse_after(input: &[u8], step: usize, close: bool) -> Reuse {
        let mut r = ResponseReader::default();
        let mut pieces = input.chunks(step.max(1));
        let mut stage = 0;
        loop {
            let answer = match stage {
                0 => r.head().map(|s| s.map(drop)),
                1 => r.body().map(|b| b.map(drop)),
                _ => match r.end() {
                    Ok(Some(reuse)) => return reuse,
                    other => other.map(|_| None),
                },
            };
            match answer {
                Ok(Some(())) => {
                    stage += 1;
                    continue;
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
            match pieces.next() {
                Some(p) => r.read_buf().extend_from_slice(p),
                None if close && !r.closed => r.closed(),
                None => panic!("reader wants more than the whole input"),
            }
        }
    }

    /// `reuse_after` at every piece size: all the same.
    fn reuse_all_ways(input: &[u8], close: bool) -> Reuse {
        let whole = reuse_after(input, input.len(), close);
        for step in 1..input.len() {
            assert_eq!(reuse_after(input, step, close), whole, "pieces of {step}");
        }
        whole
    }

    #[test]
    fn an_answer_framed_by_length_or_chunks_leaves_the_connection_at_the_next_answer() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 2\r\n\r\nok",
        ] {
            assert_eq!(
                reuse_all_ways(input, false),
                Reuse::Keep,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn an_answer_the_probe_cannot_frame_or_that_ends_persistence_ends_reuse() {
        let cases: [(&[u8], bool, EndsReuse); 5] = [
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                false,
                EndsReuse::ConnectionClose,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: te, CLOSE\r\nContent-Length: 2\r\n\r\nok",
                false,
                EndsReuse::ConnectionClose,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
                EndsReuse::Http10,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nto the close",
                true,
                EndsReuse::CloseDelimited,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Name: x\r\n\r\n",
                false,
                EndsReuse::BadTrailers,
            ),
        ];
        for (input, close, want) in cases {
            assert_eq!(
                reuse_all_ways(input, close),
                Reuse::End(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // Bytes read after the answer (bytes arriving later are the kept connection's
        // check before the next request, `http::idle`).
        let after = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
        assert_eq!(
            reuse_after(after, after.len(), false),
            Reuse::End(EndsReuse::BytesAfter { count: 8 })
        );
        // The close already read with the answer.
        let mut r = ResponseReader::default();
        r.read_buf()
            .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        r.closed();
        assert_eq!(r.head(), Ok(Some(200)));
        assert_eq!(r.body(), Ok(Some(b"ok".to_vec())));
        assert_eq!(r.end(), Ok(Some(Reuse::End(EndsReuse::Closed))));
        // A trailer section cut by the close.
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n";
        assert_eq!(reuse_all_ways(cut, true), Reuse::End(EndsReuse::Closed));
        let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
        assert_eq!(
            reuse_all_ways(switching, false),
            Reuse::End(EndsReuse::SwitchingProtocols)
        );
    }

    #[test]
    fn a_body_longer_than_the_probe_reads_ends_reuse() {
        let mut input = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 10
        )
        .into_bytes();
        input.extend(std::iter::repeat_n(b'x', MAX_BODY));
        assert_eq!(
            reuse_after(&input, 1000, false),
            Reuse::End(EndsReuse::BodyTooLong { max: MAX_BODY })
        );
    }

    #[test]
    fn nothing_received_holds_until_the_first_byte_of_an_answer() {
        let mut r = ResponseReader::default();
        assert!(r.nothing_received());
        r.read_buf().extend_from_slice(b"H");
        assert_eq!(r.head(), Ok(None));
        assert!(!r.nothing_received());
    }

    #[test]
    fn a_head_in_any_number_of_pieces_gives_the_status_without_reading_the_body() {
        let input = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nsick";
        assert_eq!(read_all_ways(input, false, false), Ok((503, None)));
    }

    #[test]
    fn a_content_length_body_in_any_number_of_pieces_is_read_to_its_length() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall ok here and more";
        assert_eq!(read_all_ways(input, false, true), ok(200, "all ok here"));
    }

    #[test]
    fn lines_ending_in_a_bare_lf_are_accepted_as_httparse_accepts_them() {
        let input = b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok";
        assert_eq!(read_all_ways(input, false, true), ok(200, "ok"));
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        let input = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nup to the end";
        assert_eq!(read_all_ways(input, true, true), ok(200, "up to the end"));
    }

    #[test]
    fn a_chunked_body_with_extensions_in_any_number_of_pieces_is_decoded() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                      4;name=value\r\nheal\r\n3\r\nthy\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(read_all_ways(input, false, true), ok(200, "healthy"));
    }

    #[test]
    fn transfer_encoding_overrides_content_length_and_without_chunked_runs_to_the_close() {
        let chunked =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(read_all_ways(chunked, false, true), ok(200, "ok"));
        let other = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw";
        assert_eq!(read_all_ways(other, true, true), ok(200, "raw"));
    }

    #[test]
    fn interim_responses_are_skipped_and_the_final_one_counts() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_all_ways(input, false, true), ok(200, "ok"));
    }

    #[test]
    fn no_content_and_not_modified_have_no_body_whatever_the_length_says() {
        for code in [204, 304] {
            let input = format!("HTTP/1.1 {code} X\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(
                read_all_ways(input.as_bytes(), false, true),
                ok(code, ""),
                "{code}"
            );
        }
    }

    #[test]
    fn leading_blank_lines_before_the_status_line_are_skipped() {
        let input = b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(read_all_ways(input, false, true), ok(200, ""));
    }

    #[test]
    fn the_body_is_read_up_to_64_kib_and_no_further() {
        let mut input = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 10
        )
        .into_bytes();
        input.extend(std::iter::repeat_n(b'x', MAX_BODY));
        // The last 10 bytes never come: the reader has what it wants before them.
        let (code, body) = read(&input, 1000, false, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((code, body.map(|b| b.len())), (200, Some(MAX_BODY)));
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..(MAX_BODY / 1000 + 1) {
            chunked.extend_from_slice(format!("3e8\r\n{}\r\n", "y".repeat(1000)).as_bytes());
        }
        let (code, body) = read(&chunked, 777, false, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((code, body.map(|b| b.len())), (200, Some(MAX_BODY)));
    }

    #[test]
    fn a_connection_closed_early_names_where() {
        assert_eq!(read(b"", 1, true, false), Err(ResponseError::ClosedEmpty));
        assert_eq!(
            read_all_ways(b"HTTP/1.1 200 OK\r\nContent-", true, false),
            Err(ResponseError::ClosedInHead { received: 25 })
        );
        assert_eq!(
            read_all_ways(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                true,
                true
            ),
            Err(ResponseError::ClosedInBody {
                received: 3,
                expected: 9
            })
        );
        for cut in [
            &b"5\r\nab"[..],
            b"5\r\nabcde",
            b"5\r\nabcde\r",
            b"5\r\nabcde\r\n",
            b"5",
        ] {
            let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            input.extend_from_slice(cut);
            let got = read_all_ways(&input, true, true);
            assert!(
                matches!(got, Err(ResponseError::ClosedInChunks { .. })),
                "{cut:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_malformed_head_names_the_reason_and_the_line() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"HTTP/1.1 2x0 OK\r\n\r\n",
                "malformed response head: invalid response status in line 1: \"HTTP/1.1 2x0 OK\"",
            ),
            (
                b"ICY 200 OK\r\n\r\n",
                "malformed response head: invalid HTTP version in line 1: \"ICY 200 OK\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nServer: x\r\nBad Name: y\r\n\r\n",
                "malformed response head: invalid header name in line 3: \"Bad Name: y\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
                "malformed response head: invalid header name in line 3: \" folded\"",
            ),
            (
                b"\r\nHTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
                "malformed response head: invalid header value in line 3: \"X: a\\u{1}b\"",
            ),
        ];
        for (input, want) in cases {
            let got = read_all_ways(input, false, false).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{input:?}");
        }
    }

    #[test]
    fn a_bad_content_length_is_refused_with_its_value() {
        for (fields, value) in [
            ("Content-Length: abc\r\n", "abc"),
            ("Content-Length: +5\r\n", "+5"),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", "5, 6"),
            ("Content-Length: 5, 6\r\n", "5, 6"),
            (
                "Content-Length: 99999999999999999999999\r\n",
                "99999999999999999999999",
            ),
        ] {
            let input = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
            assert_eq!(
                read_all_ways(input.as_bytes(), false, false),
                Err(ResponseError::BadContentLength {
                    value: value.into()
                }),
                "{fields}"
            );
        }
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_all_ways(same, false, true), ok(200, "ok"));
    }

    #[test]
    fn a_malformed_chunked_body_is_refused() {
        let base = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (tail, want) in [
            (
                &b"z\r\n"[..],
                ResponseError::BadChunkSize {
                    excerpt: "z".into(),
                },
            ),
            (
                b"2\r\nokXY",
                ResponseError::BadChunkEnd {
                    excerpt: "XY".into(),
                },
            ),
            (
                b"11111111111111111\r\n",
                ResponseError::BadChunkSize {
                    excerpt: "11111111111111111".into(),
                },
            ),
        ] {
            let mut input = base.to_vec();
            input.extend_from_slice(tail);
            assert_eq!(read_all_ways(&input, false, true), Err(want), "{tail:?}");
        }
        let mut long = base.to_vec();
        long.extend_from_slice(b"1;");
        long.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE));
        assert_eq!(
            read(&long, 1000, false, true),
            Err(ResponseError::ChunkLineTooLong {
                max: MAX_CHUNK_LINE
            })
        );
    }

    #[test]
    fn a_head_past_its_limits_is_refused_without_waiting_for_its_end() {
        // Header lines without end: refused once 64 KiB are buffered.
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() <= MAX_HEAD + 100 {
            endless.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        assert_eq!(
            read(&endless, 4096, false, false),
            Err(ResponseError::HeadTooLarge { max: MAX_HEAD })
        );
        // Interim heads count too.
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_HEAD / 25 + 1);
        assert_eq!(
            read(&interim, 4096, false, false),
            Err(ResponseError::HeadTooLarge { max: MAX_HEAD })
        );
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            read(&many, many.len(), false, false),
            Err(ResponseError::TooManyHeaders { max: MAX_HEADERS })
        );
    }

    #[test]
    fn a_reader_never_asks_for_more_once_the_connection_has_ended() {
        // Every prefix of a chunked response, closed there: an answer, never "read more"
        // (`read` panics if it is asked for more after the close).
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nheal\r\n0\r\n\r\n";
        for cut in 0..input.len() {
            let _ = read(&input[..cut], 3, true, true);
        }
    }
}
