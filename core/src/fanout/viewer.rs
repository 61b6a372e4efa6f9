//! The viewer table: each viewer's cursor and timer, with the indexes that keep every
//! operation proportional to the viewers it concerns rather than to all of them.

use std::collections::{BTreeMap, BTreeSet};

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

/// Viewers by id, plus indexes by cursor, by deadline, of the ready ones and of the
/// waiting ones.
#[derive(Debug, Default)]
pub(super) struct Viewers {
    by_id: BTreeMap<ViewerId, Viewer>,
    /// `(cursor, id)` of every viewer: who fell out of the ring, without a scan.
    by_cursor: BTreeSet<(u64, ViewerId)>,
    /// `(deadline, id)` of every viewer: the next timer, and the due ones, without a scan.
    by_deadline: BTreeSet<(Instant, ViewerId)>,
    /// Ids of the ready viewers that are not waiting, which are all at the live edge.
    ready: BTreeSet<ViewerId>,
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

    /// Adds (or replaces) `id`.
    pub(super) fn insert(&mut self, id: ViewerId, viewer: Viewer) {
        self.remove(id);
        self.by_cursor.insert((viewer.cursor, id));
        if let Some((_, deadline)) = viewer.timer {
            self.by_deadline.insert((deadline, id));
        }
        if viewer.deliverable() {
            self.ready.insert(id);
        }
        if viewer.waiting {
            self.waiting.insert(id);
        }
        self.by_id.insert(id, viewer);
    }

    /// Removes `id`, returning it when it was there.
    pub(super) fn remove(&mut self, id: ViewerId) -> Option<Viewer> {
        let viewer = self.by_id.remove(&id)?;
        self.by_cursor.remove(&(viewer.cursor, id));
        if let Some((_, deadline)) = viewer.timer {
            self.by_deadline.remove(&(deadline, id));
        }
        self.ready.remove(&id);
        self.waiting.remove(&id);
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
        if old.cursor != new.cursor {
            self.by_cursor.remove(&(old.cursor, id));
            self.by_cursor.insert((new.cursor, id));
        }
        let (old_deadline, new_deadline) = (old.timer.map(|t| t.1), new.timer.map(|t| t.1));
        if old_deadline != new_deadline {
            if let Some(deadline) = old_deadline {
                self.by_deadline.remove(&(deadline, id));
            }
            if let Some(deadline) = new_deadline {
                self.by_deadline.insert((deadline, id));
            }
        }
        if old.deliverable() != new.deliverable() {
            if new.deliverable() {
                self.ready.insert(id);
            } else {
                self.ready.remove(&id);
            }
        }
        if old.waiting != new.waiting {
            if new.waiting {
                self.waiting.insert(id);
            } else {
                self.waiting.remove(&id);
            }
        }
    }

    /// Ids of the ready viewers that are not waiting for a clean start, in id order.
    pub(super) fn ready_ids(&self) -> Vec<ViewerId> {
        self.ready.iter().copied().collect()
    }

    /// Ids of the viewers waiting for a clean start, in id order.
    pub(super) fn waiting_ids(&self) -> Vec<ViewerId> {
        self.waiting.iter().copied().collect()
    }

    /// Ids of the viewers whose cursor is before `offset`, in cursor order.
    pub(super) fn before(&self, offset: u64) -> Vec<ViewerId> {
        self.by_cursor
            .range(..(offset, ViewerId(0)))
            .map(|&(_, id)| id)
            .collect()
    }

    /// Ids of the viewers whose timer is due at `now`, in deadline order.
    pub(super) fn due(&self, now: Instant) -> Vec<ViewerId> {
        self.by_deadline
            .range(..=(now, ViewerId(u64::MAX)))
            .map(|&(_, id)| id)
            .collect()
    }

    /// Ids of every viewer, in id order.
    pub(super) fn ids(&self) -> Vec<ViewerId> {
        self.by_id.keys().copied().collect()
    }

    /// The earliest deadline of any viewer.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }
}
