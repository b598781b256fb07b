//! Loop and map semantics through the public API, on every backend: `count`,
//! the empty map, `stop`, timeouts, changing the map from callbacks, stale
//! tokens (D20), `close_all`, the thread's default map, interest refreshes,
//! switching backends, and regular files.
//!
//! Each test loops over `util::backends()` and names the backend in its
//! assertion messages. Every loop is bounded by `util::run_until` (5 s) or an
//! explicit iteration count; no test asserts an upper bound on time.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{
    AcceptHandler, Address, Backend, Channel, Connected, Ctx, FileFd, FileHandler, Listening, LoopOptions,
    Map, Refresh, StreamHandler, Token,
};
use util::Log;

// ---- helpers -------------------------------------------------------------------

/// A channel that is always writable and never reads: one handle_write per
/// iteration. Optionally stops the loop after `stop_at` writes.
#[derive(Default)]
struct AlwaysWritable {
    writes: u32,
    stop_at: Option<u32>,
}

impl StreamHandler for AlwaysWritable {
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
        self.writes += 1;
        if self.stop_at == Some(self.writes) {
            cx.stop();
        }
        Ok(())
    }
}

fn writes(map: &Map, token: Token) -> u32 {
    map.handler::<AlwaysWritable>(token).expect("the AlwaysWritable handler").writes
}

/// Reads whatever arrives into a shared buffer; counts handle_close.
struct Reader {
    data: Rc<RefCell<Vec<u8>>>,
    closes: Rc<Cell<u32>>,
}

impl Reader {
    fn new() -> Self {
        Reader { data: Rc::default(), closes: Rc::default() }
    }
}

impl StreamHandler for Reader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
    }
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

// ---- count, empty map, stop, timeout ----------------------------------------------------

#[test]
fn count_zero_runs_nothing_and_count_n_runs_exactly_n_iterations() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, AlwaysWritable::default()).expect("insert");
        let options = LoopOptions::new().timeout(Duration::from_secs(5));
        map.run(options.count(0)).expect("loop");
        assert_eq!(writes(&map, token), 0, "{backend}: count 0 runs no iteration");
        map.run(options.count(1)).expect("loop");
        assert_eq!(writes(&map, token), 1, "{backend}: count 1 runs one iteration");
        map.run(options.count(7)).expect("loop");
        assert_eq!(writes(&map, token), 8, "{backend}: count 7 runs seven more iterations");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, Some(&mut map), Some(3)).expect("loop_");
        assert_eq!(writes(&map, token), 11, "{backend}: loop_ with count 3 runs three iterations");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, Some(&mut map), Some(0)).expect("loop_");
        assert_eq!(writes(&map, token), 11, "{backend}: loop_ with count 0 runs none");
        assert_eq!(map.backend(), backend, "{backend}");
    }
}

#[test]
fn empty_map_returns_at_once_even_without_timeout() {
    for backend in util::backends() {
        // The map lives on a helper thread so a loop that waited on an empty
        // map would hang that thread, not the test: the 5 s watchdog is a
        // hang detector, not a timing assertion.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut map = util::map(backend);
            let run = map.run(LoopOptions::new().no_timeout().backend(backend)).is_ok();
            let explicit = rolecore::loop_(None, backend, Some(&mut map), None).is_ok();
            let default_map = rolecore::loop_(None, backend, None, None).is_ok();
            let _ = done.send((run, explicit, default_map));
        });
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(5)),
            Ok((true, true, true)),
            "{backend}: an empty map (explicit or default) returns at once, with Ok"
        );
    }
}

#[test]
fn stop_from_a_callback_ends_the_loop_with_the_map_intact() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, AlwaysWritable { writes: 0, stop_at: Some(3) }).expect("insert");
        let (other, _other_peer) = Channel::pair().expect("socketpair");
        let other = map.insert(other, Reader::new()).expect("insert");
        // Without stop this would run 1000 iterations.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1000)).expect("loop");
        assert_eq!(writes(&map, token), 3, "{backend}: the loop ended right after the stopping callback");
        assert_eq!(map.len(), 2, "{backend}: stop leaves the map as it is");
        assert!(map.contains(token) && map.contains(other), "{backend}");
        // The map can be run again.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(2)).expect("loop");
        assert_eq!(writes(&map, token), 5, "{backend}: the stopped map runs again");
    }
}

#[test]
fn timeout_makes_an_idle_loop_wait() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let reader = Reader::new();
        let data = reader.data.clone();
        map.insert(ours, reader).expect("insert");
        let start = Instant::now();
        map.run(LoopOptions::new().timeout(Duration::from_millis(50)).count(1)).expect("loop");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: one idle iteration waited only {waited:?}");
        let start = Instant::now();
        rolecore::loop_(Some(Duration::from_millis(50)), backend, Some(&mut map), Some(1)).expect("loop_");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: loop_ waited only {waited:?}");
        assert!(data.borrow().is_empty(), "{backend}: nothing happened");
    }
}

