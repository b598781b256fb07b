//! A small netcat on one thread: stdin to a socket, the socket to stdout.
//!
//! ```text
//! netcat HOST:PORT [--backend select|poll|epoll] [--timeout SECS]      connect, then copy both ways
//! netcat --listen ADDR [--backend select|poll|epoll] [--timeout SECS]  accept one connection, then the same
//! ```
//!
//! `HOST:PORT` is anything [`rolecore::Address`] parses (`127.0.0.1:8080`,
//! `[::1]:8080`, `unix:/path`, `unix:@name`) or a host name, resolved once
//! before the loop starts. With `--listen`, `listening on HOST:PORT` goes to
//! stderr first (port 0 picks a free port).
//!
//! Both directions run at once until both are done:
//!
//! - stdin → socket is done at stdin's end of file, once everything read was
//!   sent: netcat then shuts down the socket's write side (a half-close), so
//!   the peer sees the end of the stream but can still send;
//! - socket → stdout is done when the peer closes its side, once everything
//!   received was written out.
//!
//! Then netcat exits 0. A peer that went away altogether (a send fails) ends
//! the stdin → socket direction early; that is not an error either. Errors
//! (refused connect, stdout gone, …) are one line on stderr and exit 1; bad
//! arguments print the usage and exit 2.
//!
//! `--timeout SECS` (`-w`, as netcat's) bounds the connect, and the
//! connection's silence: once no byte was sent or received on the socket for
//! SECS, netcat says so and exits 1. Without it, netcat waits as long as the
//! peer keeps the connection open and silent (a peer that never reads stops
//! stdin, bounded by the queues, for good).
//!
//! # How it is built
//!
//! Four channels in one [`Map`], sharing two bounded queues:
//!
//! ```text
//!   stdin  (Channel<FileFd>)    ──up──►  socket writer (Channel<Connected>, a dup)
//!   socket reader (Channel<Connected>) ──down──►  stdout (Channel<FileFd>)
//! ```
//!
//! - **Back-pressure, no spinning.** A queue holds at most [`QUEUE`] bytes:
//!   its source says `readable()` only while there is room, its sink says
//!   `writable()` only while there is something to write (or the end to
//!   pass on). Whoever changes a queue asks the other side's predicates again
//!   (`Ctx::refresh`), since they read shared state.
//! - **Two channels for one socket.** rolecore closes a stream once it has
//!   read the peer's end of stream (after sending what was queued). A netcat
//!   must go on sending stdin after the peer half-closed, so the socket is
//!   duplicated: the reader channel may close at the peer's end while the
//!   writer channel keeps sending, then shuts down the write side.
//! - **A hang-up while paused is drained, not dropped.** A source paused by
//!   back-pressure does not read, and when its descriptor hangs up (the pipe's
//!   writer closed; both directions of the socket shut down) rolecore calls
//!   `handle_close` without a read first (on poll and epoll, which report a
//!   hang-up whatever the interest). Everything the peer sent is then
//!   already in the kernel's buffer, so `handle_close` reads it to the end:
//!   bounded by the pipe's or socket's buffer size.

#[path = "serve/stale_socket.rs"]
mod stale_socket;
use stale_socket::remove_stale_socket;
use std::cell::RefCell;
use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{
    AcceptHandler, Address, Backend, Channel, Connected, Ctx, FileFd, FileHandler, LoopOptions, Map,
    StreamHandler, Token, UnixAddress,
};

/// The most bytes one direction queues before its source stops reading.
const QUEUE: usize = 1 << 20;
/// The most bytes one read asks for.
const CHUNK: usize = 64 * 1024;

const USAGE: &str = "usage: netcat HOST:PORT [--backend select|poll|epoll] [--timeout SECS] | netcat --listen ADDR \
                     [--backend select|poll|epoll] [--timeout SECS]";

// ---- the queues ------------------------------------------------------------------

/// Bytes on their way from a source channel to a sink channel.
#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the sink.
    start: usize,
    /// The source reached its end: once empty, the sink passes the end on.
    ended: bool,
    /// The sink is gone: the source stops, what is queued is dropped.
    sink_gone: bool,
}

