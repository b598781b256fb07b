//! Closing: `handle_close` runs once, after the peer closes or resets, after
//! a send to a reset peer, never after a handler closed the channel (D18); a
//! hang-up is read to the end before `handle_close` (D23, P7); half-closes in
//! either direction (P14); a peer that leaves is noticed even by a channel that
//! wants nothing (P13); a send to a peer that left does not raise `SIGPIPE`
//! (P6).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rolecore::{
    Address, Backend, Buffered, Channel, Connected, Ctx, FileFd, FileHandler, Map, StreamHandler,
};
use util::cpython::*;
use util::probe::*;
use util::recorder::*;
use util::*;

/// T23's `TestClient`: reads, and its `handle_close` sets the flag.
struct CloseFlag(Flag);

impl StreamHandler for CloseFlag {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        // "in order to make handle_close be called we are supposed to make
        // at least one recv() call"
        ch.recv(&mut [0u8; 1024]).map(drop)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.set(true); // the loop closes the channel after this
    }
    trip!(connect_failed, expt, error);
}

fn t23(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    // TestHandler: BaseTestHandler that closes in __init__.
    let make: MakeHandler = Box::new(|conn, _cx| {
        conn.close();
        Ok(())
    });
    let server = start_server(&mut map, fam, make);
    let flag = Flag::default();
    let client = map.insert(connect(&server.address), CloseFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_close");
    assert!(!map.contains(client), "the channel is closed after handle_close");
}

ported! {
    /// T23 `test_handle_close` (A27, A28, D18): the server closes; the client's
    /// read finds the end and the loop calls `handle_close`, then closes.
    t23_handle_close => t23, [ipv4, ipv6, unix]
}

/// T24's `TestClient`: sends 128 bytes on every write event; `handle_close`
/// and `handle_expt` set the flag.
struct BrokenFlag(Flag);

const T24_DATA: [u8; 128] = [0; 128];

impl StreamHandler for BrokenFlag {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.send(&T24_DATA).map(drop)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.set(true);
    }

    fn handle_expt(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(true);
        cx.close();
        Ok(())
    }
    trip!(connect_failed, error);
}

/// T24's server-side `TestHandler`: reads 128 bytes and closes; not writable.
struct ReadThenClose;

impl StreamHandler for ReadThenClose {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; T24_DATA.len()])?;
        cx.close();
        Ok(())
    }
    trip!(connect, expt, close, error);
}

fn t24(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let make: MakeHandler = Box::new(|conn, cx| {
        cx.insert(conn, ReadThenClose)?;
        Ok(())
    });
    let server = start_server(&mut map, fam, make);
    let flag = Flag::default();
    map.insert(connect(&server.address), BrokenFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_close (or handle_expt) after the connection broke");
}

ported! {
    /// T24 `test_handle_close_after_conn_broken` (A2, A26, A7, D19; issues
    /// #5661, #11265): sending to a peer that closed (EPIPE, ECONNRESET, or a
    /// hang-up) is `handle_close`, never `handle_error`, on every backend.
    t24_handle_close_after_conn_broken => t24, [ipv4, ipv6, unix]
}

/// A file handler that reads only while `go` is set (back-pressure, as a
/// proxy or netcat pauses a source whose sink is full).
struct Paced {
    go: Rc<Cell<bool>>,
    got: Rc<Cell<usize>>,
    closes: Rc<Cell<usize>>,
}

impl FileHandler for Paced {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        self.go.get()
    }

    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 4096])?;
        self.got.set(self.got.get() + n);
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        // The documented way not to lose input a hang-up closed on: the
        // channel is still open here, read it to the end.
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = ch.recv(&mut buf) {
            self.got.set(self.got.get() + n);
        }
        self.closes.set(self.closes.get() + 1);
    }
}

impl StreamHandler for Paced {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        self.go.get()
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 4096])?;
        self.got.set(self.got.get() + n);
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = ch.recv(&mut buf) {
            self.got.set(self.got.get() + n);
        }
        self.closes.set(self.closes.get() + 1);
    }
}

fn paused_source_keeps_its_data(backend: Backend) {
    const LEN: usize = 10_000;
    for source in ["pipe", "socketpair"] {
        let (go, got, closes) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let handler = Paced { go: Rc::clone(&go), got: Rc::clone(&got), closes: Rc::clone(&closes) };
        let mut map = util::map(backend);
        // The writing end writes everything, then closes: a hang-up.
        let token = if source == "pipe" {
            let (reader, mut writer) = std::io::pipe().unwrap();
            writer.write_all(&[7u8; LEN]).unwrap();
            drop(writer);
            map.insert(Channel::file(reader.into()).unwrap(), handler).unwrap()
        } else {
            let (ours, mut theirs) = Channel::pair().unwrap();
            assert_eq!(theirs.send(&[7u8; LEN]).unwrap(), LEN);
            drop(theirs);
            map.insert(ours, handler).unwrap()
        };
        // Paused: the sink is full for a while.
        util::run_iterations(&mut map, 3);
        // The sink drained: read again.
        go.set(true);
        map.refresh(token);
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}, {source}: closed within 5 s");
        assert_eq!(
            (got.get(), closes.get()),
            (LEN, 1),
            "{backend}, {source}: (bytes read in handle_read and handle_close, handle_close calls)"
        );
    }
}

