//! Layer 4: a channel joins the registry — its slot, its predicates asked
//! a first time, its registration with the poller, and (in a simulation)
//! the trace that records its callbacks.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;

use super::{Registry, UNANSWERED};
use crate::map::entry::{Entry, InsertError, Register};
use crate::map::slot::{LISTENER, NO_TIMER, Slot};
use crate::poller::Watched;
use crate::readiness::Interest;
use crate::seal::Seal;
use crate::token::Token;
use crate::trace::{Recorder, SharedTrace, Traced};

/// Why a channel cannot join a map whose shutdown's grace is over.
#[cold]
fn grace_over() -> io::Error {
    io::Error::other("the map's shutdown grace is over: its channels are closing, and no channel joins them")
}

impl Registry {
    pub(crate) fn insert<C: Register<H>, H>(
        &mut self,
        channel: C,
        handler: H,
    ) -> Result<Token, InsertError<C, H>> {
        let index = channel.fd(Seal(())).as_raw_fd() as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let token = self.token(index, self.slots[index].generation);
        if self.closing_all && self.shutdown.is_some() {
            // The grace is over and every channel is being closed: one
            // joining now (from a `handle_close` that reconnects, say)
            // would outlive the shutdown, which then never emptied the map.
            return Err(InsertError { error: grace_over(), channel, handler });
        }
        let slot = &self.slots[index];
        if slot.is_live() {
            // Two owned channels cannot share a descriptor number; only a
            // channel built from a borrowed descriptor could get here.
            let error = io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a channel with this descriptor is already in the map",
            );
            return Err(InsertError { error, channel, handler });
        }
        // The new channel's predicates run here, inside the callback that
        // inserts it (a listener's, typically): with panics caught, a panic
        // in them is the new handler's, as if in its first callback. The
        // channel joins and is closed at once, and the token returned names
        // it no more; the inserting channel goes on (an error here would
        // have closed a listener that returns it with `?`).
        let interest = if self.catch_panics {
            match std::panic::catch_unwind(AssertUnwindSafe(|| channel.interest(&handler, Seal(())))) {
                Ok(interest) => interest,
                Err(payload) => {
                    crate::map::take_unanswered();
                    // Not watched: joins as always ready, so that its
                    // discard asks the poller nothing.
                    self.place(token, channel.into_entry(handler, Seal(())), Interest::NONE, true, false);
                    let entry = self.slots[index].take().expect("placed above");
                    self.panicked(token, entry, payload);
                    return Ok(token);
                }
            }
        } else {
            channel.interest(&handler, Seal(()))
        };
        let unanswered = crate::map::take_unanswered();
        let mut always_ready = channel.always_ready(Seal(()));
        let fd = channel.fd(Seal(()));
        if !always_ready {
            // A descriptor still registered under an older token (taken out
            // of an entry by a swap, back before the map rebuilt its
            // registrations) is watched again, under its new token.
            match self.poller.register(fd, token.key(), interest) {
                Ok(watched) => always_ready = watched == Watched::AlwaysReady,
                Err(error) => return Err(InsertError { error, channel, handler }),
            }
        }
        let listener = channel.takes_no_idle_timeout(Seal(()));
        self.late_listener |= listener && self.shutdown.is_some();
        self.place(token, channel.into_entry(handler, Seal(())), interest, always_ready, false);
        self.slots[token.index() as usize].set(LISTENER, listener);
        if unanswered {
            self.unanswered.push(token);
            self.pending |= UNANSWERED;
        }
        Ok(token)
    }

    /// Inserts one of rolecore's own entries (a mailbox).
    pub(crate) fn insert_entry(&mut self, entry: Box<dyn Entry>, daemon: bool) -> io::Result<Token> {
        let index = entry.fd().as_raw_fd() as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        let token = self.token(index, self.slots[index].generation);
        let interest = entry.interest();
        let always_ready = self.poller.register(entry.fd(), token.key(), interest)? == Watched::AlwaysReady;
        self.place(token, entry, interest, always_ready, daemon);
        self.slots[index].set(NO_TIMER, true);
        Ok(token)
    }

    pub(crate) fn place(
        &mut self,
        token: Token,
        entry: Box<dyn Entry>,
        interest: Interest,
        always_ready: bool,
        daemon: bool,
    ) {
        let entry = match &self.trace {
            None => entry,
            Some(trace) => {
                let index = token.index() as usize;
                if self.joined.len() <= index {
                    self.joined.resize(index + 1, 0);
                }
                self.joins += 1;
                self.joined[index] = self.joins;
                traced(trace, token, entry)
            }
        };
        let slot = &mut self.slots[token.index() as usize];
        slot.fill(entry, interest, always_ready, daemon);
        self.len += usize::from(!daemon);
        self.always_ready += usize::from(always_ready);
        if always_ready {
            self.pending |= super::RARE;
        }
    }
}

/// A map that traces (the simulation's) records the entry's joining, and
/// wraps it in one that records its callbacks. Once per insert; a map that
/// does not trace never gets here.
#[cold]
fn traced(trace: &SharedTrace, token: Token, entry: Box<dyn Entry>) -> Box<dyn Entry> {
    trace.borrow_mut().push((token, Traced::Inserted(entry.joined())));
    entry.traced(Recorder::new(trace.clone(), token))
}
