//! Layer 4: the registry — the slots that hold the channels, the poller
//! that watches them, the timers — and everything that changes it: insert,
//! take out for a callback and put back, rewatch, close. What a
//! [`Ctx`](super::Ctx) changes from inside a callback goes through here.
//! How a channel joins it (`insert.rs`), its wait (`wait.rs`), a graceful shutdown (`shutdown.rs`), what a
//! panicking handler leaves (`panics.rs`) and what a handler that swapped
//! its channel leaves (`swapped.rs`) live beside it.

mod insert;
mod panics;
mod shutdown;
mod swapped;
mod wait;

use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use super::entry::{Entry, Resume};
use super::slot::{ALWAYS_READY, DAEMON, LISTENER, NO_TIMER, Slot};
use crate::clock::Clock;
use crate::poller::{Backend, Poller, Watched};
use crate::readiness::Interest;
use crate::report::{Level, log_info};
use crate::timer::Timers;
use crate::token::{Token, next_map_id};
use crate::trace::{SharedTrace, Traced};

// One slot per descriptor number, idle or not: see `Slot`.
static_assertions::const_assert!(std::mem::size_of::<Slot<dyn Entry>>() <= 24);

/// The table and the poller: what a [`Ctx`](super::Ctx) needs to change the map from
/// inside a callback.
pub(crate) struct Registry {
    /// This map's id: in every token it issues, checked on every lookup.
    pub(crate) id: u32,
    slots: Vec<Slot<dyn Entry>>,
    /// One read buffer for the whole map, lent to callbacks in turn: no
    /// per-connection buffer, no zeroing per read.
    pub(crate) scratch: Vec<u8>,
    /// A second read buffer, for a callback that asks for one while the
    /// first is lent to an `AsyncChat`'s own read: empty (unallocated) until
    /// one does.
    pub(crate) spare_scratch: Vec<u8>,
    pub(crate) len: usize,
    always_ready: usize,
    /// Streams let read again from outside their wake-ups (`refresh`) with
    /// input held above the socket, which no readiness will report: the
    /// next wait does not sleep and reports them readable.
    held_input: Vec<Token>,
    /// Channels whose predicates could not answer when asked (a [`Kept`]
    /// handler busy in one of its own callbacks, asked for another channel
    /// it serves): asked again before the next wait.
    ///
    /// [`Kept`]: crate::Kept
    pub(crate) unanswered: Vec<Token>,
    pub(crate) poller: Poller,
    pub(crate) timers: Timers,
    /// Recorded callbacks, when a simulation asked for them.
    pub(crate) trace: Option<SharedTrace>,
    /// When a simulation traces: the order each slot's channel joined in
    /// (by slot, numbered from 1), and the next number. Work the loop does
    /// channel by channel — closing them all at the end of a shutdown's
    /// grace — goes in this order there instead of by descriptor number, so
    /// that a trace does not depend on the numbers the process hands out.
    joined: Vec<u64>,
    joins: u64,
    /// A graceful shutdown in progress: when every channel still open is
    /// closed.
    pub(crate) shutdown: Option<Instant>,
    /// A listener joined the map during the shutdown's grace: the loop
    /// closes it, as the shutdown closed the others, before it waits again.
    late_listener: bool,
    /// The end of a shutdown's grace is closing every channel: no channel
    /// may join the map meanwhile (`insert` refuses). Read only with the
    /// shutdown still under way: a panic that escapes that close leaves it
    /// set, and the map may have emptied (the shutdown then is over); a new
    /// shutdown clears it as it begins.
    pub(super) closing_all: bool,
    /// Work the next wait does first, off the common path: [`ORPHANS`],
    /// [`UNANSWERED`], [`RARE`]. One byte, so that the common wait tests it
    /// once.
    pub(crate) pending: u8,
    /// Where every deadline of this map is measured: the monotonic clock,
    /// or a simulation's virtual one.
    pub(crate) clock: Clock,
    /// Whether a panic in a handler is caught (see
    /// [`LoopOptions::catch_panics`](crate::LoopOptions::catch_panics)).
    pub(crate) catch_panics: bool,
    /// Channels removed while out of their slot for a callback further up
    /// the stack: a shutdown runs the listeners' `handle_close` inside the
    /// callback that started it, and one may remove that callback's
    /// channel. Each closes when its own `Ctx::shutdown` returns. Empty
    /// (and unallocated) but then.
    pub(crate) removed_busy: Vec<Token>,
}

