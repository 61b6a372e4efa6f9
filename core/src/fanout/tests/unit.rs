//! One behaviour per test.

use super::*;

const A: ViewerId = ViewerId(1);
const B: ViewerId = ViewerId(2);
const C: ViewerId = ViewerId(3);

fn harness() -> Harness {
    Harness::new(FanoutConfig::default())
}

fn with_config(edit: impl FnOnce(&mut FanoutConfig)) -> Harness {
    let mut config = FanoutConfig::default();
    edit(&mut config);
    Harness::new(config)
}

/// Packets in `bytes`.
fn packet_count(bytes: &[u8]) -> usize {
    bytes.len() / PACKET_LEN
}

#[test]
fn data_is_published_immediately_to_a_waiting_viewer() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.ready(A).unwrap();
    assert_eq!(h.fanout.poll_output(), None, "nothing to hand out yet");

    // Two packets (a PAT and a keyframe: a clean start), far below any batching
    // threshold, go out in the same call.
    let packet = Bytes::from(stream.gop(0));
    h.fanout
        .handle_input(ms(5), Input::Data(packet.clone()))
        .unwrap();
    match h.fanout.poll_output() {
        Some(Output::Deliver {
            viewer,
            offset,
            chunks,
        }) => {
            assert_eq!((viewer, offset), (A, 0));
            assert_eq!(chunks, vec![packet.clone()]);
            assert_eq!(chunks[0].as_ptr(), packet.as_ptr(), "a slice, not a copy");
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
    assert_eq!(h.fanout.poll_output(), None);
}

#[test]
fn a_viewer_receives_a_contiguous_stream_from_its_join_offset() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.gop(20));
    h.data(stream.gop(20));
    h.join(A).unwrap();
    let join_offset = h.seen(A).join_offset;
    h.ready(A).unwrap();
    for round in 0..30 {
        h.set_now(ms(40 * round));
        h.data(stream.gop(round as usize % 7));
        h.ready(A).unwrap();
    }
    let seen = h.seen(A);
    assert!(seen.deliveries.len() > 30);
    assert_eq!(seen.received, h.upstream_from(join_offset));
    assert_eq!(seen.next_offset, h.stats().live_offset);
}

#[test]
fn join_starts_at_the_pat_before_the_latest_keyframe() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.gop(10));
    let second_gop = h.stats().live_offset;
    h.data(stream.gop(10));
    // A PAT after the last keyframe: no keyframe follows it yet.
    h.data(stream.pat());
    h.data(stream.frames(3));

    h.join(A).unwrap();
    assert_eq!(h.seen(A).join_offset, second_gop);
    h.ready(A).unwrap();
    let received = &h.seen(A).received;
    assert!(Packet::new(&received[..PACKET_LEN]).unwrap().starts_pat());
    assert!(Packet::new(&received[PACKET_LEN..2 * PACKET_LEN])
        .unwrap()
        .starts_video_keyframe());
}

#[test]
fn join_without_keyframe_starts_at_the_newest_pat_once_a_keyframe_follows() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.frames(5));
    h.data(stream.pat());
    h.data(stream.frames(5));
    let newest_pat = h.stats().live_offset;
    h.data(stream.pat());
    h.data(stream.frames(5));

    h.join(A).unwrap();
    assert_eq!(h.seen(A).join_offset, newest_pat);
    h.ready(A).unwrap();
    assert!(h.fanout.viewer_waiting(A), "no keyframe after its PAT yet");
    assert!(h.seen(A).deliveries.is_empty());
    h.data(stream.frames(2));
    assert!(h.seen(A).deliveries.is_empty());
    // The keyframe makes its join point a clean start: it starts there, unmoved.
    h.data(stream.keyframe());
    assert!(!h.fanout.viewer_waiting(A));
    assert_eq!(h.seen(A).start_offset, newest_pat);
    assert_eq!(h.seen(A).received, h.upstream_from(newest_pat));
}

