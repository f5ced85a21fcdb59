//! The worker: a recording engine that turns class URLs into video files,
//! with one supervised group of OS processes per recording.

pub mod browser;
pub mod cgroup;
pub mod config;
pub mod daemon;
pub mod display;
pub mod egress;
pub mod encoder;
pub mod engine;
pub mod event_track;
pub mod external;
pub mod guard;
pub mod health;
mod health_watch;
pub mod intensity;
pub mod link;
pub mod load;
pub mod part;
pub mod pipeline;
pub mod pool;
pub mod process;
pub mod queries;
pub mod rate;
pub mod ready;
pub mod slot;
pub mod status;
pub mod tail;
mod teardown;
pub mod upload;
pub mod usage;

pub use config::{Binaries, EngineConfig, GuardProgram, Timeouts};
pub use engine::{Engine, EngineError};
