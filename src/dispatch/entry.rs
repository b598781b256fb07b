//! Layer 7: what every entry shares — the [`Dispatch`] trait, the map's
//! [`Entry`] written once over it (plain, or recorded for the simulation),
//! and [`run`], which makes one callback and condenses what it did.

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

use crate::channel::{Channel, Observed, Role};
use crate::error::is_disconnect;
use crate::machine::Outcome;
use crate::map::{Ctx, Entry, Resume};
use crate::readiness::{Interest, Readiness};
use crate::trace::{Callback, Joined, NoTrace, Recorder, Tracer};

/// A channel and its handler, as the loop drives them: the map's [`Entry`]
/// with the tracer made a type parameter.
pub(crate) trait Dispatch: 'static {
    /// The descriptor, for the poller.
    fn fd(&self) -> BorrowedFd<'_>;
    /// The interest the handler's predicates ask for now.
    fn interest(&self) -> Interest;
    /// Runs one wake-up; closes `cx` when the channel is done.
    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, tr: &impl Tracer);
    /// The channel's deadline passed.
    fn timeout(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer);
    /// The loop is shutting down and closes the channel.
    fn shut(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer);
    /// The handler, for downcasting.
    fn handler(&self) -> &dyn Any;
    /// The handler, for downcasting.
    fn handler_mut(&mut self) -> &mut dyn Any;
    /// A short description for reports.
    fn describe(&self) -> String;
    /// What the channel was when it joined, for traces.
    fn joined(&self) -> Joined;
    /// A connected stream's transport and handler.
    fn stream_parts(&mut self) -> Option<(&mut dyn Any, &mut dyn Any)> {
        None
    }
    /// Whether input waits above the socket (a TLS session's plaintext),
    /// which no readiness will report.
    fn has_buffered_input(&self) -> bool {
        false
    }
    /// See [`Entry::deadline_set`].
    fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        deadline
    }
}

/// The [`Dispatch`] accessors of an entry that holds its `channel` and its
/// `handler` in fields of those names (files, datagram sockets, listeners).
macro_rules! channel_and_handler {
    () => {
        fn handler(&self) -> &dyn std::any::Any {
            &self.handler
        }

        fn handler_mut(&mut self) -> &mut dyn std::any::Any {
            &mut self.handler
        }

        fn describe(&self) -> String {
            format!("{:?}", self.channel)
        }
    };
}
pub(super) use channel_and_handler;

/// What the loop does with a channel after a callback: the descriptor check
/// and the predicates run here, where the entry's type is known, instead of
/// as two more virtual calls from the map. Whether the callback asked to
/// stop the loop is added as it is.
#[inline]
fn resume<D: Dispatch>(entry: &D, cx: &Ctx<'_>) -> Resume {
    let answer = if cx.is_closing() {
        Resume::CLOSE
    } else if Dispatch::fd(entry).as_raw_fd() as u32 != cx.token().index() {
        Resume::REPLACED
    } else {
        Resume::watch(Dispatch::interest(entry))
    };
    answer.with(cx.stop_bit())
}

/// An entry that records its callbacks (see [`Entry::traced`]).
pub(crate) struct Recorded<D> {
    inner: D,
    recorder: Recorder,
}

/// An entry and the tracer its callbacks report to: a plain entry with
/// [`NoTrace`], or a [`Recorded`] one with its [`Recorder`]. The map's
/// [`Entry`] is written once, over this.
pub(crate) trait Tracing: 'static {
    type Inner: Dispatch;
    type Tracer: Tracer;
    fn inner(&self) -> &Self::Inner;
    fn parts(&mut self) -> (&mut Self::Inner, &Self::Tracer);
    fn record(self: Box<Self>, recorder: Recorder) -> Box<dyn Entry>;
}

impl<D: Dispatch> Tracing for D {
    type Inner = D;
    type Tracer = NoTrace;
    #[inline(always)]
    fn inner(&self) -> &D {
        self
    }
    #[inline(always)]
    fn parts(&mut self) -> (&mut D, &NoTrace) {
        (self, &NoTrace)
    }
    fn record(self: Box<Self>, recorder: Recorder) -> Box<dyn Entry> {
        Box::new(Recorded { inner: *self, recorder })
    }
}

impl<D: Dispatch> Tracing for Recorded<D> {
    type Inner = D;
    type Tracer = Recorder;
    fn inner(&self) -> &D {
        &self.inner
    }
    fn parts(&mut self) -> (&mut D, &Recorder) {
        (&mut self.inner, &self.recorder)
    }
    fn record(self: Box<Self>, recorder: Recorder) -> Box<dyn Entry> {
        Box::new(Recorded { inner: self.inner, recorder })
    }
}

