//! Tests of the playlist reader and rewriter: behaviour by behaviour in the unit
//! modules, properties over generated and arbitrary input in `props`.

mod attr;
mod errors;
mod master;
mod media;
mod props;
mod rewrite;
mod uri;

use super::*;

/// What an AceStream engine serves from `/ace/m/<id>/<session>.m3u8`.
const ACESTREAM: &str = "#EXTM3U\n\
#EXT-X-VERSION:3\n\
#EXT-X-TARGETDURATION:5\n\
#EXT-X-MEDIA-SEQUENCE:1234\n\
#EXTINF:5.000000,\n\
http://127.0.0.1:6878/ace/c/abc/1234.ts\n\
#EXTINF:5.000000,\n\
http://127.0.0.1:6878/ace/c/abc/1235.ts\n\
#EXTINF:4.960000,\n\
http://127.0.0.1:6878/ace/c/abc/1236.ts\n";

/// A master playlist with renditions, variants and an I-frame stream.
const MASTER: &str = "#EXTM3U\n\
#EXT-X-VERSION:6\n\
#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",DEFAULT=YES,URI=\"audio/en.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1280000,AVERAGE-BANDWIDTH=1000000,RESOLUTION=640x360,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"aud\"\n\
low/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,CODECS=\"avc1.640028,mp4a.40.2\",AUDIO=\"aud\"\n\
high/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=2560000,RESOLUTION=1280x720,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aud\"\n\
mid/index.m3u8\n\
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"low/iframe.m3u8\"\n";

#[track_caller]
fn media(text: &str) -> MediaPlaylist {
    match Playlist::parse(text) {
        Ok(Playlist::Media(media)) => media,
        other => panic!("expected a media playlist, got {other:?}"),
    }
}

#[track_caller]
fn master(text: &str) -> MasterPlaylist {
    match Playlist::parse(text) {
        Ok(Playlist::Master(master)) => master,
        other => panic!("expected a master playlist, got {other:?}"),
    }
}

#[track_caller]
fn error(input: impl AsRef<[u8]>) -> PlaylistError {
    match Playlist::parse(input) {
        Err(error) => error,
        Ok(playlist) => panic!("expected an error, parsed {playlist:?}"),
    }
}

/// A one-segment media playlist whose `#EXTINF` value is `extinf`.
fn with_extinf(extinf: &str) -> String {
    format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:{extinf}\nseg.ts\n")
}

/// The duration of the only segment of a playlist with `#EXTINF:<extinf>`.
#[track_caller]
fn duration_us(extinf: &str) -> u64 {
    media(&with_extinf(extinf)).segments[0].duration_us
}

fn lines(playlist: &[Line]) -> Vec<&str> {
    playlist.iter().map(Line::as_str).collect()
}
