//! Errors: a callback's error reaches `handle_error` exactly as returned; the
//! default `handle_error` closes with `handle_close` once; the defaults of
//! events a program did not handle; a disconnection returned by a handler is a
//! close, any other error is `handle_error` (D19).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;

use rolecore::{Backend, Channel, Connected, Ctx, StreamHandler};
use util::cpython::*;
use util::*;

// T5 `test_compact_traceback` (A11) is Python-only: there is no traceback.
// handle_error receives the error value itself (T26), and a panic caught by
// `LoopOptions::catch_panics` is reported in one line (tests/panics.rs).

/// T26's `ZeroDivisionError`.
#[derive(Debug)]
struct ZeroDivisionError;

impl fmt::Display for ZeroDivisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("float division by zero")
    }
}

impl std::error::Error for ZeroDivisionError {}

/// T26's `TestClient`: `handle_write` fails; `handle_error` checks that it
/// received that very error and sets the flag.
struct ErrorFlag(Flag);

impl StreamHandler for ErrorFlag {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Err(io::Error::other(ZeroDivisionError)) // 1.0 / 0
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        // `raise` re-raises the ZeroDivisionError: the error is the one the
        // callback returned.
        assert!(
            error.get_ref().is_some_and(|e| e.is::<ZeroDivisionError>()),
            "exception not raised: handle_error got {error:?}"
        );
        self.0.set(true);
    }
    trip!(connect_failed, expt, close);
}

fn t26(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let server = start_server(&mut map, fam, base_test_handler());
    let flag = Flag::default();
    map.insert(connect(&server.address), ErrorFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_error");
}

ported! {
    /// T26 `test_handle_error` (A6, A7, A35): a callback's error reaches
    /// `handle_error` intact. asyncore checked that the exception was still
    /// current inside `handle_error`; rolecore passes the error as a value.
    t26_handle_error => t26, [ipv4, ipv6, unix]
}

/// The error a failing handler returns, to check `handle_error` gets it intact.
#[derive(Debug, PartialEq, Eq)]
struct Boom(u32);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}", self.0)
    }
}

impl std::error::Error for Boom {}

/// What a handle_error saw: the kind, the `Boom` inside if any, the message.
type SeenError = (io::ErrorKind, Option<u32>, String);

/// Reads, then fails with `Boom`; its handle_error records what it got and
/// leaves the channel open.
struct FailsThenKeepsOpen {
    log: Log,
    errors: Rc<RefCell<Vec<SeenError>>>,
}

impl StreamHandler for FailsThenKeepsOpen {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        Err(io::Error::other(Boom(7)))
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push("error");
        let boom = error.get_ref().and_then(|e| e.downcast_ref::<Boom>()).map(|b| b.0);
        self.errors.borrow_mut().push((error.kind(), boom, error.to_string()));
    }
}

#[test]
fn handle_error_receives_the_exact_error_a_handler_returned() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let errors = Rc::default();
        let (ours, mut peer) = tcp_pair();
        let token = map
            .insert(ours, FailsThenKeepsOpen { log: log.clone(), errors: Rc::clone(&errors) })
            .expect("insert");
        peer.write_all(b"x").expect("peer write");
        assert!(util::run_until(&mut map, |_| log.contains("error")), "{backend}: handle_error within 5 s");
        assert_eq!(
            *errors.borrow(),
            vec![(io::ErrorKind::Other, Some(7), "boom 7".to_string())],
            "{backend}: handle_error got the handler's own error"
        );
        // The overriding handle_error did not close: the channel is still served.
        assert!(map.contains(token), "{backend}: a handle_error that does not close keeps the channel");
        peer.write_all(b"y").expect("peer write");
        assert!(
            util::run_until(&mut map, |_| log.count("error") == 2),
            "{backend}: the channel is still served"
        );
        assert_eq!(log.count("close"), 0, "{backend}: no handle_close: {:?}", log.events());
    }
}

/// Reads, then fails with `io::Error::other("boom")`; keeps the default
/// handle_error.
struct FailsWithDefaultErrorHandling {
    log: Log,
}

impl StreamHandler for FailsWithDefaultErrorHandling {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        self.log.push("read");
        Err(io::Error::other("boom"))
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }
}

#[test]
fn default_handle_error_calls_handle_close_once_and_closes_the_channel() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, mut peer) = tcp_pair();
        let token = map.insert(ours, FailsWithDefaultErrorHandling { log: log.clone() }).expect("insert");
        peer.write_all(b"x").expect("peer write");
        assert!(
            util::run_until(&mut map, |m| !m.contains(token)),
            "{backend}: the channel closed within 5 s"
        );
        // More data after the close reaches nobody.
        let _ = peer.write_all(b"more");
        util::run_iterations(&mut map, 5);
        assert_eq!(log.events(), ["read", "close"], "{backend}: handle_close once, then nothing");
        assert!(peer_sees_eof(&mut peer), "{backend}: the descriptor was closed");
    }
}

