//! Reconnect delays: capped exponential backoff with jitter, as a pure
//! function (the randomness is an argument) so that the arithmetic is tested.

use std::time::Duration;

/// The first delay.
pub const BASE: Duration = Duration::from_millis(500);
/// No delay is longer than this.
pub const CAP: Duration = Duration::from_secs(30);

/// The delay before reconnect attempt `attempt` (0 = the first retry).
///
/// The un-jittered delay is `base * 2^attempt`, never more than `cap`
/// (`min`, not `max`: the cap is an upper bound). Jitter takes away up to
/// half of it, so consoles restarted together do not retry in lockstep:
/// `jitter` in `[0, 1]` maps to a delay in `[d/2, d]`. Values outside are clamped.
pub fn delay(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    let exp = base.saturating_mul(factor);
    let capped = exp.min(cap);
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let half = capped / 2;
    half + half.mul_f64(jitter)
}

/// [`delay`] with the default base and cap and a random jitter.
pub fn next_delay(attempt: u32) -> Duration {
    delay(attempt, BASE, CAP, fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_from_the_base() {
        assert_eq!(delay(0, BASE, CAP, 1.0), Duration::from_millis(500));
        assert_eq!(delay(1, BASE, CAP, 1.0), Duration::from_secs(1));
        assert_eq!(delay(3, BASE, CAP, 1.0), Duration::from_secs(4));
    }

    #[test]
    fn never_exceeds_the_cap() {
        for attempt in 0..200 {
            for j in [0.0, 0.5, 1.0] {
                assert!(delay(attempt, BASE, CAP, j) <= CAP, "attempt {attempt}");
            }
        }
        assert_eq!(delay(6, BASE, CAP, 1.0), CAP);
        assert_eq!(delay(u32::MAX, BASE, CAP, 1.0), CAP);
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        assert_eq!(delay(2, BASE, CAP, 0.0), Duration::from_secs(1));
        assert_eq!(delay(2, BASE, CAP, 0.5), Duration::from_millis(1500));
        assert_eq!(delay(2, BASE, CAP, 7.0), Duration::from_secs(2));
        assert_eq!(delay(2, BASE, CAP, -1.0), Duration::from_secs(1));
        assert_eq!(delay(2, BASE, CAP, f64::NAN), Duration::from_secs(1));
        for _ in 0..100 {
            let d = next_delay(4);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_zero_base_never_busy_loops_past_the_cap() {
        assert_eq!(delay(5, Duration::ZERO, CAP, 1.0), Duration::ZERO);
        assert_eq!(
            delay(5, BASE, Duration::from_secs(1), 1.0),
            Duration::from_secs(1)
        );
    }
}
