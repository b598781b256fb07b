//! The glue between layers: an entry owns a channel and its handler, runs the
//! [`machine`](crate::machine) for each wake-up, and calls the handler's
//! callbacks for the steps it yields.

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::buffered::Buffered;
use crate::channel::{Channel, Connected, Connecting, DatagramRole, FileFd, Listening, Observed, Role};
use crate::error::is_disconnect;
use crate::handler::{AcceptHandler, DatagramHandler, FileHandler, StreamHandler};
use crate::machine::{Outcome, Phase, Plain, Step, Wakeup};
use crate::map::{Ctx, Entry, Register, RegisterSealed};
use crate::readiness::{Interest, Readiness};
use crate::report::{Level, log_info};
use crate::seal::{EntryProof, Seal};
use crate::trace::{Callback, Joined};
use crate::transport::{Pending, Transport};

/// Runs one callback and condenses what happened into an [`Outcome`]:
/// would-block is nothing, a disconnection is the peer leaving, any other
/// error goes to the handler's error callback.
///
/// `channel`, `callback` and `on_error` are function items, not pointers, so
/// each use compiles to direct (mostly inlined) calls.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn run<H, C, R: Role>(
    handler: &mut H,
    ch: &mut C,
    cx: &mut Ctx<'_>,
    kind: Callback,
    channel: impl Fn(&mut C) -> &mut Channel<R>,
    callback: impl FnOnce(&mut H, &mut C, &mut Ctx<'_>) -> io::Result<()>,
    on_error: impl FnOnce(&mut H, &mut C, io::Error, &mut Ctx<'_>),
) -> Outcome {
    channel(ch).reset_observed();
    let traced = cx.trace_call(kind);
    let result = callback(handler, ch, cx);
    let observed = channel(ch).observed();
    if traced.is_some() {
        let moved = observed.has(Observed::READ_PROGRESS)
            || observed.has(Observed::WRITE_PROGRESS)
            || observed.has(Observed::PEER_GONE);
        cx.trace_progress(traced, moved);
    }
    let mut outcome = Outcome {
        peer_gone: observed.has(Observed::PEER_GONE),
        read_progress: observed.has(Observed::READ_PROGRESS),
        ..Outcome::default()
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // The handler closed its channel, then tried to use it: the I/O was
        // refused and the channel closes as it asked.
        Err(e) if cx.is_closing() && crate::channel::is_closed_in_callback(&e) => {}
        // A datagram socket has no peer to lose: every error is the handler's.
        Err(e) if is_disconnect(&e) && R::HAS_PEER_STREAM => outcome.peer_gone = true,
        Err(e) => {
            cx.trace_call(Callback::Error);
            on_error(handler, ch, e, cx);
            outcome.failed = true;
        }
    }
    outcome.closed = cx.is_closing();
    outcome
}

// ---- streams ----------------------------------------------------------------

enum StreamState<T: Transport> {
    Connecting(T::Pending),
    Connected(T),
    /// The peer ended its side of the stream while output was still queued:
    /// no more reads, the queue goes out, then `handle_close` (P14: asyncore
    /// dropped it).
    Draining(T),
    /// Only inside `dispatch`, for the instant the connecting transport is
    /// moved out to become the connected one.
    Moving,
}

pub(crate) struct StreamEntry<T: Transport, H> {
    state: StreamState<T>,
    handler: H,
}

fn stream_interest<T: Transport, H: StreamHandler<T>>(handler: &H, t: &T) -> Interest {
    Interest::from_predicates(!t.is_backlogged() && handler.readable(t), handler.writable(t), true)
}

impl<T: Transport, H: StreamHandler<T>> Entry for StreamEntry<T, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.state {
            StreamState::Connecting(p) => p.channel().as_fd(),
            StreamState::Connected(t) | StreamState::Draining(t) => t.channel().as_fd(),
            StreamState::Moving => unreachable!("no descriptor while moving"),
        }
    }

    fn interest(&self) -> Interest {
        match &self.state {
            // Completion and failure both show as writability (and
            // hang-up/error, which are always watched).
            StreamState::Connecting(_) => Interest::WRITE,
            StreamState::Connected(t) => stream_interest(&self.handler, t),
            StreamState::Draining(_) => Interest::WRITE,
            StreamState::Moving => Interest::NONE,
        }
    }

    // Inlined into the default `Entry::wake`, so that the common wake-up
    // is one function.
    #[inline(always)]
    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) {
        if let StreamState::Connected(_) = self.state
            && let Some(plain) = Plain::new(interest, readiness)
        {
            return plain.run(
                #[inline(always)]
                |step| self.step(step, readiness, cx),
            );
        }
        self.general_wakeup(readiness, interest, cx);
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        self.on_timeout(cx);
    }

    fn shut(&mut self, cx: &mut Ctx<'_>) {
        match &mut self.state {
            StreamState::Connecting(_) => {
                cx.trace_call(Callback::ConnectFailed);
                let error = io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the loop shut down before the connect completed",
                );
                self.handler.handle_connect_failed(error, cx);
            }
            StreamState::Connected(t) | StreamState::Draining(t) => {
                cx.trace_call(Callback::Close);
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
            StreamState::Connected(t) => Some((t, &mut self.handler)),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match &self.state {
            StreamState::Connecting(p) => format!("{:?}", p.channel()),
            StreamState::Connected(t) | StreamState::Draining(t) => format!("{:?}", t.channel()),
            StreamState::Moving => String::new(),
        }
    }
}

