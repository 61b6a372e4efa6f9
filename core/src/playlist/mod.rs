//! Lossless, line-based reader and rewriter for HLS playlists (m3u8).
//!
//! [`Playlist::parse`] reads a playlist, [`Playlist::render`] writes it back, and in
//! between [`Playlist::rewrite_uris`] rewrites every URI the playlist holds without
//! touching any other byte. [`resolve`] turns a relative URI into an absolute one
//! (RFC 3986 reference resolution).
//!
//! # The model
//!
//! A playlist is a sequence of lines: `#EXTM3U`, then tags (`#EXT…`), comments (any
//! other line starting with `#`) and URI lines. The reader keeps all of them:
//!
//! - **Kept verbatim, in order:** every tag, known or not, and every comment, as a
//!   [`Line`]; the spelling of every value acemux reads (`#EXTINF:5.000000,` stays
//!   `5.000000`, `#EXT-X-MEDIA-SEQUENCE:01` stays `01`); attribute lists byte for byte,
//!   whitespace included ([`AttributeList`]); URI lines exactly as written.
//! - **Typed fields are authoritative:** a value acemux reads (a segment's duration,
//!   the media sequence, a variant's bandwidth, …) is also a public field. On render a
//!   line is written verbatim while it still agrees with its field, and rewritten from
//!   the field once the field has been changed. So editing a playlist means editing
//!   fields; the lines follow.
//! - **Normalised:** a byte-order mark and whitespace before `#EXTM3U`, blank lines,
//!   carriage returns at line ends (CRLF input is accepted) and a missing final line
//!   feed. Output lines always end in a single `\n`.
//!
//! Hence: for canonical input (no byte-order mark, LF line ends, no blank lines, a
//! final line feed) `render(parse(text))` is byte-identical to `text`, and for any
//! input `parse(render(parse(text))) == parse(text)`.
//!
//! # Media and master playlists
//!
//! A playlist with `#EXT-X-STREAM-INF`, `#EXT-X-I-FRAME-STREAM-INF` or `#EXT-X-MEDIA` is
//! a [`MasterPlaylist`]; one with `#EXTINF` or `#EXT-X-TARGETDURATION` (or with neither
//! kind of tag) is a [`MediaPlaylist`]; one with both kinds is an error. See the two
//! types for how their lines are grouped.
//!
//! # Errors and limits
//!
//! Parsing never panics, whatever the bytes: bad input is a [`PlaylistError`] naming
//! the (1-based) line. Input is bounded by [`Limits`]: total size, line length, and the
//! number of segments or variants.

mod attr;
mod model;
mod parse;
mod render;
mod rewrite;
mod tags;
mod uri;

use thiserror::Error;

pub use attr::{AttributeError, AttributeList};
pub use model::{
    Line, MasterLine, MasterPlaylist, MediaPlaylist, PlaylistType, Resolution, Segment, Variant,
};
pub use uri::{resolve, UriError};

/// Default for [`Limits::max_playlist_bytes`]: 1 MiB, a few thousand segments.
pub const DEFAULT_MAX_PLAYLIST_BYTES: usize = 1 << 20;
/// Default for [`Limits::max_line_bytes`]: 8 KiB, far above any real tag or URI.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 << 10;
/// Default for [`Limits::max_segments`].
pub const DEFAULT_MAX_SEGMENTS: usize = 10_000;
/// Default for [`Limits::max_variants`].
pub const DEFAULT_MAX_VARIANTS: usize = 1_000;

/// Bounds on what [`Playlist::parse_with_limits`] accepts; input beyond them is an error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted input, in bytes (byte-order mark and line ends included).
    pub max_playlist_bytes: usize,
    /// Longest accepted line, in bytes (its carriage returns included).
    pub max_line_bytes: usize,
    /// Most segments in a media playlist.
    pub max_segments: usize,
    /// Most variants (`#EXT-X-STREAM-INF`) in a master playlist.
    pub max_variants: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_playlist_bytes: DEFAULT_MAX_PLAYLIST_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_segments: DEFAULT_MAX_SEGMENTS,
            max_variants: DEFAULT_MAX_VARIANTS,
        }
    }
}

