//! Layer 5: the byte stream under [`Buffered`](crate::Buffered) and
//! [`AsyncChat`](crate::AsyncChat): the socket itself, or a rustls session
//! over it. [`Slot`] is the one field those transports carry for it; every
//! send, receive and shutdown of theirs goes through it.
//!
//! Without the `tls` feature a `Slot` is empty and each method is the
//! channel's own call, inlined: the plaintext build pays nothing. With it,
//! a plaintext stream pays one null check per call.

use std::io;
use std::net::Shutdown;

use crate::channel::{Channel, Connected, Connecting};
use crate::readiness::{Interest, Readiness};

/// The TLS session of a stream, if it has one. Moves unchanged with the rest
/// of a transport when its connect (or handshake) completes.
#[derive(Default)]
pub(crate) struct Slot {
    #[cfg(feature = "tls")]
    session: Option<Box<engine::Session>>,
}

impl Slot {
    /// Receives plaintext, as [`Channel::recv`].
    #[inline]
    pub fn recv(&mut self, ch: &mut Channel<Connected>, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            return s.recv(ch, buf);
        }
        ch.recv(buf)
    }

    /// Sends plaintext, as [`Channel::send`]: how much was taken, `Ok(0)`
    /// when nothing could be (a full socket, or TLS records still waiting
    /// for it).
    #[inline]
    pub fn send(&mut self, ch: &mut Channel<Connected>, data: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            return s.send(ch, data);
        }
        ch.send(data)
    }

    /// Writes TLS records already made (alerts, tickets, the rest of
    /// earlier sends) as far as the socket takes them.
    #[inline]
    pub fn flush(&mut self, ch: &mut Channel<Connected>) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            return s.flush(ch);
        }
        let _ = ch;
        Ok(())
    }

    /// Whether TLS records wait for the socket: the stream is not done
    /// sending even with its own queue empty.
    #[inline]
    pub fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref() {
            return s.conn.wants_write();
        }
        false
    }

    /// Whether input was received and decrypted but not yet handed out, or
    /// the peer's `close_notify` not yet reported: the socket will not say
    /// readable for it again, so the loop must read on without waiting.
    #[inline]
    pub fn has_buffered_input(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref() {
            return s.buffered_input;
        }
        false
    }

    /// Shuts down the sending side: for TLS, `close_notify` first.
    pub fn shutdown_write(&mut self, ch: &mut Channel<Connected>) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            s.close_notify(ch)?;
        }
        ch.shutdown(Shutdown::Write)
    }

    /// The stream is being closed: a TLS session sends its `close_notify`
    /// (once, as far as the socket takes it) so that the peer can tell the
    /// end from a truncation.
    #[inline]
    pub fn closing(&mut self, ch: &mut Channel<Connected>) {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            let _ = s.close_notify(ch);
        }
        let _ = ch;
    }

    /// One step of the connect (and, for TLS, the handshake) of a pending
    /// stream: `Ok(true)` once it is ready for application data.
    pub fn advance(&mut self, ch: &Channel<Connecting>, readiness: Readiness) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref_mut() {
            return s.advance(ch, readiness);
        }
        let _ = readiness;
        ch.connect_result().map(|()| true)
    }

    /// The error of a pending stream whose deadline passed.
    pub fn timed_out(&self) -> io::Error {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref() {
            return s.timed_out();
        }
        io::ErrorKind::TimedOut.into()
    }

    /// What a pending stream waits for.
    pub fn pending_interest(&self) -> Interest {
        #[cfg(feature = "tls")]
        if let Some(s) = self.session.as_deref() {
            return s.interest();
        }
        Interest::WRITE
    }
}

#[cfg(feature = "tls")]
pub use engine::TRUNCATED;

#[cfg(feature = "tls")]
mod engine {
    use std::io::{self, Read, Write};
    use std::os::fd::{AsFd, BorrowedFd};

    use rustix::io::Errno;
    use rustix::net::{RecvFlags, SendFlags};
    use rustls::Connection;

    use crate::channel::{Channel, Connected, Connecting, Observed};
    use crate::error::is_disconnect;
    use crate::readiness::{Interest, Readiness};
    use crate::tls::session::Slot;

    /// What a peer's end of stream without `close_notify` is reported as,
    /// inside an `io::Error` of kind `UnexpectedEof`.
    pub const TRUNCATED: &str = "TLS stream truncated: the peer closed the connection without close_notify";

    /// A rustls connection and what the loop needs to know about it.
    pub(crate) struct Session {
        pub(crate) conn: Connection,
        /// The socket's connect is known to have completed (a server's
        /// accepted stream from the start, a client's after its first
        /// readiness).
        connected: bool,
        /// See [`Slot::has_buffered_input`].
        pub(super) buffered_input: bool,
        /// `close_notify` was queued: it is sent once.
        closed: bool,
    }

    impl Slot {
        /// A slot holding `conn`, still handshaking.
        pub(crate) fn handshake(conn: Connection, connected: bool) -> Slot {
            Slot {
                session: Some(Box::new(Session { conn, connected, buffered_input: false, closed: false })),
            }
        }

        /// The rustls connection, if the stream has one.
        pub(crate) fn connection(&self) -> Option<&Connection> {
            self.session.as_deref().map(|s| &s.conn)
        }

