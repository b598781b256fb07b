//! [`Kept`]: a handler that the program keeps a handle to, so that it can
//! read the handler's results after its channel closed.
//!
//! The map owns the handlers it runs and drops each one when its channel
//! closes, and [`Map::run`](crate::Map::run) returns `()`. A client that
//! fetches something, or a test that wants to see what a handler recorded,
//! needs the handler back. Python kept a reference to the dispatcher; in Rust
//! that is a shared handle, and `Kept` is that handle with the plumbing done:
//! insert a clone into the map, keep the other, and take the handler back
//! with [`Kept::into_inner`] once the map has let go of it.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;

use crate::address::Address;
use crate::channel::{Channel, Connected, DatagramRole, FileFd, Listening};
use crate::handler::{AcceptHandler, DatagramHandler, FileHandler, StreamHandler};
use crate::map::Ctx;
use crate::transport::Transport;

/// A handler shared between the map and the program: the map runs it, the
/// program reads it between runs and takes it back when the map drops it.
///
/// `Kept<H>` is a handler of every kind `H` is (stream, accept, file,
/// datagram, and through [`StreamHandler`], chat), and forwards every
/// callback to `H`, defaults included.
///
/// One `Kept` may serve several channels. A callback that reaches it while
/// it is in another of its callbacks (a listener closed by a shutdown that
/// a connection's callback began, a loop run inside [`Kept::with`]) does
/// not run `H` twice at once: a callback that returns a result fails, and
/// one that cannot (`handle_close`, `handle_connect_failed`, `handle_error`)
/// is reported through [`report`](crate::report) with what was missed.
///
/// # Examples
///
/// A client that reads a greeting, and the program that wants it:
///
/// ```
/// use std::io::{self, Write};
/// use rolecore::{Channel, Connected, Ctx, Kept, LoopOptions, Map, StreamHandler};
///
/// #[derive(Default)]
/// struct Greeting {
///     text: Vec<u8>,
/// }
///
/// impl StreamHandler for Greeting {
///     fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
///         let buf = cx.buffer();
///         let n = ch.recv(buf)?; // 0: the server closed; the loop closes the channel
///         self.text.extend_from_slice(&buf[..n]);
///         Ok(())
///     }
/// }
///
/// # fn main() -> io::Result<()> {
/// let (ours, mut server) = std::os::unix::net::UnixStream::pair()?;
/// server.write_all(b"hello")?;
/// drop(server);
///
/// let greeting = Kept::new(Greeting::default());
/// let mut map = Map::new()?;
/// map.insert(Channel::try_from(ours)?, greeting.clone())?;
/// map.run(LoopOptions::default())?; // until the channel closed and the map is empty
///
/// let greeting = greeting.into_inner().expect("the map dropped its clone");
/// assert_eq!(greeting.text, b"hello");
/// # Ok(())
/// # }
/// ```
pub struct Kept<H>(Rc<RefCell<H>>);

impl<H> Kept<H> {
    /// Wraps `handler`: insert a [`clone`](Clone::clone) into the map, keep
    /// this one.
    pub fn new(handler: H) -> Kept<H> {
        Kept(Rc::new(RefCell::new(handler)))
    }

    /// The handler, once no clone is left (the map drops its clone when the
    /// channel closes, or when the map itself is dropped). While a clone is
    /// still in a map, the handle comes back unchanged as the error.
    pub fn into_inner(self) -> Result<H, Kept<H>> {
        Rc::try_unwrap(self.0).map(RefCell::into_inner).map_err(Kept)
    }

    /// Runs `f` on the handler, between runs of the loop or from another
    /// handler's callback. `None` if the handler is in one of its own
    /// callbacks right now (`with` called from inside it).
    pub fn with<R>(&self, f: impl FnOnce(&mut H) -> R) -> Option<R> {
        self.0.try_borrow_mut().ok().map(|mut handler| f(&mut handler))
    }

