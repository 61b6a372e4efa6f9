//! The m3u8 reader and rewriter under arbitrary bytes.

use crate::hls::{UpstreamPlaylist, UpstreamSegment};
use crate::playlist::{Limits, Playlist};

/// The base every playlist is resolved against, as the HLS driver does.
const BASE: &str = "http://engine:6878/ace/m/abc/live.m3u8";

/// Suffixes appended to every URI by the rewrite: harmless, or characters that would
/// break the playlist's structure if written raw.
const SUFFIXES: [&str; 7] = [".ts", "#", "a\nb", "\"", ",", "q\r", " y "];

/// Parses `data` as a playlist (and under tiny limits); whatever parses must render to
/// something that parses to the same value, survive an identity rewrite byte for
/// byte, and keep its structure through resolution and any rewrite. What the HLS driver
/// builds from a media playlist is validated without panicking.
pub fn playlist(data: &[u8]) {
    // The choices come from the bytes themselves, so the corpus holds plain playlists.
    let sum = data
        .iter()
        .fold(0usize, |sum, &byte| sum + usize::from(byte));
    let limits = Limits {
        max_playlist_bytes: sum % 4096,
        max_line_bytes: sum % 97,
        max_segments: sum % 5,
        max_variants: sum % 3,
    };
    if let Ok(limited) = Playlist::parse_with_limits(data, &limits) {
        check_reparse(&limited);
    }
    let Ok(playlist) = Playlist::parse(data) else {
        return;
    };
    check_reparse(&playlist);

    let lines = playlist.render().lines().count();
    let suffix = SUFFIXES[sum % SUFFIXES.len()];
    let mut rewritten = playlist.clone();
    let mut calls = 0usize;
    rewritten.rewrite_uris(|_, uri| {
        calls += 1;
        format!("{uri}{suffix}")
    });
    let text = rewritten.render();
    assert_eq!(text.lines().count(), lines, "a rewrite keeps every line");
    let reparsed = Playlist::parse(&text).expect("a rewritten playlist stays valid");
    check_reparse(&reparsed);
    let mut recount = 0usize;
    reparsed.clone().rewrite_uris(|_, uri| {
        recount += 1;
        uri.to_owned()
    });
    assert_eq!(recount, calls, "a rewrite keeps every uri");

    let mut resolved = playlist;
    if resolved.resolve_uris(BASE).is_ok() {
        let text = resolved.render();
        assert_eq!(text.lines().count(), lines, "resolution keeps every line");
        let reparsed = Playlist::parse(&text).expect("a resolved playlist stays valid");
        check_reparse(&reparsed);
    }
    match &resolved {
        Playlist::Media(media) => {
            // What the HLS driver hands the session (minus its same-origin check).
            let longest_us = media.segments.iter().map(|s| s.duration_us).max();
            let upstream = UpstreamPlaylist {
                target_duration_s: media
                    .target_duration_s
                    .unwrap_or_else(|| longest_us.unwrap_or(0).div_ceil(1_000_000).max(1)),
                media_sequence: media.media_sequence,
                segments: media
                    .segments
                    .iter()
                    .map(|segment| UpstreamSegment {
                        duration_us: segment.duration_us,
                        uri: segment.uri.clone(),
                        discontinuity: segment.discontinuity,
                    })
                    .collect(),
                ended: media.ended,
            };
            let _ = upstream.validate();
        }
        Playlist::Master(master) => {
            let picked = master.pick_variant();
            assert_eq!(picked.is_some(), master.variants().next().is_some());
            if let Some(picked) = picked {
                let best = master.variants().map(|variant| variant.bandwidth).max();
                assert_eq!(
                    Some(picked.bandwidth),
                    best,
                    "the highest bandwidth is picked"
                );
            }
        }
    }
}

/// Whatever parsed must render to something that parses to the same value, render
/// again identically, and survive an identity rewrite byte for byte.
pub(crate) fn check_reparse(playlist: &Playlist) {
    let rendered = playlist.render();
    let reparsed = Playlist::parse(&rendered);
    assert_eq!(reparsed.as_ref(), Ok(playlist), "render then parse");
    assert_eq!(
        reparsed.map(|p| p.render()),
        Ok(rendered.clone()),
        "render is stable"
    );
    let mut identity = playlist.clone();
    identity.rewrite_uris(|_, uri| uri.to_owned());
    assert_eq!(&identity, playlist, "an identity rewrite changes nothing");
    assert_eq!(identity.render(), rendered);
}
