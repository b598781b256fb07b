//! Interest: what `readable()` and `writable()` answer by default (P4), when
//! they are asked again (after a callback, a `handler_mut` guard, `Map::refresh`,
//! or every iteration with `Refresh::EveryIteration`, D26), that a changed
//! interest replaces the old one, that readiness is level-triggered, and that
//! idle channels are not asked on every iteration (P3).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use rolecore::{
    AcceptHandler, Buffered, Channel, Connected, Ctx, FileHandler, LoopOptions, Refresh, StreamHandler, Token,
};
use util::cpython::*;
use util::probe::*;
use util::*;

/// T6 `test_basic` (A21, D26, P4): a dispatcher reads by default. asyncore's
/// default `writable()` was also true, which spun the loop on every idle
/// connected channel (P4); rolecore's is true only while output is queued,
/// and a `bool`.
#[test]
fn t06_basic() {
    let (a, _b) = Channel::pair().unwrap();
    assert!(StreamHandler::readable(&Minimal, &a), "readable() is true by default");
    assert!(!StreamHandler::writable(&Minimal, &a), "writable() is false with nothing queued (P4)");
    let (mut c, _d) = Channel::pair().unwrap();
    while c.send(&[0u8; 65536]).unwrap() > 0 {} // fill the socket
    let mut c = Buffered::new(c);
    assert!(!StreamHandler::writable(&Minimal, &c), "an empty Buffered is not writable");
    c.send(b"queued").unwrap();
    assert!(StreamHandler::writable(&Minimal, &c), "a Buffered with queued output is writable");
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
    assert!(AcceptHandler::readable(&Minimal, &listener), "a listener watches for connections by default");
    let (reader, _writer) = std::io::pipe().unwrap();
    let file = Channel::file(reader.into()).unwrap();
    assert!(FileHandler::readable(&Minimal, &file), "a file is readable by default");
    assert!(!FileHandler::writable(&Minimal, &file), "and not writable");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    Neither,
}

/// Wants to read or to write, never both; each event moves it on.
struct Switch {
    log: Log,
    mode: Mode,
}

impl StreamHandler for Switch {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        self.mode == Mode::Read
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.mode == Mode::Write
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        let n = ch.recv(&mut byte)?;
        self.log.push(format!("read:{}", String::from_utf8_lossy(&byte[..n])));
        self.mode = Mode::Write;
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        self.mode = Mode::Neither;
        Ok(())
    }
}

/// Item 7 (mio `reregister_interest_token_usage`, calloop `change_interests`,
/// `disarm_rearm`): a new interest replaces the old one. A handler that turns
/// from reading to writing gets no more reads although data is waiting; one
/// that wants neither gets nothing although it is writable and readable; a
/// change made through the map re-arms it.
#[test]
fn a_changed_interest_replaces_the_old_one() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"abc");
        let token = m.insert(ours, Switch { log: log.clone(), mode: Mode::Read })?;
        run_iterations(&mut m, 5);
        assert_eq!(log.events(), ["read:a", "write"], "{backend}");

        m.handler_mut::<Switch>(token).expect("the handler").mode = Mode::Read;
        run_iterations(&mut m, 5);
        assert_eq!(log.events(), ["read:a", "write", "read:b", "write"], "{backend}");
        assert_eq!(m.handler::<Switch>(token).map(|h| h.mode), Some(Mode::Neither), "{backend}");
    }
    Ok(())
}

/// Item 23 (polling `other_modes.rs`, mio `et_behavior_recv`, level half): a
/// handler that takes one byte of ten per event is called ten times, and not
/// once more after the data is drained.
#[test]
fn level_triggered_readiness_repeats_until_drained_then_stops() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        let probe = Probe::new("a", &log).chunk(1);
        let data = probe.data.clone();
        m.insert(ours, probe)?;
        send_all(&mut peer, b"0123456789");
        assert!(run_until(&mut m, |_| data.borrow().len() == 10), "{backend}: {:?}", log.events());
        run_iterations(&mut m, 5);
        assert_eq!(*data.borrow(), b"0123456789", "{backend}");
        assert_eq!(log.count("a:read"), 10, "{backend}: {:?}", log.events());
        assert_eq!(log.count("a:data"), 10, "{backend}: {:?}", log.events());
    }
    Ok(())
}

