//! Layer 1: what the loop delivered, in order, recorded only when a
//! simulation asks for it, and checked against the loop's invariants by
//! [`sim`](crate::sim).
//!
//! The entries call their handlers through a [`Tracer`] type parameter: the
//! map's own entries get [`NoTrace`], whose methods are empty and inline to
//! nothing, and only a map that traces (the simulation's) wraps each entry
//! it inserts in one that records, with a [`Recorder`]. Real I/O pays nothing
//! for the trace: no branch, no call.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::token::Token;

/// A callback the loop made into a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callback {
    /// `handle_connect`.
    Connect,
    /// `handle_connect_failed`.
    ConnectFailed,
    /// `handle_accept`.
    Accept,
    /// `handle_read`.
    Read,
    /// `handle_write`.
    Write,
    /// `handle_expt`.
    Expt,
    /// `handle_timeout`.
    Timeout,
    /// `handle_error`.
    Error,
    /// `handle_close`.
    Close,
}

/// What a channel was when it joined the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Joined {
    /// A stream whose connect was in progress.
    Connecting,
    /// A connected stream.
    Connected,
    /// A listening socket.
    Listening,
    /// A file channel.
    File,
    /// A datagram socket.
    Datagram,
}

/// One traced event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Traced {
    /// The channel joined the map.
    Inserted(Joined),
    /// The loop called into the handler; `progress` says whether the
    /// callback moved a byte (or found the end of the stream).
    Called {
        /// Which callback.
        callback: Callback,
        /// Whether it moved data.
        progress: bool,
    },
    /// The channel left the map (closed).
    Removed,
    /// The channel was given a deadline (`None`: its timer was cleared).
    Deadline(Option<Instant>),
    /// The channel was given an idle timeout (`None`: its timer was
    /// cleared).
    IdleTimeout(Option<Duration>),
    /// The channel's timer expired: the loop serves it now
    /// (`handle_timeout`, a listener's back-off ending, a lingering close
    /// giving up).
    Expired,
}

/// The recorded events, each with the token of its channel.
pub(crate) type Trace = Vec<(Token, Traced)>;

/// A trace shared by a map and the entries that record into it.
pub(crate) type SharedTrace = Rc<RefCell<Trace>>;

/// What an entry tells about the callbacks it makes.
pub(crate) trait Tracer {
    /// A callback into the handler starts; returns where to record its
    /// progress.
    fn call(&self, callback: Callback) -> Option<usize>;
    /// The callback recorded at `at` moved data (or not).
    fn progress(&self, at: Option<usize>, moved: bool);
    /// The channel's timer expired and the loop is about to serve it.
    fn expired(&self);
}

/// Records nothing, at no cost: every entry outside a simulation.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn call(&self, _: Callback) -> Option<usize> {
        None
    }

    #[inline(always)]
    fn progress(&self, _: Option<usize>, _: bool) {}

    #[inline(always)]
    fn expired(&self) {}
}

/// Records one channel's callbacks into its map's trace. Public only so the
/// sealed entry trait can name it; not reachable by users.
#[derive(Debug)]
pub struct Recorder {
    trace: SharedTrace,
    token: Token,
}

impl Recorder {
    pub(crate) fn new(trace: SharedTrace, token: Token) -> Recorder {
        Recorder { trace, token }
    }
}

impl Tracer for Recorder {
    fn call(&self, callback: Callback) -> Option<usize> {
        let mut trace = self.trace.borrow_mut();
        // Its index is the length before (`len() - 1` after the push was
        // one more traced comparison, its overflow check, in a fuzzer's build).
        let at = trace.len();
        trace.push((self.token, Traced::Called { callback, progress: false }));
        Some(at)
    }

    fn progress(&self, at: Option<usize>, moved: bool) {
        // Recorded as not moving data: only a move changes it.
        if moved
            && let Some(at) = at
            && let Some((_, Traced::Called { progress, .. })) = self.trace.borrow_mut().get_mut(at)
        {
            *progress = true;
        }
    }

    fn expired(&self) {
        self.trace.borrow_mut().push((self.token, Traced::Expired));
    }
}
