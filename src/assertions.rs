//! Compile-time promises about rolecore's types, checked with
//! `static_assertions`: which types cross threads, and the sizes the map's
//! memory per channel relies on.

use static_assertions::{assert_eq_size, assert_impl_all, assert_not_impl_any};

use std::os::fd::OwnedFd;

use crate::address::{Address, ParseAddressError};
use crate::buffered::{BufferFull, Buffered};
use crate::channel::{
    Bound, Channel, Connected, ConnectedDatagram, Connecting, Datagram, FileFd, Fresh, Listening,
    UnboundDatagram,
};
use crate::chat::{AsyncChat, Terminator, TerminatorBytes};
use crate::error::RoleError;
use crate::event_loop::{LoopOptions, Refresh};
use crate::map::Map;
use crate::poller::{Backend, ParseBackendError};
use crate::readiness::{Interest, Readiness};
use crate::token::Token;

// A channel is an owned descriptor: it can move to another thread (to be
// inserted into that thread's map).
assert_impl_all!(Channel<Fresh>: Send, Sync);
assert_impl_all!(Channel<Bound>: Send, Sync);
assert_impl_all!(Channel<Connecting>: Send, Sync);
assert_impl_all!(Channel<Connected>: Send, Sync);
assert_impl_all!(Channel<Listening>: Send, Sync);
assert_impl_all!(Channel<FileFd>: Send, Sync);
assert_impl_all!(Channel<UnboundDatagram>: Send, Sync);
assert_impl_all!(Channel<Datagram>: Send, Sync);
assert_impl_all!(Channel<ConnectedDatagram>: Send, Sync);

// An AsyncChat holds producers of any type (`Rc` included, `Producer` asks
// for no `Send`), so it stays on the thread of its loop: a connection moves
// to another loop as its `Channel`, and is wrapped there.
assert_not_impl_any!(AsyncChat<Connected>: Send, Sync);
assert_not_impl_any!(AsyncChat<Connecting>: Send, Sync);
assert_impl_all!(Terminator: Send, Sync, Clone, Eq, std::hash::Hash);
assert_impl_all!(TerminatorBytes: Send, Sync, std::ops::Deref<Target = [u8]>);

// What must not exist (issue 15, the type promise without holes).
//
// No byte I/O on a role that has no peer stream: a listener, a socket still
// connecting, a fresh or bound one, a datagram socket (D1, D2, D7, D8).
assert_not_impl_any!(Channel<Listening>: std::io::Read, std::io::Write);
assert_not_impl_any!(Channel<Connecting>: std::io::Read, std::io::Write);
assert_not_impl_any!(Channel<Fresh>: std::io::Read, std::io::Write);
assert_not_impl_any!(Channel<Bound>: std::io::Read, std::io::Write);
assert_not_impl_any!(Channel<UnboundDatagram>: std::io::Read, std::io::Write);
assert_not_impl_any!(Channel<Datagram>: std::io::Read, std::io::Write);
assert_not_impl_any!(Buffered<Connecting>: std::io::Read, std::io::Write);

// No way into a role without a probe (D13): only `TryFrom`, which checks the
// descriptor, never an infallible `From` of a std socket or a descriptor.
assert_not_impl_any!(
    Channel<Connected>: From<std::net::TcpStream>,
    From<std::os::unix::net::UnixStream>,
    From<OwnedFd>,
    From<std::net::TcpListener>,
    From<std::net::UdpSocket>
);
assert_not_impl_any!(
    Channel<Listening>: From<std::net::TcpListener>,
    From<std::os::unix::net::UnixListener>,
    From<OwnedFd>,
    From<std::net::TcpStream>
);
assert_not_impl_any!(Channel<FileFd>: From<OwnedFd>, TryFrom<OwnedFd>);
assert_not_impl_any!(Channel<Datagram>: From<std::net::UdpSocket>, From<OwnedFd>, TryFrom<OwnedFd>);
assert_not_impl_any!(Channel<Fresh>: From<OwnedFd>, TryFrom<OwnedFd>);
assert_not_impl_any!(Channel<Connecting>: From<OwnedFd>, TryFrom<OwnedFd>);
// Nor from another role: role changes are methods that check, or consume.
assert_not_impl_any!(Channel<Connected>: From<Channel<Connecting>>, From<Channel<Listening>>);
assert_not_impl_any!(Channel<Listening>: From<Channel<Connected>>, From<Channel<Fresh>>);