#[test]
fn handler_mut_guard_refreshes_interest_when_dropped() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, Toggle::default()).expect("insert");
        util::run_iterations(&mut map, 3);
        assert_eq!(map.handler::<Toggle>(token).unwrap().writes, 0, "{backend}: not writable yet");
        map.handler_mut::<Toggle>(token).expect("toggle").want_write = true;
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(3)).expect("loop");
        assert_eq!(
            map.handler::<Toggle>(token).unwrap().writes,
            3,
            "{backend}: the change through handler_mut made the channel writable, with no other event"
        );
        map.handler_mut::<Toggle>(token).expect("toggle").want_write = false;
        util::run_iterations(&mut map, 3);
        assert_eq!(map.handler::<Toggle>(token).unwrap().writes, 3, "{backend}: and not writable any more");
    }
}

/// On its first write, turns another channel's `Toggle` on through the
/// callback's `Ctx`.
struct Switcher {
    target: Token,
    done: bool,
    own_handler_visible: Option<bool>,
}

impl StreamHandler for Switcher {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        !self.done
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.done = true;
        self.own_handler_visible = Some(cx.handler_mut::<Switcher>(cx.token()).is_some());
        cx.handler_mut::<Toggle>(self.target).expect("the other channel's Toggle").want_write = true;
        Ok(())
    }
}

#[test]
fn handler_mut_through_ctx_refreshes_another_channels_interest() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (b, _b_peer) = Channel::pair().expect("socketpair");
        let tb = map.insert(b, Toggle::default()).expect("insert");
        let (a, _a_peer) = Channel::pair().expect("socketpair");
        let ta =
            map.insert(a, Switcher { target: tb, done: false, own_handler_visible: None }).expect("insert");
        util::run_iterations(&mut map, 1);
        assert!(map.handler::<Switcher>(ta).unwrap().done, "{backend}: the switcher ran");
        assert_eq!(
            map.handler::<Switcher>(ta).unwrap().own_handler_visible,
            Some(false),
            "{backend}: Ctx::handler_mut of the callback's own channel is None"
        );
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(3)).expect("loop");
        assert_eq!(
            map.handler::<Toggle>(tb).unwrap().writes,
            3,
            "{backend}: the change made through Ctx::handler_mut made the other channel writable"
        );
    }
}

/// Writable while an outside flag says so.
struct FlagWriter {
    flag: Rc<Cell<bool>>,
    writes: u32,
}

impl StreamHandler for FlagWriter {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.flag.get()
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.writes += 1;
        Ok(())
    }
}

#[test]
fn refresh_every_iteration_picks_up_predicates_that_read_outside_state() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let flag = Rc::new(Cell::new(false));
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, FlagWriter { flag: Rc::clone(&flag), writes: 0 }).expect("insert");
        let every = LoopOptions::new().refresh(Refresh::EveryIteration);
        map.run(every.timeout(Duration::from_millis(10)).count(2)).expect("loop");
        assert_eq!(map.handler::<FlagWriter>(token).unwrap().writes, 0, "{backend}: not writable yet");
        flag.set(true); // no refresh call, no handler touch
        map.run(every.timeout(Duration::from_secs(5)).count(3)).expect("loop");
        assert_eq!(
            map.handler::<FlagWriter>(token).unwrap().writes,
            3,
            "{backend}: Refresh::EveryIteration saw the outside flag"
        );
        flag.set(false);
        map.run(every.timeout(Duration::from_millis(10)).count(3)).expect("loop");
        assert_eq!(map.handler::<FlagWriter>(token).unwrap().writes, 3, "{backend}: and saw it cleared");
    }
}

#[test]
fn map_refresh_picks_up_predicates_that_read_outside_state() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let flag = Rc::new(Cell::new(false));
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, FlagWriter { flag: Rc::clone(&flag), writes: 0 }).expect("insert");
        util::run_iterations(&mut map, 2);
        flag.set(true);
        map.refresh(token);
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(3)).expect("loop");
        assert_eq!(
            map.handler::<FlagWriter>(token).unwrap().writes,
            3,
            "{backend}: Map::refresh asked again"
        );
        flag.set(false);
        map.refresh_all();
        util::run_iterations(&mut map, 3);
        assert_eq!(
            map.handler::<FlagWriter>(token).unwrap().writes,
            3,
            "{backend}: Map::refresh_all asked again"
        );
    }
}

/// Counts every call of its predicates; reads whatever arrives.
struct Counted {
    asked: Rc<Cell<usize>>,
    read: Rc<Cell<usize>>,
}

impl StreamHandler for Counted {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        self.asked.set(self.asked.get() + 1);
        true
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.asked.set(self.asked.get() + 1);
        false
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.read.set(self.read.get() + n);
        Ok(())
    }
}

