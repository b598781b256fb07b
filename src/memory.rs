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
//! used before: a connect completes when the listener's backlog takes it;
//! closing with unread input resets the peer (it reads what was sent, then
//! `ECONNRESET` once, then the end); a second urgent byte pushes the first
//! one inline; sending after the peer left is `EPIPE`. What the kernel
//! leaves to its buffer sizes, the simulation chooses: each direction's
//! capacity and the most one call moves (partial reads and writes).
//!
//! Why a table per thread, named by a 16-bit id stored in the channel's
//! padding: a channel stays the size of a `u64` and `Send`, the real path
//! pays one byte comparison per send and receive, and a map's loop runs on
//! one thread, as the simulation does. An end belongs to the thread that
//! made it: on a thread with no simulation its I/O answers `ENOTCONN`; on
//! another thread's simulation the id would name that thread's end, so a
//! simulated channel must not be sent to another thread (the simulation
//! never does).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::io::Errno;

use crate::readiness::{Interest, Readiness};

/// Where a channel's bytes go: the kernel (0), or this thread's in-memory
/// end with this id. Dropping a memory end closes it, as closing a socket
/// would.
#[derive(PartialEq, Eq)]
pub(crate) struct End(u16);

impl End {
    /// A channel of the kernel's.
    pub(crate) const KERNEL: End = End(0);

    #[inline(always)]
    pub(crate) fn is_memory(&self) -> bool {
        self.0 != 0
    }

    /// The end's id, for the simulation's bookkeeping (0: the kernel's).
    pub(crate) fn id(&self) -> u16 {
        self.0
    }
}

impl Drop for End {
    #[inline]
    fn drop(&mut self) {
        if self.0 != 0 {
            release(self.0);
        }
    }
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 { f.write_str("kernel") } else { write!(f, "memory end {}", self.0) }
    }
}

/// A connection's state, as its connecting side sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// Connect in progress: neither writable nor readable yet.
    Pending,
    /// Connected.
    Established,
    /// Refused: the connecting side reports `ECONNREFUSED`.
    Refused,
}

/// One direction of a connection: the bytes on their way to one side.
#[derive(Debug)]
struct Pipe {
    buf: VecDeque<u8>,
    /// Most bytes queued at once (the receiver's buffer).
    cap: usize,
    /// Most bytes one send or receive moves.
    chunk: usize,
    /// The sender will send no more: after `buf`, the end of the stream.
    shut: bool,
    /// The sender closed with input unread: after `buf`, `ECONNRESET` once.
    reset: bool,
    /// The receiver shut its reading side down: receives give the end.
    read_shut: bool,
    /// An urgent byte not yet read with `MSG_OOB`.
    urgent: Option<u8>,
}

impl Pipe {
    fn new(cap: usize, chunk: usize) -> Pipe {
        Pipe {
            buf: VecDeque::new(),
            cap: cap.max(1),
            chunk: chunk.max(1),
            shut: false,
            reset: false,
            read_shut: false,
            urgent: None,
        }
    }
}

#[derive(Debug)]
struct Conn {
    /// `to[s]`: bytes flowing to side `s` (0: the side in the map, 1: the
    /// simulated peer).
    to: [Pipe; 2],
    /// Whether each side's end was closed (side 0 of a connection still in
    /// a backlog is not closed: the peer may already send to it).
    closed: [bool; 2],
    link: Link,
}

#[derive(Debug)]
enum Slot {
    Free,
    Stream { conn: usize, side: usize, fd: Option<RawFd> },
    Listener { backlog: VecDeque<usize>, max_backlog: usize, exhaust: u32, fd: Option<RawFd> },
}

#[derive(Default)]
struct Net {
    placeholder: Option<OwnedFd>,
    slots: Vec<Slot>,
    free: Vec<u16>,
    conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    /// Descriptor number → end id (0: none), for the poller.
    by_fd: Vec<u16>,
}

thread_local! {
    static NET: RefCell<Net> = RefCell::new(Net::default());
}

