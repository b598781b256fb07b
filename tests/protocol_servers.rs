//! The protocol example servers (`http_server`, `resp_server`,
//! `chat_server`), each run as a real process on port 0 and driven by real,
//! unmodified clients: `curl` and `wrk` for HTTP, `redis-cli` and
//! `redis-benchmark` for RESP, plain `TcpStream`s for the chat room and for
//! the byte-exact protocol checks.
//!
//! The tests that drive an external client are ignored, each with its reason, so that
//! `cargo test` passes on a machine with only Rust: `.ci/run` installs the
//! clients (`apt-get install -y curl wrk redis-tools`) and runs them with
//! `cargo build --all-features --examples` then
//! `cargo test --all-features --test protocol_servers -- --ignored` (a
//! `cargo test` filtered to one test target does not build the examples it
//! starts). Run that way, a test that does not find its client fails; it
//! never skips.
//!
//! Every server process is killed when its guard drops, every client process
//! and every socket read is bounded in time: a bug fails a test, never hangs
//! it.

mod util;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rolecore::Backend;

/// The longest any socket read may block.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a quick client run (curl, redis-cli) may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL: &str = "apt-get update && apt-get install -y curl wrk redis-tools";

// ---- processes -----------------------------------------------------------------

/// A server example running as a child process; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    name: &'static str,
    backend: Backend,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(name: &'static str, backend: Backend, extra: &[&str]) -> Server {
        let mut child = Command::new(util::example(name))
            .arg("127.0.0.1:0")
            .args(["--backend", &backend.to_string()])
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
            Ok((Err(e), _)) => {
                let _ = child.kill();
                panic!("{name}: reading its first line: {e}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} on {backend}: no `listening on` line within {IO_TIMEOUT:?}");
            }
        };
        let addr =
            line.trim_end().strip_prefix("listening on ").and_then(|a| a.parse().ok()).unwrap_or_else(|| {
                let _ = child.kill();
                panic!("{name}: first line {line:?} is not `listening on HOST:PORT`")
            });
        Server { child, addr, name, backend, _stdout: reader }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Panics if the server process has exited (it must survive every test).
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} on {} exited during the test: {status}", self.name, self.backend);
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the server");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a client program, or a loud failure: these tests never skip.
fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()))
        .unwrap_or_default();
    match found {
        Some(path) => path,
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set and the client `{program}` is not installed: the CI image must run `{INSTALL}`")
        }
        None => panic!("the client `{program}` is not installed; these tests need it: run `{INSTALL}`"),
    }
}

/// What a client process left.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `program` with `args`, feeding it `stdin`; killed after `timeout`.
fn run_client(program: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let path = require(program);
    let mut child = Command::new(&path)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let writer = child.stdin.take().map(|mut pipe| {
        let data = stdin.unwrap_or_default().to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&data); // dropped: the client sees end of input
        })
    });
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for a client") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
                panic!("`{program} {}` did not finish within {timeout:?}; stderr: {stderr}", args.join(" "));
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Output { status, stdout, stderr }
}

/// Runs a client that must succeed, and returns its output.
fn client_ok(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let out = run_client(program, args, stdin, CLIENT_TIMEOUT);
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        out.text(),
        out.stderr
    );
    out
}

/// Reads until the peer closes; fails on timeout.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap_or_else(|e| {
        panic!("expected the server to close; got {e} after {:?}", String::from_utf8_lossy(&all))
    });
    all
}

fn read_exact_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

// ---- HTTP ----------------------------------------------------------------------

/// The whole answer to a kept-alive HTTP/1.1 `GET`.
const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: rolecore\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";

