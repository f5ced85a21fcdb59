//! Reply bytes the server may hold at once: a global budget shared by every
//! connection and one per connection. An encoded reply is charged to both
//! before it is written and released when the write ends, whatever its
//! outcome (the charge is a pair of semaphore permits, released on drop).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of bytes (a semaphore whose permits are bytes).
#[derive(Debug, Clone)]
struct Bytes {
    sem: Arc<Semaphore>,
    /// The whole budget, in permits.
    size: u32,
}

impl Bytes {
    fn new(size: usize) -> Self {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        Bytes {
            sem: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    /// Takes `len` bytes, or the whole budget for a reply larger than it (so
    /// that any frame can go when nothing else is held): `None` when not
    /// available now.
    fn take(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(len).unwrap_or(u32::MAX).min(self.size);
        self.sem.clone().try_acquire_many_owned(n).ok()
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

/// The coordinator's budget, shared by all connections.
#[derive(Debug, Clone)]
pub struct GlobalBudget(Bytes);

impl GlobalBudget {
    /// A budget of `bytes` (0: unlimited, see [`ConnectionBudget::reserve`]).
    pub fn new(bytes: usize) -> Self {
        GlobalBudget(Bytes::new(bytes))
    }

    /// A connection's budget of `bytes`, drawing on this one too.
    pub fn connection(&self, bytes: usize) -> ConnectionBudget {
        ConnectionBudget {
            global: self.0.clone(),
            own: Bytes::new(bytes),
        }
    }

    /// Bytes not charged now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.0.available()
    }
}

/// One connection's budget (cloned into each of its streams).
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    global: Bytes,
    own: Bytes,
}

/// Bytes charged to both budgets until dropped.
#[derive(Debug)]
pub struct Reserved {
    _own: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// The budgets cannot take a reply now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl ConnectionBudget {
    /// Charges `len` bytes to this connection and to the coordinator. A
    /// reply larger than a whole budget is charged the whole budget (it goes
    /// alone); a budget of 0 therefore charges nothing and never refuses.
    pub fn reserve(&self, len: usize) -> Result<Reserved, Exhausted> {
        let own = self.own.take(len).ok_or(Exhausted)?;
        let global = self.global.take(len).ok_or(Exhausted)?;
        Ok(Reserved {
            _own: own,
            _global: global,
        })
    }

    /// Bytes this connection may still charge (ignoring the global budget).
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.own.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_holds_at_most_its_budget_and_gets_it_back_on_drop() {
        let global = GlobalBudget::new(1000);
        let conn = global.connection(100);
        let a = conn.reserve(60).unwrap();
        assert_eq!(conn.reserve(60).unwrap_err(), Exhausted);
        let b = conn.reserve(40).unwrap();
        assert_eq!((conn.available(), global.available()), (0, 900));
        drop(a);
        assert_eq!((conn.available(), global.available()), (60, 960));
        drop(b);
        assert_eq!((conn.available(), global.available()), (100, 1000));
    }

    #[test]
    fn the_global_budget_caps_all_connections_together() {
        let global = GlobalBudget::new(100);
        let (c1, c2) = (global.connection(80), global.connection(80));
        let held = c1.reserve(70).unwrap();
        // c2 has room of its own, but the coordinator has not...
        assert_eq!(c2.reserve(40).unwrap_err(), Exhausted);
        // ...and a refusal by the global budget leaves nothing charged.
        assert_eq!(c2.available(), 80);
        assert_eq!(global.available(), 30);
        let small = c2.reserve(30).unwrap();
        drop((held, small));
        assert_eq!(global.available(), 100);
    }

    #[test]
    fn a_reply_larger_than_a_budget_goes_alone() {
        let global = GlobalBudget::new(1000);
        let conn = global.connection(100);
        // Charged the whole of each budget it exceeds.
        let big = conn.reserve(5000).unwrap();
        assert_eq!((conn.available(), global.available()), (0, 0));
        assert_eq!(conn.reserve(1).unwrap_err(), Exhausted);
        drop(big);
        let held = conn.reserve(1).unwrap();
        assert_eq!(conn.reserve(5000).unwrap_err(), Exhausted);
        drop(held);
    }

    #[test]
    fn a_budget_of_zero_is_no_limit() {
        let global = GlobalBudget::new(0);
        let conn = global.connection(0);
        let held: Vec<_> = (0..10).map(|_| conn.reserve(1 << 30).unwrap()).collect();
        assert_eq!(held.len(), 10);
    }
}