impl Queue {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn has_room(&self) -> bool {
        !self.ended && !self.sink_gone && self.pending().len() < QUEUE
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Appends what one `read` gives, up to `max` bytes: `Ok(0)` is the end.
    fn fill(&mut self, max: usize, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            // Each byte moves at most once more.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + max, 0);
        let result = read(&mut self.buf[old..]);
        self.buf.truncate(old + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Reads until the end, an error or would-block, past the bound if need
    /// be: only for a source whose descriptor hung up, whose remaining bytes
    /// are all in a kernel buffer already.
    fn drain(&mut self, mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) {
        while !self.sink_gone && matches!(self.fill(CHUNK, &mut read), Ok(1..)) {}
    }
}

/// What the four channels share.
#[derive(Default)]
struct Session {
    /// stdin → socket.
    up: Queue,
    /// socket → stdout.
    down: Queue,
    stdin: Option<Token>,
    stdout: Option<Token>,
    reader: Option<Token>,
    writer: Option<Token>,
    /// The first fatal error: the loop stops and netcat exits 1.
    error: Option<String>,
    /// `--timeout`: the longest the socket may stay silent both ways.
    timeout: Option<Duration>,
    /// When a byte last moved on the socket (either way), on the map's clock.
    active: Option<Instant>,
}

type Shared = Rc<RefCell<Session>>;

/// Runs `f` on the session. Borrows end before any `Ctx::refresh`, which
/// asks the other handlers' predicates, and they read the session too.
fn with<T>(shared: &Shared, f: impl FnOnce(&mut Session) -> T) -> T {
    f(&mut shared.borrow_mut())
}

/// Records a fatal error and stops the loop.
fn fail(shared: &Shared, cx: &mut Ctx<'_>, message: String) {
    with(shared, |s| {
        s.error.get_or_insert(message);
    });
    cx.stop();
}

/// `moved` bytes went through the socket: it is not silent.
fn moved(shared: &Shared, cx: &mut Ctx<'_>, moved: bool) {
    if moved {
        let now = cx.now();
        with(shared, |s| s.active = Some(now));
    }
}

/// A socket channel's timer passed: fails once the socket was silent both
/// ways for `--timeout`, else waits for the rest of it. (Each direction
/// re-arms only its own channel's timer, so the channels ask the session.)
fn check_silence(shared: &Shared, cx: &mut Ctx<'_>) {
    let (timeout, active) = with(shared, |s| (s.timeout, s.active));
    let Some(timeout) = timeout else { return };
    let due = active.and_then(|active| active.checked_add(timeout));
    match due {
        Some(due) if due > cx.now() => {
            cx.set_deadline(cx.token(), Some(due));
        }
        _ => fail(
            shared,
            cx,
            format!("timed out: nothing sent or received for {} s (--timeout)", timeout.as_secs_f64()),
        ),
    }
}

fn refresh(cx: &mut Ctx<'_>, token: Option<Token>) {
    if let Some(token) = token {
        cx.refresh(token);
    }
}

// ---- stdin -------------------------------------------------------------------------

struct Stdin(Shared);

impl FileHandler for Stdin {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        self.0.borrow().up.has_room()
    }

    fn handle_read(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) -> io::Result<()> {
        // 0: the end of file; the loop calls handle_close.
        let (read, writer) = with(&self.0, |s| {
            let room = QUEUE - s.up.pending().len();
            (s.up.fill(room.min(CHUNK), |buf| ch.recv(buf)), s.writer)
        });
        refresh(cx, writer);
        read.map(drop)
    }

    fn handle_close(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) {
        let writer = with(&self.0, |s| {
            s.up.drain(|buf| ch.recv(buf));
            s.up.ended = true;
            s.writer
        });
        refresh(cx, writer);
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.0, cx, format!("reading stdin: {error}"));
    }
}

// ---- stdout ------------------------------------------------------------------------

struct Stdout(Shared);

impl FileHandler for Stdout {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<FileFd>) -> bool {
        let s = self.0.borrow();
        !s.down.pending().is_empty() || s.down.ended
    }

    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(()) // never asked to read
    }

    fn handle_write(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) -> io::Result<()> {
        // 0 written: full, or the reading end is gone (the loop calls handle_close).
        let (written, done, reader) = with(&self.0, |s| {
            let written = match s.down.pending() {
                [] => Ok(()),
                pending => ch.send(pending).map(|n| s.down.consume(n)),
            };
            (written, s.down.pending().is_empty() && s.down.ended, s.reader)
        });
        refresh(cx, reader);
        if done {
            cx.close(); // socket → stdout is done
        }
        written
    }

    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) {
        with(&self.0, |s| s.down.sink_gone = true);
        fail(&self.0, cx, "writing stdout: the reading end is gone".into());
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.0, cx, format!("writing stdout: {error}"));
    }
}

