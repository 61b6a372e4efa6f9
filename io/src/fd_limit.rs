//! The process's file descriptor limit. Every viewer, player and engine connection is a
//! descriptor, and many systems still start processes with a soft limit of 1,024 under a
//! much higher hard limit: acemux raises its soft limit to the hard one at start, as
//! servers commonly do, and says when the result is below what its connection cap
//! needs.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors beyond the connection cap: the listener, engine connections, the
/// database, webhooks and the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The descriptor limit before and after [`raise`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// Soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// Soft limit in force now.
    pub soft: Option<u64>,
    /// Hard limit (`None`: unlimited).
    pub hard: Option<u64>,
    /// Why raising failed, when it did (the limit stays as it was).
    pub error: Option<String>,
}

impl FdLimit {
    /// Whether `connections` connections fit, with [`RESERVED_DESCRIPTORS`] to spare.
    pub fn fits(&self, connections: usize) -> bool {
        let needed = u64::try_from(connections)
            .unwrap_or(u64::MAX)
            .saturating_add(RESERVED_DESCRIPTORS);
        self.soft.is_none_or(|soft| soft >= needed)
    }

    /// Logs what was done: one line, a warning when `connections` do not fit.
    pub fn log(&self, connections: usize) {
        let show = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
        if let Some(error) = &self.error {
            tracing::warn!(
                soft = %show(self.soft),
                hard = %show(self.hard),
                %error,
                "cannot raise the file descriptor limit"
            );
        } else if self.before != self.soft {
            tracing::info!(
                from = %show(self.before),
                to = %show(self.soft),
                "raised the file descriptor limit to the hard limit"
            );
        }
        if !self.fits(connections) {
            tracing::warn!(
                soft = %show(self.soft),
                max_connections = connections,
                "the file descriptor limit is below --max-connections plus {RESERVED_DESCRIPTORS}: \
                 accepts fail at the limit before the connection cap answers 503; raise it \
                 (ulimit -n, or LimitNOFILE= in a systemd unit) or lower --max-connections"
            );
        }
    }
}

/// Raises this process's soft descriptor limit to its hard limit (inherited by the
/// processes it starts). Never fails: a limit it cannot read or raise is reported in
/// [`FdLimit::error`] and left as it is.
pub fn raise() -> FdLimit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let mut limit = FdLimit {
        before: current,
        soft: current,
        hard: maximum,
        error: None,
    };
    if current == maximum {
        return limit;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: maximum,
            maximum,
        },
    ) {
        Ok(()) => limit.soft = getrlimit(Resource::Nofile).current,
        Err(error) => limit.error = Some(error.to_string()),
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_limit() {
        let limit = raise();
        assert_eq!(limit.error, None);
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(getrlimit(Resource::Nofile).current, limit.hard);
        // A second call finds nothing to do.
        let again = raise();
        assert_eq!((again.before, again.soft), (limit.soft, limit.soft));
    }

    #[test]
    fn fits_counts_the_reserved_descriptors() {
        let limit = |soft| FdLimit {
            before: soft,
            soft,
            hard: soft,
            error: None,
        };
        assert!(limit(Some(1088)).fits(1024));
        assert!(!limit(Some(1087)).fits(1024));
        assert!(limit(None).fits(usize::MAX));
        assert!(!limit(Some(u64::MAX - 1)).fits(usize::MAX));
    }
}
