//! `cargo fuzz run resp`: see `fuzz/bodies/resp.rs` for what it checks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::resp::run(data);
});
