//! Layer 7: the entry of a stream — connecting, then connected, then
//! perhaps draining its queue after the peer's end of stream — and the
//! typed reach into another stream ([`Ctx::stream_mut`], [`Map::stream_mut`]).

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::entry::{Dispatch, closing, run};
use crate::buffered::Buffered;
use crate::channel::{Channel, Connected, Connecting, Observed};
use crate::chat::AsyncChat;
use crate::handler::StreamHandler;
use crate::machine::{Outcome, Phase, Plain, Step, Wakeup};
use crate::map::{Ctx, Entry, Map, Register, RegisterSealed, StreamMut};
use crate::readiness::{Interest, Readiness};
use crate::seal::{EntryProof, Seal};
use crate::token::Token;
use crate::trace::{Callback, Joined, Tracer};
use crate::transport::{Pending, Transport, raw_channel};

/// Where a stream is. Connected is inline: it is the state of nearly every
/// stream at nearly every wake-up, and with the rare states behind one box
/// the enum needs no tag of its own (it lives in the descriptor's niche), so
/// an idle connection's entry is as small as its transport and handler.
enum StreamState<T: Transport> {
    Connected(T),
    Rare(Box<Rare<T>>),
}

/// The states a stream is in once, briefly, if ever.
enum Rare<T: Transport> {
    Connecting(T::Pending),
    /// The peer ended its side of the stream while output was still queued:
    /// no more reads, the queue goes out, then `handle_close` (P14: asyncore
    /// dropped it).
    Draining(T),
    /// Only for the instant a transport moves from one state to the next.
    Moving,
}

pub(crate) struct StreamEntry<T: Transport, H> {
    state: StreamState<T>,
    handler: H,
}

/// The most reads of input held above the socket in one wake-up: more than
/// a session's buffered plaintext (rustls holds at most 16 KiB of it and the
/// records it has not yet decrypted) read a byte at a time.
const MAX_BUFFERED_READS: usize = 64 * 1024;

const MOVING: &str = "a stream is Moving only while StreamEntry changes its state";

fn stream_interest<T: Transport, H: StreamHandler<T>>(handler: &H, t: &T) -> Interest {
    Interest::from_predicates(!t.is_backlogged() && handler.readable(t), handler.writable(t), true)
}

impl<T: Transport, H: StreamHandler<T>> Dispatch for StreamEntry<T, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.state {
            StreamState::Connected(t) => t.channel().as_fd(),
            StreamState::Rare(rare) => match &**rare {
                Rare::Connecting(p) => p.channel().as_fd(),
                Rare::Draining(t) => t.channel().as_fd(),
                Rare::Moving => unreachable!("{MOVING}"),
            },
        }
    }

    fn interest(&self) -> Interest {
        match &self.state {
            StreamState::Connected(t) => stream_interest(&self.handler, t),
            // Connecting: completion and failure both show as writability
            // (and hang-up/error, which are always watched); a TLS handshake
            // asks for what it needs. Draining: the queue goes out.
            StreamState::Rare(rare) => match &**rare {
                Rare::Connecting(p) => p.interest(),
                _ => Interest::WRITE,
            },
        }
    }

    // Inlined into `Entry::wake`, so that the common wake-up is one function.
    #[inline(always)]
    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        if let StreamState::Connected(t) = &mut self.state
            && let Some(plain) = Plain::new(interest, readiness)
        {
            let (handler, mut drain) = (&mut self.handler, false);
            plain.run(
                #[inline(always)]
                |step| connected_step(handler, t, &mut drain, step, readiness, cx, tr),
            );
            if drain {
                self.start_draining();
            }
        } else {
            self.general_wakeup(readiness, interest, cx, tr);
        }
        if let StreamState::Connected(t) = &self.state
            && t.has_buffered_input()
        {
            self.read_buffered(readiness, cx, tr);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let handler = &mut self.handler;
        match &mut self.state {
            StreamState::Connected(t) => {
                run(
                    handler,
                    t,
                    cx,
                    tr,
                    Callback::Timeout,
                    raw_channel::<T>,
                    H::handle_timeout,
                    H::handle_error,
                );
            }
            StreamState::Rare(rare) => match &mut **rare {
                Rare::Connecting(pending) => {
                    tr.call(Callback::ConnectFailed);
                    handler.handle_connect_failed(pending.timed_out(), cx);
                    cx.close();
                }
                Rare::Draining(t) => {
                    closing(tr, cx, |cx| handler.handle_close(t, cx));
                }
                Rare::Moving => {}
            },
        }
    }

    fn shut(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let handler = &mut self.handler;
        let t = match &mut self.state {
            StreamState::Connected(t) => t,
            StreamState::Rare(rare) => match &mut **rare {
                Rare::Draining(t) => t,
                Rare::Connecting(_) => {
                    tr.call(Callback::ConnectFailed);
                    let error = io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the loop shut down before the connect completed",
                    );
                    return handler.handle_connect_failed(error, cx);
                }
                Rare::Moving => return,
            },
        };
        tr.call(Callback::Close);
        handler.handle_close(t, cx);
    }

    fn handler(&self) -> &dyn Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }

    fn joined(&self) -> Joined {
        match &self.state {
            StreamState::Rare(rare) if matches!(**rare, Rare::Connecting(_)) => Joined::Connecting,
            _ => Joined::Connected,
        }
    }

    fn has_buffered_input(&self) -> bool {
        matches!(&self.state, StreamState::Connected(t) if t.has_buffered_input())
    }

    fn stream_parts(&mut self) -> Option<(&mut dyn Any, &mut dyn Any)> {
        match &mut self.state {
            StreamState::Connected(t) => Some((t, &mut self.handler)),
            StreamState::Rare(_) => None,
        }
    }

    fn describe(&self) -> String {
        match &self.state {
            StreamState::Connected(t) => format!("{:?}", t.channel()),
            StreamState::Rare(rare) => match &**rare {
                Rare::Connecting(p) => format!("{:?}", p.channel()),
                Rare::Draining(t) => format!("{:?}", t.channel()),
                Rare::Moving => String::new(),
            },
        }
    }
}

