//! Tag names and the grammar of the values acemux reads from them.

use super::model::{PlaylistType, Resolution};
use super::{DurationError, UriKind, MAX_SEGMENT_DURATION_US};

pub(super) const EXTM3U: &str = "#EXTM3U";
pub(super) const EXTINF: &str = "EXTINF";
pub(super) const DISCONTINUITY: &str = "EXT-X-DISCONTINUITY";
pub(super) const STREAM_INF: &str = "EXT-X-STREAM-INF";

pub(super) const BANDWIDTH: &str = "BANDWIDTH";
pub(super) const RESOLUTION: &str = "RESOLUTION";
pub(super) const CODECS: &str = "CODECS";
pub(super) const URI: &str = "URI";

const MICROS_PER_SECOND: u64 = 1_000_000;

/// Tags that describe the next media segment (RFC 8216 section 4.3.2, low-latency
/// HLS, and the ad-marker tags packagers emit). The header of a media playlist ends
/// at the first of these.
const SEGMENT_TAGS: &[&str] = &[
    EXTINF,
    "EXT-X-BYTERANGE",
    DISCONTINUITY,
    "EXT-X-KEY",
    "EXT-X-MAP",
    "EXT-X-PROGRAM-DATE-TIME",
    "EXT-X-DATERANGE",
    "EXT-X-GAP",
    "EXT-X-BITRATE",
    "EXT-X-PART",
    "EXT-X-CUE",
    "EXT-X-CUE-OUT",
    "EXT-X-CUE-OUT-CONT",
    "EXT-X-CUE-IN",
    "EXT-X-SCTE35",
    "EXT-X-ASSET",
    "EXT-OATCLS-SCTE35",
];

/// The name of a tag line (`EXT-X-KEY` for `#EXT-X-KEY:…`), `None` for a comment or URI.
pub(super) fn tag_name(line: &str) -> Option<&str> {
    let body = line
        .strip_prefix('#')
        .filter(|body| body.starts_with("EXT"))?;
    Some(body.split_once(':').map_or(body, |(name, _)| name))
}

/// The value of a tag line (what follows the first `:`), `None` when it has none.
pub(super) fn tag_value(line: &str) -> Option<&str> {
    tag_name(line)?;
    line.split_once(':').map(|(_, value)| value)
}

pub(super) fn is_segment_tag(name: &str) -> bool {
    SEGMENT_TAGS.contains(&name)
}

/// Tags found only in master playlists.
pub(super) fn is_master_tag(name: &str) -> bool {
    matches!(
        name,
        STREAM_INF | "EXT-X-I-FRAME-STREAM-INF" | "EXT-X-MEDIA"
    )
}

/// Tags found only in media playlists.
pub(super) fn is_media_tag(name: &str) -> bool {
    matches!(name, EXTINF | "EXT-X-TARGETDURATION")
}

/// Which kind of URI the `URI` attribute of tag `name` holds, if the tag has one.
pub(super) fn uri_attribute_kind(name: &str) -> Option<UriKind> {
    Some(match name {
        "EXT-X-KEY" => UriKind::Key,
        "EXT-X-SESSION-KEY" => UriKind::SessionKey,
        "EXT-X-MAP" => UriKind::Map,
        "EXT-X-MEDIA" => UriKind::Media,
        "EXT-X-I-FRAME-STREAM-INF" => UriKind::IFrameStream,
        "EXT-X-SESSION-DATA" => UriKind::SessionData,
        "EXT-X-PART" => UriKind::Part,
        "EXT-X-PRELOAD-HINT" => UriKind::PreloadHint,
        "EXT-X-RENDITION-REPORT" => UriKind::RenditionReport,
        _ => return None,
    })
}

/// Media-playlist tags with a typed field on [`MediaPlaylist`](super::MediaPlaylist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Typed {
    Version,
    TargetDuration,
    MediaSequence,
    DiscontinuitySequence,
    PlaylistType,
    EndList,
}

impl Typed {
    pub(super) const COUNT: usize = 6;

