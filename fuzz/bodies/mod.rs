//! The bodies of rolecore's fuzz targets: plain functions over `&[u8]` that
//! panic, with a readable message, when a property breaks.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line wrappers
//! around them, and `tests/fuzz_bodies.rs` runs the same functions under
//! `cargo test` on stable: every checked-in corpus file, then a fixed-seed
//! batch of generated inputs. Each body decodes its input by hand (a byte at
//! a time, 0 once the input ran out), so every byte string is a valid input
//! and neither side needs `arbitrary`.
//!
//! Each module has `run(data) -> usize` (the number of things it checked, so
//! that a batch can show it was not vacuous) and `describe(data) -> String`
//! (a short name for an input, used to name corpus files).

// Included by every fuzz target, each using one body, and by the test,
// which uses them all.
#![allow(dead_code)]

// The example servers' output budget, `serve::Connections`, which the
// handlers `sim_resp` and `sim_http` run name through `super`.
#[path = "../../examples/serve/connections.rs"]
pub mod connections;
pub mod framer;
pub mod http_head;
pub mod machine;
pub mod model;
pub mod resp;
pub mod resp_exec;
pub mod sim_chat;
pub mod sim_echo_buffered;
pub mod sim_echo_raw;
pub mod sim_http;
pub mod sim_resp;
// Needs rolecore's `tls` feature (the fuzz crate's default; the main crate's
// tests have it with `--features tls` or `--all-features`).
#[cfg(feature = "tls")]
pub mod sim_tls;

use rolecore::sim::{PeerReport, SimFailure, SimReport};

/// For tests that drive an example server's handlers in a simulation's map
/// on virtual time, with a real client on loopback (the kernel's listener
/// inserted by hand): the clock moves only when the test says.
#[cfg(test)]
pub mod virtual_time {
    use std::io::{ErrorKind, Read};
    use std::net::TcpStream;
    use std::time::Duration;

    use rolecore::sim::Sim;

    /// One iteration of the map that does not move the clock.
    pub fn tick(sim: &mut Sim) {
        sim.map().poll(Some(Duration::ZERO)).expect("poll");
    }

    /// Iterates until `done` holds, at most 1,000 times, without moving
    /// the clock; returns whether it held.
    pub fn tick_until(sim: &mut Sim, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        for _ in 0..1000 {
            if done(sim) {
                return true;
            }
            tick(sim);
        }
        done(sim)
    }

    /// The server closed the client's connection without sending another
    /// byte (waits for the end up to 10 s).
    pub fn ends_without_another_byte(client: &mut TcpStream) {
        client.set_nonblocking(false).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"", "the server closed without another byte");
    }

    /// What the client can read without waiting, and whether the server
    /// closed.
    pub fn drain(client: &mut TcpStream) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return (got, false),
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

/// A body: runs one input, panics on a broken property, and says how many
/// things it checked.
pub type Body = fn(&[u8]) -> usize;

/// Every target: its name (the directory of its corpus) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("machine", machine::run),
    ("framer", framer::run),
    ("sim_echo_buffered", sim_echo_buffered::run),
    ("sim_echo_raw", sim_echo_raw::run),
    ("sim_chat", sim_chat::run),
    ("resp", resp::run),
    ("resp_exec", resp_exec::run),
    ("http_head", http_head::run),
    ("sim_resp", sim_resp::run),
    ("sim_http", sim_http::run),
    #[cfg(feature = "tls")]
    ("sim_tls", sim_tls::run),
];

/// Every target's `describe`, by name.
pub fn describe(target: &str, data: &[u8]) -> Option<String> {
    Some(match target {
        "machine" => machine::describe(data),
        "framer" => framer::describe(data),
        "sim_echo_buffered" => sim_echo_buffered::describe(data),
        "sim_echo_raw" => sim_echo_raw::describe(data),
        "sim_chat" => sim_chat::describe(data),
        "resp" => resp::describe(data),
        "resp_exec" => resp_exec::describe(data),
        "http_head" => http_head::describe(data),
        "sim_resp" => sim_resp::describe(data),
        "sim_http" => sim_http::describe(data),
        #[cfg(feature = "tls")]
        "sim_tls" => sim_tls::describe(data),
        _ => return None,
    })
}

/// What a simulation target's process does once, before its first input:
/// [`quiet_reports`] and [`keep_freed_memory`].
pub fn init_sim_target() {
    quiet_reports();
    keep_freed_memory();
}

