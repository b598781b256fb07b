//! The netcat example and the echo server example as real processes.
//!
//! - 100 MiB of deterministic pseudo-random bytes each way, at once, between
//!   `netcat --listen 127.0.0.1:0` and `netcat 127.0.0.1:PORT`: each side's
//!   stdin (a pipe) reaches the other side's stdout (a pipe) intact, checked
//!   byte by byte as it streams and by a checksum (FNV-1a over 64-bit words);
//!   both exit 0. Smaller runs cover select and poll.
//! - Back-pressure: a stdout that stalls, and a stdin that trickles, lose
//!   nothing, and a stalled netcat sleeps instead of spinning (its CPU time is
//!   read from `/proc`).
//! - The command line: half-close at stdin's end, exit 0 when the peer
//!   closes, one line and exit 1 for a refused connect or a connect or
//!   silence past `--timeout`, usage and exit 2 for bad arguments.
//! - Interoperation with Python's asyncore (CPython 3.11, `python3 -W
//!   ignore`): the seed's HTTP client against the rolecore echo server, and
//!   netcat against the seed's echo server.
//!
//! Every wait is bounded: a process still running at its deadline is killed
//! and the test fails. Loopback only.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rolecore::Backend;

const MIB: usize = 1 << 20;

// ---- pseudo-random bytes and a checksum ---------------------------------------------------

/// xorshift64*, seeded through splitmix64: the same seed, the same stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The stream of `seed`, in pieces of any length.
struct Stream {
    rng: Rng,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new(seed: u64) -> Stream {
        Stream { rng: Rng::new(seed), word: [0; 8], used: 8 }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            if self.used == 8 {
                if buf.len() - at >= 8 {
                    // Whole words straight into the buffer.
                    for chunk in buf[at..].chunks_exact_mut(8) {
                        chunk.copy_from_slice(&self.rng.next().to_le_bytes());
                        at += 8;
                    }
                    continue;
                }
                self.word = self.rng.next().to_le_bytes();
                self.used = 0;
            }
            let n = (8 - self.used).min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&self.word[self.used..self.used + n]);
            self.used += n;
            at += n;
        }
    }
}

/// FNV-1a over little-endian 64-bit words (the tail zero-padded, then the
/// length mixed in), so a debug build checksums 100 MiB quickly.
struct Checksum {
    hash: u64,
    carry: Vec<u8>,
    len: u64,
}

impl Checksum {
    fn new() -> Checksum {
        Checksum { hash: 0xcbf2_9ce4_8422_2325, carry: Vec::with_capacity(8), len: 0 }
    }

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.carry.is_empty() {
            let n = (8 - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.carry.len() < 8 {
                return;
            }
            let word = u64::from_le_bytes(self.carry[..].try_into().unwrap());
            self.mix(word);
            self.carry.clear();
        }
        let words = data.chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            self.mix(u64::from_le_bytes(w.try_into().unwrap()));
        }
        self.carry.extend_from_slice(tail);
    }

    fn finish(mut self) -> (u64, u64) {
        if !self.carry.is_empty() {
            let mut last = [0u8; 8];
            last[..self.carry.len()].copy_from_slice(&self.carry);
            self.mix(u64::from_le_bytes(last));
        }
        let len = self.len;
        self.mix(len);
        (self.hash, len)
    }
}

// ---- processes ----------------------------------------------------------------------------

/// A child process that is killed if still running when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command) -> Proc {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { name: name.to_string(), child }
    }

    fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin")
    }

    fn stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout")
    }

    fn stderr(&mut self) -> ChildStderr {
        self.child.stderr.take().expect("stderr")
    }

    /// Waits until `deadline`; kills the process and fails past it.
    fn wait(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} was still running at its deadline: killed", self.name);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time (user + system) used so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses: state is
        // the first, utime the 12th, stime the 13th.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn netcat(args: &[&str]) -> Command {
    let mut command = Command::new(util::example("netcat"));
    command.args(args);
    command
}