/// [`Registry::pending`]: a channel left its entry behind the map's back (a
/// handler swapped the `&mut` channel it was lent for another one), so the
/// poller may still watch a descriptor the map can no longer name: its
/// registrations are rebuilt from the map before the next wait.
pub(crate) const ORPHANS: u8 = 1;
/// [`Registry::pending`]: a channel's predicates could not answer
/// ([`Registry::unanswered`]): asked again before the next wait.
pub(crate) const UNANSWERED: u8 = 2;
/// [`Registry::pending`]: the wait may need more than the kernel's
/// readiness — a poller that is handed its sources on every wait, a
/// regular file (always ready), input held above a socket, a timer, a
/// shutdown's deadline. Set wherever one of them may begin, cleared by a full wait
/// that finds none holds: the common wait tests this byte instead of each
/// of them (callgrind: 6 instructions per wait), and the loop skips the
/// map's own reports and the shutdown's end without it.
pub(crate) const RARE: u8 = 4;

impl Registry {
    pub(crate) fn new(backend: Backend) -> io::Result<Registry> {
        Registry::with_poller(Poller::new(backend)?)
    }

    pub(crate) fn with_poller(poller: Poller) -> io::Result<Registry> {
        let pending = if poller.keeps_registrations() { 0 } else { RARE };
        Ok(Registry {
            id: next_map_id()?,
            slots: Vec::new(),
            scratch: Vec::new(),
            spare_scratch: Vec::new(),
            len: 0,
            always_ready: 0,
            held_input: Vec::new(),
            unanswered: Vec::new(),
            poller,
            timers: Timers::default(),
            trace: None,
            joined: Vec::new(),
            joins: 0,
            shutdown: None,
            late_listener: false,
            closing_all: false,
            pending,
            clock: Clock::Monotonic,
            catch_panics: false,
            removed_busy: Vec::new(),
        })
    }

    /// A token of this map: `index` at its slot's current generation.
    #[inline]
    pub(crate) fn token(&self, index: usize, generation: u32) -> Token {
        Token::new(index as u32, generation, self.id)
    }

    /// The slot a token names, if this map issued it and the slot's
    /// generation is still the token's. Every lookup by token goes through
    /// here or [`slot_mut`](Self::slot_mut).
    #[inline]
    fn slot(&self, token: Token) -> Option<&Slot<dyn Entry>> {
        if token.map() != self.id {
            return None;
        }
        self.slots.get(token.index() as usize).filter(|s| s.generation == token.generation())
    }

    #[inline]
    fn slot_mut(&mut self, token: Token) -> Option<&mut Slot<dyn Entry>> {
        if token.map() != self.id {
            return None;
        }
        self.slots.get_mut(token.index() as usize).filter(|s| s.generation == token.generation())
    }

    /// Whether the token names a channel of this map, waiting or in its
    /// callback.
    pub(crate) fn contains(&self, token: Token) -> bool {
        self.live(token).is_some()
    }

    fn live(&self, token: Token) -> Option<&Slot<dyn Entry>> {
        self.slot(token).filter(|s| s.is_live())
    }

    /// Takes a channel out for its callback; `None` for a stale token.
    #[inline]
    pub(crate) fn take(&mut self, token: Token) -> Option<(Box<dyn Entry>, Interest)> {
        let slot = self.slot_mut(token)?;
        let entry = slot.take()?;
        Some((entry, slot.interest))
    }

    /// Ends a callback as the entry asked: back in its slot, watched with
    /// its predicates' answer, or out of the map.
    #[inline(always)]
    pub(crate) fn resume(&mut self, token: Token, entry: Box<dyn Entry>, resume: Resume) {
        let Some(interest) = resume.interest() else {
            if resume.is_replaced() {
                return self.replaced(token, entry);
            }
            return self.discard(token, entry);
        };
        self.put_back(token, entry, interest);
    }

