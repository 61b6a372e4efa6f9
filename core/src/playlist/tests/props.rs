//! Properties: no input panics; generated playlists round-trip byte for byte; URI
//! rewriting changes the URIs and nothing else.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Pieces of playlists, so that arbitrary strings often get past the header.
const FRAGMENTS: &[&str] = &[
    "#EXTM3U",
    "\n",
    "\n",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    ":",
    ",",
    "\"",
    "#",
    "# c",
    "#EXTINF:",
    "5.5",
    "-1",
    "1e3",
    "0.0000005",
    "86401",
    "title",
    "a.ts",
    "http://h/x.ts",
    "#EXT-X-KEY:",
    "METHOD=AES-128",
    "URI=\"",
    "URI=",
    "#EXT-X-MAP:",
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-TARGETDURATION:",
    "10",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXT-X-ENDLIST",
    "#EXT-X-VERSION:",
    "#EXT-X-DISCONTINUITY-SEQUENCE:",
    "#EXT-X-PLAYLIST-TYPE:",
    "VOD",
    "#EXT-X-STREAM-INF:",
    "BANDWIDTH=",
    "RESOLUTION=1x2",
    "CODECS=\"a,b\"",
    "#EXT-X-MEDIA:",
    "#EXT-X-I-FRAME-STREAM-INF:",
    "#EXT-X-FOO",
    "\u{feff}",
    "é",
    "\u{0}",
];

fn soup() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(select(FRAGMENTS), 0..80),
    )
        .prop_map(|(with_header, pieces)| {
            let body = pieces.concat();
            if with_header {
                format!("#EXTM3U\n{body}")
            } else {
                body
            }
        })
}

/// Whole lines, mostly valid for one kind of playlist, joined by assorted line ends:
/// this gets deeper than `soup`.
fn line_soup() -> impl Strategy<Value = String> {
    const COMMON: &[&str] = &[
        "a.ts",
        "http://h/x.ts",
        " b.ts ",
        "# c",
        "#EXT-X-FOO:x",
        "#EXT-X-VERSION:3",
    ];
    const MEDIA: &[&str] = &[
        "#EXTINF:5,",
        "#EXTINF:5,",
        "#EXTINF:4.5,t",
        "#EXTINF:0.0000005",
        "#EXT-X-KEY:METHOD=AES-128,URI=\"k\"",
        "#EXT-X-MAP:URI=u",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-TARGETDURATION:5",
        "#EXT-X-MEDIA-SEQUENCE:3",
        "#EXT-X-ENDLIST",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-BYTERANGE:5@0",
    ];
    const MASTER: &[&str] = &[
        "#EXT-X-STREAM-INF:BANDWIDTH=5",
        "#EXT-X-STREAM-INF:",
        "#EXT-X-STREAM-INF:CODECS=\"a,b\"",
        "#EXT-X-MEDIA:URI=\"m\"",
        "#EXT-X-I-FRAME-STREAM-INF:URI=i",
    ];
    let ends = select(&["\n", "\n", "\n", "\r\n", "\n\n", "\r"][..]);
    (
        any::<bool>(),
        prop::collection::vec((any::<prop::sample::Index>(), ends), 0..16),
    )
        .prop_flat_map(|(is_master, shape)| {
            let specific = if is_master { MASTER } else { MEDIA };
            let opener = if is_master { MASTER[0] } else { MEDIA[0] };
            let line = prop_oneof![
                3 => select(specific).prop_map(str::to_owned),
                3 => select(COMMON).prop_map(move |uri| format!("{opener}\n{uri}")),
                2 => select(COMMON).prop_map(str::to_owned),
                1 => prop::collection::vec(select(FRAGMENTS), 1..4).prop_map(|p| p.concat()),
            ];
            let ends: Vec<&str> = shape.into_iter().map(|(_, end)| end).collect();
            (prop::collection::vec(line, ends.len()), Just(ends))
        })
        .prop_map(|(lines, ends)| {
            let mut text = "#EXTM3U\n".to_owned();
            for (line, end) in lines.iter().zip(ends) {
                text.push_str(line);
                text.push_str(end);
            }
            text
        })
}

