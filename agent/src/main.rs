//! `recfleet-agent`: the recfleet daemon.

#![forbid(unsafe_code)]

fn main() {
    println!("recfleet-agent {}", env!("CARGO_PKG_VERSION"));
}
