//! A segment's bytes as a few shared parts rather than one owned copy.

use bytes::{Bytes, BytesMut};

/// The bytes of a served segment: a list of parts, served one after the other.
///
/// A segment cut from a TS channel's stream is made of slices of the chunks the
/// channel's fan-out ring already holds (one part per run of consecutive packets of a
/// chunk) and of the shared PAT/PMT packets put in front, so holding it costs a few
/// reference counts instead of a copy of its media. A segment fetched from the engine
/// is one part. Two bodies are equal when their bytes are, however they are split.
#[derive(Clone, Debug, Default)]
pub struct SegmentBody {
    /// Non-empty parts, in order.
    parts: Vec<Bytes>,
    /// The sum of their lengths.
    len: usize,
}

impl SegmentBody {
    /// An empty body.
    pub fn new() -> Self {
        SegmentBody::default()
    }

    /// Appends `part` (an empty one is not kept).
    pub fn push(&mut self, part: Bytes) {
        if part.is_empty() {
            return;
        }
        self.len += part.len();
        self.parts.push(part);
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its parts, in order (none empty).
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Its parts, in order, to send one after the other.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// Its bytes in one piece: the part itself when there is one, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [only] => only.clone(),
            parts => {
                let mut joined = BytesMut::with_capacity(self.len);
                for part in parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        }
    }

    /// Its bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.parts.iter().flat_map(|part| part.iter().copied())
    }
}

impl From<Bytes> for SegmentBody {
    fn from(bytes: Bytes) -> Self {
        let mut body = SegmentBody::new();
        body.push(bytes);
        body
    }
}

impl From<Vec<u8>> for SegmentBody {
    fn from(bytes: Vec<u8>) -> Self {
        SegmentBody::from(Bytes::from(bytes))
    }
}

impl PartialEq for SegmentBody {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for SegmentBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_their_allocation_and_order() {
        let chunk = Bytes::from(vec![1u8, 2, 3, 4, 5, 6]);
        let mut body = SegmentBody::new();
        body.push(chunk.slice(0..2));
        body.push(Bytes::new());
        body.push(chunk.slice(4..6));
        assert_eq!(body.len(), 4);
        assert_eq!(body.parts().len(), 2, "the empty part is not kept");
        assert_eq!(
            body.parts()[0].as_ptr(),
            chunk.as_ptr(),
            "a slice, not a copy"
        );
        assert_eq!(&body.to_bytes()[..], &[1, 2, 5, 6]);
        assert_eq!(body.iter().collect::<Vec<_>>(), vec![1, 2, 5, 6]);
    }

    #[test]
    fn equal_bytes_are_equal_bodies_however_split() {
        let mut split = SegmentBody::new();
        split.push(Bytes::from_static(b"ab"));
        split.push(Bytes::from_static(b"cd"));
        assert_eq!(split, SegmentBody::from(Bytes::from_static(b"abcd")));
        assert_ne!(split, SegmentBody::from(Bytes::from_static(b"abce")));
        assert_ne!(split, SegmentBody::from(Bytes::from_static(b"abc")));
        assert!(SegmentBody::new().is_empty());
        assert_eq!(SegmentBody::new().to_bytes(), Bytes::new());
    }

    #[test]
    fn one_part_is_given_back_without_a_copy() {
        let bytes = Bytes::from(vec![7u8; 100]);
        let body = SegmentBody::from(bytes.clone());
        assert_eq!(body.to_bytes().as_ptr(), bytes.as_ptr());
        assert_eq!(body.into_parts(), vec![bytes]);
    }
}
