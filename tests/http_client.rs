//! The HTTP client example, run as a real process against a tiny HTTP
//! responder on a thread of this test.

mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest the client process or one socket read may take.
const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn sends_one_get_prints_the_whole_response_and_exits_0_when_the_server_closes() {
    // Larger than one read, and not text: the client must copy raw bytes.
    let mut response = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    response.extend((0..100_000u32).map(|i| (i * 7 % 256) as u8));
    let (addr, server) = respond_once(response.clone());

    let out = run_client(&[&format!("localhost:{}", addr.port()), "/some/path?q=1"]);

    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout == response,
        "stdout: {} bytes, expected the {} bytes sent",
        out.stdout.len(),
        response.len()
    );
    assert_eq!(out.stderr, "");
    let request = server.join().expect("the responder finished");
    assert_eq!(String::from_utf8_lossy(&request), "GET /some/path?q=1 HTTP/1.0\r\n\r\n");
}

#[test]
fn refused_connect_reports_one_line_and_exits_1() {
    let closed = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");

    let out = run_client(&[&closed.to_string(), "/"]);

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr.contains("refused"), "{:?}", out.stderr);
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    for args in [&[][..], &["127.0.0.1:80"], &["example.com:80", "/"], &["127.0.0.1:80", "/a b"]] {
        let out = run_client(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: stderr: {}", out.stderr);
        assert!(out.stderr.contains("usage: http_client HOST:PORT PATH"), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
        assert!(out.stderr.contains("does not resolve"), "the usage says why names fail: {:?}", out.stderr);
    }
}

#[test]
fn a_response_cut_short_of_its_content_length_is_an_error() {
    let head = b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    // The server closes, or resets, after 1,000 of the 100,000 bytes.
    for reset in [false, true] {
        let sent = [&head[..], &[b'z'; 1000]].concat();
        let (addr, server) = serve_once(move |mut conn, _| {
            conn.write_all(&sent).expect("write the start of the response");
            if reset {
                close_with_reset(conn);
            }
        });

        let out = run_client(&[&addr.to_string(), "/"]);

        server.join().expect("the responder finished");
        assert_eq!(out.status.code(), Some(1), "reset {reset}: stderr: {}", out.stderr);
        assert_eq!(out.stdout.len(), head.len() + 1000, "reset {reset}: what came is printed");
        assert!(out.stderr.contains("cut short") && out.stderr.contains("99000 bytes"), "{:?}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    }
}

#[test]
fn a_response_without_a_length_cut_by_a_reset_is_an_error() {
    // Its body ends with the connection: a reset may have cut it anywhere.
    let sent = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe start of a body".to_vec();
    let response = sent.clone();
    let (addr, server) = serve_once(move |mut conn, _| {
        conn.write_all(&sent).expect("write the start of the response");
        close_with_reset(conn);
    });

    let out = run_client(&[&addr.to_string(), "/"]);

    server.join().expect("the responder finished");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, response, "what came is printed");
    assert!(
        out.stderr.contains("reset the connection") && out.stderr.lines().count() == 1,
        "{:?}",
        out.stderr
    );
}

/// stdout may be non-blocking: `O_NONBLOCK` belongs to the open file
/// description, which every process sharing the pipe shares (one that runs
/// a rolecore netcat, say). A write that found the pipe full then failed
/// with `WouldBlock`, which the loop takes for a spurious wake-up: the
/// chunk was lost, and the client exited 0 with 64 KiB of 4 MiB printed.
#[test]
fn a_non_blocking_stdout_that_fills_loses_nothing() {
    use rustix::pipe::{PipeFlags, pipe_with};

    let mut response = b"HTTP/1.0 200 OK\r\nContent-Length: 4194304\r\n\r\n".to_vec();
    response.extend((0..4u32 << 20).map(|i| (i % 251) as u8));
    let (addr, server) = respond_once(response.clone());
    let (read_end, write_end) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC).expect("a pipe");
    let mut child = Command::new(util::example("http_client"))
        .args([&addr.to_string(), "/"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the http_client example");
    // Read nothing until the pipe is full (or the client gave up).
    let capacity = rustix::pipe::fcntl_getpipe_size(&read_end).expect("the pipe's size");
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait").is_none()
        && rustix::io::ioctl_fionread(&read_end).expect("FIONREAD") < capacity as u64
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(10));
    }
    rustix::fs::fcntl_setfl(&read_end, rustix::fs::OFlags::empty()).expect("a blocking read end");
    let mut printed = Vec::new();
    std::fs::File::from(read_end).read_to_end(&mut printed).expect("read the client's stdout");
    let status = wait_within(&mut child);
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    server.join().expect("the responder finished");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(printed == response, "printed {} of the {} bytes", printed.len(), response.len());
}

/// A stdout whose reader is gone (`http_client … | head -c 10`) is an
/// error: its `EPIPE`, returned from `handle_read` as it was, read to the
/// loop as the server gone, and the client exited 0 with the response
/// unprinted.
#[test]
fn a_stdout_whose_reader_left_is_an_error() {
    let mut response = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    response.resize(1 << 20, b'x');
    let (addr, server) = respond_once(response);
    let (read_end, write_end) = std::io::pipe().expect("a pipe");
    drop(read_end);
    let mut child = Command::new(util::example("http_client"))
        .args([&addr.to_string(), "/"])
        .stdin(Stdio::null())
        .stdout(write_end)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the http_client example");
    let status = wait_within(&mut child);
    let _ = server.join();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("writing stdout") && stderr.lines().count() == 1, "{stderr:?}");
}

