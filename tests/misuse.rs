//! Misuses the types cannot rule out, refused at run time (issue 15, "the
//! type promise without holes"). Each test names the hole it closes; the
//! misuses that do not compile are in `tests/ui/`.

mod util;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use rolecore::{Channel, Connected, Listening, RoleError};

/// The tests here run one at a time: some rely on the kernel handing out the
/// lowest free descriptor number, which a test opening sockets on another
/// thread would take first.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- D13: every way into a role checks what the descriptor is ----------------

/// A loopback listener and its address.
fn tcp_listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A TCP socket whose connect is still in progress: connects to a listener
/// whose accept queue is full, so the SYN goes unanswered. `None` if the
/// kernel completed every attempt anyway.
fn still_connecting() -> Option<(OwnedFd, Vec<OwnedFd>, Channel<Listening>)> {
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut others = Vec::new();
    for _ in 0..16 {
        let fd = OwnedFd::from(Channel::tcp_v4().unwrap().connect(&addr).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
        if rustix::net::getpeername(&fd).is_err() {
            return Some((fd, others, listener));
        }
        others.push(fd);
    }
    eprintln!("every connect completed at once: the still-connecting case is skipped");
    None
}

/// Checks a refusal: the error says what the descriptor was and what the
/// role needs, and the value comes back with the same descriptor.
fn refused<T: AsRawFd>(result: Result<impl Sized, RoleError<T>>, fd: i32, says: &str) -> T {
    let Err(err) = result else { panic!("adopted, but the descriptor is {says}") };
    assert!(
        matches!(err.error().kind(), ErrorKind::InvalidInput | ErrorKind::NotConnected),
        "{:?}",
        err.error()
    );
    assert!(err.to_string().contains(says), "the error says what the descriptor is ({says}): {err}");
    assert!(err.to_string().contains("must be"), "the error says what the role needs: {err}");
    let back = err.into_inner();
    assert_eq!(back.as_raw_fd(), fd, "the same descriptor comes back");
    back
}

#[test]
fn d13_tcp_stream_adoption_refuses_anything_but_a_connected_tcp_socket() {
    let _serial = serial();
    let (listener, addr) = tcp_listener();

    // A listener wrapped as a TcpStream, and a duplicate of its descriptor.
    let dup = TcpStream::from(OwnedFd::from(listener.try_clone().unwrap()));
    let fd = dup.as_raw_fd();
    refused(Channel::<Connected>::try_from(dup), fd, "listening");
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    let fd = as_stream.as_raw_fd();
    let back = refused(Channel::<Connected>::try_from(as_stream), fd, "listening");
    let listener = TcpListener::from(OwnedFd::from(back));

    // A socket never connected, and one bound but not connected.
    let fresh = TcpStream::from(OwnedFd::from(Channel::tcp_v4().unwrap()));
    let fd = fresh.as_raw_fd();
    refused(Channel::<Connected>::try_from(fresh), fd, "no peer");
    let bound = TcpStream::from(OwnedFd::from(Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap()));
    let fd = bound.as_raw_fd();
    refused(Channel::<Connected>::try_from(bound), fd, "no peer");

    // A connect still in progress.
    if let Some((connecting, _others, _l)) = still_connecting() {
        let s = TcpStream::from(connecting);
        let fd = s.as_raw_fd();
        refused(Channel::<Connected>::try_from(s), fd, "still connecting");
    }

    // A UDP socket, connected or not.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(addr).unwrap();
    let s = TcpStream::from(OwnedFd::from(udp));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "datagram");

    // A pipe.
    let (reader, _writer) = std::io::pipe().unwrap();
    let s = TcpStream::from(OwnedFd::from(reader));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "not a socket");

    // A connected Unix socket is not TCP.
    let (a, _b) = UnixStream::pair().unwrap();
    let s = TcpStream::from(OwnedFd::from(a));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "another family");

    // The real thing is adopted, non-blocking, with its peer.
    let stream = TcpStream::connect(addr).unwrap();
    let ch = Channel::<Connected>::try_from(stream).unwrap();
    assert_eq!(ch.peer_addr().unwrap().inet(), Some(addr));
    drop(listener);
}