per_backend! {
    /// D23 (found porting T15): a hang-up closes a channel that does not want
    /// to read (`readable()` false: back-pressure) — on poll and epoll at once,
    /// on select (which does not watch a channel with no interest) once it
    /// reads again. Either way no byte is lost to a handler that reads the
    /// rest in `handle_close`, where the channel is still open: every byte
    /// the peer wrote is read, and `handle_close` runs once, on every backend.
    d23_a_paused_source_keeps_its_data_after_a_hang_up => paused_source_keeps_its_data
}

/// Item 16 (mio `connection_reset_by_peer`, `tcp_reset_close_event`; A2): a
/// reset — by `SO_LINGER` 0, or by the peer closing with our data unread —
/// reads as the end, never as data, and is `handle_close` exactly once,
/// never `handle_error`.
#[test]
fn a_reset_by_the_peer_is_handle_close_never_data_or_error() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        for how in ["linger0", "unread-data"] {
            let log = Log::default();
            let mut m = map(backend);
            let (mut ours, peer) = tcp_pair();
            if how == "linger0" {
                rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO))?;
            } else {
                send_all(&mut ours, b"never read");
                peer.peek(&mut [0u8; 1])?; // arrived, and stays unread
            }
            let probe = Probe::new("a", &log);
            let data = probe.data.clone();
            m.insert(ours, probe)?;
            drop(peer);
            assert!(run_until(&mut m, |m| m.is_empty()), "{backend} {how}: {:?}", log.events());
            assert!(data.borrow().is_empty(), "{backend} {how}: read data after a reset");
            assert_eq!(log.count("a:close"), 1, "{backend} {how}: {:?}", log.events());
            assert!(
                log.events()
                    .iter()
                    .all(|e| ["a:read", "a:eof", "a:wouldblock", "a:close"].contains(&e.as_str())),
                "{backend} {how}: {:?}",
                log.events()
            );
        }
    }
    Ok(())
}

/// Reads to the end, and says whether the end was a reset.
struct EndKind(Log);

impl EndKind {
    fn read_to_end(&mut self, ch: &mut Channel<Connected>) {
        let mut buf = [0u8; 64];
        loop {
            match ch.recv(&mut buf) {
                Ok(0) => return self.0.push(format!("end reset={}", ch.peer_reset())),
                Ok(n) => self.0.push(format!("data {n}")),
                Err(_) => return,
            }
        }
    }
}

impl StreamHandler for EndKind {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.read_to_end(ch);
        Ok(())
    }
    fn handle_close(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        // A hang-up may close without a read first (D23): read the end here.
        if !self.0.events().iter().any(|e| e.starts_with("end")) {
            self.read_to_end(ch);
        }
    }
}

/// `recv` returns `Ok(0)` for a reset as for a clean end of stream (A2),
/// so a client reading a response that ends with the connection could not
/// tell a complete one from one cut short; `peer_reset` tells them apart,
/// after the data that came before the reset is read.
#[test]
fn peer_reset_tells_a_reset_from_a_clean_end() -> io::Result<()> {
    for backend in backends() {
        for reset in [false, true] {
            let log = Log::default();
            let mut m = map(backend);
            let (ours, mut peer) = tcp_pair();
            m.insert(ours, EndKind(log.clone()))?;
            peer.write_all(b"response")?;
            if reset {
                rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO))?;
            }
            drop(peer);
            assert!(run_until(&mut m, |m| m.is_empty()), "{backend} reset {reset}: {:?}", log.events());
            let events = log.events();
            assert_eq!(
                events.first().map(String::as_str),
                Some("data 8"),
                "{backend} reset {reset}: {events:?}"
            );
            assert_eq!(
                events.last().map(String::as_str),
                Some(&*format!("end reset={reset}")),
                "{backend}: {events:?}"
            );
        }
    }
    Ok(())
}

/// On its first data, replies and shuts down its sending side.
struct HalfCloser(Probe);