#[test]
fn join_without_pat_starts_at_the_live_edge() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.keyframe());
    h.data(stream.frames(10));
    let live = h.stats().live_offset;

    h.join(A).unwrap();
    assert_eq!(h.seen(A).join_offset, live);
    h.ready(A).unwrap();
    assert!(
        h.seen(A).deliveries.is_empty(),
        "nothing before the live edge"
    );
    // Mid-GOP packets are held back until the next PAT followed by a keyframe.
    h.data(stream.frames(2));
    assert!(h.seen(A).deliveries.is_empty());
    let clean = h.stats().live_offset;
    h.data(stream.gop(2));
    assert_eq!(h.seen(A).start_offset, clean);
    assert_eq!(h.seen(A).received, h.upstream_from(clean));
}

#[test]
fn a_viewer_joining_an_empty_ring_starts_at_the_pat_before_the_first_keyframe() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join_fast(A);
    assert!(h.fanout.viewer_waiting(A));
    // The engine starts mid-GOP: frames, a keyframe without a PAT before it, a PAT that
    // no keyframe follows (its GOP began earlier), more frames.
    h.data(stream.frames(5));
    h.data(stream.keyframe());
    h.data(stream.frames(3));
    h.data(stream.pat());
    h.data(stream.frames(2));
    // Waiting is quiet, not a stall: keepalives as at the live edge, and no drop.
    h.run_until(ms(2_500));
    assert_eq!(h.seen(A).keepalives, vec![secs(1), secs(2)]);
    assert!(h.drops.is_empty());
    assert!(
        h.seen(A).deliveries.is_empty(),
        "nothing before a clean start"
    );
    assert_eq!(
        h.fanout.viewer_offset(A),
        Some(0),
        "still at its join point"
    );
    // A PAT, and in the next chunk the keyframe after it: a clean start.
    let clean = h.stats().live_offset;
    h.data(stream.pat());
    assert!(h.fanout.viewer_waiting(A));
    let mut rest = stream.keyframe();
    rest.extend(stream.frames(4));
    rest.extend(stream.gop(3));
    h.data(rest);
    assert!(!h.fanout.viewer_waiting(A));
    let seen = h.seen(A);
    assert_eq!(seen.start_offset, clean);
    assert_eq!(
        seen.received,
        h.upstream_from(clean),
        "nothing before the PAT"
    );
    assert!(Packet::new(&seen.received[..PACKET_LEN])
        .unwrap()
        .starts_pat());
    assert!(Packet::new(&seen.received[PACKET_LEN..2 * PACKET_LEN])
        .unwrap()
        .starts_video_keyframe());
    // From there on it is an ordinary viewer.
    h.data(stream.frames(3));
    assert_eq!(h.seen(A).received, h.upstream_from(clean));
    assert_eq!(h.seen(A).next_offset, h.stats().live_offset);
}

#[test]
fn a_waiting_viewer_starts_at_the_first_clean_start_of_a_chunk() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.data(stream.frames(4));
    h.ready(A).unwrap();
    let first = h.stats().live_offset + 3 * PACKET_LEN as u64;
    let mut chunk = stream.frames(3);
    chunk.extend(stream.gop(4));
    chunk.extend(stream.gop(4));
    h.data(chunk);
    assert_eq!(h.seen(A).start_offset, first);
    assert_eq!(h.seen(A).received, h.upstream_from(first));
}

#[test]
fn a_viewer_not_ready_when_its_wait_ends_starts_there_once_ready() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.data(stream.frames(4));
    let clean = h.stats().live_offset;
    h.data(stream.gop(3));
    assert!(!h.fanout.viewer_waiting(A));
    assert_eq!(
        h.fanout.viewer_offset(A),
        Some(clean),
        "moved to the clean start"
    );
    assert!(h.seen(A).deliveries.is_empty(), "in flight since the join");
    h.ready(A).unwrap();
    assert_eq!(h.seen(A).received, h.upstream_from(clean));
}

#[test]
fn without_keyframes_a_waiting_viewer_starts_at_the_newest_pat_after_max_sync_wait_bytes() {
    let mut h = with_config(|c| c.max_sync_wait_bytes = 20 * PACKET_LEN);
    let mut stream = Stream::default();
    h.join_fast(A);
    h.data(stream.frames(3));
    h.data(stream.pat());
    h.data(stream.frames(5));
    let newest_pat = h.stats().live_offset;
    h.data(stream.pat());
    h.data(stream.frames(9));
    // 19 packets past its cursor: it still waits.
    assert!(h.fanout.viewer_waiting(A));
    assert!(h.seen(A).deliveries.is_empty());
    h.data(stream.frames(1));
    assert!(!h.fanout.viewer_waiting(A));
    assert_eq!(h.seen(A).start_offset, newest_pat);
    assert_eq!(h.seen(A).received, h.upstream_from(newest_pat));
}

