//! Layer 8: the loop.
//!
//! asyncore's `loop(timeout=30.0, use_poll=False, map=None, count=None)`
//! waits, dispatches, and goes round again until the map is empty or `count`
//! iterations have run. rolecore keeps that contract — [`loop_`] takes the
//! same four arguments, typed so there is no negative timeout or count to
//! handle (D17) — and offers [`LoopOptions`] as the idiomatic builder.

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use crate::clock::Clock;
use crate::map::{Ctx, Entry, Map, Registry, Resume};
use crate::poller::Backend;
use crate::readiness::{Interest, Readiness};
use crate::token::Token;

/// When the loop asks handlers' `readable()`/`writable()` again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Refresh {
    /// After every callback into the handler and every touch through the map
    /// (the default): an epoll iteration costs O(ready channels). A predicate
    /// that reads outside state needs [`Map::refresh`] or
    /// [`Ctx::refresh`](crate::Ctx::refresh) when that state changes.
    #[default]
    Touched,
    /// Every channel before every wait, as asyncore did: exact parity for
    /// predicates that read outside state, at O(channels) per iteration.
    EveryIteration,
}

/// How to run the loop: the idiomatic form of asyncore's `loop` arguments.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rolecore::{Backend, LoopOptions, Map};
///
/// # fn main() -> std::io::Result<()> {
/// let mut map = Map::new()?;
/// // An empty map returns at once, as in asyncore.
/// map.run(LoopOptions::new().timeout(Duration::from_millis(10)).backend(Backend::Poll).count(3))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "options do nothing until passed to Map::run"]
pub struct LoopOptions {
    timeout: Option<Duration>,
    backend: Option<Backend>,
    count: Option<u64>,
    refresh: Refresh,
    catch_panics: bool,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            timeout: Some(DEFAULT_TIMEOUT),
            backend: None,
            count: None,
            refresh: Refresh::Touched,
            catch_panics: false,
        }
    }
}

/// asyncore's default wait: 30 seconds per iteration.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl LoopOptions {
    /// The defaults: 30 s per wait, the map's own backend, until the map is
    /// empty, predicates asked when touched.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest one wait may block (per iteration, not in total).
    /// Sub-millisecond timeouts are rounded up, never down to a busy loop.
    /// Zero itself does not wait: each wait is a poll that returns at once
    /// (asyncore's `timeout=0`), which suits a bounded
    /// [`count`](Self::count); with [`Refresh::EveryIteration`] and no
    /// count, `run` then never sleeps while a channel is idle.
    ///
    /// The limit matters only where an iteration that ends with nothing
    /// ready can be seen: with a [`count`](Self::count), which counts it, or
    /// with [`Refresh::EveryIteration`], which asks every predicate again
    /// after it. Otherwise `run` waits without a limit, for the next
    /// readiness or timer (an idle server then does not wake up every 30 s),
    /// and a signal's interruption needs no clock read to be retried.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Waits without a time limit (asyncore's `timeout=None`).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Waits with `backend` (the map switches to it first).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Runs at most `count` iterations (0 runs none).
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// When to ask predicates again.
    pub fn refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// Panic isolation: a handler that panics is reported in one line and
    /// its channel closed (its handler dropped, `handle_close` not called),
    /// while every other channel goes on. A panic is charged to the handler
    /// whose code panicked, whichever callback was running: predicates the
    /// map asks from another channel's callback (when `cx.insert` adds the
    /// channel, whose `insert` then returns a token that names it no more;
    /// `cx.refresh`; a dropped `HandlerMut` or `StreamMut`) close their own
    /// channel, not the caller's, and a handler's `Drop` that panics when
    /// its channel closes (the map's drop included) is reported too. The
    /// setting stays with the map
    /// after the loop returns. Off by default, as a panic usually
    /// means a bug that should stop the program; state the panicking handler
    /// shared with others (through `Rc<RefCell<…>>`, say) may be left half
    /// updated. Needs `panic = "unwind"` (the default).
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.catch_panics = catch;
        self
    }
}

