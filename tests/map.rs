//! The map: channels inserted and removed from callbacks, a refused insert
//! giving the channel and handler back, removed or closed channels getting
//! nothing more, `close_all` (T3, T4), the thread's default map
//! (`with_socket_map`), a handler that swaps its channel, and a `Map` that
//! cannot leave its thread (item 10).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self};
use std::time::{Duration, Instant};

use rolecore::{
    Backend, Channel, Connected, Ctx, FileFd, FileHandler, InsertError, Listening, LoopOptions, Map,
    StreamHandler, Token,
};
use util::cpython::*;
use util::probe::*;
use util::*;

/// `dummychannel`: counts its drops (its socket's `close`).
struct Counted {
    dropped: Rc<Cell<usize>>,
    closes: Rc<Cell<usize>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.dropped.set(self.dropped.get() + 1);
    }
}

impl StreamHandler for Counted {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
    }
}

/// The peers of the channels in a map, with their handlers' drop and
/// `handle_close` counts.
type TenChannels = (Vec<Channel<Connected>>, Rc<Cell<usize>>, Rc<Cell<usize>>);

/// Ten channels in `map`; returns their peers and the drop and close counts.
fn ten_channels(map: &mut Map) -> TenChannels {
    let (dropped, closes) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let peers = (0..10)
        .map(|_| {
            let (ours, peer) = Channel::pair().expect("socketpair");
            let handler = Counted { dropped: Rc::clone(&dropped), closes: Rc::clone(&closes) };
            map.insert(ours, handler).expect("insert");
            peer
        })
        .collect();
    (peers, dropped, closes)
}

/// Every peer sees the end of the stream: its channel's descriptor closed.
/// Waits a little: a process that another test spawns holds copies of every
/// descriptor between its fork and its exec.
fn all_see_eof(peers: &mut [Channel<Connected>]) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    peers.iter_mut().all(|p| {
        loop {
            match p.recv(&mut [0u8; 8]) {
                Ok(0) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                _ => return false,
            }
        }
    })
}

/// T3 `test_closeall` (A12): `close_all(map)` closes every channel of a
/// given map and empties it. Handlers are dropped; asyncore's `close()` did
/// not call `handle_close`, nor does rolecore's.
#[test]
fn t03_closeall() {
    let mut map = util::map(Backend::default());
    let (mut peers, dropped, closes) = ten_channels(&mut map);
    assert_eq!(map.len(), 10);
    rolecore::close_all(Some(&mut map)).expect("close_all");
    assert_eq!(map.len(), 0, "the map is empty");
    assert_eq!(dropped.get(), 10, "every handler was dropped");
    assert_eq!(closes.get(), 0, "close() is not handle_close");
    assert!(all_see_eof(&mut peers), "every descriptor was closed");
}

/// T4 `test_closeall_default` (A3, A12, P20): `close_all()` with no map
/// closes the default map's channels. rolecore's default map
/// (`with_socket_map`) is per thread: another thread's is left alone.
#[test]
fn t04_closeall_default() {
    let (mut peers, dropped, closes) = rolecore::with_socket_map(ten_channels).expect("the default map");
    // Another thread's default map holds one channel through this close_all.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let other = thread::spawn(move || {
        let (ours, _peer) = Channel::pair().unwrap();
        rolecore::with_socket_map(|m| m.insert(ours, BaseTestHandler).map(drop).unwrap()).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let len = rolecore::with_socket_map(|m| m.len()).unwrap();
        rolecore::close_all(None).unwrap();
        len
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("the other thread is ready");
    rolecore::close_all(None).expect("close_all");
    go_tx.send(()).unwrap();
    assert_eq!(rolecore::with_socket_map(|m| m.len()).unwrap(), 0, "the default map is empty");
    assert_eq!(dropped.get(), 10, "every handler was dropped");
    assert_eq!(closes.get(), 0, "close() is not handle_close");
    assert!(all_see_eof(&mut peers), "every descriptor was closed");
    assert_eq!(other.join().unwrap(), 1, "another thread's default map is its own");
}