// A map holds handlers of any type, `Rc` included: it stays on its thread.
assert_not_impl_any!(Map: Send, Sync);

// Tokens are plain values: copy them, send them, hash them. Three words:
// descriptor, generation, and the id of the map that issued them.
assert_impl_all!(Token: Copy, Send, Sync, std::hash::Hash, Eq);
assert_eq_size!(Token, [u32; 3]);

// A channel is its descriptor plus one byte of bookkeeping.
assert_eq_size!(Channel<Connected>, u64);

// An idle buffered stream is its channel and one pointer: the queue and its
// bounds are allocated when first needed (docs/PERFORMANCE.md, memory per
// idle connection). With the `tls` feature, one more pointer for a session.
#[cfg(not(feature = "tls"))]
assert_eq_size!(Buffered<Connected>, [u64; 2]);
#[cfg(not(feature = "tls"))]
assert_eq_size!(Buffered<Connecting>, [u64; 2]);
#[cfg(feature = "tls")]
assert_eq_size!(Buffered<Connected>, [u64; 3]);

// One owner per descriptor (D9, D10): a channel cannot be duplicated or made
// from nothing, in any role. Closing is dropping; a copy would outlive it.
assert_not_impl_any!(Channel<Fresh>: Clone, Default);
assert_not_impl_any!(Channel<Bound>: Clone, Default);
assert_not_impl_any!(Channel<Connecting>: Clone, Default);
assert_not_impl_any!(Channel<Connected>: Clone, Default);
assert_not_impl_any!(Channel<Listening>: Clone, Default);
assert_not_impl_any!(Channel<FileFd>: Clone, Default);
assert_not_impl_any!(Buffered<Connecting>: Clone, Default);
assert_not_impl_any!(Buffered<Connected>: Clone, Default);

// A buffered stream, queue included, moves between threads like its channel.
assert_impl_all!(Buffered<Connecting>: Send, Sync, std::fmt::Debug);
assert_impl_all!(Buffered<Connected>: Send, Sync, std::fmt::Debug);

// A failed role change is an ordinary error value that still owns the channel:
// it crosses threads, boxes into `dyn Error + Send + Sync`, and `?` turns it
// into an `io::Error`.
assert_impl_all!(RoleError<Channel<Fresh>>: Send, Sync, std::error::Error, std::fmt::Debug);
assert_impl_all!(RoleError<Channel<Bound>>: Send, Sync, std::error::Error, std::fmt::Debug);
assert_impl_all!(RoleError<OwnedFd>: Send, Sync, std::error::Error, std::fmt::Debug);
assert_impl_all!(std::io::Error: From<RoleError<Channel<Fresh>>>, From<RoleError<Channel<Bound>>>, From<RoleError<OwnedFd>>);
assert_impl_all!(BufferFull: Copy, Send, Sync, std::error::Error);
assert_impl_all!(ParseAddressError: Send, Sync, std::error::Error);
assert_impl_all!(ParseBackendError: Send, Sync, std::error::Error);

// Plain values: copy them, compare them, print them, send them.
assert_impl_all!(Backend: Copy, Send, Sync, Eq, std::hash::Hash, std::fmt::Debug, std::fmt::Display, Default);
assert_impl_all!(Interest: Copy, Send, Sync, Eq, std::hash::Hash, std::fmt::Debug, Default);
assert_impl_all!(Readiness: Copy, Send, Sync, Eq, std::hash::Hash, std::fmt::Debug, Default);
assert_impl_all!(LoopOptions: Copy, Send, Sync, std::fmt::Debug, Default);
assert_impl_all!(Refresh: Copy, Send, Sync, Eq, std::fmt::Debug, Default);
assert_impl_all!(Address: Clone, Send, Sync, Eq, std::hash::Hash, std::fmt::Display);

// Interest and readiness are one byte each: the map stores one per channel.
assert_eq_size!(Interest, u8);
assert_eq_size!(Readiness, u8);
