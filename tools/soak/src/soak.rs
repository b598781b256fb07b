//! The soak itself: a bounded soak and fault-injection run against
//! rolecore's example servers. `main.rs` is its command line; `tests/soak.rs`
//! (in the rolecore crate) includes this file with `#[path]` and runs a short
//! soak in the test process, so `cargo test` needs no second build.
//!
//! It starts the real `echo_server`, `http_server` (`--idle-timeout 2`) and
//! `resp_server` (`--max-bulk 65536`) binaries from the directory it is given
//! (`target/release/examples/` of a rolecore checkout, by default), each on
//! port 0, and counts each one's open descriptors (`/proc/PID/fd`) once it
//! listens. Then, for `--duration` seconds, `--clients` threads (default 200)
//! each run one client after another, picked at random by weight:
//!
//! | kind | what the client does | what it checks |
//! |---|---|---|
//! | `echo_healthy` | 1 B to 1 MiB in random write splits, from a writer thread | every byte echoed, in order |
//! | `http_healthy` | 1 to 20 keep-alive requests (GET, HEAD, HTTP/1.0, POST, unknown methods), sequential or pipelined | every response byte for byte, the close when asked |
//! | `resp_healthy` | SET/GET/DEL/INCR/PING/EXISTS with binary values up to 64 KiB, sequential or pipelined | every reply byte for byte, a per-client counter that lives for the whole run |
//! | `reset_mid_message` | part of a message (echo data, an HTTP head, a RESP bulk), then a reset (`SO_LINGER` 0) | the server lives on |
//! | `close_with_unread` | requests, waits for the first reply byte, closes with the replies unread (the kernel sends a reset) | the server lives on |
//! | `half_close` | everything, then `shutdown(Write)`, then reads the rest | every byte or reply arrives after the FIN, then the end of stream |
//! | `slow_reader` | a large echo or an HTTP pipeline, read a little at a time with sleeps | every byte |
//! | `connect_vanish` | connects and goes: close, reset, or `shutdown(Both)` | the server lives on |
//! | `garbage` | random bytes to the HTTP or RESP server | an error reply (`400`, `-ERR`), never a hang |
//! | `oversized` | an HTTP head over 8 KiB; a RESP bulk over `--max-bulk`, a bulk count or inline line over 64 KiB | `431`; `-ERR Protocol error`; then the close |
//! | `slow_loris` | half an HTTP head, then up to six more bytes a third of the idle timeout apart (never silent that long), then silence | closed without an answer once the idle timeout since the connect has passed (the head is late), not before |
//! | `never_reader` | writes without ever reading until the server stops taking data | the server stopped reading (under 32 MiB taken) |
//! | `reset_during_large_write` | makes the server queue megabytes of replies, then resets | the server lives on (no `SIGPIPE`) |
//!
//! Every socket operation has a timeout, and the clients stop starting new
//! work at the duration. Then it waits for the servers to settle (every
//! connection closed), and checks that each server has the descriptors it
//! had after startup, is alive, idles without spinning, still serves a
//! request, wrote no panic to stderr, and exits 0 on SIGTERM. It writes a
//! report — connections served, faults injected by kind, bytes verified,
//! descriptors before and after, peak RSS (`VmHWM`), panics — and returns
//! `Err` with the reasons if a check failed (the command line then prints
//! `soak: FAIL <reasons>`, else `soak: PASS`). A failed check names the
//! client (`w<worker>#<n>`) and the seed of its action.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any socket operation of a client that expects an answer may
/// block: a hang fails the run, it does not stall it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP server's `--idle-timeout`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The RESP server's `--max-bulk`.
const MAX_BULK: usize = 64 * 1024;
/// The largest healthy echo.
const MAX_ECHO: usize = 1 << 20;
/// The HTTP server's longest request head, and the RESP server's longest line.
const MAX_HEAD: usize = 8192;
const MAX_LINE: usize = 64 * 1024;
/// A client that never reads may have pushed at most this much into a server
/// that stopped reading it (its socket buffers, the kernel's and the
/// server's 1 MiB queue).
const NEVER_READER_BOUND: usize = 32 << 20;
/// How many failures the report lists in full.
const SHOWN_FAILURES: usize = 30;

/// The HTTP server's answer to a kept-alive HTTP/1.1 GET.
const HELLO_BODY: &[u8] = b"Hello, world!";

// ---- what the clients do -----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    EchoHealthy,
    HttpHealthy,
    RespHealthy,
    ResetMidMessage,
    CloseWithUnread,
    HalfClose,
    SlowReader,
    ConnectVanish,
    Garbage,
    Oversized,
    SlowLoris,
    NeverReader,
    ResetDuringLargeWrite,
}

