//! Deadlines and idle timeouts for channels.
//!
//! A binary heap of deadlines beside a table of the channels that have one:
//! setting or moving a deadline is O(log n), re-arming an idle timeout after
//! activity is O(1) (the heap entry is moved only when it comes due), and a
//! map with no timers pays nothing but an emptiness check.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::token::Token;

#[derive(Debug)]
struct Timer {
    generation: u32,
    deadline: Instant,
    /// Re-armed to `now + idle` after every callback into the channel.
    idle: Option<Duration>,
    /// The heap entry that stands for this timer: never later than
    /// `deadline` (an early entry is moved when it comes due).
    queued: Option<Instant>,
    /// That entry's place in the queue's order (its second field): what
    /// tells it from stale entries for the same instant when the heap is
    /// compacted.
    seq: u64,
}

/// Stale heap entries allowed beyond twice the number of armed timers
/// before the heap is compacted (see [`Timers::compact`]).
const STALE_SLACK: usize = 64;

/// Hashes a slot index with one multiplication. The keys are descriptor
/// numbers, which the kernel hands out, not strings a peer chooses, so
/// SipHash's flood resistance buys nothing here, and a lookup runs on every
/// callback into a channel with an idle timeout.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // The top bits pick the table's control bytes: spread into them.
        self.0 = u64::from(n).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Deadlines by time, then by the order they were queued in (the
    /// third field is the token's key). Not by token: two timers due at the
    /// same instant would then fire in descriptor order, which a simulation
    /// cannot replay in another process.
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    /// How many entries were ever pushed: the next one's place in a tie.
    pushes: u64,
    by_index: HashMap<u32, Timer, BuildHasherDefault<IndexHasher>>,
    /// Entries due already but queued while the loop served this round of
    /// expiries (see [`round`](Self::round)): they go back in the heap for
    /// the next round, so that a callback that arms a timer in the past
    /// cannot keep one round going. Empty (and unallocated) but then.
    deferred: Vec<Reverse<(Instant, u64, u64)>>,
}

impl Timers {
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// The one-shot deadline armed for `token`, if any (not an idle
    /// timeout's next expiry).
    pub fn deadline(&self, token: Token) -> Option<Instant> {
        self.by_index
            .get(&token.index())
            .filter(|t| t.generation == token.generation() && t.idle.is_none())
            .map(|t| t.deadline)
    }

    fn arm(&mut self, token: Token, deadline: Instant, idle: Option<Duration>) {
        #[cfg(test)]
        let deadline = fault::planted_idle(deadline, idle);
        let timer = self.by_index.entry(token.index()).or_insert(Timer {
            generation: token.generation(),
            deadline,
            idle,
            queued: None,
            seq: 0,
        });
        timer.generation = token.generation();
        timer.deadline = deadline;
        timer.idle = idle;
        if timer.queued.is_none_or(|q| deadline < q) {
            timer.queued = Some(deadline);
            self.pushes += 1;
            timer.seq = self.pushes;
            self.heap.push(Reverse((deadline, self.pushes, token.key())));
            if self.heap.len() > STALE_SLACK + 2 * self.by_index.len() {
                self.compact();
            }
        }
    }

    /// Drops the heap entries that stand for no armed timer: a deadline
    /// cleared, moved earlier or set again after it was cleared leaves its
    /// old entry behind until that entry's time comes, and a channel that
    /// does so on every request (a deadline per request, cleared with the
    /// reply) grew the heap by one entry per request for as long as the
    /// deadline, without bound at a high enough rate. Run when the stale
    /// entries outnumber the timers (plus [`STALE_SLACK`]), so it costs
    /// O(1) per push, amortized. Keeps the order of the entries it keeps.
    fn compact(&mut self) {
        let by_index = &self.by_index;
        self.heap.retain(|&Reverse((at, seq, key))| {
            by_index
                .get(&(key as u32))
                .is_some_and(|t| t.generation == (key >> 32) as u32 && t.queued == Some(at) && t.seq == seq)
        });
    }

    /// A one-shot deadline; `None` removes the channel's timer.
    pub fn set_deadline(&mut self, token: Token, deadline: Option<Instant>) {
        #[cfg(test)]
        let deadline = fault::planted_deadline(deadline);
        match deadline {
            Some(at) => self.arm(token, at, None),
            None => self.remove(token),
        }
    }

    /// An idle timeout counted from now and from every later callback;
    /// `None` removes the channel's timer.
    pub fn set_idle(&mut self, token: Token, idle: Option<Duration>, now: Instant) {
        // An idle timeout too long to represent never passes: no timer.
        match idle.and_then(|d| Some((now.checked_add(d)?, d))) {
            Some((at, d)) => self.arm(token, at, Some(d)),
            None => self.remove(token),
        }
    }

