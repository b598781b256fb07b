//! A short soak: the soak of `tools/soak` for 8 seconds against the real
//! echo, HTTP and RESP example servers that `cargo test` built, with every
//! kind of fault it injects. The run must pass (every byte verified, no leaked
//! descriptor, no panic, a clean exit on SIGTERM), and every fault kind must
//! have been injected at least once.
//!
//! The soak's code is included here with `#[path]` and runs in this test's
//! process (its clients are threads; the servers are processes), so
//! `cargo test` needs no second Cargo build. The longer runs are by hand
//! (`--duration 600`) and in CI (`--duration 30`), with the `soak` binary of
//! `tools/soak`; see `docs/reliability.md`.

#[path = "../tools/soak/src/soak.rs"]
mod soak;
mod util;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Every fault kind the soak injects, as its report names them.
const FAULTS: [&str; 10] = [
    "reset_mid_message",
    "close_with_unread",
    "half_close",
    "slow_reader",
    "connect_vanish",
    "garbage",
    "oversized",
    "slow_loris",
    "never_reader",
    "reset_during_large_write",
];
const HEALTHY: [&str; 3] = ["echo_healthy", "http_healthy", "resp_healthy"];
/// The run takes 8 s of clients, a few more to finish the last actions and
/// settle; past this it hangs (and the soak's own bound, 8 s + 120 s for a hung
/// client + 30 s to settle + the checks, has failed too).
const LIMIT: Duration = Duration::from_secs(240);

/// The number before `word` in `line` (`"... 12 injected"` → 12).
fn count_before(line: &str, word: &str) -> Option<u64> {
    let at = line.find(word)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

#[test]
fn an_eight_second_soak_injects_every_fault_and_passes() {
    // The servers `cargo test` built, beside `util::example`'s.
    let servers = util::example("echo_server").parent().expect("the examples directory").to_path_buf();
    let args =
        soak::Args { duration: Duration::from_secs(8), clients: 48, seed: 20240601, backend: "epoll".into() };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut report = Vec::new();
        let result = soak::run(&args, &servers, &mut report);
        let _ = tx.send((String::from_utf8_lossy(&report).into_owned(), result));
    });
    // The soak bounds itself (it gives up on a hung client 120 s after the
    // duration, then stops the servers); this is the backstop.
    let (out, result) =
        rx.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("the soak did not finish within {LIMIT:?}"));
    // Shown when the test fails (or with --nocapture).
    println!("{out}");
    assert_eq!(result, Ok(()), "the soak failed; its report is above");

    for kind in FAULTS {
        let prefix = format!("fault {kind}: ");
        let line =
            out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` line"));
        let injected = count_before(line, " injected").unwrap_or_else(|| panic!("{line:?}"));
        let handled = count_before(line, " handled as expected").unwrap_or_else(|| panic!("{line:?}"));
        assert!(injected > 0, "the fault {kind} was never injected: {line}");
        assert_eq!(handled, injected, "{line}");
    }
    for kind in HEALTHY {
        let prefix = format!("healthy {kind}: ");
        let line =
            out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` line"));
        let clients = count_before(line, " clients").unwrap_or_else(|| panic!("{line:?}"));
        let verified = count_before(line, " verified").unwrap_or_else(|| panic!("{line:?}"));
        assert!(clients > 0 && verified == clients, "{line}");
    }
    assert!(out.lines().any(|l| l == "panics: 0"), "a panic was reported");
    for server in ["echo_server", "http_server", "resp_server"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{server}: descriptors ")))
            .unwrap_or_else(|| panic!("no descriptor line for {server}"));
        let before = count_before(line, " after startup").unwrap_or_else(|| panic!("{line:?}"));
        let after = count_before(line, " after the soak").unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(before, after, "{server} leaked descriptors: {line}");
        assert!(line.ends_with("exit 0"), "{server}: {line}");
    }
    let bytes = out
        .lines()
        .find_map(|l| l.strip_prefix("bytes verified: "))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("a `bytes verified:` line");
    assert!(bytes > 0, "no byte was verified");
}
