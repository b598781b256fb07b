//! Layer 4: what a callback reaches — [`Ctx`] — and the guards it and the
//! map lend on another channel's handler or transport ([`HandlerMut`],
//! [`StreamMut`]), which ask that channel's predicates again when dropped.

use std::fmt;
use std::time::{Duration, Instant};

use super::entry::{InsertError, Register, Resume};
use super::registry::Registry;
use crate::token::Token;

/// The size of the read buffer a map lends to callbacks ([`Ctx::buffer`]).
const SCRATCH_SIZE: usize = 64 * 1024;

/// Sizes the map's read buffer, the first time a callback asks for it. A
/// callback that asks while the buffer is lent out (an `AsyncChat`'s
/// callbacks run during the chat's own read into it) gets the spare one
/// that such a callback grew the last time ([`Ctx::put_scratch`] keeps it),
/// so asking costs no allocation per read.
#[cold]
fn grow_scratch(registry: &mut Registry) {
    if registry.scratch.is_empty() {
        registry.scratch = std::mem::take(&mut registry.spare_scratch);
    }
    if registry.scratch.len() < SCRATCH_SIZE {
        registry.scratch.resize(SCRATCH_SIZE, 0);
    }
}

/// What a callback can do to the loop beyond its own channel: add channels,
/// close its channel or another, ask for predicates again, stop the loop.
///
/// Changes take effect at once for other channels; closing the current
/// channel takes effect when the callback returns, and then nothing more is
/// delivered to it.
pub struct Ctx<'a> {
    registry: &'a mut Registry,
    /// The channel's token, as its poller key: the map's id, the rest of
    /// the token, is the registry's, and a wake-up then does not copy it.
    key: u64,
    /// [`Resume::STOP`] once this callback asked to stop the loop, else 0:
    /// that bit as it is, so that an entry adds it to its answer with one
    /// `or`, and the loop's common case (the channel stays, the loop goes
    /// on) is one test of the answer.
    stop: u8,
    /// Set when this callback closed its channel: what
    /// [`crate::channel::mark_closing`] replaced then, to put back when the
    /// callback ends. `Some` is also what [`is_closing`](Self::is_closing)
    /// answers.
    unmark: Option<std::os::fd::RawFd>,
}

impl<'a> Ctx<'a> {
    #[inline]
    pub(crate) fn new(registry: &'a mut Registry, token: Token) -> Self {
        Ctx { registry, key: token.key(), stop: 0, unmark: None }
    }

    /// The callback is over: the channel it closed is no longer refused
    /// I/O here (the map is about to close it). Returns whether it asked to
    /// stop the loop. A callback that did neither (its [`Resume`] says so)
    /// needs no end.
    #[inline]
    pub(crate) fn end(self) -> bool {
        if let Some(previous) = self.unmark {
            crate::channel::unmark_closing(previous);
        }
        self.stop != 0
    }

    /// [`Resume::STOP`] if this callback asked to stop the loop, else 0.
    #[inline]
    pub(crate) fn stop_bit(&self) -> u8 {
        self.stop
    }

    /// The token of the channel whose callback this is.
    #[inline]
    pub fn token(&self) -> Token {
        Token::from_key(self.key, self.registry.id)
    }

    /// Adds a channel to the loop; it is watched from the next wait on.
    /// Refused while the end of a shutdown's grace closes the map's
    /// channels (see [`shutdown`](Self::shutdown)). The handler's
    /// predicates are asked here; with
    /// [`catch_panics`](crate::LoopOptions::catch_panics), one that panics
    /// closes the new channel at once, as a panic in its first callback
    /// would, and the token returned names it no more.
    pub fn insert<C: Register<H>, H>(&mut self, channel: C, handler: H) -> Result<Token, InsertError<C, H>> {
        self.registry.insert(channel, handler)
    }

    /// Closes this channel when the callback returns (asyncore's `close()`):
    /// nothing more is delivered to it, and `handle_close` is not called.
    ///
    /// From this call on, the channel this callback was lent refuses I/O:
    /// `send`, `recv`, `accept`, `send_to`, `recv_from` (and `Read`/`Write`)
    /// fail with an error of kind `NotConnected` that says it was closed,
    /// and send nothing. Send a last message *before* closing. A
    /// [`Buffered`](crate::Buffered) or [`AsyncChat`](crate::AsyncChat)
    /// drops what is still queued; to send it all first, use
    /// `AsyncChat::close_when_done` or wait for `writable()` to turn false.
    pub fn close(&mut self) {
        if self.unmark.is_none() {
            self.unmark = Some(crate::channel::mark_closing(self.token().fd()));
        }
    }

    /// Whether [`close`](Self::close) was called during this wake-up.
    #[inline]
    pub fn is_closing(&self) -> bool {
        self.unmark.is_some()
    }