impl StreamHandler for HalfCloser {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let first = self.0.data.borrow().is_empty();
        record_read(&self.0, |buf| ch.recv(buf))?;
        if first && !self.0.data.borrow().is_empty() {
            send_all(ch, b"pong");
            ch.shutdown(Shutdown::Write)?;
            self.0.push("shutdown(Write)");
        }
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// Item 17 (mio `tcp_shutdown_client_read_close_event`,
/// `tcp_shutdown_client_write_close_event`,
/// `tcp_shutdown_client_both_close_event`, `hup_event_on_disconnect`): a
/// peer's FIN is read to the end, then `handle_close`; our own
/// `shutdown(Write)` sends the peer its end of stream while we keep
/// receiving; our own `shutdown(Read)` or `shutdown(Both)` reads as the end.
#[test]
fn peer_fin_and_local_shutdowns_give_the_documented_events() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        // Peer FIN after data: the data, then the end, then close.
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = tcp_pair();
        let probe = Probe::new("a", &log);
        let data = probe.data.clone();
        m.insert(ours, probe)?;
        peer.write_all(b"bye")?;
        peer.shutdown(Shutdown::Write)?;
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend} FIN: {:?}", log.events());
        assert_eq!(*data.borrow(), b"bye", "{backend} FIN");
        assert_eq!(log.events().last().map(String::as_str), Some("a:close"), "{backend} FIN");
        assert_eq!(log.count("a:close"), 1, "{backend} FIN");

        // Our shutdown(Write): the peer reads our reply and its end, and we
        // still receive what it sends afterwards.
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = tcp_pair();
        let probe = Probe::new("b", &log);
        let data = probe.data.clone();
        let token = m.insert(ours, HalfCloser(probe))?;
        peer.write_all(b"ping")?;
        assert!(run_until(&mut m, |_| log.contains("b:shutdown(Write)")), "{backend}: {:?}", log.events());
        let mut reply = Vec::new();
        peer.read_to_end(&mut reply)?;
        assert_eq!(reply, b"pong", "{backend}: the peer did not get our reply and end");
        peer.write_all(b"more")?;
        assert!(run_until(&mut m, |_| data.borrow().len() == 8), "{backend}: {:?}", log.events());
        assert_eq!(*data.borrow(), b"pingmore", "{backend}");
        assert!(!log.contains("b:close"), "{backend}: closed after our own shutdown(Write)");
        assert!(m.contains(token), "{backend}");
        drop(peer);
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend}: {:?}", log.events());
        assert_eq!(log.count("b:close"), 1, "{backend}");

        // Our shutdown(Read) or shutdown(Both): the end of stream, then close.
        for how in [Shutdown::Read, Shutdown::Both] {
            let log = Log::default();
            let mut m = map(backend);
            let (mut ours, _peer) = tcp_pair();
            ours.shutdown(how)?;
            m.insert(ours, Probe::new("c", &log))?;
            assert!(run_until(&mut m, |m| m.is_empty()), "{backend} {how:?}: {:?}", log.events());
            assert_eq!(log.count("c:close"), 1, "{backend} {how:?}: {:?}", log.events());
            assert!(!log.contains("c:data"), "{backend} {how:?}");
        }
    }
    Ok(())
}

/// Item 18 (mio `unix_pipe.rs::event_when_sender_is_dropped`,
/// `event_when_receiver_is_dropped`): a pipe's reader reads what was written,
/// then its end and `handle_close` when the writer goes; a writer whose reader
/// went gets `handle_close` (`EPIPE`, no `SIGPIPE`: the process survives,
/// because a Rust test binary ignores `SIGPIPE` as every Rust `main` does).
/// With no interest at all, both still learn of the hang-up on poll and epoll
/// (select cannot see it, as documented in `src/poller/select.rs`).
#[test]
fn a_pipe_end_learns_that_the_other_end_was_dropped() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        // Writer dropped: reader reads the data, then closes.
        let log = Log::default();
        let mut m = map(backend);
        let (reader, mut writer) = io::pipe()?;
        let probe = Probe::new("r", &log);
        let data = probe.data.clone();
        m.insert(Channel::file(OwnedFd::from(reader))?, FileProbe::reader(probe))?;
        writer.write_all(b"abc")?;
        drop(writer);
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend} reader: {:?}", log.events());
        assert_eq!(*data.borrow(), b"abc", "{backend} reader");
        assert_eq!(log.events().last().map(String::as_str), Some("r:close"), "{backend} reader");
        assert_eq!(log.count("r:close"), 1, "{backend} reader");

        // Reader dropped: the writer's write finds EPIPE, then close.
        let log = Log::default();
        let mut m = map(backend);
        let (reader, writer) = io::pipe()?;
        m.insert(Channel::file(OwnedFd::from(writer))?, FileProbe::writer(Probe::new("w", &log)))?;
        drop(reader);
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend} writer: {:?}", log.events());
        assert_eq!(log.events(), ["w:write(0)", "w:close"], "{backend} writer");

        if backend == Backend::Select {
            continue;
        }
        for drop_writer in [true, false] {
            let log = Log::default();
            let mut m = map(backend);
            let (reader, writer) = io::pipe()?;
            let (ours, theirs) = if drop_writer {
                (OwnedFd::from(reader), OwnedFd::from(writer))
            } else {
                (OwnedFd::from(writer), OwnedFd::from(reader))
            };
            m.insert(Channel::file(ours)?, FileProbe::deaf(Probe::new("d", &log)))?;
            drop(theirs);
            let which = if drop_writer { "reader" } else { "writer" };
            assert!(run_until(&mut m, |m| m.is_empty()), "{backend} deaf {which}: {:?}", log.events());
            assert_eq!(log.events(), ["d:close"], "{backend} deaf {which}");
        }
    }
    Ok(())
}

