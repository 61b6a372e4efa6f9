//! Media playlists: durations, grouping of lines, typed fields, losslessness.

use super::*;

#[test]
fn acestream_playlist_reads_header_and_segments() {
    let playlist = media(ACESTREAM);
    assert_eq!(playlist.version, Some(3));
    assert_eq!(playlist.target_duration_s, Some(5));
    assert_eq!(playlist.media_sequence, 1234);
    assert_eq!(playlist.discontinuity_sequence, 0);
    assert!(!playlist.ended);
    let uris: Vec<_> = playlist.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "http://127.0.0.1:6878/ace/c/abc/1234.ts",
            "http://127.0.0.1:6878/ace/c/abc/1235.ts",
            "http://127.0.0.1:6878/ace/c/abc/1236.ts",
        ]
    );
    let durations: Vec<_> = playlist.segments.iter().map(|s| s.duration_us).collect();
    assert_eq!(durations, [5_000_000, 5_000_000, 4_960_000]);
    assert_eq!(playlist.duration_us(), 14_960_000);
}

#[test]
fn acestream_playlist_renders_byte_identical() {
    assert_eq!(media(ACESTREAM).render(), ACESTREAM);
}

#[test]
fn duration_with_three_decimals_is_exact() {
    assert_eq!(duration_us("6.006,"), 6_006_000);
}

#[test]
fn duration_with_five_decimals_is_exact() {
    assert_eq!(duration_us("9.97663,"), 9_976_630);
}

#[test]
fn integer_duration_is_whole_seconds() {
    assert_eq!(duration_us("4,"), 4_000_000);
    assert_eq!(duration_us("10,"), 10_000_000);
}

#[test]
fn one_microsecond_duration_is_exact() {
    assert_eq!(duration_us("0.000001,"), 1);
}

#[test]
fn duration_past_six_decimals_rounds_to_nearest_microsecond() {
    assert_eq!(duration_us("5.9999995,"), 6_000_000);
    assert_eq!(duration_us("5.9999994999,"), 5_999_999);
    assert_eq!(duration_us("10.010000000,"), 10_010_000);
}

#[test]
fn duration_of_exactly_24_hours_is_accepted() {
    assert_eq!(duration_us("86400.000000,"), MAX_SEGMENT_DURATION_US);
}

#[test]
fn duration_without_comma_or_with_spaces_is_accepted() {
    assert_eq!(duration_us("10"), 10_000_000);
    assert_eq!(duration_us(" 2.5 ,x"), 2_500_000);
    assert_eq!(duration_us("00003.,"), 3_000_000);
    assert_eq!(duration_us(".5,"), 500_000);
}

#[test]
fn title_is_the_text_after_the_first_comma() {
    let playlist = media(&with_extinf("5.0,Channel 1, HD"));
    assert_eq!(playlist.segments[0].title, "Channel 1, HD");
    assert_eq!(media(&with_extinf("5.0")).segments[0].title, "");
}

#[test]
fn unknown_tags_and_comments_are_kept_in_order() {
    let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-FOO:1\n# a comment\n#EXT-X-TARGETDURATION:6\n\
                #EXT-X-BAR\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n#EXT-X-BAZ:a=1\n\
                #EXTINF:6,\n# between\nseg1.ts\n#EXT-X-QUX\n#EXTINF:6,\nseg2.ts\n#EXT-X-AFTER\n";
    let playlist = media(text);
    assert_eq!(
        lines(&playlist.header),
        [
            "#EXT-X-VERSION:3",
            "#EXT-X-FOO:1",
            "# a comment",
            "#EXT-X-TARGETDURATION:6",
            "#EXT-X-BAR"
        ]
    );
    assert_eq!(
        lines(&playlist.segments[0].tags),
        [
            "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z",
            "#EXT-X-BAZ:a=1",
            "# between"
        ]
    );
    assert_eq!(lines(&playlist.segments[1].tags), ["#EXT-X-QUX"]);
    assert_eq!(lines(&playlist.trailer), ["#EXT-X-AFTER"]);
    assert_eq!(playlist.render(), text);
}

