//! The pure state machine, `Wakeup`, driven through a channel's life.
//!
//! The input picks a starting phase, then for each wake-up an interest and a
//! readiness, and for each step what the handler did (closed, peer gone,
//! failed, read progress), the result of a connect check, whether the
//! interest changes after a connect (as the loop asks the handler's
//! predicates again then), and whether the driver asks for the next step
//! before reporting the last. Every step must be the one a plain reference model
//! expects, and over the channel's life: nothing after close, `Close` at
//! most once, `CheckConnect` first for a connecting channel and `Connect` or
//! `ConnectFailed` right after it, no read or write before the connect, a
//! listener only accepts or closes, a datagram socket only reads and writes,
//! files never get priority data, and within a wake-up the order is read,
//! write, priority, close.

use rolecore::machine::{Outcome, Phase, Step, Wakeup};
use rolecore::{Interest, Readiness};

use super::Input;

const PHASES: [Phase; 6] =
    [Phase::Connecting, Phase::Connected, Phase::Listening, Phase::File, Phase::Datagram, Phase::Closed];

/// The most wake-ups one input drives.
const MAX_WAKEUPS: usize = 64;

fn interest(bits: u8) -> Interest {
    let mut i = Interest::NONE;
    if bits & 1 != 0 {
        i = i | Interest::READ;
    }
    if bits & 2 != 0 {
        i = i | Interest::WRITE;
    }
    if bits & 4 != 0 {
        i = i | Interest::PRIORITY;
    }
    i
}

fn rank(s: Step) -> u8 {
    match s {
        Step::CheckConnect => 0,
        Step::Connect | Step::ConnectFailed => 1,
        Step::Accept | Step::Read => 2,
        Step::Write => 3,
        Step::Expt => 4,
        Step::Close => 5,
    }
}

/// The reference model of one wake-up: the next step is the first stage
/// after the last one delivered whose condition holds.
struct Model {
    phase: Phase,
    interest: Interest,
    readiness: Readiness,
    /// Rank of the last step delivered, if any.
    last: Option<u8>,
    connect: Option<bool>,
    over: bool,
    peer_gone: bool,
    drained: bool,
}

impl Model {
    fn new(phase: Phase, interest: Interest, readiness: Readiness) -> Model {
        Model {
            phase,
            interest,
            readiness,
            last: None,
            connect: None,
            over: phase == Phase::Closed,
            peer_gone: false,
            drained: false,
        }
    }

    fn next(&self) -> Option<Step> {
        let r = self.readiness;
        if self.over {
            return None;
        }
        let after = |k: u8| self.last.is_none_or(|l| k > l);
        if self.phase == Phase::Connecting || self.last == Some(0) {
            // Before anything else, the connect is checked and reported.
            return match (self.last, self.connect) {
                (None, _) if r.is_empty() => None,
                (None, _) => Some(Step::CheckConnect),
                (Some(0), Some(true)) => Some(Step::Connect),
                (Some(0), Some(false)) => Some(Step::ConnectFailed),
                _ => None,
            };
        }
        // A datagram socket's pending error is read whatever the interest:
        // only a read clears it, and poll/epoll report it until then.
        let datagram_error = self.phase == Phase::Datagram && r.is_error();
        if after(2) && !self.peer_gone && ((r.is_readable() && self.interest.is_readable()) || datagram_error)
        {
            return Some(if self.phase == Phase::Listening { Step::Accept } else { Step::Read });
        }
        let can_write = matches!(self.phase, Phase::Connected | Phase::File | Phase::Datagram);
        if after(3) && !self.peer_gone && can_write && r.is_writable() && self.interest.is_writable() {
            return Some(Step::Write);
        }
        if after(4)
            && !self.peer_gone
            && self.phase == Phase::Connected
            && r.is_priority()
            && self.interest.is_priority()
        {
            return Some(Step::Expt);
        }
        if after(5) && self.phase != Phase::Datagram && (self.peer_gone || (r.is_closed() && !self.drained)) {
            return Some(Step::Close);
        }
        None
    }

