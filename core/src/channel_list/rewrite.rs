//! Rewriting the source lines of any M3U, byte for byte around them.

use super::source::recognise;
use super::{BaseUrl, Format};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`rewrite`] made of a playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The playlist, its source lines pointing at acemux.
    pub bytes: Vec<u8>,
    /// Lines in the input (a last line without a line feed counts).
    pub lines: usize,
    /// Lines rewritten.
    pub rewritten: usize,
}

/// One line of the input: its bytes before the line end, and its line end (`\n`,
/// `\r\n`, or nothing for a last line without one).
pub(crate) fn split_lines(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split_inclusive(|&byte| byte == b'\n')
        .map(|line| match line {
            [body @ .., b'\r', b'\n'] => (body, &line[body.len()..]),
            [body @ .., b'\n'] => (body, &line[body.len()..]),
            body => (body, &[][..]),
        })
}

/// The source URL a line holds, if it is one: where it starts and ends in the line
/// (after a leading byte-order mark on the first line and whitespace, before trailing
/// whitespace), and the URL acemux serves it at under `base`. A line starting with `#`
/// (a tag or comment) never is.
pub(crate) fn source_line(
    line: &[u8],
    first: bool,
    base: &BaseUrl,
    format: Option<Format>,
) -> Option<(usize, usize, String)> {
    let mut start = 0;
    if first && line.starts_with(BOM) {
        start = BOM.len();
    }
    while line.get(start).is_some_and(|b| matches!(b, b' ' | b'\t')) {
        start += 1;
    }
    let mut end = line.len();
    while end > start && matches!(line[end - 1], b' ' | b'\t' | b'\r') {
        end -= 1;
    }
    let text = std::str::from_utf8(&line[start..end]).ok()?;
    if text.starts_with('#') {
        return None;
    }
    let recognised = recognise(text)?;
    let format = format.or(recognised.route).unwrap_or(Format::Ts);
    Some((start, end, base.player_url(format, &recognised.source)))
}

/// Rewrites every source line of `input` (an M3U playlist, as bytes) to acemux's player
/// URL of the same source under `base`: `acestream://<id>` and `ace://<id>`, and engine
/// (or acemux) `…/ace/getstream?…` and `…/ace/manifest.m3u8?…` URLs (see
/// [`recognise`](super::recognise); only the player parameters acemux takes are kept).
/// `format` picks the route for every rewritten line; `None` keeps each URL's own route
/// (`/ace/getstream` for `acestream://` links).
///
/// Every other byte is kept as it is: other lines (tags, comments, attributes, blank
/// lines, other URLs, bytes that are not UTF-8), line ends (`\n`, `\r\n`, none at the
/// end), a byte-order mark, and the whitespace around a rewritten URL.
pub fn rewrite(input: &[u8], base: &BaseUrl, format: Option<Format>) -> Rewritten {
    let mut bytes = Vec::with_capacity(input.len() + input.len() / 4);
    let (mut lines, mut rewritten) = (0, 0);
    for (line, end) in split_lines(input) {
        match source_line(line, lines == 0, base, format) {
            Some((start, stop, url)) => {
                bytes.extend_from_slice(&line[..start]);
                bytes.extend_from_slice(url.as_bytes());
                bytes.extend_from_slice(&line[stop..]);
                rewritten += 1;
            }
            None => bytes.extend_from_slice(line),
        }
        bytes.extend_from_slice(end);
        lines += 1;
    }
    Rewritten {
        bytes,
        lines,
        rewritten,
    }
}
