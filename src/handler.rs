//! Layer 6: the dispatcher traits users implement.
//!
//! asyncore had one `dispatcher` class with every `handle_*` method, and
//! flags (`accepting`, `connected`, `connecting`) to decide at run time which
//! ones made sense. rolecore has one trait per kind of channel, and each method
//! exists only where its event can happen:
//!
//! | trait | channel | events |
//! |---|---|---|
//! | [`StreamHandler<T>`] | [`Channel<Connecting>`](crate::Connecting)/[`Channel<Connected>`], or [`Buffered`](crate::Buffered) | connect, connect failed, read, write, expt, close, error |
//! | [`AcceptHandler`] | [`Channel<Listening>`] | accept/accepted, close, error |
//! | [`FileHandler`] | [`Channel<FileFd>`] | read, write, close, error |
//! | [`DatagramHandler<R>`] | [`Channel<Datagram>`](crate::Datagram) / [`Channel<ConnectedDatagram>`](crate::ConnectedDatagram) | read, write, error |
//!
//! Every callback gets the channel in its right type and a [`Ctx`] through
//! which it can add channels to the loop, close its own channel, close
//! another, or stop the loop.
//!
//! # Errors
//!
//! A callback returns `io::Result<()>`. What the loop does with an `Err`:
//!
//! - `WouldBlock` from the channel's own I/O in that callback: nothing. A
//!   spurious wake-up is not an error (D22), so `ch.recv(&mut buf)?` is
//!   always safe. Another descriptor's `WouldBlock` (a write to a full
//!   socket of your own, returned with `?`) goes to `handle_error`: taken
//!   for a spurious wake-up, what that write did not take would be lost
//!   without a word. A listener's callbacks are the exception: they do the
//!   first I/O of the connections they accept, and any `WouldBlock` of
//!   theirs is nothing.
//! - a disconnection (see [`is_disconnect`](crate::is_disconnect)):
//!   `handle_close`, on every backend (D19).
//! - anything else: `handle_error`, whose default reports one line and closes
//!   the channel; the loop keeps running.
//!
//! # Interest
//!
//! `readable()` and `writable()` are asked after every callback into the
//! handler, and when a program touches the handler through the map (see
//! [`Map::handler_mut`](crate::Map::handler_mut)). If a predicate depends on
//! state outside the handler, call [`Ctx::refresh`] or
//! [`Map::refresh`](crate::Map::refresh) when that state changes, or run the
//! loop with [`Refresh::EveryIteration`](crate::Refresh::EveryIteration).

use std::io;

use crate::address::Address;
use crate::channel::{Channel, Connected, DatagramRole, FileFd, Listening};
use crate::map::Ctx;
use crate::report::{Level, log_info};
use crate::transport::Transport;

