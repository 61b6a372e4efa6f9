//! The channel-list reader and writer, and the M3U rewriter, under arbitrary bytes.

use crate::channel_list::rewrite::{source_line, split_lines};
use crate::channel_list::{parse_m3u, recognise, render_m3u, rewrite, BaseUrl, Format, Limits};

/// Bases the URLs are rewritten to.
const BASES: [&str; 3] = [
    "http://acemux:6880",
    "https://tv.example/acemux/",
    "http://[::1]:6880",
];

/// Rewrites `data` as an M3U (under a base and format the bytes pick): the same lines
/// with the same line ends come out, every line that is not a source byte for byte,
/// every source line as acemux's URL of the same source, and a second rewrite changes
/// nothing. Reads `data` as a channel list (also under tiny limits): whatever reads
/// holds valid channels within the limits, and writes out (in either format) to a
/// playlist that reads back to the same channels.
pub fn channel_list(data: &[u8]) {
    // The choices come from the bytes themselves, so the corpus holds plain playlists.
    let sum = data
        .iter()
        .fold(0usize, |sum, &byte| sum + usize::from(byte));
    let base = BaseUrl::parse(BASES[sum % BASES.len()]).expect("a valid base");
    let format = [None, Some(Format::Ts), Some(Format::Hls)][sum % 3];

    let out = rewrite(data, &base, format);
    let lines: Vec<_> = split_lines(data).collect();
    let out_lines: Vec<_> = split_lines(&out.bytes).collect();
    assert_eq!(lines.len(), out_lines.len(), "a rewrite keeps every line");
    assert_eq!(out.lines, lines.len());
    let mut rewritten = 0;
    for (index, ((line, end), (out_line, out_end))) in lines.iter().zip(&out_lines).enumerate() {
        assert_eq!(end, out_end, "a rewrite keeps every line end");
        match source_line(line, index == 0, &base, format) {
            None => assert_eq!(line, out_line, "a line that is no source is kept"),
            Some((start, stop, url)) => {
                rewritten += 1;
                let text = std::str::from_utf8(&line[start..stop]).expect("a source is text");
                let source = recognise(text).expect("a source line is recognised").source;
                assert_eq!(
                    recognise(&url).map(|back| back.source),
                    Some(source),
                    "acemux's URL names the same source"
                );
                assert_eq!(&out_line[..start], &line[..start], "leading bytes kept");
                assert_eq!(
                    &out_line[out_line.len() - (line.len() - stop)..],
                    &line[stop..],
                    "trailing bytes kept"
                );
            }
        }
    }
    assert_eq!(out.rewritten, rewritten);
    assert_eq!(
        rewrite(&out.bytes, &base, format).bytes,
        out.bytes,
        "a second rewrite changes nothing"
    );

    let tiny = Limits {
        max_bytes: sum % 4096,
        max_channels: sum % 5,
        max_line_bytes: sum % 97,
    };
    for limits in [tiny, Limits::default()] {
        let Ok(channels) = parse_m3u(data, &limits) else {
            continue;
        };
        assert!(channels.len() <= limits.max_channels);
        for channel in &channels {
            assert_eq!(channel.check(), Ok(()), "a channel read is valid");
        }
        for format in [Format::Ts, Format::Hls] {
            let text = render_m3u(&channels, &base, format);
            assert_eq!(
                parse_m3u(text.as_bytes(), &Limits::default()).as_ref(),
                Ok(&channels),
                "a written list reads back the same"
            );
        }
    }
}
