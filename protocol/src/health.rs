//! Media health: what the capture itself says of a recording (its sound,
//! its picture, its page), and which of those states restart the slot.
//!
//! The worker measures it (`agent/src/worker/health.rs`); the coordinator
//! keeps the latest per recording and tells consoles and webhooks when it
//! changes.

use serde::{Deserialize, Serialize};

use crate::messages::UnixMillis;

/// One word for how a recording looks and sounds, worst first when several
/// hold at once (a crashed page is also frozen and silent: it says crashed).
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not measured (starting, an external capture, or no news yet).
    #[default]
    Unknown,
    /// Picture moves or sound plays: nothing wrong seen.
    Ok,
    /// No sound above -50 dBFS for the policy's `silent_secs`.
    Silent,
    /// The picture has not changed for the policy's `frozen_secs`.
    Frozen,
    /// The picture is black for the policy's `black_secs`.
    Black,
    /// The page is not what was asked: it navigated to another site, or
    /// shows an HTTP error or Chromium's error page.
    WrongPage,
    /// The page has not answered for 5 s (busy or hung).
    Unresponsive,
    /// The page's renderer is gone ("Aw, Snap!", tab crashed, browser gone).
    PageCrashed,
}

impl HealthState {
    /// Every state, in order of severity (least first).
    pub const ALL: [HealthState; 8] = [
        HealthState::Unknown,
        HealthState::Ok,
        HealthState::Silent,
        HealthState::Frozen,
        HealthState::Black,
        HealthState::WrongPage,
        HealthState::Unresponsive,
        HealthState::PageCrashed,
    ];

    /// The snake_case name (as in JSON and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Ok => "ok",
            HealthState::Silent => "silent",
            HealthState::Frozen => "frozen",
            HealthState::Black => "black",
            HealthState::WrongPage => "wrong_page",
            HealthState::Unresponsive => "unresponsive",
            HealthState::PageCrashed => "page_crashed",
        }
    }

    /// Whether an operator should look (anything but ok and unknown).
    pub fn is_bad(self) -> bool {
        !matches!(self, HealthState::Ok | HealthState::Unknown)
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recording's health: the state, since when, and why.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// Wall clock of its cause (the first silent sample, the first frozen
    /// frame, the crash), not of its detection.
    pub since: UnixMillis,
    /// What was seen, in words (empty for ok).
    pub detail: String,
}

impl Health {
    /// A state with its cause's time and a detail.
    pub fn new(state: HealthState, since: UnixMillis, detail: impl Into<String>) -> Self {
        Health {
            state,
            since,
            detail: detail.into(),
        }
    }
}

/// When a recording counts as silent, frozen or black, and which states
/// restart its slot into a new part. Set per recording (the spec) with the
/// coordinator's defaults for what a request leaves out.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthPolicy {
    /// Silent after this many seconds below -50 dBFS (1 to 3600).
    pub silent_secs: u32,
    /// Frozen after this many seconds without a changed picture (1 to 3600).
    pub frozen_secs: u32,
    /// Black after this many seconds of black picture (1 to 3600).
    pub black_secs: u32,
    /// Restart the slot when the page crashes.
    pub restart_crashed: bool,
    /// Restart the slot after this many seconds frozen (None: report only).
    pub restart_frozen_secs: Option<u32>,
    /// Restart the slot after this many seconds black (None: report only).
    pub restart_black_secs: Option<u32>,
}

impl Default for HealthPolicy {
    /// Silence is only reported (a class may be quiet); a crashed page
    /// restarts at once, a picture frozen for 30 s restarts.
    fn default() -> Self {
        HealthPolicy {
            silent_secs: 10,
            frozen_secs: 10,
            black_secs: 5,
            restart_crashed: true,
            restart_frozen_secs: Some(30),
            restart_black_secs: None,
        }
    }
}

/// A recording request's health settings: what it leaves out (None) the
/// coordinator fills with its own defaults when it accepts the recording,
/// so that a stored spec says what its worker applies.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HealthRequest {
    /// See [`HealthPolicy::silent_secs`].
    pub silent_secs: Option<u32>,
    /// See [`HealthPolicy::frozen_secs`].
    pub frozen_secs: Option<u32>,
    /// See [`HealthPolicy::black_secs`].
    pub black_secs: Option<u32>,
    /// See [`HealthPolicy::restart_crashed`].
    pub restart_crashed: Option<bool>,
    /// See [`HealthPolicy::restart_frozen_secs`]; `Some(0)`: never.
    pub restart_frozen_secs: Option<u32>,
    /// See [`HealthPolicy::restart_black_secs`]; `Some(0)`: never.
    pub restart_black_secs: Option<u32>,
}

