//! Arbitrary bytes decoded as `SubscriptionFrame`: a console's event subscription.

#![no_main]

use libfuzzer_sys::fuzz_target;
use recfleet_protocol::SubscriptionFrame;

mod common;

fuzz_target!(|data: &[u8]| common::check::<SubscriptionFrame>(data));
