//! The capacity index: what every worker holds, kept current as recordings
//! change, so that placement is O(log workers) and never a scan of workers x
//! recordings. Pure; the fleet calls [`Placements::set_holds`] after every
//! change of a recording and [`Placements::set_eligible`] after every change
//! of a worker.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use recfleet_protocol::{RecordingId, WorkerName};

/// Why nothing could be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoPlace {
    /// No worker is ready at all.
    NoWorkers,
    /// No ready worker carries the required labels.
    NoLabelMatch,
    /// Matching workers exist but none has `cost` free units.
    NoCapacity,
}

impl NoPlace {
    /// For operators: why the recording waits.
    pub fn describe(&self) -> &'static str {
        match self {
            NoPlace::NoWorkers => "no worker is ready",
            NoPlace::NoLabelMatch => "no ready worker carries the required labels",
            NoPlace::NoCapacity => "waiting for capacity: every matching worker is full",
        }
    }
}

/// Capacity a recording holds on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The worker.
    pub worker: WorkerName,
    /// Units.
    pub cost: u32,
    /// A move target that has not taken over yet (it holds capacity, but
    /// the recording does not run "on" it).
    pub incoming: bool,
}

#[derive(Debug, Default)]
struct Load {
    used: u32,
    current: BTreeSet<RecordingId>,
}

/// Fixed-point free fraction: more free (relative to capacity) sorts first.
type FractionKey = (Reverse<u64>, u32, WorkerName);

/// The index.
#[derive(Debug, Default)]
pub struct Placements {
    holds: HashMap<RecordingId, Vec<Hold>>,
    load: HashMap<WorkerName, Load>,
    /// Connected, ready workers and their capacity.
    eligible: HashMap<WorkerName, u32>,
    by_fraction: BTreeSet<FractionKey>,
    by_free: BTreeSet<(u32, WorkerName)>,
    /// Each worker's keys in the two sets, to remove them exactly.
    keyed: HashMap<WorkerName, (FractionKey, (u32, WorkerName))>,
}

impl Placements {
    /// Units in use on `worker` (current placements and incoming moves).
    pub fn used(&self, worker: &WorkerName) -> u32 {
        self.load.get(worker).map_or(0, |l| l.used)
    }