/// Silences rolecore's one-line reports for the rest of the process: a
/// simulated listener that runs out of descriptors reports each pause, a
/// closed peer's error is reported, and under a fuzzer that is thousands
/// of lines a second written to stderr, none of them a finding (a finding
/// is a panic, with the run's trace).
pub fn quiet_reports() {
    rolecore::report::set_log_hook(Some(Box::new(|_, _| {})));
}

/// Frees one 16 MiB block, which glibc's allocator served with `mmap`: on
/// that free it raises its dynamic thresholds (`mallopt(3)`, "dynamic mmap
/// threshold"), so that blocks up to 16 MiB come from the heap and the
/// heap is trimmed only past 32 MiB free. Without it, the memory of each
/// input's simulated network and peer reports (up to megabytes) went back
/// to the kernel when the input ended and was faulted in again by the
/// next: 3,684 `brk` calls and 142,044 page faults in 30,000 executions of
/// `sim_echo_raw` (`-runs=30000 -seed=3`), against 32 and 8,015 with it.
/// Other allocators ignore it.
pub fn keep_freed_memory() {
    // glibc raises the thresholds for a block of up to 32 MiB, and then
    // keeps up to twice the block free in the heap: 16 MiB keeps 32 MiB at
    // most, more than an input's buffers, less than a campaign's memory.
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16 << 20)));
}

thread_local! {
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a read buffer of `len` bytes, made once per thread: an
/// array in the handler was 8 KB zeroed on every read, and the map's buffer
/// (`Ctx::buffer`) 64 KB zeroed for every run, both visible in a profile.
pub fn with_read_buffer<T>(len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        f(&mut buf[..len])
    })
}

/// A fuzzer's bytes, read front to back; 0 once they ran out.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, at: 0 }
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A number below `n` (n ≥ 1) from one byte.
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// One of `items` (non-empty).
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    pub fn is_exhausted(&self) -> bool {
        self.at >= self.data.len()
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.at..).unwrap_or(&[])
    }
}

/// Bytes as text for messages: printable ASCII as is, the rest escaped.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Where two byte strings first differ.
pub fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

/// Panics unless `got` is a prefix of `expected`, showing where they part;
/// `what` names the stream, made only on failure (formatting a setup for
/// every run was a visible share of a fuzz target's time).
pub fn assert_prefix(expected: &[u8], got: &[u8], what: impl FnOnce() -> String) {
    if expected.starts_with(got) {
        return;
    }
    let what = what();
    let at = first_difference(expected, got);
    let from = at.saturating_sub(16);
    panic!(
        "{what}: received {} bytes that are not a prefix of the {} expected; they differ at byte {at}:\n  \
         expected …{}…\n  received …{}…",
        got.len(),
        expected.len(),
        show(&expected[from..expected.len().min(at + 16)]),
        show(&got[from..got.len().min(at + 16)]),
    );
}

/// Counts of what a simulated run did, from its trace, for `describe`.
pub fn summarize_trace(trace: &[String]) -> String {
    let count = |needle: &str| trace.iter().filter(|l| l.contains(needle)).count();
    let mut parts = vec![format!("p{}", count(" connects"))];
    for (needle, short) in [
        (" writes ", "w"),
        (" reads ", "r"),
        ("half-close", "half"),
        (" resets", "reset"),
        ("out-of-band", "oob"),
        ("vanishes", "vanish"),
        ("handle_connect_failed", "refused"),
        ("spurious", "spurious"),
        ("for a closed channel", "stale"),
        ("handle_error", "err"),
    ] {
        let n = count(needle);
        if n > 0 {
            parts.push(format!("{short}{n}"));
        }
    }
    parts.join("-")
}

/// The frame of a simulated server's `run_with`: a run that broke an
/// invariant panics with the setup (made by `setup` only then) and the
/// failure; otherwise `check` runs on every peer, with its index, and what
/// it checked is summed.
pub fn check_peers(
    result: Result<SimReport, SimFailure>,
    setup: impl Fn() -> String,
    mut check: impl FnMut(usize, &PeerReport) -> usize,
) -> usize {
    let report = match result {
        Ok(report) => report,
        Err(failure) => panic!("{}\n{failure}", setup()),
    };
    report.peers.iter().enumerate().map(|(i, peer)| check(i, peer)).sum()
}

/// [`check_peers`] for a server whose replies a body parses one by one
/// (`sim_http`, `sim_resp`): `check` gets each peer as a [`PeerCheck`],
/// whose `fail` names the `server` and shows the first `shown` bytes the
/// peer received.
pub fn check_replies(
    server: &str,
    shown: usize,
    result: Result<SimReport, SimFailure>,
    setup: impl Fn() -> String,
    mut check: impl FnMut(&PeerCheck<'_>) -> usize,
) -> usize {
    check_peers(result, &setup, |index, report| {
        check(&PeerCheck { index, report, server, shown, setup: &setup })
    })
}

/// One peer of a run, as [`check_replies`] hands it to a body.
pub struct PeerCheck<'a> {
    /// The peer's number: `p{index}` in the trace.
    pub index: usize,
    pub report: &'a PeerReport,
    server: &'a str,
    shown: usize,
    setup: &'a dyn Fn() -> String,
}

