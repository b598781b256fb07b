//! Layer 3: typed channels.
//!
//! A [`Channel<R>`] owns one descriptor; its role `R` says what it can do, and
//! an operation that is wrong for the role does not exist on it:
//!
//! ```text
//!   create_socket ─► Fresh ─bind─► Bound ─listen─► Listening ─accept─► Connected
//!                      │             │                                   ▲
//!                      └──connect────┴──► Connecting ──(the loop)────────┘
//!   Channel::file(fd) ─► FileFd
//!   Channel::datagram(family) ─► UnboundDatagram ─bind / without_bind─► Datagram
//!                                       └──────────connect─────────► ConnectedDatagram ◄─connect─ Datagram
//! ```
//!
//! Role changes consume the channel and return it in its new role; when one
//! fails, the [`RoleError`](crate::RoleError) hands the channel back. Every
//! descriptor rolecore creates is non-blocking and close-on-exec, and the
//! descriptor closes when the channel is dropped.

mod adopt;
mod datagram;
mod file;
mod socket;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::memory::End;

/// A socket or file descriptor in the role `R`.
///
/// See the [module documentation](crate::channel) for the roles and how a
/// channel moves between them.
///
/// # Examples
///
/// ```
/// use rolecore::Channel;
///
/// # fn main() -> std::io::Result<()> {
/// let listener = Channel::tcp_v4()?.set_reuse_addr()?.bind("127.0.0.1:0")?.listen(5)?;
/// println!("listening on {}", listener.local_addr()?);
/// # Ok(())
/// # }
/// ```
pub struct Channel<R: Role> {
    fd: OwnedFd,
    /// What the last receive or send saw, for the loop to read after the
    /// handler returns (end of stream, data received).
    observed: Observed,
    /// Where the bytes go: the kernel, or an in-memory end of the
    /// simulation's (then `fd` is a placeholder that no I/O reaches). It
    /// lives in what was padding: a channel stays the size of a `u64`, and
    /// the real path pays one byte comparison per send and receive.
    pub(crate) end: End,
    role: PhantomData<fn() -> R>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Observed(u8);

impl Observed {
    /// The peer is gone: end of stream, or a disconnection error.
    pub const PEER_GONE: u8 = 1;
    pub const READ_PROGRESS: u8 = 2;
    /// A clean end of stream (the peer shut down its sending side): it may
    /// still read what we send.
    pub const EOF: u8 = 4;
    /// An accept failed for want of descriptors or memory (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM): the listener should pause rather than spin (P1).
    pub const EXHAUSTED: u8 = 8;
    /// A send moved at least one byte.
    pub const WRITE_PROGRESS: u8 = 16;
    /// The channel's own I/O returned `WouldBlock` to its caller: the loop
    /// takes a callback's `WouldBlock` for a spurious wake-up only then.
    pub const WOULD_BLOCK: u8 = 32;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The role of a [`Channel`]. Sealed: the roles are rolecore's.
pub trait Role: sealed::Sealed + 'static {
    /// The role's name, as `Debug` shows it.
    const NAME: &'static str;
    /// Whether the channel is one end of a byte stream, whose peer can go
    /// away (a disconnection error then means `handle_close`).
    #[doc(hidden)]
    const HAS_PEER_STREAM: bool = true;
    /// Whether a `WouldBlock` its callbacks return is the loop's to ignore
    /// only when the channel's own I/O reported it. Not for a listener,
    /// whose callbacks do the first I/O of the connections it accepts.
    #[doc(hidden)]
    const OWNS_WOULD_BLOCK: bool = true;
}

macro_rules! roles {
    ($($(#[$doc:meta])* $name:ident $(= $flag:ident: $value:expr)?),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl Role for $name {
            const NAME: &'static str = stringify!($name);
            $(const $flag: bool = $value;)?
        }
    )*};
}

roles! {
    /// A socket just created: it can be bound, connected or made to listen.
    Fresh,
    /// A socket bound to a local address: it can listen or connect.
    Bound,
    /// A stream whose connect is in progress. It has neither `send` nor
    /// `recv`; the loop makes it [`Connected`] when the connect completes.
    Connecting,
    /// A connected stream: it can `send`, `recv` and `shutdown`.
    Connected,
    /// A listening socket: it can only `accept`.
    Listening = OWNS_WOULD_BLOCK: false,
    /// A pipe, terminal, character device or regular file: `recv`, `send`,
    /// nothing else.
    FileFd,
    /// A datagram socket just created: it can be bound (once), connected, or
    /// used unbound with [`without_bind`](Channel::without_bind).
    UnboundDatagram = HAS_PEER_STREAM: false,
    /// A datagram socket (UDP, or Unix datagram) with no fixed peer:
    /// `send_to` and `recv_from`. It cannot be bound again (D6).
    Datagram = HAS_PEER_STREAM: false,
    /// A datagram socket connected to one peer: `send` and `recv`.
    ConnectedDatagram = HAS_PEER_STREAM: false,
}

/// The datagram roles, [`Datagram`] and [`ConnectedDatagram`]. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a role a DatagramHandler serves",
    label = "a DatagramHandler serves a Channel<Datagram> or a Channel<ConnectedDatagram>",
    note = "an UnboundDatagram socket is not watched: `bind` it, `connect` it or use it `without_bind` \
            first; a stream's handler is a StreamHandler, a listener's an AcceptHandler"
)]
pub trait DatagramRole: Role {}
impl DatagramRole for Datagram {}
impl DatagramRole for ConnectedDatagram {}