// Item 10 (mio `register_during_poll`, polling `concurrent_add`): a map cannot
// reach another thread, so nothing can register into it during a wait.
static_assertions::assert_not_impl_any!(Map: Send, Sync);

/// Marks a handler so the test can tell it came back unchanged.
struct Marked(u32);

impl FileHandler for Marked {
    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// An epoll instance at the top of the deepest chain of epoll instances the
/// kernel accepts, with the chain below it (which must stay open). Watching
/// it from one more epoll instance fails with `ELOOP`.
fn deepest_epoll_chain() -> io::Result<(OwnedFd, Vec<OwnedFd>)> {
    use rustix::event::epoll;
    let mut below = Vec::new();
    let mut top = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    for _ in 0..16 {
        let next = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        match epoll::add(&next, &top, epoll::EventData::new_u64(0), epoll::EventFlags::IN) {
            Ok(()) => below.push(std::mem::replace(&mut top, next)),
            Err(rustix::io::Errno::LOOP) => return Ok((top, below)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("the kernel accepted 16 nested epoll instances"))
}

/// Item 4 (mio `double_register_different_token`, polling `insert_twice`,
/// calloop `duplicate_insert`, `insert_bad_source`; the bug class of calloop
/// PR #153 and async-io #154): an insert the poller refuses gives the channel
/// and the handler back unchanged, and disturbs nothing already registered.
/// Also: a backend switch the kernel refuses keeps the old backend.
#[test]
fn a_refused_insert_gives_channel_and_handler_back_and_keeps_the_others() -> io::Result<()> {
    let _fds = shared();
    let log = Log::default();
    let mut m = map(Backend::Epoll);
    let (ours, mut peer) = Channel::pair()?;
    let probe = Probe::new("a", &log);
    let data = probe.data.clone();
    let first = m.insert(ours, probe)?;

    let (top, _chain) = deepest_epoll_chain()?;
    let raw = top.as_raw_fd();
    let channel = Channel::file(top)?;
    let InsertError { error, channel, handler } = match m.insert(channel, Marked(7)) {
        Ok(token) => panic!("the kernel accepted an epoll chain that is too deep: {token:?}"),
        Err(e) => e,
    };
    assert_eq!(error.raw_os_error(), Some(rustix::io::Errno::LOOP.raw_os_error()), "{error}");
    assert_eq!(channel.fileno(), raw, "another channel came back");
    assert_eq!(handler.0, 7, "another handler came back");
    assert_eq!(m.len(), 1);
    assert!(m.contains(first));

    // The refusal did not unregister the channel that was there first.
    send_all(&mut peer, b"still here");
    assert!(run_until(&mut m, |_| data.borrow().len() == 10), "the first channel lost its registration");
    assert_eq!(*data.borrow(), b"still here");

    // The same descriptor is fine for poll; a switch back to epoll is refused
    // as a whole, and the map keeps waiting with poll, every channel served.
    let mut m = map(Backend::Poll);
    let (ours, mut peer) = Channel::pair()?;
    let probe = Probe::new("b", &log);
    let data = probe.data.clone();
    m.insert(ours, probe)?;
    m.insert(channel, handler)?;
    let err = m.set_backend(Backend::Epoll).expect_err("epoll accepted a chain that is too deep");
    assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::LOOP.raw_os_error()), "{err}");
    assert_eq!(m.backend(), Backend::Poll);
    assert_eq!(m.len(), 2);
    send_all(&mut peer, b"served");
    assert!(run_until(&mut m, |_| data.borrow().len() == 6), "the map stopped serving after the refusal");
    Ok(())
}

/// Reads what is there, then closes every other channel it knows.
struct RemovesOthers {
    probe: Probe,
    all: Rc<RefCell<Vec<Token>>>,
}

impl RemovesOthers {
    fn remove_others(&self, cx: &mut Ctx<'_>) {
        let me = cx.token();
        for &token in self.all.borrow().iter().filter(|&&t| t != me) {
            cx.remove(token);
        }
    }
}

impl StreamHandler for RemovesOthers {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        record_read(&self.probe, |buf| ch.recv(buf))?;
        self.remove_others(cx);
        Ok(())
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.probe.push("timeout");
        self.remove_others(cx);
        Ok(())
    }
}