/// Returns `kind` from handle_read.
struct FailsWith {
    log: Log,
    kind: io::ErrorKind,
}

impl StreamHandler for FailsWith {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        self.log.push("read");
        Err(self.kind.into())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{:?}", error.kind()));
        cx.close();
    }
}

/// D19: disconnection errors from handlers.
#[test]
fn connection_reset_returned_by_handler_goes_to_handle_close_on_every_backend() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, mut peer) = tcp_pair();
        let handler = FailsWith { log: log.clone(), kind: io::ErrorKind::ConnectionReset };
        let token = map.insert(ours, handler).expect("insert");
        peer.write_all(b"x").expect("peer write");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        util::run_iterations(&mut map, 3);
        assert_eq!(
            log.events(),
            ["read", "close"],
            "{backend}: ConnectionReset is handle_close, not handle_error"
        );
        assert!(peer_sees_eof(&mut peer), "{backend}: the descriptor was closed");
    }
}

/// D19: disconnection errors from handlers.
#[test]
fn connection_refused_returned_by_handler_goes_to_handle_error_not_handle_close() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (ours, mut peer) = tcp_pair();
        let handler = FailsWith { log: log.clone(), kind: io::ErrorKind::ConnectionRefused };
        let token = map.insert(ours, handler).expect("insert");
        peer.write_all(b"x").expect("peer write");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        assert_eq!(
            log.events(),
            ["read", "error:ConnectionRefused"],
            "{backend}: not a disconnection (A2): handle_error"
        );
    }
}

/// Wants to read and to write; its read fails with an ordinary error that
/// its `handle_error` survives.
struct ReadFails(Log);

impl StreamHandler for ReadFails {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        self.0.push("read");
        Err(io::Error::other("bad request"))
    }
    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("write");
        Ok(())
    }
    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.0.push(format!("error {error}"));
    }
}

/// A callback that failed ends its wake-up: after `handle_read`'s error
/// and `handle_error`, no `handle_write` follows in the same wake-up, even
/// though the channel was writable too; it comes on the next one (the
/// handler survived its error).
#[test]
fn a_failed_callback_ends_its_wake_up() -> io::Result<()> {
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        peer.send(b"request")?;
        m.insert(ours, ReadFails(log.clone()))?;
        m.run(rolecore::LoopOptions::new().count(1).timeout(std::time::Duration::from_secs(5)))?;
        assert_eq!(log.events(), ["read", "error bad request"], "{backend}: one wake-up");
        run_iterations(&mut m, 1);
        assert_eq!(log.events().last().map(String::as_str), Some("write"), "{backend}: the next one");
    }
    Ok(())
}

/// A Unix socket whose send buffer is full (its peer, also returned, never
/// reads): every write to it would block.
fn full_socket() -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream) {
    let (full, peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    full.set_nonblocking(true).expect("non-blocking");
    loop {
        match (&full).write(&[0u8; 65536]) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (full, peer),
            Err(e) => panic!("filling a socket: {e}"),
        }
    }
}

/// Forwards what it reads to `out`, with `?`: a proxy that forgot that its
/// other side can be full.
struct Forwards {
    out: std::os::unix::net::UnixStream,
    log: Log,
}

impl StreamHandler for Forwards {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.log.push("read");
        self.out.write_all(&buf[..n])?;
        self.log.push("forwarded");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        let own = if error.to_string().contains("own I/O did not report") { "named" } else { "unnamed" };
        self.log.push(format!("error:{:?}:{own}", error.kind()));
        cx.close();
    }
}

/// A would-block of another descriptor, returned with `?`, is the handler's
/// error: `handle_error` gets it, with a message that says whose it was.
/// Taken for the channel's own spurious wake-up (as before), the bytes read
/// and not forwarded were lost without a word.
#[test]
fn a_would_block_of_another_descriptor_reaches_handle_error_on_every_backend() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (out, _out_peer) = full_socket();
        let (ours, mut peer) = tcp_pair();
        let token = map.insert(ours, Forwards { out, log: log.clone() }).expect("insert");
        peer.write_all(b"lost?").expect("peer write");
        assert!(
            util::run_until(&mut map, |m| !m.contains(token)),
            "{backend}: closed within 5 s: {:?}",
            log.events()
        );
        assert_eq!(log.events(), ["read", "error:WouldBlock:named"], "{backend}");
    }
}

/// Reads until its own channel would block, with `?`.
struct DrainsFile(Log);

impl rolecore::FileHandler for DrainsFile {
    fn handle_read(&mut self, ch: &mut Channel<rolecore::FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        loop {
            let n = ch.recv(&mut [0u8; 64])?;
            self.0.push(format!("read {n}"));
        }
    }
    fn handle_error(&mut self, _ch: &mut Channel<rolecore::FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        self.0.push(format!("error {error}"));
        cx.close();
    }
}