        /// The same, mutably.
        pub(crate) fn connection_mut(&mut self) -> Option<&mut Connection> {
            self.session.as_deref_mut().map(|s| &mut s.conn)
        }
    }

    /// A socket whose connect is not yet known to be complete, read and
    /// written during the handshake, before the loop makes it `Connected`.
    struct Wire<'a>(BorrowedFd<'a>);

    impl Read for Wire<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                match rustix::net::recv(self.0, &mut *buf, RecvFlags::empty()) {
                    Ok((n, _)) => return Ok(n),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    impl Write for Wire<'_> {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            loop {
                match rustix::net::send(self.0, data, SendFlags::NOSIGNAL) {
                    Ok(n) => return Ok(n),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A TLS error as an `io::Error` the handler can read in one line.
    fn protocol_error(during: &str, e: rustls::Error) -> io::Error {
        let hint = match e {
            // The first byte was not a TLS record type: plain text or noise.
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                " (the peer does not speak TLS: plain text or noise)"
            }
            _ => "",
        };
        io::Error::new(io::ErrorKind::InvalidData, format!("TLS {during} failed: {e}{hint}"))
    }

    /// Writes what rustls has to send; would-block leaves the rest queued.
    fn write_out(conn: &mut Connection, wr: &mut dyn Write) -> io::Result<()> {
        while conn.wants_write() {
            match conn.write_tls(wr) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    impl Session {
        pub(super) fn timed_out(&self) -> io::Error {
            let what = if self.connected { "TLS handshake" } else { "connect" };
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} timed out: not complete by the channel's deadline or within its idle timeout"
                ),
            )
        }

        pub(super) fn interest(&self) -> Interest {
            if !self.connected {
                return Interest::WRITE;
            }
            Interest::from_predicates(self.conn.wants_read(), self.conn.wants_write(), true)
        }

        /// Drives the connect and the handshake as far as the socket allows:
        /// reads what has come, then writes what rustls made of it.
        pub(super) fn advance(&mut self, ch: &Channel<Connecting>, readiness: Readiness) -> io::Result<bool> {
            if !self.connected {
                ch.connect_result()?;
                self.connected = true;
            }
            let mut wire = Wire(ch.as_fd());
            let mut ended = false;
            while self.conn.is_handshaking() && self.conn.wants_read() {
                match self.conn.read_tls(&mut wire) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_disconnect(&e) => {
                        ended = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
                if let Err(e) = self.conn.process_new_packets() {
                    // The alert rustls queued tells the peer why.
                    let _ = write_out(&mut self.conn, &mut wire);
                    return Err(protocol_error("handshake", e));
                }
            }
            let wrote = write_out(&mut self.conn, &mut wire);
            if !self.conn.is_handshaking() {
                // Complete. A peer that already left (after its Finished,
                // or its close_notify) is the established stream's to find.
                self.note_input();
                return Ok(true);
            }
            if ended || wrote.as_ref().is_err_and(is_disconnect) {
                let what = if readiness.is_error() { "reset" } else { "closed" };
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("TLS handshake failed: the peer {what} the connection before it completed"),
                ));
            }
            wrote.map(|()| false)
        }

        /// Notes whether plaintext (or the peer's `close_notify`) waits to be
        /// handed out.
        fn note_input(&mut self) {
            self.buffered_input = match self.conn.process_new_packets() {
                Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
                // Reported by the next receive, which processes again.
                Err(_) => true,
            };
        }

        pub(super) fn recv(&mut self, ch: &mut Channel<Connected>, buf: &mut [u8]) -> io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            loop {
                match self.conn.reader().read(buf) {
                    Ok(0) => {
                        // close_notify: the peer's clean end of stream.
                        self.buffered_input = false;
                        ch.observe(Observed::PEER_GONE | Observed::EOF);
                        return Ok(0);
                    }
                    Ok(n) => {
                        ch.observe(Observed::READ_PROGRESS);
                        self.note_input();
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.buffered_input = false;
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, TRUNCATED));
                    }
                    Err(e) => return Err(e),
                }
                self.buffered_input = false;
                match self.conn.read_tls(ch) {
                    // The end (or a disconnection): the reader says which.
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                    Err(e) => return Err(e),
                }
                if let Err(e) = self.conn.process_new_packets() {
                    let _ = self.flush(ch);
                    return Err(protocol_error("record processing", e));
                }
                // Key updates and alerts rustls answers on its own.
                self.flush(ch)?;
            }
        }

        pub(super) fn send(&mut self, ch: &mut Channel<Connected>, data: &[u8]) -> io::Result<usize> {
            self.flush(ch)?;
            if self.conn.wants_write() || ch.observed().has(Observed::PEER_GONE) {
                return Ok(0);
            }
            let n = self.conn.writer().write(data)?;
            self.flush(ch)?;
            Ok(n)
        }

        pub(super) fn flush(&mut self, ch: &mut Channel<Connected>) -> io::Result<()> {
            match write_out(&mut self.conn, ch) {
                // The channel noted the peer gone; the loop closes.
                Err(e) if is_disconnect(&e) => Ok(()),
                other => other,
            }
        }

        pub(super) fn close_notify(&mut self, ch: &mut Channel<Connected>) -> io::Result<()> {
            if !self.closed && !self.conn.is_handshaking() {
                self.closed = true;
                self.conn.send_close_notify();
            }
            self.flush(ch)
        }
    }
}
