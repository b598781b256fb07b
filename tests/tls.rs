//! TLS over rustls (feature `tls`): the handshake as a role, plaintext under
//! `Buffered` and `AsyncChat` once it completed, both sides, `close_notify`
//! and truncation. The peer is an in-process rustls client (blocking, in a
//! thread) or rolecore's own client in the same map.
#![cfg(feature = "tls")]

mod tls_common;
mod util;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use rolecore::tls::{Handshaking, TRUNCATED, rustls};
use rolecore::{
    AcceptHandler, Address, AsyncChat, Buffered, Channel, ChatHandler, Connected, Ctx, Map, StreamHandler,
    Terminator,
};
use tls_common::{cert, client_config, connect, connect_small_window, localhost, roundtrip, server_config};
use util::{Log, run_until, tcp_listener};

/// Echoes plaintext and logs what it learns.
struct Echo {
    log: Log,
}

impl StreamHandler<Buffered> for Echo {
    fn handle_connect(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
        let tls = ch.tls().expect("a TLS stream");
        let alpn = tls.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        self.log.push(format!("connect {:?} alpn={alpn:?}", tls.protocol_version().unwrap()));
        Ok(())
    }
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        ch.send(&buf[..n])
    }
    fn handle_connect_failed(&mut self, error: io::Error, _: &mut Ctx<'_>) {
        self.log.push(format!("failed {:?}: {error}", error.kind()));
    }
    fn handle_close(&mut self, _: &mut Buffered, _: &mut Ctx<'_>) {
        self.log.push("close");
    }
    fn handle_error(&mut self, _: &mut Buffered, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error {:?}: {error}", error.kind()));
        cx.close();
    }
}

struct Server {
    config: Arc<rustls::ServerConfig>,
    log: Log,
}

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let tls = Handshaking::server(Buffered::new(conn), self.config.clone())?;
        cx.insert(tls, Echo { log: self.log.clone() })?;
        Ok(())
    }
}

fn echo_server(config: Arc<rustls::ServerConfig>) -> (Map, SocketAddr, Log) {
    let (listener, addr) = tcp_listener();
    let log = Log::default();
    let mut map = Map::new().unwrap();
    map.insert(listener, Server { config, log: log.clone() }).unwrap();
    (map, addr, log)
}

#[test]
fn echo_over_tls13_and_tls12_with_alpn() {
    let cert = cert();
    for (version, name) in [(&rustls::version::TLS13, "TLSv1_3"), (&rustls::version::TLS12, "TLSv1_2")] {
        let (mut map, addr, log) = echo_server(server_config(&cert, &[], &[b"h2", b"echo"]));
        let client = client_config(&cert, &[version], &[b"echo"]);
        let back = util::with_client(&mut map, move || {
            let mut c = connect(addr, client).unwrap();
            let back = roundtrip(&mut c, b"hello over tls").unwrap();
            c.conn.send_close_notify();
            c.conn.complete_io(&mut c.sock).unwrap();
            back
        });
        assert_eq!(back, b"hello over tls");
        run_until(&mut map, |_| log.contains("close"));
        assert_eq!(log.events(), [format!("connect {name} alpn=Some(\"echo\")"), "close".to_string()]);
    }
}

#[test]
fn a_megabyte_crosses_records_partial_sends_and_back_pressure() {
    let cert = cert();
    let (mut map, addr, log) = echo_server(server_config(&cert, &[], &[]));
    let client = client_config(&cert, &[], &[]);
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let back = util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        // Write and read at once: neither side's buffers hold a megabyte.
        let mut back = Vec::with_capacity(sent.len());
        let mut off = 0;
        c.sock.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        while back.len() < sent.len() {
            if off < sent.len() && !c.conn.wants_write() {
                let end = (off + 16384).min(sent.len());
                off += c.conn.writer().write(&sent[off..end]).unwrap();
            }
            match c.conn.complete_io(&mut c.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            match c.conn.reader().read(&mut buf) {
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        back
    });
    assert!(back == data, "the echo differs");
    assert!(log.events()[0].starts_with("connect"), "{:?}", log.events());
}

/// Lines, split by `AsyncChat` over TLS: the chat's handler is the one it
/// would be over a plain socket.
struct Lines;

impl ChatHandler for Lines {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.reverse();
        line.push(b'\n');
        chat.push(&line)
    }
}

