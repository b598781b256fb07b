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

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::entry::{Entry, Resume};
use crate::poller::{Backend, Event, MAX_WAIT, Poller, Source};
use crate::readiness::{Interest, Readiness};
use crate::report::{Level, log_info};
use crate::seal::Seal;
use crate::timer::Timers;
use crate::token::{Token, next_map_id};
use crate::trace::{Trace, Traced};

/// The size of the read buffer a map lends to callbacks ([`Ctx::buffer`]).
const SCRATCH_SIZE: usize = 64 * 1024;

/// A channel type that can join a map with handler `H`: a stream channel
/// (connecting or connected; raw, [`Buffered`](crate::Buffered) or
/// [`AsyncChat`](crate::AsyncChat)) with a
/// [`StreamHandler`](crate::StreamHandler), a listener with an
/// [`AcceptHandler`](crate::AcceptHandler), a file with a
/// [`FileHandler`](crate::FileHandler), a datagram socket with a
/// [`DatagramHandler`](crate::DatagramHandler).
///
/// Sealed, and its methods are the map's own: they live in a supertrait
/// user code cannot name, and each takes a proof only rolecore can make, so
/// no code outside rolecore can turn a channel into an entry and drive it
/// with readiness it made up.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot join a map with this handler",
    label = "this channel and handler do not go together",
    note = "what joins a map, and the handler it needs: a Connected or Connecting stream with \
            `impl StreamHandler<T> for YourHandler`, where T is the transport the callbacks get \
            (`Channel<Connected>`, the default; `Buffered<Connected>` for a Buffered stream; an \
            `AsyncChat`'s handler implements `ChatHandler` instead); a Listening channel with \
            `impl AcceptHandler for YourHandler`; a FileFd channel with `impl FileHandler for YourHandler`; a \
            Datagram or ConnectedDatagram socket with `impl DatagramHandler<Datagram> for YourHandler` \
            (or `<ConnectedDatagram>`). A Fresh or Bound socket must `connect` or `listen` \
            first, an UnboundDatagram must `bind` or `connect` first"
)]
pub trait Register<H>: Sized + crate::entry::RegisterSealed<H> {}

/// An insertion that failed (the poller refused the descriptor), with the
/// channel and handler given back.
pub struct InsertError<C, H> {
    /// Why the poller refused.
    pub error: io::Error,
    /// The channel, unchanged.
    pub channel: C,
    /// The handler, unchanged.
    pub handler: H,
}

impl<C, H> fmt::Debug for InsertError<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InsertError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<C, H> fmt::Display for InsertError<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot watch the channel: {}", self.error)
    }
}

impl<C, H> std::error::Error for InsertError<C, H> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<C, H> From<InsertError<C, H>> for io::Error {
    fn from(e: InsertError<C, H>) -> io::Error {
        e.error
    }
}

#[derive(Default)]
struct Slot {
    generation: u32,
    /// The interest the poller knows for this channel.
    interest: Interest,
    /// A regular file: never given to the kernel, always reported ready.
    always_ready: bool,
    /// Taken out while its own callback runs.
    busy: bool,
    /// rolecore's own (the waker): not counted, so it never keeps a loop
    /// alive.
    daemon: bool,
    /// A listening socket: an idle timeout is refused for it.
    listener: bool,
    entry: Option<Box<dyn Entry>>,
}

/// The table and the poller: what a [`Ctx`] needs to change the map from
/// inside a callback.
pub(crate) struct Registry {
    /// This map's id: in every token it issues, checked on every lookup.
    id: u32,
    slots: Vec<Slot>,
    /// One read buffer for the whole map, lent to callbacks in turn: no
    /// per-connection buffer, no zeroing per read.
    scratch: Vec<u8>,
    len: usize,
    always_ready: usize,
    poller: Poller,
    timers: Timers,
    /// Recorded callbacks, when a simulation asked for them.
    trace: Option<Trace>,
    /// A graceful shutdown in progress: when every channel still open is
    /// closed.
    shutdown: Option<Instant>,
    /// A channel left its entry behind the map's back (a handler swapped the
    /// `&mut` channel it was lent for another one): the poller may still
    /// watch a descriptor the map can no longer name, so its registrations
    /// are rebuilt from the map before the next wait.
    orphans: bool,
}

impl Registry {
    fn new(backend: Backend) -> io::Result<Registry> {
        Registry::with_poller(Poller::new(backend)?)
    }

