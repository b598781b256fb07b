//! The datagram roles: UDP over IPv4 and IPv6, and Unix datagram sockets.
//!
//! A datagram socket has no connection to wait for and no end of stream: a
//! zero-byte read is an empty datagram, never a close (peer-conformance item
//! 21). `Channel<Datagram>` sends to and receives from any address;
//! `connect` fixes the peer and gives a `Channel<ConnectedDatagram>`, which
//! has plain `send` and `recv`.

use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{Channel, ConnectedDatagram, Datagram, Family, Observed, UnboundDatagram, restarted};
use crate::address::{Address, ToAddress, UnixAddress};
use crate::error::RoleError;

const NEW_FD: SocketFlags = SocketFlags::NONBLOCK.union(SocketFlags::CLOEXEC);

fn domain(family: Family) -> AddressFamily {
    match family {
        Family::Ipv4 => AddressFamily::INET,
        Family::Ipv6 => AddressFamily::INET6,
        Family::Unix => AddressFamily::UNIX,
    }
}

fn address(peer: Option<net::SocketAddrAny>) -> io::Result<Address> {
    match peer {
        Some(any) => Address::from_any(any),
        None => Ok(Address::Unix(UnixAddress::Unnamed)),
    }
}

impl Channel<UnboundDatagram> {
    /// A non-blocking, close-on-exec datagram socket of `family`, not yet
    /// bound: [`bind`](Self::bind) it to receive at a known address,
    /// [`connect`](Self::connect) it to one peer, or use it as it is with
    /// [`without_bind`](Self::without_bind).
    ///
    /// ```
    /// use rolecore::{Channel, Family};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let mut server = Channel::datagram(Family::Ipv4)?.bind("127.0.0.1:0")?;
    /// let to = server.local_addr()?;
    /// let mut client = Channel::udp_v4()?.without_bind();
    /// client.send_to(b"ping", &to)?;
    /// # std::thread::sleep(std::time::Duration::from_millis(10));
    /// let mut buf = [0u8; 16];
    /// let (n, _from) = server.recv_from(&mut buf)?;
    /// assert_eq!(&buf[..n], b"ping");
    /// # Ok(())
    /// # }
    /// ```
    pub fn datagram(family: Family) -> io::Result<Channel<UnboundDatagram>> {
        Ok(super::wrap(net::socket_with(domain(family), SocketType::DGRAM, NEW_FD, None)?))
    }

    /// A UDP socket over IPv4.
    pub fn udp_v4() -> io::Result<Channel<UnboundDatagram>> {
        Self::datagram(Family::Ipv4)
    }

    /// A UDP socket over IPv6.
    pub fn udp_v6() -> io::Result<Channel<UnboundDatagram>> {
        Self::datagram(Family::Ipv6)
    }

    /// A Unix datagram socket.
    pub fn unix_datagram() -> io::Result<Channel<UnboundDatagram>> {
        Self::datagram(Family::Unix)
    }

    /// Binds to a local address, to receive datagrams sent there. The bound
    /// socket has no `bind`: binding twice does not compile (D6). A failed
    /// bind gives the socket back.
    pub fn bind(
        self,
        addr: impl ToAddress,
    ) -> Result<Channel<Datagram>, RoleError<Channel<UnboundDatagram>>> {
        with_address(self, addr, "bind", |fd, a| net::bind(fd, a))
    }

    /// Uses the socket without binding it: the kernel gives a UDP socket a
    /// port at its first send; a Unix datagram socket stays unnamed (its
    /// peers cannot answer it). Either way it can no longer be bound.
    pub fn without_bind(self) -> Channel<Datagram> {
        self.into_role()
    }

    /// Fixes the peer: datagrams go only to it and come only from it.
    pub fn connect(
        self,
        addr: impl ToAddress,
    ) -> Result<Channel<ConnectedDatagram>, RoleError<Channel<UnboundDatagram>>> {
        connect(self, addr)
    }
}

fn connect<R: super::Role>(
    ch: Channel<R>,
    addr: impl ToAddress,
) -> Result<Channel<ConnectedDatagram>, RoleError<Channel<R>>> {
    with_address(ch, addr, "connect", |fd, a| net::connect(fd, a))
}

/// Binds or connects (`op`) the socket to `addr`, moving it to role `S`; a
/// failure gives the socket back in its role `R`.
fn with_address<R: super::Role, S: super::Role, A: ToAddress>(
    ch: Channel<R>,
    addr: A,
    what: &str,
    op: fn(&std::os::fd::OwnedFd, &net::SocketAddrAny) -> rustix::io::Result<()>,
) -> Result<Channel<S>, RoleError<Channel<R>>> {
    let result = addr.to_address().and_then(|addr| {
        op(&ch.fd, &addr.to_any()?).map_err(|e| addr.explain_failure(ch.fd.as_fd(), what, e.into()))
    });
    match result {
        Ok(()) => Ok(ch.into_role()),
        Err(e) => Err(RoleError::new(e, ch)),
    }
}

