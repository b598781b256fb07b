//! The loop's invariants, checked on every traced event.

use std::time::{Duration, Instant};

use crate::clock::VirtualClock;
use crate::token::Token;
use crate::trace::{Callback, Joined, Traced};

/// Channel numbers (`#n`, in the order channels joined) by token key, shared
/// by the checker, which gives them, and the script, which orders by them.
pub(crate) type Ids = std::rc::Rc<std::cell::RefCell<IdTable>>;

/// Channel numbers by token key, in a table indexed by the key's slot (the
/// map's own index, a small number) that holds the latest channel of each
/// slot: a lookup is an index and one comparison of the key. The numbers of
/// channels a later one replaced in their slot are kept aside, looked up
/// only for a stale key (a report for a closed channel, or a violation).
/// Hashing every key of every event was a visible share of a fuzz run; a
/// list per slot cost an allocation per slot and a loop per lookup.
#[derive(Debug, Default)]
pub(crate) struct IdTable {
    /// `(key, number)` of the latest channel in each slot; `u64::MAX` in a
    /// slot that never held one (no key of slot `i` is: its low half is `i`).
    latest: Vec<(u64, u32)>,
    /// `(key, number)` of the channels a later one replaced, oldest first.
    older: Vec<(u64, u32)>,
    /// The keys of the channels that left the map, in order: the script
    /// reports readiness for them now and then.
    pub closed: Vec<u64>,
}

impl IdTable {
    /// The number of the channel with token key `key`, if it ever joined.
    pub fn get(&self, key: u64) -> Option<u32> {
        match self.latest.get(key as u32 as usize) {
            Some(&(latest, id)) if latest == key => Some(id),
            _ => self.replaced(key),
        }
    }

    #[cold]
    fn replaced(&self, key: u64) -> Option<u32> {
        self.older.iter().rev().find(|&&(k, _)| k == key).map(|&(_, id)| id)
    }

    fn insert(&mut self, key: u64, id: u32) {
        let index = key as u32 as usize;
        if self.latest.len() <= index {
            self.latest.resize(index + 1, (u64::MAX, 0));
        }
        let (previous, previous_id) = std::mem::replace(&mut self.latest[index], (key, id));
        // The same key again (a generation that wrapped) names the new
        // channel only; another key's channel is kept aside.
        if previous != u64::MAX && previous != key {
            self.older.push((previous, previous_id));
        }
    }
}

#[derive(Debug)]
struct Life {
    joined: Joined,
    connected: bool,
    closes: u32,
    failed_connect: bool,
    removed: bool,
    /// The callbacks the channel may get now, a bit each (`bit`): what
    /// `refusal` allows in its state, worked out when that changes (it
    /// joins, connects, fails to, closes).
    allowed: u16,
    /// The callbacks that are allowed and leave everything as it was: not
    /// one that changes the state, and none while an idle timeout is set
    /// (activity re-arms it). Most callbacks are checked with this one
    /// comparison; the others take the slow way (`fast_mask`).
    fast: u16,
    /// The timer the handler asked for, as the checker models it: when it
    /// may expire at the earliest, and the idle timeout that re-arms it
    /// after every callback (`None`: a one-shot deadline).
    timer: Option<(Instant, Option<Duration>)>,
    /// Whether it counts among the checker's `deadlines`.
    counted: bool,
    /// The batch in which a timeout callback armed its deadline already
    /// due: the loop serves it in the next iteration, not this one.
    late: Option<u64>,
}

impl Life {
    /// A channel that has just joined as `joined`.
    fn new(joined: Joined) -> Life {
        let mut life = Life {
            joined,
            connected: false,
            closes: 0,
            failed_connect: false,
            removed: false,
            allowed: 0,
            fast: 0,
            timer: None,
            counted: false,
            late: None,
        };
        life.allowed = allowed(&life);
        life.fast = fast_mask(&life);
        life
    }
}

