//! Layer 8: a deterministic simulated world for fuzzing handlers.
//!
//! A [`Sim`] runs your unchanged handlers in a real [`Map`] whose poller is
//! scripted and whose clock is virtual: every step, a seed (or a fuzzer's
//! bytes) decides what happens next — a peer connects, writes some bytes,
//! reads some, half-closes, closes or resets, sends out-of-band data,
//! connects and vanishes before it is accepted; a slow connect completes or
//! is refused; the listener runs out of descriptors (`EMFILE`) for its next
//! accepts; time jumps ahead; a graceful shutdown starts — or the loop runs
//! one iteration, with readiness withheld, invented (spurious wake-ups),
//! reported for channels that have since closed, or reordered.
//!
//! **In memory.** The simulated channels and their peers exchange bytes
//! through queues in memory, not kernel sockets: each connection's capacity
//! and the most one call moves are chosen per connection, so partial reads
//! and writes and would-block are common. Your handlers get the same
//! `Channel<Connected>` (raw, in a [`Buffered`](crate::Buffered) or an
//! [`AsyncChat`](crate::AsyncChat)) they get in production; only what is
//! behind its `send` and `recv` differs. No socket is opened: a simulated
//! channel's descriptor is a duplicate of `/dev/null`, there so the map can
//! index it. What peers write is a fixed pattern unless a test gives them
//! messages of its own ([`Traffic`]).
//!
//! **Virtual time.** The map's clock ([`Map::now`], [`Ctx::now`](crate::Ctx::now))
//! stands still until the simulation moves it, by jumps from a millisecond
//! to two minutes, or to the edge of the earliest timer a handler set: a
//! microsecond before it is due, where it must not fire, or onto it, where
//! it must (a timer a millisecond early is caught there). Deadlines, idle
//! timeouts, the listener's `EMFILE` back-off, a chat's lingering close and
//! a shutdown's grace period all run on it (it starts years ahead of the
//! real clock, so a deadline a handler took from `Instant::now()` is caught
//! as such), so the same seed gives the same trace, timers included, on
//! any machine and at any speed, whatever else the process opens
//! meanwhile. The map's table is indexed by descriptor number, so nothing
//! the loop serves in turn goes by it: readiness is reported in the order
//! channels joined, timers due at the same instant fire in the order the
//! timer queue took them in (an idle timeout pushed back by activity is
//! queued again when its old place comes due), and the channels a shutdown
//! closes go in the order they joined.
//!
//! On every step the simulation checks what the loop delivered against its
//! invariants: nothing after close and `handle_close` at most once (D18), no
//! stale token reaching a channel (D20), `handle_connect` once and before any
//! read or write (D21), no read, write or priority event to a listener; and
//! the timers': no expiry before the deadline a handler set (an idle
//! timeout counts from the channel's last callback: activity re-arms it), no
//! deadline left unserved by the iteration after time reached it, nothing
//! after close, and every channel closed once a shutdown's grace period is
//! over. At the end, on truthful readiness, every peer stops sending and
//! reads the replies to what it sent (so a protocol check on the report
//! sees them), then closes, and the loop runs until it goes quiet: a
//! channel still open then never had its `handle_close`, and a loop that
//! does not go quiet is a livelock (a handler that asks for events it never
//! consumes). Then `close_all` must leave the map empty.
//!
//! A failure is a [`SimFailure`] that prints the seed and the trace, to be
//! replayed in a unit test with the same seed.
//!
//! Real I/O pays next to nothing for this: a channel's in-memory end lives
//! in what was padding (one byte comparison per send and receive), the
//! script wraps the map's backend (one branch per wait when there is none),
//! the clock is read only when a timer is armed (one more branch then), and
//! only a tracing map (this one) makes entries that record their
//! callbacks; the others call their handlers through a tracer that compiles
//! to nothing.
//!
//! # Examples
//!
//! Fuzzing an echo server's handlers for 200 steps from seed 7:
//!
//! ```
//! use std::io;
//! use rolecore::sim::{Sim, SimConfig};
//! use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};
//!
//! struct Echo;
//! impl StreamHandler<Buffered<Connected>> for Echo {
//!     fn handle_read(&mut self, ch: &mut Buffered<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
//!         let mut buf = [0u8; 512];
//!         let n = ch.recv(&mut buf)?;
//!         ch.send(&buf[..n])
//!     }
//! }
//! struct Server;
//! impl AcceptHandler for Server {
//!     fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
//!         cx.insert(Buffered::new(c), Echo)?;
//!         Ok(())
//!     }
//! }
//!
//! let mut sim = Sim::from_seed(7, SimConfig::default()).unwrap();
//! sim.listen(Server).unwrap();
//! let report = sim.run().unwrap_or_else(|failure| panic!("{failure}"));
//! // Every byte a peer got back is a prefix of what it sent.
//! for peer in &report.peers {
//!     assert!(peer.sent.starts_with(&peer.received_data()));
//! }
//! ```

