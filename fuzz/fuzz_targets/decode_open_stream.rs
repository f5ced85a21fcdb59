//! Arbitrary bytes decoded as `OpenStream`: the first frame of every stream (requests, hellos, queries).

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::OpenStream;

mod common;

fuzz_target!(|data: &[u8]| common::check::<OpenStream>(data));
