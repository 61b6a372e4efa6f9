//! Channel lists for media servers: M3U playlists of AceStream channels, read, written
//! and rewritten to point at acemux.
//!
//! Media servers and IPTV players (Jellyfin, Plex through Threadfin, Kodi, TiviMate)
//! take a channel list as an M3U playlist: `#EXTM3U`, then for each channel an
//! `#EXTINF` line (name, `tvg-id`, `tvg-logo`, `group-title`) and a URL line. AceStream
//! lists write the URL as `acestream://<content id>` or as an engine's own
//! `http://engine:6878/ace/getstream?id=<content id>`; neither goes through acemux.
//!
//! - [`parse_m3u`] reads a channel list from such a file (acemux's `--channels`),
//!   strictly: a line it cannot read is an error naming it.
//! - [`render_m3u`] writes a channel list with acemux's player URLs
//!   (`GET /playlist.m3u`).
//! - [`rewrite`] rewrites the source lines of any M3U to acemux's player URLs and keeps
//!   every other byte (`acemux m3u rewrite`, `POST /playlist/rewrite`).
//!
//! Nothing here fetches anything: a source URL is only recognised and written anew.

mod base;
mod m3u;
pub(crate) mod rewrite;
mod source;

use thiserror::Error;

pub use base::{BaseUrl, MAX_BASE_URL_BYTES};
pub use rewrite::{rewrite, Rewritten};
pub use source::{recognise, Recognised, Source, SourceKind, HASH_LEN, KEPT_PARAMS};

/// Default for [`Limits::max_channels`].
pub const DEFAULT_MAX_CHANNELS: usize = 10_000;
/// Default for [`Limits::max_bytes`]: 4 MiB (acemux's `--max-playlist-bytes`).
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
/// Default for [`Limits::max_line_bytes`]: 8 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 << 10;
/// Longest channel name or group, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `tvg-id` or logo URL, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 2048;

/// Which player route a playlist's URLs name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// `/ace/getstream`: the channel's MPEG-TS.
    #[default]
    Ts,
    /// `/ace/manifest.m3u8`: the channel's HLS playlist.
    Hls,
}

impl Format {
    /// The route's path.
    pub fn path(self) -> &'static str {
        match self {
            Format::Ts => "/ace/getstream",
            Format::Hls => "/ace/manifest.m3u8",
        }
    }

    /// `ts` or `hls`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "ts" => Some(Format::Ts),
            "hls" => Some(Format::Hls),
            _ => None,
        }
    }
}

/// One channel of a list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Channel {
    /// Display name.
    pub name: String,
    /// What it plays.
    pub source: Source,
    /// Group (`group-title`), if any.
    pub group: Option<String>,
    /// Logo URL (`tvg-logo`), if any.
    pub logo: Option<String>,
    /// Programme guide id (`tvg-id`), if any.
    pub tvg_id: Option<String>,
}

impl Channel {
    /// Checks the fields a playlist writes: a name of 1 to [`MAX_NAME_BYTES`] without
    /// control characters, a group likewise, a logo and `tvg-id` of at most
    /// [`MAX_ATTRIBUTE_BYTES`] without control characters or `"`. On error, the field
    /// and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let text = |field: &'static str, value: &str, max: usize, quoted: bool| {
            if value.len() > max {
                Err((field, format!("longer than {max} bytes")))
            } else if value.chars().any(char::is_control) {
                Err((field, "holds a control character".to_owned()))
            } else if quoted && value.contains('"') {
                Err((field, "holds a double quote".to_owned()))
            } else {
                Ok(())
            }
        };
        if self.name.trim().is_empty() {
            return Err(("name", "is empty".to_owned()));
        }
        text("name", &self.name, MAX_NAME_BYTES, false)?;
        if let Some(group) = &self.group {
            text("group", group, MAX_NAME_BYTES, true)?;
        }
        if let Some(logo) = &self.logo {
            text("logo", logo, MAX_ATTRIBUTE_BYTES, true)?;
        }
        if let Some(tvg_id) = &self.tvg_id {
            text("tvg-id", tvg_id, MAX_ATTRIBUTE_BYTES, true)?;
        }
        Ok(())
    }
}

/// Bounds on a channel list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, in bytes.
    pub max_bytes: usize,
    /// Most channels.
    pub max_channels: usize,
    /// Longest line, in bytes (its line end excluded).
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Why a channel list could not be read. Lines count from 1, blank ones included.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelListError {
    /// The file is larger than [`Limits::max_bytes`].
    #[error("the channel list is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("line {line}: invalid UTF-8")]
    InvalidUtf8 {
        /// The line.
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
    /// The first non-blank line is not `#EXTM3U`.
    #[error("line {line}: an M3U channel list starts with #EXTM3U")]
    MissingHeader {
        /// The first non-blank line (1 when there is none).
        line: usize,
    },
    /// More channels than [`Limits::max_channels`].
    #[error("line {line}: more than {limit} channels")]
    TooManyChannels {
        /// The URL line of the first channel over the limit.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// An `#EXTINF` line acemux cannot read.
    #[error("line {line}: invalid #EXTINF: {reason}")]
    InvalidExtinf {
        /// The line.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A second `#EXTINF` before the URL of the channel the first one describes.
    #[error("line {line}: a second #EXTINF before the URL of the channel")]
    DuplicateExtinf {
        /// The second `#EXTINF` line.
        line: usize,
    },
    /// An `#EXTINF` with no URL line after it.
    #[error("line {line}: #EXTINF without a URL line after it")]
    MissingUrl {
        /// The `#EXTINF` line.
        line: usize,
    },
    /// A URL line that names no AceStream source.
    #[error(
        "line {line}: not an AceStream source (acestream://<id>, ace://<id>, or an engine's \
         or acemux's …/ace/getstream?id=… or …/ace/manifest.m3u8?id=… URL)"
    )]
    UnknownSource {
        /// The line.
        line: usize,
    },
    /// A channel's field fails [`Channel::check`].
    #[error("line {line}: the channel's {field} {reason}")]
    InvalidField {
        /// The channel's `#EXTINF` line (its URL line when it has none).
        line: usize,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads a channel list from an M3U file: `#EXTM3U` first (after an optional
/// byte-order mark and blank lines), then channels, each an optional `#EXTINF:<duration>
/// [attributes],<name>` line and a URL line naming an AceStream source (see
/// [`recognise`]). The name falls back to `tvg-name`, then the content id; the group to
/// a preceding `#EXTGRP:`. Other `#` lines and blank lines are skipped; anything else
/// is an error naming its line. Never panics.
pub fn parse_m3u(input: &[u8], limits: &Limits) -> Result<Vec<Channel>, ChannelListError> {
    m3u::parse(input, limits)
}

/// Writes `channels` as an M3U playlist: `#EXTM3U`, then per channel
/// `#EXTINF:-1 [tvg-id="…"] [tvg-logo="…"] [group-title="…"],<name>` and acemux's player
/// URL in `format` under `base`. Lines end in `\n`. [`parse_m3u`] reads the result back
/// to the same channels.
pub fn render_m3u(channels: &[Channel], base: &BaseUrl, format: Format) -> String {
    m3u::render(channels, base, format)
}

#[cfg(test)]
mod tests;