pub(crate) fn run(map: &mut Map, options: LoopOptions) -> io::Result<()> {
    if let Some(backend) = options.backend {
        map.set_backend(backend)?;
    }
    map.set_catch_panics(options.catch_panics);
    let mut remaining = options.count;
    let timeout = observed_timeout(&options);
    if remaining.is_none() && options.refresh == Refresh::Touched {
        debug_assert!(timeout.is_none());
        return map.iterate_while_not_empty();
    }
    while !map.is_empty() {
        match &mut remaining {
            Some(0) => break,
            Some(n) => *n -= 1,
            None => {}
        }
        if options.refresh == Refresh::EveryIteration {
            map.refresh_all();
        }
        if map.poll(timeout)? {
            break;
        }
    }
    Ok(())
}

/// The time limit `run` gives each wait: the caller's, unless no one could
/// tell it apart from none.
///
/// A wait that ends at its limit with nothing ready runs no callback. With a
/// count, that iteration counts; with [`Refresh::EveryIteration`], every
/// predicate is asked again before the next wait. With neither, the loop
/// just waits again, so the limit changes nothing but how often an idle
/// server wakes up. Deadlines, idle timeouts and a shutdown's grace bound a
/// wait by themselves (`Registry::wait`). Waiting without a limit then saves
/// a clock read per wait (taken only so that a wait a signal interrupts is
/// retried with what is left, rule 11) and the timeout's conversion to
/// milliseconds: about 60 instructions per wait (callgrind, echo at one
/// connection).
fn observed_timeout(options: &LoopOptions) -> Option<Duration> {
    if options.count.is_none() && options.refresh == Refresh::Touched { None } else { options.timeout }
}

/// Runs one callback into the channel of `token`, if it is still in the
/// map: takes it out of its slot, runs `call` under the panic guard, puts
/// it back as it asked (or closes it). Returns whether the callback asked
/// to stop the loop. The one place a wake-up or an expiry is dispatched.
///
/// A panic is always stopped long enough to take the channel out of the
/// map (see [`Registry::panicked`]). The guard is `catch_unwind` itself,
/// inlined with the callback into the loop: on the path without a panic it
/// costs nothing.
#[inline(always)]
fn callback(
    registry: &mut Registry,
    token: Token,
    call: impl FnOnce(&mut dyn Entry, Interest, &mut Ctx<'_>) -> Resume,
) -> bool {
    let Some((mut entry, interest)) = registry.take(token) else { return false };
    let mut cx = Ctx::new(registry, token);
    // The answer is written from inside the guard rather than returned
    // through it: a `Result<Resume, _>` carried out of `catch_unwind` cost
    // four more instructions per event (callgrind).
    let mut resume = Resume::CLOSE;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        resume = call(&mut *entry, interest, &mut cx);
    }));
    if result.is_ok()
        && let Some(interest) = resume.only_interest()
    {
        // The common case: the channel stays and the loop goes on. Its
        // callback neither closed it nor stopped the loop, which the
        // `Resume` says: the `Ctx` has nothing to undo or report.
        registry.put_back(token, entry, interest);
        return false;
    }
    let stopping = cx.end();
    match result {
        Ok(()) => registry.resume(token, entry, resume),
        Err(payload) => registry.panicked(token, entry, payload),
    }
    stopping
}

/// One readiness report, dispatched: a stale key (the channel closed
/// earlier in this batch, maybe replaced by a new one on the same
/// descriptor) finds nothing. Returns whether the callback asked to stop.
#[inline(always)]
fn woken(registry: &mut Registry, key: u64, readiness: Readiness) -> bool {
    let token = Token::from_key(key, registry.id);
    callback(registry, token, |entry, interest, cx| entry.wake(readiness, interest, cx))
}