// ---- the socket ----------------------------------------------------------------------

/// The socket's receiving side; also the connecting channel in client mode.
struct Reader {
    shared: Shared,
    peer: String,
}

impl StreamHandler for Reader {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        self.shared.borrow().down.has_room()
    }

    fn handle_connect(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        start_session(&self.shared, cx.token(), duplicate(ch.as_fd())?, cx)
    }

    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.shared, cx, format!("cannot connect to {}: {error}", self.peer));
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        // 0: the peer's end of stream (or a reset); the loop calls handle_close.
        let (read, stdout) = with(&self.shared, |s| {
            let room = QUEUE - s.down.pending().len();
            (s.down.fill(room.min(CHUNK), |buf| ch.recv(buf)), s.stdout)
        });
        moved(&self.shared, cx, matches!(read, Ok(1..)));
        refresh(cx, stdout);
        read.map(drop)
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        check_silence(&self.shared, cx);
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) {
        let stdout = with(&self.shared, |s| {
            s.down.drain(|buf| ch.recv(buf));
            s.down.ended = true;
            s.stdout
        });
        refresh(cx, stdout);
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.shared, cx, format!("receiving from {}: {error}", self.peer));
    }
}

/// The socket's sending side: a duplicate of the reader's descriptor.
struct Writer(Shared);

impl StreamHandler for Writer {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false // the reader reads
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        let s = self.0.borrow();
        !s.up.pending().is_empty() || s.up.ended
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(()) // never asked to read
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        // 0 sent: full, or the peer is gone (the loop calls handle_close).
        let (sent, done, stdin) = with(&self.0, |s| {
            let sent = match s.up.pending() {
                [] => Ok(0),
                pending => ch.send(pending).inspect(|&n| s.up.consume(n)),
            };
            (sent, s.up.pending().is_empty() && s.up.ended, s.stdin)
        });
        moved(&self.0, cx, matches!(sent, Ok(1..)));
        refresh(cx, stdin);
        sent?;
        if done {
            // stdin → socket is done: tell the peer; the reader keeps receiving.
            match ch.shutdown(std::net::Shutdown::Write) {
                Err(e) if !rolecore::is_disconnect(&e) => return Err(e),
                _ => cx.close(),
            }
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        check_silence(&self.0, cx);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) {
        // The peer takes nothing more: stop reading stdin. Not an error.
        let stdin = with(&self.0, |s| {
            s.up.sink_gone = true;
            s.up.buf = Vec::new();
            s.up.start = 0;
            s.stdin.take()
        });
        if let Some(stdin) = stdin {
            cx.remove(stdin);
        }
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.0, cx, format!("sending: {error}"));
    }
}

/// The connection is up: add the writer (a duplicate of the reader's
/// socket), stdin and stdout.
fn start_session(
    shared: &Shared,
    reader: Token,
    writer: Channel<Connected>,
    cx: &mut Ctx<'_>,
) -> io::Result<()> {
    let writer = cx.insert(writer, Writer(Rc::clone(shared)))?;
    let stdin = cx.insert(Channel::dup_file(io::stdin())?, Stdin(Rc::clone(shared)))?;
    let stdout = cx.insert(Channel::dup_file(io::stdout())?, Stdout(Rc::clone(shared)))?;
    let timeout = {
        let mut s = shared.borrow_mut();
        s.reader = Some(reader);
        s.writer = Some(writer);
        s.stdin = Some(stdin);
        s.stdout = Some(stdout);
        s.active = Some(cx.now());
        s.timeout
    };
    // The silence counts from now, for both directions.
    cx.set_deadline_after(reader, timeout);
    cx.set_deadline_after(writer, timeout);
    Ok(())
}

