//! Rewriting URIs: exactly the URI text changes.

use super::*;

const KEYED: &str = "#EXTM3U\n\
#EXT-X-VERSION:7\n\
#EXT-X-TARGETDURATION:6\n\
#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"\n\
#EXT-X-KEY:METHOD=AES-128, URI=\"keys/k1.bin\" ,IV=0x00000000000000000000000000000001,KEYFORMAT=\"identity\"\n\
#EXTINF:6.006,\n\
seg/1.m4s?token=a,b\n\
#EXT-X-KEY:METHOD=AES-128,URI=k2.bin\n\
#EXTINF:6.006,\n\
seg/2.m4s\n";

fn prefixed(kind: UriKind, uri: &str) -> String {
    format!("/proxy/{kind:?}/{uri}")
}

#[test]
fn identity_rewrite_is_byte_identical() {
    for text in [KEYED, ACESTREAM, MASTER] {
        let mut playlist = Playlist::parse(text).unwrap();
        playlist.rewrite_uris(|_, uri| uri.to_owned());
        assert_eq!(playlist.render(), text);
    }
}

#[test]
fn key_and_map_rewrite_changes_only_the_uri() {
    let mut playlist = Playlist::parse(KEYED).unwrap();
    playlist.rewrite_uris(prefixed);
    assert_eq!(
        playlist.render(),
        "#EXTM3U\n\
#EXT-X-VERSION:7\n\
#EXT-X-TARGETDURATION:6\n\
#EXT-X-MAP:URI=\"/proxy/Map/init.mp4\",BYTERANGE=\"720@0\"\n\
#EXT-X-KEY:METHOD=AES-128, URI=\"/proxy/Key/keys/k1.bin\" ,IV=0x00000000000000000000000000000001,KEYFORMAT=\"identity\"\n\
#EXTINF:6.006,\n\
/proxy/Segment/seg/1.m4s?token=a,b\n\
#EXT-X-KEY:METHOD=AES-128,URI=/proxy/Key/k2.bin\n\
#EXTINF:6.006,\n\
/proxy/Segment/seg/2.m4s\n"
    );
}

#[test]
fn master_rewrite_covers_variants_media_and_iframe_streams() {
    let mut playlist = Playlist::parse(MASTER).unwrap();
    let mut seen = Vec::new();
    playlist.rewrite_uris(|kind, uri| {
        seen.push((kind, uri.to_owned()));
        format!("x/{uri}")
    });
    assert_eq!(
        seen,
        [
            (UriKind::Media, "audio/en.m3u8".to_owned()),
            (UriKind::Variant, "low/index.m3u8".to_owned()),
            (UriKind::Variant, "high/index.m3u8".to_owned()),
            (UriKind::Variant, "mid/index.m3u8".to_owned()),
            (UriKind::IFrameStream, "low/iframe.m3u8".to_owned()),
        ]
    );
    let rendered = playlist.render();
    assert!(rendered.contains(",URI=\"x/audio/en.m3u8\"\n"));
    assert!(rendered.contains("\nx/high/index.m3u8\n"));
    assert!(
        rendered.contains("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"x/low/iframe.m3u8\"\n")
    );
}

#[test]
fn uris_are_visited_in_document_order() {
    let mut playlist = Playlist::parse(KEYED).unwrap();
    let mut kinds = Vec::new();
    playlist.rewrite_uris(|kind, uri| {
        kinds.push(kind);
        uri.to_owned()
    });
    assert_eq!(
        kinds,
        [
            UriKind::Map,
            UriKind::Key,
            UriKind::Segment,
            UriKind::Key,
            UriKind::Segment
        ]
    );
}

#[test]
fn rewritten_segment_uri_gets_the_ts_extension_ffmpeg_needs() {
    let mut playlist = Playlist::parse(ACESTREAM).unwrap();
    let mut next = 0;
    playlist.rewrite_uris(|_, _| {
        next += 1;
        format!("/hls/abc/{next}.ts")
    });
    let media = playlist.as_media().unwrap();
    let uris: Vec<_> = media.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/hls/abc/1.ts", "/hls/abc/2.ts", "/hls/abc/3.ts"]);
}

#[test]
fn rewrite_encodes_what_would_break_a_line() {
    let mut playlist = Playlist::parse(KEYED).unwrap();
    playlist.rewrite_uris(|kind, _| match kind {
        UriKind::Segment => "#a\nb".to_owned(),
        _ => "q\"r,s\r".to_owned(),
    });
    let rendered = playlist.render();
    assert!(rendered.contains("\n%23a%0Ab\n"));
    assert!(rendered.contains("URI=\"q%22r,s%0D\""));
    assert!(rendered.contains("URI=q\"r%2Cs%0D\n"));
    let reparsed = Playlist::parse(&rendered).unwrap();
    assert_eq!(reparsed.render(), rendered);
}

#[test]
fn non_uri_tags_are_never_offered() {
    let text =
        "#EXTM3U\n#EXT-X-DATERANGE:ID=\"a\",X-URI=\"u\"\n#EXT-X-FOO:URI=\"u\"\n#EXTINF:1,\na.ts\n";
    let mut playlist = Playlist::parse(text).unwrap();
    let mut offered = Vec::new();
    playlist.rewrite_uris(|kind, uri| {
        offered.push(kind);
        format!("new-{uri}")
    });
    assert_eq!(offered, [UriKind::Segment]);
    assert_eq!(playlist.render(), text.replace("\na.ts", "\nnew-a.ts"));
}

#[test]
fn resolve_uris_makes_every_uri_absolute() {
    let mut playlist = Playlist::parse(KEYED).unwrap();
    playlist
        .resolve_uris("http://engine:6878/ace/m/abc/index.m3u8?x=1")
        .unwrap();
    let rendered = playlist.render();
    assert!(rendered.contains("URI=\"http://engine:6878/ace/m/abc/init.mp4\""));
    assert!(rendered.contains("URI=\"http://engine:6878/ace/m/abc/keys/k1.bin\""));
    assert!(rendered.contains("\nhttp://engine:6878/ace/m/abc/seg/1.m4s?token=a,b\n"));
    assert!(rendered.contains("URI=http://engine:6878/ace/m/abc/k2.bin\n"));
}

#[test]
fn resolve_uris_keeps_absolute_uris() {
    let mut playlist = Playlist::parse(ACESTREAM).unwrap();
    playlist.resolve_uris("http://other/x.m3u8").unwrap();
    assert_eq!(playlist.render(), ACESTREAM);
}

#[test]
fn resolve_uris_refuses_a_relative_base() {
    let mut playlist = Playlist::parse(KEYED).unwrap();
    assert_eq!(
        playlist.resolve_uris("/ace/m/abc/index.m3u8"),
        Err(UriError::BaseNotAbsolute {
            base: "/ace/m/abc/index.m3u8".into()
        })
    );
    assert_eq!(playlist.render(), KEYED);
}
