//! More rules of the in-memory transport, as a Linux Unix
//! stream socket has them, seen through the crate's own functions: what a
//! shut-down reading side reports, partial reads and writes with small
//! buffers, a half-close that still takes replies, and refused connects.

use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;

use super::tests::{established, sizes};
use super::{
    Link, Sizes, accept, connect, connect_result, descriptor_for, listener, pair, pending, readiness, recv,
    recv_all_append, send, send_room, set_link, shutdown,
};
use crate::readiness::{Interest, Readiness};

const ALL: Interest = Interest::READ.add(Interest::WRITE).add(Interest::PRIORITY);

/// A side that shut its reading down is readable (its receives give the
/// end of stream at once), as a socket after `shutdown(SHUT_RD)`: a loop
/// waiting for readability learns of it.
#[test]
fn a_shut_reading_side_is_readable_and_reads_the_end() {
    let (a, _b) = pair(sizes(16, 16), Link::Established).unwrap();
    let fd = descriptor_for(&a).unwrap();
    assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::EMPTY), "nothing to read yet");
    shutdown(&a, true, false).unwrap();
    assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::READABLE));
    let mut buf = [0u8; 4];
    assert_eq!(recv(&a, &mut buf, false), Ok(0));
}

/// Small buffers: each send takes at most the connection's bytes per call
/// and the room left, each receive at most its buffer and the bytes per
/// call; every byte arrives once, in order, and the sender is writable
/// again as soon as the receiver made room.
#[test]
fn small_buffers_move_every_byte_once_in_order() {
    let (a, b) = pair(Sizes { cap: [5, 7], chunk: [2, 3] }, Link::Established).unwrap();
    let fd_a = descriptor_for(&a).unwrap();
    let data: Vec<u8> = (0..200u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 1000, "no progress: {sent} sent, {} received", got.len());
        // Side 0 (a) sends toward side 1: at most 3 per call, 7 queued.
        let room = send_room(&a);
        assert!(room <= 3);
        if sent < data.len() {
            match send(&a, &data[sent..], false) {
                Ok(n) => {
                    assert!(n >= 1 && n == room.min(data.len() - sent), "sent {n}, room {room}");
                    sent += n;
                }
                Err(e) => {
                    assert_eq!((e, room), (Errno::AGAIN, 0));
                    let r = readiness(fd_a.as_fd(), Interest::WRITE).unwrap();
                    assert!(!r.is_writable(), "writable while full");
                }
            }
        }
        assert!(pending(&b) <= 7, "over the capacity: {}", pending(&b));
        let mut buf = [0u8; 2];
        match recv(&b, &mut buf, false) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e, Errno::AGAIN),
        }
        if sent == data.len() && pending(&b) == 0 && got.len() < data.len() {
            panic!("bytes lost: {} of {}", got.len(), data.len());
        }
    }
    assert_eq!(got, data);
    assert!(readiness(fd_a.as_fd(), Interest::WRITE).unwrap().is_writable());
}

/// A half-close: the side that shut its sending side down still receives,
/// its peer reads the bytes sent before, then the end, and can still send
/// replies; the peer's readiness says readable (the end), not hung up, so
/// the loop reads the end rather than closing with replies unsent.
#[test]
fn a_half_close_reads_the_data_then_the_end_and_replies_still_flow() {
    let (a, b) = established();
    let fd_b = descriptor_for(&b).unwrap();
    send(&a, b"request", false).unwrap();
    shutdown(&a, false, true).unwrap();
    assert_eq!(send(&a, b"more", false), Err(Errno::PIPE), "no sending after shutting it down");
    let r = readiness(fd_b.as_fd(), ALL).unwrap();
    assert!(r.is_readable() && r.is_writable() && !r.is_closed(), "{r:?}");
    let mut buf = [0u8; 16];
    assert_eq!(recv(&b, &mut buf, false), Ok(7));
    assert_eq!(&buf[..7], b"request");
    assert_eq!(recv(&b, &mut buf, false), Ok(0), "then the end");
    assert_eq!(send(&b, b"reply", false), Ok(5));
    assert_eq!(recv(&a, &mut buf, false), Ok(5));
    assert_eq!(&buf[..5], b"reply");
}

