//! Writing: a playlist back to text, verbatim where the typed fields allow.

use std::borrow::Cow;

use super::attr::{self, AttributeList};
use super::model::{Line, MasterLine, MasterPlaylist, MediaPlaylist, Segment, Variant};
use super::tags::{self, Typed};

fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

fn push_header(out: &mut String, extm3u_suffix: &str) {
    out.push_str(tags::EXTM3U);
    push_line(out, extm3u_suffix);
}

/// Rough output size, to allocate once.
fn estimate(lines: usize) -> usize {
    lines.saturating_mul(48)
}

pub(super) fn media(playlist: &MediaPlaylist) -> String {
    let line_count = playlist.header.len()
        + playlist.trailer.len()
        + playlist
            .segments
            .iter()
            .map(|segment| segment.tags.len() + 2)
            .sum::<usize>();
    let mut writer = MediaWriter {
        playlist,
        out: String::with_capacity(estimate(line_count)),
        written: [false; Typed::COUNT],
    };
    let mut has_line = [false; Typed::COUNT];
    let all_lines = playlist
        .header
        .iter()
        .chain(playlist.segments.iter().flat_map(|segment| &segment.tags))
        .chain(&playlist.trailer);
    for line in all_lines {
        if let Some(typed) = line.tag_name().and_then(Typed::from_name) {
            if let Some(flag) = has_line.get_mut(typed.index()) {
                *flag = true;
            }
        }
    }
    let missing = |typed: Typed| !has_line.get(typed.index()).copied().unwrap_or(true);

    push_header(&mut writer.out, &playlist.extm3u_suffix);
    for line in &playlist.header {
        writer.line(line);
    }
    for typed in Typed::HEADER {
        if missing(typed) && !writer.is_default(typed) {
            writer.generated(typed);
        }
    }
    for segment in &playlist.segments {
        writer.segment(segment);
    }
    for line in &playlist.trailer {
        writer.line(line);
    }
    if missing(Typed::EndList) {
        writer.generated(Typed::EndList);
    }
    writer.out
}

struct MediaWriter<'a> {
    playlist: &'a MediaPlaylist,
    out: String,
    /// Typed tags already written: a later line for the same field is left out.
    written: [bool; Typed::COUNT],
}