/// A response's status line and lower-cased headers, from `curl -i`/`-I`.
fn http_head(text: &str) -> (String, HashMap<String, String>) {
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn http_with_curl(backend: Backend) {
    let mut server = Server::start("http_server", backend, &[]);
    let url = server.url("/some/path?q=1");

    // HTTP/1.1 GET: 200, 13 bytes of hello, kept alive (no Connection: close).
    let out = client_ok("curl", &["-sS", "-i", "--http1.1", &url], None);
    let text = out.text();
    let (status, headers) = http_head(&text);
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    assert_eq!(headers.get("content-length").map(String::as_str), Some("13"), "{text}");
    assert_eq!(headers.get("connection"), None, "HTTP/1.1 keeps alive by default: {text}");
    assert!(text.ends_with("\r\n\r\nHello, world!"), "{text:?}");

    // HTTP/1.0 GET: 200, and the server says it closes.
    let out = client_ok("curl", &["-sS", "-i", "--http1.0", &url], None);
    let text = out.text();
    let (status, headers) = http_head(&text);
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"), "{text}");
    assert!(text.ends_with("Hello, world!"), "{text:?}");

    // HEAD: the same headers, no body.
    let out = client_ok("curl", &["-sS", "-I", &url], None);
    let text = out.text();
    let (status, headers) = http_head(&text);
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    assert_eq!(headers.get("content-length").map(String::as_str), Some("13"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text:?}");

    // Keep-alive: two URLs in one curl call share one connection
    // (`num_connects` is the new connections each transfer made).
    let fmt = "%{http_code} %{num_connects}\\n";
    let other = server.url("/other");
    let two = [url.as_str(), other.as_str()];
    let reuse = |extra: &[&str]| {
        let mut args = vec!["-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", fmt];
        args.extend_from_slice(extra);
        args.extend_from_slice(&two);
        client_ok("curl", &args, None).text()
    };
    assert_eq!(reuse(&["--http1.1"]), "200 1\n200 0\n", "HTTP/1.1 reuses the connection");
    assert_eq!(
        reuse(&["--http1.0", "-H", "Connection: keep-alive"]),
        "200 1\n200 0\n",
        "HTTP/1.0 with keep-alive reuses the connection"
    );
    assert_eq!(reuse(&["--http1.0"]), "200 1\n200 1\n", "HTTP/1.0 closes by default");
    assert_eq!(
        reuse(&["--http1.1", "-H", "Connection: close"]),
        "200 1\n200 1\n",
        "HTTP/1.1 with Connection: close closes"
    );

    // Another method: 405, with Allow, and the connection stays usable.
    let out = client_ok(
        "curl",
        &["-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", fmt, "-X", "POST", "-d", "payload", &url, &url],
        None,
    );
    assert_eq!(out.text(), "405 1\n405 0\n", "POST is refused and the connection kept");
    server.assert_alive();
}

fn http_raw(backend: Backend) {
    let mut server = Server::start("http_server", backend, &["--idle-timeout", "1"]);

    // Pipelining: three requests in one write (a POST with a body between
    // two GETs), three answers in order, the last closes as asked.
    let mut s = server.connect();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let all = String::from_utf8(read_to_eof(&mut s)).unwrap();
    // Bodies have no line ending: a status line may follow one directly.
    let statuses: Vec<&str> =
        all.match_indices("HTTP/1.1 ").map(|(i, _)| all[i..].split("\r\n").next().unwrap()).collect();
    assert_eq!(statuses, ["HTTP/1.1 200 OK", "HTTP/1.1 405 Method Not Allowed", "HTTP/1.1 200 OK"], "{all}");
    assert_eq!(all.matches("Hello, world!").count(), 2, "{all}");
    assert!(all.ends_with("Connection: close\r\n\r\nHello, world!"), "{all:?}");

    // A request split at every byte still gets one answer.
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    for b in b"HEAD / HTTP/1.0\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    let all = String::from_utf8(read_to_eof(&mut s)).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("Content-Length: 13\r\n") && all.ends_with("\r\n\r\n"), "{all:?}");

    // A malformed request line: 400, then the server closes, ignoring what follows.
    let mut s = server.connect();
    s.write_all(b"THIS IS NOT HTTP\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let all = String::from_utf8(read_to_eof(&mut s)).unwrap();
    assert!(all.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "nothing after the 400: {all}");

    // An unsupported version: 505 and close.
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/2.0\r\n\r\n").unwrap();
    let all = String::from_utf8(read_to_eof(&mut s)).unwrap();
    assert!(all.starts_with("HTTP/1.1 505 "), "{all}");

    // Headers over 8 KiB: 431 and close.
    let mut s = server.connect();
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert!(big.len() > 10 * 1024);
    // The server may close before it has read everything: a write error is fine.
    let _ = s.write_all(&big);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all); // a reset after the answer is fine too
    let all = String::from_utf8_lossy(&all);
    assert!(all.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{all}");

    // A head that passes 8 KiB on a line that has not ended yet: 431 at
    // once, not after the line's end (which never comes here). Each line
    // may take only what the lines before it left of the head's bound.
    let mut s = server.connect();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(8200, b'p');
    let _ = s.write_all(&head);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all); // a reset after the answer is fine too
    let all = String::from_utf8_lossy(&all);
    assert!(all.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{all}");

    // A head of 8 KiB exactly is fine.
    let mut s = server.connect();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(8192, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    s.write_all(&head).unwrap();
    assert_eq!(read_exact_n(&mut s, HELLO.len()), HELLO);

    // Idle connections close after --idle-timeout (1 s here).
    let mut s = server.connect();
    let started = Instant::now();
    assert_eq!(read_to_eof(&mut s), b"", "an idle connection is closed without a word");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );

    // A connection in use is not idle: one request every 0.4 s for 2 s.
    let mut s = server.connect();
    for _ in 0..5 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_exact_n(&mut s, HELLO.len()), HELLO);
        thread::sleep(Duration::from_millis(400));
    }

    // A slow loris is never silent for the idle timeout, one byte every
    // 0.25 s, but its head is late: closed, without an answer, once the
    // idle timeout since the accept has passed.
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    let started = Instant::now();
    let trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    for b in trickle.iter().chain(std::iter::repeat(&b'z')) {
        if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(5) {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(250));
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "a trickling head was still read after {waited:?}");
    assert!(waited >= Duration::from_millis(900), "closed after {waited:?}, before the timeout");
    assert!(sent > 3, "the bytes kept coming ({sent}), so only the head deadline can have closed it");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest); // a reset is fine: unread bytes were dropped
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"), "no answer to half a head");
    server.assert_alive();
}

