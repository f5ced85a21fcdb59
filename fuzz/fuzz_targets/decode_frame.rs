//! The frame decoder with arbitrary bytes as every message type a peer can
//! send (one target over all; each family also has a target of its own).

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::{
    ConsoleResponse, CoordinatorMessage, OpenStream, QueryFrame, SubscriptionFrame, WorkerMessage,
};

mod common;

fuzz_target!(|data: &[u8]| {
    common::check::<OpenStream>(data);
    common::check::<WorkerMessage>(data);
    common::check::<CoordinatorMessage>(data);
    common::check::<ConsoleResponse>(data);
    common::check::<SubscriptionFrame>(data);
    common::check::<QueryFrame>(data);
});
