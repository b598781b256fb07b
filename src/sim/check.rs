//! The loop's invariants, checked on every traced event.

use std::time::{Duration, Instant};

use crate::clock::VirtualClock;
use crate::token::Token;
use crate::trace::{Callback, Joined, Traced};

/// Channel numbers (`#n`, in the order channels joined) by token key, shared
/// by the checker, which gives them, and the script, which orders by them.
pub(crate) type Ids = std::rc::Rc<std::cell::RefCell<IdTable>>;

/// Channel numbers by token key, in a table indexed by the key's slot (the
/// map's own index, a small number): every slot keeps the numbers of the
/// channels it held, latest last, with their generations. A lookup is an
/// index and, for a channel still open, one comparison; hashing every key
/// of every event was a visible share of a fuzz run.
#[derive(Debug, Default)]
pub(crate) struct IdTable {
    slots: Vec<Vec<(u32, u32)>>,
}

impl IdTable {
    /// The number of the channel with token key `key`, if it ever joined.
    pub fn get(&self, key: u64) -> Option<u32> {
        let (index, generation) = (key as u32, (key >> 32) as u32);
        let held = self.slots.get(index as usize)?;
        held.iter().rev().find(|&&(g, _)| g == generation).map(|&(_, id)| id)
    }

    fn insert(&mut self, key: u64, id: u32) {
        let (index, generation) = (key as u32 as usize, (key >> 32) as u32);
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Vec::new);
        }
        let held = &mut self.slots[index];
        held.retain(|&(g, _)| g != generation);
        held.push((generation, id));
    }
}

#[derive(Debug)]
struct Life {
    joined: Joined,
    connected: bool,
    closes: u32,
    failed_connect: bool,
    removed: bool,
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

/// Per-channel state of the checks; channels are named `#1`, `#2`… in the
/// order they joined, so traces do not depend on descriptor numbers.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Every channel that joined, `#id` at `id - 1`.
    lives: Vec<Life>,
    /// Channel numbers by token key, shared with the script.
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
}

impl Checker {
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
        self.batch += 1;
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
    pub fn check(
        &mut self,
        token: Token,
        event: Traced,
        now: Instant,
        clock: &VirtualClock,
    ) -> Result<u32, String> {
        let known = self.ids.borrow().get(token.key());
        if let Traced::Inserted(joined) = event {
            if known.is_some_and(|id| !self.lives[id as usize - 1].removed) {
                return Err(format!("token {token:?} inserted twice"));
            }
            let id = u32::try_from(self.lives.len() + 1).expect("fewer than 2^32 channels");
            self.ids.borrow_mut().insert(token.key(), id);
            self.lives.push(Life {
                joined,
                connected: false,
                closes: 0,
                failed_connect: false,
                removed: false,
                timer: None,
                counted: false,
                late: None,
            });
            self.open += 1;
            return Ok(id);
        }
        let Some(id) = known else {
            return Err(format!("an event for a channel that never joined the map ({token:?}): {event:?}"));
        };
        if event == Traced::Expired {
            self.expiring = true;
        }
        let life = &mut self.lives[id as usize - 1];
        let name = Name(id);
        if life.removed {
            return Err(format!("{name}: {event:?} after the channel closed (D18, stale token D20)"));
        }
        match event {
            Traced::Inserted(_) => unreachable!("handled above"),
            Traced::Removed => {
                life.removed = true;
                self.open -= 1;
                recount(&mut self.deadlines, life);
                Ok(id)
            }
            Traced::Deadline(at) => {
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
            Traced::Called { callback, .. } => {
                if life.closes > 0 {
                    return Err(format!("{name}: {callback:?} after handle_close (D18)"));
                }
                if life.failed_connect {
                    return Err(format!("{name}: {callback:?} after handle_connect_failed"));
                }
                match (life.joined, callback) {
                    (
                        Joined::Listening,
                        Callback::Read | Callback::Write | Callback::Expt | Callback::Connect,
                    ) => {
                        return Err(format!("{name}: a listener got {callback:?}"));
                    }
                    (Joined::Connecting, Callback::Read | Callback::Write | Callback::Expt)
                        if !life.connected =>
                    {
                        return Err(format!("{name}: {callback:?} before handle_connect (D21)"));
                    }
                    (Joined::Connecting, Callback::Connect) if life.connected => {
                        return Err(format!("{name}: handle_connect twice"));
                    }
                    (
                        Joined::Connected | Joined::Listening | Joined::File,
                        Callback::Connect | Callback::ConnectFailed,
                    ) => {
                        return Err(format!("{name}: {callback:?} on a channel that never connected out"));
                    }
                    _ => {}
                }
                if let Some((_, Some(idle))) = life.timer {
                    // Activity re-arms an idle timeout (when the callback
                    // returns, at the same virtual time).
                    life.timer = now.checked_add(idle).map(|due| (due, Some(idle)));
                }
                match callback {
                    Callback::Connect => life.connected = true,
                    Callback::ConnectFailed => life.failed_connect = true,
                    Callback::Close => life.closes += 1,
                    _ => {}
                }
                Ok(id)
            }
        }
    }
}

/// Keeps `deadlines`, the count of open channels with a one-shot deadline,
/// true after `life` changed its timer or closed. Only those events need
/// it: counting after every event was a visible share of a fuzz run.
fn recount(deadlines: &mut usize, life: &mut Life) {
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