/// Reads everything from a child's stream in a thread.
fn collect(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

/// `netcat --listen 127.0.0.1:0`: the process, its port (from the
/// `listening on` line on stderr) and the rest of its stderr.
fn listen(backend: Backend) -> (Proc, u16, thread::JoinHandle<Vec<u8>>) {
    let (proc, at, rest) = listen_at("127.0.0.1:0", backend);
    let port = at
        .strip_prefix("127.0.0.1:")
        .unwrap_or_else(|| panic!("expected `listening on 127.0.0.1:PORT` on stderr, got {at:?}"))
        .parse()
        .expect("a port");
    (proc, port, rest)
}

/// `netcat --listen ADDR`: the process, the address it listens on (from the
/// `listening on` line on stderr) and the rest of its stderr.
fn listen_at(addr: &str, backend: Backend) -> (Proc, String, thread::JoinHandle<Vec<u8>>) {
    let mut proc =
        Proc::spawn("netcat --listen", &mut netcat(&["--listen", addr, "--backend", backend.name()]));
    let mut stderr = BufReader::new(proc.stderr());
    let (tx, rx) = mpsc::channel();
    let rest = thread::spawn(move || {
        let mut line = String::new();
        let _ = stderr.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = Vec::new();
        let _ = stderr.read_to_end(&mut rest);
        rest
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("the listening line within 10 s");
    let at = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("expected `listening on ADDR` on stderr, got {line:?}"))
        .to_owned();
    (proc, at, rest)
}

/// Writes `len` bytes of the stream of `seed` in random-sized pieces, with an
/// optional pause after each piece, then closes; returns the checksum of
/// what was written.
fn feed(
    mut to: ChildStdin,
    seed: u64,
    len: usize,
    pause: Option<Duration>,
) -> thread::JoinHandle<(u64, u64)> {
    thread::spawn(move || {
        let mut stream = Stream::new(seed);
        let mut sizes = Rng::new(seed ^ 0xfeed);
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = (1 + sizes.below(256 * 1024) as usize).min(len - sent);
            stream.fill(&mut buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break; // the process died: the reader's check says so
            }
            sum.update(&buf[..n]);
            sent += n;
            if let Some(pause) = pause {
                thread::sleep(pause);
            }
        }
        sum.finish()
    })
}

/// How a reader paces itself.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as it can.
    Fast,
    /// Reads `at` bytes, then stops reading for `stall` (and sends a message
    /// on the channel it is given when the stall starts and ends).
    StallAt { at: usize, stall: Duration },
}

/// What a reader found.
struct Received {
    checksum: (u64, u64),
    /// The first offset that differs from the stream of the seed, if any.
    mismatch: Option<usize>,
}

/// Reads a child's stdout to the end, comparing with the stream of `seed` as
/// it goes.
fn check(
    mut from: ChildStdout,
    seed: u64,
    pace: Pace,
    stalled: Option<mpsc::Sender<bool>>,
) -> thread::JoinHandle<Received> {
    thread::spawn(move || {
        let mut expected = Stream::new(seed);
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; 128 * 1024];
        let mut want = vec![0u8; 128 * 1024];
        let mut mismatch = None;
        let mut total = 0;
        let mut stall = match pace {
            Pace::StallAt { at, stall } => Some((at, stall)),
            Pace::Fast => None,
        };
        loop {
            if let Some((at, pause)) = stall
                && total >= at
            {
                if let Some(tx) = &stalled {
                    let _ = tx.send(true);
                }
                thread::sleep(pause);
                if let Some(tx) = &stalled {
                    let _ = tx.send(false);
                }
                stall = None;
            }
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sum.update(&buf[..n]);
            if mismatch.is_none() {
                expected.fill(&mut want[..n]);
                if buf[..n] != want[..n] {
                    mismatch = Some(total + (0..n).find(|&i| buf[i] != want[i]).unwrap());
                }
            }
            total += n;
        }
        Received { checksum: sum.finish(), mismatch }
    })
}

