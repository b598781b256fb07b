//! An echo server on a raw `Channel<Connected>` in the simulated world: it
//! keeps its own pending buffer, sends what it can, keeps the rest for
//! `handle_write`, and stops reading while too much is pending.
//!
//! The input's first bytes size the world and the server: how much one read
//! takes, how much may be pending before it stops reading, whether it sends
//! once per callback or until the socket is full, the timer each accepted
//! connection gets (an idle timeout, or a deadline pushed back on every
//! read), and whether there is also an outgoing raw echo client, a refused
//! connect, and a second listener.
//! The rest drives the simulation. The run must keep every invariant the
//! simulation checks, and every byte a peer got back must be a prefix of
//! what it sent: partial sends must neither lose nor repeat bytes.

use std::io;

use rolecore::sim::{Sim, SimConfig, SimFailure, SimReport};
use rolecore::{AcceptHandler, Address, Channel, Connected, Ctx, StreamHandler};

use super::{Input, Timer, assert_prefix, check_peers, config_name, sim_config, summarize_trace};

#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub read_size: usize,
    /// Stop reading at this many pending bytes.
    pub cap: usize,
    /// Send until the socket is full, rather than once per callback.
    pub burst: bool,
    pub outgoing: bool,
    pub refused: bool,
    pub listeners: usize,
    /// The timer each accepted connection gets.
    pub timer: Timer,
}

pub fn decode(inp: &mut Input<'_>, check_descriptors: bool) -> Setup {
    let config = sim_config(inp, check_descriptors);
    let b2 = usize::from(inp.byte());
    let b3 = inp.byte();
    Setup {
        config,
        read_size: [1, 7, 700, 8192][b2 % 4],
        cap: [1, 100, 10_000, usize::MAX][(b2 >> 2) % 4],
        burst: b2 >> 4 & 1 != 0,
        outgoing: b3 & 1 != 0,
        refused: b3 & 2 != 0,
        listeners: 1 + usize::from(b3 >> 2 & 1),
        timer: Timer::decode(b3 >> 3),
    }
}

struct RawEcho {
    setup: Setup,
    /// Bytes read and not yet echoed: `pending[sent..]`.
    pending: Vec<u8>,
    /// How much of `pending` was sent. The sent front is dropped once it is
    /// at least half of it, not after every send: a send of one byte (a
    /// one-byte socket buffer) moved the whole pending buffer, up to
    /// hundreds of kilobytes, each time.
    sent: usize,
}

impl RawEcho {
    fn new(setup: Setup) -> RawEcho {
        RawEcho { setup, pending: Vec::new(), sent: 0 }
    }

    fn flush(&mut self, ch: &mut Channel<Connected>) -> io::Result<()> {
        let result = loop {
            if self.sent == self.pending.len() {
                break Ok(());
            }
            match ch.send(&self.pending[self.sent..]) {
                // Full, or the peer is gone (then the loop closes).
                Ok(0) => break Ok(()),
                Ok(n) => self.sent += n,
                Err(e) => break Err(e),
            }
            if !self.setup.burst {
                break Ok(());
            }
        };
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
        } else if self.sent >= self.pending.len() / 2 {
            self.pending.drain(..self.sent);
            self.sent = 0;
        }
        result
    }
}

impl StreamHandler for RawEcho {
    fn readable(&self, _: &Channel<Connected>) -> bool {
        self.pending.len() - self.sent < self.setup.cap
    }

    fn writable(&self, _: &Channel<Connected>) -> bool {
        self.sent < self.pending.len()
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.setup.timer.on_read(cx);
        super::with_read_buffer(self.setup.read_size, |buf| {
            let n = ch.recv(buf)?;
            self.pending.extend_from_slice(&buf[..n]);
            io::Result::Ok(())
        })?;
        self.flush(ch)
    }

    fn handle_write(&mut self, ch: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        self.flush(ch)
    }

    fn handle_connect_failed(&mut self, _: io::Error, _: &mut Ctx<'_>) {}

    fn handle_error(&mut self, _: &mut Channel<Connected>, _: io::Error, cx: &mut Ctx<'_>) {
        cx.close();
    }
}

struct Server(Setup);

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let token = cx.insert(c, RawEcho::new(self.0))?;
        self.0.timer.arm(token, cx);
        Ok(())
    }
}

pub fn simulate(data: &[u8], check_descriptors: bool) -> (Setup, Result<SimReport, SimFailure>) {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let mut sim = Sim::from_bytes(inp.rest(), s.config).expect("create the simulation");
    for _ in 0..s.listeners {
        sim.listen(Server(s)).expect("listen");
    }
    if s.outgoing {
        let client = Setup { timer: Timer::None, ..s };
        sim.connect(|c, map| Ok(map.insert(c, RawEcho::new(client))?)).expect("connect");
    }
    if s.refused {
        sim.connect_refused(|c, map| Ok(map.insert(c, RawEcho::new(s))?)).expect("connect_refused");
    }
    (s, sim.run())
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, result) = simulate(data, check_descriptors);
    let setup = || format!("{s:?}");
    check_peers(result, setup, |i, peer| {
        let received = peer.received_data();
        assert_prefix(&peer.sent, &received, || format!("peer p{i} of a raw echo ({s:?})"));
        received.len()
    })
}

pub fn describe(data: &[u8]) -> String {
    let (s, result) = simulate(data, false);
    let trace = match &result {
        Ok(report) => summarize_trace(&report.trace),
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    let cap = if s.cap == usize::MAX { "unbounded".to_owned() } else { s.cap.to_string() };
    let mut name = format!("{}-read{}-cap{cap}{}", config_name(&s.config), s.read_size, s.timer.name());
    for (on, word) in [
        (s.burst, "-burst"),
        (s.outgoing, "-outgoing"),
        (s.refused, "-refused"),
        (s.listeners > 1, "-2listeners"),
    ] {
        if on {
            name.push_str(word);
        }
    }
    format!("{name}-{trace}")
}
