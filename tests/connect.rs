//! Connecting: `handle_connect` runs once the connection is made, before any
//! read or write of the same wake-up, on a channel that is already `Connected`
//! (D21); a refused connect is `handle_connect_failed`, identical on every
//! backend, never `handle_connect` or `handle_close` (D24); right after the
//! connect a receive would block instead of reading an end of stream.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use rolecore::{Address, Backend, Channel, Connected, Ctx, LoopOptions, StreamHandler, UnixAddress};
use util::cpython::*;
use util::probe::*;
use util::recorder::*;
use util::*;

struct ConnectFlag(Flag);

impl StreamHandler for ConnectFlag {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(true);
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
    trip!(connect_failed, expt, close, error);
}

fn t18(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let server = start_server(&mut map, fam, base_test_handler());
    let flag = Flag::default();
    map.insert(connect(&server.address), ConnectFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_connect");
}

ported! {
    /// T18 `test_handle_connect` (A24, A32, A33, D21): `handle_connect` runs
    /// once the connect completes, for a Unix socket too (whose connect
    /// completes at once: asyncore called it inside `connect()`).
    t18_handle_connect => t18, [ipv4, ipv6, unix]
}

fn t27(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let server = start_server(&mut map, fam, base_test_handler());
    // "we start disconnected": the server is a Channel<Listening> (accepting,
    // not connected); the client a Channel<Connecting> (not accepting). Those
    // are types: a listener cannot connect nor a stream accept
    // (tests/ui/d03_connect_on_listener.rs, d04_accept_on_connecting.rs).
    let client = BaseClient::new();
    let connected_to = Rc::clone(&client.connected_to);
    let client = map.insert(connect(&server.address), client).unwrap();
    // loop(timeout=0.01, count=100): the client connects to the server.
    map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(100)).unwrap();
    assert_eq!(
        *connected_to.borrow(),
        Some(server.address.clone()),
        "the client is connected, to the server's address"
    );
    assert_eq!(server.accepted.get(), 1, "the server accepted it");
    assert!(map.contains(server.token), "the server is still accepting");
    // client.close()
    assert!(map.remove(client));
    assert!(!map.contains(client), "the client is closed");
    assert!(map.contains(server.token), "the server still accepts");
    // server.close()
    assert!(map.remove(server.token));
    assert!(!map.contains(server.token), "the server is closed");
}

ported! {
    /// T27 `test_connection_attributes` (A13, A22, A28, A32, D21): asyncore's
    /// `connected`/`accepting` flags are roles here. After the loop ran the
    /// client has been connected (its `handle_connect` saw a
    /// `Channel<Connected>` with the server as peer); closing the client
    /// leaves the server accepting; then the server closes.
    t27_connection_attributes => t27, [ipv4, ipv6, unix]
}

#[test]
fn ipv6_loopback_works_here() {
    let listener = TcpListener::bind("[::1]:0").expect("IPv6 loopback: the IPv6 variants need it");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"hi").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi");
}

/// Item 14 (mio `connect_error`): a refused connect is
/// `handle_connect_failed` with `ConnectionRefused`, never `handle_connect`,
/// and nothing after it.
#[test]
fn a_refused_connect_fails_and_never_connects() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let addr = refused_addr()?;
        let log = Log::default();
        let mut m = map(backend);
        let connecting = Channel::tcp_v4()?.connect(addr)?;
        m.insert(connecting, Probe::new("c", &log))?;
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend}: {:?}", log.events());
        run_iterations(&mut m, 2);
        assert_eq!(log.events(), ["c:connect_failed:ConnectionRefused"], "{backend}");
    }
    Ok(())
}

/// Item 15 (mio `issue_776`): right after the connect event, a receive says
/// would-block — not end of stream — and no read or close follows while the
/// peer is silent.
#[test]
fn after_connecting_a_receive_would_block_instead_of_reading_eof() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let listener = TcpListener::bind("127.0.0.1:0")?; // never accepts: the kernel completes
        let log = Log::default();
        let mut m = map(backend);
        let connecting = Channel::tcp_v4()?.connect(listener.local_addr()?)?;
        let token = m.insert(connecting, Probe::new("c", &log))?;
        assert!(run_until(&mut m, |_| !log.events().is_empty()), "{backend}: no connect");
        run_iterations(&mut m, 3);
        assert_eq!(log.events(), ["c:connect(recv:wouldblock)"], "{backend}");
        assert!(m.contains(token), "{backend}");
    }
    Ok(())
}

#[test]
fn handle_connect_runs_when_client_connects_to_local_listener() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = tcp_listener();
        map.insert(listener, Acceptor::new(&log)).expect("insert the listener");
        let client = Channel::tcp_v4().expect("socket").connect(addr).expect("connect");
        let token = map.insert(client, Recorder::new(&log)).expect("insert the client");
        assert!(
            util::run_until(&mut map, |_| log.contains("connect") && log.contains("accepted")),
            "{backend}: handle_connect and handle_accepted within 5 s; log {:?}",
            log.events()
        );
        util::run_iterations(&mut map, 3);
        assert_eq!(log.count("connect"), 1, "{backend}: handle_connect exactly once; log {:?}", log.events());
        assert!(map.contains(token), "{backend}: the connected client stays in the map");
        assert!(
            !log.events().iter().any(|e| e.contains("error") || e.contains("close")),
            "{backend}: {:?}",
            log.events()
        );
    }
}