impl PeerCheck<'_> {
    /// Everything the server wrote to the peer. All of it: the servers send
    /// no out-of-band data, and a 0xFF that reached one inline (a peer's
    /// second urgent byte) may come back in a reply, which
    /// `received_data()` would cut out.
    pub fn received(&self) -> &[u8] {
        &self.report.received
    }

    /// Whether a model of the server can follow what the peer sent: not
    /// when it sent more than one out-of-band byte (the second arrives
    /// inline).
    pub fn modelled(&self) -> bool {
        self.report.oob_sent <= 1
    }

    /// Panics with `why`, the peer's traffic and the setup.
    pub fn fail(&self, why: String) -> ! {
        let received = self.received();
        panic!(
            "peer p{} of the {} server: {why}\n  sent {} bytes, received {}: {}\n  {}",
            self.index,
            self.server,
            self.report.sent.len(),
            received.len(),
            show(&received[..received.len().min(self.shown)]),
            (self.setup)()
        )
    }
}

/// A simulated world's size, from two bytes: steps, peers, how much a peer
/// moves at once, socket buffers.
pub fn sim_config(inp: &mut Input<'_>, check_descriptors: bool) -> rolecore::sim::SimConfig {
    let b0 = usize::from(inp.byte());
    let b1 = usize::from(inp.byte());
    rolecore::sim::SimConfig {
        steps: [50, 200, 600, 1500][b0 % 4],
        max_peers: 1 + (b0 >> 2) % 8,
        // At most 16 KiB a step: writes of 60 and 200 KB into kernel-size
        // buffers were a third of the inputs a `sim_chat` campaign kept and
        // nine tenths of its time (megabytes per input), and found the
        // planted faults no sooner (docs/fuzzing.md); a kernel-size buffer
        // still fills, over 13 writes or more to one connection.
        max_io: [1, 3, 64, 700, 2048, 4096, 9000, 16_384][b1 % 8],
        socket_buffer: [Some(4096), Some(1), Some(65_536), None][(b1 >> 3) % 4],
        settle_limit: 200,
        check_descriptors,
    }
}

/// The timer an echo body's server gives each connection it accepts: the
/// simulation's clock is virtual, so each of them fires in some runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    None,
    /// `Ctx::set_idle_timeout`: every callback re-arms it.
    Idle(std::time::Duration),
    /// `Ctx::set_deadline(cx.now() + d)` at accept and again on every read.
    Deadline(std::time::Duration),
}

impl Timer {
    /// One of four timers, from two bits.
    pub fn decode(bits: u8) -> Timer {
        use std::time::Duration;
        [
            Timer::None,
            Timer::Idle(Duration::from_millis(100)),
            Timer::Idle(Duration::from_secs(3)),
            Timer::Deadline(Duration::from_millis(500)),
        ][usize::from(bits & 3)]
    }

    /// Arms it on a connection just inserted as `token`.
    pub fn arm(self, token: rolecore::Token, cx: &mut rolecore::Ctx<'_>) {
        match self {
            Timer::None => {}
            Timer::Idle(d) => {
                cx.set_idle_timeout(token, Some(d));
            }
            Timer::Deadline(d) => {
                let at = cx.now() + d;
                cx.set_deadline(token, Some(at));
            }
        }
    }

    /// After a read: a deadline is pushed back (an idle timeout re-arms
    /// by itself).
    pub fn on_read(self, cx: &mut rolecore::Ctx<'_>) {
        if let Timer::Deadline(_) = self {
            self.arm(cx.token(), cx);
        }
    }

    /// For `describe`.
    pub fn name(self) -> String {
        match self {
            Timer::None => String::new(),
            Timer::Idle(d) => format!("-idle{}ms", d.as_millis()),
            Timer::Deadline(d) => format!("-deadline{}ms", d.as_millis()),
        }
    }
}

/// A `SimConfig` in a few words, for `describe`.
pub fn config_name(c: &rolecore::sim::SimConfig) -> String {
    let buffer = c.socket_buffer.map_or("kernel".to_owned(), |b| b.to_string());
    format!("steps{}-peers{}-io{}-sockbuf{buffer}", c.steps, c.max_peers, c.max_io)
}