/// Every kind with its weight (out of 100).
const KINDS: [(Kind, u32); 13] = [
    (Kind::EchoHealthy, 14),
    (Kind::HttpHealthy, 12),
    (Kind::RespHealthy, 12),
    (Kind::ResetMidMessage, 8),
    (Kind::CloseWithUnread, 6),
    (Kind::HalfClose, 8),
    (Kind::SlowReader, 6),
    (Kind::ConnectVanish, 10),
    (Kind::Garbage, 8),
    (Kind::Oversized, 6),
    (Kind::SlowLoris, 3),
    (Kind::NeverReader, 3),
    (Kind::ResetDuringLargeWrite, 4),
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::EchoHealthy => "echo_healthy",
            Kind::HttpHealthy => "http_healthy",
            Kind::RespHealthy => "resp_healthy",
            Kind::ResetMidMessage => "reset_mid_message",
            Kind::CloseWithUnread => "close_with_unread",
            Kind::HalfClose => "half_close",
            Kind::SlowReader => "slow_reader",
            Kind::ConnectVanish => "connect_vanish",
            Kind::Garbage => "garbage",
            Kind::Oversized => "oversized",
            Kind::SlowLoris => "slow_loris",
            Kind::NeverReader => "never_reader",
            Kind::ResetDuringLargeWrite => "reset_during_large_write",
        }
    }

    fn is_fault(self) -> bool {
        !matches!(self, Kind::EchoHealthy | Kind::HttpHealthy | Kind::RespHealthy)
    }

    fn index(self) -> usize {
        KINDS.iter().position(|(k, _)| *k == self).expect("every kind is listed")
    }

    fn pick(rng: &mut Rng) -> Kind {
        let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
        let mut x = rng.below(total as usize) as u32;
        for (kind, weight) in KINDS {
            if x < weight {
                return kind;
            }
            x -= weight;
        }
        unreachable!("the weights add up to the total")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Srv {
    Echo,
    Http,
    Resp,
}

const SERVERS: [Srv; 3] = [Srv::Echo, Srv::Http, Srv::Resp];

impl Srv {
    /// The most one connection may make the server hold, by its
    /// configuration: the echo's 1 MiB high watermark (reading stops past
    /// it), the HTTP server's 1 MiB read pause plus the answers to one 64 KiB
    /// read, the RESP server's 4 MiB output limit, each with allocator slack.
    fn per_connection_bound_kib(self) -> u64 {
        match self {
            Srv::Echo | Srv::Http => 2 * 1024,
            Srv::Resp => 6 * 1024,
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Srv::Echo => "echo_server",
            Srv::Http => "http_server",
            Srv::Resp => "resp_server",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

// ---- deterministic randomness ------------------------------------------------------------

/// xorshift64*: a failure names the seed that reproduces its action.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// A number in `lo..=hi`, as likely in each power of two: small sizes
    /// are common, large ones still come up.
    fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let bits = usize::BITS - hi.leading_zeros();
        let top = 1usize << self.below(bits as usize + 1).min(63);
        (lo + self.below(top)).min(hi)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ByteGen::new(self.next()).fill(&mut v);
        v
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An endless, reproducible byte stream: the writer and the checker of an
/// echo each run one from the same seed, so nothing is stored.
struct ByteGen {
    rng: Rng,
    word: u64,
    left: u32,
}

impl ByteGen {
    fn new(seed: u64) -> ByteGen {
        ByteGen { rng: Rng::new(seed), word: 0, left: 0 }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.left == 0 {
                self.word = self.rng.next();
                self.left = 8;
            }
            *b = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
        }
    }
}

// ---- shared counters ---------------------------------------------------------------------

#[derive(Default)]
struct KindStats {
    runs: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Stats {
    kinds: Vec<KindStats>,
    connections: [AtomicU64; 3],
    bytes_verified: AtomicU64,
    failures: Mutex<Vec<String>>,
    failure_count: AtomicU64,
    client_panics: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            kinds: KINDS.iter().map(|_| KindStats::default()).collect(),
            connections: Default::default(),
            bytes_verified: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            failure_count: AtomicU64::new(0),
            client_panics: AtomicU64::new(0),
        }
    }

    fn fail(&self, what: String) {
        self.failure_count.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() < SHOWN_FAILURES {
            failures.push(what);
        }
    }

    fn verified(&self, n: usize) {
        self.bytes_verified.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What a client action reports when a check fails.
type Outcome = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// A line of the report; a report that cannot be written does not stop the run.
macro_rules! say {
    ($out:expr, $($fmt:tt)*) => {
        let _ = writeln!($out, $($fmt)*);
    };
}

/// Turns an I/O error into a failure that says what was being done.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ---- one client ----------------------------------------------------------------------------

/// What every client of the run shares.
struct World {
    addrs: [SocketAddr; 3],
    stats: Stats,
}

/// One client action: its randomness, and the worker's lasting state.
struct Client<'a> {
    world: &'a World,
    rng: Rng,
    worker: usize,
    /// This worker's RESP counter: every INCR must give the next number,
    /// across the whole run.
    counter: &'a mut i64,
    /// Distinguishes this action's RESP keys from every other's.
    tag: String,
    /// The server this action last connected to, for the failure report.
    target: Option<Srv>,
}

fn set_timeouts(s: &TcpStream, timeout: Duration) -> io::Result<()> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))
}

/// Closes with a reset instead of a FIN.
fn reset(s: TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO));
    drop(s);
}

