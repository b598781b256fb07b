//! Socket addresses: IP (v4 and v6) and Unix (paths and Linux abstract names).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::net::{SocketAddrAny, SocketAddrUnix};

/// An address family for [`Channel::create_socket`](crate::Channel::create_socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
    /// Unix domain sockets (`AF_UNIX`), by path or abstract name.
    Unix,
}

/// The address of a socket: an IP address and port, or a Unix socket name.
///
/// Written as text, `127.0.0.1:8080` and `[::1]:8080` are IP addresses,
/// `unix:/run/app.sock` a Unix socket path (a NUL byte in it is refused: a
/// path ends at its first) and `unix:@name` a Linux abstract name.
///
/// # Examples
///
/// ```
/// use rolecore::Address;
///
/// let ip: Address = "127.0.0.1:8080".parse().unwrap();
/// assert_eq!(ip.inet().unwrap().port(), 8080);
///
/// let unix: Address = "unix:/tmp/echo.sock".parse().unwrap();
/// assert_eq!(unix.to_string(), "unix:/tmp/echo.sock");
///
/// assert!("localhost".parse::<Address>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix domain socket address.
    Unix(UnixAddress),
}

/// The name of a Unix domain socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixAddress {
    /// A path in the file system.
    Path(PathBuf),
    /// A Linux abstract name (no file; written `unix:@name`).
    Abstract(Vec<u8>),
    /// No name: the peer of an unbound client socket.
    Unnamed,
}

impl Address {
    /// The IP socket address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The address family a socket needs to bind or connect to this address.
    pub fn family(&self) -> Family {
        match self {
            Address::Inet(SocketAddr::V4(_)) => Family::Ipv4,
            Address::Inet(SocketAddr::V6(_)) => Family::Ipv6,
            Address::Unix(_) => Family::Unix,
        }
    }

    pub(crate) fn to_any(&self) -> io::Result<SocketAddrAny> {
        Ok(match self {
            Address::Inet(a) => SocketAddrAny::from(*a),
            Address::Unix(UnixAddress::Path(p)) => SocketAddrUnix::new(p.as_path())?.into(),
            Address::Unix(UnixAddress::Abstract(name)) => SocketAddrUnix::new_abstract_name(name)?.into(),
            Address::Unix(UnixAddress::Unnamed) => SocketAddrUnix::new_unnamed().into(),
        })
    }

    /// `error`, from a bind, connect or send of `fd` to this address, said
    /// again when its cause is that the socket is of another family (a
    /// `tcp_v4()` socket connecting to `[::1]:80`): the kernel's
    /// "Address family not supported by protocol" or "Invalid argument",
    /// of no fitting kind, names neither the socket nor the address.
    /// Asked only after a failure.
    #[cold]
    pub(crate) fn explain_failure(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        op: &str,
        error: io::Error,
    ) -> io::Error {
        use rustix::net::AddressFamily;
        let socket = match rustix::net::sockopt::socket_domain(fd) {
            Ok(AddressFamily::INET) => Family::Ipv4,
            Ok(AddressFamily::INET6) => Family::Ipv6,
            Ok(AddressFamily::UNIX) => Family::Unix,
            _ => return error,
        };
        let wanted = self.family();
        if socket == wanted {
            return error;
        }
        let name = |family| match family {
            Family::Ipv4 => "an IPv4",
            Family::Ipv6 => "an IPv6",
            Family::Unix => "a Unix",
        };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot {op} {} socket to {self}, {} address: make the socket of the address's family \
                 (Channel::for_address(&address) for a stream, Channel::datagram(address.family()) for \
                 datagrams)",
                name(socket),
                name(wanted)
            ),
        )
    }

    pub(crate) fn from_any(any: SocketAddrAny) -> io::Result<Address> {
        if let Ok(inet) = SocketAddr::try_from(any.clone()) {
            return Ok(Address::Inet(inet));
        }
        let unix = SocketAddrUnix::try_from(any)?;
        Ok(Address::Unix(if let Some(path) = unix.path_bytes() {
            use std::os::unix::ffi::OsStrExt;
            // A path that fills `sun_path` but for its terminating NUL comes
            // back from rustix with that NUL: a path ends at its first NUL.
            let path = path.split(|&b| b == 0).next().unwrap_or_default();
            UnixAddress::Path(Path::new(std::ffi::OsStr::from_bytes(path)).to_path_buf())
        } else if let Some(name) = unix.abstract_name().filter(|n| !n.is_empty()) {
            // rustix reports an unnamed socket as an empty abstract name.
            UnixAddress::Abstract(name.to_vec())
        } else {
            UnixAddress::Unnamed
        }))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(a) => a.fmt(f),
            Address::Unix(UnixAddress::Path(p)) => write!(f, "unix:{}", p.display()),
            Address::Unix(UnixAddress::Abstract(name)) => {
                write!(f, "unix:@{}", String::from_utf8_lossy(name))
            }
            Address::Unix(UnixAddress::Unnamed) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// The error of parsing an [`Address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAddressError {
    input: String,
}

