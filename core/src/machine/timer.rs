//! Timers as data: a table of deadlines indexed by a fieldless enum (one per kind of
//! timer a machine runs), and a queue of deadlines keyed by id (one per viewer, request
//! or player).

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

/// A fieldless enum naming the timers of one machine.
pub trait TimerKind: Copy + Eq + std::fmt::Debug + 'static {
    /// Every kind, in the order in which due timers fire.
    const ALL: &'static [Self];

    /// The kind's position in [`ALL`](Self::ALL).
    fn index(self) -> usize;
}

/// One optional deadline per timer kind; the machine's next wake-up is their minimum.
#[derive(Clone, Debug)]
pub struct TimerTable<K: TimerKind> {
    deadlines: Vec<Option<Instant>>,
    _kinds: std::marker::PhantomData<K>,
}

impl<K: TimerKind> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            deadlines: vec![None; K::ALL.len()],
            _kinds: std::marker::PhantomData,
        }
    }
}

impl<K: TimerKind> TimerTable<K> {
    /// Arms `kind` for `at`, replacing its deadline if it ran.
    pub fn set(&mut self, kind: K, at: Instant) {
        self.deadlines[kind.index()] = Some(at);
    }

    /// Disarms `kind`.
    pub fn clear(&mut self, kind: K) {
        self.deadlines[kind.index()] = None;
    }

    /// Disarms every timer.
    pub fn clear_all(&mut self) {
        self.deadlines.fill(None);
    }

    /// The deadline of `kind`, if it runs.
    pub fn get(&self, kind: K) -> Option<Instant> {
        self.deadlines[kind.index()]
    }

    /// Whether `kind` runs.
    pub fn is_set(&self, kind: K) -> bool {
        self.get(kind).is_some()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms `kind` and says `true` when it was due at `now`; otherwise leaves it.
    pub fn take_due(&mut self, kind: K, now: Instant) -> bool {
        let due = self.get(kind).is_some_and(|deadline| deadline <= now);
        if due {
            self.clear(kind);
        }
        due
    }
}

/// Deadlines keyed by id, at most one per id; the earliest is found without a scan.
#[derive(Clone, Debug)]
pub struct Deadlines<Id: Ord + Copy> {
    by_id: BTreeMap<Id, Instant>,
    by_deadline: BTreeSet<(Instant, Id)>,
}

impl<Id: Ord + Copy> Default for Deadlines<Id> {
    fn default() -> Self {
        Deadlines {
            by_id: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }
}

impl<Id: Ord + Copy> Deadlines<Id> {
    /// Arms `id`'s deadline for `at`, replacing the one it had.
    pub fn set(&mut self, id: Id, at: Instant) {
        if let Some(old) = self.by_id.insert(id, at) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((at, id));
    }

    /// Disarms `id`'s deadline; returns it when it ran.
    pub fn remove(&mut self, id: Id) -> Option<Instant> {
        let at = self.by_id.remove(&id)?;
        self.by_deadline.remove(&(at, id));
        Some(at)
    }

    /// `id`'s deadline.
    pub fn get(&self, id: Id) -> Option<Instant> {
        self.by_id.get(&id).copied()
    }

    /// Whether `id` has a deadline.
    pub fn contains(&self, id: Id) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    /// Removes and returns the id with the earliest deadline, if that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Id> {
        let &(at, id) = self.by_deadline.first()?;
        if at > now {
            return None;
        }
        self.remove(id);
        Some(id)
    }

    /// Ids with a deadline, in id order.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.by_id.keys().copied()
    }

    /// How many ids have a deadline.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id has a deadline.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Disarms every deadline.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.by_deadline.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        A,
        B,
    }

    impl TimerKind for Kind {
        const ALL: &'static [Self] = &[Kind::A, Kind::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    #[test]
    fn the_table_wakes_at_its_earliest_deadline_and_fires_only_due_timers() {
        let mut timers = TimerTable::<Kind>::default();
        assert_eq!(timers.next(), None);
        timers.set(Kind::B, at(20));
        timers.set(Kind::A, at(30));
        assert_eq!(timers.next(), Some(at(20)));
        assert!(!timers.take_due(Kind::A, at(25)));
        assert!(timers.take_due(Kind::B, at(25)));
        assert!(!timers.is_set(Kind::B));
        assert_eq!(timers.next(), Some(at(30)));
        timers.clear_all();
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn keyed_deadlines_pop_in_deadline_order_and_replace_per_id() {
        let mut deadlines = Deadlines::<u32>::default();
        deadlines.set(1, at(50));
        deadlines.set(2, at(10));
        deadlines.set(1, at(5));
        assert_eq!(deadlines.len(), 2);
        assert_eq!(deadlines.next(), Some(at(5)));
        assert_eq!(deadlines.pop_due(at(4)), None);
        assert_eq!(deadlines.pop_due(at(10)), Some(1));
        assert_eq!(deadlines.pop_due(at(10)), Some(2));
        assert_eq!(deadlines.pop_due(at(10)), None);
        assert!(deadlines.is_empty());
    }
}