    /// Whether the map (or another clone) still holds the handler.
    pub fn is_shared(&self) -> bool {
        Rc::strong_count(&self.0) > 1
    }

    /// What a callback returns when its handler is re-entered (a loop run
    /// from inside [`with`](Self::with)): the handler is not called twice
    /// at once, the callback fails instead.
    fn busy() -> io::Error {
        io::Error::other("a Kept handler was called from inside one of its own callbacks")
    }
}

impl<H> Clone for Kept<H> {
    fn clone(&self) -> Self {
        Kept(Rc::clone(&self.0))
    }
}

/// Names the handler's type and how many handles share it, whatever `H`
/// is, so that `into_inner().expect(..)` works for every handler.
impl<H> fmt::Debug for Kept<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("handler", &std::any::type_name::<H>())
            .field("handles", &Rc::strong_count(&self.0))
            .finish()
    }
}

/// A handler's `handle_error` could not run because the handler is in one of
/// its own callbacks (the loop was run from inside [`Kept::with`]): the
/// channel closes, and says why.
fn re_entered<H>(cx: &mut Ctx<'_>) {
    crate::report::log_info(
        crate::report::Level::Error,
        format_args!(
            "closing channel {:?}: its Kept<{}> handler was called from inside one of its own callbacks \
             (a loop run inside Kept::with)",
            cx.token(),
            std::any::type_name::<H>()
        ),
    );
    cx.close();
}

/// Forwards a callback that returns `io::Result<()>`.
macro_rules! forward {
    ($self:ident, |$h:ident| $call:expr) => {
        match $self.0.try_borrow_mut() {
            Ok(mut $h) => $call,
            Err(_) => Err(Kept::<H>::busy()),
        }
    };
}

/// Forwards a predicate; a busy handler wants nothing this time, and the
/// map asks it again before its next wait.
macro_rules! ask {
    ($self:ident, |$h:ident| $call:expr) => {
        $self.0.try_borrow().map(|$h| $call).unwrap_or_else(|_| {
            crate::map::predicate_unanswered();
            false
        })
    };
}

/// Forwards `handle_error`; a busy handler cannot take it (see
/// [`re_entered`]).
macro_rules! report {
    ($self:ident, $cx:ident, |$h:ident| $call:expr) => {
        match $self.0.try_borrow_mut() {
            Ok(mut $h) => $call,
            Err(_) => re_entered::<H>($cx),
        }
    };
}

/// A callback that returns nothing could not run because the handler is in
/// one of its own callbacks (a channel it serves closed from inside
/// another's callback, a shutdown begun there, a loop run inside
/// [`Kept::with`]): it is not called twice at once, and the report says
/// what it missed, so that a close or a failed connect is not lost without
/// a word.
fn not_told<H>(cx: &Ctx<'_>, missed: fmt::Arguments<'_>) {
    crate::report::log_info(
        crate::report::Level::Error,
        format_args!(
            "channel {:?}: {missed} not called: its Kept<{}> handler was busy in one of its own callbacks",
            cx.token(),
            std::any::type_name::<H>()
        ),
    );
}

/// Forwards a callback that returns nothing; a busy handler misses it, and
/// the report says so (see [`not_told`]).
macro_rules! tell {
    ($self:ident, $cx:ident, $missed:expr, |$h:ident| $call:expr) => {
        match $self.0.try_borrow_mut() {
            Ok(mut $h) => $call,
            Err(_) => not_told::<H>($cx, $missed),
        }
    };
}

