//! The run's trace: recorded as small values while the run goes, rendered
//! into lines of text only when someone reads it.
//!
//! Why not text from the start: a fuzz target runs thousands of worlds a
//! second and reads the trace of almost none of them; formatting every
//! event was most of what a run cost.

use std::cell::Cell;
use std::fmt::{self, Write};
use std::ops::Deref;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::readiness::Readiness;
use crate::trace::{Callback, Traced};

/// Notes on one report of a wait: what the script did to it.
pub(crate) mod note {
    pub const SPURIOUS_READABLE: u8 = 1;
    pub const SPURIOUS_WRITABLE: u8 = 2;
    /// A wake-up the script invented for a channel that had nothing.
    pub const WAKEUP: u8 = 4;
    /// A report for a channel that has closed.
    pub const CLOSED: u8 = 8;
}

/// What a peer did.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    Connects,
    Vanishes,
    CannotConnect { backlog_full: bool },
    Writes { n: usize, size: usize },
    Reads { got: usize, size: usize },
    HalfCloses,
    Closes { reset: bool },
    Oob { sent: usize },
}

/// One line of the trace, before it is text. `Copy`, owning nothing (a
/// violation's text is kept beside the lines): a run's lines are freed, or
/// cleared for the next run, without a look at each.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Line {
    Step(usize),
    /// A wait: its reports are `delivered[start..end]`.
    Poll {
        start: u32,
        end: u32,
    },
    /// An event the loop recorded for channel `#id`, checked, at `at`.
    Event {
        id: u32,
        event: Traced,
        at: Duration,
    },
    /// The trace's `n`-th violation.
    Violation(u32),
    Peer {
        peer: usize,
        act: Act,
    },
    ConnectOut {
        peer: usize,
        slow: bool,
    },
    Time {
        by: Duration,
        t: Duration,
    },
    Exhaust {
        listener: usize,
        n: u32,
    },
    SlowConnect {
        peer: usize,
        refused: bool,
    },
    Shutdown {
        grace: Duration,
    },
    Settling,
    Stopped,
}

/// One report of a wait, as the trace keeps it: channel number (`None`:
/// unknown), readiness, notes.
type Report = (Option<u32>, Readiness, u8);

