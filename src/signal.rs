//! Unix signals as events on the loop (cargo feature `signals`, on by
//! default).
//!
//! A signal handler may do almost nothing safely, so the registration is
//! signal-hook's self-pipe: the handler writes a byte to a socket whose other
//! end is in the map, and the loop calls your [`SignalHandler`] on its own
//! thread, where anything goes — typically a graceful
//! [`Ctx::shutdown`](crate::Ctx::shutdown) on `SIGINT`/`SIGTERM`. Signals that
//! arrive while the loop is busy coalesce into one call per signal. Several
//! maps (one per thread) may watch the same signal: each is told.
//!
//! The signal's entries do not keep a loop alive, and
//! [`Map::close_all`] leaves them (they are not channels). Removing them
//! (or dropping the map) ends rolecore's part, but does not give the
//! signal back its default action: signal-hook keeps its handler
//! installed, and a signal nothing watches any more is then ignored (a
//! previous handler of the program's own still runs). A `SIGINT` or
//! `SIGTERM` that comes after the map is gone no longer ends the process:
//! keep the map as long as the program should answer them, or end the
//! process yourself after dropping it.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use signal_hook::SigId;

use crate::dispatch::{Own, OwnEntry};
use crate::map::{Ctx, Map};
use crate::report::{Level, log_info};
use crate::token::Token;

pub use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

/// What the loop does when a watched signal arrives. Any
/// `FnMut(i32, &mut Ctx) -> io::Result<()>` is one.
pub trait SignalHandler: 'static {
    /// `signal` arrived (once or more since the last call).
    fn handle_signal(&mut self, signal: i32, cx: &mut Ctx<'_>) -> io::Result<()>;
}

impl<F: FnMut(i32, &mut Ctx<'_>) -> io::Result<()> + 'static> SignalHandler for F {
    fn handle_signal(&mut self, signal: i32, cx: &mut Ctx<'_>) -> io::Result<()> {
        self(signal, cx)
    }
}

struct SignalEntry {
    reader: UnixStream,
    signal: i32,
    id: SigId,
    handler: Rc<RefCell<dyn SignalHandler>>,
    /// What `Map::handler` finds here: nothing a caller can change.
    opaque: (),
}

impl Drop for SignalEntry {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}

impl Own for SignalEntry {
    fn fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }

    fn deliver(&mut self, cx: &mut Ctx<'_>) {
        // Drain every byte: signals that came meanwhile coalesce.
        let mut buf = [0u8; 64];
        let mut got = false;
        while let Ok(n) = io::Read::read(&mut &self.reader, &mut buf) {
            got |= n > 0;
            if n < buf.len() {
                break;
            }
        }
        if got && let Err(e) = self.handler.borrow_mut().handle_signal(self.signal, cx) {
            log_info(Level::Error, format_args!("signal {} handler: {e}", self.signal));
        }
    }

    fn handler(&self) -> &dyn std::any::Any {
        &()
    }

    fn handler_mut(&mut self) -> &mut dyn std::any::Any {
        &mut self.opaque
    }

    fn describe(&self) -> String {
        format!("signal {} watcher", self.signal)
    }
}