#[test]
fn handle_close_called_once_after_peer_closes() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, peer) = tcp_pair();
        let token = map.insert(ours, Recorder::new(&log)).expect("insert");
        drop(peer);
        assert!(util::run_until(&mut map, |_| log.contains("close")), "{backend}: handle_close within 5 s");
        util::run_iterations(&mut map, 5);
        assert_eq!(
            log.events(),
            ["read:eof", "close"],
            "{backend}: recv returned 0, then handle_close exactly once, then nothing"
        );
        assert!(!map.contains(token), "{backend}: the closed channel left the map");
    }
}

#[test]
fn handle_close_called_once_after_peer_reset() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, peer) = tcp_pair();
        let token = map.insert(ours, Recorder::new(&log)).expect("insert");
        // SO_LINGER 0: closing sends a reset instead of a FIN.
        rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).expect("SO_LINGER 0");
        drop(peer);
        assert!(
            util::run_until(&mut map, |_| log.contains("close")
                || log.events().iter().any(|e| e.starts_with("error"))),
            "{backend}: an event within 5 s of the reset; log {:?}",
            log.events()
        );
        util::run_iterations(&mut map, 5);
        let events = log.events();
        assert!(
            !events.iter().any(|e| e.starts_with("error")),
            "{backend}: a reset is not handle_error: {events:?}"
        );
        assert_eq!(log.count("close"), 1, "{backend}: handle_close exactly once: {events:?}");
        assert_eq!(
            events.last().map(String::as_str),
            Some("close"),
            "{backend}: nothing after close: {events:?}"
        );
        assert!(!map.contains(token), "{backend}: the reset channel left the map");
    }
}

/// Writes whenever it can; never reads.
struct KeepsWriting {
    log: Log,
}

impl StreamHandler for KeepsWriting {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.send(b"more")?;
        Ok(())
    }

    logs_close_and_errors!(log, Channel<Connected>);
}

#[test]
fn handle_close_called_once_when_sending_to_a_reset_peer() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, peer) = tcp_pair();
        let token = map.insert(ours, KeepsWriting { log: log.clone() }).expect("insert");
        util::run_iterations(&mut map, 2);
        rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).expect("SO_LINGER 0");
        drop(peer);
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        util::run_iterations(&mut map, 3);
        assert_eq!(
            log.events(),
            ["close"],
            "{backend}: a send to a reset peer is handle_close, once, not handle_error"
        );
    }
}

/// Closes its own channel from handle_read, with `cx.close()` or, when
/// `by_remove`, with `cx.remove` of its own token; every later callback is
/// a bug.
struct ClosesInRead {
    log: Log,
    by_remove: bool,
}

impl StreamHandler for ClosesInRead {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("read");
        if !self.by_remove {
            cx.close();
        } else if !cx.remove(cx.token()) {
            self.log.push("remove answered false");
        } else if cx.remove(cx.token()) {
            // The channel is on its way out: no longer a live channel.
            self.log.push("a second remove answered true");
        }
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        Ok(())
    }

    fn handle_expt(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("expt");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
    }
}

/// D18: nothing after close.
#[test]
fn closing_in_handle_read_delivers_nothing_more_and_no_handle_close() {
    for backend in util::backends() {
        // A Unix socketpair whose peer wrote and hung up: readable, writable
        // and hang-up all at once, so write and close would follow the read.
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, mut peer) = Channel::pair().expect("socketpair");
        peer.send(b"data").expect("peer send");
        drop(peer);
        let token = map.insert(ours, ClosesInRead { log: log.clone(), by_remove: false }).expect("insert");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        util::run_iterations(&mut map, 5);
        assert_eq!(
            log.events(),
            ["read"],
            "{backend} (socketpair): nothing after cx.close(), no handle_close"
        );

        // The same over TCP, with urgent data pending too.
        let log = Log::default();
        let (ours, mut peer) = tcp_channel_pair();
        peer.send(b"data").expect("peer send");
        peer.send_oob(b"!").expect("peer send_oob");
        let token = map.insert(ours, ClosesInRead { log: log.clone(), by_remove: false }).expect("insert");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        util::run_iterations(&mut map, 5);
        assert_eq!(log.events(), ["read"], "{backend} (tcp): nothing after cx.close(), no handle_close");
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).ok(), Some(0), "{backend}: the descriptor was closed");
    }
}