#[test]
fn without_pats_a_waiting_viewer_starts_at_its_cursor_after_max_sync_wait_bytes() {
    let mut h = with_config(|c| c.max_sync_wait_bytes = 10 * PACKET_LEN);
    let mut stream = Stream::default();
    h.data(stream.frames(2));
    h.join_fast(A);
    let cursor = h.seen(A).join_offset;
    assert_eq!(cursor, 2 * PACKET_LEN as u64, "the live edge");
    // A keyframe without a PAT before it is no clean start.
    let mut chunk = stream.keyframe();
    chunk.extend(stream.frames(8));
    h.data(chunk);
    assert!(h.fanout.viewer_waiting(A));
    h.data(stream.frames(1));
    assert_eq!(h.seen(A).start_offset, cursor);
    assert_eq!(h.seen(A).received, h.upstream_from(cursor));
}

#[test]
fn a_waiting_viewer_starts_in_the_ring_rather_than_fall_behind() {
    let mut h = with_config(|c| c.ring_capacity_bytes = 10 * PACKET_LEN);
    let mut stream = Stream::default();
    h.join_fast(A);
    h.data(stream.frames(4));
    let pat = h.stats().live_offset;
    h.data(stream.pat());
    h.data(stream.frames(4));
    assert!(h.fanout.viewer_waiting(A));
    // 12 packets: the ring drops the first chunk, and with it A's cursor.
    h.data(stream.frames(3));
    assert_eq!(h.stats().ring_start_offset, pat);
    assert!(h.drops.is_empty());
    assert!(!h.fanout.viewer_waiting(A));
    assert_eq!(h.seen(A).start_offset, pat);
    assert_eq!(h.seen(A).received, h.upstream_from(pat));
}

#[test]
fn a_viewer_joining_when_a_clean_start_is_held_starts_there_at_once() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.frames(3));
    let clean = h.stats().live_offset;
    h.data(stream.gop(5));
    // A later PAT without a keyframe after it does not replace the clean start.
    h.data(stream.pat());
    h.data(stream.frames(3));
    h.join(A).unwrap();
    assert_eq!(h.seen(A).join_offset, clean);
    assert!(!h.fanout.viewer_waiting(A));
    h.ready(A).unwrap();
    assert_eq!(h.seen(A).received, h.upstream_from(clean), "handed at once");
    assert_eq!(h.seen(A).start_offset, clean);
}

#[test]
fn max_sync_wait_bytes_zero_turns_waiting_off() {
    let mut h = with_config(|c| c.max_sync_wait_bytes = 0);
    let mut stream = Stream::default();
    h.join_fast(A);
    assert!(!h.fanout.viewer_waiting(A));
    h.data(stream.frames(3));
    assert_eq!(h.seen(A).received, h.upstream_from(0));
}

#[test]
fn join_forgets_sync_points_that_were_evicted() {
    let mut h = with_config(|c| c.ring_capacity_bytes = 10 * PACKET_LEN);
    let mut stream = Stream::default();
    h.data(stream.gop(2));
    for _ in 0..20 {
        h.data(stream.frames(1));
    }
    h.join(A).unwrap();
    assert_eq!(h.seen(A).join_offset, h.stats().live_offset);
}

#[test]
fn unaligned_and_garbage_input_is_aligned_and_discarded_bytes_counted() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join_fast(A);
    let mut upstream = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    let clean = stream.gop(6);
    upstream.extend(&clean);
    upstream.extend([0x00, 0x01, 0x02]);
    let tail = stream.gop(6);
    upstream.extend(&tail);
    // Odd chunk sizes split packets everywhere.
    for chunk in upstream.chunks(77) {
        h.data(Bytes::copy_from_slice(chunk));
    }
    let stats = h.stats();
    assert_eq!(stats.bytes_in, upstream.len() as u64);
    assert!(stats.discarded_bytes >= 19 + 3);
    assert_eq!(stats.discarded_bytes + stats.live_offset, stats.bytes_in);
    let received = &h.seen(A).received;
    assert_eq!(received, h.upstream_from(0));
    assert!(received.chunks(PACKET_LEN).all(|p| p[0] == ts::SYNC_BYTE));
    assert!(received.starts_with(&clean[..clean.len() - PACKET_LEN]));
    assert!(received.ends_with(&tail));
}