    fn with_poller(poller: Poller) -> io::Result<Registry> {
        Ok(Registry {
            id: next_map_id()?,
            slots: Vec::new(),
            scratch: Vec::new(),
            len: 0,
            always_ready: 0,
            poller,
            timers: Timers::default(),
            trace: None,
            shutdown: None,
            orphans: false,
        })
    }

    /// A token of this map: `index` at its slot's current generation.
    #[inline]
    fn token(&self, index: usize, generation: u32) -> Token {
        Token::new(index as u32, generation, self.id)
    }

    /// The slot a token names, if this map issued it and the slot's
    /// generation is still the token's. Every lookup by token goes through
    /// here or [`slot_mut`](Self::slot_mut).
    #[inline]
    fn slot(&self, token: Token) -> Option<&Slot> {
        if token.map() != self.id {
            return None;
        }
        self.slots.get(token.index() as usize).filter(|s| s.generation == token.generation())
    }

    #[inline]
    fn slot_mut(&mut self, token: Token) -> Option<&mut Slot> {
        if token.map() != self.id {
            return None;
        }
        self.slots.get_mut(token.index() as usize).filter(|s| s.generation == token.generation())
    }

    fn live(&self, token: Token) -> Option<&Slot> {
        self.slot(token).filter(|s| s.entry.is_some() || s.busy)
    }