/// Reads datagrams until its own channel would block, with `?`.
struct DrainsDatagrams(Log);

impl rolecore::DatagramHandler<rolecore::ConnectedDatagram> for DrainsDatagrams {
    fn handle_read(
        &mut self,
        ch: &mut Channel<rolecore::ConnectedDatagram>,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        loop {
            let n = ch.recv(&mut [0u8; 64])?;
            self.0.push(format!("read {n}"));
        }
    }
    fn handle_error(
        &mut self,
        _ch: &mut Channel<rolecore::ConnectedDatagram>,
        error: io::Error,
        cx: &mut Ctx<'_>,
    ) {
        self.0.push(format!("error {error}"));
        cx.close();
    }
}

/// Writes through `io::Write` until its own socket is full, with `?`,
/// twice.
struct FillsWithWrite(Log);

impl StreamHandler for FillsWithWrite {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.0.count("full") < 2
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        Ok(())
    }
    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("full");
        let mut sent = 0;
        loop {
            sent += ch.write(&[0u8; 65536])?;
            self.0.push(format!("sent {sent}"));
        }
    }
    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.0.push(format!("error {error}"));
        cx.close();
    }
}

/// The other side of the rule above: a pipe's, a datagram socket's or a
/// stream's own would-block, returned with `?`, is a spurious wake-up, not
/// an error, and the channel goes on.
#[test]
fn a_channel_that_returns_its_own_would_block_goes_on() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let file =
            map.insert(Channel::dup_file(&reader).expect("dup"), DrainsFile(log.clone())).expect("insert");
        writer.write_all(b"ab").expect("pipe write");
        assert!(util::run_until(&mut map, |_| log.contains("read 2")), "{backend}: {:?}", log.events());
        writer.write_all(b"cde").expect("pipe write");
        assert!(util::run_until(&mut map, |_| log.contains("read 3")), "{backend}: {:?}", log.events());
        assert!(map.contains(file), "{backend}: {:?}", log.events());

        let dlog = Log::default();
        let (ours, mut theirs) = Channel::datagram_pair().expect("datagram pair");
        let dgram = map.insert(ours, DrainsDatagrams(dlog.clone())).expect("insert");
        theirs.send(b"1234").expect("send");
        assert!(util::run_until(&mut map, |_| dlog.contains("read 4")), "{backend}: {:?}", dlog.events());
        theirs.send(b"12345").expect("send");
        assert!(util::run_until(&mut map, |_| dlog.contains("read 5")), "{backend}: {:?}", dlog.events());
        assert!(map.contains(dgram), "{backend}: {:?}", dlog.events());

        let slog = Log::default();
        let (ours, mut peer) = tcp_pair();
        let stream = map.insert(ours, FillsWithWrite(slog.clone())).expect("insert");
        assert!(util::run_until(&mut map, |_| slog.count("full") == 1), "{backend}: {:?}", slog.events());
        // Room again: the peer reads all that came.
        peer.set_nonblocking(true).expect("non-blocking");
        while peer.read(&mut [0u8; 65536]).is_ok_and(|n| n > 0) {}
        assert!(util::run_until(&mut map, |_| slog.count("full") == 2), "{backend}: {:?}", slog.events());
        assert!(map.contains(stream), "{backend}: {:?}", slog.events());
        let all = [log.events(), dlog.events(), slog.events()].concat();
        assert!(!all.iter().any(|e| e.starts_with("error")), "{backend}: {all:?}");
    }
}

/// Greets each accepted connection through a full socket, with `?`.
struct GreetsThroughFull {
    out: std::os::unix::net::UnixStream,
    log: Log,
}

impl rolecore::AcceptHandler for GreetsThroughFull {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: rolecore::Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.log.push("accepted");
        self.out.write_all(b"hello")?;
        Ok(())
    }
    fn handle_error(&mut self, _ch: &mut Channel<rolecore::Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("error {error}"));
    }
}

/// A listener is the exception: its callbacks do the first I/O of the
/// connections it accepts, so a would-block from one of them stays what it
/// was, nothing, and the listener goes on accepting.
#[test]
fn a_listener_whose_handle_accepted_returns_a_would_block_goes_on_accepting() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (out, _out_peer) = full_socket();
        let (listener, addr) = tcp_listener();
        let token = map.insert(listener, GreetsThroughFull { out, log: log.clone() }).expect("insert");
        let _first = std::net::TcpStream::connect(addr).expect("connect");
        assert!(util::run_until(&mut map, |_| log.count("accepted") == 1), "{backend}: {:?}", log.events());
        let _second = std::net::TcpStream::connect(addr).expect("connect");
        assert!(util::run_until(&mut map, |_| log.count("accepted") == 2), "{backend}: {:?}", log.events());
        assert!(map.contains(token), "{backend}");
        assert_eq!(log.events(), ["accepted", "accepted"], "{backend}");
    }
}
