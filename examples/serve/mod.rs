//! What the example servers share: the command line (`cli`), one loop per
//! thread, and a clean exit on Ctrl-C or SIGTERM.
//!
//! With `--threads N`, N listeners share the address through `SO_REUSEPORT`
//! (the kernel spreads connections among them), each in its own thread with
//! its own single-threaded loop. On SIGINT or SIGTERM every loop shuts down
//! gracefully: it stops accepting at once, lets connections finish for
//! [`GRACE`], then closes the rest; the process exits 0.
//!
//! Exit status: 0 after a signal, 2 for a bad command line or an address
//! that cannot be listened on, 1 for a failure while serving or while a
//! loop sets up (out of descriptors, say: the other loops then stop too).

mod cli;
mod connections;

mod stale_socket;
use stale_socket::remove_stale_socket;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rolecore::report::Level;
use rolecore::signal::{SIGINT, SIGTERM};
use rolecore::{AcceptHandler, Address, Backend, Channel, Ctx, Listening, LoopOptions, Map, Waker};

#[allow(unused_imports)] // not every server speaks TLS
pub use cli::{Cli, Flag, TLS_CERT, TLS_KEY, Usage};
#[allow(unused_imports)] // not every server bounds its connections together
pub use connections::{Connections, TlsConfig};

/// How long connections may finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(1);

/// What one example server is: its name, where it listens by default,
/// whether it takes `--threads`, and the flags it adds.
pub struct Server {
    /// The program's name, for its messages and usage line.
    pub name: &'static str,
    /// Where it listens without an ADDR.
    pub default_addr: &'static str,
    /// Whether `--threads N` runs N loops (a server whose state is one
    /// shared room says no).
    pub threads: bool,
    /// The flags it adds to the shared ones.
    pub flags: &'static [Flag],
}

/// A whole server's `main`: parses the command line, lets `setup` read the
/// server's own flags and return what builds each loop's accept handler,
/// then serves until a signal.
pub fn main<H: AcceptHandler, M: Fn() -> H + Sync>(
    server: Server,
    setup: impl FnOnce(&Cli) -> Result<M, Usage>,
) -> ExitCode {
    let name = server.name;
    let args = std::env::args().skip(1);
    let cli = match Cli::parse(name, server.default_addr, server.threads, server.flags, args) {
        Ok(cli) => cli,
        Err(usage) => return usage.exit(),
    };
    // The same report lines whether or not rolecore was built with its `log`
    // feature (which would otherwise send them to a facade with no logger).
    rolecore::report::set_log_hook(Some(Box::new(|level, message| {
        if level != Level::Warning {
            eprintln!("{level}: {message}");
        }
    })));
    let make = match setup(&cli) {
        Ok(make) => make,
        Err(usage) => return usage.exit(),
    };
    let listeners = match bind(&cli.addr, cli.threads) {
        Ok(listeners) => listeners,
        // Out of descriptors or memory: the command line is fine, the
        // machine is not (yet); a usage line would send the reader to the
        // wrong place.
        Err(e) if is_exhaustion(&e) => {
            eprintln!("{name}: cannot listen on {}: {e}", cli.addr);
            return ExitCode::FAILURE;
        }
        Err(e) => return cli.usage_error(format_args!("cannot listen on {}: {e}", cli.addr)).exit(),
    };
    match serve(listeners, cli.backend, make) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a listen failed for want of descriptors or memory, not because
/// of the address it was given.
fn is_exhaustion(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// `threads` listeners on `addr`, sharing it when there are several.
fn bind(addr: &Address, threads: usize) -> io::Result<Vec<Channel<Listening>>> {
    if let Address::Unix(rolecore::UnixAddress::Path(path)) = addr {
        remove_stale_socket(path); // a socket file left by an earlier run
    }
    if threads > 1 && addr.inet().is_none() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "--threads above 1 needs an IP address"));
    }
    let first = listener(addr, threads > 1)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(listener(&bound, true)?);
    }
    Ok(listeners)
}

