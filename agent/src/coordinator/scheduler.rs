//! Placement: which ready worker takes a recording. Pure, so it is tested
//! without a fleet.

use std::collections::BTreeMap;

use recfleet_protocol::WorkerName;

/// A worker as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its name.
    pub name: &'a WorkerName,
    /// Capacity units offered.
    pub capacity: u32,
    /// Units in use.
    pub used: u32,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
}

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

/// Picks the worker for a recording of `cost` units requiring `labels`,
/// spreading load: the most free capacity (as a fraction) wins, then the
/// fewest units in use, then the name (so the choice is deterministic).
/// `avoid` is skipped when another worker fits (e.g. the one that just failed).
pub fn pick<'a>(
    candidates: &[Candidate<'a>],
    labels: &BTreeMap<String, String>,
    cost: u32,
    avoid: Option<&WorkerName>,
) -> Result<&'a WorkerName, NoPlace> {
    if candidates.is_empty() {
        return Err(NoPlace::NoWorkers);
    }
    let matching: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
        .collect();
    if matching.is_empty() {
        return Err(NoPlace::NoLabelMatch);
    }
    let fitting: Vec<&Candidate<'a>> = matching
        .into_iter()
        .filter(|c| c.capacity.saturating_sub(c.used) >= cost)
        .collect();
    let preferred: Vec<&Candidate<'a>> = match avoid {
        Some(a) if fitting.iter().any(|c| c.name != a) => {
            fitting.iter().copied().filter(|c| c.name != a).collect()
        }
        _ => fitting,
    };
    preferred
        .into_iter()
        .min_by(|a, b| {
            // Compare free fractions without floats: fa/ca vs fb/cb.
            let fa = u64::from(a.capacity - a.used) * u64::from(b.capacity.max(1));
            let fb = u64::from(b.capacity - b.used) * u64::from(a.capacity.max(1));
            fb.cmp(&fa)
                .then(a.used.cmp(&b.used))
                .then(a.name.cmp(b.name))
        })
        .map(|c| c.name)
        .ok_or(NoPlace::NoCapacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<WorkerName> {
        ["w1", "w2", "w3"]
            .iter()
            .map(|n| WorkerName::new(*n).unwrap())
            .collect()
    }

    #[test]
    fn spreads_across_workers() {
        let n = names();
        let none = BTreeMap::new();
        let mut used = [0u32, 0, 0];
        let mut placed = Vec::new();
        for _ in 0..6 {
            let cands: Vec<Candidate> = (0..3)
                .map(|i| Candidate {
                    name: &n[i],
                    capacity: 3,
                    used: used[i],
                    labels: &none,
                })
                .collect();
            let w = pick(&cands, &none, 1, None).unwrap();
            let i = n.iter().position(|x| x == w).unwrap();
            used[i] += 1;
            placed.push(w.to_string());
        }
        assert_eq!(placed, ["w1", "w2", "w3", "w1", "w2", "w3"]);
        assert_eq!(used, [2, 2, 2]);
    }

    #[test]
    fn labels_are_constraints_and_capacity_is_respected() {
        let n = names();
        let none = BTreeMap::new();
        let eu: BTreeMap<String, String> = [("zone".to_string(), "eu".to_string())].into();
        let cands = vec![
            Candidate {
                name: &n[0],
                capacity: 2,
                used: 0,
                labels: &none,
            },
            Candidate {
                name: &n[1],
                capacity: 2,
                used: 2,
                labels: &eu,
            },
        ];
        assert_eq!(pick(&cands, &eu, 1, None), Err(NoPlace::NoCapacity));
        let us: BTreeMap<String, String> = [("zone".to_string(), "us".to_string())].into();
        assert_eq!(pick(&cands, &us, 1, None), Err(NoPlace::NoLabelMatch));
        assert_eq!(pick(&cands, &none, 3, None), Err(NoPlace::NoCapacity));
        assert_eq!(pick(&[], &none, 1, None), Err(NoPlace::NoWorkers));
        assert_eq!(pick(&cands, &none, 2, None).unwrap().as_str(), "w1");
    }

    #[test]
    fn avoid_is_a_preference_not_a_rule() {
        let n = names();
        let none = BTreeMap::new();
        let one = vec![Candidate {
            name: &n[0],
            capacity: 2,
            used: 0,
            labels: &none,
        }];
        assert_eq!(pick(&one, &none, 1, Some(&n[0])).unwrap().as_str(), "w1");
        let two = vec![
            Candidate {
                name: &n[0],
                capacity: 2,
                used: 0,
                labels: &none,
            },
            Candidate {
                name: &n[1],
                capacity: 2,
                used: 1,
                labels: &none,
            },
        ];
        assert_eq!(pick(&two, &none, 1, Some(&n[0])).unwrap().as_str(), "w2");
    }
}