/// Wraps a descriptor in the role `R`, unchecked: for descriptors rolecore
/// made itself, or probed. A free function rather than an associated one, so
/// that rustc's hint for a `Channel { .. }` struct literal does not point
/// users at it.
pub(crate) fn wrap<R: Role>(fd: OwnedFd) -> Channel<R> {
    Channel { fd, observed: Observed::default(), end: End::KERNEL, role: PhantomData }
}

/// Wraps an in-memory end with its placeholder descriptor.
pub(crate) fn wrap_memory<R: Role>(fd: OwnedFd, end: End) -> Channel<R> {
    note_memory_end();
    Channel { fd, observed: Observed::default(), end, role: PhantomData }
}

impl<R: Role> Channel<R> {
    pub(crate) fn into_role<S: Role>(self) -> Channel<S> {
        Channel { fd: self.fd, observed: Observed::default(), end: self.end, role: PhantomData }
    }

    pub(crate) fn observed(&self) -> Observed {
        self.observed
    }

    pub(crate) fn reset_observed(&mut self) {
        self.observed = Observed::default();
    }

    pub(crate) fn observe(&mut self, bit: u8) {
        self.observed.0 |= bit;
    }

    /// An error of this channel's own I/O, on its way to the caller. A
    /// would-block is noted, so that the loop can tell it from another
    /// descriptor's that a handler returns with `?` (see `dispatch::run`).
    #[cold]
    pub(crate) fn failed(&mut self, error: io::Error) -> io::Error {
        if error.kind() == io::ErrorKind::WouldBlock {
            self.observe(Observed::WOULD_BLOCK);
        }
        error
    }

    /// Closes the channel, as asyncore's `close()`; dropping it does the same.
    /// The channel is consumed: nothing can use it afterwards (D10).
    pub fn close(self) {
        drop(self);
    }

    /// The descriptor number, for logs and for asyncore's fd-keyed view.
    pub fn fileno(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The descriptor, borrowed: for `setsockopt`s and queries rolecore does not
/// wrap. It is the one deliberate way around the roles: a system call made
/// on it, or a duplicate of it adopted as another channel, is outside what
/// the types check (a send on a TLS stream's descriptor puts plaintext
/// between its records; a read on it takes bytes its session or its queue
/// expected).
impl<R: Role> AsFd for Channel<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<R: Role> AsRawFd for Channel<R> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<R: Role> From<Channel<R>> for OwnedFd {
    fn from(ch: Channel<R>) -> OwnedFd {
        ch.fd
    }
}

impl<R: Role> fmt::Debug for Channel<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.end.is_memory() {
            return write!(f, "Channel<{}>(fd {}, in memory)", R::NAME, self.fd.as_raw_fd());
        }
        write!(f, "Channel<{}>(fd {})", R::NAME, self.fd.as_raw_fd())
    }
}

thread_local! {
    /// The descriptor of the channel whose callback called `Ctx::close` and
    /// has not returned yet, or -1. Read by every I/O call of a channel: a
    /// closing channel refuses I/O (it would otherwise send after its close).
    static CLOSING: Cell<RawFd> = const { Cell::new(-1) };
    /// Non-zero while an I/O call cannot take the kernel's path at once:
    /// [`CLOSING`] names a channel ([`UNUSUAL_CLOSING`]), or this thread
    /// made a channel of an in-memory end ([`UNUSUAL_MEMORY`], for good). The hot I/O
    /// calls test this one byte instead of both, and the rare cases take
    /// the exact tests out of line (callgrind: 5 instructions per echoed
    /// message).
    static UNUSUAL: Cell<u8> = const { Cell::new(0) };
}