/// D23: drain before close.
#[test]
fn peer_data_is_drained_before_handle_close_on_socketpair_hangup() {
    let message: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'8').collect();
    assert_eq!(message.len(), 35);
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (ours, mut peer) = Channel::pair().expect("socketpair");
        assert_eq!(peer.send(&message).expect("peer send"), 35, "{backend}");
        drop(peer);
        let mut recorder = Recorder::new(&log);
        recorder.chunk = 10;
        let data = recorder.data.clone();
        map.insert(ours, recorder).expect("insert");
        assert!(util::run_until(&mut map, |_| log.contains("close")), "{backend}: handle_close within 5 s");
        let events = log.events();
        assert_eq!(*data.borrow(), message, "{backend}: all 35 bytes before handle_close; log {events:?}");
        assert_eq!(log.count("read"), 4, "{backend}: 10 + 10 + 10 + 5 bytes: {events:?}");
        assert_eq!(log.count("close"), 1, "{backend}: {events:?}");
        assert_eq!(events.last().map(String::as_str), Some("close"), "{backend}: {events:?}");
    }
}

/// Reads a pipe 10 bytes per event.
struct PipeReader {
    log: Log,
    data: Rc<RefCell<Vec<u8>>>,
}

impl FileHandler for PipeReader {
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 10];
        let n = ch.recv(&mut buf)?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    logs_close_and_errors!(log, Channel<FileFd>);
}

/// D23: drain before close.
#[test]
fn pipe_data_is_drained_before_handle_close_on_hangup() {
    let message: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'8').collect();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let (reader, writer) = rustix::pipe::pipe().expect("pipe");
        assert_eq!(rustix::io::write(&writer, &message).expect("write"), 35, "{backend}");
        drop(writer);
        let channel = Channel::file(reader).expect("a file channel");
        map.insert(channel, PipeReader { log: log.clone(), data: Rc::clone(&data) }).expect("insert");
        assert!(util::run_until(&mut map, |_| log.contains("close")), "{backend}: handle_close within 5 s");
        let events = log.events();
        assert_eq!(*data.borrow(), message, "{backend}: all 35 bytes before handle_close; log {events:?}");
        assert_eq!(log.count("close"), 1, "{backend}: {events:?}");
        assert_eq!(events.last().map(String::as_str), Some("close"), "{backend}: {events:?}");
    }
}

/// Echo-like: its output was queued before the loop ran; reads until the end.
struct QueuedWriter {
    log: Log,
}

impl StreamHandler<Buffered<Connected>> for QueuedWriter {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        Ok(())
    }

    logs_close_and_errors!(log, Buffered<Connected>);
}

/// `Buffered` output (asyncore T12) draining to a half-closed peer.
#[test]
fn handle_close_called_once_after_queued_output_drains_to_a_half_closed_peer() {
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, mut peer) = tcp_pair();
        let mut ours = Buffered::new(ours).with_limit(2 * big.len());
        // Back-pressure would stop reading this channel while 8 MiB are
        // queued, and the peer's end of stream would only be seen once the
        // queue drained: turn it off, this test is about draining.
        ours.set_watermarks(usize::MAX, usize::MAX);
        ours.send(&big).expect("send");
        assert!(ours.queued() > 0, "{backend}: the socket cannot take 8 MiB at once");
        let token = map.insert(ours, QueuedWriter { log: log.clone() }).expect("insert");
        // The peer is done sending, but still reads.
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert!(util::run_until(&mut map, |_| log.contains("read:eof")), "{backend}: the end was read");
        peer.set_nonblocking(true).expect("nonblocking peer");
        let mut received = Vec::with_capacity(big.len());
        let done = util::run_until(&mut map, |m| {
            let mut buf = [0u8; 65536];
            loop {
                match peer.read(&mut buf) {
                    Ok(0) => return !m.contains(token),
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(_) => return false,
                }
            }
        });
        assert!(
            done,
            "{backend}: the queue went out and the channel closed; got {} of {}",
            received.len(),
            big.len()
        );
        assert!(received == big, "{backend}: the half-closed peer got every queued byte, in order");
        util::run_iterations(&mut map, 3);
        assert_eq!(
            log.events(),
            ["read:eof", "close"],
            "{backend}: handle_close once, after the queue drained"
        );
    }
}

/// P6 needs a `SIGPIPE` handler to notice a signal, which the `signals`
/// feature (signal-hook) provides.
#[cfg(feature = "signals")]
mod p6 {
    use std::io::{self, Read};
    use std::os::fd::OwnedFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use rolecore::{Buffered, Channel, Connected, Ctx, Map, StreamHandler};

    use super::{Log, tcp_pair, util};

    /// Echoes, through a `Buffered` queue; records closes and errors.
    struct Echo(Log);

