//! Layer 1: byte streams in memory, the simulation's network.
//!
//! A simulated connection is two bounded queues of bytes, one per
//! direction, shared by its two ends through this thread's table. A
//! [`Channel`](crate::Channel) in a role can hold one end instead of a
//! kernel socket: it keeps its descriptor (a duplicate of one placeholder,
//! `/dev/null`, so that the map's table, indexed by descriptor number, and
//! `AsFd` work unchanged) and an [`End`] naming its place here. Its I/O then
//! comes here instead of the kernel, with the kernel's answers: would-block,
//! end of stream, `ECONNRESET`, `EPIPE`, `EMFILE`. The simulation's poller
//! asks [`readiness`] for these descriptors and never hands them to the
//! kernel.
//!
//! The rules are those of Linux Unix stream sockets, which the simulation
//! used before; [`pipe`] holds them, one connection at a time, and [`net`]
//! the thread's table of ends and connections that these functions reach.
//!
//! Why a table per thread, named by a 16-bit id stored in the channel's
//! padding: a channel stays the size of a `u64` and `Send`, the real path
//! pays one byte comparison per send and receive, and a map's loop runs on
//! one thread, as the simulation does. An end belongs to the thread that
//! made it: on a thread with no simulation its I/O answers `ENOTCONN`; on
//! another thread's simulation the id would name that thread's end, so a
//! simulated channel must not be sent to another thread (the simulation
//! never does).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use crate::readiness::{Interest, Readiness};
pub(crate) use net::End;
use net::{NET, Net, Slot};
use pipe::Conn;
pub(crate) use pipe::{Link, Sizes};

mod net;
mod pipe;

/// A descriptor for a new in-memory channel: a duplicate of this thread's
/// placeholder, registered under `end`, so the map's table (indexed by
/// descriptor number) has a number of its own for it. No socket is opened.
pub(crate) fn descriptor_for(end: &End) -> io::Result<OwnedFd> {
    NET.with_borrow_mut(|net| {
        let fd = net.placeholder()?;
        net.bind_fd(end.id(), fd.as_fd());
        Ok(fd)
    })
}

/// Opens this thread's placeholder descriptor now, if it is not open yet
/// (a simulation counts descriptors after this).
pub(crate) fn prepare() -> io::Result<()> {
    NET.with_borrow_mut(|net| net.placeholder().map(drop))
}

/// How many in-memory ends are open on this thread (channels, listeners
/// and peers): a simulation's leak check, with no system call.
pub(crate) fn open_ends() -> usize {
    NET.with_borrow(Net::open_ends)
}

/// Whether `fd` is an in-memory channel's descriptor on this thread.
pub(crate) fn is_memory_fd(fd: BorrowedFd<'_>) -> bool {
    NET.with_borrow(|net| net.end_of(fd).is_some())
}

/// A listener with room for `backlog` connections waiting to be accepted.
pub(crate) fn listener(backlog: usize) -> io::Result<End> {
    NET.with_borrow_mut(|net| {
        net.alloc(Slot::Listener {
            backlog: VecDeque::new(),
            max_backlog: backlog.max(1),
            exhaust: 0,
            fd: None,
        })
    })
}

/// A peer connects to `listener`: the connection waits in its backlog and
/// the peer's end (side 1) is returned. `WouldBlock` when the backlog is
/// full (a Unix connect's `EAGAIN`), `ConnectionRefused` when `listener`
/// is not a listening end.
pub(crate) fn connect(listener: u16, sizes: Sizes) -> io::Result<End> {
    NET.with_borrow_mut(|net| {
        match net.slot(listener) {
            Some(Slot::Listener { backlog, max_backlog, .. }) if backlog.len() >= *max_backlog => {
                return Err(io::Error::from(Errno::AGAIN));
            }
            Some(Slot::Listener { .. }) => {}
            _ => return Err(io::Error::from(Errno::CONNREFUSED)),
        }
        let index = net.new_conn(Conn::new(sizes, Link::Established));
        let peer = match net.alloc(Slot::Stream { conn: index, side: 1, fd: None }) {
            Ok(peer) => peer,
            Err(e) => {
                net.drop_conn(index);
                return Err(e);
            }
        };
        if let Some(Slot::Listener { backlog, .. }) = net.slot_mut(listener) {
            backlog.push_back(index);
        }
        Ok(peer)
    })
}

