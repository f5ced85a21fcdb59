//! When to try a webhook delivery again, and when to give up: pure
//! arithmetic over wall-clock milliseconds, so that it survives restarts
//! (the times are stored) and is tested without waiting.

use std::time::Duration;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry; doubled at each attempt after.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub cap: Duration,
    /// How long after the event attempts continue (then the delivery fails).
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this wall-clock time (ms).
    RetryAt(u64),
    /// The next attempt would fall after the retry window: the delivery
    /// has failed for good.
    GiveUp,
}

/// After attempt number `attempts` (1 = the first) of an event created at
/// `created_at` failed at `now` (all ms): when to try again. `jitter` is
/// uniform in [0, 1), so that deliveries that failed together (a receiver
/// that was down) do not all come back at once.
pub fn after_failure(
    policy: &RetryPolicy,
    created_at: u64,
    attempts: u32,
    now: u64,
    jitter: f64,
) -> AfterFailure {
    let delay = crate::backoff::delay(attempts.saturating_sub(1), policy.base, policy.cap, jitter);
    let next = now.saturating_add(delay.as_millis() as u64);
    let end = created_at.saturating_add(policy.window.as_millis() as u64);
    if next > end {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(next)
    }
}

/// Whether an HTTP status means delivered: any 2xx. Redirects are not
/// followed (a signed body is not re-sent elsewhere) and count as failures.
pub fn delivered(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn backs_off_exponentially_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(after_failure(&p, 0, 1, 0, 1.0), AfterFailure::RetryAt(S));
        assert_eq!(
            after_failure(&p, 0, 2, 0, 1.0),
            AfterFailure::RetryAt(2 * S)
        );
        assert_eq!(
            after_failure(&p, 0, 4, 10 * S, 1.0),
            AfterFailure::RetryAt(18 * S)
        );
        assert_eq!(
            after_failure(&p, 0, 30, 0, 1.0),
            AfterFailure::RetryAt(600 * S),
            "capped"
        );
        // jitter takes off at most half
        assert_eq!(
            after_failure(&p, 0, 1, 0, 0.0),
            AfterFailure::RetryAt(S / 2)
        );
    }

    #[test]
    fn gives_up_when_the_next_attempt_is_past_the_window() {
        let p = RetryPolicy {
            window: Duration::from_secs(3600),
            ..Default::default()
        };
        assert_eq!(
            after_failure(&p, 0, 20, 3000 * S, 1.0),
            AfterFailure::RetryAt(3600 * S)
        );
        assert_eq!(
            after_failure(&p, 0, 20, 3001 * S, 1.0),
            AfterFailure::GiveUp
        );
        // a day by default, about 150 attempts at the 10 minute cap
        assert_eq!(
            after_failure(&RetryPolicy::default(), 0, 150, 86_000 * S, 0.0),
            AfterFailure::RetryAt(86_300 * S)
        );
    }

    #[test]
    fn only_2xx_is_delivered() {
        assert!(delivered(200) && delivered(204) && delivered(299));
        assert!(!delivered(301) && !delivered(404) && !delivered(500) && !delivered(199));
    }
}
