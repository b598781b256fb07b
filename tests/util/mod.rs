//! Helpers shared by the behaviour tests. Each test file includes this with
//! `mod util;`; not every file uses every helper.
#![allow(dead_code, unused_imports, unused_macros)]

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rolecore::{
    AcceptHandler, Address, Backend, Channel, Connected, Ctx, Listening, LoopOptions, Map, StreamHandler,
    Token,
};

/// A handler's `handle_close` and `handle_error` that record what they are
/// told in the `Log` at `self.$log` ("close", "error:…") and close on an
/// error, as the default does: what most recording handlers of these tests
/// share. `$ch` is the channel type the handler is given.
#[allow(unused_macros)]
macro_rules! logs_close_and_errors {
    ($log:tt, $ch:ty) => {
        fn handle_close(&mut self, _ch: &mut $ch, _cx: &mut rolecore::Ctx<'_>) {
            self.$log.push("close");
        }

        fn handle_error(&mut self, _ch: &mut $ch, error: std::io::Error, cx: &mut rolecore::Ctx<'_>) {
            self.$log.push(format!("error:{error}"));
            cx.close();
        }
    };
}

#[macro_use]
pub mod cpython;
pub mod probe;
pub mod recorder;

/// Every backend this build has.
pub fn backends() -> impl Iterator<Item = Backend> {
    Backend::ALL.into_iter().filter(|b| b.is_available())
}

/// A fresh map on `backend`.
pub fn map(backend: Backend) -> Map {
    Map::with_backend(backend).expect("create a map")
}

/// Runs `map` one short iteration at a time until `done()` holds, the map is
/// empty, or 5 s pass: asyncore's tests' `loop_waiting_for_flag`, without the
/// fixed sleeps. Returns whether `done()` held.
pub fn run_until(map: &mut Map, mut done: impl FnMut(&Map) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done(map) {
            return true;
        }
        if map.is_empty() {
            return done(map);
        }
        map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).expect("loop");
    }
    done(map)
}

/// Runs `client` in a thread while the map runs (as [`run_until`]); returns
/// what the client returned.
pub fn with_client<R: Send + 'static>(map: &mut Map, client: impl FnOnce() -> R + Send + 'static) -> R {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let thread = std::thread::spawn(move || {
        let result = client();
        flag.store(true, Ordering::SeqCst);
        result
    });
    assert!(run_until(map, |_| done.load(Ordering::SeqCst)), "the client did not finish");
    thread.join().expect("the client panicked")
}

/// Runs `n` iterations with a short timeout.
pub fn run_iterations(map: &mut Map, n: u64) {
    map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(n)).expect("loop");
}

/// A shared, ordered record of what handlers saw.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
    pub fn contains(&self, event: &str) -> bool {
        self.0.borrow().iter().any(|e| e == event)
    }
    pub fn count(&self, event: &str) -> usize {
        self.0.borrow().iter().filter(|e| *e == event).count()
    }
}

/// The path of an example binary that `cargo test` built.
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built: run the tests with `cargo test`", path.display());
    path
}

/// Runs `command` to its exit, as `Command::output`, but at most `limit`:
/// a program that should have refused its arguments at once and started
/// serving instead is killed, and the test fails on its exit status (a
/// signal, no code) rather than waiting forever. Stdin is closed.
pub fn output_within(command: &mut std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    // Read both pipes meanwhile, so a talkative program cannot block on them.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let stdout = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = out.read_to_end(&mut all);
        all
    });
    let stderr = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = err.read_to_end(&mut all);
        all
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().expect("wait for the killed program");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Open descriptors of this process, to check for leaks.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

// ---- descriptor accounting ----------------------------------------------------

/// A path no other test uses, in the temporary directory.
pub fn temp_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("rolecore-ported-{}-{n}.{what}", std::process::id()));
    // A file left at this name by an earlier process with the same id
    // (ids are reused, and a Unix socket's file outlives its listener):
    // a bind to the path would fail with `AddrInUse`.
    let _ = std::fs::remove_file(&path);
    path
}