/// Prints `listening on HOST:PORT` and runs one loop per listener, each
/// with the handler `make` builds in that loop's thread. Returns when every
/// loop has shut down.
fn serve<H: AcceptHandler>(
    listeners: Vec<Channel<Listening>>,
    backend: Backend,
    make: impl Fn() -> H + Sync,
) -> io::Result<()> {
    let bound = listeners[0].local_addr()?;
    let threads = listeners.len();
    let make = &make;
    std::thread::scope(|scope| {
        // Each loop says when it watches the signals; only then is the
        // address printed, so a SIGTERM right after it finds a handler.
        let (ready, setups) = std::sync::mpsc::channel();
        let signalled = Arc::new(Signalled::default());
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|listener| {
                let ready = ready.clone();
                let signalled = signalled.clone();
                scope.spawn(move || run_loop(listener, backend, make(), ready, signalled))
            })
            .collect();
        drop(ready);
        let mut setup = Ok(());
        let mut wakers = Vec::with_capacity(threads);
        for result in setups.iter().take(threads) {
            match result {
                Ok(waker) => wakers.push(waker),
                Err(e) => setup = setup.and(Err(e)),
            }
        }
        if setup.is_err() {
            // A loop that could not set up (out of descriptors, say) fails
            // the server: the loops that did must not go on serving, unseen
            // (the address never printed) and until a signal.
            wakers.iter().for_each(|waker| drop(waker.stop()));
        } else {
            signalled.hand_over(wakers);
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "listening on {bound}")?;
            stdout.flush()?;
        }
        // The scope joins every loop; the first error (if any) is the answer.
        let ran = loops
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a loop panicked"))));
        setup.and(ran)
    })
}

/// Whether a loop heard a signal, and every loop's waker once all have set
/// up: the loop that hears SIGINT or SIGTERM shuts every loop down. A
/// signal is only written to the watchers registered when it comes, so
/// one that came while the loops were still setting up reached only some
/// of them, and the others served on for ever (the process never exited).
#[derive(Default)]
struct Signalled(Mutex<(bool, Vec<Waker>)>);

impl Signalled {
    /// Every loop has set up: a signal heard before now shuts them down
    /// at once, later ones through [`shut_down_every_loop`](Self::shut_down_every_loop).
    fn hand_over(&self, wakers: Vec<Waker>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = wakers;
        if state.0 {
            state.1.iter().for_each(|waker| drop(waker.shutdown(GRACE)));
        }
    }

    /// A loop heard a signal: shut down every loop, now or once they have
    /// all set up. A loop already gone refuses its waker: nothing to do.
    fn shut_down_every_loop(&self) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = true;
        state.1.iter().for_each(|waker| drop(waker.shutdown(GRACE)));
    }
}

fn listener(addr: &Address, share: bool) -> io::Result<Channel<Listening>> {
    let mut fresh = Channel::for_address(addr)?;
    if addr.inet().is_some() {
        fresh = fresh.set_reuse_addr()?;
    }
    if share {
        fresh = fresh.set_reuse_port()?;
    }
    Ok(fresh.bind(addr)?.listen(1024)?)
}

fn run_loop<H: AcceptHandler>(
    listener: Channel<Listening>,
    backend: Backend,
    handler: H,
    ready: std::sync::mpsc::Sender<io::Result<Waker>>,
    signalled: Arc<Signalled>,
) -> io::Result<()> {
    let setup = || -> io::Result<(Map, Waker)> {
        let mut map = Map::with_backend(backend)?;
        let waker = map.waker()?;
        map.insert(listener, handler)?;
        map.on_signals(&[SIGINT, SIGTERM], move |_signal: i32, cx: &mut Ctx<'_>| {
            cx.shutdown(GRACE);
            signalled.shut_down_every_loop();
            Ok(())
        })?;
        Ok((map, waker))
    };
    match setup() {
        Ok((mut map, waker)) => {
            let _ = ready.send(Ok(waker));
            map.run(LoopOptions::default())
        }
        Err(e) => {
            // Said here, or the message names the error and not what failed.
            let e = io::Error::new(
                e.kind(),
                format!("cannot set up a loop (its poller, waker and signal watcher): {e}"),
            );
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            Err(e)
        }
    }
}
