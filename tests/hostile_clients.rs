//! Hostile clients of the example servers (`resp_server`, `http_server`,
//! `chat_server`, `echo_server`), run as real processes on port 0: requests whose cost in
//! server memory is a product of what they name and what is stored, names a
//! megabyte long, connections left idle, request heads with bare-LF line
//! endings, and long pipelines. See "Hostile clients of the protocol
//! servers" in `docs/reliability.md`.
//!
//! Every server process is killed (by its PID, through its `Child`) when its
//! guard drops; every socket operation has a timeout and every load a fixed
//! count, so a bug fails a test, never hangs it. Nothing here asserts a
//! time: a read timeout only bounds how long a test waits for an answer.

#[cfg(feature = "tls")]
mod tls_common;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The longest any socket read or write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on a server's peak resident memory (`VmHWM`) in these tests.
const PEAK_RSS_KIB: u64 = 64 * 1024;
/// An address-space limit under which a server must survive: a request
/// that made it allocate gigabytes aborts it.
const ADDRESS_SPACE: &str = "--as=1073741824";

/// A server example running as a child process; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    name: &'static str,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `name` on port 0 with `extra` flags; under `prlimit` with
    /// `limit` when given (prlimit sets the limit and executes the server,
    /// so the child's PID is the server's).
    fn start(name: &'static str, extra: &[&str], limit: Option<&str>) -> Server {
        let binary = util::example(name);
        let mut command = match limit {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(limit).arg("--").arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .arg("127.0.0.1:0")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let result = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((result, reader));
        });
        let (line, reader) = match rx.recv_timeout(IO_TIMEOUT) {
            Ok((Ok(line), reader)) => (line, reader),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name}: no `listening on` line: {:?}", other.map(|(r, _)| r));
            }
        };
        let addr = match line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
            Some(addr) => addr,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name}: first line {line:?} is not `listening on HOST:PORT`");
            }
        };
        Server { child, addr, name, _stdout: reader }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the server");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited during the test: {status}", self.name);
        }
    }

    /// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_else(|e| panic!("{}: /proc status: {e}", self.name));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no {field} in /proc status", self.name))
    }

    fn assert_peak_under(&self, kib: u64, what: &str) {
        let peak = self.status_kib("VmHWM");
        eprintln!("{} after {what}: VmHWM {peak} KiB", self.name);
        assert!(peak < kib, "{} peaked at {peak} KiB after {what} (bound {kib} KiB)", self.name);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP multibulk frame.
fn frame(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one line (up to `\n`) of at most `max` bytes; what came if the
/// peer closed first.
fn read_line(stream: &mut TcpStream, max: usize) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() <= max {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) => panic!("reading a reply line: {e} after {} bytes", line.len()),
        }
    }
    line
}

/// Writes `request` from a thread while reading the answer here, so neither
/// side's socket buffer stalls the other.
fn write_while_reading(stream: &TcpStream, request: Vec<u8>) -> thread::JoinHandle<std::io::Result<()>> {
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || writer.write_all(&request))
}

fn assert_pong(server: &Server) {
    let mut stream = server.connect();
    stream.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_line(&mut stream, 64), b"+PONG\r\n", "{} no longer answers", server.name);
}

// ---- resp_server ----------------------------------------------------------------

/// One `SET` of 1 MiB, then an 18 KB `MGET` naming that key 2,000 times: a
/// 2 GiB reply. It is refused (an error or a close) before anything of that
/// size is allocated: the server lives under a 1 GiB address-space limit and
/// its peak stays small.
#[test]
fn resp_an_mget_of_a_big_value_many_times_is_refused_not_allocated() {
    let mut server = Server::start("resp_server", &[], Some(ADDRESS_SPACE));
    let mut stream = server.connect();
    let value = vec![b'x'; 1 << 20];
    let set = frame(&[b"SET", b"k", &value]);
    let writer = write_while_reading(&stream, set);
    assert_eq!(read_line(&mut stream, 64), b"+OK\r\n");
    writer.join().unwrap().unwrap();

    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"k"[..], 2000));
    let request = frame(&mget);
    assert!(request.len() < 20_000, "an 18 KB request");
    let writer = write_while_reading(&stream, request);
    let reply = read_line(&mut stream, 1024);
    writer.join().unwrap().unwrap();
    assert!(
        reply.is_empty() || reply.starts_with(b"-ERR"),
        "the MGET got {:?}…, not an error or a close",
        String::from_utf8_lossy(&reply[..reply.len().min(60)])
    );
    server.assert_alive();
    assert_pong(&server);
    server.assert_alive();
    server.assert_peak_under(PEAK_RSS_KIB, "a 1 MiB SET and an MGET of it 2,000 times");
}

