//! The HTTP client example, run as a real process against a tiny HTTP
//! responder on a thread of this test.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
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

/// Accepts one connection, reads the request up to its blank line, answers
/// with `response` and closes. Returns the request.
fn respond_once(response: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
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
        conn.write_all(&response).expect("write the response");
        conn.shutdown(Shutdown::Write).expect("close the response");
        request
    });
    (addr, server)
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
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("http_client {args:?} did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}
