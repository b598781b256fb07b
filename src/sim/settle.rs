//! Layer 8: the settling, how a simulated run ends.
//!
//! After its steps, a run stops choosing and lets the world settle on
//! truthful readiness: every peer half-closes and reads all the replies
//! that come back (so they are in its report and checked), then every peer
//! closes, and the loop must go quiet with every stream closed, within
//! bounds that tell a slow handler from a livelock.

use super::log::{Act, Line};
use super::{SETTLE_HARD_LIMIT, Sim, SimFailure};
use crate::memory;

/// Most loop iterations the settling's reading phase runs: the replies a
/// server sends within them are read and checked; a server still busy
/// after them (a handler that reads a few bytes per callback with
/// megabytes queued) is cut short by the closing phase, as peers that
/// leave would cut it. On a direction that moves one byte per call, which
/// holds 64 bytes, that is at most 4 KiB of replies read and checked.
const READING_LIMIT: usize = 64;

impl Sim {
    /// Ends the run in two phases on truthful readiness. First every peer
    /// stops sending (a half-close) and reads everything that comes back
    /// until the loop is quiet, so the replies to what it sent are in its
    /// report; then every peer closes, and the loop must go quiet again
    /// with every stream closed, and not take forever.
    pub(super) fn settle(&mut self) -> Result<(), SimFailure> {
        self.log(Line::Settling);
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if std::mem::take(&mut peer.pending) {
                // A connect still in progress never completes now.
                peer.end = None;
                self.trace.push(Line::SlowConnect { peer: i, refused: true });
            }
            if let Some(end) = &peer.end
                && !peer.write_shut
            {
                let _ = memory::shutdown(end, false, true);
                peer.write_shut = true;
                self.trace.push(Line::Peer { peer: i, act: Act::HalfCloses });
            }
        }
        let peers = &self.peers;
        self.open_peers.retain(|&i| peers[i].end.is_some());
        self.chaos.borrow_mut().truthful = true;
        self.run_until_quiet(true, READING_LIMIT)?;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if peer.end.take().is_some() {
                self.trace.push(Line::Peer { peer: i, act: Act::Closes { reset: false } });
            }
        }
        self.open_peers.clear();
        self.run_until_quiet(false, SETTLE_HARD_LIMIT)?;
        let open = self.checker.open_streams();
        if !open.is_empty() {
            return Err(self.fail(format!(
                "{} still open after every simulated peer closed and the loop went quiet: \
                 handle_close never ran for them (a stream whose other end is not a simulated peer, \
                 a socket pair a handler made, say, stays open while that end does)",
                open.join(", ")
            )));
        }
        Ok(())
    }

    /// Every open peer reads all that is waiting for it; returns how much.
    /// Nothing when no send was made since they last did: every peer took
    /// all it had then, and only a send queues more (in the settling the
    /// peers have stopped sending, so most rounds after the first few have
    /// nothing to read, and asking each peer's connection was a dozen
    /// traced comparisons per peer and round in a fuzzer's build).
    fn peers_read_all(&mut self) -> usize {
        let sends = memory::sends();
        if self.peers_read_at == Some(sends) {
            return 0;
        }
        self.peers_read_at = Some(sends);
        let mut total = 0;
        // The open peers, not every peer that ever was: in the settling,
        // they are the peers with an end, in order.
        for &i in &self.open_peers {
            let peer = &mut self.peers[i];
            let Some(end) = &peer.end else { continue };
            let got = memory::recv_all_append(end, &mut peer.report.received);
            if got > 0 {
                self.trace.push(Line::Peer { peer: i, act: Act::Reads { got, size: got } });
            }
            total += got;
        }
        total
    }

    /// Runs the loop until two iterations in a row make no callback (and,
    /// when `reading`, the peers read nothing), for at most `limit`
    /// iterations (then `Ok` when `reading`: the closing phase follows). A
    /// loop whose callbacks keep moving no data is a livelock.
    fn run_until_quiet(&mut self, reading: bool, limit: usize) -> Result<(), SimFailure> {
        let mut quiet = 0;
        let mut stuck = 0;
        for _ in 0..limit {
            let (calls, moved) = (self.checker.callbacks, self.checker.progressed);
            self.poll_once()?;
            let read = if reading { self.peers_read_all() } else { 0 };
            if self.checker.callbacks == calls && read == 0 {
                quiet += 1;
                if quiet == 2 {
                    return Ok(());
                }
                continue;
            }
            quiet = 0;
            stuck = if self.checker.progressed == moved && read == 0 { stuck + 1 } else { 0 };
            if stuck > self.config.settle_limit {
                return Err(self.fail(format!(
                    "livelock: {stuck} truthful iterations in a row made callbacks that moved no \
                     data, with every peer done sending — a handler keeps asking for events it does \
                     not consume (readable()/writable() true with nothing to read or write?)"
                )));
            }
        }
        if reading {
            return Ok(());
        }
        Err(self.fail(format!(
            "livelock: the loop still made callbacks after {SETTLE_HARD_LIMIT} truthful iterations \
             with every peer done sending"
        )))
    }
}
