//! Layer 7: the entry of a stream — connecting, then connected, then
//! perhaps draining its queue after the peer's end of stream — and the
//! typed reach into another stream ([`Ctx::stream_mut`], [`Map::stream_mut`]).

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::entry::{Dispatch, run};
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
use crate::transport::{Pending, Transport};

enum StreamState<T: Transport> {
    Connecting(T::Pending),
    Connected(T),
    /// Only inside [`StreamEntry::connected`], for the instant the connecting
    /// transport is moved out to become the connected one.
    Moving,
}

pub(crate) struct StreamEntry<T: Transport, H> {
    state: StreamState<T>,
    /// The peer ended its side of the stream while output was still queued:
    /// no more reads, the queue goes out, then `handle_close` (P14: asyncore
    /// dropped it).
    draining: bool,
    handler: H,
}

const MOVING: &str = "a stream is Moving only inside StreamEntry::connected";

fn stream_interest<T: Transport, H: StreamHandler<T>>(handler: &H, t: &T) -> Interest {
    Interest::from_predicates(!t.is_backlogged() && handler.readable(t), handler.writable(t), true)
}

impl<T: Transport, H: StreamHandler<T>> Dispatch for StreamEntry<T, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.state {
            StreamState::Connecting(p) => p.channel().as_fd(),
            StreamState::Connected(t) => t.channel().as_fd(),
            StreamState::Moving => unreachable!("{MOVING}"),
        }
    }

    fn interest(&self) -> Interest {
        match &self.state {
            StreamState::Connected(t) if !self.draining => stream_interest(&self.handler, t),
            // Connecting: completion and failure both show as writability
            // (and hang-up/error, which are always watched); a TLS handshake
            // asks for what it needs.
            StreamState::Connecting(p) => p.interest(),
            // Draining: the queue goes out.
            _ => Interest::WRITE,
        }
    }

    // Inlined into `Entry::wake`, so that the common wake-up is one function.
    #[inline(always)]
    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        if let StreamState::Connected(t) = &mut self.state
            && !self.draining
            && let Some(plain) = Plain::new(interest, readiness)
        {
            let (handler, draining) = (&mut self.handler, &mut self.draining);
            plain.run(
                #[inline(always)]
                |step| connected_step(handler, t, draining, step, readiness, cx, tr),
            );
        } else {
            self.general_wakeup(readiness, interest, cx, tr);
        }
        if let StreamState::Connected(t) = &mut self.state
            && t.has_buffered_input()
        {
            read_buffered(&mut self.handler, t, &mut self.draining, readiness, cx, tr);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let handler = &mut self.handler;
        match &mut self.state {
            StreamState::Connecting(pending) => {
                tr.call(Callback::ConnectFailed);
                handler.handle_connect_failed(pending.timed_out(), cx);
                cx.close();
            }
            StreamState::Connected(t) if self.draining => {
                tr.call(Callback::Close);
                handler.handle_close(t, cx);
                cx.close();
            }
            StreamState::Connected(t) => {
                run(
                    handler,
                    t,
                    cx,
                    tr,
                    Callback::Timeout,
                    T::channel_mut,
                    H::handle_timeout,
                    H::handle_error,
                );
            }
            StreamState::Moving => {}
        }
    }

    fn shut(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        match &mut self.state {
            StreamState::Connecting(_) => {
                tr.call(Callback::ConnectFailed);
                let error = io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the loop shut down before the connect completed",
                );
                self.handler.handle_connect_failed(error, cx);
            }
            StreamState::Connected(t) => {
                tr.call(Callback::Close);
                self.handler.handle_close(t, cx);
            }
            StreamState::Moving => {}
        }
    }

    fn handler(&self) -> &dyn Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }

    fn joined(&self) -> Joined {
        match self.state {
            StreamState::Connecting(_) => Joined::Connecting,
            _ => Joined::Connected,
        }
    }

    fn stream_parts(&mut self) -> Option<(&mut dyn Any, &mut dyn Any)> {
        match &mut self.state {
            StreamState::Connected(t) if !self.draining => Some((t, &mut self.handler)),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match &self.state {
            StreamState::Connecting(p) => format!("{:?}", p.channel()),
            StreamState::Connected(t) => format!("{:?}", t.channel()),
            StreamState::Moving => String::new(),
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
        if let StreamState::Connected(t) = &mut self.state
            && self.draining
        {
            if drained(t, readiness) {
                tr.call(Callback::Close);
                self.handler.handle_close(t, cx);
                cx.close();
            }
            return;
        }
        let phase = match self.state {
            StreamState::Connecting(_) => Phase::Connecting,
            _ => Phase::Connected,
        };
        let mut wakeup = Wakeup::new(phase, interest, readiness);
        let mut failure = None;
        while let Some(step) = wakeup.next_step() {
            match (step, &mut self.state) {
                (Step::CheckConnect, StreamState::Connecting(pending)) => {
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
                    let handler = &mut self.handler;
                    let outcome = connected_step(handler, t, &mut self.draining, step, readiness, cx, tr);
                    if step == Step::Connect {
                        wakeup.set_interest(stream_interest(handler, t));
                    }
                    wakeup.record(outcome);
                }
                _ => unreachable!("the machine delivers stream events only once connected"),
            }
        }
    }

    /// The connect completed: the connecting transport becomes the
    /// connected one. The only place the state is `Moving`.
    fn connected(&mut self) {
        if let StreamState::Connecting(_) = self.state
            && let StreamState::Connecting(pending) = std::mem::replace(&mut self.state, StreamState::Moving)
        {
            self.state = StreamState::Connected(pending.into_ready(Seal(())));
        }
    }
}

/// Delivers one step of a connected stream's wake-up.
#[inline(always)]
fn connected_step<T: Transport, H: StreamHandler<T>>(
    handler: &mut H,
    t: &mut T,
    draining: &mut bool,
    step: Step,
    readiness: Readiness,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
) -> Outcome {
    match step {
        Step::Read => {
            run(handler, t, cx, tr, Callback::Read, T::channel_mut, H::handle_read, H::handle_error)
        }
        Step::Write => {
            run(handler, t, cx, tr, Callback::Write, T::channel_mut, H::handle_write, H::handle_error)
        }
        Step::Connect => {
            run(handler, t, cx, tr, Callback::Connect, T::channel_mut, H::handle_connect, H::handle_error)
        }
        Step::Expt => {
            run(handler, t, cx, tr, Callback::Expt, T::channel_mut, H::handle_expt, H::handle_error)
        }
        Step::Close => {
            close(handler, t, draining, readiness, cx, tr);
            Outcome::default()
        }
        Step::CheckConnect | Step::ConnectFailed | Step::Accept => {
            unreachable!("not a connected stream's step")
        }
    }
}

/// Input the transport holds above the socket (a TLS session's decrypted
/// records), read on while the handler is readable: the socket will not
/// report it. Bounded, so that a handler that reads without consuming
/// cannot hold the loop.
#[cold]
#[inline(never)]
fn read_buffered<T: Transport, H: StreamHandler<T>>(
    handler: &mut H,
    t: &mut T,
    draining: &mut bool,
    readiness: Readiness,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
) {
    for _ in 0..64 {
        if cx.is_closing()
            || *draining
            || !t.has_buffered_input()
            || !stream_interest(handler, t).is_readable()
        {
            return;
        }
        let outcome = connected_step(handler, t, draining, Step::Read, readiness, cx, tr);
        if outcome.failed || outcome.closed {
            return;
        }
        if outcome.peer_gone {
            close(handler, t, draining, readiness, cx, tr);
            return;
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
    draining: &mut bool,
    readiness: Readiness,
    cx: &mut Ctx<'_>,
    tr: &impl Tracer,
) {
    if t.has_queued_output() && t.channel().observed().has(Observed::EOF) && !readiness.is_error() {
        *draining = true;
        return;
    }
    tr.call(Callback::Close);
    handler.handle_close(t, cx);
    cx.close();
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
    t.channel_mut().reset_observed();
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
                Box::new(StreamEntry::<$connected, H> { state, draining: false, handler })
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
                let state = StreamState::Connecting(self);
                Box::new(StreamEntry::<$connected, H> { state, draining: false, handler })
            }
        }
    };
}

impl<T: Transport, H> Drop for StreamEntry<T, H> {
    fn drop(&mut self) {
        // A TLS stream's close_notify, whichever way it closes.
        if let StreamState::Connected(t) = &mut self.state {
            t.closing();
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
            let state = StreamState::Connecting(self.0);
            Box::new(StreamEntry::<T, H> { state, draining: false, handler })
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
