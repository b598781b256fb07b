//! Every event of asyncore's table, through the public API, on real loopback
//! sockets and Unix socketpairs, on every backend (select, poll, epoll).
//!
//! Each test loops over `util::backends()` and names the backend in its
//! assertion messages. Every loop is bounded by `util::run_until` (5 s) or an
//! explicit iteration count.

mod util;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use rolecore::{
    AcceptHandler, Address, Buffered, Channel, Connected, Ctx, FileFd, FileHandler, Listening, LoopOptions,
    Map, StreamHandler, UnixAddress,
};
use util::Log;

// ---- helpers -------------------------------------------------------------------

/// A rolecore listener on 127.0.0.1 with a kernel-chosen port.
fn tcp_listener() -> (Channel<Listening>, SocketAddr) {
    let listener =
        Channel::tcp_v4().expect("socket").bind("127.0.0.1:0").expect("bind").listen(16).expect("listen");
    let addr = listener.local_addr().expect("local_addr").inet().expect("an IP address");
    (listener, addr)
}

/// A std listener on 127.0.0.1, for the server side of client tests.
fn std_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    (listener, addr)
}

/// Accepts one connection on a std listener, with a bounded read timeout.
fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    stream
}

/// A connected loopback TCP pair: our end as a channel, the peer as a std stream.
fn tcp_pair() -> (Channel<Connected>, TcpStream) {
    let (listener, addr) = std_listener();
    let client = TcpStream::connect(addr).expect("connect");
    let server = accept(&listener);
    (Channel::try_from(client).expect("adopt the client"), server)
}

/// A connected loopback TCP pair, both ends as channels (for `send_oob`).
fn tcp_channel_pair() -> (Channel<Connected>, Channel<Connected>) {
    let (ours, peer) = tcp_pair();
    (ours, Channel::try_from(peer).expect("adopt the server"))
}

/// An address where nothing listens: bind a listener, take its port, drop it.
fn closed_port() -> SocketAddr {
    let (listener, addr) = std_listener();
    drop(listener);
    addr
}

/// Reads from a std peer until `want` bytes arrived or the peer's read timeout.
fn read_exactly(peer: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    peer.read_exact(&mut got).expect("the peer reads what the channel sent");
    got
}

/// Whether a std peer sees the end of the stream (our channel was closed).
fn peer_sees_eof(peer: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// An idle channel that keeps the loop running, so that "nothing more was
/// delivered" is checked over iterations that really ran.
struct Idle;

impl StreamHandler for Idle {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

/// Inserts an idle channel; the returned peer must be kept alive.
fn keep_loop_alive(map: &mut Map) -> Channel<Connected> {
    let (ours, peer) = Channel::pair().expect("socketpair");
    map.insert(ours, Idle).expect("insert the keeper");
    peer
}

/// A stream handler that records every event in order.
struct Recorder {
    log: Log,
    data: Rc<RefCell<Vec<u8>>>,
    /// Bytes asked of `recv` per read event.
    chunk: usize,
    /// What `writable()` answers; cleared by the first `handle_write`.
    write: bool,
}

impl Recorder {
    fn new(log: &Log) -> Self {
        Recorder { log: log.clone(), data: Rc::default(), chunk: 4096, write: false }
    }
}

impl StreamHandler for Recorder {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.write
    }

    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("connect");
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("connect_failed:{:?}", error.kind()));
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = vec![0u8; self.chunk];
        let n = ch.recv(&mut buf)?;
        if n == 0 {
            self.log.push("read:eof");
        } else {
            self.log.push("read");
            self.data.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("write");
        self.write = false;
        Ok(())
    }

    fn handle_expt(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut byte = [0u8; 1];
        let n = ch.recv_oob(&mut byte)?;
        self.log.push(format!("expt:{:02x?}", &byte[..n]));
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

/// A listener handler that records accepted connections and keeps them open.
struct Acceptor {
    log: Log,
    peers: Rc<RefCell<Vec<Address>>>,
    conns: Vec<Channel<Connected>>,
}

impl Acceptor {
    fn new(log: &Log) -> Self {
        Acceptor { log: log.clone(), peers: Rc::default(), conns: Vec::new() }
    }
}

impl AcceptHandler for Acceptor {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.log.push("accepted");
        self.peers.borrow_mut().push(peer);
        self.conns.push(conn);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) {
        self.log.push("listener:close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("listener:error:{error}"));
        cx.close();
    }
}

// ---- handle_connect ----------------------------------------------------------------

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

// ---- handle_accept / handle_accepted -------------------------------------------------

#[test]
fn default_handle_accept_passes_connection_and_peer_address_to_handle_accepted() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = tcp_listener();
        let acceptor = Acceptor::new(&log);
        let peers = acceptor.peers.clone();
        let token = map.insert(listener, acceptor).expect("insert the listener");
        let mut client = TcpStream::connect(addr).expect("connect");
        let client_addr = client.local_addr().expect("client address");
        assert!(
            util::run_until(&mut map, |_| log.contains("accepted")),
            "{backend}: handle_accepted within 5 s; log {:?}",
            log.events()
        );
        assert_eq!(
            *peers.borrow(),
            vec![Address::Inet(client_addr)],
            "{backend}: the peer address is the client's"
        );
        // The accepted channel is a live connection to the client.
        let mut acceptor = map.handler_mut::<Acceptor>(token).expect("the acceptor");
        assert_eq!(acceptor.conns.len(), 1, "{backend}");
        assert_eq!(acceptor.conns[0].send(b"hi").expect("send"), 2, "{backend}");
        drop(acceptor);
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            read_exactly(&mut client, 2),
            b"hi",
            "{backend}: the client got what the accepted channel sent"
        );
    }
}