/// Per-channel state of the checks; channels are named `#1`, `#2`… in the
/// order they joined, so traces do not depend on descriptor numbers.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Every channel that joined, `#id` at `id - 1`.
    lives: Vec<Life>,
    /// Channel numbers by token key, and the keys of closed channels,
    /// shared with the script.
    pub ids: Ids,
    /// How many channels joined and were not removed yet.
    open: usize,
    /// How many open channels have a one-shot deadline: until one does,
    /// there is nothing to scan for (an idle timeout's channels are not
    /// scanned, see `overdue`).
    deadlines: usize,
    /// The batch of events being checked (one wait's, or one step's).
    batch: u64,
    /// Whether this batch reached the loop's expiries (an `Expired` event):
    /// what is armed after it was armed by a timeout callback.
    expiring: bool,
    /// Callbacks checked, and how many of them moved data (or found the end
    /// of a stream), connected or closed: the settling's measure of a quiet
    /// or livelocked loop.
    pub callbacks: usize,
    pub progressed: usize,
}

impl Checker {
    /// A checker with room for `n` channels before it grows.
    pub fn with_capacity(n: usize) -> Checker {
        let ids = IdTable { latest: Vec::with_capacity(n), older: Vec::new(), closed: Vec::with_capacity(n) };
        Checker { lives: Vec::with_capacity(n), ids: std::rc::Rc::new(ids.into()), ..Checker::default() }
    }

    pub fn open_streams(&self) -> Vec<String> {
        let mut open: Vec<String> = (1..)
            .zip(&self.lives)
            .filter(|(_, l)| !l.removed && matches!(l.joined, Joined::Connecting | Joined::Connected))
            .map(|(id, _)| format!("#{id}"))
            .collect();
        open.sort();
        open
    }

    pub fn live(&self) -> usize {
        self.open
    }

    /// A new batch of events begins: the events of one wait, or of one step.
    pub fn begin_batch(&mut self) {
        // Wrapping: one traced comparison less per batch, in a count that
        // cannot reach 2^64.
        self.batch = self.batch.wrapping_add(1);
        self.expiring = false;
    }

    /// A live channel whose one-shot deadline passed at or before `now`:
    /// after a whole iteration at `now`, the loop must have served it
    /// (one a timeout callback armed already due: after the next one).
    /// (Idle timeouts are checked against the map's own timers: a wake-up
    /// without a callback re-arms them too, which the trace does not show.)
    pub fn overdue(&self, now: Instant) -> Option<String> {
        if self.deadlines == 0 {
            return None;
        }
        // The lowest number first: the lives are in number order.
        (1..)
            .zip(&self.lives)
            .find(|(_, l)| {
                !l.removed && l.late != Some(self.batch) && matches!(l.timer, Some((due, None)) if due <= now)
            })
            .map(|(id, _)| format!("#{id}'s deadline"))
    }

    /// The earliest instant a timer of a live channel may expire, as the
    /// checker models it: the one to land just before, or on, to test the
    /// timers at their edge. A scan, for a rare step.
    pub fn earliest_due(&self) -> Option<Instant> {
        self.lives.iter().filter(|l| !l.removed).filter_map(|l| Some(l.timer?.0)).min()
    }

    /// Checks one event, which happened at `now`: the channel's number, or
    /// `Err` saying which invariant broke.
    #[cfg(test)]
    pub fn check(
        &mut self,
        token: Token,
        event: Traced,
        now: Instant,
        clock: &VirtualClock,
    ) -> Result<u32, String> {
        let mut id = 0;
        self.check_all(&[(token, event)], now, clock, |checked, _| id = checked)?;
        Ok(id)
    }

    /// Checks a batch's events, which happened at `now`, in order, handing
    /// each to `checked` with its channel's number; `Err` says which
    /// invariant the first bad one broke. The shared table is borrowed once
    /// for the batch, not once per event.
    pub fn check_all(
        &mut self,
        events: &[(Token, Traced)],
        now: Instant,
        clock: &VirtualClock,
        mut checked: impl FnMut(u32, Traced),
    ) -> Result<(), String> {
        let ids = std::rc::Rc::clone(&self.ids);
        let mut ids = ids.borrow_mut();
        for &(token, event) in events {
            checked(self.check_in(&mut ids, token, event, now, clock)?, event);
        }
        Ok(())
    }