impl<T: Transport, H: StreamHandler<T>> StreamEntry<T, H> {
    /// A wake-up through the general machine: connecting, draining, or
    /// readiness with a hang-up, an error or priority data.
    #[inline(never)]
    fn general_wakeup(
        &mut self,
        readiness: Readiness,
        interest: Interest,
        cx: &mut Ctx<'_>,
        tr: &impl Tracer,
    ) {
        let phase = match &mut self.state {
            StreamState::Connected(_) => Phase::Connected,
            StreamState::Rare(rare) => match &mut **rare {
                Rare::Connecting(_) => Phase::Connecting,
                Rare::Draining(t) => {
                    if drained(t, readiness) {
                        closing(tr, cx, |cx| self.handler.handle_close(t, cx));
                    }
                    return;
                }
                Rare::Moving => return,
            },
        };
        let mut wakeup = Wakeup::new(phase, interest, readiness);
        let mut failure = None;
        while let Some(step) = wakeup.next_step() {
            match (step, &mut self.state) {
                (Step::CheckConnect, StreamState::Rare(rare)) => {
                    let Rare::Connecting(pending) = &mut **rare else { break };
                    let result = pending.advance(readiness, Seal(()));
                    if let Ok(false) = result {
                        return; // a TLS handshake waits for more readiness
                    }
                    wakeup.connect_result(result.is_ok());
                    match result {
                        Ok(_) => self.connected(),
                        Err(e) => failure = Some(e),
                    }
                }
                (Step::ConnectFailed, _) => {
                    let error = failure.take().unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into());
                    tr.call(Callback::ConnectFailed);
                    self.handler.handle_connect_failed(error, cx);
                    wakeup.record(Outcome::default());
                    cx.close();
                }
                (_, StreamState::Connected(t)) => {
                    let (handler, mut drain) = (&mut self.handler, false);
                    let outcome = connected_step(handler, t, &mut drain, step, readiness, cx, tr);
                    if step == Step::Connect {
                        wakeup.set_interest(stream_interest(handler, t));
                    }
                    wakeup.record(outcome);
                    if drain {
                        // The close step ends the wake-up: nothing follows.
                        self.start_draining();
                        break;
                    }
                }
                // The machine delivers stream events only once connected.
                (_, StreamState::Rare(_)) => break,
            }
        }
    }

    /// The connect completed: the connecting transport becomes the
    /// connected one.
    fn connected(&mut self) {
        if let StreamState::Rare(rare) = &mut self.state
            && let Rare::Connecting(_) = **rare
            && let Rare::Connecting(pending) = std::mem::replace(&mut **rare, Rare::Moving)
        {
            self.state = StreamState::Connected(pending.into_ready(Seal(())));
        }
    }

    /// Input the transport holds above the socket (a TLS session's decrypted
    /// records), read on while the handler is readable: the socket will not
    /// report it, so what is left when this stops waits for the peer to send
    /// again. It stops once the input is read, or after 64 reads in a row
    /// that took none of it (a handler that reads without consuming cannot
    /// hold the loop). A read that took some goes on: the session holds at
    /// most a few records, so a handler that reads a byte at a time gets
    /// them all (it stalled after 64 bytes). [`MAX_BUFFERED_READS`] bounds
    /// a handler that reads the socket again inside its callback.
    #[cold]
    #[inline(never)]
    fn read_buffered(&mut self, readiness: Readiness, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let StreamState::Connected(t) = &mut self.state else { return };
        let (handler, mut drain) = (&mut self.handler, false);
        let mut idle = 0;
        for _ in 0..MAX_BUFFERED_READS {
            if cx.is_closing()
                || drain
                || !t.has_buffered_input()
                || !stream_interest(handler, t).is_readable()
            {
                break;
            }
            let outcome = connected_step(handler, t, &mut drain, Step::Read, readiness, cx, tr);
            if outcome.failed || outcome.closed {
                break;
            }
            if outcome.peer_gone {
                close(handler, t, &mut drain, readiness, cx, tr);
                break;
            }
            idle = if outcome.read_progress { 0 } else { idle + 1 };
            if idle == 64 {
                break;
            }
        }
        if drain {
            self.start_draining();
        }
    }

    /// The peer ended its side with output still queued: the connected
    /// transport moves into the draining state (one allocation, once in the
    /// stream's life).
    #[cold]
    fn start_draining(&mut self) {
        if let StreamState::Connected(_) = self.state
            && let StreamState::Connected(t) =
                std::mem::replace(&mut self.state, StreamState::Rare(Box::new(Rare::Moving)))
            && let StreamState::Rare(rare) = &mut self.state
        {
            **rare = Rare::Draining(t);
        }
    }
}

