//! A script that alters what a real backend reports: the ground truth comes
//! from the in-memory channels' queues and, for any kernel descriptor in the
//! map, from the backend with a zero timeout (`poll(2)`, for a simulation's
//! map); then the script withholds, adds, reorders or invents readiness. Used by
//! [`sim`](crate::sim); a map that is not simulated has no script, and its
//! poller pays one branch per wait for the possibility.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::{Event, Events, Kernel, Source};

/// Alters what one wait reports.
pub(crate) trait Script {
    /// `live` holds the keys of every watched channel; `events` the truth,
    /// to be altered in place.
    fn adjust(&mut self, live: &[u64], events: &mut Vec<Event>);
}

/// A script, shared by the simulation that writes it and the poller.
pub(crate) type SharedScript = Rc<RefCell<dyn Script>>;

/// The script a [`Poller`](super::Poller) wraps its backend in.
pub(crate) struct Scripted {
    /// The keys of the descriptors watched in this wait (reused).
    live: Vec<u64>,
    script: SharedScript,
}

impl Scripted {
    pub(crate) fn new(script: SharedScript) -> Self {
        Scripted { live: Vec::new(), script }
    }

    /// The same script, for a poller that replaces this one.
    pub(crate) fn successor(&self) -> Self {
        Scripted::new(self.script.clone())
    }

    /// Never blocks: a simulation advances by steps, not by time. Out of
    /// line: inlined into the loop's wait, it made `Map::poll` keep more
    /// values in registers on the real path (measured: 6 more instructions
    /// per echoed message with it inlined).
    #[inline(never)]
    pub(super) fn wait<'a>(
        &mut self,
        kernel: &mut Kernel,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.live.clear();
        let live = &mut self.live;
        // In-memory channels are answered here, from one borrow of their
        // table, straight into the list of reports; only the others reach
        // the kernel (whose wait is then zero: the simulation decides when
        // time moves, so a wait never blocks), and only when there is one:
        // a simulation's channels are all in memory, and an empty wait of
        // the kernel's was a dozen traced comparisons per iteration in a
        // fuzzer's build. The kernel's reports come after the memory's: the
        // script puts them in channel order anyway.
        let mut others = Vec::new();
        crate::memory::probe(|net| {
            for s in sources {
                live.push(s.key);
                match net.readiness(s.fd, s.interest) {
                    Some(r) if r.is_empty() => {}
                    Some(r) => events.push((s.key, r)),
                    None => others.push(s),
                }
            }
        });
        // Time is virtual: a wait with a limit never blocks (the registry
        // moves the clock by the limit instead when nothing was ready). One
        // with none, which the in-memory world had nothing for, waits on the
        // kernel's descriptors among the sources (the waker's, a socket a
        // test inserted), as a map on the real clock would; with none of
        // them nothing could ever end it, and the wait is refused.
        let blocking = timeout.is_none() && events.is_empty();
        if !others.is_empty() {
            kernel.wait(others.into_iter(), events, if blocking { None } else { Some(Duration::ZERO) })?;
        } else if blocking {
            return Err(waits_forever());
        }
        self.script.borrow_mut().adjust(&self.live, events.flatten());
        Ok(())
    }
}

/// Why a simulation's map cannot wait without a limit.
#[cold]
fn waits_forever() -> io::Error {
    io::Error::new(
        io::ErrorKind::Deadlock,
        "a simulation's map was asked to wait without a limit, with nothing ready, no timer armed \
         and no kernel descriptor to wait on: its simulated peers act only in Sim::run, so nothing \
         could ever end the wait; run the simulation with Sim::run, or give the map a limit \
         (Map::run_until, a LoopOptions count)",
    )
}
