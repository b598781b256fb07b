//! Readiness events on a connected stream: `handle_read`, `handle_write`
//! while `writable()` is true, `handle_expt` for urgent (out-of-band) data, a
//! failing callback's error going to `handle_error`, and spurious wake-ups
//! (`WouldBlock` is not an error, D22).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use rolecore::machine::{Outcome, Phase, Step, Wakeup};
use rolecore::{Backend, Channel, Connected, Ctx, Interest, LoopOptions, Readiness, StreamHandler};
use util::cpython::*;
use util::probe::*;
use util::recorder::*;
use util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Read,
    Write,
    Expt,
}

/// T1's `exitingdummy` (`stop`: every callback raises `ExitNow`) and
/// `crashingdummy` (every callback fails; `handle_error` records it), asking
/// only for the one event under test. Priority data is watched along with
/// readability (asyncore registered `POLLIN|POLLPRI` for `readable()`), so
/// the priority case is readable too: a lone urgent byte does not make a
/// socket readable.
struct Dummy {
    event: Event,
    stop: bool,
    calls: Rc<RefCell<Vec<String>>>,
}

impl Dummy {
    fn called(&mut self, event: Event, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.calls.borrow_mut().push(format!("{event:?}"));
        if self.stop {
            cx.stop(); // ExitNow
            Ok(())
        } else {
            Err(io::Error::other("crash"))
        }
    }
}

impl StreamHandler for Dummy {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        matches!(self.event, Event::Read | Event::Expt)
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.event == Event::Write
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.called(Event::Read, cx)
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.called(Event::Write, cx)
    }

    fn handle_expt(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.called(Event::Expt, cx)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.calls.borrow_mut().push("close".into());
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        // crashingdummy.handle_error: error_handled = True (the channel stays).
        self.calls.borrow_mut().push(format!("error:{error}"));
    }
}

fn t01(backend: Backend) {
    for event in [Event::Read, Event::Write, Event::Expt] {
        for stop in [true, false] {
            let mut map = util::map(backend);
            let (ours, mut peer) = tcp_channel_pair();
            let calls = Rc::default();
            let token =
                map.insert(ours, Dummy { event, stop, calls: Rc::clone(&calls) }).expect("insert the dummy");
            match event {
                Event::Read => assert_eq!(peer.send(b"x").unwrap(), 1),
                Event::Write => {}
                Event::Expt => assert_eq!(peer.send_oob(b"!").unwrap(), 1),
            }
            // asyncore.read/write/_exception(obj): one wait, one dispatch.
            let stopped = map.poll(Some(Duration::from_secs(5))).expect("poll");
            let what = format!("{event:?}, {}", if stop { "ExitNow" } else { "Exception" });
            if stop {
                assert!(
                    stopped,
                    "{what}: a stop requested in the callback reaches the caller of poll; calls {:?}",
                    calls.borrow()
                );
                assert_eq!(*calls.borrow(), [format!("{event:?}")], "{what}");
                // ...and passes through loop() too, leaving the map intact (A5).
                map.run(LoopOptions::new().timeout(Duration::from_secs(5))).expect("loop");
                assert_eq!(calls.borrow().len(), 2, "{what}: loop() ended at the stop: {:?}", calls.borrow());
                assert!(map.contains(token), "{what}: ExitNow leaves the channel in the map");
            } else {
                assert!(!stopped, "{what}");
                assert_eq!(
                    *calls.borrow(),
                    [format!("{event:?}"), "error:crash".to_string()],
                    "{what}: the error went to handle_error, and nothing else ran"
                );
                assert!(
                    map.contains(token),
                    "{what}: an overriding handle_error that does not close keeps it"
                );
            }
        }
    }
}

per_backend! {
    /// T1 `test_readwriteexc` (A5, A6): a callback's `ExitNow` (here
    /// `Ctx::stop`) leaves `poll` and `loop` with the map intact; any other
    /// failure of the read, write or priority callback goes to `handle_error`.
    /// CPython called `read`/`write`/`_exception` on a duck-typed object;
    /// here each event is produced on a real TCP socket.
    t01_readwriteexc => t01
}

