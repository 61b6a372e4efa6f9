//! Channel lists read, written and rewritten; the rewriter keeps every other byte.

use proptest::prelude::*;

use super::*;

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const HASH2: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn base() -> BaseUrl {
    BaseUrl::parse("http://acemux.lan:6880").expect("valid base")
}

fn content(key: &str) -> Source {
    Source {
        kind: SourceKind::ContentId,
        key: key.to_owned(),
        params: Vec::new(),
    }
}

const LIST: &str = "\u{feff}#EXTM3U url-tvg=\"http://epg.example/guide.xml\"\r\n\
\r\n\
#EXTINF:-1 tvg-id=\"sport.1\" tvg-logo=\"http://logo.example/s1.png\" group-title=\"Sport\",Sport 1\r\n\
acestream://0123456789abcdef0123456789abcdef01234567\r\n\
# a comment\r\n\
#EXTGRP:News\r\n\
#EXTINF:-1 tvg-name=\"News 24\",\r\n\
#EXTVLCOPT:network-caching=1000\r\n\
http://127.0.0.1:6878/ace/getstream?infohash=89abcdef0123456789abcdef0123456789abcdef&pid=4&file_indexes=0\r\n\
ace://89abcdef0123456789abcdef0123456789abcdef";

#[test]
fn an_m3u_list_gives_names_groups_logos_and_sources() {
    let channels = parse_m3u(LIST.as_bytes(), &Limits::default()).expect("valid list");
    assert_eq!(
        channels,
        vec![
            Channel {
                name: "Sport 1".into(),
                source: content(HASH),
                group: Some("Sport".into()),
                logo: Some("http://logo.example/s1.png".into()),
                tvg_id: Some("sport.1".into()),
            },
            Channel {
                name: "News 24".into(),
                source: Source {
                    kind: SourceKind::Infohash,
                    key: HASH2.into(),
                    params: vec![("file_indexes".into(), "0".into())],
                },
                group: Some("News".into()),
                logo: None,
                tvg_id: None,
            },
            Channel {
                name: HASH2.into(),
                source: content(HASH2),
                group: None,
                logo: None,
                tvg_id: None,
            },
        ]
    );
}

#[test]
fn a_rendered_list_names_acemux_urls_and_reads_back_the_same() {
    let channels = parse_m3u(LIST.as_bytes(), &Limits::default()).expect("valid list");
    let ts = render_m3u(&channels, &base(), Format::Ts);
    assert_eq!(
        ts,
        format!(
            "#EXTM3U\n\
#EXTINF:-1 tvg-id=\"sport.1\" tvg-logo=\"http://logo.example/s1.png\" group-title=\"Sport\",Sport 1\n\
http://acemux.lan:6880/ace/getstream?id={HASH}\n\
#EXTINF:-1 group-title=\"News\",News 24\n\
http://acemux.lan:6880/ace/getstream?infohash={HASH2}&file_indexes=0\n\
#EXTINF:-1,{HASH2}\n\
http://acemux.lan:6880/ace/getstream?id={HASH2}\n"
        )
    );
    let hls = render_m3u(&channels, &base(), Format::Hls);
    assert!(hls.contains(&format!(
        "\nhttp://acemux.lan:6880/ace/manifest.m3u8?id={HASH}\n"
    )));
    for text in [ts, hls] {
        assert_eq!(
            parse_m3u(text.as_bytes(), &Limits::default()).as_ref(),
            Ok(&channels)
        );
    }
}

#[test]
fn rendering_keeps_attributes_inside_their_quotes() {
    let channel = Channel {
        name: "A\nB".into(),
        source: content(HASH),
        group: Some("x\" y=\"z".into()),
        logo: None,
        tvg_id: None,
    };
    let text = render_m3u(&[channel], &base(), Format::Ts);
    assert_eq!(
        text,
        format!(
            "#EXTM3U\n#EXTINF:-1 group-title=\"x' y='z\",A B\nhttp://acemux.lan:6880/ace/getstream?id={HASH}\n"
        )
    );
}