/// An unknown command whose name is 1 MiB of `0xff` bytes is answered with
/// an error line of a bounded size, escaped, not with the name back (3 MiB
/// of U+FFFD before).
#[test]
fn resp_an_unknown_command_of_a_megabyte_gets_a_short_error() {
    let mut server = Server::start("resp_server", &[], None);
    let mut stream = server.connect();
    let name = vec![0xffu8; 1 << 20];
    let writer = write_while_reading(&stream, frame(&[&name, b"arg"]));
    let reply = read_line(&mut stream, 4096);
    writer.join().unwrap().unwrap();
    assert!(reply.starts_with(b"-ERR unknown command '"), "{:?}", String::from_utf8_lossy(&reply));
    assert!(reply.ends_with(b"\r\n") && reply.len() <= 1024, "a reply line of {} bytes", reply.len());
    assert!(reply.is_ascii(), "the name is escaped");
    // The connection goes on.
    stream.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_line(&mut stream, 64), b"+PONG\r\n");
    server.assert_alive();
}

/// A multibulk frame is bounded as a whole, not only bulk by bulk: many
/// bulks each under `--max-bulk` but together over `--max-request` are a
/// protocol error once the bound is passed, before the rest is read.
#[test]
fn resp_a_frame_of_many_bulks_is_bounded_as_a_whole() {
    let mut server = Server::start("resp_server", &["--max-bulk", "65536", "--max-request", "1048576"], None);
    let mut stream = server.connect();
    let bulk = vec![b'b'; 60_000];
    // 40 × 60 KB = 2.4 MB announced in one frame; the client stops writing
    // when the server closes.
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    for _ in 0..40 {
        args.push(b"key");
        args.push(&bulk);
    }
    let request = frame(&args[..81]);
    let writer = write_while_reading(&stream, request);
    let reply = read_line(&mut stream, 1024);
    assert_eq!(String::from_utf8_lossy(&reply), "-ERR Protocol error: request too large\r\n");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest); // then the close
    assert!(rest.is_empty(), "after the error: {:?}", String::from_utf8_lossy(&rest));
    let _ = writer.join().unwrap(); // may fail: the server closed
    server.assert_alive();
    assert_pong(&server);
}

/// `--idle-timeout 1` closes a connection that says nothing.
#[test]
fn resp_idle_timeout_closes_a_silent_connection() {
    let mut server = Server::start("resp_server", &["--idle-timeout", "1"], None);
    let mut stream = server.connect();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the idle connection got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("the idle connection was not closed within {IO_TIMEOUT:?}: {e}"),
    }
    server.assert_alive();
    assert_pong(&server);
}

/// A client that pipelines 200,000 `GET`s of a 512-byte value (100 MB of
/// replies) and reads everything as it goes keeps the server's peak RSS
/// small: its replies wait in a queue bounded by back-pressure. (The replies
/// to one read of requests, 64 KiB of them, must fit the output limit: see
/// the reliability page.)
#[test]
fn resp_a_long_pipeline_read_as_it_goes_keeps_the_peak_small() {
    let mut server = Server::start("resp_server", &[], None);
    let mut stream = server.connect();
    let value = vec![b'v'; 512];
    stream.write_all(&frame(&[b"SET", b"k", &value])).unwrap();
    assert_eq!(read_line(&mut stream, 64), b"+OK\r\n");
    let count = 200_000;
    let get = frame(&[b"GET", b"k"]);
    let request: Vec<u8> = get.iter().copied().cycle().take(get.len() * count).collect();
    let writer = write_while_reading(&stream, request);
    let one = format!("${}\r\n", value.len()).len() + value.len() + 2;
    let mut left = one * count;
    let mut buf = vec![0u8; 64 << 10];
    while left > 0 {
        let n = stream.read(&mut buf[..left.min(64 << 10)]).expect("read the replies");
        assert!(n > 0, "the server closed with {left} reply bytes unread");
        left -= n;
    }
    writer.join().unwrap().unwrap();
    server.assert_alive();
    server.assert_peak_under(PEAK_RSS_KIB, "200,000 pipelined GETs of 512 bytes");
}