#[test]
fn a_stalled_viewer_is_dropped_after_the_timeout_while_others_receive_every_byte() {
    let mut h = with_config(|c| c.viewer_stall_timeout = Duration::from_secs(5));
    let mut stream = Stream::default();
    h.join_fast(A);
    h.join(B).unwrap();
    h.ready(B).unwrap();
    // B is handed the first bytes and never reports Ready again.
    h.data(stream.gop(5));
    assert!(!h.seen(B).deliveries.is_empty());
    for tick in 1..=100 {
        h.run_until(ms(100 * tick));
        h.data(stream.frames(3));
        let seen_a = h.seen(A);
        assert_eq!(
            seen_a.next_offset,
            h.stats().live_offset,
            "A never waits for B"
        );
    }
    assert_eq!(h.drops, vec![(B, DropReason::Stalled, secs(5))]);
    assert_eq!(h.stats().dropped_stalled, 1);
    assert_eq!(h.seen(A).received, h.upstream_from(0));
    assert!(!h.fanout.has_viewer(B));
    assert_eq!(h.ready(B), Err(FanoutError::UnknownViewer(B)));
}

#[test]
fn a_viewer_that_just_joined_and_never_becomes_ready_is_dropped_as_stalled() {
    let mut h = with_config(|c| c.viewer_stall_timeout = Duration::from_secs(3));
    h.set_now(secs(1));
    h.join(A).unwrap();
    assert_eq!(h.fanout.poll_timeout(), Some(secs(4)));
    h.run_until(secs(10));
    assert_eq!(h.drops, vec![(A, DropReason::Stalled, secs(4))]);
}

#[test]
fn a_viewer_whose_cursor_is_evicted_is_dropped_as_fell_behind() {
    let mut h = with_config(|c| {
        c.ring_capacity_bytes = 40 * PACKET_LEN;
        c.max_delivery_bytes = 10 * PACKET_LEN;
    });
    let mut stream = Stream::default();
    h.join_fast(A);
    h.join(B).unwrap();
    h.ready(B).unwrap();
    h.data(stream.gop(8));
    // B holds its first delivery; the stream runs on until the ring passes it.
    let b_cursor = h.seen(B).next_offset;
    let mut rounds = 0;
    while h.fanout.has_viewer(B) {
        h.data(stream.frames(4));
        rounds += 1;
        assert!(rounds < 100, "B was never dropped");
    }
    assert_eq!(h.drops.len(), 1);
    assert_eq!((h.drops[0].0, h.drops[0].1), (B, DropReason::FellBehind));
    assert!(h.stats().ring_start_offset > b_cursor);
    assert_eq!(h.stats().dropped_behind, 1);
    assert_eq!(h.seen(A).received, h.upstream_from(0));
}

#[test]
fn the_ring_never_exceeds_its_capacity_beyond_the_newest_chunk() {
    let capacity = 16 * PACKET_LEN;
    let mut h = with_config(|c| c.ring_capacity_bytes = capacity);
    let mut stream = Stream::default();
    for size in [1, 3, 7, 2, 9, 16, 5, 1, 1, 12] {
        h.data(stream.frames(size));
        assert!(h.stats().ring_bytes <= capacity);
    }
    // One chunk larger than the ring is kept whole, and alone.
    let big = stream.frames(40);
    h.data(big.clone());
    let stats = h.stats();
    assert_eq!(stats.ring_bytes, big.len());
    assert_eq!(
        stats.ring_start_offset,
        stats.live_offset - big.len() as u64
    );
    h.data(stream.frames(2));
    assert_eq!(h.stats().ring_bytes, 2 * PACKET_LEN);
}

