//! Layer 7: the entry of a file (pipe, terminal, regular file) or a
//! datagram socket. Their handlers have the same callbacks and no
//! connection to track, so one entry, generic over the handler kind
//! ([`FdHandler`]), serves both.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::entry::{Dispatch, channel_and_handler, closing, run, same};
use crate::channel::{Channel, ConnectedDatagram, Datagram, DatagramRole, FileFd, Role};
use crate::handler::{DatagramHandler, FileHandler};
use crate::machine::{Phase, Step, Wakeup};
use crate::map::{Ctx, Entry, Register, RegisterSealed};
use crate::readiness::{Interest, Readiness};
use crate::seal::EntryProof;
use crate::trace::{Callback, Joined, Tracer};

/// The callbacks a file's and a datagram socket's handlers share: what
/// [`FdEntry`] calls, with what the machine and the trace know it as.
pub(crate) trait FdHandler<R: Role>: 'static {
    /// What the machine runs for it.
    const PHASE: Phase;
    /// What the trace calls it.
    const JOINED: Joined;
    fn readable(&self, ch: &Channel<R>) -> bool;
    fn writable(&self, ch: &Channel<R>) -> bool;
    fn handle_read(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()>;
    fn handle_write(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()>;
    fn handle_timeout(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()>;
    fn handle_close(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>);
    fn handle_error(&mut self, ch: &mut Channel<R>, error: io::Error, cx: &mut Ctx<'_>);
}

/// [`FdHandler`] for a handler trait: delegation only.
macro_rules! fd_handler {
    (impl<$($g:ident: $b:path),*> for $role:ty, $handler:ident: $trait:path, $phase:expr, $joined:expr) => {
        impl<$($g: $b),*> FdHandler<$role> for $handler {
            const PHASE: Phase = $phase;
            const JOINED: Joined = $joined;
            #[inline]
            fn readable(&self, ch: &Channel<$role>) -> bool {
                <$handler as $trait>::readable(self, ch)
            }
            #[inline]
            fn writable(&self, ch: &Channel<$role>) -> bool {
                <$handler as $trait>::writable(self, ch)
            }
            #[inline]
            fn handle_read(&mut self, ch: &mut Channel<$role>, cx: &mut Ctx<'_>) -> io::Result<()> {
                <$handler as $trait>::handle_read(self, ch, cx)
            }
            #[inline]
            fn handle_write(&mut self, ch: &mut Channel<$role>, cx: &mut Ctx<'_>) -> io::Result<()> {
                <$handler as $trait>::handle_write(self, ch, cx)
            }
            fn handle_timeout(&mut self, ch: &mut Channel<$role>, cx: &mut Ctx<'_>) -> io::Result<()> {
                <$handler as $trait>::handle_timeout(self, ch, cx)
            }
            fn handle_close(&mut self, ch: &mut Channel<$role>, cx: &mut Ctx<'_>) {
                <$handler as $trait>::handle_close(self, ch, cx)
            }
            fn handle_error(&mut self, ch: &mut Channel<$role>, error: io::Error, cx: &mut Ctx<'_>) {
                <$handler as $trait>::handle_error(self, ch, error, cx)
            }
        }
    };
}

fd_handler!(impl<H: FileHandler> for FileFd, H: FileHandler, Phase::File, Joined::File);
fd_handler!(
    impl<R: DatagramRole, H: DatagramHandler<R>> for R,
    H: DatagramHandler<R>,
    Phase::Datagram,
    Joined::Datagram
);

pub(crate) struct FdEntry<R: Role, H> {
    channel: Channel<R>,
    handler: H,
}

fn fd_interest<R: Role, H: FdHandler<R>>(handler: &H, ch: &Channel<R>) -> Interest {
    Interest::from_predicates(handler.readable(ch), handler.writable(ch), false)
}

impl<R: Role, H: FdHandler<R>> Dispatch for FdEntry<R, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn interest(&self) -> Interest {
        fd_interest(&self.handler, &self.channel)
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let mut wakeup = Wakeup::new(H::PHASE, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            let (handler, ch) = (&mut self.handler, &mut self.channel);
            let outcome = match step {
                Step::Read => run(handler, ch, cx, tr, Callback::Read, same, H::handle_read, H::handle_error),
                Step::Write => {
                    run(handler, ch, cx, tr, Callback::Write, same, H::handle_write, H::handle_error)
                }
                // Files only: a datagram socket's readiness never closes it.
                Step::Close => closing(tr, cx, |cx| handler.handle_close(ch, cx)),
                _ => unreachable!("a file or datagram socket only reads, writes or closes"),
            };
            wakeup.record(outcome);
        }
    }

    fn timeout(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        let (handler, ch) = (&mut self.handler, &mut self.channel);
        run(handler, ch, cx, tr, Callback::Timeout, same, H::handle_timeout, H::handle_error);
    }

    fn shut(&mut self, cx: &mut Ctx<'_>, tr: &impl Tracer) {
        tr.call(Callback::Close);
        self.handler.handle_close(&mut self.channel, cx);
    }

    channel_and_handler!();

    fn joined(&self) -> Joined {
        H::JOINED
    }
}

// One impl per role rather than one over `R: DatagramRole`: with the blanket
// one, a `Channel<Fresh>` put in a map makes rustc complain that `Fresh` is
// not a datagram role, instead of showing `Register`'s message.
macro_rules! register_fd {
    ($role:ty, $handler:path $(, always_ready: |$c:ident| $always:expr)?) => {
        #[diagnostic::do_not_recommend]
        impl<H: $handler> Register<H> for Channel<$role> {}
        impl<H: $handler> RegisterSealed<H> for Channel<$role> {
            fn interest(&self, handler: &H, _: impl EntryProof) -> Interest {
                fd_interest(handler, self)
            }
            fn fd(&self, _: impl EntryProof) -> BorrowedFd<'_> {
                self.as_fd()
            }
            $(
                fn always_ready(&self, _: impl EntryProof) -> bool {
                    let $c = self;
                    $always
                }
            )?
            fn into_entry(self, handler: H, _: impl EntryProof) -> Box<dyn Entry> {
                Box::new(FdEntry { channel: self, handler })
            }
        }
    };
}

register_fd!(FileFd, FileHandler, always_ready: |c| c.is_regular_file());
register_fd!(Datagram, DatagramHandler<Datagram>);
register_fd!(ConnectedDatagram, DatagramHandler<ConnectedDatagram>);