/// T2 `test_readwrite` (A7): each single readiness flag gives exactly one
/// event — POLLIN read, POLLPRI expt, POLLOUT write, POLLERR/POLLHUP/POLLNVAL
/// close — and a callback that fails ends the wake-up (its error went to
/// `handle_error`). This is `readwrite`'s dispatch, which is rolecore's pure
/// state machine: no socket needed, as CPython needed none. asyncore also
/// routed an exception raised by `handle_close` to `handle_error`;
/// rolecore's `handle_close` returns `()` and cannot fail. `ExitNow` is
/// T1's.
#[test]
fn t02_readwrite() {
    let all = Interest::from_predicates(true, true, true);
    let expected = [
        (Readiness::READABLE, Step::Read),
        (Readiness::PRIORITY, Step::Expt),
        (Readiness::WRITABLE, Step::Write),
        (Readiness::ERROR, Step::Close),
        (Readiness::HANGUP, Step::Close),
        (Readiness::INVALID, Step::Close),
    ];
    for (flag, step) in expected {
        // Exactly the expected event, then nothing.
        let mut wakeup = Wakeup::new(Phase::Connected, all, flag);
        assert_eq!(wakeup.next_step(), Some(step), "{flag:?}");
        wakeup.record(Outcome::default());
        assert_eq!(wakeup.next_step(), None, "{flag:?}: only one event");
        // crashingdummy: the callback fails, handle_error ran; nothing follows.
        if step != Step::Close {
            let mut wakeup = Wakeup::new(Phase::Connected, all, flag);
            assert_eq!(wakeup.next_step(), Some(step), "{flag:?}");
            wakeup.record(Outcome { failed: true, ..Outcome::default() });
            assert_eq!(wakeup.next_step(), None, "{flag:?}: a failed callback ends the wake-up");
            assert_eq!(wakeup.phase(), Phase::Connected, "{flag:?}: and does not close by itself");
        } else {
            assert_eq!(wakeup.phase(), Phase::Closed, "{flag:?}");
        }
    }
}

/// T21's `TestClient`: `handle_read` sets the flag (and reads nothing).
struct ReadFlag(Flag);

impl StreamHandler for ReadFlag {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(true);
        Ok(())
    }
    trip!(connect_failed, expt, close, error);
}

fn t21(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    // TestHandler: BaseTestHandler that sends b'x' * 1024 in __init__.
    let make: MakeHandler = Box::new(|mut conn, cx| {
        assert_eq!(conn.send(&[b'x'; 1024])?, 1024);
        cx.insert(conn, BaseTestHandler)?;
        Ok(())
    });
    let server = start_server(&mut map, fam, make);
    let flag = Flag::default();
    map.insert(connect(&server.address), ReadFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_read");
}

ported! {
    /// T21 `test_handle_read` (A14, A26, A31): data from the server is
    /// `handle_read` on the client.
    t21_handle_read => t21, [ipv4, ipv6, unix]
}

/// T22's `TestClient`: `handle_write` sets the flag.
struct WriteFlag(Flag);

impl StreamHandler for WriteFlag {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true // asyncore's default; rolecore's is false with nothing queued (P4)
    }

    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(true);
        Ok(())
    }
    trip!(connect_failed, expt, close, error);
}

fn t22(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let server = start_server(&mut map, fam, base_test_handler());
    let flag = Flag::default();
    map.insert(connect(&server.address), WriteFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_write");
}

ported! {
    /// T22 `test_handle_write` (A21, A33, D26): a writable client gets
    /// `handle_write`. asyncore's `writable()` defaulted to true; rolecore's
    /// is true only with output queued (P4), so the client asks for it.
    t22_handle_write => t22, [ipv4, ipv6, unix]
}

/// T25's `TestClient`: `handle_expt` reads the urgent byte and sets the flag.
struct ExptFlag(Flag);

impl StreamHandler for ExptFlag {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }

    fn handle_expt(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 1024];
        let n = ch.recv_oob(&mut buf)?;
        assert_eq!(&buf[..n], b"\xf4", "the urgent byte");
        self.0.set(true);
        Ok(())
    }
    trip!(connect_failed, close, error);
}

fn t25(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    // TestHandler: sends chr(244) with MSG_OOB in __init__.
    let make: MakeHandler = Box::new(|mut conn, cx| {
        assert_eq!(conn.send_oob(b"\xf4")?, 1);
        cx.insert(conn, BaseTestHandler)?;
        Ok(())
    });
    let server = start_server(&mut map, fam, make);
    let flag = Flag::default();
    map.insert(connect(&server.address), ExptFlag(Rc::clone(&flag))).unwrap();
    wait_for(&mut map, &flag, "handle_expt");
}

ported! {
    /// T25 `test_handle_expt` (A8, A7, A34): urgent (out-of-band) data is
    /// `handle_expt`, where `recv_oob` reads it. Not for Unix sockets, as in
    /// CPython: they have no out-of-band data.
    t25_handle_expt => t25, [ipv4, ipv6]
}

