//! What happens to a change whose commit failed: it is kept, in order, and committed
//! again until the store takes it. A change is never answered as done before it is
//! durable, and a later change is never durable before an earlier one (so the commit
//! watermark, and every webhook receiver, sees the log without holes).

use std::time::Duration;

/// The first wait after a failed commit.
pub const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two commit attempts.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// How long to wait before attempt `failures + 1`, after `failures` failed commits in a
/// row (at least 1): doubling from [`STORE_RETRY_FIRST`], capped at [`STORE_RETRY_MAX`].
pub fn store_retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    STORE_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(STORE_RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_first_wait_up_to_the_cap() {
        assert_eq!(store_retry_delay(0), STORE_RETRY_FIRST);
        assert_eq!(store_retry_delay(1), Duration::from_millis(100));
        assert_eq!(store_retry_delay(2), Duration::from_millis(200));
        assert_eq!(store_retry_delay(3), Duration::from_millis(400));
        assert_eq!(store_retry_delay(7), Duration::from_millis(5000));
        assert_eq!(store_retry_delay(u32::MAX), STORE_RETRY_MAX);
    }
}
