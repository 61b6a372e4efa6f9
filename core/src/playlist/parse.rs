//! Reading: bytes, then lines, then a media or a master playlist.

use super::model::{Line, MasterLine, MasterPlaylist, MediaPlaylist, Segment, Variant};
use super::tags::{self, Typed};
use super::{Limits, Playlist, PlaylistError};

/// One non-blank line after `#EXTM3U`.
struct Item<'a> {
    /// 1-based line number in the input.
    line: usize,
    /// The text without trailing carriage returns.
    text: &'a str,
}

impl Item<'_> {
    fn is_uri(&self) -> bool {
        !self.text.starts_with('#')
    }
}

/// The lines of a playlist after `#EXTM3U`.
struct Lines<'a> {
    /// What followed `#EXTM3U` on its line.
    extm3u_suffix: &'a str,
    items: Vec<Item<'a>>,
}

pub(super) fn parse(input: &[u8], limits: &Limits) -> Result<Playlist, PlaylistError> {
    if input.len() > limits.max_playlist_bytes {
        return Err(PlaylistError::TooLarge {
            len: input.len(),
            limit: limits.max_playlist_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|error| {
        let valid = input.get(..error.valid_up_to()).unwrap_or_default();
        PlaylistError::InvalidUtf8 {
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
        }
    })?;
    let lines = split_lines(text, limits)?;
    if is_master(&lines.items)? {
        parse_master(lines, limits).map(Playlist::Master)
    } else {
        parse_media(lines, limits).map(Playlist::Media)
    }
}

fn split_lines<'a>(text: &'a str, limits: &Limits) -> Result<Lines<'a>, PlaylistError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut extm3u_suffix = None;
    let mut items = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        if raw.len() > limits.max_line_bytes {
            return Err(PlaylistError::LineTooLong {
                line,
                limit: limits.max_line_bytes,
            });
        }
        let text = raw.trim_end_matches('\r');
        if text.trim_ascii().is_empty() {
            continue;
        }
        if extm3u_suffix.is_none() {
            let suffix = text
                .trim_ascii_start()
                .strip_prefix(tags::EXTM3U)
                .filter(|rest| {
                    rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_whitespace())
                })
                .ok_or(PlaylistError::MissingHeader { line })?;
            extm3u_suffix = Some(suffix);
            continue;
        }
        items.push(Item { line, text });
    }
    Ok(Lines {
        extm3u_suffix: extm3u_suffix.ok_or(PlaylistError::MissingHeader { line: 1 })?,
        items,
    })
}

