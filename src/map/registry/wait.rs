//! Layer 4: the registry's wait — what the poller is asked to watch, for
//! how long (the next deadline, a shutdown's end), and the readiness the
//! map adds itself (regular files, input held above the socket).

use std::io;
use std::time::Duration;

use super::{ORPHANS, RARE, Registry, UNANSWERED};
use crate::clock::Clock;
use crate::poller::{Events, Source};
use crate::readiness::Readiness;
use crate::token::Token;

impl Registry {
    /// Waits for readiness, up to `timeout` and no later than the next
    /// deadline, and adds what was ready to `events`.
    #[inline(always)]
    pub(crate) fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        // The common case, inlined into the loop: no file to report ready,
        // no input held, no deadline to wake for, no shutdown (none of them
        // `RARE`), no registration to rebuild, and epoll, which reads no
        // list of sources. (`RARE` covers the poller too; asked here again,
        // the test is the one `wait_kernel` makes, and its other branch is
        // gone.)
        if self.pending == 0 && self.poller.keeps_registrations() {
            debug_assert!(!self.is_rare(), "a rare wait not marked RARE");
            return self.poller.wait_kernel(events, timeout);
        }
        self.wait_for_all(events, timeout)
    }

    /// Whether [`RARE`] is set: the last wait may have added reports of
    /// the map's own, or a shutdown may be under way.
    #[inline(always)]
    pub(crate) fn marked_rare(&self) -> bool {
        self.pending & RARE != 0
    }

    /// Whether the wait needs more than the kernel's readiness ([`RARE`]).
    fn is_rare(&self) -> bool {
        !self.poller.keeps_registrations()
            || self.always_ready > 0
            || !self.held_input.is_empty()
            || !self.timers.is_empty()
            || self.shutdown.is_some()
    }

    /// [`wait`](Self::wait) in every case.
    ///
    /// [`RARE`] is cleared here before the wait, not after it: it stays set
    /// through the iteration that follows a rare wait, so that the loop
    /// may skip the map's own reports and the shutdown's end when it is
    /// not set (see `Map::iterate`). A rare case that ended costs one more
    /// full wait.
    #[inline(never)]
    fn wait_for_all(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        if !self.is_rare() {
            self.pending &= !RARE;
        }
        if self.pending & ORPHANS != 0 {
            self.rebuild_registrations();
        }
        // Predicates a busy handler could not answer: asked now, when no
        // callback runs (one still busy, in a loop run inside `Kept::with`,
        // is asked again before the next wait).
        if self.pending & UNANSWERED != 0 {
            self.pending &= !UNANSWERED;
            for token in std::mem::take(&mut self.unanswered) {
                self.refresh(token);
            }
        }
        // Timers the last round of expiries armed already due: the wait
        // ends at once for them.
        self.timers.requeue_deferred();
        // A regular file that wants something is ready now: do not sleep. One
        // that wants nothing must not turn the wait into a busy loop.
        let files_ready = self.always_ready > 0
            && self.slots.iter().any(|s| s.always_ready() && s.is_occupied() && !s.interest.is_empty());
        let held = !self.held_input.is_empty();
        let timeout = if files_ready || held { Some(Duration::ZERO) } else { timeout };
        let next_wake = match (self.timers.next_wake(), self.shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match next_wake {
            Some(at) => {
                let until = at.saturating_duration_since(self.clock.now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        };
        let (slots, id) = (&self.slots, self.id);
        // Numbered by hand with a wrapping count, not `enumerate`: in a
        // build with overflow checks (a fuzzer's), its count is checked,
        // one more traced comparison per slot.
        let mut index = 0u32;
        let sources = slots.iter().filter_map(move |s| {
            let i = index;
            index = index.wrapping_add(1);
            // Empty slots first, told apart with one test (a table indexed
            // by descriptor number has many), then files.
            let entry = s.entry()?;
            if s.always_ready() {
                return None;
            }
            let key = Token::new(i, s.generation, id).key();
            Some(Source { fd: entry.fd(), key, interest: s.interest })
        });
        self.poller.wait(sources, events, timeout)?;
        if let Clock::Virtual(clock) = &self.clock
            && let Some(limit) = timeout
            && events.is_empty()
        {
            // A wait on a simulation's clock that nothing ended early lasts
            // its limit, as a kernel wait that timed out would: the clock
            // moves by it, onto the next timer at most. (`Sim::run` waits
            // with a limit of zero: its own steps move the clock.)
            clock.advance(limit);
        }
        if held {
            for token in std::mem::take(&mut self.held_input) {
                if self.slot(token).is_some_and(|s| s.interest.is_readable()) {
                    events.push((token.key(), Readiness::READABLE));
                }
            }
        }
        if files_ready {
            for (i, s) in self.slots.iter().enumerate().filter(|(_, s)| s.always_ready() && s.is_occupied()) {
                let mut r = Readiness::EMPTY;
                if s.interest.is_readable() {
                    r |= Readiness::READABLE;
                }
                if s.interest.is_writable() {
                    r |= Readiness::WRITABLE;
                }
                if !r.is_empty() {
                    events.push((Token::new(i as u32, s.generation, self.id).key(), r));
                }
            }
        }
        Ok(())
    }
}