/// Both directions at once between two netcats; `len` bytes each way.
/// Returns the elapsed time.
fn both_ways(backend: Backend, len: usize, deadline: Duration) -> Duration {
    let start = Instant::now();
    let deadline = start + deadline;
    let (mut server, port, _) = listen(backend);
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target, "--backend", backend.name()]));
    let client_err = collect(client.stderr());
    let to_server = feed(server.stdin(), 1, len, None);
    let to_client = feed(client.stdin(), 2, len, None);
    let at_client = check(client.stdout(), 1, Pace::Fast, None);
    let at_server = check(server.stdout(), 2, Pace::Fast, None);
    let server_status = server.wait(deadline);
    let client_status = client.wait(deadline);
    let elapsed = start.elapsed();
    let client_err = String::from_utf8_lossy(&client_err.join().unwrap()).into_owned();
    assert!(server_status.success(), "{backend}: the listening netcat exited {server_status}");
    assert!(client_status.success(), "{backend}: the connecting netcat exited {client_status}: {client_err}");
    for (what, sent, received) in [
        ("listener's stdin → client's stdout", to_server, at_client),
        ("client's stdin → listener's stdout", to_client, at_server),
    ] {
        let sent = sent.join().unwrap();
        let received = received.join().unwrap();
        assert_eq!(received.mismatch, None, "{backend}: {what}: the bytes differ from this offset on");
        assert_eq!(received.checksum.1, len as u64, "{backend}: {what}: length");
        assert_eq!(sent, received.checksum, "{backend}: {what}: checksum and length");
    }
    elapsed
}

// ---- 100 MiB each way ------------------------------------------------------------------------

#[test]
fn moves_100_mib_each_way_at_once_intact() {
    let len = 100 * MIB;
    let elapsed = both_ways(Backend::Epoll, len, Duration::from_secs(240));
    let rate = 2.0 * len as f64 / MIB as f64 / elapsed.as_secs_f64();
    eprintln!("netcat: 2 x 100 MiB through pipes and a socket in {elapsed:.2?} ({rate:.0} MiB/s in total)");
}

#[test]
fn moves_data_both_ways_on_select_and_poll() {
    for backend in [Backend::Select, Backend::Poll].into_iter().filter(|b| b.is_available()) {
        if backend.is_available() {
            both_ways(backend, 16 * MIB, Duration::from_secs(120));
        }
    }
}

// ---- back-pressure ---------------------------------------------------------------------------------

/// The client's stdout stops being read for a second in the middle, while the
/// listener keeps being fed: every queue fills, nothing is lost, and neither
/// process burns CPU while it waits.
#[test]
fn a_stalled_stdout_loses_nothing_and_nobody_spins() {
    let len = 32 * MIB;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut server, port, _) = listen(Backend::Epoll);
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let _client_err = collect(client.stderr());
    let (tx, rx) = mpsc::channel();
    let sent = feed(server.stdin(), 7, len, None);
    drop(client.stdin()); // nothing the other way
    let _ = collect(server.stdout());
    let received =
        check(client.stdout(), 7, Pace::StallAt { at: 2 * MIB, stall: Duration::from_secs(2) }, Some(tx));
    assert!(rx.recv_timeout(Duration::from_secs(60)).expect("the stall starts"), "stall start");
    // Let every buffer fill, then measure a quiet second.
    thread::sleep(Duration::from_millis(500));
    let before = (server.cpu_ticks(), client.cpu_ticks());
    thread::sleep(Duration::from_secs(1));
    let after = (server.cpu_ticks(), client.cpu_ticks());
    assert!(!rx.recv_timeout(Duration::from_secs(60)).expect("the stall ends"), "stall end");
    let (server_status, client_status) = (server.wait(deadline), client.wait(deadline));
    assert!(server_status.success() && client_status.success(), "{server_status}, {client_status}");
    let received = received.join().unwrap();
    assert_eq!(received.mismatch, None, "the bytes differ from this offset on");
    assert_eq!(sent.join().unwrap(), received.checksum, "checksum and length");
    // A busy loop would take about 100 ticks per second.
    let spent = (after.0 - before.0, after.1 - before.1);
    assert!(spent.0 <= 10 && spent.1 <= 10, "CPU ticks while stalled (listener, client): {spent:?}");
}

