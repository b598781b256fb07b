//! CPython 3.11's `test_asyncore.py` fixtures, for its tests ported to
//! rolecore's typed API (T1–T31, `docs/asyncore.md`), which live in the
//! behaviour files (`connect.rs`, `accept.rs`, `events.rs`, `close.rs`, ...).
//!
//! - `BaseTestAPI` (T18–T31) runs, as in CPython, once per address family —
//!   IPv4 on 127.0.0.1, IPv6 on [::1], Unix on a socket file in the temporary
//!   directory — and here once per backend (select, poll, epoll) where CPython
//!   had select and poll (`ported!`). Each test is a module named after its
//!   T-item with one test per variant: `t18_handle_connect::epoll::ipv6`.
//!   CPython's skips are kept: T25 (out-of-band data), T29 and T30 have no
//!   Unix variant, T31 is IPv4/IPv6 only.
//! - CPython's trip-wires are kept (`trip!`): `BaseTestHandler` raised from
//!   every callback a test did not expect, and `handle_error` re-raised. Here
//!   those callbacks panic, which unwinds out of the loop and fails the test
//!   with the callback's name.
//! - `loop_waiting_for_flag` is `super::run_until`: one 10 ms iteration at a
//!   time until the flag is set, at most 5 s, without the fixed sleeps.
//! - Where the typed API makes a case impossible, the compile-fail case in
//!   `tests/ui/` that stands in for it is named in the test's comment, and in
//!   the table of `docs/asyncore.md`. Python-only items (T5's traceback,
//!   T16's `ResourceWarning`) are listed there as not applicable.
//!
//! Loopback only; every loop is bounded.
#![allow(unused_macros)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, ThreadId};
use std::time::Duration;

use super::*;
use rolecore::machine::{Outcome, Phase, Step, Wakeup};
use rolecore::report::{self, Level};
use rolecore::{
    AcceptHandler, Address, Backend, Buffered, Channel, Connected, Ctx, Family, FileFd, FileHandler,
    Interest, Listening, LoopOptions, Map, Readiness, SockType, StreamHandler, Token,
};

/// An address family of CPython's `BaseTestAPI` subclasses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fam {
    /// `TestAPI_UseIPv4Sockets`: 127.0.0.1.
    Ipv4,
    /// `TestAPI_UseIPv6Sockets`: ::1.
    Ipv6,
    /// `TestAPI_UseUnixSockets`: a socket file.
    Unix,
}

impl Fam {
    pub fn named(name: &str) -> Fam {
        match name {
            "ipv4" => Fam::Ipv4,
            "ipv6" => Fam::Ipv6,
            "unix" => Fam::Unix,
            _ => unreachable!("no family {name}"),
        }
    }

    pub fn family(self) -> Family {
        match self {
            Fam::Ipv4 => Family::Ipv4,
            Fam::Ipv6 => Family::Ipv6,
            Fam::Unix => Family::Unix,
        }
    }
}

