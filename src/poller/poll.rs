//! The `poll(2)` backend: the descriptor list is rebuilt from the map on every
//! wait, as asyncore's `poll2` did, but into a buffer that is reused.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};

use super::{Event, Interest, Readiness, Source, retry_interrupted};

pub(crate) struct PollPoller {
    /// Always empty between waits; kept for its capacity. `PollFd` borrows the
    /// descriptors it watches, so the list cannot outlive one wait, but its
    /// allocation can: see [`recycle`].
    spare: Vec<PollFd<'static>>,
    keys: Vec<u64>,
}

impl PollPoller {
    pub fn new() -> Self {
        PollPoller { spare: Vec::new(), keys: Vec::new() }
    }

    pub fn wait<'a>(
        &mut self,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let mut fds: Vec<PollFd<'a>> = recycle(std::mem::take(&mut self.spare));
        self.keys.clear();
        for source in sources {
            fds.push(PollFd::from_borrowed_fd(source.fd, flags(source.interest)));
            self.keys.push(source.key);
        }
        // Nothing to watch and no time to wait (a simulation whose channels
        // are all in memory): the answer is known without a system call.
        let result = if fds.is_empty() && timeout == Some(Duration::ZERO) {
            Ok(0)
        } else {
            retry_interrupted(timeout, |t| poll(&mut fds, t), 0)
        };
        if result.is_ok() {
            for (fd, &key) in fds.iter().zip(&self.keys) {
                let r = readiness(fd.revents());
                if !r.is_empty() {
                    events.push((key, r));
                }
            }
        }
        self.spare = recycle(fds);
        result.map(drop)
    }
}

/// Empties a vector and reuses its allocation for a vector of another
/// lifetime. The standard library collects in place when the element layouts
/// match, so no allocation happens; if it ever did not, this would allocate
/// and stay correct.
// `filter_map` rather than `filter`: the element type must change lifetime.
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'from, 'to>(mut v: Vec<PollFd<'from>>) -> Vec<PollFd<'to>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn flags(interest: Interest) -> PollFlags {
    let mut flags = PollFlags::empty();
    if interest.is_readable() {
        flags |= PollFlags::IN;
    }
    if interest.is_writable() {
        flags |= PollFlags::OUT;
    }
    if interest.is_priority() {
        flags |= PollFlags::PRI;
    }
    flags
}

fn readiness(flags: PollFlags) -> Readiness {
    let mut r = Readiness::EMPTY;
    if flags.contains(PollFlags::IN) {
        r |= Readiness::READABLE;
    }
    if flags.contains(PollFlags::OUT) {
        r |= Readiness::WRITABLE;
    }
    if flags.contains(PollFlags::PRI) {
        r |= Readiness::PRIORITY;
    }
    if flags.intersects(PollFlags::HUP | PollFlags::RDHUP) {
        r |= Readiness::HANGUP;
    }
    if flags.contains(PollFlags::ERR) {
        r |= Readiness::ERROR;
    }
    if flags.contains(PollFlags::NVAL) {
        r |= Readiness::INVALID;
    }
    r
}

/// Whether a descriptor is readable right now (a zero-timeout `poll`): a
/// shutting-down listener asks it for the connections still pending.
pub(crate) fn readable_now(fd: &impl AsFd) -> bool {
    if let Some(r) = crate::memory::readiness(fd.as_fd(), crate::readiness::Interest::READ) {
        return r.is_readable();
    }
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
        && fds[0].revents().contains(PollFlags::IN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_keeps_the_allocation() {
        let v: Vec<PollFd<'static>> = Vec::with_capacity(64);
        let ptr = v.as_ptr() as usize;
        let back: Vec<PollFd<'_>> = recycle(v);
        assert_eq!(back.capacity(), 64);
        assert_eq!(back.as_ptr() as usize, ptr);
    }

    /// Every flag `poll` reports has its readiness, alone and in every
    /// combination: `POLLNVAL` (a descriptor closed behind its channel's
    /// back) included, which must close the channel rather than be dropped,
    /// since `poll` then reports it on every wait at once (a spin).
    #[test]
    fn every_poll_flag_maps_to_its_readiness() {
        let mut pairs = super::super::flag_pairs!(PollFlags).to_vec();
        pairs.push((PollFlags::NVAL, Readiness::INVALID));
        super::super::assert_every_combination(PollFlags::empty(), &pairs, readiness);
    }
}
