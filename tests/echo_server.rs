//! The echo server example, run as a real process on each backend and driven
//! from this test process: many concurrent clients get every byte back, while
//! other clients reset their connections mid-stream, and the server survives.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rolecore::Backend;

/// Healthy clients, all at once.
const CLIENTS: usize = 50;
/// Bytes each healthy client sends and expects back.
const BYTES: usize = 256 * 1024;
/// Clients that reset mid-stream, concurrently with the healthy ones, and how
/// many times each connects and resets.
const RESETTERS: usize = 10;
const RESETS_EACH: usize = 5;
/// One more client sends this much and starts reading only after a pause, so
/// the server's queue for it grows past what the kernel buffers hold: the
/// server must stop reading it (back-pressure) rather than queue without bound.
const SLOW_BYTES: usize = 16 * 1024 * 1024;
const SLOW_START: Duration = Duration::from_millis(500);
/// The longest any single read, write or wait may block: a bug fails the test
/// instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
#[cfg(feature = "select")]
fn echoes_every_byte_to_concurrent_clients_and_survives_resets_on_select() {
    stress(Backend::Select);
}

#[test]
fn echoes_every_byte_to_concurrent_clients_and_survives_resets_on_poll() {
    stress(Backend::Poll);
}

#[test]
fn echoes_every_byte_to_concurrent_clients_and_survives_resets_on_epoll() {
    stress(Backend::Epoll);
}

fn stress(backend: Backend) {
    if !backend.is_available() {
        return; // built without the `select` feature
    }
    let server = EchoServer::start(backend);
    let addr = server.addr;

    let resetters: Vec<_> =
        (0..RESETTERS).map(|i| thread::spawn(move || reset_mid_stream(addr, 1000 + i as u64))).collect();
    let slow = thread::spawn(move || echo_round_trip(addr, 777, SLOW_BYTES, SLOW_START));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| thread::spawn(move || echo_round_trip(addr, i as u64, BYTES, Duration::ZERO)))
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        if let Err(panic) = client.join() {
            panic!("{backend}: client {i} failed: {}", panic_message(&panic));
        }
    }
    if let Err(panic) = slow.join() {
        panic!("{backend}: the slow-reading client failed: {}", panic_message(&panic));
    }
    for (i, resetter) in resetters.into_iter().enumerate() {
        if let Err(panic) = resetter.join() {
            panic!("{backend}: resetting client {i} failed: {}", panic_message(&panic));
        }
    }

    // The server survived all of it: one more client is served in full.
    echo_round_trip(addr, 9999, 64 * 1024, Duration::ZERO);
    server.assert_running_and_quiet();
}

/// Sends `len` pseudo-random bytes in random-sized writes from one thread,
/// reads them back on this one (starting after `read_delay`), checks every
/// byte, then checks that the server closes once this client half-closes.
fn echo_round_trip(addr: SocketAddr, seed: u64, len: usize, read_delay: Duration) {
    let data = pseudo_random_bytes(seed, len);
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone the client socket");
    let to_send = data.clone();
    let sender = thread::spawn(move || {
        let mut rng = XorShift::new(seed ^ 0x5eed);
        let mut sent = 0;
        while sent < to_send.len() {
            let n = (1 + rng.below(16 * 1024)).min(to_send.len() - sent);
            writer.write_all(&to_send[sent..sent + n]).expect("client write");
            sent += n;
        }
    });

    thread::sleep(read_delay);
    let mut reader = stream;
    let mut received = 0;
    let mut buf = vec![0u8; 32 * 1024];
    while received < len {
        let n = match reader.read(&mut buf) {
            Ok(0) => panic!("client {seed}: the server closed after {received} of {len} bytes"),
            Ok(n) => n,
            Err(e) => panic!("client {seed}: read failed after {received} of {len} bytes: {e}"),
        };
        assert!(received + n <= len, "client {seed}: {} bytes echoed, only {len} sent", received + n);
        if let Some(i) = (0..n).find(|&i| buf[i] != data[received + i]) {
            panic!(
                "client {seed}: byte {} differs: sent {:#04x}, got {:#04x}",
                received + i,
                data[received + i],
                buf[i]
            );
        }
        received += n;
    }
    sender.join().expect("the writer thread finished");

    // All echoed: a half-close now makes the server close its side.
    reader.shutdown(Shutdown::Write).expect("half-close");
    match reader.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("client {seed}: {n} unexpected bytes after the full echo"),
        Err(e) => panic!("client {seed}: no end of stream after the half-close: {e}"),
    }
}

/// Connects, sends part of a stream, waits until some echo has arrived, and
/// closes without reading it: with unread data in its receive buffer, the
/// socket's close sends a reset, which the server meets in the middle of
/// reading and echoing.
fn reset_mid_stream(addr: SocketAddr, seed: u64) {
    for round in 0..RESETS_EACH as u64 {
        let mut stream = connect(addr);
        let data = pseudo_random_bytes(seed * 100 + round, 128 * 1024);
        let mut rng = XorShift::new(seed + round);
        // Part of the data, sometimes a lot of it, so the server is still
        // echoing when the reset comes.
        let part = 1 + rng.below(data.len());
        stream.write_all(&data[..part]).expect("resetting client write");
        let mut byte = [0u8; 1];
        match stream.peek(&mut byte) {
            Ok(1) => {}
            Ok(_) => panic!("resetting client {seed}: the server closed before echoing"),
            Err(e) => panic!("resetting client {seed}: no echo arrived: {e}"),
        }
        drop(stream); // unread data: RST
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the echo server");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    stream
}

/// The echo server example, running; killed when dropped, also when a test
/// fails, and then its stderr is shown.
struct EchoServer {
    child: Child,
    addr: SocketAddr,
    backend: Backend,
    /// What the server wrote to stderr, once it has exited.
    stderr: mpsc::Receiver<String>,
}

impl EchoServer {
    fn start(backend: Backend) -> EchoServer {
        let mut child = Command::new(util::example("echo_server"))
            .args(["127.0.0.1:0", "--backend", backend.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the echo_server example");
        // Drained on a thread so the server never blocks on a full pipe.
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (stderr_tx, stderr_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = stderr_tx.send(text);
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = EchoServer { child, addr: ([0, 0, 0, 0], 0).into(), backend, stderr: stderr_rx };

        // The first line names the port; read it on a thread so a server that
        // never prints cannot hang the test.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(IO_TIMEOUT).expect("the server's first line within the timeout");
        let addr = line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| {
            panic!("{backend}: expected `listening on HOST:PORT`, got {line:?}");
        });
        server.addr = addr.parse().unwrap_or_else(|e| panic!("{backend}: bad address {addr:?}: {e}"));
        server
    }

    /// The server is still up, and it reported nothing: no channel was closed
    /// because of an error.
    fn assert_running_and_quiet(mut self) {
        let status = self.child.try_wait().expect("check the server process");
        assert!(status.is_none(), "{}: the echo server exited: {status:?}", self.backend);
        let backend = self.backend;
        let stderr = self.stop();
        assert!(stderr.is_empty(), "{backend}: the echo server reported errors:\n{stderr}");
    }

    /// Kills the server and returns what it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.recv_timeout(IO_TIMEOUT).unwrap_or_default()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let stderr = self.stop();
        if thread::panicking() && !stderr.is_empty() {
            eprintln!("--- echo_server ({}) stderr ---\n{stderr}", self.backend);
        }
    }
}

fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next().to_le_bytes());
    }
    data.truncate(len);
    data
}

/// xorshift64*: deterministic, so a failure names a seed that reproduces it.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