/// Item 19 (mio `priority_event_on_oob_data`): an urgent byte is
/// `handle_expt`, apart from the ordinary data around it.
#[test]
fn out_of_band_data_is_handle_expt() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, peer) = tcp_pair();
        let mut peer = Channel::<Connected>::try_from(peer)?;
        let probe = Probe::new("a", &log);
        let data = probe.data.clone();
        m.insert(ours, probe)?;
        send_all(&mut peer, b"ab");
        assert_eq!(peer.send_oob(b"!")?, 1);
        assert!(run_until(&mut m, |_| log.contains("a:expt:!")), "{backend}: {:?}", log.events());
        assert!(run_until(&mut m, |_| data.borrow().len() == 2), "{backend}: {:?}", log.events());
        assert_eq!(*data.borrow(), b"ab", "{backend}: the urgent byte leaked into the stream");
        assert_eq!(log.count("a:expt:!"), 1, "{backend}: {:?}", log.events());
        assert!(!log.contains("a:close"), "{backend}: {:?}", log.events());
    }
    Ok(())
}

#[test]
fn handle_read_receives_what_the_server_sends() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = std_listener();
        let client = Channel::tcp_v4().expect("socket").connect(addr).expect("connect");
        let recorder = Recorder::new(&log);
        let data = recorder.data.clone();
        map.insert(client, recorder).expect("insert");
        let mut server = accept(&listener);
        server.write_all(b"hello from the server").expect("server write");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"hello from the server"),
            "{backend}: the client read the server's bytes; got {:?}, log {:?}",
            String::from_utf8_lossy(&data.borrow()),
            log.events()
        );
        assert!(log.contains("read"), "{backend}: {:?}", log.events());
        assert!(!log.contains("close"), "{backend}: the server did not close; {:?}", log.events());
    }
}

/// Writes `message` once from handle_write, then stops asking to write.
struct Writer {
    log: Log,
    message: &'static [u8],
    pending: bool,
}

impl StreamHandler for Writer {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.pending
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        let n = ch.send(self.message)?;
        assert_eq!(n, self.message.len(), "an empty loopback socket takes a few bytes");
        self.pending = false;
        Ok(())
    }
}

#[test]
fn handle_write_is_called_while_writable_returns_true_and_not_after() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (ours, mut peer) = tcp_pair();
        map.insert(ours, Writer { log: log.clone(), message: b"ping", pending: true }).expect("insert");
        assert!(util::run_until(&mut map, |_| log.contains("write")), "{backend}: handle_write within 5 s");
        assert_eq!(read_exactly(&mut peer, 4), b"ping", "{backend}: the peer got what handle_write sent");
        util::run_iterations(&mut map, 5);
        assert_eq!(
            log.count("write"),
            1,
            "{backend}: writable() false stops handle_write; log {:?}",
            log.events()
        );
    }
}

#[test]
fn handle_expt_reads_out_of_band_byte() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (ours, mut peer) = tcp_channel_pair();
        let token = map.insert(ours, Recorder::new(&log)).expect("insert");
        assert_eq!(peer.send_oob(b"\xf4").expect("send_oob"), 1, "{backend}");
        assert!(
            util::run_until(&mut map, |_| log.events().iter().any(|e| e.starts_with("expt"))),
            "{backend}: handle_expt within 5 s; log {:?}",
            log.events()
        );
        util::run_iterations(&mut map, 3);
        assert_eq!(
            log.count("expt:[f4]"),
            1,
            "{backend}: recv_oob read the urgent byte once; log {:?}",
            log.events()
        );
        assert!(map.contains(token), "{backend}: urgent data does not close the channel");
        assert!(
            !log.events().iter().any(|e| e.starts_with("error") || e == "close"),
            "{backend}: {:?}",
            log.events()
        );
    }
}

/// Drains with a loop that always ends in WouldBlock, propagated with `?`.
struct Drainer {
    log: Log,
    data: Rc<RefCell<Vec<u8>>>,
}

impl StreamHandler for Drainer {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("read");
        let mut buf = [0u8; 4];
        loop {
            let n = ch.recv(&mut buf)?; // the last one would block
            if n == 0 {
                return Ok(());
            }
            self.data.borrow_mut().extend_from_slice(&buf[..n]);
        }
    }

    logs_close_and_errors!(log, Channel<Connected>);
}

/// D22: would-block is not an error.
#[test]
fn recv_would_block_propagated_with_question_mark_is_not_an_error() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let (ours, mut peer) = tcp_pair();
        let token = map.insert(ours, Drainer { log: log.clone(), data: Rc::clone(&data) }).expect("insert");
        peer.write_all(b"first message").expect("peer write");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"first message"),
            "{backend}: first"
        );
        peer.write_all(b", second").expect("peer write");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"first message, second"),
            "{backend}: the channel survived the WouldBlock and read on; log {:?}",
            log.events()
        );
        assert!(map.contains(token), "{backend}");
        assert!(
            !log.events().iter().any(|e| e.starts_with("error") || e == "close"),
            "{backend}: {:?}",
            log.events()
        );
    }
}

