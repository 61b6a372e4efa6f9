//! A raw TCP HTTP/1.1 client for hostile requests that a well-behaved client library
//! refuses to send (slow heads, huge or malformed heads, endless bodies).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status code (0 when no status line arrived).
    pub status: u16,
    /// The response head, as text.
    pub head: String,
    /// The body (as far as it arrived).
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The JSON `error` code of the body (empty when there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads one answer from `stream`: until its head and `content-length` body arrived,
/// the peer closed, or `bound` passed.
pub async fn read_answer<R: AsyncRead + Unpin>(stream: &mut R, bound: Duration) -> RawAnswer {
    let deadline = tokio::time::Instant::now() + bound;
    let mut bytes = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    loop {
        if let Some(answer) = parse_complete(&bytes) {
            return answer;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    parse_complete(&bytes).unwrap_or_else(|| partial(&bytes))
}

fn partial(bytes: &[u8]) -> RawAnswer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    RawAnswer {
        status: status_of(head),
        head: head.to_owned(),
        body: body.as_bytes().to_vec(),
    }
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn parse_complete(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })?;
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    Some(RawAnswer {
        status: status_of(&head),
        head,
        body,
    })
}

/// Sends `request` on a new connection and reads one answer (bounded by `bound`).
/// Write errors are ignored: a server may answer and close before reading it all.
pub async fn exchange(addr: SocketAddr, request: &[u8], bound: Duration) -> RawAnswer {
    let mut stream = connect(addr).await;
    let _ = tokio::time::timeout(bound, stream.write_all(request)).await;
    read_answer(&mut stream, bound).await
}

/// Whether the peer closed `stream` (EOF or reset) within `bound`; bytes that arrive
/// meanwhile are skipped.
pub async fn closed_within<R: AsyncRead + Unpin>(stream: &mut R, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A TS viewer on a raw connection to `addr`, with `agent` as its user agent, reading
/// (and dropping) what it is sent until aborted or closed.
pub async fn ts_viewer(addr: SocketAddr, id: &str, agent: &str) -> tokio::task::JoinHandle<()> {
    let mut stream = connect(addr).await;
    let request = format!(
        "GET /ace/getstream?id={id} HTTP/1.1\r\nhost: acemux\r\nuser-agent: {agent}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
}