impl<T: Transport, H: StreamHandler<T>> StreamEntry<T, H> {
    /// A wake-up through the general machine: connecting, draining, or
    /// readiness with a hang-up, an error or priority data.
    #[inline(never)]
    fn general_wakeup(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) {
        if let StreamState::Draining(t) = &mut self.state {
            if drained(t, readiness) {
                cx.trace_call(Callback::Close);
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
            let handler = &mut self.handler;
            if step == Step::CheckConnect {
                let StreamState::Connecting(pending) =
                    std::mem::replace(&mut self.state, StreamState::Moving)
                else {
                    unreachable!("the machine checks connects only while connecting")
                };
                match pending.channel().connect_result() {
                    Ok(()) => {
                        self.state = StreamState::Connected(pending.into_ready(Seal(())));
                        wakeup.connect_result(true);
                    }
                    Err(e) => {
                        self.state = StreamState::Connecting(pending);
                        failure = Some(e);
                        wakeup.connect_result(false);
                    }
                }
                continue;
            }
            if step == Step::ConnectFailed {
                let error = failure.take().unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into());
                cx.trace_call(Callback::ConnectFailed);
                handler.handle_connect_failed(error, cx);
                wakeup.record(Outcome::default());
                cx.close();
                continue;
            }
            let outcome = self.step(step, readiness, cx);
            if step == Step::Connect
                && let StreamState::Connected(t) = &self.state
            {
                wakeup.set_interest(stream_interest(&self.handler, t));
            }
            wakeup.record(outcome);
        }
    }

    /// Delivers one step of a connected stream's wake-up.
    #[inline(always)]
    fn step(&mut self, step: Step, readiness: Readiness, cx: &mut Ctx<'_>) -> Outcome {
        let StreamState::Connected(t) = &mut self.state else {
            unreachable!("the machine delivers stream events only once connected")
        };
        let handler = &mut self.handler;
        match step {
            Step::Read => {
                run(handler, t, cx, Callback::Read, T::channel_mut, H::handle_read, H::handle_error)
            }
            Step::Write => {
                run(handler, t, cx, Callback::Write, T::channel_mut, H::handle_write, H::handle_error)
            }
            Step::Connect => {
                run(handler, t, cx, Callback::Connect, T::channel_mut, H::handle_connect, H::handle_error)
            }
            Step::Expt => {
                run(handler, t, cx, Callback::Expt, T::channel_mut, H::handle_expt, H::handle_error)
            }
            Step::Close => {
                self.close(readiness, cx);
                Outcome::default()
            }
            Step::CheckConnect | Step::ConnectFailed | Step::Accept => unreachable!("not a stream step"),
        }
    }

    /// The close step of a connected stream: `handle_close`, or, when the
    /// peer only shut down its sending side while output is still queued,
    /// draining that output first (P14).
    #[cold]
    fn close(&mut self, readiness: Readiness, cx: &mut Ctx<'_>) {
        let StreamState::Connected(t) = &mut self.state else {
            unreachable!("only a connected stream closes this way")
        };
        if t.has_queued_output() && t.channel().observed().has(Observed::EOF) && !readiness.is_error() {
            let StreamState::Connected(t) = std::mem::replace(&mut self.state, StreamState::Moving) else {
                unreachable!("matched above")
            };
            self.state = StreamState::Draining(t);
            return;
        }
        cx.trace_call(Callback::Close);
        self.handler.handle_close(t, cx);
        cx.close();
    }

    fn on_timeout(&mut self, cx: &mut Ctx<'_>) {
        match &mut self.state {
            StreamState::Connecting(_) => {
                cx.trace_call(Callback::ConnectFailed);
                self.handler.handle_connect_failed(io::ErrorKind::TimedOut.into(), cx);
                cx.close();
            }
            StreamState::Connected(t) => {
                run(
                    &mut self.handler,
                    t,
                    cx,
                    Callback::Timeout,
                    T::channel_mut,
                    H::handle_timeout,
                    H::handle_error,
                );
            }
            StreamState::Draining(t) => {
                cx.trace_call(Callback::Close);
                self.handler.handle_close(t, cx);
                cx.close();
            }
            StreamState::Moving => {}
        }
    }
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
                Box::new(StreamEntry::<$connected, H> { state: StreamState::Connected(self), handler })
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
                Box::new(StreamEntry::<$connected, H> { state: StreamState::Connecting(self), handler })
            }
        }
    };
}

