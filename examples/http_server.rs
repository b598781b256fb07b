//! A minimal HTTP/1.1 and HTTP/1.0 server on [`AsyncChat`]: keep-alive,
//! pipelining, and `Hello, world!` for every `GET` or `HEAD`.
//!
//! ```text
//! cargo run --release --example http_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--idle-timeout SECS] [--output-budget BYTES] [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--idle-timeout` (default 60, 0 for
//! none) closes connections that stay silent that long, and connections that
//! take longer than that to send a request head: a client trickling one byte
//! a second (a slow loris) is not silent, but its head is late; the same
//! holds for a request body.
//! `--output-budget` (default 64 MiB) bounds the answers queued by all of one
//! loop's connections together; when it runs short, the connection with the
//! most output queued (the slowest reader) is dropped first.
//! `--tls-cert PEM --tls-key PEM` serve HTTPS (TLS 1.3 and 1.2, ALPN
//! `http/1.1`; a build with rolecore's `tls` feature): the handlers are the
//! same, each connection handshakes before its first request is read, and
//! the idle timeout bounds the handshake too.
//!
//! What it answers:
//!
//! - `GET` or `HEAD` of any path: `200 OK`, `Content-Length: 13`, and the
//!   body `Hello, world!` (no body for `HEAD`).
//! - HTTP/1.1 keeps the connection unless the request says
//!   `Connection: close`; HTTP/1.0 closes it unless the request says
//!   `Connection: keep-alive`.
//! - Other standard methods: `405 Method Not Allowed`, unknown ones:
//!   `501 Not Implemented`, both with the same keep-alive rules (a request
//!   body announced with `Content-Length` is read and dropped).
//! - A malformed request (a header value with a NUL or another control
//!   character included): `400 Bad Request`; a head longer than 8 KiB:
//!   `431 Request Header Fields Too Large`; an HTTP version other than 1.0 or
//!   1.1: `505`. Each then closes the connection.
//!
//! A request head is read line by line (records split at LF, a CR before
//! it ignored, as RFC 9112 2.2 allows) and ends at its first blank line,
//! however its lines ended: `GET / HTTP/1.1\nHost: x\n\n` is answered like
//! its CRLF twin. Every request a read brings is answered by one `push`, and
//! the chat sends all of a pipelined batch's answers with one send. The head
//! reading and parsing is `examples/http/head.rs` (fuzzed:
//! `fuzz/bodies/http_head.rs`); the handlers (`HttpServer`,
//! `HttpConnection`) are `examples/http/server.rs`, which
//! `fuzz/bodies/sim_http.rs` runs in `rolecore::sim` with pipelined, bare-LF,
//! broken and oversized requests.

mod serve;
use serve::{Connections, Flag, Server};

use std::process::ExitCode;

#[path = "http/head.rs"]
mod head;

#[path = "http/server.rs"]
mod server;
use server::HttpServer;

fn main() -> ExitCode {
    let server = Server {
        name: "http_server",
        default_addr: "127.0.0.1:8080",
        threads: true,
        flags: &[
            Flag { name: "--idle-timeout", value: "SECS" },
            Flag { name: "--output-budget", value: "BYTES" },
            serve::TLS_CERT,
            serve::TLS_KEY,
        ],
    };
    serve::main(server, |cli| {
        let idle_timeout = cli.seconds("--idle-timeout", 60.0)?;
        // What all of one loop's connections may queue together.
        let budget = cli.count("--output-budget", 64 << 20, 64 << 10, 1 << 40)? as usize;
        let tls = cli.tls(&[b"http/1.1"])?;
        Ok(move || HttpServer { idle_timeout, connections: Connections::new(budget).with_tls(tls.clone()) })
    })
}

#[cfg(test)]
mod tests {
    use super::head::Version;
    use super::server::{hello, response};

