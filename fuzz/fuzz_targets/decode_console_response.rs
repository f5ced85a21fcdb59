//! Arbitrary bytes decoded as `ConsoleResponse`: the coordinator's answers to consoles.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::ConsoleResponse;

mod common;

fuzz_target!(|data: &[u8]| common::check::<ConsoleResponse>(data));
