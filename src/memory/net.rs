//! This thread's table of in-memory ends (channels, listeners, peers) and
//! connections, the [`End`] that names one, and the placeholder
//! descriptors that give the map's channels numbers of their own.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::pipe::Conn;
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

/// What an end's id names: nothing, a side of connection `conn` (its
/// index in `Net::conns`), or a listener. With a tag of its own: told
/// apart by a niche in the listener's queue, which variant it is took
/// several traced comparisons in a fuzzer's build, on every readiness asked.
#[derive(Debug)]
#[repr(u8)]
pub(super) enum Slot {
    Free,
    Stream { conn: usize, side: usize, fd: Option<RawFd> },
    Listener { backlog: VecDeque<usize>, max_backlog: usize, exhaust: u32, fd: Option<RawFd> },
}

#[derive(Default)]
pub(super) struct Net {
    placeholder: Option<OwnedFd>,
    slots: Vec<Slot>,
    free: Vec<u16>,
    pub(super) conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    /// Descriptor number → end id (0: none), for the poller.
    by_fd: Vec<u16>,
    /// The highest descriptor number filed in `by_fd` (0: none).
    top: usize,
    /// How many sends were made, ever (wrapping): a reader of every peer's
    /// input skips a round in which there was none (`memory::sends`).
    pub(super) sends: u64,
}

thread_local! {
    pub(super) static NET: RefCell<Net> = RefCell::new(Net::default());
}

impl Net {
    pub(super) fn alloc(&mut self, slot: Slot) -> io::Result<End> {
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

    /// Gives an id back without closing anything: the undoing of an
    /// [`alloc`](Self::alloc) whose end never left the table's borrow.
    pub(super) fn unalloc(&mut self, end: End) {
        let id = end.0;
        std::mem::forget(end); // dropping it would borrow the table again
        self.slots[usize::from(id) - 1] = Slot::Free;
        self.free.push(id);
    }

    /// The slot end `id` names (ids start at 1; 0 wraps to an index past
    /// the table, so the bounds check covers it: one traced comparison,
    /// not two, on every send and receive in a fuzzer's build).
    pub(super) fn slot(&self, id: u16) -> Option<&Slot> {
        self.slots.get(usize::from(id).wrapping_sub(1))
    }

    pub(super) fn slot_mut(&mut self, id: u16) -> Option<&mut Slot> {
        self.slots.get_mut(usize::from(id).wrapping_sub(1))
    }

    /// How many ends are open.
    pub(super) fn open_ends(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub(super) fn new_conn(&mut self, conn: Conn) -> usize {
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

    /// Forgets connection `index`: no end names it any more.
    pub(super) fn drop_conn(&mut self, index: usize) {
        self.conns[index] = None;
        self.free_conns.push(index);
    }

    /// The stream an end names, and its side.
    pub(super) fn stream(&mut self, id: u16) -> Result<(&mut Conn, usize), rustix::io::Errno> {
        use rustix::io::Errno;
        let Some(&Slot::Stream { conn, side, .. }) = self.slot(id) else { return Err(Errno::NOTCONN) };
        let conn = self.conns.get_mut(conn).and_then(Option::as_mut).ok_or(Errno::NOTCONN)?;
        Ok((conn, side))
    }

    /// A duplicate of this thread's placeholder descriptor (`/dev/null`,
    /// opened on first use), numbered above every in-memory channel's
    /// open now, not in the lowest hole: the map's table lists channels by
    /// descriptor number, the simulation's script reports them in the
    /// order they joined, and with the lowest number a channel that took a
    /// closed one's place came first, which put one wait in fifteen out of
    /// order (its sort was 2% of a `sim_echo_raw` fuzz run's instructions).
    /// Numbers go back down as the highest channels close.
    pub(super) fn placeholder(&mut self) -> io::Result<OwnedFd> {
        if self.placeholder.is_none() {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .or_else(|_| rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC))?;
            self.placeholder = Some(fd);
        }
        let original = self.placeholder.as_ref().expect("opened above");
        // Past the descriptor limit (`EINVAL` for a number above it, or
        // `EMFILE`), the lowest free number, as before: a hole below still
        // serves, and only the order of reports suffers.
        let above = RawFd::try_from(self.top + 1).unwrap_or(RawFd::MAX);
        match rustix::io::fcntl_dupfd_cloexec(original, above) {
            Ok(fd) => Ok(fd),
            Err(_) => Ok(rustix::io::fcntl_dupfd_cloexec(original, 0)?),
        }
    }

    /// Files descriptor `fd` as end `id`'s, for the poller.
    pub(super) fn bind_fd(&mut self, id: u16, fd: BorrowedFd<'_>) {
        let raw = fd.as_raw_fd();
        let index = raw as usize;
        if self.by_fd.len() <= index {
            self.by_fd.resize(index + 1, 0);
        }
        self.by_fd[index] = id;
        self.top = self.top.max(index);
        if let Some(Slot::Stream { fd, .. } | Slot::Listener { fd, .. }) = self.slot_mut(id) {
            *fd = Some(raw);
        }
    }

    /// The end whose descriptor `fd` is, if any.
    #[inline]
    pub(super) fn end_of(&self, fd: BorrowedFd<'_>) -> Option<u16> {
        self.by_fd.get(fd.as_raw_fd() as usize).copied().filter(|&id| id != 0)
    }

    /// Side `side` of connection `index` closes; the connection goes when
    /// both have.
    fn close_side(&mut self, index: usize, side: usize) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else { return };
        if conn.close(side) {
            self.drop_conn(index);
        }
    }

    /// Forgets that descriptor `fd` is end `id`'s, unless it was filed as
    /// another's since.
    fn unbind(&mut self, fd: Option<RawFd>, id: u16) {
        if let Some(fd) = fd
            && let Some(bound) = self.by_fd.get_mut(fd as usize)
            && *bound == id
        {
            *bound = 0;
            while self.top > 0 && self.by_fd[self.top] == 0 {
                self.top -= 1;
            }
        }
    }

    /// End `id` closes, as closing its socket would.
    fn release(&mut self, id: u16) {
        let Some(slot) = self.slot_mut(id) else { return };
        match std::mem::replace(slot, Slot::Free) {
            Slot::Free => return,
            Slot::Stream { conn, side, fd } => {
                self.unbind(fd, id);
                self.close_side(conn, side);
            }
            Slot::Listener { backlog, fd, .. } => {
                self.unbind(fd, id);
                // Connections still in the backlog are reset, as the kernel
                // does when a listener closes.
                for index in backlog {
                    if let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut)
                        && conn.reset_by_listener()
                    {
                        self.drop_conn(index);
                    }
                }
            }
        }
        self.free.push(id);
    }

