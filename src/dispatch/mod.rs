//! Layer 7: the concrete entries, one file per kind of channel. An entry
//! owns a channel and its handler, runs the [`machine`](crate::machine) for
//! each wake-up, and calls the handler's callbacks for the steps it yields.
//!
//! | file | entry | for |
//! |---|---|---|
//! | `stream.rs` | `StreamEntry` | connecting and connected streams, raw, `Buffered` or `AsyncChat` |
//! | `listener.rs` | `ListenerEntry` | listening sockets, with the back-off after descriptor exhaustion |
//! | `fd.rs` | `FdEntry` | files and datagram sockets: one entry, generic over the kind |
//! | `own.rs` | `OwnEntry` | rolecore's own descriptors: mailboxes and signal watchers |
//!
//! Each implements `Dispatch` (`entry.rs`), whose callbacks take a
//! `Tracer`; the map's `Entry` is implemented once, in `entry.rs`, for every
//! `Dispatch` — with `NoTrace`, which compiles to nothing — and for
//! `Recorded` ones, which only a tracing map (the simulation's) makes.

mod entry;
mod fd;
mod listener;
mod own;
mod stream;

pub(crate) use own::{Own, OwnEntry};