/// Closes `conn` with a reset (`SO_LINGER` 0), as a server that crashed.
fn close_with_reset(conn: TcpStream) {
    rustix::net::sockopt::set_socket_linger(&conn, Some(Duration::ZERO)).expect("SO_LINGER 0");
}

/// The body comes in two writes a moment apart, so that its end is also
/// found in a read after the one that ended the head.
#[test]
fn a_server_that_keeps_the_connection_after_the_response_is_not_waited_for() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello".to_vec();
    let sent = response.clone();
    let (addr, server) = serve_once(move |mut conn, _| {
        let (first, rest) = sent.split_at(sent.len() - 3);
        conn.write_all(first).expect("write the response's head and a part of its body");
        thread::sleep(Duration::from_millis(100));
        conn.write_all(rest).expect("write the rest of the body");
        client_closed(&mut conn) // and wait for the client to close
    });

    let out = run_client(&[&addr.to_string(), "/"]);

    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, response);
    assert!(server.join().expect("the responder finished"), "the client closed the connection");
}

#[test]
fn a_body_longer_than_its_content_length_is_cut_at_it() {
    let response = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let sent = [&response[..], &[b'!'; 100_000]].concat();
    let (addr, server) = serve_once(move |mut conn, _| {
        let _ = conn.write_all(&sent); // the client may close before the end
    });

    let out = run_client(&[&addr.to_string(), "/"]);

    server.join().expect("the responder finished");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, response, "only the response, not what follows it");
}

#[test]
fn a_content_length_that_is_not_one_number_is_an_error() {
    for header in [
        "Content-Length: -5",
        "Content-Length: +5",
        "Content-Length: 5, 7",
        "Content-Length: 5\r\nContent-Length: 7",
        "Content-Length: five",
        "Content-Length: 99999999999999999999999999",
        "Content-Length:",
    ] {
        let response = format!("HTTP/1.0 200 OK\r\n{header}\r\n\r\nhello").into_bytes();
        let (addr, server) = respond_once(response);

        let out = run_client(&[&addr.to_string(), "/"]);

        server.join().expect("the responder finished");
        assert_eq!(out.status.code(), Some(1), "{header:?}: stderr: {}", out.stderr);
        assert!(out.stderr.contains("Content-Length") && out.stderr.lines().count() == 1, "{:?}", out.stderr);
    }
    // The same length twice, or as a list, is one number.
    for header in ["Content-Length: 5, 5", "Content-Length: 5\r\nContent-Length: 5"] {
        let response = format!("HTTP/1.0 200 OK\r\n{header}\r\n\r\nhello").into_bytes();
        let (addr, server) = respond_once(response.clone());
        let out = run_client(&[&addr.to_string(), "/"]);
        server.join().expect("the responder finished");
        assert_eq!(out.status.code(), Some(0), "{header:?}: stderr: {}", out.stderr);
        assert_eq!(out.stdout, response);
    }
}