#[test]
fn a_bad_list_names_the_line() {
    let cases: [(&str, ChannelListError); 9] = [
        ("", ChannelListError::MissingHeader { line: 1 }),
        (
            "\n\nacestream://x\n",
            ChannelListError::MissingHeader { line: 3 },
        ),
        (
            "#EXTM3U\n#EXTINF:-1,A\nhttp://example.com/a.ts\n",
            ChannelListError::UnknownSource { line: 3 },
        ),
        (
            "#EXTM3U\n#EXTINF:-1,A\n#EXTINF:-1,B\n",
            ChannelListError::DuplicateExtinf { line: 3 },
        ),
        (
            "#EXTM3U\n\n#EXTINF:-1,A\n",
            ChannelListError::MissingUrl { line: 3 },
        ),
        (
            "#EXTM3U\n#EXTINF:-1 tvg-logo=\"x,A\nacestream://x\n",
            ChannelListError::InvalidExtinf {
                line: 2,
                reason: "an attribute's quoted value is not closed",
            },
        ),
        (
            "#EXTM3U\n#EXTINF:-1 tvg-id=\"a\"\n",
            ChannelListError::InvalidExtinf {
                line: 2,
                reason: "no comma before the channel's name",
            },
        ),
        (
            "#EXTM3U\n#EXTINF:-1,\u{1}x\nacestream://0123456789abcdef0123456789abcdef01234567\n",
            ChannelListError::InvalidField {
                line: 2,
                field: "name",
                reason: "holds a control character".into(),
            },
        ),
        (
            "#EXTM3U\n#EXTINF:-1,A\nace://\u{1}\n",
            ChannelListError::UnknownSource { line: 3 },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse_m3u(text.as_bytes(), &Limits::default()),
            Err(expected),
            "{text:?}"
        );
    }
    assert_eq!(
        parse_m3u(b"#EXTM3U\n#EXTINF:-1,\xff\n", &Limits::default()),
        Err(ChannelListError::InvalidUtf8 { line: 2 })
    );
}

#[test]
fn lists_are_bounded() {
    let entry = format!("#EXTINF:-1,A\nacestream://{HASH}\n");
    let text = format!("#EXTM3U\n{}", entry.repeat(3));
    let limits = Limits {
        max_channels: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse_m3u(text.as_bytes(), &limits),
        Err(ChannelListError::TooManyChannels { line: 7, limit: 2 })
    );
    let limits = Limits {
        max_bytes: text.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        parse_m3u(text.as_bytes(), &limits),
        Err(ChannelListError::TooLarge { .. })
    ));
    let limits = Limits {
        max_line_bytes: 20,
        ..Limits::default()
    };
    assert_eq!(
        parse_m3u(text.as_bytes(), &limits),
        Err(ChannelListError::LineTooLong { line: 3, limit: 20 })
    );
    assert_eq!(
        parse_m3u(text.as_bytes(), &Limits::default()).map(|list| list.len()),
        Ok(3)
    );
}

