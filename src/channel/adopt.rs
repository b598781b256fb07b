//! Adopting what `std` and other code made — `TcpListener`, `UnixListener`,
//! `TcpStream`, `UnixStream`, a bare `OwnedFd` — as a channel, after
//! checking that the descriptor really is what the role claims (D13).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::net::{self, AddressFamily, SocketType, sockopt};

use super::{Channel, Connected, Listening, set_nonblocking};
use crate::error::RoleError;

/// Makes a socket whose role was checked non-blocking and wraps it; on
/// failure the socket comes back in the error.
fn adopt<T: AsFd + Into<OwnedFd>, R: super::Role>(sock: T) -> Result<Channel<R>, RoleError<T>> {
    match set_nonblocking(sock.as_fd()) {
        Ok(()) => Ok(super::wrap(sock.into())),
        Err(e) => Err(RoleError::new(e, sock)),
    }
}

/// The address families an adopted socket may have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Families {
    /// TCP: IPv4 or IPv6 (`TcpStream`, `TcpListener`).
    Inet,
    /// A Unix stream socket (`UnixStream`, `UnixListener`).
    Unix,
    /// Any of the three (`OwnedFd`).
    Any,
}

impl Families {
    fn admits(self, domain: AddressFamily) -> bool {
        let inet = domain == AddressFamily::INET || domain == AddressFamily::INET6;
        let unix = domain == AddressFamily::UNIX;
        match self {
            Families::Inet => inet,
            Families::Unix => unix,
            Families::Any => inet || unix,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Families::Inet => "a TCP (IPv4 or IPv6) socket",
            Families::Unix => "a Unix stream socket",
            Families::Any => "an IPv4, IPv6 or Unix stream socket",
        }
    }
}

fn refused(what: &str, expected: &str, actual: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot adopt {actual} as a {what} channel: it must be {expected}"),
    )
}

/// Checks what a descriptor is before it takes a role (D13): a stream
/// socket (`SO_TYPE`) of the right family (`SO_DOMAIN`), listening or not
/// as claimed (`SO_ACCEPTCONN`), and, to be connected, with a peer
/// (`getpeername`: a socket still connecting, or never connected, has none).
/// std's `TcpStream`, `UnixStream`, `TcpListener` and `UnixListener` can wrap
/// any descriptor through `From<OwnedFd>`, so their type proves nothing.
fn probe(fd: BorrowedFd<'_>, listening: bool, families: Families) -> io::Result<()> {
    let what = if listening { "listening" } else { "connected" };
    let expected = if listening {
        format!("{} that listens", families.name())
    } else {
        format!("{} connected to a peer", families.name())
    };
    let kind = sockopt::socket_type(fd)
        .map_err(|e| refused(what, &expected, format_args!("a descriptor that is not a socket ({e})")))?;
    if kind != SocketType::STREAM {
        let actual =
            if kind == SocketType::DGRAM { "a datagram socket" } else { "a socket that is not a stream" };
        return Err(refused(what, &expected, actual));
    }
    let domain = sockopt::socket_domain(fd)?;
    if !families.admits(domain) {
        return Err(refused(what, &expected, format_args!("a stream socket of another family ({domain:?})")));
    }
    let accepting = sockopt::socket_acceptconn(fd)?;
    if accepting != listening {
        let actual = if accepting { "a listening socket" } else { "a socket that is not listening" };
        return Err(refused(what, &expected, actual));
    }
    if !listening {
        net::getpeername(fd).map_err(|e| {
            let actual = format!("a socket with no peer (never connected, or still connecting: {e})");
            let e = refused(what, &expected, actual);
            io::Error::new(io::ErrorKind::NotConnected, e.to_string())
        })?;
    }
    Ok(())
}

/// Probes, then adopts; the value comes back whole if either step fails.
fn adopt_checked<T: AsFd + Into<OwnedFd>, R: super::Role>(
    sock: T,
    listening: bool,
    families: Families,
) -> Result<Channel<R>, RoleError<T>> {
    match probe(sock.as_fd(), listening, families) {
        Ok(()) => adopt(sock),
        Err(e) => Err(RoleError::new(e, sock)),
    }
}

/// Declares `TryFrom<$from> for Channel<$role>` by [`adopt_checked`], with
/// whether the socket must be listening and the families it may have. The
/// doc comments before each line stay on its `try_from`.
macro_rules! adopt_from {
    ($($(#[$doc:meta])* $from:ty => $role:ty, listening: $listening:expr, $families:expr;)*) => {$(
        impl TryFrom<$from> for Channel<$role> {
            type Error = RoleError<$from>;
            $(#[$doc])*
            fn try_from(sock: $from) -> Result<Self, Self::Error> {
                adopt_checked(sock, $listening, $families)
            }
        }
    )*};
}

adopt_from! {
    /// Adopts a listening TCP socket, making it non-blocking. Its role is
    /// checked first (a `TcpListener` can wrap any descriptor through
    /// `From<OwnedFd>`): anything but a listening IPv4 or IPv6 stream socket
    /// is refused, and comes back in the error.
    TcpListener => Listening, listening: true, Families::Inet;

    /// Adopts a listening Unix stream socket, making it non-blocking; its
    /// role is checked first, as for a `TcpListener`.
    UnixListener => Listening, listening: true, Families::Unix;

    /// Adopts a connected TCP socket, making it non-blocking. Its role is
    /// checked first (a `TcpStream` can wrap any descriptor through
    /// `From<OwnedFd>`): a listener, a socket never connected or still
    /// connecting, a datagram socket, a Unix socket or a pipe is refused,
    /// and comes back in the error.
    TcpStream => Connected, listening: false, Families::Inet;

    /// Adopts a connected Unix stream socket, making it non-blocking; its
    /// role is checked first, as for a `TcpStream`.
    UnixStream => Connected, listening: false, Families::Unix;

    /// Adopts a descriptor after checking it is a listening IPv4, IPv6 or
    /// Unix stream socket (`SO_TYPE`, `SO_DOMAIN`, `SO_ACCEPTCONN`), making
    /// it non-blocking.
    OwnedFd => Listening, listening: true, Families::Any;

    /// Adopts a descriptor after checking it is a connected IPv4, IPv6 or
    /// Unix stream socket (not listening, with a peer), making it
    /// non-blocking.
    OwnedFd => Connected, listening: false, Families::Any;
}