/// Many clients that each send most of a large bulk string and never finish
/// it: each connection's `--max-request` bounds one of them, nothing bounded
/// them together, so forty 16 MiB bulks (the default `--max-bulk`) held 1.3
/// GiB of record buffers, and the server died under a 1 GiB address-space
/// limit. The bytes of unfinished requests are bounded per loop
/// (`--input-budget`): a connection whose bytes do not fit is answered with
/// an error and closed, and the server keeps answering others.
#[test]
fn resp_many_unfinished_big_requests_are_bounded_together() {
    let mut server = Server::start("resp_server", &[], Some(ADDRESS_SPACE));
    let mut payload = b"*2\r\n$4\r\nECHO\r\n$16777216\r\n".to_vec();
    payload.resize(payload.len() + (16 << 20), b'x'); // the bulk, without its CRLF
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = server.connect();
        // A connection refused meanwhile fails the write: that is the point.
        let _ = stream.write_all(&payload);
        held.push(stream);
        server.assert_alive();
    }
    server.assert_alive();
    assert_pong(&server);
    drop(held);
}

// ---- http_server ----------------------------------------------------------------

/// Reads one HTTP response head (up to the blank line) and its body of
/// `Content-Length` bytes; `None` if the server closed first.
fn read_response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let line = read_line(stream, 8192);
        if line.is_empty() {
            return None;
        }
        head.extend_from_slice(&line);
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the body");
    Some((head, body))
}

/// Request heads whose lines end with a bare LF, or with a mix of endings,
/// are answered, and promptly: the read timeout (10 s) is far below the
/// server's idle timeout (60 s), which is what answered them before (with a
/// close).
#[test]
fn http_heads_with_bare_lf_endings_are_answered() {
    let mut server = Server::start("http_server", &[], None);
    for request in [
        &b"GET / HTTP/1.1\nHost: x\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"\nGET / HTTP/1.0\n\n",
        b"\r\n\nGET / HTTP/1.1\nHost: x\r\nConnection: close\n\r\n",
    ] {
        let mut stream = server.connect();
        stream.write_all(request).unwrap();
        let shown = String::from_utf8_lossy(request).escape_debug().to_string();
        let (head, body) = read_response(&mut stream).unwrap_or_else(|| panic!("{shown}: closed unanswered"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}: {head}");
        assert_eq!(body, b"Hello, world!", "{shown}");
    }
    // Pipelined, with every ending, on one connection.
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /1 HTTP/1.1\nHost: x\n\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\nHost: x\r\n\n",
        )
        .unwrap();
    for i in 1..=3 {
        let (head, _) =
            read_response(&mut stream).unwrap_or_else(|| panic!("request {i}: closed unanswered"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "request {i}: {head}");
    }
    server.assert_alive();
}

/// `Expect: 100-continue` with a body the server reads on a kept
/// connection: the `100 Continue` comes before the final answer. The
/// answer alone (a `405` here, sent before the body came) said nothing of
/// the body, and RFC 9110 10.1.1 lets a client that got a final status
/// skip the body it announced; its next request would then have been read
/// as that body. An HTTP/1.0 request's expectation is ignored, and a body
/// the server will not read is answered with a close.
#[test]
fn http_expect_100_continue_is_answered_before_the_body_is_read() {
    let mut server = Server::start("http_server", &[], None);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut stream).expect("an answer to the head");
    assert!(
        head.starts_with("HTTP/1.1 100 Continue\r\n"),
        "the first answer to Expect: 100-continue: {head}"
    );
    assert!(body.is_empty());
    // The body, then a request on the same connection: both in step.
    stream.write_all(b"helloGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut stream).expect("the POST's answer");
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    let (head, body) = read_response(&mut stream).expect("the GET's answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"Hello, world!");

    // No 100 where the server does not read the body on: a body too big to
    // skip, chunked, HTTP/1.0, or none at all.
    for request in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    ] {
        let shown = String::from_utf8_lossy(request).escape_debug().to_string();
        let mut stream = server.connect();
        stream.write_all(request).unwrap();
        let (head, _) = read_response(&mut stream).unwrap_or_else(|| panic!("{shown}: closed unanswered"));
        assert!(!head.starts_with("HTTP/1.1 100"), "{shown}: {head}");
        assert!(head.contains("Connection: close\r\n"), "{shown}: {head}");
    }
    server.assert_alive();
}

/// A client that pipelines 200,000 requests and reads every answer as it
/// goes keeps the server's peak RSS small.
#[test]
fn http_a_long_pipeline_read_as_it_goes_keeps_the_peak_small() {
    let mut server = Server::start("http_server", &[], None);
    let stream = server.connect();
    let count = 200_000;
    let one: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let request: Vec<u8> = one.iter().copied().cycle().take(one.len() * count).collect();
    let writer = write_while_reading(&stream, request);
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone().unwrap());
    let mut answered = 0;
    let mut line = Vec::new();
    while answered < count {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).expect("read the answers");
        assert!(n > 0, "the server closed after {answered} answers");
        if line == b"Hello, world!HTTP/1.1 200 OK\r\n" || (answered == 0 && line.starts_with(b"HTTP/1.1 200"))
        {
            answered += 1;
        }
    }
    writer.join().unwrap().unwrap();
    stream.shutdown(Shutdown::Both).unwrap();
    server.assert_alive();
    server.assert_peak_under(PEAK_RSS_KIB, "200,000 pipelined requests");
}