#[test]
fn keepalive_null_packets_are_sent_every_interval_and_do_not_advance_the_offset() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.data(stream.gop(3));
    h.join_fast(A);
    let offset = h.seen(A).next_offset;
    h.run_until(ms(3500));
    assert_eq!(h.seen(A).keepalives, vec![secs(1), secs(2), secs(3)]);
    assert_eq!(h.seen(A).next_offset, offset);
    // Data resets the interval: the next keepalive is one interval after the delivery.
    h.data(stream.frames(1));
    assert_eq!(h.seen(A).next_offset, offset + PACKET_LEN as u64);
    h.run_until(ms(4400));
    assert_eq!(h.seen(A).keepalives.len(), 3);
    h.run_until(ms(4500));
    assert_eq!(h.seen(A).keepalives.last(), Some(&ms(4500)));
    assert_eq!(h.seen(A).received, h.upstream_from(0));
    assert_eq!(h.seen(A).deliveries.len(), 2);
}

#[test]
fn a_viewer_in_flight_gets_no_keepalive() {
    let mut h = with_config(|c| c.viewer_stall_timeout = Duration::from_secs(30));
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.ready(A).unwrap();
    h.data(stream.gop(1));
    h.run_until(secs(20));
    assert!(h.seen(A).keepalives.is_empty());
    // Ready late, past the keepalive interval: the keepalive is due at once.
    h.ready(A).unwrap();
    assert_eq!(h.fanout.poll_timeout(), Some(secs(1)));
    h.wake();
    assert_eq!(h.seen(A).keepalives, vec![secs(20)]);
}

#[test]
fn deliveries_never_exceed_max_delivery_bytes() {
    let mut h = with_config(|c| c.max_delivery_bytes = 1000);
    let mut stream = Stream::default();
    h.data(stream.gop(30));
    h.join_fast(A);
    h.data(stream.gop(50));
    let seen = h.seen(A);
    // 1000 bytes round down to 5 whole packets.
    assert!(seen.deliveries.iter().all(|&len| len <= 5 * PACKET_LEN));
    assert_eq!(seen.deliveries.iter().max(), Some(&(5 * PACKET_LEN)));
    assert_eq!(seen.received, h.upstream_from(0));
}

#[test]
fn a_delivery_limit_below_one_packet_still_makes_progress() {
    let mut h = with_config(|c| c.max_delivery_bytes = 100);
    let mut stream = Stream::default();
    h.join_fast(A);
    h.data(stream.gop(2));
    let seen = h.seen(A);
    assert!(seen.deliveries.iter().all(|&len| len <= 100));
    assert_eq!(seen.received, h.upstream_from(0));
    assert_eq!(packet_count(&seen.received), 4);
}

#[test]
fn a_join_beyond_max_viewers_is_refused_and_changes_nothing() {
    let mut h = with_config(|c| c.max_viewers = 2);
    h.join(A).unwrap();
    h.join(B).unwrap();
    let before = (h.stats(), h.fanout.poll_timeout());
    assert_eq!(h.join(C), Err(FanoutError::Capacity { limit: 2 }));
    assert_eq!((h.stats(), h.fanout.poll_timeout()), before);
    assert!(!h.fanout.has_viewer(C));
    h.leave(A).unwrap();
    h.join(C).unwrap();
}

#[test]
fn a_duplicate_join_is_refused_and_changes_nothing() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.set_now(secs(2));
    h.data(stream.gop(3));
    let before = (
        h.stats(),
        h.fanout.poll_timeout(),
        h.fanout.viewer_offset(A),
    );
    assert_eq!(h.join(A), Err(FanoutError::DuplicateViewer(A)));
    let after = (
        h.stats(),
        h.fanout.poll_timeout(),
        h.fanout.viewer_offset(A),
    );
    assert_eq!(after, before);
}

#[test]
fn ready_and_leave_for_an_unknown_viewer_are_refused_and_change_nothing() {
    let mut h = harness();
    h.join(A).unwrap();
    let before = (h.stats(), h.fanout.poll_timeout());
    assert_eq!(h.ready(B), Err(FanoutError::UnknownViewer(B)));
    assert_eq!(h.leave(B), Err(FanoutError::UnknownViewer(B)));
    assert_eq!((h.stats(), h.fanout.poll_timeout()), before);
    h.leave(A).unwrap();
    assert_eq!(h.leave(A), Err(FanoutError::UnknownViewer(A)));
}

