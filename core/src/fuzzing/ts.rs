//! The packet aligner under arbitrary bytes in arbitrary chunks.

use bytes::Bytes;

use super::reader::ByteReader;
use crate::ts::{self, PacketAligner, PACKET_LEN};

/// Most chunks one input is cut into.
const MAX_CHUNKS: usize = 256;

/// Feeds the bytes after the first few to two aligners, whole and cut into chunks of
/// sizes read from the first bytes. Both must put out the same packets and discard the
/// same bytes: what is a packet depends on the stream, never on how it arrived. Every
/// output is whole packets, each starting with the sync byte, and everything pushed is
/// accounted for as output, discarded or pending.
pub fn ts_aligner(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let mut sizes = Vec::new();
    for _ in 0..1 + reader.index(8) {
        sizes.push(1 + reader.index(2 * PACKET_LEN));
    }
    let stream = reader.bytes(data.len());

    let mut whole = PacketAligner::new();
    let all = whole.push(Bytes::copy_from_slice(stream));
    check_output(&all);

    let mut chunked = PacketAligner::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for index in 0..MAX_CHUNKS {
        if rest.is_empty() {
            break;
        }
        let size = if index + 1 == MAX_CHUNKS {
            rest.len()
        } else {
            sizes[index % sizes.len()].min(rest.len())
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let aligned = chunked.push(Bytes::copy_from_slice(chunk));
        check_output(&aligned);
        out.extend_from_slice(&aligned);
        let pushed = stream.len() - rest.len();
        let accounted = out.len() as u64 + chunked.discarded_bytes();
        assert_eq!(
            accounted + chunked.pending_bytes() as u64,
            pushed as u64,
            "every byte is output, discarded or pending"
        );
        assert!(
            chunked.pending_bytes() <= 2 * PACKET_LEN,
            "pending is bounded"
        );
    }
    assert_eq!(out, all, "the output does not depend on the chunking");
    assert_eq!(chunked.discarded_bytes(), whole.discarded_bytes());
    assert_eq!(chunked.pending_bytes(), whole.pending_bytes());
}

fn check_output(bytes: &[u8]) {
    assert_eq!(bytes.len() % PACKET_LEN, 0, "whole packets");
    assert_eq!(
        ts::packets(bytes).count(),
        bytes.len() / PACKET_LEN,
        "sync bytes"
    );
}