    /// The readiness of the end whose descriptor `fd` is (see
    /// [`Conn::readiness`]), `None` when `fd` is not an end's: a listener is
    /// readable while its backlog holds a connection. The simulation's
    /// poller asks it of every channel on every wait, so it takes as few
    /// comparisons as it can (each is a traced call in a fuzzer's build):
    /// id 0 (no end) wraps to an index past the table, so one bounds check
    /// tells both.
    #[inline]
    pub(super) fn fd_readiness(&self, fd: BorrowedFd<'_>, interest: Interest) -> Option<Readiness> {
        let &id = self.by_fd.get(fd.as_raw_fd() as usize)?;
        let r = match self.slots.get(usize::from(id).wrapping_sub(1))? {
            &Slot::Stream { conn, side, .. } => match self.conns.get(conn) {
                Some(Some(conn)) => conn.readiness(side, interest),
                _ => Readiness::HANGUP,
            },
            Slot::Listener { backlog, .. } => {
                let r = super::pipe::bits_if(!backlog.is_empty(), Readiness::READABLE);
                Readiness::from_bits_truncate(r & interest.bits())
            }
            Slot::Free => Readiness::INVALID,
        };
        Some(r)
    }
}

/// Closes end `id` (an [`End`] was dropped).
pub(super) fn release(id: u16) {
    // A thread's table is gone only while the thread exits: nothing to tell.
    let _ = NET.try_with(|net| net.borrow_mut().release(id));
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::Net;

    /// Past the descriptor limit (a number above the highest channel that
    /// `fcntl` refuses with `EINVAL`), a placeholder still comes, with the
    /// lowest free number: the simulation goes on, only out of order.
    #[test]
    fn a_placeholder_past_the_descriptor_limit_takes_the_lowest_free_number() {
        // As if a channel were open just below the largest descriptor
        // number: the next one above it is past any limit.
        let mut net = Net { top: (i32::MAX - 1) as usize, ..Net::default() };
        let fd = net.placeholder().expect("a placeholder below the limit");
        assert!(fd.as_raw_fd() < i32::MAX, "{}", fd.as_raw_fd());
    }
}
