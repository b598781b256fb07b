//! Layer 1: where a map reads the time.
//!
//! Every deadline, idle timeout, back-off and grace period in the loop is
//! measured on its map's [`Clock`]: the monotonic clock in production, and a
//! virtual one that only the simulation moves, so that a fuzzer can jump
//! hours ahead in one step and the same input replays the same timers.
//!
//! An enum, not a trait object or a type parameter: a real map's clock is
//! always `Monotonic`, the match is one predictable branch next to the
//! `clock_gettime` it guards, and a map that has no timer never reads the
//! clock at all (the loop asks for the time only when a timer is armed).

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A map's source of time.
#[derive(Clone, Default)]
pub(crate) enum Clock {
    /// `Instant::now()`.
    #[default]
    Monotonic,
    /// Time that moves only when the simulation that shares it says so.
    Virtual(VirtualClock),
}

impl Clock {
    /// The current time on this clock. Out of line, as `Instant::now` is:
    /// inlined at the loop's call sites, the match cost the real path
    /// registers and spills in `Map::poll` (measured: 6 instructions per
    /// echoed message).
    #[inline(never)]
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Monotonic => Instant::now(),
            Clock::Virtual(clock) => clock.now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clock::Monotonic => f.write_str("Monotonic"),
            Clock::Virtual(v) => write!(f, "Virtual(+{:?})", v.elapsed()),
        }
    }
}

/// A clock that stands still until it is advanced; clones share the time.
///
/// It starts at the real time of its creation (an `Instant` cannot be made
/// from nothing), and traces print times relative to that start, so a
/// replay prints the same times.
#[derive(Clone)]
pub(crate) struct VirtualClock {
    start: Instant,
    now: Rc<Cell<Instant>>,
}

impl VirtualClock {
    pub(crate) fn new() -> VirtualClock {
        let start = Instant::now();
        VirtualClock { start, now: Rc::new(Cell::new(start)) }
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    /// Moves time forward by `by` (saturating far in the future, where an
    /// `Instant` can no longer represent it: time never goes back).
    pub(crate) fn advance(&self, by: Duration) {
        let now = self.now.get();
        self.now.set(now.checked_add(by).unwrap_or(now));
    }

    /// How far the clock has moved since it was made.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now.get().saturating_duration_since(self.start)
    }

    /// `at` as an offset from the clock's start, for traces.
    pub(crate) fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_moves_only_when_advanced_and_clones_share_it() {
        let clock = VirtualClock::new();
        let shared = Clock::Virtual(clock.clone());
        let t0 = shared.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(shared.now(), t0, "virtual time does not follow the real clock");
        clock.advance(Duration::from_secs(3600));
        assert_eq!(shared.now(), t0 + Duration::from_secs(3600));
        assert_eq!(clock.elapsed(), Duration::from_secs(3600));
        // Too far to represent: time stays where it was rather than wrap.
        clock.advance(Duration::MAX);
        assert_eq!(clock.elapsed(), Duration::from_secs(3600));
    }

    #[test]
    fn the_monotonic_clock_moves() {
        let clock = Clock::Monotonic;
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(clock.now() > a);
    }
}