/// Reads and writes, and closes itself in the read.
struct CloseInRead(Probe);

impl StreamHandler for CloseInRead {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        record_read(&self.0, |buf| ch.recv(buf))?;
        cx.close();
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("write");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// Item 6 (mio `issue_1205`, `tcp_no_events_after_deregister`,
/// `reregister_different_interest_without_poll`): after a channel is removed
/// or closed, nothing more reaches it — not readiness already collected in
/// the same wait, not a deadline already due in the same turn, not the rest
/// of its own wake-up, not a later wait.
#[test]
fn no_event_reaches_a_channel_after_it_was_removed_or_closed() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        // Removed from outside the loop, with data waiting.
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"unread");
        let token = m.insert(ours, Probe::new("gone", &log))?;
        assert!(m.remove(token));
        run_iterations(&mut m, 3);
        assert!(log.events().is_empty(), "{backend}: {:?}", log.events());

        // Removed by another channel's callback in the same batch: both are
        // ready in one wait, and whichever runs first removes the other.
        let log = Log::default();
        let mut m = map(backend);
        let all = Rc::new(RefCell::new(Vec::new()));
        let mut peers = Vec::new();
        for name in ["a", "b"] {
            let (ours, mut peer) = Channel::pair()?;
            send_all(&mut peer, name.as_bytes());
            peers.push(peer);
            let token = m.insert(ours, RemovesOthers { probe: Probe::new(name, &log), all: all.clone() })?;
            all.borrow_mut().push(token);
        }
        m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1))?;
        run_iterations(&mut m, 3);
        let reads: Vec<_> = log.events().into_iter().filter(|e| e.ends_with(":read")).collect();
        assert_eq!(reads.len(), 1, "{backend}: the removed channel was dispatched: {:?}", log.events());
        assert_eq!(m.len(), 1, "{backend}");
        let survivor = if reads[0] == "a:read" { 0 } else { 1 };
        assert!(m.contains(all.borrow()[survivor]), "{backend}");
        assert!(!m.contains(all.borrow()[1 - survivor]), "{backend}");

        // The same with deadlines: both are due in one turn, whichever fires
        // first removes the other, whose timeout is then not delivered.
        let log = Log::default();
        let mut m = map(backend);
        let all = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b"] {
            let (ours, peer) = Channel::pair()?;
            peers.push(peer);
            let token = m.insert(ours, RemovesOthers { probe: Probe::new(name, &log), all: all.clone() })?;
            all.borrow_mut().push(token);
        }
        let due = Instant::now();
        for &token in all.borrow().iter() {
            assert!(m.set_deadline(token, Some(due)));
        }
        m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1))?;
        run_iterations(&mut m, 3);
        let timeouts = log.events().iter().filter(|e| e.ends_with(":timeout")).count();
        assert_eq!(timeouts, 1, "{backend}: a removed channel's deadline fired: {:?}", log.events());
        assert_eq!(m.len(), 1, "{backend}");

        // Closed by its own read while also writable: the write of the same
        // wake-up is not delivered, nor handle_close.
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"x");
        m.insert(ours, CloseInRead(Probe::new("c", &log)))?;
        run_iterations(&mut m, 3);
        assert_eq!(log.events(), ["c:read", "c:data"], "{backend}");
        assert!(m.is_empty(), "{backend}");
    }
    Ok(())
}

/// The token of the channel a [`Spawner`] inserted, and the bytes it read.
type Child = Rc<RefCell<Option<(Token, Rc<RefCell<Vec<u8>>>)>>>;

/// Makes a new connected pair, sends on one end and puts the other in the map.
struct Spawner {
    log: Log,
    child: Child,
    peers: Vec<Channel<Connected>>,
}

