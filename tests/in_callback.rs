//! What a callback may do to the map while its own channel is out of its
//! slot: the shutdowns it starts and the `handle_close` calls they run
//! (which may stop the loop, remove a channel or panic), the timers it sets
//! on itself before closing itself, and the channels it inserts during a
//! shutdown's grace.
//!
//! Every test runs on every backend, with socket pairs and loopback
//! listeners only, and waits with a bound.

mod util;

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use rolecore::{
    AcceptHandler, Address, Channel, Connected, Ctx, Listening, LoopOptions, Map, StreamHandler, Token,
};
use util::{Log, backends, map, run_iterations, run_until, shared, tcp_listener};

/// What a scripted handler runs from one of its callbacks.
type Act = Box<dyn FnMut(&mut Ctx<'_>)>;

fn nothing() -> Act {
    Box::new(|_| {})
}

/// A stream that logs its callbacks as `name:read`, `name:timeout`,
/// `name:close`, and runs `on_read` after each read that got data and
/// `on_close` in `handle_close`.
struct Scripted {
    name: &'static str,
    log: Log,
    on_read: Act,
    on_close: Act,
}

impl Scripted {
    fn new(name: &'static str, log: &Log) -> Scripted {
        Scripted { name, log: log.clone(), on_read: nothing(), on_close: nothing() }
    }

    fn on_read(mut self, act: impl FnMut(&mut Ctx<'_>) + 'static) -> Scripted {
        self.on_read = Box::new(act);
        self
    }

    fn on_close(mut self, act: impl FnMut(&mut Ctx<'_>) + 'static) -> Scripted {
        self.on_close = Box::new(act);
        self
    }
}

impl StreamHandler for Scripted {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        if ch.recv(&mut [0u8; 64])? > 0 {
            self.log.push(format!("{}:read", self.name));
            (self.on_read)(cx);
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push(format!("{}:timeout", self.name));
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) {
        self.log.push(format!("{}:close", self.name));
        (self.on_close)(cx);
    }
}

/// A listener that keeps what it accepts, logs `name:accepted` and
/// `name:close`, and runs `on_close` in `handle_close`.
struct Listener {
    name: &'static str,
    log: Log,
    on_close: Act,
    conns: Vec<Channel<Connected>>,
}

impl Listener {
    fn new(name: &'static str, log: &Log) -> Listener {
        Listener { name, log: log.clone(), on_close: nothing(), conns: Vec::new() }
    }

    fn on_close(mut self, act: impl FnMut(&mut Ctx<'_>) + 'static) -> Listener {
        self.on_close = Box::new(act);
        self
    }
}

impl AcceptHandler for Listener {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push(format!("{}:accepted", self.name));
        self.conns.push(conn);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) {
        self.log.push(format!("{}:close", self.name));
        (self.on_close)(cx);
    }
}

/// A stream in `m` with `handler`, and its peer, which has sent `data`
/// (nothing when empty).
fn stream(m: &mut Map, handler: Scripted, data: &[u8]) -> (Token, Channel<Connected>) {
    let (ours, mut peer) = Channel::pair().expect("a socket pair");
    if !data.is_empty() {
        peer.send(data).expect("the peer sends");
    }
    (m.insert(ours, handler).expect("insert"), peer)
}

/// A stream in `m`, logged as `bad`, whose `handle_close` panics, and its
/// peer.
fn panicking_on_close(m: &mut Map, log: &Log) -> (Token, Channel<Connected>) {
    stream(m, bad(log), b"")
}

/// A handler logged as `bad`, whose `handle_close` panics.
fn bad(log: &Log) -> Scripted {
    Scripted::new("bad", log).on_close(|_| panic!("handle_close panics (on purpose)"))
}

/// Whether the peer of a channel sees the end of the stream (or a reset).
fn sees_eof(peer: &mut Channel<Connected>) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match peer.recv(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The end of a shutdown's grace runs each channel's `handle_close` out of
/// its slot, as any callback: with `catch_panics`, one that panics is
/// reported and its channel closed, the loop goes on, the others are closed
/// as usual, and the map empties.
#[test]
fn a_handle_close_that_panics_at_the_end_of_the_grace_is_caught_like_any_callback() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (bad, mut bad_peer) = panicking_on_close(&mut m, &log);
        let (good, mut good_peer) = stream(&mut m, Scripted::new("good", &log), b"");
        m.shutdown(Duration::ZERO);
        let options = LoopOptions::new().catch_panics(true).timeout(Duration::from_millis(10)).count(3);
        let ran = catch_unwind(AssertUnwindSafe(|| m.run(options)));
        assert!(matches!(ran, Ok(Ok(()))), "{backend}: the panic escaped the loop that catches them");
        assert!(!m.contains(bad) && !m.contains(good), "{backend}: both closed");
        assert!(m.is_empty(), "{backend}: len {}", m.len());
        assert_eq!(log.count("good:close"), 1, "{backend}: {:?}", log.events());
        assert!(sees_eof(&mut bad_peer) && sees_eof(&mut good_peer), "{backend}: both descriptors closed");
    }
}

/// Without `catch_panics`, a `handle_close` that panics at the end of a
/// shutdown's grace reaches the caller, as any callback's panic, once its
/// channel is out of the map: the map does not keep counting a channel
/// whose entry the panic dropped. The shutdown does not end there for the
/// channels not closed yet: the next run of the loop closes them at once,
/// each with its `handle_close`, instead of leaving them open with no
/// shutdown under way.
#[test]
fn an_uncaught_panic_in_a_shutdowns_handle_close_leaves_the_map_coherent_and_the_shutdown_going() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        // The map closes in descriptor order: the one that panics gets the
        // lowest of the three, so the others are still open when the panic
        // unwinds. (Made first is not enough: tests on other threads close
        // descriptors meanwhile, and a later pair may take a lower number.)
        let mut pairs: Vec<_> = (0..3).map(|_| Channel::pair().expect("a socket pair")).collect();
        pairs.sort_by_key(|(ours, _)| ours.as_raw_fd());
        let mut pairs = pairs.into_iter();
        let mut insert = |handler: Scripted| {
            let (ours, peer) = pairs.next().expect("three pairs");
            (m.insert(ours, handler).expect("insert"), peer)
        };
        let (bad, mut bad_peer) = insert(bad(&log));
        let (first, mut first_peer) = insert(Scripted::new("first", &log));
        let (second, mut second_peer) = insert(Scripted::new("second", &log));
        m.shutdown(Duration::ZERO);
        let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1);
        let ran = catch_unwind(AssertUnwindSafe(|| m.run(options)));
        assert!(ran.is_err(), "{backend}: the panic reaches the caller");
        assert!(!m.contains(bad), "{backend}: the channel that panicked is still in the map");
        assert!(sees_eof(&mut bad_peer), "{backend}: its descriptor closed");
        let open = [first, second].iter().filter(|&&t| m.contains(t)).count();
        assert!(open > 0, "{backend}: nothing was left open to test ({:?})", log.events());
        assert_eq!(m.len(), open, "{backend}: the map counts what it holds");
        m.run(options).expect("the next run");
        assert!(m.is_empty(), "{backend}: left open after the panic: {:?}", log.events());
        assert_eq!(log.count("first:close") + log.count("second:close"), 2, "{backend}: {:?}", log.events());
        assert!(sees_eof(&mut first_peer) && sees_eof(&mut second_peer), "{backend}");
    }
}