/// P3: asyncore called `readable()` and `writable()` of every channel on every
/// iteration (300 idle channels × 100 iterations = 60 000 calls, E11).
/// rolecore caches each channel's interest and asks again only after a
/// callback into it: 500 idle channels are never asked during 50 iterations,
/// on any backend, while the one active channel is asked after each of its
/// reads.
#[test]
fn p3_idle_channels_are_not_asked_for_their_interest_on_every_iteration() {
    const IDLE: usize = 500;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let idle_asked = Rc::new(Cell::new(0));
        let mut peers = Vec::new();
        for _ in 0..IDLE {
            let (ours, peer) = Channel::pair().unwrap();
            peers.push(peer);
            map.insert(ours, Counted { asked: idle_asked.clone(), read: Rc::default() }).unwrap();
        }
        let (active, mut active_peer) = Channel::pair().unwrap();
        let (active_asked, read) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        map.insert(active, Counted { asked: active_asked.clone(), read: read.clone() }).unwrap();
        let (idle_before, active_before) = (idle_asked.get(), active_asked.get());
        for round in 1..=5 {
            active_peer.send(b"0123456789").unwrap();
            assert!(util::run_until(&mut map, |_| read.get() == 10 * round), "{backend}: round {round}");
            util::run_iterations(&mut map, 10);
        }
        assert_eq!(
            idle_asked.get(),
            idle_before,
            "{backend}: idle channels were asked for their interest during idle iterations"
        );
        assert!(active_asked.get() > active_before, "{backend}: the active channel is asked after its reads");
        drop(peers);
    }
}

/// Sets an outside flag that another channel's `writable()` reads, then
/// asks that channel's predicates again with `Ctx::refresh`.
struct Refresher {
    flag: Rc<Cell<bool>>,
    target: Token,
}

impl StreamHandler for Refresher {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(cx.buffer())?;
        self.flag.set(true);
        cx.refresh(self.target);
        Ok(())
    }
}

/// D26: `Ctx::refresh` asks another channel's `readable()`/`writable()`
/// again from inside a callback, so a predicate that reads outside state
/// changed by that callback takes effect without any touch of its handler.
#[test]
fn ctx_refresh_asks_another_channels_predicates_again() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let flag = Rc::new(Cell::new(false));
        let (a, _a_peer) = Channel::pair().expect("socketpair");
        let ta = map.insert(a, FlagWriter { flag: Rc::clone(&flag), writes: 0 }).expect("insert");
        let (b, mut b_peer) = Channel::pair().expect("socketpair");
        map.insert(b, Refresher { flag: Rc::clone(&flag), target: ta }).expect("insert");
        util::run_iterations(&mut map, 2);
        assert_eq!(map.handler::<FlagWriter>(ta).unwrap().writes, 0, "{backend}: not writable yet");
        b_peer.send(b"go").expect("peer send");
        assert!(
            util::run_until(&mut map, |m| m.handler::<FlagWriter>(ta).unwrap().writes > 0),
            "{backend}: Ctx::refresh made the other channel writable"
        );
    }
}

/// Sets an outside flag at its first deadline and stops the loop at its
/// second, touching no other channel.
struct FlagSetter {
    flag: Rc<Cell<bool>>,
    fired: u32,
}

impl StreamHandler for FlagSetter {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.fired += 1;
        if self.fired == 1 {
            self.flag.set(true);
            cx.set_deadline_after(cx.token(), Some(Duration::from_millis(200)));
        } else {
            cx.stop();
        }
        Ok(())
    }
}

/// `Refresh::EveryIteration` asks every predicate before every wait in a
/// run without a count too (a server's `run`), not only in a counted one:
/// a flag another channel's callback sets makes the writer writable.
#[test]
fn refresh_every_iteration_without_a_count_picks_up_predicates_that_read_outside_state() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let flag = Rc::new(Cell::new(false));
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let writer = map.insert(ours, FlagWriter { flag: Rc::clone(&flag), writes: 0 }).expect("insert");
        let (theirs, _other_peer) = Channel::pair().expect("socketpair");
        let setter = map.insert(theirs, FlagSetter { flag: Rc::clone(&flag), fired: 0 }).expect("insert");
        map.set_deadline_after(setter, Some(Duration::from_millis(10)));
        map.run(LoopOptions::new().refresh(Refresh::EveryIteration)).expect("loop");
        assert_eq!(map.handler::<FlagSetter>(setter).unwrap().fired, 2, "{backend}: stopped by the setter");
        assert!(
            map.handler::<FlagWriter>(writer).unwrap().writes > 0,
            "{backend}: Refresh::EveryIteration without a count missed the outside flag"
        );
    }
}