impl StreamHandler for Spawner {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 16])?;
        if n == 0 || self.child.borrow().is_some() {
            return Ok(());
        }
        let (theirs, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"hello from a child");
        self.peers.push(peer);
        let probe = Probe::new("child", &self.log);
        let data = probe.data.clone();
        let token = cx.insert(theirs, probe)?;
        *self.child.borrow_mut() = Some((token, data));
        Ok(())
    }
}

/// Item 9 (calloop #109, PRs #110/#115/#117): a channel inserted from inside
/// a callback is live at once and served by the same loop.
#[test]
fn a_channel_inserted_from_a_callback_is_served() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let child = Rc::new(RefCell::new(None));
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"go");
        let parent = m.insert(ours, Spawner { log: log.clone(), child: child.clone(), peers: Vec::new() })?;
        m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1))?;
        let (token, data) = child.borrow().clone().expect("the callback did not insert");
        assert!(m.contains(token), "{backend}");
        assert!(m.contains(parent), "{backend}");
        assert_eq!(m.len(), 2, "{backend}");
        assert!(run_until(&mut m, |_| data.borrow().len() == 18), "{backend}: {:?}", log.events());
        assert_eq!(*data.borrow(), b"hello from a child", "{backend}");
    }
    Ok(())
}

/// Whether the peer of a closed channel sees the end of the stream.
fn peer_sees_eof(peer: &mut Channel<Connected>) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match peer.recv(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    false
}

fn tcp_listener() -> (Channel<Listening>, SocketAddr) {
    let listener =
        Channel::tcp_v4().expect("socket").bind("127.0.0.1:0").expect("bind").listen(16).expect("listen");
    let addr = listener.local_addr().expect("local_addr").inet().expect("an IP address");
    (listener, addr)
}

#[test]
fn channel_inserted_from_handle_accepted_receives_events() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (listener, addr) = tcp_listener();
        let data = Rc::new(RefCell::new(Vec::new()));
        let server = InsertingServer { inserted: Vec::new(), data: Rc::clone(&data) };
        let listener = map.insert(listener, server).expect("insert");
        let mut client = TcpStream::connect(addr).expect("connect");
        client.write_all(b"hello, inserted channel").expect("client write");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"hello, inserted channel"),
            "{backend}: the inserted channel read the client's bytes; got {:?}",
            String::from_utf8_lossy(&data.borrow())
        );
        let inserted = map.handler::<InsertingServer>(listener).expect("server").inserted.clone();
        assert_eq!(inserted.len(), 1, "{backend}");
        assert!(map.contains(inserted[0]), "{backend}: the token from Ctx::insert names a live channel");
        assert!(map.handler::<Reader>(inserted[0]).is_some(), "{backend}");
        assert_eq!(map.len(), 2, "{backend}");
    }
}

/// Always writable; on its first write removes the other channel.
struct Remover {
    name: &'static str,
    other: Option<Token>,
    log: Log,
}

impl StreamHandler for Remover {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push(self.name);
        if let Some(other) = self.other.take() {
            let removed = cx.remove(other);
            self.log.push(format!("{} removed other: {removed}", self.name));
        }
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push(format!("{} close", self.name));
    }
}

#[test]
fn channel_removed_from_another_callback_gets_nothing_more_even_if_already_ready() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (a, mut a_peer) = Channel::pair().expect("socketpair");
        let (b, mut b_peer) = Channel::pair().expect("socketpair");
        let ta = map.insert(a, Remover { name: "A", other: None, log: log.clone() }).expect("insert");
        let tb = map.insert(b, Remover { name: "B", other: None, log: log.clone() }).expect("insert");
        map.handler_mut::<Remover>(ta).expect("A").other = Some(tb);
        map.handler_mut::<Remover>(tb).expect("B").other = Some(ta);
        // Both are writable: one wait reports both, and whichever runs first
        // removes the other, whose readiness is already collected.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
        let events = log.events();
        let (first, removed, removed_peer) = match events.first().map(String::as_str) {
            Some("A") => ("A", tb, &mut b_peer),
            Some("B") => ("B", ta, &mut a_peer),
            _ => panic!("{backend}: one of the two wrote first: {events:?}"),
        };
        assert_eq!(
            events,
            [first.to_string(), format!("{first} removed other: true")],
            "{backend}: the removed channel got no handle_write (nor handle_close) in the same batch"
        );
        assert!(!map.contains(removed), "{backend}");
        assert_eq!(map.len(), 1, "{backend}");
        util::run_iterations(&mut map, 3);
        assert_eq!(log.count(first), 4, "{backend}: the survivor goes on: {:?}", log.events());
        assert_eq!(log.events().len(), 5, "{backend}: and only the survivor: {:?}", log.events());
        assert!(peer_sees_eof(removed_peer), "{backend}: Ctx::remove closed the descriptor");
    }
}