    impl StreamHandler<Buffered<Connected>> for Echo {
        fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
            let mut buf = [0u8; 8192];
            let n = ch.recv(&mut buf)?;
            ch.send(&buf[..n])
        }

        logs_close_and_errors!(0, Buffered<Connected>);
    }

    /// P6: asyncore relied on Python ignoring `SIGPIPE`; with the default
    /// disposition a write to a reset peer killed the process (rc −13, E17).
    /// rolecore sends with `MSG_NOSIGNAL`. A `SIGPIPE` handler that only sets a
    /// flag stands in for the default disposition (a Rust test binary ignores
    /// `SIGPIPE`, so a raised one would otherwise go unnoticed): a 32 MiB queued
    /// write whose peer resets halfway ends in `handle_close`, once, with no
    /// signal. The control shows the flag works: a write to a pipe without a
    /// reader does raise `SIGPIPE` (pipes have no per-call flag; documented on
    /// `Channel<FileFd>::send`), and still only returns the end.
    #[test]
    fn a_peer_reset_during_a_large_write_raises_no_sigpipe_and_the_process_lives() {
        let sigpipe = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGPIPE, Arc::clone(&sigpipe))
            .expect("watch SIGPIPE");
        for backend in util::backends() {
            let log = Log::default();
            let mut map = util::map(backend);
            let (ours, mut peer) = tcp_pair();
            let mut ours = Buffered::new(ours).with_limit(64 << 20);
            ours.send(&vec![0x5a; 32 << 20]).expect("queue 32 MiB");
            assert!(ours.queued() > 0, "{backend}: the socket cannot take 32 MiB at once");
            map.insert(ours, Echo(log.clone())).unwrap();
            // The peer takes a little of it, then resets.
            util::run_iterations(&mut map, 2);
            let mut some = [0u8; 64 * 1024];
            peer.read_exact(&mut some).expect("the first 64 KiB");
            rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).unwrap();
            drop(peer);
            assert!(
                util::run_until(&mut map, Map::is_empty),
                "{backend}: closed within 5 s: {:?}",
                log.events()
            );
            assert_eq!(log.events(), ["close"], "{backend}: handle_close once, no error");
            assert!(!sigpipe.load(Ordering::SeqCst), "{backend}: a socket send raised SIGPIPE");
        }

        // The control: a pipe's writer whose reader is gone.
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let mut writer = Channel::file(OwnedFd::from(writer)).unwrap();
        assert_eq!(writer.send(b"x").unwrap(), 0, "EPIPE reads as the end");
        assert!(sigpipe.load(Ordering::SeqCst), "the control: a pipe write does raise SIGPIPE");
    }
}

/// Wants nothing at all (flow control); records its close.
struct Mute(Log);

impl StreamHandler for Mute {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("read");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// P13: asyncore left a channel that was neither readable nor writable out of
/// the poll, so it never learned that its peer left, and the loop slept
/// forever (E13). rolecore always watches hang-ups and errors on poll and
/// epoll: a stream that wants nothing gets `handle_close` when its TCP peer
/// resets, or its Unix peer closes. (A TCP peer's FIN alone is no hang-up: it
/// is read as the end once the channel reads again. select cannot watch a
/// descriptor without interest; `src/poller/select.rs` documents it.)
#[test]
fn p13_a_stream_that_wants_nothing_still_learns_that_its_peer_left() {
    for backend in util::backends().filter(|b| *b != Backend::Select) {
        let log = Log::default();
        let mut map = util::map(backend);
        let (tcp, tcp_peer) = tcp_pair();
        map.insert(tcp, Mute(log.clone())).unwrap();
        util::run_iterations(&mut map, 2);
        rustix::net::sockopt::set_socket_linger(&tcp_peer, Some(Duration::ZERO)).unwrap();
        drop(tcp_peer);
        assert!(
            util::run_until(&mut map, Map::is_empty),
            "{backend}: TCP reset not seen: {:?}",
            log.events()
        );
        assert_eq!(log.events(), ["close"], "{backend}");

        let log = Log::default();
        let (unix, unix_peer) = Channel::pair().unwrap();
        map.insert(unix, Mute(log.clone())).unwrap();
        util::run_iterations(&mut map, 2);
        drop(unix_peer);
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: hang-up not seen: {:?}", log.events());
        assert_eq!(log.events(), ["close"], "{backend}");
    }
}

/// Opens a new channel, with the same handler, whenever one closes (a
/// client that keeps its connection up); counts the openings refused.
struct Reopen {
    closes: Rc<Cell<u32>>,
    refused: Rc<Cell<u32>>,
    peers: Rc<RefCell<Vec<Channel<Connected>>>>,
}

impl StreamHandler for Reopen {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0; 64]).map(drop)
    }
    fn handle_close(&mut self, _: &mut Channel<Connected>, cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
        let (ours, peer) = Channel::pair().expect("a socket pair");
        self.peers.borrow_mut().push(peer);
        let again =
            Reopen { closes: self.closes.clone(), refused: self.refused.clone(), peers: self.peers.clone() };
        if let Err(e) = cx.insert(ours, again) {
            assert_eq!(e.error.kind(), io::ErrorKind::Other, "{e}");
            assert!(e.channel.peer_addr().is_ok(), "the channel is handed back, open");
            self.refused.set(self.refused.get() + 1);
        }
    }
}

