//! The recording state machine of DESIGN.md. Every allowed transition is in
//! [`RecordingState::can_become`]; everything else is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a recording is in its life.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Accepted, waiting for a worker with capacity.
    Pending,
    /// A worker was chosen and told to start.
    Assigned,
    /// The worker is bringing up the slot (display, browser, encoder).
    Starting,
    /// Frames are being captured.
    Recording,
    /// A stop was asked for; the worker is stopping the slot.
    Stopping,
    /// The last segment is being closed and the manifest written.
    Finalizing,
    /// Done; the manifest lists every segment.
    Completed,
    /// Ended without a usable recording (the reason is kept).
    Failed,
    /// Stopped before anything was captured.
    Cancelled,
    /// Its worker is gone; it waits to be placed again.
    Interrupted,
}

impl RecordingState {
    /// Every state, in lifecycle order.
    pub const ALL: [RecordingState; 10] = [
        RecordingState::Pending,
        RecordingState::Assigned,
        RecordingState::Starting,
        RecordingState::Recording,
        RecordingState::Stopping,
        RecordingState::Finalizing,
        RecordingState::Completed,
        RecordingState::Failed,
        RecordingState::Cancelled,
        RecordingState::Interrupted,
    ];

    /// Whether the recording can go from `self` to `next`. This is the one
    /// place where the lifecycle is defined.
    pub fn can_become(self, next: RecordingState) -> bool {
        use RecordingState::*;
        matches!(
            (self, next),
            (Pending, Assigned | Cancelled | Failed)
                // The worker refused or vanished before starting: place again.
                | (Assigned, Starting | Pending | Interrupted | Stopping | Cancelled | Failed)
                | (Starting, Recording | Interrupted | Stopping | Cancelled | Failed)
                | (Recording, Stopping | Interrupted | Failed)
                | (Stopping, Finalizing | Failed)
                | (Finalizing, Completed | Failed)
                // Placed again, or no capacity yet, or stopped while waiting:
                // what was captured before is finalized.
                | (Interrupted, Assigned | Pending | Finalizing | Cancelled | Failed)
        )
    }

    /// Moves to `next` if allowed.
    pub fn become_(self, next: RecordingState) -> Result<RecordingState, TransitionError> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }

    /// Completed, failed and cancelled are ends: nothing follows them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RecordingState::Completed | RecordingState::Failed | RecordingState::Cancelled
        )
    }

    /// Whether the recording occupies capacity on a worker in this state.
    pub fn holds_capacity(self) -> bool {
        matches!(
            self,
            RecordingState::Assigned
                | RecordingState::Starting
                | RecordingState::Recording
                | RecordingState::Stopping
        )
    }

    /// The lowercase name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Pending => "pending",
            RecordingState::Assigned => "assigned",
            RecordingState::Starting => "starting",
            RecordingState::Recording => "recording",
            RecordingState::Stopping => "stopping",
            RecordingState::Finalizing => "finalizing",
            RecordingState::Completed => "completed",
            RecordingState::Failed => "failed",
            RecordingState::Cancelled => "cancelled",
            RecordingState::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a recording cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The current state.
    pub from: RecordingState,
    /// The refused next state.
    pub to: RecordingState,
}

#[cfg(test)]
mod tests {
    use super::RecordingState::{self, *};

    /// The whole table, written out: a change to the lifecycle must change
    /// this test too.
    const ALLOWED: &[(RecordingState, &[RecordingState])] = &[
        (Pending, &[Assigned, Cancelled, Failed]),
        (
            Assigned,
            &[Pending, Starting, Stopping, Failed, Cancelled, Interrupted],
        ),
        (
            Starting,
            &[Recording, Stopping, Failed, Cancelled, Interrupted],
        ),
        (Recording, &[Stopping, Failed, Interrupted]),
        (Stopping, &[Finalizing, Failed]),
        (Finalizing, &[Completed, Failed]),
        (Completed, &[]),
        (Failed, &[]),
        (Cancelled, &[]),
        (
            Interrupted,
            &[Pending, Assigned, Finalizing, Failed, Cancelled],
        ),
    ];

    #[test]
    fn every_pair_is_as_the_table_says() {
        assert_eq!(ALLOWED.len(), RecordingState::ALL.len());
        for from in RecordingState::ALL {
            let allowed = ALLOWED.iter().find(|(s, _)| *s == from).unwrap().1;
            for to in RecordingState::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&to), "{from} -> {to}");
                assert_eq!(from.become_(to).is_ok(), allowed.contains(&to));
            }
        }
    }

    #[test]
    fn terminal_states_have_no_successor() {
        for s in RecordingState::ALL {
            let has_next = RecordingState::ALL.iter().any(|n| s.can_become(*n));
            assert_eq!(s.is_terminal(), !has_next, "{s}");
        }
    }

    #[test]
    fn every_state_reaches_an_end() {
        // From any non-terminal state some path leads to a terminal one: no
        // recording can be stuck by the lifecycle itself.
        for start in RecordingState::ALL {
            let mut seen = vec![start];
            let mut i = 0;
            while i < seen.len() {
                for n in RecordingState::ALL {
                    if seen[i].can_become(n) && !seen.contains(&n) {
                        seen.push(n);
                    }
                }
                i += 1;
            }
            assert!(seen.iter().any(|s| s.is_terminal()), "{start}");
        }
    }

    #[test]
    fn no_state_becomes_itself() {
        for s in RecordingState::ALL {
            assert!(!s.can_become(s));
        }
    }
}