#[test]
fn handle_connect_runs_for_a_client_of_an_abstract_unix_socket() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let name = format!("rolecore-events-{}-{backend}", std::process::id()).into_bytes();
        let listener = Channel::unix_stream()
            .expect("socket")
            .bind(UnixAddress::Abstract(name.clone()))
            .expect("bind an abstract name")
            .listen(4)
            .expect("listen");
        map.insert(listener, Acceptor::new(&log)).expect("insert the listener");
        // A Unix connect completes at once; the loop still delivers handle_connect.
        let client =
            Channel::unix_stream().expect("socket").connect(UnixAddress::Abstract(name)).expect("connect");
        map.insert(client, Recorder::new(&log)).expect("insert the client");
        assert!(
            util::run_until(&mut map, |_| log.contains("connect") && log.contains("accepted")),
            "{backend}: handle_connect and handle_accepted over an abstract Unix socket; log {:?}",
            log.events()
        );
        util::run_iterations(&mut map, 2);
        assert_eq!(log.count("connect"), 1, "{backend}: {:?}", log.events());
        assert_eq!(log.count("accepted"), 1, "{backend}: {:?}", log.events());
    }
}

#[test]
fn handle_connect_failed_on_refused_connect_identical_on_every_backend() {
    let mut seen = Vec::new();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let client = Channel::tcp_v4().expect("socket").connect(closed_port()).expect("connect starts");
        let token = map.insert(client, Recorder::new(&log)).expect("insert");
        assert!(
            util::run_until(&mut map, |m| !m.contains(token)),
            "{backend}: the refused channel left the map"
        );
        util::run_iterations(&mut map, 3);
        let events = log.events();
        assert_eq!(
            events,
            ["connect_failed:ConnectionRefused"],
            "{backend}: handle_connect_failed(ConnectionRefused), and no handle_connect, read, close or error"
        );
        seen.push((backend, events));
    }
    let first = &seen[0].1;
    for (backend, events) in &seen {
        assert_eq!(events, first, "{backend} differs from {}", seen[0].0);
    }
}

/// Checks, inside handle_connect, that the channel is a working connected
/// stream; writes once when writable.
struct ConnectProbe {
    log: Log,
    server: SocketAddr,
    write: bool,
}

impl StreamHandler for ConnectProbe {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.write
    }

    fn handle_connect(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let peer = ch.peer_addr()?;
        let sent = ch.send(b"C")?;
        self.log.push(format!("connect peer={} sent={sent}", peer == Address::Inet(self.server)));
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        Ok(())
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.send(b"W")?;
        self.log.push("write");
        self.write = false;
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

/// D21: connected before `handle_connect`.
#[test]
fn handle_connect_sees_connected_channel_and_precedes_read_and_write() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = std_listener();
        let client = Channel::tcp_v4().expect("socket").connect(addr).expect("connect");
        map.insert(client, ConnectProbe { log: log.clone(), server: addr, write: true }).expect("insert");
        let mut server = accept(&listener);
        server.write_all(b"data before the first wait").expect("server write");
        // The handshake is done: one wait reports the connect, and that one
        // wake-up delivers handle_connect, then the write it allows.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
        let first = log.events();
        assert_eq!(
            first.first().map(String::as_str),
            Some("connect peer=true sent=1"),
            "{backend}: {first:?}"
        );
        assert!(
            first.contains(&"write".to_string()),
            "{backend}: the write of the same wake-up follows: {first:?}"
        );
        assert!(util::run_until(&mut map, |_| log.contains("read")), "{backend}: handle_read within 5 s");
        let events = log.events();
        assert_eq!(events.iter().filter(|e| e.starts_with("connect")).count(), 1, "{backend}: {events:?}");
        assert_eq!(events[0], "connect peer=true sent=1", "{backend}: handle_connect came first: {events:?}");
        // What handle_connect sent went out before what handle_write sent.
        assert_eq!(read_exactly(&mut server, 2), b"CW", "{backend}");
    }
}

/// Closes itself once connected; records how a connect failed.
struct ConnectOutcome(Rc<std::cell::RefCell<Vec<io::ErrorKind>>>);

impl StreamHandler for ConnectOutcome {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.close();
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.0.borrow_mut().push(error.kind());
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
}

/// A connect whose deadline passes first is `handle_connect_failed` with
/// `TimedOut`, and the channel leaves the map then, at once: it does not
/// stay until the kernel gives up on the connect (minutes later).
#[test]
fn a_connect_past_its_deadline_fails_and_leaves_the_map() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        // A listener that never accepts, with the smallest backlog: once its
        // queue is full, the kernel drops further SYNs and those connects
        // stay pending.
        let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(0)?;
        let addr = listener.local_addr()?;
        let failed = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut m = map(backend);
        for _ in 0..8 {
            let token = m.insert(Channel::tcp_v4()?.connect(&addr)?, ConnectOutcome(failed.clone()))?;
            m.set_deadline(token, Some(std::time::Instant::now() + Duration::from_millis(30)));
        }
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend}: {} channels left", m.len());
        let failed = failed.borrow();
        assert!(!failed.is_empty(), "{backend}: no connect stayed pending");
        assert!(failed.iter().all(|&k| k == io::ErrorKind::TimedOut), "{backend}: {failed:?}");
        drop(listener);
    }
    Ok(())
}
