//! An echo server on `Buffered` (asyncore's `dispatcher_with_send`) in the
//! simulated world.
//!
//! The input's first bytes size the world and the server: how much one read
//! takes, the output limit (small ones make sends refused whole), the
//! back-pressure watermarks, the timer each accepted connection gets (an
//! idle timeout, or a deadline pushed back on every read: they fire, time
//! is virtual), and whether there is also an outgoing `Buffered` echo
//! client, a refused connect, and a second listener. The rest drives
//! the simulation. The run must keep every invariant the simulation checks
//! (nothing after close, `handle_close` at most once, no stale token,
//! connect before I/O, no livelock, no channel left open, no descriptor
//! leaked when asked), and every byte a peer got back must be a prefix of
//! what it sent: `Buffered` may be slow or give up, never lose or reorder.

use std::io;

use rolecore::sim::{Sim, SimConfig, SimFailure, SimReport};
use rolecore::{
    AcceptHandler, Address, Buffered, Channel, Connected, Ctx, DEFAULT_LOW_WATERMARK, StreamHandler,
};

use super::{Input, Timer, assert_prefix, check_peers, config_name, sim_config, summarize_trace};

/// How the echo servers and clients are set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub read_size: usize,
    pub limit: usize,
    /// `(low, high)`, or the defaults.
    pub watermarks: Option<(usize, usize)>,
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
        limit: [16, 4096, 64 << 20, 64 << 20][(b2 >> 2) % 4],
        watermarks: [None, Some((0, 1)), Some((100, 1000)), Some((DEFAULT_LOW_WATERMARK, usize::MAX))]
            [(b2 >> 4) % 4],
        outgoing: b3 & 1 != 0,
        refused: b3 & 2 != 0,
        listeners: 1 + usize::from(b3 >> 2 & 1),
        timer: Timer::decode(b3 >> 3),
    }
}

struct Echo {
    read_size: usize,
    timer: Timer,
}

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.timer.on_read(cx);
        super::with_read_buffer(self.read_size, |buf| {
            let n = ch.recv(buf)?;
            ch.send(&buf[..n])
        })
    }

    fn handle_connect_failed(&mut self, _: io::Error, _: &mut Ctx<'_>) {}

    fn handle_error(&mut self, _: &mut Buffered<Connected>, _: io::Error, cx: &mut Ctx<'_>) {
        cx.close(); // a send over the limit: give up on this peer, quietly
    }
}

fn buffered<R: rolecore::Role>(c: Channel<R>, s: &Setup) -> Buffered<R> {
    let mut b = Buffered::new(c).with_limit(s.limit);
    if let Some((low, high)) = s.watermarks {
        b.set_watermarks(low, high);
    }
    b
}

struct Server(Setup);

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let s = &self.0;
        let token = cx.insert(buffered(c, s), Echo { read_size: s.read_size, timer: s.timer })?;
        s.timer.arm(token, cx);
        Ok(())
    }
}

/// Runs the world an input describes.
pub fn simulate(data: &[u8], check_descriptors: bool) -> (Setup, Result<SimReport, SimFailure>) {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let mut sim = Sim::from_bytes(inp.rest(), s.config).expect("create the simulation");
    for _ in 0..s.listeners {
        sim.listen(Server(s)).expect("listen");
    }
    let echo = Echo { read_size: s.read_size, timer: Timer::None };
    if s.outgoing {
        sim.connect(|c, map| Ok(map.insert(buffered(c, &s), echo)?)).expect("connect");
    }
    if s.refused {
        let echo = Echo { read_size: s.read_size, timer: Timer::None };
        sim.connect_refused(|c, map| Ok(map.insert(buffered(c, &s), echo)?)).expect("connect_refused");
    }
    (s, sim.run())
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

/// `check_descriptors`: also check that no descriptor leaked (only where
/// nothing else in the process opens any meanwhile: the fuzz target).
pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, result) = simulate(data, check_descriptors);
    let setup = || format!("{s:?}");
    check_peers(result, setup, |i, peer| {
        let received = peer.received_data();
        assert_prefix(&peer.sent, &received, || format!("peer p{i} of a Buffered echo ({s:?})"));
        received.len()
    })
}

pub fn describe(data: &[u8]) -> String {
    let (s, result) = simulate(data, false);
    let trace = match &result {
        Ok(report) => summarize_trace(&report.trace),
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    let mut name = format!("{}-read{}-limit{}", config_name(&s.config), s.read_size, s.limit);
    if let Some((low, high)) = s.watermarks {
        name.push_str(&format!(
            "-wm{low}_{}",
            if high == usize::MAX { "off".to_owned() } else { high.to_string() }
        ));
    }
    name.push_str(&s.timer.name());
    for (on, word) in [(s.outgoing, "-outgoing"), (s.refused, "-refused"), (s.listeners > 1, "-2listeners")] {
        if on {
            name.push_str(word);
        }
    }
    format!("{name}-{trace}")
}
