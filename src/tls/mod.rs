//! TLS over [rustls] (feature `tls`): a stream whose handshake is a role of
//! its own.
//!
//! A TLS stream starts as a [`Handshaking`] transport, made by
//! [`Handshaking::server`] from an accepted stream or by
//! [`Handshaking::client`] from a connecting one. It has no `send` or `push`:
//! application data before the handshake completed does not compile. Insert
//! it into a map with the handler of its established form (a
//! `StreamHandler<Buffered>` or a `ChatHandler`); the loop runs the
//! connect and the handshake as the socket allows, then calls the handler's
//! `handle_connect` once, with the established [`Buffered`] or
//! [`AsyncChat`], whose [`tls`](AsyncChat::tls) gives the negotiated ALPN
//! protocol, the peer's certificates and everything else rustls knows. From
//! then on the handler reads and writes plaintext, exactly as over a plain
//! socket: an HTTP or RESP handler runs unchanged.
//!
//! A handshake that fails (plain text or noise on the port, a certificate
//! refused, a peer that left) goes to `handle_connect_failed` with an error
//! saying why, and the channel closes; a handshake still running when the
//! channel's deadline or idle timeout passes gets `handle_connect_failed`
//! with `TimedOut`.
//!
//! Closing an established stream sends `close_notify`. A peer whose stream
//! ends without one is reported as a truncation: the read fails with an
//! `io::Error` of kind `UnexpectedEof` (whose message is [`TRUNCATED`]),
//! which the default `handle_error` reports before closing; a clean end is a
//! read of 0, as on a plain socket.
//!
//! rolecore does not hide rustls: build its `ServerConfig` or
//! `ClientConfig` (certificates, ALPN, client authentication, resumption)
//! with the [`rustls`] this module re-exports, and pass it in an `Arc`.
//! The crypto provider is ring, which builds from crates.io with only a C
//! compiler (aws-lc-rs also needs cmake, and NASM on some targets).

use std::fmt;
use std::io;
use std::sync::Arc;

pub use rustls;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::buffered::Buffered;
use crate::channel::{Connected, Connecting};
use crate::chat::AsyncChat;
use crate::transport::Transport;

pub(crate) mod session;

use session::Slot;
pub use session::TRUNCATED;

/// A TLS stream whose handshake has not completed: the pending form of the
/// transport `T` ([`Buffered`] or [`AsyncChat`]) it becomes.
///
/// It can only be inserted into a map (with a handler for `T`); the loop
/// completes the handshake and hands the handler the established `T` in
/// `handle_connect`. It has no way to send application data: calling
/// [`send`](Self::send) or [`push`](Self::push) on it fails to compile
/// with a message that says where to send instead.
///
/// # Examples
///
/// A server: every accepted connection is handshaken before its handler
/// sees it.
///
/// ```no_run
/// use std::io;
/// use std::sync::Arc;
/// use rolecore::tls::{Handshaking, rustls};
/// use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};
///
/// struct Echo;
///
/// impl StreamHandler<Buffered> for Echo {
///     fn handle_connect(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
///         let alpn = ch.tls().and_then(|tls| tls.alpn_protocol()).map(<[u8]>::to_vec);
///         println!("handshake done, ALPN {alpn:?}");
///         Ok(())
///     }
///     fn handle_read(&mut self, ch: &mut Buffered, cx: &mut Ctx<'_>) -> io::Result<()> {
///         let buf = cx.buffer();
///         let n = ch.recv(buf)?; // plaintext
///         ch.send(&buf[..n])
///     }
/// }
///
/// struct Server(Arc<rustls::ServerConfig>);
///
/// impl AcceptHandler for Server {
///     fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
///         cx.insert(Handshaking::server(Buffered::new(conn), self.0.clone())?, Echo)?;
///         Ok(())
///     }
/// }
///
/// fn serve(config: Arc<rustls::ServerConfig>) -> io::Result<()> {
///     let mut map = rolecore::Map::new()?;
///     map.insert(Channel::tcp_v4()?.bind("127.0.0.1:8443")?.listen(128)?, Server(config))?;
///     map.run(rolecore::LoopOptions::default())
/// }
/// # let _ = serve;
/// ```
pub struct Handshaking<T: Transport = Buffered>(pub(crate) T::Pending);

