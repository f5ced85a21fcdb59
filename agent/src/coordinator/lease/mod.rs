//! Leadership among several coordinators on one PostgreSQL: a lease row
//! (holder, term, expiry) that the database issues and times.
//!
//! - The term grows at every change of holder; it is the database's, never
//!   a coordinator's own count, so two coordinators cannot both believe
//!   they hold the same term (River #197).
//! - The leader renews about every second with a TTL of about 3 s. A
//!   renewal that changes no row means another coordinator holds the lease:
//!   the leader stops acting at once.
//! - A leader that cannot renew stops acting before its lease ends on the
//!   database's clock (see [`timing`] for what that assumes of clocks).
//! - Every write transaction of the leader first locks the lease row, shared,
//!   where it still names the leader's term: a deposed leader's transaction
//!   finds no row and writes nothing, and a takeover waits for the
//!   transactions already past that check (see [`pg::FENCE`]).

pub mod pg;
pub mod timing;

use std::time::Duration;

/// A leadership term, issued by the database: 1 for the first leader, one
/// more at each change of holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lease settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease lasts after a renewal, on the database's clock.
    pub ttl: Duration,
    /// How often the leader renews (and a standby tries to take over).
    pub renew_every: Duration,
    /// How much before the end of its lease (measured on its own clock,
    /// from when it sent the renewal) a leader that could not renew stops.
    pub margin: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            margin: Duration::from_millis(500),
        }
    }
}

impl LeaseSettings {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_every.is_zero() || self.ttl.is_zero() {
            return Err("the lease TTL and renewal period must be above zero".into());
        }
        if self.margin >= self.ttl {
            return Err(format!(
                "the lease margin ({:?}) must be below its TTL ({:?})",
                self.margin, self.ttl
            ));
        }
        if self.renew_every * 2 > self.ttl - self.margin {
            return Err(format!(
                "renewing every {:?} leaves no second try within a TTL of {:?} less a margin of {:?}",
                self.renew_every, self.ttl, self.margin
            ));
        }
        Ok(())
    }
}

/// Who holds the lease, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The holder's identity (name and incarnation), empty before any.
    pub holder: String,
    /// The holder's coordinator name.
    pub name: String,
    /// Where clients reach the holder (host:port).
    pub address: String,
    /// The current term (0 before any leader).
    pub term: Term,
    /// Milliseconds until the lease expires, on the database's clock
    /// (negative: expired that long ago).
    pub expires_in_ms: i64,
}
