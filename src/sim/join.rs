//! Layer 8: what joins a simulated world — a listener the simulated
//! clients connect to, and channels of yours that connect to simulated
//! servers — with the sizes each new connection gets.

use std::io;

use super::log::Line;
use super::peer::Peer;
use super::{CALLS_PER_FILL, CHUNKS, DEFAULT_CAPACITY, Listener, Sim};
use crate::channel::{Channel, Connecting, Listening, wrap_memory};
use crate::handler::AcceptHandler;
use crate::map::Map;
use crate::memory::{self, Link, Sizes};
use crate::token::Token;

impl Sim {
    /// Starts a listener with `handler`; simulated clients connect to it.
    pub fn listen<H: AcceptHandler>(&mut self, handler: H) -> io::Result<Token> {
        self.check_map()?;
        let end = memory::listener(64)?;
        let id = end.id();
        let fd = memory::descriptor_for(&end)?;
        let listener: Channel<Listening> = wrap_memory(fd, end);
        let token = self.map.insert(listener, handler)?;
        self.listeners.push(Listener { id });
        self.absorb_trace()?;
        Ok(token)
    }

    /// Connects a channel of yours to a simulated server: `insert` gets the
    /// connecting channel and puts it in the map with your handler (raw,
    /// `Buffered` or `AsyncChat`). The server side becomes a peer. The run
    /// chooses whether the connect completes at once or is slow (pending
    /// until a later step completes or refuses it). `insert` must not put
    /// another map in the simulation's place (see [`map`](Self::map)): the
    /// connect then fails with `InvalidInput`.
    pub fn connect(
        &mut self,
        insert: impl FnOnce(Channel<Connecting>, &mut Map) -> io::Result<Token>,
    ) -> io::Result<Token> {
        let slow = self.chooser.one_in(3);
        self.connect_as(if slow { Link::Pending } else { Link::Established }, insert)
    }

    /// Connects a channel of yours to an address where nothing listens: the
    /// loop must report `handle_connect_failed`, never `handle_connect`.
    pub fn connect_refused(
        &mut self,
        insert: impl FnOnce(Channel<Connecting>, &mut Map) -> io::Result<Token>,
    ) -> io::Result<Token> {
        self.connect_as(Link::Refused, insert)
    }

    /// Makes a connection in state `link` and hands the map's end, as a
    /// connecting channel, to `insert`. The far end of a refused connection
    /// is dropped; any other's becomes a peer (a slow one while the connect
    /// is pending). Returns the channel's token.
    fn connect_as(
        &mut self,
        link: Link,
        insert: impl FnOnce(Channel<Connecting>, &mut Map) -> io::Result<Token>,
    ) -> io::Result<Token> {
        self.check_map()?;
        let (ours, theirs) = memory::pair(self.sizes(), link)?;
        let fd = memory::descriptor_for(&ours)?;
        let token = insert(wrap_memory(fd, ours), &mut self.map)?;
        self.check_map()?;
        if link == Link::Refused {
            drop(theirs);
        } else {
            let slow = link == Link::Pending;
            self.log(Line::ConnectOut { peer: self.peers.len(), slow });
            self.open_peers.push(self.peers.len());
            self.peers.push(Peer::open(theirs, slow));
        }
        self.absorb_trace()?;
        Ok(token)
    }

    /// A new connection's sizes: the configured capacity each way, and the
    /// most one call moves, chosen per direction.
    pub(super) fn sizes(&mut self) -> Sizes {
        let cap = self.config.socket_buffer.unwrap_or(DEFAULT_CAPACITY).max(1);
        let c = &self.chooser;
        let chunk = || CHUNKS[c.below(CHUNKS.len()).unwrap_or(CHUNKS.len() - 1)];
        let (a, b) = (chunk(), chunk());
        // A direction never holds more than `CALLS_PER_FILL` calls' worth of
        // bytes: a byte-per-call direction with a kernel-size buffer made a
        // handler that sends until the buffer is full call `send` 200,000
        // times, most of a fuzz run's time for nothing a 64-byte buffer
        // does not show as well.
        let capped = |chunk: usize| cap.min(chunk.saturating_mul(CALLS_PER_FILL));
        Sizes { cap: [capped(a), capped(b)], chunk: [a, b] }
    }
}
