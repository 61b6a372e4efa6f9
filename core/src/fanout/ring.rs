//! The ring: the newest aligned upstream chunks, addressed by absolute stream offset.

use std::collections::VecDeque;

use bytes::Bytes;

/// One upstream chunk and the stream offset of its first byte.
#[derive(Debug)]
struct Chunk {
    offset: u64,
    bytes: Bytes,
}

/// Aligned chunks in stream order, bounded in bytes by [`Ring::evict`].
#[derive(Debug, Default)]
pub(super) struct Ring {
    /// Non-empty chunks, oldest first, each starting where the previous one ends.
    chunks: VecDeque<Chunk>,
    /// Stream offset of the first held byte (the live edge when nothing is held).
    start_offset: u64,
    /// Stream offset just past the newest byte: the live edge.
    end_offset: u64,
    /// Sum of the chunk lengths.
    bytes: usize,
}

impl Ring {
    pub(super) fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub(super) fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `bytes` at the live edge; empty chunks are not kept.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        self.chunks.push_back(Chunk {
            offset: self.end_offset,
            bytes,
        });
        self.end_offset += len as u64;
        self.bytes += len;
    }

    /// Drops the oldest chunks while more than `capacity_bytes` are held, always keeping
    /// the newest chunk. Returns whether anything was dropped.
    pub(super) fn evict(&mut self, capacity_bytes: usize) -> bool {
        let mut evicted = false;
        while self.bytes > capacity_bytes && self.chunks.len() > 1 {
            let Some(oldest) = self.chunks.pop_front() else {
                break;
            };
            self.bytes -= oldest.bytes.len();
            evicted = true;
        }
        self.start_offset = self
            .chunks
            .front()
            .map_or(self.end_offset, |chunk| chunk.offset);
        evicted
    }

    /// Slices of at most `budget_bytes` held bytes starting at `offset`, and their total
    /// length. Nothing when `offset` is not held (before the ring or at the live edge).
    pub(super) fn read(&self, offset: u64, budget_bytes: usize) -> (Vec<Bytes>, usize) {
        let mut slices = Vec::new();
        let mut total = 0;
        if offset < self.start_offset || offset >= self.end_offset {
            return (slices, total);
        }
        // The first chunk starting after `offset`, minus one: the chunk holding `offset`.
        // At least the front chunk starts at or before `offset`, so this is not zero.
        let first = self
            .chunks
            .partition_point(|chunk| chunk.offset <= offset)
            .saturating_sub(1);
        let mut position = offset;
        for chunk in self.chunks.range(first..) {
            if total >= budget_bytes {
                break;
            }
            // `position` lies within `chunk`: chunks are contiguous and `position` is
            // below the live edge.
            let skip = usize::try_from(position - chunk.offset).unwrap_or(usize::MAX);
            let take = (chunk.bytes.len().saturating_sub(skip)).min(budget_bytes - total);
            if take == 0 {
                break;
            }
            slices.push(chunk.bytes.slice(skip..skip + take));
            total += take;
            position += take as u64;
        }
        (slices, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(chunks: &[&[u8]]) -> Ring {
        let mut ring = Ring::default();
        for chunk in chunks {
            ring.push(Bytes::copy_from_slice(chunk));
        }
        ring
    }

    fn concat(slices: &[Bytes]) -> Vec<u8> {
        slices.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn reads_span_chunks_from_any_offset_within_budget() {
        let ring = ring_of(&[b"abc", b"defg", b"hi"]);
        let (slices, total) = ring.read(2, 5);
        assert_eq!(concat(&slices), b"cdefg");
        assert_eq!((slices.len(), total), (2, 5));
        let (slices, total) = ring.read(7, 100);
        assert_eq!((concat(&slices), total), (b"hi".to_vec(), 2));
        assert_eq!(ring.read(9, 100).1, 0);
    }

    #[test]
    fn eviction_keeps_the_newest_chunk_and_moves_the_start() {
        let mut ring = ring_of(&[b"abc", b"defg", b"hijklm"]);
        assert!(ring.evict(8));
        assert_eq!((ring.start_offset(), ring.bytes()), (7, 6));
        assert!(!ring.evict(0));
        assert_eq!((ring.start_offset(), ring.end_offset()), (7, 13));
        assert_eq!(ring.read(3, 100).1, 0, "evicted bytes are not read");
    }
}