    /// A channel joins as `#id`, its token's key `key`.
    fn join(&mut self, ids: &mut IdTable, key: u64, joined: Joined) -> u32 {
        let id = u32::try_from(self.lives.len() + 1).expect("fewer than 2^32 channels");
        ids.insert(key, id);
        self.lives.push(Life::new(joined));
        self.open += 1;
        id
    }

    fn check_in(
        &mut self,
        ids: &mut IdTable,
        token: Token,
        event: Traced,
        now: Instant,
        clock: &VirtualClock,
    ) -> Result<u32, String> {
        let key = token.key();
        let Some(id) = ids.get(key) else {
            if let Traced::Inserted(joined) = event {
                return Ok(self.join(ids, key, joined));
            }
            return Err(format!("an event for a channel that never joined the map ({token:?}): {event:?}"));
        };
        // Numbers start at 1 (wrapping: 0 would fail the bounds check
        // anyway, without one more traced comparison).
        let life = &mut self.lives[(id as usize).wrapping_sub(1)];
        let name = Name(id);
        if life.removed {
            if let Traced::Inserted(joined) = event {
                // The token's slot holds a new channel.
                return Ok(self.join(ids, key, joined));
            }
            return Err(format!("{name}: {event:?} after the channel closed (D18, stale token D20)"));
        }
        match event {
            Traced::Inserted(_) => Err(format!("token {token:?} inserted twice")),
            Traced::Removed => {
                life.removed = true;
                self.open -= 1;
                recount(&mut self.deadlines, life);
                ids.closed.push(key);
                Ok(id)
            }
            Traced::Deadline(at) => {
                if at.is_some_and(|at| clock.is_real_time(at)) {
                    return Err(format!(
                        "{name}: given a deadline on the real clock, long before the simulation began: \
                         take deadlines from `cx.now()` or `Map::now()` (virtual here), not \
                         `Instant::now()`, or they fire at the wrong time"
                    ));
                }
                life.timer = at.map(|at| (at, None));
                // Armed by a timeout callback, already due: the loop's next
                // round of expiries serves it (`Timers::round`).
                life.late = at.filter(|&at| self.expiring && at <= now).map(|_| self.batch);
                recount(&mut self.deadlines, life);
                Ok(id)
            }
            Traced::IdleTimeout(idle) => {
                // Too long to represent: the map arms no timer.
                life.timer = idle.and_then(|d| Some((now.checked_add(d)?, Some(d))));
                recount(&mut self.deadlines, life);
                Ok(id)
            }
            Traced::Expired => {
                self.expiring = true;
                let at = clock.offset(now);
                if life.closes > 0 {
                    return Err(format!("{name}: its timer expired at t={at:?}, after handle_close"));
                }
                match life.timer {
                    None => return Err(format!("{name}: its timer expired at t={at:?}, but none was set")),
                    Some((due, idle)) if due > now => {
                        let kind = if idle.is_some() {
                            "an idle timeout expired before the channel was idle that long (activity re-arms it)"
                        } else {
                            "a deadline expired early"
                        };
                        return Err(format!(
                            "{name}: {kind}: expired at t={at:?}, due no earlier than t={:?}",
                            clock.offset(due)
                        ));
                    }
                    Some((_, Some(idle))) => life.timer = now.checked_add(idle).map(|due| (due, Some(idle))),
                    Some((_, None)) => life.timer = None,
                }
                recount(&mut self.deadlines, life);
                Ok(id)
            }
            // Leaves a one-shot deadline as it was: no recount.
            Traced::Called { callback, progress } => {
                // Wrapping, as `batch`: counts that cannot reach 2^64.
                self.callbacks = self.callbacks.wrapping_add(1);
                // A connect or a close is progress too: each happens once
                // per channel, so a livelock cannot be made of them, and an
                // iteration that only closes channels (the peers left) is
                // the settling nearing its end, not a handler spinning.
                let changes_state = bit(callback) & CHANGES_STATE != 0;
                self.progressed = self.progressed.wrapping_add(usize::from(progress || changes_state));
                if life.fast & bit(callback) != 0 {
                    return Ok(id);
                }
                if life.allowed & bit(callback) == 0 {
                    return Err(refusal_message(life, callback, name));
                }
                if let Some((_, Some(idle))) = life.timer {
                    // Activity re-arms an idle timeout (when the callback
                    // returns, at the same virtual time).
                    life.timer = now.checked_add(idle).map(|due| (due, Some(idle)));
                }
                if bit(callback) & CHANGES_STATE != 0 {
                    match callback {
                        Callback::Connect => life.connected = true,
                        Callback::ConnectFailed => life.failed_connect = true,
                        _ => life.closes += 1,
                    }
                    life.allowed = allowed(life);
                    life.fast = fast_mask(life);
                }
                Ok(id)
            }
        }
    }
}