    /// Puts a channel back in its slot after its callback, watched with
    /// `interest`.
    #[inline(always)]
    pub(crate) fn put_back(&mut self, token: Token, entry: Box<dyn Entry>, interest: Interest) {
        let slot = &mut self.slots[token.index() as usize];
        let changed = interest != slot.interest;
        slot.hold(entry);
        if changed && !self.rewatch(token, interest) {
            return;
        }
        if !self.timers.is_empty() {
            self.timers.touched(token, self.clock.now());
        }
    }

    /// The interest of a channel that is in its slot changed: records it and
    /// tells the poller. A poller that refuses closes the channel; returns
    /// whether it is still in the map. Cold: a busy channel's interest
    /// changes far less often than it wakes up.
    #[cold]
    pub(crate) fn rewatch(&mut self, token: Token, interest: Interest) -> bool {
        let slot = &mut self.slots[token.index() as usize];
        slot.interest = interest;
        let Some(entry) = slot.entry() else { return true };
        if slot.always_ready() {
            return true;
        }
        let Err(e) = self.poller.reregister(entry.fd(), token.key(), interest) else { return true };
        log_info(
            Level::Error,
            format_args!("cannot change interest of {}: {e}; closing it", entry.describe()),
        );
        let entry = slot.take().expect("checked above");
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
    pub(crate) fn discard(&mut self, token: Token, entry: Box<dyn Entry>) {
        let slot = &mut self.slots[token.index() as usize];
        if !slot.always_ready() && self.poller.keeps_registrations() {
            if entry.fd().as_raw_fd() as u32 == token.index() {
                // Only fails if the kernel already forgot the descriptor.
                let _ = self.poller.deregister(entry.fd());
            } else {
                self.pending |= ORPHANS;
            }
        }
        self.always_ready -= usize::from(slot.always_ready());
        self.len -= usize::from(!slot.has(DAEMON));
        if self.len == 0 {
            // A shutdown is over once the map is empty (the loop ends then):
            // what joins the map later is not part of it.
            self.shutdown = None;
        }
        if !self.timers.is_empty() {
            self.timers.remove(token);
        }
        if !self.removed_busy.is_empty() {
            // Its callback ended before its `Ctx::shutdown` returned (an
            // uncaught panic unwound through it): nothing is left to close.
            self.removed_busy.retain(|&removed| removed != token);
        }
        if let Some(trace) = &self.trace {
            trace.borrow_mut().push((token, Traced::Removed));
        }
        slot.vacate();
        // The handler's `Drop` is handler code too: with panics caught, a
        // panic in it is reported like a callback's (the map is coherent
        // already, the channel out of it), rather than escaping the loop or
        // closing whichever channel's callback removed this one.
        self.drop_entry(entry);
    }

    pub(crate) fn remove(&mut self, token: Token) -> bool {
        match self.live(token) {
            Some(slot) if slot.is_occupied() => {
                let entry = self.slots[token.index() as usize].take().expect("occupied");
                self.discard(token, entry);
                true
            }
            // Busy: its callback is further up the stack, and closes the
            // channel when its `Ctx::shutdown` returns (see `removed_busy`).
            Some(_) => {
                self.removed_busy.push(token);
                true
            }
            None => false,
        }
    }

    pub(crate) fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) -> bool {
        let Some(slot) = self.slot_mut(token).filter(|s| s.is_live() && !s.has(NO_TIMER)) else {
            return false;
        };
        // A listener's `EMFILE` pause borrows its one timer (a connection
        // pays for no second one): the listener keeps a deadline set
        // meanwhile for its handler. Its own callbacks, when it is out of
        // its slot, see to that themselves.
        let listener = slot.has(LISTENER);
        let deadline = match slot.entry_mut() {
            Some(entry) if listener => entry.deadline_set(deadline),
            _ => deadline,
        };
        self.timers.set_deadline(token, deadline);
        self.pending |= RARE;
        if let Some(trace) = &self.trace {
            trace.borrow_mut().push((token, Traced::Deadline(deadline)));
        }
        true
    }