#[test]
fn the_rewrite_changes_source_urls_and_nothing_else() {
    let input = format!(
        "\u{feff}#EXTM3U x-tvg-url=\"http://epg\"\r\n\
#EXTINF:-1 tvg-id=\"a\" group-title=\"G\",Sport, HD\r\n\
  acestream://{HASH}\t\r\n\
\r\n\
# comment acestream://{HASH}\r\n\
#EXTINF:-1,Engine\n\
http://10.0.0.9:6878/ace/manifest.m3u8?id={HASH2}&pid=12&file_indexes=1&seekback=30\n\
http://example.com/other.m3u8\n\
what is this line\n\
http://10.0.0.9:6878/ace/getstream?url=http%3A%2F%2Fx\n\
ACE://{HASH2}"
    );
    let out = rewrite(input.as_bytes(), &base(), None);
    let expected = format!(
        "\u{feff}#EXTM3U x-tvg-url=\"http://epg\"\r\n\
#EXTINF:-1 tvg-id=\"a\" group-title=\"G\",Sport, HD\r\n\
  http://acemux.lan:6880/ace/getstream?id={HASH}\t\r\n\
\r\n\
# comment acestream://{HASH}\r\n\
#EXTINF:-1,Engine\n\
http://acemux.lan:6880/ace/manifest.m3u8?id={HASH2}&file_indexes=1&seekback=30\n\
http://example.com/other.m3u8\n\
what is this line\n\
http://10.0.0.9:6878/ace/getstream?url=http%3A%2F%2Fx\n\
http://acemux.lan:6880/ace/getstream?id={HASH2}"
    );
    assert_eq!(String::from_utf8_lossy(&out.bytes), expected);
    assert_eq!((out.lines, out.rewritten), (11, 3));

    let hls = rewrite(input.as_bytes(), &base(), Some(Format::Hls));
    let text = String::from_utf8(hls.bytes).expect("utf-8");
    assert!(!text.contains("/ace/getstream?id="), "{text}");
    assert_eq!(text.matches("/ace/manifest.m3u8?id=").count(), 3);
    let ts = rewrite(input.as_bytes(), &base(), Some(Format::Ts));
    let text = String::from_utf8(ts.bytes).expect("utf-8");
    assert_eq!(text.matches("acemux.lan:6880/ace/getstream?id=").count(), 3);
}

#[test]
fn the_rewrite_keeps_bytes_that_are_not_utf8_and_is_stable() {
    // Latin-1 bytes, as old lists hold them, and bytes that are no text at all.
    let mut input = b"#EXTM3U\n#EXTINF:-1,Caf\xe9\n".to_vec();
    let kept = input.len();
    input.extend_from_slice(format!("acestream://{HASH}\n").as_bytes());
    input.extend_from_slice(b"\xff\xfe acestream://\xe9\n");
    let out = rewrite(&input, &base(), None);
    assert_eq!(out.rewritten, 1);
    let mut expected = input[..kept].to_vec();
    expected
        .extend_from_slice(format!("http://acemux.lan:6880/ace/getstream?id={HASH}\n").as_bytes());
    expected.extend_from_slice(b"\xff\xfe acestream://\xe9\n");
    assert_eq!(out.bytes, expected);
    let again = rewrite(&out.bytes, &base(), None);
    assert_eq!(
        again.bytes, out.bytes,
        "rewriting acemux URLs changes nothing"
    );
    assert_eq!(again.rewritten, 1);
    let empty = rewrite(b"", &base(), None);
    assert_eq!((empty.bytes.len(), empty.lines), (0, 0));
}

