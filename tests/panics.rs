//! Optional panic isolation: with `LoopOptions::catch_panics(true)` a
//! handler's panic closes only its own channel; without it, the panic
//! reaches the caller of the loop.

mod util;

use std::cell::RefCell;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use rolecore::{AcceptHandler, Backend, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler, Token};
use util::probe::*;
use util::*;

struct Reader {
    name: &'static str,
    panics: bool,
    log: Log,
}

impl StreamHandler for Reader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        let n = ch.recv(&mut buf)?;
        if self.panics && n > 0 {
            panic!("{} cannot cope", self.name);
        }
        self.log.push(format!("{} read {n}", self.name));
        Ok(())
    }
    fn handle_close(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) {
        self.log.push(format!("{} close", self.name));
    }
}

#[test]
fn a_panicking_handler_closes_only_its_channel_when_caught() {
    let _fds = util::shared();
    for backend in util::backends() {
        let (a, mut peer_a) = UnixStream::pair().unwrap();
        let (b, mut peer_b) = UnixStream::pair().unwrap();
        let log = Log::default();
        let mut map = util::map(backend);
        let ta = map
            .insert(Channel::try_from(a).unwrap(), Reader { name: "bad", panics: true, log: log.clone() })
            .unwrap();
        let tb = map
            .insert(Channel::try_from(b).unwrap(), Reader { name: "good", panics: false, log: log.clone() })
            .unwrap();
        peer_a.write_all(b"boom").unwrap();
        peer_b.write_all(b"fine").unwrap();
        let options = LoopOptions::new().timeout(std::time::Duration::from_millis(10)).catch_panics(true);
        for _ in 0..5 {
            map.run(options.count(1)).unwrap();
        }
        assert!(!map.contains(ta), "{backend}: the panicking channel is closed");
        assert!(map.contains(tb), "{backend}: the other channel lives on");
        assert!(log.contains("good read 4"), "{backend}: {:?}", log.events());
        assert!(!log.contains("bad close"), "{backend}: no handle_close after a panic");
        // The closed channel's peer sees the end of the stream.
        let mut buf = [0u8; 1];
        assert_eq!(io::Read::read(&mut peer_a, &mut buf).unwrap(), 0, "{backend}");
        // And the survivor still works.
        peer_b.write_all(b"again").unwrap();
        assert!(util::run_until(&mut map, |_| log.contains("good read 5")), "{backend}");
    }
}

#[test]
fn an_uncaught_panic_reaches_the_caller() {
    let _fds = util::shared();
    let (a, mut peer) = UnixStream::pair().unwrap();
    let mut map = util::map(rolecore::Backend::Epoll);
    map.insert(Channel::try_from(a).unwrap(), Reader { name: "bad", panics: true, log: Log::default() })
        .unwrap();
    peer.write_all(b"x").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        map.run(LoopOptions::new().count(1)).unwrap();
    }));
    let payload = result.expect_err("the panic propagates by default");
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("bad cannot cope"));
}

/// Panics in `writable()` once it has read something: the predicates the
/// loop asks after a callback are part of that callback's wake-up.
struct PanickyPredicate {
    read: bool,
}

impl StreamHandler for PanickyPredicate {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        if self.read {
            panic!("writable() cannot cope");
        }
        false
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 16];
        self.read |= ch.recv(&mut buf)? > 0;
        Ok(())
    }
}

#[test]
fn a_predicate_that_panics_after_a_callback_is_caught_like_the_callback() {
    let _fds = util::shared();
    for backend in util::backends() {
        let (a, mut peer) = UnixStream::pair().unwrap();
        let mut map = util::map(backend);
        let token = map.insert(Channel::try_from(a).unwrap(), PanickyPredicate { read: false }).unwrap();
        peer.write_all(b"x").unwrap();
        let options = LoopOptions::new().timeout(std::time::Duration::from_millis(10)).catch_panics(true);
        for _ in 0..5 {
            map.run(options.count(1)).unwrap();
        }
        assert!(!map.contains(token), "{backend}: the channel whose predicate panicked is closed");
        let mut buf = [0u8; 1];
        assert_eq!(io::Read::read(&mut peer, &mut buf).unwrap(), 0, "{backend}: its peer sees the end");
    }
}