/// Over a Unix socket, whose buffers are small, a reader that stalls makes
/// netcat's sends partial (a TCP socket on loopback mostly takes a queue
/// whole): the rest of each is sent next, not a byte skipped.
#[test]
fn a_stalled_reader_over_a_unix_socket_loses_nothing() {
    let len = 8 * MIB;
    let deadline = Instant::now() + Duration::from_secs(120);
    let path = util::temp_path("sock");
    let (mut server, target, _) = listen_at(&format!("unix:{}", path.display()), Backend::Epoll);
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let _client_err = collect(client.stderr());
    let sent = feed(server.stdin(), 17, len, None);
    drop(client.stdin()); // nothing the other way
    let _ = collect(server.stdout());
    let received =
        check(client.stdout(), 17, Pace::StallAt { at: MIB, stall: Duration::from_millis(500) }, None);
    let (server_status, client_status) = (server.wait(deadline), client.wait(deadline));
    let _ = std::fs::remove_file(&path);
    assert!(server_status.success() && client_status.success(), "{server_status}, {client_status}");
    let received = received.join().unwrap();
    assert_eq!(received.mismatch, None, "the bytes differ from this offset on");
    assert_eq!(sent.join().unwrap(), received.checksum, "checksum and length");
}

/// The listener sends a little more than the client's queue holds, then its
/// end of stream, while the client's stdout is not read at all: the client's
/// socket hangs up (both directions shut down) while its reader is paused by
/// back-pressure. Everything still arrives, in order.
#[test]
fn a_hang_up_while_stdout_is_stalled_loses_nothing() {
    let len = 3 * MIB / 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut server, port, _) = listen(Backend::Epoll);
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let _client_err = collect(client.stderr());
    drop(client.stdin()); // the client half-closes at once
    let _ = collect(server.stdout());
    let sent = feed(server.stdin(), 13, len, None);
    let received =
        check(client.stdout(), 13, Pace::StallAt { at: 0, stall: Duration::from_millis(1500) }, None);
    let (server_status, client_status) = (server.wait(deadline), client.wait(deadline));
    assert!(server_status.success() && client_status.success(), "{server_status}, {client_status}");
    let received = received.join().unwrap();
    assert_eq!(received.mismatch, None, "the bytes differ from this offset on");
    assert_eq!(sent.join().unwrap(), received.checksum, "checksum and length");
}

/// stdin trickles in small pieces: the socket waits for it, nothing is lost.
#[test]
fn a_trickling_stdin_loses_nothing() {
    let len = 2 * MIB;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut server, port, _) = listen(Backend::Epoll);
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let _client_err = collect(client.stderr());
    drop(server.stdin());
    let _ = collect(client.stdout());
    let sent = feed(client.stdin(), 11, len, Some(Duration::from_millis(5)));
    let received = check(server.stdout(), 11, Pace::Fast, None);
    let (server_status, client_status) = (server.wait(deadline), client.wait(deadline));
    assert!(server_status.success() && client_status.success(), "{server_status}, {client_status}");
    let received = received.join().unwrap();
    assert_eq!(received.mismatch, None, "the bytes differ from this offset on");
    assert_eq!(sent.join().unwrap(), received.checksum, "checksum and length");
}