impl MediaWriter<'_> {
    /// A tag or comment line; the line of a typed field follows the field.
    fn line(&mut self, line: &Line) {
        let Some(typed) = line.tag_name().and_then(Typed::from_name) else {
            push_line(&mut self.out, line.as_str());
            return;
        };
        if self.mark_written(typed) {
            return;
        }
        if self.agrees(typed, line.tag_value()) {
            push_line(&mut self.out, line.as_str());
        } else if let Some(text) = self.field_text(typed) {
            push_line(&mut self.out, &text);
        }
    }

    /// A typed tag with no line in the playlist, written from its field.
    fn generated(&mut self, typed: Typed) {
        if self.mark_written(typed) {
            return;
        }
        if let Some(text) = self.field_text(typed) {
            push_line(&mut self.out, &text);
        }
    }

    /// Records that `typed` is written now; says whether it already was.
    fn mark_written(&mut self, typed: Typed) -> bool {
        match self.written.get_mut(typed.index()) {
            Some(written) => std::mem::replace(written, true),
            None => false,
        }
    }

    /// Whether a field has the value its tag's absence means.
    fn is_default(&self, typed: Typed) -> bool {
        let playlist = self.playlist;
        match typed {
            Typed::Version => playlist.version.is_none(),
            Typed::TargetDuration => playlist.target_duration_s.is_none(),
            Typed::MediaSequence => playlist.media_sequence == 0,
            Typed::DiscontinuitySequence => playlist.discontinuity_sequence == 0,
            Typed::PlaylistType => playlist.playlist_type.is_none(),
            Typed::EndList => !playlist.ended,
        }
    }

    /// Whether a tag value read from the input still says what the field says.
    fn agrees(&self, typed: Typed, value: Option<&str>) -> bool {
        let playlist = self.playlist;
        let decimal = value.and_then(tags::parse_decimal);
        match typed {
            Typed::Version => playlist.version.is_some() && decimal == playlist.version,
            Typed::TargetDuration => {
                playlist.target_duration_s.is_some() && decimal == playlist.target_duration_s
            }
            Typed::MediaSequence => decimal == Some(playlist.media_sequence),
            Typed::DiscontinuitySequence => decimal == Some(playlist.discontinuity_sequence),
            Typed::PlaylistType => {
                playlist.playlist_type.is_some()
                    && value.and_then(tags::parse_playlist_type) == playlist.playlist_type
            }
            Typed::EndList => playlist.ended,
        }
    }

    /// The tag line for a field, or `None` when the field means "no tag".
    fn field_text(&self, typed: Typed) -> Option<String> {
        let playlist = self.playlist;
        let name = typed.name();
        match typed {
            Typed::Version => playlist.version.map(|v| format!("#{name}:{v}")),
            Typed::TargetDuration => playlist.target_duration_s.map(|v| format!("#{name}:{v}")),
            Typed::MediaSequence => Some(format!("#{name}:{}", playlist.media_sequence)),
            Typed::DiscontinuitySequence => {
                Some(format!("#{name}:{}", playlist.discontinuity_sequence))
            }
            Typed::PlaylistType => playlist
                .playlist_type
                .map(|kind| format!("#{name}:{}", kind.as_str())),
            Typed::EndList => playlist.ended.then(|| format!("#{name}")),
        }
    }

    fn segment(&mut self, segment: &Segment) {
        let is_discontinuity = |line: &Line| line.tag_name() == Some(tags::DISCONTINUITY);
        if segment.discontinuity && !segment.tags.iter().any(is_discontinuity) {
            push_line(&mut self.out, &format!("#{}", tags::DISCONTINUITY));
        }
        let extinf_index = segment
            .extinf_index
            .filter(|&index| index < segment.tags.len());
        for (index, line) in segment.tags.iter().enumerate() {
            if extinf_index == Some(index) {
                self.extinf(segment);
            }
            if !segment.discontinuity && is_discontinuity(line) {
                continue;
            }
            self.line(line);
        }
        if extinf_index.is_none() {
            self.extinf(segment);
        }
        push_line(&mut self.out, &segment.uri);
    }

    fn extinf(&mut self, segment: &Segment) {
        self.out.push('#');
        self.out.push_str(tags::EXTINF);
        self.out.push(':');
        let as_read = segment.extinf_text.as_deref().filter(|text| {
            tags::parse_extinf(text) == Ok((segment.duration_us, segment.title.as_str()))
        });
        match as_read {
            Some(text) => push_line(&mut self.out, text),
            None => {
                self.out
                    .push_str(&tags::format_duration(segment.duration_us));
                self.out.push(',');
                push_line(&mut self.out, &segment.title);
            }
        }
    }
}

pub(super) fn master(playlist: &MasterPlaylist) -> String {
    let mut out = String::with_capacity(estimate(playlist.lines.len() * 2));
    push_header(&mut out, &playlist.extm3u_suffix);
    for line in &playlist.lines {
        match line {
            MasterLine::Line(line) => push_line(&mut out, line.as_str()),
            MasterLine::Variant(variant) => {
                out.push('#');
                out.push_str(tags::STREAM_INF);
                out.push(':');
                push_line(&mut out, &variant_attributes(variant).to_string());
                push_line(&mut out, &variant.uri);
            }
        }
    }
    out
}

/// The variant's attributes with the typed fields applied.
fn variant_attributes(variant: &Variant) -> Cow<'_, AttributeList> {
    let mut attributes = Cow::Borrowed(&variant.attributes);
    let bandwidth = attributes
        .get_str(tags::BANDWIDTH)
        .and_then(tags::parse_decimal);
    if bandwidth != variant.bandwidth {
        let value = variant.bandwidth.map(|bandwidth| bandwidth.to_string());
        update(attributes.to_mut(), tags::BANDWIDTH, value);
    }
    let resolution = attributes
        .get_str(tags::RESOLUTION)
        .and_then(tags::parse_resolution);
    if resolution != variant.resolution {
        let value = variant.resolution.map(|resolution| resolution.to_string());
        update(attributes.to_mut(), tags::RESOLUTION, value);
    }
    if attributes.get_str(tags::CODECS) != variant.codecs.as_deref() {
        let value = variant.codecs.as_deref().map(attr::quote);
        update(attributes.to_mut(), tags::CODECS, value);
    }
    attributes
}

fn update(attributes: &mut AttributeList, name: &str, value: Option<String>) {
    match value {
        Some(value) => attributes.put(name, value),
        None => {
            attributes.remove(name);
        }
    }
}