#[test]
fn d13_unix_stream_adoption_refuses_anything_but_a_connected_unix_socket() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("rolecore-misuse-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let listener = UnixListener::bind(&dir).unwrap();

    let s = UnixStream::from(OwnedFd::from(listener.try_clone().unwrap()));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "listening");

    let fresh = UnixStream::from(OwnedFd::from(Channel::unix_stream().unwrap()));
    let fd = fresh.as_raw_fd();
    refused(Channel::<Connected>::try_from(fresh), fd, "no peer");

    let (tcp_listener, addr) = tcp_listener();
    let tcp = TcpStream::connect(addr).unwrap();
    let s = UnixStream::from(OwnedFd::from(tcp));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "another family");

    let (reader, _writer) = std::io::pipe().unwrap();
    let s = UnixStream::from(OwnedFd::from(reader));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "not a socket");

    let dgram = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let s = UnixStream::from(OwnedFd::from(dgram));
    let fd = s.as_raw_fd();
    refused(Channel::<Connected>::try_from(s), fd, "datagram");

    let ok = UnixStream::connect(&dir).unwrap();
    assert!(Channel::<Connected>::try_from(ok).is_ok());
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(Channel::<Connected>::try_from(a).is_ok(), "a socketpair end is connected");
    drop((listener, tcp_listener));
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn d13_listener_adoption_refuses_anything_but_a_listening_socket() {
    let _serial = serial();
    // TcpListener wrapping a fresh, a bound, a connected socket, a UDP socket.
    let fresh = TcpListener::from(OwnedFd::from(Channel::tcp_v4().unwrap()));
    let fd = fresh.as_raw_fd();
    refused(Channel::<Listening>::try_from(fresh), fd, "not listening");
    let bound = TcpListener::from(OwnedFd::from(Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap()));
    let fd = bound.as_raw_fd();
    refused(Channel::<Listening>::try_from(bound), fd, "not listening");
    let (listener, addr) = tcp_listener();
    let connected = TcpListener::from(OwnedFd::from(TcpStream::connect(addr).unwrap()));
    let fd = connected.as_raw_fd();
    refused(Channel::<Listening>::try_from(connected), fd, "not listening");
    let udp = TcpListener::from(OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap()));
    let fd = udp.as_raw_fd();
    refused(Channel::<Listening>::try_from(udp), fd, "datagram");
    let (a, _b) = UnixStream::pair().unwrap();
    let unix = TcpListener::from(OwnedFd::from(a));
    let fd = unix.as_raw_fd();
    refused(Channel::<Listening>::try_from(unix), fd, "another family");

    // UnixListener wrapping a fresh or a connected Unix socket, or a TCP listener.
    let fresh = UnixListener::from(OwnedFd::from(Channel::unix_stream().unwrap()));
    let fd = fresh.as_raw_fd();
    refused(Channel::<Listening>::try_from(fresh), fd, "not listening");
    let (a, _b) = UnixStream::pair().unwrap();
    let connected = UnixListener::from(OwnedFd::from(a));
    let fd = connected.as_raw_fd();
    refused(Channel::<Listening>::try_from(connected), fd, "not listening");
    let tcp = UnixListener::from(OwnedFd::from(listener.try_clone().unwrap()));
    let fd = tcp.as_raw_fd();
    refused(Channel::<Listening>::try_from(tcp), fd, "another family");

    // The real things.
    assert!(Channel::<Listening>::try_from(listener).is_ok());
    let path = std::env::temp_dir().join(format!("rolecore-misuse-l-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    assert!(Channel::<Listening>::try_from(UnixListener::bind(&path).unwrap()).is_ok());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn d13_owned_fd_adoption_probes_every_role() {
    let _serial = serial();
    let (listener, addr) = tcp_listener();
    let fd = OwnedFd::from(listener);
    let raw = fd.as_raw_fd();
    let fd = refused(Channel::<Connected>::try_from(fd), raw, "listening");
    let listener = Channel::<Listening>::try_from(fd).unwrap();

    let fresh = OwnedFd::from(Channel::tcp_v4().unwrap());
    let raw = fresh.as_raw_fd();
    let fresh = refused(Channel::<Connected>::try_from(fresh), raw, "no peer");
    refused(Channel::<Listening>::try_from(fresh), raw, "not listening");

    if let Some((connecting, _others, _l)) = still_connecting() {
        let raw = connecting.as_raw_fd();
        refused(Channel::<Connected>::try_from(connecting), raw, "still connecting");
    }

    let udp = OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap());
    let raw = udp.as_raw_fd();
    let udp = refused(Channel::<Connected>::try_from(udp), raw, "datagram");
    refused(Channel::<Listening>::try_from(udp), raw, "datagram");

    let (reader, _writer) = std::io::pipe().unwrap();
    let pipe = OwnedFd::from(reader);
    let raw = pipe.as_raw_fd();
    let pipe = refused(Channel::<Connected>::try_from(pipe), raw, "not a socket");
    refused(Channel::<Listening>::try_from(pipe), raw, "not a socket");

    let connected = OwnedFd::from(TcpStream::connect(addr).unwrap());
    let raw = connected.as_raw_fd();
    let connected = refused(Channel::<Listening>::try_from(connected), raw, "not listening");
    assert!(Channel::<Connected>::try_from(connected).is_ok());
    drop(listener);
}