impl Net {
    fn alloc(&mut self, slot: Slot) -> io::Result<End> {
        if let Some(id) = self.free.pop() {
            self.slots[usize::from(id) - 1] = slot;
            return Ok(End(id));
        }
        let id = u16::try_from(self.slots.len() + 1).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "more than 65535 in-memory channels on one thread")
        })?;
        self.slots.push(slot);
        Ok(End(id))
    }

    fn slot(&self, id: u16) -> Option<&Slot> {
        self.slots.get(usize::from(id).checked_sub(1)?)
    }

    fn slot_mut(&mut self, id: u16) -> Option<&mut Slot> {
        self.slots.get_mut(usize::from(id).checked_sub(1)?)
    }

    fn new_conn(&mut self, conn: Conn) -> usize {
        match self.free_conns.pop() {
            Some(i) => {
                self.conns[i] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        }
    }

    /// The stream an end names, and its side.
    fn stream(&mut self, id: u16) -> Result<(&mut Conn, usize), Errno> {
        let Some(&Slot::Stream { conn, side, .. }) = self.slot(id) else { return Err(Errno::NOTCONN) };
        let conn = self.conns.get_mut(conn).and_then(Option::as_mut).ok_or(Errno::NOTCONN)?;
        Ok((conn, side))
    }

    fn close_side(&mut self, index: usize, side: usize) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else { return };
        conn.closed[side] = true;
        if conn.link == Link::Pending {
            // The other side of a connect in progress is gone: refused.
            conn.link = Link::Refused;
        }
        let inbound = &mut conn.to[side];
        let unread = !inbound.buf.is_empty() || inbound.urgent.is_some();
        inbound.buf = VecDeque::new();
        inbound.urgent = None;
        inbound.read_shut = true;
        let outbound = &mut conn.to[1 - side];
        outbound.shut = true;
        outbound.reset |= unread;
        if conn.closed[0] && conn.closed[1] {
            self.conns[index] = None;
            self.free_conns.push(index);
        }
    }

    fn placeholder(&mut self) -> io::Result<OwnedFd> {
        if self.placeholder.is_none() {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .or_else(|_| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC))?;
            self.placeholder = Some(fd);
        }
        let original = self.placeholder.as_ref().expect("opened above");
        Ok(rustix::io::fcntl_dupfd_cloexec(original, 0)?)
    }

    fn bind_fd(&mut self, id: u16, fd: BorrowedFd<'_>) {
        let raw = fd.as_raw_fd();
        let index = raw as usize;
        if self.by_fd.len() <= index {
            self.by_fd.resize(index + 1, 0);
        }
        self.by_fd[index] = id;
        if let Some(Slot::Stream { fd, .. } | Slot::Listener { fd, .. }) = self.slot_mut(id) {
            *fd = Some(raw);
        }
    }
}

/// A descriptor for a new in-memory channel: a duplicate of this thread's
/// placeholder, registered under `end`, so the map's table (indexed by
/// descriptor number) has a number of its own for it. No socket is opened.
pub(crate) fn descriptor_for(end: &End) -> io::Result<OwnedFd> {
    NET.with_borrow_mut(|net| {
        let fd = net.placeholder()?;
        net.bind_fd(end.0, fd.as_fd());
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
    NET.with_borrow(|net| net.slots.len() - net.free.len())
}

/// Whether `fd` is an in-memory channel's descriptor on this thread.
pub(crate) fn is_memory_fd(fd: BorrowedFd<'_>) -> bool {
    let index = fd.as_raw_fd() as usize;
    NET.with_borrow(|net| net.by_fd.get(index).is_some_and(|&id| id != 0))
}

fn release(id: u16) {
    // A thread's table is gone only while the thread exits: nothing to tell.
    let _ = NET.try_with(|net| {
        let mut net = net.borrow_mut();
        let Some(slot) = net.slot_mut(id) else { return };
        let slot = std::mem::replace(slot, Slot::Free);
        let fd = match &slot {
            Slot::Stream { fd, .. } | Slot::Listener { fd, .. } => *fd,
            Slot::Free => None,
        };
        if let Some(fd) = fd
            && net.by_fd.get(fd as usize) == Some(&id)
        {
            net.by_fd[fd as usize] = 0;
        }
        match slot {
            Slot::Free => return,
            Slot::Stream { conn, side, .. } => net.close_side(conn, side),
            Slot::Listener { backlog, .. } => {
                // Connections still in the backlog are reset, as the kernel
                // does when a listener closes.
                for conn in backlog {
                    net.close_side(conn, 0);
                    if let Some(c) = net.conns.get_mut(conn).and_then(Option::as_mut) {
                        c.to[1].reset = true;
                    }
                }
            }
        }
        net.free.push(id);
    });
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

/// How a new connection's two directions are sized: `cap` bytes queued at
/// most, `chunk` bytes per call at most; index 0 toward the map's side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub cap: [usize; 2],
    pub chunk: [usize; 2],
}

fn conn(sizes: Sizes, link: Link) -> Conn {
    Conn {
        to: [Pipe::new(sizes.cap[0], sizes.chunk[0]), Pipe::new(sizes.cap[1], sizes.chunk[1])],
        closed: [false; 2],
        link,
    }
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
        let index = net.new_conn(conn(sizes, Link::Established));
        let peer = match net.alloc(Slot::Stream { conn: index, side: 1, fd: None }) {
            Ok(peer) => peer,
            Err(e) => {
                net.conns[index] = None;
                net.free_conns.push(index);
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
        let index = net.new_conn(conn(sizes, link));
        let ours = net.alloc(Slot::Stream { conn: index, side: 0, fd: None })?;
        match net.alloc(Slot::Stream { conn: index, side: 1, fd: None }) {
            Ok(theirs) => Ok((ours, theirs)),
            Err(e) => {
                // Undone here: dropping `ours` would borrow the table again.
                let id = ours.0;
                std::mem::forget(ours);
                net.slots[usize::from(id) - 1] = Slot::Free;
                net.free.push(id);
                net.conns[index] = None;
                net.free_conns.push(index);
                Err(e)
            }
        }
    })
}

/// Sets the state of a connection made with [`pair`] (a slow connect
/// completes, or is refused).
pub(crate) fn set_link(end: &End, link: Link) {
    NET.with_borrow_mut(|net| {
        if let Ok((conn, _)) = net.stream(end.0) {
            conn.link = link;
        }
    });
}

/// The state of `end`'s connection.
pub(crate) fn link(end: &End) -> Option<Link> {
    NET.with_borrow_mut(|net| net.stream(end.0).ok().map(|(conn, _)| conn.link))
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
        let Some(Slot::Listener { backlog, exhaust, .. }) = net.slot_mut(listener.0) else {
            return Err(Errno::INVAL);
        };
        let Some(&index) = backlog.front() else { return Ok(None) };
        if *exhaust > 0 {
            *exhaust -= 1;
            return Err(Errno::MFILE);
        }
        let fd = net.placeholder().map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::NOMEM))?;
        let end = net.alloc(Slot::Stream { conn: index, side: 0, fd: None }).map_err(|_| Errno::NOMEM)?;
        if let Some(Slot::Listener { backlog, .. }) = net.slot_mut(listener.0) {
            backlog.pop_front();
        }
        net.bind_fd(end.0, fd.as_fd());
        Ok(Some((end, fd)))
    })
}

