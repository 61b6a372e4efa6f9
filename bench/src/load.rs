//! The load generator's HTTP: raw HTTP/1.1 over tokio sockets, one small task per
//! viewer, no client library in between. Streams are counted, not kept.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest response body kept in memory (segments, playlists, JSON).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Read buffer of one streaming viewer: large enough that a viewer at tens of Mbit/s
/// needs few reads per pacing interval.
const STREAM_READ_BYTES: usize = 64 * 1024;

/// A response head.
#[derive(Clone, Debug)]
pub struct Head {
    pub status: u16,
    content_length: Option<usize>,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
    })
}

/// Decodes `Transfer-Encoding: chunked` incrementally, counting payload bytes.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Done,
}

impl Chunked {
    /// Feeds wire bytes, handing each piece of payload they hold to `payload`.
    /// Errors on malformed framing.
    pub fn feed(&mut self, input: &[u8], mut payload: impl FnMut(&[u8])) -> Result<(), String> {
        let mut at = 0;
        while at < input.len() {
            let byte = input[at];
            self.state = match self.state {
                ChunkState::Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    payload(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                    continue;
                }
                ChunkState::SizeStart | ChunkState::Size(_) => {
                    let value = match self.state {
                        ChunkState::Size(value) => value,
                        _ => 0,
                    };
                    match (byte as char).to_digit(16) {
                        Some(digit) => {
                            if value > u64::MAX >> 8 {
                                return Err("chunk size overflows".into());
                            }
                            ChunkState::Size(value * 16 + u64::from(digit))
                        }
                        None if self.state == ChunkState::SizeStart => {
                            return Err(format!("chunk size expected, got {byte:#x}"))
                        }
                        None if byte == b'\r' => ChunkState::SizeLf(value),
                        None => ChunkState::Extension(value),
                    }
                }
                ChunkState::Extension(value) if byte == b'\r' => ChunkState::SizeLf(value),
                ChunkState::Extension(value) => ChunkState::Extension(value),
                ChunkState::SizeLf(0) if byte == b'\n' => ChunkState::Done,
                ChunkState::SizeLf(value) if byte == b'\n' => ChunkState::Data(value),
                ChunkState::DataCr if byte == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if byte == b'\n' => ChunkState::SizeStart,
                ChunkState::Done => return Ok(()),
                state => return Err(format!("bad chunk framing in {state:?} at {byte:#x}")),
            };
            at += 1;
        }
        Ok(())
    }

    /// Whether the last chunk was seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Loopback source addresses connections are spread over (127.0.0.1 to this many), so
/// that tens of thousands of connections and their TIME_WAIT leftovers do not run out
/// of one address's ephemeral ports.
const SOURCE_ADDRESSES: u32 = 16;

/// Connects with Nagle off, as players do for requests; to a loopback server, from the
/// next of [`SOURCE_ADDRESSES`] source addresses in turn.
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stream = match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) % u64::from(SOURCE_ADDRESSES);
            let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + n as u8);
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            socket.connect(addr).await?
        }
        _ => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nhost: bench\r\nuser-agent: acemux-bench\r\n");
    if !body.is_empty() || method != "GET" {
        text.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads from `stream` until `buffer` holds a whole head; returns it, leaving the rest.
async fn read_head(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<Head, String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = parse_head(&buffer[..end])?;
            buffer.advance(end + 4);
            return Ok(head);
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err("response head too large".into());
        }
        buffer.reserve(4096);
        let read = stream
            .read_buf(buffer)
            .await
            .map_err(|error| format!("read: {error}"))?;
        if read == 0 {
            return Err("connection closed before a response".into());
        }
    }
}

/// A keep-alive connection for small requests (playlists, segments, API calls).
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buffer: BytesMut,
}

