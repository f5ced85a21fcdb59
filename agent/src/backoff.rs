//! Reconnect delays: capped exponential backoff with jitter, as a pure
//! function. (tokio-console's reconnect once used `max` where `min` was
//! meant; the tests below pin the cap.)

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (0 = first retry):
/// `min(cap, base * 2^attempt)`, scaled by `0.5 + jitter / 2` where `jitter`
/// is uniform in [0, 1), so that a fleet of workers does not reconnect in
/// lockstep after a coordinator restart.
pub fn delay(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(30)));
    let capped = exp.min(cap);
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn grows_exponentially_then_stays_at_the_cap() {
        assert_eq!(delay(0, BASE, CAP, 1.0), Duration::from_millis(100));
        assert_eq!(delay(1, BASE, CAP, 1.0), Duration::from_millis(200));
        assert_eq!(delay(5, BASE, CAP, 1.0), Duration::from_millis(3200));
        assert_eq!(delay(6, BASE, CAP, 1.0), CAP);
        assert_eq!(delay(1000, BASE, CAP, 1.0), CAP);
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        for attempt in 0..40 {
            let lo = delay(attempt, BASE, CAP, 0.0);
            let hi = delay(attempt, BASE, CAP, 1.0);
            assert!(
                lo * 2 == hi || (hi - lo * 2) <= Duration::from_nanos(1),
                "{attempt}: {lo:?} {hi:?}"
            );
            assert!(hi <= CAP);
            assert!(
                delay(attempt, BASE, CAP, 7.0) <= CAP,
                "out-of-range jitter is clamped"
            );
        }
    }
}