/// Overrides `handle_accept` itself, accepting with `Channel::accept`.
struct ManualAcceptor {
    log: Log,
    conns: Vec<Channel<Connected>>,
}

impl AcceptHandler for ManualAcceptor {
    fn handle_accept(&mut self, ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("accept");
        if let Some((conn, _peer)) = ch.accept()? {
            self.conns.push(conn);
        }
        Ok(())
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
}

#[test]
fn handle_accept_is_called_for_each_pending_connection() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = tcp_listener();
        let token =
            map.insert(listener, ManualAcceptor { log: log.clone(), conns: Vec::new() }).expect("insert");
        let _clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).expect("connect")).collect();
        assert!(
            util::run_until(&mut map, |m| m
                .handler::<ManualAcceptor>(token)
                .is_some_and(|h| h.conns.len() == 3)),
            "{backend}: three connections accepted; log {:?}",
            log.events()
        );
        util::run_iterations(&mut map, 2);
        // One accept per event (A37): every handle_accept found a connection,
        // and an overridden handle_accept is not followed by handle_accepted.
        assert_eq!(log.count("accept"), 3, "{backend}: {:?}", log.events());
        assert_eq!(log.count("accepted"), 0, "{backend}: {:?}", log.events());
    }
}

// ---- handle_read -----------------------------------------------------------------------

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

// ---- handle_write ----------------------------------------------------------------------

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

// ---- handle_close ----------------------------------------------------------------------

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

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
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

// ---- handle_expt -----------------------------------------------------------------------

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

// ---- handle_error ----------------------------------------------------------------------

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

// ---- handle_connect_failed ---------------------------------------------------------------

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

// ---- D21: connected before handle_connect, and connect first ---------------------------

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

// ---- D18: nothing after close ----------------------------------------------------------

/// Closes its own channel from handle_read; every later callback is a bug.
struct ClosesInRead {
    log: Log,
}

impl StreamHandler for ClosesInRead {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("read");
        cx.close();
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
        let token = map.insert(ours, ClosesInRead { log: log.clone() }).expect("insert");
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
        let token = map.insert(ours, ClosesInRead { log: log.clone() }).expect("insert");
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed within 5 s");
        util::run_iterations(&mut map, 5);
        assert_eq!(log.events(), ["read"], "{backend} (tcp): nothing after cx.close(), no handle_close");
        let mut buf = [0u8; 8];
        assert_eq!(peer.recv(&mut buf).ok(), Some(0), "{backend}: the descriptor was closed");
    }
}

// ---- D22: would-block is not an error --------------------------------------------------

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

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

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

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

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

// ---- D23: drain before close -----------------------------------------------------------

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

    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

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

// ---- D19: disconnection errors from handlers -------------------------------------------

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

// ---- Buffered output queued while connecting (asyncore T12) ----------------------------

struct BufferedClient {
    log: Log,
    queued_at_connect: Rc<Cell<Option<usize>>>,
}

impl StreamHandler<Buffered<Connected>> for BufferedClient {
    fn readable(&self, _ch: &Buffered<Connected>) -> bool {
        false
    }

    fn handle_connect(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("connect");
        self.queued_at_connect.set(Some(ch.queued()));
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

#[test]
fn buffered_output_queued_while_connecting_is_sent_after_handle_connect() {
    let data: Vec<u8> = b"I'm not dead yet!\n".repeat(200);
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = std_listener();
        let mut client = Buffered::new(Channel::tcp_v4().expect("socket").connect(addr).expect("connect"));
        client.send(&data).expect("queue while connecting");
        client.send(&data).expect("queue while connecting");
        client.send(b"\n").expect("queue while connecting");
        assert_eq!(
            client.queued(),
            2 * data.len() + 1,
            "{backend}: nothing is sent before the connect completes"
        );
        let queued_at_connect = Rc::new(Cell::new(None));
        let handler = BufferedClient { log: log.clone(), queued_at_connect: Rc::clone(&queued_at_connect) };
        map.insert(client, handler).expect("insert");
        let mut server = accept(&listener);
        server.set_nonblocking(true).expect("nonblocking server");
        let mut expected = data.repeat(2);
        expected.push(b'\n');
        let mut received = Vec::new();
        let done = util::run_until(&mut map, |_| {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = server.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
            received.len() >= expected.len()
        });
        assert!(
            done,
            "{backend}: all queued output arrived; got {} of {} bytes",
            received.len(),
            expected.len()
        );
        assert!(received == expected, "{backend}: the server received exactly data*2 + newline, in order");
        assert_eq!(log.events()[0], "connect", "{backend}: handle_connect came first: {:?}", log.events());
        assert_eq!(
            queued_at_connect.get(),
            Some(2 * data.len() + 1),
            "{backend}: the output was still queued when handle_connect ran"
        );
        assert_eq!(log.events(), ["connect"], "{backend}: no error");
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

    fn handle_close(&mut self, _ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

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

// ---- every backend is covered ----------------------------------------------------------

#[cfg(feature = "select")]
#[test]
fn all_three_backends_are_exercised() {
    use rolecore::Backend;
    let names: Vec<Backend> = util::backends().collect();
    assert_eq!(
        names,
        [Backend::Select, Backend::Poll, Backend::Epoll],
        "this build should have every backend"
    );
}