#[test]
fn segment_tags_are_kept_verbatim_with_the_segment() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-DISCONTINUITY\n\
                #EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\",IV=0x1\n#EXT-X-MAP:URI=\"init.mp4\"\n\
                #EXT-X-BYTERANGE:1000@0\n#EXTINF:4,\nb.ts\n";
    let playlist = media(text);
    let second = &playlist.segments[1];
    assert_eq!(
        lines(&second.tags),
        [
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\",IV=0x1",
            "#EXT-X-MAP:URI=\"init.mp4\"",
            "#EXT-X-BYTERANGE:1000@0"
        ]
    );
    assert!(second.discontinuity);
    assert!(!playlist.segments[0].discontinuity);
    assert_eq!(
        second.tag("EXT-X-MAP").map(Line::as_str),
        Some("#EXT-X-MAP:URI=\"init.mp4\"")
    );
}

#[test]
fn extinf_position_among_segment_tags_is_kept() {
    let text = "#EXTM3U\n#EXTINF:4,\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\na.ts\n\
                #EXT-X-BYTERANGE:10@0\n#EXTINF:4,\n#EXT-X-FOO\nb.ts\n";
    assert_eq!(media(text).render(), text);
}

#[test]
fn endlist_sets_ended_and_stays_in_the_trailer() {
    let playlist = media(&format!("{ACESTREAM}#EXT-X-ENDLIST\n"));
    assert!(playlist.ended);
    assert_eq!(lines(&playlist.trailer), ["#EXT-X-ENDLIST"]);
}

#[test]
fn playlist_type_and_sequences_are_read() {
    let playlist = media(
        "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-DISCONTINUITY-SEQUENCE:7\n\
         #EXT-X-MEDIA-SEQUENCE:9\n",
    );
    assert_eq!(playlist.playlist_type, Some(PlaylistType::Event));
    assert_eq!(playlist.discontinuity_sequence, 7);
    assert_eq!(playlist.media_sequence, 9);
    assert!(playlist.segments.is_empty());
}

#[test]
fn crlf_blank_lines_bom_and_leading_whitespace_are_normalised() {
    let text =
        "\u{feff}\r\n  #EXTM3U\r\n\r\n#EXT-X-TARGETDURATION:5\r\n   \r\n#EXTINF:5,\r\na.ts\r\n";
    assert_eq!(
        media(text).render(),
        "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\na.ts\n"
    );
}

#[test]
fn missing_final_newline_is_added() {
    assert_eq!(
        media("#EXTM3U\n#EXTINF:5,\na.ts").render(),
        "#EXTM3U\n#EXTINF:5,\na.ts\n"
    );
}

#[test]
fn text_after_extm3u_on_its_line_is_kept() {
    let text = "#EXTM3U x-tvg-url=\"a\"\n#EXTINF:5,\na.ts\n";
    assert_eq!(media(text).render(), text);
}

#[test]
fn header_spelling_is_kept_while_fields_are_unchanged() {
    let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0012\n#EXT-X-TARGETDURATION: 5\n";
    assert_eq!(media(text).render(), text);
}

#[test]
fn changed_header_field_rewrites_its_line_in_place() {
    let mut playlist = media(ACESTREAM);
    playlist.media_sequence = 1235;
    playlist.segments.remove(0);
    let rendered = playlist.render();
    assert!(rendered.starts_with(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:1235\n#EXTINF"
    ));
}

#[test]
fn header_field_without_a_line_is_added_to_the_header() {
    let mut playlist = media("#EXTM3U\n#EXT-X-FOO\n#EXTINF:5,\na.ts\n");
    playlist.target_duration_s = Some(5);
    playlist.media_sequence = 3;
    playlist.ended = true;
    assert_eq!(
        playlist.render(),
        "#EXTM3U\n#EXT-X-FOO\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:3\n\
         #EXTINF:5,\na.ts\n#EXT-X-ENDLIST\n"
    );
}

#[test]
fn cleared_field_drops_its_line() {
    let mut playlist = media(&format!("{ACESTREAM}#EXT-X-ENDLIST\n"));
    playlist.version = None;
    playlist.ended = false;
    let rendered = playlist.render();
    assert!(!rendered.contains("#EXT-X-VERSION"));
    assert!(!rendered.contains("#EXT-X-ENDLIST"));
}

