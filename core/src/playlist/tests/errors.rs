//! Every error, with the line it names.

use super::*;

fn small_limits() -> Limits {
    Limits {
        max_playlist_bytes: 64,
        max_line_bytes: 16,
        max_segments: 2,
        max_variants: 1,
    }
}

#[track_caller]
fn error_with(limits: &Limits, input: &str) -> PlaylistError {
    match Playlist::parse_with_limits(input, limits) {
        Err(error) => error,
        Ok(playlist) => panic!("expected an error, parsed {playlist:?}"),
    }
}

#[test]
fn too_large() {
    let input = format!("#EXTM3U\n{}", "#\n".repeat(40));
    assert_eq!(
        error_with(&small_limits(), &input),
        PlaylistError::TooLarge { len: 88, limit: 64 }
    );
}

#[test]
fn default_size_limit_is_one_mebibyte() {
    let input = format!("#EXTM3U\n{}", "#\n".repeat(DEFAULT_MAX_PLAYLIST_BYTES / 2));
    assert!(matches!(error(input), PlaylistError::TooLarge { limit, .. } if limit == 1 << 20));
}

#[test]
fn invalid_utf8_names_its_line() {
    assert_eq!(
        error(b"#EXTM3U\n#EXTINF:5,\n\xff\xfe.ts\n"),
        PlaylistError::InvalidUtf8 { line: 3 }
    );
}

#[test]
fn line_too_long() {
    assert_eq!(
        error_with(&small_limits(), "#EXTM3U\n#EXT-X-TOO-LONG-A-TAG\n"),
        PlaylistError::LineTooLong { line: 2, limit: 16 }
    );
}

#[test]
fn too_many_segments() {
    let input = "#EXTM3U\n#EXTINF:1,\na\n#EXTINF:1,\nb\n#EXTINF:1,\nc\n";
    assert_eq!(
        error_with(&small_limits(), input),
        PlaylistError::TooManySegments { line: 7, limit: 2 }
    );
}

#[test]
fn too_many_variants() {
    let input = "#EXTM3U\n#EXT-X-STREAM-INF:\na\n#EXT-X-STREAM-INF:\nb\n";
    let limits = Limits {
        max_line_bytes: 32,
        ..small_limits()
    };
    assert_eq!(
        error_with(&limits, input),
        PlaylistError::TooManyVariants { line: 4, limit: 1 }
    );
}

#[test]
fn missing_header_in_empty_input() {
    assert_eq!(error(""), PlaylistError::MissingHeader { line: 1 });
    assert_eq!(error("\n \r\n"), PlaylistError::MissingHeader { line: 1 });
}

#[test]
fn missing_header_names_the_first_non_blank_line() {
    assert_eq!(
        error("\n#EXTINF:5,\na.ts\n"),
        PlaylistError::MissingHeader { line: 2 }
    );
    assert_eq!(error("<html>"), PlaylistError::MissingHeader { line: 1 });
    assert_eq!(
        error("#EXTM3Ux\n"),
        PlaylistError::MissingHeader { line: 1 }
    );
}

#[track_caller]
fn duration_error(extinf: &str) -> DurationError {
    match error(with_extinf(extinf)) {
        PlaylistError::InvalidDuration { line: 3, reason } => reason,
        other => panic!("expected an invalid duration on line 3, got {other:?}"),
    }
}

#[test]
fn empty_duration() {
    assert_eq!(duration_error(",title"), DurationError::Empty);
    assert_eq!(duration_error(""), DurationError::Empty);
}

#[test]
fn negative_duration() {
    assert_eq!(duration_error("-1,"), DurationError::Negative);
    assert_eq!(duration_error("-0.5,"), DurationError::Negative);
}

#[test]
fn nan_and_infinity_are_not_durations() {
    for text in ["NaN,", "nan,", "inf,", "Infinity,", "+inf,"] {
        assert_eq!(duration_error(text), DurationError::NotDecimal, "{text}");
    }
}

#[test]
fn exponent_and_sign_forms_are_not_durations() {
    for text in ["1e3,", "1E-2,", "+5,", "5.0.0,", ".,", "0x10,", "5 s,"] {
        assert_eq!(duration_error(text), DurationError::NotDecimal, "{text}");
    }
}

#[test]
fn duration_over_24_hours() {
    assert_eq!(duration_error("86400.000001,"), DurationError::TooLong);
    assert_eq!(
        duration_error("99999999999999999999999,"),
        DurationError::TooLong
    );
}