struct ChatServer(Arc<rustls::ServerConfig>);

impl AcceptHandler for ChatServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let chat = AsyncChat::new(conn, Terminator::bytes(b"\n"));
        cx.insert(Handshaking::server(chat, self.0.clone())?, Lines)?;
        Ok(())
    }
}

#[test]
fn async_chat_splits_records_over_tls() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let mut map = Map::new().unwrap();
    map.insert(listener, ChatServer(server_config(&cert, &[], &[]))).unwrap();
    let client = client_config(&cert, &[], &[]);
    let long: Vec<u8> = std::iter::repeat_n(b'x', 100_000).chain(*b"y\n").collect();
    let got = util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        // Pipelined lines in one write, then one line across many records.
        c.write_all(b"abc\ndef\nghi\n").unwrap();
        c.write_all(&long).unwrap();
        c.flush().unwrap();
        let mut got = Vec::new();
        let want = 12 + 100_001 + 1;
        let mut buf = [0u8; 65536];
        while got.len() < want {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed early");
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    assert_eq!(&got[..12], b"cba\nfed\nihg\n");
    assert_eq!(got[12..got.len() - 1].len(), 100_001);
    assert!(got[12] == b'y' && got[13..got.len() - 1].iter().all(|&b| b == b'x'));
}

/// Answers once, then closes its side.
struct OneShot;

impl StreamHandler<Buffered> for OneShot {
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        if n > 0 {
            ch.send(b"bye")?;
            cx.close();
        }
        Ok(())
    }
}

struct OneShotServer(Arc<rustls::ServerConfig>);

impl AcceptHandler for OneShotServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.insert(Handshaking::server(Buffered::new(conn), self.0.clone())?, OneShot)?;
        Ok(())
    }
}

/// The length of [`block`]: more plaintext than rustls takes in one write
/// (its 64 KiB buffer limit), so that one `Buffered::send` of it is partial
/// in the session; and, behind a small window, more than the server's
/// socket holds, so that its writes of TLS records are partial too. Within
/// `Buffered`'s default output limit (4 MiB).
const BLOCK: usize = (3 << 20) + 7;

/// Not a pattern of period dividing 64 KiB: a byte lost or sent twice at a
/// partial send shifts everything after it.
fn block() -> Vec<u8> {
    (0..BLOCK).map(|i| (i % 251) as u8).collect()
}

/// Answers each read with [`block`], in one send.
struct Block;

impl StreamHandler<Buffered> for Block {
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        if ch.recv(buf)? > 0 {
            ch.send(&block())?;
        }
        Ok(())
    }
}

struct BlockServer(Arc<rustls::ServerConfig>);

impl AcceptHandler for BlockServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        // Smaller than one TLS record (16 KiB and a few bytes): over
        // loopback a socket otherwise takes each record whole or not at all
        // (seen: 192 records of 16,406 bytes, none partial), and rustls's
        // resumption of a partly written record never runs.
        rustix::net::sockopt::set_socket_send_buffer_size(&conn, 4096)?;
        cx.insert(Handshaking::server(Buffered::new(conn), self.0.clone())?, Block)?;
        Ok(())
    }
}

/// The echo test's sends are at most the loop's 64 KiB buffer, which rustls
/// always takes whole, and its client reads as fast as the server writes;
/// here one send is cut by rustls itself, the part it did not take must be
/// queued from exactly where it stopped, and the records rustls makes of it
/// meet a full socket, which takes part of one: the rest must be written
/// from exactly where the socket stopped.
#[test]
fn a_send_bigger_than_rustls_and_the_socket_take_arrives_whole_and_in_order() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let mut map = Map::new().unwrap();
    map.insert(listener, BlockServer(server_config(&cert, &[], &[]))).unwrap();
    let client = client_config(&cert, &[], &[]);
    let got = util::with_client(&mut map, move || {
        let mut c = connect_small_window(addr, client).unwrap();
        c.write_all(b"go").unwrap();
        // A byte sent twice shows as a difference; a lost one ends the
        // read at its timeout (5 s).
        let mut got = vec![0u8; BLOCK];
        let read = c.read_exact(&mut got).map_err(|e| e.kind());
        (read, got)
    });
    assert_eq!(got.0, Ok(()), "the whole block arrives, as valid TLS records, within the read timeout");
    let first = got.1.iter().zip(block()).position(|(&a, b)| a != b);
    assert_eq!(first, None, "the first byte that differs from the block sent");
}

