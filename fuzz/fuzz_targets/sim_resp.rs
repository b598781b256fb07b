//! `cargo fuzz run sim_resp`: see `fuzz/bodies/sim_resp.rs` for what it checks.
//! Alone in its process, it also checks that no simulated channel leaks,
//! silences rolecore's reports (the trace of a failure says it all), and
//! keeps freed memory for the next input (`bodies::init_sim_target`).
#![no_main]

#[path = "../bodies/mod.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(init: bodies::init_sim_target(), |data: &[u8]| {
    bodies::sim_resp::run_with(data, true);
});
