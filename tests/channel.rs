//! Channel-level promises: role checks on adoption, errors that give the
//! channel back, non-blocking close-on-exec descriptors.

#[macro_use]
mod util;

use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};

use rolecore::{Backend, Channel, Connected, FileFd, Listening, SockType};
use util::cpython::*;

fn is_nonblocking(fd: impl AsFd) -> bool {
    rustix_like_flags(fd).0
}

fn is_cloexec(fd: impl AsFd) -> bool {
    rustix_like_flags(fd).1
}

/// Reads O_NONBLOCK and FD_CLOEXEC through /proc (the tests do not depend on rustix).
fn rustix_like_flags(fd: impl AsFd) -> (bool, bool) {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
    let flags = u32::from_str_radix(flags, 8).unwrap();
    (flags & 0o4000 != 0, flags & 0o2000000 != 0)
}

#[test]
fn a_socket_cannot_pass_for_a_file() {
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
    let err = Channel::file(OwnedFd::from(listener)).unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("try_from"), "the error says what to do: {err}");
    // The descriptor comes back, still a listening socket.
    let back = Channel::<Listening>::try_from(err.into_inner()).unwrap();
    assert!(back.local_addr().is_ok());
}

#[test]
fn adopting_an_owned_fd_checks_its_role() {
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let err = Channel::<Connected>::try_from(OwnedFd::from(std_listener)).unwrap_err();
    assert!(err.to_string().contains("listening"), "{err}");
    let listener = Channel::<Listening>::try_from(err.into_inner()).unwrap();
    assert!(is_nonblocking(&listener), "adopted listeners are made non-blocking");

    let stream = TcpStream::connect(addr).unwrap();
    let err = Channel::<Listening>::try_from(OwnedFd::from(stream.try_clone().unwrap())).unwrap_err();
    assert!(err.to_string().contains("not listening"), "{err}");
    let connected = Channel::<Connected>::try_from(stream).unwrap();
    assert_eq!(connected.peer_addr().unwrap().inet(), Some(addr));

    let (pipe_reader, _w) = std::io::pipe().unwrap();
    let err = Channel::<Connected>::try_from(OwnedFd::from(pipe_reader)).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    let file: Channel<FileFd> = Channel::file(err.into_inner()).unwrap();
    assert!(!file.is_regular_file());
}

#[test]
fn created_and_accepted_sockets_are_nonblocking_and_cloexec() {
    let mut listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
    assert!(is_nonblocking(&listener) && is_cloexec(&listener));
    let addr = listener.local_addr().unwrap().inet().unwrap();
    assert!(listener.accept().unwrap().is_none(), "nothing pending: None, not an error");
    let _client = TcpStream::connect(addr).unwrap();
    let (conn, peer) = (0..500)
        .find_map(|_| {
            let pair = listener.accept().unwrap();
            if pair.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            pair
        })
        .expect("the connection is accepted within 5 s");
    assert!(peer.inet().is_some());
    assert!(is_nonblocking(&conn) && is_cloexec(&conn));
    conn.close();
}

#[test]
fn a_failed_connect_gives_the_fresh_channel_back() {
    let err = Channel::tcp_v4().unwrap().connect("[::1]:1").unwrap_err();
    // An IPv6 address on an IPv4 socket: refused at once, channel returned.
    let fresh = err.into_inner();
    assert!(fresh.bind("127.0.0.1:0").is_ok());
    let err = Channel::tcp_v4().unwrap().bind("not an address").unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::InvalidInput);
}