    fn insert<C: Register<H>, H>(&mut self, channel: C, handler: H) -> Result<Token, InsertError<C, H>> {
        let index = channel.fd(Seal(())).as_raw_fd() as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let token = self.token(index, self.slots[index].generation);
        let slot = &self.slots[index];
        if slot.entry.is_some() || slot.busy {
            // Two owned channels cannot share a descriptor number; only a
            // channel built from a borrowed descriptor could get here.
            let error = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a channel with this descriptor is already in the map",
            );
            return Err(InsertError { error, channel, handler });
        }
        let interest = channel.interest(&handler, Seal(()));
        let mut always_ready = channel.always_ready(Seal(()));
        let fd = channel.fd(Seal(()));
        if !always_ready && let Err(error) = self.poller.register(fd, token.key(), interest) {
            if error.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) {
                // epoll refuses what is always ready anyway (regular files).
                always_ready = true;
            } else if error.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error())
                && let Ok(()) = self.poller.reregister(fd, token.key(), interest)
            {
                // This very descriptor is still registered: it was taken out
                // of an entry by a swap, and comes back before the map
                // rebuilt its registrations. It is watched again, under its
                // new token.
            } else {
                return Err(InsertError { error, channel, handler });
            }
        }
        let listener = channel.takes_no_idle_timeout(Seal(()));
        self.place(token, channel.into_entry(handler, Seal(())), interest, always_ready, false);
        self.slots[token.index() as usize].listener = listener;
        Ok(token)
    }

    /// Inserts one of rolecore's own entries (a mailbox).
    pub(crate) fn insert_entry(&mut self, entry: Box<dyn Entry>, daemon: bool) -> io::Result<Token> {
        let index = entry.fd().as_raw_fd() as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let token = self.token(index, self.slots[index].generation);
        let interest = entry.interest();
        self.poller.register(entry.fd(), token.key(), interest)?;
        self.place(token, entry, interest, false, daemon);
        Ok(token)
    }

    fn place(
        &mut self,
        token: Token,
        entry: Box<dyn Entry>,
        interest: Interest,
        always_ready: bool,
        daemon: bool,
    ) {
        if let Some(trace) = &mut self.trace {
            trace.push((token, Traced::Inserted(entry.joined())));
        }
        let slot = &mut self.slots[token.index() as usize];
        slot.interest = interest;
        slot.always_ready = always_ready;
        slot.daemon = daemon;
        slot.listener = false;
        slot.entry = Some(entry);
        self.len += usize::from(!daemon);
        self.always_ready += usize::from(always_ready);
    }

    /// Takes a channel out for its callback; `None` for a stale token.
    #[inline]
    fn take(&mut self, token: Token) -> Option<(Box<dyn Entry>, Interest)> {
        let slot = self.slot_mut(token)?;
        let entry = slot.entry.take()?;
        slot.busy = true;
        Some((entry, slot.interest))
    }

    /// Ends a callback as the entry asked: back in its slot, watched with
    /// its predicates' answer, or out of the map.
    #[inline(always)]
    fn resume(&mut self, token: Token, entry: Box<dyn Entry>, resume: Resume) {
        let Resume::Watch(interest) = resume else {
            if resume == Resume::Replaced {
                return self.replaced(token, entry);
            }
            return self.discard(token, entry);
        };
        let slot = &mut self.slots[token.index() as usize];
        slot.busy = false;
        let changed = interest != slot.interest;
        slot.entry = Some(entry);
        if changed && !self.rewatch(token, interest) {
            return;
        }
        if !self.timers.is_empty() {
            self.timers.touched(token, Instant::now());
        }
    }

    /// The interest of a channel that is in its slot changed: records it and
    /// tells the poller. A poller that refuses closes the channel; returns
    /// whether it is still in the map. Cold: a busy channel's interest
    /// changes far less often than it wakes up.
    #[cold]
    fn rewatch(&mut self, token: Token, interest: Interest) -> bool {
        let slot = &mut self.slots[token.index() as usize];
        slot.interest = interest;
        let Some(entry) = &slot.entry else { return true };
        if slot.always_ready {
            return true;
        }
        let Err(e) = self.poller.reregister(entry.fd(), token.key(), interest) else { return true };
        log_info(
            Level::Error,
            format_args!("cannot change interest of {}: {e}; closing it", entry.describe()),
        );
        let entry = slot.entry.take().expect("checked above");
        slot.busy = true;
        self.discard(token, entry);
        false
    }

    /// Deregisters, then drops (closing the descriptor) — in that order, so no
    /// registration outlives the channel through a duplicate descriptor (P12).
    ///
    /// An entry whose descriptor is not its slot's (its handler swapped the
    /// channel) is dropped without deregistering: the descriptor it holds is
    /// not the one registered under this token, and may be registered under
    /// another. The map rebuilds its registrations before the next wait
    /// instead, which forgets the one it can no longer name.
    fn discard(&mut self, token: Token, entry: Box<dyn Entry>) {
        let slot = &mut self.slots[token.index() as usize];
        if !slot.always_ready && self.poller.keeps_registrations() {
            if entry.fd().as_raw_fd() as u32 == token.index() {
                // Only fails if the kernel already forgot the descriptor.
                let _ = self.poller.deregister(entry.fd());
            } else {
                self.orphans = true;
            }
        }
        self.always_ready -= usize::from(slot.always_ready);
        self.len -= usize::from(!slot.daemon);
        if !self.timers.is_empty() {
            self.timers.remove(token);
        }
        if let Some(trace) = &mut self.trace {
            trace.push((token, Traced::Removed));
        }
        *slot = Slot { generation: slot.generation.wrapping_add(1), ..Slot::default() };
        drop(entry);
    }

    /// An entry that holds another descriptor than the one its slot was
    /// registered with: its handler swapped the `&mut` channel it was lent
    /// (`std::mem::swap`, `std::mem::replace`) for another one. The map
    /// reports it and closes the entry (with the channel it now holds); the
    /// channel taken out lives on wherever the handler put it, and no longer
    /// belongs to the map: its registration is dropped before the next wait,
    /// so it neither wakes the loop nor stops it from being inserted again.
    #[cold]
    fn replaced(&mut self, token: Token, entry: Box<dyn Entry>) {
        log_info(
            Level::Error,
            format_args!(
                "a handler replaced the channel of {token:?} with {}: the map closes what the entry \
                 now holds and forgets the channel taken out; a handler must not swap the channel \
                 it is lent",
                entry.describe()
            ),
        );
        self.discard(token, entry);
        self.orphans = true;
    }

    /// Forgets every registration and makes them again from the map, after
    /// a swap left one the map can no longer name (see
    /// [`replaced`](Self::replaced)). Entries still holding a descriptor
    /// other than their slot's are closed first. If a new poller cannot be
    /// made (out of descriptors), the old one is kept and the rebuild is
    /// tried again before the next wait.
    #[cold]
    fn rebuild_registrations(&mut self) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if let Some(entry) = &slot.entry
                && entry.fd().as_raw_fd() as usize != index
            {
                let token = self.token(index, slot.generation);
                let entry = self.slots[index].entry.take().expect("checked above");
                self.slots[index].busy = true;
                self.replaced(token, entry);
            }
        }
        self.orphans = false;
        if !self.poller.keeps_registrations() {
            return;
        }
        let backend = self.poller.backend();
        let old = match Poller::new(backend) {
            Ok(fresh) => std::mem::replace(&mut self.poller, fresh),
            Err(e) => {
                log_info(Level::Error, format_args!("cannot rebuild the {backend} poller: {e}; retrying"));
                self.orphans = true;
                return;
            }
        };
        drop(old);
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(entry) = &slot.entry else { continue };
            if slot.always_ready {
                continue;
            }
            let key = self.token(index, slot.generation).key();
            if let Err(e) = self.poller.register(entry.fd(), key, slot.interest) {
                let token = self.token(index, slot.generation);
                log_info(
                    Level::Error,
                    format_args!("cannot watch {} again: {e}; closing it", entry.describe()),
                );
                let entry = self.slots[index].entry.take().expect("checked above");
                self.slots[index].busy = true;
                self.discard(token, entry);
            }
        }
    }

    pub(crate) fn remove(&mut self, token: Token) -> bool {
        match self.live(token) {
            Some(slot) if !slot.busy => {
                let entry = self.slots[token.index() as usize].entry.take();
                self.slots[token.index() as usize].busy = true;
                if let Some(entry) = entry {
                    self.discard(token, entry);
                }
                true
            }
            _ => false,
        }
    }

    fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) -> bool {
        let live = self.live(token).is_some();
        if live {
            self.timers.set_deadline(token, deadline);
        }
        live
    }

    fn set_idle_timeout(&mut self, token: Token, idle: Option<Duration>) -> bool {
        let live = self.live(token).is_some();
        if live && idle.is_some() && self.slots[token.index() as usize].listener {
            // Nearly always `cx.set_idle_timeout(cx.token(), ..)` written in
            // `handle_accepted` for the new connection: it would close the
            // listener when no connection came for a while, and the server
            // would stop accepting without a word.
            crate::report::log_info(
                crate::report::Level::Error,
                format_args!(
                    "set_idle_timeout refused for listener {token:?}: it would close the listener; \
                     for a new connection, pass the token that insert returned"
                ),
            );
            return false;
        }
        if live {
            self.timers.set_idle(token, idle, Instant::now());
        }
        live
    }

    pub(crate) fn refresh(&mut self, token: Token) {
        let Some(slot) = self.slot_mut(token) else { return };
        let Some(entry) = &slot.entry else { return };
        if entry.fd().as_raw_fd() as u32 != token.index() {
            // Swapped through `stream_mut`: see `Resume::Replaced`.
            let entry = slot.entry.take().expect("checked above");
            slot.busy = true;
            return self.replaced(token, entry);
        }
        let interest = entry.interest();
        if interest != slot.interest {
            self.rewatch(token, interest);
        }
    }

    fn entry_mut(&mut self, token: Token) -> Option<&mut Box<dyn Entry>> {
        self.slot_mut(token)?.entry.as_mut()
    }

    fn begin_shutdown(&mut self, grace: Duration) {
        let at = Instant::now().checked_add(grace).unwrap_or_else(|| Instant::now() + MAX_WAIT);
        // Listeners go at once: a shutdown in the past closes them now.
        self.shutdown = Some(self.shutdown.map_or(at, |old| old.min(at)));
        self.close_where(|entry| entry.joined() == crate::trace::Joined::Listening);
    }

    /// Closes the channels `which` picks, each after its `handle_close`.
    /// Returns whether one of them asked to stop the loop.
    fn close_where(&mut self, which: impl Fn(&dyn Entry) -> bool) -> bool {
        let mut stop = false;
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(entry) = slot.entry.as_deref() else { continue };
            if slot.daemon || !which(entry) {
                continue;
            }
            let token = self.token(index, slot.generation);
            let Some((mut entry, _)) = self.take(token) else { continue };
            let mut cx = Ctx::new(self, token);
            entry.shut(&mut cx);
            stop |= cx.end();
            self.discard(token, entry);
        }
        stop
    }

    fn token_at(&self, index: usize) -> Option<Token> {
        let slot = self.slots.get(index).filter(|s| s.entry.is_some())?;
        Some(self.token(index, slot.generation))
    }

    fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(i, s)| self.token(i, s.generation))
    }

    fn switch_backend(&mut self, backend: Backend) -> io::Result<()> {
        if self.poller.backend() == backend {
            return Ok(());
        }
        let mut poller = Poller::new(backend)?;
        let mut always = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(entry) = &slot.entry else { continue };
            let key = self.token(i, slot.generation).key();
            match poller.register(entry.fd(), key, slot.interest) {
                Ok(()) => always.push(false),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                    always.push(true)
                }
                Err(e) => return Err(e),
            }
        }
        let mut flags = always.into_iter();
        let mut count = 0;
        for slot in self.slots.iter_mut().filter(|s| s.entry.is_some()) {
            let always_ready = slot.always_ready || flags.next().unwrap_or(false);
            slot.always_ready = always_ready;
            count += usize::from(always_ready);
        }
        self.always_ready = count;
        self.poller = poller;
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        if self.orphans {
            self.rebuild_registrations();
        }
        // A regular file that wants something is ready now: do not sleep. One
        // that wants nothing must not turn the wait into a busy loop.
        let files_ready = self.always_ready > 0
            && self.slots.iter().any(|s| s.always_ready && s.entry.is_some() && !s.interest.is_empty());
        let timeout = if files_ready { Some(Duration::ZERO) } else { timeout };
        let next_wake = match (self.timers.next_wake(), self.shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match next_wake {
            Some(at) => {
                let until = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        };
        let (slots, id) = (&self.slots, self.id);
        let sources = slots.iter().enumerate().filter(|(_, s)| !s.always_ready).filter_map(|(i, s)| {
            let entry = s.entry.as_ref()?;
            let key = Token::new(i as u32, s.generation, id).key();
            Some(Source { fd: entry.fd(), key, interest: s.interest })
        });
        self.poller.wait(sources, events, timeout)?;
        if files_ready {
            for (i, s) in self.slots.iter().enumerate().filter(|(_, s)| s.always_ready && s.entry.is_some()) {
                let mut r = Readiness::EMPTY;
                if s.interest.is_readable() {
                    r |= Readiness::READABLE;
                }
                if s.interest.is_writable() {
                    r |= Readiness::WRITABLE;
                }
                if !r.is_empty() {
                    events.push((Token::new(i as u32, s.generation, self.id).key(), r));
                }
            }
        }
        Ok(())
    }
}