/// A connection made from the map's side: its end (side 0, to wrap in a
/// connecting channel) and the peer's (side 1), in state `link`.
pub(crate) fn pair(sizes: Sizes, link: Link) -> io::Result<(End, End)> {
    NET.with_borrow_mut(|net| {
        let index = net.new_conn(Conn::new(sizes, link));
        let ours = net.alloc(Slot::Stream { conn: index, side: 0, fd: None })?;
        match net.alloc(Slot::Stream { conn: index, side: 1, fd: None }) {
            Ok(theirs) => Ok((ours, theirs)),
            Err(e) => {
                net.unalloc(ours);
                net.drop_conn(index);
                Err(e)
            }
        }
    })
}

/// Sets the state of a connection made with [`pair`] (a slow connect
/// completes, or is refused).
pub(crate) fn set_link(end: &End, link: Link) {
    NET.with_borrow_mut(|net| {
        if let Ok((conn, _)) = net.stream(end.id()) {
            conn.link = link;
        }
    });
}

/// The state of `end`'s connection.
pub(crate) fn link(end: &End) -> Option<Link> {
    NET.with_borrow_mut(|net| net.stream(end.id()).ok().map(|(conn, _)| conn.link))
}

/// The next `n` accepts on the listener `listener` fail with `EMFILE`.
pub(crate) fn exhaust(listener: u16, n: u32) {
    NET.with_borrow_mut(|net| {
        if let Some(Slot::Listener { exhaust, .. }) = net.slot_mut(listener) {
            *exhaust = n;
        }
    });
}

/// Takes the next connection from `listener`'s backlog: its end (side 0)
/// with its descriptor. `Ok(None)` when there is none.
pub(crate) fn accept(listener: &End) -> Result<Option<(End, OwnedFd)>, Errno> {
    NET.with_borrow_mut(|net| {
        let Some(Slot::Listener { backlog, exhaust, .. }) = net.slot_mut(listener.id()) else {
            return Err(Errno::INVAL);
        };
        let Some(&index) = backlog.front() else { return Ok(None) };
        if *exhaust > 0 {
            *exhaust -= 1;
            return Err(Errno::MFILE);
        }
        let fd = net.placeholder().map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::NOMEM))?;
        let end = net.alloc(Slot::Stream { conn: index, side: 0, fd: None }).map_err(|_| Errno::NOMEM)?;
        if let Some(Slot::Listener { backlog, .. }) = net.slot_mut(listener.id()) {
            backlog.pop_front();
        }
        net.bind_fd(end.id(), fd.as_fd());
        Ok(Some((end, fd)))
    })
}

/// Receives into `buf` (non-empty); `oob` reads the urgent byte.
pub(crate) fn recv(end: &End, buf: &mut [u8], oob: bool) -> Result<usize, Errno> {
    if oob {
        return NET.with_borrow_mut(|net| {
            let (conn, side) = net.stream(end.id())?;
            conn.receive_urgent(side, buf)
        });
    }
    receive(end, buf.len(), true, |front, back| {
        // Two slice copies, not a loop per byte: a fuzz target spends its
        // time here.
        buf[..front.len()].copy_from_slice(front);
        buf[front.len()..front.len() + back.len()].copy_from_slice(back);
    })
}

/// Receives up to `max` bytes (at least 1) onto the end of `out`, as
/// [`recv`] into a buffer of `max` would: a simulated peer reads into its
/// report without a buffer of `max` zeroed bytes (up to hundreds of
/// kilobytes) for each read.
pub(crate) fn recv_append(end: &End, out: &mut Vec<u8>, max: usize) -> Result<usize, Errno> {
    receive(end, max, true, |front, back| {
        out.extend_from_slice(front);
        out.extend_from_slice(back);
    })
}

