//! Layer 7: the entry of a listening socket, and its back-off when the
//! process runs out of descriptors (asyncore's default `handle_error` closed
//! the listener then, P1).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::entry::{Dispatch, channel_and_handler, closing, run, same};
use crate::channel::{Channel, Listening, Observed};
use crate::clock::saturating_add;
use crate::handler::AcceptHandler;
use crate::machine::{Outcome, Phase, Step, Wakeup};
use crate::map::{Ctx, Entry, Register, RegisterSealed};
use crate::poller::readable_now;
use crate::readiness::{Interest, Readiness};
use crate::report::{Level, log_info};
use crate::seal::EntryProof;
use crate::trace::{Callback, Joined, Tracer};

/// The most pending connections a shutting-down listener accepts.
const MAX_DRAIN: usize = 4096;

/// Accepting paused while descriptors are exhausted: the pause doubles while
/// accepts keep failing, from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], and
/// resets once one succeeds.
#[derive(Debug)]
struct Backoff {
    /// Paused until this instant (the channel's deadline while paused).
    paused: Option<Instant>,
    /// The deadline the listener's handler had armed when the pause began:
    /// a channel has one timer, which the pause borrows. It is armed again
    /// when the pause ends, or delivered then if it passed meanwhile.
    saved: Option<Instant>,
    /// The next pause.
    next: Duration,
}

/// The first pause after descriptor exhaustion, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Backoff {
    fn new() -> Backoff {
        Backoff { paused: None, saved: None, next: FIRST_BACKOFF }
    }

    /// Out of descriptors: stop asking for readability until the pause is
    /// over (the channel's deadline), and say so once per pause.
    fn pause(&mut self, channel: &Channel<Listening>, cx: &mut Ctx<'_>) {
        log_info(
            Level::Error,
            format_args!(
                "accept on {channel:?}: out of descriptors or memory; pausing accepts for {} ms",
                self.next.as_millis()
            ),
        );
        let token = cx.token();
        let at = saturating_add(cx.now(), self.next);
        if self.paused.is_none() {
            self.saved = cx.own_deadline();
        }
        self.paused = Some(at);
        // The handler's own deadline, if sooner, still comes on time.
        cx.set_deadline(token, Some(self.saved.map_or(at, |saved| saved.min(at))));
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    /// An accept went through: the next exhaustion pauses briefly again.
    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    /// The handler (which cannot see the pause) set the listener's deadline
    /// from another channel's callback or from outside the loop: during a
    /// pause it is kept as the handler's, and the timer the pause borrowed
    /// is armed with the sooner of it and the pause's end. Returns what to
    /// arm.
    fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        let Some(end) = self.paused else { return deadline };
        self.saved = deadline;
        Some(deadline.map_or(end, |at| at.min(end)))
    }

    /// The channel's deadline passed at `now`: ends the pause if it is
    /// over, and says whether the handler's own deadline is due (always,
    /// when no pause was under way). [`rearm`](Self::rearm) follows.
    fn expired(&mut self, now: Instant) -> bool {
        let Some(end) = self.paused else { return true };
        let saved_due = self.saved.is_some_and(|saved| saved <= now);
        if now >= end {
            self.paused = None;
        }
        if saved_due {
            self.saved = None;
        }
        saved_due
    }

    /// After an expiry and the `handle_timeout` it may have run: arms what
    /// is still to come, the pause's end and the handler's deadline (a new
    /// one it set just now replaces the saved one).
    fn rearm(&mut self, cx: &mut Ctx<'_>) {
        let set = cx.own_deadline();
        match self.paused {
            Some(end) => {
                if set.is_some() {
                    self.saved = set;
                }
                cx.set_deadline(cx.token(), Some(self.saved.map_or(end, |saved| saved.min(end))));
            }
            None => {
                if let Some(saved) = self.saved.take()
                    && set.is_none()
                {
                    cx.set_deadline(cx.token(), Some(saved));
                }
            }
        }
    }
}