/// Sizes the map's read buffer, the first time a callback asks for it.
#[cold]
fn grow_scratch(scratch: &mut Vec<u8>) {
    scratch.resize(SCRATCH_SIZE, 0);
}

/// What a callback can do to the loop beyond its own channel: add channels,
/// close its channel or another, ask for predicates again, stop the loop.
///
/// Changes take effect at once for other channels; closing the current
/// channel takes effect when the callback returns, and then nothing more is
/// delivered to it.
pub struct Ctx<'a> {
    registry: &'a mut Registry,
    token: Token,
    closing: bool,
    stopping: bool,
    /// What [`crate::channel::mark_closing`] replaced when this callback
    /// closed its channel, to put back when the callback ends.
    unmark: Option<std::os::fd::RawFd>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(registry: &'a mut Registry, token: Token) -> Self {
        Ctx { registry, token, closing: false, stopping: false, unmark: None }
    }

    /// The callback is over: the channel it closed is no longer refused
    /// I/O here (the map is about to close it). Returns whether it asked to
    /// stop the loop.
    pub(crate) fn end(self) -> bool {
        if let Some(previous) = self.unmark {
            crate::channel::unmark_closing(previous);
        }
        self.stopping
    }

    /// The token of the channel whose callback this is.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Adds a channel to the loop; it is watched from the next wait on.
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
        if !self.closing {
            self.unmark = Some(crate::channel::mark_closing(self.token.fd()));
        }
        self.closing = true;
    }

    /// Whether [`close`](Self::close) was called during this wake-up.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Closes another channel now (or this one, as [`close`](Self::close)).
    /// Returns whether the token named a live channel. Readiness already
    /// collected for it is dropped.
    pub fn remove(&mut self, token: Token) -> bool {
        if token == self.token {
            self.close();
            return true;
        }
        self.registry.remove(token)
    }

    /// Asks another channel's `readable()`/`writable()` again: call it after
    /// changing state its predicates read.
    pub fn refresh(&mut self, token: Token) {
        if token != self.token {
            self.registry.refresh(token);
        }
    }

    /// Gives a channel (this one: [`token`](Self::token)) a deadline: when it
    /// passes, the handler's `handle_timeout` runs once. `None` clears the
    /// channel's deadline or idle timeout. Returns whether the token is live.
    pub fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) -> bool {
        self.registry.set_deadline(token, deadline)
    }

    /// Gives a channel an idle timeout: `handle_timeout` runs when `idle`
    /// passes without a callback into the channel (every event re-arms it).
    /// `None` clears it. Returns whether the timeout was set: `false` for a
    /// token that names no live channel, and for a listener, which is
    /// refused with a report line (a listener's events are connections, so
    /// its idle timeout would close it when none came for a while; a
    /// listener that should stop at some point takes a
    /// [`deadline`](Self::set_deadline)).
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
    pub fn set_idle_timeout(&mut self, token: Token, idle: Option<Duration>) -> bool {
        self.registry.set_idle_timeout(token, idle)
    }

    /// Records the start of a callback into this channel's handler, when
    /// tracing; returns where to record its progress.
    #[inline]
    pub(crate) fn trace_call(&mut self, callback: crate::trace::Callback) -> Option<usize> {
        let trace = self.registry.trace.as_mut()?;
        trace.push((self.token, Traced::Called { callback, progress: false }));
        Some(trace.len() - 1)
    }

    #[inline]
    pub(crate) fn trace_progress(&mut self, at: Option<usize>, moved: bool) {
        if let (Some(at), Some(trace)) = (at, self.registry.trace.as_mut())
            && let Some((_, Traced::Called { progress, .. })) = trace.get_mut(at)
        {
            *progress = moved;
        }
    }

    /// Another connected stream's transport and handler, if they have types
    /// `T` and `H`, behind a guard that asks that channel's predicates again
    /// when dropped: push output into another member of a chat room, say,
    /// and it is sent when that channel's socket can take it. `None` for a
    /// stale token, a channel still connecting or draining, this callback's
    /// own channel, or other types.
    ///
    /// ```
    /// use std::io;
    /// use rolecore::{AsyncChat, ChatHandler, Ctx, Token};
    ///
    /// /// Forwards every line to a partner channel.
    /// struct Relay { partner: Option<Token> }
    ///
    /// impl ChatHandler for Relay {
    ///     fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
    ///         let mut line = chat.take_incoming();
    ///         line.push(b'\n');
    ///         if let Some(mut other) = self.partner.and_then(|p| cx.stream_mut::<AsyncChat, Relay>(p)) {
    ///             other.transport().push(&line)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> io::Result<()> {
    /// use std::io::{BufRead, Write};
    /// use std::os::unix::net::UnixStream;
    /// use rolecore::{Channel, LoopOptions, Map, Terminator};
    ///
    /// let (a, mut alice) = UnixStream::pair()?;
    /// let (b, bob) = UnixStream::pair()?;
    /// let mut map = Map::new()?;
    /// let line = || Terminator::bytes(b"\n");
    /// let ta = map.insert(AsyncChat::new(Channel::try_from(a)?, line()), Relay { partner: None })?;
    /// let tb = map.insert(AsyncChat::new(Channel::try_from(b)?, line()), Relay { partner: Some(ta) })?;
    /// map.handler_mut::<Relay>(ta).unwrap().partner = Some(tb);
    /// alice.write_all(b"hello bob\n")?;
    /// map.run(LoopOptions::new().count(3).timeout(std::time::Duration::from_millis(50)))?;
    /// let mut got = String::new();
    /// std::io::BufReader::new(bob).read_line(&mut got)?;
    /// assert_eq!(got, "hello bob\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_mut<T: crate::Transport, H: 'static>(
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
        let scratch = &mut self.registry.scratch;
        if scratch.len() < SCRATCH_SIZE {
            grow_scratch(scratch);
        }
        &mut scratch[..]
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

    pub(crate) fn put_scratch(&mut self, buf: Vec<u8>) {
        self.registry.scratch = buf;
    }

    /// Starts a graceful shutdown of the whole map: listeners close (with
    /// `handle_close`) when this callback returns, the other channels have
    /// `grace` to finish and close on their own, then each one still open
    /// gets `handle_close` once and is closed. See also
    /// [`Waker::shutdown`](crate::Waker::shutdown).
    pub fn shutdown(&mut self, grace: Duration) {
        self.registry.begin_shutdown(grace);
    }

    /// Ends the loop after this callback, leaving the map as it is
    /// (asyncore's `ExitNow`).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// How many channels the map holds, this one included.
    pub fn len(&self) -> usize {
        self.registry.len
    }

    /// Whether the map is empty (never, while a callback runs).
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
            .field("token", &self.token)
            .field("closing", &self.closing)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
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
    registry: Registry,
    events: Vec<Event>,
    catch_panics: bool,
    waker: Option<(Token, crate::mailbox::Waker)>,
}