impl Client<'_> {
    fn connect(&mut self, srv: Srv) -> Result<TcpStream, String> {
        self.target = Some(srv);
        let s = TcpStream::connect_timeout(&self.world.addrs[srv.index()], CONNECT_TIMEOUT)
            .ctx(&format!("connect to {}", srv.binary()))?;
        self.world.stats.connections[srv.index()].fetch_add(1, Ordering::Relaxed);
        set_timeouts(&s, IO_TIMEOUT).ctx("set timeouts")?;
        Ok(s)
    }

    fn server(&mut self, choices: &[Srv]) -> Srv {
        choices[self.rng.below(choices.len())]
    }

    fn run(&mut self, kind: Kind) -> Outcome {
        match kind {
            Kind::EchoHealthy => self.echo_healthy(),
            Kind::HttpHealthy => self.http_healthy(),
            Kind::RespHealthy => self.resp_healthy(),
            Kind::ResetMidMessage => self.reset_mid_message(),
            Kind::CloseWithUnread => self.close_with_unread(),
            Kind::HalfClose => self.half_close(),
            Kind::SlowReader => self.slow_reader(),
            Kind::ConnectVanish => self.connect_vanish(),
            Kind::Garbage => self.garbage(),
            Kind::Oversized => self.oversized(),
            Kind::SlowLoris => self.slow_loris(),
            Kind::NeverReader => self.never_reader(),
            Kind::ResetDuringLargeWrite => self.reset_during_large_write(),
        }
    }

    // ---- healthy clients ----

    fn echo_healthy(&mut self) -> Outcome {
        let len = self.rng.log_range(1, MAX_ECHO);
        let s = self.connect(Srv::Echo)?;
        let seed = self.rng.next();
        let writer = spawn_writer(&s, Payload::Gen { seed, len }, self.rng.next(), false)?;
        let mut s = s;
        let chunk = self.rng.range(1, 64 * 1024);
        let read = read_verify(&mut s, &mut ByteGen::new(seed), len, chunk, None);
        let written = join_writer(writer);
        read?;
        written?;
        self.world.stats.verified(len);
        if self.rng.chance(50) {
            // All echoed: a half-close makes the server close its side.
            s.shutdown(Shutdown::Write).ctx("half-close")?;
            expect_eof(&mut s, "after the full echo and a half-close")?;
        }
        Ok(())
    }

    fn http_healthy(&mut self) -> Outcome {
        let n = self.rng.range(1, 20);
        let close_last = self.rng.chance(40);
        let exchanges: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| http_exchange(&mut self.rng, close_last && i == n - 1)).collect();
        let mut s = self.connect(Srv::Http)?;
        if self.rng.chance(50) {
            for (request, response) in &exchanges {
                s.write_all(request).ctx("write a request")?;
                let got = read_exact_vec(&mut s, response.len()).ctx("read a response")?;
                compare(&got, response, "an HTTP response")?;
                self.world.stats.verified(got.len());
            }
        } else {
            let requests: Vec<u8> = exchanges.iter().flat_map(|(q, _)| q.clone()).collect();
            let expected: Vec<u8> = exchanges.iter().flat_map(|(_, r)| r.clone()).collect();
            let writer = spawn_writer(&s, Payload::Bytes(requests), self.rng.next(), false)?;
            let got = read_exact_vec(&mut s, expected.len()).ctx("read pipelined responses");
            join_writer(writer)?;
            let got = got?;
            compare(&got, &expected, "pipelined HTTP responses")?;
            self.world.stats.verified(got.len());
        }
        if close_last {
            expect_eof(&mut s, "after `Connection: close`")?;
        }
        Ok(())
    }

    fn resp_healthy(&mut self) -> Outcome {
        let result = self.resp_session();
        if result.is_err() {
            *self.counter = -1; // unknown: the next session reads it again
        }
        result
    }

    fn resp_session(&mut self) -> Outcome {
        let counter_key = format!("soak:counter:{}", self.worker).into_bytes();
        let mut s = self.connect(Srv::Resp)?;
        let mut counter = *self.counter;
        if counter < 0 {
            s.write_all(&resp_command(&[b"GET", &counter_key])).ctx("GET the counter")?;
            let header = read_line(&mut s).ctx("read the counter")?;
            counter = if header == b"$-1\r\n" {
                0
            } else {
                let len: usize = std::str::from_utf8(&header[1..header.len().saturating_sub(2)])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("GET of the counter: {:?}", preview(&header)))?;
                let value = read_exact_vec(&mut s, len + 2).ctx("read the counter")?;
                std::str::from_utf8(&value[..len])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("the counter is {:?}", preview(&value)))?
            };
        }
        let n = self.rng.range(1, 20);
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut exchanges = Vec::with_capacity(n + 2);
        for i in 0..n {
            let key = format!("soak:{}:{}", self.tag, self.rng.below(4)).into_bytes();
            let (request, reply) = match self.rng.below(6) {
                0 | 1 => {
                    let len = self.rng.log_range(0, MAX_BULK);
                    let value = self.rng.bytes(len);
                    model.insert(key.clone(), value.clone());
                    (resp_command(&[b"SET", &key, &value]), b"+OK\r\n".to_vec())
                }
                2 => {
                    let reply = resp_bulk(model.get(&key).map(|v| &v[..]));
                    (resp_command(&[b"GET", &key]), reply)
                }
                3 => {
                    counter += 1;
                    (resp_command(&[b"INCR", &counter_key]), format!(":{counter}\r\n").into_bytes())
                }
                4 => {
                    let reply = format!(":{}\r\n", usize::from(model.contains_key(&key))).into_bytes();
                    (resp_command(&[b"EXISTS", &key]), reply)
                }
                _ if i % 2 == 0 => (b"PING\r\n".to_vec(), b"+PONG\r\n".to_vec()),
                _ => {
                    let len = self.rng.range(0, 64);
                    let msg = self.rng.bytes(len);
                    (resp_command(&[b"ECHO", &msg]), resp_bulk(Some(&msg)))
                }
            };
            exchanges.push((request, reply));
        }
        // Leave the store as it was: delete this client's keys.
        if !model.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"DEL"];
            args.extend(model.keys().map(|k| &k[..]));
            exchanges.push((resp_command(&args), format!(":{}\r\n", model.len()).into_bytes()));
        }
        let quit = self.rng.chance(50);
        if quit {
            exchanges.push((b"*1\r\n$4\r\nQUIT\r\n".to_vec(), b"+OK\r\n".to_vec()));
        }
        if self.rng.chance(50) {
            for (request, reply) in &exchanges {
                s.write_all(request).ctx("write a command")?;
                let got = read_exact_vec(&mut s, reply.len()).ctx("read a reply")?;
                compare(&got, reply, "a RESP reply")?;
                self.world.stats.verified(got.len());
            }
        } else {
            let requests: Vec<u8> = exchanges.iter().flat_map(|(q, _)| q.clone()).collect();
            let expected: Vec<u8> = exchanges.iter().flat_map(|(_, r)| r.clone()).collect();
            let writer = spawn_writer(&s, Payload::Bytes(requests), self.rng.next(), false)?;
            let got = read_exact_vec(&mut s, expected.len()).ctx("read pipelined replies");
            join_writer(writer)?;
            let got = got?;
            compare(&got, &expected, "pipelined RESP replies")?;
            self.world.stats.verified(got.len());
        }
        if quit {
            expect_eof(&mut s, "after QUIT")?;
        }
        *self.counter = counter;
        Ok(())
    }

    // ---- faults ----

    fn reset_mid_message(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let mut s = self.connect(srv)?;
        match srv {
            Srv::Echo => {
                let len = self.rng.log_range(1, 256 * 1024);
                let data = self.rng.bytes(len);
                s.write_all(&data).ctx("write")?;
                if self.rng.chance(50) {
                    // Wait until the server is echoing.
                    let mut byte = [0u8; 1];
                    ensure!(s.peek(&mut byte).ctx("wait for the echo")? == 1, "the echo server closed");
                }
            }
            Srv::Http => {
                let mut request =
                    b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 100000\r\n\r\n".to_vec();
                let body = self.rng.range(0, 50_000);
                request.extend(self.rng.bytes(body));
                let cut = self.rng.range(1, request.len());
                s.write_all(&request[..cut]).ctx("write part of a request")?;
            }
            Srv::Resp => {
                let len = self.rng.range(1, MAX_BULK);
                let mut frame = format!("*3\r\n$3\r\nSET\r\n$9\r\nsoak:lost\r\n${len}\r\n").into_bytes();
                frame.extend(self.rng.bytes(len));
                let cut = self.rng.range(1, frame.len());
                s.write_all(&frame[..cut]).ctx("write part of a frame")?;
            }
        }
        if self.rng.chance(50) {
            thread::sleep(Duration::from_millis(self.rng.range(0, 20) as u64));
        }
        reset(s);
        Ok(())
    }

    fn close_with_unread(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let mut s = self.connect(srv)?;
        let request = match srv {
            Srv::Echo => {
                let len = self.rng.log_range(1, 128 * 1024);
                self.rng.bytes(len)
            }
            Srv::Http => b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n".repeat(self.rng.range(1, 50)),
            Srv::Resp => b"PING\r\n".repeat(self.rng.range(1, 50)),
        };
        s.write_all(&request).ctx("write")?;
        let mut byte = [0u8; 1];
        ensure!(s.peek(&mut byte).ctx("wait for the first reply byte")? == 1, "{} closed", srv.binary());
        drop(s); // with unread data: the kernel sends a reset
        Ok(())
    }

    fn half_close(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let s = self.connect(srv)?;
        let mut s = s;
        match srv {
            Srv::Echo => {
                let len = self.rng.log_range(1, MAX_ECHO);
                let seed = self.rng.next();
                let writer = spawn_writer(&s, Payload::Gen { seed, len }, self.rng.next(), true)?;
                let read = read_verify(&mut s, &mut ByteGen::new(seed), len, 16 * 1024, None);
                join_writer(writer)?;
                read?;
                self.world.stats.verified(len);
            }
            Srv::Http => {
                let n = self.rng.range(1, 10);
                let exchanges: Vec<_> = (0..n).map(|_| http_exchange(&mut self.rng, false)).collect();
                let requests: Vec<u8> = exchanges.iter().flat_map(|(q, _)| q.clone()).collect();
                let expected: Vec<u8> = exchanges.iter().flat_map(|(_, r)| r.clone()).collect();
                s.write_all(&requests).ctx("write requests")?;
                s.shutdown(Shutdown::Write).ctx("half-close")?;
                let got = read_exact_vec(&mut s, expected.len()).ctx("read responses after the FIN")?;
                compare(&got, &expected, "HTTP responses after a half-close")?;
                self.world.stats.verified(got.len());
            }
            Srv::Resp => {
                let n = self.rng.range(1, 10);
                let key = format!("soak:{}:half", self.tag).into_bytes();
                let len = self.rng.log_range(0, MAX_BULK);
                let value = self.rng.bytes(len);
                let mut requests = resp_command(&[b"SET", &key, &value]);
                let mut expected = b"+OK\r\n".to_vec();
                for _ in 0..n {
                    requests.extend(resp_command(&[b"GET", &key]));
                    expected.extend(resp_bulk(Some(&value)));
                }
                requests.extend(resp_command(&[b"DEL", &key]));
                expected.extend_from_slice(b":1\r\n");
                let writer = spawn_writer(&s, Payload::Bytes(requests), self.rng.next(), true)?;
                let got = read_exact_vec(&mut s, expected.len()).ctx("read replies after the FIN");
                join_writer(writer)?;
                let got = got?;
                compare(&got, &expected, "RESP replies after a half-close")?;
                self.world.stats.verified(got.len());
            }
        }
        expect_eof(&mut s, "after the replies to a half-closed client")
    }

    fn slow_reader(&mut self) -> Outcome {
        let mut pace = Rng::new(self.rng.next());
        if self.rng.chance(60) {
            let len = self.rng.range(256 * 1024, 2 << 20);
            let s = self.connect(Srv::Echo)?;
            let seed = self.rng.next();
            let writer = spawn_writer(&s, Payload::Gen { seed, len }, self.rng.next(), false)?;
            let mut s = s;
            let read = read_verify(&mut s, &mut ByteGen::new(seed), len, 16 * 1024, Some(&mut pace));
            join_writer(writer)?;
            read?;
            self.world.stats.verified(len);
        } else {
            let n = self.rng.range(200, 2000);
            let (request, response) = http_exchange(&mut self.rng, false);
            let s = self.connect(Srv::Http)?;
            let writer = spawn_writer(&s, Payload::Bytes(request.repeat(n)), self.rng.next(), false)?;
            let mut s = s;
            let expected = response.repeat(n);
            let mut got = vec![0u8; expected.len()];
            let mut at = 0;
            let read = loop {
                if at == got.len() {
                    break Ok(());
                }
                let want = pace.range(1, 4096).min(got.len() - at);
                match s.read(&mut got[at..at + want]) {
                    Ok(0) => break Err(format!("closed after {at} of {} bytes", expected.len())),
                    Ok(k) => at += k,
                    Err(e) => break Err(format!("read after {at} of {} bytes: {e}", expected.len())),
                }
                thread::sleep(Duration::from_micros(pace.range(0, 5000) as u64));
            };
            join_writer(writer)?;
            read?;
            compare(&got, &expected, "slowly read HTTP responses")?;
            self.world.stats.verified(got.len());
        }
        Ok(())
    }

    fn connect_vanish(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let s = self.connect(srv)?;
        match self.rng.below(3) {
            0 => drop(s),
            1 => reset(s),
            _ => {
                let _ = s.shutdown(Shutdown::Both);
                drop(s);
            }
        }
        Ok(())
    }

    fn garbage(&mut self) -> Outcome {
        let srv = self.server(&[Srv::Http, Srv::Resp]);
        let mut s = self.connect(srv)?;
        // The first byte is never a token byte, a blank, `*` or a line end:
        // the request can only be refused.
        let first = self.rng.range(0x80, 0xff) as u8;
        let len = self.rng.log_range(0, 4096);
        let mut junk = vec![first];
        // No line end inside (a bare LF ends a line for both servers): one
        // request, one refusal.
        junk.extend(self.rng.bytes(len).into_iter().map(|b| if b == b'\r' || b == b'\n' { b'.' } else { b }));
        match srv {
            Srv::Http => {
                junk.extend_from_slice(b"\r\n\r\n");
                let _ = s.write_all(&junk); // the server may close before reading it all
                let got = read_until_close(&mut s);
                ensure!(
                    got.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
                    "garbage to the HTTP server: expected 400, got {:?}",
                    preview(&got)
                );
                self.world.stats.verified(26);
            }
            Srv::Resp => {
                let (junk, closes) = match self.rng.below(4) {
                    0 => {
                        junk.extend_from_slice(b"\r\n");
                        (junk, false) // an unknown inline command: an error, and the connection stays
                    }
                    1 => (format!("*{}\r\n", first as char).into_bytes(), true),
                    2 => (b"*1\r\n!x\r\n".to_vec(), true),
                    _ => {
                        let mut frame = b"*1\r\n$4\r\nPING".to_vec();
                        frame.extend_from_slice(&junk[..junk.len().min(2)]);
                        frame.push(b'?');
                        (frame, true) // a bulk string without its CRLF
                    }
                };
                s.write_all(&junk).ctx("write garbage")?;
                let line = read_line(&mut s).ctx("read the reply to garbage")?;
                ensure!(line.starts_with(b"-ERR "), "garbage to the RESP server: got {:?}", preview(&line));
                self.world.stats.verified(line.len());
                if closes {
                    ensure!(line.starts_with(b"-ERR Protocol error"), "expected a protocol error: {line:?}");
                    let rest = read_until_close(&mut s);
                    ensure!(rest.is_empty(), "bytes after a protocol error: {:?}", preview(&rest));
                } else {
                    // The connection still works.
                    s.write_all(b"PING\r\n").ctx("PING after garbage")?;
                    let got = read_exact_vec(&mut s, 7).ctx("PONG after garbage")?;
                    compare(&got, b"+PONG\r\n", "PING after garbage")?;
                    self.world.stats.verified(7);
                }
            }
            Srv::Echo => unreachable!("garbage goes to the protocol servers"),
        }
        Ok(())
    }

    fn oversized(&mut self) -> Outcome {
        let srv = self.server(&[Srv::Http, Srv::Resp]);
        let mut s = self.connect(srv)?;
        match srv {
            Srv::Http => {
                let target = self.rng.range(MAX_HEAD + 1, 64 * 1024);
                let mut head = b"GET / HTTP/1.1\r\nHost: soak\r\n".to_vec();
                let mut i = 0;
                while head.len() < target {
                    head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
                    i += 1;
                }
                head.extend_from_slice(b"\r\n");
                let _ = s.write_all(&head); // the server may refuse before it read everything
                let got = read_until_close(&mut s);
                ensure!(
                    got.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                    "a {}-byte head: expected 431, got {:?}",
                    head.len(),
                    preview(&got)
                );
                self.world.stats.verified(46);
            }
            Srv::Resp => {
                let (frame, reason): (Vec<u8>, &[u8]) = match self.rng.below(3) {
                    0 => {
                        let len = self.rng.range(MAX_BULK + 1, 1 << 30);
                        let frame = format!("*3\r\n$3\r\nSET\r\n$4\r\nsoak\r\n${len}\r\n").into_bytes();
                        (frame, b"-ERR Protocol error: invalid bulk length\r\n")
                    }
                    1 => {
                        let mut frame = b"*3\r\n$3\r\nSET\r\n$4\r\nsoak\r\n$".to_vec();
                        frame.extend(std::iter::repeat_n(b'9', MAX_LINE + self.rng.range(1, 8192)));
                        (frame, b"-ERR Protocol error: too big bulk count string\r\n")
                    }
                    _ => {
                        let len = MAX_LINE + self.rng.range(1, 64 * 1024);
                        (vec![b'a'; len], b"-ERR Protocol error: too big inline request\r\n")
                    }
                };
                let _ = s.write_all(&frame);
                let got = read_until_close(&mut s);
                ensure!(
                    got == reason,
                    "an oversized RESP frame: expected {:?}, got {:?}",
                    preview(reason),
                    preview(&got)
                );
                self.world.stats.verified(got.len());
            }
            Srv::Echo => unreachable!("oversized records go to the protocol servers"),
        }
        Ok(())
    }

    fn slow_loris(&mut self) -> Outcome {
        let mut s = self.connect(Srv::Http)?;
        let connected = Instant::now();
        let head = b"GET /slow HTTP/1.1\r\nHost: soak\r\nX-Slow: ";
        let cut = self.rng.range(1, head.len());
        s.write_all(&head[..cut]).ctx("write half a head")?;
        // Bytes a third of the idle timeout apart, for up to twice the
        // timeout: never silent, but the head must be whole within the
        // timeout of the connect. A write may fail once the server closed.
        for _ in 0..self.rng.below(7) {
            thread::sleep(IDLE_TIMEOUT / 3);
            if s.write_all(b"z").is_err() {
                break;
            }
        }
        s.set_read_timeout(Some(IDLE_TIMEOUT + IO_TIMEOUT)).ctx("read timeout")?;
        let mut buf = [0u8; 256];
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            // Bytes that arrived after the close make the kernel reset.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(format!("the head deadline never closed a slow loris: {e}")),
        };
        let open = connected.elapsed();
        ensure!(n == 0, "a slow loris got an answer: {:?}", preview(&buf[..n]));
        ensure!(
            open >= IDLE_TIMEOUT.saturating_sub(Duration::from_millis(50)),
            "a slow loris was closed {open:?} after it connected, before the {IDLE_TIMEOUT:?} timeout"
        );
        Ok(())
    }

    fn never_reader(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let s = self.connect(srv)?;
        let chunk: Vec<u8> = match srv {
            Srv::Echo => self.rng.bytes(64 * 1024),
            Srv::Http => b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n".repeat(2048),
            Srv::Resp => b"PING\r\n".repeat(10_000),
        };
        let since = Instant::now();
        let sent = match push_until_stalled(&s, &chunk, 2 * NEVER_READER_BOUND, Duration::from_secs(1)) {
            Ok(sent) => sent,
            // The HTTP server's idle timeout closes a connection it has
            // stopped reading, once it has been silent that long: fine.
            Err(e)
                if srv == Srv::Http
                    && e.kind() == ErrorKind::ConnectionReset
                    && since.elapsed() >= IDLE_TIMEOUT.saturating_sub(Duration::from_millis(50)) =>
            {
                0
            }
            Err(e) => return Err(format!("write without reading: {e}")),
        };
        ensure!(
            sent < NEVER_READER_BOUND,
            "{} took {sent} bytes from a client that never reads: it did not stop reading",
            srv.binary()
        );
        reset(s);
        Ok(())
    }

    fn reset_during_large_write(&mut self) -> Outcome {
        let srv = self.server(&SERVERS);
        let mut s = self.connect(srv)?;
        match srv {
            Srv::Echo => {
                let chunk = self.rng.bytes(64 * 1024);
                push_until_stalled(&s, &chunk, self.rng.range(2 << 20, 16 << 20), Duration::from_millis(300))
                    .ctx("write without reading")?;
            }
            Srv::Http => {
                let n = self.rng.range(10_000, 40_000);
                let requests = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n".repeat(n);
                push_until_stalled(&s, &requests, requests.len(), Duration::from_millis(300))
                    .ctx("write without reading")?;
            }
            Srv::Resp => {
                let key = format!("soak:big:{}", self.worker).into_bytes();
                let value = self.rng.bytes(MAX_BULK);
                s.write_all(&resp_command(&[b"SET", &key, &value])).ctx("SET a large value")?;
                let got = read_exact_vec(&mut s, 5).ctx("read +OK")?;
                compare(&got, b"+OK\r\n", "SET")?;
                // Up to 3.75 MiB of replies: under the connection's 4 MiB limit.
                let gets = resp_command(&[b"GET", &key]).repeat(self.rng.range(16, 60));
                s.write_all(&gets).ctx("pipeline GETs")?;
            }
        }
        thread::sleep(Duration::from_millis(self.rng.range(0, 30) as u64));
        reset(s);
        Ok(())
    }
}