    /// Closes another channel now (or this one, as [`close`](Self::close)),
    /// without its `handle_close`. Returns whether the token named a live
    /// channel: a second removal of the same channel, its own included,
    /// answers false. Readiness already collected for it is dropped, and so
    /// is the output a [`Buffered`](crate::Buffered) or
    /// [`AsyncChat`](crate::AsyncChat) still had queued (as with `close`):
    /// to have it sent first, let the channel close itself when its queue
    /// is empty (`AsyncChat::close_when_done`). The one channel that cannot close now
    /// is one whose callback is under way further up: a shutdown runs the
    /// listeners' `handle_close` inside the callback that started it, and
    /// if one removes that callback's channel, it closes as with `close`
    /// when [`shutdown`](Self::shutdown) returns.
    pub fn remove(&mut self, token: Token) -> bool {
        if token == self.token() {
            let open = !self.is_closing();
            self.close();
            return open;
        }
        self.registry.remove(token)
    }

    /// Asks another channel's `readable()`/`writable()` again: call it after
    /// changing state its predicates read.
    pub fn refresh(&mut self, token: Token) {
        if token != self.token() {
            self.registry.refresh(token);
        }
    }

    registry_timing! {
        /// The time on the map's clock: the monotonic clock, or in a
        /// [`Sim`](crate::sim::Sim) the simulation's virtual time. Compute
        /// deadlines from it (`cx.now() + timeout`), not from `Instant::now()`,
        /// so the same handler keeps its timing under the simulation, where
        /// time moves only when the simulation advances it.
        ///
        /// ```
        /// use std::io;
        /// use std::time::Duration;
        /// use rolecore::{Buffered, Connected, Ctx, StreamHandler};
        ///
        /// struct Deadline;
        /// impl StreamHandler<Buffered<Connected>> for Deadline {
        ///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ///         // The whole request must arrive within 5 s of its first byte.
        ///         let at = cx.now() + Duration::from_secs(5);
        ///         cx.set_deadline(cx.token(), Some(at));
        ///         ch.recv(cx.buffer()).map(drop)
        ///     }
        /// }
        /// # let _ = Deadline;
        /// ```
        #[inline]
        now;

        /// Gives a channel (this one: [`token`](Self::token)) a deadline: when it
        /// passes, the handler's `handle_timeout` runs once. `None` clears the
        /// channel's deadline or idle timeout. Returns whether the token is live
        /// and takes a timer: `false` too for a mailbox's, the waker's or a
        /// signal watcher's token, which have no `handle_timeout` (a timer
        /// there would only wake the loop for nothing).
        ///
        /// Any instant is taken: one already past is due at once, and
        /// `handle_timeout` runs the next time the loop serves its timers
        /// (never inside the callback that set it); one too far ahead to
        /// reach never fires. For a deadline some time from now,
        /// [`set_deadline_after`](Self::set_deadline_after) does the
        /// arithmetic without `cx.now() + d`, which panics for a `d` too
        /// long to represent.
        set_deadline;

        /// Gives a channel an idle timeout: `handle_timeout` runs when `idle`
        /// passes without a callback into the channel (every event re-arms it).
        /// `None` clears it. Returns whether the timeout was set: `false` for a
        /// token that names no live channel, for a mailbox, the waker or a
        /// signal watcher (no `handle_timeout`), and for a listener, which is
        /// refused with a report line (a listener's events are connections, so
        /// its idle timeout would close it when none came for a while; a
        /// listener that should stop at some point takes a
        /// [`deadline`](Self::set_deadline)).
        ///
        /// An idle timeout too long to represent from now (`Duration::MAX`)
        /// never passes, and clears the channel's timer. One of zero passes
        /// after every callback: a `handle_timeout` that keeps the channel
        /// open runs again in every iteration, and the loop does not sleep
        /// meanwhile (the default `handle_timeout` closes the channel).
        ///
        /// In `handle_accepted`, [`token`](Self::token) is the *listener's*
        /// token. To time out the new connection, use the token `insert`
        /// returns:
        ///
        /// ```
        /// use std::io;
        /// use std::time::Duration;
        /// use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};
        ///
        /// struct Idle;
        /// impl StreamHandler<Buffered<Connected>> for Idle {
        ///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ///         ch.recv(cx.buffer()).map(drop)
        ///     }
        /// }
        ///
        /// struct Server;
        /// impl AcceptHandler for Server {
        ///     fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        ///         let token = cx.insert(Buffered::new(conn), Idle)?; // the connection's token
        ///         cx.set_idle_timeout(token, Some(Duration::from_secs(60)));
        ///         Ok(())
        ///     }
        /// }
        /// # let mut map = rolecore::Map::new().unwrap();
        /// # let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
        /// # map.insert(listener, Server).unwrap();
        /// # let _ = Idle;
        /// ```
        set_idle_timeout;

        /// Gives a channel a deadline `after` from now on the map's clock:
        /// [`set_deadline`](Self::set_deadline) at `now() + after`, without
        /// the arithmetic's panic. A duration too long to represent from now
        /// (`Duration::MAX`, a limit read from a configuration that means
        /// "never", or any at all on a simulation's clock moved to the end
        /// of time) is a deadline that never passes: the channel's timer is
        /// cleared, as with `None`. `Duration::ZERO` is due at once, and
        /// `handle_timeout` runs the next time the loop serves its timers.
        /// Returns what [`set_deadline`](Self::set_deadline) returns.
        ///
        /// ```
        /// use std::io;
        /// use std::time::Duration;
        /// use rolecore::{Buffered, Connected, Ctx, StreamHandler};
        ///
        /// struct Request { limit: Duration } // Duration::MAX: no limit
        /// impl StreamHandler<Buffered<Connected>> for Request {
        ///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ///         cx.set_deadline_after(cx.token(), Some(self.limit));
        ///         ch.recv(cx.buffer()).map(drop)
        ///     }
        /// }
        /// # let _ = Request { limit: Duration::MAX };
        /// ```
        set_deadline_after;
    }