/// The handler of a stream: asyncore's `dispatcher` for a connected or
/// connecting socket.
///
/// Only [`handle_read`](Self::handle_read) is required: a stream that never
/// reads would spin on level-triggered readiness, so there is no silent
/// default for it.
///
/// `T` is what the callbacks are handed: [`Channel<Connected>`] (the default)
/// for raw sends that may be partial, or [`Buffered`](crate::Buffered) for sends that queue
/// what the socket cannot take yet, as asyncore's `dispatcher_with_send`.
///
/// # Examples
///
/// ```
/// use std::io;
/// use rolecore::{Buffered, Connected, Ctx, StreamHandler};
///
/// struct Echo;
///
/// impl StreamHandler<Buffered<Connected>> for Echo {
///     fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
///         let mut buf = [0u8; 8192];
///         let n = ch.recv(&mut buf)?; // 0: the peer closed, the loop calls handle_close
///         ch.send(&buf[..n])          // whatever the socket cannot take is queued
///     }
/// }
///
/// # fn main() -> io::Result<()> {
/// use std::io::{Read, Write};
/// use rolecore::{Channel, LoopOptions, Map};
///
/// let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
/// let mut map = Map::new()?;
/// map.insert(Buffered::new(Channel::try_from(ours)?), Echo)?;
/// theirs.write_all(b"ping")?;
/// theirs.shutdown(std::net::Shutdown::Write)?;
/// map.run(LoopOptions::default())?; // until the peer's end of stream empties the map
/// let mut echoed = String::new();
/// theirs.read_to_string(&mut echoed)?;
/// assert_eq!(echoed, "ping");
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stream handler for `{T}`",
    label = "needs `impl StreamHandler<{T}> for {Self}`",
    note = "streams (Connecting/Connected channels, raw or Buffered) take a StreamHandler; an \
            AsyncChat's handler implements ChatHandler instead; \
            listeners take an AcceptHandler; files take a FileHandler"
)]
pub trait StreamHandler<T: Transport = Channel<Connected>>: 'static {
    /// Whether to watch for incoming data. Default: always.
    fn readable(&self, ch: &T) -> bool {
        let _ = ch;
        true
    }

    /// Whether to watch for room to write. Default: while output is queued.
    /// (asyncore's default, always, made the loop spin, P4.)
    fn writable(&self, ch: &T) -> bool {
        ch.has_queued_output()
    }

    /// The connect completed. The channel is already [`Connected`] (D21), and
    /// this runs before any read or write event of the channel.
    fn handle_connect(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = (ch, cx);
        Ok(())
    }

    /// The connect failed (refused, unreachable, timed out), on any backend.
    /// The channel is closed after this; `handle_close` is not called.
    /// Default: report it in one line.
    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        let _ = cx;
        log_info(Level::Error, format_args!("connect failed for {}: {error}", std::any::type_name::<Self>()));
    }

    /// Data arrived, or the peer closed (then `recv` returns 0 and the loop
    /// calls `handle_close` after this returns).
    fn handle_read(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// The socket can take more data. Default: send queued output.
    fn handle_write(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = cx;
        ch.send_queued()
    }

    /// Out-of-band data arrived. Default: read and drop it, so that an
    /// unwanted urgent byte cannot make the loop spin (P5).
    fn handle_expt(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = cx;
        log_info(Level::Warning, format_args!("unhandled incoming priority event"));
        match crate::transport::raw_channel(ch).recv_oob(&mut [0u8; 1]) {
            // EINVAL: no urgent byte is pending any more (a later one pushed
            // it inline, or the wake-up was spurious): nothing to discard.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(()),
            result => result.map(drop),
        }
    }

    /// The channel's deadline or idle timeout passed (see
    /// [`Ctx::set_idle_timeout`]). Default: `handle_close`, then close: an
    /// idle peer is treated as gone.
    fn handle_timeout(&mut self, ch: &mut T, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.handle_close(ch, cx);
        cx.close();
        Ok(())
    }

    /// The peer closed the connection or it broke. Called at most once; the
    /// channel is closed when this returns. Not called when the handler
    /// closed the channel itself with [`Ctx::close`].
    ///
    /// A hang-up closes a channel that does not want to read at that moment
    /// (`readable()` false, or back-pressure) without waiting for it to read
    /// what the peer sent before leaving (D23). The channel is still open
    /// here: read the rest now if it matters.
    fn handle_close(&mut self, ch: &mut T, cx: &mut Ctx<'_>) {
        let _ = (ch, cx);
    }

    /// A callback failed with an error that is not a disconnection.
    /// Default: report it in one line, then `handle_close`, then close, as
    /// asyncore's `handle_error`.
    fn handle_error(&mut self, ch: &mut T, error: io::Error, cx: &mut Ctx<'_>) {
        report_uncaptured::<Self>(ch.channel(), &error);
        self.handle_close(ch, cx);
        cx.close();
    }
}