/// Woken for writing, it calls `recv` on a socket with nothing to read: a
/// spurious wake-up as far as reading goes.
struct SpuriousReader {
    log: Log,
    writes_left: u32,
    data: Rc<RefCell<Vec<u8>>>,
}

impl StreamHandler for SpuriousReader {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.writes_left > 0
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.writes_left -= 1;
        self.log.push("write");
        let n = ch.recv(&mut [0u8; 64])?; // nothing there: WouldBlock
        self.log.push(format!("unexpected recv of {n} bytes"));
        Ok(())
    }

    logs_close_and_errors!(log, Channel<Connected>);
}

/// D22: would-block is not an error.
#[test]
fn spurious_wakeup_with_recv_would_block_does_not_reach_handle_error() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let (ours, mut peer) = tcp_pair();
        let handler = SpuriousReader { log: log.clone(), writes_left: 3, data: Rc::clone(&data) };
        let token = map.insert(ours, handler).expect("insert");
        assert!(util::run_until(&mut map, |_| log.count("write") == 3), "{backend}: three write wake-ups");
        peer.write_all(b"late").expect("peer write");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"late"),
            "{backend}: still served"
        );
        assert_eq!(log.events(), ["write", "write", "write"], "{backend}: no error, no close");
        assert!(map.contains(token), "{backend}");
    }
}

/// Reads ordinary data; keeps the default `handle_expt`.
struct PlainReader {
    data: Rc<std::cell::RefCell<Vec<u8>>>,
    closed: Rc<Cell<usize>>,
}

impl StreamHandler for PlainReader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.closed.set(self.closed.get() + 1);
    }
}

/// P5: an urgent byte that `handle_expt` does not consume keeps the
/// exceptional condition set, and asyncore's loop spun (118 798 iterations in
/// 0.3 s, E22). rolecore's default `handle_expt` reads and drops it: the
/// ordinary data around it arrives without it, the channel stays open, and
/// the loop then sleeps its full timeouts.
#[test]
fn p5_the_default_handle_expt_drops_an_urgent_byte_and_the_loop_does_not_spin() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, peer) = tcp_pair();
        let mut peer = Channel::<Connected>::try_from(peer).unwrap();
        let (data, closed) = (Rc::default(), Rc::new(Cell::new(0)));
        let token = map.insert(ours, PlainReader { data: Rc::clone(&data), closed: closed.clone() }).unwrap();
        assert_eq!(peer.send(b"ab").unwrap(), 2);
        assert_eq!(peer.send_oob(b"!").unwrap(), 1);
        assert_eq!(peer.send(b"cd").unwrap(), 2);
        assert!(util::run_until(&mut map, |_| data.borrow().len() == 4), "{backend}: {:?}", data.borrow());
        util::run_iterations(&mut map, 3);
        assert_eq!(*data.borrow(), b"abcd", "{backend}: the urgent byte stays out of the stream");
        let took = timed_iterations(&mut map, 5, Duration::from_millis(50));
        assert!(took >= Duration::from_millis(200), "{backend}: 5 idle iterations took {took:?}: a spin");
        assert!(map.contains(token) && closed.get() == 0, "{backend}: urgent data does not close");
    }
}

/// Records what it reads; `handle_expt` and `handle_error` are the
/// defaults.
struct InlineReader(Rc<RefCell<Vec<u8>>>);

impl StreamHandler for InlineReader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.0.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }
}

/// With `SO_OOBINLINE` an urgent byte comes in the stream, while the
/// kernel still reports priority: the default `handle_expt` then finds no
/// out-of-band byte to discard (`EINVAL`), which is no error. The byte is
/// read in its place and the channel stays.
#[test]
fn an_urgent_byte_kept_inline_is_read_in_the_stream_and_closes_nothing() {
    let _fds = shared();
    for backend in backends() {
        let mut map = map(backend);
        let (ours, mut peer) = tcp_channel_pair();
        rustix::net::sockopt::set_socket_oobinline(&ours, true).expect("SO_OOBINLINE");
        let data = Rc::new(RefCell::new(Vec::new()));
        let token = map.insert(ours, InlineReader(data.clone())).expect("insert");
        send_all(&mut peer, b"ab");
        assert_eq!(peer.send_oob(b"!").expect("send_oob"), 1);
        assert!(run_until(&mut map, |_| data.borrow().len() == 3), "{backend}: {:?}", data.borrow());
        run_iterations(&mut map, 3);
        assert_eq!(*data.borrow(), b"ab!", "{backend}");
        assert!(map.contains(token), "{backend}: the inline urgent byte closed the channel");
    }
}
