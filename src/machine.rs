//! Layer 2: the sans-I/O channel state machine.
//!
//! Given what a channel is ([`Phase`]), what it asked for ([`Interest`]) and
//! what the poller reported ([`Readiness`]), a [`Wakeup`] yields asyncore's
//! high-level events as [`Step`]s, one at a time, and is told after each what
//! the handler did. It makes no system call, so it can be tested exhaustively
//! and driven by a fuzzer; the loop drives it with real channels.
//!
//! The rules it enforces, numbered as in `docs/rules.md`:
//!
//! - asyncore's order within one wake-up: read, write, priority, then close
//!   (A7's `readwrite`);
//! - a connecting channel first has its connect checked; on success
//!   [`Step::Connect`] comes before the read or write of the same wake-up
//!   (D21), on failure [`Step::ConnectFailed`] ends it (D24);
//! - a listener gets [`Step::Accept`] for readability and never a write or
//!   priority event;
//! - nothing after the channel closed, and [`Step::Close`] at most once (D18);
//! - a hang-up with data still readable is drained first: close comes only
//!   once a read made no progress or found the end (D23);
//! - would-block is not an error: the driver reports it as an ordinary
//!   outcome (D22).
//!
//! # Examples
//!
//! Driving one wake-up of a connected channel whose peer sent data and hung
//! up, where the handler's read finds the end of the stream:
//!
//! ```
//! use rolecore::machine::{Outcome, Phase, Step, Wakeup};
//! use rolecore::{Interest, Readiness};
//!
//! let mut w = Wakeup::new(Phase::Connected, Interest::READ, Readiness::READABLE | Readiness::HANGUP);
//! assert_eq!(w.next_step(), Some(Step::Read));
//! w.record(Outcome { peer_gone: true, ..Outcome::default() });
//! assert_eq!(w.next_step(), Some(Step::Close));
//! w.record(Outcome::default());
//! assert_eq!(w.next_step(), None);
//! assert_eq!(w.phase(), Phase::Closed);
//! ```

use crate::readiness::{Interest, Readiness};

/// What a channel is, as far as event delivery is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A stream whose `connect` has not completed.
    Connecting,
    /// A connected stream.
    Connected,
    /// A listening socket.
    Listening,
    /// A pipe, terminal or file descriptor.
    File,
    /// A datagram socket: reads and writes, an error condition is delivered
    /// as a read (so `recv` reports it), and readiness never closes it (an
    /// empty datagram is not an end of stream).
    Datagram,
    /// Closed: nothing more is delivered.
    Closed,
}

/// One high-level event to deliver, or one check to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Read `SO_ERROR` to learn whether the connect succeeded, then call
    /// [`Wakeup::connect_result`].
    CheckConnect,
    /// The connect succeeded: `handle_connect`.
    Connect,
    /// The connect failed: `handle_connect_failed`, then the channel is gone.
    ConnectFailed,
    /// A listener is readable: `handle_accept`.
    Accept,
    /// Data or the end of the stream is there: `handle_read`.
    Read,
    /// There is room to send: `handle_write`.
    Write,
    /// Priority data: `handle_expt`.
    Expt,
    /// The peer went away: `handle_close`, then the channel is gone.
    Close,
}

/// What the handler's callback for the last [`Step`] did, as the driver saw
/// it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// The handler closed the channel itself (or its error handler did).
    pub closed: bool,
    /// A receive found the end of the stream, or a send or receive hit a
    /// disconnection error (asyncore's `_DISCONNECTED`).
    pub peer_gone: bool,
    /// The callback failed with an error that went to `handle_error`, which
    /// left the channel open; the rest of this wake-up is skipped, as asyncore
    /// skipped the later steps after an exception.
    pub failed: bool,
    /// A read returned data. Only meaningful after [`Step::Read`]: it tells a
    /// hang-up with unread data (come back next wake-up) from one without.
    pub read_progress: bool,
}

