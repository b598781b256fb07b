//! The simulated poller's script: what it does to the truth.

use std::collections::HashMap;
use std::fmt::Write;

use super::chooser::Chooser;
use crate::poller::Event;
use crate::poller::scripted::Script;
use crate::readiness::Readiness;

/// Alters readiness as the chooser says: withholds real readiness (a slow
/// network, a slow connect), adds readiness that is not there (spurious
/// wake-ups), reports readiness for channels that have since closed, and
/// reorders.
pub(crate) struct Chaos {
    pub chooser: std::rc::Rc<std::cell::RefCell<Chooser>>,
    /// Keys of channels that have left the map.
    pub graveyard: Vec<u64>,
    /// After the run: report the truth only.
    pub truthful: bool,
    /// What the last wait delivered, with notes, for the trace.
    pub delivered: Vec<(u64, Readiness, String)>,
    /// Channel numbers (`#n`, in the order channels joined the map), for
    /// the notes and for a canonical order: descriptor numbers depend on
    /// what else the process has open, channel numbers do not.
    pub ids: HashMap<u64, u32>,
}

impl Script for Chaos {
    fn adjust(&mut self, live: &[u64], events: &mut Vec<Event>) {
        self.delivered.clear();
        let id = |key: &u64| self.ids.get(key).copied().unwrap_or(u32::MAX);
        events.sort_by_key(|(key, _)| id(key));
        let mut live = live.to_vec();
        live.sort_by_key(id);
        if self.truthful {
            self.delivered.extend(events.iter().map(|&(k, r)| (k, r, String::new())));
            return;
        }
        let mut c = self.chooser.borrow_mut();
        let mut out: Vec<(u64, Readiness, String)> = Vec::with_capacity(events.len() + 2);
        for &(key, r) in events.iter() {
            if c.one_in(6) {
                continue; // withheld: level-triggered, so it comes back later
            }
            let mut note = String::new();
            let mut r = r;
            if c.one_in(8) {
                r |= Readiness::READABLE;
                note.push_str(" +spurious READABLE");
            }
            if c.one_in(8) {
                r |= Readiness::WRITABLE;
                note.push_str(" +spurious WRITABLE");
            }
            out.push((key, r, note));
        }
        if !live.is_empty() && c.one_in(5) {
            let key = live[c.below(live.len()).unwrap_or(0)];
            let r = if c.one_in(2) { Readiness::READABLE } else { Readiness::WRITABLE };
            out.push((key, r, " (spurious wake-up)".to_owned()));
        }
        if !self.graveyard.is_empty() && c.one_in(6) {
            let key = self.graveyard[c.below(self.graveyard.len()).unwrap_or(0)];
            out.push((key, Readiness::READABLE | Readiness::WRITABLE, " (for a closed channel)".to_owned()));
        }
        if out.len() > 1 {
            let k = c.below(out.len()).unwrap_or(0);
            out.rotate_left(k);
        }
        events.clear();
        events.extend(out.iter().map(|(k, r, _)| (*k, *r)));
        self.delivered = out;
    }
}

impl Chaos {
    /// The last wait's report, one line.
    pub fn describe(&self) -> String {
        let mut line = String::new();
        for (key, r, note) in &self.delivered {
            match self.ids.get(key) {
                Some(id) => write!(line, " #{id} {r:?}{note};"),
                None => write!(line, " #? {r:?}{note};"),
            }
            .expect("writing to a String");
        }
        if line.is_empty() { " nothing".to_owned() } else { line }
    }
}