#[test]
fn close_all_empties_the_map_and_closes_every_descriptor() {
    const PAIRS: usize = 100;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let mut peers = Vec::new();
        for _ in 0..PAIRS {
            let (ours, peer) = Channel::pair().expect("socketpair");
            map.insert(ours, Reader::new()).expect("insert");
            peers.push(peer);
        }
        let (listener, addr) = tcp_listener();
        map.insert(listener, InsertingServer { inserted: Vec::new(), data: Rc::default() }).expect("insert");
        util::run_iterations(&mut map, 1);
        assert_eq!(map.len(), PAIRS + 1, "{backend}");
        let before = util::open_fds();
        map.close_all();
        let after = util::open_fds();
        assert!(map.is_empty() && map.tokens().is_empty(), "{backend}: close_all empties the map");
        // Other tests run in parallel and open descriptors too: allow slack,
        // but at least half of the 101 descriptors must be gone.
        assert!(
            before >= after + PAIRS / 2,
            "{backend}: open descriptors went from {before} to {after} only"
        );
        for (i, peer) in peers.iter_mut().enumerate() {
            assert!(peer_sees_eof(peer), "{backend}: channel {i} was closed");
        }
        let refused = TcpStream::connect(addr).expect_err("the listener is closed");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "{backend}");
        // Running an emptied map returns at once.
        map.run(LoopOptions::new().no_timeout()).expect("loop");
        rolecore::close_all(Some(&mut map)).expect("close_all of an empty map");
    }
}

#[test]
fn default_map_with_socket_map_loop_and_close_all() {
    for backend in util::backends() {
        assert_eq!(
            rolecore::with_socket_map(|m| m.len()).expect("default map"),
            0,
            "{backend}: starts empty"
        );
        let (ours, mut peer) = Channel::pair().expect("socketpair");
        let token = rolecore::with_socket_map(|m| m.insert(ours, AlwaysWritable::default()))
            .expect("default map")
            .expect("insert");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, None, Some(4))
            .expect("loop_ on the default map");
        let (writes, used) =
            rolecore::with_socket_map(|m| (writes(m, token), m.backend())).expect("default map");
        assert_eq!(writes, 4, "{backend}: loop_(.., None, Some(4)) ran four iterations of the default map");
        assert_eq!(used, backend, "{backend}: loop_ used the asked backend");
        rolecore::close_all(None).expect("close_all on the default map");
        assert!(rolecore::with_socket_map(|m| m.is_empty()).expect("default map"), "{backend}: emptied");
        assert!(peer_sees_eof(&mut peer), "{backend}: close_all(None) closed the descriptor");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, None, None)
            .expect("empty default map returns");
    }
}

#[test]
fn default_map_is_per_thread() {
    let (ours, _peer) = Channel::pair().expect("socketpair");
    rolecore::with_socket_map(|m| m.insert(ours, Reader::new())).expect("default map").expect("insert");
    let elsewhere = std::thread::spawn(|| rolecore::with_socket_map(|m| m.len()).expect("default map"))
        .join()
        .expect("thread");
    assert_eq!(elsewhere, 0, "another thread has its own default map");
    assert_eq!(rolecore::with_socket_map(|m| m.len()).expect("default map"), 1);
    rolecore::close_all(None).expect("close_all");
}