/// A file handler that wants nothing for now (flow control).
struct Paused;

impl FileHandler for Paused {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        false
    }

    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn timeout_makes_the_loop_wait_when_a_regular_file_wants_nothing() {
    for backend in util::backends() {
        let path = std::env::temp_dir()
            .join(format!("rolecore-loop-and-map-paused-{}-{backend}.bin", std::process::id()));
        let _cleanup = TempFile(path.clone());
        std::fs::write(&path, b"unread").expect("write the temporary file");
        let file = std::fs::File::open(&path).expect("open the temporary file");
        let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
        let mut map = util::map(backend);
        map.insert(channel, Paused).expect("insert");
        // A channel that asks for nothing is idle, always-ready or not: as in
        // asyncore (not polled, the wait sleeps the timeout), the loop waits.
        let start = Instant::now();
        map.run(LoopOptions::new().timeout(Duration::from_millis(50)).count(1)).expect("loop");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: one idle iteration waited only {waited:?}");
    }
}

// ---- changing the map from callbacks ----------------------------------------------------

/// Inserts every accepted connection into the loop with a `Reader`.
struct InsertingServer {
    inserted: Vec<Token>,
    data: Rc<RefCell<Vec<u8>>>,
}

impl AcceptHandler for InsertingServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let reader = Reader { data: Rc::clone(&self.data), closes: Rc::default() };
        let token = cx.insert(conn, reader)?;
        self.inserted.push(token);
        Ok(())
    }
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

// ---- D20: stale tokens -----------------------------------------------------------------

#[test]
fn stale_token_does_not_reach_a_new_channel_on_the_same_descriptor() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let mut attempts = 0;
        // Other tests run in parallel threads and may take the freed number;
        // try again until the new channel really reuses it.
        let (old, new, mut new_peer) = loop {
            attempts += 1;
            assert!(attempts <= 100, "{backend}: could not get the same descriptor number back");
            let (a, _a_peer) = Channel::pair().expect("socketpair");
            let old = map.insert(a, Reader::new()).expect("insert");
            assert!(map.remove(old), "{backend}: remove of a live token");
            let (c, c_peer) = Channel::pair().expect("socketpair");
            let b = if c.as_raw_fd() == old.fd() {
                c // the kernel handed out the lowest free number: the old one
            } else {
                // Another thread took it meanwhile, or a lower one was free:
                // ask for the lowest free number from the old one up.
                let fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&c, old.fd()).expect("dup");
                if fd.as_raw_fd() != old.fd() {
                    continue;
                }
                drop(c);
                Channel::<Connected>::try_from(fd).expect("adopt")
            };
            let new = map.insert(b, Reader::new()).expect("insert");
            break (old, new, c_peer);
        };
        assert_eq!(new.fd(), old.fd(), "{backend}: same descriptor number");
        assert_ne!(new, old, "{backend}: a new generation");
        assert!(!map.contains(old), "{backend}: the old token is not contained");
        assert!(map.contains(new), "{backend}");
        assert!(map.handler::<Reader>(old).is_none(), "{backend}: handler(old) is None, the type matches");
        assert!(map.handler_mut::<Reader>(old).is_none(), "{backend}: handler_mut(old) is None");
        assert!(map.handler::<Reader>(new).is_some(), "{backend}");
        assert!(!map.remove(old), "{backend}: remove(old) is false");
        assert!(map.contains(new), "{backend}: remove(old) left the new channel alone");
        assert_eq!(map.tokens(), [new], "{backend}");
        let data = map.handler::<Reader>(new).expect("reader").data.clone();
        new_peer.send(b"to the new channel").expect("send");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"to the new channel"),
            "{backend}: the new channel gets its events"
        );
    }
}

/// Always writable; records its writes under its name.
struct NamedWriter {
    name: &'static str,
    log: Log,
}

impl StreamHandler for NamedWriter {
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
        self.log.push(format!("{} write", self.name));
        Ok(())
    }
}

/// On its first write, closes `victim` and puts a new channel on the
/// victim's descriptor number, within the same batch (asyncore's E9).
struct Replacer {
    log: Log,
    victim: Option<Token>,
    replacement: Option<Token>,
    replacement_peer: Option<Channel<Connected>>,
}