// ---- tokens name channels of the map that issued them only ------------------

struct Quiet;
impl rolecore::StreamHandler for Quiet {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

/// Checks that `token` reaches nothing in `map`, which holds `own` on the
/// same descriptor number and generation.
fn foreign_token_reaches_nothing(map: &mut rolecore::Map, token: rolecore::Token, own: rolecore::Token) {
    assert_eq!((token.fd(), format!("{token:?}").contains("generation 0")), (own.fd(), true));
    assert_ne!(token, own, "the tokens differ by their map");
    assert!(!map.contains(token));
    assert!(map.handler::<Quiet>(token).is_none());
    assert!(map.handler_mut::<Quiet>(token).is_none());
    assert!(map.stream_mut::<Channel<Connected>, Quiet>(token).is_none());
    assert!(!map.set_deadline(token, Some(std::time::Instant::now())));
    assert!(!map.set_idle_timeout(token, Some(std::time::Duration::from_secs(1))));
    map.refresh(token);
    assert!(!map.remove(token), "a foreign token closes nothing");
    assert!(map.contains(own) && map.handler::<Quiet>(own).is_some(), "the map's own channel is untouched");
}

#[test]
fn a_token_from_another_map_is_refused_even_on_a_reused_descriptor() {
    let _serial = serial();
    let mut a = rolecore::Map::new().unwrap();
    let mut b = rolecore::Map::new().unwrap();
    let (ours, _peer) = Channel::pair().unwrap();
    let fd = ours.as_raw_fd();
    let token_a = a.insert(ours, Quiet).unwrap();
    assert!(a.remove(token_a));
    // The kernel hands the lowest free number out again: the first end of a
    // new pair gets `fd`, at generation 0 in map `b`.
    let (again, _peer2) = Channel::pair().unwrap();
    assert_eq!(again.as_raw_fd(), fd, "the descriptor number is reused");
    let token_b = b.insert(again, Quiet).unwrap();
    foreign_token_reaches_nothing(&mut b, token_a, token_b);

    // From inside a callback, through the Ctx, too.
    struct Reacher {
        foreign: rolecore::Token,
        seen: std::rc::Rc<std::cell::Cell<Option<(bool, bool)>>>,
    }
    impl rolecore::StreamHandler for Reacher {
        fn handle_read(
            &mut self,
            ch: &mut Channel<Connected>,
            cx: &mut rolecore::Ctx<'_>,
        ) -> std::io::Result<()> {
            ch.recv(&mut [0u8; 64])?;
            let reached = cx.handler_mut::<Quiet>(self.foreign).is_some();
            self.seen.set(Some((reached, cx.remove(self.foreign))));
            cx.stop();
            Ok(())
        }
    }
    let seen = std::rc::Rc::default();
    let (c, mut peer) = UnixStream::pair().unwrap();
    b.insert(Channel::try_from(c).unwrap(), Reacher { foreign: token_a, seen: std::rc::Rc::clone(&seen) })
        .unwrap();
    std::io::Write::write_all(&mut peer, b"x").unwrap();
    assert!(util::run_until(&mut b, |_| seen.get().is_some()));
    assert_eq!(seen.get(), Some((false, false)), "Ctx refuses the foreign token");
    assert!(b.contains(token_b));
}

#[test]
fn a_token_sent_to_another_thread_names_nothing_in_that_threads_map() {
    let _serial = serial();
    let mut a = rolecore::Map::new().unwrap();
    let (ours, _peer) = Channel::pair().unwrap();
    let fd = ours.as_raw_fd();
    let token_a = a.insert(ours, Quiet).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<rolecore::Token>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let token_a = rx.recv().unwrap();
        // Descriptors are per process: `a` closed `fd`; take it first.
        let (again, _peer) = Channel::pair().unwrap();
        assert_eq!(again.as_raw_fd(), fd);
        let mut b = rolecore::Map::new().unwrap();
        let token_b = b.insert(again, Quiet).unwrap();
        foreign_token_reaches_nothing(&mut b, token_a, token_b);
        back_tx.send(()).unwrap();
    });
    assert!(a.remove(token_a));
    tx.send(token_a).unwrap();
    back_rx.recv().unwrap();
    other.join().unwrap();
}