/// One answered request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Conn {
    /// A connection to `addr`, opened on first use.
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buffer: BytesMut::new(),
        }
    }

    /// `GET path`, on the open connection (reconnecting once if it was closed).
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send("GET", path, b"").await
    }

    /// `method path` with a JSON `body`.
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Answer, String> {
        let reused = self.stream.is_some();
        match self.exchange(method, path, body).await {
            Ok(answer) => Ok(answer),
            // A keep-alive connection the server closed meanwhile: one fresh try.
            Err(_) if reused => {
                self.stream = None;
                self.exchange(method, path, body).await
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Answer, String> {
        if self.stream.is_none() {
            self.buffer.clear();
            let stream = connect(self.addr)
                .await
                .map_err(|error| format!("connect {}: {error}", self.addr))?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("set just above");
        stream
            .write_all(&request(method, path, body))
            .await
            .map_err(|error| format!("write: {error}"))?;
        let head = read_head(stream, &mut self.buffer).await?;
        let body = if head.chunked {
            let mut decoder = Chunked::default();
            let mut body = Vec::new();
            loop {
                let mut failed = None;
                decoder.feed(&self.buffer, |payload| {
                    if body.len() + payload.len() > MAX_BODY_BYTES {
                        failed = Some("body too large");
                    } else {
                        body.extend_from_slice(payload);
                    }
                })?;
                self.buffer.clear();
                if let Some(error) = failed {
                    return Err(error.into());
                }
                if decoder.done() {
                    break;
                }
                self.buffer.reserve(16 * 1024);
                if stream
                    .read_buf(&mut self.buffer)
                    .await
                    .map_err(|error| format!("read: {error}"))?
                    == 0
                {
                    return Err("connection closed mid-body".into());
                }
            }
            // Chunked answers here are whole; trailing bytes would be a new response.
            self.stream = None;
            Bytes::from(body)
        } else {
            let length = head.content_length.ok_or("no content-length")?;
            if length > MAX_BODY_BYTES {
                return Err("body too large".into());
            }
            while self.buffer.len() < length {
                self.buffer.reserve(length - self.buffer.len());
                if stream
                    .read_buf(&mut self.buffer)
                    .await
                    .map_err(|error| format!("read: {error}"))?
                    == 0
                {
                    return Err("connection closed mid-body".into());
                }
            }
            self.buffer.split_to(length).freeze()
        };
        Ok(Answer {
            status: head.status,
            body,
        })
    }
}

/// What one streaming viewer saw.
#[derive(Clone, Debug, Default)]
pub struct Watched {
    /// Response status (0: none).
    pub status: u16,
    /// From the start of the connect to the first payload byte.
    pub ttfb: Option<Duration>,
    /// The server ended the stream (or the connection) before the viewer stopped.
    pub ended_early: bool,
    /// Why it ended early, when it did.
    pub error: Option<String>,
}

/// Watches the MPEG-TS at `path` until `stop` turns true, adding payload bytes to
/// `counter` as they arrive. Nothing is kept.
pub async fn watch(
    addr: SocketAddr,
    path: String,
    counter: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Watched {
    let started = Instant::now();
    let mut watched = Watched::default();
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let outcome: Option<Result<(), String>> = run_until(stopped, async {
        let mut stream = connect(addr)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        stream
            .write_all(&request("GET", &path, b""))
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut buffer = BytesMut::with_capacity(4096);
        let head = read_head(&mut stream, &mut buffer).await?;
        watched.status = head.status;
        if head.status != 200 {
            return Err(format!("status {}", head.status));
        }
        let mut decoder = head.chunked.then(Chunked::default);
        let mut read = vec![0u8; STREAM_READ_BYTES];
        let mut input_len = buffer.len();
        read[..input_len].copy_from_slice(&buffer);
        loop {
            let mut payload = 0u64;
            let input = &read[..input_len];
            match decoder.as_mut() {
                Some(decoder) => {
                    decoder.feed(input, |bytes| payload += bytes.len() as u64)?;
                    if decoder.done() {
                        return Err("the server ended the stream".to_owned());
                    }
                }
                None => payload = input.len() as u64,
            }
            if payload > 0 {
                if watched.ttfb.is_none() {
                    watched.ttfb = Some(started.elapsed());
                }
                counter.fetch_add(payload, Ordering::Relaxed);
            }
            input_len = stream
                .read(&mut read)
                .await
                .map_err(|error| format!("read: {error}"))?;
            if input_len == 0 {
                return Err("the server closed the stream".to_owned());
            }
        }
    })
    .await;
    if let Some(Err(error)) = outcome {
        watched.ended_early = true;
        watched.error = Some(error);
    }
    watched
}

/// Runs `work` until `stop` resolves; `None` when stopped first.
async fn run_until<T>(
    stop: impl std::future::Future<Output = ()>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        () = stop => None,
        result = work => Some(result),
    }
}

/// Time to the first payload byte of the stream at `path`, connect included; the
/// connection is closed right after.
pub async fn first_byte(addr: SocketAddr, path: &str, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = connect(addr)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        stream
            .write_all(&request("GET", path, b""))
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        let head = read_head(&mut stream, &mut buffer).await?;
        if head.status != 200 {
            return Err(format!("status {}", head.status));
        }
        let mut decoder = head.chunked.then(Chunked::default);
        loop {
            let mut payload = 0usize;
            match decoder.as_mut() {
                Some(decoder) => decoder.feed(&buffer, |bytes| payload += bytes.len())?,
                None => payload = buffer.len(),
            }
            if payload > 0 {
                return Ok(started.elapsed());
            }
            buffer.clear();
            buffer.reserve(16 * 1024);
            let len = stream
                .read_buf(&mut buffer)
                .await
                .map_err(|error| format!("read: {error}"))?;
            if len == 0 {
                return Err("closed before the first byte".to_owned());
            }
        }
    };
    tokio::time::timeout(bound, exchange)
        .await
        .map_err(|_| format!("no first byte within {bound:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(wire: &[u8], split: usize) -> (Vec<u8>, bool) {
        let mut decoder = Chunked::default();
        let mut out = Vec::new();
        for part in wire.chunks(split) {
            decoder
                .feed(part, |bytes| out.extend_from_slice(bytes))
                .expect("valid framing");
        }
        (out, decoder.done())
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let wire = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for split in [1, 2, 3, 7, wire.len()] {
            let (body, done) = decode(wire, split);
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "split {split}");
            assert!(done);
        }
    }

    #[test]
    fn bad_framing_is_an_error() {
        let mut decoder = Chunked::default();
        assert!(decoder.feed(b"zz\r\n", |_| {}).is_err());
        let mut decoder = Chunked::default();
        assert!(decoder.feed(b"1\r\nab\r\n", |_| {}).is_err());
    }

    #[test]
    fn heads_parse_status_and_framing() {
        let head =
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y").expect("a head");
        assert_eq!(
            (head.status, head.chunked, head.content_length),
            (200, true, None)
        );
        let head = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 12").expect("a head");
        assert_eq!((head.status, head.content_length), (404, Some(12)));
    }
}