impl StreamHandler for Replacer {
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
        self.log.push("A write");
        let Some(victim) = self.victim.take() else { return Ok(()) };
        assert!(cx.remove(victim), "the victim was live");
        let (c, c_peer) = Channel::pair()?;
        let reused = if c.as_raw_fd() == victim.fd() {
            Some(c)
        } else {
            let fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&c, victim.fd())?;
            (fd.as_raw_fd() == victim.fd()).then(|| Channel::<Connected>::try_from(fd).expect("adopt"))
        };
        match reused {
            Some(channel) => {
                let token = cx.insert(channel, NamedWriter { name: "C", log: self.log.clone() })?;
                self.replacement = Some(token);
                self.replacement_peer = Some(c_peer);
                self.log.push("A replaced B");
            }
            None => self.log.push("A could not reuse the number"),
        }
        Ok(())
    }
}

#[test]
fn readiness_collected_for_a_closed_channel_does_not_reach_its_replacement_in_the_same_batch() {
    for backend in util::backends() {
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 100, "{backend}: could not set the scene up");
            let mut map = util::map(backend);
            let log = Log::default();
            // A must be dispatched before B: select and poll go by descriptor
            // number, epoll by the order the channels became ready.
            let (a, _a_peer) = Channel::pair().expect("socketpair");
            let (b, _b_peer) = Channel::pair().expect("socketpair");
            if a.as_raw_fd() > b.as_raw_fd() {
                continue;
            }
            let replacer =
                Replacer { log: log.clone(), victim: None, replacement: None, replacement_peer: None };
            let ta = map.insert(a, replacer).expect("insert A");
            let tb = map.insert(b, NamedWriter { name: "B", log: log.clone() }).expect("insert B");
            map.handler_mut::<Replacer>(ta).expect("A").victim = Some(tb);
            // One wait reports A and B writable; A's callback closes B and
            // puts C on B's number; B's collected readiness must reach nobody.
            map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
            let events = log.events();
            if events != ["A write", "A replaced B"] && !events.iter().any(|e| e == "C write") {
                continue; // B ran first, or the number was taken: try again
            }
            assert_eq!(events, ["A write", "A replaced B"], "{backend}: C got B's stale readiness (E9)");
            let tc = map.handler::<Replacer>(ta).unwrap().replacement.expect("C's token");
            assert_eq!(tc.fd(), tb.fd(), "{backend}");
            assert!(!map.contains(tb) && map.contains(tc), "{backend}");
            // From the next wait on, C gets its own events.
            map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
            assert_eq!(
                log.count("C write"),
                1,
                "{backend}: C is served from its first wait on: {:?}",
                log.events()
            );
            break;
        }
    }
}

// ---- close_all -----------------------------------------------------------------------

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

// ---- the thread's default map ----------------------------------------------------------

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

// ---- interest refreshes ------------------------------------------------------------------

/// Writable while its own field says so.
#[derive(Default)]
struct Toggle {
    want_write: bool,
    writes: u32,
}