/// The longest one wait of [`Map::run_until`] lasts before it asks its
/// condition again.
pub const RUN_UNTIL_TICK: Duration = Duration::from_millis(10);

/// How long an iteration of [`Map::run_until`] lasts on a virtual clock
/// when its wait did not move the clock (it reported readiness, or a timer
/// was due at once): a kernel wait's resolution.
const BUSY_WAIT: Duration = Duration::from_millis(1);

impl Map {
    /// Runs the loop on this map: see [`LoopOptions`].
    pub fn run(&mut self, options: LoopOptions) -> io::Result<()> {
        run(self, options)
    }

    /// One wait and the dispatch of what it reported, then of the deadlines
    /// that passed: asyncore's `poll()`. Returns whether a handler asked to
    /// stop.
    ///
    /// On a simulation's map (`Sim::map`), whose clock is virtual, a wait
    /// never blocks on time: one with a limit that nothing ends early moves
    /// the clock by its limit (onto the next timer at most) and returns, so
    /// the timers due by then fire in this call. One without a limit, with
    /// nothing ready and no timer armed, waits only on the kernel's
    /// descriptors in the map (a waker's, a socket you inserted); with none,
    /// nothing could end it (the simulated peers act only in `Sim::run`),
    /// and it fails with [`Deadlock`](io::ErrorKind::Deadlock) rather than
    /// spin.
    ///
    /// A wait without a limit on a map that holds nothing at all — no
    /// channel, and no waker or signal watcher either, which
    /// [`len`](Self::len) does not count — could never end, and fails with
    /// [`Deadlock`](io::ErrorKind::Deadlock) at once instead of blocking
    /// the thread for good. A wait with a limit on such a map sleeps for its
    /// limit, as a wait on idle channels would: a loop of your own that
    /// calls `poll` keeps its pace while the map is empty.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if timeout.is_none() && self.is_empty() && self.registry.tokens().next().is_none() {
            return Err(nothing_to_wait_for());
        }
        self.iterate(timeout)
    }

    /// Iterations while the map holds channels, until one asks to stop:
    /// `run` without a count or a refresh of its own, whose waits have no
    /// limit (see `observed_timeout`). One function, so that an iteration
    /// does not start and end a call of its own; the limit is written here,
    /// not passed in, so that the wait's code knows it whether or not this
    /// function is inlined into `run` (passed in, and not inlined, it cost
    /// 11 instructions per echoed message at one connection, callgrind).
    fn iterate_while_not_empty(&mut self) -> io::Result<()> {
        while !self.is_empty() {
            if self.iterate(None)? {
                break;
            }
        }
        Ok(())
    }

    /// [`poll`](Self::poll)'s body.
    #[inline(always)]
    fn iterate(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        self.events.clear();
        self.registry.wait(&mut self.events, timeout)?;
        for (key, readiness) in self.events.kernel() {
            if woken(&mut self.registry, key, readiness) {
                return Ok(true);
            }
        }
        // Reports of the map's own (another backend's, a file's, held
        // input) and a shutdown come only with `RARE` set: one test skips
        // both (callgrind: 3 instructions per wait).
        if self.registry.marked_rare() {
            if self.rare_reports() {
                return Ok(true);
            }
        } else {
            debug_assert!(self.events.list().is_empty() && self.registry.shutdown.is_none());
        }
        if !self.registry.timers.is_empty() {
            let now = self.registry.clock.now();
            let round = self.registry.timers.round();
            while let Some(token) = self.registry.timers.pop_expired(now, self.registry.id, round) {
                if callback(&mut self.registry, token, |entry, _, cx| entry.expire(cx)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The rest of a rare iteration's reports (see [`iterate`](Self::iterate)),
    /// and the end of a shutdown's grace. Returns whether a callback asked
    /// to stop.
    #[inline(always)]
    fn rare_reports(&mut self) -> bool {
        for &(key, readiness) in self.events.list() {
            if woken(&mut self.registry, key, readiness) {
                return true;
            }
        }
        self.registry.shutdown.is_some() && self.registry.end_shutdown(self.registry.clock.now())
    }

    /// Runs the loop until `done(map)` holds, the map empties, a handler
    /// stops the loop, or `limit` has passed; returns whether `done` held.
    ///
    /// `done` is asked before the first wait and after every iteration, and
    /// no wait lasts more than [`RUN_UNTIL_TICK`] (10 ms), so a condition on
    /// state outside the map (another thread finished, a peer in the same
    /// test has its answer) is noticed within that. Made for tests and for
    /// code that waits on such a condition with a bound instead of a hang;
    /// a server that runs until it is stopped calls [`Map::run`].
    ///
    /// On a simulation's map, whose clock is virtual, `limit` is virtual
    /// time: a wait that nothing ends early lasts its whole length (or
    /// until the next timer), as on the real clock (see [`Map::poll`]),
    /// and an iteration whose wait did not move the clock (it reported
    /// readiness) a millisecond. So the deadlines and idle timeouts due
    /// within the limit fire at their instants, and the run ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::time::Duration;
    /// use rolecore::{Buffered, Channel, Connected, Ctx, Kept, Map, StreamHandler};
    ///
    /// #[derive(Default)]
    /// struct Count(usize);
    /// impl StreamHandler<Buffered<Connected>> for Count {
    ///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> std::io::Result<()> {
    ///         self.0 += ch.recv(cx.buffer())?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
    /// let count = Kept::new(Count::default());
    /// let mut map = Map::new()?;
    /// map.insert(Buffered::new(Channel::try_from(ours)?), count.clone())?;
    /// theirs.write_all(b"twelve bytes")?;
    /// // The peer stays connected: run only until the bytes arrived.
    /// let arrived = map.run_until(Duration::from_secs(5), |_| count.with(|c| c.0) == Some(12))?;
    /// assert!(arrived);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Map) -> bool) -> io::Result<bool> {
        // A limit too far to represent is no limit.
        let deadline = self.registry.clock.now().checked_add(limit);
        loop {
            if done(self) {
                return Ok(true);
            }
            if self.is_empty() {
                return Ok(false);
            }
            let wait = match deadline {
                Some(deadline) => match deadline.checked_duration_since(self.registry.clock.now()) {
                    Some(left) if !left.is_zero() => left.min(RUN_UNTIL_TICK),
                    _ => return Ok(false),
                },
                None => RUN_UNTIL_TICK,
            };
            let before = self.registry.clock.now();
            if self.poll(Some(wait))? {
                return Ok(done(self)); // a handler stopped the loop
            }
            if let Clock::Virtual(clock) = &self.registry.clock
                && clock.now() == before
            {
                // A wait that reported readiness or a timer due at once: on
                // the real clock the iteration took some time, and a
                // channel always ready (a regular file, say) or a handler
                // re-arming a timer already due cannot hold a simulation's
                // clock still, or the limit would never come.
                clock.advance(BUSY_WAIT.min(wait));
            }
        }
    }
}

/// Why [`Map::poll`] refuses a wait without a limit on a map with nothing
/// in it.
#[cold]
fn nothing_to_wait_for() -> io::Error {
    io::Error::new(
        io::ErrorKind::Deadlock,
        "Map::poll(None) on a map that holds nothing (no channel, waker or signal watcher): no \
         readiness could ever end the wait; insert a channel first, or give the wait a limit",
    )
}

/// asyncore's `loop(timeout, use_poll, map, count)`: waits up to `timeout`
/// per iteration with `backend`, on `map` (or the thread's default map when
/// `None`), until the map is empty or `count` iterations have run.
///
/// Errors of the poller itself end the loop as an `Err`, with the map intact
/// (asyncore raised them out of `loop()`, P19); handler errors never do.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rolecore::Backend;
///
/// // asyncore.loop(timeout=0.01, use_poll=True, count=5) on the default map:
/// rolecore::loop_(Some(Duration::from_millis(10)), Backend::Poll, None, Some(5)).unwrap();
/// ```
pub fn loop_(
    timeout: Option<Duration>,
    backend: Backend,
    map: Option<&mut Map>,
    count: Option<u64>,
) -> io::Result<()> {
    let mut options = LoopOptions { backend: Some(backend), count, ..LoopOptions::default() };
    options.timeout = timeout;
    match map {
        Some(map) => run(map, options),
        None => with_socket_map(|map| run(map, options))?,
    }
}

thread_local! {
    static SOCKET_MAP: RefCell<Option<Map>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's default map, asyncore's `socket_map`, creating it
/// on first use. Explicit maps are the idiom; this is for asyncore parity.
///
/// The default map is per thread, not per process (asyncore's was shared by
/// every thread, P20). Calling this again from inside `f` — for example from a
/// handler while the default map's loop runs — cannot reach the map: it is an
/// error of kind [`ResourceBusy`](io::ErrorKind::ResourceBusy), not a panic,
/// and `f` is dropped without running (with whatever it captured: a channel
/// it would have inserted is closed). Use the handler's [`Ctx`](crate::Ctx)
/// instead (`cx.insert`). The kind is not `WouldBlock` on purpose: a handler
/// that returns the error with `?` gets it in `handle_error` (whose default
/// reports it and closes the channel), where a `WouldBlock` would be taken
/// for a spurious wake-up and ignored.
///
/// From a destructor that runs while the thread exits, after the default
/// map was dropped (a handler of that map, dropped with it), it is an error
/// of kind [`NotConnected`](io::ErrorKind::NotConnected), and `f` is
/// dropped without running.
///
/// # Examples
///
/// ```
/// let len = rolecore::with_socket_map(|map| map.len()).unwrap();
/// assert_eq!(len, 0);
/// ```
pub fn with_socket_map<T>(f: impl FnOnce(&mut Map) -> T) -> io::Result<T> {
    // `try_with`: a destructor that runs while the thread exits (a handler
    // of the default map dropped with it, calling `close_all(None)`) finds
    // the map gone; `with` panicked there, and a panic in a thread-local's
    // destructor aborts the process.
    let reached = SOCKET_MAP.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "rolecore::with_socket_map was called while this thread's default socket map is \
                 in use (from a handler of its own loop?): the closure did not run, and what it \
                 captured was dropped; inside a callback, reach the map through the Ctx \
                 (cx.insert, cx.remove, cx.handler_mut)",
            )
        })?;
        if slot.is_none() {
            *slot = Some(Map::new()?);
        }
        Ok(f(slot.as_mut().expect("set above")))
    });
    reached.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "rolecore::with_socket_map was called while this thread exits, after its default socket \
             map was dropped (from a destructor?): the closure did not run, and what it captured was \
             dropped",
        ))
    })
}

/// asyncore's `close_all(map)`: closes every channel of `map`, or of the
/// thread's default map when `None`, and empties it (as
/// [`Map::close_all`]: the waker and signal watchers stay).
pub fn close_all(map: Option<&mut Map>) -> io::Result<()> {
    match map {
        Some(map) => {
            map.close_all();
            Ok(())
        }
        None => with_socket_map(Map::close_all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_has_no_limit_only_where_the_limit_cannot_be_seen() {
        let ten = Duration::from_millis(10);
        let base = LoopOptions::new().timeout(ten);
        assert_eq!(observed_timeout(&base), None, "no count, refresh on touch: unobservable");
        assert_eq!(observed_timeout(&base.count(3)), Some(ten), "a count counts idle iterations");
        assert_eq!(
            observed_timeout(&base.refresh(Refresh::EveryIteration)),
            Some(ten),
            "every iteration asks the predicates again"
        );
        assert_eq!(observed_timeout(&base.no_timeout().count(1)), None);
    }
}
