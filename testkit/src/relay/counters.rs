//! The relay's counters, read by the control API and by tests.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// One monotonically increasing count (or a gauge, for `active`).
#[derive(Debug, Default)]
pub(super) struct Count(AtomicU64);

impl Count {
    pub(super) fn add(&self, n: u64) {
        // Relaxed: each counter is read on its own; no ordering with other memory.
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(super) struct DirectionCounters {
    bytes: Count,
}

impl DirectionCounters {
    pub(super) fn add_bytes(&self, n: u64) {
        self.bytes.add(n);
    }
}

#[derive(Debug, Default)]
pub(super) struct FaultCounters {
    pub(super) latency: Count,
    pub(super) throttle: Count,
    pub(super) stall: Count,
    pub(super) cut: Count,
    pub(super) rst: Count,
    pub(super) refuse: Count,
    pub(super) partition_cut: Count,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) accepted: Count,
    pub(super) active: Count,
    pub(super) rejected_at_cap: Count,
    pub(super) upstream_failures: Count,
    pub(super) up: DirectionCounters,
    pub(super) down: DirectionCounters,
    pub(super) faults: FaultCounters,
}

/// A snapshot of the relay's counters (`GET /control/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RelayStats {
    /// Connections accepted (including refused ones).
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections closed at once because the relay was at its connection cap.
    pub connections_rejected_at_cap: u64,
    /// Connections whose upstream could not be reached.
    pub upstream_connect_failures: u64,
    /// Bytes forwarded client → upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: u64,
    /// Faults applied, by kind.
    pub faults: FaultStats,
}

/// Faults applied, by kind (latency and throttle count connection directions they
/// shaped; the others count events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FaultStats {
    /// Directions delayed.
    pub latency: u64,
    /// Directions throttled.
    pub throttle: u64,
    /// Stalls begun.
    pub stall: u64,
    /// Connections cut after a byte count.
    pub cut: u64,
    /// Connections reset after a byte count.
    pub rst: u64,
    /// Connections refused by a rule.
    pub refuse: u64,
    /// Open connections cut by the control API.
    pub partition_cut: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RelayStats {
        RelayStats {
            connections_accepted: self.accepted.get(),
            connections_active: self.active.get(),
            connections_rejected_at_cap: self.rejected_at_cap.get(),
            upstream_connect_failures: self.upstream_failures.get(),
            bytes_up: self.up.bytes.get(),
            bytes_down: self.down.bytes.get(),
            faults: FaultStats {
                latency: self.faults.latency.get(),
                throttle: self.faults.throttle.get(),
                stall: self.faults.stall.get(),
                cut: self.faults.cut.get(),
                rst: self.faults.rst.get(),
                refuse: self.faults.refuse.get(),
                partition_cut: self.faults.partition_cut.get(),
            },
        }
    }
}