impl StreamHandler for Toggle {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.want_write
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

// ---- switching backends ----------------------------------------------------------------

#[test]
fn set_backend_with_live_channels_keeps_them_working() {
    for from in util::backends() {
        for to in util::backends().filter(|&b| b != from) {
            let mut map = util::map(from);
            let (listener, addr) = tcp_listener();
            let accepted = Rc::new(RefCell::new(Vec::new()));
            let server = InsertingServer { inserted: Vec::new(), data: Rc::clone(&accepted) };
            let listener = map.insert(listener, server).expect("insert");
            let (ours, mut peer) = Channel::pair().expect("socketpair");
            let reader = Reader::new();
            let data = reader.data.clone();
            let reader = map.insert(ours, reader).expect("insert");
            let (writer, _writer_peer) = Channel::pair().expect("socketpair");
            let writer = map.insert(writer, Toggle::default()).expect("insert");
            map.handler_mut::<Toggle>(writer).unwrap().want_write = true;

            peer.send(b"before").expect("send");
            assert!(util::run_until(&mut map, |_| data.borrow().as_slice() == b"before"), "{from}: before");
            let writes_before = map.handler::<Toggle>(writer).unwrap().writes;

            map.set_backend(to).expect("set_backend");
            assert_eq!(map.backend(), to, "{from} -> {to}");
            assert_eq!(map.len(), 3, "{from} -> {to}: every channel kept");
            peer.send(b", after").expect("send");
            assert!(
                util::run_until(&mut map, |_| data.borrow().as_slice() == b"before, after"),
                "{from} -> {to}: the reader still gets its data"
            );
            let mut client = TcpStream::connect(addr).expect("connect");
            client.write_all(b"!").expect("write");
            assert!(
                util::run_until(&mut map, |m| m.handler::<InsertingServer>(listener).unwrap().inserted.len()
                    == 1
                    && accepted.borrow().as_slice() == b"!"),
                "{from} -> {to}: the listener still accepts"
            );
            assert!(
                map.handler::<Toggle>(writer).unwrap().writes > writes_before,
                "{from} -> {to}: the writer still gets handle_write"
            );
            assert!(map.contains(reader), "{from} -> {to}");
            // LoopOptions::backend switches too.
            map.run(LoopOptions::new().backend(from).timeout(Duration::from_millis(10)).count(1))
                .expect("loop");
            assert_eq!(map.backend(), from, "{from} -> {to} -> {from}");
            peer.send(b", back").expect("send");
            assert!(
                util::run_until(&mut map, |_| data.borrow().as_slice() == b"before, after, back"),
                "{from} -> {to} -> {from}: the reader still gets its data"
            );
        }
    }
}

// ---- regular files -----------------------------------------------------------------------

/// Reads a file in small pieces; records the end.
struct FileReader {
    data: Rc<RefCell<Vec<u8>>>,
    log: Log,
    /// Bytes asked per read event.
    chunk: usize,
}

impl FileHandler for FileReader {
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = vec![0u8; self.chunk];
        let n = ch.recv(&mut buf)?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

/// Removes the temporary file even when an assertion fails.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn regular_file_is_always_ready_and_read_to_the_end_on_every_backend() {
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    for backend in util::backends() {
        let path =
            std::env::temp_dir().join(format!("rolecore-loop-and-map-{}-{backend}.bin", std::process::id()));
        let _cleanup = TempFile(path.clone());
        std::fs::write(&path, &content).expect("write the temporary file");
        let file = std::fs::File::open(&path).expect("open the temporary file");
        let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
        assert!(channel.is_regular_file(), "{backend}");

        let mut map = util::map(backend);
        let (keeper, _keeper_peer) = Channel::pair().expect("socketpair");
        map.insert(keeper, Reader::new()).expect("insert the keeper");
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let token = map
            .insert(channel, FileReader { data: Rc::clone(&data), log: log.clone(), chunk: 100 })
            .unwrap_or_else(|e| panic!("{backend}: a regular file joins the map: {e}"));
        assert!(
            util::run_until(&mut map, |_| log.contains("close")),
            "{backend}: read to the end within 5 s"
        );
        util::run_iterations(&mut map, 3);
        assert_eq!(*data.borrow(), content, "{backend}: the whole file was read");
        let events = log.events();
        assert_eq!(log.count("read"), 10, "{backend}: 100 bytes per event: {events:?}");
        assert_eq!(&events[10..], ["read:eof", "close"], "{backend}: end of file, then handle_close once");
        assert!(!map.contains(token), "{backend}: the file left the map");
        assert_eq!(map.len(), 1, "{backend}: the keeper is still there");
    }
}

#[test]
fn regular_file_stays_always_ready_across_backend_switches() {
    let content: Vec<u8> = (b'a'..=b'z').collect();
    // epoll refuses the file, poll and select report it: switch through
    // every pair of backends, one read per iteration on each.
    let order: Vec<Backend> = util::backends().chain(util::backends()).collect();
    let path = std::env::temp_dir().join(format!("rolecore-loop-and-map-switch-{}.bin", std::process::id()));
    let _cleanup = TempFile(path.clone());
    std::fs::write(&path, &content).expect("write the temporary file");
    let file = std::fs::File::open(&path).expect("open the temporary file");
    let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
    let mut map = util::map(order[0]);
    let log = Log::default();
    let data = Rc::new(RefCell::new(Vec::new()));
    map.insert(channel, FileReader { data: Rc::clone(&data), log: log.clone(), chunk: 2 }).expect("insert");
    for (i, backend) in order.iter().enumerate() {
        map.set_backend(*backend)
            .unwrap_or_else(|e| panic!("{backend}: set_backend with a file in the map: {e}"));
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
        assert_eq!(
            log.count("read"),
            i + 1,
            "{backend}: the file is still ready after the switch: {:?}",
            log.events()
        );
    }
    assert!(util::run_until(&mut map, |_| log.contains("close")), "reached the end within 5 s");
    assert_eq!(*data.borrow(), content);
    assert_eq!(log.count("close"), 1);
    assert!(map.is_empty());
}

/// Swaps the channel it is lent for another one on its first write.
struct Swapper {
    spare: Option<Channel<Connected>>,
    /// Where the channel it was given ends up: kept open, so the test can
    /// tell the map closed the spare and not the original.
    original: Option<Channel<Connected>>,
}

impl StreamHandler for Swapper {
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
        if let Some(mut spare) = self.spare.take() {
            std::mem::swap(ch, &mut spare);
            self.original = Some(spare);
        }
        Ok(())
    }
}

#[test]
fn a_handler_that_swaps_its_channel_for_another_loses_the_slot_and_the_spare_is_closed() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, _a_peer) = Channel::pair().expect("pair");
        let (spare, mut spare_peer) = Channel::pair().expect("pair");
        let token = map.insert(a, Swapper { spare: Some(spare), original: None }).expect("insert");
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