/// A second channel on the same socket (close-on-exec, like every
/// descriptor rolecore makes).
fn duplicate(socket: BorrowedFd<'_>) -> io::Result<Channel<Connected>> {
    Ok(Channel::try_from(socket.try_clone_to_owned()?)?)
}

// ---- listening -----------------------------------------------------------------------

struct Listener(Shared);

impl AcceptHandler for Listener {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let writer = duplicate(conn.as_fd())?;
        let reader = cx.insert(conn, Reader { shared: Rc::clone(&self.0), peer: peer.to_string() })?;
        start_session(&self.0, reader, writer, cx)?;
        // One connection only: stop listening.
        cx.close();
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<rolecore::Listening>, error: io::Error, cx: &mut Ctx<'_>) {
        fail(&self.0, cx, format!("accepting: {error}"));
    }
}

// ---- main ------------------------------------------------------------------------------

enum Mode {
    Connect(Address),
    Listen(Address),
}

fn main() -> ExitCode {
    let (mode, backend, timeout) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            // Help that was asked for goes to stdout; a mistake is one
            // line on stderr: what is wrong, then how to call it.
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("netcat: {message}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    // Adopting stdin and stdout makes their open file descriptions
    // non-blocking, which a terminal shares with the shell: put the flags
    // back on the way out.
    let saved = [save_flags(io::stdin().as_fd()), save_flags(io::stdout().as_fd())];
    let result = run(mode, backend, timeout);
    for (fd, flags) in [io::stdin().as_fd(), io::stdout().as_fd()].into_iter().zip(saved) {
        if let Some(flags) = flags {
            let _ = rustix::fs::fcntl_setfl(fd, flags);
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netcat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn save_flags(fd: BorrowedFd<'_>) -> Option<rustix::fs::OFlags> {
    rustix::fs::fcntl_getfl(fd).ok()
}

fn run(mode: Mode, backend: Backend, timeout: Option<Duration>) -> io::Result<()> {
    let shared = Shared::default();
    shared.borrow_mut().timeout = timeout;
    let mut map = Map::with_backend(backend)?;
    match mode {
        Mode::Connect(addr) => {
            let channel = Channel::for_address(&addr)?.connect(&addr)?;
            let token = map.insert(channel, Reader { shared: Rc::clone(&shared), peer: addr.to_string() })?;
            // A connect still running then fails with `TimedOut`.
            map.set_deadline_after(token, timeout);
        }
        Mode::Listen(addr) => {
            if let Address::Unix(UnixAddress::Path(path)) = &addr {
                remove_stale_socket(path); // a socket file left by an earlier run
            }
            let listener = Channel::for_address(&addr)?.set_reuse_addr()?.bind(&addr)?.listen(1)?;
            eprintln!("listening on {}", listener.local_addr()?);
            map.insert(listener, Listener(Rc::clone(&shared)))?;
        }
    }
    map.run(LoopOptions::new().no_timeout())?;
    match shared.borrow_mut().error.take() {
        Some(message) => Err(io::Error::other(message)),
        None => Ok(()),
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<(Mode, Backend, Option<Duration>), String> {
    let mut listen = false;
    let mut target = None;
    let mut backend = Backend::default();
    let mut timeout = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-w" | "--timeout" => {
                let secs = args.next().ok_or(format!("{arg} needs a number of seconds"))?;
                let secs = secs
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| !d.is_zero())
                    .ok_or(format!("{arg} {secs:?}: not a positive number of seconds"))?;
                timeout = Some(secs);
            }
            "-l" | "--listen" => listen = true,
            "--backend" => {
                let name = args.next().ok_or("--backend needs a value")?;
                backend = name.parse().map_err(|e| format!("{e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ if target.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => target = Some(arg),
        }
    }
    let target = target.ok_or(if listen { "--listen needs an address" } else { "no address given" })?;
    let addr = resolve(&target)?;
    Ok((if listen { Mode::Listen(addr) } else { Mode::Connect(addr) }, backend, timeout))
}

/// An address as rolecore writes it, or a host name resolved once (before
/// the loop: the loop itself never blocks on DNS).
fn resolve(text: &str) -> Result<Address, String> {
    if let Ok(addr) = text.parse::<Address>() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().map(Address::Inet).ok_or_else(|| format!("{text:?} has no address")),
        Err(e) => Err(format!("invalid address {text:?}: {e}")),
    }
}