impl Map {
    /// An empty map that waits with the default backend (epoll).
    pub fn new() -> io::Result<Map> {
        Map::with_backend(Backend::default())
    }

    /// An empty map that waits with `backend`.
    pub fn with_backend(backend: Backend) -> io::Result<Map> {
        Ok(Map { registry: Registry::new(backend)?, events: Vec::new(), catch_panics: false, waker: None })
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

    /// Adds a channel with its handler.
    pub fn insert<C: Register<H>, H>(&mut self, channel: C, handler: H) -> Result<Token, InsertError<C, H>> {
        self.registry.insert(channel, handler)
    }

    /// Closes and removes a channel, without calling its `handle_close`.
    /// Returns whether the token named a live channel.
    pub fn remove(&mut self, token: Token) -> bool {
        self.registry.remove(token)
    }

    /// Whether the token names a live channel.
    pub fn contains(&self, token: Token) -> bool {
        self.registry.live(token).is_some()
    }

    /// How many channels the map holds.
    pub fn len(&self) -> usize {
        self.registry.len
    }

    /// Whether the map holds no channel (the loop then ends).
    pub fn is_empty(&self) -> bool {
        self.registry.len == 0
    }

    /// The tokens of every channel in the map.
    pub fn tokens(&self) -> Vec<Token> {
        self.registry.tokens().collect()
    }

    /// Closes every channel and empties the map, as asyncore's `close_all`.
    /// No `handle_close` is called; handlers are dropped. Closing an owned
    /// descriptor cannot fail in a way a caller could act on, so unlike
    /// asyncore's there is nothing to ignore.
    pub fn close_all(&mut self) {
        for index in 0..self.registry.slots.len() {
            if let Some(token) = self.registry.token_at(index) {
                self.registry.remove(token);
            }
        }
    }

    /// The handler of a channel, if it has type `H`.
    pub fn handler<H: 'static>(&self, token: Token) -> Option<&H> {
        let slot = self.registry.live(token)?;
        slot.entry.as_ref()?.handler().downcast_ref::<H>()
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

    /// A connected stream's transport and handler, as [`Ctx::stream_mut`].
    pub fn stream_mut<T: crate::Transport, H: 'static>(
        &mut self,
        token: Token,
    ) -> Option<StreamMut<'_, T, H>> {
        StreamMut::new(&mut self.registry, token)
    }

    /// Gives a channel a deadline, as [`Ctx::set_deadline`].
    pub fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) -> bool {
        self.registry.set_deadline(token, deadline)
    }

    /// Gives a channel an idle timeout, as [`Ctx::set_idle_timeout`].
    pub fn set_idle_timeout(&mut self, token: Token, idle: Option<Duration>) -> bool {
        self.registry.set_idle_timeout(token, idle)
    }

    /// Asks every channel's predicates again.
    pub fn refresh_all(&mut self) {
        for index in 0..self.registry.slots.len() {
            if let Some(token) = self.registry.token_at(index) {
                self.registry.refresh(token);
            }
        }
    }

    /// One wait and the dispatch of what it reported, then of the deadlines
    /// that passed: asyncore's `poll()`. Returns whether a handler asked to
    /// stop.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        self.events.clear();
        self.registry.wait(&mut self.events, timeout)?;
        for &(key, readiness) in &self.events {
            let token = Token::from_key(key, self.registry.id);
            // A stale key (the channel closed earlier in this batch, maybe
            // replaced by a new one on the same descriptor) finds nothing.
            let Some((mut entry, interest)) = self.registry.take(token) else { continue };
            let mut cx = Ctx::new(&mut self.registry, token);
            let mut resume = Resume::Close;
            let panicked = guard(self.catch_panics, || resume = entry.wake(readiness, interest, &mut cx));
            let stopping = cx.end();
            if let Some(panic) = panicked {
                self.registry.discard(token, entry);
                std::panic::resume_unwind(panic);
            }
            self.registry.resume(token, entry, resume);
            if stopping {
                return Ok(true);
            }
        }
        if let Some(deadline) = self.registry.shutdown
            && Instant::now() >= deadline
        {
            // The grace period is over: close everyone still here.
            self.registry.shutdown = None;
            if self.registry.close_where(|_| true) {
                return Ok(true);
            }
        }
        if !self.registry.timers.is_empty() {
            let now = Instant::now();
            while let Some(token) = self.registry.timers.pop_expired(now, self.registry.id) {
                let Some((mut entry, _)) = self.registry.take(token) else { continue };
                let mut cx = Ctx::new(&mut self.registry, token);
                let mut resume = Resume::Close;
                let panicked = guard(self.catch_panics, || resume = entry.expire(&mut cx));
                let stopping = cx.end();
                if let Some(panic) = panicked {
                    self.registry.discard(token, entry);
                    std::panic::resume_unwind(panic);
                }
                self.registry.resume(token, entry, resume);
                if stopping {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Runs `f` on a channel's descriptor (for the simulation's socket
    /// options); `None` for a stale token.
    pub(crate) fn with_fd<T>(
        &self,
        token: Token,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> T,
    ) -> Option<T> {
        let entry = self.registry.live(token)?.entry.as_ref()?;
        Some(f(entry.fd()))
    }

    pub(crate) fn insert_entry(&mut self, entry: Box<dyn Entry>, daemon: bool) -> io::Result<Token> {
        self.registry.insert_entry(entry, daemon)
    }

    pub(crate) fn waker_slot(&self) -> Option<crate::mailbox::Waker> {
        let (token, waker) = self.waker.as_ref()?;
        self.contains(*token).then(|| waker.clone())
    }

    pub(crate) fn set_waker_slot(&mut self, token: Token, waker: crate::mailbox::Waker) {
        self.waker = Some((token, waker));
    }

    /// Starts a graceful shutdown, as [`Ctx::shutdown`]; the loop ends once
    /// the map is empty.
    pub fn shutdown(&mut self, grace: Duration) {
        self.registry.begin_shutdown(grace);
    }

    /// Starts (or stops) recording callbacks, for the simulation.
    pub(crate) fn set_tracing(&mut self, on: bool) {
        self.registry.trace = on.then(Vec::new);
    }

    /// Takes what was recorded since the last call.
    pub(crate) fn take_trace(&mut self) -> Trace {
        self.registry.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn with_poller(poller: Poller) -> Map {
        Map {
            registry: Registry::with_poller(poller).expect("a map id for the simulation"),
            events: Vec::new(),
            catch_panics: false,
            waker: None,
        }
    }

    /// Whether a panic in a handler is caught (see
    /// [`LoopOptions::catch_panics`](crate::LoopOptions::catch_panics)).
    pub fn set_catch_panics(&mut self, catch: bool) {
        self.catch_panics = catch;
    }

    /// Runs the loop on this map: see [`LoopOptions`](crate::LoopOptions).
    pub fn run(&mut self, options: crate::LoopOptions) -> io::Result<()> {
        crate::event_loop::run(self, options)
    }
}

/// Runs one callback. A panic is always stopped long enough to take the
/// channel out of the map; with `catch` on it is then reported and the loop
/// goes on (the callback's `Resume` was never set, so the channel closes),
/// otherwise it is returned, to pass on to the caller of the loop once the
/// channel is out of the map (so the map stays coherent for a caller that
/// catches it).
fn guard(catch: bool, callback: impl FnOnce()) -> Option<Box<dyn std::any::Any + Send>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)) {
        Ok(()) => None,
        Err(payload) if !catch => Some(payload),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a non-string panic payload");
            log_info(Level::Error, format_args!("a handler panicked ({message}); closing its channel"));
            None
        }
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").field("backend", &self.backend()).field("len", &self.len()).finish()
    }
}