#[test]
fn reentrant_with_socket_map_is_an_error_not_a_panic() {
    let inner = rolecore::with_socket_map(|_| rolecore::with_socket_map(|m| m.len()).map_err(|e| e.kind()))
        .expect("the outer call works");
    assert_eq!(inner, Err(io::ErrorKind::ResourceBusy), "the nested call is an error");
    // And the map is usable again afterwards.
    assert_eq!(rolecore::with_socket_map(|m| m.len()).expect("default map"), 0);
}

/// From inside the default map's own loop, reaches for the default map.
struct ReachesForDefaultMap {
    results: Rc<RefCell<Vec<Result<usize, io::ErrorKind>>>>,
}

impl StreamHandler for ReachesForDefaultMap {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.results.borrow_mut().push(rolecore::with_socket_map(|m| m.len()).map_err(|e| e.kind()));
        Ok(())
    }
}

#[test]
fn with_socket_map_from_a_handler_of_the_default_loop_is_an_error() {
    for backend in util::backends() {
        let results = Rc::new(RefCell::new(Vec::new()));
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let handler = ReachesForDefaultMap { results: Rc::clone(&results) };
        rolecore::with_socket_map(|m| m.insert(ours, handler)).expect("default map").expect("insert");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, None, Some(2)).expect("loop_");
        assert_eq!(
            *results.borrow(),
            [Err(io::ErrorKind::ResourceBusy), Err(io::ErrorKind::ResourceBusy)],
            "{backend}: an error in each callback, no panic"
        );
        rolecore::close_all(None).expect("close_all");
    }
}

/// Swaps the channel it is lent for another one on its first write, or,
/// `on_timeout`, in its `handle_timeout` (then it wants nothing).
struct Swapper {
    spare: Option<Channel<Connected>>,
    /// Where the channel it was given ends up: kept open, so the test can
    /// tell the map closed the spare and not the original.
    original: Option<Channel<Connected>>,
    on_timeout: bool,
}

impl Swapper {
    fn new(spare: Channel<Connected>, on_timeout: bool) -> Swapper {
        Swapper { spare: Some(spare), original: None, on_timeout }
    }

    fn swap(&mut self, ch: &mut Channel<Connected>) {
        if let Some(mut spare) = self.spare.take() {
            std::mem::swap(ch, &mut spare);
            self.original = Some(spare);
        }
    }
}

impl StreamHandler for Swapper {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        !self.on_timeout
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.swap(ch);
        Ok(())
    }

    fn handle_timeout(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.swap(ch);
        Ok(())
    }
}

#[test]
fn a_handler_that_swaps_its_channel_for_another_loses_the_slot_and_the_spare_is_closed() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, _a_peer) = Channel::pair().expect("pair");
        let (spare, mut spare_peer) = Channel::pair().expect("pair");
        let token = map.insert(a, Swapper::new(spare, false)).expect("insert");
        // One iteration: the write swaps. The slot now holds a channel whose
        // descriptor is not the one the poller watches, so the map must not
        // keep it: it closes the entry (the spare, and the handler with the
        // original channel it kept).
        map.poll(Some(Duration::from_secs(1))).expect("poll");
        assert!(!map.contains(token), "{backend}: the swapped entry left the map");
        assert!(map.is_empty(), "{backend}");
        // The spare was closed with the entry: its peer reads end of stream.
        // (Still open, the non-blocking read would fail with would-block.)
        let mut buf = [0u8; 1];
        assert_eq!(spare_peer.recv(&mut buf).expect("end of stream"), 0, "{backend}: spare closed");
    }
}

