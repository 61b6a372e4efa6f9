//! The viewer table: each viewer's cursor and timer, with the indexes the fan-out asks
//! about on every delivery (the ready viewers, the next deadline) kept cheap enough to
//! update twice per viewer and batch, for thousands of viewers.
//!
//! A delivery and the `Ready` after it each change a viewer's timer, so the timer
//! indexes are what a crowd exercises most. They are two queues sorted by deadline,
//! one per timer kind, in which those changes land at the ends: a delivery sets a
//! stall deadline of `now` plus the stall timeout, the latest of all (appended), and
//! a `Ready` ends the earliest one of its batch (near the front) and sets a keepalive
//! deadline shared by the viewers handed the same batch (appended in their order).
//! Slow viewers only move their own entries further in.

use std::collections::{BTreeSet, HashMap, VecDeque};

use rustc_hash::FxBuildHasher;

use super::ViewerId;
use crate::time::Instant;

/// Timers of one viewer; which one runs follows from whether it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// In flight: drop it if no `Ready` arrives by the deadline.
    Stall,
    /// Ready and at the live edge, or waiting for a clean start: send null packets if
    /// nothing is handed out by the deadline.
    Keepalive,
}

/// One viewer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Viewer {
    /// Stream offset of the next byte to hand out; while `waiting`, its join point.
    pub(super) cursor: u64,
    /// Waiting for a clean start: nothing is handed out until it has one (and its
    /// cursor has moved there).
    pub(super) waiting: bool,
    /// When it was last handed something (or joined). Both timers count from here.
    pub(super) last_sent: Instant,
    /// Ready for more (nothing in flight). A ready viewer is at the live edge, and is
    /// handed data as soon as there is any, unless it is `waiting`.
    pub(super) ready: bool,
    /// The running timer and its deadline; none while the viewer awaits its first
    /// media (its driver bounds that wait).
    pub(super) timer: Option<(TimerKind, Instant)>,
}

impl Viewer {
    /// Ready and not waiting: handed data as soon as there is any.
    fn deliverable(&self) -> bool {
        self.ready && !self.waiting
    }
}

/// `(deadline, id)` entries of one timer kind, sorted.
#[derive(Debug, Default)]
struct Deadlines(VecDeque<(Instant, ViewerId)>);

impl Deadlines {
    fn insert(&mut self, entry: (Instant, ViewerId)) {
        if self.0.back().is_none_or(|last| *last < entry) {
            self.0.push_back(entry);
        } else {
            let at = self.0.partition_point(|probe| *probe < entry);
            self.0.insert(at, entry);
        }
    }

    fn remove(&mut self, entry: (Instant, ViewerId)) {
        if self.0.front() == Some(&entry) {
            self.0.pop_front();
            return;
        }
        let at = self.0.partition_point(|probe| *probe < entry);
        if self.0.get(at) == Some(&entry) {
            self.0.remove(at);
        }
    }

    fn first(&self) -> Option<Instant> {
        self.0.front().map(|&(deadline, _)| deadline)
    }

    /// The entries due at `now`.
    fn due(&self, now: Instant) -> impl Iterator<Item = (Instant, ViewerId)> + '_ {
        self.0
            .iter()
            .copied()
            .take_while(move |&(deadline, _)| deadline <= now)
    }
}

/// Viewers by id, plus the ready ones, the waiting ones and their deadlines.
#[derive(Debug, Default)]
pub(super) struct Viewers {
    /// Every viewer. Its order never shows: whatever is listed is sorted first.
    by_id: HashMap<ViewerId, Viewer, FxBuildHasher>,
    /// Deadlines of the viewers in flight, and of the ready ones.
    stalls: Deadlines,
    keepalives: Deadlines,
    /// Ids of viewers that became ready and not waiting, in no order and possibly
    /// stale (handed something since, or gone): [`Viewers::ready_ids`] sorts and checks
    /// them. Compacted when it grows past twice the viewers.
    ready: Vec<ViewerId>,
    /// Ids of the viewers waiting for a clean start.
    waiting: BTreeSet<ViewerId>,
}

impl Viewers {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn get(&self, id: ViewerId) -> Option<&Viewer> {
        self.by_id.get(&id)
    }