/// The end of a shutdown's grace closes every channel, and a handler that
/// opens another whenever its channel closes cannot keep the shutdown from
/// ending: from the end of the grace, insertions are refused (the channel
/// handed back in the `InsertError`), the map empties and the loop ends.
/// Before, three rounds of replacements were closed, then the shutdown
/// declared itself over with the fourth open, and `run` never returned.
/// Once the map is empty the shutdown is over, and the map takes channels
/// again.
#[test]
fn a_shutdown_closes_what_closing_handlers_open_and_still_ends() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let closes = Rc::new(Cell::new(0));
        let refused = Rc::new(Cell::new(0));
        let peers = Rc::new(RefCell::new(Vec::new()));
        let reopen = || Reopen { closes: closes.clone(), refused: refused.clone(), peers: peers.clone() };
        let mut m = map(backend);
        for _ in 0..2 {
            let (ours, peer) = Channel::pair()?;
            peers.borrow_mut().push(peer);
            m.insert(ours, reopen())?;
        }
        m.shutdown(Duration::ZERO);
        assert!(
            m.run_until(Duration::from_secs(5), Map::is_empty)?,
            "{backend}: {} channels stayed",
            m.len()
        );
        assert_eq!(closes.get(), 2, "{backend}: the two channels close");
        assert_eq!(refused.get(), 2, "{backend}: their replacements are refused");
        let (ours, _peer) = Channel::pair()?;
        m.insert(ours, reopen())?;
        assert_eq!(m.len(), 1, "{backend}: the shutdown is over");
    }
    Ok(())
}

/// A listener that starts a shutdown from its own callback.
struct ShutsDownOnAccept {
    closes: Rc<Cell<u32>>,
    accepted: Rc<Cell<u32>>,
}

impl rolecore::AcceptHandler for ShutsDownOnAccept {
    fn handle_accepted(&mut self, _conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.accepted.set(self.accepted.get() + 1);
        cx.shutdown(Duration::from_secs(60));
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<rolecore::Listening>, _cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
    }
}

/// `Ctx::shutdown` closes every listener when the callback returns, the
/// one whose callback called it included (it is out of its slot while its
/// callback runs, so the pass over the map that closes listeners cannot
/// reach it): `handle_close` once, the listener leaves the map, and a new
/// client is refused, long before the grace ends.
#[test]
fn a_listener_that_starts_a_shutdown_closes_itself_too() {
    let _fds = shared();
    for backend in backends() {
        let mut m = map(backend);
        let (listener, address, _file) = listener(Fam::Ipv4);
        let closes = Rc::new(Cell::new(0));
        let accepted = Rc::new(Cell::new(0));
        let token = m
            .insert(listener, ShutsDownOnAccept { closes: closes.clone(), accepted: accepted.clone() })
            .expect("insert");
        let Address::Inet(addr) = address else { unreachable!("an IPv4 listener") };
        let _first = std::net::TcpStream::connect(addr).expect("connect");
        assert!(
            run_until(&mut m, |m| accepted.get() == 1 && !m.contains(token)),
            "{backend}: closed within 5 s"
        );
        assert_eq!(closes.get(), 1, "{backend}: handle_close once");
        assert!(std::net::TcpStream::connect(addr).is_err(), "{backend}: nothing listens any more");
    }
}

/// D18: `cx.remove` of the callback's own token is `cx.close()`: it answers
/// true (and false to a second one), nothing more is delivered (not the write
/// of the same wake-up, no `handle_close`), and the channel leaves the map, its
/// descriptor closed.
#[test]
fn removing_its_own_token_in_a_callback_closes_the_channel() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let _keeper = keep_loop_alive(&mut map);
        let log = Log::default();
        let (ours, mut peer) = Channel::pair().expect("socketpair");
        peer.send(b"data").expect("peer send");
        let token = map.insert(ours, ClosesInRead { log: log.clone(), by_remove: true }).expect("insert");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: removed within 5 s");
        util::run_iterations(&mut map, 3);
        assert_eq!(log.events(), ["read"], "{backend}: remove answered true, nothing after it");
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).ok(), Some(0), "{backend}: the descriptor was closed");
    }
}

/// A listener that records what it is told: connections, errors (it stays
/// open after one) and its close. One that is deaf wants no connections
/// (`readable()` false).
struct TellsAll {
    log: Log,
    deaf: bool,
}