/// A connected, idle pair of netcats sleeps.
#[test]
fn an_idle_connection_does_not_spin() {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut server, port, _) = listen(Backend::Epoll);
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let mut client_in = client.stdin();
    let mut server_in = server.stdin();
    let mut client_out = BufReader::new(client.stdout());
    // One line through, so both are surely connected.
    server_in.write_all(b"ready\n").unwrap();
    let mut line = String::new();
    client_out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let before = (server.cpu_ticks(), client.cpu_ticks());
    thread::sleep(Duration::from_secs(1));
    let after = (server.cpu_ticks(), client.cpu_ticks());
    let spent = (after.0 - before.0, after.1 - before.1);
    assert!(spent.0 <= 10 && spent.1 <= 10, "CPU ticks while idle (listener, client): {spent:?}");
    client_in.write_all(b"bye\n").unwrap();
    drop(client_in);
    drop(server_in);
    let server_out = collect(server.stdout());
    assert!(server.wait(deadline).success());
    assert!(client.wait(deadline).success());
    assert_eq!(server_out.join().unwrap(), b"bye\n");
}

// ---- the command line ----------------------------------------------------------------------------

/// At stdin's end netcat half-closes: the peer reads the end of the stream
/// while netcat still runs and still receives; when the peer then answers
/// and closes, netcat prints the answer and exits 0.
#[test]
fn half_closes_at_stdin_eof_and_exits_0_when_the_peer_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).expect("netcat's end of stream");
        conn.write_all(b"answered after your end of stream\n").unwrap();
        request
    });
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let out = collect(client.stdout());
    let err = collect(client.stderr());
    let mut stdin = client.stdin();
    stdin.write_all(b"a request\n").unwrap();
    drop(stdin);
    assert_eq!(server.join().unwrap(), b"a request\n", "the server read netcat's end of stream");
    let status = client.wait(Instant::now() + Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&err.join().unwrap()));
    assert_eq!(out.join().unwrap(), b"answered after your end of stream\n");
}

/// The same from the listening side: a client sends, half-closes, and reads
/// what the listening netcat's stdin had; netcat exits 0 once both are done.
#[test]
fn listen_mode_serves_one_connection_both_ways() {
    let (mut server, port, _) = listen(Backend::default());
    let out = collect(server.stdout());
    let mut stdin = server.stdin();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"from the client\n").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    stdin.write_all(b"from the listener\n").unwrap();
    drop(stdin);
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from the listener\n");
    assert!(server.wait(Instant::now() + Duration::from_secs(10)).success());
    assert_eq!(out.join().unwrap(), b"from the client\n");
    // One connection only: the listener is gone.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_refused_connect_is_one_line_on_stderr_and_exit_1() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let err = collect(client.stderr());
    let _stdin = client.stdin();
    let status = client.wait(Instant::now() + Duration::from_secs(10));
    let err = String::from_utf8(err.join().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("netcat: cannot connect to") && err.contains("refused"), "{err:?}");
}

/// A peer that takes the connection and then neither reads nor writes held
/// netcat for good, its stdin stopped by back-pressure; `--timeout` ends it
/// once the socket was silent both ways that long: one line, exit 1.
#[test]
fn a_silent_peer_ends_netcat_at_its_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn // held, never read: netcat's sends stop once the buffers fill
    });
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target, "--timeout", "0.3"]));
    let err = collect(client.stderr());
    let _out = collect(client.stdout());
    let _fed = feed(client.stdin(), 3, 64 * MIB, None); // stops when netcat exits
    let status = client.wait(Instant::now() + Duration::from_secs(30));
    let err = String::from_utf8(err.join().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.starts_with("netcat: timed out") && err.lines().count() == 1, "{err:?}");
    drop(server.join().unwrap());
}