/// Everything `end` receives until a receive returns no byte, onto the end
/// of `out`: how many bytes. What [`recv_append`] calls made until none
/// returned a byte would give, in the same order and leaving the
/// connection as they would (the last, empty receive is made too: it
/// reports a reset once), but in one call under one borrow of the table,
/// and in one receive however few bytes the connection moves per call:
/// the settling's peers read everything this way, and a byte per call was
/// once 200,000 calls per peer (before a direction's capacity was capped
/// at 64 calls' worth, it still is 64).
pub(crate) fn recv_all_append(end: &End, out: &mut Vec<u8>) -> usize {
    NET.with_borrow_mut(|net| {
        let mut got = 0;
        while let Ok(n @ 1..) = receive_in(net, end, usize::MAX, false, |front, back| {
            out.extend_from_slice(front);
            out.extend_from_slice(back);
        }) {
            got += n;
        }
        got
    })
}

/// An ordinary receive of up to `max` bytes (and of at most the
/// connection's bytes per call, when `chunked`): see [`Conn::receive`].
fn receive(end: &End, max: usize, chunked: bool, take: impl FnOnce(&[u8], &[u8])) -> Result<usize, Errno> {
    NET.with_borrow_mut(|net| receive_in(net, end, max, chunked, take))
}

/// [`receive`], in the table `net`.
fn receive_in(
    net: &mut Net,
    end: &End,
    max: usize,
    chunked: bool,
    take: impl FnOnce(&[u8], &[u8]),
) -> Result<usize, Errno> {
    let (conn, side) = net.stream(end.id())?;
    conn.receive(side, max, chunked, take)
}

/// How many bytes an ordinary send from `end` would take now: 0 when it
/// would fail or block. A simulated peer makes only that many of its
/// traffic's bytes, not all it was told it may write.
pub(crate) fn send_room(end: &End) -> usize {
    NET.with_borrow_mut(|net| net.stream(end.id()).and_then(|(conn, side)| conn.room(side)).unwrap_or(0))
}

/// Sends `data`; `oob` sends it as urgent data (its last byte urgent).
pub(crate) fn send(end: &End, data: &[u8], oob: bool) -> Result<usize, Errno> {
    NET.with_borrow_mut(|net| {
        net.sends = net.sends.wrapping_add(1);
        let (conn, side) = net.stream(end.id())?;
        conn.send(side, data, oob)
    })
}

/// How many sends were made on this thread, ever (wrapping): while it does
/// not change, no byte was queued anywhere, so a reader that took every
/// byte waiting for some ends would find none new for them.
pub(crate) fn sends() -> u64 {
    NET.with_borrow(|net| net.sends)
}

/// Shuts down `end`'s reading side, sending side, or both.
pub(crate) fn shutdown(end: &End, read: bool, write: bool) -> Result<(), Errno> {
    NET.with_borrow_mut(|net| {
        let (conn, side) = net.stream(end.id())?;
        conn.shutdown(side, read, write);
        Ok(())
    })
}

/// Bytes waiting to be read at `end` (`FIONREAD`).
pub(crate) fn pending(end: &End) -> usize {
    NET.with_borrow_mut(|net| net.stream(end.id()).map_or(0, |(conn, side)| conn.pending(side)))
}

/// The result of a connect from `end`, as `SO_ERROR` gives it.
pub(crate) fn connect_result(end: &End) -> io::Result<()> {
    match link(end) {
        Some(Link::Established) => Ok(()),
        Some(Link::Refused) => Err(io::Error::from(Errno::CONNREFUSED)),
        // Readiness without a completed connect (a spurious wake-up): the
        // kernel's answer is "no peer", which the loop takes for a refusal.
        Some(Link::Pending) | None => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
    }
}

