//! Layer 7: the entry of rolecore's own descriptors — a mailbox's eventfd, a
//! signal watcher's socket — written once: they are read when readable, and
//! have no handler callbacks to trace, no deadline and nothing to do at
//! shutdown.

use std::any::Any;
use std::os::fd::BorrowedFd;

use super::entry::Dispatch;
use crate::machine::{Outcome, Phase, Step, Wakeup};
use crate::map::Ctx;
use crate::readiness::{Interest, Readiness};
use crate::trace::{Joined, Tracer};

/// One of rolecore's own descriptors: what it does when readable.
pub(crate) trait Own: 'static {
    /// The descriptor, watched for reading.
    fn fd(&self) -> BorrowedFd<'_>;
    /// It is readable: read and act on it.
    fn deliver(&mut self, cx: &mut Ctx<'_>);
    /// What `Map::handler` finds for its token.
    fn handler(&self) -> &dyn Any;
    /// What `Map::handler_mut` finds for its token.
    fn handler_mut(&mut self) -> &mut dyn Any;
    /// A short description for reports.
    fn describe(&self) -> String;
}

/// The entry of an [`Own`] descriptor.
pub(crate) struct OwnEntry<S>(pub(crate) S);

impl<S: Own> Dispatch for OwnEntry<S> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }

    fn interest(&self) -> Interest {
        Interest::READ
    }

    fn dispatch(&mut self, readiness: Readiness, interest: Interest, cx: &mut Ctx<'_>, _: &impl Tracer) {
        // Read like a datagram socket: readiness never closes it.
        let mut wakeup = Wakeup::new(Phase::Datagram, interest, readiness);
        while let Some(step) = wakeup.next_step() {
            if step == Step::Read {
                self.0.deliver(cx);
            }
            wakeup.record(Outcome::default());
        }
    }

    fn timeout(&mut self, _: &mut Ctx<'_>, _: &impl Tracer) {}

    fn shut(&mut self, _: &mut Ctx<'_>, _: &impl Tracer) {}

    fn handler(&self) -> &dyn Any {
        self.0.handler()
    }

    fn handler_mut(&mut self) -> &mut dyn Any {
        self.0.handler_mut()
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn joined(&self) -> Joined {
        Joined::File
    }
}