/// A shutdown started from one channel's callback closes the listeners
/// from inside that callback: a listener whose `handle_close` panics there
/// is the one closed (with `catch_panics`), not the channel that started
/// the shutdown, which stays for its grace.
#[test]
fn a_listener_whose_handle_close_panics_in_anothers_shutdown_is_closed_alone() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (channel, _addr) = tcp_listener();
        let listener =
            Listener::new("listener", &log).on_close(|_| panic!("handle_close panics (on purpose)"));
        let listener = m.insert(channel, listener).expect("insert");
        let starter = Scripted::new("starter", &log).on_read(|cx| cx.shutdown(Duration::from_secs(60)));
        let (starter, _peer) = stream(&mut m, starter, b"go");
        let options = LoopOptions::new().catch_panics(true).timeout(Duration::from_millis(10)).count(3);
        let ran = catch_unwind(AssertUnwindSafe(|| m.run(options)));
        assert!(matches!(ran, Ok(Ok(()))), "{backend}: the panic escaped the loop that catches them");
        assert_eq!(log.events(), ["starter:read", "listener:close"], "{backend}");
        assert!(!m.contains(listener), "{backend}: the listener that panicked is still in the map");
        assert!(m.contains(starter), "{backend}: the channel that started the shutdown was closed");
        assert_eq!(m.len(), 1, "{backend}");
    }
}

