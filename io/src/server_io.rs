//! JSON for the answers hyper writes by itself.
//!
//! When a request head cannot be parsed (malformed, too many or too large headers, a
//! request target too long), hyper answers 400, 431 or 414 on its own, with an empty
//! body, and closes the connection; no handler runs. [`JsonParseErrors`] wraps a
//! connection and turns exactly those answers (recognised as a 400/414/431 head without
//! a content type, which no route ever sends) into the `{error, message}` JSON every
//! other error has.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bare parse-error answers are rewritten as JSON.
#[derive(Debug)]
pub struct JsonParseErrors<S> {
    inner: S,
    /// Bytes read from `inner` before it was wrapped, returned by the first reads.
    prefix: bytes::Bytes,
    /// A replacement answer still to be written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        JsonParseErrors::with_prefix(inner, bytes::Bytes::new())
    }

    /// Wraps `inner`, of which `prefix` was read already: reads return it first.
    pub fn with_prefix(inner: S, prefix: bytes::Bytes) -> Self {
        JsonParseErrors {
            inner,
            prefix,
            pending: None,
        }
    }
}

/// The JSON answer replacing hyper's bare answer `head`, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    // Most writes are bodies: look for the end of a head only in what starts like one
    // of the three answers.
    if !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let end = head
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(head.len());
    let head = &head[..end];
    let (status, reason, code, message) = if head.starts_with(b"HTTP/1.1 400 ") {
        (
            400,
            "Bad Request",
            "bad_request",
            "the request head is not valid HTTP/1.1",
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (
            414,
            "URI Too Long",
            "uri_too_long",
            "the request target is longer than the server accepts",
        )
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "Request Header Fields Too Large",
            "header_too_large",
            "the request headers are larger (or more) than the server accepts (--max-header-bytes)",
        )
    } else {
        return None;
    };
    let has_content_type = head
        .split(|&byte| byte == b'\n')
        .any(|line| line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:"));
    if has_content_type {
        return None;
    }
    let body = format!(r#"{{"error":"{code}","message":"{message}"}}"#);
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.pending {
            if *written == answer.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let take = self.prefix.len().min(buf.remaining());
            let bytes = self.prefix.split_to(take);
            buf.put_slice(&bytes);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            // What hyper wrote is consumed; the replacement goes out now or at flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let first = bufs.iter().find(|buf| !buf.is_empty());
        if let Some(answer) = first.and_then(|buf| replacement(buf)) {
            self.pending = Some((answer, 0));
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn bare_parse_error_answers_become_json() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(replacement(bare).expect("rewritten")).expect("ASCII");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["error"], "header_too_large");
    }

    #[test]
    fn answers_of_routes_are_left_alone() {
        let routed = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(replacement(routed), None);
        assert_eq!(
            replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }
}
