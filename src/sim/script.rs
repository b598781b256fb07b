//! The simulated poller's script: what it does to the truth.

use super::chooser::Chooser;
use super::log::note;
use crate::poller::Event;
use crate::poller::scripted::Script;
use crate::readiness::Readiness;

/// Alters readiness as the chooser says: withholds real readiness (a slow
/// network, a slow connect), adds readiness that is not there (spurious
/// wake-ups), reports readiness for channels that have since closed, and
/// reorders.
pub(crate) struct Chaos {
    pub chooser: std::rc::Rc<Chooser>,
    /// After the run: report the truth only.
    pub truthful: bool,
    /// What the last wait delivered: key, channel number (`None`:
    /// unknown), readiness and notes (`log::note`), for the trace.
    pub delivered: Vec<(u64, Option<u32>, Readiness, u8)>,
    /// Channel numbers (`#n`, in the order channels joined the map), for
    /// the trace and for a canonical order: descriptor numbers depend on
    /// what else the process has open, channel numbers do not. With the
    /// keys of the channels that left the map (`closed`).
    pub ids: super::check::Ids,
    /// The live keys with their channel numbers, put in order only when one
    /// is picked (reused from wait to wait).
    pub live: Vec<(u32, u64)>,
    /// The reports with their channel numbers, in channel order (reused).
    pub keyed: Vec<(Option<u32>, Event)>,
}

impl Script for Chaos {
    fn adjust(&mut self, live: &[u64], events: &mut Vec<Event>) {
        // One borrow of the numbers for the whole wait, the fields split so
        // that the lists can be written meanwhile.
        let Chaos { chooser, truthful, delivered, ids, live: numbered, keyed } = self;
        let ids = ids.borrow();
        delivered.clear();
        // One lookup per key, kept for the trace, then a sort on the
        // numbers (unknown last) when they are not in order already: they
        // nearly always are, as the in-memory channels' descriptors are
        // numbered in the order they joined (`memory::net`'s placeholder),
        // and a test of the order is a comparison per report where the
        // sort's own bookkeeping cost a dozen.
        if *truthful {
            // The settling's waits: the truth, numbered straight into what
            // is delivered.
            delivered.extend(events.iter().map(|&(k, r)| (k, ids.get(k), r, 0)));
            if delivered.is_sorted_by_key(delivered_number) {
                return; // `events` already is the truth, in channel order
            }
            delivered.sort_by_key(delivered_number);
        } else {
            keyed.clear();
            keyed.extend(events.iter().map(|&e| (ids.get(e.0), e)));
            if !keyed.is_sorted_by_key(number) {
                keyed.sort_by_key(number);
            }
            alter(chooser, &ids, keyed, numbered, live, delivered);
        }
        events.clear();
        events.extend(delivered.iter().map(|&(k, _, r, _)| (k, r)));
    }
}

/// A report's channel number, unknown channels last.
fn number(keyed: &(Option<u32>, Event)) -> u32 {
    keyed.0.unwrap_or(u32::MAX)
}

/// [`number`] of a delivered report.
fn delivered_number(report: &(u64, Option<u32>, Readiness, u8)) -> u32 {
    report.1.unwrap_or(u32::MAX)
}

/// What a wait delivers of the truth in `keyed`, as the chooser says,
/// into `out`; `live` holds the keys of every watched channel, `numbered`
/// is room to number them in.
fn alter(
    c: &Chooser,
    ids: &super::check::IdTable,
    keyed: &[(Option<u32>, Event)],
    numbered: &mut Vec<(u32, u64)>,
    live: &[u64],
    out: &mut Vec<(u64, Option<u32>, Readiness, u8)>,
) {
    for &(id, (key, r)) in keyed {
        if c.one_in(6) {
            continue; // withheld: level-triggered, so it comes back later
        }
        let mut notes = 0;
        let mut r = r;
        if c.one_in(8) {
            r |= Readiness::READABLE;
            notes |= note::SPURIOUS_READABLE;
        }
        if c.one_in(8) {
            r |= Readiness::WRITABLE;
            notes |= note::SPURIOUS_WRITABLE;
        }
        out.push((key, id, r, notes));
    }
    if !live.is_empty() && c.one_in(5) {
        // The n-th live channel in channel order, found only when a
        // wake-up is invented (one wait in five, none in the settling):
        // the same key a full sort would give, without numbering and
        // sorting every live channel on every wait.
        let n = c.below(live.len()).unwrap_or(0);
        numbered.clear();
        numbered.extend(live.iter().map(|&key| (ids.get(key).unwrap_or(u32::MAX), key)));
        // Usually in order already (see `adjust`): then the n-th is at n.
        let key = if numbered.is_sorted() { numbered[n].1 } else { numbered.select_nth_unstable(n).1.1 };
        let r = if c.one_in(2) { Readiness::READABLE } else { Readiness::WRITABLE };
        out.push((key, ids.get(key), r, note::WAKEUP));
    }
    if !ids.closed.is_empty() && c.one_in(6) {
        let key = ids.closed[c.below(ids.closed.len()).unwrap_or(0)];
        out.push((key, ids.get(key), Readiness::READABLE | Readiness::WRITABLE, note::CLOSED));
    }
    if out.len() > 1 {
        let k = c.below(out.len()).unwrap_or(0);
        out.rotate_left(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(seed: u64, truthful: bool) -> Chaos {
        Chaos {
            chooser: std::rc::Rc::new(Chooser::seeded(seed)),
            truthful,
            delivered: Vec::new(),
            ids: Default::default(),
            live: Vec::new(),
            keyed: Vec::new(),
        }
    }

    /// While the steps run, the script withholds real readiness now and
    /// then (it is level-triggered: it comes back) and only ever adds to
    /// what it delivers; in the settling it delivers the truth, always.
    #[test]
    fn the_script_withholds_real_readiness_but_never_in_the_settling() {
        let (mut withheld, mut delivered) = (0, 0);
        let mut script = chaos(5, false);
        for _ in 0..600 {
            // No live channel and no closed one: no invented report.
            let mut events = vec![(7, Readiness::READABLE)];
            script.adjust(&[], &mut events);
            match events[..] {
                [] => withheld += 1,
                [(7, r)] if r.contains(Readiness::READABLE) => delivered += 1,
                ref other => panic!("the script changed the truth into {other:?}"),
            }
        }
        assert!(withheld > 30 && delivered > 300, "withheld {withheld}, delivered {delivered}");

        let mut script = chaos(5, true);
        for _ in 0..600 {
            let mut events = vec![(7, Readiness::READABLE), (9, Readiness::WRITABLE)];
            script.adjust(&[7, 9, 11], &mut events);
            assert_eq!(events, [(7, Readiness::READABLE), (9, Readiness::WRITABLE)], "the truth");
        }
    }
}