    /// Another stream's transport and handler, if they have types `T` and
    /// `H` (the public, typed form is `Ctx::stream_mut`, beside the stream
    /// entry).
    pub(crate) fn stream_guard<T: 'static, H: 'static>(
        &mut self,
        token: Token,
    ) -> Option<StreamMut<'_, T, H>> {
        StreamMut::new(self.registry, token)
    }

    /// The map's read buffer: 64 KiB, allocated once per map and reused by
    /// every callback, so a handler need not zero a fresh array for each read.
    ///
    /// ```
    /// use std::io;
    /// use rolecore::{Buffered, Connected, Ctx, StreamHandler};
    ///
    /// struct Echo;
    /// impl StreamHandler<Buffered<Connected>> for Echo {
    ///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
    ///         let buf = cx.buffer();
    ///         let n = ch.recv(buf)?;
    ///         ch.send(&buf[..n])
    ///     }
    /// }
    /// # let _ = Echo;
    /// ```
    #[inline]
    pub fn buffer(&mut self) -> &mut [u8] {
        if self.registry.scratch.len() < SCRATCH_SIZE {
            grow_scratch(self.registry);
        }
        &mut self.registry.scratch[..]
    }

    /// Lends the map's read buffer, at least `len` bytes long; give it back
    /// with [`put_scratch`](Self::put_scratch).
    pub(crate) fn take_scratch(&mut self, len: usize) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.registry.scratch);
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    /// Gives the map's read buffer back. One that a callback grew while it
    /// was lent out is kept as the spare for the next such callback.
    pub(crate) fn put_scratch(&mut self, buf: Vec<u8>) {
        let grown = std::mem::replace(&mut self.registry.scratch, buf);
        if grown.capacity() > 0 {
            self.registry.spare_scratch = grown;
        }
    }

    /// Starts a graceful shutdown of the whole map: listeners close (with
    /// `handle_close`) when this callback returns, the other channels have
    /// `grace` to finish and close on their own, then each one still open
    /// gets `handle_close` once and is closed; a channel such a
    /// `handle_close` inserts is refused, handed back in the
    /// [`InsertError`]. A listener's `handle_close`
    /// that calls [`stop`](Self::stop) stops the loop after this callback.
    /// The shutdown is over once the map is empty. See also
    /// [`Waker::shutdown`](crate::Waker::shutdown).
    pub fn shutdown(&mut self, grace: Duration) {
        if self.registry.begin_shutdown(grace) {
            self.stop = Resume::STOP.bits();
        }
        if !self.registry.removed_busy.is_empty() {
            self.closed_from_below();
        }
    }

    /// A listener's `handle_close`, run by the shutdown this callback
    /// started, may have removed this callback's channel (it was out of
    /// its slot): it closes, as with [`close`](Self::close).
    #[cold]
    fn closed_from_below(&mut self) {
        let me = self.token();
        let removed = self.registry.removed_busy.len();
        self.registry.removed_busy.retain(|&token| token != me);
        if self.registry.removed_busy.len() < removed {
            self.close();
        }
    }

    /// The deadline this callback's channel has armed, if any: what a
    /// listener's `EMFILE` pause, which needs the channel's one timer,
    /// puts back when it is over.
    pub(crate) fn own_deadline(&self) -> Option<Instant> {
        self.registry.timers.deadline(self.token())
    }

    /// Whether a graceful shutdown is under way: a listener whose own
    /// callback started it was out of its slot when the others closed, and
    /// closes itself when that callback returns.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.registry.shutdown.is_some()
    }

    /// Ends the loop after this callback, leaving the map as it is
    /// (asyncore's `ExitNow`).
    pub fn stop(&mut self) {
        self.stop = Resume::STOP.bits();
    }

    /// How many channels the map holds, this one included (though it is
    /// out of its slot while this callback runs). A signal watcher, whose
    /// callback this may be, is not a channel and does not count.
    pub fn len(&self) -> usize {
        self.registry.len
    }

    /// Whether the map is empty: never in a channel's own callback; a
    /// signal watcher's callback may find it empty.
    pub fn is_empty(&self) -> bool {
        self.registry.len == 0
    }

    /// The handler of another channel, if it has type `H`, behind a guard
    /// that asks that channel's predicates again when dropped (so a handler
    /// can queue work on another, e.g. a chat room relaying a line). `None`
    /// for this callback's own channel: it is the `self` of the callback.
    pub fn handler_mut<H: 'static>(&mut self, token: Token) -> Option<HandlerMut<'_, H>> {
        HandlerMut::new(self.registry, token)
    }
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("token", &self.token())
            .field("closing", &self.is_closing())
            .field("stopping", &(self.stop != 0))
            .finish_non_exhaustive()
    }
}

