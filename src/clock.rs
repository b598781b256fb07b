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
/// It starts [`REAL_CLOCK_GAP`] after the real time of its creation (an
/// `Instant` cannot be made from nothing), and traces print times relative
/// to that start, so a replay prints the same times.
#[derive(Clone)]
pub(crate) struct VirtualClock {
    start: Instant,
    now: Rc<Cell<Instant>>,
}

/// How far ahead of the real clock a virtual clock starts: a deadline a
/// handler took from `Instant::now()` instead of the map's clock then lies
/// long before the simulation began, where the checker sees it for what it
/// is, rather than somewhere in the run where it would fire early, or late,
/// unnoticed.
pub(crate) const REAL_CLOCK_GAP: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

impl VirtualClock {
    pub(crate) fn new() -> VirtualClock {
        let real = Instant::now();
        let start = real.checked_add(REAL_CLOCK_GAP).unwrap_or(real);
        VirtualClock { start, now: Rc::new(Cell::new(start)) }
    }

    /// Whether `at` lies so far before the clock's start (half the gap) that
    /// it came from the real clock, not from this one.
    pub(crate) fn is_real_time(&self, at: Instant) -> bool {
        at.checked_add(REAL_CLOCK_GAP / 2).is_some_and(|later| later < self.start)
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    /// Moves time forward by `by`, up to the last instant an `Instant` can
    /// represent, where the clock then stays: time never goes back, and
    /// everything due by then comes due.
    pub(crate) fn advance(&self, by: Duration) {
        self.now.set(saturating_add(self.now.get(), by));
    }

    /// How far the clock has moved since it was made.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now.get().saturating_duration_since(self.start)
    }

    /// The instant the clock started at.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// `at` as an offset from the clock's start, for traces.
    pub(crate) fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }
}

/// `at + by`, or the last instant an `Instant` can represent when that is
/// past it. For the times that must exist (a shutdown's end, the end of a
/// back-off): a user's `Duration::MAX` or a virtual clock moved to the end
/// of time would otherwise panic in `Instant`'s `+`.
#[inline]
pub(crate) fn saturating_add(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or_else(|| last_instant(at, by))
}

/// The largest `at + d` with `d <= by` that an `Instant` represents, to the
/// nanosecond (about a hundred halvings at most).
#[cold]
fn last_instant(at: Instant, by: Duration) -> Instant {
    let (mut fits, mut overflows) = (Duration::ZERO, by);
    while overflows - fits > Duration::from_nanos(1) {
        let mid = fits + (overflows - fits) / 2;
        if at.checked_add(mid).is_some() {
            fits = mid;
        } else {
            overflows = mid;
        }
    }
    at + fits
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
        // Too far to represent: time stops at the last instant there is,
        // rather than wrap, panic or stay put.
        clock.advance(Duration::MAX);
        let end = clock.now();
        assert!(end > t0 + Duration::from_secs(3600));
        assert_eq!(end.checked_add(Duration::from_nanos(1)), None, "the last representable instant");
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), end, "time never goes back, and has nowhere to go");
    }

    /// A trace's times are offsets from the clock's start, whatever the
    /// time is now: the same instant prints the same before and after the
    /// clock moves on, and an instant before the start prints as zero.
    #[test]
    fn offsets_are_measured_from_the_start_not_from_now() {
        let clock = VirtualClock::new();
        let t0 = clock.now();
        clock.advance(Duration::from_secs(5));
        let at = clock.now();
        assert_eq!(clock.offset(at), Duration::from_secs(5));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.offset(at), Duration::from_secs(5), "an instant's offset does not move");
        assert_eq!(clock.offset(clock.now()), Duration::from_secs(3605));
        assert_eq!(clock.offset(t0), Duration::ZERO);
        assert_eq!(clock.elapsed(), Duration::from_secs(3605));
    }

    #[test]
    fn saturating_add_adds_or_stops_at_the_last_instant() {
        let t0 = Instant::now();
        assert_eq!(saturating_add(t0, Duration::from_millis(5)), t0 + Duration::from_millis(5));
        let end = saturating_add(t0, Duration::MAX);
        assert_eq!(end.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(saturating_add(end, Duration::from_nanos(1)), end);
        assert_eq!(saturating_add(end, Duration::ZERO), end);
    }

    #[test]
    fn the_monotonic_clock_moves() {
        let clock = Clock::Monotonic;
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(1));
        assert!(clock.now() > a);
    }
}