/// A reset: the peer closed with our bytes unread. We read what it sent
/// first, then `ECONNRESET` once (readiness says error only once that data
/// is read), then the end; sending is `EPIPE`.
#[test]
fn a_reset_comes_after_the_data_and_only_once() {
    let (a, b) = established();
    let fd_a = descriptor_for(&a).unwrap();
    send(&a, b"unread", false).unwrap();
    send(&b, b"last", false).unwrap();
    drop(b);
    let r = readiness(fd_a.as_fd(), Interest::READ).unwrap();
    assert!(r.is_readable() && !r.is_error(), "data first: {r:?}");
    let mut buf = [0u8; 16];
    assert_eq!(recv(&a, &mut buf, false), Ok(4));
    assert!(readiness(fd_a.as_fd(), Interest::READ).unwrap().is_error());
    assert_eq!(recv(&a, &mut buf, false), Err(Errno::CONNRESET));
    assert_eq!(recv(&a, &mut buf, false), Ok(0));
    assert_eq!(send(&a, b"x", false), Err(Errno::PIPE));
}

/// The backlog: connects wait in it up to its size (then would block),
/// are accepted in order, and a connect to something that is not a
/// listener is refused.
#[test]
fn the_backlog_bounds_waiting_connects_and_accepts_in_order() {
    let l = listener(2).unwrap();
    let fd_l = descriptor_for(&l).unwrap();
    assert_eq!(readiness(fd_l.as_fd(), Interest::READ), Some(Readiness::EMPTY));
    let p1 = connect(l.id(), sizes(16, 16)).unwrap();
    assert_eq!(readiness(fd_l.as_fd(), Interest::READ), Some(Readiness::READABLE));
    let p2 = connect(l.id(), sizes(16, 16)).unwrap();
    let full = connect(l.id(), sizes(16, 16)).unwrap_err();
    assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
    send(&p1, b"1", false).unwrap();
    send(&p2, b"2", false).unwrap();
    let mut buf = [0u8; 4];
    let (s1, _fd1) = accept(&l).unwrap().unwrap();
    assert_eq!(recv(&s1, &mut buf, false), Ok(1));
    assert_eq!(buf[0], b'1', "first in, first accepted");
    // Room again: one more connect waits.
    let _p3 = connect(l.id(), sizes(16, 16)).unwrap();
    let (s2, _fd2) = accept(&l).unwrap().unwrap();
    assert_eq!(recv(&s2, &mut buf, false), Ok(1));
    assert_eq!(buf[0], b'2');
    let refused = connect(s1.id(), sizes(16, 16)).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "not a listener");
}

/// A connect in progress is neither readable nor writable and its result
/// is not yet success; refused, it is writable with an error and a
/// hang-up, and its result is `ConnectionRefused`; completed, it is
/// writable and succeeds.
#[test]
fn a_pending_connect_resolves_to_refused_or_established() {
    let (a, _b) = pair(sizes(16, 16), Link::Pending).unwrap();
    let fd = descriptor_for(&a).unwrap();
    assert_eq!(readiness(fd.as_fd(), ALL), Some(Readiness::EMPTY));
    assert!(connect_result(&a).is_err());
    set_link(&a, Link::Refused);
    let r = readiness(fd.as_fd(), ALL).unwrap();
    assert!(r.is_writable() && r.is_error() && r.is_closed(), "{r:?}");
    assert_eq!(connect_result(&a).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    let (c, _d) = pair(sizes(16, 16), Link::Pending).unwrap();
    set_link(&c, Link::Established);
    assert!(connect_result(&c).is_ok());
    assert_eq!(send(&c, b"hi", false), Ok(2));
}

/// Reading everything stops at the end of the stream (and after a reset):
/// it takes what was sent, then returns, however many times it is called.
/// Run on a thread of its own (the table is per thread) and waited for a
/// bounded time, so that a read that never stops fails instead of hanging.
#[test]
fn reading_everything_stops_at_the_end_of_the_stream() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (a, b) = established();
        send(&a, b"last words", false).unwrap();
        shutdown(&a, false, true).unwrap();
        let mut got = Vec::new();
        let first = recv_all_append(&b, &mut got);
        let again = recv_all_append(&b, &mut got);
        let (c, d) = established();
        send(&c, b"x", false).unwrap();
        send(&d, b"unread", false).unwrap();
        drop(c);
        let reset = recv_all_append(&d, &mut got);
        let _ = done.send((first, again, reset, got));
    });
    let (first, again, reset, got) =
        finished.recv_timeout(std::time::Duration::from_secs(10)).expect("recv_all_append never returned");
    assert_eq!((first, again, reset), (10, 0, 1));
    assert_eq!(got, b"last wordsx");
}