/// [`UNUSUAL`]'s bit for a closing channel.
const UNUSUAL_CLOSING: u8 = 1;
/// [`UNUSUAL`]'s bit for a thread with in-memory ends.
const UNUSUAL_MEMORY: u8 = 2;

/// Marks `fd` as closed by the running callback; returns what to put back
/// with [`unmark_closing`] when the callback ends.
pub(crate) fn mark_closing(fd: RawFd) -> RawFd {
    set_closing(fd)
}

pub(crate) fn unmark_closing(previous: RawFd) {
    set_closing(previous);
}

/// Sets [`CLOSING`], and [`UNUSUAL`]'s bit that follows it.
fn set_closing(fd: RawFd) -> RawFd {
    let closing = if fd == -1 { 0 } else { UNUSUAL_CLOSING };
    UNUSUAL.set(UNUSUAL.get() & !UNUSUAL_CLOSING | closing);
    CLOSING.replace(fd)
}

/// This thread made a channel of an in-memory end: its channels' I/O goes
/// by the exact tests from now on. For good, as an end is only ever used on
/// the thread whose table holds it.
fn note_memory_end() {
    UNUSUAL.set(UNUSUAL.get() | UNUSUAL_MEMORY);
}

/// Whether an I/O call may go to the kernel without asking
/// [`Channel::check_open`] and [`End::is_memory`]: no channel is closing
/// and this thread has no in-memory end. One test of a thread-local byte.
#[inline(always)]
pub(crate) fn usual() -> bool {
    UNUSUAL.get() == 0
}

/// The error a channel's I/O gives after `Ctx::close` in the callback that
/// was lent it.
#[derive(Debug)]
pub(crate) struct ClosedInCallback;

impl fmt::Display for ClosedInCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the channel was closed with Ctx::close (or Ctx::remove) in this callback: it sends and \
             receives nothing more; send a last message before closing",
        )
    }
}

impl std::error::Error for ClosedInCallback {}

/// Whether `error` is [`ClosedInCallback`].
pub(crate) fn is_closed_in_callback(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<ClosedInCallback>())
}

impl<R: Role> Channel<R> {
    /// Refuses I/O once the callback this channel is lent to has closed it.
    #[inline]
    pub(crate) fn check_open(&self) -> std::io::Result<()> {
        if CLOSING.get() == self.fd.as_raw_fd() {
            return Err(closed_in_callback());
        }
        Ok(())
    }
}

#[cold]
fn closed_in_callback() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, ClosedInCallback)
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(fd)?;
    if !flags.contains(OFlags::NONBLOCK) {
        fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    }
    Ok(())
}

pub use socket::{Family, SockType};

/// Runs a system call again for as long as a signal interrupts it (`EINTR`):
/// every read, write and accept of a channel goes through here.
#[inline]
fn restarted<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            result => return result,
        }
    }
}

/// `io::Read` for a role whose channel has `recv`: a read is a receive.
/// The doc comments before the role go on the impl.
macro_rules! read_is_recv {
    ($(#[$doc:meta])* $role:ty) => {
        $(#[$doc])*
        impl std::io::Read for Channel<$role> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.recv(buf)
            }
        }
    };
}
use read_is_recv;

impl<R: Role> Channel<R> {
    /// What a stream's `send` makes of `write(2)`'s or `send(2)`'s answer:
    /// bytes taken are progress; a full buffer is 0 bytes (D22); a
    /// disconnection is 0 bytes and the peer marked gone (D19).
    fn sent(&mut self, result: rustix::io::Result<usize>) -> std::io::Result<usize> {
        match result {
            Ok(n) => {
                if n > 0 {
                    self.observe(Observed::WRITE_PROGRESS);
                }
                Ok(n)
            }
            Err(rustix::io::Errno::AGAIN) => Ok(0),
            Err(e) => {
                let e = std::io::Error::from(e);
                if crate::error::is_disconnect(&e) {
                    self.observe(Observed::PEER_GONE);
                    Ok(0)
                } else {
                    Err(e)
                }
            }
        }
    }
}