    /// The loop called into the channel: an idle timeout starts again.
    pub fn touched(&mut self, token: Token, now: Instant) {
        #[cfg(test)]
        if fault::is(fault::Fault::NoRearm) {
            return;
        }
        if let Some(timer) = self.by_index.get(&token.index())
            && timer.generation == token.generation()
            && let Some(idle) = timer.idle
            && let Some(at) = now.checked_add(idle)
        {
            self.arm(token, at, Some(idle));
        }
    }

    /// The channel is gone, or its timer was cleared. Its heap entry stays
    /// and is dropped when it comes due.
    pub fn remove(&mut self, token: Token) {
        if self.by_index.get(&token.index()).is_some_and(|t| t.generation == token.generation()) {
            self.by_index.remove(&token.index());
            self.forget_stale();
        }
    }

    /// With no timer armed, every heap entry is stale: drop them, or the
    /// loop would keep waking for them (`next_wake`) and never pop them
    /// (it pops only while some timer is armed) — a zero-timeout spin.
    fn forget_stale(&mut self) {
        if self.by_index.is_empty() {
            self.heap.clear();
            self.deferred.clear();
        }
    }

    /// Starts a round of expiries: what [`pop_expired`](Self::pop_expired)
    /// takes to tell the entries queued before it from those its callbacks
    /// queue. Puts back what the last round deferred.
    pub fn round(&mut self) -> u64 {
        self.requeue_deferred();
        self.pushes
    }

    /// Puts the entries a round deferred back in the heap (or drops them,
    /// with every other entry, if no timer is armed any more: see
    /// [`forget_stale`](Self::forget_stale)). The loop calls it before it
    /// waits, so that the wait ends for them at once.
    pub fn requeue_deferred(&mut self) {
        if !self.deferred.is_empty() {
            self.heap.extend(self.deferred.drain(..));
            self.forget_stale();
        }
    }