/// Many clients that each ask for a big value and never read: each
/// connection's output limit bounds one of them, the server's output budget
/// bounds them all together. The slowest readers are dropped; the server
/// keeps answering others.
#[test]
fn resp_many_connections_that_never_read_are_bounded_together() {
    // 32 MiB for every connection's replies together.
    let mut server = Server::start("resp_server", &["--output-budget", "33554432"], None);
    let mut stream = server.connect();
    let value = vec![b'v'; 8 << 20];
    let writer = write_while_reading(&stream, frame(&[b"SET", b"k", &value]));
    assert_eq!(read_line(&mut stream, 64), b"+OK\r\n");
    writer.join().unwrap().unwrap();
    // Twelve readers that never read: 96 MiB of replies without the budget.
    let silent: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(&frame(&[b"GET", b"k"])).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    server.assert_alive();
    assert_pong(&server);
    // The store's 8 MiB, the budget's 32 MiB, and the process itself.
    server.assert_peak_under(PEAK_RSS_KIB, "twelve 8 MiB GETs that are never read");
    drop(silent);
}

/// Sends `head` and then one byte every 50 ms, for at most 8 s, while
/// another thread reads until the server closes. Returns whether the server
/// closed the connection before the trickle ended.
fn trickle_until_closed(server: &Server, head: &[u8]) -> bool {
    let mut stream = server.connect();
    stream.write_all(head).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let closed = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                // ECONNRESET is a close too; a timeout is not.
                Err(e) => {
                    return e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut;
                }
            }
        }
    });
    // Whether the server closed before the trickle ended: the reader saw the
    // end, or a write failed. Not the reader's answer alone: our own
    // shutdown below ends its read with a 0 too, and then every trickle
    // counted as closed by the server.
    let mut server_closed = false;
    for _ in 0..160 {
        if closed.is_finished() || stream.write_all(b"x").is_err() {
            server_closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let reader_saw_the_end = closed.join().unwrap();
    server_closed && reader_saw_the_end
}

/// A request body trickled a byte at a time is busy, not idle: it must still
/// arrive whole within the idle timeout.
#[test]
fn http_a_body_trickled_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let mut server = Server::start("http_server", &["--idle-timeout", "1"], None);
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    assert!(trickle_until_closed(&server, head), "the trickled body held its connection for 8 s");
    server.assert_alive();
}

/// The same for a RESP bulk string announced and then trickled.
#[test]
fn resp_a_bulk_trickled_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let mut server = Server::start("resp_server", &["--idle-timeout", "1"], None);
    let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n";
    assert!(trickle_until_closed(&server, head), "the trickled bulk held its connection for 8 s");
    server.assert_alive();
    assert_pong(&server);
}

/// The same for a request line: an inline command, or a frame's `*N`
/// header, trickled a byte at a time never ended a record, so no request
/// deadline was set, and every byte re-armed the idle timeout: a line could
/// hold its connection for `MAX_LINE` (64 KiB) times the idle timeout.
#[test]
fn resp_a_line_trickled_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let mut server = Server::start("resp_server", &["--idle-timeout", "1"], None);
    for head in [&b"PING"[..], b"*2", b"PING\r\nPING"] {
        assert!(
            trickle_until_closed(&server, head),
            "the trickled line {} held its connection for 8 s",
            head.escape_ascii()
        );
    }
    server.assert_alive();
    assert_pong(&server);
}

/// Over TLS the handshake comes first: a ClientHello record announced and
/// then trickled a byte at a time kept its connection, the idle timeout
/// re-armed by every byte, for as long as the client liked.
#[cfg(feature = "tls")]
#[test]
fn resp_a_tls_handshake_trickled_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let cert = tls_common::cert();
    let pems = cert.write_pems();
    let mut flags: Vec<&str> = vec!["--idle-timeout", "1"];
    let pem_flags = pems.flags();
    flags.extend(pem_flags.iter().map(String::as_str));
    let mut server = Server::start("resp_server", &flags, None);
    // A handshake record of 16 KiB, of which only the header is sent.
    let head = [0x16, 0x03, 0x01, 0x40, 0x00];
    assert!(trickle_until_closed(&server, &head), "the trickled handshake held its connection for 8 s");
    server.assert_alive();
}