    fn delivered(&mut self, step: Step) {
        self.last = Some(rank(step));
    }

    fn connect_result(&mut self, ok: bool) {
        self.connect = Some(ok);
        if ok {
            self.phase = Phase::Connected;
        }
    }

    fn record(&mut self, step: Step, o: Outcome) {
        if matches!(step, Step::Close | Step::ConnectFailed) || o.closed {
            self.phase = Phase::Closed;
            self.over = true;
            return;
        }
        if step == Step::Read && o.read_progress {
            self.drained = true;
        }
        if o.failed {
            self.over = true;
            return;
        }
        if o.peer_gone {
            self.peer_gone = true;
        }
    }
}

/// What happened to one channel over its wake-ups.
#[derive(Default)]
struct Life {
    steps: Vec<Step>,
    closes: usize,
    connects: usize,
    closed: bool,
}

pub fn run(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    let start = inp.pick(&PHASES);
    let mut phase = start;
    let mut life = Life::default();
    let mut checked = 0;
    for wakeup in 0..MAX_WAKEUPS {
        if inp.is_exhausted() {
            break;
        }
        let i = interest(inp.byte());
        let r = Readiness::from_bits_truncate(inp.byte());
        let ctx = |trace: &[Step]| {
            format!("{start:?}, wake-up {wakeup} in {phase:?} with {i:?} {r:?}: this wake-up {trace:?}")
        };
        let mut w = Wakeup::new(phase, i, r);
        let mut model = Model::new(phase, i, r);
        let mut trace: Vec<Step> = Vec::new();
        loop {
            let expected = model.next();
            let got = w.next_step();
            assert_eq!(got, expected, "{}: the machine and the model disagree", ctx(&trace));
            let Some(step) = got else { break };
            checked += 1;
            trace.push(step);
            model.delivered(step);
            assert!(!life.closed, "{}: a step after the channel closed (D18)", ctx(&trace));
            let wanted = match step {
                Step::Read if phase == Phase::Datagram && r.is_error() => true, // its pending error
                Step::Read | Step::Accept => model.interest.is_readable(),
                Step::Write => model.interest.is_writable(),
                Step::Expt => model.interest.is_priority(),
                _ => true,
            };
            assert!(wanted, "{}: {step:?} without the interest for it", ctx(&trace));
            let b = inp.byte();
            if b & 0x80 != 0 {
                assert_eq!(
                    w.next_step(),
                    None,
                    "{}: a second step before the first was reported",
                    ctx(&trace)
                );
            }
            if step == Step::CheckConnect {
                let ok = b & 1 == 0;
                w.connect_result(ok);
                model.connect_result(ok);
                continue;
            }
            let o = Outcome {
                closed: b & 1 != 0 && b & 0x60 == 0,
                peer_gone: b & 2 != 0,
                failed: b & 4 != 0 && b & 0x40 == 0,
                read_progress: b & 8 != 0,
            };
            w.record(o);
            model.record(step, o);
            match step {
                Step::Close => life.closes += 1,
                Step::Connect => life.connects += 1,
                _ => {}
            }
            if step == Step::Connect && b & 0x10 != 0 {
                // The handler's predicates give another interest for the
                // connected channel: the loop asks them again after a
                // connect, the one time it calls `set_interest`.
                let next = interest(b >> 5);
                w.set_interest(next);
                model.interest = next;
            }
        }
        assert_eq!(w.phase(), model.phase, "{}: the phase after the wake-up", ctx(&trace));
        if w.phase() == Phase::Closed {
            life.closed = true;
        }
        // Invariants of the wake-up, on their own.
        assert!(trace.windows(2).all(|p| rank(p[0]) < rank(p[1])), "{}: out of order", ctx(&trace));
        if let Some(end) = trace.iter().position(|s| matches!(s, Step::Close | Step::ConnectFailed)) {
            assert_eq!(end + 1, trace.len(), "{}: a step after close", ctx(&trace));
            assert_eq!(w.phase(), Phase::Closed, "{}: closed after {:?}", ctx(&trace), trace[end]);
        }
        if r.is_empty() {
            assert!(trace.is_empty(), "{}: no readiness, no event", ctx(&trace));
        }
        match phase {
            Phase::Connecting => {
                if let Some(&first) = trace.first() {
                    assert_eq!(first, Step::CheckConnect, "{}: the connect is checked first", ctx(&trace));
                    assert!(
                        matches!(trace.get(1), None | Some(Step::Connect | Step::ConnectFailed)),
                        "{}: D21, the connect is reported before anything else",
                        ctx(&trace)
                    );
                }
            }
            Phase::Listening => assert!(
                trace.iter().all(|s| matches!(s, Step::Accept | Step::Close)),
                "{}: a listener only accepts or closes",
                ctx(&trace)
            ),
            Phase::Datagram => assert!(
                trace.iter().all(|s| matches!(s, Step::Read | Step::Write)),
                "{}: a datagram socket only reads and writes",
                ctx(&trace)
            ),
            Phase::File => assert!(
                trace.iter().all(|s| matches!(s, Step::Read | Step::Write | Step::Close)),
                "{}: a file only reads, writes and closes",
                ctx(&trace)
            ),
            Phase::Connected => assert!(
                !trace.iter().any(|s| matches!(
                    s,
                    Step::CheckConnect | Step::Connect | Step::ConnectFailed | Step::Accept
                )),
                "{}: a connected stream is not connected again",
                ctx(&trace)
            ),
            Phase::Closed => assert!(trace.is_empty(), "{}: a closed channel gets nothing", ctx(&trace)),
        }
        life.steps.extend_from_slice(&trace);
        phase = w.phase();
    }
    // Over the whole life.
    assert!(life.closes <= 1, "{start:?}: Close {} times over {:?}", life.closes, life.steps);
    assert!(life.connects <= 1, "{start:?}: Connect {} times over {:?}", life.connects, life.steps);
    if start == Phase::Connecting {
        let connect = life.steps.iter().position(|s| *s == Step::Connect);
        let first_io = life.steps.iter().position(|s| matches!(s, Step::Read | Step::Write | Step::Expt));
        if let Some(io) = first_io {
            assert!(connect.is_some_and(|c| c < io), "{start:?}: I/O before Connect in {:?}", life.steps);
        }
    }
    checked
}