/// The HTTP server skips a request body of any length from 1 byte up to
/// 1 MiB (`MAX_BODY`, 1,048,576 bytes) and reads the next request after
/// it, on the same connection; one byte longer and it answers with
/// `Connection: close` and closes instead of reading the body.
#[test]
fn http_bodies_up_to_one_mebibyte_are_skipped_one_byte_more_closes() {
    const MAX_BODY: usize = 1 << 20;
    let server = Server::start("http_server", Backend::Epoll, &[]);
    for length in [1, 2, MAX_BODY] {
        let mut s = server.connect();
        let mut request =
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n").into_bytes();
        // A body that would read as a request line if it were not skipped.
        request.resize(request.len() + length, b'G');
        request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut writer = s.try_clone().unwrap();
        let writing = thread::spawn(move || writer.write_all(&request));
        let all = read_to_eof(&mut s);
        writing.join().unwrap().unwrap();
        let all = String::from_utf8_lossy(&all);
        let statuses: Vec<&str> = all.match_indices("HTTP/1.1 ").map(|(i, _)| &all[i..i + 12]).collect();
        assert_eq!(statuses, ["HTTP/1.1 405", "HTTP/1.1 200"], "a body of {length}: {all}");
        let first = &all[..all.find("HTTP/1.1 200").unwrap()];
        assert!(!first.contains("Connection: close"), "a body of {length}: {all}");
    }
    let mut s = server.connect();
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
    s.write_all(head.as_bytes()).unwrap();
    let all = read_to_eof(&mut s);
    let all = String::from_utf8_lossy(&all);
    assert!(all.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{all}");
    assert!(all.contains("\r\nConnection: close\r\n"), "{all}");
}

/// What `wrk` printed, reduced to what the test checks.
#[derive(Debug)]
struct WrkReport {
    requests: u64,
    requests_per_sec: f64,
    socket_errors: Option<String>,
    non_2xx: Option<String>,
}

fn parse_wrk(text: &str) -> WrkReport {
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().to_string()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N requests in` line in wrk's output:\n{text}"));
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `Requests/sec:` line in wrk's output:\n{text}"));
    let socket_errors = text.lines().find(|l| l.contains("Socket errors")).map(str::to_string);
    let non_2xx = text.lines().find(|l| l.contains("Non-2xx")).map(str::to_string);
    WrkReport { requests, requests_per_sec, socket_errors, non_2xx }
}

fn http_with_wrk(backend: Backend) {
    let mut server = Server::start("http_server", backend, &[]);
    let duration = if backend == Backend::Epoll { "5s" } else { "2s" };
    let url = server.url("/");
    let out = run_client(
        "wrk",
        &["-c", "100", "-d", duration, "-t", "2", "--timeout", "5s", &url],
        None,
        Duration::from_secs(60),
    );
    let text = out.text();
    assert!(out.status.success(), "wrk failed: {}\n{text}\n{}", out.status, out.stderr);
    let report = parse_wrk(&text);
    eprintln!("wrk on {backend}: {:.0} requests/s, {} requests", report.requests_per_sec, report.requests);
    assert_eq!(report.socket_errors, None, "wrk saw socket errors on {backend}:\n{text}");
    assert_eq!(report.non_2xx, None, "wrk saw non-2xx answers on {backend}:\n{text}");
    assert!(report.requests > 1000, "only {} requests on {backend}:\n{text}", report.requests);
    server.assert_alive();
}

// ---- RESP ----------------------------------------------------------------------

/// `redis-cli -p PORT args...`, output without the final newline.
fn redis(server: &Server, args: &[&str]) -> String {
    redis_with(server, args, None)
}

fn redis_with(server: &Server, args: &[&str], stdin: Option<&[u8]>) -> String {
    let port = server.port();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    let out = client_ok("redis-cli", &all, stdin);
    let mut text = out.text();
    while text.ends_with('\n') {
        text.pop();
    }
    text
}

fn resp_with_redis_cli(backend: Backend) {
    let mut server = Server::start("resp_server", backend, &[]);
    assert_eq!(redis(&server, &["PING"]), "PONG");
    assert_eq!(redis(&server, &["PING", "hello there"]), "hello there");
    assert_eq!(redis(&server, &["ECHO", "x y"]), "x y");

    // Binary values through stdin (`-x`: the last argument is stdin): every
    // byte value, CR/LF and NUL included, comes back as it went.
    let binary: Vec<u8> = (0..=255u8).chain(b"\r\n\0\r\n$3\r\n*1\r\n".iter().copied()).collect();
    assert_eq!(redis_with(&server, &["-x", "SET", "bin"], Some(&binary)), "OK");
    let port = server.port();
    let got = client_ok("redis-cli", &["-h", "127.0.0.1", "-p", &port, "GET", "bin"], None).stdout;
    assert_eq!(got.strip_suffix(b"\n"), Some(&binary[..]), "binary value round trip");

    // A 1 MiB value.
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    assert_eq!(redis_with(&server, &["-x", "SET", "big"], Some(&big)), "OK");
    let got = client_ok("redis-cli", &["-h", "127.0.0.1", "-p", &port, "GET", "big"], None).stdout;
    assert_eq!(got.len(), big.len() + 1, "1 MiB value length");
    assert!(got.strip_suffix(b"\n") == Some(&big[..]), "1 MiB value round trip");

    assert_eq!(redis(&server, &["GET", "missing"]), "");
    assert_eq!(redis(&server, &["SET", "n", "41"]), "OK");
    assert_eq!(redis(&server, &["INCR", "n"]), "42");
    assert_eq!(redis(&server, &["DECR", "n"]), "41");
    assert_eq!(redis(&server, &["INCR", "fresh"]), "1");
    assert_eq!(redis(&server, &["SET", "word", "abc"]), "OK");
    assert_eq!(redis(&server, &["INCR", "word"]), "ERR value is not an integer or out of range");
    assert_eq!(redis(&server, &["SET", "max", "9223372036854775807"]), "OK");
    assert_eq!(redis(&server, &["INCR", "max"]), "ERR value is not an integer or out of range");
    assert_eq!(redis(&server, &["MSET", "a", "1", "b", "2"]), "OK");
    assert_eq!(redis(&server, &["MGET", "a", "nope", "b"]), "1\n\n2");
    assert_eq!(redis(&server, &["EXISTS", "a", "b", "nope", "a"]), "3");
    assert_eq!(redis(&server, &["DEL", "a", "nope"]), "1");
    assert_eq!(redis(&server, &["EXISTS", "a"]), "0");
    assert_eq!(redis(&server, &["DBSIZE"]), "7", "bin big n fresh word max b");
    assert_eq!(redis(&server, &["SET", "soon", "x", "PX", "100"]), "OK");
    assert_eq!(redis(&server, &["GET", "soon"]), "x");
    thread::sleep(Duration::from_millis(250));
    assert_eq!(redis(&server, &["GET", "soon"]), "", "expired");
    assert_eq!(redis(&server, &["SET", "later", "x", "EX", "100"]), "OK");
    assert_eq!(redis(&server, &["GET", "later"]), "x");
    assert_eq!(redis(&server, &["SET", "k", "v", "EX", "0"]), "ERR invalid expire time in 'set' command");
    assert_eq!(redis(&server, &["SET", "k", "v", "XX"]), "ERR syntax error");
    assert_eq!(redis(&server, &["GET"]), "ERR wrong number of arguments for 'get' command");
    assert_eq!(redis(&server, &["MSET", "a"]), "ERR wrong number of arguments for 'mset' command");
    assert_eq!(
        redis(&server, &["NOSUCH", "x"]),
        "ERR unknown command 'NOSUCH', with args beginning with: 'x'"
    );
    assert_eq!(redis(&server, &["CONFIG", "GET", "save"]), "save");
    assert_eq!(redis(&server, &["CONFIG", "GET", "appendonly"]), "appendonly\nno");
    assert_eq!(redis(&server, &["COMMAND"]), "");
    assert_eq!(redis(&server, &["FLUSHALL"]), "OK");
    assert_eq!(redis(&server, &["DBSIZE"]), "0");
    server.assert_alive();
}

/// Sends `request` on a fresh connection and reads exactly `expected.len()`
/// bytes, which must be `expected`.
fn resp_exchange(server: &Server, request: &[u8], expected: &[u8]) -> TcpStream {
    let mut s = server.connect();
    s.write_all(request).unwrap();
    let got = read_exact_n(&mut s, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
    s
}

fn resp_raw(backend: Backend) {
    let mut server = Server::start("resp_server", backend, &["--max-bulk", "1024"]);

    // Inline commands, a multibulk pipeline and an empty line, in one write.
    let mut s = resp_exchange(
        &server,
        b"PING\r\nSET  k  v\r\n\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n*3\r\n$4\r\nMGET\r\n$1\r\nk\r\n$1\r\nz\r\n\
          *0\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n",
        b"+PONG\r\n+OK\r\n$1\r\nv\r\n+PONG\r\n*2\r\n$1\r\nv\r\n$-1\r\n-ERR value is not an integer or out of range\r\n",
    );
    // The same connection goes on: a frame split at every byte.
    s.set_nodelay(true).unwrap();
    for b in b"*3\r\n$3\r\nSET\r\n$3\r\na\r\n\r\n$0\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    assert_eq!(read_exact_n(&mut s, 5), b"+OK\r\n");
    s.write_all(b"*2\r\n$3\r\nGET\r\n$3\r\na\r\n\r\n").unwrap();
    assert_eq!(read_exact_n(&mut s, 6), b"$0\r\n\r\n");
    // A bulk of exactly --max-bulk bytes is fine.
    let value = vec![b'x'; 1024];
    let mut frame = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1024\r\n".to_vec();
    frame.extend_from_slice(&value);
    frame.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    s.write_all(&frame).unwrap();
    let mut expected = b"+OK\r\n$1024\r\n".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    assert_eq!(read_exact_n(&mut s, expected.len()), expected);

    // QUIT: +OK, then the server closes; what followed it is not run.
    let mut s = server.connect();
    s.write_all(b"*1\r\n$4\r\nQUIT\r\n*3\r\n$3\r\nSET\r\n$5\r\nafter\r\n$1\r\n1\r\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"+OK\r\n");
    resp_exchange(&server, b"EXISTS after\r\n", b":0\r\n");

    // Broken frames: an error reply, then the server closes.
    for (frame, why) in [
        (&b"*1\r\n$4\r\nPINGxx"[..], "bulk without its CRLF"),
        (b"*1\r\n+PING\r\n", "not a bulk string"),
        (b"*x\r\n", "bad multibulk length"),
        (b"*2\r\n$3\r\nSET\r\n$1025\r\n", "bulk over --max-bulk"),
        (b"*1\r\n$-1\r\n", "null bulk in a request"),
    ] {
        let mut s = server.connect();
        s.write_all(frame).unwrap();
        let all = String::from_utf8_lossy(&read_to_eof(&mut s)).into_owned();
        assert!(all.starts_with("-ERR Protocol error"), "{why}: {all:?}");
        assert_eq!(all.matches("\r\n").count(), 1, "{why}: one reply, then close: {all:?}");
    }
    // An inline line over 64 KiB without its end: an error and close.
    let mut s = server.connect();
    let _ = s.write_all(&vec![b'a'; 70 * 1024]);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(all.starts_with(b"-ERR Protocol error"), "{:?}", String::from_utf8_lossy(&all));

    // The store outlived all of that.
    resp_exchange(&server, b"GET k\r\n", b"$1\r\nv\r\n");
    server.assert_alive();
}

/// A RESP request must arrive whole within `--idle-timeout`: a client that
/// announces a bulk string and trickles it a byte at a time, never silent
/// for the idle timeout, is closed all the same. Nothing here is timed:
/// the trickle goes on until a write fails or 100 bytes are sent (10 s),
/// and the server must have closed by then.
#[test]
fn resp_a_trickled_request_is_closed_though_never_idle() {
    let server = Server::start("resp_server", Backend::Epoll, &["--idle-timeout", "1"]);
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n").unwrap();
    let mut reader = s.try_clone().unwrap();
    // Reads until the server closes (an end of stream or a reset), or the
    // read times out (IO_TIMEOUT): the server kept the connection.
    let closed = thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        }
    });
    for _ in 0..100 {
        if closed.is_finished() || s.write_all(b"x").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // Not shut down here: that would end the reader's read as a close would.
    assert!(closed.join().unwrap(), "the server kept a request trickling for 10 s and more");
}

fn resp_with_redis_benchmark(backend: Backend) {
    let mut server = Server::start("resp_server", backend, &[]);
    let port = server.port();
    let out = run_client(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ping,set,get,incr,mset",
            "-P",
            "16",
            "-c",
            "50",
            "-n",
            "20000",
            "-q",
        ],
        None,
        Duration::from_secs(120),
    );
    let text = out.text().replace('\r', "\n");
    assert!(out.status.success(), "redis-benchmark failed: {}\n{text}\n{}", out.status, out.stderr);
    // "WARNING: Could not fetch server CONFIG", "Error from server: ...".
    let all = format!("{text}\n{}", out.stderr).to_ascii_lowercase();
    assert!(
        !all.contains("warning") && !all.contains("error"),
        "warnings or errors in redis-benchmark's output:\n{text}\n{}",
        out.stderr
    );
    let mut seen = BTreeSet::new();
    for line in text.lines().filter(|l| l.contains(" requests per second")) {
        let (name, rest) = line.trim().split_once(": ").unwrap_or_else(|| panic!("odd line {line:?}"));
        let rps: f64 =
            rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        assert!(rps > 0.0, "{line}");
        eprintln!("redis-benchmark on {backend}: {name}: {rps:.0} requests/s");
        seen.insert(name.to_string());
    }
    let expected: BTreeSet<String> =
        ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"].map(String::from).into();
    assert_eq!(seen, expected, "every test prints a requests-per-second line:\n{text}");
    // The store is consistent after the run: 20000 INCRs of one counter.
    assert_eq!(redis(&server, &["GET", "counter:__rand_int__"]), "20000");
    server.assert_alive();
}

// ---- chat ----------------------------------------------------------------------

struct ChatClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// What the others see before this client's lines.
    prefix: String,
}

impl ChatClient {
    /// Joins and waits for the welcome line: then the client is in the room.
    fn join(server: &Server) -> ChatClient {
        let stream = server.connect();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let prefix = format!("{}: ", stream.local_addr().unwrap());
        let mut client = ChatClient { stream, reader, prefix };
        let welcome = client.line();
        let me = client.prefix.trim_end_matches(": ");
        assert!(welcome.starts_with(&format!("* welcome {me},")), "{welcome:?}");
        client
    }

    fn say(&mut self, line: &[u8]) {
        self.stream.write_all(line).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("{}the server closed the connection", self.prefix),
            Ok(_) => {}
            Err(e) => panic!("{}reading a line: {e} (got {line:?} so far)", self.prefix),
        }
        assert_eq!(line.pop(), Some('\n'));
        line
    }
}

fn chat_room(backend: Backend) {
    let mut server = Server::start("chat_server", backend, &[]);
    let mut a = ChatClient::join(&server);
    let mut b = ChatClient::join(&server);
    let mut c = ChatClient::join(&server);

    // A line reaches the two others, with the sender's address.
    a.say(b"hello, room");
    assert_eq!(b.line(), format!("{}hello, room", a.prefix));
    assert_eq!(c.line(), format!("{}hello, room", a.prefix));
    // Not the sender: the next thing `a` reads is b's line, sent after.
    b.say(b"hi a\r"); // \r\n ends a line too
    assert_eq!(a.line(), format!("{}hi a", b.prefix));
    assert_eq!(c.line(), format!("{}hi a", b.prefix));

    // A line over 4 KiB is refused to its sender and reaches no one; the
    // sender stays connected.
    a.say(&vec![b'x'; 5 * 1024]);
    assert_eq!(a.line(), "! line too long (max 4096 bytes)");
    a.say(b"still here");
    assert_eq!(b.line(), format!("{}still here", a.prefix), "the long line was not relayed");
    assert_eq!(c.line(), format!("{}still here", a.prefix));
    // 4096 bytes exactly is fine.
    let longest = "y".repeat(4096);
    c.say(longest.as_bytes());
    assert_eq!(a.line(), format!("{}{longest}", c.prefix));
    assert_eq!(b.line(), format!("{}{longest}", c.prefix));

    // A member leaves; the room goes on without it.
    drop(c);
    b.say(b"bye c");
    assert_eq!(a.line(), format!("{}bye c", b.prefix));
    server.assert_alive();
}

/// The chat server relays no empty line: a line with nothing before its
/// `\n`, or nothing before its `\r\n`, reaches no other member (the
/// example's doc: "empty lines are not relayed").
#[test]
fn chat_empty_lines_are_not_relayed() {
    let server = Server::start("chat_server", Backend::Epoll, &[]);
    let mut a = ChatClient::join(&server);
    let mut b = ChatClient::join(&server);
    a.say(b"");
    a.say(b"\r");
    a.say(b"after the empty ones");
    // The first line b reads is the one with text: the empty ones were dropped.
    assert_eq!(b.line(), format!("{}after the empty ones", a.prefix));
}

/// The chat server's 4096-byte bound is on the line without its line end,
/// whichever it is: a line of exactly 4096 bytes ended by `\r\n` is relayed
/// (without its `\r`), as one ended by `\n` is; one byte more is refused.
#[test]
fn chat_the_longest_line_may_end_with_crlf() {
    let server = Server::start("chat_server", Backend::Epoll, &[]);
    let mut a = ChatClient::join(&server);
    let mut b = ChatClient::join(&server);
    let longest = "z".repeat(4096);
    a.say(format!("{longest}\r").as_bytes());
    assert_eq!(b.line(), format!("{}{longest}", a.prefix));
    a.say(format!("{longest}z\r").as_bytes());
    assert_eq!(a.line(), "! line too long (max 4096 bytes)");
    a.say(b"next");
    assert_eq!(b.line(), format!("{}next", a.prefix), "the long line was not relayed");
}

/// A chat member that does not read its lines is disconnected once its
/// own queue is full (the chat's 4 MiB output limit), not kept with the
/// lines it missed silently dropped: after a flood from another member,
/// its stream ends.
#[test]
fn chat_a_member_that_does_not_read_is_disconnected() {
    let server = Server::start("chat_server", Backend::Epoll, &[]);
    let mut a = ChatClient::join(&server);
    let b = ChatClient::join(&server);
    // 64 MiB of lines: once the sender's write returns, the server has
    // relayed far more than b's queue and both kernels' buffers hold.
    let line = vec![b'f'; 4000];
    let mut flood = Vec::with_capacity(65 << 20);
    while flood.len() < 64 << 20 {
        flood.extend_from_slice(&line);
        flood.push(b'\n');
    }
    let sent = flood.len();
    let mut writer = a.stream.try_clone().unwrap();
    let flooding = thread::spawn(move || writer.write_all(&flood));
    flooding.join().unwrap().expect("the server reads the sender on");
    // Now b reads: what was queued for it, then the end of its stream (a
    // kept member would block here until the read timeout).
    let mut reader = b.reader;
    let mut got = Vec::new();
    let ended = reader.read_to_end(&mut got);
    assert!(ended.is_ok(), "b was kept: {ended:?} after {} bytes", got.len());
    assert!(got.len() < sent, "b cannot have had all {sent} bytes");
    // The room goes on for the sender. What of the flood the server had not
    // read yet when c joined reaches c first: a's lines, in order.
    let mut c = ChatClient::join(&server);
    a.say(b"still here");
    loop {
        let line = c.line();
        if line == format!("{}still here", a.prefix) {
            break;
        }
        assert_eq!(
            line,
            format!("{}{}", a.prefix, "f".repeat(4000)),
            "only the rest of a's flood comes first"
        );
    }
}

/// Many members talk at once: each receives every other member's lines, in
/// each sender's order, and none of its own.
fn chat_crowd(backend: Backend) {
    const MEMBERS: usize = 12;
    const LINES: usize = 200;
    let server = Server::start("chat_server", backend, &[]);
    let all_joined = Arc::new(Barrier::new(MEMBERS));
    let addr = server.addr;
    let threads: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let all_joined = Arc::clone(&all_joined);
            let server_addr = addr;
            thread::spawn(move || {
                let stream = TcpStream::connect(server_addr).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut welcome = String::new();
                reader.read_line(&mut welcome).unwrap();
                assert!(welcome.starts_with("* welcome"), "{welcome:?}");
                let me = format!("{}", stream.local_addr().unwrap());
                all_joined.wait();
                let writer = {
                    let mut stream = stream.try_clone().unwrap();
                    thread::spawn(move || {
                        let mut text = String::new();
                        for n in 0..LINES {
                            text.push_str(&format!("member {i} line {n}\n"));
                        }
                        stream.write_all(text.as_bytes()).unwrap();
                    })
                };
                let mut next: HashMap<String, usize> = HashMap::new();
                for _ in 0..(MEMBERS - 1) * LINES {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap_or_else(|e| panic!("member {i}: {e}"));
                    let (from, text) = line.trim_end().split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
                    assert_ne!(from, me, "member {i} got its own line");
                    let n = next.entry(from.to_string()).or_default();
                    let (_, count) = text.rsplit_once(' ').unwrap();
                    assert_eq!(count.parse::<usize>().unwrap(), *n, "member {i}: lines from {from} in order");
                    *n += 1;
                }
                writer.join().unwrap();
                assert_eq!(next.len(), MEMBERS - 1);
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        if t.join().is_err() {
            panic!("chat member {i} failed on {backend}");
        }
    }
    drop(server);
}

macro_rules! per_backend {
    ($($(#[$attr:meta])* $name:ident => $body:ident;)*) => {
        $(
            mod $name {
                use super::*;
                #[test]
                $(#[$attr])*
                fn select() {
                    if Backend::Select.is_available() {
                        $body(Backend::Select);
                    }
                }
                #[test]
                $(#[$attr])*
                fn poll() {
                    $body(Backend::Poll);
                }
                #[test]
                $(#[$attr])*
                fn epoll() {
                    $body(Backend::Epoll);
                }
            }
        )*
    };
}

per_backend! {
    #[ignore = "needs curl (.ci/run installs it)"]
    http_curl => http_with_curl;
    http_raw_protocol => http_raw;
    #[ignore = "needs wrk (.ci/run installs it)"]
    http_wrk => http_with_wrk;
    #[ignore = "needs redis-tools (.ci/run installs them)"]
    resp_redis_cli => resp_with_redis_cli;
    resp_raw_protocol => resp_raw;
    #[ignore = "needs redis-tools (.ci/run installs them)"]
    resp_redis_benchmark => resp_with_redis_benchmark;
    chat_room_relays => chat_room;
    chat_crowd_relays => chat_crowd;
}
