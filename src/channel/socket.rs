//! The socket roles: creating, binding, connecting, listening, accepting,
//! sending and receiving.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt};

use super::{Bound, Channel, Connected, Connecting, Fresh, Listening, Observed, read_is_recv, restarted};
pub use crate::address::Family;
use crate::address::{Address, ToAddress, UnixAddress};
use crate::error::{RoleError, is_disconnect};
use crate::memory;

/// A socket type for [`Channel::create_socket`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockType {
    /// A byte stream (`SOCK_STREAM`): TCP, or a Unix stream socket.
    #[default]
    Stream,
}

const NEW_FD: SocketFlags = SocketFlags::NONBLOCK.union(SocketFlags::CLOEXEC);

impl Channel<Fresh> {
    /// Creates a non-blocking, close-on-exec socket, as asyncore's
    /// `create_socket(family, type)`.
    ///
    /// ```
    /// use rolecore::{Channel, Family, SockType};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let fresh = Channel::create_socket(Family::Ipv6, SockType::Stream)?;
    /// # drop(fresh);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_socket(family: Family, kind: SockType) -> io::Result<Channel<Fresh>> {
        let domain = match family {
            Family::Ipv4 => AddressFamily::INET,
            Family::Ipv6 => AddressFamily::INET6,
            Family::Unix => AddressFamily::UNIX,
        };
        let SockType::Stream = kind;
        Ok(super::wrap(net::socket_with(domain, SocketType::STREAM, NEW_FD, None)?))
    }

    /// A fresh TCP socket over IPv4.
    pub fn tcp_v4() -> io::Result<Channel<Fresh>> {
        Self::create_socket(Family::Ipv4, SockType::Stream)
    }

    /// A fresh TCP socket over IPv6.
    pub fn tcp_v6() -> io::Result<Channel<Fresh>> {
        Self::create_socket(Family::Ipv6, SockType::Stream)
    }

    /// A fresh Unix stream socket.
    pub fn unix_stream() -> io::Result<Channel<Fresh>> {
        Self::create_socket(Family::Unix, SockType::Stream)
    }

    /// A fresh stream socket of the family `addr` needs: the usual first step
    /// before binding or connecting to it.
    pub fn for_address(addr: &Address) -> io::Result<Channel<Fresh>> {
        Self::create_socket(addr.family(), SockType::Stream)
    }

    /// Sets `SO_REUSEADDR`, so a restarted server can bind its port while old
    /// connections linger in `TIME_WAIT`. Unlike asyncore, a failure is
    /// reported, not swallowed.
    pub fn set_reuse_addr(self) -> Result<Channel<Fresh>, RoleError<Channel<Fresh>>> {
        match sockopt::set_socket_reuseaddr(&self.fd, true) {
            Ok(()) => Ok(self),
            Err(e) => Err(RoleError::new(e.into(), self)),
        }
    }

    /// Sets `SO_REUSEPORT`: several sockets (one per thread, each with its
    /// own loop) may then listen on the same address, and the kernel spreads
    /// incoming connections among them.
    pub fn set_reuse_port(self) -> Result<Channel<Fresh>, RoleError<Channel<Fresh>>> {
        match sockopt::set_socket_reuseport(&self.fd, true) {
            Ok(()) => Ok(self),
            Err(e) => Err(RoleError::new(e.into(), self)),
        }
    }

    /// Binds the socket to a local address.
    pub fn bind(self, addr: impl ToAddress) -> Result<Channel<Bound>, RoleError<Channel<Fresh>>> {
        match addr.to_address().and_then(|a| bind(&self, &a)) {
            Ok(()) => Ok(self.into_role()),
            Err(e) => Err(RoleError::new(e, self)),
        }
    }

    /// Starts connecting to `addr`. The channel is [`Connecting`] until the
    /// loop sees the connect finish and calls `handle_connect` (or
    /// `handle_connect_failed`), even when the kernel completed it at once.
    pub fn connect(self, addr: impl ToAddress) -> Result<Channel<Connecting>, RoleError<Channel<Fresh>>> {
        connect(self, addr.to_address())
    }

    /// Listens on an unbound TCP socket: the kernel picks the port. A Unix
    /// socket has no port to pick: unbound, it is refused with
    /// `InvalidInput` (bind it to a path or an abstract name first).
    pub fn listen(self, backlog: u32) -> Result<Channel<Listening>, RoleError<Channel<Fresh>>> {
        listen(self, backlog)
    }
}