/// Every callback.
#[cfg(test)]
const CALLBACKS: [Callback; 9] = [
    Callback::Connect,
    Callback::ConnectFailed,
    Callback::Accept,
    Callback::Read,
    Callback::Write,
    Callback::Expt,
    Callback::Timeout,
    Callback::Error,
    Callback::Close,
];

/// Every callback's bit.
const ALL_CALLBACKS: u16 = (1 << 9) - 1;

/// `callback`'s bit in a `Life::allowed` mask.
#[inline(always)]
fn bit(callback: Callback) -> u16 {
    1 << callback as u8
}

/// The callbacks after which what a channel may get changes.
const CHANGES_STATE: u16 =
    1 << Callback::Connect as u8 | 1 << Callback::ConnectFailed as u8 | 1 << Callback::Close as u8;

/// A rule a callback breaks.
#[derive(Clone, Copy)]
enum Refusal {
    AfterClose,
    AfterConnectFailed,
    ToListener,
    BeforeConnect,
    ConnectTwice,
    NeverConnectedOut,
}

/// The rule `callback` would break, reaching a channel in `life`'s state:
/// nothing after `handle_close` (D18) or `handle_connect_failed`, no
/// stream event to a listener, `handle_connect` once and before any read,
/// write or priority event (D21), and no connect callback to a channel
/// that never connected out.
fn refusal(life: &Life, callback: Callback) -> Option<Refusal> {
    if life.closes > 0 {
        return Some(Refusal::AfterClose);
    }
    if life.failed_connect {
        return Some(Refusal::AfterConnectFailed);
    }
    match (life.joined, callback) {
        (Joined::Listening, Callback::Read | Callback::Write | Callback::Expt | Callback::Connect) => {
            Some(Refusal::ToListener)
        }
        (Joined::Connecting, Callback::Read | Callback::Write | Callback::Expt) if !life.connected => {
            Some(Refusal::BeforeConnect)
        }
        (Joined::Connecting, Callback::Connect) if life.connected => Some(Refusal::ConnectTwice),
        (
            Joined::Connected | Joined::Listening | Joined::File,
            Callback::Connect | Callback::ConnectFailed,
        ) => Some(Refusal::NeverConnectedOut),
        _ => None,
    }
}

/// The callbacks `refusal` allows in `life`'s state (a test checks that
/// they agree), worked out without asking it of each callback.
fn allowed(life: &Life) -> u16 {
    if life.closes > 0 || life.failed_connect {
        return 0;
    }
    let stream = bit(Callback::Read) | bit(Callback::Write) | bit(Callback::Expt);
    let connects = bit(Callback::Connect) | bit(Callback::ConnectFailed);
    ALL_CALLBACKS
        & !match life.joined {
            Joined::Listening => stream | connects,
            Joined::Connecting if !life.connected => stream,
            Joined::Connecting => bit(Callback::Connect),
            Joined::Connected | Joined::File => connects,
            Joined::Datagram => 0,
        }
}