/// `Ctx::stop` ends the loop after the callback that called it, whichever
/// callback that is: also a listener's `handle_close` that a shutdown runs
/// when another channel's callback starts it.
#[test]
fn a_stop_in_a_handle_close_that_a_shutdown_runs_stops_the_loop() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (channel, _addr) = tcp_listener();
        let listener =
            m.insert(channel, Listener::new("listener", &log).on_close(|cx| cx.stop())).expect("insert");
        let starter = Scripted::new("starter", &log).on_read(|cx| cx.shutdown(Duration::from_secs(60)));
        let (_starter, _peer) = stream(&mut m, starter, b"go");
        let stopped = m.poll(Some(Duration::from_secs(5))).expect("poll");
        assert_eq!(log.events(), ["starter:read", "listener:close"], "{backend}");
        assert!(!m.contains(listener), "{backend}");
        assert!(stopped, "{backend}: the listener's handle_close asked to stop; the loop was not told");
    }
}

/// A shutdown is over once the map is empty (the loop then ends): it does
/// not linger in the map, to close what joins it afterwards, here a new
/// listener, at its first connection.
#[test]
fn a_shutdown_is_over_once_the_map_is_empty() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (old, _addr) = tcp_listener();
        m.insert(old, Listener::new("old", &log)).expect("insert");
        m.shutdown(Duration::from_secs(60));
        assert!(m.is_empty(), "{backend}: the only listener closed at once");
        m.run(LoopOptions::new()).expect("run on an empty map returns at once");

        let (new, addr) = tcp_listener();
        let new = m.insert(new, Listener::new("new", &log)).expect("insert");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        assert!(run_until(&mut m, |_| log.contains("new:accepted")), "{backend}: {:?}", log.events());
        run_iterations(&mut m, 2);
        assert_eq!(log.events(), ["old:close", "new:accepted"], "{backend}");
        assert!(m.contains(new), "{backend}: the new listener was closed by the old shutdown");
    }
}

/// `Ctx::stop` and `Ctx::shutdown` in one callback: the loop ends after it
/// (the listeners are closed already), and the shutdown goes on when the
/// loop runs again: the grace over, the rest gets `handle_close` and the
/// map empties.
#[test]
fn stop_and_shutdown_in_one_callback_stop_now_and_the_shutdown_goes_on_at_the_next_run() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (channel, _addr) = tcp_listener();
        let listener = m.insert(channel, Listener::new("listener", &log)).expect("insert");
        let both = Scripted::new("both", &log).on_read(|cx| {
            cx.shutdown(Duration::ZERO);
            cx.stop();
        });
        let (both, mut peer) = stream(&mut m, both, b"go");
        assert!(m.poll(Some(Duration::from_secs(5))).expect("poll"), "{backend}: stopped");
        assert_eq!(log.events(), ["both:read", "listener:close"], "{backend}");
        assert!(!m.contains(listener) && m.contains(both), "{backend}");
        m.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(3)).expect("run");
        assert_eq!(log.events(), ["both:read", "listener:close", "both:close"], "{backend}");
        assert!(m.is_empty(), "{backend}");
        assert!(sees_eof(&mut peer), "{backend}");
    }
}