// ---- a channel swapped out of its entry leaves nothing registered -------------

type Shelf = std::rc::Rc<std::cell::RefCell<Option<Channel<Connected>>>>;

/// On its first read, puts a decoy in place of the channel it is lent and
/// keeps the original on a shelf the test can reach. It reads nothing, so
/// the original stays readable: under level triggering a registration left
/// behind would wake every wait.
struct Thief {
    decoy: Option<Channel<Connected>>,
    shelf: Shelf,
}

impl rolecore::StreamHandler for Thief {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> {
        if let Some(decoy) = self.decoy.take() {
            *self.shelf.borrow_mut() = Some(std::mem::replace(ch, decoy));
        }
        Ok(())
    }
}

/// Counts what it reads.
struct Counter(std::rc::Rc<std::cell::Cell<usize>>);

impl rolecore::StreamHandler for Counter {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.0.set(self.0.get() + n);
        Ok(())
    }
}

/// Runs `n` iterations of at most `wait` each and says how long they took.
fn timed_iterations(map: &mut rolecore::Map, n: u64, wait: std::time::Duration) -> std::time::Duration {
    let start = std::time::Instant::now();
    map.run(rolecore::LoopOptions::new().timeout(wait).count(n)).unwrap();
    start.elapsed()
}

#[test]
fn a_channel_replaced_in_a_callback_is_forgotten_and_can_join_again() {
    let _serial = serial();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (decoy, _decoy_peer) = Channel::pair().unwrap();
        let (idle, _idle_peer) = Channel::pair().unwrap(); // keeps the map from emptying
        let idle = map.insert(idle, Quiet).unwrap();
        let shelf = Shelf::default();
        let token = map
            .insert(Channel::try_from(ours).unwrap(), Thief { decoy: Some(decoy), shelf: shelf.clone() })
            .unwrap();
        std::io::Write::write_all(&mut peer, b"stay readable").unwrap();
        assert!(util::run_until(&mut map, |_| shelf.borrow().is_some()), "{backend}: the swap happened");
        assert!(!map.contains(token), "{backend}: the entry holding the decoy was closed");
        assert!(map.contains(idle));

        // Nothing the map can name is ready: five waits of 40 ms take about
        // 200 ms. A registration left behind for the readable original would
        // end every wait at once.
        let took = timed_iterations(&mut map, 5, std::time::Duration::from_millis(40));
        assert!(
            took >= std::time::Duration::from_millis(150),
            "{backend}: the loop spun ({took:?} for 5 waits)"
        );

        // The original can join the map again and reads its data.
        let stolen = shelf.borrow_mut().take().unwrap();
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let again = map.insert(stolen, Counter(read.clone())).expect("the stolen channel joins again");
        assert!(util::run_until(&mut map, |_| read.get() == 13), "{backend}: it is watched again");
        assert!(map.contains(again));
    }
}

#[test]
fn a_channel_replaced_and_inserted_again_before_the_next_wait_is_watched() {
    let _serial = serial();
    // The swap, then the insert, with no wait between them (epoll still
    // holds the old registration when the insert comes).
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (decoy, _decoy_peer) = Channel::pair().unwrap();
        let shelf = Shelf::default();
        map.insert(Channel::try_from(ours).unwrap(), Thief { decoy: Some(decoy), shelf: shelf.clone() })
            .unwrap();
        std::io::Write::write_all(&mut peer, b"12345").unwrap();
        while shelf.borrow().is_none() {
            map.poll(Some(std::time::Duration::from_millis(100))).unwrap();
        }
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let stolen = shelf.borrow_mut().take().unwrap();
        map.insert(stolen, Counter(read.clone())).expect("no EEXIST");
        assert!(util::run_until(&mut map, |_| read.get() == 5), "{backend}");
    }
}