/// Panics on its first read.
struct Panicker;

impl StreamHandler for Panicker {
    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        panic!("a handler panics on purpose (conformance item 25)");
    }
}

/// Two channels, the first with a handler that panics on the data already
/// waiting for it.
struct PanicSetup {
    m: Map,
    log: Log,
    panicked: Token,
    panic_peer: Channel<Connected>,
    other: Token,
    peer: Channel<Connected>,
    data: Rc<RefCell<Vec<u8>>>,
}

fn panic_setup(backend: Backend) -> io::Result<PanicSetup> {
    let log = Log::default();
    let mut m = map(backend);
    let (ours, mut panic_peer) = Channel::pair()?;
    send_all(&mut panic_peer, b"boom");
    let panicked = m.insert(ours, Panicker)?;
    let (ours, peer) = Channel::pair()?;
    let probe = Probe::new("other", &log);
    let data = probe.data.clone();
    let other = m.insert(ours, probe)?;
    Ok(PanicSetup { m, log, panicked, panic_peer, other, peer, data })
}

/// What must hold after a handler panicked, caught or not: the channel is
/// gone and the map says so, its number can carry a new channel, and the
/// others are served.
fn check_after_panic(backend: Backend, mut s: PanicSetup) -> io::Result<()> {
    let m = &mut s.m;
    send_all(&mut s.peer, b"fine");
    assert!(run_until(m, |_| s.data.borrow().len() == 4), "{backend}: {:?}", s.log.events());
    assert!(m.contains(s.other), "{backend}");

    assert_eq!(s.panic_peer.recv(&mut [0u8; 8])?, 0, "{backend}: the panicked channel is still open");
    assert!(!m.contains(s.panicked), "{backend}: the map still claims the panicked channel");
    assert_eq!(m.len(), 1, "{backend}: the map still counts the panicked channel");

    let mut spare = Vec::new();
    let reborn = claim_fds(&[s.panicked.fd()], &mut spare).pop().expect("the number was not reused");
    let token = m
        .insert(reborn, Probe::new("reborn", &s.log))
        .unwrap_or_else(|e| panic!("{backend}: a new channel on the freed number was refused: {e}"));
    assert!(m.contains(token), "{backend}");
    m.close_all();
    assert!(m.is_empty(), "{backend}: close_all left {} channels", m.len());
    Ok(())
}

/// Item 25, a handler that panics (no peer tests it), with
/// `LoopOptions::catch_panics(true)`: the loop goes on, only the panicking
/// channel is closed, and the map stays coherent.
#[test]
fn a_caught_panic_closes_only_its_channel_and_leaves_the_map_coherent() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let mut s = panic_setup(backend)?;
        s.m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1).catch_panics(true))?;
        check_after_panic(backend, s)?;
    }
    Ok(())
}

/// Item 25, a handler that panics, by default: the panic propagates out of
/// the loop rather than being swallowed, and a caller that catches it
/// (`catch_unwind` around the loop, as a supervisor or test harness does)
/// finds the map coherent: the channel whose handler panicked was dropped by
/// the unwinding, so the map must neither claim nor count it, nor refuse a
/// new channel on its descriptor number, and `close_all` must empty it.
#[test]
fn an_uncaught_panic_propagates_and_leaves_the_map_coherent() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let mut s = panic_setup(backend)?;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1))
        }));
        let payload = caught.expect_err("the panic was swallowed");
        let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("on purpose"), "{backend}: another panic: {message:?}");
        check_after_panic(backend, s)?;
    }
    Ok(())
}

// ---- panics in handler code the loop runs outside that handler's own callback ----
//
// With `catch_panics`, a panic is charged to the channel whose handler code
// panicked, whichever callback was running at the time: another channel's
// predicates asked from a callback (`cx.insert`, `cx.refresh`, a
// `HandlerMut` dropped), or a handler's `Drop` when its channel closes.

/// `readable()` panics once armed.
struct Touchy {
    armed: Rc<std::cell::Cell<bool>>,
}

impl StreamHandler for Touchy {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        if self.armed.get() {
            panic!("readable() cannot cope");
        }
        true
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(cx.buffer()).map(drop)
    }
}