/// The swap is reported, once, with what the handler did wrong: the map
/// says the handler replaced the channel it was lent, on every backend
/// (with poll and select, which rebuild nothing, the report is all a
/// program hears of it).
#[test]
fn a_handler_that_swaps_its_channel_is_reported() {
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    rolecore::report::set_log_hook(Some(Box::new(move |_, message| {
        sink.lock().unwrap().push(message.to_string())
    })));
    let mut swaps = 0;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, _a_peer) = Channel::pair().expect("pair");
        let (spare, _spare_peer) = Channel::pair().expect("pair");
        map.insert(a, Swapper::new(spare, false)).expect("insert");
        map.poll(Some(Duration::from_secs(1))).expect("poll");
        assert!(map.is_empty(), "{backend}");
        swaps += 1;
    }
    rolecore::report::set_log_hook(None);
    let reports = reports.lock().unwrap();
    let swapped: Vec<_> = reports.iter().filter(|r| r.contains("replaced the channel")).collect();
    // At least one per swap here (another test of this file may swap too).
    assert!(swapped.len() >= swaps, "{reports:?}");
    assert!(swapped.iter().all(|r| r.contains("must not swap")), "{swapped:?}");
}

/// A stream handler that only carries a tag.
struct Tagged(u32);

impl StreamHandler for Tagged {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

/// Inside its own callback, swaps its channel out, tries to insert it into
/// the map while its slot is busy, and swaps it back.
struct ReinsertsItself {
    spare: Option<Channel<Connected>>,
    refused: Rc<RefCell<Vec<io::ErrorKind>>>,
    data: Rc<RefCell<Vec<u8>>>,
}

impl StreamHandler for ReinsertsItself {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        if let Some(mut other) = self.spare.take() {
            std::mem::swap(ch, &mut other);
            // `other` is now this callback's own channel, its slot busy.
            match cx.insert(other, Tagged(1)) {
                Ok(token) => panic!("a channel was inserted on a busy descriptor: {token:?}"),
                Err(InsertError { error, channel, handler }) => {
                    assert_eq!(handler.0, 1);
                    self.refused.borrow_mut().push(error.kind());
                    let mut channel = channel;
                    std::mem::swap(ch, &mut channel);
                    self.spare = Some(channel);
                }
            }
        }
        Ok(())
    }
}

/// Insert errors: a channel on a descriptor whose slot is busy (its own
/// callback is running) is refused with `AlreadyExists`, the channel and
/// handler given back, on every backend (poll and select would otherwise
/// watch it twice); the channel in the slot is served on as before.
#[test]
fn an_insert_on_a_busy_descriptor_is_refused_and_gives_everything_back() -> io::Result<()> {
    for backend in backends() {
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        let (spare, _spare_peer) = Channel::pair()?;
        let refused = Rc::new(RefCell::new(Vec::new()));
        let data = Rc::new(RefCell::new(Vec::new()));
        let handler = ReinsertsItself { spare: Some(spare), refused: refused.clone(), data: data.clone() };
        let token = m.insert(ours, handler)?;
        send_all(&mut peer, b"one");
        assert!(run_until(&mut m, |_| data.borrow().len() == 3), "{backend}");
        assert_eq!(*refused.borrow(), [io::ErrorKind::AlreadyExists], "{backend}");
        assert_eq!(m.len(), 1, "{backend}");
        assert!(m.contains(token), "{backend}");
        send_all(&mut peer, b"two");
        assert!(run_until(&mut m, |_| data.borrow().len() == 6), "{backend}: no longer served");
        assert_eq!(*data.borrow(), b"onetwo");
    }
    Ok(())
}

/// A swap in `handle_timeout` is caught as one in a wake-up is: a deadline
/// is the other way into an entry, and the map checks the descriptor after
/// it too. The entry leaves the map at once, with the spare it now holds.
#[test]
fn a_handler_that_swaps_its_channel_in_handle_timeout_loses_the_slot() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, _a_peer) = Channel::pair().expect("pair");
        let (spare, mut spare_peer) = Channel::pair().expect("pair");
        let token = map.insert(a, Swapper::new(spare, true)).expect("insert");
        assert!(map.set_deadline(token, Some(map.now())));
        map.poll(Some(Duration::from_secs(1))).expect("poll");
        assert!(!map.contains(token), "{backend}: the swapped entry stayed in the map");
        assert!(map.is_empty(), "{backend}");
        let mut buf = [0u8; 1];
        assert_eq!(spare_peer.recv(&mut buf).expect("end of stream"), 0, "{backend}: spare closed");
    }
}