// The steps still to take, as bits of one byte, taken lowest first: the
// connect steps, a marker that plans the connected channel's steps when it is
// reached (after a connect, with the interest the handler's predicates give
// for the connected channel), then asyncore's order. One byte of state and a
// find-lowest-bit per step keep a wake-up down to a few instructions: it runs
// once per event on the loop's hot path.
const CHECK: u8 = 1;
const CONNECT: u8 = 2;
const FAILED: u8 = 4;
const PLAN: u8 = 8;
const READ: u8 = 16;
const WRITE: u8 = 32;
const EXPT: u8 = 64;
/// Close is decided when it is reached: by then a read may have found the
/// end of the stream, or drained data under a hang-up (D23).
const CLOSE: u8 = 128;

/// The state machine of one wake-up of one channel.
#[derive(Clone, Debug)]
pub struct Wakeup {
    phase: Phase,
    interest: Interest,
    readiness: Readiness,
    steps: u8,
    peer_gone: bool,
    drained_some: bool,
    last: Option<Step>,
}

impl Wakeup {
    /// Starts a wake-up of a channel in `phase`, which asked for `interest`,
    /// and for which the poller reported `readiness`.
    #[inline]
    pub fn new(phase: Phase, interest: Interest, readiness: Readiness) -> Wakeup {
        let steps = match phase {
            Phase::Closed => 0,
            Phase::Connecting if readiness.is_empty() => 0,
            Phase::Connecting => CHECK,
            // Planned when the first step is asked for, so that an interest
            // set before then counts (`set_interest`'s contract).
            _ => PLAN,
        };
        Wakeup { phase, interest, readiness, steps, peer_gone: false, drained_some: false, last: None }
    }

    /// The channel's phase now (it changes on connect and on close).
    #[inline]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Replaces the interest the connected channel's steps are planned by.
    /// The loop calls it right after [`Step::Connect`], when the handler's
    /// predicates are asked again for the now connected channel. The steps
    /// are planned once, when the first of them is asked for: a call after
    /// that changes nothing for the rest of this wake-up.
    #[inline]
    pub fn set_interest(&mut self, interest: Interest) {
        self.interest = interest;
    }

    /// The next thing to do, or `None` when this wake-up is over.
    ///
    /// After [`Step::CheckConnect`], call [`connect_result`](Self::connect_result);
    /// after any other step, call [`record`](Self::record) with what the
    /// handler did. Until then this returns `None`.
    #[inline]
    pub fn next_step(&mut self) -> Option<Step> {
        if self.last.is_some() {
            return None;
        }
        loop {
            let bit = self.steps & self.steps.wrapping_neg();
            self.steps &= !bit;
            let step = match bit {
                0 => return None,
                CHECK => Step::CheckConnect,
                CONNECT => Step::Connect,
                FAILED => Step::ConnectFailed,
                PLAN => {
                    self.steps = plan(self.phase, self.interest, self.readiness);
                    continue;
                }
                READ if self.phase == Phase::Listening => Step::Accept,
                READ => Step::Read,
                WRITE => Step::Write,
                EXPT => Step::Expt,
                _ => {
                    if self.peer_gone || (self.readiness.is_closed() && !self.drained_some) {
                        Step::Close
                    } else {
                        return None;
                    }
                }
            };
            self.last = Some(step);
            return Some(step);
        }
    }

    /// Reports the result of [`Step::CheckConnect`]: whether `SO_ERROR` was
    /// clear. The next step is then [`Step::Connect`] or
    /// [`Step::ConnectFailed`].
    #[inline]
    pub fn connect_result(&mut self, connected: bool) {
        if self.last != Some(Step::CheckConnect) {
            return;
        }
        self.last = None;
        if connected {
            self.phase = Phase::Connected;
            self.steps = CONNECT | PLAN;
        } else {
            self.steps = FAILED;
        }
    }