    fn deadlines(&mut self, kind: TimerKind) -> &mut Deadlines {
        match kind {
            TimerKind::Stall => &mut self.stalls,
            TimerKind::Keepalive => &mut self.keepalives,
        }
    }

    fn index(&mut self, id: ViewerId, old: Option<&Viewer>, new: Option<&Viewer>) {
        let (old_timer, new_timer) = (old.and_then(|v| v.timer), new.and_then(|v| v.timer));
        if old_timer != new_timer {
            if let Some((kind, deadline)) = old_timer {
                self.deadlines(kind).remove((deadline, id));
            }
            if let Some((kind, deadline)) = new_timer {
                self.deadlines(kind).insert((deadline, id));
            }
        }
        let (was_ready, is_ready) = (
            old.is_some_and(Viewer::deliverable),
            new.is_some_and(Viewer::deliverable),
        );
        if is_ready && !was_ready {
            self.ready.push(id);
            if self.ready.len() > 2 * self.by_id.len() + 64 {
                self.compact_ready();
            }
        }
        let (was_waiting, is_waiting) = (
            old.is_some_and(|v| v.waiting),
            new.is_some_and(|v| v.waiting),
        );
        if is_waiting != was_waiting {
            if is_waiting {
                self.waiting.insert(id);
            } else {
                self.waiting.remove(&id);
            }
        }
    }

    /// Adds (or replaces) `id`.
    pub(super) fn insert(&mut self, id: ViewerId, viewer: Viewer) {
        let old = self.by_id.insert(id, viewer);
        self.index(id, old.as_ref(), Some(&viewer));
    }

    /// Removes `id`, returning it when it was there.
    pub(super) fn remove(&mut self, id: ViewerId) -> Option<Viewer> {
        let viewer = self.by_id.remove(&id)?;
        self.index(id, Some(&viewer), None);
        Some(viewer)
    }

    /// Changes `id` through `change`, keeping the indexes in step (touching only those
    /// whose key changed). Nothing happens when `id` is not there.
    pub(super) fn update(&mut self, id: ViewerId, change: impl FnOnce(&mut Viewer)) {
        let Some(viewer) = self.by_id.get_mut(&id) else {
            return;
        };
        let old = *viewer;
        change(viewer);
        let new = *viewer;
        self.index(id, Some(&old), Some(&new));
    }

    /// Ids of the ready viewers that are not waiting for a clean start, in id order.
    pub(super) fn ready_ids(&mut self) -> Vec<ViewerId> {
        self.compact_ready();
        self.ready.clone()
    }

    /// Sorts the ready list and keeps only the viewers that are ready now, once each.
    fn compact_ready(&mut self) {
        let by_id = &self.by_id;
        // Readys arrive about in id order: the stable sort finds the runs.
        self.ready.sort();
        self.ready.dedup();
        self.ready
            .retain(|id| by_id.get(id).is_some_and(Viewer::deliverable));
    }

    /// Ids of the viewers waiting for a clean start, in id order.
    pub(super) fn waiting_ids(&self) -> Vec<ViewerId> {
        self.waiting.iter().copied().collect()
    }

    /// Ids of the viewers whose cursor is before `offset`, in cursor order. A scan: it
    /// runs when the ring drops data, once per arrival at most, which costs less than
    /// keeping an index by cursor in step with every delivery.
    pub(super) fn before(&self, offset: u64) -> Vec<ViewerId> {
        let mut behind: Vec<(u64, ViewerId)> = self
            .by_id
            .iter()
            .filter(|(_, viewer)| viewer.cursor < offset)
            .map(|(&id, viewer)| (viewer.cursor, id))
            .collect();
        behind.sort_unstable();
        behind.into_iter().map(|(_, id)| id).collect()
    }

    /// Ids of the viewers whose timer is due at `now`, in deadline order.
    pub(super) fn due(&self, now: Instant) -> Vec<ViewerId> {
        let mut due: Vec<(Instant, ViewerId)> = self
            .stalls
            .due(now)
            .chain(self.keepalives.due(now))
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Ids of every viewer, in id order.
    pub(super) fn ids(&self) -> Vec<ViewerId> {
        let mut ids: Vec<ViewerId> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The earliest deadline of any viewer.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match (self.stalls.first(), self.keepalives.first()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