/// Swaps its channel with another entry's, through `Ctx::stream_mut`.
struct Swapper {
    other: rolecore::Token,
    done: std::rc::Rc<std::cell::Cell<bool>>,
}

impl rolecore::StreamHandler for Swapper {
    fn handle_read(
        &mut self,
        ch: &mut Channel<Connected>,
        cx: &mut rolecore::Ctx<'_>,
    ) -> std::io::Result<()> {
        if let Some(mut other) = cx.stream_mut::<Channel<Connected>, Quiet>(self.other) {
            std::mem::swap(ch, other.transport());
            self.done.set(true);
        }
        Ok(())
    }
}

#[test]
fn two_channels_swapped_between_entries_are_both_closed_and_the_loop_does_not_spin() {
    let _serial = serial();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, mut a_peer) = Channel::pair().unwrap();
        let (b, mut b_peer) = Channel::pair().unwrap();
        let (idle, _idle_peer) = Channel::pair().unwrap();
        map.insert(idle, Quiet).unwrap();
        let tb = map.insert(b, Quiet).unwrap();
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let ta = map.insert(a, Swapper { other: tb, done: done.clone() }).unwrap();
        a_peer.send(b"go").unwrap();
        b_peer.send(b"unread").unwrap();
        assert!(util::run_until(&mut map, |_| done.get()), "{backend}");
        assert!(!map.contains(ta) && !map.contains(tb), "{backend}: both entries were closed");
        let took = timed_iterations(&mut map, 5, std::time::Duration::from_millis(40));
        assert!(took >= std::time::Duration::from_millis(150), "{backend}: the loop spun ({took:?})");
        // Both channels were closed: each peer reads its end of stream.
        let mut buf = [0u8; 8];
        assert_eq!(a_peer.recv(&mut buf).unwrap(), 0, "{backend}: a was closed");
        assert_eq!(b_peer.recv(&mut buf).unwrap(), 0, "{backend}: b was closed");
    }
}

// ---- a channel closed in its callback refuses I/O ------------------------------

/// Sends "bye", closes, then tries to send and receive more, and passes the
/// refusal to the loop with `?`.
struct CloseThenSend {
    log: util::Log,
}

impl rolecore::StreamHandler for CloseThenSend {
    fn handle_read(
        &mut self,
        ch: &mut Channel<Connected>,
        cx: &mut rolecore::Ctx<'_>,
    ) -> std::io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        ch.send(b"bye")?;
        cx.close();
        let refused = ch.send(b"after close").unwrap_err();
        self.log.push(format!("send: {:?}: {refused}", refused.kind()));
        let refused = ch.recv(&mut [0u8; 64]).unwrap_err();
        self.log.push(format!("recv: {:?}", refused.kind()));
        let refused = std::io::Write::write(ch, b"after close").unwrap_err();
        self.log.push(format!("write: {:?}", refused.kind()));
        let refused = ch.shutdown(std::net::Shutdown::Write).unwrap_err();
        self.log.push(format!("shutdown: {:?}", refused.kind()));
        ch.send(b"after close")?;
        self.log.push("not reached");
        Ok(())
    }
    fn handle_close(&mut self, _: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) {
        self.log.push("handle_close");
    }
    fn handle_error(&mut self, _: &mut Channel<Connected>, e: std::io::Error, _: &mut rolecore::Ctx<'_>) {
        self.log.push(format!("handle_error: {e}"));
    }
}

#[test]
fn after_ctx_close_the_lent_channel_sends_and_receives_nothing() {
    let _serial = serial();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = util::Log::default();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let token = map.insert(Channel::try_from(ours).unwrap(), CloseThenSend { log: log.clone() }).unwrap();
        std::io::Write::write_all(&mut peer, b"hi").unwrap();
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}");
        let events = log.events();
        assert_eq!(events.len(), 4, "{backend}: {events:?}");
        assert!(
            events[0].starts_with("send: NotConnected: the channel was closed with Ctx::close"),
            "{events:?}"
        );
        assert_eq!(
            events[1..],
            ["recv: NotConnected", "write: NotConnected", "shutdown: NotConnected"],
            "{backend}"
        );
        // The refusal passed to the loop is neither handle_error nor
        // handle_close: the channel simply closes, as it asked.
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
        assert_eq!(got, b"bye", "{backend}: what was sent before the close arrives, nothing after");
    }
}