impl Channel<Bound> {
    /// Starts listening for connections, with room for `backlog` pending ones.
    pub fn listen(self, backlog: u32) -> Result<Channel<Listening>, RoleError<Channel<Bound>>> {
        listen(self, backlog)
    }

    /// Starts connecting from the bound address to `addr`.
    pub fn connect(self, addr: impl ToAddress) -> Result<Channel<Connecting>, RoleError<Channel<Bound>>> {
        connect(self, addr.to_address())
    }

    /// The address the socket is bound to (with the port the kernel chose, if
    /// port 0 was asked for).
    pub fn local_addr(&self) -> io::Result<Address> {
        local_addr(self)
    }
}

fn bind<R: super::Role>(ch: &Channel<R>, addr: &Address) -> io::Result<()> {
    net::bind(&ch.fd, &addr.to_any()?).map_err(|e| addr.explain_failure(ch.fd.as_fd(), "bind", e.into()))
}

fn listen<R: super::Role>(ch: Channel<R>, backlog: u32) -> Result<Channel<Listening>, RoleError<Channel<R>>> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    match net::listen(&ch.fd, backlog) {
        Ok(()) => Ok(ch.into_role()),
        Err(e) => {
            let e = unbound_unix_listener(&ch, e);
            Err(RoleError::new(e, ch))
        }
    }
}

/// `listen`'s error, said again when its cause is a Unix socket that was
/// never bound: the kernel picks a port for an unbound TCP socket, but a
/// Unix socket has none to pick, and Linux's bare "Invalid argument" says
/// neither that nor what to do.
#[cold]
fn unbound_unix_listener<R: super::Role>(ch: &Channel<R>, e: Errno) -> io::Error {
    if e == Errno::INVAL && sockopt::socket_domain(&ch.fd) == Ok(AddressFamily::UNIX) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "a Unix socket cannot listen before it is bound: bind it to a path or an abstract name \
             first (`.bind(\"unix:/run/app.sock\")?.listen(n)`)",
        );
    }
    e.into()
}

fn connect<R: super::Role>(
    ch: Channel<R>,
    addr: io::Result<Address>,
) -> Result<Channel<Connecting>, RoleError<Channel<R>>> {
    let result = addr.and_then(|addr| match net::connect(&ch.fd, &addr.to_any()?) {
        // A Unix socket connects at once; TCP reports EINPROGRESS. Both finish
        // in the loop, so a handler sees one order of events either way.
        Ok(()) | Err(Errno::INPROGRESS) => Ok(()),
        Err(e) => Err(addr.explain_failure(ch.fd.as_fd(), "connect", e.into())),
    });
    match result {
        Ok(()) => Ok(ch.into_role()),
        Err(e) => Err(RoleError::new(e, ch)),
    }
}

fn local_addr<R: super::Role>(ch: &Channel<R>) -> io::Result<Address> {
    if ch.end.is_memory() {
        return Ok(Address::Unix(UnixAddress::Unnamed));
    }
    Address::from_any(net::getsockname(&ch.fd)?)
}

impl Channel<Connecting> {
    /// The local address the connecting socket was given.
    pub fn local_addr(&self) -> io::Result<Address> {
        local_addr(self)
    }

