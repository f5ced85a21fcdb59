//! Arbitrary bytes decoded as `WorkerMessage`: a worker's frames to the coordinator.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::WorkerMessage;

mod common;

fuzz_target!(|data: &[u8]| common::check::<WorkerMessage>(data));