impl HealthRequest {
    /// Every field set: what the request says, else `defaults`.
    pub fn filled(self, defaults: &HealthPolicy) -> HealthRequest {
        let never = |v: Option<u32>| Some(v.unwrap_or(0));
        HealthRequest {
            silent_secs: self.silent_secs.or(Some(defaults.silent_secs)),
            frozen_secs: self.frozen_secs.or(Some(defaults.frozen_secs)),
            black_secs: self.black_secs.or(Some(defaults.black_secs)),
            restart_crashed: self.restart_crashed.or(Some(defaults.restart_crashed)),
            restart_frozen_secs: self
                .restart_frozen_secs
                .or(never(defaults.restart_frozen_secs)),
            restart_black_secs: self
                .restart_black_secs
                .or(never(defaults.restart_black_secs)),
        }
    }

    /// The policy to apply: what is set, else the built-in defaults.
    pub fn resolve(&self) -> HealthPolicy {
        let d = HealthPolicy::default();
        let restart = |v: Option<u32>, default: Option<u32>| match v {
            Some(0) => None,
            Some(s) => Some(s),
            None => default,
        };
        HealthPolicy {
            silent_secs: self.silent_secs.unwrap_or(d.silent_secs),
            frozen_secs: self.frozen_secs.unwrap_or(d.frozen_secs),
            black_secs: self.black_secs.unwrap_or(d.black_secs),
            restart_crashed: self.restart_crashed.unwrap_or(d.restart_crashed),
            restart_frozen_secs: restart(self.restart_frozen_secs, d.restart_frozen_secs),
            restart_black_secs: restart(self.restart_black_secs, d.restart_black_secs),
        }
    }
}

impl HealthPolicy {
    /// Problems with the values, as `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        for (field, v) in [
            ("health.silent_secs", Some(self.silent_secs)),
            ("health.frozen_secs", Some(self.frozen_secs)),
            ("health.black_secs", Some(self.black_secs)),
            ("health.restart_frozen_secs", self.restart_frozen_secs),
            ("health.restart_black_secs", self.restart_black_secs),
        ] {
            if let Some(v) = v {
                if !(1..=3600).contains(&v) {
                    p.push((
                        field,
                        format!("{v} is not allowed: expected 1 to 3600 seconds"),
                    ));
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_order_by_severity() {
        let mut sorted = HealthState::ALL;
        sorted.sort();
        assert_eq!(sorted, HealthState::ALL);
        assert!(HealthState::PageCrashed > HealthState::Frozen);
        assert!(HealthState::Frozen > HealthState::Silent);
        assert!(!HealthState::Ok.is_bad() && HealthState::Silent.is_bad());
    }

    #[test]
    fn a_request_takes_what_it_leaves_out_from_the_coordinator() {
        let coordinator = HealthPolicy {
            silent_secs: 30,
            restart_frozen_secs: None,
            ..HealthPolicy::default()
        };
        let asked = HealthRequest {
            frozen_secs: Some(4),
            restart_black_secs: Some(20),
            ..HealthRequest::default()
        };
        let filled = asked.filled(&coordinator);
        let p = filled.resolve();
        assert_eq!(p.silent_secs, 30);
        assert_eq!(p.frozen_secs, 4);
        assert_eq!(p.restart_frozen_secs, None, "the coordinator's never");
        assert_eq!(p.restart_black_secs, Some(20));
        // Filling twice changes nothing (a retried request is the same).
        assert_eq!(filled.filled(&HealthPolicy::default()), filled);
        assert_eq!(HealthRequest::default().resolve(), HealthPolicy::default());
    }

    #[test]
    fn a_policy_missing_from_json_takes_the_defaults() {
        let p: HealthPolicy = serde_json::from_str(r#"{"silent_secs": 3}"#).unwrap();
        assert_eq!(p.silent_secs, 3);
        assert_eq!(p.restart_frozen_secs, Some(30));
        assert!(p.restart_crashed);
        assert!(p.problems().is_empty());
        let bad = HealthPolicy {
            frozen_secs: 0,
            ..HealthPolicy::default()
        };
        assert_eq!(bad.problems()[0].0, "health.frozen_secs");
    }
}