/// Inserts every connection with a `Touchy` handler, with `?` (as the
/// README's server does), and counts them.
struct TouchyServer {
    armed: Rc<std::cell::Cell<bool>>,
    accepted: Rc<std::cell::Cell<usize>>,
    tokens: Rc<RefCell<Vec<Token>>>,
}

impl AcceptHandler for TouchyServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _: rolecore::Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.accepted.set(self.accepted.get() + 1);
        let token = cx.insert(conn, Touchy { armed: self.armed.clone() })?;
        self.tokens.borrow_mut().push(token);
        Ok(())
    }
}

/// A connection whose handler's predicate panics when `insert` asks it
/// (inside the listener's `handle_accepted`) is closed alone: the listener
/// goes on accepting, and the token `insert` returned names nothing.
#[test]
fn a_predicate_that_panics_when_its_channel_joins_closes_that_channel_not_the_inserting_listener() {
    let _fds = exclusive();
    for backend in util::backends() {
        let before = open_fds();
        {
            let mut map = util::map(backend);
            let (listener, addr) = util::tcp_listener();
            let armed = Rc::new(std::cell::Cell::new(true));
            let accepted = Rc::new(std::cell::Cell::new(0));
            let tokens = Rc::new(RefCell::new(Vec::new()));
            let server =
                TouchyServer { armed: armed.clone(), accepted: accepted.clone(), tokens: tokens.clone() };
            let lt = map.insert(listener, server).unwrap();
            let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1).catch_panics(true);
            let first = std::net::TcpStream::connect(addr).unwrap();
            for _ in 0..500 {
                if accepted.get() == 1 {
                    break;
                }
                map.run(options).unwrap();
            }
            assert_eq!(accepted.get(), 1, "{backend}: the connection was not accepted");
            assert!(map.contains(lt), "{backend}: a connection's panicking predicate closed the listener");
            assert_eq!(tokens.borrow().len(), 1, "{backend}: insert did not return a token");
            assert!(!map.contains(tokens.borrow()[0]), "{backend}: the panicking channel is in the map");
            assert_eq!(map.len(), 1, "{backend}: the map counts the panicking channel");
            let mut first = first;
            first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(io::Read::read(&mut first, &mut [0u8; 1]).unwrap(), 0, "{backend}: not closed");
            // The listener still serves.
            armed.set(false);
            let _second = std::net::TcpStream::connect(addr).unwrap();
            for _ in 0..500 {
                if accepted.get() == 2 {
                    break;
                }
                map.run(options).unwrap();
            }
            assert_eq!(accepted.get(), 2, "{backend}: the listener stopped accepting");
            assert!(map.contains(tokens.borrow()[1]), "{backend}");
        }
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
}

/// Asks another channel's predicates again from its own `handle_read`.
struct Refresher {
    other: Token,
}

impl StreamHandler for Refresher {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(cx.buffer())?;
        cx.refresh(self.other);
        drop(cx.handler_mut::<Touchy>(self.other));
        Ok(())
    }
}

/// `cx.refresh(other)` (or a `HandlerMut` of it dropped) runs the other
/// channel's predicates: when they panic, the other channel is the one
/// closed, not the channel whose callback asked.
#[test]
fn a_predicate_that_panics_when_another_callback_refreshes_it_closes_its_own_channel() {
    let _fds = exclusive();
    for backend in util::backends() {
        let before = open_fds();
        {
            let mut map = util::map(backend);
            let armed = Rc::new(std::cell::Cell::new(false));
            let (a, mut peer_a) = UnixStream::pair().unwrap();
            let touchy = map.insert(Channel::try_from(a).unwrap(), Touchy { armed: armed.clone() }).unwrap();
            let (b, mut peer_b) = UnixStream::pair().unwrap();
            let asker = map.insert(Channel::try_from(b).unwrap(), Refresher { other: touchy }).unwrap();
            armed.set(true);
            peer_b.write_all(b"x").unwrap();
            let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1).catch_panics(true);
            for _ in 0..5 {
                map.run(options).unwrap();
            }
            assert!(map.contains(asker), "{backend}: the channel that asked was closed for another's panic");
            assert!(!map.contains(touchy), "{backend}: the channel whose predicate panicked is still open");
            let mut buf = [0u8; 1];
            assert_eq!(io::Read::read(&mut peer_a, &mut buf).unwrap(), 0, "{backend}: its peer sees the end");
            peer_b.write_all(b"y").unwrap();
            map.run(options).unwrap();
            assert!(map.contains(asker), "{backend}");
        }
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
}

