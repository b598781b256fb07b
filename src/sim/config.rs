//! Layer 8: what a simulation is given ([`SimConfig`], [`Traffic`]) and
//! what it gives back ([`SimReport`], [`SimFailure`]).

use std::fmt;
use std::io;

/// How big a simulated world is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Steps to run before settling (a fuzzer's input may end sooner).
    pub steps: usize,
    /// Most peers alive at once.
    pub max_peers: usize,
    /// Most bytes a peer writes or reads in one step (0 is taken as 1).
    pub max_io: usize,
    /// How many bytes each direction of a simulated connection holds at
    /// once (its receive buffer): small ones make partial writes and
    /// would-block common. `None` is about what Linux gives a socket
    /// (208 KiB). Independently, each direction of each connection gets a
    /// most-bytes-per-call chosen by the run (1 byte to unlimited), and then
    /// holds at most 64 calls' worth (64 bytes when a call moves one).
    pub socket_buffer: Option<usize>,
    /// Most loop iterations in a row, in the settling phase, whose callbacks
    /// move no data (and connect or close no channel) before the simulation
    /// calls it a livelock (one more in a row is the livelock). Iterations
    /// that move data (a handler draining a full socket a few bytes at a
    /// time) do not count, up to [`SETTLE_HARD_LIMIT`] in all. 0 is taken
    /// as 1.
    pub settle_limit: usize,
    /// Check that as many simulated channels are open at the end as at the
    /// start: none outlived the run (a handler that keeps or forgets a
    /// channel the map closed leaks its descriptor). Counted in the
    /// simulation's own table of in-memory ends, with no system call; only
    /// meaningful when no other simulation runs on the same thread
    /// meanwhile.
    pub check_descriptors: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            steps: 200,
            max_peers: 8,
            max_io: 2048,
            socket_buffer: Some(4096),
            settle_limit: 200,
            check_descriptors: false,
        }
    }
}

/// The byte peers send as out-of-band data; their ordinary data never
/// contains it. Out-of-band bytes may still arrive inline (a second urgent
/// byte pushes the first one into the stream, on TCP and on Linux Unix
/// sockets alike), so [`PeerReport::received_data`] leaves them out.
pub const OOB_BYTE: u8 = 0xFF;

/// What simulated peers write: each peer's ordinary data is one endless
/// stream, and each write step sends its next bytes (1 to
/// [`SimConfig::max_io`] of them, as the seed decides), so a message may be
/// cut anywhere between two writes. Set it with [`Sim::with_traffic`](super::Sim::with_traffic).
///
/// # Examples
///
/// A line protocol's peers sending real commands, and one line longer than
/// the server's line limit:
///
/// ```
/// use rolecore::sim::{Sim, SimConfig, Traffic};
///
/// let traffic = Traffic::messages([&b"PING\r\n"[..], b"GET key\r\n", &[b'x'; 5000]]).unwrap();
/// let sim = Sim::from_seed(1, SimConfig::default()).unwrap().with_traffic(traffic);
/// # drop(sim);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic(Kind);

/// Private, so that a corpus can only be built through [`Traffic::messages`],
/// which checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Pattern,
    Messages(Vec<Vec<u8>>),
}

impl Traffic {
    /// The default: byte `k` of peer `i`'s stream is `(31·k + 7·i) mod 255`.
    /// Every value but [`OOB_BYTE`] (`0xFF`) occurs, each once per 255 bytes:
    /// a `\n` every 255 bytes, a `\r\n` pair never, a zero byte every 255.
    /// A line protocol therefore sees lines of exactly 254 bytes, never one
    /// longer: to reach a line limit, send your own messages.
    pub fn pattern() -> Traffic {
        Traffic(Kind::Pattern)
    }