impl<T: Transport, H: StreamHandler<T>> StreamHandler<T> for Kept<H> {
    fn readable(&self, ch: &T) -> bool {
        ask!(self, |h| h.readable(ch))
    }
    fn writable(&self, ch: &T) -> bool {
        ask!(self, |h| h.writable(ch))
    }
    fn handle_connect(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_connect(ch, cx))
    }
    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        match self.0.try_borrow_mut() {
            Ok(mut h) => h.handle_connect_failed(error, cx),
            Err(_) => not_told::<H>(cx, format_args!("handle_connect_failed ({error})")),
        }
    }
    fn handle_read(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_read(ch, cx))
    }
    fn handle_write(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_write(ch, cx))
    }
    fn handle_expt(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_expt(ch, cx))
    }
    fn handle_timeout(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_timeout(ch, cx))
    }
    fn handle_close(&mut self, ch: &mut T, cx: &mut Ctx<'_>) {
        tell!(self, cx, format_args!("handle_close"), |h| h.handle_close(ch, cx))
    }
    fn handle_error(&mut self, ch: &mut T, error: io::Error, cx: &mut Ctx<'_>) {
        report!(self, cx, |h| h.handle_error(ch, error, cx))
    }
}

impl<H: AcceptHandler> AcceptHandler for Kept<H> {
    fn readable(&self, ch: &Channel<Listening>) -> bool {
        ask!(self, |h| h.readable(ch))
    }
    fn handle_accept(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_accept(ch, cx))
    }
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        forward!(self, |h| h.handle_accepted(conn, peer, cx))
    }
    fn handle_timeout(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
        forward!(self, |h| h.handle_timeout(ch, cx))
    }
    fn handle_close(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) {
        tell!(self, cx, format_args!("handle_close"), |h| h.handle_close(ch, cx))
    }
    fn handle_error(&mut self, ch: &mut Channel<Listening>, error: io::Error, cx: &mut Ctx<'_>) {
        report!(self, cx, |h| h.handle_error(ch, error, cx))
    }
}

/// The forwarding impl of the two handler traits with the same callbacks on
/// a channel with no peer stream ([`FileHandler`], [`DatagramHandler`]):
/// both predicates, read, write, timeout, close and error, on a `$ch`.
macro_rules! forward_descriptor_handler {
    ([$($generics:tt)*] $handler:path, $ch:ty) => {
        impl<$($generics)*> $handler for Kept<H> {
            fn readable(&self, ch: &$ch) -> bool {
                ask!(self, |h| h.readable(ch))
            }
            fn writable(&self, ch: &$ch) -> bool {
                ask!(self, |h| h.writable(ch))
            }
            fn handle_read(&mut self, ch: &mut $ch, cx: &mut Ctx<'_>) -> io::Result<()> {
                forward!(self, |h| h.handle_read(ch, cx))
            }
            fn handle_write(&mut self, ch: &mut $ch, cx: &mut Ctx<'_>) -> io::Result<()> {
                forward!(self, |h| h.handle_write(ch, cx))
            }
            fn handle_timeout(&mut self, ch: &mut $ch, cx: &mut Ctx<'_>) -> io::Result<()> {
                forward!(self, |h| h.handle_timeout(ch, cx))
            }
            fn handle_close(&mut self, ch: &mut $ch, cx: &mut Ctx<'_>) {
                tell!(self, cx, format_args!("handle_close"), |h| h.handle_close(ch, cx))
            }
            fn handle_error(&mut self, ch: &mut $ch, error: io::Error, cx: &mut Ctx<'_>) {
                report!(self, cx, |h| h.handle_error(ch, error, cx))
            }
        }
    };
}

forward_descriptor_handler!([H: FileHandler] FileHandler, Channel<FileFd>);
forward_descriptor_handler!([R: DatagramRole, H: DatagramHandler<R>] DatagramHandler<R>, Channel<R>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_comes_back_only_when_no_clone_is_left() {
        let kept = Kept::new(5);
        let clone = kept.clone();
        assert!(kept.is_shared());
        let kept = kept.into_inner().unwrap_err();
        assert_eq!(clone.with(|n| *n += 1), Some(()));
        drop(clone);
        assert!(!kept.is_shared());
        assert_eq!(kept.into_inner().unwrap(), 6);
    }

    #[test]
    fn with_inside_with_is_refused_not_a_panic() {
        let kept = Kept::new(0);
        let inner = kept.clone();
        assert_eq!(kept.with(|_| inner.with(|_| ())), Some(None));
    }
}
