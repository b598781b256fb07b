//! Layer 4: one descriptor number's place in the map — vacant, occupied or
//! busy — with its generation, the interest the poller knows and its flags.

use crate::readiness::Interest;

/// One descriptor number's place in the map: 24 bytes, since the map holds
/// one per descriptor number up to the highest in use, idle or not.
///
/// A slot is vacant (no channel), occupied (a channel waiting for
/// readiness) or busy (its channel taken out while its own callback runs).
/// The three states are `entry` and the `VACANT` flag together, rather than
/// an enum with a `Busy` variant: such an enum cannot hide its tag in the
/// boxed pointer and would make every slot 8 bytes larger. The flag marks
/// the vacant state, not the busy one: a slot turns busy and back on every
/// event, and vacant only when a channel joins or leaves.
///
/// Generic over what it holds (the map's `dyn Entry`) so that this module
/// stays outside the map core's import cycle.
pub(super) struct Slot<E: ?Sized> {
    entry: Option<Box<E>>,
    pub(super) generation: u32,
    /// The interest the poller knows for this channel.
    pub(super) interest: Interest,
    flags: u8,
}

impl<E: ?Sized> Default for Slot<E> {
    fn default() -> Self {
        Slot { entry: None, generation: 0, interest: Interest::NONE, flags: VACANT }
    }
}

/// No channel is here: neither waiting (`entry`) nor out for its own
/// callback (busy).
const VACANT: u8 = 1;
/// A regular file: never given to the kernel, always reported ready.
pub(super) const ALWAYS_READY: u8 = 2;
/// rolecore's own (the waker): not counted, so it never keeps a loop alive.
pub(super) const DAEMON: u8 = 4;
/// A listening socket: an idle timeout is refused for it.
pub(super) const LISTENER: u8 = 8;
/// rolecore's own (a mailbox, the waker, a signal watcher): it has no
/// `handle_timeout`, so a deadline or idle timeout for it is refused (it
/// would wake the loop for nothing, and an idle timeout of zero would spin
/// it).
pub(super) const NO_TIMER: u8 = 16;

impl<E: ?Sized> Slot<E> {
    /// The channel waiting here, if any (not while its callback runs).
    #[inline]
    pub(super) fn entry(&self) -> Option<&E> {
        self.entry.as_deref()
    }

    #[inline]
    pub(super) fn entry_mut(&mut self) -> Option<&mut E> {
        self.entry.as_deref_mut()
    }

    #[inline]
    pub(super) fn is_occupied(&self) -> bool {
        self.entry.is_some()
    }

    /// A channel is here, waiting or in its callback.
    #[inline]
    pub(super) fn is_live(&self) -> bool {
        !self.has(VACANT)
    }

    #[inline]
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    #[inline]
    pub(super) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// rolecore's own, not a channel: the waker, a signal watcher.
    #[inline]
    pub(super) fn is_daemon(&self) -> bool {
        self.has(DAEMON)
    }

    #[inline]
    pub(super) fn always_ready(&self) -> bool {
        self.has(ALWAYS_READY)
    }

    /// Takes the channel out for its callback (or to close it): the slot is
    /// busy until it is put back or discarded.
    #[inline]
    pub(super) fn take(&mut self) -> Option<Box<E>> {
        self.entry.take()
    }

    /// A new channel moves in, with the flags it keeps while here.
    pub(super) fn fill(&mut self, entry: Box<E>, interest: Interest, always_ready: bool, daemon: bool) {
        self.interest = interest;
        self.flags = 0;
        self.set(ALWAYS_READY, always_ready);
        self.set(DAEMON, daemon);
        self.hold(entry);
    }

    /// The channel left for good: the slot is vacant, under a new generation
    /// so that the tokens it issued are stale.
    pub(super) fn vacate(&mut self) {
        *self = Slot { generation: self.generation.wrapping_add(1), ..Slot::default() };
    }

    /// Puts a channel (back) in: the slot is occupied.
    #[inline]
    pub(super) fn hold(&mut self, entry: Box<E>) {
        // Only an empty slot is filled: a vacant one (`insert` refuses a
        // live one), or a busy one whose entry is out for its callback. So
        // the old value is always `None`, and forgetting it spares the loop
        // the test and drop of an entry that cannot be there: 8 instructions
        // per echoed message (callgrind; a cold branch instead saved 2). Tests
        // run with debug assertions, which check it.
        let previous = self.entry.replace(entry);
        debug_assert!(previous.is_none(), "a slot was filled twice");
        std::mem::forget(previous);
    }
}
