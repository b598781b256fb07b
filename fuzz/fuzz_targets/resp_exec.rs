//! `cargo fuzz run resp_exec`: see `fuzz/bodies/resp_exec.rs` for what it checks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::resp_exec::run(data);
});
