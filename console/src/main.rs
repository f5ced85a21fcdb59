//! `recfleet`: the operator console.

#![forbid(unsafe_code)]

fn main() {
    println!("recfleet {}", env!("CARGO_PKG_VERSION"));
}
