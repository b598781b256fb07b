//! `cargo fuzz run sim_tls`: see `fuzz/bodies/sim_tls.rs` for what it checks.
//! Alone in its process, it also checks that no descriptor leaks.
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::sim_tls::run_with(data, true);
});