/// The callbacks that need no more than a count (`Life::fast`).
fn fast_mask(life: &Life) -> u16 {
    let idle = matches!(life.timer, Some((_, Some(_))));
    if idle { 0 } else { life.allowed & !CHANGES_STATE }
}

/// Why `callback` may not reach the channel `name`, in `life`'s state.
#[cold]
fn refusal_message(life: &Life, callback: Callback, name: Name) -> String {
    match refusal(life, callback) {
        Some(Refusal::AfterClose) => format!("{name}: {callback:?} after handle_close (D18)"),
        Some(Refusal::AfterConnectFailed) => format!("{name}: {callback:?} after handle_connect_failed"),
        Some(Refusal::ToListener) => format!("{name}: a listener got {callback:?}"),
        Some(Refusal::BeforeConnect) => format!("{name}: {callback:?} before handle_connect (D21)"),
        Some(Refusal::ConnectTwice) => format!("{name}: handle_connect twice"),
        Some(Refusal::NeverConnectedOut) => {
            format!("{name}: {callback:?} on a channel that never connected out")
        }
        None => format!("{name}: {callback:?} refused, but no rule says why (a checker bug)"),
    }
}

/// Keeps `deadlines`, the count of open channels with a one-shot deadline,
/// true after `life` changed its timer or closed. Only those events need
/// it: counting after every event was a visible share of a fuzz run.
fn recount(deadlines: &mut usize, life: &mut Life) {
    life.fast = fast_mask(life);
    let deadline = !life.removed && matches!(life.timer, Some((_, None)));
    if deadline != life.counted {
        life.counted = deadline;
        if deadline {
            *deadlines += 1;
        } else {
            *deadlines -= 1;
        }
    }
}