/// One generated line: its bytes (without line end), and whether it names a source.
fn line() -> impl Strategy<Value = (Vec<u8>, Option<bool>)> {
    let hash = "[0-9a-fA-F]{40}";
    let space = "[ \t]{0,2}";
    prop_oneof![
        // Any bytes but a line feed: a source or not, as the rewriter decides.
        proptest::collection::vec(
            any::<u8>().prop_filter("no line feed", |b| *b != b'\n'),
            0..60
        )
        .prop_map(|bytes| (bytes, None)),
        "#[^\n]{0,60}".prop_map(|text| (text.into_bytes(), Some(false))),
        "#EXTINF:-1( [a-z-]{1,9}=\"[^\"\n]{0,12}\"){0,3},[^\n]{0,20}"
            .prop_map(|text| (text.into_bytes(), Some(false))),
        "[^#\n ][^\n]{0,40}".prop_filter_map("not a source", |text: String| {
            recognise(text.trim_matches([' ', '\t', '\r']))
                .is_none()
                .then(|| (text.into_bytes(), Some(false)))
        }),
        (
            space,
            "[aA][cC][eE]([sS][tT][rR][eE][aA][mM])?",
            hash,
            space
        )
            .prop_map(|(a, scheme, id, b)| {
                (format!("{a}{scheme}://{id}{b}").into_bytes(), Some(true))
            }),
        (
            space,
            "https?://[a-z0-9.]{1,12}(:[0-9]{2,5})?(/[a-z]{1,5})?",
            "(getstream|manifest.m3u8)",
            "(pid=[0-9]{1,4}&)?",
            "(id|content_id|infohash)",
            "[0-9a-zA-Z%]{1,20}",
            "(&(file_indexes|live_delay|seekback|sid|format)=[0-9,]{1,5}){0,3}",
            space,
        )
            .prop_filter_map(
                "a valid source",
                |(a, origin, route, pid, name, key, rest, b)| {
                    let url = format!("{origin}/ace/{route}?{pid}{name}={key}{rest}");
                    recognise(&url).map(|_| (format!("{a}{url}{b}").into_bytes(), Some(true)))
                }
            ),
    ]
}

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..])]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every line that is not a recognised source comes out byte for byte, line end
    /// included; every source line comes out as acemux's URL of the same source, with
    /// its surrounding whitespace and line end.
    #[test]
    fn the_rewrite_keeps_every_other_line_byte_for_byte(
        bom in any::<bool>(),
        lines in proptest::collection::vec((line(), line_end()), 0..30),
        last_end in any::<bool>(),
        format in prop_oneof![Just(None), Just(Some(Format::Ts)), Just(Some(Format::Hls))],
    ) {
        let mut input = Vec::new();
        if bom {
            input.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let count = lines.len();
        for (index, ((bytes, _), end)) in lines.iter().enumerate() {
            input.extend_from_slice(bytes);
            if last_end || index + 1 < count {
                input.extend_from_slice(end);
            }
        }
        let out = rewrite(&input, &base(), format);
        let in_lines: Vec<_> = rewrite::split_lines(&input).collect();
        let out_lines: Vec<_> = rewrite::split_lines(&out.bytes).collect();
        prop_assert_eq!(in_lines.len(), out_lines.len());
        prop_assert_eq!(out.lines, in_lines.len());
        let mut rewritten = 0;
        for (index, ((line, end), (out_line, out_end))) in in_lines.iter().zip(&out_lines).enumerate() {
            prop_assert_eq!(end, out_end, "line {} keeps its line end", index + 1);
            // The generated kind of this line, when the line is one generated whole.
            let generated = lines.get(index).map(|((_, kind), _)| *kind).unwrap_or(None);
            let content = if index == 0 && bom { &line[3..] } else { &line[..] };
            let trimmed = std::str::from_utf8(content).ok().map(|text| text.trim_matches([' ', '\t', '\r']));
            let recognised = trimmed.filter(|text| !text.starts_with('#')).and_then(recognise);
            match recognised {
                None => {
                    prop_assert_ne!(generated, Some(true), "a generated source is recognised");
                    prop_assert_eq!(line, out_line, "line {} is kept byte for byte", index + 1);
                }
                Some(recognised) => {
                    prop_assert_ne!(generated, Some(false), "line {} is no source", index + 1);
                    rewritten += 1;
                    let format = format.or(recognised.route).unwrap_or(Format::Ts);
                    let url = base().player_url(format, &recognised.source);
                    let text = std::str::from_utf8(content).expect("a source line is UTF-8");
                    let start = text.len() - text.trim_start_matches([' ', '\t']).len();
                    let end = text.trim_end_matches([' ', '\t', '\r']).len();
                    let mut expected = line[..line.len() - content.len() + start].to_vec();
                    expected.extend_from_slice(url.as_bytes());
                    expected.extend_from_slice(&content[end..]);
                    prop_assert_eq!(out_line, &expected.as_slice());
                    let back = recognise(&url).expect("acemux's URL is a source");
                    prop_assert_eq!(back.source, recognised.source);
                }
            }
        }
        prop_assert_eq!(out.rewritten, rewritten);
        // Rewriting again changes nothing.
        prop_assert_eq!(rewrite(&out.bytes, &base(), format).bytes, out.bytes);
    }
}