    /// The earliest instant the loop must wake for (possibly early: an entry
    /// whose timer was pushed back).
    pub fn next_wake(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest deadline armed, and its channel's slot index (a scan:
    /// for the simulation's checks, not the loop). Leaves out a timer whose
    /// entry the last round deferred: it is due at the next one.
    pub fn earliest(&self) -> Option<(Instant, u32)> {
        let deferred = |index: u32, t: &Timer| {
            self.deferred.iter().any(|&Reverse((at, _, key))| {
                key as u32 == index && (key >> 32) as u32 == t.generation && t.queued == Some(at)
            })
        };
        self.by_index
            .iter()
            .filter(|&(&index, t)| !deferred(index, t))
            .map(|(&index, t)| (t.deadline, index))
            .min()
    }

    /// The next channel whose deadline has passed at `now`, if any, among
    /// the entries queued before the `round` began ([`round`](Self::round)):
    /// one queued since, by a timeout callback of this round, waits for the
    /// next. Its timer is disarmed (an idle timer re-arms after the timeout
    /// callback).
    pub fn pop_expired(&mut self, now: Instant, map: u32, round: u64) -> Option<Token> {
        #[cfg(test)]
        if fault::is(fault::Fault::Missed) {
            return None;
        }
        #[cfg(test)]
        let now = fault::planted_now(now);
        while let Some(&Reverse((at, pushed, key))) = self.heap.peek() {
            if at > now {
                return None;
            }
            let entry = self.heap.pop().expect("peeked");
            if pushed > round {
                self.deferred.push(entry);
                continue;
            }
            let token = Token::from_key(key, map);
            let Some(timer) = self.by_index.get_mut(&token.index()) else { continue };
            if timer.generation != token.generation() || timer.queued != Some(at) {
                continue; // superseded by another entry
            }
            timer.queued = None;
            if timer.deadline > now {
                // Pushed back since this entry was queued: queue it again.
                timer.queued = Some(timer.deadline);
                self.pushes += 1;
                timer.seq = self.pushes;
                self.heap.push(Reverse((timer.deadline, self.pushes, key)));
                continue;
            }
            if timer.idle.is_none() {
                self.by_index.remove(&token.index());
                self.forget_stale();
            }
            // An idle timer stays, unqueued: the loop's `touched` after the
            // timeout callback arms it again.
            return Some(token);
        }
        None
    }
}

/// Timer bugs planted on purpose, in unit tests only (`cfg(test)`: no build
/// of the crate that others use has them), to show that the simulation's
/// checker catches each one.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    /// One planted bug.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// No bug.
        None,
        /// A deadline is armed 40 ms before the one asked for.
        EarlyDeadline,
        /// Activity does not re-arm an idle timeout.
        NoRearm,
        /// Expired deadlines are never served.
        Missed,
        /// Timers expire a millisecond before they are due.
        SlightlyEarly,
        /// Idle timeouts are armed a millisecond short.
        IdleShort,
    }

    thread_local! {
        static FAULT: Cell<Fault> = const { Cell::new(Fault::None) };
    }

    /// Plants `fault` on this thread until the guard is dropped.
    pub(crate) fn plant(fault: Fault) -> impl Drop {
        struct Unplant;
        impl Drop for Unplant {
            fn drop(&mut self) {
                FAULT.set(Fault::None);
            }
        }
        FAULT.set(fault);
        Unplant
    }

    pub(super) fn is(fault: Fault) -> bool {
        FAULT.get() == fault
    }

    pub(super) fn planted_deadline(deadline: Option<Instant>) -> Option<Instant> {
        match deadline {
            Some(at) if is(Fault::EarlyDeadline) => {
                Some(at.checked_sub(Duration::from_millis(40)).unwrap_or(at))
            }
            other => other,
        }
    }

    /// What `pop_expired` takes for the time.
    pub(super) fn planted_now(now: Instant) -> Instant {
        if is(Fault::SlightlyEarly) { now + Duration::from_millis(1) } else { now }
    }

    /// When an idle timeout (`idle`) armed for `deadline` is armed.
    pub(super) fn planted_idle(deadline: Instant, idle: Option<Duration>) -> Instant {
        match idle {
            Some(_) if is(Fault::IdleShort) => {
                deadline.checked_sub(Duration::from_millis(1)).unwrap_or(deadline)
            }
            _ => deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(index: u32, generation: u32) -> Token {
        Token::from_key((u64::from(generation) << 32) | u64::from(index), 1)
    }

    /// Empty timers, and the instant a test counts from.
    fn timers() -> (Timers, Instant) {
        (Timers::default(), Instant::now())
    }

    #[test]
    fn deadlines_fire_in_order_once() {
        let (mut t, now) = timers();
        t.set_deadline(token(3, 0), Some(now + Duration::from_millis(20)));
        t.set_deadline(token(4, 0), Some(now + Duration::from_millis(10)));
        assert_eq!(t.pop_expired(now, 1, u64::MAX), None);
        let later = now + Duration::from_millis(30);
        assert_eq!(t.pop_expired(later, 1, u64::MAX), Some(token(4, 0)));
        assert_eq!(t.pop_expired(later, 1, u64::MAX), Some(token(3, 0)));
        assert_eq!(t.pop_expired(later, 1, u64::MAX), None);
        assert!(t.is_empty());
    }

    /// The loop waits until the earliest entry, however the timers were
    /// armed: a later one armed first, an earlier one after it, and one
    /// moved earlier still.
    #[test]
    fn the_next_wake_is_the_earliest_entry() {
        let (mut t, now) = timers();
        assert_eq!(t.next_wake(), None);
        t.set_deadline(token(1, 0), Some(now + Duration::from_secs(60)));
        t.set_deadline(token(2, 0), Some(now + Duration::from_millis(20)));
        t.set_idle(token(3, 0), Some(Duration::from_secs(5)), now);
        assert_eq!(t.next_wake(), Some(now + Duration::from_millis(20)));
        t.set_deadline(token(1, 0), Some(now + Duration::from_millis(10)));
        assert_eq!(t.next_wake(), Some(now + Duration::from_millis(10)));
    }

    #[test]
    fn activity_pushes_an_idle_timeout_back_without_growing_the_heap() {
        let (mut t, start) = timers();
        let tok = token(5, 1);
        t.set_idle(tok, Some(Duration::from_millis(100)), start);
        for ms in 1..1000 {
            t.touched(tok, start + Duration::from_millis(ms));
        }
        assert_eq!(t.heap.len(), 1, "re-arming later does not push");
        // The early entry comes due, finds the timer pushed back, moves it.
        assert_eq!(t.pop_expired(start + Duration::from_millis(150), 1, u64::MAX), None);
        assert_eq!(t.next_wake(), Some(start + Duration::from_millis(1099)));
        assert_eq!(t.pop_expired(start + Duration::from_millis(1100), 1, u64::MAX), Some(tok));
    }

    /// A deadline cleared and set again, or moved earlier, leaves its old
    /// heap entry behind until that entry's time comes. A channel that does
    /// it on every request (a deadline per request, cleared with the reply)
    /// grew the heap by an entry per request for as long as the deadline:
    /// a million requests within a minute's deadline held a million
    /// entries. The heap is compacted once stale entries outnumber the
    /// timers, and the timers still fire once each, in order.
    #[test]
    fn deadlines_cleared_and_set_again_do_not_grow_the_heap() {
        let (mut t, now) = timers();
        let (busy, other) = (token(3, 0), token(4, 2));
        t.set_deadline(other, Some(now + Duration::from_secs(30)));
        for i in 0..100_000u64 {
            t.set_deadline(busy, None);
            // Now the same instant again, now one a little earlier.
            let at = now + Duration::from_secs(60) - Duration::from_nanos(i % 2 * i);
            t.set_deadline(busy, Some(at));
            assert!(
                t.heap.len() <= STALE_SLACK + 2 * 2 + 1,
                "{} heap entries after {i} requests",
                t.heap.len()
            );
        }
        for i in 0..10_000u64 {
            t.set_deadline(busy, Some(now + Duration::from_secs(50) - Duration::from_nanos(i)));
        }
        assert!(t.heap.len() <= STALE_SLACK + 2 * 2 + 1, "{} heap entries", t.heap.len());
        let later = now + Duration::from_secs(3600);
        assert_eq!(t.pop_expired(later, 1, u64::MAX), Some(other));
        assert_eq!(t.pop_expired(later, 1, u64::MAX), Some(busy));
        assert_eq!(t.pop_expired(later, 1, u64::MAX), None);
        assert!(t.is_empty());
        assert_eq!(t.next_wake(), None);
    }

    #[test]
    fn no_stale_entry_outlives_the_last_timer() {
        let (mut t, now) = timers();
        t.set_idle(token(2, 0), Some(Duration::from_millis(5)), now);
        t.set_deadline(token(3, 0), Some(now + Duration::from_secs(1)));
        t.remove(token(2, 0));
        assert!(t.next_wake().is_some(), "token 3 still wants waking");
        t.remove(token(3, 0));
        assert_eq!(t.next_wake(), None, "nothing left to wake for: no spin on stale entries");
        t.set_deadline(token(4, 0), Some(now));
        assert_eq!(t.pop_expired(now, 1, u64::MAX), Some(token(4, 0)));
        assert_eq!(t.next_wake(), None);
    }

    #[test]
    fn a_stale_generation_never_fires() {
        let (mut t, now) = timers();
        t.set_deadline(token(7, 0), Some(now));
        t.remove(token(7, 0));
        t.set_deadline(token(7, 1), Some(now + Duration::from_secs(60)));
        assert_eq!(t.pop_expired(now + Duration::from_secs(1), 1, u64::MAX), None);
        assert_eq!(t.pop_expired(now + Duration::from_secs(61), 1, u64::MAX), Some(token(7, 1)));
    }

    #[test]
    fn moving_a_deadline_earlier_fires_at_the_earlier_time() {
        let (mut t, now) = timers();
        t.set_deadline(token(1, 0), Some(now + Duration::from_secs(60)));
        t.set_deadline(token(1, 0), Some(now + Duration::from_secs(1)));
        assert_eq!(t.pop_expired(now + Duration::from_secs(2), 1, u64::MAX), Some(token(1, 0)));
        assert_eq!(t.pop_expired(now + Duration::from_secs(61), 1, u64::MAX), None, "the old entry is stale");
    }

    /// The simulation's view of the earliest deadline leaves out one a
    /// round deferred (armed already due by a timeout callback): it is due
    /// at the next round, not overdue in this one. Once put back, it is
    /// the earliest again.
    #[test]
    fn earliest_leaves_out_an_entry_the_round_deferred() {
        let (mut t, now) = timers();
        t.set_deadline(token(1, 0), Some(now));
        t.set_deadline(token(2, 0), Some(now + Duration::from_millis(10)));
        let round = t.round();
        assert_eq!(t.pop_expired(now, 1, round), Some(token(1, 0)));
        // Token 1's timeout callback arms it again, already due.
        t.set_deadline(token(1, 0), Some(now));
        assert_eq!(t.pop_expired(now, 1, round), None, "deferred to the next round");
        assert_eq!(
            t.earliest(),
            Some((now + Duration::from_millis(10), 2)),
            "the deferred entry is left out"
        );
        t.requeue_deferred();
        assert_eq!(t.earliest(), Some((now, 1)), "put back, it is the earliest");
    }

    #[test]
    fn an_entry_queued_during_a_round_waits_for_the_next_one() {
        let (mut t, now) = timers();
        t.set_deadline(token(1, 0), Some(now));
        t.set_deadline(token(2, 0), Some(now));
        let round = t.round();
        assert_eq!(t.pop_expired(now, 1, round), Some(token(1, 0)));
        // Token 1's timeout callback arms it again, in the past.
        t.set_deadline(token(1, 0), Some(now - Duration::from_millis(1)));
        assert_eq!(t.pop_expired(now, 1, round), Some(token(2, 0)), "the older entry still comes");
        assert_eq!(t.pop_expired(now, 1, round), None, "the new one waits");
        t.requeue_deferred();
        assert_eq!(t.next_wake(), Some(now - Duration::from_millis(1)), "the next wait ends at once");
        let round = t.round();
        assert_eq!(t.pop_expired(now, 1, round), Some(token(1, 0)));
        assert!(t.is_empty());
        assert_eq!(t.next_wake(), None);
    }
}
