//! The `select(2)` backend, asyncore's default.
//!
//! rustix sizes the descriptor sets to the highest descriptor, so this backend
//! has no `FD_SETSIZE` limit (asyncore's raised `ValueError` past 1024, P2), but
//! its cost is O(highest descriptor) per wait. It cannot see a hang-up on a
//! channel that wants neither reading nor writing: use poll or epoll for that.
//! Urgent data is watched (the exception set) only for a channel whose
//! interest includes priority, as poll and epoll do.
//!
//! This is the one module of rolecore that contains `unsafe`: rustix's
//! `select` is an `unsafe fn` because the kernel reads descriptor numbers out
//! of plain bit sets, where the type system cannot check that they are open.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use rustix::event::{FdSetElement, FdSetIter, fd_set_insert, fd_set_num_elements, select};

use super::{Event, Readiness, Source, retry_interrupted};

pub(crate) struct SelectPoller {
    read: Vec<FdSetElement>,
    write: Vec<FdSetElement>,
    except: Vec<FdSetElement>,
    /// Registration keys by descriptor, to map the sets' bits back.
    keys: Vec<u64>,
    /// What each descriptor reported, merged from the three sets.
    merged: Vec<Readiness>,
}

impl SelectPoller {
    pub fn new() -> Self {
        SelectPoller {
            read: Vec::new(),
            write: Vec::new(),
            except: Vec::new(),
            keys: Vec::new(),
            merged: Vec::new(),
        }
    }

    pub fn wait<'a>(
        &mut self,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for set in [&mut self.read, &mut self.write, &mut self.except] {
            set.iter_mut().for_each(|e| *e = FdSetElement::default());
        }
        let mut nfds = 0;
        for source in sources {
            let fd = source.fd.as_raw_fd();
            let wanted = source.interest;
            if wanted.is_empty() {
                continue;
            }
            nfds = nfds.max(fd + 1);
            let len = fd_set_num_elements(1, nfds);
            for set in [&mut self.read, &mut self.write, &mut self.except] {
                if set.len() < len {
                    set.resize(len, FdSetElement::default());
                }
            }
            if self.keys.len() < nfds as usize {
                self.keys.resize(nfds as usize, 0);
                self.merged.resize(nfds as usize, Readiness::EMPTY);
            }
            self.keys[fd as usize] = source.key;
            if wanted.is_readable() {
                fd_set_insert(&mut self.read, fd);
            }
            if wanted.is_writable() {
                fd_set_insert(&mut self.write, fd);
            }
            // Only with priority interest, as poll's POLLPRI and epoll's
            // EPOLLPRI: asyncore put every descriptor in the exception set,
            // and an urgent byte on a channel that does not read (paused by
            // back-pressure) was then reported forever, though the loop
            // delivers priority data only to a channel that reads: a spin.
            if wanted.is_priority() {
                fd_set_insert(&mut self.except, fd);
            }
        }
        let len = fd_set_num_elements(1, nfds);
        let (read, write, except) = (&mut self.read[..len], &mut self.write[..len], &mut self.except[..len]);
        let ready = retry_interrupted(
            timeout,
            |t| {
                // SAFETY: every descriptor set in `read`, `write` and `except`
                // was taken from a `BorrowedFd<'a>` yielded by `sources`. The
                // lifetime `'a` is a parameter of this function, so it outlives
                // the call: the channels that own those descriptors stay
                // borrowed, hence open, until `select` has returned.
                // The sets hold `fd_set_num_elements(1, nfds)` elements, which
                // covers every descriptor below `nfds`, as `select` requires.
                unsafe { select(nfds, Some(read), Some(write), Some(except), t) }
            },
            0,
        )?;
        if ready == 0 {
            return Ok(());
        }
        let merged = &mut self.merged;
        for (set, bit) in [
            (&self.read, Readiness::READABLE),
            (&self.write, Readiness::WRITABLE),
            (&self.except, Readiness::PRIORITY),
        ] {
            for fd in FdSetIter::new(&set[..len]) {
                merged[fd as usize] |= bit;
            }
        }
        for (fd, r) in merged.iter_mut().enumerate().take(nfds as usize) {
            if !r.is_empty() {
                events.push((self.keys[fd], *r));
                *r = Readiness::EMPTY;
            }
        }
        Ok(())
    }
}