/// Delivers one step of a connected stream's wake-up.
#[inline(always)]
fn connected_step<T: Transport, H: StreamHandler<T>>(
    handler: &mut H,
    t: &mut T,
    drain: &mut bool,
    step: Step,
    readiness: Readiness,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
) -> Outcome {
    match step {
        Step::Read => {
            run(handler, t, cx, tr, Callback::Read, raw_channel::<T>, H::handle_read, H::handle_error)
        }
        Step::Write => {
            run(handler, t, cx, tr, Callback::Write, raw_channel::<T>, H::handle_write, H::handle_error)
        }
        Step::Connect => {
            run(handler, t, cx, tr, Callback::Connect, raw_channel::<T>, H::handle_connect, H::handle_error)
        }
        Step::Expt => {
            run(handler, t, cx, tr, Callback::Expt, raw_channel::<T>, H::handle_expt, H::handle_error)
        }
        Step::Close => {
            close(handler, t, drain, readiness, cx, tr);
            Outcome::default()
        }
        Step::CheckConnect | Step::ConnectFailed | Step::Accept => {
            unreachable!("not a connected stream's step")
        }
    }
}

/// The close step of a connected stream: `handle_close`, or, when the peer
/// only shut down its sending side while output is still queued, draining
/// that output first (P14).
#[cold]
fn close<T: Transport, H: StreamHandler<T>>(
    handler: &mut H,
    t: &mut T,
    drain: &mut bool,
    readiness: Readiness,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
) {
    if t.has_queued_output() && t.channel().observed().has(Observed::EOF) && !readiness.is_error() {
        *drain = true;
        return;
    }
    closing(tr, cx, |cx| handler.handle_close(t, cx));
}