    pub(crate) fn set_idle_timeout(&mut self, token: Token, idle: Option<Duration>) -> bool {
        let live = self.live(token).is_some_and(|s| !s.has(NO_TIMER));
        if live && idle.is_some() && self.slots[token.index() as usize].has(LISTENER) {
            // Nearly always `cx.set_idle_timeout(cx.token(), ..)` written in
            // `handle_accepted` for the new connection: it would close the
            // listener when no connection came for a while, and the server
            // would stop accepting without a word.
            log_info(
                Level::Error,
                format_args!(
                    "set_idle_timeout refused for listener {token:?}: it would close the listener; \
                     for a new connection, pass the token that insert returned"
                ),
            );
            return false;
        }
        if live {
            self.timers.set_idle(token, idle, self.clock.now());
            self.pending |= RARE;
            if let Some(trace) = &self.trace {
                trace.borrow_mut().push((token, Traced::IdleTimeout(idle)));
            }
        }
        live
    }

    pub(crate) fn refresh(&mut self, token: Token) {
        let catch = self.catch_panics;
        let Some(slot) = self.slot_mut(token) else { return };
        let Some(entry) = slot.entry() else { return };
        if entry.fd().as_raw_fd() as u32 != token.index() {
            // Swapped through `stream_mut`: see `Resume::REPLACED`.
            let entry = slot.take().expect("checked above");
            return self.replaced(token, entry);
        }
        // Its predicates, asked from outside its own callbacks (from
        // another channel's, or the program's): with panics caught, a panic
        // in them closes this channel, not the one whose callback asked.
        let interest = if catch {
            match std::panic::catch_unwind(AssertUnwindSafe(|| entry.interest())) {
                Ok(interest) => interest,
                Err(payload) => {
                    let entry = slot.take().expect("checked above");
                    return self.panicked(token, entry, payload);
                }
            }
        } else {
            entry.interest()
        };
        let held = interest.is_readable() && entry.has_buffered_input();
        if interest != slot.interest {
            self.rewatch(token, interest);
        }
        if super::take_unanswered() && !self.unanswered.contains(&token) {
            self.unanswered.push(token);
            self.pending |= UNANSWERED;
        }
        if held && !self.held_input.contains(&token) {
            self.held_input.push(token);
            self.pending |= RARE;
        }
    }

    pub(crate) fn entry(&self, token: Token) -> Option<&dyn Entry> {
        self.slot(token)?.entry()
    }

    pub(crate) fn entry_mut(&mut self, token: Token) -> Option<&mut dyn Entry> {
        self.slot_mut(token)?.entry_mut()
    }

    /// The channels whose slot `pick` picks, in the order the loop serves
    /// them one after another: by slot, or in a simulation's map the order
    /// they joined (see `joined`).
    pub(super) fn in_turn(&self, pick: impl Fn(&Slot<dyn Entry>) -> bool) -> Vec<Token> {
        let mut picked: Vec<Token> = (0..self.slots.len())
            .filter(|&index| pick(&self.slots[index]))
            .map(|index| self.token(index, self.slots[index].generation))
            .collect();
        if self.trace.is_some() {
            picked.sort_by_key(|token| self.joined.get(token.index() as usize).copied().unwrap_or(0));
        }
        picked
    }

    /// How many slots there are: `token_at` answers for `0..slot_count()`.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The token of the channel waiting in slot `index`, if any.
    pub(crate) fn token_at(&self, index: usize) -> Option<Token> {
        let slot = self.slots.get(index).filter(|s| s.is_occupied())?;
        Some(self.token(index, slot.generation))
    }