/// A channel's name in messages: `#id`.
struct Name(u32);

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn token(n: u32) -> Token {
        Token::from_key(u64::from(n), 1)
    }

    /// A checker with one connected stream, `#1`, and a clock.
    fn one_stream() -> (Checker, VirtualClock) {
        let mut checker = Checker::default();
        let clock = VirtualClock::new();
        checker.check(token(1), Traced::Inserted(Joined::Connected), clock.now(), &clock).unwrap();
        (checker, clock)
    }

    fn check(c: &mut Checker, clock: &VirtualClock, event: Traced) -> Result<u32, String> {
        c.check(token(1), event, clock.now(), clock)
    }

    const TIMEOUT: Traced = Traced::Called { callback: Callback::Timeout, progress: false };
    const READ: Traced = Traced::Called { callback: Callback::Read, progress: true };

    #[test]
    fn an_expiry_before_the_deadline_is_caught_and_one_after_it_is_not() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now() + 100 * MS))).unwrap();
        clock.advance(99 * MS);
        let early = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(early.contains("a deadline expired early"), "{early}");

        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now() + 100 * MS))).unwrap();
        clock.advance(100 * MS);
        check(&mut c, &clock, Traced::Expired).unwrap();
        check(&mut c, &clock, TIMEOUT).unwrap();
        let again = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(again.contains("none was set"), "a one-shot deadline expires once: {again}");
    }

    #[test]
    fn activity_re_arms_an_idle_timeout() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::IdleTimeout(Some(100 * MS))).unwrap();
        clock.advance(60 * MS);
        check(&mut c, &clock, READ).unwrap();
        clock.advance(60 * MS);
        // 120 ms after it was set, 60 ms after the last activity: a loop
        // that did not re-arm it on the read would expire it now.
        let not_rearmed = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(not_rearmed.contains("activity re-arms it"), "{not_rearmed}");

        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::IdleTimeout(Some(100 * MS))).unwrap();
        clock.advance(60 * MS);
        check(&mut c, &clock, READ).unwrap();
        clock.advance(100 * MS);
        check(&mut c, &clock, Traced::Expired).unwrap();
    }

    /// An idle timeout too long to represent is modelled as the map arms
    /// it: as no timer at all (no overflow, nothing ever due).
    #[test]
    fn an_idle_timeout_too_long_to_represent_is_no_timer() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::IdleTimeout(Some(Duration::MAX))).unwrap();
        assert_eq!(c.earliest_due(), None);
        check(&mut c, &clock, READ).unwrap();
        clock.advance(Duration::MAX);
        assert_eq!(c.overdue(clock.now()), None);
        let expired = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(expired.contains("none was set"), "{expired}");
    }

    /// Every callback into the channel is activity, whichever way the data
    /// moved: a write (sending to a slow reader) or a priority event re-arms
    /// the modelled idle timeout as a read does, so an expiry a whole
    /// period after the timeout was set, but not after the activity, is
    /// caught.
    #[test]
    fn activity_in_either_direction_re_arms_an_idle_timeout() {
        for callback in [Callback::Read, Callback::Write, Callback::Expt] {
            let (mut c, clock) = one_stream();
            check(&mut c, &clock, Traced::IdleTimeout(Some(100 * MS))).unwrap();
            clock.advance(60 * MS);
            check(&mut c, &clock, Traced::Called { callback, progress: true }).unwrap();
            clock.advance(60 * MS);
            let not_rearmed = check(&mut c, &clock, Traced::Expired).unwrap_err();
            assert!(not_rearmed.contains("activity re-arms it"), "after {callback:?}: {not_rearmed}");
        }
    }

    /// A stream whose deadline, armed already due, a round of expiries
    /// served: the checker has just seen its `handle_timeout`.
    fn in_its_timeout_callback() -> (Checker, VirtualClock) {
        let (mut c, clock) = one_stream();
        c.begin_batch();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now()))).unwrap();
        c.begin_batch();
        check(&mut c, &clock, Traced::Expired).unwrap();
        check(&mut c, &clock, TIMEOUT).unwrap();
        (c, clock)
    }

    /// Only a deadline armed during the round of expiries of the same batch
    /// waits an iteration: once that batch is over, one a read arms already
    /// due in a later batch is due in its own iteration.
    #[test]
    fn the_excuse_of_a_timeout_callback_ends_with_its_batch() {
        let (mut c, clock) = in_its_timeout_callback();
        assert_eq!(c.overdue(clock.now()), None);
        c.begin_batch();
        check(&mut c, &clock, READ).unwrap();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now()))).unwrap();
        assert_eq!(
            c.overdue(clock.now()).as_deref(),
            Some("#1's deadline"),
            "armed by a read in a later batch: due now"
        );
    }

    #[test]
    fn a_deadline_left_unserved_after_its_time_is_caught() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now() + 10 * MS))).unwrap();
        assert_eq!(c.overdue(clock.now()), None);
        clock.advance(10 * MS);
        assert_eq!(c.overdue(clock.now()).as_deref(), Some("#1's deadline"));
        check(&mut c, &clock, Traced::Expired).unwrap();
        assert_eq!(c.overdue(clock.now()), None, "served");
        check(&mut c, &clock, Traced::Deadline(Some(clock.now() + 10 * MS))).unwrap();
        check(&mut c, &clock, Traced::Deadline(None)).unwrap();
        clock.advance(10 * MS);
        assert_eq!(c.overdue(clock.now()), None, "a cleared deadline is not due");
    }

    /// A deadline armed already due outside a round of expiries (by a
    /// read, say) is served by this iteration's round: once the batch is
    /// over, it is overdue. Only one a timeout callback arms (during the
    /// round) waits for the next iteration, and only for that one.
    #[test]
    fn a_deadline_armed_already_due_waits_one_iteration_only_when_a_timeout_armed_it() {
        let (mut c, clock) = one_stream();
        c.begin_batch();
        check(&mut c, &clock, READ).unwrap();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now()))).unwrap();
        assert_eq!(c.overdue(clock.now()).as_deref(), Some("#1's deadline"), "armed by a read: due now");

        let (mut c, clock) = in_its_timeout_callback();
        // The timeout callback arms it again, already due: the next round
        // serves it.
        check(&mut c, &clock, Traced::Deadline(Some(clock.now()))).unwrap();
        assert_eq!(c.overdue(clock.now()), None, "armed during the round: the next iteration serves it");
        c.begin_batch();
        assert_eq!(
            c.overdue(clock.now()).as_deref(),
            Some("#1's deadline"),
            "an iteration later, still not served: overdue"
        );
    }

    /// An idle timeout that expired and did not close its channel is armed
    /// again, one period from the expiry: the next expiry is caught if it
    /// comes sooner, and allowed once the channel was idle that long.
    #[test]
    fn an_idle_timeout_that_expired_is_armed_again_for_one_more_period() {
        for (wait, early) in [(99 * MS, true), (100 * MS, false)] {
            let (mut c, clock) = one_stream();
            check(&mut c, &clock, Traced::IdleTimeout(Some(100 * MS))).unwrap();
            clock.advance(100 * MS);
            check(&mut c, &clock, Traced::Expired).unwrap();
            clock.advance(wait);
            let again = check(&mut c, &clock, Traced::Expired);
            if early {
                let message = again.unwrap_err();
                assert!(message.contains("before the channel was idle that long"), "{message}");
            } else {
                again.unwrap();
            }
        }
    }

    #[test]
    fn no_timer_expires_after_close() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::Deadline(Some(clock.now()))).unwrap();
        check(&mut c, &clock, Traced::Called { callback: Callback::Close, progress: false }).unwrap();
        let after_close = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(after_close.contains("after handle_close"), "{after_close}");

        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::IdleTimeout(Some(MS))).unwrap();
        check(&mut c, &clock, Traced::Removed).unwrap();
        clock.advance(MS);
        let after_removal = check(&mut c, &clock, Traced::Expired).unwrap_err();
        assert!(after_removal.contains("after the channel closed"), "{after_removal}");
        assert_eq!(c.overdue(clock.now()), None, "a closed channel's timer is not due");
    }

    /// A checker with one channel, `#1`, that joined as `joined`.
    fn one(joined: Joined) -> (Checker, VirtualClock) {
        let mut checker = Checker::default();
        let clock = VirtualClock::new();
        checker.check(token(1), Traced::Inserted(joined), clock.now(), &clock).unwrap();
        (checker, clock)
    }

    fn called(callback: Callback) -> Traced {
        Traced::Called { callback, progress: false }
    }

    /// Nothing reaches a channel after its `handle_close` (D18): not a
    /// read, and not a second `handle_close`.
    #[test]
    fn a_callback_or_a_second_close_after_handle_close_is_caught() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, READ).unwrap();
        check(&mut c, &clock, called(Callback::Close)).unwrap();
        let read = check(&mut c, &clock, READ).unwrap_err();
        assert!(read.contains("Read after handle_close (D18)"), "{read}");

        let (mut c, clock) = one_stream();
        check(&mut c, &clock, called(Callback::Close)).unwrap();
        let twice = check(&mut c, &clock, called(Callback::Close)).unwrap_err();
        assert!(twice.contains("Close after handle_close (D18)"), "{twice}");
    }

    /// Nothing reaches a channel after it left the map, whatever it is: a
    /// callback for its token is a stale one (D18, D20).
    #[test]
    fn a_callback_after_the_channel_left_the_map_is_caught() {
        let (mut c, clock) = one_stream();
        check(&mut c, &clock, Traced::Removed).unwrap();
        let stale = check(&mut c, &clock, READ).unwrap_err();
        assert!(stale.contains("after the channel closed (D18, stale token D20)"), "{stale}");
        let unknown = c.check(token(9), READ, clock.now(), &clock).unwrap_err();
        assert!(unknown.contains("never joined the map"), "{unknown}");
    }

    /// A token is in the map once at a time: inserting it again while its
    /// channel is open is caught; once the channel left, the token's slot
    /// may hold a new channel, with a new number.
    #[test]
    fn a_token_inserted_twice_is_caught_and_a_reused_one_is_a_new_channel() {
        let (mut c, clock) = one_stream();
        let twice = check(&mut c, &clock, Traced::Inserted(Joined::Connected)).unwrap_err();
        assert!(twice.contains("inserted twice"), "{twice}");
        check(&mut c, &clock, Traced::Removed).unwrap();
        assert_eq!(check(&mut c, &clock, Traced::Inserted(Joined::Connected)), Ok(2));
        assert_eq!(check(&mut c, &clock, READ), Ok(2), "the new channel gets the events");
    }

    /// A channel that connects out gets `handle_connect` once, before any
    /// read, write or priority event (D21), and nothing after
    /// `handle_connect_failed`.
    #[test]
    fn a_connecting_channel_gets_handle_connect_once_and_first() {
        for early in [Callback::Read, Callback::Write, Callback::Expt] {
            let (mut c, clock) = one(Joined::Connecting);
            let before = check(&mut c, &clock, called(early)).unwrap_err();
            assert!(before.contains(&format!("{early:?} before handle_connect (D21)")), "{before}");
        }
        let (mut c, clock) = one(Joined::Connecting);
        check(&mut c, &clock, called(Callback::Connect)).unwrap();
        check(&mut c, &clock, READ).unwrap();
        check(&mut c, &clock, called(Callback::Write)).unwrap();
        let twice = check(&mut c, &clock, called(Callback::Connect)).unwrap_err();
        assert!(twice.contains("handle_connect twice"), "{twice}");

        let (mut c, clock) = one(Joined::Connecting);
        check(&mut c, &clock, called(Callback::ConnectFailed)).unwrap();
        let after = check(&mut c, &clock, called(Callback::Close)).unwrap_err();
        assert!(after.contains("after handle_connect_failed"), "{after}");
    }

    /// The masks a callback is checked with say what the rules say, in
    /// every state a channel can be in.
    #[test]
    fn the_allowed_callbacks_are_those_no_rule_refuses() {
        let joins =
            [Joined::Connecting, Joined::Connected, Joined::Listening, Joined::File, Joined::Datagram];
        for joined in joins {
            for state in 0..8u32 {
                let mut life = Life::new(joined);
                life.connected = state & 1 != 0;
                life.closes = state >> 1 & 1;
                life.failed_connect = state & 4 != 0;
                for callback in CALLBACKS {
                    let by_rules = refusal(&life, callback).is_none();
                    assert_eq!(
                        allowed(&life) & bit(callback) != 0,
                        by_rules,
                        "{joined:?} {state} {callback:?}"
                    );
                }
            }
        }
        assert_eq!(CALLBACKS.iter().fold(0, |m, &c| m | bit(c)), ALL_CALLBACKS);
    }

    /// A listener gets accepts, never a read, write, priority event or
    /// `handle_connect`; a channel that did not connect out never gets
    /// `handle_connect` or `handle_connect_failed`.
    #[test]
    fn a_listener_gets_no_stream_event_and_an_accepted_channel_no_connect() {
        for wrong in [Callback::Read, Callback::Write, Callback::Expt, Callback::Connect] {
            let (mut c, clock) = one(Joined::Listening);
            check(&mut c, &clock, called(Callback::Accept)).unwrap();
            let got = check(&mut c, &clock, called(wrong)).unwrap_err();
            assert!(got.contains(&format!("a listener got {wrong:?}")), "{got}");
        }
        for wrong in [Callback::Connect, Callback::ConnectFailed] {
            let (mut c, clock) = one_stream();
            let got = check(&mut c, &clock, called(wrong)).unwrap_err();
            assert!(got.contains("never connected out"), "{got}");
        }
    }
}