pub fn describe(data: &[u8]) -> String {
    let mut inp = Input::new(data);
    let start = inp.pick(&PHASES);
    // Replay the decisions to name the steps seen.
    let mut phase = start;
    let mut wakeups = 0;
    let mut seen: Vec<Step> = Vec::new();
    for _ in 0..MAX_WAKEUPS {
        if inp.is_exhausted() {
            break;
        }
        wakeups += 1;
        let i = interest(inp.byte());
        let r = Readiness::from_bits_truncate(inp.byte());
        let mut w = Wakeup::new(phase, i, r);
        while let Some(step) = w.next_step() {
            if !seen.contains(&step) {
                seen.push(step);
            }
            let b = inp.byte();
            if step == Step::CheckConnect {
                w.connect_result(b & 1 == 0);
                continue;
            }
            w.record(Outcome {
                closed: b & 1 != 0 && b & 0x60 == 0,
                peer_gone: b & 2 != 0,
                failed: b & 4 != 0 && b & 0x40 == 0,
                read_progress: b & 8 != 0,
            });
            if step == Step::Connect && b & 0x10 != 0 {
                w.set_interest(interest(b >> 5));
            }
        }
        phase = w.phase();
    }
    let mut steps: Vec<String> = seen.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
    if steps.is_empty() {
        steps.push("nothing".to_owned());
    }
    format!("{}-{wakeups}wakeups-{}", format!("{start:?}").to_lowercase(), steps.join("_"))
}