impl<E: Tracing> Entry for E {
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        Dispatch::fd(self.inner())
    }
    #[inline]
    fn interest(&self) -> Interest {
        Dispatch::interest(self.inner())
    }
    fn has_buffered_input(&self) -> bool {
        Dispatch::has_buffered_input(self.inner())
    }
    // Inlined: the common wake-up is one function behind one virtual call.
    #[inline]
    fn wake(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) -> Resume {
        let (inner, tracer) = self.parts();
        inner.dispatch(readiness, interest, cx, tracer);
        resume(inner, cx)
    }
    fn expire(&mut self, cx: &mut Ctx<'_>) -> Resume {
        let (inner, tracer) = self.parts();
        tracer.expired();
        inner.timeout(cx, tracer);
        resume(inner, cx)
    }
    fn shut(&mut self, cx: &mut Ctx<'_>) {
        let (inner, tracer) = self.parts();
        Dispatch::shut(inner, cx, tracer);
    }
    fn handler(&self) -> &dyn Any {
        Dispatch::handler(self.inner())
    }
    fn handler_mut(&mut self) -> &mut dyn Any {
        Dispatch::handler_mut(self.parts().0)
    }
    fn describe(&self) -> String {
        Dispatch::describe(self.inner())
    }
    fn joined(&self) -> Joined {
        Dispatch::joined(self.inner())
    }
    fn stream_parts(&mut self) -> Option<(&mut dyn Any, &mut dyn Any)> {
        Dispatch::stream_parts(self.parts().0)
    }
    fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        Dispatch::deadline_set(self.parts().0, deadline)
    }
    fn traced(self: Box<Self>, recorder: Recorder) -> Box<dyn Entry> {
        self.record(recorder)
    }
}

/// Runs one callback and condenses what happened into an [`Outcome`]:
/// would-block is nothing, a disconnection is the peer leaving, any other
/// error goes to the handler's error callback.
///
/// `channel`, `callback` and `on_error` are function items, not pointers, so
/// each use compiles to direct (mostly inlined) calls.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn run<H, C, R: Role>(
    handler: &mut H,
    ch: &mut C,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
    kind: Callback,
    channel: impl Fn(&mut C) -> &mut Channel<R>,
    callback: impl FnOnce(&mut H, &mut C, &mut Ctx<'_>) -> io::Result<()>,
    on_error: impl FnOnce(&mut H, &mut C, io::Error, &mut Ctx<'_>),
) -> Outcome {
    channel(ch).reset_observed();
    let traced = tr.call(kind);
    let result = callback(handler, ch, cx);
    let observed = channel(ch).observed();
    if traced.is_some() {
        let moved = observed.has(Observed::READ_PROGRESS)
            || observed.has(Observed::WRITE_PROGRESS)
            || observed.has(Observed::PEER_GONE);
        tr.progress(traced, moved);
    }
    let mut outcome = Outcome {
        peer_gone: observed.has(Observed::PEER_GONE),
        read_progress: observed.has(Observed::READ_PROGRESS),
        ..Outcome::default()
    };
    match result {
        Ok(()) => {}
        // A spurious wake-up: the channel's own I/O would block. Another
        // descriptor's would-block, returned with `?`, is the handler's
        // error: taken for this channel's, what that I/O did not do would
        // be lost without a word.
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                && (observed.has(Observed::WOULD_BLOCK) || !R::OWNS_WOULD_BLOCK) => {}
        // The handler closed its channel, then tried to use it: the I/O was
        // refused and the channel closes as it asked.
        Err(e) if cx.is_closing() && crate::channel::is_closed_in_callback(&e) => {}
        // A datagram socket has no peer to lose: every error is the handler's.
        Err(e) if is_disconnect(&e) && R::HAS_PEER_STREAM => outcome.peer_gone = true,
        Err(e) => {
            tr.call(Callback::Error);
            let e = if e.kind() == io::ErrorKind::WouldBlock { not_own_would_block(e) } else { e };
            on_error(handler, ch, e, cx);
            outcome.failed = true;
        }
    }
    outcome.closed = cx.is_closing();
    outcome
}

/// A `WouldBlock` a callback returned that its channel's own I/O did not
/// report, as `handle_error` gets it: the same kind, and a message that
/// says why it is an error here.
#[cold]
fn not_own_would_block(e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "a callback returned a would-block error that this channel's own I/O did not report ({e}): \
             another descriptor's, returned with `?`? It is not taken for a spurious wake-up, since \
             what that I/O did not do would be lost; handle would-block where it happens"
        ),
    )
}

/// The channel is done (its peer left, or its descriptor hung up):
/// `handle_close`, then out of the map. Returns the empty outcome a step
/// that ends the wake-up records.
#[inline(always)]
pub(super) fn closing(
    tr: &impl Tracer,
    cx: &mut Ctx<'_>,
    handle_close: impl FnOnce(&mut Ctx<'_>),
) -> Outcome {
    tr.call(Callback::Close);
    handle_close(cx);
    cx.close();
    Outcome::default()
}

/// The channel itself, for `run`'s `channel` argument when the callbacks
/// are handed the channel directly.
pub(super) fn same<C>(c: &mut C) -> &mut C {
    c
}