/// A deadline or an idle timeout a callback sets on its own channel, due
/// at once, dies with the channel when the same callback closes it: no
/// `handle_timeout`, in that iteration or later.
#[test]
fn a_timer_set_on_itself_by_a_callback_that_then_closes_never_fires() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let _keeper = util::keep_loop_alive(&mut m);
        let deadline = Scripted::new("deadline", &log).on_read(|cx| {
            let (me, now) = (cx.token(), cx.now());
            assert!(cx.set_deadline(me, Some(now)), "its own token is live in its callback");
            cx.close();
        });
        let idle = Scripted::new("idle", &log).on_read(|cx| {
            assert!(cx.set_idle_timeout(cx.token(), Some(Duration::ZERO)));
            cx.close();
        });
        let (deadline, _p1) = stream(&mut m, deadline, b"go");
        let (idle, _p2) = stream(&mut m, idle, b"go");
        assert!(run_until(&mut m, |m| !m.contains(deadline) && !m.contains(idle)), "{backend}: closed");
        run_iterations(&mut m, 3);
        let mut events = log.events();
        events.sort();
        assert_eq!(events, ["deadline:read", "idle:read"], "{backend}: a timer outlived its channel");
        assert_eq!(m.len(), 1, "{backend}");
    }
}

/// At the end of the grace, a `handle_close` that removes another channel
/// still waiting for its own closes it there: `remove` answers true, and
/// the removed one gets no `handle_close` (a removal never calls it), its
/// descriptor closed all the same.
#[test]
fn a_channel_removed_by_a_handle_close_at_the_end_of_the_grace_gets_no_handle_close() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let all = Rc::new(RefCell::new(Vec::<Token>::new()));
        let mut peers = Vec::new();
        for name in ["a", "b"] {
            let (all2, log2) = (all.clone(), log.clone());
            let handler = Scripted::new(name, &log).on_close(move |cx| {
                let me = cx.token();
                let others: Vec<Token> = all2.borrow().iter().copied().filter(|&t| t != me).collect();
                for them in others {
                    log2.push(format!("{name}:removed other: {}", cx.remove(them)));
                }
            });
            let (token, peer) = stream(&mut m, handler, b"");
            all.borrow_mut().push(token);
            peers.push(peer);
        }
        m.shutdown(Duration::ZERO);
        m.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).expect("run");
        let events = log.events();
        let first = events.first().and_then(|e| e.strip_suffix(":close")).expect("one handle_close");
        assert_eq!(events, [format!("{first}:close"), format!("{first}:removed other: true")], "{backend}");
        assert!(m.is_empty(), "{backend}");
        assert!(peers.iter_mut().all(sees_eof), "{backend}: both descriptors closed");
    }
}

/// Channels a callback inserts during a shutdown's grace are part of the
/// shutdown: a stream has what is left of the grace, then its
/// `handle_close`; a listener is closed, with its `handle_close`, by the
/// end of the grace at the latest; the map then empties and the loop ends.
#[test]
fn channels_inserted_during_the_grace_are_closed_by_its_end() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let log2 = log.clone();
        let opener = Scripted::new("opener", &log).on_read(move |cx| {
            let (ours, _peer) = Channel::pair().expect("a socket pair");
            cx.insert(ours, Scripted::new("stream", &log2)).expect("insert a stream");
            let (listener, _addr) = tcp_listener();
            cx.insert(listener, Listener::new("listener", &log2)).expect("insert a listener");
        });
        let (_opener, mut peer) = stream(&mut m, opener, b"");
        m.shutdown(Duration::from_millis(100));
        peer.send(b"go").expect("send");
        assert!(run_until(&mut m, Map::is_empty), "{backend}: the map emptied: {:?}", log.events());
        for closed in ["opener:close", "stream:close", "listener:close"] {
            assert_eq!(log.count(closed), 1, "{backend}: {closed}: {:?}", log.events());
        }
    }
}

