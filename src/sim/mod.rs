//! Layer 8: a deterministic simulated world for fuzzing handlers.
//!
//! A [`Sim`] runs your unchanged handlers in a real [`Map`] whose poller is
//! scripted: every step, a seed (or a fuzzer's bytes) decides what happens
//! next — a peer connects, writes some bytes, reads some, half-closes,
//! closes or resets, sends out-of-band data, connects and vanishes before it
//! is accepted — or the loop runs one iteration, with readiness withheld,
//! invented (spurious wake-ups), reported for channels that have since
//! closed, or reordered. Peers are the far ends of Unix stream sockets, whose
//! transfers the kernel completes synchronously, so the same seed gives the
//! same trace, byte for byte, as long as no timer fires: timers still run on
//! the real clock. What peers write is a fixed pattern unless a test gives
//! them messages of its own ([`Traffic`]).
//!
//! On every step the simulation checks what the loop delivered against its
//! invariants: nothing after close and `handle_close` at most once (D18), no
//! stale token reaching a channel (D20), `handle_connect` once and before any
//! read or write (D21), no read, write or priority event to a listener. At
//! the end it closes every peer and runs the loop with truthful readiness
//! until it goes quiet: a channel still open then never had its
//! `handle_close`, and a loop that does not go quiet is a livelock (a
//! handler that asks for events it never consumes). Then `close_all` must
//! leave the map empty.
//!
//! A failure is a [`SimFailure`] that prints the seed and the trace, to be
//! replayed in a unit test with the same seed.
//!
//! Real I/O pays next to nothing for this: the script wraps the map's real
//! backend, one branch per wait when there is none, and only a tracing map
//! (this one) makes entries that record their callbacks; the others call
//! their handlers through a tracer that compiles to nothing.
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
mod script;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use config::{OOB_BYTE, PeerReport, SETTLE_HARD_LIMIT, SimConfig, SimFailure, SimReport, Traffic};

use check::Checker;
use chooser::Chooser;
use script::Chaos;

pub use crate::trace::{Callback, Joined, Traced};

use crate::address::{Address, UnixAddress};
use crate::channel::{Channel, Connected, Connecting, Listening};
use crate::handler::AcceptHandler;
use crate::map::Map;
use crate::poller::Poller;
use crate::token::Token;

struct Peer {
    channel: Option<Channel<Connected>>,
    report: PeerReport,
    write_shut: bool,
}

/// Where simulated clients connect: a Unix listener in the map, with the
/// user's handler.
struct Listener {
    address: Address,
}

/// The simulated world: a map, its scripted poller, and the peers.
pub struct Sim {
    map: Map,
    chooser: Rc<RefCell<Chooser>>,
    chaos: Rc<RefCell<Chaos>>,
    checker: Checker,
    config: SimConfig,
    traffic: Traffic,
    seed: Option<u64>,
    listeners: Vec<Listener>,
    peers: Vec<Peer>,
    trace: Vec<String>,
    iterations: usize,
    callbacks: usize,
    /// Callbacks that moved data (or found the end of a stream).
    progressed: usize,
    descriptors_at_start: usize,
}

static NAMES: AtomicU64 = AtomicU64::new(0);

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

