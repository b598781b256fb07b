//! A script that alters what a real backend reports: the ground truth comes
//! from the backend with a zero timeout (`poll(2)`, for a simulation's map),
//! then the script withholds, adds, reorders or invents readiness. Used by
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

    /// Never blocks: a simulation advances by steps, not by time.
    pub(super) fn wait<'a>(
        &mut self,
        kernel: &mut Kernel,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Events,
    ) -> io::Result<()> {
        self.live.clear();
        let live = &mut self.live;
        let mut sources = sources.inspect(|s| live.push(s.key));
        kernel.wait(&mut sources, events, Some(Duration::ZERO))?;
        // A backend that keeps its registrations reads no source: the script
        // still learns every live key.
        sources.for_each(drop);
        self.script.borrow_mut().adjust(&self.live, events.flatten());
        Ok(())
    }
}