/// A listener's `handle_close` that a shutdown runs from another channel's
/// callback may remove that channel too (a server closing every session,
/// the one that asked for the shutdown included): `remove` answers true,
/// as for any live channel, and the channel leaves the map when its own
/// callback returns, with no `handle_close`.
#[test]
fn removing_the_channel_whose_callback_started_the_shutdown_closes_it() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let sessions = Rc::new(RefCell::new(Vec::<Token>::new()));
        let (sessions2, log2) = (sessions.clone(), log.clone());
        let (channel, _addr) = tcp_listener();
        let listener = Listener::new("listener", &log).on_close(move |cx| {
            for &session in sessions2.borrow().iter() {
                log2.push(format!("removed: {}", cx.remove(session)));
            }
        });
        m.insert(channel, listener).expect("insert");
        let admin = Scripted::new("admin", &log).on_read(|cx| cx.shutdown(Duration::from_secs(60)));
        let (admin, mut peer) = stream(&mut m, admin, b"shut down");
        sessions.borrow_mut().push(admin);
        m.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(3)).expect("run");
        assert_eq!(log.events(), ["admin:read", "listener:close", "removed: true"], "{backend}");
        assert!(!m.contains(admin), "{backend}: still in the map");
        assert!(m.is_empty(), "{backend}");
        assert!(sees_eof(&mut peer), "{backend}: its descriptor closed");
    }
}

/// A shutdown stops accepting at once, also on a listener that joins the
/// map during its grace: such a listener is closed, with its
/// `handle_close`, before the loop waits again, not left listening until
/// its first connection or the end of the grace.
#[test]
fn a_listener_inserted_during_the_grace_is_closed_before_the_next_wait() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let late = Rc::new(RefCell::new(None));
        let (late2, log2) = (late.clone(), log.clone());
        let opener = Scripted::new("opener", &log).on_read(move |cx| {
            let (listener, addr) = tcp_listener();
            let token = cx.insert(listener, Listener::new("late", &log2)).expect("insert a listener");
            *late2.borrow_mut() = Some((token, addr));
        });
        let (_opener, mut peer) = stream(&mut m, opener, b"");
        m.shutdown(Duration::from_secs(60));
        peer.send(b"go").expect("send");
        assert!(run_until(&mut m, |_| late.borrow().is_some()), "{backend}: inserted");
        let (token, addr) = late.borrow().expect("inserted");
        assert_eq!(log.events(), ["opener:read", "late:close"], "{backend}");
        assert!(!m.contains(token), "{backend}: the late listener is still in the map");
        assert!(std::net::TcpStream::connect(addr).is_err(), "{backend}: it still listens");
    }
}

/// `Ctx::len` counts the channel whose callback runs, though it is out of
/// its slot (also once it called `close`: it leaves when the callback
/// returns); a channel the callback removes stops counting at once, one it
/// inserts counts at once.
#[test]
fn ctx_len_counts_the_busy_channel_and_follows_inserts_and_removals_at_once() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (other, _other_peer) = stream(&mut m, Scripted::new("other", &log), b"");
        let log2 = log.clone();
        let counter = Scripted::new("counter", &log).on_read(move |cx| {
            let mut lens = vec![cx.len()];
            cx.close();
            lens.push(cx.len());
            cx.remove(other);
            lens.push(cx.len());
            let (ours, _peer) = Channel::pair().expect("a socket pair");
            cx.insert(ours, Scripted::new("new", &log2)).expect("insert");
            lens.push(cx.len());
            log2.push(format!("{lens:?} empty: {}", cx.is_empty()));
        });
        let (counter, _peer) = stream(&mut m, counter, b"count");
        assert!(run_until(&mut m, |m| !m.contains(counter)), "{backend}");
        assert_eq!(log.events(), ["counter:read", "[2, 2, 1, 2] empty: false"], "{backend}");
        assert_eq!(m.len(), 1, "{backend}: only the new channel");
    }
}