register_stream!(Channel<Connected>, Channel<Connecting>);
register_stream!(Buffered<Connected>, Buffered<Connecting>);
register_stream!(crate::chat::AsyncChat<Connected>, crate::chat::AsyncChat<Connecting>);

// ---- listeners ---------------------------------------------------------------

pub(crate) struct ListenerEntry<H> {
    channel: Channel<Listening>,
    handler: H,
    /// Accepting is paused (descriptors exhausted) until the channel's
    /// deadline, when it resumes.
    paused: bool,
    /// The next pause: doubles while accepts keep failing, resets once one
    /// succeeds.
    backoff: Duration,
}

/// The most pending connections a shutting-down listener accepts.
const MAX_DRAIN: usize = 4096;

/// Whether a descriptor is readable right now (a zero-timeout `poll`).
fn readable_now(fd: &impl AsFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
        && fds[0].revents().contains(rustix::event::PollFlags::IN)
}

/// The first pause after descriptor exhaustion, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

fn same<C>(c: &mut C) -> &mut C {
    c
}

impl<H: AcceptHandler> Entry for ListenerEntry<H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn interest(&self) -> Interest {
        Interest::from_predicates(!self.paused && self.handler.readable(&self.channel), false, false)
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) {
        let mut wakeup = Wakeup::new(Phase::Listening, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            let outcome = match step {
                Step::Accept => {
                    let outcome =
                        run(handler, ch, cx, Callback::Accept, same, H::handle_accept, accept_error::<H>);
                    if ch.observed().has(Observed::EXHAUSTED) {
                        self.pause(cx);
                    } else if outcome == Outcome::default() {
                        self.backoff = FIRST_BACKOFF;
                    }
                    outcome
                }
                Step::Close => {
                    cx.trace_call(Callback::Close);
                    handler.handle_close(ch, cx);
                    cx.close();
                    Outcome::default()
                }
                _ => unreachable!("a listener only accepts or closes"),
            };
            wakeup.record(outcome);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        if self.paused {
            // The back-off is over: watch for connections again (the loop
            // asks `interest` after this returns).
            self.paused = false;
            return;
        }
        run(
            &mut self.handler,
            &mut self.channel,
            cx,
            Callback::Timeout,
            same,
            H::handle_timeout,
            H::handle_error,
        );
    }

    fn shut(&mut self, cx: &mut Ctx<'_>) {
        // Connections the kernel completed but the loop has not accepted yet
        // would be reset when the listener closes: accept them first, so they
        // get the grace period like the others.
        for _ in 0..MAX_DRAIN {
            if !readable_now(&self.channel) || cx.is_closing() {
                break;
            }
            let outcome = run(
                &mut self.handler,
                &mut self.channel,
                cx,
                Callback::Accept,
                same,
                H::handle_accept,
                accept_error::<H>,
            );
            if outcome.failed || self.channel.observed().has(Observed::EXHAUSTED) {
                break;
            }
        }
        cx.trace_call(Callback::Close);
        self.handler.handle_close(&mut self.channel, cx);
    }

    fn handler(&self) -> &dyn Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }

    fn describe(&self) -> String {
        format!("{:?}", self.channel)
    }

    fn joined(&self) -> Joined {
        Joined::Listening
    }
}

impl<H: AcceptHandler> ListenerEntry<H> {
    /// Out of descriptors: stop asking for readability until the back-off
    /// passes, and say so once per pause.
    fn pause(&mut self, cx: &mut Ctx<'_>) {
        log_info(
            Level::Error,
            format_args!(
                "accept on {:?}: out of descriptors or memory; pausing accepts for {} ms",
                self.channel,
                self.backoff.as_millis()
            ),
        );
        self.paused = true;
        let token = cx.token();
        cx.set_deadline(token, Some(Instant::now() + self.backoff));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// A listener's errors go to `handle_error`, except exhaustion, which
/// pauses the listener instead of closing it (asyncore's default
/// `handle_error` closed the listener, P1).
fn accept_error<H: AcceptHandler>(h: &mut H, ch: &mut Channel<Listening>, e: io::Error, cx: &mut Ctx<'_>) {
    if !ch.observed().has(Observed::EXHAUSTED) {
        h.handle_error(ch, e, cx);
    }
}

#[diagnostic::do_not_recommend]
impl<H: AcceptHandler> Register<H> for Channel<Listening> {}
impl<H: AcceptHandler> RegisterSealed<H> for Channel<Listening> {
    fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
        Interest::from_predicates(handler.readable(self), false, false)
    }
    fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn takes_no_idle_timeout(&self, _: impl EntryProof) -> bool {
        true
    }
    fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
        Box::new(ListenerEntry { channel: self, handler, paused: false, backoff: FIRST_BACKOFF })
    }
}

