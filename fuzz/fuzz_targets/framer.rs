//! `cargo fuzz run framer`: see `fuzz/bodies/framer.rs` for what it checks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::framer::run(data);
});