/// One write event of a draining stream; whether it is done (queue empty,
/// or the peer is gone altogether).
fn drained<T: Transport>(t: &mut T, readiness: Readiness) -> bool {
    if readiness.is_error() || (readiness.is_closed() && !readiness.is_writable()) {
        return true;
    }
    if !readiness.is_writable() {
        return false;
    }
    raw_channel(t).reset_observed();
    match t.send_queued() {
        Ok(()) => !t.has_queued_output() || t.channel().observed().has(Observed::PEER_GONE),
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

macro_rules! register_stream {
    ($connected:ty, $connecting:ty) => {
        #[diagnostic::do_not_recommend]
        impl<H: StreamHandler<$connected>> Register<H> for $connected {}
        impl<H: StreamHandler<$connected>> RegisterSealed<H> for $connected {
            fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
                stream_interest(handler, self)
            }
            fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
                Transport::channel(self).as_fd()
            }
            fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
                let state = StreamState::Connected(self);
                Box::new(StreamEntry::<$connected, H> { state, handler })
            }
        }

        #[diagnostic::do_not_recommend]
        impl<H: StreamHandler<$connected>> Register<H> for $connecting {}
        impl<H: StreamHandler<$connected>> RegisterSealed<H> for $connecting {
            fn interest(&self, _: &H, _: impl EntryProof) -> Interest {
                Interest::WRITE
            }
            fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
                Pending::channel(self).as_fd()
            }
            fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
                let state = StreamState::Rare(Box::new(Rare::Connecting(self)));
                Box::new(StreamEntry::<$connected, H> { state, handler })
            }
        }
    };
}

impl<T: Transport, H> Drop for StreamEntry<T, H> {
    fn drop(&mut self) {
        // A TLS stream's close_notify, whichever way it closes.
        match &mut self.state {
            StreamState::Connected(t) => t.closing(Seal(())),
            StreamState::Rare(rare) => {
                if let Rare::Draining(t) = &mut **rare {
                    t.closing(Seal(()));
                }
            }
        }
    }
}

register_stream!(Channel<Connected>, Channel<Connecting>);
register_stream!(Buffered<Connected>, Buffered<Connecting>);
register_stream!(AsyncChat<Connected>, AsyncChat<Connecting>);

/// A TLS stream still handshaking: the pending form of its transport.
#[cfg(feature = "tls")]
mod handshaking {
    use super::*;
    use crate::tls::Handshaking;

    #[diagnostic::do_not_recommend]
    impl<T: Transport, H: StreamHandler<T>> Register<H> for Handshaking<T> {}
    impl<T: Transport, H: StreamHandler<T>> RegisterSealed<H> for Handshaking<T> {
        fn interest(&self, _: &H, _: impl EntryProof) -> Interest {
            self.0.interest()
        }
        fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
            Pending::channel(&self.0).as_fd()
        }
        fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
            let state = StreamState::Rare(Box::new(Rare::Connecting(self.0)));
            Box::new(StreamEntry::<T, H> { state, handler })
        }
    }
}

impl Ctx<'_> {
    /// Another connected stream's transport and handler, if they have types
    /// `T` and `H`, behind a guard that asks that channel's predicates again
    /// when dropped: push output into another member of a chat room, say,
    /// and it is sent when that channel's socket can take it. `None` for a
    /// stale token, a channel still connecting or draining, this callback's
    /// own channel, or other types.
    ///
    /// ```
    /// use std::io;
    /// use rolecore::{AsyncChat, ChatHandler, Ctx, Token};
    ///
    /// /// Forwards every line to a partner channel.
    /// struct Relay { partner: Option<Token> }
    ///
    /// impl ChatHandler for Relay {
    ///     fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
    ///         let mut line = chat.take_incoming();
    ///         line.push(b'\n');
    ///         if let Some(mut other) = self.partner.and_then(|p| cx.stream_mut::<AsyncChat, Relay>(p)) {
    ///             other.transport().push(&line)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> io::Result<()> {
    /// use std::io::{BufRead, Write};
    /// use std::os::unix::net::UnixStream;
    /// use rolecore::{Channel, LoopOptions, Map, Terminator};
    ///
    /// let (a, mut alice) = UnixStream::pair()?;
    /// let (b, bob) = UnixStream::pair()?;
    /// let mut map = Map::new()?;
    /// let line = || Terminator::bytes(b"\n");
    /// let ta = map.insert(AsyncChat::new(Channel::try_from(a)?, line()), Relay { partner: None })?;
    /// let tb = map.insert(AsyncChat::new(Channel::try_from(b)?, line()), Relay { partner: Some(ta) })?;
    /// map.handler_mut::<Relay>(ta).unwrap().partner = Some(tb);
    /// alice.write_all(b"hello bob\n")?;
    /// map.run(LoopOptions::new().count(3).timeout(std::time::Duration::from_millis(50)))?;
    /// let mut got = String::new();
    /// std::io::BufReader::new(bob).read_line(&mut got)?;
    /// assert_eq!(got, "hello bob\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_mut<T: Transport, H: 'static>(&mut self, token: Token) -> Option<StreamMut<'_, T, H>> {
        self.stream_guard(token)
    }
}