    /// The order in which tags missing from the input are added to the header.
    pub(super) const HEADER: [Typed; 5] = [
        Typed::Version,
        Typed::TargetDuration,
        Typed::MediaSequence,
        Typed::DiscontinuitySequence,
        Typed::PlaylistType,
    ];

    pub(super) fn from_name(name: &str) -> Option<Typed> {
        Some(match name {
            "EXT-X-VERSION" => Typed::Version,
            "EXT-X-TARGETDURATION" => Typed::TargetDuration,
            "EXT-X-MEDIA-SEQUENCE" => Typed::MediaSequence,
            "EXT-X-DISCONTINUITY-SEQUENCE" => Typed::DiscontinuitySequence,
            "EXT-X-PLAYLIST-TYPE" => Typed::PlaylistType,
            "EXT-X-ENDLIST" => Typed::EndList,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Typed::Version => "EXT-X-VERSION",
            Typed::TargetDuration => "EXT-X-TARGETDURATION",
            Typed::MediaSequence => "EXT-X-MEDIA-SEQUENCE",
            Typed::DiscontinuitySequence => "EXT-X-DISCONTINUITY-SEQUENCE",
            Typed::PlaylistType => "EXT-X-PLAYLIST-TYPE",
            Typed::EndList => "EXT-X-ENDLIST",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// A decimal-integer (RFC 8216 section 4.2), surrounding ASCII whitespace allowed.
pub(super) fn parse_decimal(text: &str) -> Option<u64> {
    let digits = text.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |value, byte| {
        let digit = byte.is_ascii_digit().then(|| u64::from(byte - b'0'))?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// The value of `#EXTINF`: `<duration>,[<title>]`, the comma optional.
pub(super) fn parse_extinf(value: &str) -> Result<(u64, &str), DurationError> {
    let (duration, title) = value.split_once(',').unwrap_or((value, ""));
    Ok((parse_duration_us(duration)?, title))
}

/// A decimal number of seconds as integer microseconds, exactly: `6.006` is
/// 6 006 000 µs. Digits past the sixth decimal round to the nearest microsecond
/// (halves up). Surrounding ASCII whitespace is allowed; signs, exponents, NaN and
/// infinities are not.
pub(super) fn parse_duration_us(text: &str) -> Result<u64, DurationError> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(DurationError::NotDecimal);
    }
    let max_seconds = MAX_SEGMENT_DURATION_US / MICROS_PER_SECOND;
    let mut seconds = 0u64;
    for byte in whole.bytes() {
        // Stays below 10 * max_seconds + 9, far from overflow, because of the check.
        seconds = seconds * 10 + u64::from(byte - b'0');
        if seconds > max_seconds {
            return Err(DurationError::TooLong);
        }
    }
    let mut micros = 0u64;
    let mut scale = MICROS_PER_SECOND;
    for byte in fraction.bytes() {
        let digit = u64::from(byte - b'0');
        if scale == 1 {
            // The seventh decimal decides the rounding; later ones cannot change it.
            micros += u64::from(digit >= 5);
            break;
        }
        scale /= 10;
        micros += digit * scale;
    }
    let total = seconds * MICROS_PER_SECOND + micros;
    if total > MAX_SEGMENT_DURATION_US {
        return Err(DurationError::TooLong);
    }
    Ok(total)
}

/// Microseconds as decimal seconds, shortest exact form: `6.006`, `5`, `0.000001`.
pub(super) fn format_duration(micros: u64) -> String {
    let seconds = micros / MICROS_PER_SECOND;
    let fraction = micros % MICROS_PER_SECOND;
    if fraction == 0 {
        return seconds.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{seconds}.{}", digits.trim_end_matches('0'))
}

/// `<width>x<height>` (RFC 8216 decimal-resolution).
pub(super) fn parse_resolution(text: &str) -> Option<Resolution> {
    let (width, height) = text.trim_ascii().split_once('x')?;
    Some(Resolution {
        width: parse_decimal(width)?,
        height: parse_decimal(height)?,
    })
}

pub(super) fn parse_playlist_type(text: &str) -> Option<PlaylistType> {
    match text.trim_ascii() {
        "EVENT" => Some(PlaylistType::Event),
        "VOD" => Some(PlaylistType::Vod),
        _ => None,
    }
}