/// A socket given an address of another family (a `tcp_v4()` socket and
/// `[::1]:80`, a Unix socket and an IP address) used to fail with the
/// kernel's words alone: "Address family not supported by protocol", of
/// kind `Uncategorized`, or "Invalid argument", naming neither the socket
/// nor the address. Every bind, connect and send to an address now says
/// both families and what to do, as an `InvalidInput` error; the channel
/// comes back usable. So does `listen` on a Unix socket never bound.
#[test]
fn an_address_of_another_family_than_the_socket_is_a_clear_error() {
    fn says(error: &io::Error, socket: &str, address: &str) {
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        let text = error.to_string();
        assert!(text.contains(&format!("{socket} socket")), "names the socket's family: {text}");
        assert!(text.contains(&format!("{address} address")), "names the address's family: {text}");
        assert!(text.contains("Channel::for_address"), "says what to do: {text}");
    }
    let unix = format!("unix:@rolecore-family-{}", std::process::id());
    let unix = unix.as_str();
    let err = Channel::tcp_v4().unwrap().connect("[::1]:1").unwrap_err();
    says(err.error(), "an IPv4", "an IPv6");
    assert!(err.into_inner().bind("127.0.0.1:0").is_ok(), "the channel comes back usable");
    let err = Channel::tcp_v4().unwrap().bind("[::1]:0").unwrap_err();
    says(err.error(), "an IPv4", "an IPv6");
    let err = Channel::tcp_v6().unwrap().connect("127.0.0.1:1").unwrap_err();
    says(err.error(), "an IPv6", "an IPv4");
    let err = Channel::unix_stream().unwrap().connect("127.0.0.1:1").unwrap_err();
    says(err.error(), "a Unix", "an IPv4");
    let err = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().connect(unix).unwrap_err();
    says(err.error(), "an IPv4", "a Unix");
    let err = Channel::udp_v4().unwrap().bind("[::1]:0").unwrap_err();
    says(err.error(), "an IPv4", "an IPv6");
    let err = Channel::unix_datagram().unwrap().connect("127.0.0.1:9").unwrap_err();
    says(err.error(), "a Unix", "an IPv4");
    let mut udp = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    says(&udp.send_to(b"x", "[::1]:9").unwrap_err(), "an IPv4", "an IPv6");
    // A Unix socket has no port for the kernel to pick: `listen` unbound
    // failed with a bare "Invalid argument".
    let err = Channel::unix_stream().unwrap().listen(5).unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::InvalidInput, "{}", err.error());
    assert!(err.to_string().contains("bind it to a path"), "says what to do: {err}");
    assert!(err.into_inner().bind(unix).unwrap().listen(5).is_ok(), "the channel comes back usable");
    // An error of the right family keeps the kernel's own words.
    let taken = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(1).unwrap();
    let port = taken.local_addr().unwrap();
    let err = Channel::tcp_v4().unwrap().bind(&port).unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::AddrInUse, "{}", err.error());
}

/// A Unix socket path as long as `sun_path` holds (107 bytes and its NUL)
/// is named back by `local_addr` as it was bound, and a client reaches the
/// listener at the address `local_addr` gave. It came back with the NUL at
/// its end (`unix:/…\0`), an address no connect could use ("Invalid
/// argument"). A NUL inside a path given as text is refused when parsed.
#[test]
fn a_unix_path_that_fills_the_socket_address_is_named_back_as_it_was_bound() {
    let dir = std::env::temp_dir();
    let stem = util::temp_path("sock").file_name().unwrap().to_string_lossy().into_owned();
    let pad =
        107usize.checked_sub(dir.as_os_str().len() + 1 + stem.len()).expect("a short temporary directory");
    let path = dir.join(format!("{stem}{}", "s".repeat(pad)));
    assert_eq!(path.as_os_str().len(), 107);
    let address: rolecore::Address = format!("unix:{}", path.display()).parse().unwrap();

    let listener = Channel::unix_stream().unwrap().bind(&address).unwrap().listen(1).unwrap();
    let named = listener.local_addr().unwrap();
    let client = Channel::unix_stream().unwrap().connect(&named).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    assert_eq!(named, address, "{named:?}");
    assert!(client.is_ok(), "connecting to {named:?}: {:?}", client.err());

    let inner = format!("unix:{}\0tail", dir.join(stem).display());
    assert!(inner.parse::<rolecore::Address>().is_err(), "a NUL inside a path parses");
}

#[test]
fn dup_file_leaves_the_original_to_the_caller() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let mut dup = Channel::dup_file(&reader).unwrap();
    assert!(is_cloexec(&dup));
    assert!(is_nonblocking(&reader), "O_NONBLOCK is shared with the original");
    std::io::Write::write_all(&mut writer, b"hi").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(dup.recv(&mut buf).unwrap(), 2);
    drop(dup);
    std::io::Write::write_all(&mut writer, b"!").unwrap();
    assert_eq!(std::io::Read::read(&mut &reader, &mut buf).unwrap(), 1, "the original is still open");
}

#[test]
fn two_listeners_share_a_port_with_reuse_port() {
    let first =
        Channel::tcp_v4().unwrap().set_reuse_port().unwrap().bind("127.0.0.1:0").unwrap().listen(8).unwrap();
    let addr = first.local_addr().unwrap();
    let second = Channel::tcp_v4().unwrap().set_reuse_port().unwrap().bind(&addr).unwrap().listen(8).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    let err = Channel::tcp_v4().unwrap().bind(&addr).unwrap_err();
    assert_eq!(err.error().kind(), ErrorKind::AddrInUse, "without the option the port is taken");
}

