//! The upstream segments of one numbering that wait to be fetched or served, in
//! upstream order, and where media went missing between them.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::UpstreamSegment;
use crate::time::Instant;

#[derive(Clone, Debug)]
enum State {
    /// Waiting for a fetch slot.
    Queued,
    InFlight,
    /// Failed; queued again at `until`.
    Waiting {
        until: Instant,
    },
    Done(Bytes),
}

#[derive(Clone, Debug)]
struct Entry {
    duration_us: u64,
    uri: String,
    /// Media is missing right before this segment (or upstream said so).
    discontinuity: bool,
    /// Fetches started so far.
    attempts: u32,
    state: State,
}

/// A fetched segment leaving the queue, next in upstream order.
#[derive(Debug)]
pub(super) struct Fetched {
    pub(super) duration_us: u64,
    pub(super) discontinuity: bool,
    pub(super) bytes: Bytes,
}

/// Pending upstream segments keyed by upstream number. Keys only grow within one queue
/// lifetime: the session drains the queue completely before upstream numbering may
/// restart.
#[derive(Debug, Default)]
pub(super) struct FetchQueue {
    entries: BTreeMap<u64, Entry>,
    in_flight: usize,
    /// Media is missing after the last entry (or before the next one pushed, when empty).
    gap_after_last: bool,
}

impl FetchQueue {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a fetch of `upstream_seq` is in flight.
    pub(super) fn is_in_flight(&self, upstream_seq: u64) -> bool {
        self.entries
            .get(&upstream_seq)
            .is_some_and(|entry| matches!(entry.state, State::InFlight))
    }

    /// Fetches of `upstream_seq` started so far (0 when unknown).
    pub(super) fn attempts(&self, upstream_seq: u64) -> u32 {
        self.entries
            .get(&upstream_seq)
            .map_or(0, |entry| entry.attempts)
    }

    /// Media is missing between what is queued now and what is pushed next.
    pub(super) fn mark_gap(&mut self) {
        self.gap_after_last = true;
    }

    /// Queues an upstream segment behind the others. Callers push increasing numbers;
    /// one not above the newest queued is ignored.
    pub(super) fn push(&mut self, upstream_seq: u64, segment: &UpstreamSegment) {
        if self
            .entries
            .last_key_value()
            .is_some_and(|(&last, _)| last >= upstream_seq)
        {
            return;
        }
        let discontinuity = segment.discontinuity || std::mem::take(&mut self.gap_after_last);
        self.entries.insert(
            upstream_seq,
            Entry {
                duration_us: segment.duration_us,
                uri: segment.uri.clone(),
                discontinuity,
                attempts: 0,
                state: State::Queued,
            },
        );
    }

    /// Starts the fetch of the oldest queued segment: its number and URI.
    pub(super) fn start_next(&mut self) -> Option<(u64, String)> {
        let (&upstream_seq, entry) = self
            .entries
            .iter_mut()
            .find(|(_, entry)| matches!(entry.state, State::Queued))?;
        entry.state = State::InFlight;
        entry.attempts = entry.attempts.saturating_add(1);
        self.in_flight += 1;
        Some((upstream_seq, entry.uri.clone()))
    }

    /// The fetch of `upstream_seq` (in flight) returned `bytes`.
    pub(super) fn complete(&mut self, upstream_seq: u64, bytes: Bytes) {
        self.land(upstream_seq, State::Done(bytes));
    }

    /// The fetch of `upstream_seq` (in flight) failed; it is tried again at `until`.
    pub(super) fn retry_at(&mut self, upstream_seq: u64, until: Instant) {
        self.land(upstream_seq, State::Waiting { until });
    }

    fn land(&mut self, upstream_seq: u64, state: State) {
        if let Some(entry) = self.entries.get_mut(&upstream_seq) {
            if matches!(entry.state, State::InFlight) {
                self.in_flight -= 1;
                entry.state = state;
            }
        }
    }

    /// Gives `upstream_seq` up: media is missing where it was.
    pub(super) fn remove(&mut self, upstream_seq: u64) {
        let Some(entry) = self.entries.remove(&upstream_seq) else {
            return;
        };
        if matches!(entry.state, State::InFlight) {
            self.in_flight -= 1;
        }
        match self.entries.range_mut(upstream_seq..).next() {
            Some((_, next)) => next.discontinuity = true,
            None => self.gap_after_last = true,
        }
    }

    /// Segments waiting for a retry whose time has come are queued again.
    pub(super) fn wake(&mut self, now: Instant) {
        for entry in self.entries.values_mut() {
            if matches!(entry.state, State::Waiting { until } if until <= now) {
                entry.state = State::Queued;
            }
        }
    }

    /// The earliest retry.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|entry| match entry.state {
                State::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Removes the oldest segments not fetched nor being fetched until at most `max`
    /// entries are left (or none such is left); the numbers removed, oldest first.
    pub(super) fn trim(&mut self, max: usize) -> Vec<u64> {
        let excess = self.entries.len().saturating_sub(max);
        let victims: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| matches!(entry.state, State::Queued | State::Waiting { .. }))
            .map(|(&upstream_seq, _)| upstream_seq)
            .take(excess)
            .collect();
        for &upstream_seq in &victims {
            self.remove(upstream_seq);
        }
        victims
    }

    /// Removes every segment not fetched yet (queued, waiting or in flight): the ones
    /// fetched then leave through [`pop_fetched`](Self::pop_fetched), with gaps marked.
    pub(super) fn abandon_unfetched(&mut self) {
        let unfetched: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| !matches!(entry.state, State::Done(_)))
            .map(|(&upstream_seq, _)| upstream_seq)
            .collect();
        for upstream_seq in unfetched {
            self.remove(upstream_seq);
        }
    }

    /// The oldest segment, if it is fetched: it leaves the queue, to be served.
    pub(super) fn pop_fetched(&mut self) -> Option<Fetched> {
        let entry = self.entries.first_entry()?;
        if !matches!(entry.get().state, State::Done(_)) {
            return None;
        }
        let entry = entry.remove();
        let State::Done(bytes) = entry.state else {
            unreachable!("checked to be done just above");
        };
        Some(Fetched {
            duration_us: entry.duration_us,
            discontinuity: entry.discontinuity,
            bytes,
        })
    }
}