/// Another connected stream's transport and handler, borrowed through
/// [`Ctx::stream_mut`] or [`Map::stream_mut`]; dropping it asks the
/// channel's predicates again, so output pushed through it gets sent.
pub struct StreamMut<'a, T: 'static, H: 'static> {
    registry: &'a mut Registry,
    token: Token,
    types: std::marker::PhantomData<(&'a mut T, &'a mut H)>,
}

impl<'a, T: 'static, H: 'static> StreamMut<'a, T, H> {
    fn new(registry: &'a mut Registry, token: Token) -> Option<Self> {
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

/// A handler borrowed from a [`Map`] or a [`Ctx`]; dropping it asks the channel's
/// predicates again, so interest follows what the program changed.
pub struct HandlerMut<'a, H: 'static> {
    registry: &'a mut Registry,
    token: Token,
    handler: std::marker::PhantomData<&'a mut H>,
}

impl<'a, H: 'static> HandlerMut<'a, H> {
    fn new(registry: &'a mut Registry, token: Token) -> Option<Self> {
        registry.entry_mut(token)?.handler_mut().downcast_mut::<H>()?;
        Some(HandlerMut { registry, token, handler: std::marker::PhantomData })
    }

    fn get(&self) -> &H {
        let slot = self.registry.live(self.token).expect("checked when borrowed");
        slot.entry
            .as_ref()
            .expect("not busy outside the loop")
            .handler()
            .downcast_ref::<H>()
            .expect("checked")
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