/// The handler of a listening socket: asyncore's `dispatcher` after
/// `listen()`.
///
/// # Examples
///
/// ```
/// use std::io;
/// use rolecore::{AcceptHandler, Address, Channel, Connected, Ctx};
///
/// struct Refuser;
///
/// impl AcceptHandler for Refuser {
///     fn handle_accepted(&mut self, conn: Channel<Connected>, peer: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
///         println!("turning away {peer}");
///         drop(conn); // closes it
///         cx.close(); // and stop listening
///         Ok(())
///     }
/// }
///
/// # fn main() -> io::Result<()> {
/// use rolecore::{LoopOptions, Map};
///
/// let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
/// let addr = listener.local_addr()?.inet().unwrap();
/// let mut map = Map::new()?;
/// map.insert(listener, Refuser)?;
/// let client = std::net::TcpStream::connect(addr)?;
/// map.run(LoopOptions::default())?; // ends when the listener closed itself
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an accept handler",
    label = "needs `impl AcceptHandler for {Self}`",
    note = "listeners take an AcceptHandler; streams take a StreamHandler; files take a FileHandler"
)]
pub trait AcceptHandler: 'static {
    /// Whether to watch for incoming connections. Default: always.
    fn readable(&self, ch: &Channel<Listening>) -> bool {
        let _ = ch;
        true
    }

    /// A connection is waiting. Default: accept one and pass it to
    /// `handle_accepted`, as asyncore did (one accept per event; the level-
    /// triggered loop comes back for the rest).
    fn handle_accept(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
        match ch.accept()? {
            Some((conn, peer)) => self.handle_accepted(conn, peer, cx),
            None => Ok(()),
        }
    }

    /// A connection was accepted. Typically: `cx.insert(conn, handler)`.
    /// Here `cx.token()` is the listener's token; the connection's is the
    /// one `insert` returns (give *it* an idle timeout).
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()>;

    /// The listener's deadline passed. Default: report it in one line (the
    /// server stops accepting), `handle_close`, then close.
    fn handle_timeout(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) -> io::Result<()> {
        log_info(
            Level::Info,
            format_args!("listener {ch:?} of {} closed by its deadline", std::any::type_name::<Self>()),
        );
        self.handle_close(ch, cx);
        cx.close();
        Ok(())
    }

    /// The listening socket failed. The channel is closed after this.
    fn handle_close(&mut self, ch: &mut Channel<Listening>, cx: &mut Ctx<'_>) {
        let _ = (ch, cx);
    }

    /// A callback failed. Default: report one line, `handle_close`, close.
    fn handle_error(&mut self, ch: &mut Channel<Listening>, error: io::Error, cx: &mut Ctx<'_>) {
        report_uncaptured::<Self>(ch, &error);
        self.handle_close(ch, cx);
        cx.close();
    }
}

/// The handler of a pipe, terminal or file: asyncore's `file_dispatcher`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a file handler",
    label = "needs `impl FileHandler for {Self}`",
    note = "files take a FileHandler; streams take a StreamHandler; listeners take an AcceptHandler"
)]
pub trait FileHandler: 'static {
    /// Whether to watch for data. Default: always.
    fn readable(&self, ch: &Channel<FileFd>) -> bool {
        let _ = ch;
        true
    }

    /// Whether to watch for room to write. Default: never.
    fn writable(&self, ch: &Channel<FileFd>) -> bool {
        let _ = ch;
        false
    }

    /// Data arrived, or the end of file (then `recv` returns 0 and the loop
    /// calls `handle_close`).
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// The descriptor can take more data. Default: report it as unhandled.
    fn handle_write(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = (ch, cx);
        log_info(Level::Warning, format_args!("unhandled write event"));
        Ok(())
    }

    /// The channel's deadline or idle timeout passed. Default:
    /// `handle_close`, then close.
    fn handle_timeout(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.handle_close(ch, cx);
        cx.close();
        Ok(())
    }

    /// The other end closed. Called at most once; the channel is closed after.
    /// As for streams, a hang-up on a file that does not want to read closes
    /// it at once; the descriptor is still open here, to read what is left.
    fn handle_close(&mut self, ch: &mut Channel<FileFd>, cx: &mut Ctx<'_>) {
        let _ = (ch, cx);
    }

    /// A callback failed. Default: report one line, `handle_close`, close.
    fn handle_error(&mut self, ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        report_uncaptured::<Self>(ch, &error);
        self.handle_close(ch, cx);
        cx.close();
    }
}