#[test]
fn closing_sends_close_notify() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let mut map = Map::new().unwrap();
    map.insert(listener, OneShotServer(server_config(&cert, &[], &[]))).unwrap();
    let client = client_config(&cert, &[], &[]);
    let (reply, end) = util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        c.write_all(b"hi").unwrap();
        let mut reply = Vec::new();
        let end = c.read_to_end(&mut reply);
        (reply, end.map_err(|e| e.kind()))
    });
    assert_eq!(reply, b"bye");
    // read_to_end ends with Ok only after close_notify; a bare TCP close
    // would be UnexpectedEof.
    assert_eq!(end, Ok(3));
}

#[test]
fn truncation_is_reported_apart_from_a_clean_close() {
    let cert = cert();
    let (mut map, addr, log) = echo_server(server_config(&cert, &[], &[]));
    let config = client_config(&cert, &[], &[]);
    let client = config.clone();
    util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        roundtrip(&mut c, b"clean").unwrap();
        c.conn.send_close_notify();
        c.conn.complete_io(&mut c.sock).unwrap();
    });
    run_until(&mut map, |_| log.contains("close"));
    assert_eq!(log.events().len(), 2, "{:?}", log.events());
    util::with_client(&mut map, move || {
        let mut c = connect(addr, config).unwrap();
        roundtrip(&mut c, b"cut").unwrap();
        c.sock.shutdown(std::net::Shutdown::Both).unwrap(); // no close_notify
    });
    let truncated = format!("error UnexpectedEof: {TRUNCATED}");
    run_until(&mut map, |_| log.contains(&truncated));
    assert_eq!(log.events()[2..], [log.events()[0].clone(), truncated], "{:?}", log.events());
}

/// rolecore's own client: connects, handshakes, sends once it may, and
/// records what it learned of the server.
struct Client {
    log: Log,
}

impl StreamHandler<Buffered> for Client {
    fn handle_connect(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
        let tls = ch.tls().expect("a TLS stream");
        let certs = tls.peer_certificates().map_or(0, |c| c.len());
        let alpn = tls.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        self.log.push(format!("client connect certs={certs} alpn={alpn:?}"));
        ch.send(b"ping")
    }
    fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        let n = ch.recv(&mut buf)?;
        self.log.push(format!("client read {}", String::from_utf8_lossy(&buf[..n])));
        cx.close();
        Ok(())
    }
    fn handle_connect_failed(&mut self, error: io::Error, _: &mut Ctx<'_>) {
        self.log.push(format!("client failed {:?}: {error}", error.kind()));
    }
}

fn client(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Handshaking<Buffered> {
    let connecting = Channel::tcp_v4().unwrap().connect(addr).unwrap();
    Handshaking::client(Buffered::new(connecting), config, localhost()).unwrap()
}

#[test]
fn rolecore_client_meets_rolecore_server() {
    let cert = cert();
    let (mut map, addr, server_log) = echo_server(server_config(&cert, &[], &[b"echo"]));
    let log = Log::default();
    let client_cfg = client_config(&cert, &[], &[b"echo"]);
    map.insert(client(addr, client_cfg), Client { log: log.clone() }).unwrap();
    assert!(run_until(&mut map, |_| log.events().len() == 2 && server_log.contains("close")));
    assert_eq!(log.events(), ["client connect certs=1 alpn=Some(\"echo\")", "client read ping"]);
}

#[test]
fn a_client_refuses_a_certificate_it_does_not_trust() {
    let (served, trusted) = (cert(), cert());
    let (mut map, addr, server_log) = echo_server(server_config(&served, &[], &[]));
    let log = Log::default();
    map.insert(client(addr, client_config(&trusted, &[], &[])), Client { log: log.clone() }).unwrap();
    assert!(run_until(&mut map, |_| !log.events().is_empty() && !server_log.events().is_empty()));
    let events = log.events();
    assert!(events[0].starts_with("client failed InvalidData: TLS handshake failed:"), "{events:?}");
    assert!(events[0].contains("certificate"), "{events:?}");
    let server = server_log.events();
    assert!(server[0].starts_with("failed InvalidData: TLS handshake failed:"), "{server:?}");
}

/// Found by the sim_tls fuzz target: a client whose Finished and
/// close_notify arrive, and whose socket closes, before the server reads
/// any of them. The handshake completed (that the server's tickets then
/// find the peer gone is no handshake failure), and the close is clean. Over
/// a Unix socket, where a write to a closed peer fails at once; the client
/// runs in this thread, between the map's iterations, so the order is
/// certain.
#[test]
fn a_client_leaving_right_after_its_finished_completed_its_handshake() {
    let cert = cert();
    let (server_end, mut sock) = std::os::unix::net::UnixStream::pair().unwrap();
    let log = Log::default();
    let mut map = Map::new().unwrap();
    let tls = Handshaking::server(
        Buffered::new(Channel::try_from(server_end).unwrap()),
        server_config(&cert, &[], &[]),
    );
    map.insert(tls.unwrap(), Echo { log: log.clone() }).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut conn =
        rustls::ClientConnection::new(client_config(&cert, &[&rustls::version::TLS13], &[]), localhost())
            .unwrap();
    conn.write_tls(&mut sock).unwrap(); // the ClientHello
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while conn.is_handshaking() && std::time::Instant::now() < deadline {
        util::run_iterations(&mut map, 1);
        match conn.read_tls(&mut sock) {
            Ok(_) => {
                conn.process_new_packets().unwrap();
            }
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
        }
    }
    assert!(!conn.is_handshaking(), "the client's handshake completed");
    // Finished, close_notify and the end, with the server not running.
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut sock).unwrap();
    }
    drop(sock);
    assert!(run_until(&mut map, |_| log.contains("close")), "{:?}", log.events());
    assert_eq!(log.events(), ["connect TLSv1_3 alpn=None", "close"]);
}

