//! Channel-level promises: role checks on adoption, errors that give the
//! channel back, non-blocking close-on-exec descriptors.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};

use rolecore::{Channel, Connected, FileFd, Listening};

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