// ---- socket helpers ----------------------------------------------------------------------

enum Payload {
    Bytes(Vec<u8>),
    Gen { seed: u64, len: usize },
}

type Writer = thread::JoinHandle<io::Result<()>>;

/// Writes `payload` in random splits from its own thread (so the reader
/// never deadlocks against a server that stops reading while its replies
/// are unread), then half-closes if asked.
fn spawn_writer(s: &TcpStream, payload: Payload, seed: u64, shutdown: bool) -> Result<Writer, String> {
    let mut s = s.try_clone().ctx("clone the socket")?;
    thread::Builder::new()
        .name("soak-writer".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut rng = Rng::new(seed);
            let max_split = [16, 1500, 16 * 1024, 256 * 1024][rng.below(4)];
            match payload {
                Payload::Bytes(data) => {
                    let mut at = 0;
                    while at < data.len() {
                        let n = rng.range(1, max_split).min(data.len() - at);
                        s.write_all(&data[at..at + n])?;
                        at += n;
                    }
                }
                Payload::Gen { seed, len } => {
                    let mut bytes = ByteGen::new(seed);
                    let mut buf = vec![0u8; max_split];
                    let mut at = 0;
                    while at < len {
                        let n = rng.range(1, max_split).min(len - at);
                        bytes.fill(&mut buf[..n]);
                        s.write_all(&buf[..n])?;
                        at += n;
                    }
                }
            }
            if shutdown {
                s.shutdown(Shutdown::Write)?;
            }
            Ok(())
        })
        .ctx("spawn a writer thread")
}

