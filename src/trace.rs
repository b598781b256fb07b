//! What the loop delivered, in order: recorded only when a simulation asks
//! for it (one branch per callback otherwise), and checked against the
//! loop's invariants by [`sim`](crate::sim).

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
}

/// The recorded events, each with the token of its channel.
pub(crate) type Trace = Vec<(Token, Traced)>;