mod check;
mod chooser;
mod config;
mod join;
mod log;
mod peer;
mod script;
mod settle;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use config::{OOB_BYTE, PeerReport, SETTLE_HARD_LIMIT, SimConfig, SimFailure, SimReport, Traffic};

use check::Checker;
use chooser::Chooser;
use log::Line;
pub use log::Trace;
use peer::Peer;
use script::Chaos;

pub use crate::trace::{Callback, Joined, Traced};

use crate::clock::{Clock, VirtualClock, saturating_add};
use crate::map::Map;
use crate::memory;
use crate::poller::Poller;

/// Where simulated clients connect: an in-memory listener in the map, with
/// the user's handler.
struct Listener {
    id: u16,
}

/// How far one time step moves the clock: from below a typical deadline's
/// resolution to past any idle timeout a test would set.
const TIME_JUMPS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(7),
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// A time step's byte at or above this lands on a timer's edge (see
/// `Sim::step`).
const EDGE_JUMPS: u8 = 224;

/// How far before a timer's due instant its edge's first jump lands.
const BEFORE_DUE: Duration = Duration::from_micros(1);

/// The most bytes one call moves on a connection, per direction, chosen
/// when it is made: a byte at a time up to no limit but the capacity.
const CHUNKS: [usize; 6] = [1, 3, 64, 1024, 16_384, usize::MAX];

/// Most calls of [`CHUNKS`]' size that fill a direction: its capacity is
/// at most this many times its bytes per call.
const CALLS_PER_FILL: usize = 64;

/// The capacity of each direction when [`SimConfig::socket_buffer`] is
/// `None`: about what Linux gives a socket.
const DEFAULT_CAPACITY: usize = 208 * 1024;

/// How many channels, peers, or events of one wait the simulation's lists
/// have room for from the start: a fuzz run's worlds are small, and growing
/// each list from nothing (four allocations and copies to reach 32) was a
/// visible share of one.
const ROOM: usize = 32;

/// The simulated world: a map, its scripted poller, its clock, and the peers.
pub struct Sim {
    map: Map,
    chooser: Rc<Chooser>,
    chaos: Rc<RefCell<Chaos>>,
    checker: Checker,
    clock: VirtualClock,
    config: SimConfig,
    traffic: Traffic,
    seed: Option<u64>,
    listeners: Vec<Listener>,
    peers: Vec<Peer>,
    /// The indices of the peers still open (with an end), in order: a step
    /// picks one without scanning every peer that ever was.
    open_peers: Vec<usize>,
    trace: Trace,
    iterations: usize,
    /// When the graceful shutdown's grace period ends, once one started.
    shutdown: Option<Instant>,
    /// `memory::sends()` when the settling's peers last read everything.
    peers_read_at: Option<u64>,
    /// The loop's recorded events, handed over after each wait (the
    /// allocation goes back and forth with the map's).
    events: crate::trace::Trace,
    descriptors_at_start: usize,
    /// The id of the map this simulation made: a map put in its place
    /// (`*sim.map() = Map::new()?`, or a swap with another simulation's)
    /// has another, and is refused rather than run (see [`Sim::map`]).
    map_id: u32,
    /// Inside the map's `poll`: a handler's panic there leaves the wait's
    /// readiness to be logged.
    polling: bool,
}

impl Sim {
    /// A world whose choices come from `seed`: the same seed, the same run,
    /// timers included.
    pub fn from_seed(seed: u64, config: SimConfig) -> io::Result<Sim> {
        let mut sim = Sim::new(Chooser::seeded(seed), config)?;
        sim.seed = Some(seed);
        Ok(sim)
    }