    /// Peers that send `messages` one after the other, starting over after
    /// the last: a corpus of requests, or your protocol's own frames.
    /// Refused with `InvalidInput` when there is no byte to send at all, or
    /// when a message holds [`OOB_BYTE`], which
    /// [`PeerReport::received_data`] takes for out-of-band data.
    pub fn messages<M: AsRef<[u8]>>(messages: impl IntoIterator<Item = M>) -> io::Result<Traffic> {
        let messages: Vec<Vec<u8>> = messages.into_iter().map(|m| m.as_ref().to_vec()).collect();
        if messages.iter().all(|m| m.is_empty()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "simulated traffic needs at least one byte",
            ));
        }
        if messages.iter().any(|m| m.contains(&OOB_BYTE)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "simulated traffic may not hold 0xFF, the byte peers send as out-of-band data",
            ));
        }
        Ok(Traffic(Kind::Messages(messages)))
    }

    /// Appends the `len` bytes of peer `peer`'s stream from offset `start`
    /// to `out`.
    pub(super) fn extend_stream(&self, peer: usize, start: usize, len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        let end = out.len() + len;
        match &self.0 {
            Kind::Pattern => {
                // Peer `peer`'s stream is peer 0's shifted: 31·k + 7·i is
                // 31·(k + 181·7·i) mod 255, as 31·181 is 1 mod 255. So
                // whole runs of one precomputed period are copied, with no
                // arithmetic per byte.
                let mut at = (start % 255 + (peer % 255) * 7 * 181 % 255) % 255;
                while out.len() < end {
                    let take = (255 - at).min(end - out.len());
                    out.extend_from_slice(&PERIOD[at..at + take]);
                    at = 0;
                }
            }
            Kind::Messages(messages) => {
                let cycle: usize = messages.iter().map(Vec::len).sum();
                let mut offset = start % cycle; // into the cycle of messages
                while out.len() < end {
                    for message in messages {
                        if offset >= message.len() {
                            offset -= message.len();
                            continue;
                        }
                        let take = (message.len() - offset).min(end - out.len());
                        out.extend_from_slice(&message[offset..offset + take]);
                        offset = 0;
                        if out.len() == end {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Peer 0's pattern stream, one period: byte `k` is `31·k mod 255`.
const PERIOD: [u8; 255] = {
    let mut period = [0u8; 255];
    let mut k = 0;
    while k < 255 {
        period[k] = (k * 31 % 255) as u8;
        k += 1;
    }
    period
};

/// What one peer sent and received over the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerReport {
    /// Every ordinary byte the peer sent (out-of-band bytes not included).
    pub sent: Vec<u8>,
    /// Every byte the peer received.
    pub received: Vec<u8>,
    /// How many out-of-band bytes the peer sent.
    pub oob_sent: usize,
}

impl PeerReport {
    /// What the peer received, without out-of-band bytes that came inline.
    pub fn received_data(&self) -> Vec<u8> {
        // Copied a run at a time between urgent bytes, found with the C
        // library's `memchr` (through `BufRead::skip_until`): a filter
        // compared every byte, and under a fuzzer's comparison tracing an
        // echo target's peers (which get their urgent bytes echoed back)
        // spent a tenth of a run there.
        use std::io::BufRead;
        let mut data = Vec::with_capacity(self.received.len());
        let mut rest: &[u8] = &self.received;
        loop {
            let run = rest;
            let read = rest.skip_until(OOB_BYTE).expect("reading a slice");
            let Some((&last, before)) = run[..read].split_last() else { break };
            data.extend_from_slice(if last == OOB_BYTE { before } else { &run[..read] });
        }
        data
    }
}

/// A run that kept every invariant.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed, when the run was seeded.
    pub seed: Option<u64>,
    /// Each peer's traffic, in the order peers were created.
    pub peers: Vec<PeerReport>,
    /// What happened, a line per event (rendered when first read).
    pub trace: super::Trace,
    /// Loop iterations run.
    pub iterations: usize,
    /// Callbacks the loop made.
    pub callbacks: usize,
    /// Whether the run started a graceful shutdown (`Map::shutdown`): its
    /// grace period may have closed channels before their exchanges were
    /// done, so a check that every exchange completed holds only without
    /// one.
    pub shut_down: bool,
}

impl SimReport {
    /// A failure for a property of your own protocol that this run broke,
    /// with the run's seed and trace, printed as the simulation's own
    /// failures are:
    /// `assert!(ok, "{}", report.failure("the echo lost bytes"))`.
    /// Build it in the message, not before: the trace is rendered then.
    pub fn failure(&self, violation: impl Into<String>) -> SimFailure {
        SimFailure { seed: self.seed, violation: violation.into(), trace: self.trace.to_vec() }
    }
}

/// A broken invariant, with what led to it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed to replay, when the run was seeded.
    pub seed: Option<u64>,
    /// Which invariant broke, in words.
    pub violation: String,
    /// What happened up to the failure, a line per event.
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rolecore::sim: {}", self.violation)?;
        match self.seed {
            Some(seed) => writeln!(f, "replay with Sim::from_seed({seed}, config) and the same handlers")?,
            None => writeln!(f, "replay with Sim::from_bytes(input, config) on the fuzzer's input")?,
        }
        writeln!(f, "trace ({} events):", self.trace.len())?;
        let skip = self.trace.len().saturating_sub(60);
        if skip > 0 {
            writeln!(f, "  … {skip} earlier events")?;
        }
        for line in &self.trace[skip..] {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimFailure {}

/// Most iterations the settling phase takes in all, data moved or not: once
/// every peer is gone there is a bounded amount left to read, so a loop that
/// still moves data after this many is broken too.
pub const SETTLE_HARD_LIMIT: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_the_formula_from_any_offset() {
        for peer in [0, 1, 2, 36, 254, 255, 300] {
            for (start, len) in [(0, 0), (0, 1), (3, 600), (254, 2), (1000, 511)] {
                let mut out = vec![9];
                Traffic::pattern().extend_stream(peer, start, len, &mut out);
                let formula: Vec<u8> =
                    (start..start + len).map(|k| ((k % 255 * 31 + peer * 7) % 255) as u8).collect();
                assert_eq!(out[0], 9, "appended");
                assert_eq!(out[1..], formula, "peer {peer}, from {start}, {len} bytes");
            }
        }
    }

    #[test]
    fn messages_cycle_from_any_offset() {
        let traffic = Traffic::messages([&b"ab"[..], b"", b"cde"]).unwrap();
        let mut out = Vec::new();
        traffic.extend_stream(3, 4, 9, &mut out);
        assert_eq!(out, b"eabcdeabc");
    }
}
