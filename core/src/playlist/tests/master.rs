//! Master playlists: variants, picking one, rendering.

use super::*;

#[test]
fn master_playlist_is_recognised() {
    assert!(Playlist::parse(MASTER).unwrap().as_master().is_some());
    assert!(Playlist::parse(ACESTREAM).unwrap().as_media().is_some());
}

#[test]
fn variants_are_read_in_order() {
    let playlist = master(MASTER);
    let variants: Vec<_> = playlist.variants().collect();
    assert_eq!(variants.len(), 3);
    let low = variants[0];
    assert_eq!(low.bandwidth, Some(1_280_000));
    assert_eq!(
        low.resolution,
        Some(Resolution {
            width: 640,
            height: 360
        })
    );
    assert_eq!(low.codecs.as_deref(), Some("avc1.4d401e,mp4a.40.2"));
    assert_eq!(low.uri, "low/index.m3u8");
    let names: Vec<_> = low.attributes.iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "BANDWIDTH",
            "AVERAGE-BANDWIDTH",
            "RESOLUTION",
            "CODECS",
            "AUDIO"
        ]
    );
    assert_eq!(low.attributes.get("AUDIO"), Some("\"aud\""));
}

#[test]
fn other_master_lines_are_kept_in_order() {
    let playlist = master(MASTER);
    let kept: Vec<_> = playlist
        .lines
        .iter()
        .filter_map(|line| match line {
            MasterLine::Line(line) => line.tag_name(),
            _ => None,
        })
        .collect();
    assert_eq!(
        kept,
        [
            "EXT-X-VERSION",
            "EXT-X-INDEPENDENT-SEGMENTS",
            "EXT-X-MEDIA",
            "EXT-X-I-FRAME-STREAM-INF"
        ]
    );
}

#[test]
fn master_renders_byte_identical() {
    assert_eq!(master(MASTER).render(), MASTER);
}

#[test]
fn pick_variant_takes_the_highest_bandwidth() {
    assert_eq!(
        master(MASTER).pick_variant().unwrap().uri,
        "high/index.m3u8"
    );
}

#[test]
fn pick_variant_takes_the_first_of_equal_bandwidths() {
    let playlist = master(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=5\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=5\nb.m3u8\n",
    );
    assert_eq!(playlist.pick_variant().unwrap().uri, "a.m3u8");
}

#[test]
fn pick_variant_without_bandwidths_takes_the_first() {
    let playlist = master("#EXTM3U\n#EXT-X-STREAM-INF:\na.m3u8\n#EXT-X-STREAM-INF:\nb.m3u8\n");
    assert_eq!(playlist.pick_variant().unwrap().uri, "a.m3u8");
}

#[test]
fn pick_variant_prefers_a_stated_bandwidth() {
    let playlist = master(
        "#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"x\"\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\nb.m3u8\n",
    );
    assert_eq!(playlist.pick_variant().unwrap().uri, "b.m3u8");
}

#[test]
fn pick_variant_of_no_variants_is_none() {
    let playlist = master("#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"a\"\n");
    assert!(playlist.pick_variant().is_none());
}

#[test]
fn changed_bandwidth_rewrites_only_that_attribute() {
    let mut playlist = master(MASTER);
    let Some(MasterLine::Variant(variant)) = playlist.lines.get_mut(3) else {
        panic!("line 3 is the first variant");
    };
    variant.bandwidth = Some(999);
    variant.codecs = None;
    let rendered = playlist.render();
    assert!(rendered.contains(
        "#EXT-X-STREAM-INF:BANDWIDTH=999,AVERAGE-BANDWIDTH=1000000,RESOLUTION=640x360,AUDIO=\"aud\"\n"
    ));
}

#[test]
fn new_variant_fields_are_written_as_attributes() {
    let mut variant = Variant::new("v.m3u8");
    variant.bandwidth = Some(100);
    variant.resolution = Some(Resolution {
        width: 1,
        height: 2,
    });
    variant.codecs = Some("avc1".into());
    let playlist = MasterPlaylist {
        lines: vec![MasterLine::Variant(variant.clone())],
        ..MasterPlaylist::default()
    };
    let rendered = playlist.render();
    assert_eq!(
        rendered,
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100,RESOLUTION=1x2,CODECS=\"avc1\"\nv.m3u8\n"
    );
    let reparsed = master(&rendered);
    let read = reparsed.variants().next().unwrap();
    assert_eq!(
        (read.bandwidth, read.resolution, &read.codecs),
        (variant.bandwidth, variant.resolution, &variant.codecs)
    );
}