    /// A world whose choices are a fuzzer's bytes; it ends when they do.
    pub fn from_bytes(data: &[u8], config: SimConfig) -> io::Result<Sim> {
        Sim::new(Chooser::bytes(data), config)
    }

    fn new(chooser: Chooser, mut config: SimConfig) -> io::Result<Sim> {
        // A peer writes or reads at least a byte per step, and settling
        // allows at least one quiet iteration: zero in either would make
        // the run meaningless (or divide by zero).
        config.max_io = config.max_io.max(1);
        config.settle_limit = config.settle_limit.max(1);
        // The placeholder every in-memory descriptor duplicates is opened
        // once per thread, up front: a failure shows here, not mid-run.
        memory::prepare()?;
        let descriptors_at_start = memory::open_ends();
        let chooser = Rc::new(chooser);
        let checker = Checker::with_capacity(ROOM);
        let chaos = Rc::new(RefCell::new(Chaos {
            chooser: chooser.clone(),
            truthful: false,
            delivered: Vec::with_capacity(ROOM),
            ids: checker.ids.clone(),
            live: Vec::with_capacity(ROOM),
            keyed: Vec::with_capacity(ROOM),
        }));
        let script: crate::poller::scripted::SharedScript = chaos.clone();
        let mut map = Map::with_poller(Poller::scripted(script));
        map.set_tracing(true);
        let clock = VirtualClock::new();
        map.registry.clock = Clock::Virtual(clock.clone());
        let mut trace = Trace::default();
        trace.set_origin(clock.start());
        let map_id = map.registry.id;
        Ok(Sim {
            map_id,
            polling: false,
            map,
            chooser,
            chaos,
            checker,
            clock,
            config,
            traffic: Traffic::pattern(),
            seed: None,
            listeners: Vec::new(),
            peers: Vec::with_capacity(ROOM),
            open_peers: Vec::with_capacity(ROOM),
            trace,
            iterations: 0,
            shutdown: None,
            peers_read_at: None,
            events: Vec::with_capacity(ROOM),
            descriptors_at_start,
        })
    }

    /// Sets what the simulated peers write (the default is
    /// [`Traffic::pattern`]).
    pub fn with_traffic(mut self, traffic: Traffic) -> Sim {
        self.traffic = traffic;
        self
    }

    /// The map the simulation drives, to insert channels of your own
    /// (kernel descriptors work too: the script asks the kernel for their
    /// readiness).
    ///
    /// Insert into it, do not put another map in its place: only the map
    /// the simulation made waits on its script and reads its virtual clock.
    /// A map assigned over it (`*sim.map() = Map::new()?`) or swapped with
    /// another simulation's is refused: [`listen`](Self::listen) and
    /// [`connect`](Self::connect) then fail with `InvalidInput`, and
    /// [`run`](Self::run) with a [`SimFailure`] that says the map was
    /// replaced, before either touches it. Putting the simulation's own map
    /// back (swapping twice) makes it whole again.
    pub fn map(&mut self) -> &mut Map {
        &mut self.map
    }

    /// Why the map in the simulation is not the one it made, if it is not.
    fn map_replaced(&self) -> Option<String> {
        (self.map.registry.id != self.map_id).then(|| {
            "the simulation's map was replaced (assigned or swapped through `Sim::map`, or the \
             `&mut Map` a `connect` closure gets): only the map a `Sim` made waits on its script and \
             its virtual clock; insert channels into that map instead of putting another in its place"
                .to_owned()
        })
    }