#[test]
fn duplicate_extinf() {
    assert_eq!(
        error("#EXTM3U\n#EXTINF:5,\n#EXTINF:5,\na.ts\n"),
        PlaylistError::DuplicateExtinf { line: 3 }
    );
}

#[test]
fn missing_extinf() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-TARGETDURATION:5\na.ts\n"),
        PlaylistError::MissingExtinf { line: 3 }
    );
}

#[test]
fn extinf_without_uri() {
    assert_eq!(
        error("#EXTM3U\n#EXTINF:5,\na.ts\n#EXTINF:5,\n#EXT-X-FOO\n"),
        PlaylistError::MissingUri {
            line: 4,
            tag: "EXTINF"
        }
    );
}

#[test]
fn stream_inf_without_uri() {
    let expected = PlaylistError::MissingUri {
        line: 2,
        tag: "EXT-X-STREAM-INF",
    };
    assert_eq!(error("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n"), expected);
    assert_eq!(
        error("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-FOO\na.m3u8\n"),
        expected
    );
}

#[test]
fn duplicate_tag() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1,\na\n#EXT-X-MEDIA-SEQUENCE:2\n"),
        PlaylistError::DuplicateTag {
            line: 5,
            tag: "EXT-X-MEDIA-SEQUENCE"
        }
    );
}

#[test]
fn invalid_tag_value() {
    let cases = [
        ("#EXT-X-TARGETDURATION:abc", "EXT-X-TARGETDURATION"),
        ("#EXT-X-TARGETDURATION", "EXT-X-TARGETDURATION"),
        ("#EXT-X-MEDIA-SEQUENCE:-1", "EXT-X-MEDIA-SEQUENCE"),
        (
            "#EXT-X-MEDIA-SEQUENCE:99999999999999999999",
            "EXT-X-MEDIA-SEQUENCE",
        ),
        ("#EXT-X-VERSION:3.0", "EXT-X-VERSION"),
        (
            "#EXT-X-DISCONTINUITY-SEQUENCE:",
            "EXT-X-DISCONTINUITY-SEQUENCE",
        ),
        ("#EXT-X-PLAYLIST-TYPE:LIVE", "EXT-X-PLAYLIST-TYPE"),
    ];
    for (line, tag) in cases {
        assert_eq!(
            error(format!("#EXTM3U\n{line}\n")),
            PlaylistError::InvalidTagValue { line: 2, tag },
            "{line}"
        );
    }
}

#[test]
fn invalid_attributes_of_a_uri_tag() {
    assert_eq!(
        error("#EXTM3U\n#EXTINF:1,\na\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\n#EXTINF:1,\nb\n"),
        PlaylistError::InvalidAttributes {
            line: 4,
            reason: AttributeError::UnterminatedQuote
        }
    );
}

#[test]
fn invalid_attributes_of_stream_inf() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,\na.m3u8\n"),
        PlaylistError::InvalidAttributes {
            line: 2,
            reason: AttributeError::MissingName
        }
    );
}

#[test]
fn malformed_attributes_of_other_tags_are_kept() {
    let text = "#EXTM3U\n#EXT-X-DATERANGE:ID=\"open\n#EXTINF:1,\na\n";
    assert_eq!(media(text).render(), text);
}

#[test]
fn invalid_attribute_value() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=fast\na.m3u8\n"),
        PlaylistError::InvalidAttributeValue {
            line: 2,
            attribute: "BANDWIDTH"
        }
    );
    assert_eq!(
        error("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1080p\na.m3u8\n"),
        PlaylistError::InvalidAttributeValue {
            line: 2,
            attribute: "RESOLUTION"
        }
    );
}

#[test]
fn unexpected_uri_in_master() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\nb.m3u8\n"),
        PlaylistError::UnexpectedUri { line: 4 }
    );
}

#[test]
fn mixed_playlist() {
    assert_eq!(
        error("#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n"),
        PlaylistError::MixedPlaylist { line: 3 }
    );
}

#[test]
fn errors_read_as_lower_case_sentences() {
    let error = PlaylistError::InvalidDuration {
        line: 3,
        reason: DurationError::Negative,
    };
    assert_eq!(
        error.to_string(),
        "line 3: invalid #EXTINF duration: negative"
    );
    assert_eq!(
        PlaylistError::MissingHeader { line: 1 }.to_string(),
        "line 1: playlist does not start with #EXTM3U"
    );
}