/// Closes its listener in `handle_accepted`, then tries to accept again.
struct CloseThenAccept(util::Log);

impl rolecore::AcceptHandler for CloseThenAccept {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: rolecore::Address,
        cx: &mut rolecore::Ctx<'_>,
    ) -> std::io::Result<()> {
        cx.close();
        Ok(())
    }
    fn handle_accept(
        &mut self,
        ch: &mut Channel<Listening>,
        cx: &mut rolecore::Ctx<'_>,
    ) -> std::io::Result<()> {
        if let Some((conn, peer)) = ch.accept()? {
            self.handle_accepted(conn, peer, cx)?;
        }
        let refused = ch.accept().unwrap_err();
        self.0.push(format!("{:?}", refused.kind()));
        Ok(())
    }
}

#[test]
fn after_ctx_close_a_listener_accepts_nothing() {
    let _serial = serial();
    let mut map = rolecore::Map::new().unwrap();
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(8).unwrap();
    let addr = listener.local_addr().unwrap().inet().unwrap();
    let log = util::Log::default();
    let token = map.insert(listener, CloseThenAccept(log.clone())).unwrap();
    let _a = TcpStream::connect(addr).unwrap();
    let _b = TcpStream::connect(addr).unwrap();
    assert!(util::run_until(&mut map, |m| !m.contains(token)));
    assert_eq!(log.events(), ["NotConnected"]);
}

// ---- with_socket_map from inside the default map's loop -------------------------

/// Tries to insert a new channel into the default map from inside its loop.
struct Nested {
    log: util::Log,
}

impl rolecore::StreamHandler for Nested {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        let (extra, _peer) = Channel::pair()?;
        rolecore::with_socket_map(|map| map.insert(extra, Quiet).map(drop))??;
        self.log.push("not reached");
        Ok(())
    }
    fn handle_error(&mut self, _: &mut Channel<Connected>, e: std::io::Error, cx: &mut rolecore::Ctx<'_>) {
        self.log.push(format!("{:?}: {e}", e.kind()));
        cx.close();
    }
}

#[test]
fn with_socket_map_inside_its_own_loop_is_an_error_the_handler_sees() {
    let _serial = serial();
    let log = util::Log::default();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let ours = Channel::try_from(ours).unwrap();
    let token = rolecore::with_socket_map(|m| m.insert(ours, Nested { log: log.clone() }).unwrap()).unwrap();
    std::io::Write::write_all(&mut peer, b"go").unwrap();
    rolecore::loop_(Some(std::time::Duration::from_millis(50)), rolecore::Backend::Poll, None, Some(20))
        .unwrap();
    let events = log.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("ResourceBusy: rolecore::with_socket_map"), "{events:?}");
    assert!(events[0].contains("cx.insert"), "the error says what to do instead: {events:?}");
    assert!(!rolecore::with_socket_map(|m| m.contains(token)).unwrap(), "handle_error closed it");
    assert!(rolecore::with_socket_map(|m| m.is_empty()).unwrap(), "nothing was inserted");
}

#[test]
fn with_socket_map_inside_its_own_loop_reaches_the_default_handle_error() {
    let _serial = serial();
    // A handler without its own handle_error: the default reports the error
    // (through the log hook) and closes the channel.
    struct Plain;
    impl rolecore::StreamHandler for Plain {
        fn handle_read(
            &mut self,
            ch: &mut Channel<Connected>,
            _: &mut rolecore::Ctx<'_>,
        ) -> std::io::Result<()> {
            ch.recv(&mut [0u8; 64])?;
            rolecore::with_socket_map(|map| map.len())?;
            Ok(())
        }
    }
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = reports.clone();
    rolecore::report::set_log_hook(Some(Box::new(move |level, message| {
        sink.lock().unwrap().push(format!("{level}: {message}"));
    })));
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let token =
        rolecore::with_socket_map(|m| m.insert(Channel::try_from(ours).unwrap(), Plain).unwrap()).unwrap();
    std::io::Write::write_all(&mut peer, b"go").unwrap();
    rolecore::loop_(Some(std::time::Duration::from_millis(50)), rolecore::Backend::Poll, None, Some(20))
        .unwrap();
    rolecore::report::set_log_hook(None);
    assert!(!rolecore::with_socket_map(|m| m.contains(token)).unwrap());
    let reports = reports.lock().unwrap();
    assert!(reports.iter().any(|r| r.contains("with_socket_map")), "reported: {reports:?}");
}

