//! The values a playlist parses into.

use std::fmt;

use super::attr::{AttributeError, AttributeList};
use super::{render, rewrite, tags, UriKind};

/// A line that is not a URI: a tag (`#EXT…`) or a comment (any other `#…`), verbatim.
///
/// The text has no line ending. It always starts with `#`, never contains a line feed
/// and never ends in a carriage return, so it renders as exactly one line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line(String);

impl Line {
    /// The line `text`, or `None` when it would not render as one tag or comment
    /// line (it does not start with `#`, holds a line feed, or ends in `\r`).
    pub fn new(text: impl Into<String>) -> Option<Line> {
        let text = text.into();
        let valid = text.starts_with('#') && !text.contains('\n') && !text.ends_with('\r');
        valid.then_some(Line(text))
    }

    /// A line the reader split off, which has the invariants by construction.
    pub(super) fn from_parsed(text: &str) -> Line {
        Line(text.to_owned())
    }

    /// Replaces the text of a tag whose name and attributes were taken from it.
    pub(super) fn set_attributes(&mut self, name: &str, attributes: &AttributeList) {
        self.0 = format!("#{name}:{attributes}");
    }

    /// The text, without line ending.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a tag (`#EXT…`).
    pub fn is_tag(&self) -> bool {
        self.tag_name().is_some()
    }

    /// Whether this is a comment (`#` not followed by `EXT`).
    pub fn is_comment(&self) -> bool {
        !self.is_tag()
    }

    /// The tag's name without `#` (`EXT-X-KEY`), or `None` for a comment.
    pub fn tag_name(&self) -> Option<&str> {
        tags::tag_name(&self.0)
    }

    /// What follows the first `:` of a tag, or `None` for a comment or a tag without
    /// a value.
    pub fn tag_value(&self) -> Option<&str> {
        tags::tag_value(&self.0)
    }

    /// The tag's value read as an attribute list (empty for a tag without a value).
    pub fn attributes(&self) -> Result<AttributeList, AttributeError> {
        AttributeList::parse(self.tag_value().unwrap_or(""))
    }

    /// The text, without line ending.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One media segment: its `#EXTINF`, the tags before it, and its URI.
///
/// `duration_us`, `title` and `discontinuity` are authoritative: on render the
/// `#EXTINF` line is written as read while it still says the same duration and
/// title, and rewritten otherwise; setting `discontinuity` adds an
/// `#EXT-X-DISCONTINUITY` line before the others when `tags` has none, clearing it
/// leaves out those in `tags`.
///
/// Equality also compares where `#EXTINF` stood and how it was spelled, so a parsed
/// segment equals its re-parsed rendering but not a [`Segment::new`] with the same
/// fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Duration from `#EXTINF`, in microseconds, parsed exactly from the decimal text.
    pub duration_us: u64,
    /// The `#EXTINF` title: the text after the first comma, possibly empty.
    pub title: String,
    /// The URI line, as written (relative or absolute).
    pub uri: String,
    /// Every tag and comment line between the previous segment's URI (or the end of
    /// the header) and this URI, in order, verbatim; `#EXTINF` itself is not here.
    pub tags: Vec<Line>,
    /// Whether an `#EXT-X-DISCONTINUITY` precedes this segment.
    pub discontinuity: bool,
    /// The `#EXTINF` value as read, written back while it agrees with the fields.
    pub(super) extinf_text: Option<String>,
    /// Where `#EXTINF` stood among `tags`; `None` means last, just before the URI.
    pub(super) extinf_index: Option<usize>,
}

impl Segment {
    /// A segment of `duration_us` at `uri`, with no title and no tags.
    pub fn new(duration_us: u64, uri: impl Into<String>) -> Self {
        Segment {
            duration_us,
            title: String::new(),
            uri: uri.into(),
            tags: Vec::new(),
            discontinuity: false,
            extinf_text: None,
            extinf_index: None,
        }
    }

    /// The first of this segment's tags called `name` (without `#`).
    pub fn tag(&self, name: &str) -> Option<&Line> {
        self.tags.iter().find(|line| line.tag_name() == Some(name))
    }
}

/// `#EXT-X-PLAYLIST-TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlaylistType {
    /// `EVENT`: segments may only be appended.
    Event,
    /// `VOD`: the playlist will not change.
    Vod,
}

impl PlaylistType {
    /// The tag value: `EVENT` or `VOD`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaylistType::Event => "EVENT",
            PlaylistType::Vod => "VOD",
        }
    }
}

