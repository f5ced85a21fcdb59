//! Arbitrary bytes decoded as `CoordinatorMessage`: the coordinator's frames to a worker.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::CoordinatorMessage;

mod common;

fuzz_target!(|data: &[u8]| common::check::<CoordinatorMessage>(data));