/// `--timeout` bounds a connect that never completes (a listener whose
/// backlog is full drops the SYN), and not a peer that is slow but never
/// silent that long, even when it talks for longer than the timeout in all
/// and netcat sends nothing: what it receives is activity too.
#[test]
fn timeout_bounds_the_connect_but_not_a_slow_peer() {
    let backlog_full = rolecore::Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(0).unwrap();
    let target = backlog_full.local_addr().unwrap().to_string();
    let mut queued = Vec::new();
    // Fill the accept queue: later connects hang in SYN_SENT.
    for _ in 0..4 {
        let mut fill =
            std::net::TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_millis(200));
        match fill.as_mut() {
            Ok(_) => queued.push(fill),
            Err(_) => break,
        }
    }
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target, "-w", "0.3"]));
    let err = collect(client.stderr());
    let _stdin = client.stdin();
    let status = client.wait(Instant::now() + Duration::from_secs(30));
    let err = String::from_utf8(err.join().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.starts_with("netcat: cannot connect to") && err.contains("timed out"), "{err:?}");

    // Ten bytes 150 ms apart, within a 1 s timeout: 1.5 s in all, never
    // silent for 1 s. All printed, exit 0.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for byte in b"0123456789" {
            conn.write_all(&[*byte]).unwrap();
            thread::sleep(Duration::from_millis(150));
        }
    });
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target, "--timeout", "1"]));
    let out = collect(client.stdout());
    let err = collect(client.stderr());
    drop(client.stdin());
    let status = client.wait(Instant::now() + Duration::from_secs(30));
    server.join().unwrap();
    assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&err.join().unwrap()));
    assert_eq!(out.join().unwrap(), b"0123456789");
}

#[test]
fn bad_arguments_print_the_usage_and_exit_2() {
    for args in [
        &[][..],
        &["--frobnicate"],
        &["not an address"],
        &["--listen"],
        &["127.0.0.1:1", "--backend", "kqueue"],
        &["127.0.0.1:1", "--timeout"],
        &["127.0.0.1:1", "--timeout", "0"],
        &["127.0.0.1:1", "-w", "-1"],
        &["127.0.0.1:1", "-w", "inf"],
        &["127.0.0.1:1", "-w", "1e-12"],
    ] {
        let output = util::output_within(&mut netcat(args), Duration::from_secs(10));
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("usage: netcat HOST:PORT"), "{args:?}: {err}");
    }
}

// ---- Python's asyncore --------------------------------------------------------------------------------

/// The seed's HTTP client (asyncore's documentation, example 1), in Python 3,
/// pointed at a host and port given on the command line instead of
/// www.python.org:80.
const HTTP_CLIENT: &str = r#"import asyncore, socket, sys

class HTTPClient(asyncore.dispatcher):

    def __init__(self, host, port, path):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect( (host, port) )
        self.buffer = bytes('GET %s HTTP/1.0\r\n\r\n' % path, 'ascii')

    def handle_connect(self):
        pass

    def handle_close(self):
        self.close()

    def handle_read(self):
        print(self.recv(8192))

    def writable(self):
        return (len(self.buffer) > 0)

    def handle_write(self):
        sent = self.send(self.buffer)
        self.buffer = self.buffer[sent:]

client = HTTPClient(sys.argv[1], int(sys.argv[2]), '/')
asyncore.loop()
"#;

/// The seed's echo server (example 2), in Python 3, on a kernel-chosen port
/// that it prints first.
const ECHO_SERVER: &str = r#"import asyncore
import socket

class EchoHandler(asyncore.dispatcher_with_send):

    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)

class EchoServer(asyncore.dispatcher):

    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(5)

    def handle_accept(self):
        pair = self.accept()
        if pair is None:
            pass
        else:
            sock, addr = pair
            print('Incoming connection from %s' % repr(addr))
            handler = EchoHandler(sock)

server = EchoServer('127.0.0.1', 0)
print('listening on %s:%d' % server.socket.getsockname(), flush=True)
asyncore.loop()
"#;

/// A Python script in a temporary file, removed when dropped.
struct Script(PathBuf);