#[test]
fn extinf_text_is_kept_until_the_duration_changes() {
    let mut playlist = media(ACESTREAM);
    playlist.segments[2].duration_us = 6_006_000;
    playlist.segments[2].title = "live".into();
    let rendered = playlist.render();
    assert_eq!(rendered.matches("#EXTINF:5.000000,\n").count(), 2);
    assert!(rendered.contains("#EXTINF:6.006,live\n"));
}

#[test]
fn new_segment_renders_extinf_then_uri() {
    let mut playlist = MediaPlaylist::new();
    playlist.target_duration_s = Some(2);
    playlist.segments.push(Segment::new(1_500_000, "1.ts"));
    playlist.segments.push(Segment::new(2_000_000, "2.ts"));
    assert_eq!(
        playlist.render(),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.5,\n1.ts\n#EXTINF:2,\n2.ts\n"
    );
}

#[test]
fn setting_discontinuity_adds_the_tag() {
    let mut playlist = media(ACESTREAM);
    playlist.segments[1].discontinuity = true;
    let reparsed = media(&playlist.render());
    assert!(reparsed.segments[1].discontinuity);
    assert_eq!(lines(&reparsed.segments[1].tags), ["#EXT-X-DISCONTINUITY"]);
}

#[test]
fn clearing_discontinuity_drops_the_tag() {
    let mut playlist = media("#EXTM3U\n#EXTINF:1,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1,\nb.ts\n");
    playlist.segments[1].discontinuity = false;
    assert_eq!(
        playlist.render(),
        "#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n"
    );
}

#[test]
fn empty_playlist_is_an_empty_media_playlist() {
    let playlist = media("#EXTM3U\n");
    assert_eq!(playlist, MediaPlaylist::new());
    assert_eq!(playlist.render(), "#EXTM3U\n");
}

#[test]
fn segment_tags_without_a_segment_are_the_trailer() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXT-X-DISCONTINUITY\n#EXT-X-FOO\n";
    let playlist = media(text);
    assert_eq!(lines(&playlist.header), ["#EXT-X-TARGETDURATION:5"]);
    assert_eq!(
        lines(&playlist.trailer),
        ["#EXT-X-DISCONTINUITY", "#EXT-X-FOO"]
    );
    assert_eq!(playlist.render(), text);
}

#[test]
fn typed_tag_after_the_first_segment_tag_is_read_where_it_stands() {
    let text = "#EXTM3U\n#EXT-X-KEY:METHOD=NONE\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\na.ts\n";
    let mut playlist = media(text);
    assert_eq!(playlist.target_duration_s, Some(5));
    assert_eq!(playlist.render(), text);
    playlist.target_duration_s = Some(6);
    assert_eq!(playlist.render(), text.replace("DURATION:5", "DURATION:6"));
}

#[test]
fn parse_accepts_bytes_and_str() {
    assert_eq!(
        Playlist::parse(ACESTREAM.as_bytes()),
        Playlist::parse(ACESTREAM)
    );
    assert_eq!(ACESTREAM.parse::<Playlist>(), Playlist::parse(ACESTREAM));
}

#[test]
fn display_is_render() {
    let playlist = Playlist::parse(ACESTREAM).unwrap();
    assert_eq!(playlist.to_string(), playlist.render());
}

#[test]
fn line_constructor_refuses_what_would_not_be_one_line() {
    assert!(Line::new("#EXT-X-DISCONTINUITY").is_some());
    assert!(Line::new("# comment").is_some_and(|line| line.is_comment()));
    assert!(Line::new("seg.ts").is_none());
    assert!(Line::new("#A\n#B").is_none());
    assert!(Line::new("#A\r").is_none());
}

#[test]
fn line_exposes_tag_name_and_value() {
    let line = Line::new("#EXT-X-KEY:METHOD=AES-128,URI=\"k\"").unwrap();
    assert_eq!(line.tag_name(), Some("EXT-X-KEY"));
    assert_eq!(line.tag_value(), Some("METHOD=AES-128,URI=\"k\""));
    assert_eq!(line.attributes().unwrap().get_str("URI"), Some("k"));
    let bare = Line::new("#EXT-X-ENDLIST").unwrap();
    assert_eq!(
        (bare.tag_name(), bare.tag_value()),
        (Some("EXT-X-ENDLIST"), None)
    );
    assert_eq!(Line::new("# x: y").unwrap().tag_name(), None);
}