    /// Over TLS every connection joins the loop's set when it is accepted,
    /// before its handshake; one whose handshake fails must leave it again,
    /// though no `handle_close` follows. Each garbage handshake left a
    /// token behind before: the set grew without bound.
    #[cfg(feature = "tls")]
    #[test]
    fn a_failed_tls_handshake_leaves_the_set_of_connections() {
        use std::io::Write;
        use std::sync::Arc;
        use std::time::Duration;

        use rolecore::tls::rustls;
        use rolecore::{Address, Channel, Map};

        use super::serve::Connections;
        use super::server::HttpServer;

        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("a server configuration");
        let connections = Connections::new(1 << 20).with_tls(Some(Arc::new(config)));
        let any: Address = "127.0.0.1:0".parse().expect("an address");
        let listener = Channel::for_address(&any)
            .expect("a socket")
            .bind(&any)
            .expect("bind")
            .listen(16)
            .expect("listen");
        let Address::Inet(at) = listener.local_addr().expect("its address") else {
            unreachable!("an IPv4 listener")
        };
        let mut map = Map::new().expect("a map");
        let server = HttpServer { idle_timeout: None, connections: connections.clone() };
        let listener = map.insert(listener, server).expect("insert");
        for round in 0..3 {
            let mut client = std::net::TcpStream::connect(at).expect("connect");
            client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("plain HTTP, not a ClientHello");
            let accepted = map.run_until(Duration::from_secs(5), |m| m.len() == 2).expect("run");
            assert!(accepted, "round {round}: accepted within 5 s");
            let closed = map.run_until(Duration::from_secs(5), |m| m.len() == 1).expect("run");
            assert!(closed, "round {round}: the failed handshake closed the connection within 5 s");
            assert_eq!(connections.others(listener), [], "round {round}: it left the set too");
        }
    }

    /// The loop's shared output budget is drawn on only when it runs short:
    /// while it has room for an answer, answering one client never drops
    /// another, however much output that other has queued. Every wait is
    /// bounded by a deadline; nothing is timed.
    #[test]
    fn a_slow_reader_is_kept_while_the_budget_has_room() {
        use std::io::{Read, Write};
        use std::net::TcpStream;
        use std::time::{Duration, Instant};

        use rolecore::{Channel, LoopOptions, Map};

        use super::serve::Connections;
        use super::server::HttpServer;

        const BUDGET: usize = 64 << 20;
        // About 38 MB of answers: more than both kernels' buffers hold.
        const REQUESTS: usize = 400_000;
        let connections = Connections::new(BUDGET);
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(16).unwrap();
        let addr = listener.local_addr().unwrap().inet().unwrap();
        let mut map = Map::new().unwrap();
        map.insert(listener, HttpServer { idle_timeout: None, connections: connections.clone() }).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let step = |map: &mut Map, what: &str| {
            assert!(Instant::now() < deadline, "still waiting for {what}");
            map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
        };

        // A client pipelines requests and reads nothing, until answers wait
        // in the server's queue for it (charged to the budget).
        let slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut writer = slow.try_clone().unwrap();
        let writing = std::thread::spawn(move || {
            writer.write_all(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS))
        });
        while connections.available() == BUDGET {
            step(&mut map, "answers queued for the slow reader");
        }

        // Another client is answered, with the budget far from short.
        let mut fast = TcpStream::connect(addr).unwrap();
        fast.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        fast.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let answer = std::thread::spawn(move || {
            let mut all = Vec::new();
            fast.read_to_end(&mut all).map(|_| all)
        });
        while !answer.is_finished() {
            step(&mut map, "the other client's answer");
        }
        let answer = answer.join().unwrap().unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", answer.escape_ascii());

        // The slow reader was kept: it reads every answer it asked for.
        let mut reader = slow;
        let want = REQUESTS * hello(true, Version::Http11, false).len();
        let reading = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = vec![0; 1 << 16];
            while got < want {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(_) => break,
                }
            }
            got
        });
        while !reading.is_finished() {
            step(&mut map, "the slow reader's answers");
        }
        assert_eq!(reading.join().unwrap(), want, "the slow reader was dropped");
        writing.join().unwrap().unwrap();
    }

    #[test]
    fn the_written_out_hello_is_what_response_formats() {
        for keep_alive in [true, false] {
            for version in [Version::Http10, Version::Http11] {
                for head_only in [true, false] {
                    let formatted = response("200 OK", keep_alive, version, "", b"Hello, world!", head_only);
                    assert_eq!(
                        hello(keep_alive, version, head_only),
                        &formatted[..],
                        "{keep_alive} {version:?} {head_only}"
                    );
                }
            }
        }
    }
}