/// A deadline already due for a channel that a readiness callback earlier
/// in the same iteration removed is not delivered, not even to a channel
/// inserted on the same descriptor number.
#[test]
fn a_due_deadline_of_a_channel_removed_by_a_callback_in_the_same_iteration_is_not_delivered() {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (doomed, _doomed_peer) = stream(&mut m, Scripted::new("doomed", &log), b"");
        assert!(m.set_deadline(doomed, Some(m.now())), "{backend}");
        let (log2, peers) = (log.clone(), Rc::new(RefCell::new(Vec::new())));
        let peers2 = peers.clone();
        let remover = Scripted::new("remover", &log).on_read(move |cx| {
            assert!(cx.remove(doomed));
            let (ours, peer) = Channel::pair().expect("a socket pair");
            let reborn = cx.insert(ours, Scripted::new("reborn", &log2)).expect("insert");
            log2.push(format!("same number: {}", reborn.fd() == doomed.fd()));
            peers2.borrow_mut().push(peer); // kept open: the new channel stays quiet
        });
        let (_remover, _peer) = stream(&mut m, remover, b"go");
        m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1)).expect("run");
        run_iterations(&mut m, 2);
        let events = log.events();
        assert_eq!(events[0], "remover:read", "{backend}: {events:?}");
        assert_eq!(events.len(), 2, "{backend}: a deadline reached a channel: {events:?}");
        assert_eq!(m.len(), 2, "{backend}");
    }
}

/// Re-arms its own deadline at a fixed instant, already past, from every
/// `handle_timeout`, up to a bound.
struct Rearms {
    at: std::time::Instant,
    timeouts: Rc<std::cell::Cell<u32>>,
}

impl StreamHandler for Rearms {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.timeouts.set(self.timeouts.get() + 1);
        if self.timeouts.get() < 1000 {
            cx.set_deadline(cx.token(), Some(self.at));
        }
        Ok(())
    }
}

/// A deadline that a timeout callback sets at or before the instant the
/// loop serves expiries at fires in the next iteration, not in this one: a
/// channel that re-arms itself in the past gets one `handle_timeout` per
/// iteration and cannot hold the loop away from its wait (and from every
/// other channel, the waker and the signals included).
#[test]
fn a_deadline_re_armed_in_the_past_by_handle_timeout_fires_once_per_iteration() {
    let _fds = shared();
    for backend in backends() {
        let mut m = map(backend);
        let timeouts = Rc::new(std::cell::Cell::new(0));
        let at = m.now();
        let (ours, _peer) = Channel::pair().expect("a socket pair");
        let token = m.insert(ours, Rearms { at, timeouts: timeouts.clone() }).expect("insert");
        assert!(m.set_deadline(token, Some(at)));
        m.poll(Some(Duration::from_secs(5))).expect("poll");
        assert_eq!(timeouts.get(), 1, "{backend}: one iteration served the same timer again and again");
        m.poll(Some(Duration::from_secs(5))).expect("poll");
        assert_eq!(timeouts.get(), 2, "{backend}: the re-armed deadline fires in the next iteration");
    }
}

/// Echoes, and from every `handle_timeout` re-arms its deadline at the
/// current instant, up to a bound (then closes).
struct RearmsNow(u32);

impl StreamHandler for RearmsNow {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        ch.send(&buf[..n]).map(drop)
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0 += 1;
        if self.0 < 5 {
            cx.set_deadline(cx.token(), Some(cx.now()));
        } else {
            cx.close();
        }
        Ok(())
    }
}

/// Gives every connection a deadline 100 ms away, re-armed as [`RearmsNow`].
struct RearmingServer;

impl AcceptHandler for RearmingServer {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let token = cx.insert(conn, RearmsNow(0))?;
        let at = cx.now() + Duration::from_millis(100);
        cx.set_deadline(token, Some(at));
        Ok(())
    }
}

/// The simulation's checker holds the loop to the same rule: a deadline a
/// timeout callback arms at the current instant is served in the next
/// iteration (the loop's virtual time standing still meanwhile), which is
/// no overdue timer.
#[test]
fn under_the_simulation_a_deadline_re_armed_at_now_is_served_next_iteration() {
    for seed in 0..20 {
        let mut sim =
            rolecore::sim::Sim::from_seed(seed, rolecore::sim::SimConfig::default()).expect("a world");
        sim.listen(RearmingServer).expect("listen");
        if let Err(failure) = sim.run() {
            panic!("seed {seed}: {failure}");
        }
    }
}