/// A handler whose `Drop` panics, and records `handle_close`.
struct DropPanics {
    name: &'static str,
    log: Log,
}

impl Drop for DropPanics {
    fn drop(&mut self) {
        self.log.push(format!("{} dropped", self.name));
        panic!("{} panics in drop (on purpose)", self.name);
    }
}

impl StreamHandler for DropPanics {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(cx.buffer()).map(drop)
    }
    fn handle_close(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) {
        self.log.push(format!("{} close", self.name));
    }
}

/// Removes a channel from its `handle_read`.
struct Remover {
    victim: Token,
}

impl StreamHandler for Remover {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(cx.buffer())?;
        cx.remove(self.victim);
        Ok(())
    }
}

/// A handler's `Drop` is handler code: with `catch_panics`, a panic in it
/// when its channel closes (its peer left) is reported, not passed out of
/// the loop, and the map goes on.
#[test]
fn a_handler_whose_drop_panics_when_its_channel_closes_is_caught() {
    let _fds = exclusive();
    for backend in util::backends() {
        let before = open_fds();
        {
            let log = Log::default();
            let mut map = util::map(backend);
            let (a, peer) = UnixStream::pair().unwrap();
            let bad = map.insert(Channel::try_from(a).unwrap(), DropPanics { name: "bad", log: log.clone() });
            let bad = bad.unwrap();
            let (b, mut peer_b) = UnixStream::pair().unwrap();
            let good = map.insert(
                Channel::try_from(b).unwrap(),
                Reader { name: "good", panics: false, log: log.clone() },
            );
            let good = good.unwrap();
            drop(peer);
            let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1).catch_panics(true);
            for _ in 0..5 {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.run(options)));
                assert!(matches!(ran, Ok(Ok(()))), "{backend}: the panic escaped the loop that catches them");
            }
            assert!(!map.contains(bad), "{backend}");
            assert_eq!(log.count("bad close"), 1, "{backend}: {:?}", log.events());
            assert_eq!(log.count("bad dropped"), 1, "{backend}: {:?}", log.events());
            peer_b.write_all(b"x").unwrap();
            assert!(util::run_until(&mut map, |_| log.contains("good read 1")), "{backend}");
            assert!(map.contains(good), "{backend}");
        }
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
}

/// With `catch_panics`, dropping the map closes the channels still in it:
/// a handler whose `Drop` panics then is reported as when its channel
/// closes in the loop, the others are dropped too and their descriptors
/// closed. Before, the panic escaped the map's drop (and a second one,
/// unwinding, aborted the process).
#[test]
fn a_handler_whose_drop_panics_when_the_map_is_dropped_is_caught() {
    let _fds = exclusive();
    for backend in util::backends() {
        let before = open_fds();
        let log = Log::default();
        let mut map = util::map(backend);
        let (a, _peer) = UnixStream::pair().unwrap();
        map.insert(Channel::try_from(a).unwrap(), DropPanics { name: "bad", log: log.clone() }).unwrap();
        let (b, _peer_b) = UnixStream::pair().unwrap();
        map.insert(Channel::try_from(b).unwrap(), Reader { name: "good", panics: false, log: log.clone() })
            .unwrap();
        let options = LoopOptions::new().timeout(Duration::ZERO).count(1).catch_panics(true);
        map.run(options).unwrap();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(map)));
        assert!(dropped.is_ok(), "{backend}: the panic escaped the map's drop");
        assert_eq!(log.count("bad dropped"), 1, "{backend}: {:?}", log.events());
        drop((_peer, _peer_b));
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
}