/// What would let a [`Handshaking`] stream send application data: no type
/// implements it. It exists so that trying reads as a sentence saying what
/// to do instead.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is still handshaking: a TLS stream cannot send application data before its handshake completed",
    label = "a handshaking stream has no `send` or `push`",
    note = "insert it into a Map with the handler of its established form (`StreamHandler<Buffered>` or a \
            `ChatHandler`): the loop runs the handshake and calls `handle_connect` with the established \
            transport once it completed; send or push there, or later"
)]
pub trait Established: sealed::Sealed {
    /// Sends on the established stream.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// Queues on the established stream.
    fn push(&mut self, data: &[u8]) -> io::Result<()>;
}

mod sealed {
    pub trait Sealed {}
}

impl<T: Transport> Handshaking<T> {
    /// Does not compile: see [`Established`].
    pub fn send(&mut self, data: &[u8]) -> io::Result<()>
    where
        Self: Established,
    {
        Established::send(self, data)
    }

    /// Does not compile: see [`Established`].
    pub fn push(&mut self, data: &[u8]) -> io::Result<()>
    where
        Self: Established,
    {
        Established::push(self, data)
    }
}

fn config_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS configuration refused: {e}"))
}

fn already_used(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a TLS stream must start fresh, on the side its role says (server: connected, client: \
             connecting): this {what} has output queued, a TLS session already, or a session of the other side; \
             queue output in handle_connect, once the handshake completed"
        ),
    )
}

/// A transport that can carry a TLS session: [`Buffered`] and [`AsyncChat`],
/// connected (a server's side, [`Handshaking::server`]) or connecting (a
/// client's, [`Handshaking::client`]). Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a TLS session",
    label = "TLS runs under a Buffered or an AsyncChat",
    note = "wrap the channel first: `Handshaking::server(Buffered::new(conn), config)`, or \
            `AsyncChat::new(conn, terminator)`; a client wraps its Channel<Connecting> the same way"
)]
pub trait Secure: sealed::Sealed + Sized {
    /// The transport once the handshake completed.
    type Established: Transport;
    /// Starts the handshake with `conn` (rustls's side of it).
    #[doc(hidden)]
    fn start(self, conn: Connection) -> io::Result<Handshaking<Self::Established>>;
}

/// A [`Secure`] transport over an accepted connection (a
/// `Channel<Connected>`): what [`Handshaking::server`] takes. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot start the server side of a TLS stream",
    label = "a TLS server starts over a Buffered or an AsyncChat of an accepted Channel<Connected>",
    note = "a server wraps the connection it accepted: `Handshaking::server(Buffered::new(conn), config)` \
            with `conn: Channel<Connected>`; over a Channel<Connecting>, start the client side with \
            `Handshaking::client`"
)]
pub trait ServerSide: Secure {}

/// A [`Secure`] transport over a connecting socket (a
/// `Channel<Connecting>`): what [`Handshaking::client`] takes. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot start the client side of a TLS stream",
    label = "a TLS client starts over a Buffered or an AsyncChat of a Channel<Connecting>",
    note = "a client wraps the socket it is connecting: \
            `Handshaking::client(Buffered::new(Channel::tcp_v4()?.connect(addr)?), config, name)`; over an \
            accepted Channel<Connected>, start the server side with `Handshaking::server`"
)]
pub trait ClientSide: Secure {}