/// A media playlist: a header, segments, and the lines after the last segment.
///
/// **Grouping.** The header is every line from `#EXTM3U` up to the first media-segment
/// tag (`#EXTINF`, `#EXT-X-KEY`, `#EXT-X-DISCONTINUITY`, `#EXT-X-PROGRAM-DATE-TIME`,
/// …) or URI; unknown tags and comments before that stay in the header. From there,
/// each URI line closes a [`Segment`] holding the lines since the previous one, and
/// the lines after the last URI are the `trailer` (typically `#EXT-X-ENDLIST`).
///
/// **Typed fields.** The six typed fields below are read from their tags wherever
/// they stand (each may appear once). Their lines stay where they were, in `header`,
/// a segment's `tags` or `trailer`; on render such a line is written as read while it
/// agrees with its field, rewritten from the field otherwise, and left out when the
/// field is `None` (or `ended` is false). A field with no line is added: at the end
/// of the header (a zero sequence number is not added), or at the end for `ended`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPlaylist {
    /// `#EXT-X-VERSION`.
    pub version: Option<u64>,
    /// `#EXT-X-TARGETDURATION`, in seconds.
    pub target_duration_s: Option<u64>,
    /// `#EXT-X-MEDIA-SEQUENCE`: the sequence number of the first segment (default 0).
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE` (default 0).
    pub discontinuity_sequence: u64,
    /// `#EXT-X-PLAYLIST-TYPE`.
    pub playlist_type: Option<PlaylistType>,
    /// Whether `#EXT-X-ENDLIST` is present: no segment will be added.
    pub ended: bool,
    /// Lines between `#EXTM3U` and the first segment, in order.
    pub header: Vec<Line>,
    /// The segments, in order.
    pub segments: Vec<Segment>,
    /// Lines after the last segment's URI, in order.
    pub trailer: Vec<Line>,
    /// What followed `#EXTM3U` on its line, kept for losslessness.
    pub(super) extm3u_suffix: String,
}

impl MediaPlaylist {
    /// An empty media playlist: no tags, no segments.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sum of the segment durations, in microseconds (saturating).
    pub fn duration_us(&self) -> u64 {
        self.segments.iter().fold(0, |total, segment| {
            total.saturating_add(segment.duration_us)
        })
    }

    /// Writes the playlist as text.
    pub fn render(&self) -> String {
        render::media(self)
    }

    /// Rewrites every URI; see [`Playlist::rewrite_uris`](super::Playlist::rewrite_uris).
    pub fn rewrite_uris(&mut self, mut f: impl FnMut(UriKind, &str) -> String) {
        rewrite::media(self, &mut f);
    }
}

/// `RESOLUTION` of a variant: pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// One variant stream of a master playlist: `#EXT-X-STREAM-INF` and its URI line.
///
/// `bandwidth`, `resolution` and `codecs` are read from `attributes` and are
/// authoritative: on render an attribute that no longer agrees with its field is
/// replaced (or added, or removed when the field is `None`); all other attributes
/// are written as read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Variant {
    /// `BANDWIDTH`, in bits per second.
    pub bandwidth: Option<u64>,
    /// `RESOLUTION`.
    pub resolution: Option<Resolution>,
    /// `CODECS`, without quotes.
    pub codecs: Option<String>,
    /// Every attribute of the `#EXT-X-STREAM-INF` line, in order, raw.
    pub attributes: AttributeList,
    /// The URI line, as written.
    pub uri: String,
}

impl Variant {
    /// A variant at `uri` with no attributes.
    pub fn new(uri: impl Into<String>) -> Self {
        Variant {
            bandwidth: None,
            resolution: None,
            codecs: None,
            attributes: AttributeList::new(),
            uri: uri.into(),
        }
    }
}

/// One entry of a master playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterLine {
    /// A tag or comment, verbatim (`#EXT-X-MEDIA`, `#EXT-X-VERSION`, …).
    Line(Line),
    /// `#EXT-X-STREAM-INF` with its URI.
    Variant(Variant),
}

/// A master (multivariant) playlist: its lines in order, variants parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterPlaylist {
    /// Every line after `#EXTM3U`, in order.
    pub lines: Vec<MasterLine>,
    /// What followed `#EXTM3U` on its line, kept for losslessness.
    pub(super) extm3u_suffix: String,
}

impl MasterPlaylist {
    /// The variants, in order.
    pub fn variants(&self) -> impl Iterator<Item = &Variant> + '_ {
        self.lines.iter().filter_map(|line| match line {
            MasterLine::Variant(variant) => Some(variant),
            MasterLine::Line(_) => None,
        })
    }

    /// The variant to play: the one with the highest `BANDWIDTH` (the first of
    /// equals); when no variant states a bandwidth, the first variant. A variant
    /// without `BANDWIDTH` loses to any that has one. `None` without variants.
    pub fn pick_variant(&self) -> Option<&Variant> {
        let mut best: Option<&Variant> = None;
        for variant in self.variants() {
            match best {
                Some(current) if variant.bandwidth <= current.bandwidth => {}
                _ => best = Some(variant),
            }
        }
        best
    }

    /// Writes the playlist as text.
    pub fn render(&self) -> String {
        render::master(self)
    }

    /// Rewrites every URI; see [`Playlist::rewrite_uris`](super::Playlist::rewrite_uris).
    pub fn rewrite_uris(&mut self, mut f: impl FnMut(UriKind, &str) -> String) {
        rewrite::master(self, &mut f);
    }
}