#[test]
fn an_endless_response_head_is_refused_at_its_bound() {
    for start in [&b"HTTP/1.0 200 OK\r\n"[..], b"HTTP/1.0 200 "] {
        let start = start.to_vec();
        let (addr, server) = serve_once(move |mut conn, _| {
            // Header lines (or one endless status line), at most 64 MiB.
            let filler: &[u8] = if start.ends_with(b"\n") { b"X-Junk: aaaaaaaaaaaaaaaa\r\n" } else { b"x" };
            let block = [start.clone(), filler.repeat(65536 / filler.len())].concat();
            let mut sent = 0;
            while sent < 64 << 20 && conn.write_all(&block).is_ok() {
                sent += block.len();
            }
            sent
        });

        let out = run_client(&[&addr.to_string(), "/"]);

        let sent = server.join().expect("the responder finished");
        assert!(sent < 64 << 20, "the client read all {sent} bytes of head");
        assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
        assert!(out.stderr.contains("head is longer than"), "{:?}", out.stderr);
        assert!(out.stdout.len() < 1 << 20, "{} bytes printed", out.stdout.len());
    }
}

#[test]
fn a_server_that_sends_nothing_is_an_error() {
    // It closes at once, or in the middle of the head.
    for sent in [&b""[..], b"HTTP/1.0 200 OK\r\nContent-"] {
        let (addr, server) = respond_once(sent.to_vec());
        let out = run_client(&[&addr.to_string(), "/"]);
        server.join().expect("the responder finished");
        assert_eq!(out.status.code(), Some(1), "{sent:?}: stderr: {}", out.stderr);
        assert_eq!(out.stdout, sent);
        assert!(out.stderr.contains("closed the connection"), "{:?}", out.stderr);
    }
}

#[test]
fn a_silent_server_times_out_with_timeout_and_a_slow_one_does_not() {
    // Silent after the request: the timeout ends the wait, exit 1.
    let (addr, server) = serve_once(|mut conn, _| client_closed(&mut conn));
    let out = run_client(&[&addr.to_string(), "/", "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("timed out") && out.stderr.lines().count() == 1, "{:?}", out.stderr);
    assert!(server.join().expect("the responder finished"), "the client closed the connection");

    // A byte every 50 ms within a 2 s timeout: every wait is shorter.
    let response = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    let sent = response.clone();
    let (addr, server) = serve_once(move |mut conn, _| {
        for byte in sent.chunks(1) {
            conn.write_all(byte).expect("write one byte");
            thread::sleep(Duration::from_millis(50));
        }
    });
    let out = run_client(&[&addr.to_string(), "/", "--timeout", "2"]);
    server.join().expect("the responder finished");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, response);

    for bad in ["0", "-1", "1e-12", "soon", "inf", "NaN"] {
        let out = run_client(&[&addr.to_string(), "/", "--timeout", bad]);
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}: stderr: {}", out.stderr);
        assert!(out.stderr.contains("--timeout"), "{:?}", out.stderr);
    }
}

/// Accepts one connection, reads the request up to its blank line, answers
/// with `response` and closes. Returns the request.
fn respond_once(response: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    serve_once(move |mut conn, request| {
        conn.write_all(&response).expect("write the response");
        conn.shutdown(Shutdown::Write).expect("close the response");
        request
    })
}

/// Accepts one connection, reads the request up to its blank line, then
/// hands both to `then`, on a thread.
fn serve_once<T: Send + 'static>(
    then: impl FnOnce(TcpStream, Vec<u8>) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the responder");
    let addr = listener.local_addr().expect("responder address");
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept the client");
        conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match conn.read(&mut buf).expect("read the request") {
                0 => break,
                n => request.extend_from_slice(&buf[..n]),
            }
        }
        then(conn, request)
    });
    (addr, server)
}

/// Whether the client closed the connection, waiting for it at most
/// [`TIMEOUT`] (anything it still sends is read and dropped).
fn client_closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs the example to completion, killing it if it takes longer than
/// [`TIMEOUT`].
fn run_client(args: &[&str]) -> Output {
    let mut child = Command::new(util::example("http_client"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the http_client example");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_within(&mut child);
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Waits for the client to exit, killing it if it takes longer than
/// [`TIMEOUT`].
fn wait_within(child: &mut std::process::Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("http_client did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}