/// A TLS stream must start fresh: `Handshaking::server` refuses, with
/// `InvalidInput`, a `Buffered` with output already queued, and an
/// `AsyncChat` with output queued or a `close_when_done` pending (bytes
/// queued before the handshake would go out as plaintext, or the stream
/// would close before it started); a fresh one of each is taken.
#[test]
fn a_tls_stream_must_start_fresh() {
    let cert = cert();
    let config = server_config(&cert, &[], &[]);
    let pair = || {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        (Channel::try_from(ours).unwrap(), peer)
    };
    macro_rules! kind {
        ($result:expr) => {
            $result.err().map(|e| e.kind())
        };
    }

    let (ch, _peer) = pair();
    let mut queued = Buffered::new(ch);
    // More than the socket takes while the peer does not read.
    queued.send(&vec![b'q'; 1 << 20]).unwrap();
    assert!(queued.queued() > 0);
    assert_eq!(kind!(Handshaking::server(queued, config.clone())), Some(io::ErrorKind::InvalidInput));

    let (ch, _peer) = pair();
    let mut pushed = AsyncChat::new(ch, Terminator::CRLF);
    pushed.push(b"early\r\n").unwrap();
    assert_eq!(kind!(Handshaking::server(pushed, config.clone())), Some(io::ErrorKind::InvalidInput));

    let (ch, _peer) = pair();
    let mut closing = AsyncChat::new(ch, Terminator::CRLF);
    closing.close_when_done();
    assert_eq!(kind!(Handshaking::server(closing, config.clone())), Some(io::ErrorKind::InvalidInput));

    let (ch, _peer) = pair();
    assert_eq!(kind!(Handshaking::server(Buffered::new(ch), config.clone())), None);
    let (ch, _peer) = pair();
    assert_eq!(kind!(Handshaking::server(AsyncChat::new(ch, Terminator::CRLF), config)), None);
}

/// Plaintext that arrives with the client's `Finished` (rustls sends a
/// request queued before the handshake completed right behind it) is
/// handed to the handler without waiting for more bytes: the client only
/// waits for the echo. Over TLS 1.3 and 1.2.
#[test]
fn data_that_came_with_the_client_s_finished_is_read_at_once() {
    let cert = cert();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (mut map, addr, _log) = echo_server(server_config(&cert, &[], &[]));
        let client = client_config(&cert, &[version], &[]);
        let back = util::with_client(&mut map, move || {
            let sock = std::net::TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut conn = rustls::ClientConnection::new(client, localhost()).unwrap();
            conn.writer().write_all(b"right behind the Finished").unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut back = [0u8; 25];
            tls.read_exact(&mut back).map(|()| back.to_vec())
        });
        assert_eq!(back.map_err(|e| e.kind()), Ok(b"right behind the Finished".to_vec()), "{version:?}");
    }
}