impl TellsAll {
    fn new(log: &Log) -> TellsAll {
        TellsAll { log: log.clone(), deaf: false }
    }

    fn deaf(log: &Log) -> TellsAll {
        TellsAll { log: log.clone(), deaf: true }
    }
}

impl rolecore::AcceptHandler for TellsAll {
    fn readable(&self, _ch: &Channel<rolecore::Listening>) -> bool {
        !self.deaf
    }

    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.log.push("accepted");
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<rolecore::Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
    }

    fn handle_close(&mut self, _ch: &mut Channel<rolecore::Listening>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }
}

/// A listener whose socket hangs up (shut down through a duplicate of its
/// descriptor, as another holder of it could) gets `handle_close` once and
/// leaves the map, even while it wants no connections: a hang-up is
/// watched whatever the interest (P13), and the loop does not keep waking
/// for it. select cannot watch a descriptor without interest.
#[test]
fn a_listener_that_hangs_up_gets_handle_close_and_leaves_the_map() {
    for backend in util::backends().filter(|b| *b != Backend::Select) {
        let mut map = util::map(backend);
        let log = Log::default();
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(5).unwrap();
        let dup = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned().unwrap();
        let token = map.insert(listener, TellsAll::deaf(&log)).unwrap();
        util::run_iterations(&mut map, 2);
        assert!(map.contains(token), "{backend}");
        rustix::net::shutdown(&dup, rustix::net::Shutdown::Both).expect("shut the listener down");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: {:?}", log.events());
        assert_eq!(log.events(), ["close"], "{backend}: handle_close once");
    }
}

/// A shutdown accepts a listener's backlog only while the listener is
/// readable. A TCP listener whose socket hung up (shut down through a
/// duplicate of its descriptor) reports a hang-up and no readability: it has
/// no backlog, and is closed with its `handle_close` alone, not after an
/// accept that fails and an error.
#[test]
fn a_shutdown_closes_a_hung_up_listener_without_trying_to_accept() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(5).unwrap();
        let dup = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned().unwrap();
        let token = map.insert(listener, TellsAll::new(&log)).unwrap();
        rustix::net::shutdown(&dup, rustix::net::Shutdown::Both).expect("shut the listener down");
        map.shutdown(Duration::from_secs(1));
        assert_eq!(log.events(), ["close"], "{backend}");
        assert!(!map.contains(token), "{backend}");
    }
}

/// Wants only to send its queue; records its writes, errors and close.
struct SendsItsQueue(Log);

impl StreamHandler<Buffered<Connected>> for SendsItsQueue {
    fn readable(&self, _ch: &Buffered<Connected>) -> bool {
        false
    }

    fn handle_read(&mut self, _ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("write");
        ch.initiate_send()
    }

    logs_close_and_errors!(0, Buffered<Connected>);
}

/// Draining queued output is for a peer that ended its side with a clean end
/// of stream (P14): a stream whose send finds the connection gone otherwise
/// (its own sending side shut down, through a duplicate of its descriptor)
/// has nowhere to drain to, and gets its `handle_close` in the wake-up that
/// found it, its queue dropped.
#[test]
fn a_queue_that_cannot_be_sent_any_more_is_dropped_with_handle_close_at_once() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (ours, _peer) = util::tcp_pair();
        let dup = std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned().unwrap();
        let mut ours = Buffered::new(ours).with_limit(64 << 20);
        // More than the socket takes while the peer reads nothing.
        ours.send(&vec![7u8; 32 << 20]).unwrap();
        assert!(ours.queued() > 0, "{backend}: the socket took it all");
        let token = map.insert(ours, SendsItsQueue(log.clone())).unwrap();
        util::run_iterations(&mut map, 3);
        assert!(map.contains(token), "{backend}: {:?}", log.events());
        rustix::net::shutdown(&dup, rustix::net::Shutdown::Write).expect("shut our sending side");
        let writes = log.count("write");
        map.poll(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(log.count("write"), writes + 1, "{backend}: the write that finds the side shut");
        assert_eq!(log.events().last().map(String::as_str), Some("close"), "{backend}: {:?}", log.events());
        assert!(!map.contains(token), "{backend}");
    }
}

/// A write through `io::Write` to a peer that is gone is a disconnection
/// error, and `peer_reset` says so after it, as after a `send`: a handler
/// that writes with `write_all` and keeps the error to itself can still
/// tell that the peer left.
#[test]
fn a_write_through_io_write_to_a_peer_gone_is_seen_as_a_reset() -> io::Result<()> {
    let (mut ours, peer) = Channel::pair()?;
    drop(peer);
    let error = ours.write(b"x").unwrap_err();
    assert!(rolecore::is_disconnect(&error), "{error:?}");
    assert!(ours.peer_reset(), "the failed write left no trace of the peer's going");
    Ok(())
}