    /// Tells the machine what the handler did during the last step.
    #[inline]
    pub fn record(&mut self, outcome: Outcome) {
        let Some(step) = self.last else { return };
        if step == Step::CheckConnect {
            // Answered by `connect_result`, not here.
            return;
        }
        self.last = None;
        if matches!(step, Step::Close | Step::ConnectFailed) || outcome.closed {
            self.phase = Phase::Closed;
            self.steps = 0;
            return;
        }
        if step == Step::Read && outcome.read_progress {
            self.drained_some = true;
        }
        if outcome.failed {
            self.steps = 0;
            return;
        }
        if outcome.peer_gone && !self.peer_gone {
            self.peer_gone = true;
            // Skip the remaining writes and priority data: the peer is gone.
            self.steps = if self.phase == Phase::Datagram { 0 } else { CLOSE };
        }
    }
}

/// The steps asyncore's `readwrite` would take, in its order.
#[inline]
fn plan(p: Phase, i: Interest, r: Readiness) -> u8 {
    let mut steps = 0;
    // A datagram socket's pending error (an ICMP refusal) is reported by poll
    // and epoll whatever the interest, and only a read clears it: it is read
    // even while the handler does not want data, or the loop would be woken
    // for it forever without a callback (a spin).
    let datagram_error = p == Phase::Datagram && r.is_error();
    if (r.is_readable() && i.is_readable()) || datagram_error {
        steps |= READ;
    }
    if matches!(p, Phase::Connected | Phase::File | Phase::Datagram) && r.is_writable() && i.is_writable() {
        steps |= WRITE;
    }
    if p == Phase::Connected && r.is_priority() && i.is_priority() {
        steps |= EXPT;
    }
    if p != Phase::Datagram {
        steps |= CLOSE;
    }
    steps
}

/// The common wake-up of a connected stream, without the general machine:
/// the poller reported only readability and/or writability (no hang-up,
/// error or priority data), so the wake-up is at most a read, then a write,
/// and a close only if one of them found the peer gone. The loop takes this
/// path for almost every event; `plain_wakeups_step_as_the_machine_does`
/// checks it against [`Wakeup`] on every input it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plain(
    /// The steps to take: readable and wanting to read (the bit both give
    /// [`Readiness::READABLE`] and [`Interest::READ`]), writable and wanting
    /// to write (likewise): the two masks and-ed, one instruction.
    u8,
);

const _: () = assert!(
    Readiness::READABLE.bits() == Interest::READ.bits()
        && Readiness::WRITABLE.bits() == Interest::WRITE.bits(),
    "Plain ands a readiness with an interest"
);

impl Plain {
    /// The plain wake-up of a connected stream, or `None` when the readiness
    /// needs the general machine.
    #[inline]
    pub(crate) fn new(interest: Interest, readiness: Readiness) -> Option<Plain> {
        let plain = Readiness::READABLE | Readiness::WRITABLE;
        if readiness.bits() & !plain.bits() != 0 {
            return None;
        }
        Some(Plain(readiness.bits() & interest.bits()))
    }

