//! The answers remembered by idempotency key: a request that repeats a key gets the
//! first answer again instead of being applied twice.

use std::collections::{BTreeMap, VecDeque};

use super::Outcome;

/// Keys remembered by default: request keys and the ids of the events this process
/// emitted (its own webhook deliveries carry them), so a webhook pointing back at the
/// same process finds its own events even when it lags by thousands of events.
pub const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 16_384;

/// Outcomes by idempotency key, bounded; the oldest key is forgotten first.
#[derive(Clone, Debug)]
pub struct IdempotencyCache {
    capacity: usize,
    by_key: BTreeMap<String, Outcome>,
    order: VecDeque<String>,
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        IdempotencyCache::new(DEFAULT_IDEMPOTENCY_CAPACITY)
    }
}

impl IdempotencyCache {
    /// A cache of at most `capacity` keys (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        IdempotencyCache {
            capacity,
            by_key: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The outcome first given under `key`.
    pub fn get(&self, key: &str) -> Option<&Outcome> {
        self.by_key.get(key)
    }

    /// Remembers `outcome` under `key` (a key already known keeps its place in line
    /// and takes the new outcome), forgetting the oldest keys beyond the capacity.
    pub fn insert(&mut self, key: String, outcome: Outcome) {
        if self.by_key.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::outcome_for;

    #[test]
    fn the_oldest_key_is_forgotten_first_and_a_repeat_keeps_its_place() {
        let mut cache = IdempotencyCache::new(2);
        cache.insert("a".into(), outcome_for("s1"));
        cache.insert("b".into(), outcome_for("s2"));
        cache.insert("a".into(), outcome_for("s3"));
        assert_eq!(cache.len(), 2);
        cache.insert("c".into(), outcome_for("s4"));
        assert!(cache.get("a").is_none(), "a was first in line");
        assert_eq!(cache.get("b").map(|o| o.stream.id.as_str()), Some("s2|p1"));
        assert_eq!(cache.get("c").map(|o| o.stream.id.as_str()), Some("s4|p1"));
        assert!(IdempotencyCache::new(0).is_empty());
    }
}
