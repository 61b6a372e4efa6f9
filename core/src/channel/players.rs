//! HLS players of a channel: present while they request, told apart by a token.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::{Duration, Instant};

/// The players seen, with the time of their last request, bounded in number.
#[derive(Debug, Default)]
pub(super) struct Players {
    /// Players by token, with the time of their last request…
    seen: BTreeMap<String, Instant>,
    /// …and the same ordered by that time.
    by_seen: BTreeSet<(Instant, String)>,
}

impl Players {
    /// Players present now.
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Player `token` requested something at `now`; whether it is a new player (one
    /// beyond `max` is not tracked: it counts as present through the others).
    pub(super) fn seen(&mut self, token: String, now: Instant, max: usize) -> bool {
        match self.seen.get(&token).copied() {
            Some(before) => {
                self.by_seen.remove(&(before, token.clone()));
                self.by_seen.insert((now, token.clone()));
                self.seen.insert(token, now);
                false
            }
            None if self.seen.len() >= max => false,
            None => {
                self.by_seen.insert((now, token.clone()));
                self.seen.insert(token, now);
                true
            }
        }
    }

    /// Every player counts as seen at `now` (players that waited for the first
    /// playlist start their idle clock when they are answered).
    pub(super) fn refresh_all(&mut self, now: Instant) {
        let tokens: Vec<String> = self.seen.keys().cloned().collect();
        for token in tokens {
            self.seen(token, now, usize::MAX);
        }
    }

    /// When the quietest player expires after `idle_timeout`.
    pub(super) fn expiry(&self, idle_timeout: Duration) -> Option<Instant> {
        self.by_seen.first().map(|(seen, _)| *seen + idle_timeout)
    }

    /// Forgets the players quiet for `idle_timeout` at `now`; whether any went.
    pub(super) fn expire(&mut self, now: Instant, idle_timeout: Duration) -> bool {
        let mut expired = false;
        while let Some((seen, token)) = self.by_seen.first().cloned() {
            if seen + idle_timeout > now {
                break;
            }
            self.by_seen.remove(&(seen, token.clone()));
            self.seen.remove(&token);
            expired = true;
        }
        expired
    }

    /// Forgets every player.
    pub(super) fn clear(&mut self) {
        self.seen.clear();
        self.by_seen.clear();
    }
}