/// Another connected stream's transport and handler, borrowed through
/// [`Ctx::stream_mut`] or [`Map::stream_mut`](crate::Map::stream_mut); dropping it asks the
/// channel's predicates again, so output pushed through it gets sent.
pub struct StreamMut<'a, T: 'static, H: 'static> {
    registry: &'a mut Registry,
    token: Token,
    types: std::marker::PhantomData<(&'a mut T, &'a mut H)>,
}

impl<'a, T: 'static, H: 'static> StreamMut<'a, T, H> {
    pub(crate) fn new(registry: &'a mut Registry, token: Token) -> Option<Self> {
        let (t, h) = registry.entry_mut(token)?.stream_parts()?;
        if !(t.is::<T>() && h.is::<H>()) {
            return None;
        }
        Some(StreamMut { registry, token, types: std::marker::PhantomData })
    }

    /// The transport and the handler at once.
    pub fn parts(&mut self) -> (&mut T, &mut H) {
        let entry = self.registry.entry_mut(self.token).expect("checked when borrowed");
        let (t, h) = entry.stream_parts().expect("checked when borrowed");
        (t.downcast_mut::<T>().expect("checked"), h.downcast_mut::<H>().expect("checked"))
    }

    /// The transport: the channel, `Buffered` or `AsyncChat`.
    pub fn transport(&mut self) -> &mut T {
        self.parts().0
    }

    /// The handler.
    pub fn handler(&mut self) -> &mut H {
        self.parts().1
    }
}

impl<T: 'static, H: 'static> Drop for StreamMut<'_, T, H> {
    fn drop(&mut self) {
        self.registry.refresh(self.token);
    }
}

impl<T: 'static, H: 'static> fmt::Debug for StreamMut<'_, T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMut").field("token", &self.token).finish_non_exhaustive()
    }
}

/// A handler borrowed from a [`Map`](crate::Map) or a [`Ctx`]; dropping it asks the channel's
/// predicates again, so interest follows what the program changed.
pub struct HandlerMut<'a, H: 'static> {
    registry: &'a mut Registry,
    token: Token,
    handler: std::marker::PhantomData<&'a mut H>,
}

impl<'a, H: 'static> HandlerMut<'a, H> {
    pub(crate) fn new(registry: &'a mut Registry, token: Token) -> Option<Self> {
        registry.entry_mut(token)?.handler_mut().downcast_mut::<H>()?;
        Some(HandlerMut { registry, token, handler: std::marker::PhantomData })
    }

    fn get(&self) -> &H {
        let entry = self.registry.entry(self.token).expect("checked when borrowed");
        entry.handler().downcast_ref::<H>().expect("checked")
    }
}

impl<H: 'static> std::ops::Deref for HandlerMut<'_, H> {
    type Target = H;
    fn deref(&self) -> &H {
        self.get()
    }
}

impl<H: 'static> std::ops::DerefMut for HandlerMut<'_, H> {
    fn deref_mut(&mut self) -> &mut H {
        let entry = self.registry.entry_mut(self.token).expect("checked when borrowed");
        entry.handler_mut().downcast_mut::<H>().expect("checked when borrowed")
    }
}

impl<H: 'static> Drop for HandlerMut<'_, H> {
    fn drop(&mut self) {
        self.registry.refresh(self.token);
    }
}

impl<H: fmt::Debug + 'static> fmt::Debug for HandlerMut<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}