/// With `catch_panics`, a channel removed from another's callback whose
/// handler panics in `Drop` is the one reported: the callback that removed
/// it goes on, and so does its channel.
#[test]
fn a_removed_channel_whose_drop_panics_does_not_close_the_channel_that_removed_it() {
    let _fds = exclusive();
    for backend in util::backends() {
        let before = open_fds();
        {
            let log = Log::default();
            let mut map = util::map(backend);
            let (a, _peer_a) = UnixStream::pair().unwrap();
            let victim =
                map.insert(Channel::try_from(a).unwrap(), DropPanics { name: "victim", log: log.clone() });
            let victim = victim.unwrap();
            let (b, mut peer_b) = UnixStream::pair().unwrap();
            let remover = map.insert(Channel::try_from(b).unwrap(), Remover { victim }).unwrap();
            peer_b.write_all(b"x").unwrap();
            let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1).catch_panics(true);
            for _ in 0..3 {
                map.run(options).unwrap();
            }
            assert!(!map.contains(victim), "{backend}");
            assert_eq!(log.count("victim dropped"), 1, "{backend}: {:?}", log.events());
            assert_eq!(log.count("victim close"), 0, "{backend}: a removal calls no handle_close");
            assert!(map.contains(remover), "{backend}: closed for the panic of the channel it removed");
            let mut buf = [0u8; 1];
            peer_b.set_nonblocking(true).unwrap();
            assert!(
                io::Read::read(&mut peer_b, &mut buf).is_err(),
                "{backend}: the remover's channel was closed"
            );
        }
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
}

// ---- a panic in every kind of callback ----

/// Panics in `handle_read` of a file.
struct FilePanics;

impl rolecore::FileHandler for FilePanics {
    fn handle_read(&mut self, _: &mut Channel<rolecore::FileFd>, _: &mut Ctx<'_>) -> io::Result<()> {
        panic!("a file's handle_read panics (on purpose)")
    }
}

/// Panics in `handle_read` of a datagram socket.
struct DatagramPanics;

impl rolecore::DatagramHandler for DatagramPanics {
    fn handle_read(&mut self, _: &mut Channel<rolecore::Datagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        panic!("a datagram socket's handle_read panics (on purpose)")
    }
}

/// Panics in `handle_accepted`, holding the new connection.
struct AcceptPanics;

impl AcceptHandler for AcceptPanics {
    fn handle_accepted(
        &mut self,
        _: Channel<Connected>,
        _: rolecore::Address,
        _: &mut Ctx<'_>,
    ) -> io::Result<()> {
        panic!("handle_accepted panics (on purpose)")
    }
}

/// A mailbox handler: message 1 panics, others fail, and the error
/// callback panics.
struct MailboxPanics;

impl rolecore::MailboxHandler<u8> for MailboxPanics {
    fn handle_message(&mut self, message: u8, _: &mut Ctx<'_>) -> io::Result<()> {
        if message == 1 {
            panic!("handle_message panics (on purpose)");
        }
        Err(io::Error::other("failed"))
    }
    fn handle_error(&mut self, _: io::Error, _: &mut Ctx<'_>) {
        panic!("a mailbox's handle_error panics (on purpose)")
    }
}

/// Where a chat handler panics.
#[derive(Clone, Copy, Debug)]
enum ChatPanic {
    Collect,
    Found,
    Producer,
}

/// A producer whose `more` panics.
struct ProducerPanics;

impl rolecore::Producer for ProducerPanics {
    fn more(&mut self) -> Vec<u8> {
        panic!("Producer::more panics (on purpose)")
    }
}

struct ChatPanics(ChatPanic);

impl rolecore::ChatHandler for ChatPanics {
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut rolecore::AsyncChat) -> io::Result<()> {
        if let ChatPanic::Collect = self.0 {
            panic!("collect_incoming_data panics (on purpose)");
        }
        chat.collect(data);
        Ok(())
    }
    fn found_terminator(&mut self, chat: &mut rolecore::AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        match self.0 {
            ChatPanic::Found => panic!("found_terminator panics (on purpose)"),
            ChatPanic::Producer => chat.push_with_producer(ProducerPanics),
            ChatPanic::Collect => Ok(()),
        }
    }
}

/// Runs `map` a few iterations; returns how many panics reached the caller.
fn run_catching(map: &mut Map, catch: bool) -> usize {
    let options = LoopOptions::new().timeout(Duration::from_millis(10)).count(1).catch_panics(catch);
    (0..5)
        .filter(|_| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.run(options))).is_err())
        .count()
}