    /// Reads and clears `SO_ERROR`: `Ok` once the connect has succeeded.
    pub(crate) fn connect_result(&self) -> io::Result<()> {
        if self.end.is_memory() {
            return memory::connect_result(&self.end);
        }
        match sockopt::socket_error(&self.fd)? {
            Ok(()) => match net::getpeername(&self.fd) {
                Ok(_) => Ok(()),
                // Readiness without an error and without a peer: a refusal
                // whose error another reader already cleared.
                Err(Errno::NOTCONN) => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn into_connected(self) -> Channel<Connected> {
        self.into_role()
    }
}

impl Channel<Listening> {
    /// Accepts one pending connection.
    ///
    /// `Ok(None)` when there is none (would-block) or the client gave up
    /// before it was accepted (`ECONNABORTED`), as asyncore's `accept`
    /// returned `None`. The new channel is non-blocking and close-on-exec. A
    /// peer that reset before the accept is still returned (bpo-10340): its
    /// first read reports the end.
    ///
    /// When the process or system is out of descriptors or memory
    /// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the error is returned, and
    /// the loop pauses the listener's read interest for a back-off period
    /// instead of spinning on a listener that stays readable (asyncore P1).
    pub fn accept(&mut self) -> io::Result<Option<(Channel<Connected>, Address)>> {
        self.check_open()?;
        if self.end.is_memory() {
            return self.accept_memory();
        }
        match restarted(|| net::acceptfrom_with(&self.fd, NEW_FD)) {
            Ok((fd, peer)) => {
                let peer = match peer {
                    Some(any) => Address::from_any(any)?,
                    None => Address::Unix(UnixAddress::Unnamed),
                };
                Ok(Some((super::wrap(fd), peer)))
            }
            Err(Errno::AGAIN | Errno::CONNABORTED) => Ok(None),
            Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                // The loop pauses this listener for a while (see
                // `AcceptHandler`); the caller still learns why.
                self.observe(Observed::EXHAUSTED);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`accept`](Self::accept) on an in-memory listener.
    #[cold]
    fn accept_memory(&mut self) -> io::Result<Option<(Channel<Connected>, Address)>> {
        match memory::accept(&self.end) {
            Ok(Some((end, fd))) => {
                Ok(Some((super::wrap_memory(fd, end), Address::Unix(UnixAddress::Unnamed))))
            }
            Ok(None) => Ok(None),
            Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                self.observe(Observed::EXHAUSTED);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<Address> {
        local_addr(self)
    }
}

impl Channel<Connected> {
    /// A connected pair of Unix stream sockets, as `socketpair(2)`: handy for
    /// tests and for talking to a child thread.
    pub fn pair() -> io::Result<(Channel<Connected>, Channel<Connected>)> {
        let (a, b) = net::socketpair(AddressFamily::UNIX, SocketType::STREAM, NEW_FD, None)?;
        Ok((super::wrap(a), super::wrap(b)))
    }

    /// Receives up to `buf.len()` bytes.
    ///
    /// - `Ok(n)` with `n > 0`: data.
    /// - `Ok(0)`: the peer closed (or reset) the connection; the loop calls
    ///   `handle_close` after the current callback. [`peer_reset`](Self::peer_reset)
    ///   tells which. An empty `buf` also gives
    ///   `Ok(0)` but means nothing (asyncore closed the channel on `recv(0)`).
    /// - `Err` of kind `WouldBlock`: nothing to read now. Returning it from a
    ///   handler with `?` is fine: the loop does not treat it as an error.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, RecvFlags::empty())
    }

    /// Whether a receive or send found the connection broken (reset by the
    /// peer, or a send to a peer gone: `ECONNRESET`, `EPIPE` and the other
    /// disconnection errors), not ended by the peer's clean end of stream.
    /// `recv` returns `Ok(0)` for both, as asyncore did (A2): a client whose
    /// response ends with the connection asks here, after that `Ok(0)`,
    /// whether it got all of it. It covers the calls made since the loop's
    /// current callback began (outside a loop, since the channel was made);
    /// a TLS stream reports a reset as a truncation error instead.
    pub fn peer_reset(&self) -> bool {
        let seen = self.observed();
        seen.has(Observed::PEER_GONE) && !seen.has(Observed::EOF)
    }

    /// Receives out-of-band (urgent) data, what `handle_expt` is called for.
    pub fn recv_oob(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, RecvFlags::OOB)
    }

    /// One receive. Inlined into the caller: the common case (bytes came)
    /// is the system call and two branches; everything else is out of line.
    /// A closing channel and an in-memory end are found by one test
    /// ([`super::usual`]), and asked apart out of line.
    #[inline]
    fn recv_with(&mut self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        if !super::usual() {
            return self.recv_unusual(buf, flags);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let first = net::recv(&self.fd, &mut *buf, flags);
        self.received(buf, flags, first)
    }

    /// [`recv_with`](Self::recv_with) while a channel is closing or this
    /// thread has in-memory ends: the exact tests, in the same order.
    #[cold]
    #[inline(never)]
    fn recv_unusual(&mut self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        self.check_open()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.end.is_memory() {
            return self.recv_memory(buf, flags);
        }
        let first = net::recv(&self.fd, &mut *buf, flags);
        self.received(buf, flags, first)
    }

    /// What a receive's answer means: bytes are progress, inline; the rest
    /// is out of line. For both the kernel's answer and an in-memory end's.
    /// The out-of-line paths are handed no more than the error: a whole
    /// `rustix::io::Result` handed to a cold function was stored to the
    /// stack on the common path too (callgrind).
    #[inline(always)]
    fn received(
        &mut self,
        buf: &mut [u8],
        flags: RecvFlags,
        first: rustix::io::Result<(usize, usize)>,
    ) -> io::Result<usize> {
        match first {
            Ok((n, _)) if n > 0 => {
                self.observe(Observed::READ_PROGRESS);
                Ok(n)
            }
            Ok(_) => self.recv_ended(),
            Err(error) => self.recv_failed(buf, flags, error),
        }
    }

    /// A receive found the end of the stream.
    #[cold]
    #[inline(never)]
    fn recv_ended(&mut self) -> io::Result<usize> {
        self.observe(Observed::PEER_GONE | Observed::EOF);
        Ok(0)
    }

    /// What [`recv_with`](Self::recv_with) leaves out of line besides the
    /// end of the stream: a signal (the receive is made again), an error.
    #[cold]
    #[inline(never)]
    fn recv_failed(&mut self, buf: &mut [u8], flags: RecvFlags, error: Errno) -> io::Result<usize> {
        let result = match error {
            Errno::INTR => restarted(|| net::recv(&self.fd, &mut *buf, flags)),
            other => Err(other),
        };
        match result {
            Ok((0, _)) => self.recv_ended(),
            Ok((n, _)) => {
                self.observe(Observed::READ_PROGRESS);
                Ok(n)
            }
            Err(e) => {
                let e = io::Error::from(e);
                if is_disconnect(&e) {
                    self.observe(Observed::PEER_GONE);
                    Ok(0)
                } else {
                    Err(self.failed(e))
                }
            }
        }
    }

    /// Sends as much of `data` as the socket takes now, and says how much.
    ///
    /// `Ok(0)` when the send buffer is full (would-block), or when the peer is
    /// gone (the loop then calls `handle_close`). Never raises `SIGPIPE`
    /// (`MSG_NOSIGNAL`). For sends that never lose a byte, wrap the channel in
    /// [`Buffered`](crate::Buffered).
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send_with(data, SendFlags::NOSIGNAL)
    }

    /// Sends `data` as out-of-band (urgent) data.
    pub fn send_oob(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send_with(data, SendFlags::NOSIGNAL | SendFlags::OOB)
    }

    /// One send, inlined as [`recv_with`](Self::recv_with) is: bytes taken
    /// are the common case, the rest is out of line.
    #[inline]
    fn send_with(&mut self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        if !super::usual() {
            return self.send_unusual(data, flags);
        }
        self.send_kernel(data, flags)
    }

    /// [`send_with`](Self::send_with) while a channel is closing or this
    /// thread has in-memory ends.
    #[cold]
    #[inline(never)]
    fn send_unusual(&mut self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        self.check_open()?;
        if self.end.is_memory() {
            return self.send_memory(data, flags);
        }
        self.send_kernel(data, flags)
    }

    #[inline(always)]
    fn send_kernel(&mut self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        // As in `received`, the cold path is handed the error alone.
        match net::send(&self.fd, data, flags) {
            Ok(n) => {
                if n > 0 {
                    self.observe(Observed::WRITE_PROGRESS);
                }
                Ok(n)
            }
            Err(error) => self.send_failed(data, flags, error),
        }
    }

    /// A send that failed: a signal (the send is made again), a full
    /// buffer, a disconnection, an error (see `sent`).
    #[cold]
    #[inline(never)]
    fn send_failed(&mut self, data: &[u8], flags: SendFlags, error: Errno) -> io::Result<usize> {
        let result = match error {
            Errno::INTR => restarted(|| net::send(&self.fd, data, flags)),
            other => Err(other),
        };
        self.sent(result)
    }

    /// [`recv_with`](Self::recv_with) on an in-memory end: out of line, so
    /// the real path keeps only the byte comparison that leads here.
    #[cold]
    #[inline(never)]
    fn recv_memory(&mut self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        let first = memory::recv(&self.end, buf, flags.contains(RecvFlags::OOB)).map(|n| (n, n));
        self.received(buf, flags, first)
    }

    /// [`send_with`](Self::send_with) on an in-memory end.
    #[cold]
    #[inline(never)]
    fn send_memory(&mut self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        let result = memory::send(&self.end, data, flags.contains(SendFlags::OOB));
        self.sent(result)
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        self.check_open()?;
        if self.end.is_memory() {
            let (read, write) = (how != Shutdown::Write, how != Shutdown::Read);
            return Ok(memory::shutdown(&self.end, read, write)?);
        }
        let how = match how {
            Shutdown::Read => net::Shutdown::Read,
            Shutdown::Write => net::Shutdown::Write,
            Shutdown::Both => net::Shutdown::Both,
        };
        net::shutdown(&self.fd, how)?;
        Ok(())
    }

    /// Sets `TCP_NODELAY` (no effect on Unix sockets is an error).
    pub fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        if self.end.is_memory() {
            // What the kernel answers for a Unix socket.
            return Err(Errno::OPNOTSUPP.into());
        }
        sockopt::set_tcp_nodelay(&self.fd, nodelay)?;
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<Address> {
        if self.end.is_memory() {
            return Ok(Address::Unix(UnixAddress::Unnamed));
        }
        match net::getpeername(&self.fd)? {
            Some(any) => Address::from_any(any),
            None => Ok(Address::Unix(UnixAddress::Unnamed)),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<Address> {
        local_addr(self)
    }
}

read_is_recv! {
    /// Reads as [`Channel::recv`]: `Ok(0)` at the end of the stream, `WouldBlock`
    /// when nothing is there yet.
    Connected
}

/// Writes as `std` expects of a non-blocking socket: a full send buffer is
/// `WouldBlock`, not `Ok(0)` (which `write_all` would take for a failure);
/// never raises `SIGPIPE`.
impl io::Write for Channel<Connected> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(0);
        }
        let sent = if self.end.is_memory() {
            memory::send(&self.end, data, false)
        } else {
            restarted(|| net::send(&self.fd, data, SendFlags::NOSIGNAL))
        };
        match sent {
            Ok(n) => {
                self.observe(Observed::WRITE_PROGRESS);
                Ok(n)
            }
            Err(e) => {
                let e = io::Error::from(e);
                if is_disconnect(&e) {
                    self.observe(Observed::PEER_GONE);
                }
                Err(self.failed(e))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