fn uri() -> impl Strategy<Value = String> {
    let relative = "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}\\.(ts|m4s)(\\?t=[a-z0-9,]{1,5})?";
    prop_oneof![
        relative.prop_map(|path| path.to_string()),
        relative.prop_map(|path| format!("http://127.0.0.1:6878/ace/c/{path}")),
        relative.prop_map(|path| format!("/ace/c/{path}")),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    (0u64..=100, prop::option::of("[0-9]{1,9}")).prop_map(|(seconds, fraction)| match fraction {
        Some(fraction) => format!("{seconds}.{fraction}"),
        None => seconds.to_string(),
    })
}

fn segment_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("#EXT-X-DISCONTINUITY".to_owned()),
        Just("#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z".to_owned()),
        Just("#EXT-X-BYTERANGE:1000@2000".to_owned()),
        uri().prop_map(|uri| format!(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"{uri}\",IV=0x0123456789abcdef0123456789abcdef"
        )),
        uri().prop_map(|uri| format!("#EXT-X-MAP:URI=\"{uri}\",BYTERANGE=\"1000@0\"")),
        "[A-Z]{1,6}".prop_map(|name| format!("#EXT-X-X{name}:A=1")),
        "[a-z ]{0,10}".prop_map(|text| format!("# {text}")),
    ]
}

/// Lines of one segment: its tags with `#EXTINF` somewhere among them, then its URI.
fn segment() -> impl Strategy<Value = Vec<String>> {
    (
        duration_text(),
        "[a-zA-Z0-9 ,.-]{0,12}",
        uri(),
        prop::collection::vec(segment_tag(), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(duration, title, uri, mut tags, index)| {
            let at = index.index(tags.len() + 1);
            tags.insert(at, format!("#EXTINF:{duration},{title}"));
            tags.push(uri);
            tags
        })
}

fn media_header() -> impl Strategy<Value = Vec<String>> {
    const UNKNOWN: [&str; 4] = [
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-ALLOW-CACHE:NO",
        "#EXT-X-FOO:bar=1",
        "# hello",
    ];
    (
        prop::option::of(1u64..10),
        prop::option::of(1u64..20),
        prop::option::of(any::<u64>()),
        prop::option::of(0u64..1000),
        prop::option::of(select(&["EVENT", "VOD"][..])),
        prop::collection::vec(select(&UNKNOWN[..]), 0..3),
    )
        .prop_flat_map(
            |(version, target, sequence, discontinuity, kind, unknown)| {
                let mut lines: Vec<String> = unknown.iter().map(|line| line.to_string()).collect();
                lines.extend(version.map(|v| format!("#EXT-X-VERSION:{v}")));
                lines.extend(target.map(|v| format!("#EXT-X-TARGETDURATION:{v}")));
                lines.extend(sequence.map(|v| format!("#EXT-X-MEDIA-SEQUENCE:{v}")));
                lines.extend(discontinuity.map(|v| format!("#EXT-X-DISCONTINUITY-SEQUENCE:{v}")));
                lines.extend(kind.map(|v| format!("#EXT-X-PLAYLIST-TYPE:{v}")));
                Just(lines).prop_shuffle()
            },
        )
}

/// A valid media playlist in canonical form.
fn media_text() -> impl Strategy<Value = String> {
    (
        media_header(),
        prop::collection::vec(segment(), 0..20),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(header, segments, endlist, trailing_tag)| {
            let mut lines = vec!["#EXTM3U".to_owned()];
            lines.extend(header);
            lines.extend(segments.into_iter().flatten());
            if trailing_tag {
                lines.push("#EXT-X-DISCONTINUITY".to_owned());
            }
            if endlist {
                lines.push("#EXT-X-ENDLIST".to_owned());
            }
            lines.iter().map(|line| format!("{line}\n")).collect()
        })
}

fn variant() -> impl Strategy<Value = Vec<String>> {
    (
        prop::option::of(0u64..100_000_000),
        prop::option::of((1u64..4000, 1u64..3000)),
        prop::option::of(select(&["avc1.4d401e,mp4a.40.2", "hvc1.1.6.L93.B0"][..])),
        any::<bool>(),
        uri(),
    )
        .prop_flat_map(|(bandwidth, resolution, codecs, audio, uri)| {
            let mut attributes = Vec::new();
            attributes.extend(bandwidth.map(|b| format!("BANDWIDTH={b}")));
            attributes.extend(resolution.map(|(w, h)| format!("RESOLUTION={w}x{h}")));
            attributes.extend(codecs.map(|c| format!("CODECS=\"{c}\"")));
            if audio {
                attributes.push("AUDIO=\"aud\"".to_owned());
            }
            attributes.push("FRAME-RATE=25.000".to_owned());
            (Just(attributes).prop_shuffle(), Just(uri))
        })
        .prop_map(|(attributes, uri)| {
            vec![format!("#EXT-X-STREAM-INF:{}", attributes.join(",")), uri]
        })
}

/// A valid master playlist in canonical form.
fn master_text() -> impl Strategy<Value = String> {
    let other = prop_oneof![
        Just("#EXT-X-VERSION:6".to_owned()),
        Just("#EXT-X-INDEPENDENT-SEGMENTS".to_owned()),
        Just("# comment".to_owned()),
        uri().prop_map(|uri| format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"A, B\",URI=\"{uri}\""
        )),
        uri().prop_map(|uri| format!("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"{uri}\"")),
    ];
    prop::collection::vec(
        prop_oneof![other.prop_map(|line| vec![line]), variant()],
        0..12,
    )
    .prop_map(|entries| {
        let mut text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nfirst.m3u8\n".to_owned();
        for line in entries.into_iter().flatten() {
            text.push_str(&line);
            text.push('\n');
        }
        text
    })
}