impl Map {
    /// Watches `signals`: each time one arrives, `handler` runs on this
    /// loop's thread. The watchers do not keep the loop alive.
    ///
    /// Signals rolecore cannot watch (`SIGKILL`, `SIGSTOP`, and those
    /// signal-hook forbids such as `SIGSEGV`) are an `InvalidInput` error,
    /// and so is a number that names no signal. The call is all or nothing:
    /// after an error, none of `signals` is watched by it. A signal listed
    /// twice is watched once (one call per arrival). An empty list is an
    /// `InvalidInput` error too: it would watch nothing and drop `handler`
    /// without a word.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use rolecore::signal::{SIGINT, SIGTERM};
    /// use rolecore::{Ctx, LoopOptions, Map};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let mut map = Map::new()?;
    /// // ... listeners and channels ...
    /// map.on_signals(&[SIGINT, SIGTERM], |_signal: i32, cx: &mut Ctx<'_>| {
    ///     cx.shutdown(Duration::from_secs(5)); // finish in-flight work, then end
    ///     Ok(())
    /// })?;
    /// map.run(LoopOptions::default())
    /// # }
    /// ```
    pub fn on_signals(&mut self, signals: &[i32], handler: impl SignalHandler) -> io::Result<()> {
        if signals.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "on_signals was given no signal to watch: its handler would never run; list at least \
                 one signal",
            ));
        }
        let handler: Rc<RefCell<dyn SignalHandler>> = Rc::new(RefCell::new(handler));
        if let Some(&bad) = signals.iter().find(|s| signal_hook::consts::FORBIDDEN.contains(s)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot watch signal {bad}: it cannot be caught, or catching it is unsound"),
            ));
        }
        // All or nothing: a signal that cannot be watched (or a descriptor
        // that cannot be made) takes back the watchers this call already
        // added, so an error leaves no signal caught. A signal named twice
        // is watched once: one call per arrival.
        let mut added = Vec::with_capacity(signals.len());
        for (i, &signal) in signals.iter().enumerate() {
            if signals[..i].contains(&signal) {
                continue;
            }
            match self.watch_signal(signal, &handler) {
                Ok(token) => added.push(token),
                Err(e) => {
                    for token in added {
                        self.remove(token);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One watcher of `signal`, in the map.
    fn watch_signal(&mut self, signal: i32, handler: &Rc<RefCell<dyn SignalHandler>>) -> io::Result<Token> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let id = signal_hook::low_level::pipe::register(signal, writer).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("cannot watch signal {signal}: {e}"))
        })?;
        let entry = SignalEntry { reader, signal, id, handler: handler.clone(), opaque: () };
        self.insert_entry(Box::new(OwnEntry(entry)), true)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::poller::Backend;

    /// Signals that arrive before the loop reads them coalesce: one
    /// `handle_signal` per watched signal per wake-up, however many came,
    /// and none on the next wake-up, the watcher's socket read empty.
    /// (`raise` runs signal-hook's handler before it returns, so the three
    /// bytes are in the socket before the poll.)
    #[test]
    fn signals_that_came_meanwhile_coalesce_into_one_call() {
        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let calls = Rc::new(Cell::new(0));
            let mut map = Map::with_backend(backend).unwrap();
            let seen = calls.clone();
            map.on_signals(&[SIGUSR2], move |signal: i32, _: &mut Ctx<'_>| {
                assert_eq!(signal, SIGUSR2);
                seen.set(seen.get() + 1);
                Ok(())
            })
            .unwrap();
            for _ in 0..3 {
                signal_hook::low_level::raise(SIGUSR2).unwrap();
            }
            map.poll(Some(Duration::ZERO)).unwrap();
            assert_eq!(calls.get(), 1, "{backend}: three signals before the wake-up, one call");
            map.poll(Some(Duration::ZERO)).unwrap();
            assert_eq!(calls.get(), 1, "{backend}: the wake-up left bytes behind: a second call");
        }
    }

    /// Dropping a map unregisters its signal watchers from signal-hook,
    /// which closes the writing end of each watcher's socket: no
    /// descriptor is left behind, and nothing writes for a map that is gone.
    #[test]
    fn dropping_the_map_unregisters_its_watchers_and_closes_their_sockets() {
        let mut map = Map::with_backend(Backend::Poll).unwrap();
        map.on_signals(&[SIGUSR1], |_: i32, _: &mut Ctx<'_>| Ok(())).unwrap();
        let token = map.registry.tokens().next().expect("the watcher is in the map");
        let reader = map.registry.entry(token).unwrap().fd().try_clone_to_owned().unwrap();
        drop(map);
        let mut buf = [0u8; 1];
        assert_eq!(
            rustix::io::read(&reader, &mut buf),
            Ok(0),
            "the watcher's writing end is still open after its map was dropped"
        );
    }
}