/// An inline command ended by a bare LF, as `echo PING | nc` sends it, is
/// a command (Redis takes it): the server split lines at `\r\n` only, and
/// such a client waited, unanswered, until the idle timeout (300 s by
/// default) closed its connection.
#[test]
fn resp_an_inline_command_ended_by_a_bare_lf_is_answered() {
    let mut server = Server::start("resp_server", &[], None);
    let mut stream = server.connect();
    stream.write_all(b"PING\nECHO hi\n*1\n$4\r\nPING\r\n").unwrap();
    assert_eq!(read_line(&mut stream, 64), b"+PONG\r\n");
    assert_eq!(read_line(&mut stream, 64), b"$2\r\n");
    assert_eq!(read_line(&mut stream, 64), b"hi\r\n");
    assert_eq!(read_line(&mut stream, 64), b"+PONG\r\n");
    server.assert_alive();
    assert_pong(&server);
}

/// A cache's client: fresh keys of 1 MiB, each set with a 1 ms expiry and
/// never read again. An expired entry was dropped only when its key was
/// read (or at `DBSIZE`), so the store kept every value ever set: 128 MiB
/// here, for at most one live key. The store now sweeps expired entries as
/// keys with an expiry come in; the peak stays small.
#[test]
fn resp_expired_keys_never_read_again_give_their_memory_back() {
    let mut server = Server::start("resp_server", &[], None);
    let mut stream = server.connect();
    let value = vec![b'v'; 1 << 20];
    for i in 0..128 {
        let key = format!("session:{i}");
        let writer = write_while_reading(&stream, frame(&[b"SET", key.as_bytes(), &value, b"PX", b"1"]));
        assert_eq!(read_line(&mut stream, 64), b"+OK\r\n");
        writer.join().unwrap().unwrap();
        // The key has expired before the next one is set.
        thread::sleep(Duration::from_millis(2));
    }
    stream.write_all(&frame(&[b"GET", b"session:0"])).unwrap();
    assert_eq!(read_line(&mut stream, 64), b"$-1\r\n");
    server.assert_alive();
    server.assert_peak_under(PEAK_RSS_KIB, "128 fresh 1 MiB keys, each expired before the next");
}

// ---- chat_server ----------------------------------------------------------------

/// Joins the chat room: reads the welcome line, returns the stream.
fn chat_join(server: &Server) -> TcpStream {
    let mut stream = server.connect();
    let welcome = read_line(&mut stream, 256);
    assert!(welcome.starts_with(b"* welcome "), "{}", welcome.escape_ascii());
    stream
}