impl<T: Transport> Handshaking<T> {
    /// The server side of a TLS stream over an accepted connection: a
    /// [`Buffered`] or [`AsyncChat`] over it, configured (limits, budget,
    /// terminator) and with nothing queued yet. Over a connecting socket it
    /// does not compile ([`ServerSide`]).
    ///
    /// Fails with `InvalidInput` if the transport has output queued or a
    /// session already, or rustls refuses the configuration.
    pub fn server<S: Secure<Established = T> + ServerSide>(
        transport: S,
        config: Arc<ServerConfig>,
    ) -> io::Result<Self> {
        let conn = ServerConnection::new(config).map_err(config_error)?;
        transport.start(Connection::Server(conn))
    }

    /// The client side of a TLS stream over a connecting socket (a
    /// [`Buffered`] or [`AsyncChat`] over a `Channel<Connecting>`, nothing
    /// queued), which must present a certificate valid for `server_name`.
    /// Over an accepted connection it does not compile ([`ClientSide`]).
    ///
    /// Fails with `InvalidInput` if the transport has output queued or a
    /// session already, or rustls refuses the configuration.
    pub fn client<S: Secure<Established = T> + ClientSide>(
        transport: S,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Self> {
        let conn = ClientConnection::new(config, server_name).map_err(config_error)?;
        transport.start(Connection::Client(conn))
    }
}

/// [`Secure`] for one queued transport, both roles, and its session's
/// accessors.
macro_rules! secure_transport {
    ($ty:ident, fresh: |$t:ident| $fresh:expr, $name:literal) => {
        impl sealed::Sealed for $ty<Connected> {}
        impl sealed::Sealed for $ty<Connecting> {}
        impl ServerSide for $ty<Connected> {}
        impl ClientSide for $ty<Connecting> {}

        impl Secure for $ty<Connected> {
            type Established = $ty<Connected>;
            fn start(self, conn: Connection) -> io::Result<Handshaking<Self>> {
                let fresh = {
                    let $t = &self;
                    $fresh
                };
                if !fresh || self.tls.connection().is_some() || matches!(conn, Connection::Client(_)) {
                    return Err(already_used($name));
                }
                let mut pending = self.into_pending();
                pending.tls = Slot::handshake(conn, true);
                Ok(Handshaking(pending))
            }
        }

        impl Secure for $ty<Connecting> {
            type Established = $ty<Connected>;
            fn start(mut self, conn: Connection) -> io::Result<Handshaking<$ty<Connected>>> {
                let fresh = {
                    let $t = &self;
                    $fresh
                };
                if !fresh || self.tls.connection().is_some() || matches!(conn, Connection::Server(_)) {
                    return Err(already_used($name));
                }
                self.tls = Slot::handshake(conn, false);
                Ok(Handshaking(self))
            }
        }

        impl $ty<Connected> {
            /// The TLS session of this stream, if it is one (see
            /// [`tls`](crate::tls)): the negotiated protocol version, ALPN
            /// protocol, cipher suite, the peer's certificates. `None` on a
            /// plaintext stream.
            pub fn tls(&self) -> Option<&Connection> {
                self.tls.connection()
            }

            /// The TLS session, mutably: for what rustls offers beyond
            /// reading and writing (key export, a key update). Data written
            /// through it directly would overtake the queue. Do not end the
            /// session through it either: after its `send_close_notify`, rustls
            /// still takes this stream's sends, and the peer, which stops
            /// reading at the `close_notify`, never sees them. End the stream
            /// with `Ctx::close` (or `close_when_done`), which sends the
            /// `close_notify` after the queue.
            pub fn tls_mut(&mut self) -> Option<&mut Connection> {
                self.tls.connection_mut()
            }
        }
    };
}

secure_transport!(Buffered, fresh: |b| b.queued() == 0, "Buffered");
secure_transport!(AsyncChat, fresh: |c| !c.has_output() && !c.is_closing(), "AsyncChat");

impl<T: Transport> fmt::Debug for Handshaking<T>
where
    T::Pending: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handshaking").field(&self.0).finish()
    }
}