fn join_writer(w: Writer) -> Outcome {
    match w.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("the writer thread panicked".into()),
    }
}

/// Reads `len` bytes and checks each against `expected`; with `pace`, reads
/// a few KiB at a time and sleeps between reads.
fn read_verify(
    s: &mut TcpStream,
    expected: &mut ByteGen,
    len: usize,
    chunk: usize,
    mut pace: Option<&mut Rng>,
) -> Outcome {
    let mut buf = vec![0u8; chunk.max(1)];
    let mut want = vec![0u8; chunk.max(1)];
    let mut at = 0;
    while at < len {
        let ask = match pace.as_deref_mut() {
            Some(rng) => rng.range(1, 16 * 1024).min(buf.len()),
            None => buf.len(),
        };
        let n = match s.read(&mut buf[..ask]) {
            Ok(0) => return Err(format!("the server closed after {at} of {len} bytes")),
            Ok(n) => n,
            Err(e) => return Err(format!("read after {at} of {len} bytes: {e}")),
        };
        ensure!(at + n <= len, "{} bytes echoed, only {len} sent", at + n);
        expected.fill(&mut want[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != want[i]) {
            return Err(format!(
                "byte {} of {len} differs: sent {:#04x}, got {:#04x}",
                at + i,
                want[i],
                buf[i]
            ));
        }
        at += n;
        if let Some(rng) = pace.as_deref_mut() {
            thread::sleep(Duration::from_micros(rng.range(0, 10_000) as u64));
        }
    }
    Ok(())
}

fn read_exact_vec(s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut at = 0;
    while at < n {
        match s.read(&mut buf[at..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("closed after {at} of {n} bytes: {:?}", preview(&buf[..at])),
                ));
            }
            Ok(k) => at += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {at} of {n} bytes"))),
        }
    }
    Ok(buf)
}