/// The readiness of the in-memory channel on `fd`, for `interest` (hang-ups
/// and errors whatever the interest, as `poll` reports them); `None` when
/// `fd` is not one.
pub(crate) fn readiness(fd: BorrowedFd<'_>, interest: Interest) -> Option<Readiness> {
    probe(|net| net.readiness(fd, interest))
}

/// Runs `f` with this thread's in-memory channels borrowed once, to ask
/// [`Probe::readiness`] of many: a simulation's wait asks it of every
/// channel in the map, and a borrow of the thread's table per channel was
/// a visible share of a fuzz run. Nothing `f` does may change the table.
pub(crate) fn probe<T>(f: impl FnOnce(&Probe<'_>) -> T) -> T {
    NET.with_borrow(|net| f(&Probe(net)))
}

/// This thread's in-memory channels, read for their readiness ([`probe`]).
pub(crate) struct Probe<'n>(&'n Net);

impl Probe<'_> {
    /// What [`readiness`] says of `fd`.
    pub(crate) fn readiness(&self, fd: BorrowedFd<'_>, interest: Interest) -> Option<Readiness> {
        self.0.fd_readiness(fd, interest)
    }
}

#[cfg(test)]
mod socket_rules;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sizes(cap: usize, chunk: usize) -> Sizes {
        Sizes { cap: [cap; 2], chunk: [chunk; 2] }
    }

    /// A connection's two ends, established, 64 bytes each way.
    pub(super) fn established() -> (End, End) {
        pair(sizes(64, 64), Link::Established).unwrap()
    }

    #[test]
    fn bytes_flow_both_ways_in_bounded_chunks() {
        let (a, b) = pair(sizes(8, 3), Link::Established).unwrap();
        assert_eq!(send(&a, b"hello world", false), Ok(3));
        assert_eq!(send(&a, b"lo world", false), Ok(3));
        assert_eq!(send(&a, b" world", false), Ok(2), "the queue holds 8");
        assert_eq!(send(&a, b"world", false), Err(Errno::AGAIN));
        let mut buf = [0u8; 16];
        assert_eq!(recv(&b, &mut buf, false), Ok(3));
        assert_eq!(&buf[..3], b"hel");
        assert_eq!(pending(&b), 5);
        assert_eq!(recv(&a, &mut buf, false), Err(Errno::AGAIN));
        assert_eq!(send(&b, b"x", false), Ok(1));
        assert_eq!(recv(&a, &mut buf, false), Ok(1));
    }

    #[test]
    fn reading_all_takes_every_byte_in_one_call_whatever_the_chunk() {
        let (a, b) = pair(sizes(64, 1), Link::Established).unwrap();
        for byte in b"abcde" {
            assert_eq!(send(&a, &[*byte], false), Ok(1));
        }
        let mut got = b">".to_vec();
        assert_eq!(recv_append(&b, &mut got, 64), Ok(1), "an ordinary call takes one byte");
        assert_eq!(recv_all_append(&b, &mut got), 4);
        assert_eq!(got, b">abcde");
        assert_eq!(recv_all_append(&b, &mut got), 0);
        shutdown(&a, false, true).unwrap();
        assert_eq!(recv_all_append(&b, &mut got), 0, "the end of stream");
        assert_eq!(recv_append(&b, &mut got, 64), Ok(0));

        // The last, empty receive is made: a reset is reported there, once.
        let (a, b) = established();
        send(&a, b"data", false).unwrap();
        send(&b, b"unread", false).unwrap();
        drop(a);
        assert_eq!(recv_all_append(&b, &mut got), 4);
        assert_eq!(recv_append(&b, &mut got, 64), Ok(0), "the reset was reported");
    }

    #[test]
    fn closing_with_unread_input_resets_the_peer_after_its_data() {
        let (a, b) = established();
        send(&a, b"request", false).unwrap();
        send(&b, b"reply", false).unwrap();
        drop(b); // "request" unread
        let mut buf = [0u8; 16];
        assert_eq!(recv(&a, &mut buf, false), Ok(5), "what was sent arrives first");
        assert_eq!(recv(&a, &mut buf, false), Err(Errno::CONNRESET));
        assert_eq!(recv(&a, &mut buf, false), Ok(0), "then the end");
        assert_eq!(send(&a, b"more", false), Err(Errno::PIPE));
    }

    #[test]
    fn half_close_is_an_end_of_stream_that_still_takes_replies() {
        let (a, b) = established();
        shutdown(&b, false, true).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv(&a, &mut buf, false), Ok(0));
        assert_eq!(send(&a, b"late", false), Ok(4));
        assert_eq!(recv(&b, &mut buf, false), Ok(4));
        assert_eq!(send(&b, b"x", false), Err(Errno::PIPE));
    }

    #[test]
    fn a_second_urgent_byte_pushes_the_first_inline() {
        let (a, b) = established();
        send(&a, b"!", true).unwrap();
        send(&a, b"?", true).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv(&b, &mut buf, true), Ok(1));
        assert_eq!(buf[0], b'?');
        assert_eq!(recv(&b, &mut buf, true), Err(Errno::INVAL));
        assert_eq!(recv(&b, &mut buf, false), Ok(1));
        assert_eq!(buf[0], b'!');
    }

    #[test]
    fn accept_takes_the_backlog_in_order_and_fails_when_told() {
        let l = listener(2).unwrap();
        let p1 = connect(l.id(), sizes(16, 16)).unwrap();
        let p2 = connect(l.id(), sizes(16, 16)).unwrap();
        assert_eq!(connect(l.id(), sizes(16, 16)).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        send(&p1, b"one", false).unwrap();
        drop(p2); // vanishes before it is accepted
        exhaust(l.id(), 1);
        assert_eq!(accept(&l).unwrap_err(), Errno::MFILE);
        let (s1, fd1) = accept(&l).unwrap().unwrap();
        assert!(is_memory_fd(fd1.as_fd()));
        let mut buf = [0u8; 8];
        assert_eq!(recv(&s1, &mut buf, false), Ok(3));
        let (s2, _fd2) = accept(&l).unwrap().unwrap();
        assert_eq!(recv(&s2, &mut buf, false), Ok(0), "the peer that vanished: end of stream");
        assert!(accept(&l).unwrap().is_none());
        drop(s1);
        assert!(!is_memory_fd(fd1.as_fd()), "a closed end forgets its descriptor");
    }

    /// The exhaustion told to a listener is spent by accepts that would
    /// take a connection: an accept that finds the backlog empty (a
    /// spurious wake-up) answers that there is none and leaves it for the
    /// next connection, so a run's `EMFILE` reaches a real accept.
    #[test]
    fn an_accept_that_finds_no_connection_leaves_the_exhaustion_for_the_next() {
        let l = listener(4).unwrap();
        exhaust(l.id(), 1);
        assert!(accept(&l).unwrap().is_none(), "nothing to accept: no EMFILE either");
        let _p = connect(l.id(), sizes(16, 16)).unwrap();
        assert_eq!(accept(&l).unwrap_err(), Errno::MFILE, "the connection meets the exhaustion");
        assert!(accept(&l).unwrap().is_some());
    }

    #[test]
    fn readiness_follows_the_queues() {
        let (a, b) = pair(sizes(4, 4), Link::Pending).unwrap();
        let fd = descriptor_for(&a).unwrap();
        let all = Interest::READ | Interest::WRITE | Interest::PRIORITY;
        assert_eq!(readiness(fd.as_fd(), all), Some(Readiness::EMPTY), "a pending connect");
        set_link(&a, Link::Established);
        assert_eq!(readiness(fd.as_fd(), all), Some(Readiness::WRITABLE));
        send(&b, b"data", false).unwrap();
        assert_eq!(readiness(fd.as_fd(), all), Some(Readiness::READABLE | Readiness::WRITABLE));
        send(&a, b"full", false).unwrap();
        assert_eq!(readiness(fd.as_fd(), Interest::WRITE), Some(Readiness::EMPTY));
        drop(b); // with "full" unread: a reset, once "data" is read
        assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::READABLE | Readiness::HANGUP));
        let mut buf = [0u8; 8];
        assert_eq!(recv(&a, &mut buf, false), Ok(4));
        let r = readiness(fd.as_fd(), Interest::READ).unwrap();
        assert_eq!(r, Readiness::READABLE | Readiness::HANGUP | Readiness::ERROR);
        drop(a);
        assert_eq!(readiness(fd.as_fd(), all), None);
    }

    /// Closing with only an urgent byte unread is closing with unread
    /// input: the peer gets `ECONNRESET` once, then the end.
    #[test]
    fn closing_with_only_an_urgent_byte_unread_resets_the_peer() {
        let (a, b) = established();
        assert_eq!(send(&a, b"!", true), Ok(1));
        drop(b);
        let mut buf = [0u8; 4];
        assert_eq!(recv(&a, &mut buf, false), Err(Errno::CONNRESET));
        assert_eq!(recv(&a, &mut buf, false), Ok(0));
    }

    /// A half-close makes the other side readable (its end of stream) but
    /// is no hang-up: that comes when the peer's end is closed.
    #[test]
    fn a_half_close_is_readable_and_only_a_close_hangs_up() {
        let (a, b) = established();
        let fd = descriptor_for(&a).unwrap();
        assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::EMPTY));
        shutdown(&b, false, true).unwrap();
        assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::READABLE));
        drop(b);
        assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::READABLE | Readiness::HANGUP));
    }

    /// An urgent byte makes its receiver ready for priority (only when it
    /// asks for it) until it is read with `MSG_OOB`.
    #[test]
    fn an_urgent_byte_is_priority_readiness_until_read() {
        let (a, b) = established();
        let fd = descriptor_for(&a).unwrap();
        send(&b, b"!", true).unwrap();
        assert_eq!(readiness(fd.as_fd(), Interest::PRIORITY), Some(Readiness::PRIORITY));
        assert_eq!(readiness(fd.as_fd(), Interest::READ), Some(Readiness::EMPTY), "not inline data");
        let mut buf = [0u8; 4];
        assert_eq!(recv(&a, &mut buf, true), Ok(1));
        assert_eq!(buf[0], b'!');
        assert_eq!(readiness(fd.as_fd(), Interest::PRIORITY), Some(Readiness::EMPTY));
    }

    /// A side that shut its reading down receives the end of stream, even
    /// with bytes queued, is readable, and its peer's sends are `EPIPE`.
    #[test]
    fn shutting_the_reading_side_gives_the_end_of_stream() {
        let (a, b) = established();
        let fd = descriptor_for(&a).unwrap();
        send(&b, b"queued", false).unwrap();
        shutdown(&a, true, false).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv(&a, &mut buf, false), Ok(0));
        assert_eq!(recv(&a, &mut buf, false), Ok(0));
        assert!(readiness(fd.as_fd(), Interest::READ).unwrap().contains(Readiness::READABLE));
        assert_eq!(send(&b, b"more", false), Err(Errno::PIPE));
        assert_eq!(send(&a, b"reply", false), Ok(5), "its sending side still works");
    }

    /// A listener that closes resets the connections still in its backlog,
    /// as the kernel does: their peers read `ECONNRESET` once, then the
    /// end, and cannot send; and every end goes back to the table.
    #[test]
    fn a_listener_that_closes_resets_its_backlog_and_frees_every_end() {
        let before = open_ends();
        let l = listener(4).unwrap();
        let p1 = connect(l.id(), sizes(16, 16)).unwrap();
        let p2 = connect(l.id(), sizes(16, 16)).unwrap();
        assert_eq!(send(&p1, b"hi", false), Ok(2));
        assert_eq!(open_ends(), before + 3);
        drop(l);
        let mut buf = [0u8; 8];
        for p in [&p1, &p2] {
            assert_eq!(recv(p, &mut buf, false), Err(Errno::CONNRESET));
            assert_eq!(recv(p, &mut buf, false), Ok(0));
            assert_eq!(send(p, b"x", false), Err(Errno::PIPE));
        }
        drop((p1, p2));
        assert_eq!(open_ends(), before, "no end leaked");
    }

    /// Closing ends gives their ids back: a pair, an accepted connection
    /// and a listener leave the table as it was.
    #[test]
    fn closed_ends_leave_the_table_as_it_was() {
        let before = open_ends();
        let (a, b) = pair(sizes(16, 16), Link::Established).unwrap();
        assert_eq!(open_ends(), before + 2);
        drop((a, b));
        assert_eq!(open_ends(), before);
        let l = listener(1).unwrap();
        let p = connect(l.id(), sizes(16, 16)).unwrap();
        let (s, _fd) = accept(&l).unwrap().unwrap();
        assert_eq!(open_ends(), before + 3);
        drop((s, p, l));
        assert_eq!(open_ends(), before);
    }

    /// A channel's descriptor is numbered above every in-memory channel's
    /// open on this thread, not in the hole a closed one left: the map
    /// lists channels by descriptor number, and the simulation reports
    /// them in the order they joined, which then is the same order.
    #[test]
    fn a_new_descriptor_is_numbered_above_the_open_ones() {
        use std::os::fd::AsRawFd;
        let channel = || {
            let (ours, theirs) = established();
            let fd = descriptor_for(&ours).unwrap();
            (ours, theirs, fd)
        };
        let first = channel();
        let middle = channel();
        let last = channel();
        drop(middle); // a hole below the last one
        let next = channel();
        let raw = |c: &(End, End, OwnedFd)| c.2.as_raw_fd();
        assert!(raw(&last) > raw(&first));
        assert!(raw(&next) > raw(&last), "{} above {}", raw(&next), raw(&last));
    }

    /// Descriptor numbers go back down as the highest channels close: a
    /// simulation that opens and closes channels one after another for
    /// long does not climb through the descriptor table (and then fall back
    /// to the lowest free number, out of order) as if every channel it ever
    /// had were still open.
    #[test]
    fn numbers_go_back_down_as_the_highest_channels_close() {
        use std::os::fd::AsRawFd;
        let below = established();
        let _below_fd = descriptor_for(&below.0).unwrap();
        // Another thread may take a number meanwhile, but not every time.
        let numbers: Vec<_> = (0..64)
            .map(|_| {
                let (ours, _theirs) = established();
                descriptor_for(&ours).unwrap().as_raw_fd()
            })
            .collect();
        assert!(numbers.windows(2).any(|w| w[1] <= w[0]), "every one above the last: {numbers:?}");
    }

    /// A connect's result: established is success, refused is
    /// `ECONNREFUSED`; a connect in progress whose far end closes is
    /// refused, and is then writable with an error and a hang-up.
    #[test]
    fn a_connect_is_refused_when_told_or_when_its_far_end_closes() {
        let (a, b) = pair(sizes(16, 16), Link::Established).unwrap();
        assert!(connect_result(&a).is_ok());
        drop(b);
        let (a, _b) = pair(sizes(16, 16), Link::Refused).unwrap();
        assert_eq!(connect_result(&a).unwrap_err().raw_os_error(), Some(Errno::CONNREFUSED.raw_os_error()));
        let (a, b) = pair(sizes(16, 16), Link::Pending).unwrap();
        let fd = descriptor_for(&a).unwrap();
        assert_eq!(connect_result(&a).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        drop(b);
        assert_eq!(link(&a), Some(Link::Refused));
        let all = Interest::READ | Interest::WRITE;
        assert_eq!(
            readiness(fd.as_fd(), all),
            Some(Readiness::WRITABLE | Readiness::ERROR | Readiness::HANGUP)
        );
        assert_eq!(connect_result(&a).unwrap_err().raw_os_error(), Some(Errno::CONNREFUSED.raw_os_error()));
    }
}
