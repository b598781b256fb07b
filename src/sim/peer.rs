//! Layer 8: the simulated peers and what they do.
//!
//! A peer is the far end of one simulated connection: a client that
//! connected to a listener in the map, or the server a channel of the
//! user's connected to. Each step the run may pick one to connect (or to
//! vanish before it is accepted), write, read, half-close, close (a reset
//! when input is left unread), send an urgent byte, or end a slow connect.
//! What each did is in its [`PeerReport`] and the trace.

use std::io;

use super::log::{Act, Line};
use super::{OOB_BYTE, PeerReport, Sim};
use crate::memory::{self, End, Link};

pub(super) struct Peer {
    pub(super) end: Option<End>,
    pub(super) report: PeerReport,
    pub(super) write_shut: bool,
    /// A connect of the map's side that is still in progress (slow).
    pub(super) pending: bool,
}

impl Peer {
    /// A peer whose connection is up: it may send and receive.
    pub(super) fn open(end: End, pending: bool) -> Peer {
        Peer { end: Some(end), report: PeerReport::default(), write_shut: false, pending }
    }

    /// A peer that never connected, or vanished before it was accepted.
    fn gone() -> Peer {
        Peer { end: None, report: PeerReport::default(), write_shut: true, pending: false }
    }
}

/// What a peer's send or receive moved: would-block, a connect still in
/// progress and a connection gone all move nothing.
fn peer_io(result: Result<usize, rustix::io::Errno>) -> usize {
    result.unwrap_or(0)
}

impl Sim {
    /// One of the open peers, chosen; `None` when none is open.
    fn pick_peer(&mut self) -> Option<usize> {
        if self.open_peers.is_empty() {
            return None;
        }
        let nth = self.chooser.below(self.open_peers.len())?;
        Some(self.open_peers[nth])
    }

    /// Peer `i` is closed (its end dropped, with whatever that does).
    fn close_peer(&mut self, i: usize) {
        self.peers[i].end = None;
        if let Some(at) = self.open_peers.iter().position(|&open| open == i) {
            self.open_peers.remove(at);
        }
    }

    /// A new client connects to one of the listeners (and, if `vanish`,
    /// leaves before it is accepted).
    pub(super) fn new_peer(&mut self, vanish: bool) -> io::Result<()> {
        if self.listeners.is_empty() || self.open_peers.len() >= self.config.max_peers {
            return Ok(());
        }
        let which = self.chooser.below(self.listeners.len()).unwrap_or(0);
        let listener = self.listeners[which].id;
        let sizes = self.sizes();
        let id = self.peers.len();
        let end = match memory::connect(listener, sizes) {
            Ok(end) => end,
            // The listener's backlog is full (a Unix connect says EAGAIN), or
            // it closed: for a client, a refused connection, not a failed
            // simulation.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused) => {
                let backlog_full = e.kind() == io::ErrorKind::WouldBlock;
                self.log(Line::Peer { peer: id, act: Act::CannotConnect { backlog_full } });
                self.peers.push(Peer::gone());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if vanish {
            self.log(Line::Peer { peer: id, act: Act::Vanishes });
            drop(end);
            self.peers.push(Peer::gone());
        } else {
            self.log(Line::Peer { peer: id, act: Act::Connects });
            self.open_peers.push(id);
            self.peers.push(Peer::open(end, false));
        }
        Ok(())
    }

    /// A peer that may still send writes up to `size` bytes of its traffic.
    pub(super) fn peer_writes(&mut self, size: usize) {
        let Some(i) = self.pick_peer() else { return };
        let peer = &mut self.peers[i];
        if peer.write_shut {
            return;
        }
        // Only the bytes the send will take are made (the rest of `size`
        // would be thrown away), straight into the report.
        let room = peer.end.as_ref().map_or(0, memory::send_room);
        let start = peer.report.sent.len();
        let mut n = 0;
        if let Some(end) = &peer.end
            && room > 0
        {
            let sent = &mut peer.report.sent;
            self.traffic.extend_stream(i, start, size.min(room), sent);
            n = peer_io(memory::send(end, &sent[start..], false));
            sent.truncate(start + n);
        }
        self.log(Line::Peer { peer: i, act: Act::Writes { n, size } });
    }

    /// A peer reads up to `size` bytes.
    pub(super) fn peer_reads(&mut self, size: usize) {
        let Some(i) = self.pick_peer() else { return };
        let peer = &mut self.peers[i];
        let got = peer
            .end
            .as_ref()
            .map_or(0, |end| peer_io(memory::recv_append(end, &mut peer.report.received, size)));
        self.log(Line::Peer { peer: i, act: Act::Reads { got, size } });
    }

    /// A peer stops sending.
    pub(super) fn peer_half_closes(&mut self) {
        let Some(i) = self.pick_peer() else { return };
        if let Some(end) = &self.peers[i].end {
            let _ = memory::shutdown(end, false, true);
        }
        self.peers[i].write_shut = true;
        self.log(Line::Peer { peer: i, act: Act::HalfCloses });
    }

    /// A peer closes: a reset if it leaves input unread.
    pub(super) fn peer_closes(&mut self) {
        let Some(i) = self.pick_peer() else { return };
        let unread = self.peers[i].end.as_ref().map_or(0, memory::pending);
        self.close_peer(i);
        self.log(Line::Peer { peer: i, act: Act::Closes { reset: unread > 0 } });
    }

    /// A peer sends an urgent byte.
    pub(super) fn peer_sends_oob(&mut self) {
        let Some(i) = self.pick_peer() else { return };
        let sent = self.peers[i].end.as_ref().map_or(0, |end| peer_io(memory::send(end, &[OOB_BYTE], true)));
        self.peers[i].report.oob_sent += sent;
        self.log(Line::Peer { peer: i, act: Act::Oob { sent } });
    }

    /// The first slow connect still in progress completes, or is refused.
    pub(super) fn slow_connect_ends(&mut self) {
        let Some(i) = self.peers.iter().position(|p| p.pending) else { return };
        let refuse = self.chooser.one_in(4);
        self.peers[i].pending = false;
        if let Some(end) = &self.peers[i].end {
            memory::set_link(end, if refuse { Link::Refused } else { Link::Established });
        }
        if refuse {
            self.close_peer(i);
        }
        self.log(Line::SlowConnect { peer: i, refused: refuse });
    }
}