/// Receives into `buf` (non-empty); `oob` reads the urgent byte.
pub(crate) fn recv(end: &End, buf: &mut [u8], oob: bool) -> Result<usize, Errno> {
    if oob {
        return NET.with_borrow_mut(|net| {
            let (conn, side) = net.stream(end.0)?;
            if conn.link != Link::Established {
                return Err(Errno::NOTCONN);
            }
            match conn.to[side].urgent.take() {
                Some(b) => {
                    buf[0] = b;
                    Ok(1)
                }
                None => Err(Errno::INVAL),
            }
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
/// connection's bytes per call, when `chunked`): `take` gets them, in the
/// two parts of the queue they may span.
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
    let (conn, side) = net.stream(end.0)?;
    if conn.link != Link::Established {
        return Err(Errno::NOTCONN);
    }
    let pipe = &mut conn.to[side];
    if pipe.read_shut {
        return Ok(0);
    }
    if !pipe.buf.is_empty() {
        let n = max.min(pipe.buf.len()).min(if chunked { pipe.chunk } else { usize::MAX });
        let (front, back) = pipe.buf.as_slices();
        let first = n.min(front.len());
        take(&front[..first], &back[..n - first]);
        pipe.buf.drain(..n);
        return Ok(n);
    }
    if std::mem::take(&mut pipe.reset) {
        return Err(Errno::CONNRESET);
    }
    if pipe.shut { Ok(0) } else { Err(Errno::AGAIN) }
}

/// How many bytes an ordinary send from `end` would take now: 0 when it
/// would fail or block. A simulated peer makes only that many of its
/// traffic's bytes, not all it was told it may write.
pub(crate) fn send_room(end: &End) -> usize {
    NET.with_borrow_mut(|net| net.stream(end.0).and_then(|(conn, side)| room(conn, side)).unwrap_or(0))
}

/// What a send from `side` of `conn` may put in its pipe now, or why it
/// fails: the one place [`send`] and [`send_room`] take their rules from.
fn room(conn: &Conn, side: usize) -> Result<usize, Errno> {
    if conn.link != Link::Established {
        return Err(Errno::NOTCONN);
    }
    let pipe = &conn.to[1 - side];
    if pipe.shut || pipe.read_shut || conn.closed[1 - side] {
        return Err(Errno::PIPE);
    }
    Ok(pipe.cap.saturating_sub(pipe.buf.len()).min(pipe.chunk))
}

/// Sends `data`; `oob` sends it as urgent data (its last byte urgent).
pub(crate) fn send(end: &End, data: &[u8], oob: bool) -> Result<usize, Errno> {
    NET.with_borrow_mut(|net| {
        let (conn, side) = net.stream(end.0)?;
        let room = room(conn, side)?;
        let pipe = &mut conn.to[1 - side];
        if data.is_empty() {
            return Ok(0);
        }
        if oob {
            let (&last, inline) = data.split_last().expect("not empty");
            pipe.buf.extend(inline);
            if let Some(older) = pipe.urgent.replace(last) {
                pipe.buf.push_back(older);
            }
            return Ok(data.len());
        }
        let n = data.len().min(room);
        if n == 0 {
            return Err(Errno::AGAIN);
        }
        pipe.buf.extend(&data[..n]);
        Ok(n)
    })
}

/// Shuts down `end`'s reading side, sending side, or both.
pub(crate) fn shutdown(end: &End, read: bool, write: bool) -> Result<(), Errno> {
    NET.with_borrow_mut(|net| {
        let (conn, side) = net.stream(end.0)?;
        if read {
            conn.to[side].read_shut = true;
        }
        if write {
            conn.to[1 - side].shut = true;
        }
        Ok(())
    })
}

/// Bytes waiting to be read at `end` (`FIONREAD`).
pub(crate) fn pending(end: &End) -> usize {
    NET.with_borrow_mut(|net| net.stream(end.0).map_or(0, |(conn, side)| conn.to[side].buf.len()))
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
        let id = *self.0.by_fd.get(fd.as_raw_fd() as usize).filter(|&&id| id != 0)?;
        Some(self.0.end_readiness(id, interest))
    }
}

// `end_readiness` selects by the interest's bits: they are the readiness's.
const _: () = assert!(
    Interest::READ.bits() == Readiness::READABLE.bits()
        && Interest::WRITE.bits() == Readiness::WRITABLE.bits()
        && Interest::PRIORITY.bits() == Readiness::PRIORITY.bits()
);

/// `flag`'s bits when `on`, else none.
fn bits_if(on: bool, flag: Readiness) -> u8 {
    if on { flag.bits() } else { 0 }
}

impl Net {
    /// Computed with as few comparisons as it takes (each is a traced call
    /// in a fuzzer's build): one lookup of the slot, the two directions
    /// told apart once, and the interest applied as a mask.
    fn end_readiness(&self, id: u16, interest: Interest) -> Readiness {
        let (index, side) = match self.slot(id) {
            Some(&Slot::Stream { conn, side, .. }) => (conn, side),
            Some(Slot::Listener { backlog, .. }) => {
                let r = bits_if(!backlog.is_empty(), Readiness::READABLE);
                return Readiness::from_bits_truncate(r & interest.bits());
            }
            _ => return Readiness::INVALID,
        };
        let Some(Some(conn)) = self.conns.get(index) else { return Readiness::HANGUP };
        match conn.link {
            Link::Pending => return Readiness::EMPTY,
            Link::Refused => return Readiness::WRITABLE | Readiness::ERROR | Readiness::HANGUP,
            Link::Established => {}
        }
        let [to_map, to_peer] = &conn.to;
        let (inbound, outbound, peer_gone) =
            if side == 0 { (to_map, to_peer, conn.closed[1]) } else { (to_peer, to_map, conn.closed[0]) };
        let queued = !inbound.buf.is_empty();
        let readable = queued || inbound.shut || inbound.reset || inbound.read_shut;
        let writable = outbound.buf.len() < outbound.cap || outbound.shut || peer_gone;
        let wanted = bits_if(readable, Readiness::READABLE)
            | bits_if(writable, Readiness::WRITABLE)
            | bits_if(inbound.urgent.is_some(), Readiness::PRIORITY);
        let closed = bits_if(inbound.reset && !queued, Readiness::ERROR)
            | bits_if(peer_gone && inbound.shut, Readiness::HANGUP);
        Readiness::from_bits_truncate(wanted & interest.bits() | closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(cap: usize, chunk: usize) -> Sizes {
        Sizes { cap: [cap; 2], chunk: [chunk; 2] }
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
        let (a, b) = pair(sizes(64, 64), Link::Established).unwrap();
        send(&a, b"data", false).unwrap();
        send(&b, b"unread", false).unwrap();
        drop(a);
        assert_eq!(recv_all_append(&b, &mut got), 4);
        assert_eq!(recv_append(&b, &mut got, 64), Ok(0), "the reset was reported");
    }

    #[test]
    fn closing_with_unread_input_resets_the_peer_after_its_data() {
        let (a, b) = pair(sizes(64, 64), Link::Established).unwrap();
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
        let (a, b) = pair(sizes(64, 64), Link::Established).unwrap();
        shutdown(&b, false, true).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv(&a, &mut buf, false), Ok(0));
        assert_eq!(send(&a, b"late", false), Ok(4));
        assert_eq!(recv(&b, &mut buf, false), Ok(4));
        assert_eq!(send(&b, b"x", false), Err(Errno::PIPE));
    }

    #[test]
    fn a_second_urgent_byte_pushes_the_first_inline() {
        let (a, b) = pair(sizes(64, 64), Link::Established).unwrap();
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
}