/// One test per backend and family: `$name::<backend>::<family>` runs
/// `$body(backend, family)`. A backend this build lacks passes trivially.
macro_rules! ported {
    ($(#[$doc:meta])* $name:ident => $body:ident, [$($fam:ident),+]) => {
        $(#[$doc])*
        mod $name {
            ported!(@backend select Select $body [$($fam),+]);
            ported!(@backend poll Poll $body [$($fam),+]);
            ported!(@backend epoll Epoll $body [$($fam),+]);
        }
    };
    (@backend $b:ident $variant:ident $body:ident [$($fam:ident),+]) => {
        mod $b {
            $(
                #[test]
                fn $fam() {
                    let backend = rolecore::Backend::$variant;
                    if backend.is_available() {
                        crate::$body(backend, crate::util::cpython::Fam::named(stringify!($fam)));
                    }
                }
            )+
        }
    };
}

/// One test per backend, for the tests CPython ran once (or once with
/// `use_poll=True`) whose port runs a loop: `$name::<backend>`.
macro_rules! per_backend {
    ($(#[$doc:meta])* $name:ident => $body:ident) => {
        $(#[$doc])*
        mod $name {
            #[test]
            fn select() {
                if rolecore::Backend::Select.is_available() {
                    crate::$body(rolecore::Backend::Select);
                }
            }
            #[test]
            fn poll() {
                crate::$body(rolecore::Backend::Poll);
            }
            #[test]
            fn epoll() {
                crate::$body(rolecore::Backend::Epoll);
            }
        }
    };
}

// ---- fixtures ------------------------------------------------------------------------

pub type Flag = Rc<Cell<bool>>;

/// A socket file that is removed when dropped.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// CPython's `addr` for a family: where a test server binds.
pub fn bind_address(fam: Fam) -> (Address, Option<SocketFile>) {
    match fam {
        Fam::Ipv4 => ("127.0.0.1:0".parse().unwrap(), None),
        Fam::Ipv6 => ("[::1]:0".parse().unwrap(), None),
        Fam::Unix => {
            let path = temp_path("sock");
            let addr = Address::Unix(rolecore::UnixAddress::Path(path.clone()));
            (addr, Some(SocketFile(path)))
        }
    }
}

/// `create_socket(family)`, `set_reuse_addr()`, `bind_af_aware(addr)`,
/// `listen(5)`: a listener and the address clients connect to.
pub fn listener(fam: Fam) -> (Channel<Listening>, Address, Option<SocketFile>) {
    let (addr, file) = bind_address(fam);
    let listener = Channel::create_socket(fam.family(), SockType::Stream)
        .expect("create_socket")
        .set_reuse_addr()
        .expect("set_reuse_addr")
        .bind(&addr)
        .expect("bind")
        .listen(5)
        .expect("listen");
    let address = listener.local_addr().expect("the listener's address");
    (listener, address, file)
}

/// `BaseClient.__init__`: `create_socket(family)`, `connect(address)`.
pub fn connect(address: &Address) -> Channel<rolecore::Connecting> {
    Channel::for_address(address).expect("create_socket").connect(address).expect("connect")
}

/// `loop_waiting_for_flag`.
pub fn wait_for(map: &mut Map, flag: &Flag, what: &str) {
    assert!(super::run_until(map, |_| flag.get()), "flag not set: {what} never happened within 5 s");
}

/// What the server makes of each accepted connection.
pub type MakeHandler = Box<dyn FnMut(Channel<Connected>, &mut Ctx<'_>) -> io::Result<()>>;

/// CPython's `BaseServer`: accepts, hands each connection to `make` (the
/// test's handler class), and re-raises errors.
pub struct BaseServer {
    pub make: MakeHandler,
    pub accepted: Rc<Cell<usize>>,
}

impl AcceptHandler for BaseServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.accepted.set(self.accepted.get() + 1);
        (self.make)(conn, cx)
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("BaseServer.handle_error re-raises: {error}");
    }
}

/// A running `BaseServer`.
pub struct Server {
    pub address: Address,
    pub token: Token,
    pub accepted: Rc<Cell<usize>>,
    pub _file: Option<SocketFile>,
}

pub fn start_server(map: &mut Map, fam: Fam, make: MakeHandler) -> Server {
    let (listener, address, file) = listener(fam);
    let accepted = Rc::new(Cell::new(0));
    let token =
        map.insert(listener, BaseServer { make, accepted: Rc::clone(&accepted) }).expect("insert the server");
    Server { address, token, accepted, _file: file }
}

/// The default `handler=BaseTestHandler` of `BaseServer`.
pub fn base_test_handler() -> MakeHandler {
    Box::new(|conn, cx| {
        cx.insert(conn, BaseTestHandler)?;
        Ok(())
    })
}

/// Reads and drops: asyncore's default `handle_read` only logged, rolecore
/// has no default (a stream that never reads would spin).
pub fn discard(ch: &mut Channel<Connected>) -> io::Result<()> {
    ch.recv(&mut [0u8; 1024]).map(drop)
}

/// CPython's trip-wires: callbacks a test does not expect raise.
macro_rules! trip {
    (connect) => {
        fn handle_connect(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
            panic!("handle_connect not supposed to be called");
        }
    };
    (connect_failed) => {
        fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
            panic!("the connect failed (asyncore: handle_error re-raises): {error}");
        }
    };
    (expt) => {
        fn handle_expt(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
            panic!("handle_expt not supposed to be called");
        }
    };
    (close) => {
        fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
            panic!("handle_close not supposed to be called");
        }
    };
    (error) => {
        fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
            panic!("handle_error re-raises: {error}");
        }
    };
    ($($callback:ident),+) => {
        $(trip!($callback);)+
    };
}

/// CPython's `BaseTestHandler` on an accepted connection.
pub struct BaseTestHandler;

impl StreamHandler for BaseTestHandler {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
    trip!(connect, expt, close, error);
}

/// CPython's `BaseClient`: `handle_connect` passes, the rest are trip-wires.
pub struct BaseClient {
    pub connected_to: Rc<RefCell<Option<Address>>>,
}

impl BaseClient {
    pub fn new() -> BaseClient {
        BaseClient { connected_to: Rc::default() }
    }
}

impl StreamHandler for BaseClient {
    fn handle_connect(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        *self.connected_to.borrow_mut() = Some(ch.peer_addr()?);
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
    trip!(connect_failed, expt, close, error);
}

/// Implements only what it must.
pub struct Minimal;

impl StreamHandler for Minimal {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
}

impl StreamHandler<Buffered<Connected>> for Minimal {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

impl AcceptHandler for Minimal {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        Ok(())
    }
}

impl FileHandler for Minimal {
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}