impl Map {
    /// A connected stream's transport and handler, as [`Ctx::stream_mut`].
    pub fn stream_mut<T: Transport, H: 'static>(&mut self, token: Token) -> Option<StreamMut<'_, T, H>> {
        self.stream_guard(token)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::channel::wrap_memory;
    use crate::memory::{self, Link, Sizes};
    use crate::sim::{Sim, SimConfig};

    /// Records the callbacks of a stream that never connects.
    struct Waiting(Rc<RefCell<Vec<String>>>);

    impl StreamHandler for Waiting {
        fn handle_connect(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
            self.0.borrow_mut().push("connect".into());
            Ok(())
        }
        fn handle_connect_failed(&mut self, error: io::Error, _: &mut Ctx<'_>) {
            self.0.borrow_mut().push(format!("connect failed: {:?}", error.kind()));
        }
        fn handle_read(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
            self.0.borrow_mut().push("read".into());
            Ok(())
        }
        fn handle_close(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) {
            self.0.borrow_mut().push("close".into());
        }
    }

    /// A stream still connecting when a shutdown's grace ends learns it
    /// through `handle_connect_failed`, once, with `Interrupted`, the one
    /// callback its handler can get before it is connected; and it leaves
    /// the map. (An in-memory connect the simulation keeps pending: a
    /// kernel one on loopback would complete first.)
    #[test]
    fn a_stream_still_connecting_at_the_end_of_a_shutdown_gets_connect_failed_once() {
        let mut sim = Sim::from_bytes(&[], SimConfig::default()).unwrap();
        let sizes = Sizes { cap: [64; 2], chunk: [64; 2] };
        let (ours, _theirs) = memory::pair(sizes, Link::Pending).unwrap();
        let fd = memory::descriptor_for(&ours).unwrap();
        let connecting: Channel<Connecting> = wrap_memory(fd, ours);
        let log = Rc::new(RefCell::new(Vec::new()));
        let token = sim.map().insert(connecting, Waiting(log.clone())).unwrap();
        sim.map().poll(Some(Duration::ZERO)).unwrap();
        assert!(log.borrow().is_empty(), "the connect is still pending: {:?}", log.borrow());
        sim.map().shutdown(Duration::ZERO);
        sim.map().poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(*log.borrow(), ["connect failed: Interrupted"]);
        assert!(!sim.map().contains(token));
    }

    /// An idle connection costs its slot and this entry: the state's tag
    /// must stay hidden in the descriptor's niche.
    #[test]
    fn a_connected_entry_is_as_small_as_its_transport() {
        // The `tls` feature's session pointer adds 8 bytes to `Buffered`;
        // either size is one 32-byte malloc chunk.
        let transport = std::mem::size_of::<Buffered<Connected>>();
        assert_eq!(transport, if cfg!(feature = "tls") { 24 } else { 16 });
        assert_eq!(std::mem::size_of::<StreamState<Buffered<Connected>>>(), transport);
        assert_eq!(std::mem::size_of::<StreamEntry<Buffered<Connected>, ()>>(), transport);
    }

    /// A draining stream woken without writability (a simulation's
    /// invented wake-up is readable only) is not done: its queue still
    /// waits for the socket, and it must not close with output unsent.
    #[test]
    fn a_draining_stream_woken_without_writability_keeps_its_queue() {
        let (ours, _peer) = Channel::pair().unwrap();
        let mut t = Buffered::new(ours);
        t.send(&vec![7u8; 1 << 20]).unwrap();
        assert!(t.has_queued_output(), "the socket took it all: nothing to drain");
        assert!(!drained(&mut t, Readiness::READABLE), "done draining without a write");
        assert!(t.has_queued_output());
    }
}