/// A member that never reads, whose own unread output (the server's
/// answers to its refused lines) holds the room's budget, sends a line
/// whose copies do not fit in what is left. The room drops the slowest
/// reader after a second of waiting; here that is the sender itself, since
/// every other member's queue is empty. It was never dropped: no other
/// member could be, and its line waited, woken every 5 ms (about 200
/// wake-ups a second, each a walk over every member), for as long as it did
/// not read. Over a Unix socket, whose kernel buffer does not grow.
#[test]
fn chat_a_sender_whose_own_unread_output_holds_the_budget_is_dropped() {
    use std::os::unix::net::UnixStream;

    struct Guard(Child, std::path::PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let path = util::temp_path("sock");
    let mut child = Command::new(util::example("chat_server"))
        .arg(format!("unix:{}", path.display()))
        .args(["--output-budget", "1048576"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chat_server");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let server = Guard(child, path.clone());
    let mut line = String::new();
    out.read_line(&mut line).expect("the first line");
    assert!(line.starts_with("listening on unix:"), "{line:?}");
    let descriptors = || std::fs::read_dir(format!("/proc/{}/fd", server.0.id())).map_or(0, |d| d.count());
    let join = || {
        let mut stream = UnixStream::connect(&path).expect("connect to the chat");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut welcome = Vec::new();
        let mut byte = [0u8; 1];
        while !welcome.ends_with(b"\n") {
            assert_eq!(stream.read(&mut byte).expect("the welcome"), 1, "closed before the welcome");
            welcome.push(byte[0]);
        }
        assert!(welcome.starts_with(b"* welcome "), "{}", welcome.escape_ascii());
        stream
    };
    let mut sender = join();
    // 250 others: the sender's line of 3,900 bytes costs 250 copies of
    // 3,917 (with `unix:(unnamed): ` and the LF), 979,250 bytes of the
    // 1 MiB budget.
    let readers: Vec<UnixStream> = (0..250).map(|_| join()).collect();

    // Lines of one control character each are refused, 37 bytes of answer
    // each, which the sender does not read. Batches of 1,000 until its
    // receive queue stops growing (the kernel holds no more), then 8 more:
    // about 300 KB queued in the server, short of the budget but enough
    // that the line's copies do not fit.
    let pending = |s: &UnixStream| rustix::io::ioctl_fionread(s).expect("FIONREAD");
    let settled = |s: &UnixStream| {
        let mut last = pending(s);
        for _ in 0..200 {
            thread::sleep(Duration::from_millis(10));
            let now = pending(s);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    };
    let batch = b"\x01\n".repeat(1000);
    let mut before = settled(&sender);
    for _ in 0..1000 {
        sender.write_all(&batch).unwrap();
        let after = settled(&sender);
        if after == before {
            break;
        }
        before = after;
    }
    for _ in 0..8 {
        sender.write_all(&batch).unwrap();
    }
    let members = descriptors();
    sender.write_all(&[b"a".repeat(3900), b"\n".to_vec()].concat()).unwrap();

    // The sender is the slowest reader: it goes (polled for at most 10 s).
    let mut dropped = false;
    for _ in 0..1000 {
        if descriptors() < members {
            dropped = true;
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(dropped, "a sender whose own unread output holds the budget was never dropped");
    // Dropped for its waiting line, not for a refused push: the line never
    // went out.
    assert_eq!(pending(&readers[0]), 0, "the sender's line was relayed: it did not wait for the budget");
    let mut sink = vec![0u8; 1 << 16];
    let ended = loop {
        match sender.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    assert!(ended.is_ok(), "the dropped sender's stream did not end: {ended:?}");
    // The others stay, and the room still relays.
    let mut first = &readers[0];
    let mut second = &readers[1];
    first.write_all(b"still here\n").unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        assert_eq!(second.read(&mut byte).expect("the relayed line"), 1, "closed");
        got.push(byte[0]);
    }
    assert!(got.ends_with(b": still here\n"), "{}", got.escape_ascii());
}

/// A member's line is relayed after the sender's address, which is all that
/// tells the others who spoke. A carriage return, a backspace or an escape
/// sequence inside the line would move a terminal's cursor back over that
/// address and print a forged one in its place (`10.0.0.1:80: hi` shown as
/// another member's line): no relayed line may carry a control character,
/// only the `\n` that ends it.
#[test]
fn chat_a_line_cannot_overwrite_its_senders_address() {
    let mut server = Server::start("chat_server", &[], None);
    let mut a = chat_join(&server);
    let mut b = chat_join(&server);
    let forged: [&[u8]; 8] = [
        b"ok\r10.0.0.1:80: I am someone else",
        b"ok\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08I am someone else",
        b"ok\x1b[2K\x1b[1G10.0.0.1:80: I am someone else",
        b"ok\x00hidden",
        // The 8-bit CSI, as UTF-8 and as the raw byte an 8-bit terminal reads.
        b"ok\xc2\x9b2K\xc2\x9b1G10.0.0.1:80: I am someone else",
        b"ok\x9b2K\x9b1G10.0.0.1:80: I am someone else",
        // NEL (U+0085): a new line without a \n.
        b"ok\xc2\x8510.0.0.1:80: I am someone else",
        // RIGHT-TO-LEFT OVERRIDE: the rest of the line shown reversed.
        b"\xe2\x80\xae08:1.0.0.01 :esle enoemos ma I",
    ];
    for line in forged {
        a.write_all(line).unwrap();
        a.write_all(b"\n").unwrap();
    }
    a.write_all(b"the end\n").unwrap();
    loop {
        let line = read_line(&mut b, 8192);
        assert!(!line.is_empty(), "chat_server closed b before the last line");
        let text = &line[..line.len() - 1];
        assert!(
            !text.iter().any(|&c| c.is_ascii_control() && c != b'\t')
                && !text.windows(2).any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
                && !text.contains(&0x9b)
                && !text.windows(3).any(|w| w == b"\xe2\x80\xae"),
            "relayed with a control character: {}",
            line.escape_ascii()
        );
        if text.ends_with(b": the end") {
            break;
        }
    }
    server.assert_alive();
}

/// One member sending short lines as fast as loopback lets it must not get
/// the members who read evicted: a 4 KiB read of `a\n` lines is megabytes
/// of copies for twenty members, past a 1 MiB budget within one read, and
/// the room used to drop its readers (the largest queues) to make room, all
/// twenty of them. The sender now waits for room instead, and every reader
/// gets every line.
#[test]
fn chat_a_flooding_member_cannot_get_the_readers_evicted() {
    flood_the_readers(20, 100_000, &["--output-budget", "1048576"]);
}

/// The same flood under the default budget (64 MiB), which one member's
/// own queue (its chat's 4 MiB output limit) fills first: a reader whose
/// queue was full was dropped at once, though it read as fast as it could,
/// because the sender waited only for room in the budget. It now waits for
/// room in every reader's queue too.
#[test]
fn chat_a_flooding_member_cannot_overflow_a_readers_own_queue() {
    flood_the_readers(2, 3_000_000, &[]);
}

/// `members` members read every line as it comes while one more sends
/// `sent` lines of `a\n` as fast as loopback takes them: each reader gets
/// every line.
fn flood_the_readers(members: usize, sent: usize, flags: &[&str]) {
    let mut server = Server::start("chat_server", flags, None);
    let readers: Vec<_> = (0..members)
        .map(|i| {
            let stream = chat_join(&server);
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream);
                let mut lines = 0;
                loop {
                    let mut line = Vec::new();
                    match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                        Ok(0) => return Err(format!("reader {i}: evicted after {lines} lines")),
                        Ok(_) if line.ends_with(b": the end\n") => return Ok(lines),
                        Ok(_) => lines += 1,
                        Err(e) => return Err(format!("reader {i}: {e} after {lines} lines")),
                    }
                }
            })
        })
        .collect();
    let mut flooder = chat_join(&server);
    flooder.write_all(&b"a\n".repeat(sent)).unwrap();
    flooder.write_all(b"the end\n").unwrap();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), Ok(sent), "every reader stays and gets every line");
    }
    server.assert_alive();
}