/// The handler of a datagram socket: UDP or Unix datagrams, unconnected
/// ([`Datagram`](crate::Datagram), the default) or connected to one peer
/// ([`ConnectedDatagram`](crate::ConnectedDatagram)).
///
/// There is no end of stream: `recv` returning 0 is an empty datagram, and
/// readiness never closes the socket. An error pending on the socket (an
/// ICMP "port unreachable" for connected UDP, say) is delivered as a read, so
/// the receive call reports it and it reaches `handle_error`.
///
/// # Examples
///
/// ```
/// use std::io;
/// use rolecore::{Channel, Ctx, Datagram, DatagramHandler};
///
/// /// Answers every datagram with the same bytes.
/// struct UdpEcho;
///
/// impl DatagramHandler for UdpEcho {
///     fn handle_read(&mut self, ch: &mut Channel<Datagram>, _cx: &mut Ctx<'_>) -> io::Result<()> {
///         let mut buf = [0u8; 1500];
///         let (n, from) = ch.recv_from(&mut buf)?;
///         ch.send_to(&buf[..n], &from).map(drop)
///     }
/// }
///
/// # fn main() -> io::Result<()> {
/// let mut map = rolecore::Map::new()?;
/// map.insert(Channel::udp_v4()?.bind("127.0.0.1:0")?, UdpEcho)?;
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a datagram handler for `Channel<{R}>`",
    label = "needs `impl DatagramHandler<{R}> for {Self}`",
    note = "datagram sockets take a DatagramHandler; streams take a StreamHandler; listeners an AcceptHandler"
)]
pub trait DatagramHandler<R: DatagramRole = crate::channel::Datagram>: 'static {
    /// Whether to watch for datagrams. Default: always. A pending error (an
    /// ICMP refusal on a connected datagram socket) still reaches
    /// `handle_read` when this is false: poll and epoll report it whatever
    /// the interest, and only a read clears it.
    fn readable(&self, ch: &Channel<R>) -> bool {
        let _ = ch;
        true
    }

    /// Whether to watch for room to send. Default: never.
    fn writable(&self, ch: &Channel<R>) -> bool {
        let _ = ch;
        false
    }

    /// A datagram (possibly empty) or an error is waiting.
    fn handle_read(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// The socket can take more datagrams. Default: report it as unhandled.
    fn handle_write(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = (ch, cx);
        log_info(Level::Warning, format_args!("unhandled write event"));
        Ok(())
    }

    /// The deadline or idle timeout passed. Default: `handle_close`, close.
    fn handle_timeout(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.handle_close(ch, cx);
        cx.close();
        Ok(())
    }

    /// The socket is being closed by the loop (after an error or a timeout,
    /// with the defaults).
    fn handle_close(&mut self, ch: &mut Channel<R>, cx: &mut Ctx<'_>) {
        let _ = (ch, cx);
    }

    /// A callback failed. Default: report one line, `handle_close`, close.
    fn handle_error(&mut self, ch: &mut Channel<R>, error: io::Error, cx: &mut Ctx<'_>) {
        report_uncaptured::<Self>(ch, &error);
        self.handle_close(ch, cx);
        cx.close();
    }
}

/// asyncore's "uncaptured python exception, closing channel …" line.
fn report_uncaptured<H: ?Sized>(ch: &impl std::fmt::Debug, error: &io::Error) {
    log_info(
        Level::Error,
        format_args!(
            "uncaptured error, closing channel {ch:?} of {}: {error} ({:?})",
            std::any::type_name::<H>(),
            error.kind()
        ),
    );
}