/// Reaches for the default map when it is dropped, and says what it got.
struct ReachesOnDrop(std::sync::mpsc::Sender<Vec<(ErrorKind, String)>>);

impl rolecore::StreamHandler for ReachesOnDrop {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

impl Drop for ReachesOnDrop {
    fn drop(&mut self) {
        let outcome = |r: std::io::Result<()>| {
            r.map_or_else(|e| (e.kind(), e.to_string()), |()| (ErrorKind::Other, "Ok".into()))
        };
        let len = rolecore::with_socket_map(|m| m.len()).map(drop);
        let close = rolecore::close_all(None);
        let _ = self.0.send(vec![outcome(len), outcome(close)]);
    }
}

/// A handler of the thread's default map is dropped with it when the
/// thread exits; one whose `Drop` reached for the default map
/// (`close_all(None)`, `with_socket_map`) made `LocalKey::with` panic in a
/// thread-local's destructor, which aborts the whole process. It is an error
/// now, and the thread ends normally.
#[test]
fn the_default_map_reached_from_a_destructor_at_thread_exit_is_an_error_not_an_abort() {
    let _serial = serial();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (ours, _peer) = Channel::pair().unwrap();
        rolecore::with_socket_map(|m| m.insert(ours, ReachesOnDrop(tx)).map(drop)).unwrap().unwrap();
    });
    thread.join().expect("the thread ended normally");
    let outcomes = rx.recv().expect("the handler was dropped");
    for (kind, message) in outcomes {
        assert_eq!(kind, ErrorKind::NotConnected, "{message}");
        assert!(message.contains("thread exits"), "{message}");
    }
}

// ---- the select backend is opt-in ---------------------------------------------

#[test]
#[cfg(not(feature = "select"))]
fn without_the_select_feature_select_is_a_clear_error() {
    let err = "select".parse::<rolecore::Backend>().unwrap_err();
    assert!(err.to_string().contains("`select` feature"), "{err}");
    assert!(!rolecore::Backend::Select.is_available());
    let err = rolecore::Map::with_backend(rolecore::Backend::Select).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("`select` feature"), "{err}");
}

#[test]
#[cfg(feature = "select")]
fn with_the_select_feature_select_parses_and_runs() {
    assert_eq!("select".parse::<rolecore::Backend>(), Ok(rolecore::Backend::Select));
    assert!(rolecore::Map::with_backend(rolecore::Backend::Select).is_ok());
}

/// A channel swapped out of its entry through `Map::stream_mut`, outside
/// any callback: when the guard drops, the map sees the entry holds another
/// descriptor than its slot's, closes the entry (with the channel it now
/// holds) at once, and the channel taken out is the program's, free to be
/// inserted again and served.
#[test]
fn a_channel_swapped_out_through_map_stream_mut_is_forgotten_at_once() {
    let _serial = serial();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (a, mut a_peer) = Channel::pair().unwrap();
        let (mut x, mut x_peer) = Channel::pair().unwrap();
        let token = map.insert(a, Quiet).unwrap();
        {
            let mut guard = map.stream_mut::<Channel<Connected>, Quiet>(token).unwrap();
            std::mem::swap(guard.transport(), &mut x);
        }
        assert!(!map.contains(token), "{backend}: the entry holding a swapped channel is still there");
        assert!(map.is_empty(), "{backend}");
        // The entry closed the channel it held: x's peer reads its end.
        let mut buf = [0u8; 8];
        assert_eq!(x_peer.recv(&mut buf).unwrap(), 0, "{backend}: x was not closed");
        // `x` is now the channel taken out: it goes back in, under a new token.
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let again = map.insert(x, Counter(read.clone())).expect("inserted again");
        assert_ne!(again, token, "{backend}");
        a_peer.send(b"hello").unwrap();
        assert!(util::run_until(&mut map, |_| read.get() == 5), "{backend}: not served after its return");
    }
}
