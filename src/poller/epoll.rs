//! The `epoll(7)` backend: registrations live in the kernel, a wait costs
//! O(ready channels).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::epoll;

use super::{Event, Interest, Readiness, retry_interrupted};

/// How many readiness reports one `epoll_wait` returns at most. When more
/// channels are ready, the kernel hands the rest out on the next waits, in
/// turn: no channel starves (peer-conformance item 25).
pub(crate) const EVENTS_CAPACITY: usize = 1024;

pub(crate) struct EpollPoller {
    epoll: OwnedFd,
    buffer: Vec<epoll::Event>,
}

impl EpollPoller {
    pub fn new() -> io::Result<Self> {
        Ok(EpollPoller {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            buffer: Vec::with_capacity(EVENTS_CAPACITY),
        })
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

    pub fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        self.buffer.clear();
        let epoll = &self.epoll;
        let buffer = &mut self.buffer;
        retry_interrupted(timeout, |t| epoll::wait(epoll, spare_capacity(buffer), t), 0)?;
        events.extend(self.buffer.iter().map(|e| (e.data.u64(), readiness(e.flags))));
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

fn readiness(flags: epoll::EventFlags) -> Readiness {
    let mut r = Readiness::EMPTY;
    if flags.contains(epoll::EventFlags::IN) {
        r |= Readiness::READABLE;
    }
    if flags.contains(epoll::EventFlags::OUT) {
        r |= Readiness::WRITABLE;
    }
    if flags.contains(epoll::EventFlags::PRI) {
        r |= Readiness::PRIORITY;
    }
    if flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::RDHUP) {
        r |= Readiness::HANGUP;
    }
    if flags.contains(epoll::EventFlags::ERR) {
        r |= Readiness::ERROR;
    }
    r
}