/// Whether the playlist is a master playlist; an error when it has both kinds of tag.
fn is_master(items: &[Item<'_>]) -> Result<bool, PlaylistError> {
    let mut first_master = None;
    let mut first_media = None;
    for item in items {
        let Some(name) = tags::tag_name(item.text) else {
            continue;
        };
        if tags::is_master_tag(name) {
            first_master.get_or_insert(item.line);
        } else if tags::is_media_tag(name) {
            first_media.get_or_insert(item.line);
        }
    }
    match (first_master, first_media) {
        (Some(master), Some(media)) => Err(PlaylistError::MixedPlaylist {
            line: master.max(media),
        }),
        (master, _) => Ok(master.is_some()),
    }
}

/// An `#EXTINF` read, waiting for its URI.
struct PendingExtinf {
    line: usize,
    text: String,
    duration_us: u64,
    title: String,
    /// How many of the segment's other lines came before it.
    index: usize,
}

fn parse_media(lines: Lines<'_>, limits: &Limits) -> Result<MediaPlaylist, PlaylistError> {
    let mut playlist = MediaPlaylist {
        extm3u_suffix: lines.extm3u_suffix.to_owned(),
        ..MediaPlaylist::default()
    };
    let mut seen = [false; Typed::COUNT];
    let mut in_header = true;
    let mut pending: Vec<Line> = Vec::new();
    let mut extinf: Option<PendingExtinf> = None;
    for item in lines.items {
        if item.is_uri() {
            let Some(info) = extinf.take() else {
                return Err(PlaylistError::MissingExtinf { line: item.line });
            };
            if playlist.segments.len() >= limits.max_segments {
                return Err(PlaylistError::TooManySegments {
                    line: item.line,
                    limit: limits.max_segments,
                });
            }
            let tags = std::mem::take(&mut pending);
            let discontinuity = tags
                .iter()
                .any(|line| line.tag_name() == Some(tags::DISCONTINUITY));
            playlist.segments.push(Segment {
                duration_us: info.duration_us,
                title: info.title,
                uri: item.text.to_owned(),
                extinf_index: (info.index < tags.len()).then_some(info.index),
                tags,
                discontinuity,
                extinf_text: Some(info.text),
            });
            in_header = false;
            continue;
        }
        let line = Line::from_parsed(item.text);
        if let Some(name) = line.tag_name() {
            if name == tags::EXTINF {
                if extinf.is_some() {
                    return Err(PlaylistError::DuplicateExtinf { line: item.line });
                }
                let text = line.tag_value().unwrap_or("");
                let (duration_us, title) =
                    tags::parse_extinf(text).map_err(|reason| PlaylistError::InvalidDuration {
                        line: item.line,
                        reason,
                    })?;
                extinf = Some(PendingExtinf {
                    line: item.line,
                    text: text.to_owned(),
                    duration_us,
                    title: title.to_owned(),
                    index: pending.len(),
                });
                in_header = false;
                continue;
            }
            if let Some(typed) = Typed::from_name(name) {
                apply_typed(&mut playlist, &mut seen, typed, line.tag_value(), item.line)?;
            } else if tags::uri_attribute_kind(name).is_some() {
                check_attributes(&line, item.line)?;
            }
            if tags::is_segment_tag(name) {
                in_header = false;
            }
        }
        if in_header {
            playlist.header.push(line);
        } else {
            pending.push(line);
        }
    }
    if let Some(info) = extinf {
        return Err(PlaylistError::MissingUri {
            line: info.line,
            tag: tags::EXTINF,
        });
    }
    playlist.trailer = pending;
    Ok(playlist)
}

/// Sets the field of a typed playlist tag from its value.
fn apply_typed(
    playlist: &mut MediaPlaylist,
    seen: &mut [bool; Typed::COUNT],
    typed: Typed,
    value: Option<&str>,
    line: usize,
) -> Result<(), PlaylistError> {
    let tag = typed.name();
    match seen.get_mut(typed.index()) {
        Some(seen) if *seen => return Err(PlaylistError::DuplicateTag { line, tag }),
        Some(seen) => *seen = true,
        None => {}
    }
    let invalid = || PlaylistError::InvalidTagValue { line, tag };
    let decimal = || value.and_then(tags::parse_decimal).ok_or_else(invalid);
    match typed {
        Typed::Version => playlist.version = Some(decimal()?),
        Typed::TargetDuration => playlist.target_duration_s = Some(decimal()?),
        Typed::MediaSequence => playlist.media_sequence = decimal()?,
        Typed::DiscontinuitySequence => playlist.discontinuity_sequence = decimal()?,
        Typed::PlaylistType => {
            let kind = value.and_then(tags::parse_playlist_type);
            playlist.playlist_type = Some(kind.ok_or_else(invalid)?);
        }
        Typed::EndList => playlist.ended = true,
    }
    Ok(())
}

/// Refuses a tag whose `URI` attribute [`Playlist::rewrite_uris`] could not find.
fn check_attributes(line: &Line, number: usize) -> Result<(), PlaylistError> {
    line.attributes()
        .map(drop)
        .map_err(|reason| PlaylistError::InvalidAttributes {
            line: number,
            reason,
        })
}

fn parse_master(lines: Lines<'_>, limits: &Limits) -> Result<MasterPlaylist, PlaylistError> {
    let mut playlist = MasterPlaylist {
        extm3u_suffix: lines.extm3u_suffix.to_owned(),
        lines: Vec::new(),
    };
    let mut variants = 0usize;
    let mut items = lines.items.into_iter();
    while let Some(item) = items.next() {
        if item.is_uri() {
            return Err(PlaylistError::UnexpectedUri { line: item.line });
        }
        let line = Line::from_parsed(item.text);
        match line.tag_name() {
            Some(tags::STREAM_INF) => {
                if variants >= limits.max_variants {
                    return Err(PlaylistError::TooManyVariants {
                        line: item.line,
                        limit: limits.max_variants,
                    });
                }
                let uri = match items.next() {
                    Some(next) if next.is_uri() => next.text,
                    _ => {
                        return Err(PlaylistError::MissingUri {
                            line: item.line,
                            tag: tags::STREAM_INF,
                        })
                    }
                };
                let variant = read_variant(&line, uri, item.line)?;
                playlist.lines.push(MasterLine::Variant(variant));
                variants += 1;
            }
            Some(name) => {
                if tags::uri_attribute_kind(name).is_some() {
                    check_attributes(&line, item.line)?;
                }
                playlist.lines.push(MasterLine::Line(line));
            }
            None => playlist.lines.push(MasterLine::Line(line)),
        }
    }
    Ok(playlist)
}

fn read_variant(stream_inf: &Line, uri: &str, line: usize) -> Result<Variant, PlaylistError> {
    let attributes = stream_inf
        .attributes()
        .map_err(|reason| PlaylistError::InvalidAttributes { line, reason })?;
    let invalid = |attribute| PlaylistError::InvalidAttributeValue { line, attribute };
    let bandwidth = attributes
        .get_str(tags::BANDWIDTH)
        .map(|value| tags::parse_decimal(value).ok_or_else(|| invalid(tags::BANDWIDTH)))
        .transpose()?;
    let resolution = attributes
        .get_str(tags::RESOLUTION)
        .map(|value| tags::parse_resolution(value).ok_or_else(|| invalid(tags::RESOLUTION)))
        .transpose()?;
    let codecs = attributes.get_str(tags::CODECS).map(str::to_owned);
    Ok(Variant {
        bandwidth,
        resolution,
        codecs,
        attributes,
        uri: uri.to_owned(),
    })
}
