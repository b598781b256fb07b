//! Layer 4: the type-erased map of channels.
//!
//! A [`Map`] holds channels of any role with handlers of any type, keyed the
//! way asyncore keyed its `socket_map` — by descriptor — but behind a
//! generation-checked [`Token`]: when a channel closes and the kernel hands
//! its descriptor number to a new channel, the old token (and any readiness
//! still queued for the old channel) no longer reaches anything (D20).
//!
//! Channels can be inserted and closed from inside callbacks, through the
//! [`Ctx`] every callback receives, without disturbing the loop's iteration.
//!
//! The map core is four files: `entry.rs` (what the map stores, and what
//! may join it), `registry/` (the slots, the poller, the timers; its wait
//! and a graceful shutdown in files of their own),
//! `ctx.rs` (what a callback reaches) and this one (the public [`Map`]).
//! The first three need each other — an entry's callbacks take a `Ctx`, a
//! `Ctx` changes the registry, the registry runs entries — and are the one
//! import cycle the crate allows. The loop that drives the map is in
//! `event_loop.rs`, above the entries that it dispatches to.

/// The four calls [`Map`] and [`Ctx`] both pass straight to the registry
/// (the clock, a deadline, an idle timeout, a deadline from now), written
/// once. Each invocation
/// brings its type's doc comments and attributes, one group before each
/// method's name. Defined before `mod ctx` so that `ctx.rs` sees it.
macro_rules! registry_timing {
    (
        $(#[$now:meta])* now;
        $(#[$deadline:meta])* set_deadline;
        $(#[$idle:meta])* set_idle_timeout;
        $(#[$after:meta])* set_deadline_after;
    ) => {
        $(#[$now])*
        pub fn now(&self) -> Instant {
            self.registry.clock.now()
        }

        $(#[$deadline])*
        pub fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) -> bool {
            self.registry.set_deadline(token, deadline)
        }

        $(#[$idle])*
        pub fn set_idle_timeout(&mut self, token: Token, idle: Option<Duration>) -> bool {
            self.registry.set_idle_timeout(token, idle)
        }

        $(#[$after])*
        pub fn set_deadline_after(&mut self, token: Token, after: Option<Duration>) -> bool {
            // Too far to represent from now: a deadline that never passes,
            // which is none (`Instant`'s `+` would panic).
            let deadline = after.and_then(|d| self.registry.clock.now().checked_add(d));
            self.registry.set_deadline(token, deadline)
        }
    };
}

mod ctx;
mod entry;
mod registry;
mod slot;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use ctx::{Ctx, HandlerMut, StreamMut};
pub(crate) use entry::{Entry, RegisterSealed, Resume};
pub use entry::{InsertError, Register};
pub(crate) use registry::Registry;

use crate::poller::{Backend, Events, Poller};
use crate::token::Token;
use crate::trace::{SharedTrace, Trace};

thread_local! {
    /// Set when a predicate could not answer: its handler is busy in one of
    /// its own callbacks (a [`Kept`](crate::Kept) that serves several
    /// channels). The registry asks that channel again before the next
    /// wait, rather than leave it unwatched.
    static UNANSWERED: Cell<bool> = const { Cell::new(false) };
}

/// A predicate is answering "no" only because its handler is busy.
pub(crate) fn predicate_unanswered() {
    UNANSWERED.set(true);
}

/// Whether a predicate asked since the last call could not answer.
fn take_unanswered() -> bool {
    UNANSWERED.replace(false)
}

/// Channels and their handlers, and the poller that watches them.
///
/// # Examples
///
/// ```
/// use std::io;
/// use rolecore::{AcceptHandler, Address, Channel, Connected, Ctx, LoopOptions, Map};
///
/// struct Server;
/// impl AcceptHandler for Server {
///     fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
///         drop(conn);
///         cx.stop(); // one connection is enough for this example
///         Ok(())
///     }
/// }
///
/// # fn main() -> io::Result<()> {
/// let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
/// let addr = listener.local_addr()?.inet().unwrap();
/// let mut map = Map::new()?;
/// let token = map.insert(listener, Server)?;
/// let _client = std::net::TcpStream::connect(addr)?;
/// map.run(LoopOptions::default())?;
/// assert!(map.contains(token));
/// # Ok(())
/// # }
/// ```
pub struct Map {
    pub(crate) registry: Registry,
    /// What the last wait reported, reused from one wait to the next.
    pub(crate) events: Events,
    /// The token of the map's waker mailbox, once made (see `Map::waker`).
    pub(crate) waker: Option<Token>,
}

impl Map {
    /// An empty map that waits with the default backend (epoll).
    pub fn new() -> io::Result<Map> {
        Map::with_backend(Backend::default())
    }

    /// An empty map that waits with `backend`.
    pub fn with_backend(backend: Backend) -> io::Result<Map> {
        Ok(Map { registry: Registry::new(backend)?, events: Events::default(), waker: None })
    }

    /// The backend the map waits with.
    pub fn backend(&self) -> Backend {
        self.registry.poller.backend()
    }

    /// Switches backend, moving every registration; on failure the map keeps
    /// its old backend.
    pub fn set_backend(&mut self, backend: Backend) -> io::Result<()> {
        self.registry.switch_backend(backend)
    }

    /// Adds a channel with its handler. Refused (the channel and handler
    /// handed back in the [`InsertError`]) while the end of a shutdown's
    /// grace closes the map's channels. The handler's predicates are asked
    /// here; with [`catch_panics`](crate::LoopOptions::catch_panics) set on
    /// the map, one that panics closes the new channel at once, as a panic
    /// in its first callback would, and the token returned names it no more.
    pub fn insert<C: Register<H>, H>(&mut self, channel: C, handler: H) -> Result<Token, InsertError<C, H>> {
        self.registry.insert(channel, handler)
    }

    /// Closes and removes a channel, without calling its `handle_close`.
    /// Returns whether the token named a live channel. Output a
    /// [`Buffered`](crate::Buffered) or [`AsyncChat`](crate::AsyncChat)
    /// still had queued is dropped with it: to have it sent first, let the
    /// channel close itself when its queue is empty
    /// (`AsyncChat::close_when_done`).
    pub fn remove(&mut self, token: Token) -> bool {
        self.registry.remove(token)
    }

    /// Whether the token names a live channel.
    pub fn contains(&self, token: Token) -> bool {
        self.registry.contains(token)
    }

    /// How many channels the map holds.
    pub fn len(&self) -> usize {
        self.registry.len
    }

    /// Whether the map holds no channel (the loop then ends).
    pub fn is_empty(&self) -> bool {
        self.registry.len == 0
    }

    /// The tokens of everything in the map: every channel, and also the
    /// map's waker and signal watchers, which [`len`](Self::len) does not
    /// count (they do not keep the loop running).
    pub fn tokens(&self) -> Vec<Token> {
        self.registry.tokens().collect()
    }

    /// Closes every channel and empties the map, as asyncore's `close_all`.
    /// No `handle_close` is called; handlers are dropped. Closing an owned
    /// descriptor cannot fail in a way a caller could act on, so unlike
    /// asyncore's there is nothing to ignore.
    ///
    /// Mailboxes are channels and close too. What is not a channel stays:
    /// the map's [`Waker`](crate::Waker), which other threads may hold, and
    /// its signal watchers ([`len`](Self::len) counts neither, and
    /// [`tokens`](Self::tokens) still lists them). Dropping the map
    /// removes those as well.
    pub fn close_all(&mut self) {
        for token in self.registry.in_turn(|slot| slot.is_occupied() && !slot.is_daemon()) {
            self.registry.remove(token);
        }
    }

    /// The handler of a channel, if it has type `H`.
    pub fn handler<H: 'static>(&self, token: Token) -> Option<&H> {
        self.registry.entry(token)?.handler().downcast_ref::<H>()
    }

    /// The handler of a channel, if it has type `H`, behind a guard that asks
    /// the channel's predicates again when dropped.
    pub fn handler_mut<H: 'static>(&mut self, token: Token) -> Option<HandlerMut<'_, H>> {
        HandlerMut::new(&mut self.registry, token)
    }

    /// Asks a channel's `readable()`/`writable()` again.
    pub fn refresh(&mut self, token: Token) {
        self.registry.refresh(token);
    }

    /// Another stream's transport and handler (the public, typed form is
    /// `Map::stream_mut`, beside the stream entry).
    pub(crate) fn stream_guard<T: 'static, H: 'static>(
        &mut self,
        token: Token,
    ) -> Option<StreamMut<'_, T, H>> {
        StreamMut::new(&mut self.registry, token)
    }

    registry_timing! {
        /// The time on the map's clock: the monotonic clock, or in a
        /// [`Sim`](crate::sim::Sim) the simulation's virtual time (see
        /// [`Ctx::now`]).
        now;

        /// Gives a channel a deadline, as [`Ctx::set_deadline`].
        set_deadline;

        /// Gives a channel an idle timeout, as [`Ctx::set_idle_timeout`].
        set_idle_timeout;

        /// Gives a channel a deadline `after` from now, as
        /// [`Ctx::set_deadline_after`].
        set_deadline_after;
    }

    /// Asks every channel's predicates again.
    pub fn refresh_all(&mut self) {
        for index in 0..self.registry.slot_count() {
            if let Some(token) = self.registry.token_at(index) {
                self.registry.refresh(token);
            }
        }
    }

    pub(crate) fn insert_entry(&mut self, entry: Box<dyn Entry>, daemon: bool) -> io::Result<Token> {
        self.registry.insert_entry(entry, daemon)
    }

    /// Starts a graceful shutdown, as [`Ctx::shutdown`]; the loop ends once
    /// the map is empty, and so does the shutdown: a channel inserted
    /// afterwards is served as usual. The listeners' `handle_close` run
    /// now, outside any loop: a [`Ctx::stop`] there has no loop to end.
    pub fn shutdown(&mut self, grace: Duration) {
        self.registry.begin_shutdown(grace);
    }

    /// Starts (or stops) recording callbacks, for the simulation.
    pub(crate) fn set_tracing(&mut self, on: bool) {
        self.registry.trace = on.then(SharedTrace::default);
    }

    /// Takes what was recorded since the last call.
    /// Hands the events recorded since the last call over in `into` (which
    /// should be empty), keeping `into`'s allocation for the next ones: the
    /// simulation takes them after every wait, and a new vector each time
    /// was an allocation per wait.
    pub(crate) fn swap_trace(&mut self, into: &mut Trace) {
        if let Some(trace) = &self.registry.trace {
            std::mem::swap(&mut *trace.borrow_mut(), into);
        }
    }

    pub(crate) fn with_poller(poller: Poller) -> Map {
        Map {
            registry: Registry::with_poller(poller).expect("a map id for the simulation"),
            events: Events::default(),
            waker: None,
        }
    }

    /// Whether a panic in a handler is caught (see
    /// [`LoopOptions::catch_panics`](crate::LoopOptions::catch_panics)).
    pub fn set_catch_panics(&mut self, catch: bool) {
        self.registry.catch_panics = catch;
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").field("backend", &self.backend()).field("len", &self.len()).finish()
    }
}
