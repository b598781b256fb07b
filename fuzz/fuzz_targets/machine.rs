//! `cargo fuzz run machine`: see `fuzz/bodies/machine.rs` for what it checks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::machine::run(data);
});