pub(crate) struct ListenerEntry<H> {
    channel: Channel<Listening>,
    handler: H,
    backoff: Backoff,
}

impl<H: AcceptHandler> Dispatch for ListenerEntry<H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn interest(&self) -> Interest {
        Interest::from_predicates(
            self.backoff.paused.is_none() && self.handler.readable(&self.channel),
            false,
            false,
        )
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let mut wakeup = Wakeup::new(Phase::Listening, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            let outcome = match step {
                Step::Accept => {
                    let outcome =
                        run(handler, ch, cx, tr, Callback::Accept, same, H::handle_accept, accept_error::<H>);
                    if ch.observed().has(Observed::EXHAUSTED) {
                        self.backoff.pause(ch, cx);
                    } else if outcome == Outcome::default() {
                        self.backoff.reset();
                    }
                    outcome
                }
                Step::Close => closing(tr, cx, |cx| handler.handle_close(ch, cx)),
                _ => unreachable!("a listener only accepts or closes"),
            };
            wakeup.record(outcome);
        }
        self.close_if_shutting_down(cx, tr);
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        // A pause that is over watches for connections again: the loop asks
        // `interest` after this returns.
        if self.backoff.expired(cx.now()) {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            run(handler, ch, cx, tr, Callback::Timeout, same, H::handle_timeout, H::handle_error);
        }
        if !cx.is_closing() {
            self.backoff.rearm(cx);
        }
        self.close_if_shutting_down(cx, tr);
    }

    fn shut(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        // Connections the kernel completed but the loop has not accepted yet
        // would be reset when the listener closes: accept them first, so they
        // get the grace period like the others.
        let (handler, ch) = (&mut self.handler, &mut self.channel);
        for _ in 0..MAX_DRAIN {
            if !readable_now(ch) || cx.is_closing() {
                break;
            }
            let outcome =
                run(handler, ch, cx, tr, Callback::Accept, same, H::handle_accept, accept_error::<H>);
            if outcome.failed || ch.observed().has(Observed::EXHAUSTED) {
                break;
            }
        }
        // A failure's `handle_error` may have closed the listener already
        // (the default one runs `handle_close`, then `Ctx::close`), and a
        // `Ctx::close` means no `handle_close`: it runs at most once.
        if !cx.is_closing() {
            tr.call(Callback::Close);
            handler.handle_close(ch, cx);
        }
    }

    channel_and_handler!();

    fn joined(&self) -> Joined {
        Joined::Listening
    }

    fn deadline_set(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        self.backoff.deadline_set(deadline)
    }
}

impl<H: AcceptHandler> ListenerEntry<H> {
    /// A shutdown closes every listener at once, but one whose own callback
    /// started it was not in its slot for that: it closes here, as the
    /// others did, when its callback is over. (One inserted during the
    /// grace is closed by the loop before its next wait:
    /// `Registry::end_shutdown`.)
    fn close_if_shutting_down(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        if cx.is_shutting_down() && !cx.is_closing() {
            Dispatch::shut(self, cx, tr);
            cx.close();
        }
    }
}

/// A listener's errors go to `handle_error`, except exhaustion, which
/// pauses the listener instead of closing it.
fn accept_error<H: AcceptHandler>(h: &mut H, ch: &mut Channel<Listening>, e: io::Error, cx: &mut Ctx<'_>) {
    if !ch.observed().has(Observed::EXHAUSTED) {
        h.handle_error(ch, e, cx);
    }
}