/// Reads one line, `\r\n` included (or what came before the end).
fn read_line(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut byte)? {
            0 => break,
            _ => line.push(byte[0]),
        }
        if line.len() > 1 << 20 {
            return Err(io::Error::new(ErrorKind::InvalidData, "a reply line over 1 MiB"));
        }
    }
    Ok(line)
}

/// Everything until the server closes. A reset after the answer is fine: a
/// server that refuses a request closes with the rest of it unread, and the
/// kernel then resets. A timeout ends it too (the caller's check fails).
fn read_until_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

fn expect_eof(s: &mut TcpStream, when: &str) -> Outcome {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("{n} unexpected bytes {when}: {:?}", preview(&buf[..n]))),
        Err(e) => Err(format!("no end of stream {when}: {e}")),
    }
}

/// Writes `chunk` again and again without reading, until `limit` bytes went
/// or a write made no progress for `stall`. Returns the bytes written.
fn push_until_stalled(s: &TcpStream, chunk: &[u8], limit: usize, stall: Duration) -> io::Result<usize> {
    s.set_write_timeout(Some(stall))?;
    let mut s = s;
    let mut sent = 0;
    while sent < limit {
        let n = (limit - sent).min(chunk.len());
        match s.write(&chunk[..n]) {
            Ok(k) => sent += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {sent} bytes"))),
        }
    }
    Ok(sent)
}

fn compare(got: &[u8], expected: &[u8], what: &str) -> Outcome {
    if got == expected {
        return Ok(());
    }
    let at = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
    let from = at.saturating_sub(16);
    Err(format!(
        "{what}: {} bytes, expected {}; first difference at byte {at}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        preview(&got[from.min(got.len())..]),
        preview(&expected[from.min(expected.len())..]),
    ))
}

/// The first bytes of `b`, printable.
fn preview(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
    if b.len() > 80 {
        let _ = write!(s, "… ({} bytes)", b.len());
    }
    s
}

// ---- protocol helpers --------------------------------------------------------------------

