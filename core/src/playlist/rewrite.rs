//! Rewriting every URI of a playlist, and nothing else.

use super::model::{Line, MasterLine, MasterPlaylist, MediaPlaylist};
use super::{tags, UriKind};

/// The callback of [`Playlist::rewrite_uris`](super::Playlist::rewrite_uris).
type Rewrite<'a> = dyn FnMut(UriKind, &str) -> String + 'a;

pub(super) fn media(playlist: &mut MediaPlaylist, f: &mut Rewrite<'_>) {
    for line in &mut playlist.header {
        attribute(line, f);
    }
    for segment in &mut playlist.segments {
        for line in &mut segment.tags {
            attribute(line, f);
        }
        uri_line(&mut segment.uri, UriKind::Segment, f);
    }
    for line in &mut playlist.trailer {
        attribute(line, f);
    }
}

pub(super) fn master(playlist: &mut MasterPlaylist, f: &mut Rewrite<'_>) {
    for line in &mut playlist.lines {
        match line {
            MasterLine::Line(line) => attribute(line, f),
            MasterLine::Variant(variant) => uri_line(&mut variant.uri, UriKind::Variant, f),
        }
    }
}

/// Rewrites the `URI` attribute of a tag that has one; other lines are untouched.
fn attribute(line: &mut Line, f: &mut Rewrite<'_>) {
    let Some(name) = line.tag_name() else {
        return;
    };
    let Some(kind) = tags::uri_attribute_kind(name) else {
        return;
    };
    // The reader refuses these tags when their attributes are malformed; a line built
    // by hand with malformed attributes is left as it is.
    let Ok(mut attributes) = line.attributes() else {
        return;
    };
    if attributes.rewrite(tags::URI, |uri| f(kind, uri)) {
        let name = name.to_owned();
        line.set_attributes(&name, &attributes);
    }
}

fn uri_line(uri: &mut String, kind: UriKind, f: &mut Rewrite<'_>) {
    let new_uri = f(kind, uri);
    if new_uri != *uri {
        *uri = sanitize_uri_line(&new_uri);
    }
}

/// Percent-encodes what would split a URI line or make it a tag or comment.
fn sanitize_uri_line(uri: &str) -> String {
    let encoded = uri.replace('\n', "%0A").replace('\r', "%0D");
    match encoded.strip_prefix('#') {
        Some(rest) => format!("%23{rest}"),
        None => encoded,
    }
}