// ---- echo_server ----------------------------------------------------------------

/// Clients of `echo_server` that send and never read: each connection's
/// queue pauses its reading at 1 MiB, but many of them together held that
/// much each (300 of them took 318 MB). The output budget bounds them all:
/// a connection whose echo would pass it is closed, and a client that reads
/// its echoes is still served.
#[test]
fn echo_many_clients_that_never_read_are_bounded_together() {
    let mut server = Server::start("echo_server", &["--output-budget", "1048576"], None);
    let silent = silent_echo_clients(&server, 24);
    server.assert_alive();
    let closed = silent.iter().filter(|(_, sent)| *sent == usize::MAX).count();
    eprintln!("echo_server closed {closed} of 24 silent clients");
    // The budget's mebibyte, a read buffer per connection, and the process.
    server.assert_peak_under(16 * 1024, "24 clients sending 8 MiB each and never reading");
    let mut reader = server.connect();
    reader.write_all(b"still echoing\n").unwrap();
    let mut got = [0u8; 14];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still echoing\n");
    drop(silent);
}

/// Clients that send and never read filled the budget, and a client that
/// reads its echoes, but sends more than the kernel's buffers hold at once,
/// was closed in their place: its echo was the one that did not fit, and
/// an echo connection has no timeout to free the budget. The slowest
/// readers (the largest queues) are now dropped to make room, and the
/// reader gets every byte back.
#[test]
fn echo_a_reader_is_served_while_silent_clients_hold_the_budget() {
    let mut server = Server::start("echo_server", &["--output-budget", "4194304"], None);
    let silent = silent_echo_clients(&server, 8);
    let mut reader = server.connect();
    // It reads all the time, but its echoes queue in the server too.
    rustix::net::sockopt::set_socket_recv_buffer_size(&reader, 16 << 10).unwrap();
    let sent: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let writer = write_while_reading(&reader, sent.clone());
    let mut got = vec![0u8; sent.len()];
    let read = reader.read_exact(&mut got);
    assert!(read.is_ok(), "the reader was closed: {read:?}");
    assert!(got == sent, "the echo differs from what was sent");
    writer.join().unwrap().unwrap();
    server.assert_alive();
    drop(silent);
}