/// One HTTP request and the exact response the server gives it; with
/// `last_closes`, a request after which the server closes.
fn http_exchange(rng: &mut Rng, last_closes: bool) -> (Vec<u8>, Vec<u8>) {
    let path = format!("/soak/{}", rng.below(1000));
    if last_closes {
        return if rng.chance(50) {
            let q = format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
            (q.into_bytes(), http_response("200 OK", Some(false), "", HELLO_BODY, false))
        } else {
            let q = format!("GET {path} HTTP/1.0\r\n\r\n");
            (q.into_bytes(), http_response("200 OK", Some(false), "", HELLO_BODY, false))
        };
    }
    match rng.below(6) {
        0 | 1 => {
            let q = format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n");
            (q.into_bytes(), http_response("200 OK", None, "", HELLO_BODY, false))
        }
        2 => {
            let q = format!("HEAD {path} HTTP/1.1\r\nHost: soak\r\n\r\n");
            (q.into_bytes(), http_response("200 OK", None, "", HELLO_BODY, true))
        }
        3 => {
            let q = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            (q.into_bytes(), http_response("200 OK", Some(true), "", HELLO_BODY, false))
        }
        4 => {
            let len = rng.range(0, 2000);
            let body = rng.bytes(len);
            let mut q =
                format!("POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
            q.extend(body);
            let r = http_response(
                "405 Method Not Allowed",
                None,
                "Allow: GET, HEAD\r\n",
                b"method not allowed\n",
                false,
            );
            (q, r)
        }
        _ => {
            let q = format!("BREW {path} HTTP/1.1\r\nHost: soak\r\n\r\n");
            (q.into_bytes(), http_response("501 Not Implemented", None, "", b"not implemented\n", false))
        }
    }
}

/// The server's response format. `keep_alive_10`: `None` for HTTP/1.1
/// kept alive (no header), `Some(true)` for HTTP/1.0 kept alive,
/// `Some(false)` for a close.
fn http_response(status: &str, keep_alive_10: Option<bool>, extra: &str, body: &[u8], head: bool) -> Vec<u8> {
    let connection = match keep_alive_10 {
        None => "",
        Some(true) => "Connection: keep-alive\r\n",
        Some(false) => "Connection: close\r\n",
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: rolecore\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}{connection}\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn resp_bulk(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => b"$-1\r\n".to_vec(),
        Some(v) => {
            let mut out = format!("${}\r\n", v.len()).into_bytes();
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

// ---- the servers -------------------------------------------------------------------------

struct Server {
    srv: Srv,
    child: Child,
    addr: SocketAddr,
    stderr_path: PathBuf,
    fds_at_start: usize,
    rss_at_start_kib: u64,
    exited: bool,
}

impl Server {
    fn start(dir: &Path, srv: Srv, backend: &str) -> Result<Server, String> {
        let path = dir.join(srv.binary());
        let stderr_path = std::env::temp_dir().join(format!(
            "rolecore-soak-{}-{}.stderr",
            std::process::id(),
            srv.binary()
        ));
        let stderr = std::fs::File::create(&stderr_path).ctx("create the stderr file")?;
        let mut cmd = Command::new(&path);
        cmd.args(["127.0.0.1:0", "--backend", backend]);
        match srv {
            Srv::Echo => {}
            Srv::Http => {
                cmd.args(["--idle-timeout", &IDLE_TIMEOUT.as_secs_f64().to_string()]);
            }
            Srv::Resp => {
                cmd.args(["--max-bulk", &MAX_BULK.to_string()]);
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {}: {e}", path.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            // Keep the pipe open and drained for the server's life.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(line)) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{}: no `listening on` line: {other:?}", srv.binary()));
            }
        };
        let addr = match line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
            Some(addr) => addr,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{}: first line {line:?} is not `listening on HOST:PORT`", srv.binary()));
            }
        };
        let fds_at_start = fd_count(child.id()).ctx("count the server's descriptors")?;
        let rss_at_start_kib = status_kib(child.id(), "VmRSS:").unwrap_or(0);
        Ok(Server { srv, child, addr, stderr_path, fds_at_start, rss_at_start_kib, exited: false })
    }

    fn name(&self) -> &'static str {
        self.srv.binary()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within 10 s).
    fn terminate(&mut self) -> Result<i32, String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ctx("run kill -TERM")?;
        ensure!(status.success(), "kill -TERM {} failed", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().ctx("wait for the server")? {
                self.exited = true;
                return status.code().ok_or_else(|| format!("ended by {status}"));
            }
            ensure!(Instant::now() < deadline, "still running 10 s after SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// What each of a process's descriptors points at, for a leak report. Sockets
/// are named with their TCP state and ports when `/proc/net/tcp` knows them.
fn describe_fds(pid: u32) -> Vec<String> {
    let mut tcp: HashMap<String, String> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 {
                let state = match f[3] {
                    "01" => "ESTABLISHED",
                    "02" => "SYN_SENT",
                    "03" => "SYN_RECV",
                    "04" => "FIN_WAIT1",
                    "05" => "FIN_WAIT2",
                    "06" => "TIME_WAIT",
                    "07" => "CLOSE",
                    "08" => "CLOSE_WAIT",
                    "09" => "LAST_ACK",
                    "0A" => "LISTEN",
                    "0B" => "CLOSING",
                    other => other,
                };
                let port = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
                tcp.insert(
                    f[9].to_string(),
                    format!("tcp {state} local :{:?} remote :{:?}", port(f[1]), port(f[2])),
                );
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target =
                std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_default();
            let inode = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']'));
            let more = inode.and_then(|i| tcp.get(i)).map(|d| format!(" ({d})")).unwrap_or_default();
            out.push(format!("{} -> {target}{more}", entry.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// One request each server must still answer after the soak.
fn probe(srv: Srv, addr: SocketAddr) -> Outcome {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ctx("connect")?;
    set_timeouts(&s, IO_TIMEOUT).ctx("timeouts")?;
    let (request, expected): (Vec<u8>, Vec<u8>) = match srv {
        Srv::Echo => {
            let data = Rng::new(7).bytes(64 * 1024);
            (data.clone(), data)
        }
        Srv::Http => (
            b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
            http_response("200 OK", None, "", HELLO_BODY, false),
        ),
        Srv::Resp => (b"PING\r\n".to_vec(), b"+PONG\r\n".to_vec()),
    };
    s.write_all(&request).ctx("write")?;
    let got = read_exact_vec(&mut s, expected.len()).ctx("read")?;
    compare(&got, &expected, "the answer after the soak")
}

// ---- the run -----------------------------------------------------------------------------

/// What the run is asked to do (the command line's flags).
pub struct Args {
    pub duration: Duration,
    pub clients: usize,
    pub seed: u64,
    /// `select`, `poll` or `epoll`: the servers' `--backend`.
    pub backend: String,
}

/// Checks that `dir` holds the three server binaries.
fn check_servers(dir: &Path) -> Result<(), String> {
    for srv in SERVERS {
        let path = dir.join(srv.binary());
        if !path.is_file() {
            return Err(format!(
                "{} is missing: run `cargo build --release --examples` in the rolecore checkout first (or pass `--servers DIR`, e.g. `target/debug/examples` after `cargo build --examples`)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Runs the soak against the servers in `dir`, writing its report to `out`.
/// `Ok` if every check passed, else the reasons.
pub fn run(args: &Args, dir: &Path, out: &mut dyn Write) -> Result<(), String> {
    check_servers(dir)?;
    say!(
        out,
        "soak: seed {}, {} clients, {:.0} s, backend {}, servers from {}",
        args.seed,
        args.clients,
        args.duration.as_secs_f64(),
        args.backend,
        dir.display()
    );
    let mut servers = Vec::new();
    for srv in SERVERS {
        servers.push(Server::start(dir, srv, &args.backend)?);
    }
    for s in &servers {
        say!(
            out,
            "{} (pid {}) on {}: {} descriptors after startup",
            s.name(),
            s.child.id(),
            s.addr,
            s.fds_at_start
        );
    }
    let world =
        Arc::new(World { addrs: [servers[0].addr, servers[1].addr, servers[2].addr], stats: Stats::new() });

    // ---- the clients ----
    let started = Instant::now();
    let deadline = started + args.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut workers = Vec::new();
    for worker in 0..args.clients {
        let world = Arc::clone(&world);
        let stop = Arc::clone(&stop);
        let done = done_tx.clone();
        let seed = args.seed;
        let spawned = thread::Builder::new()
            .name(format!("soak-{worker}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                work(&world, worker, seed, deadline, &stop);
                let _ = done.send(());
            })
            .map_err(|e| format!("spawn client thread {worker}: {e}"))?;
        workers.push(spawned);
    }
    drop(done_tx);
    let mut next_note = started + Duration::from_secs(60);
    let mut finished = 0;
    // Clients stop starting actions at the deadline; a stuck one gets the
    // longest action time (every socket timeout in a row) before the run
    // calls it a hang.
    let hang_deadline = deadline + Duration::from_secs(120);
    while finished < workers.len() {
        match done_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => finished += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_note && now < deadline {
            next_note += Duration::from_secs(60);
            let runs: u64 = world.stats.kinds.iter().map(|k| k.runs.load(Ordering::Relaxed)).sum();
            say!(
                out,
                "  t={:>4.0} s: {runs} client actions, {} failures, {:.1} MiB verified",
                started.elapsed().as_secs_f64(),
                world.stats.failure_count.load(Ordering::Relaxed),
                world.stats.bytes_verified.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
            );
        }
        if now >= hang_deadline {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    let hung = workers.len() - finished;
    if hung == 0 {
        for w in workers {
            if w.join().is_err() {
                world.stats.client_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let client_time = started.elapsed();

    // ---- after the clients: settle and check each server ----
    let mut problems: Vec<String> = Vec::new();
    if hung > 0 {
        problems.push(format!("{hung} client threads still running 120 s after the duration (a hang)"));
    }
    let settle_started = Instant::now();
    let settle_deadline = settle_started + Duration::from_secs(30);
    let mut fds_after = [0usize; 3];
    loop {
        for (i, s) in servers.iter().enumerate() {
            fds_after[i] = fd_count(s.child.id()).unwrap_or(0);
        }
        let settled = servers.iter().zip(fds_after).all(|(s, n)| n == s.fds_at_start);
        if settled || Instant::now() >= settle_deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let settle_time = settle_started.elapsed();
    let mut report = String::new();
    let mut peak_rss = [0u64; 3];
    // What the buffers may hold with every client connected at once (and a
    // few connections the clients closed that the server has not yet seen
    // go), on top of what the server needed to start, plus 32 MiB of slack.
    let rss_bound: Vec<u64> = servers
        .iter()
        .map(|s| {
            s.rss_at_start_kib + (args.clients as u64 + 16) * s.srv.per_connection_bound_kib() + 32 * 1024
        })
        .collect();
    let mut idle_ticks = [0u64; 3];
    // Each server still answers; then it idles: no connection, and the idle
    // timeout the probe's connection armed has come due (a loop must not
    // spin on the timers of channels that closed).
    let mut probes = Vec::new();
    for s in servers.iter_mut() {
        probes.push(if s.alive() { probe(s.srv, s.addr) } else { Ok(()) });
    }
    thread::sleep(IDLE_TIMEOUT + Duration::from_millis(500));
    let ticks_before: Vec<Option<u64>> = servers.iter().map(|s| cpu_ticks(s.child.id())).collect();
    thread::sleep(Duration::from_secs(1));
    for (i, s) in servers.iter_mut().enumerate() {
        let pid = s.child.id();
        idle_ticks[i] = match (ticks_before[i], cpu_ticks(pid)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        peak_rss[i] = status_kib(pid, "VmHWM:").unwrap_or(0);
        if !s.alive() {
            problems.push(format!("{} died during the soak", s.name()));
            continue;
        }
        if fds_after[i] != s.fds_at_start {
            let _ = writeln!(report, "{} descriptors after the soak:", s.name());
            for d in describe_fds(pid) {
                let _ = writeln!(report, "    {d}");
            }
            problems.push(format!(
                "{} has {} descriptors after the soak, {} after startup (a leak)",
                s.name(),
                fds_after[i],
                s.fds_at_start
            ));
        }
        if peak_rss[i] > rss_bound[i] {
            problems.push(format!(
                "{} peaked at {} KiB of RSS, past its buffer bound of {} KiB",
                s.name(),
                peak_rss[i],
                rss_bound[i]
            ));
        }
        // An idle server sleeps: a spinning loop burns ~100 ticks a second.
        if idle_ticks[i] > 20 {
            problems.push(format!(
                "{} used {} CPU ticks in 1 s while idle (spinning)",
                s.name(),
                idle_ticks[i]
            ));
        }
        if let Err(e) = &probes[i] {
            problems.push(format!("{} no longer serves after the soak: {e}", s.name()));
        }
    }
    // Panics and other reports on stderr, then SIGTERM and the exit status.
    let mut panics = 0;
    let mut stderr_lines = [0usize; 3];
    let mut exit_codes: [Option<i32>; 3] = [None; 3];
    for (i, s) in servers.iter_mut().enumerate() {
        if s.alive() {
            match s.terminate() {
                Ok(code) => {
                    exit_codes[i] = Some(code);
                    if code != 0 {
                        problems.push(format!("{} exited with status {code} after SIGTERM", s.name()));
                    }
                }
                Err(e) => problems.push(format!("{}: SIGTERM: {e}", s.name())),
            }
        }
        let stderr = s.stderr();
        let p = stderr.matches("panicked").count();
        panics += p;
        stderr_lines[i] = stderr.lines().count();
        if p > 0 {
            problems.push(format!("{} panicked {p} times", s.name()));
        }
        if !stderr.is_empty() {
            // What it reported, grouped by the line's start.
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            for line in stderr.lines() {
                let key: String = line.chars().take(60).collect();
                *kinds.entry(key).or_default() += 1;
            }
            let _ = writeln!(report, "{} stderr ({} lines):", s.name(), stderr_lines[i]);
            for (k, n) in kinds.iter().take(12) {
                let _ = writeln!(report, "    {n:>6} × {k}");
            }
        }
    }
    let client_panics = world.stats.client_panics.load(Ordering::Relaxed);
    if client_panics > 0 {
        problems.push(format!("{client_panics} soak client threads panicked"));
    }
    let failures = world.stats.failure_count.load(Ordering::Relaxed);
    if failures > 0 {
        problems.push(format!("{failures} client checks failed"));
    }

    // ---- the report ----
    let stats = &world.stats;
    let runs: u64 = stats.kinds.iter().map(|k| k.runs.load(Ordering::Relaxed)).sum();
    say!(out, "== soak report ==");
    say!(
        out,
        "duration: {:.1} s of clients (stopped starting actions at {:.1} s), settled in {:.1} s",
        client_time.as_secs_f64(),
        args.duration.as_secs_f64(),
        settle_time.as_secs_f64()
    );
    say!(out, "client actions: {runs} by {} concurrent clients", args.clients);
    let conns: Vec<u64> = stats.connections.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    say!(
        out,
        "connections served: {} (echo_server {}, http_server {}, resp_server {})",
        conns.iter().sum::<u64>(),
        conns[0],
        conns[1],
        conns[2]
    );
    let mut faults = 0;
    for (kind, _) in KINDS {
        let k = &stats.kinds[kind.index()];
        let (n, ok, failed) =
            (k.runs.load(Ordering::Relaxed), k.ok.load(Ordering::Relaxed), k.failed.load(Ordering::Relaxed));
        if kind.is_fault() {
            faults += n;
            say!(out, "fault {}: {n} injected, {ok} handled as expected, {failed} failed", kind.name());
        } else {
            say!(out, "healthy {}: {n} clients, {ok} verified, {failed} failed", kind.name());
        }
    }
    say!(out, "faults injected: {faults}");
    let bytes = stats.bytes_verified.load(Ordering::Relaxed);
    say!(out, "bytes verified: {bytes} ({:.1} MiB)", bytes as f64 / (1 << 20) as f64);
    for (i, s) in servers.iter().enumerate() {
        say!(
            out,
            "{}: descriptors {} after startup, {} after the soak; RSS {} KiB after startup, peak {} KiB (bound {} KiB); idle CPU {} ticks/s; stderr {} lines; exit {}",
            s.name(),
            s.fds_at_start,
            fds_after[i],
            s.rss_at_start_kib,
            peak_rss[i],
            rss_bound[i],
            idle_ticks[i],
            stderr_lines[i],
            exit_codes[i].map_or("-".to_string(), |c| c.to_string())
        );
    }
    let _ = write!(out, "{report}");
    say!(out, "panics: {panics}");
    let shown = stats.failures.lock().unwrap_or_else(|e| e.into_inner());
    if !shown.is_empty() {
        say!(out, "failed checks ({failures}, the first {} shown):", shown.len());
        for f in shown.iter() {
            say!(out, "    {f}");
        }
    }
    match problems.first() {
        None => Ok(()),
        Some(_) => Err(problems.join("; ")),
    }
}

/// One client thread: actions one after another until the deadline. The
/// first action of worker `w` is kind `w mod 13`, so every kind runs in even
/// the shortest soak with 13 or more clients.
fn work(world: &World, worker: usize, seed: u64, deadline: Instant, stop: &AtomicBool) {
    let mut counter = 0i64;
    let mut picker = Rng::new(seed ^ splitmix(worker as u64));
    let mut n = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let kind = if n == 0 { KINDS[worker % KINDS.len()].0 } else { Kind::pick(&mut picker) };
        let action_seed = splitmix(seed ^ splitmix(((worker as u64) << 32) | n));
        let mut client = Client {
            world,
            rng: Rng::new(action_seed),
            worker,
            counter: &mut counter,
            tag: format!("{worker}:{n}"),
            target: None,
        };
        let stats = &world.stats.kinds[kind.index()];
        stats.runs.fetch_add(1, Ordering::Relaxed);
        let started_at = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client.run(kind)));
        match result {
            Ok(Ok(())) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(why)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                let on = client.target.map_or("-", Srv::binary);
                world.stats.fail(format!(
                    "w{worker}#{n} {} on {on} (seed {seed}, action seed {action_seed:#x}), after {:.1} s: {why}",
                    kind.name(),
                    started_at.elapsed().as_secs_f64()
                ));
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                world.stats.client_panics.fetch_add(1, Ordering::Relaxed);
                world.stats.fail(format!("w{worker}#{n} {}: the client panicked", kind.name()));
            }
        }
        n += 1;
    }
}
