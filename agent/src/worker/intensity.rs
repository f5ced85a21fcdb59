//! Restart intensity, as OTP supervisors count it: at most `max` restarts
//! within a sliding window of `period`; one more and the supervisor gives up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts restarts in a sliding window.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max: u32,
    period: Duration,
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    /// At most `max` restarts in `period`.
    pub fn new(max: u32, period: Duration) -> Self {
        RestartIntensity {
            max,
            period,
            recent: VecDeque::new(),
        }
    }

    /// Records a crash at `now`; returns whether a restart is still allowed.
    pub fn allow_restart(&mut self, now: Instant) -> bool {
        while let Some(oldest) = self.recent.front() {
            if now.duration_since(*oldest) >= self.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// The limit, for messages ("3 restarts in 60 s").
    pub fn describe(&self) -> String {
        format!("{} restarts in {} s", self.max, self.period.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_restarts_then_refuses() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(3, Duration::from_secs(60));
        assert!(r.allow_restart(t0));
        assert!(r.allow_restart(t0 + Duration::from_secs(1)));
        assert!(r.allow_restart(t0 + Duration::from_secs(2)));
        assert!(!r.allow_restart(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let t0 = Instant::now();
        let mut r = RestartIntensity::new(2, Duration::from_secs(10));
        assert!(r.allow_restart(t0));
        assert!(r.allow_restart(t0 + Duration::from_secs(5)));
        assert!(!r.allow_restart(t0 + Duration::from_secs(9)));
        // The first restart is now 10 s old: one slot frees up.
        assert!(r.allow_restart(t0 + Duration::from_secs(10)));
        assert!(!r.allow_restart(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn zero_means_never_restart() {
        let mut r = RestartIntensity::new(0, Duration::from_secs(10));
        assert!(!r.allow_restart(Instant::now()));
    }
}
