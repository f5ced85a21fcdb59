//! Arbitrary bytes decoded as `QueryFrame`: answers to queries and event tracks (worker -> coordinator -> console).

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::QueryFrame;

mod common;

fuzz_target!(|data: &[u8]| common::check::<QueryFrame>(data));