/// Answers `quit` with `bye` and closes when done, lingering: its sending
/// side is shut down first.
struct Quits;

impl ChatHandler for Quits {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        if chat.take_incoming() == b"quit" {
            chat.push(b"bye\n")?;
            chat.close_when_done();
        }
        Ok(())
    }
}

struct LingeringServer(Arc<rustls::ServerConfig>);

impl AcceptHandler for LingeringServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, Terminator::LF);
        chat.set_linger(Some(std::time::Duration::from_secs(5)));
        cx.insert(Handshaking::server(chat, self.0.clone())?, Quits)?;
        Ok(())
    }
}

/// A lingering TLS chat shuts its sending side down only after its
/// `close_notify`: the client reads the last reply, then a clean end of
/// the stream, not a truncation.
#[test]
fn a_lingering_close_sends_close_notify_before_the_end_of_stream() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let mut map = Map::new().unwrap();
    map.insert(listener, LingeringServer(server_config(&cert, &[], &[]))).unwrap();
    let client = client_config(&cert, &[], &[]);
    let (reply, end) = util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        c.write_all(b"quit\n").unwrap();
        c.flush().unwrap();
        let mut reply = Vec::new();
        let end = c.read_to_end(&mut reply).map_err(|e| e.kind());
        (reply, end)
    });
    assert_eq!(reply, b"bye\n");
    // Ok only after close_notify; a bare end of stream is UnexpectedEof.
    assert_eq!(end, Ok(4));
}

/// Handshakes with an idle timeout of 100 ms.
struct ImpatientServer(Arc<rustls::ServerConfig>, Log);

impl AcceptHandler for ImpatientServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let tls = Handshaking::server(Buffered::new(conn), self.0.clone())?;
        let token = cx.insert(tls, Echo { log: self.1.clone() })?;
        cx.set_idle_timeout(token, Some(std::time::Duration::from_millis(100)));
        Ok(())
    }
}

/// A handshake still running when its idle timeout passes fails with an
/// error of kind `TimedOut` (what the module's docs promise), saying that
/// it was the TLS handshake that timed out.
#[test]
fn a_handshake_that_times_out_fails_with_timed_out() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let log = Log::default();
    let mut map = Map::new().unwrap();
    map.insert(listener, ImpatientServer(server_config(&cert, &[], &[]), log.clone())).unwrap();
    // A client that connects and says nothing.
    let silent = std::net::TcpStream::connect(addr).unwrap();
    assert!(
        run_until(&mut map, |_| log.events().iter().any(|e| e.starts_with("failed"))),
        "{:?}",
        log.events()
    );
    let failed = log.events().into_iter().find(|e| e.starts_with("failed")).unwrap();
    assert!(failed.starts_with("failed TimedOut: TLS handshake timed out"), "{failed}");
    drop(silent);
}

/// Echoes one byte a read.
struct ByteEcho;

impl StreamHandler<Buffered> for ByteEcho {
    fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        let n = ch.recv(&mut byte)?;
        ch.send(&byte[..n])
    }
}

/// Serves each connection with [`ByteEcho`].
struct ByteEchoServer(Arc<rustls::ServerConfig>);

impl AcceptHandler for ByteEchoServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.insert(Handshaking::server(Buffered::new(conn), self.0.clone())?, ByteEcho)?;
        Ok(())
    }
}

/// The plaintext of a record is held above the socket, where no readiness
/// reports it: a handler that reads it a byte at a time gets all of it,
/// not only its first 64 bytes (the loop reads held input on while the
/// reads make progress, and stops after 64 that make none).
#[test]
fn a_handler_reading_a_byte_at_a_time_gets_a_whole_record() {
    let cert = cert();
    let (listener, addr) = tcp_listener();
    let mut map = Map::new().unwrap();
    map.insert(listener, ByteEchoServer(server_config(&cert, &[], &[]))).unwrap();
    let client = client_config(&cert, &[], &[]);
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let sent = data.clone();
    let back = util::with_client(&mut map, move || {
        let mut c = connect(addr, client).unwrap();
        roundtrip(&mut c, &sent).map_err(|e| e.kind())
    });
    assert_eq!(back, Ok(data), "a read timed out: the rest of the record was never read");
}
