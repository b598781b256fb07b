//! One in-memory connection: a bounded queue of bytes per direction, and
//! the rules of a Linux Unix stream socket for them.
//!
//! A connect completes when the listener's backlog takes it; closing with
//! unread input resets the peer (it reads what was sent, then
//! `ECONNRESET` once, then the end); a second urgent byte pushes the first
//! one inline; sending after the peer left is `EPIPE`. What the kernel
//! leaves to its buffer sizes, the simulation chooses: each direction's
//! capacity and the most one call moves (partial reads and writes).

use std::collections::VecDeque;

use rustix::io::Errno;

use crate::readiness::{Interest, Readiness};

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

/// How a new connection's two directions are sized: `cap` bytes queued at
/// most, `chunk` bytes per call at most; index 0 toward the map's side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub cap: [usize; 2],
    pub chunk: [usize; 2],
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

/// Side `side`'s index, and the other side's: a side is 0 or 1, and the
/// mask tells the compiler so, which spares a bounds check (and, for the
/// other side, an overflow check) on every index, each a traced comparison
/// in a fuzzer's build.
#[inline(always)]
fn this(side: usize) -> usize {
    side & 1
}

#[inline(always)]
fn other(side: usize) -> usize {
    !side & 1
}

/// A connection. Its sides are 0 (the side in the map) and 1 (the
/// simulated peer); every method takes the side that calls.
#[derive(Debug)]
pub(super) struct Conn {
    /// `to[s]`: bytes flowing to side `s`.
    to: [Pipe; 2],
    /// Whether each side's end was closed (side 0 of a connection still in
    /// a backlog is not closed: the peer may already send to it).
    closed: [bool; 2],
    pub(super) link: Link,
}

impl Conn {
    pub(super) fn new(sizes: Sizes, link: Link) -> Conn {
        Conn {
            to: [Pipe::new(sizes.cap[0], sizes.chunk[0]), Pipe::new(sizes.cap[1], sizes.chunk[1])],
            closed: [false; 2],
            link,
        }
    }

    /// `side`'s end closes. Returns whether both have: the connection is
    /// gone.
    pub(super) fn close(&mut self, side: usize) -> bool {
        self.closed[this(side)] = true;
        if self.link == Link::Pending {
            // The other side of a connect in progress is gone: refused.
            self.link = Link::Refused;
        }
        let inbound = &mut self.to[this(side)];
        let unread = !inbound.buf.is_empty() || inbound.urgent.is_some();
        inbound.buf = VecDeque::new();
        inbound.urgent = None;
        inbound.read_shut = true;
        let outbound = &mut self.to[other(side)];
        outbound.shut = true;
        outbound.reset |= unread;
        self.closed[0] && self.closed[1]
    }

    /// The listener that held this connection in its backlog closed: the
    /// peer is reset, as the kernel does. Returns what [`close`](Self::close)
    /// does.
    pub(super) fn reset_by_listener(&mut self) -> bool {
        let gone = self.close(0);
        self.to[1].reset = true;
        gone
    }

    /// An ordinary receive at `side` of up to `max` bytes (and of at most
    /// the connection's bytes per call, when `chunked`): `take` gets them,
    /// in the two parts of the queue they may span.
    pub(super) fn receive(
        &mut self,
        side: usize,
        max: usize,
        chunked: bool,
        take: impl FnOnce(&[u8], &[u8]),
    ) -> Result<usize, Errno> {
        if self.link != Link::Established {
            return Err(Errno::NOTCONN);
        }
        let pipe = &mut self.to[this(side)];
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

    /// Reads the urgent byte waiting for `side` into `buf` (non-empty).
    pub(super) fn receive_urgent(&mut self, side: usize, buf: &mut [u8]) -> Result<usize, Errno> {
        if self.link != Link::Established {
            return Err(Errno::NOTCONN);
        }
        match self.to[this(side)].urgent.take() {
            Some(b) => {
                buf[0] = b;
                Ok(1)
            }
            None => Err(Errno::INVAL),
        }
    }

    /// What a send from `side` may put in its pipe now, or why it fails:
    /// the one place [`send`](Self::send) and the peers' `send_room` take
    /// their rules from.
    pub(super) fn room(&self, side: usize) -> Result<usize, Errno> {
        if self.link != Link::Established {
            return Err(Errno::NOTCONN);
        }
        let pipe = &self.to[other(side)];
        if pipe.shut || pipe.read_shut || self.closed[other(side)] {
            return Err(Errno::PIPE);
        }
        Ok(pipe.cap.saturating_sub(pipe.buf.len()).min(pipe.chunk))
    }

    /// Sends `data` from `side`; `oob` sends it as urgent data (its last
    /// byte urgent).
    pub(super) fn send(&mut self, side: usize, data: &[u8], oob: bool) -> Result<usize, Errno> {
        let room = self.room(side)?;
        let pipe = &mut self.to[other(side)];
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
    }

    /// Shuts down `side`'s reading side, sending side, or both.
    pub(super) fn shutdown(&mut self, side: usize, read: bool, write: bool) {
        if read {
            self.to[this(side)].read_shut = true;
        }
        if write {
            self.to[other(side)].shut = true;
        }
    }

    /// Bytes waiting to be read at `side` (`FIONREAD`).
    pub(super) fn pending(&self, side: usize) -> usize {
        self.to[this(side)].buf.len()
    }

    /// `side`'s readiness for `interest`, with hang-ups and errors whatever
    /// the interest, computed with as few comparisons as it takes (each is
    /// a traced call in a fuzzer's build): the two directions picked by
    /// masked indices, and the interest applied as a mask.
    /// The flags are combined with `|` and `&`, not `||` and `&&`: each
    /// short circuit was a branch on a flag, a traced comparison too.
    pub(super) fn readiness(&self, side: usize, interest: Interest) -> Readiness {
        if self.link != Link::Established {
            return self.unestablished();
        }
        let (inbound, outbound, peer_gone) =
            (&self.to[this(side)], &self.to[other(side)], self.closed[other(side)]);
        let queued = !inbound.buf.is_empty();
        let readable = queued | inbound.shut | inbound.reset | inbound.read_shut;
        let writable = (outbound.buf.len() < outbound.cap) | outbound.shut | peer_gone;
        let wanted = bits_if(readable, Readiness::READABLE)
            | bits_if(writable, Readiness::WRITABLE)
            | bits_if(inbound.urgent.is_some(), Readiness::PRIORITY);
        let closed = bits_if(inbound.reset & !queued, Readiness::ERROR)
            | bits_if(peer_gone & inbound.shut, Readiness::HANGUP);
        Readiness::from_bits_truncate(wanted & interest.bits() | closed)
    }

    /// [`readiness`](Self::readiness) of a connection not established.
    #[cold]
    fn unestablished(&self) -> Readiness {
        match self.link {
            Link::Pending => Readiness::EMPTY,
            // Refused (an established connection is not asked here).
            _ => Readiness::WRITABLE | Readiness::ERROR | Readiness::HANGUP,
        }
    }
}

// Readiness is selected by the interest's bits: they are the readiness's.
const _: () = assert!(
    Interest::READ.bits() == Readiness::READABLE.bits()
        && Interest::WRITE.bits() == Readiness::WRITABLE.bits()
        && Interest::PRIORITY.bits() == Readiness::PRIORITY.bits()
);

/// `flag`'s bits when `on`, else none.
pub(super) fn bits_if(on: bool, flag: Readiness) -> u8 {
    if on { flag.bits() } else { 0 }
}
