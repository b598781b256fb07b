//! `cargo fuzz run http_head`: see `fuzz/bodies/http_head.rs` for what it checks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::http_head::run(data);
});