impl Sim {
    /// A world whose choices come from `seed`: the same seed, the same run,
    /// as long as no timer fires (deadlines and idle timeouts run on the
    /// real clock, so a run in which one fires may differ when replayed).
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
        let descriptors_at_start = if config.check_descriptors { open_descriptors() } else { 0 };
        let chooser = Rc::new(RefCell::new(chooser));
        let chaos = Rc::new(RefCell::new(Chaos {
            chooser: chooser.clone(),
            graveyard: Vec::new(),
            truthful: false,
            delivered: Vec::new(),
            ids: Default::default(),
        }));
        let script: crate::poller::scripted::SharedScript = chaos.clone();
        let mut map = Map::with_poller(Poller::scripted(script));
        map.set_tracing(true);
        Ok(Sim {
            map,
            chooser,
            chaos,
            checker: Checker::default(),
            config,
            traffic: Traffic::pattern(),
            seed: None,
            listeners: Vec::new(),
            peers: Vec::new(),
            trace: Vec::new(),
            iterations: 0,
            callbacks: 0,
            progressed: 0,
            descriptors_at_start,
        })
    }

    /// Sets what the simulated peers write (the default is
    /// [`Traffic::pattern`]).
    pub fn with_traffic(mut self, traffic: Traffic) -> Sim {
        self.traffic = traffic;
        self
    }

    /// The map the simulation drives, to insert channels of your own.
    pub fn map(&mut self) -> &mut Map {
        &mut self.map
    }

    /// Starts a listener with `handler`; simulated clients connect to it.
    pub fn listen<H: AcceptHandler>(&mut self, handler: H) -> io::Result<Token> {
        let name = format!("rolecore-sim-{}-{}", std::process::id(), NAMES.fetch_add(1, Ordering::Relaxed));
        let address = Address::Unix(UnixAddress::Abstract(name.into_bytes()));
        let listener: Channel<Listening> = Channel::unix_stream()?.bind(&address)?.listen(64)?;
        self.shrink(&listener)?;
        let token = self.map.insert(listener, handler)?;
        self.listeners.push(Listener { address });
        self.absorb_trace()?;
        Ok(token)
    }

    /// Connects a channel of yours to a simulated server: `insert` gets the
    /// connecting channel and puts it in the map with your handler (raw,
    /// `Buffered` or `AsyncChat`). The server side becomes a peer.
    pub fn connect(
        &mut self,
        insert: impl FnOnce(Channel<Connecting>, &mut Map) -> io::Result<Token>,
    ) -> io::Result<Token> {
        let name = format!("rolecore-sim-{}-{}", std::process::id(), NAMES.fetch_add(1, Ordering::Relaxed));
        let address = Address::Unix(UnixAddress::Abstract(name.into_bytes()));
        let mut server: Channel<Listening> = Channel::unix_stream()?.bind(&address)?.listen(1)?;
        self.shrink(&server)?;
        let fresh = Channel::unix_stream()?;
        self.shrink(&fresh)?;
        let connecting = fresh.connect(&address)?;
        let token = insert(connecting, &mut self.map)?;
        let (peer, _) =
            server.accept()?.ok_or_else(|| io::Error::other("the simulated server saw no connection"))?;
        // Accepted Unix sockets do not inherit the listener's buffer sizes.
        self.shrink(&peer)?;
        self.peers.push(Peer { channel: Some(peer), report: PeerReport::default(), write_shut: false });
        self.absorb_trace()?;
        Ok(token)
    }

    /// Connects a channel of yours to a port where nothing listens: the loop
    /// must report `handle_connect_failed`, never `handle_connect`.
    pub fn connect_refused(
        &mut self,
        insert: impl FnOnce(Channel<Connecting>, &mut Map) -> io::Result<Token>,
    ) -> io::Result<Token> {
        let port = {
            let probe = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(1)?;
            probe.local_addr()?
        };
        let connecting = Channel::tcp_v4()?.connect(&port)?;
        let token = insert(connecting, &mut self.map)?;
        self.absorb_trace()?;
        Ok(token)
    }

    fn shrink(&self, socket: &impl std::os::fd::AsFd) -> io::Result<()> {
        shrink_socket(self.config, socket)
    }

    fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    fn fail(&self, violation: String) -> SimFailure {
        SimFailure { seed: self.seed, violation, trace: self.trace.clone() }
    }

    /// Moves what the loop recorded into the checker and the trace.
    fn absorb_trace(&mut self) -> Result<(), io::Error> {
        self.absorb().map_err(|f| io::Error::other(f.to_string()))
    }

    fn absorb(&mut self) -> Result<(), SimFailure> {
        for (token, event) in self.map.take_trace() {
            if let Traced::Called { progress, .. } = event {
                self.callbacks += 1;
                self.progressed += usize::from(progress);
            }
            match self.checker.check(token, event) {
                Ok(line) => self.log(format!("  {line}")),
                Err(violation) => {
                    self.log(format!("  !! {violation}"));
                    return Err(self.fail(violation));
                }
            }
            if event == Traced::Removed {
                self.chaos.borrow_mut().graveyard.push(token.key());
            }
            if let Traced::Inserted(Joined::Connected | Joined::Connecting) = event {
                // Accepted Unix sockets do not inherit the listener's buffer
                // sizes: shrink each stream as it joins.
                let config = self.config;
                let _ = self.map.with_fd(token, |fd| shrink_socket(config, &fd));
            }
        }
        self.chaos.borrow_mut().ids.clone_from(&self.checker.ids);
        Ok(())
    }

    fn poll_once(&mut self) -> Result<bool, SimFailure> {
        self.iterations += 1;
        let result = self.map.poll(Some(Duration::ZERO));
        let delivered = self.chaos.borrow().describe();
        self.log(format!("poll:{delivered}"));
        let stopped = result.map_err(|e| self.fail(format!("the loop failed: {e}")))?;
        self.absorb()?;
        Ok(stopped)
    }

    fn pick_peer(&mut self) -> Option<usize> {
        let open: Vec<usize> = (0..self.peers.len()).filter(|&i| self.peers[i].channel.is_some()).collect();
        if open.is_empty() {
            return None;
        }
        let i = self.chooser.borrow_mut().below(open.len())?;
        Some(open[i])
    }

    fn new_peer(&mut self, vanish: bool) -> io::Result<()> {
        let open = self.peers.iter().filter(|p| p.channel.is_some()).count();
        if self.listeners.is_empty() || open >= self.config.max_peers {
            return Ok(());
        }
        let which = self.chooser.borrow_mut().below(self.listeners.len()).unwrap_or(0);
        let address = self.listeners[which].address.clone();
        let fresh = Channel::unix_stream()?;
        self.shrink(&fresh)?;
        let id = self.peers.len();
        let connecting = match fresh.connect(&address) {
            Ok(connecting) => connecting,
            // The listener's backlog is full (a Unix connect says EAGAIN):
            // for a client, a refused connection, not a failed simulation.
            Err(e) if e.error().kind() == io::ErrorKind::WouldBlock => {
                self.log(format!("peer p{id} cannot connect: the listener's backlog is full"));
                self.peers.push(Peer { channel: None, report: PeerReport::default(), write_shut: true });
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if vanish {
            self.log(format!("peer p{id} connects and vanishes before it is accepted"));
            drop(connecting);
            self.peers.push(Peer { channel: None, report: PeerReport::default(), write_shut: true });
        } else {
            self.log(format!("peer p{id} connects"));
            let channel = connecting.into_connected();
            self.peers.push(Peer {
                channel: Some(channel),
                report: PeerReport::default(),
                write_shut: false,
            });
        }
        Ok(())
    }

    /// One step: a peer acts, or the loop runs once.
    fn step(&mut self) -> Result<bool, SimFailure> {
        // Out of 24: the loop runs (10), a peer connects (2), writes (5),
        // reads (4), sends urgent data (1); a third of the time a peer
        // half-closes or closes (1 each, else the loop runs). Peers live long
        // enough for their traffic to interleave with the loop's partial
        // writes.
        let Some(action) = self.chooser.borrow_mut().below(24) else { return Ok(false) };
        let size = {
            let mut c = self.chooser.borrow_mut();
            1 + c.below(self.config.max_io).unwrap_or(0)
        };
        let io_fail = |sim: &Sim, e: io::Error| sim.fail(format!("a simulated peer failed: {e}"));
        match action {
            0..=8 | 23 => return self.poll_once(),
            9 | 10 => self
                .new_peer(action == 10 && self.chooser.borrow_mut().one_in(3))
                .map_err(|e| io_fail(self, e))?,
            11..=15 => {
                let Some(i) = self.pick_peer() else { return Ok(false) };
                let peer = &mut self.peers[i];
                if peer.write_shut {
                    return Ok(true);
                }
                let start = peer.report.sent.len();
                let data = self.traffic.bytes(i, start, size);
                let n =
                    peer.channel.as_mut().map_or(Ok(0), |c| c.send(&data)).map_err(|e| io_fail(self, e))?;
                self.peers[i].report.sent.extend_from_slice(&data[..n]);
                self.log(format!("peer p{i} writes {n} of {size} bytes"));
            }
            16..=19 => {
                let Some(i) = self.pick_peer() else { return Ok(false) };
                let mut buf = vec![0u8; size];
                let got = match self.peers[i].channel.as_mut().map(|c| c.recv(&mut buf)) {
                    Some(Ok(n)) => n,
                    Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Some(Err(e)) => return Err(io_fail(self, e)),
                    None => 0,
                };
                self.peers[i].report.received.extend_from_slice(&buf[..got]);
                self.log(format!("peer p{i} reads {got} bytes (asked {size})"));
            }
            20 if self.chooser.borrow_mut().one_in(3) => {
                let Some(i) = self.pick_peer() else { return Ok(false) };
                if let Some(c) = self.peers[i].channel.as_mut() {
                    let _ = c.shutdown(std::net::Shutdown::Write);
                }
                self.peers[i].write_shut = true;
                self.log(format!("peer p{i} shuts down its sending side (half-close)"));
            }
            21 if self.chooser.borrow_mut().one_in(3) => {
                let Some(i) = self.pick_peer() else { return Ok(false) };
                let unread = self.peers[i].channel.as_ref().map(pending_input).unwrap_or(0);
                self.peers[i].channel = None;
                let how = if unread > 0 { "resets (closes with unread data)" } else { "closes" };
                self.log(format!("peer p{i} {how}"));
            }
            20 | 21 => return self.poll_once(),
            _ => {
                let Some(i) = self.pick_peer() else { return Ok(false) };
                let sent = self.peers[i].channel.as_mut().map_or(Ok(0), |c| c.send_oob(&[OOB_BYTE]));
                let sent = sent.map_err(|e| io_fail(self, e))?;
                self.peers[i].report.oob_sent += sent;
                self.log(format!("peer p{i} sends {sent} byte of out-of-band data"));
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
                let failure = self.fail("a handler panicked".to_owned());
                eprintln!("{failure}");
                std::panic::resume_unwind(panic);
            }
        }
        let Sim { seed, peers, trace, iterations, callbacks, .. } = self;
        Ok(SimReport {
            seed,
            peers: peers.into_iter().map(|p| p.report).collect(),
            trace,
            iterations,
            callbacks,
        })
    }

    fn run_inner(&mut self) -> Result<(), SimFailure> {
        for step in 0..self.config.steps {
            if self.chooser.borrow().is_exhausted() {
                break;
            }
            if step % 32 == 0 {
                self.log(format!("-- step {step}"));
            }
            if self.step()? {
                self.log("(a handler stopped the loop)".to_owned());
            }
        }
        self.settle()?;
        self.map.close_all();
        self.absorb()?;
        if !self.map.is_empty() || self.checker.live() != 0 {
            return Err(self.fail(format!("close_all left {} channels in the map", self.map.len())));
        }
        if self.config.check_descriptors {
            self.peers.iter_mut().for_each(|p| p.channel = None);
            let now = open_descriptors();
            if now != self.descriptors_at_start {
                return Err(self.fail(format!(
                    "descriptor leak: {} open at the start, {now} at the end",
                    self.descriptors_at_start
                )));
            }
        }
        Ok(())
    }

    /// Closes every peer, then runs the loop on the truth until it is quiet:
    /// every stream must have closed, and it must not take forever.
    fn settle(&mut self) -> Result<(), SimFailure> {
        self.log("-- settling: every peer closes, readiness is truthful".to_owned());
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if peer.channel.take().is_some() {
                self.trace.push(format!("peer p{i} closes"));
            }
        }
        self.chaos.borrow_mut().truthful = true;
        let mut quiet = 0;
        let mut stuck = 0;
        for _ in 0..SETTLE_HARD_LIMIT {
            let (calls, moved) = (self.callbacks, self.progressed);
            self.poll_once()?;
            if self.callbacks == calls {
                quiet += 1;
                if quiet == 2 {
                    let open = self.checker.open_streams();
                    if !open.is_empty() {
                        return Err(self.fail(format!(
                            "{} still open after every peer closed and the loop went quiet: \
                             handle_close never ran for them",
                            open.join(", ")
                        )));
                    }
                    return Ok(());
                }
                continue;
            }
            quiet = 0;
            stuck = if self.progressed == moved { stuck + 1 } else { 0 };
            if stuck >= self.config.settle_limit {
                return Err(self.fail(format!(
                    "livelock: {stuck} truthful iterations in a row made callbacks that moved no \
                     data, with every peer gone — a handler keeps asking for events it does not \
                     consume (readable()/writable() true with nothing to read or write?)"
                )));
            }
        }
        Err(self.fail(format!(
            "livelock: the loop still made callbacks after {SETTLE_HARD_LIMIT} truthful iterations \
             with every peer gone"
        )))
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("config", &self.config)
            .field("peers", &self.peers.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn shrink_socket(config: SimConfig, socket: &impl std::os::fd::AsFd) -> io::Result<()> {
    if let Some(size) = config.socket_buffer {
        rustix::net::sockopt::set_socket_send_buffer_size(socket, size)?;
        rustix::net::sockopt::set_socket_recv_buffer_size(socket, size)?;
    }
    Ok(())
}

/// Bytes waiting to be read on a peer (FIONREAD), to tell a reset from a close.
fn pending_input(channel: &Channel<Connected>) -> usize {
    rustix::io::ioctl_fionread(channel).map(|n| n as usize).unwrap_or(0)
}