#[test]
fn leave_is_silent_and_the_viewer_gets_nothing_more() {
    let mut h = harness();
    let mut stream = Stream::default();
    h.join_fast(A);
    h.data(stream.gop(1));
    // Straight to the machine: the harness would drain the outputs itself.
    let fanout = &mut h.fanout;
    fanout.handle_input(secs(1), Input::Leave(A)).unwrap();
    assert_eq!(fanout.poll_output(), None);
    let more = Bytes::from(stream.gop(1));
    fanout.handle_input(secs(2), Input::Data(more)).unwrap();
    fanout.handle_timeout(secs(60));
    assert_eq!(fanout.poll_output(), None);
    assert_eq!(fanout.poll_timeout(), None);
    assert!(!fanout.has_viewer(A));
}

#[test]
fn poll_timeout_is_the_earliest_stall_or_keepalive_deadline() {
    let mut h = with_config(|c| {
        c.viewer_stall_timeout = Duration::from_secs(10);
        c.keepalive_interval = Duration::from_secs(1);
    });
    let mut stream = Stream::default();
    assert_eq!(h.fanout.poll_timeout(), None, "no viewers, no timer");
    h.set_now(ms(500));
    h.join(A).unwrap();
    assert_eq!(
        h.fanout.poll_timeout(),
        Some(ms(10_500)),
        "A's stall deadline"
    );
    h.set_now(ms(700));
    h.ready(A).unwrap();
    assert_eq!(
        h.fanout.poll_timeout(),
        Some(ms(1_500)),
        "A's keepalive deadline"
    );
    h.set_now(ms(900));
    h.data(stream.gop(1));
    assert_eq!(
        h.fanout.poll_timeout(),
        Some(ms(10_900)),
        "A in flight again"
    );
    h.set_now(ms(1_200));
    h.join(B).unwrap();
    assert_eq!(h.fanout.poll_timeout(), Some(ms(10_900)));
    h.set_now(ms(1_300));
    h.ready(A).unwrap();
    assert_eq!(
        h.fanout.poll_timeout(),
        Some(ms(1_900)),
        "A waits from 900 ms"
    );
    // An early wake-up changes nothing.
    h.set_now(ms(1_400));
    h.wake();
    assert_eq!(h.fanout.poll_timeout(), Some(ms(1_900)));
    assert!(h.seen(A).keepalives.is_empty());
    h.leave(A).unwrap();
    assert_eq!(
        h.fanout.poll_timeout(),
        Some(ms(11_200)),
        "B's stall deadline"
    );
    h.leave(B).unwrap();
    assert_eq!(h.fanout.poll_timeout(), None);
}

#[test]
fn a_dropped_viewer_can_join_again_as_a_new_viewer() {
    let mut h = with_config(|c| c.viewer_stall_timeout = Duration::from_secs(2));
    let mut stream = Stream::default();
    h.join(A).unwrap();
    h.run_until(secs(3));
    assert_eq!(h.drops.len(), 1);
    h.data(stream.gop(2));
    h.join(A).unwrap();
    h.ready(A).unwrap();
    assert_eq!(h.seen(A).received, h.upstream_from(0));
}

#[test]
fn names_and_messages_are_stable() {
    assert_eq!(DropReason::FellBehind.as_str(), "fell_behind");
    assert_eq!(DropReason::Stalled.as_str(), "stalled");
    assert_eq!(DropReason::Stalled.to_string(), "stalled");
    assert_eq!(ViewerId(42).to_string(), "42");
    assert_eq!(
        FanoutError::UnknownViewer(ViewerId(7)).to_string(),
        "unknown viewer 7"
    );
    assert_eq!(
        FanoutError::DuplicateViewer(ViewerId(7)).to_string(),
        "viewer 7 has already joined"
    );
    assert_eq!(
        FanoutError::Capacity { limit: 3 }.to_string(),
        "too many viewers (limit 3)"
    );
    let config = FanoutConfig::default();
    assert_eq!(config.ring_capacity_bytes, 16 << 20);
    assert_eq!(config.max_delivery_bytes, 256 << 10);
    assert_eq!(config.max_sync_wait_bytes, 1 << 20);
    assert_eq!(ts::null_packets(KEEPALIVE_PACKETS).len(), 1316);
}
