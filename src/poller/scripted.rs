//! A poller whose reports a script may alter: the ground truth comes from
//! `poll(2)` with a zero timeout, then the script withholds, adds, reorders
//! or invents readiness. Used by [`sim`](crate::sim); the real backends never
//! see it.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::poll::PollPoller;
use super::{Event, Source};

/// Alters what one wait reports.
pub(crate) trait Script {
    /// `live` holds the keys of every watched channel; `events` the truth,
    /// to be altered in place.
    fn adjust(&mut self, live: &[u64], events: &mut Vec<Event>);
}

pub(crate) struct ScriptedPoller {
    truth: PollPoller,
    sources: Vec<u64>,
    script: Rc<RefCell<dyn Script>>,
}

impl ScriptedPoller {
    pub fn new(script: Rc<RefCell<dyn Script>>) -> Self {
        ScriptedPoller { truth: PollPoller::new(), sources: Vec::new(), script }
    }

    /// Never blocks: a simulation advances by steps, not by time.
    pub fn wait<'a>(
        &mut self,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        self.sources.clear();
        let keys = &mut self.sources;
        let sources = sources.inspect(|s| keys.push(s.key));
        self.truth.wait(sources, events, Some(Duration::ZERO))?;
        self.script.borrow_mut().adjust(&self.sources, events);
        Ok(())
    }
}