/// Why a playlist could not be read. Line numbers count from 1 and include blank lines.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlaylistError {
    /// The input is larger than [`Limits::max_playlist_bytes`].
    #[error("playlist is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not UTF-8.
    #[error("line {line}: invalid utf-8")]
    InvalidUtf8 {
        /// The line holding the first invalid byte.
        line: usize,
    },
    /// A line is longer than [`Limits::max_line_bytes`].
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A media playlist has more than [`Limits::max_segments`] segments.
    #[error("line {line}: more than {limit} segments")]
    TooManySegments {
        /// The URI line of the first segment over the limit.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A master playlist has more than [`Limits::max_variants`] variants.
    #[error("line {line}: more than {limit} variants")]
    TooManyVariants {
        /// The `#EXT-X-STREAM-INF` line of the first variant over the limit.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// The first non-blank line is not `#EXTM3U`.
    #[error("line {line}: playlist does not start with #EXTM3U")]
    MissingHeader {
        /// The first non-blank line (1 when there is none).
        line: usize,
    },
    /// An `#EXTINF` duration is not a usable number of seconds.
    #[error("line {line}: invalid #EXTINF duration: {reason}")]
    InvalidDuration {
        /// The `#EXTINF` line.
        line: usize,
        /// What is wrong with it.
        reason: DurationError,
    },
    /// A second `#EXTINF` before the URI of the segment the first one describes.
    #[error("line {line}: second #EXTINF for one segment")]
    DuplicateExtinf {
        /// The second `#EXTINF` line.
        line: usize,
    },
    /// A URI line in a media playlist with no `#EXTINF` before it.
    #[error("line {line}: segment uri without #EXTINF")]
    MissingExtinf {
        /// The URI line.
        line: usize,
    },
    /// A tag that must be followed by a URI line is not.
    #[error("line {line}: #{tag} is not followed by a uri")]
    MissingUri {
        /// The tag's line.
        line: usize,
        /// The tag's name, without `#`.
        tag: &'static str,
    },
    /// A playlist-level tag that may appear once appears again.
    #[error("line {line}: #{tag} appears more than once")]
    DuplicateTag {
        /// The repeated tag's line.
        line: usize,
        /// The tag's name, without `#`.
        tag: &'static str,
    },
    /// A playlist-level tag has a value acemux cannot read.
    #[error("line {line}: invalid value for #{tag}")]
    InvalidTagValue {
        /// The tag's line.
        line: usize,
        /// The tag's name, without `#`.
        tag: &'static str,
    },
    /// The attribute list of a tag acemux reads (or rewrites) is malformed.
    #[error("line {line}: invalid attribute list: {reason}")]
    InvalidAttributes {
        /// The tag's line.
        line: usize,
        /// What is wrong with it.
        reason: AttributeError,
    },
    /// An attribute acemux reads has a value it cannot read.
    #[error("line {line}: invalid value for attribute {attribute}")]
    InvalidAttributeValue {
        /// The tag's line.
        line: usize,
        /// The attribute's name.
        attribute: &'static str,
    },
    /// A URI line in a master playlist that does not follow `#EXT-X-STREAM-INF`.
    #[error("line {line}: uri line outside a variant")]
    UnexpectedUri {
        /// The URI line.
        line: usize,
    },
    /// The playlist has both master-playlist and media-playlist tags.
    #[error("line {line}: master and media playlist tags in one playlist")]
    MixedPlaylist {
        /// The first line of whichever kind appeared second.
        line: usize,
    },
}

/// Why an `#EXTINF` duration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DurationError {
    /// No duration at all.
    #[error("empty")]
    Empty,
    /// A minus sign.
    #[error("negative")]
    Negative,
    /// Not digits with an optional decimal point (this refuses NaN, infinities,
    /// exponents and signs).
    #[error("not a decimal number of seconds")]
    NotDecimal,
    /// Longer than [`MAX_SEGMENT_DURATION_US`].
    #[error("longer than 24 hours")]
    TooLong,
}