    /// [`map_replaced`](Self::map_replaced) as the error `listen` and
    /// `connect` return.
    fn check_map(&self) -> io::Result<()> {
        match self.map_replaced() {
            Some(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why)),
            None => Ok(()),
        }
    }

    /// The simulation's virtual time: where the map's clock stands now.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// How far virtual time has moved since the simulation was made.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Moves virtual time forward by `by`, as a run's step would (before
    /// [`run`](Self::run), to start later), up to the last [`Instant`] there is.
    /// Near that end, a handler's own `cx.now() + d` overflows and panics,
    /// as `Instant`'s `+` does; the loop's own timers saturate instead, and
    /// [`Ctx::set_deadline_after`](crate::Ctx::set_deadline_after) takes
    /// such a deadline for one that never passes. A
    /// run's own steps move time by two minutes at most, or onto the
    /// earliest timer a handler set.
    pub fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.log(Line::Time { by, t: self.clock.elapsed() });
    }

    fn log(&mut self, line: Line) {
        self.trace.push(line);
    }

    fn fail(&self, violation: String) -> SimFailure {
        SimFailure { seed: self.seed, violation, trace: self.trace.render() }
    }

    /// Moves what the loop recorded into the checker and the trace.
    fn absorb_trace(&mut self) -> Result<(), io::Error> {
        self.absorb().map_err(|f| io::Error::other(f.to_string()))
    }

    fn absorb(&mut self) -> Result<(), SimFailure> {
        self.checker.begin_batch();
        let mut events = std::mem::take(&mut self.events);
        self.map.swap_trace(&mut events);
        if events.is_empty() {
            self.events = events;
            return Ok(());
        }
        // Every event of one wait happened at the same virtual time.
        let now = self.clock.now();
        let at = self.clock.offset(now);
        let trace = &mut self.trace;
        let checked = self.checker.check_all(&events, now, &self.clock, |id, event| {
            trace.push(Line::Event { id, event, at });
        });
        if let Err(violation) = checked {
            self.trace.violation(violation.clone());
            return Err(self.fail(violation));
        }
        events.clear();
        self.events = events;
        Ok(())
    }

    fn poll_once(&mut self) -> Result<bool, SimFailure> {
        // Wrapping: one traced comparison less per iteration, in a count
        // that cannot reach 2^64.
        self.iterations = self.iterations.wrapping_add(1);
        self.polling = true;
        let result = self.map.poll(Some(Duration::ZERO));
        self.polling = false;
        let chaos = self.chaos.borrow();
        self.trace.poll(chaos.delivered.iter().map(|&(_, id, r, notes)| (id, r, notes)));
        drop(chaos);
        let stopped = result.map_err(|e| self.fail(format!("the loop failed: {e}")))?;
        self.absorb()?;
        if !stopped {
            self.check_timers()?;
        }
        Ok(stopped)
    }

    /// After a whole iteration at the current time: no deadline that time
    /// reached is left unserved, and a shutdown whose grace period is over
    /// left nothing open.
    fn check_timers(&mut self) -> Result<(), SimFailure> {
        let now = self.clock.now();
        let timers = &self.map.registry.timers;
        let overdue = self.checker.overdue(now).or_else(|| {
            if timers.is_empty() {
                return None;
            }
            let (at, index) = timers.earliest()?;
            (at <= now).then(|| format!("the timer of slot {index}"))
        });
        if let Some(name) = overdue {
            return Err(self.fail(format!(
                "{name}: its deadline passed at or before t={:?} and a whole iteration at that time \
                 did not expire it (a deadline must be served in the iteration after time reaches it)",
                self.clock.elapsed()
            )));
        }
        if let Some(at) = self.shutdown
            && now >= at
            && self.checker.live() > 0
        {
            return Err(self.fail(format!(
                "the shutdown's grace period ended at t={:?}, and {} channels are still open after \
                 an iteration at t={:?}",
                self.clock.offset(at),
                self.checker.live(),
                self.clock.elapsed()
            )));
        }
        Ok(())
    }

    /// One step: a peer acts, time moves, the world changes, or the loop
    /// runs once.
    fn step(&mut self) -> Result<bool, SimFailure> {
        // Out of 32: the loop runs (12), a peer connects (2), writes (5),
        // reads (4), sends urgent data (1); a third of the time a peer
        // half-closes or closes (1 each, else the loop runs); time jumps
        // (3); a listener runs out of descriptors (1); a slow connect ends
        // (1); rarely, a graceful shutdown starts (1 in 16 of 1). Peers
        // live long enough for their traffic to interleave with the loop's
        // partial writes.
        let Some(action) = self.chooser.below(32) else { return Ok(false) };
        let size = 1 + self.chooser.below(self.config.max_io).unwrap_or(0);
        let io_fail = |sim: &Sim, e: io::Error| sim.fail(format!("a simulated peer failed: {e}"));
        match action {
            0..=8 | 23 | 30 | 31 => return self.poll_once(),
            9 | 10 => self.new_peer(action == 10 && self.chooser.one_in(3)).map_err(|e| io_fail(self, e))?,
            11..=15 => self.peer_writes(size),
            16..=19 => self.peer_reads(size),
            20 if self.chooser.one_in(3) => self.peer_half_closes(),
            21 if self.chooser.one_in(3) => self.peer_closes(),
            20 | 21 => return self.poll_once(),
            22 => self.peer_sends_oob(),
            24..=26 => {
                let choice = self.chooser.byte().unwrap_or(0);
                let jump = match self.checker.earliest_due() {
                    // An eighth of the jumps land on a timer's edge: just
                    // before the earliest one is due, where it must not
                    // fire, or on it, where it must; a jump from the table
                    // lands within a millisecond of it too rarely to catch
                    // a timer a millisecond early. The other bytes pick from
                    // the table as `below` did, so inputs keep their jumps.
                    Some(due) if choice >= EDGE_JUMPS => {
                        let to_due = due.saturating_duration_since(self.clock.now());
                        if choice.is_multiple_of(2) { to_due.saturating_sub(BEFORE_DUE) } else { to_due }
                    }
                    _ => TIME_JUMPS[usize::from(choice) % TIME_JUMPS.len()],
                };
                self.advance(jump);
            }
            27 => {
                if self.listeners.is_empty() {
                    return Ok(false);
                }
                let which = self.chooser.below(self.listeners.len()).unwrap_or(0);
                let n = 1 + self.chooser.below(3).unwrap_or(0) as u32;
                memory::exhaust(self.listeners[which].id, n);
                self.log(Line::Exhaust { listener: which, n });
            }
            28 => self.slow_connect_ends(),
            _ => {
                if self.shutdown.is_some() || !self.chooser.one_in(16) {
                    return self.poll_once();
                }
                let grace = TIME_JUMPS[self.chooser.below(TIME_JUMPS.len()).unwrap_or(0)];
                self.log(Line::Shutdown { grace });
                self.shutdown = Some(saturating_add(self.clock.now(), grace));
                self.map.shutdown(grace);
                self.absorb()?;
            }
        }
        Ok(false)
    }

    /// Runs the steps, settles, and checks the end state.
    pub fn run(mut self) -> Result<SimReport, SimFailure> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_inner()));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => return Err(failure),
            Err(panic) => {
                let failure = self.panicked();
                eprintln!("{failure}");
                std::panic::resume_unwind(panic);
            }
        }
        let callbacks = self.checker.callbacks;
        let Sim { seed, peers, trace, iterations, shutdown, .. } = self;
        Ok(SimReport {
            seed,
            peers: peers.into_iter().map(|p| p.report).collect(),
            trace,
            iterations,
            callbacks,
            shut_down: shutdown.is_some(),
        })
    }

    /// The failure for a handler that panicked, with the wait and the
    /// callbacks of the iteration it panicked in: the loop recorded each
    /// callback as it started it, so the last one is where the panic was
    /// (or after which, for a panic outside a callback, as in `writable`).
    fn panicked(&mut self) -> SimFailure {
        if std::mem::take(&mut self.polling) {
            let chaos = self.chaos.borrow();
            self.trace.poll(chaos.delivered.iter().map(|&(_, id, r, notes)| (id, r, notes)));
        }
        // A violation in an iteration cut short is beside the point: the
        // panic is the failure (and `absorb` puts any in the trace).
        let _ = self.absorb();
        let lines = self.trace.render();
        let last = lines.iter().rev().map(|l| l.trim()).find(|l| l.contains(" handle_"));
        self.fail(match last {
            Some(callback) => format!("a handler panicked; the last callback the loop made: {callback}"),
            None => "a handler panicked, before the loop made any callback".to_owned(),
        })
    }

    fn run_inner(&mut self) -> Result<(), SimFailure> {
        if let Some(why) = self.map_replaced() {
            return Err(self.fail(why));
        }
        for step in 0..self.config.steps {
            if self.chooser.is_exhausted() {
                break;
            }
            if step % 32 == 0 {
                self.log(Line::Step(step));
            }
            if self.step()? {
                self.log(Line::Stopped);
            }
        }
        self.settle()?;
        self.map.close_all();
        self.absorb()?;
        if !self.map.is_empty() || self.checker.live() != 0 {
            return Err(self.fail(format!("close_all left {} channels in the map", self.map.len())));
        }
        if self.config.check_descriptors {
            // Every simulated channel's descriptor belongs to an in-memory
            // end: counting the ends counts them, without reading
            // /proc/self/fd (a dozen system calls per run).
            self.peers.iter_mut().for_each(|p| p.end = None);
            let now = memory::open_ends();
            if now != self.descriptors_at_start {
                return Err(self.fail(format!(
                    "descriptor leak: {} in-memory channels open at the start, {now} at the end (a \
                     handler kept or forgot a channel the map closed; or another Sim on this thread \
                     holds channels, which check_descriptors counts too)",
                    self.descriptors_at_start
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("config", &self.config)
            .field("peers", &self.peers.len())
            .field("iterations", &self.iterations)
            .field("elapsed", &self.clock.elapsed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffered::Buffered;
    use crate::channel::Connected;
    use crate::handler::{AcceptHandler, StreamHandler};
    use crate::map::Ctx;
    use crate::timer::fault::{self, Fault};
    use crate::{Address, Channel};

    struct Echo;
    impl StreamHandler<Buffered<Connected>> for Echo {
        fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
            let buf = cx.buffer();
            let n = ch.recv(buf)?;
            ch.send(&buf[..n])
        }
    }

    /// Every other connection gets an idle timeout, the others a deadline.
    struct TimedServer(u32);
    impl AcceptHandler for TimedServer {
        fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
            let token = cx.insert(Buffered::new(c), Echo)?;
            self.0 += 1;
            if self.0.is_multiple_of(2) {
                cx.set_idle_timeout(token, Some(Duration::from_millis(300)));
            } else {
                let at = cx.now() + Duration::from_millis(250);
                cx.set_deadline(token, Some(at));
            }
            Ok(())
        }
    }

    fn timed_run(seed: u64) -> Result<SimReport, SimFailure> {
        let mut sim = Sim::from_seed(seed, SimConfig::default()).unwrap();
        sim.listen(TimedServer(0)).unwrap();
        sim.run()
    }

    /// Runs seeds with `fault` planted until one fails, and asserts that
    /// one does and that its message says `caught_as`.
    fn assert_caught(fault: Fault, caught_as: &str) {
        let _planted = fault::plant(fault);
        let failure = (0..200).find_map(|seed| timed_run(seed).err().map(|f| (seed, f.violation)));
        let (seed, violation) = failure.expect("a run catches it");
        assert!(violation.contains(caught_as), "seed {seed}: {violation}");
    }

    #[test]
    fn timed_runs_keep_the_timer_invariants_and_fire_timers() {
        let mut expired = 0;
        for seed in 0..200 {
            let report = timed_run(seed).unwrap_or_else(|f| panic!("{f}"));
            expired += report.trace.iter().filter(|l| l.contains("timer expired")).count();
        }
        assert!(expired > 50, "timers fired in the runs ({expired})");
    }

    #[test]
    fn the_report_says_whether_a_shutdown_started() {
        let (mut with, mut without) = (0, 0);
        for seed in 0..100 {
            let report = timed_run(seed).unwrap_or_else(|f| panic!("{f}"));
            let in_trace = report.trace.iter().any(|l| l.starts_with("graceful shutdown"));
            assert_eq!(report.shut_down, in_trace, "seed {seed}");
            if in_trace { with += 1 } else { without += 1 }
        }
        assert!(with > 0 && without > 0, "both kinds of run ({with} with, {without} without)");
    }

    #[test]
    fn a_direction_holds_at_most_its_calls_per_fill_worth_of_bytes() {
        let config = SimConfig { socket_buffer: None, ..SimConfig::default() };
        // Chunk indices 0 (a byte per call) and 2 (64), then 5 (no limit) twice.
        let mut sim = Sim::from_bytes(&[0, 2, 5, 5], config).unwrap();
        let small = sim.sizes();
        assert_eq!(small.chunk, [1, 64]);
        assert_eq!(small.cap, [CALLS_PER_FILL, 64 * CALLS_PER_FILL]);
        let big = sim.sizes();
        assert_eq!(big.chunk, [usize::MAX; 2]);
        assert_eq!(big.cap, [DEFAULT_CAPACITY; 2], "a kernel-size buffer when calls are not cut");
    }

    #[test]
    fn a_deadline_that_fires_early_is_caught() {
        assert_caught(Fault::EarlyDeadline, "a deadline expired early");
    }

    #[test]
    fn an_idle_timeout_that_activity_does_not_re_arm_is_caught() {
        assert_caught(Fault::NoRearm, "activity re-arms it");
    }

    #[test]
    fn timers_that_expire_a_millisecond_early_are_caught() {
        assert_caught(Fault::SlightlyEarly, "due no earlier than");
    }

    #[test]
    fn an_idle_timeout_armed_a_millisecond_short_is_caught() {
        assert_caught(Fault::IdleShort, "before the channel was idle that long");
    }

    #[test]
    fn a_deadline_the_loop_never_serves_is_caught() {
        assert_caught(Fault::Missed, "did not expire it");
    }

    /// Reads what comes and does nothing else.
    struct Quiet;
    impl StreamHandler for Quiet {
        fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
            ch.recv(&mut [0u8; 64])?;
            Ok(())
        }
    }

    /// A simulation driven by `bytes` with one channel of ours (a kernel
    /// socket pair) in its map, whose timer is a deadline 100 ms from now
    /// or, when `idle`, an idle timeout of 100 ms; the checker has seen it.
    fn one_timer(bytes: &[u8], idle: bool) -> (Sim, std::os::unix::net::UnixStream, Instant) {
        let mut sim = Sim::from_bytes(bytes, SimConfig::default()).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let token = sim.map().insert(Channel::try_from(ours).unwrap(), Quiet).unwrap();
        let due = sim.now() + Duration::from_millis(100);
        if idle {
            assert!(sim.map().set_idle_timeout(token, Some(Duration::from_millis(100))));
        } else {
            assert!(sim.map().set_deadline(token, Some(due)));
        }
        sim.absorb().unwrap();
        (sim, theirs, due)
    }

    /// A time step whose byte is 224 or more lands on the earliest timer's
    /// edge: an odd byte exactly on its instant, an even one a microsecond
    /// before it (not after it, where a timer a hair late would pass).
    #[test]
    fn an_edge_jump_lands_on_the_earliest_timer_or_a_microsecond_before_it() {
        for idle in [false, true] {
            for (choice, before) in [(225, Duration::ZERO), (224, BEFORE_DUE)] {
                // A time step (24), the step's size (two bytes), the jump's byte.
                let (mut sim, _peer, due) = one_timer(&[24, 0, 0, choice], idle);
                assert!(!sim.step().unwrap());
                assert_eq!(sim.now(), due - before, "byte {choice}, idle {idle}");
            }
        }
    }

    /// A deadline in the trace is printed at its instant on the virtual
    /// clock, counted from the simulation's start like every other time
    /// there (never from the real clock, which would make the trace differ
    /// from run to run, or print every future deadline as zero).
    #[test]
    fn a_deadline_is_traced_at_its_virtual_instant() {
        let (mut sim, _peer, _) = one_timer(&[], false);
        sim.advance(Duration::from_secs(3));
        let token = sim.map().tokens()[0];
        let at = sim.now() + Duration::from_millis(250);
        assert!(sim.map().set_deadline(token, Some(at)));
        sim.absorb().unwrap();
        let lines: Vec<String> = sim.trace.iter().filter(|l| l.contains("deadline at")).cloned().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("deadline at t=100ms"), "{lines:?}");
        assert!(lines[1].ends_with("deadline at t=3.25s"), "{lines:?}");
    }

    /// The timers are checked after every iteration, the first at a timer's
    /// instant included, whatever iterations came before: a timer the loop
    /// leaves unserved there is caught there (a deadline by the checker's
    /// model, an idle timeout by the map's own timers), not an iteration or
    /// a time step later.
    #[test]
    fn a_timer_left_unserved_at_its_instant_is_caught_in_that_iteration() {
        let _planted = fault::plant(Fault::Missed);
        for idle in [false, true] {
            for polls_before in 0..2 {
                let (mut sim, _peer, due) = one_timer(&[], idle);
                for _ in 0..polls_before {
                    sim.poll_once().unwrap();
                }
                sim.advance(due - sim.now());
                let failure = sim.poll_once().expect_err("the unserved timer is caught");
                let name = if idle { "the timer of slot" } else { "#1's deadline" };
                assert!(failure.violation.contains(name), "{}", failure.violation);
            }
        }
    }

    /// A map still holding channels after an iteration at the instant the
    /// simulation's shutdown said its grace ends is caught in that
    /// iteration (here the map was given a longer grace than the one the
    /// simulation checks, as a loop that ended its grace late would act).
    #[test]
    fn channels_left_open_at_the_end_of_the_grace_are_caught_in_that_iteration() {
        for polls_before in 0..2 {
            let mut sim = Sim::from_bytes(&[], SimConfig::default()).unwrap();
            let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
            sim.map().insert(Channel::try_from(ours).unwrap(), Quiet).unwrap();
            let grace = Duration::from_millis(100);
            sim.shutdown = Some(sim.now() + grace);
            sim.map.shutdown(2 * grace);
            for _ in 0..polls_before {
                sim.poll_once().unwrap();
            }
            sim.advance(grace);
            let failure = sim.poll_once().expect_err("the late grace is caught");
            assert!(failure.violation.contains("grace period ended"), "{}", failure.violation);
        }
    }

    /// A [`TimedServer`] that also opens a file on every connection and
    /// closes the one before: descriptors leave holes below the channels,
    /// so later channels get numbers in another order than they would
    /// without it, as when another thread of the process opens and closes
    /// descriptors during a run.
    struct Reshuffling(TimedServer, Option<std::fs::File>);
    impl AcceptHandler for Reshuffling {
        fn handle_accepted(&mut self, c: Channel<Connected>, a: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
            let next = std::fs::File::open("/dev/null")?;
            self.1 = Some(next); // the last one closes: a hole
            self.0.handle_accepted(c, a, cx)
        }
    }

    /// Timers due at the same instant, and the channels a shutdown closes at
    /// the end of its grace, are served in the order the timer queue took
    /// them in and the order they joined, not by descriptor number: a run
    /// whose descriptors are numbered differently gives the same trace.
    /// (This test runs beside others that open descriptors, which it must
    /// not mind either.)
    #[test]
    fn the_same_seed_gives_the_same_trace_whatever_the_descriptor_numbers() {
        let (mut timers, mut shutdowns) = (0, 0);
        for seed in 0..150 {
            let plain = timed_run(seed).unwrap().trace;
            let mut sim = Sim::from_seed(seed, SimConfig::default()).unwrap();
            sim.listen(Reshuffling(TimedServer(0), None)).unwrap();
            let reshuffled = sim.run().unwrap().trace;
            assert_eq!(plain, reshuffled, "seed {seed}");
            timers += plain.iter().filter(|l| l.contains("timer expired")).count();
            shutdowns += usize::from(plain.iter().any(|l| l.starts_with("graceful shutdown")));
        }
        assert!(timers > 50 && shutdowns > 10, "timers ({timers}) and shutdowns ({shutdowns}) ran");
    }

    /// Panics on the first byte it reads.
    struct Panicky;
    impl StreamHandler<Buffered<Connected>> for Panicky {
        fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
            if ch.recv(cx.buffer())? > 0 {
                panic!("the handler's own bug");
            }
            Ok(())
        }
    }
    struct PanickyServer;
    impl AcceptHandler for PanickyServer {
        fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
            cx.insert(Buffered::new(c), Panicky)?;
            Ok(())
        }
    }

    #[test]
    fn a_handler_panic_names_the_callback_and_ends_the_trace_with_it() {
        let mut sim = Sim::from_seed(1, SimConfig::default()).unwrap();
        sim.listen(PanickyServer).unwrap();
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run_inner()));
        assert!(panic.is_err(), "some peer wrote a byte");
        let failure = sim.panicked();
        let read = failure.trace.iter().rposition(|l| l.trim().ends_with(" handle_read"));
        let read = read.expect("the panicking read is in the trace");
        assert!(failure.trace[read + 1..].iter().all(|l| !l.contains(" handle_")), "{failure}");
        assert!(failure.trace[..read].iter().any(|l| l.starts_with("poll: ")), "{failure}");
        assert!(failure.violation.ends_with(failure.trace[read].trim()), "{failure}");
    }
}
