//! Listeners: `handle_accept` and the default that passes each connection
//! and its peer's address to `handle_accepted`; every pending connection is
//! accepted; a client that resets at once; abstract Unix names; a listener at
//! the descriptor limit pauses instead of closing or spinning (P1).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::rc::Rc;
use std::thread::{self};
use std::time::Duration;

use rolecore::{
    AcceptHandler, Address, Backend, Channel, Connected, Ctx, Listening, LoopOptions, StreamHandler,
    UnixAddress,
};
use util::cpython::*;
use util::probe::*;
use util::recorder::*;
use util::*;

/// T19's `TestListener`: `handle_accept` sets the flag and never accepts.
struct AcceptFlag(Flag);

impl AcceptHandler for AcceptFlag {
    fn handle_accept(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(true);
        Ok(())
    }

    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        panic!("handle_accepted not supposed to be called");
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) {
        panic!("handle_close not supposed to be called");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("handle_error re-raises: {error}");
    }
}

fn t19(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let (listener, address, _file) = listener(fam);
    let flag = Flag::default();
    map.insert(listener, AcceptFlag(Rc::clone(&flag))).unwrap();
    map.insert(connect(&address), BaseClient::new()).unwrap();
    wait_for(&mut map, &flag, "handle_accept");
}

ported! {
    /// T19 `test_handle_accept` (A22, A31, A37): a listener's readability is
    /// `handle_accept`.
    t19_handle_accept => t19, [ipv4, ipv6, unix]
}

/// T20's `TestListener`: the default `handle_accept`, and a
/// `handle_accepted` that closes the connection and sets the flag.
struct AcceptedFlag(Flag);

impl AcceptHandler for AcceptedFlag {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        conn.close();
        self.0.set(true);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) {
        panic!("handle_close not supposed to be called");
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("handle_error re-raises: {error}");
    }
}

fn t20(backend: Backend, fam: Fam) {
    let mut map = util::map(backend);
    let (listener, address, _file) = listener(fam);
    let flag = Flag::default();
    map.insert(listener, AcceptedFlag(Rc::clone(&flag))).unwrap();
    map.insert(connect(&address), BaseClient::new()).unwrap();
    wait_for(&mut map, &flag, "handle_accepted");
}

ported! {
    /// T20 `test_handle_accepted` (A25, A37, A38): the default `handle_accept`
    /// accepts one connection and passes it to `handle_accepted`.
    t20_handle_accepted => t20, [ipv4, ipv6, unix]
}

/// T31's server-side handler of the reset connection: its first read finds
/// the end, which is `handle_close` (P22); an error would fail the test.
struct ResetPeer(Rc<RefCell<Vec<&'static str>>>);

impl StreamHandler for ResetPeer {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.borrow_mut().push("read");
        discard(ch)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.borrow_mut().push("close");
    }
    trip!(connect, expt, error);
}

fn t31(backend: Backend, fam: Fam) {
    let (listener, address, _file) = listener(fam);
    let events = Rc::new(RefCell::new(Vec::new()));
    let accepted = Rc::new(Cell::new(0));
    let make: MakeHandler = {
        let events = Rc::clone(&events);
        Box::new(move |conn, cx| {
            cx.insert(conn, ResetPeer(Rc::clone(&events)))?;
            Ok(())
        })
    };
    // BaseServer in the default map.
    rolecore::with_socket_map(|m| {
        m.insert(listener, BaseServer { make, accepted: Rc::clone(&accepted) }).map(drop)
    })
    .unwrap()
    .unwrap();
    // A client with SO_LINGER (1, 0) connects and closes: a reset, before the
    // server accepts.
    let addr: SocketAddr = address.inet().unwrap();
    thread::spawn(move || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO)).unwrap();
        drop(s);
    })
    .join()
    .unwrap();
    // loop(timeout=0.1, count=5) on the default map.
    let result = rolecore::loop_(Some(Duration::from_millis(100)), backend, None, Some(5));
    rolecore::close_all(None).unwrap();
    result.expect("the loop ends without an error");
    assert_eq!(accepted.get(), 1, "the reset connection was accepted");
    let events = events.borrow();
    assert_eq!(events.last().copied(), Some("close"), "its first read found the end: {events:?}");
    assert_eq!(events.iter().filter(|e| **e == "close").count(), 1, "handle_close once: {events:?}");
}

ported! {
    /// T31 `test_quick_connect` (A14, A25, P22, bpo-10340): accepting a
    /// connection that was reset before the accept is no error; the accepted
    /// channel's first read reports the end (asyncore: `getpeername` raised
    /// ENOTCONN and the dispatcher came out with `connected=False`). Runs on
    /// the thread's default map with `loop_`, as CPython's used the global
    /// map; IPv4 and IPv6 only, as in CPython.
    t31_quick_connect => t31, [ipv4, ipv6]
}

/// Accepts, records the peer's address, keeps the connection.
struct AcceptRecorder {
    log: Log,
    kept: Vec<Channel<Connected>>,
}

impl AcceptHandler for AcceptRecorder {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.log.push(format!("accepted:{peer:?}"));
        self.kept.push(conn);
        Ok(())
    }
}