// ---- files -------------------------------------------------------------------

pub(crate) struct FileEntry<H> {
    channel: Channel<FileFd>,
    handler: H,
}

fn file_interest<H: FileHandler>(handler: &H, ch: &Channel<FileFd>) -> Interest {
    Interest::from_predicates(handler.readable(ch), handler.writable(ch), false)
}

impl<H: FileHandler> Entry for FileEntry<H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn interest(&self) -> Interest {
        file_interest(&self.handler, &self.channel)
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) {
        let mut wakeup = Wakeup::new(Phase::File, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            let outcome = match step {
                Step::Read => run(handler, ch, cx, Callback::Read, same, H::handle_read, H::handle_error),
                Step::Write => run(handler, ch, cx, Callback::Write, same, H::handle_write, H::handle_error),
                Step::Close => {
                    cx.trace_call(Callback::Close);
                    handler.handle_close(ch, cx);
                    cx.close();
                    Outcome::default()
                }
                _ => unreachable!("a file only reads, writes or closes"),
            };
            wakeup.record(outcome);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        run(
            &mut self.handler,
            &mut self.channel,
            cx,
            Callback::Timeout,
            same,
            H::handle_timeout,
            H::handle_error,
        );
    }

    fn shut(&mut self, cx: &mut Ctx<'_>) {
        cx.trace_call(Callback::Close);
        self.handler.handle_close(&mut self.channel, cx);
    }

    fn handler(&self) -> &dyn Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }

    fn joined(&self) -> Joined {
        Joined::File
    }

    fn describe(&self) -> String {
        format!("{:?}", self.channel)
    }
}

#[diagnostic::do_not_recommend]
impl<H: FileHandler> Register<H> for Channel<FileFd> {}
impl<H: FileHandler> RegisterSealed<H> for Channel<FileFd> {
    fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
        file_interest(handler, self)
    }
    fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn always_ready(&self, _: impl EntryProof) -> bool {
        self.is_regular_file()
    }
    fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
        Box::new(FileEntry { channel: self, handler })
    }
}

// ---- datagrams ---------------------------------------------------------------

pub(crate) struct DatagramEntry<R: DatagramRole, H> {
    channel: Channel<R>,
    handler: H,
}

fn datagram_interest<R: DatagramRole, H: DatagramHandler<R>>(handler: &H, ch: &Channel<R>) -> Interest {
    Interest::from_predicates(handler.readable(ch), handler.writable(ch), false)
}

impl<R: DatagramRole, H: DatagramHandler<R>> Entry for DatagramEntry<R, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn interest(&self) -> Interest {
        datagram_interest(&self.handler, &self.channel)
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>) {
        let mut wakeup = Wakeup::new(Phase::Datagram, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            let outcome = match step {
                Step::Read => run(handler, ch, cx, Callback::Read, same, H::handle_read, H::handle_error),
                Step::Write => run(handler, ch, cx, Callback::Write, same, H::handle_write, H::handle_error),
                _ => unreachable!("a datagram socket only reads and writes"),
            };
            wakeup.record(outcome);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>) {
        run(
            &mut self.handler,
            &mut self.channel,
            cx,
            Callback::Timeout,
            same,
            H::handle_timeout,
            H::handle_error,
        );
    }

    fn shut(&mut self, cx: &mut Ctx<'_>) {
        cx.trace_call(Callback::Close);
        self.handler.handle_close(&mut self.channel, cx);
    }

    fn handler(&self) -> &dyn Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        &mut self.handler
    }

    fn describe(&self) -> String {
        format!("{:?}", self.channel)
    }

    fn joined(&self) -> Joined {
        Joined::Datagram
    }
}

// Two impls rather than one over `R: DatagramRole`: with the blanket one, a
// `Channel<Fresh>` put in a map makes rustc complain that `Fresh` is not a
// datagram role, instead of showing `Register`'s message.
macro_rules! register_datagram {
    ($($role:ty),*) => {$(
        #[diagnostic::do_not_recommend]
        impl<H: DatagramHandler<$role>> Register<H> for Channel<$role> {}
        impl<H: DatagramHandler<$role>> RegisterSealed<H> for Channel<$role> {
            fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
                datagram_interest(handler, self)
            }
            fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
                self.as_fd()
            }
            fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
                Box::new(DatagramEntry { channel: self, handler })
            }
        }
    )*};
}

register_datagram!(crate::channel::Datagram, crate::channel::ConnectedDatagram);