    /// Recordings whose current placement holds capacity on `worker`.
    pub fn on(&self, worker: &WorkerName) -> Vec<RecordingId> {
        self.load
            .get(worker)
            .map(|l| l.current.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any eligible worker has `cost` units free.
    pub fn room_for(&self, cost: u32) -> bool {
        self.by_free.last().is_some_and(|(free, _)| *free >= cost)
    }

    /// Units offered and free on eligible workers.
    pub fn totals(&self) -> (u64, u64) {
        self.eligible.iter().fold((0, 0), |(c, f), (w, cap)| {
            (
                c + u64::from(*cap),
                f + u64::from(cap.saturating_sub(self.used(w))),
            )
        })
    }

    /// What `id` holds now.
    pub fn holds_of(&self, id: &RecordingId) -> &[Hold] {
        self.holds.get(id).map_or(&[], Vec::as_slice)
    }

    /// Replaces what `id` holds. Returns true when capacity was freed
    /// somewhere (the scheduler has something to try).
    pub fn set_holds(&mut self, id: &RecordingId, new: Vec<Hold>) -> bool {
        let old = self.holds.remove(id).unwrap_or_default();
        if old == new {
            if !new.is_empty() {
                self.holds.insert(id.clone(), new);
            }
            return false;
        }
        let mut freed = false;
        for h in &old {
            let load = self.load.entry(h.worker.clone()).or_default();
            load.used = load.used.saturating_sub(h.cost);
            if !h.incoming {
                load.current.remove(id);
            }
            freed |= h.cost > 0;
        }
        for h in &new {
            let load = self.load.entry(h.worker.clone()).or_default();
            load.used += h.cost;
            if !h.incoming {
                load.current.insert(id.clone());
            }
        }
        let touched: BTreeSet<WorkerName> = old
            .iter()
            .chain(new.iter())
            .map(|h| h.worker.clone())
            .collect();
        for w in touched {
            if self
                .load
                .get(&w)
                .is_some_and(|l| l.used == 0 && l.current.is_empty())
            {
                self.load.remove(&w);
            }
            self.reorder(&w);
        }
        if !new.is_empty() {
            self.holds.insert(id.clone(), new);
        }
        freed
    }

    /// A worker may take new recordings with `capacity` units (`None`: it
    /// may not: not connected, draining, ineligible).
    pub fn set_eligible(&mut self, worker: &WorkerName, capacity: Option<u32>) {
        match capacity {
            Some(c) => {
                self.eligible.insert(worker.clone(), c);
            }
            None => {
                self.eligible.remove(worker);
            }
        }
        self.reorder(worker);
    }

    fn keys(&self, worker: &WorkerName) -> Option<(FractionKey, (u32, WorkerName))> {
        let cap = *self.eligible.get(worker)?;
        let used = self.used(worker);
        let free = cap.saturating_sub(used);
        let fraction = (u64::from(free) << 32) / u64::from(cap.max(1));
        Some((
            (Reverse(fraction), used, worker.clone()),
            (free, worker.clone()),
        ))
    }

    /// Re-sorts one worker: O(log workers).
    fn reorder(&mut self, worker: &WorkerName) {
        if let Some((f, free)) = self.keyed.remove(worker) {
            self.by_fraction.remove(&f);
            self.by_free.remove(&free);
        }
        if let Some((f, free)) = self.keys(worker) {
            self.by_fraction.insert(f.clone());
            self.by_free.insert(free.clone());
            self.keyed.insert(worker.clone(), (f, free));
        }
    }

    /// The worker for a recording of `cost` units, spreading load: the most
    /// free capacity as a fraction wins, then the fewest units in use, then
    /// the name. `matches` says whether a worker carries the required labels
    /// (`None`: no labels required, the fast path). `except` is never
    /// chosen; `avoid` only when nothing else fits.
    pub fn pick(
        &self,
        cost: u32,
        matches: Option<&dyn Fn(&WorkerName) -> bool>,
        avoid: Option<&WorkerName>,
        except: Option<&WorkerName>,
    ) -> Result<WorkerName, NoPlace> {
        if self.eligible.is_empty() {
            return Err(NoPlace::NoWorkers);
        }
        if matches.is_none() && !self.room_for(cost) {
            return Err(NoPlace::NoCapacity);
        }
        let mut any_match = false;
        let mut fallback = None;
        for (_, used, w) in &self.by_fraction {
            if Some(w) == except {
                continue;
            }
            if let Some(m) = matches {
                if !m(w) {
                    continue;
                }
            }
            any_match = true;
            let cap = self.eligible.get(w).copied().unwrap_or(0);
            if cap.saturating_sub(*used) < cost {
                continue;
            }
            if Some(w) == avoid {
                fallback = Some(w.clone());
                continue;
            }
            return Ok(w.clone());
        }
        match (fallback, any_match) {
            (Some(w), _) => Ok(w),
            (None, false) if matches.is_some() => Err(NoPlace::NoLabelMatch),
            (None, false) => Err(NoPlace::NoWorkers),
            (None, true) => Err(NoPlace::NoCapacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: &str) -> WorkerName {
        WorkerName::new(n).unwrap()
    }
    fn r(n: usize) -> RecordingId {
        RecordingId::new(format!("r{n}")).unwrap()
    }
    fn hold(worker: &WorkerName, cost: u32) -> Vec<Hold> {
        vec![Hold {
            worker: worker.clone(),
            cost,
            incoming: false,
        }]
    }

    #[test]
    fn spreads_across_workers_and_frees_capacity() {
        let mut p = Placements::default();
        for n in ["w1", "w2", "w3"] {
            p.set_eligible(&w(n), Some(2));
        }
        let mut placed = Vec::new();
        for i in 0..6 {
            let to = p.pick(1, None, None, None).unwrap();
            p.set_holds(&r(i), hold(&to, 1));
            placed.push(to.to_string());
        }
        assert_eq!(placed, ["w1", "w2", "w3", "w1", "w2", "w3"]);
        assert_eq!(p.pick(1, None, None, None), Err(NoPlace::NoCapacity));
        assert_eq!(p.totals(), (6, 0));
        assert!(p.set_holds(&r(4), vec![]), "freeing capacity is reported");
        assert_eq!(p.pick(1, None, None, None).unwrap(), w("w2"));
        assert_eq!(p.on(&w("w1")), vec![r(0), r(3)]);
    }

    #[test]
    fn labels_avoid_and_except() {
        let mut p = Placements::default();
        assert_eq!(p.pick(1, None, None, None), Err(NoPlace::NoWorkers));
        p.set_eligible(&w("w1"), Some(2));
        p.set_eligible(&w("w2"), Some(2));
        let only_w2 = |n: &WorkerName| n.as_str() == "w2";
        let none = |_: &WorkerName| false;
        assert_eq!(p.pick(1, Some(&only_w2), None, None).unwrap(), w("w2"));
        assert_eq!(
            p.pick(1, Some(&none), None, None),
            Err(NoPlace::NoLabelMatch)
        );
        assert_eq!(p.pick(1, None, Some(&w("w1")), None).unwrap(), w("w2"));
        assert_eq!(p.pick(1, None, None, Some(&w("w1"))).unwrap(), w("w2"));
        // avoid is a preference: the only fitting worker is still chosen
        p.set_holds(&r(1), hold(&w("w2"), 2));
        assert_eq!(p.pick(1, None, Some(&w("w1")), None).unwrap(), w("w1"));
        assert_eq!(p.pick(3, None, None, None), Err(NoPlace::NoCapacity));
        // a drained worker takes nothing, but its load is still counted
        p.set_eligible(&w("w2"), None);
        assert_eq!(p.used(&w("w2")), 2);
        assert_eq!(
            p.pick(1, Some(&only_w2), None, None),
            Err(NoPlace::NoLabelMatch)
        );
    }

    #[test]
    fn an_incoming_move_holds_capacity_but_does_not_run_there() {
        let mut p = Placements::default();
        p.set_eligible(&w("w1"), Some(1));
        p.set_eligible(&w("w2"), Some(1));
        p.set_holds(
            &r(1),
            vec![
                Hold {
                    worker: w("w1"),
                    cost: 1,
                    incoming: false,
                },
                Hold {
                    worker: w("w2"),
                    cost: 1,
                    incoming: true,
                },
            ],
        );
        assert_eq!(p.used(&w("w2")), 1);
        assert!(p.on(&w("w2")).is_empty());
        assert_eq!(p.pick(1, None, None, None), Err(NoPlace::NoCapacity));
    }
}
