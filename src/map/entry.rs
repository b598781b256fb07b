//! Layer 4: what a map stores — an [`Entry`], a channel and its handler
//! behind one trait object — and what may join a map: [`Register`], sealed,
//! whose methods only the map can call.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use super::ctx::Ctx;
use crate::readiness::{Interest, Readiness};
use crate::seal::EntryProof;
use crate::trace::{Joined, Recorder};

/// A channel and its handler, type-erased for the map: one virtual call per
/// event. Public only so the sealed [`Register`] trait can name it; not
/// reachable by users. The entries themselves are in `dispatch/`, above the
/// handler traits they call.
pub trait Entry: 'static {
    /// The descriptor, for the poller.
    fn fd(&self) -> BorrowedFd<'_>;
    /// The interest the handler's predicates ask for now.
    fn interest(&self) -> Interest;
    /// Runs one wake-up and says what the loop does with the channel next.
    fn wake(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) -> Resume;
    /// The channel's deadline passed: runs the timeout callback, then as
    /// [`wake`](Self::wake).
    fn expire(&mut self, cx: &mut Ctx<'_>) -> Resume;
    /// The loop is shutting down and closes the channel: its handler's
    /// `handle_close` (or, still connecting, `handle_connect_failed`).
    fn shut(&mut self, cx: &mut Ctx<'_>);
    /// The handler, for downcasting.
    fn handler(&self) -> &dyn Any;
    /// The handler, for downcasting.
    fn handler_mut(&mut self) -> &mut dyn Any;
    /// A short description for reports.
    fn describe(&self) -> String;
    /// What the channel was when it joined, for traces.
    fn joined(&self) -> Joined;
    /// A connected stream's transport and handler, for another channel's
    /// callback to reach them.
    fn stream_parts(&mut self) -> Option<(&mut dyn Any, &mut dyn Any)>;
    /// Whether input waits above the socket (a TLS session's plaintext),
    /// which no readiness will report.
    fn has_buffered_input(&self) -> bool;
    /// A deadline set on this channel while it is in its slot (from another
    /// channel's callback, or from outside the loop): what its timer is to
    /// be armed with. A listener paused after `EMFILE` keeps it for the
    /// handler and arms the sooner of it and the pause's end.
    fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant>;
    /// The same entry, recording its callbacks with `recorder` (a map that
    /// traces, for the simulation, asks this once per insert).
    fn traced(self: Box<Self>, recorder: Recorder) -> Box<dyn Entry>;
}

/// The methods of [`Register`]: in a supertrait user code cannot name (this
/// module is private), each with a proof argument only rolecore can make.
/// A bound `C: Register<H>` would otherwise let generic user code call them
/// (supertrait methods are in scope through the bound) and drive an entry
/// with readiness it made up.
pub trait RegisterSealed<H> {
    /// The interest the handler's predicates ask for now.
    fn interest(&self, handler: &H, seal: impl EntryProof) -> Interest;
    /// The descriptor, for the poller.
    fn fd(&self, seal: impl EntryProof) -> BorrowedFd<'_>;
    /// A regular file: never given to the kernel, always reported ready.
    fn always_ready(&self, seal: impl EntryProof) -> bool {
        let _ = seal;
        false
    }
    /// Whether an idle timeout is refused for it: a listening socket.
    fn takes_no_idle_timeout(&self, seal: impl EntryProof) -> bool {
        let _ = seal;
        false
    }
    /// The entry the map stores.
    fn into_entry(self, handler: H, seal: impl EntryProof) -> Box<dyn Entry>;
}

/// What the loop does with a channel after a wake-up: watch it with an
/// interest (its predicates' answer now), take it out of the map (it
/// closed), or close it as [`REPLACED`](Self::REPLACED); and whether the
/// callback asked to stop the loop ([`STOP`](Self::STOP)). One byte, so
/// that a wake-up returns it in a register: an interest's bits, and three
/// bits no interest has. The loop's common case — watch, and go on — is
/// the one with none of those three: one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume(u8);

impl Resume {
    /// It closed: take it out of the map.
    pub const CLOSE: Resume = Resume(0x80);
    /// The handler swapped the channel it was lent for another one: the
    /// slot no longer matches the descriptor the poller watches.
    pub const REPLACED: Resume = Resume(0x40);
    /// The callback asked to stop the loop (added to any of the others).
    pub const STOP: Resume = Resume(0x20);

    /// Watch it with `interest`.
    #[inline]
    pub fn watch(interest: Interest) -> Resume {
        Resume(interest.bits())
    }

    /// This answer with `stop` added: [`STOP`](Self::STOP)'s bit or 0 (as
    /// a [`Ctx`] keeps it).
    #[inline]
    pub(crate) fn with(self, stop: u8) -> Resume {
        Resume(self.0 | stop)
    }

    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    /// The interest to watch it with, unless it leaves the map.
    #[inline]
    pub fn interest(self) -> Option<Interest> {
        (self.0 & (Self::CLOSE.0 | Self::REPLACED.0) == 0).then(|| Interest::from_bits(self.0))
    }

    /// The interest to watch it with, when that is all: it stays, and the
    /// loop goes on.
    #[inline]
    pub(crate) fn only_interest(self) -> Option<Interest> {
        // Nothing but an interest's bits: the test also tells the compiler
        // that `from_bits` drops none.
        let all = Interest::READ.bits() | Interest::WRITE.bits() | Interest::PRIORITY.bits();
        (self.0 <= all).then(|| Interest::from_bits(self.0))
    }

    /// It leaves the map as [`REPLACED`](Self::REPLACED) (and did not close).
    #[inline]
    pub(crate) fn is_replaced(self) -> bool {
        self.0 & (Self::CLOSE.0 | Self::REPLACED.0) == Self::REPLACED.0
    }
}

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
pub trait Register<H>: Sized + RegisterSealed<H> {}

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