    pub(crate) fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_occupied())
            .map(|(i, s)| self.token(i, s.generation))
    }

    pub(crate) fn switch_backend(&mut self, backend: Backend) -> io::Result<()> {
        if self.poller.backend() == backend {
            return Ok(());
        }
        let mut poller = self.poller.successor(backend)?;
        let mut always = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(entry) = slot.entry() else { continue };
            let key = self.token(i, slot.generation).key();
            always.push(poller.register(entry.fd(), key, slot.interest)? == Watched::AlwaysReady);
        }
        let mut flags = always.into_iter();
        let mut count = 0;
        for slot in self.slots.iter_mut().filter(|s| s.is_occupied()) {
            // Take this slot's flag first: a short-circuit past it would
            // hand it to the next slot.
            let reported = flags.next().unwrap_or(false);
            let always_ready = slot.always_ready() || reported;
            slot.set(ALWAYS_READY, always_ready);
            count += usize::from(always_ready);
        }
        self.always_ready = count;
        self.poller = poller;
        self.pending |= RARE;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::address::Address;
    use crate::channel::{Channel, Connected, FileFd, Listening};
    use crate::handler::{AcceptHandler, FileHandler, StreamHandler};
    use crate::map::{Ctx, Map};

    /// Reads and drops what comes, from a stream or a file (a file's
    /// predicates the defaults: it wants to read).
    struct Reads;

    impl FileHandler for Reads {
        fn handle_read(&mut self, ch: &mut Channel<FileFd>, _: &mut Ctx<'_>) -> io::Result<()> {
            ch.recv(&mut [0; 64]).map(drop)
        }
    }

    impl StreamHandler for Reads {
        fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
            ch.recv(&mut [0; 64]).map(drop)
        }
    }

    /// A poller that refuses a channel's new interest closes the channel:
    /// it leaves the map (its token stale, the count down, its descriptor
    /// closed) rather than stay with an interest the poller does not know.
    #[test]
    fn a_refused_change_of_interest_closes_the_channel() {
        let mut map = Map::with_backend(Backend::Epoll).unwrap();
        let (ours, mut peer) = Channel::pair().unwrap();
        let token = map.insert(ours, Reads).unwrap();
        let registry = &mut map.registry;
        // The registration forgotten behind the map's back: epoll refuses
        // to change it (`ENOENT`).
        let fd = registry.slots[token.index() as usize].entry().unwrap().fd();
        registry.poller.deregister(fd).unwrap();
        assert!(!registry.rewatch(token, Interest::WRITE), "the channel stayed in the map");
        assert!(!map.contains(token));
        assert_eq!(map.len(), 0);
        assert_eq!(peer.recv(&mut [0; 1]).unwrap(), 0, "its descriptor was closed");
    }

    /// Starts a shutdown when it reads.
    struct ShutsDown;

    impl StreamHandler for ShutsDown {
        fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
            ch.recv(&mut [0; 64])?;
            cx.shutdown(Duration::from_secs(60));
            Ok(())
        }
    }

    /// Its `handle_close` removes the stream whose callback started the
    /// shutdown (out of its slot then), and panics.
    struct RemovesThenPanics(Rc<Cell<Option<Token>>>);

    impl AcceptHandler for RemovesThenPanics {
        fn handle_accepted(&mut self, _: Channel<Connected>, _: Address, _: &mut Ctx<'_>) -> io::Result<()> {
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Channel<Listening>, cx: &mut Ctx<'_>) {
            cx.remove(self.0.get().expect("the stream's token"));
            panic!("a listener's handle_close panics");
        }
    }

    /// A channel removed while busy, whose callback then ends in a panic
    /// before its `Ctx::shutdown` returns, leaves nothing behind in
    /// `removed_busy`: its discard forgets it.
    #[test]
    fn a_busy_channel_removed_then_discarded_by_a_panic_is_forgotten() {
        let mut map = Map::new().unwrap();
        let stream = Rc::new(Cell::new(None));
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
        map.insert(listener, RemovesThenPanics(stream.clone())).unwrap();
        let (ours, mut peer) = Channel::pair().unwrap();
        stream.set(Some(map.insert(ours, ShutsDown).unwrap()));
        peer.send(b"go").unwrap();
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            for _ in 0..100 {
                map.poll(Some(Duration::from_millis(50))).unwrap();
            }
        }));
        assert!(ran.is_err(), "the panic reached the caller");
        assert!(!map.contains(stream.get().unwrap()), "the stream left the map");
        assert!(map.registry.removed_busy.is_empty(), "{:?}", map.registry.removed_busy);
    }

    /// The count of always-ready channels follows a regular file out of the
    /// map, whatever it wanted: back at zero, the wait takes its fast path
    /// again instead of scanning every slot for files to report.
    #[test]
    fn the_always_ready_count_falls_back_to_zero_when_a_regular_file_leaves() {
        let mut map = Map::with_backend(Backend::Epoll).unwrap();
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let token = map.insert(Channel::file(file.into()).unwrap(), Reads).unwrap();
        assert_eq!(map.registry.always_ready, 1, "a regular file is always ready");
        assert!(map.remove(token));
        assert_eq!(map.registry.always_ready, 0, "the file left, its count stayed");
    }

    /// An entry whose interest the test sets and which says input is held
    /// above its socket (as a TLS session's plaintext): records its wakes.
    struct HoldsInput {
        socket: std::os::unix::net::UnixStream,
        interest: Rc<Cell<Interest>>,
        wakes: Rc<Cell<u32>>,
    }

    impl Entry for HoldsInput {
        fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
            std::os::fd::AsFd::as_fd(&self.socket)
        }
        fn interest(&self) -> Interest {
            self.interest.get()
        }
        fn wake(&mut self, _: crate::Readiness, _: Interest, _: &mut Ctx<'_>) -> Resume {
            self.wakes.set(self.wakes.get() + 1);
            Resume::watch(self.interest.get())
        }
        fn expire(&mut self, _: &mut Ctx<'_>) -> Resume {
            Resume::watch(self.interest.get())
        }
        fn shut(&mut self, _: &mut Ctx<'_>) {}
        fn handler(&self) -> &dyn std::any::Any {
            &()
        }
        fn handler_mut(&mut self) -> &mut dyn std::any::Any {
            &mut self.wakes
        }
        fn describe(&self) -> String {
            "HoldsInput".into()
        }
        fn joined(&self) -> crate::trace::Joined {
            crate::trace::Joined::Connected
        }
        fn stream_parts(&mut self) -> Option<(&mut dyn std::any::Any, &mut dyn std::any::Any)> {
            None
        }
        fn has_buffered_input(&self) -> bool {
            true
        }
        fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant> {
            deadline
        }
        fn traced(self: Box<Self>, _: crate::trace::Recorder) -> Box<dyn Entry> {
            unreachable!("the map does not trace")
        }
    }

    /// A map with one [`HoldsInput`] entry wanting `interest`; its token,
    /// its interest and its count of wakes.
    fn holding(interest: Interest) -> (Map, Token, Rc<Cell<Interest>>, Rc<Cell<u32>>, impl Sized) {
        let mut map = Map::new().unwrap();
        let (socket, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (interest, wakes) = (Rc::new(Cell::new(interest)), Rc::new(Cell::new(0)));
        let entry = HoldsInput { socket, interest: interest.clone(), wakes: wakes.clone() };
        let token = map.registry.insert_entry(Box::new(entry), false).unwrap();
        (map, token, interest, wakes, peer)
    }

    /// Input held above the socket is noted, when a refresh finds it, only
    /// for a channel that reads: one that does not want to read must not end
    /// the next wait at once for input it will not be given.
    #[test]
    fn held_input_is_noted_only_for_a_channel_that_reads() {
        let (mut map, token, _, _, _peer) = holding(Interest::NONE);
        map.registry.refresh(token);
        assert!(map.registry.held_input.is_empty(), "noted for a channel that does not read");
        let (mut map, token, _, _, _peer) = holding(Interest::READ);
        map.registry.refresh(token);
        assert_eq!(map.registry.held_input, [token]);
    }

    /// Held input noted while the channel read is reported only if it still
    /// reads when the wait comes: a channel paused in between (through
    /// another guard, say) gets no wake-up for it.
    #[test]
    fn held_input_is_reported_only_to_a_channel_that_still_reads() {
        let (mut map, token, interest, wakes, _peer) = holding(Interest::READ);
        map.registry.refresh(token);
        interest.set(Interest::NONE);
        map.registry.refresh(token);
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(wakes.get(), 0, "a paused channel was woken for its held input");
        assert!(map.registry.held_input.is_empty(), "the note outlived the wait");
    }
}