    /// Runs the wake-up: `step` is called with [`Step::Read`], [`Step::Write`]
    /// and [`Step::Close`] in the order and on the conditions [`Wakeup`] gives,
    /// and returns what the handler did. The outcome of the close is not
    /// asked for: nothing follows it.
    #[inline(always)]
    pub(crate) fn run(self, mut step: impl FnMut(Step) -> Outcome) {
        // After a step, the wake-up ends once the channel closed or the
        // handler failed; the peer leaving means the close, then the end.
        #[inline(always)]
        fn goes_on(outcome: Outcome, step: &mut impl FnMut(Step) -> Outcome) -> bool {
            if outcome.closed || outcome.failed {
                return false;
            }
            if outcome.peer_gone {
                step(Step::Close);
                return false;
            }
            true
        }
        if self.0 & Interest::READ.bits() != 0 {
            let outcome = step(Step::Read);
            if !goes_on(outcome, &mut step) {
                return;
            }
        }
        if self.0 & Interest::WRITE.bits() != 0 {
            let outcome = step(Step::Write);
            goes_on(outcome, &mut step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [Phase; 6] =
        [Phase::Connecting, Phase::Connected, Phase::Listening, Phase::File, Phase::Datagram, Phase::Closed];

    /// Every outcome the driver can report, as a small index for enumeration.
    fn outcomes() -> impl Iterator<Item = Outcome> {
        (0u8..16).map(|b| Outcome {
            closed: b & 1 != 0,
            peer_gone: b & 2 != 0,
            failed: b & 4 != 0,
            read_progress: b & 8 != 0,
        })
    }

    /// Runs every path through a wake-up (every connect result, every outcome
    /// after every step) and checks the invariants on each.
    fn explore(
        w: Wakeup,
        trace: &mut Vec<Step>,
        start: Phase,
        readiness: Readiness,
        interest: Interest,
        visits: &mut usize,
    ) {
        let mut w = w;
        let Some(step) = w.next_step() else {
            *visits += 1;
            check_trace(trace, start, readiness, interest);
            return;
        };
        trace.push(step);
        if step == Step::CheckConnect {
            for ok in [true, false] {
                let mut w = w.clone();
                w.connect_result(ok);
                if !ok {
                    let mut peek = w.clone();
                    assert_eq!(peek.next_step(), Some(Step::ConnectFailed), "a failed connect fails");
                }
                explore(w, trace, start, readiness, interest, visits);
            }
        } else {
            assert_eq!(w.next_step(), None, "no step before the last one is recorded");
            for outcome in outcomes() {
                let mut w = w.clone();
                w.record(outcome);
                if outcome.closed || matches!(step, Step::Close | Step::ConnectFailed) {
                    assert_eq!(w.phase(), Phase::Closed);
                    assert_eq!(w.next_step(), None, "D18: nothing after close");
                    *visits += 1;
                    check_trace(trace, start, readiness, interest);
                    continue;
                }
                if outcome.failed {
                    assert_eq!(w.next_step(), None, "an error ends the wake-up");
                    continue;
                }
                if outcome.peer_gone && start != Phase::Datagram {
                    assert_eq!(w.clone().next_step(), Some(Step::Close), "the peer left: close next");
                }
                explore(w, trace, start, readiness, interest, visits);
            }
        }
        trace.pop();
    }

    fn check_trace(trace: &[Step], start: Phase, readiness: Readiness, interest: Interest) {
        let ctx = || format!("{start:?} {interest:?} {readiness:?}: {trace:?}");
        // Order: read < write < expt < close, each at most once.
        let rank = |s: &Step| match s {
            Step::CheckConnect => 0,
            Step::Connect | Step::ConnectFailed => 1,
            Step::Accept | Step::Read => 2,
            Step::Write => 3,
            Step::Expt => 4,
            Step::Close => 5,
        };
        assert!(trace.windows(2).all(|w| rank(&w[0]) < rank(&w[1])), "order: {}", ctx());
        if let Some(last_close) = trace.iter().position(|s| matches!(s, Step::Close | Step::ConnectFailed)) {
            assert_eq!(last_close, trace.len() - 1, "nothing after close: {}", ctx());
        }
        if readiness.is_empty() {
            assert!(trace.is_empty(), "no readiness, no event: {}", ctx());
        }
        match start {
            Phase::Closed => assert!(trace.is_empty(), "closed channels get nothing: {}", ctx()),
            Phase::Listening => assert!(
                trace.iter().all(|s| matches!(s, Step::Accept | Step::Close)),
                "a listener only accepts or closes: {}",
                ctx()
            ),
            Phase::Connecting => {
                if !trace.is_empty() {
                    assert_eq!(trace[0], Step::CheckConnect, "{}", ctx());
                    assert!(
                        matches!(trace.get(1), None | Some(Step::Connect | Step::ConnectFailed)),
                        "D21: connect before anything else: {}",
                        ctx()
                    );
                }
            }
            Phase::Connected | Phase::File | Phase::Datagram => assert!(
                trace.iter().all(|s| !matches!(
                    s,
                    Step::CheckConnect | Step::Connect | Step::ConnectFailed | Step::Accept
                )),
                "{}",
                ctx()
            ),
        }
        if start == Phase::File {
            assert!(!trace.contains(&Step::Expt), "files have no priority data: {}", ctx());
        }
        if start == Phase::Datagram {
            assert!(
                trace.iter().all(|s| matches!(s, Step::Read | Step::Write)),
                "a datagram socket only reads and writes; readiness never closes it: {}",
                ctx()
            );
        }
        if !interest.is_writable() {
            assert!(!trace.contains(&Step::Write), "no write without write interest: {}", ctx());
        }
    }

    #[test]
    fn every_path_of_every_wakeup_keeps_the_invariants() {
        let mut visits = 0;
        for phase in PHASES {
            for bits in 0..=Readiness::ALL.bits() {
                let readiness = Readiness::from_bits_truncate(bits);
                for i in 0..8u8 {
                    let interest = Interest::from_predicates(i & 1 != 0, i & 2 != 0, i & 4 != 0);
                    let w = Wakeup::new(phase, interest, readiness);
                    explore(w, &mut Vec::new(), phase, readiness, interest, &mut visits);
                }
            }
        }
        assert!(visits > 100_000, "explored {visits} paths");
    }

    fn run(
        phase: Phase,
        interest: Interest,
        readiness: Readiness,
        outcome: impl Fn(Step) -> Outcome,
    ) -> Vec<Step> {
        let mut w = Wakeup::new(phase, interest, readiness);
        let mut trace = Vec::new();
        while let Some(step) = w.next_step() {
            trace.push(step);
            if step == Step::CheckConnect {
                w.connect_result(true);
            } else {
                w.record(outcome(step));
            }
        }
        trace
    }

    #[test]
    fn connect_then_write_in_one_wakeup() {
        let all = Interest::READ | Interest::WRITE;
        assert_eq!(
            run(Phase::Connecting, all, Readiness::WRITABLE, |_| Outcome::default()),
            [Step::CheckConnect, Step::Connect, Step::Write]
        );
    }

    #[test]
    fn refused_connect_is_a_typed_failure() {
        let mut w = Wakeup::new(
            Phase::Connecting,
            Interest::WRITE,
            Readiness::READABLE | Readiness::WRITABLE | Readiness::HANGUP | Readiness::ERROR,
        );
        assert_eq!(w.next_step(), Some(Step::CheckConnect));
        w.connect_result(false);
        assert_eq!(w.next_step(), Some(Step::ConnectFailed));
        w.record(Outcome::default());
        assert_eq!(w.phase(), Phase::Closed);
        assert_eq!(w.next_step(), None);
    }

    #[test]
    fn hangup_with_data_drains_before_closing() {
        let r = Readiness::READABLE | Readiness::HANGUP;
        // The read returned data: no close yet, the next wake-up reads on.
        let progress = |_| Outcome { read_progress: true, ..Outcome::default() };
        assert_eq!(run(Phase::Connected, Interest::READ, r, progress), [Step::Read]);
        // The read found nothing: close now.
        assert_eq!(
            run(Phase::Connected, Interest::READ, r, |_| Outcome::default()),
            [Step::Read, Step::Close]
        );
        // Not reading: close at once.
        assert_eq!(run(Phase::Connected, Interest::NONE, r, |_| Outcome::default()), [Step::Close]);
    }

    #[test]
    fn listener_never_sees_write_or_priority() {
        let r = Readiness::ALL;
        let all = Interest::READ | Interest::WRITE | Interest::PRIORITY;
        assert_eq!(run(Phase::Listening, all, r, |_| Outcome::default()), [Step::Accept, Step::Close]);
    }

    #[test]
    fn closing_in_read_skips_write_and_close() {
        let all = Interest::READ | Interest::WRITE | Interest::PRIORITY;
        let r = Readiness::ALL;
        let closed = |_| Outcome { closed: true, ..Outcome::default() };
        assert_eq!(run(Phase::Connected, all, r, closed), [Step::Read]);
    }

    #[test]
    fn peer_gone_in_read_goes_straight_to_close() {
        let all = Interest::READ | Interest::WRITE | Interest::PRIORITY;
        let gone = |_| Outcome { peer_gone: true, ..Outcome::default() };
        assert_eq!(
            run(Phase::Connected, all, Readiness::READABLE | Readiness::WRITABLE, gone),
            [Step::Read, Step::Close]
        );
    }

    #[test]
    fn a_datagram_error_is_read_not_closed() {
        let r = Readiness::ERROR | Readiness::WRITABLE;
        let all = Interest::READ | Interest::WRITE;
        assert_eq!(run(Phase::Datagram, all, r, |_| Outcome::default()), [Step::Read, Step::Write]);
        let gone = |_| Outcome { peer_gone: true, ..Outcome::default() };
        assert_eq!(run(Phase::Datagram, Interest::READ, Readiness::READABLE, gone), [Step::Read]);
        // Not reading now: the error is still read, once, so it stops being
        // reported.
        assert_eq!(
            run(Phase::Datagram, Interest::WRITE, Readiness::ERROR, |_| Outcome::default()),
            [Step::Read]
        );
        assert_eq!(
            run(Phase::Datagram, Interest::NONE, Readiness::ERROR, |_| Outcome::default()),
            [Step::Read]
        );
    }

    /// No readiness a backend reports for an interest is left undelivered:
    /// level-triggered, it would come back on every wait and the loop would
    /// spin without calling anyone. Backends report readable, writable and
    /// priority only when asked for, hang-ups and errors always.
    #[test]
    fn every_readiness_a_backend_can_report_is_delivered() {
        let asked = |i: Interest| {
            [
                (i.is_readable(), Readiness::READABLE),
                (i.is_writable(), Readiness::WRITABLE),
                (i.is_priority(), Readiness::PRIORITY),
            ]
            .into_iter()
            .filter(|&(wanted, _)| wanted)
            .fold(Readiness::HANGUP | Readiness::ERROR, |r, (_, bit)| r | bit)
        };
        for phase in [Phase::Connected, Phase::Listening, Phase::File, Phase::Datagram] {
            for ib in 0..8u8 {
                let interest = [Interest::READ, Interest::WRITE, Interest::PRIORITY]
                    .into_iter()
                    .enumerate()
                    .filter(|(k, _)| ib & (1 << k) != 0)
                    .fold(Interest::NONE, |a, (_, b)| a | b);
                // The interests the entries ask for: priority only with read,
                // and only on streams; a listener only reads.
                let impossible = (interest.is_priority() && !interest.is_readable())
                    || (interest.is_priority() && phase != Phase::Connected)
                    || (interest.is_writable() && phase == Phase::Listening);
                if impossible {
                    continue;
                }
                // INVALID cannot happen to an owned descriptor.
                for bits in 1..Readiness::INVALID.bits() {
                    let r = Readiness::from_bits_truncate(bits);
                    if !asked(interest).contains(r) {
                        continue;
                    }
                    if phase == Phase::Datagram && r == Readiness::HANGUP {
                        // A datagram socket reports a hang-up only after its
                        // own shutdown of both directions, and then also
                        // readable and writable.
                        continue;
                    }
                    let trace = run(phase, interest, r, |_| Outcome::default());
                    assert!(!trace.is_empty(), "{phase:?} {interest:?} {r:?}: reported, never delivered");
                }
            }
        }
    }

    /// The machine takes an answer only to the question it asked:
    /// `connect_result` outside a [`Step::CheckConnect`] changes nothing (a
    /// connected stream is not connected again, nor failed), and `record`
    /// does not answer a `CheckConnect`: the wake-up still waits for its
    /// `connect_result`.
    #[test]
    fn answers_out_of_turn_are_ignored() {
        for ok in [true, false] {
            let mut w = Wakeup::new(Phase::Connected, Interest::READ, Readiness::READABLE);
            w.connect_result(ok);
            assert_eq!(w.next_step(), Some(Step::Read), "connect_result({ok}) before the first step");
            w.connect_result(ok);
            assert_eq!(w.next_step(), None, "connect_result({ok}) does not record the read");
            w.record(Outcome::default());
            assert_eq!((w.next_step(), w.phase()), (None, Phase::Connected));
        }
        for outcome in outcomes() {
            let mut w = Wakeup::new(Phase::Connecting, Interest::WRITE, Readiness::WRITABLE);
            assert_eq!(w.next_step(), Some(Step::CheckConnect));
            w.record(outcome);
            assert_eq!((w.next_step(), w.phase()), (None, Phase::Connecting), "{outcome:?}");
            w.connect_result(true);
            assert_eq!(w.next_step(), Some(Step::Connect), "{outcome:?}");
        }
    }

    #[test]
    fn order_is_read_write_expt() {
        let all = Interest::READ | Interest::WRITE | Interest::PRIORITY;
        let r = Readiness::READABLE | Readiness::WRITABLE | Readiness::PRIORITY;
        assert_eq!(
            run(Phase::Connected, all, r, |_| Outcome::default()),
            [Step::Read, Step::Write, Step::Expt]
        );
    }

    /// Priority data goes only to a channel that asks for it. The kernel
    /// reports it only then, but the interest a wake-up is given is the one
    /// the map holds when it dispatches, which another callback of the same
    /// batch may have changed since the wait (a reader paused through
    /// `handler_mut` no longer asks for priority data).
    #[test]
    fn priority_data_is_delivered_only_with_priority_interest() {
        for interest in [Interest::NONE, Interest::READ, Interest::WRITE, Interest::READ | Interest::WRITE] {
            let steps = run(Phase::Connected, interest, Readiness::PRIORITY, |_| Outcome::default());
            assert!(!steps.contains(&Step::Expt), "{interest:?}: {steps:?}");
        }
        let steps = run(Phase::Connected, Interest::PRIORITY, Readiness::PRIORITY, |_| Outcome::default());
        assert_eq!(steps, [Step::Expt]);
    }

    #[test]
    fn an_interest_set_before_the_first_step_counts() {
        let mut w = Wakeup::new(Phase::Connected, Interest::NONE, Readiness::READABLE);
        w.set_interest(Interest::READ);
        assert_eq!(w.next_step(), Some(Step::Read));
        // And one set after the steps were planned changes nothing.
        let mut w = Wakeup::new(Phase::Connected, Interest::READ, Readiness::READABLE | Readiness::WRITABLE);
        assert_eq!(w.next_step(), Some(Step::Read));
        w.set_interest(Interest::READ | Interest::WRITE);
        w.record(Outcome::default());
        assert_eq!(w.next_step(), None);
    }

    #[test]
    fn plain_wakeups_step_as_the_machine_does() {
        let outcome = |b: u8| Outcome {
            closed: b & 1 != 0,
            peer_gone: b & 2 != 0,
            failed: b & 4 != 0,
            read_progress: b & 8 != 0,
        };
        let mut compared = 0;
        for bits in 0..=Readiness::ALL.bits() {
            let readiness = Readiness::from_bits_truncate(bits);
            for i in 0..8u8 {
                let interest = Interest::from_predicates(i & 1 != 0, i & 2 != 0, i & 4 != 0);
                let Some(plain) = Plain::new(interest, readiness) else {
                    assert!(
                        !(Readiness::READABLE | Readiness::WRITABLE).contains(readiness),
                        "{readiness:?} is plain"
                    );
                    continue;
                };
                // Every sequence of outcomes for the (at most three) steps.
                for script in 0..16u32 * 16 * 16 {
                    let pick = |n: usize| outcome((script >> (4 * n)) as u8 & 15);
                    let mut fast = Vec::new();
                    plain.run(|step| {
                        fast.push(step);
                        pick(fast.len() - 1)
                    });
                    let mut w = Wakeup::new(Phase::Connected, interest, readiness);
                    let mut machine = Vec::new();
                    while let Some(step) = w.next_step() {
                        machine.push(step);
                        w.record(pick(machine.len() - 1));
                    }
                    assert_eq!(fast, machine, "{interest:?} {readiness:?} script {script:#x}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 4 * 8 * 4096);
    }
}