fn playlist_text() -> impl Strategy<Value = String> {
    prop_oneof![media_text(), master_text()]
}

/// Each line with its URI (a URI line, or a `URI="…"` value) replaced by a marker,
/// and the URIs in order.
fn mask_uris(text: &str) -> (Vec<String>, Vec<String>) {
    let mut masked = Vec::new();
    let mut uris = Vec::new();
    for line in text.lines() {
        if !line.starts_with('#') {
            masked.push("<uri>".to_owned());
            uris.push(line.to_owned());
        } else if let Some(start) = line.find("URI=\"") {
            let (before, after) = line.split_at(start + 5);
            let end = after.find('"').expect("generated quoted uri is closed");
            let (uri, rest) = after.split_at(end);
            masked.push(format!("{before}<uri>{rest}"));
            uris.push(uri.to_owned());
        } else {
            masked.push(line.to_owned());
        }
    }
    (masked, uris)
}

/// The checker shared with the fuzz driver, for proptest's `?`.
fn check_reparse(playlist: &Playlist) -> Result<(), TestCaseError> {
    crate::fuzzing::playlist::check_reparse(playlist);
    Ok(())
}

fn insert_at_char_boundary(text: &mut String, at: usize, piece: &str) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.insert_str(at, piece);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(playlist) = Playlist::parse(&bytes) {
            check_reparse(&playlist)?;
        }
    }

    #[test]
    fn arbitrary_playlist_like_text_never_panics(text in soup()) {
        if let Ok(playlist) = Playlist::parse(&text) {
            check_reparse(&playlist)?;
        }
    }

    #[test]
    fn arbitrary_lines_never_panic(text in line_soup()) {
        if let Ok(playlist) = Playlist::parse(&text) {
            check_reparse(&playlist)?;
        }
    }

    #[test]
    fn mutated_playlists_never_panic(
        text in playlist_text(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), select(FRAGMENTS)), 1..6),
    ) {
        let mut text = text;
        for (index, piece) in edits {
            let at = index.index(text.len() + 1);
            insert_at_char_boundary(&mut text, at, piece);
        }
        if let Ok(playlist) = Playlist::parse(&text) {
            check_reparse(&playlist)?;
        }
    }

    #[test]
    fn tiny_limits_never_panic(text in playlist_text(), bytes in 0usize..400, line in 0usize..60, count in 0usize..5) {
        let limits = Limits {
            max_playlist_bytes: bytes,
            max_line_bytes: line,
            max_segments: count,
            max_variants: count,
        };
        let _ = Playlist::parse_with_limits(&text, &limits);
    }

    #[test]
    fn any_rewrite_never_panics_and_keeps_the_structure(
        text in playlist_text(),
        replacement in select(&["x.ts", "#", "a\nb", "\"", ",", "q\r", " y "][..]),
    ) {
        let mut playlist = Playlist::parse(&text).expect("generated playlists are valid");
        playlist.rewrite_uris(|_, uri| format!("{uri}{replacement}"));
        let rendered = playlist.render();
        prop_assert_eq!(rendered.lines().count(), text.lines().count());
        check_reparse(&Playlist::parse(&rendered).expect("rewritten playlists stay valid"))?;
    }

    #[test]
    fn generated_playlists_render_byte_identical(text in playlist_text()) {
        let playlist = Playlist::parse(&text).expect("generated playlists are valid");
        prop_assert_eq!(playlist.render(), text);
        check_reparse(&playlist)?;
    }

    #[test]
    fn noncanonical_line_ends_and_blank_lines_parse_the_same(
        text in playlist_text(),
        crlf in any::<bool>(),
        blank in any::<bool>(),
    ) {
        let ending = match (crlf, blank) {
            (true, true) => "\r\n\r\n",
            (true, false) => "\r\n",
            (false, true) => "\n \n",
            (false, false) => "\n",
        };
        let noisy = format!("\u{feff}\n{}", text.replace('\n', ending));
        let playlist = Playlist::parse(&noisy).expect("noise is normalised away");
        prop_assert_eq!(Playlist::parse(&text), Ok(playlist.clone()));
        prop_assert_eq!(playlist.render(), text);
    }

    #[test]
    fn rewrite_changes_exactly_the_uris(text in playlist_text()) {
        let mut playlist = Playlist::parse(&text).expect("generated playlists are valid");
        let mut calls = 0usize;
        playlist.rewrite_uris(|_, uri| {
            calls += 1;
            format!("/proxy/{uri}")
        });
        let rewritten = playlist.render();
        let (masked_before, uris_before) = mask_uris(&text);
        let (masked_after, uris_after) = mask_uris(&rewritten);
        prop_assert_eq!(masked_after, masked_before);
        let expected: Vec<String> = uris_before.iter().map(|uri| format!("/proxy/{uri}")).collect();
        prop_assert_eq!(uris_after, expected);
        prop_assert_eq!(calls, uris_before.len());
    }

    #[test]
    fn durations_are_exact_microseconds(seconds in 0u64..86_400, micros in 0u64..1_000_000) {
        let text = format!("{seconds}.{micros:06},");
        prop_assert_eq!(duration_us(&text), seconds * 1_000_000 + micros);
    }

    #[test]
    fn resolve_never_panics(
        base in prop::collection::vec(select(&["http:", "//", "/", ".", "..", "a", "?", "#", ":", "é"][..]), 0..12),
        reference in prop::collection::vec(select(&["g:", "//", "/", ".", "..", "a", "?", "#", ":", "é"][..]), 0..12),
    ) {
        let base = base.concat();
        if let Ok(resolved) = resolve(&base, &reference.concat()) {
            // Resolving the empty reference gives the base back, without its fragment.
            prop_assert_eq!(resolve(&resolved, "").ok(), Some(resolved.split('#').next().unwrap_or("").to_owned()));
        }
    }
}