impl Channel<Datagram> {
    /// Fixes the peer: datagrams go only to it and come only from it.
    pub fn connect(
        self,
        addr: impl ToAddress,
    ) -> Result<Channel<ConnectedDatagram>, RoleError<Channel<Datagram>>> {
        connect(self, addr)
    }

    /// Sends one datagram to `addr`; returns its length. `WouldBlock` when
    /// the socket's buffer is full: a datagram goes whole or not at all, so
    /// unlike a stream's `send` there is no partial count to report. A
    /// datagram longer than the socket can send (65,507 bytes for UDP over
    /// IPv4, the send buffer for a Unix datagram socket) is an
    /// `InvalidInput` error that says so.
    pub fn send_to(&mut self, data: &[u8], addr: impl ToAddress) -> io::Result<usize> {
        self.check_open()?;
        let addr = addr.to_address()?;
        let to = addr.to_any()?;
        match restarted(|| net::sendto(&self.fd, data, SendFlags::NOSIGNAL, &to)) {
            Ok(n) => {
                self.observe(Observed::WRITE_PROGRESS);
                Ok(n)
            }
            Err(Errno::MSGSIZE) => Err(too_long(data.len())),
            Err(e) => Err(self.failed(addr.explain_failure(self.fd.as_fd(), "send from", e.into()))),
        }
    }

    /// Receives one datagram into `buf` (the rest of a longer one is
    /// dropped) and says who sent it. `Ok((0, from))` is an empty datagram;
    /// `WouldBlock` when none is waiting. An empty `buf` is refused
    /// (`InvalidInput`) before anything is received: the kernel would drop
    /// the whole datagram, and `Ok(0)` would pass it for an empty one.
    pub fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, Address)> {
        self.check_open()?;
        no_room(buf)?;
        match restarted(|| net::recvfrom(&self.fd, &mut *buf, RecvFlags::empty())) {
            Ok((n, _, from)) => {
                self.observe(Observed::READ_PROGRESS);
                Ok((n, address(from)?))
            }
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<Address> {
        Address::from_any(net::getsockname(&self.fd)?)
    }
}

/// Refuses a receive into an empty buffer: a datagram socket's receive
/// takes a whole datagram, and with no room the kernel drops all of it.
fn no_room(buf: &[u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a datagram cannot be received into an empty buffer: the kernel would drop it whole; pass \
             a buffer as long as the longest datagram expected (65,507 bytes for UDP)",
        ));
    }
    Ok(())
}

/// A send's `EMSGSIZE`, which `std` leaves uncategorized, with the limits
/// that explain it.
fn too_long(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a datagram of {len} bytes is longer than this socket can send ({}): a datagram goes whole \
             or not at all; split the data into smaller datagrams (UDP takes at most 65,507 bytes over \
             IPv4, less than the path's MTU to avoid fragments; a Unix datagram socket at most its send \
             buffer)",
            io::Error::from(Errno::MSGSIZE)
        ),
    )
}

impl Channel<ConnectedDatagram> {
    /// A connected pair of Unix datagram sockets (`socketpair(2)`).
    pub fn datagram_pair() -> io::Result<(Channel<ConnectedDatagram>, Channel<ConnectedDatagram>)> {
        let (a, b) = net::socketpair(AddressFamily::UNIX, SocketType::DGRAM, NEW_FD, None)?;
        Ok((super::wrap(a), super::wrap(b)))
    }

    /// Sends one datagram to the peer; `WouldBlock` when the buffer is full,
    /// and `InvalidInput` for one longer than the socket can send, as
    /// [`send_to`](Channel::send_to).
    /// A peer that is not listening may show up as `ConnectionRefused` on a
    /// later send or receive (an ICMP error, for UDP).
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_open()?;
        match restarted(|| net::send(&self.fd, data, SendFlags::NOSIGNAL)) {
            Ok(n) => {
                self.observe(Observed::WRITE_PROGRESS);
                Ok(n)
            }
            Err(Errno::MSGSIZE) => Err(too_long(data.len())),
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// Receives one datagram: `Ok(0)` is an empty datagram, not an end. The
    /// rest of a datagram longer than `buf` is dropped; an empty `buf` is
    /// refused (`InvalidInput`), as by [`recv_from`](Channel::recv_from).
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_open()?;
        no_room(buf)?;
        match restarted(|| net::recv(&self.fd, &mut *buf, RecvFlags::empty())) {
            Ok((n, _)) => {
                self.observe(Observed::READ_PROGRESS);
                Ok(n)
            }
            Err(e) => Err(self.failed(e.into())),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<Address> {
        address(net::getpeername(&self.fd)?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<Address> {
        Address::from_any(net::getsockname(&self.fd)?)
    }
}
