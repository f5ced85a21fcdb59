//! When a leader may act, on its own monotonic clock: no I/O here.
//!
//! The database sets a lease's end to `its now + TTL` when it commits a
//! renewal, which is after the leader sent it. The leader counts its own
//! deadline from the moment it *sent* the renewal: `sent + TTL - margin`.
//! It acts only before that deadline, so it stops before the database can
//! hand the lease to another, as long as its clock does not run slower than
//! the database's by more than `margin / TTL` (about 17% with the defaults:
//! 0.5 s of 3 s). Monotonic clocks on one machine or across NTP-disciplined
//! machines differ in rate by parts per million; a paused process (a stopped
//! VM, SIGSTOP) is the real danger, and then the write fence catches what
//! the clock cannot: a deposed leader's transaction finds no lease row with
//! its term and writes nothing.

use std::time::Instant;

use super::{LeaseSettings, Term};

/// A coordinator's view of its own role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not leading: serves "who leads" and tries to take over.
    Standby,
    /// Leading `term` until `until` unless renewed before.
    Leader {
        /// The term the database issued.
        term: Term,
        /// The local deadline (exclusive).
        until: Instant,
    },
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// A renewal or a fenced write found another term: deposed.
    Deposed,
    /// No renewal got through before the local deadline.
    Expired,
}

/// The leadership state machine of one coordinator.
#[derive(Debug, Clone)]
pub struct Leadership {
    settings: LeaseSettings,
    role: Role,
}

impl Leadership {
    /// A standby.
    pub fn new(settings: LeaseSettings) -> Self {
        Leadership {
            settings,
            role: Role::Standby,
        }
    }

    /// The role now (a leader past its deadline is still reported as one
    /// until [`Self::check`] steps it down).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.settings.ttl - self.settings.margin
    }

    /// The database gave us the lease for `term`; the request left at `sent`.
    pub fn acquired(&mut self, term: Term, sent: Instant) {
        self.role = Role::Leader {
            term,
            until: self.deadline(sent),
        };
    }

    /// The database renewed our lease; the request left at `sent`. A
    /// renewal answered after we stepped down changes nothing: we may have
    /// stopped acting already, and a new acquire gives a new term.
    pub fn renewed(&mut self, sent: Instant) {
        if let Role::Leader { term, until } = self.role {
            self.role = Role::Leader {
                term,
                until: until.max(self.deadline(sent)),
            };
        }
    }

    /// A renewal or a fenced write found the lease held by another term.
    pub fn deposed(&mut self) -> Option<StepDown> {
        self.step_down(StepDown::Deposed)
    }

    fn step_down(&mut self, why: StepDown) -> Option<StepDown> {
        match self.role {
            Role::Leader { .. } => {
                self.role = Role::Standby;
                Some(why)
            }
            Role::Standby => None,
        }
    }

    /// Steps down a leader whose deadline has passed; returns why it did.
    pub fn check(&mut self, now: Instant) -> Option<StepDown> {
        match self.role {
            Role::Leader { until, .. } if now >= until => self.step_down(StepDown::Expired),
            _ => None,
        }
    }

    /// The term to act under at `now`: only a leader before its deadline.
    pub fn acting(&self, now: Instant) -> Option<Term> {
        match self.role {
            Role::Leader { term, until } if now < until => Some(term),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings::default()
    }

    #[test]
    fn a_leader_acts_until_ttl_less_margin_after_it_sent_the_request() {
        let t0 = Instant::now();
        let mut l = Leadership::new(settings());
        assert_eq!(l.acting(t0), None);
        l.acquired(Term(4), t0);
        assert_eq!(l.acting(t0 + Duration::from_millis(2_499)), Some(Term(4)));
        assert_eq!(l.acting(t0 + Duration::from_millis(2_500)), None);
        assert_eq!(l.check(t0 + Duration::from_millis(2_499)), None);
        assert_eq!(
            l.check(t0 + Duration::from_millis(2_500)),
            Some(StepDown::Expired)
        );
        assert_eq!(l.role(), Role::Standby);
        assert_eq!(l.check(t0 + Duration::from_secs(9)), None);
    }

    #[test]
    fn renewals_extend_from_when_they_were_sent_and_never_shorten() {
        let t0 = Instant::now();
        let mut l = Leadership::new(settings());
        l.acquired(Term(1), t0);
        l.renewed(t0 + Duration::from_secs(1));
        assert_eq!(l.acting(t0 + Duration::from_millis(3_400)), Some(Term(1)));
        // A slow answer to an older renewal does not pull the deadline in.
        l.renewed(t0 + Duration::from_millis(500));
        assert_eq!(l.acting(t0 + Duration::from_millis(3_400)), Some(Term(1)));
        assert_eq!(l.acting(t0 + Duration::from_millis(3_500)), None);
    }

    #[test]
    fn a_deposed_leader_stops_at_once_and_a_late_renewal_does_not_revive_it() {
        let t0 = Instant::now();
        let mut l = Leadership::new(settings());
        l.acquired(Term(2), t0);
        assert_eq!(l.deposed(), Some(StepDown::Deposed));
        assert_eq!(l.acting(t0), None);
        l.renewed(t0 + Duration::from_secs(1));
        assert_eq!(l.role(), Role::Standby);
        assert_eq!(l.deposed(), None);
    }

    #[test]
    fn settings_that_leave_no_second_renewal_are_refused() {
        assert!(LeaseSettings::default().check().is_ok());
        let tight = LeaseSettings {
            ttl: Duration::from_secs(2),
            renew_every: Duration::from_secs(1),
            margin: Duration::from_millis(500),
        };
        assert!(tight.check().is_err());
        let no_margin = LeaseSettings {
            margin: Duration::from_secs(3),
            ..LeaseSettings::default()
        };
        assert!(no_margin.check().is_err());
    }
}