#[test]
fn connected_channels_are_std_read_and_write() {
    use std::io::{Read, Write};
    let (mut a, mut b) = Channel::pair().unwrap();
    a.write_all(b"through std").unwrap();
    let mut got = [0u8; 11];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"through std");
    // A full socket is WouldBlock, as std's non-blocking sockets report it.
    let chunk = [0u8; 65536];
    let mut written = 0;
    let err = loop {
        match a.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
    };
    assert!(written > 0, "the socket took some before it filled");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    let mut empty = [0u8; 4];
    let (_c, mut d) = Channel::pair().unwrap();
    assert_eq!(d.read(&mut empty).unwrap_err().kind(), ErrorKind::WouldBlock);
}

/// T7 `test_repr` (A15): `repr(dispatcher())` named the class and the
/// object. rolecore's `Debug` names the role and the descriptor; a channel
/// without a socket (`<asyncore.dispatcher at 0x…>`) does not exist (D9,
/// `tests/ui/d09_no_default_channel.rs`).
#[test]
fn t07_repr() {
    let fresh = Channel::tcp_v4().unwrap();
    assert_eq!(format!("{fresh:?}"), format!("Channel<Fresh>(fd {})", fresh.fileno()));
    let bound = fresh.bind("127.0.0.1:0").unwrap();
    assert_eq!(format!("{bound:?}"), format!("Channel<Bound>(fd {})", bound.fileno()));
    let listening = bound.listen(1).unwrap();
    assert_eq!(format!("{listening:?}"), format!("Channel<Listening>(fd {})", listening.fileno()));
    let connecting = Channel::tcp_v4().unwrap().connect(listening.local_addr().unwrap()).unwrap();
    assert_eq!(format!("{connecting:?}"), format!("Channel<Connecting>(fd {})", connecting.fileno()));
    let (connected, _peer) = Channel::pair().unwrap();
    assert_eq!(format!("{connected:?}"), format!("Channel<Connected>(fd {})", connected.fileno()));
    let (reader, _writer) = std::io::pipe().unwrap();
    let file = Channel::file(reader.into()).unwrap();
    assert_eq!(format!("{file:?}"), format!("Channel<FileFd>(fd {})", file.fileno()));
}

fn t28(_backend: Backend, fam: Fam) {
    let s = Channel::create_socket(fam.family(), SockType::Stream).expect("create_socket");
    assert_eq!(rustix::net::sockopt::socket_type(&s).unwrap(), rustix::net::SocketType::STREAM);
    let domain = rustix::net::sockopt::socket_domain(&s).unwrap();
    let expected = match fam {
        Fam::Ipv4 => rustix::net::AddressFamily::INET,
        Fam::Ipv6 => rustix::net::AddressFamily::INET6,
        Fam::Unix => rustix::net::AddressFamily::UNIX,
    };
    assert_eq!(domain, expected, "the family asked for");
    let flags = rustix::fs::fcntl_getfl(&s).unwrap();
    assert!(flags.contains(rustix::fs::OFlags::NONBLOCK), "non-blocking (gettimeout() == 0)");
    let fd_flags = rustix::io::fcntl_getfd(&s).unwrap();
    assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC), "not inheritable");
}

ported! {
    /// T28 `test_create_socket` (A18): a stream socket of the family asked
    /// for, non-blocking and close-on-exec. (No loop: the backend plays no
    /// part, as in CPython's six variants.)
    t28_create_socket => t28, [ipv4, ipv6, unix]
}

fn t29(_backend: Backend, fam: Fam) {
    let (addr, _file) = bind_address(fam);
    let s1 = Channel::create_socket(fam.family(), SockType::Stream)
        .unwrap()
        .bind(&addr)
        .unwrap()
        .listen(5)
        .unwrap();
    let taken = s1.local_addr().unwrap();
    let s2 = Channel::create_socket(fam.family(), SockType::Stream).unwrap();
    let err = s2.bind(&taken).expect_err("EADDRINUSE: the first socket holds the port");
    assert_eq!(err.error().kind(), io::ErrorKind::AddrInUse, "{err}");
    // The failed bind gives the fresh socket back: it can bind elsewhere.
    let s2 = err.into_inner();
    let s2 = s2.bind(&addr).expect("another port");
    assert_ne!(s2.local_addr().unwrap(), taken);
}

ported! {
    /// T29 `test_bind` (A23, D6): binding a port another socket listens on
    /// fails with `AddrInUse`; the `RoleError` hands the socket back (asyncore
    /// had already overwritten `addr`). Not for Unix sockets, as in CPython.
    t29_bind => t29, [ipv4, ipv6]
}