/// Longest accepted segment duration: 24 hours, in microseconds.
pub const MAX_SEGMENT_DURATION_US: u64 = 24 * 3600 * 1_000_000;

/// Which kind of reference a URI passed to [`Playlist::rewrite_uris`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UriKind {
    /// A media segment's URI line.
    Segment,
    /// A variant's URI line (after `#EXT-X-STREAM-INF`).
    Variant,
    /// `URI` of `#EXT-X-KEY`.
    Key,
    /// `URI` of `#EXT-X-SESSION-KEY`.
    SessionKey,
    /// `URI` of `#EXT-X-MAP`.
    Map,
    /// `URI` of `#EXT-X-MEDIA`.
    Media,
    /// `URI` of `#EXT-X-I-FRAME-STREAM-INF`.
    IFrameStream,
    /// `URI` of `#EXT-X-SESSION-DATA`.
    SessionData,
    /// `URI` of `#EXT-X-PART` (low-latency HLS).
    Part,
    /// `URI` of `#EXT-X-PRELOAD-HINT` (low-latency HLS).
    PreloadHint,
    /// `URI` of `#EXT-X-RENDITION-REPORT` (low-latency HLS).
    RenditionReport,
}

/// A parsed playlist: a media playlist (segments) or a master playlist (variants).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Playlist {
    /// A media playlist.
    Media(MediaPlaylist),
    /// A master (multivariant) playlist.
    Master(MasterPlaylist),
}

impl Playlist {
    /// Reads a playlist from bytes or text, within the default [`Limits`].
    pub fn parse(input: impl AsRef<[u8]>) -> Result<Self, PlaylistError> {
        Self::parse_with_limits(input, &Limits::default())
    }

    /// Reads a playlist from bytes or text, within `limits`.
    pub fn parse_with_limits(
        input: impl AsRef<[u8]>,
        limits: &Limits,
    ) -> Result<Self, PlaylistError> {
        parse::parse(input.as_ref(), limits)
    }

    /// Writes the playlist as text (see the [module docs](self) for what is kept).
    pub fn render(&self) -> String {
        match self {
            Playlist::Media(media) => media.render(),
            Playlist::Master(master) => master.render(),
        }
    }

    /// Replaces every URI in the playlist with `f(kind, uri)`, in document order.
    ///
    /// Rewritten are segment and variant URI lines and the `URI` attribute of the tags
    /// listed in [`UriKind`]; nothing else in any line changes. For a quoted attribute
    /// `f` sees the text between the quotes. A result equal to its input leaves the
    /// line byte-identical; any other result is written with line feeds and carriage
    /// returns (and a `"` inside quotes, a `,` in an unquoted value, a leading `#` on a
    /// URI line) percent-encoded, so that it cannot break the playlist's structure.
    /// `f` should return a non-empty URI: an empty URI line is read back as blank.
    pub fn rewrite_uris(&mut self, mut f: impl FnMut(UriKind, &str) -> String) {
        match self {
            Playlist::Media(media) => rewrite::media(media, &mut f),
            Playlist::Master(master) => rewrite::master(master, &mut f),
        }
    }

    /// Resolves every URI against `base`, the URL the playlist was fetched from
    /// (RFC 3986 section 5.2), leaving absolute URIs as they are.
    pub fn resolve_uris(&mut self, base: &str) -> Result<(), UriError> {
        let base = uri::Base::parse(base)?;
        self.rewrite_uris(|_, reference| base.resolve(reference));
        Ok(())
    }

    /// The media playlist, if this is one.
    pub fn as_media(&self) -> Option<&MediaPlaylist> {
        match self {
            Playlist::Media(media) => Some(media),
            Playlist::Master(_) => None,
        }
    }

    /// The master playlist, if this is one.
    pub fn as_master(&self) -> Option<&MasterPlaylist> {
        match self {
            Playlist::Master(master) => Some(master),
            Playlist::Media(_) => None,
        }
    }
}

impl std::str::FromStr for Playlist {
    type Err = PlaylistError;

    fn from_str(text: &str) -> Result<Self, PlaylistError> {
        Playlist::parse(text)
    }
}

impl std::fmt::Display for Playlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests;