/// A panic in each kind of callback — a file's, a datagram socket's, a
/// listener's `handle_accepted`, a mailbox's `handle_message` and
/// `handle_error`, a `Kept` handler's, a chat's `collect_incoming_data` and
/// `found_terminator`, a `Producer::more` — closes that channel alone
/// (caught) or reaches the caller once (not caught); either way the map no
/// longer holds it, a channel beside it is still served, a `Kept` handle
/// can be used again, and no descriptor is left open.
#[test]
fn a_panic_in_each_kind_of_callback_closes_its_channel_alone_and_leaks_nothing() {
    let _fds = exclusive();
    for catch in [true, false] {
        let before = open_fds();
        {
            let log = Log::default();
            let mut map = util::map(Backend::Epoll);
            let (b, mut peer_b) = UnixStream::pair().unwrap();
            let bystander = map
                .insert(
                    Channel::try_from(b).unwrap(),
                    Reader { name: "bystander", panics: false, log: log.clone() },
                )
                .unwrap();
            let mut tokens = Vec::new();
            let (reader, mut writer) = std::io::pipe().unwrap();
            writer.write_all(b"x").unwrap();
            tokens.push(("file", map.insert(Channel::file(reader.into()).unwrap(), FilePanics).unwrap()));
            let mut udp = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
            let to = udp.local_addr().unwrap();
            udp.send_to(b"x", &to).unwrap();
            tokens.push(("datagram", map.insert(udp, DatagramPanics).unwrap()));
            let (listener, addr) = util::tcp_listener();
            tokens.push(("listener", map.insert(listener, AcceptPanics).unwrap()));
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (token, sender) = map.mailbox(MailboxPanics).unwrap();
            sender.send(1).unwrap();
            tokens.push(("mailbox message", token));
            let (token, failing) = map.mailbox(MailboxPanics).unwrap();
            failing.send(2).unwrap();
            tokens.push(("mailbox error", token));
            let kept = rolecore::Kept::new(Reader { name: "kept", panics: true, log: log.clone() });
            let (k, mut peer_k) = UnixStream::pair().unwrap();
            tokens.push(("kept", map.insert(Channel::try_from(k).unwrap(), kept.clone()).unwrap()));
            peer_k.write_all(b"x").unwrap();
            let mut chat_peers = Vec::new();
            for how in [ChatPanic::Collect, ChatPanic::Found, ChatPanic::Producer] {
                let (c, mut peer_c) = UnixStream::pair().unwrap();
                let chat =
                    rolecore::AsyncChat::new(Channel::try_from(c).unwrap(), rolecore::Terminator::CRLF);
                tokens.push((
                    ["collect", "found", "producer"][how as usize],
                    map.insert(chat, ChatPanics(how)).unwrap(),
                ));
                peer_c.write_all(b"line\r\n").unwrap();
                chat_peers.push(peer_c);
            }
            let mut escaped = 0;
            for _ in 0..10 {
                escaped += run_catching(&mut map, catch);
            }
            for (what, token) in &tokens {
                assert!(
                    !map.contains(*token),
                    "catch {catch}: the {what} whose callback panicked is in the map"
                );
            }
            if catch {
                assert_eq!(escaped, 0, "a panic escaped the loop that catches them");
            } else {
                assert_eq!(escaped, tokens.len(), "each uncaught panic reaches the caller once");
            }
            assert!(
                sender.is_closed() && failing.is_closed(),
                "catch {catch}: a panicked mailbox still takes messages"
            );
            assert_eq!(kept.with(|_| ()), Some(()), "catch {catch}: the Kept handler is still borrowed");
            assert!(!kept.is_shared(), "catch {catch}: the map still holds the Kept clone");
            assert_eq!(map.len(), 1, "catch {catch}: the map counts closed channels");
            peer_b.write_all(b"ok").unwrap();
            assert!(util::run_until(&mut map, |_| log.contains("bystander read 2")), "catch {catch}");
            assert!(map.contains(bystander), "catch {catch}");
        }
        assert_eq!(open_fds(), before, "catch {catch}: descriptors leaked");
    }
}
