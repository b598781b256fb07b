//! rolecore: Python's `asyncore` rebuilt as a typed state-machine runtime.
//!
//! One thread, one readiness loop, many channels. Each channel's *role* —
//! [`Connecting`], [`Connected`], [`Listening`], [`FileFd`] — is a type
//! parameter, so an operation that is wrong for a role does not compile:
//! a listener has no `send`, a connecting socket no `recv`, and nothing can be
//! done with a channel after it was closed.
//!
//! # Layers
//!
//! From the bottom up; a module imports modules of its own layer or lower
//! only (`tests/architecture.rs` checks it against the same table in
//! `docs/architecture.md`).
//!
//! | layer | modules | what they do |
//! |---|---|---|
//! | 1 | `token`, `readiness`, `error`, `address`, `report`, `trace`, `timer`, `seal`, `clock`, `memory` | leaves: [`Token`], [`Interest`] and [`Readiness`], errors, [`Address`], [`report`], deadlines, the map's clock, the simulation's in-memory streams |
//! | 2 | [`poller`], [`machine`] | readiness from `select`, `poll` or `epoll` (picked at run time by a [`Backend`]) with every platform rule; the pure state machine: readiness in, asyncore's events out, no syscalls |
//! | 3 | [`channel`] | [`Channel<R>`]: an owned descriptor in a role; role changes consume the channel |
//! | 4 | `map` | [`Map`], [`Ctx`]: channels of every role with handlers of every type, behind generation-checked [`Token`]s |
//! | 5 | `transport`, `buffered`, [`chat`]'s transport, `tls::session` | what a stream handler is handed: [`Transport`], [`Buffered`] (`dispatcher_with_send`), [`AsyncChat`] (`async_chat`: records split at terminators, producers); the socket or TLS session under them |
//! | 6 | `handler`, [`ChatHandler`], `tls` | the callbacks you write, each only where its event can happen: [`StreamHandler`], [`AcceptHandler`], [`FileHandler`], [`DatagramHandler`] |
//! | 7 | `dispatch` | the entries that run the machine for each wake-up and call the handlers |
//! | 8 | [`loop_`], [`LoopOptions`], mailboxes, `signal`, [`Kept`], [`sim`] | asyncore's `loop`: wait, dispatch, until the map is empty; reaching the loop from other threads; a deterministic simulated world that runs your handlers and checks the loop's invariants |
//!
//! A typical server uses layers 3 to 8: it creates channels, implements
//! handlers, inserts both into a [`Map`] and runs it.
//!
//! # Example: an echo server
//!
//! ```no_run
//! use std::io;
//! use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler};
//!
//! struct Echo;
//! impl StreamHandler<Buffered<Connected>> for Echo {
//!     fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
//!         let buf = cx.buffer();      // the loop's read buffer, reused
//!         let n = ch.recv(buf)?;      // 0: the peer closed, the loop calls handle_close
//!         ch.send(&buf[..n])          // queued if the socket cannot take it all
//!     }
//! }
//!
//! struct Server;
//! impl AcceptHandler for Server {
//!     fn handle_accepted(&mut self, conn: Channel<Connected>, _peer: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
//!         cx.insert(Buffered::new(conn), Echo)?; // a new channel joins the same loop
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> io::Result<()> {
//!     let listener = Channel::tcp_v4()?.set_reuse_addr()?.bind("127.0.0.1:8080")?.listen(5)?;
//!     let mut map = Map::new()?;
//!     map.insert(listener, Server)?;
//!     map.run(LoopOptions::default()) // until the map is empty
//! }
//! ```
//!
//! # What differs from asyncore, on purpose
//!
//! Misuse is a compile error; a channel that closed receives nothing more and
//! `handle_close` runs at most once; `connect` completes before
//! `handle_connect` runs; would-block is never an error; a hang-up is drained
//! before it closes; a refused connect is a typed callback on every backend;
//! writes never raise `SIGPIPE`; `EINTR` never escapes; the default interest
//! never spins. `docs/asyncore.md` lists every difference.
#![cfg_attr(not(feature = "select"), forbid(unsafe_code))]
#![cfg_attr(feature = "select", deny(unsafe_code))]
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![doc(test(attr(deny(warnings))))]

mod address;
mod assertions;
mod buffered;
pub mod channel;
pub mod chat;
mod clock;
mod dispatch;
mod error;
mod event_loop;
mod handler;
mod kept;
pub mod machine;
mod mailbox;
mod map;
mod memory;
pub mod poller;
mod readiness;
pub mod report;
mod seal;
#[cfg(feature = "signals")]
pub mod signal;
pub mod sim;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
// Without the feature, only the byte stream under the transports: an empty
// `Slot`, whose methods are the channel's own calls.
#[cfg(not(feature = "tls"))]
mod tls {
    pub(crate) mod session;
}
mod token;
mod trace;
mod transport;

pub use address::{Address, ParseAddressError, ToAddress, UnixAddress};
pub use buffered::{
    BudgetFull, BufferFull, Buffered, DEFAULT_HIGH_WATERMARK, DEFAULT_LOW_WATERMARK, DEFAULT_OUTPUT_LIMIT,
    OutputBudget, SEND_CHUNK,
};
pub use channel::{
    Bound, Channel, Connected, ConnectedDatagram, Connecting, Datagram, DatagramRole, Family, FileFd, Fresh,
    Listening, Role, SockType, UnboundDatagram,
};
pub use chat::{AsyncChat, ChatHandler, Producer, SimpleProducer, Terminator};
pub use error::{RoleError, is_disconnect};
pub use event_loop::{
    DEFAULT_TIMEOUT, LoopOptions, RUN_UNTIL_TICK, Refresh, close_all, loop_, with_socket_map,
};
pub use handler::{AcceptHandler, DatagramHandler, FileHandler, StreamHandler};
pub use kept::Kept;
pub use mailbox::{MailboxHandler, SendError, Sender, TrySendError, Waker};
pub use map::{Ctx, HandlerMut, InsertError, Map, Register, StreamMut};
pub use poller::{Backend, ParseBackendError};
pub use readiness::{Interest, Readiness};
pub use token::Token;
pub use transport::{Pending, Transport};