impl fmt::Display for ParseAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid address {:?}: expected IP:PORT (127.0.0.1:8080, [::1]:8080), \
             unix:PATH or unix:@ABSTRACT_NAME",
            self.input
        )
    }
}

impl std::error::Error for ParseAddressError {}

impl From<ParseAddressError> for io::Error {
    fn from(e: ParseAddressError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl FromStr for Address {
    type Err = ParseAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddressError { input: s.to_owned() };
        if let Some(rest) = s.strip_prefix("unix:") {
            return match rest.strip_prefix('@') {
                Some(name) if !name.is_empty() => {
                    Ok(Address::Unix(UnixAddress::Abstract(name.as_bytes().to_vec())))
                }
                Some(_) => Err(err()),
                // A socket path ends at its first NUL: one inside it could
                // name no socket (the kernel refuses it, "Invalid argument").
                None if rest.is_empty() || rest.contains('\0') => Err(err()),
                None => Ok(Address::Unix(UnixAddress::Path(PathBuf::from(rest)))),
            };
        }
        s.parse::<SocketAddr>().map(Address::Inet).map_err(|_| err())
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Inet(a)
    }
}

impl From<SocketAddrV4> for Address {
    fn from(a: SocketAddrV4) -> Address {
        Address::Inet(a.into())
    }
}

impl From<SocketAddrV6> for Address {
    fn from(a: SocketAddrV6) -> Address {
        Address::Inet(a.into())
    }
}

impl From<UnixAddress> for Address {
    fn from(a: UnixAddress) -> Address {
        Address::Unix(a)
    }
}

/// Anything that names a socket address: an [`Address`], a
/// [`SocketAddr`], an `(ip, port)` pair, or a string in [`Address`]'s syntax.
///
/// Strings are parsed, not resolved: rolecore never blocks on DNS.
pub trait ToAddress {
    /// The address, or an `InvalidInput` error saying what was wrong.
    fn to_address(&self) -> io::Result<Address>;
}

impl ToAddress for Address {
    fn to_address(&self) -> io::Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> io::Result<Address> {
        Ok(self.parse::<Address>()?)
    }
}

impl ToAddress for String {
    fn to_address(&self) -> io::Result<Address> {
        self.as_str().to_address()
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> io::Result<Address> {
        (**self).to_address()
    }
}

macro_rules! to_address_via_socket_addr {
    ($($t:ty),*) => {$(
        impl ToAddress for $t {
            fn to_address(&self) -> io::Result<Address> {
                Ok(Address::Inet(SocketAddr::from(*self)))
            }
        }
    )*};
}
to_address_via_socket_addr!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToAddress for UnixAddress {
    fn to_address(&self) -> io::Result<Address> {
        Ok(Address::Unix(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("[::1]:9".parse::<Address>().unwrap().family(), Family::Ipv6);
        assert_eq!(
            "unix:@abc".parse::<Address>().unwrap(),
            Address::Unix(UnixAddress::Abstract(b"abc".to_vec()))
        );
        for bad in ["", "unix:", "unix:@", "1.2.3.4", "host:80", "unix:/tmp/a\0b", "unix:\0"] {
            let e = bad.parse::<Address>().unwrap_err();
            assert!(e.to_string().contains("expected IP:PORT"), "{bad}");
        }
    }

    /// An unnamed Unix address (a socketpair's end, an unbound sender)
    /// stays unnamed through rustix, prints as `unix:(unnamed)` (not as an
    /// empty path or abstract name), and is not what any text parses to.
    #[test]
    fn an_unnamed_unix_address_round_trips_and_prints_as_unnamed() {
        let unnamed = Address::Unix(UnixAddress::Unnamed);
        assert_eq!(Address::from_any(unnamed.to_any().unwrap()).unwrap(), unnamed);
        assert_eq!(unnamed.to_string(), "unix:(unnamed)");
        assert_eq!(unnamed.family(), Family::Unix);
        assert_eq!(unnamed.inet(), None);
        assert!("unix:(unnamed)".parse::<Address>().is_ok_and(|a| a != unnamed));
        assert_eq!(UnixAddress::Unnamed.to_address().unwrap(), unnamed);
    }

    #[test]
    fn round_trips_through_rustix() {
        for text in ["127.0.0.1:80", "[::1]:443", "unix:/tmp/x.sock", "unix:@name"] {
            let a: Address = text.parse().unwrap();
            assert_eq!(Address::from_any(a.to_any().unwrap()).unwrap(), a);
            assert_eq!(a.to_string(), text);
        }
    }
}