impl Script {
    fn new(name: &str, text: &str) -> Script {
        let path = std::env::temp_dir().join(format!("rolecore-netcat-{}-{name}.py", std::process::id()));
        std::fs::write(&path, text).expect("write the script");
        Script(path)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `python3 -W ignore` (asyncore's import warns), unbuffered.
fn python(script: &Script, args: &[&str]) -> Command {
    let probe = Command::new("python3").args(["-W", "ignore", "-c", "import asyncore"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "these tests need python3 with asyncore (CPython 3.11 or older) on the PATH"
    );
    let mut command = Command::new("python3");
    command.args(["-W", "ignore", "-u"]).arg(&script.0).args(args);
    command
}

/// Reads lines of a child's stdout into a channel, in a thread.
fn lines(from: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The seed's asyncore HTTP client sends its request to the rolecore echo
/// server, which echoes it: the client prints `GET / HTTP/1.0`. When the
/// server goes away the client's loop ends, and it exits 0.
#[test]
fn the_python_asyncore_http_client_talks_to_the_rolecore_echo_server() {
    let script = Script::new("http-client", HTTP_CLIENT);
    for backend in util::backends() {
        let mut server = Proc::spawn(
            "echo_server",
            Command::new(util::example("echo_server")).args(["127.0.0.1:0", "--backend", backend.name()]),
        );
        let server_lines = lines(server.stdout());
        let first = server_lines.recv_timeout(Duration::from_secs(10)).expect("the echo server's first line");
        let port =
            first.strip_prefix("listening on 127.0.0.1:").expect("`listening on 127.0.0.1:PORT`").to_string();
        let mut client = Proc::spawn("python3 http client", &mut python(&script, &["127.0.0.1", &port]));
        let client_err = collect(client.stderr());
        let printed = lines(client.stdout());
        let line = printed
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{backend}: the client printed nothing within 10 s"));
        assert!(line.contains("GET / HTTP/1.0"), "{backend}: the client printed {line:?}");
        // The echo server never closes by itself: stop it; the client's read
        // finds the end, handle_close closes, asyncore.loop() returns.
        drop(server);
        let status = client.wait(Instant::now() + Duration::from_secs(10));
        let err = String::from_utf8_lossy(&client_err.join().unwrap()).into_owned();
        assert!(status.success(), "{backend}: the Python client exited {status}: {err}");
        assert!(err.is_empty(), "{backend}: the Python client complained: {err}");
    }
}

/// netcat against the seed's asyncore echo server: what netcat sends comes
/// back; netcat's half-close at stdin's end is the echo handler's
/// `recv() == b''`, which closes, which ends netcat with 0.
#[test]
fn netcat_talks_to_the_python_asyncore_echo_server() {
    let script = Script::new("echo-server", ECHO_SERVER);
    let mut server = Proc::spawn("python3 echo server", &mut python(&script, &[]));
    let server_lines = lines(server.stdout());
    let first = server_lines.recv_timeout(Duration::from_secs(10)).expect("the echo server's first line");
    let target = first.strip_prefix("listening on ").expect("`listening on HOST:PORT`").to_string();
    // Small enough for asyncore's echo to go out before it sees the end
    // (dispatcher_with_send drops what is queued at close, P14).
    let payload: Vec<u8> = (0..16 * 1024).map(|i| b"netcat to asyncore\n"[i % 19]).collect();
    let mut client = Proc::spawn("netcat", &mut netcat(&[&target]));
    let out = collect(client.stdout());
    let err = collect(client.stderr());
    let mut stdin = client.stdin();
    stdin.write_all(&payload).unwrap();
    drop(stdin);
    let status = client.wait(Instant::now() + Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", String::from_utf8_lossy(&err.join().unwrap()));
    assert!(out.join().unwrap() == payload, "the echo came back whole");
    let incoming = server_lines.recv_timeout(Duration::from_secs(10)).expect("the server's log line");
    assert!(incoming.starts_with("Incoming connection from ('127.0.0.1'"), "{incoming}");
}
