//! What is served: the held segments, the window the playlist lists, and its text.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::SegmentBody;

/// One served segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedSegment {
    /// Served sequence number: the configured first one (`first_seq`) for the first
    /// segment of the session, then one more per segment, across reconnects and
    /// upstream renumbering.
    pub seq: u64,
    /// `#EXTINF` duration, in µs, as upstream announced it.
    pub duration_us: u64,
    /// Whether `#EXT-X-DISCONTINUITY` precedes it: media is missing before it, a new
    /// upstream session starts with it, or upstream marked it so. Never set on the first
    /// segment of a session (nothing precedes it).
    pub discontinuity: bool,
    /// The segment's body.
    pub body: SegmentBody,
}

/// An immutable view of what is served, for the driver to publish (for example in a
/// `watch` channel) so that players read it without waiting for the session's owner.
///
/// Segments are cheap reference-counted handles; a snapshot holds at most
/// [`HlsConfig::max_segments`](super::HlsConfig::max_segments) of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HlsSnapshot {
    /// `#EXT-X-TARGETDURATION`: the longest `#EXTINF` of the window, rounded up to whole
    /// seconds, at least 1. It follows the window (so one long segment does not push
    /// players further behind live for good), which RFC 8216 asks servers not to do;
    /// common players re-read it on every reload.
    pub target_duration_s: u64,
    /// `#EXT-X-MEDIA-SEQUENCE`: the seq of the window's first segment (the next seq to
    /// be served while the window is empty). Never goes backwards.
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities of the segments that slid out of
    /// the window. Never goes backwards.
    pub discontinuity_sequence: u64,
    /// Upstream ended and everything it listed is served or given up: the playlist ends
    /// with `#EXT-X-ENDLIST`. A new `Open` starts a new run and clears it.
    pub ended: bool,
    /// [`Output::Ready`](super::Output::Ready) has been emitted.
    pub ready: bool,
    /// The window: the newest held segments, oldest first, seqs consecutive.
    pub segments: Vec<ServedSegment>,
    /// Held segments older than the window, oldest first, seqs consecutive and right
    /// before the window's. A player that read an older playlist can still fetch them
    /// through [`segment`](Self::segment); they are not listed.
    pub behind: Vec<ServedSegment>,
}

impl HlsSnapshot {
    /// The held segment numbered `seq` (listed or behind the window), if still held.
    pub fn segment(&self, seq: u64) -> Option<&ServedSegment> {
        find_segment(&self.segments, seq).or_else(|| find_segment(&self.behind, seq))
    }

    /// The served media playlist, `uri(seq)` giving each segment's URI (for example
    /// `/ace/hls/<channel>/<seq>.ts?…`; players such as ffmpeg refuse segment URIs that do
    /// not end in `.ts`).
    ///
    /// `#EXT-X-DISCONTINUITY-SEQUENCE` is always written, also when 0: one fixed shape
    /// for every reader, and it says outright that the numbering starts at 0.
    pub fn render(&self, uri: impl Fn(u64) -> String) -> String {
        let mut text = String::with_capacity(160 + 64 * self.segments.len());
        // `write!` to a `String` cannot fail.
        let _ = write!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.target_duration_s, self.media_sequence, self.discontinuity_sequence
        );
        for segment in &self.segments {
            if segment.discontinuity {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = write!(
                text,
                "#EXTINF:{}.{:06},\n{}\n",
                segment.duration_us / 1_000_000,
                segment.duration_us % 1_000_000,
                uri(segment.seq)
            );
        }
        if self.ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        text
    }
}

/// `seq` in `segments`, whose seqs are consecutive.
fn find_segment(segments: &[ServedSegment], seq: u64) -> Option<&ServedSegment> {
    let first = segments.first()?.seq;
    let index = usize::try_from(seq.checked_sub(first)?).ok()?;
    segments.get(index).filter(|segment| segment.seq == seq)
}

/// The served segments held, oldest first, within the caps.
#[derive(Debug, Default)]
pub(crate) struct ServedBuffer {
    segments: VecDeque<ServedSegment>,
    bytes: usize,
    /// The seq of the first segment served.
    first_seq: u64,
    /// The seq of the next segment served.
    next_seq: u64,
    /// `first_seq` plus the segments served with a discontinuity, held or not.
    discontinuities: u64,
}

impl ServedBuffer {
    /// An empty buffer whose first segment is numbered `first_seq`, and whose
    /// discontinuity sequence starts there too.
    pub(crate) fn starting_at(first_seq: u64) -> Self {
        ServedBuffer {
            first_seq,
            next_seq: first_seq,
            discontinuities: first_seq,
            ..ServedBuffer::default()
        }
    }

    /// Segments served so far.
    pub(crate) fn served(&self) -> u64 {
        self.next_seq - self.first_seq
    }

    pub(crate) fn len(&self) -> usize {
        self.segments.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Serves a segment; the oldest ones are evicted until at most `max_segments` and
    /// `max_bytes` are held, the new one always staying. Its seq.
    pub(crate) fn push(
        &mut self,
        duration_us: u64,
        discontinuity: bool,
        body: SegmentBody,
        max_segments: usize,
        max_bytes: usize,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        // A discontinuity before the very first segment separates it from nothing.
        let discontinuity = discontinuity && seq > self.first_seq;
        self.discontinuities += u64::from(discontinuity);
        self.bytes += body.len();
        self.segments.push_back(ServedSegment {
            seq,
            duration_us,
            discontinuity,
            body,
        });
        while self.segments.len() > 1
            && (self.segments.len() > max_segments || self.bytes > max_bytes)
        {
            if let Some(evicted) = self.segments.pop_front() {
                self.bytes -= evicted.body.len();
            }
        }
        seq
    }

    /// What is served, with a window of `window` segments (at least 1).
    pub(crate) fn snapshot(&self, window: usize, ended: bool, ready: bool) -> HlsSnapshot {
        let start = self.segments.len().saturating_sub(window.max(1));
        let (behind, listed) = (self.segments.range(..start), self.segments.range(start..));
        let segments: Vec<ServedSegment> = listed.cloned().collect();
        let listed_discontinuities = segments.iter().filter(|s| s.discontinuity).count();
        let target_duration_s = segments
            .iter()
            .map(|segment| segment.duration_us.div_ceil(1_000_000))
            .max()
            .unwrap_or(1)
            .max(1);
        HlsSnapshot {
            target_duration_s,
            media_sequence: segments.first().map_or(self.next_seq, |s| s.seq),
            discontinuity_sequence: self.discontinuities - listed_discontinuities as u64,
            ended,
            ready,
            segments,
            behind: behind.cloned().collect(),
        }
    }
}