thread_local! {
    /// The buffers of the last trace dropped on this thread, emptied, for
    /// the next one: a fuzz target runs thousands of worlds a second, one
    /// after another, and growing every trace from nothing (a dozen
    /// reallocations and copies of its lines) was a visible share of a run.
    static SPARE: Cell<(Vec<Line>, Vec<Report>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// What happened in a simulated run, a line per event: `Deref`s to the
/// lines of text (`report.trace.join("\n")`, `report.trace.iter()`),
/// rendered the first time they are read.
pub struct Trace {
    lines: Vec<Line>,
    /// Every wait's reports, in order.
    delivered: Vec<Report>,
    /// The text of each `Line::Violation`, in order.
    violations: Vec<String>,
    /// The instant times are shown from (the virtual clock's start): a
    /// deadline's time is worked out when it is shown, not for every event.
    origin: Option<Instant>,
    text: OnceLock<Vec<String>>,
}

/// The most lines (and reports) whose buffers a dropped trace leaves to the
/// next: 4 MiB of lines. A run that hit the settling's hard limit (a
/// million iterations) would otherwise keep 64 MB on its thread for good.
const SPARE_MAX: usize = 1 << 16;

impl Default for Trace {
    /// An empty trace, in the buffers of the last one dropped on this thread.
    fn default() -> Trace {
        // Empty buffers while the thread exits (the spare is gone then).
        let (lines, delivered) = SPARE.try_with(Cell::take).unwrap_or_default();
        Trace { lines, delivered, violations: Vec::new(), origin: None, text: OnceLock::new() }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let mut lines = std::mem::take(&mut self.lines);
        let mut delivered = std::mem::take(&mut self.delivered);
        if lines.capacity() > SPARE_MAX || delivered.capacity() > SPARE_MAX {
            return;
        }
        lines.clear();
        delivered.clear();
        // The spare is gone only while the thread exits: then nothing to
        // keep. Of two traces dropped in a row (a report's and an empty
        // one made meanwhile), the bigger buffers stay.
        let _ = SPARE.try_with(|spare| {
            let kept = spare.take();
            spare.set(if kept.0.capacity() > lines.capacity() { kept } else { (lines, delivered) });
        });
    }
}

impl Trace {
    /// Sets the instant times are shown from.
    pub(crate) fn set_origin(&mut self, origin: Instant) {
        self.origin = Some(origin);
    }

    pub(crate) fn push(&mut self, line: Line) {
        self.lines.push(line);
    }

    /// Records a broken invariant.
    pub(crate) fn violation(&mut self, violation: String) {
        self.lines.push(Line::Violation(self.violations.len() as u32));
        self.violations.push(violation);
    }

    /// Records one wait's reports.
    pub(crate) fn poll(&mut self, reports: impl Iterator<Item = Report>) {
        let start = self.delivered.len() as u32;
        self.delivered.extend(reports);
        let end = self.delivered.len() as u32;
        self.lines.push(Line::Poll { start, end });
    }

    /// The lines as text, rendered now (not kept).
    pub(crate) fn render(&self) -> Vec<String> {
        self.lines.iter().map(|line| self.line(line)).collect()
    }

    fn line(&self, line: &Line) -> String {
        let mut s = String::new();
        self.write_line(&mut s, line).expect("writing to a String");
        s
    }

    fn write_line(&self, s: &mut String, line: &Line) -> fmt::Result {
        match line {
            Line::Step(n) => write!(s, "-- step {n}"),
            Line::Poll { start, end } => {
                s.push_str("poll:");
                let reports = &self.delivered[*start as usize..*end as usize];
                if reports.is_empty() {
                    s.push_str(" nothing");
                }
                for &(id, r, notes) in reports {
                    match id {
                        Some(id) => write!(s, " #{id} {r:?}")?,
                        None => write!(s, " #? {r:?}")?,
                    }
                    if notes & note::SPURIOUS_READABLE != 0 {
                        s.push_str(" +spurious READABLE");
                    }
                    if notes & note::SPURIOUS_WRITABLE != 0 {
                        s.push_str(" +spurious WRITABLE");
                    }
                    if notes & note::WAKEUP != 0 {
                        s.push_str(" (spurious wake-up)");
                    }
                    if notes & note::CLOSED != 0 {
                        s.push_str(" (for a closed channel)");
                    }
                    s.push(';');
                }
                Ok(())
            }
            Line::Event { id, event, at } => {
                write!(s, "  #{id} ")?;
                match *event {
                    Traced::Inserted(joined) => write!(s, "joined the map ({joined:?})"),
                    Traced::Removed => s.write_str("closed"),
                    Traced::Called { callback, progress } => {
                        s.write_str(callback_name(callback))?;
                        if progress {
                            s.write_str(" (moved data)")?;
                        }
                        Ok(())
                    }
                    Traced::Deadline(Some(due)) => {
                        let t = self
                            .origin
                            .map_or(Duration::ZERO, |origin| due.saturating_duration_since(origin));
                        write!(s, "deadline at t={t:?}")
                    }
                    Traced::Deadline(None) | Traced::IdleTimeout(None) => s.write_str("timer cleared"),
                    Traced::IdleTimeout(Some(d)) => write!(s, "idle timeout {d:?}"),
                    Traced::Expired => write!(s, "timer expired at t={at:?}"),
                }
            }
            Line::Violation(n) => write!(s, "  !! {}", self.violations[*n as usize]),
            Line::Peer { peer, act } => {
                write!(s, "peer p{peer} ")?;
                match act {
                    Act::Connects => s.write_str("connects"),
                    Act::Vanishes => s.write_str("connects and vanishes before it is accepted"),
                    Act::CannotConnect { backlog_full: true } => {
                        s.write_str("cannot connect: the listener's backlog is full")
                    }
                    Act::CannotConnect { backlog_full: false } => {
                        s.write_str("cannot connect: the listener is closed")
                    }
                    Act::Writes { n, size } => write!(s, "writes {n} of {size} bytes"),
                    Act::Reads { got, size } => write!(s, "reads {got} bytes (asked {size})"),
                    Act::HalfCloses => s.write_str("shuts down its sending side (half-close)"),
                    Act::Closes { reset: true } => s.write_str("resets (closes with unread data)"),
                    Act::Closes { reset: false } => s.write_str("closes"),
                    // As a write's line says it: how much of what was tried went.
                    Act::Oob { sent } => write!(s, "sends {sent} of 1 out-of-band byte"),
                }
            }
            Line::ConnectOut { peer, slow } => {
                write!(s, "p{peer}: the map connects out{}", if *slow { " (slow connect)" } else { "" })
            }
            Line::Time { by, t } => write!(s, "time +{by:?} (t={t:?})"),
            Line::Exhaust { listener, n } => {
                write!(s, "listener {listener}: the next {n} accepts fail with EMFILE")
            }
            Line::SlowConnect { peer, refused } => {
                write!(s, "p{peer}: the slow connect {}", if *refused { "is refused" } else { "completes" })
            }
            Line::Shutdown { grace } => write!(s, "graceful shutdown, grace {grace:?}"),
            Line::Settling => s.write_str("-- settling: every peer closes, readiness is truthful"),
            Line::Stopped => s.write_str("(a handler stopped the loop)"),
        }
    }
}

impl Deref for Trace {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.text.get_or_init(|| self.render())
    }
}

impl Clone for Trace {
    fn clone(&self) -> Trace {
        Trace {
            lines: self.lines.clone(),
            delivered: self.delivered.clone(),
            violations: self.violations.clone(),
            origin: self.origin,
            text: OnceLock::new(),
        }
    }
}

impl PartialEq for Trace {
    fn eq(&self, other: &Trace) -> bool {
        **self == **other
    }
}

impl Eq for Trace {}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

pub(crate) fn callback_name(c: Callback) -> &'static str {
    match c {
        Callback::Connect => "handle_connect",
        Callback::ConnectFailed => "handle_connect_failed",
        Callback::Accept => "handle_accept",
        Callback::Read => "handle_read",
        Callback::Write => "handle_write",
        Callback::Expt => "handle_expt",
        Callback::Timeout => "handle_timeout",
        Callback::Error => "handle_error",
        Callback::Close => "handle_close",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_when_read_and_compare_as_text() {
        let mut trace = Trace::default();
        trace.push(Line::Step(0));
        trace.poll(
            [(Some(2), Readiness::READABLE, note::SPURIOUS_WRITABLE), (None, Readiness::WRITABLE, 0)]
                .into_iter(),
        );
        trace.poll(std::iter::empty());
        let event = Traced::Called { callback: Callback::Read, progress: true };
        trace.push(Line::Event { id: 2, event, at: Duration::ZERO });
        assert_eq!(
            &*trace,
            [
                "-- step 0",
                "poll: #2 READABLE +spurious WRITABLE; #? WRITABLE;",
                "poll: nothing",
                "  #2 handle_read (moved data)",
            ]
        );
        assert_eq!(trace.clone(), trace);
    }

    #[test]
    fn a_new_trace_reuses_the_biggest_buffers_dropped_and_no_huge_ones() {
        let spare = || {
            SPARE.with(|s| {
                let kept = s.take();
                let caps = (kept.0.capacity(), kept.1.capacity());
                s.set(kept);
                caps
            })
        };
        SPARE.with(|s| drop(s.take()));
        let mut big = Trace::default();
        for step in 0..1000 {
            big.push(Line::Step(step));
        }
        let small = Trace::default(); // made while the big one lives
        drop(big);
        let (lines, _) = spare();
        assert!(lines >= 1000, "the big trace's buffer is kept ({lines})");
        drop(small);
        assert_eq!(spare().0, lines, "an empty trace dropped later does not replace it");
        let reused = Trace::default();
        assert!(reused.lines.capacity() >= 1000 && reused.lines.is_empty());
        drop(reused);

        SPARE.with(|s| drop(s.take()));
        let mut huge = Trace::default();
        for step in 0..=SPARE_MAX {
            huge.push(Line::Step(step));
        }
        drop(huge);
        assert_eq!(spare().0, 0, "buffers over SPARE_MAX are freed, not kept");
    }
}