/// Item 22 (mio `unix_listener_abstract_namespace`, `issue_1403`): a listener
/// on a Linux abstract name accepts a connection, and an unbound client's
/// address is unnamed.
#[test]
fn an_abstract_unix_listener_accepts_and_an_unbound_peer_is_unnamed() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let name = format!("rolecore-conformance-{}-{backend}", std::process::id());
        let text = format!("unix:@{name}");
        let listener: Channel<Listening> = Channel::unix_stream()?.bind(text.as_str())?.listen(8)?;
        assert_eq!(listener.local_addr()?, Address::Unix(UnixAddress::Abstract(name.clone().into_bytes())));
        let log = Log::default();
        let mut m = map(backend);
        m.insert(listener, AcceptRecorder { log: log.clone(), kept: Vec::new() })?;
        let client = Channel::unix_stream()?.connect(text.as_str())?;
        let client_addr = client.local_addr()?;
        m.insert(client, Probe::new("client", &log))?;
        let accepted =
            |log: &Log| log.events().into_iter().find_map(|e| e.strip_prefix("accepted:").map(String::from));
        assert!(
            run_until(&mut m, |_| accepted(&log).is_some()
                && log.contains("client:connect(recv:wouldblock)")),
            "{backend}: {:?}",
            log.events()
        );
        let unnamed = Address::Unix(UnixAddress::Unnamed);
        assert_eq!(
            (client_addr, accepted(&log).expect("accepted")),
            (unnamed.clone(), format!("{unnamed:?}")),
            "{backend}: (the unbound client's own address, its address as the listener saw it)"
        );
        assert_eq!(m.len(), 2, "{backend}");
    }
    Ok(())
}

const EMFILE_CHILD: &str = "ROLECORE_CONFORMANCE_EMFILE_CHILD";

/// Counts its accept attempts and records what happens to the listener.
struct Survivor {
    log: Log,
    attempts: Rc<Cell<usize>>,
    accepted: Rc<Cell<usize>>,
}

impl AcceptHandler for Survivor {
    fn handle_accept(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.attempts.set(self.attempts.get() + 1);
        match ch.accept() {
            Ok(Some((conn, peer))) => self.handle_accepted(conn, peer, cx),
            Ok(None) => Ok(()),
            Err(e) => {
                self.log.push(format!("accept:{:?}", e.raw_os_error()));
                Err(e)
            }
        }
    }

    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.accepted.set(self.accepted.get() + 1);
        drop(conn);
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{:?}", error.raw_os_error()));
    }

    fn handle_close(&mut self, _ch: &mut Channel<Listening>, _cx: &mut Ctx<'_>) {
        self.log.push("close");
    }
}

/// Item 25, `EMFILE` on accept (no peer tests it; asyncore P1): at the
/// descriptor limit the accept's `EMFILE` reaches the accepting code, the
/// listener neither closes (no `handle_close`, no `handle_error`, the loop
/// goes on) nor spins (fewer accept attempts than loop iterations: it
/// pauses), and it accepts the waiting connections once descriptors are free.
///
/// The test runs itself again in a child process whose limit `ulimit -n`
/// lowered, so the rest of this binary keeps its descriptors.
#[test]
fn a_listener_at_the_descriptor_limit_pauses_instead_of_closing_or_spinning_then_recovers() -> io::Result<()>
{
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return emfile_child();
    }
    let _fds = shared();
    let name = "a_listener_at_the_descriptor_limit_pauses_instead_of_closing_or_spinning_then_recovers";
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" "$@""#)
        .arg(std::env::current_exe()?)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(EMFILE_CHILD, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(())
}

fn emfile_child() -> io::Result<()> {
    const ITERATIONS: usize = 10;
    let emfile = rustix::io::Errno::MFILE.raw_os_error();
    for backend in backends() {
        let log = Log::default();
        let attempts = Rc::new(Cell::new(0));
        let accepted = Rc::new(Cell::new(0));
        let mut m = map(backend);
        let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(16)?;
        let addr = listener.local_addr()?.inet().expect("an IP listener");
        let survivor = Survivor { log: log.clone(), attempts: attempts.clone(), accepted: accepted.clone() };
        let token = m.insert(listener, survivor)?;
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr)).collect::<io::Result<_>>()?;
        let mut filler = Vec::new();
        let exhausted = loop {
            match File::open("/dev/null") {
                Ok(f) => filler.push(f),
                Err(e) => break e,
            }
            assert!(filler.len() < 4096, "the descriptor limit was not lowered");
        };
        assert_eq!(exhausted.raw_os_error(), Some(emfile), "{exhausted}");

        let result = m.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(ITERATIONS as u64));
        let (events, tried) = (log.events(), attempts.get());
        drop(filler);
        result?;
        assert!(log.contains(&format!("accept:Some({emfile})")), "{backend}: {events:?}");
        assert!(events.iter().all(|e| e.starts_with("accept:")), "{backend}: closed or reported: {events:?}");
        assert!(m.contains(token), "{backend}: the listener was closed");
        assert!(tried < ITERATIONS, "{backend}: {tried} accepts in {ITERATIONS} iterations: it spins");
        assert_eq!(accepted.get(), 0, "{backend}");

        assert!(run_until(&mut m, |_| accepted.get() == clients.len()), "{backend}: {:?}", log.events());
        assert!(m.contains(token), "{backend}");
    }
    Ok(())
}

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
