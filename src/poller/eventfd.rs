//! The descriptors rolecore makes to wake a loop: an `eventfd` counter that
//! other threads bump and the loop reads back to zero.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{EventfdFlags, eventfd};

/// A non-blocking, close-on-exec `eventfd`.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        Ok(EventFd(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?))
    }

    /// Bumps the counter: the descriptor is readable until drained.
    pub(crate) fn ring(&self) {
        // Only fails when the counter is about to overflow (it is then
        // already far from zero, so the loop wakes anyway) or the descriptor
        // is gone.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Reads the counter back to zero (nothing to read is not an error).
    pub(crate) fn drain(&self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut counter);
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