#[diagnostic::do_not_recommend]
impl<H: AcceptHandler> Register<H> for Channel<Listening> {}
impl<H: AcceptHandler> RegisterSealed<H> for Channel<Listening> {
    fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
        Interest::from_predicates(handler.readable(self), false, false)
    }
    fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn takes_no_idle_timeout(&self, _: impl EntryProof) -> bool {
        true
    }
    fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
        Box::new(ListenerEntry { channel: self, handler, backoff: Backoff::new() })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::channel::{Connected, wrap_memory};
    use crate::memory::{self, End};
    use crate::sim::{Sim, SimConfig};

    /// Records every accept attempt and every callback the loop makes.
    /// With `swallow`, an accept's error is recorded and not returned (the
    /// handler deals with it itself).
    struct Counting {
        log: Rc<RefCell<Vec<&'static str>>>,
        swallow: bool,
        /// Arms the deadline again this long after each `handle_timeout`.
        rearm: Option<Duration>,
    }

    impl AcceptHandler for Counting {
        fn handle_accept(&mut self, ch: &mut Channel<Listening>, _: &mut Ctx<'_>) -> io::Result<()> {
            let result = ch.accept();
            self.log.borrow_mut().push(match &result {
                Ok(Some(_)) => "accepted",
                Ok(None) => "nothing",
                Err(_) => "failed",
            });
            if self.swallow { Ok(()) } else { result.map(drop) }
        }
        fn handle_accepted(
            &mut self,
            _: Channel<Connected>,
            _: crate::Address,
            _: &mut Ctx<'_>,
        ) -> io::Result<()> {
            unreachable!("handle_accept is overridden")
        }
        fn handle_timeout(&mut self, _: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
            self.log.borrow_mut().push("timeout");
            if let Some(after) = self.rearm {
                cx.set_deadline_after(cx.token(), Some(after));
            }
            Ok(())
        }
        fn handle_error(&mut self, _: &mut Channel<Listening>, _: io::Error, _: &mut Ctx<'_>) {
            self.log.borrow_mut().push("error");
        }
        fn handle_close(&mut self, _: &mut Channel<Listening>, _: &mut Ctx<'_>) {
            self.log.borrow_mut().push("close");
        }
    }

    /// One iteration that does not wait.
    fn tick(sim: &mut Sim) {
        sim.map().poll(Some(Duration::ZERO)).unwrap();
    }

    const MICRO: Duration = Duration::from_micros(1);

    /// A simulation's map with an in-memory listener whose handler logs;
    /// returns the map, the log, the listener's in-memory id and its token.
    fn counting_listener(swallow: bool) -> (Sim, Rc<RefCell<Vec<&'static str>>>, u16, crate::Token) {
        let mut sim = Sim::from_bytes(&[], SimConfig::default()).unwrap();
        let listener = memory::listener(64).unwrap();
        let id = listener.id();
        let fd = memory::descriptor_for(&listener).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let channel: Channel<Listening> = wrap_memory(fd, listener);
        let token = sim.map().insert(channel, Counting { log: log.clone(), swallow, rearm: None }).unwrap();
        (sim, log, id, token)
    }

    /// A listener in a map with `deadline_in` as its handler's own
    /// deadline, whose first accept fails for want of descriptors (a 50 ms
    /// pause). Returns the map, the log and the listener's token.
    fn paused_with_a_deadline(deadline_in: Duration) -> (Sim, Rc<RefCell<Vec<&'static str>>>, End) {
        let (mut sim, log, id, token) = counting_listener(false);
        let at = sim.now() + deadline_in;
        assert!(sim.map().set_deadline(token, Some(at)));
        memory::exhaust(id, 1);
        let sizes = crate::memory::Sizes { cap: [64; 2], chunk: [64; 2] };
        let client = memory::connect(id, sizes).unwrap();
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed"]);
        (sim, log, client)
    }

    /// A shutdown accepts its listener's backlog until an accept fails for
    /// want of descriptors, then stops and closes the listener, even when
    /// the handler kept the error to itself: it does not go on asking for
    /// connections it cannot take (up to its bound of 4096), nor take the
    /// ones behind the failure.
    #[test]
    fn a_shutdown_stops_draining_the_backlog_when_descriptors_run_out() {
        let (mut sim, log, id, token) = counting_listener(true);
        let sizes = crate::memory::Sizes { cap: [64; 2], chunk: [64; 2] };
        let _clients = [memory::connect(id, sizes).unwrap(), memory::connect(id, sizes).unwrap()];
        memory::exhaust(id, 2);
        sim.map().shutdown(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["failed", "close"]);
        assert!(!sim.map().contains(token));
    }

    /// A channel has one timer, which an `EMFILE` pause borrows: the
    /// handler's own deadline (`handle_timeout`, by default the end of
    /// accepting) comes back when the pause ends, and arrives on time.
    #[test]
    fn a_listeners_own_deadline_survives_an_exhaustion_pause() {
        let (mut sim, log, _client) = paused_with_a_deadline(Duration::from_secs(10));
        sim.advance(Duration::from_millis(50));
        tick(&mut sim);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "accepted"], "the pause ended at 50 ms");
        sim.advance(Duration::from_secs(10) - Duration::from_millis(50) - MICRO);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "accepted"], "not a microsecond early");
        sim.advance(MICRO);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "accepted", "timeout"], "the listener's own deadline, once");
    }

    /// A handler's deadline that falls inside an `EMFILE` pause is not put
    /// off to its end: `handle_timeout` comes at the deadline, and the pause
    /// still ends at its own time.
    #[test]
    fn a_listeners_deadline_inside_a_pause_comes_on_time() {
        let (mut sim, log, _client) = paused_with_a_deadline(Duration::from_millis(20));
        sim.advance(Duration::from_millis(20));
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout"], "at 20 ms, during the pause");
        sim.advance(Duration::from_millis(30) - MICRO);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout"], "still paused");
        sim.advance(MICRO);
        tick(&mut sim);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout", "accepted"], "the pause ended at 50 ms");
    }

    /// A deadline set on a paused listener from outside its callbacks
    /// (another channel's, or the map's owner) does not take the timer the
    /// pause borrowed: the pause still ends at its time, and
    /// `handle_timeout` comes at the deadline, once, whether that falls
    /// before the pause's end or after it. Clearing it clears the deadline
    /// the handler had, not the pause.
    #[test]
    fn a_deadline_set_from_outside_during_a_pause_moves_no_pause_and_is_not_lost() {
        let ms = Duration::from_millis;
        for (set_ms, expected) in
            [(Some(200), ["failed", "accepted", "timeout"]), (Some(20), ["failed", "timeout", "accepted"])]
        {
            let (mut sim, log, id, token) = counting_listener(false);
            memory::exhaust(id, 1);
            let sizes = crate::memory::Sizes { cap: [64; 2], chunk: [64; 2] };
            let _client = memory::connect(id, sizes).unwrap();
            let start = sim.now();
            tick(&mut sim);
            assert_eq!(*log.borrow(), ["failed"]);
            sim.advance(ms(10));
            assert!(sim.map().set_deadline(token, set_ms.map(|m| start + ms(m))));
            let mut seen_at = Vec::new();
            for _ in 0..400 {
                sim.advance(ms(1) / 2);
                tick(&mut sim);
                if log.borrow().len() > 1 + seen_at.len() {
                    seen_at.push(sim.now() - start);
                }
            }
            assert_eq!(*log.borrow(), expected, "deadline at {set_ms:?} ms: {seen_at:?}");
            let at = |event| seen_at[expected.iter().position(|e| *e == event).unwrap() - 1];
            // The pause ends in the iteration at 50 ms; the accept waits
            // for the next one, as in the tests above.
            assert_eq!(
                at("accepted"),
                ms(50) + ms(1) / 2,
                "the pause ended at 50 ms (deadline at {set_ms:?} ms)"
            );
            assert_eq!(at("timeout"), ms(set_ms.unwrap()), "handle_timeout at its deadline");
        }
        // Cleared during the pause: the handler's own deadline goes, the
        // pause's end stays.
        let (mut sim, log, _client) = paused_with_a_deadline(ms(100));
        let token = sim.map().tokens()[0];
        assert!(sim.map().set_deadline(token, None));
        sim.advance(ms(50));
        tick(&mut sim);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "accepted"], "the pause ended at 50 ms");
        sim.advance(ms(100));
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "accepted"], "the cleared deadline did not come");
    }

    /// The back-off of a listener out of descriptors, on virtual time: each
    /// failed accept pauses accepting for twice the last pause, from 50 ms
    /// up to 1 s; not one attempt is made a microsecond before a pause ends,
    /// the first one right after; the pause's end is not a `handle_timeout`
    /// and the exhaustion not a `handle_error`; an accept that goes through
    /// makes the next pause 50 ms again.
    #[test]
    fn the_exhaustion_backoff_doubles_from_50_ms_up_to_1_s_and_resets_after_an_accept() {
        let (mut sim, log, id, token) = counting_listener(false);
        let sizes = crate::memory::Sizes { cap: [64; 2], chunk: [64; 2] };
        let mut clients: Vec<End> = Vec::new();
        let attempts = |log: &Rc<RefCell<Vec<&'static str>>>| log.borrow().len();

        // Seven failures in a row, then an accept that goes through.
        memory::exhaust(id, 7);
        clients.push(memory::connect(id, sizes).unwrap());
        let pauses_ms = [50, 100, 200, 400, 800, 1000, 1000];
        for (n, pause) in pauses_ms.into_iter().map(Duration::from_millis).enumerate() {
            tick(&mut sim);
            assert_eq!(attempts(&log), n + 1, "failure {n}: {:?}", log.borrow());
            assert_eq!(log.borrow()[n], "failed");
            tick(&mut sim);
            sim.advance(pause - MICRO);
            tick(&mut sim);
            tick(&mut sim);
            assert_eq!(attempts(&log), n + 1, "an attempt before the pause of {pause:?} ended");
            sim.advance(MICRO);
            tick(&mut sim); // the pause ends: interest in accepting again
        }
        tick(&mut sim);
        assert_eq!(log.borrow().last(), Some(&"accepted"), "{:?}", log.borrow());

        // The accept reset the back-off: the next exhaustion pauses 50 ms.
        memory::exhaust(id, 1);
        clients.push(memory::connect(id, sizes).unwrap());
        tick(&mut sim);
        assert_eq!(log.borrow().last(), Some(&"failed"), "{:?}", log.borrow());
        sim.advance(Duration::from_millis(50));
        tick(&mut sim);
        tick(&mut sim);
        assert_eq!(log.borrow().last(), Some(&"accepted"), "paused longer than 50 ms: {:?}", log.borrow());

        let events = log.borrow().clone();
        assert!(
            events.iter().all(|e| *e == "failed" || *e == "accepted"),
            "a pause's end is no handle_timeout, exhaustion no handle_error: {events:?}"
        );
        assert!(sim.map().contains(token));
    }

    /// A deadline the handler arms again in a `handle_timeout` that came
    /// during a pause is kept, not taken by the pause's timer: it fires at
    /// its time, after the pause is over.
    #[test]
    fn a_deadline_armed_again_in_a_timeout_during_a_pause_fires_at_its_time() {
        let ms = Duration::from_millis;
        let (mut sim, log, _client) = paused_with_a_deadline(ms(20));
        let token = sim.map().tokens()[0];
        sim.map().handler_mut::<Counting>(token).unwrap().rearm = Some(ms(100));
        sim.advance(ms(20));
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout"], "at 20 ms, during the pause");
        sim.advance(ms(30));
        tick(&mut sim);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout", "accepted"], "the pause ended at 50 ms");
        sim.advance(ms(70) - MICRO);
        tick(&mut sim);
        assert_eq!(*log.borrow(), ["failed", "timeout", "accepted"], "not a microsecond early");
        sim.advance(MICRO);
        tick(&mut sim);
        assert_eq!(
            *log.borrow(),
            ["failed", "timeout", "accepted", "timeout"],
            "the deadline armed again, at 120 ms"
        );
    }
}
