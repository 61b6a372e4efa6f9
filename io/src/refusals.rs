//! The log of refusals at configured bounds: each refusal is counted at once
//! (`acemux_limit_hits_total{limit}`) and logged in one line per bound and second with
//! the count ([`RefusalTally`]), so a crowd at a limit is visible without a line per
//! connection.

use std::sync::Mutex;

use acemux_core::machine::Machine;
use acemux_core::refusals::{RefusalTally, Summary};
use tokio::sync::{watch, Notify};

use crate::clock::Clock;

/// How long each bound's refusals are summed before they are logged.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Tallied refusals and the wake-up of the task that logs them.
#[derive(Debug)]
pub struct RefusalLog {
    tally: Mutex<RefusalTally>,
    clock: Clock,
    wake: Notify,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            tally: Mutex::new(RefusalTally::new(WINDOW)),
            // Only durations are read off it.
            clock: Clock::new(0),
            wake: Notify::new(),
        }
    }
}

impl RefusalLog {
    fn tally(&self) -> std::sync::MutexGuard<'_, RefusalTally> {
        self.tally
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Notes one refusal at `limit`.
    pub fn refused(&self, limit: &'static str) {
        let mut tally = self.tally();
        let opens = tally.pending().all(|(open, _)| open != limit);
        tally.handle_input(self.clock.now(), limit);
        log_due(&mut tally);
        drop(tally);
        if opens {
            self.wake.notify_one();
        }
    }

    /// Logs each window as it closes, until `stopped`; then what is still counted.
    pub async fn run(&self, mut stopped: watch::Receiver<bool>) {
        loop {
            let deadline = self.tally().poll_timeout();
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stopped| *stopped) => break,
                () = self.wake.notified() => {}
                () = self.clock.sleep_until_earliest([deadline]) => {}
            }
            let mut tally = self.tally();
            tally.handle_timeout(self.clock.now());
            log_due(&mut tally);
        }
        let mut tally = self.tally();
        tally.flush(self.clock.now());
        log_due(&mut tally);
    }
}

fn log_due(tally: &mut RefusalTally) {
    while let Some(Summary {
        limit,
        count,
        window,
    }) = tally.poll_output()
    {
        tracing::warn!(
            limit,
            refused = count,
            ?window,
            "refused {count} at the {limit} bound ({}) in the last {window:?}",
            describe(limit)
        );
    }
}

/// What a bound is, in the words of its setting.
pub fn describe(limit: &str) -> &'static str {
    match limit {
        "connections" => "--max-connections",
        "channels" => "--max-channels",
        "viewers_per_channel" => "--max-viewers-per-channel",
        "join_wait" => "a busy channel could not take the viewer within --start-timeout",
        "hls_start_waiters" => "players waiting for a new HLS channel",
        "active_streams" => "--max-active-streams",
        "changes_in_flight" => "lifecycle changes in flight",
        _ => "a configured bound",
    }
}
