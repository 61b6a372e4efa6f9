//! A held HLS segment as a response body: its parts sent one after the other, each
//! one frame, none copied or joined.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use acemux_core::hls::SegmentBody;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The parts of a [`SegmentBody`], with its exact length (so the answer has a
/// `Content-Length`, not a chunked encoding).
#[derive(Debug)]
pub(super) struct PartsBody {
    parts: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl From<SegmentBody> for PartsBody {
    fn from(body: SegmentBody) -> Self {
        PartsBody {
            remaining: body.len() as u64,
            parts: body.into_parts().into_iter(),
        }
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let part = self.parts.next();
        if let Some(part) = &part {
            self.remaining -= part.len() as u64;
        }
        Poll::Ready(part.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn the_parts_come_out_in_order_as_they_are_with_the_exact_length() {
        let chunk = Bytes::from(vec![1u8, 2, 3, 4, 5, 6]);
        let mut segment = SegmentBody::new();
        segment.push(Bytes::from_static(&[9, 9]));
        segment.push(chunk.slice(2..6));
        let mut body = PartsBody::from(segment);
        assert_eq!(body.size_hint().exact(), Some(6));
        assert!(!body.is_end_stream());
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(
            first.into_data().expect("data"),
            Bytes::from_static(&[9, 9])
        );
        let second = body.frame().await.expect("a frame").expect("data");
        let second = second.into_data().expect("data");
        assert_eq!(second.as_ptr(), chunk[2..].as_ptr(), "the part itself");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }
}
