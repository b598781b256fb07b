//! The `epoll(7)` backend: registrations live in the kernel, a wait costs
//! O(ready channels).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::epoll;

use super::{Interest, Readiness, retry_interrupted_at, round_up_to_millis, timespec};
use rustix::event::Timespec;

/// How many readiness reports one `epoll_wait` returns at most. When more
/// channels are ready, the kernel hands the rest out on the next waits, in
/// turn: no channel starves (peer-conformance item 25).
pub(crate) const EVENTS_CAPACITY: usize = 1024;

pub(crate) struct EpollPoller {
    epoll: OwnedFd,
    /// The last timeout asked for, and what it was converted to (rounded up
    /// to a millisecond, capped): a loop asks for the same one every time.
    last: (Option<Duration>, Option<Duration>, Option<Timespec>),
}

impl EpollPoller {
    pub fn new() -> io::Result<Self> {
        Ok(EpollPoller { epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?, last: (None, None, None) })
    }

    pub fn register(&mut self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> io::Result<()> {
        epoll::add(&self.epoll, fd, epoll::EventData::new_u64(key), flags(interest))?;
        Ok(())
    }

    pub fn reregister(&mut self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> io::Result<()> {
        epoll::modify(&self.epoll, fd, epoll::EventData::new_u64(key), flags(interest))?;
        Ok(())
    }

    pub fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        epoll::delete(&self.epoll, fd)?;
        Ok(())
    }

    /// Waits, leaving the reports in `buffer` as the kernel wrote them (the
    /// loop reads them there).
    #[inline(always)]
    pub fn wait(&mut self, buffer: &mut Vec<epoll::Event>, timeout: Option<Duration>) -> io::Result<()> {
        buffer.clear();
        if buffer.capacity() < EVENTS_CAPACITY {
            // Once per map: the buffer is kept from one wait to the next.
            buffer.reserve_exact(EVENTS_CAPACITY);
        }
        let epoll = &self.epoll;
        if timeout.is_none() {
            // A wait without a limit (a loop's usual one: `observed_timeout`)
            // converts nothing and is retried as it was after a signal.
            return loop {
                match epoll::wait(epoll, spare_capacity(&mut *buffer), None) {
                    Err(rustix::io::Errno::INTR) => continue,
                    result => break result.map(drop).map_err(io::Error::from),
                }
            };
        }
        if timeout != self.last.0 {
            let rounded = timeout.map(round_up_to_millis);
            self.last = (timeout, rounded, rounded.map(timespec));
        }
        let (_, timeout, spec) = self.last;
        retry_interrupted_at(timeout, spec, |t| epoll::wait(epoll, spare_capacity(&mut *buffer), t), 0)?;
        Ok(())
    }
}

fn flags(interest: Interest) -> epoll::EventFlags {
    let mut flags = epoll::EventFlags::empty();
    if interest.is_readable() {
        flags |= epoll::EventFlags::IN;
    }
    if interest.is_writable() {
        flags |= epoll::EventFlags::OUT;
    }
    if interest.is_priority() {
        flags |= epoll::EventFlags::PRI;
    }
    flags
}

/// `EPOLLIN`, `EPOLLPRI`, `EPOLLOUT`, `EPOLLERR` and `EPOLLHUP` are the
/// five low bits of an epoll event; the readiness of each of their 32
/// combinations, so that a conversion is one load per event.
const READINESS: [Readiness; 32] = {
    const fn has(bits: u32, flag: epoll::EventFlags) -> bool {
        bits & flag.bits() != 0
    }
    let mut table = [Readiness::EMPTY; 32];
    let mut bits = 0;
    while bits < 32 {
        let mut r = 0;
        if has(bits, epoll::EventFlags::IN) {
            r |= Readiness::READABLE.bits();
        }
        if has(bits, epoll::EventFlags::OUT) {
            r |= Readiness::WRITABLE.bits();
        }
        if has(bits, epoll::EventFlags::PRI) {
            r |= Readiness::PRIORITY.bits();
        }
        if has(bits, epoll::EventFlags::HUP) {
            r |= Readiness::HANGUP.bits();
        }
        if has(bits, epoll::EventFlags::ERR) {
            r |= Readiness::ERROR.bits();
        }
        table[bits as usize] = Readiness::from_bits_truncate(r);
        bits += 1;
    }
    table
};

#[inline]
pub(super) fn readiness(flags: epoll::EventFlags) -> Readiness {
    let r = READINESS[(flags.bits() & 31) as usize];
    if flags.contains(epoll::EventFlags::RDHUP) { r | Readiness::HANGUP } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoll_flag_maps_to_its_readiness() {
        use epoll::EventFlags as F;
        let pairs = super::super::flag_pairs!(F);
        super::super::assert_every_combination(F::empty(), &pairs, readiness);
    }
}