/// `count` clients that each send up to 8 MiB to `echo_server`, as far as it
/// takes them, and never read (`usize::MAX` sent: closed by the server).
fn silent_echo_clients(server: &Server, count: usize) -> Vec<(TcpStream, usize)> {
    let chunk = vec![b'e'; 64 << 10];
    let mut silent: Vec<(TcpStream, usize)> = (0..count)
        .map(|_| {
            let s = server.connect();
            // A small receive buffer, so that the echoes queue in the server.
            rustix::net::sockopt::set_socket_recv_buffer_size(&s, 4096).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Up to 8 MiB from each, as far as the server takes it: past what the
    // kernel's buffers hold on loopback (a few MiB each way), without the
    // budget, a queue of about a mebibyte each.
    let mut idle_rounds = 0;
    for _ in 0..2000 {
        let mut moved = false;
        for (stream, sent) in silent.iter_mut().filter(|(_, sent)| *sent < 8 << 20) {
            match stream.write(&chunk) {
                Ok(n) => {
                    *sent += n;
                    moved |= n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *sent = usize::MAX, // closed by the server
            }
        }
        idle_rounds = if moved { 0 } else { idle_rounds + 1 };
        if idle_rounds == 25 {
            break;
        }
        thread::sleep(Duration::from_millis(if moved { 0 } else { 20 }));
    }
    silent
}

/// Over TLS a connection starts with its handshake, and an echo connection
/// has no idle timeout: a client that sent part of a ClientHello and then
/// stopped (or trickled it) held its descriptor and rustls's buffer of the
/// record (up to 16 KiB) for good. A thousand such clients held 27 MB and
/// 1,000 descriptors until they left. The handshake now has a deadline
/// (`--handshake-timeout`), and a connection whose handshake completed is
/// not bound by it: it still echoes after the deadline has passed.
#[cfg(feature = "tls")]
#[test]
fn echo_a_tls_handshake_that_never_completes_is_closed_at_its_deadline() {
    let cert = tls_common::cert();
    let pems = cert.write_pems();
    let mut flags: Vec<&str> = vec!["--handshake-timeout", "1"];
    let pem_flags = pems.flags();
    flags.extend(pem_flags.iter().map(String::as_str));
    let mut server = Server::start("echo_server", &flags, None);
    let config = tls_common::client_config(&cert, &[], &[]);
    let mut established = tls_common::connect(server.addr, config).expect("a TLS handshake");
    // A handshake record of 16 KiB, of which only the header is sent, then
    // a byte every 50 ms.
    let head = [0x16, 0x03, 0x01, 0x40, 0x00];
    assert!(trickle_until_closed(&server, &head), "the unfinished handshake held its connection for 8 s");
    server.assert_alive();
    // Well past its own handshake's deadline, the established one echoes.
    let echo = tls_common::roundtrip(&mut established, b"still here").expect("an echo");
    assert_eq!(echo, b"still here");
}

// ---- a Unix socket path on the command line -------------------------------------

/// Runs `name` with `args` until it prints its first line (on stdout, or
/// on stderr for `netcat`) or exits, at most `IO_TIMEOUT`, then kills it.
/// Returns that line (empty if none).
fn first_line_then_kill(name: &str, args: &[&str]) -> String {
    let on_stderr = name == "netcat";
    let (out, err) =
        if on_stderr { (Stdio::null(), Stdio::piped()) } else { (Stdio::piped(), Stdio::null()) };
    let mut child = Command::new(util::example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let pipe: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), _) => Box::new(stdout),
        (None, Some(stderr)) => Box::new(stderr),
        (None, None) => unreachable!("one of them is piped"),
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(pipe).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(IO_TIMEOUT).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// `unix:PATH` removes a stale socket file left by an earlier run before it
/// binds, but it removed whatever the path named: a regular file (a typo in
/// the path deleted the user's data), or the socket of a server still
/// listening there (which went on running, unreachable). Only a socket that
/// nothing listens on may be removed; anything else is left alone, and the
/// bind fails.
#[test]
fn unix_path_servers_remove_only_a_stale_socket() {
    let file = util::TempFile::new(b"precious data\n");
    let addr = format!("unix:{}", file.0.display());
    for (name, args) in [("echo_server", [&addr[..]].as_slice()), ("netcat", &["--listen", &addr])] {
        let _ = first_line_then_kill(name, args);
        let kept = std::fs::read(&file.0).unwrap_or_else(|e| panic!("{name} removed the file {addr}: {e}"));
        assert_eq!(kept, b"precious data\n", "{name}");
    }

    // A live server keeps its socket: a second one on the same path does not
    // take it over.
    let path = util::temp_path("sock");
    let addr = format!("unix:{}", path.display());
    let mut live = Command::new(util::example("echo_server"))
        .arg(&addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start echo_server");
    let mut live_out = BufReader::new(live.stdout.take().unwrap());
    let mut line = String::new();
    live_out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on unix:"), "{line:?}");
    let second = first_line_then_kill("echo_server", &[&addr]);
    let echoed = (|| {
        let mut stream = std::os::unix::net::UnixStream::connect(&path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(b"still mine\n")?;
        let mut got = [0u8; 11];
        stream.read_exact(&mut got)?;
        Ok::<_, std::io::Error>(got)
    })();
    let _ = live.kill();
    let _ = live.wait();
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(echoed, Ok(ref got) if got == b"still mine\n"),
        "the first server lost its socket to a second one ({second:?}): {echoed:?}"
    );

    // A stale socket (its server gone) is still replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    let line = first_line_then_kill("echo_server", &[&addr]);
    let _ = std::fs::remove_file(&path);
    assert!(line.starts_with("listening on unix:"), "a stale socket file was not replaced: {line:?}");
}