/// A temporary file with `content`, removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(content: &[u8]) -> TempFile {
        let path = temp_path("txt");
        std::fs::write(&path, content).expect("write the temporary file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Descriptor accounting. Some tests count the process's open descriptors,
/// or need the kernel to hand a just-closed descriptor number to the next
/// channel. Tests of one binary run in parallel threads of one process, so
/// such a test holds this lock exclusively ([`exclusive`]), and every other
/// test of its file holds it shared ([`shared`]).
pub static FD_LOCK: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    FD_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// Fails clearly, rather than with a stray `EMFILE`, when the soft descriptor
/// limit cannot hold `more` descriptors on top of the open ones.
pub fn require_fd_headroom(more: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        let needed = open_fds() + more + 64;
        assert!(soft >= needed, "this test needs {needed} descriptors: raise `ulimit -n` (now {soft})");
    }
}

// ---- sockets ------------------------------------------------------------------

/// A rolecore listener on 127.0.0.1 with a kernel-chosen port.
pub fn tcp_listener() -> (Channel<Listening>, SocketAddr) {
    let listener =
        Channel::tcp_v4().expect("socket").bind("127.0.0.1:0").expect("bind").listen(16).expect("listen");
    let addr = listener.local_addr().expect("local_addr").inet().expect("an IP address");
    (listener, addr)
}

/// A std listener on 127.0.0.1, for the server side of client tests.
pub fn std_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    (listener, addr)
}

/// Accepts one connection on a std listener, with a bounded read timeout.
pub fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    stream
}

/// A connected loopback TCP pair: our end as a channel, the peer as a std stream.
pub fn tcp_pair() -> (Channel<Connected>, TcpStream) {
    let (listener, addr) = std_listener();
    let client = TcpStream::connect(addr).expect("connect");
    let server = accept(&listener);
    (Channel::try_from(client).expect("adopt the client"), server)
}

/// A connected loopback TCP pair, both ends as channels (for `send_oob`).
pub fn tcp_channel_pair() -> (Channel<Connected>, Channel<Connected>) {
    let (ours, peer) = tcp_pair();
    (ours, Channel::try_from(peer).expect("adopt the server"))
}

/// An address where nothing listens: bind a listener, take its port, drop it.
pub fn closed_port() -> SocketAddr {
    let (listener, addr) = std_listener();
    drop(listener);
    addr
}

/// Reads from a std peer until `want` bytes arrived or the peer's read timeout.
pub fn read_exactly(peer: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    peer.read_exact(&mut got).expect("the peer reads what the channel sent");
    got
}

/// Whether a std peer sees the end of the stream (our channel was closed).
pub fn peer_sees_eof(peer: &mut TcpStream) -> bool {
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
pub struct Idle;

impl StreamHandler for Idle {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

/// Inserts an idle channel; the returned peer must be kept alive.
pub fn keep_loop_alive(map: &mut Map) -> Channel<Connected> {
    let (ours, peer) = Channel::pair().expect("socketpair");
    map.insert(ours, Idle).expect("insert the keeper");
    peer
}

// ---- small handlers -----------------------------------------------------------

/// Reads whatever arrives and never reads: one handle_write per
/// iteration. Optionally stops the loop after `stop_at` writes.
#[derive(Default)]
pub struct AlwaysWritable {
    pub writes: u32,
    pub stop_at: Option<u32>,
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

pub fn writes(map: &Map, token: Token) -> u32 {
    map.handler::<AlwaysWritable>(token).expect("the AlwaysWritable handler").writes
}

/// Reads whatever arrives into a shared buffer; counts handle_close.
pub struct Reader {
    pub data: Rc<RefCell<Vec<u8>>>,
    pub closes: Rc<Cell<u32>>,
}

impl Reader {
    pub fn new() -> Self {
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

/// Inserts every accepted connection into the loop with a `Reader`.
pub struct InsertingServer {
    pub inserted: Vec<Token>,
    pub data: Rc<RefCell<Vec<u8>>>,
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

/// Writable while its own field says so.
#[derive(Default)]
pub struct Toggle {
    pub want_write: bool,
    pub writes: u32,
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

/// Runs `iterations` waits of `each` and returns how long they took.
pub fn timed_iterations(map: &mut Map, iterations: u64, each: Duration) -> Duration {
    let started = Instant::now();
    map.run(LoopOptions::new().timeout(each).count(iterations)).expect("loop");
    started.elapsed()
}

/// Reads and counts; any event at all is recorded.
pub struct Quiet(pub Rc<Cell<usize>>);

impl StreamHandler for Quiet {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(self.0.get() + 1);
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}