fn t30(_backend: Backend, fam: Fam) {
    let s = Channel::create_socket(fam.family(), SockType::Stream).unwrap();
    assert!(!rustix::net::sockopt::socket_reuseaddr(&s).unwrap(), "SO_REUSEADDR is off at first");
    let s = s.set_reuse_addr().expect("set_reuse_addr");
    assert!(rustix::net::sockopt::socket_reuseaddr(&s).unwrap(), "and on after set_reuse_addr()");
}

ported! {
    /// T30 `test_set_reuse_addr` (A14, A18, A20): `set_reuse_addr` sets
    /// `SO_REUSEADDR` (and would report a failure; asyncore swallowed it).
    /// CPython closed the socket behind the dispatcher before
    /// `create_socket`, leaving a stale map entry: a channel owns its socket,
    /// so that cannot happen. Not for Unix sockets, as in CPython.
    t30_set_reuse_addr => t30, [ipv4, ipv6]
}

/// Every descriptor rolecore creates is non-blocking and close-on-exec from
/// the start, not only listeners and accepted streams: datagram sockets of
/// every family (bound, unbound, connected), and both ends of the stream
/// and datagram socket pairs. A descriptor without close-on-exec leaks
/// into every child the program spawns.
#[test]
fn datagram_sockets_and_socket_pairs_are_nonblocking_and_cloexec() {
    let udp4 = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap();
    let udp6 = Channel::udp_v6().unwrap().without_bind();
    let unix = Channel::unix_datagram().unwrap();
    let connected = Channel::udp_v4().unwrap().connect(udp4.local_addr().unwrap()).unwrap();
    let (d1, d2) = Channel::datagram_pair().unwrap();
    let (s1, s2) = Channel::pair().unwrap();
    let fds: [(&str, std::os::fd::BorrowedFd<'_>); 8] = [
        ("udp v4, bound", udp4.as_fd()),
        ("udp v6, unbound", udp6.as_fd()),
        ("unix datagram", unix.as_fd()),
        ("udp v4, connected", connected.as_fd()),
        ("datagram pair, first", d1.as_fd()),
        ("datagram pair, second", d2.as_fd()),
        ("stream pair, first", s1.as_fd()),
        ("stream pair, second", s2.as_fd()),
    ];
    for (what, fd) in fds {
        assert_eq!(rustix_like_flags(fd), (true, true), "{what}: (non-blocking, close-on-exec)");
    }
}

/// Records whether a connect completed or failed, and the failure's kind.
struct ConnectOutcome(util::Log);

impl rolecore::StreamHandler for ConnectOutcome {
    fn handle_connect(&mut self, _: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> io::Result<()> {
        self.0.push("connect");
        Ok(())
    }
    fn handle_connect_failed(&mut self, error: io::Error, _: &mut rolecore::Ctx<'_>) {
        self.0.push(format!("connect failed: {:?}", error.kind()));
    }
    fn handle_read(&mut self, _: &mut Channel<Connected>, _: &mut rolecore::Ctx<'_>) -> io::Result<()> {
        self.0.push("read");
        Ok(())
    }
}

/// A refused connect whose error someone else already read from
/// `SO_ERROR` (which clears it) is still a refusal: the completion check
/// finds no peer (`getpeername`: `ENOTCONN`) and the loop reports
/// `handle_connect_failed` with `ConnectionRefused` (not the `NotConnected`
/// that `getpeername` said), never `handle_connect`, on every backend.
#[test]
fn a_refused_connect_whose_error_was_already_read_is_still_a_refusal() {
    for backend in util::backends() {
        let connecting = Channel::tcp_v4().unwrap().connect(util::closed_port()).unwrap();
        // A duplicate of the socket, to read (and clear) its error as
        // another reader would; the refusal comes at once on loopback.
        let dup = TcpStream::from(connecting.as_fd().try_clone_to_owned().unwrap());
        let mut error = None;
        for _ in 0..500 {
            error = dup.take_error().unwrap();
            if error.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(error.map(|e| e.kind()), Some(ErrorKind::ConnectionRefused), "{backend}");
        assert!(dup.take_error().unwrap().is_none(), "{backend}: reading SO_ERROR cleared it");
        drop(dup);
        let log = util::Log::default();
        let mut map = util::map(backend);
        map.insert(connecting, ConnectOutcome(log.clone())).unwrap();
        assert!(util::run_until(&mut map, |_| !log.events().is_empty()), "{backend}: no outcome");
        assert_eq!(log.events(), ["connect failed: ConnectionRefused"], "{backend}");
        assert!(map.is_empty(), "{backend}: the refused channel left the map");
    }
}
