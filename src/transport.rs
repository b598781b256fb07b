//! Layer 5: what a stream handler is handed. A [`Transport`] is a connected
//! stream channel, raw or with an output queue ([`Buffered`](crate::Buffered),
//! [`AsyncChat`](crate::AsyncChat)); its [`Pending`] form is the same before
//! the connect completed. Both traits are sealed; each transport implements
//! them beside its own type (the queued ones through [`queued_transport`]).

use std::io;

use crate::channel::{Channel, Connected, Connecting};
use crate::readiness::{Interest, Readiness};

pub(crate) mod sealed {
    pub trait Sealed {}

    /// The loop's `&mut` access to a transport's channel (to read what a
    /// callback did, and for the default `handle_expt`). Outside rolecore this
    /// trait cannot be named, and the method takes a proof only rolecore can
    /// make, so it cannot be called, not even through a generic
    /// `T: Transport` (whose bound reaches supertrait methods): a raw send
    /// through it would overtake an `AsyncChat`'s queue.
    pub trait RawChannel {
        fn channel_mut(
            &mut self,
            seal: impl crate::seal::RawProof,
        ) -> &mut crate::channel::Channel<crate::channel::Connected>;
    }
}

/// What a stream handler is handed: a [`Channel<Connected>`], or a
/// [`Buffered`](crate::Buffered) one that queues what the socket cannot take yet. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connected stream: a StreamHandler's callbacks cannot be handed it",
    label = "a StreamHandler is written for a connected stream transport",
    note = "write `impl StreamHandler for H` (callbacks get `Channel<Connected>`), \
            `impl StreamHandler<Buffered<Connected>> for H`, or `impl ChatHandler for H` for an \
            AsyncChat; a Listening channel takes an AcceptHandler, a FileFd channel a FileHandler, \
            a datagram socket a DatagramHandler; a connecting stream takes the StreamHandler of \
            its connected form, and the loop makes it Connected before `handle_connect`"
)]
pub trait Transport: sealed::Sealed + sealed::RawChannel + 'static {
    /// The same transport before its connect has completed.
    type Pending: Pending<Ready = Self>;

    /// The connected channel underneath.
    fn channel(&self) -> &Channel<Connected>;

    /// Whether output is queued and waiting for the socket to take it; the
    /// default `writable()` of a [`StreamHandler`](crate::StreamHandler).
    fn has_queued_output(&self) -> bool;

    /// Makes one attempt to send queued output; the default `handle_write`.
    fn send_queued(&mut self) -> io::Result<()>;

    /// Whether queued output went past the high watermark and has not yet
    /// drained below the low one: the loop stops reading the channel until
    /// it has, whatever `readable()` says (back-pressure).
    fn is_backlogged(&self) -> bool {
        false
    }

    /// Whether input is held above the socket (a TLS session's decrypted
    /// records): the socket will not report it readable, so the loop reads
    /// on while the handler is readable.
    #[doc(hidden)]
    fn has_buffered_input(&self) -> bool {
        false
    }

    /// The loop is about to close the stream: a TLS session sends its
    /// `close_notify`. Only the loop can call it (its proof argument).
    #[doc(hidden)]
    fn closing(&mut self, seal: impl crate::seal::RawProof) {
        let _ = seal;
    }
}

/// A transport's channel, for the loop: [`sealed::RawChannel::channel_mut`]
/// with the proof.
#[inline(always)]
pub(crate) fn raw_channel<T: sealed::RawChannel>(t: &mut T) -> &mut Channel<Connected> {
    t.channel_mut(crate::seal::Seal(()))
}

/// A [`Transport`] whose connect is in progress. Sealed.
pub trait Pending: sealed::Sealed + 'static {
    /// What it becomes once connected.
    type Ready;

    /// The connecting channel underneath.
    fn channel(&self) -> &Channel<Connecting>;

    /// Becomes connected. Only the loop can call it (it alone knows the
    /// connect completed): its proof argument can be made only inside
    /// rolecore, and anything else fails to compile with a message saying
    /// to insert the channel into a map instead.
    #[doc(hidden)]
    fn into_ready(self, seal: impl crate::seal::ConnectProof) -> Self::Ready;

    /// One step towards readiness on a wake-up: `Ok(true)` once the stream
    /// can be made ready, `Ok(false)` while it waits for more readiness
    /// (a TLS handshake), `Err` if it failed. Default: the connect's
    /// result. Only the loop calls it, as `into_ready`.
    #[doc(hidden)]
    fn advance(
        &mut self,
        readiness: Readiness,
        seal: impl crate::seal::ConnectProof,
    ) -> std::io::Result<bool> {
        let _ = (readiness, seal);
        self.channel().connect_result().map(|()| true)
    }

    /// What the stream waits for while pending: writability (the connect's
    /// end), or what its handshake needs.
    #[doc(hidden)]
    fn interest(&self) -> Interest {
        Interest::WRITE
    }

    /// The error `handle_connect_failed` gets when the deadline passes
    /// first.
    #[doc(hidden)]
    fn timed_out(&self) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

impl sealed::Sealed for Channel<Connected> {}
impl sealed::Sealed for Channel<Connecting> {}

impl Transport for Channel<Connected> {
    type Pending = Channel<Connecting>;
    #[inline]
    fn channel(&self) -> &Channel<Connected> {
        self
    }
    #[inline]
    fn has_queued_output(&self) -> bool {
        false
    }
    #[inline]
    fn send_queued(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl sealed::RawChannel for Channel<Connected> {
    #[inline]
    fn channel_mut(&mut self, _: impl crate::seal::RawProof) -> &mut Channel<Connected> {
        self
    }
}

impl Pending for Channel<Connecting> {
    type Ready = Channel<Connected>;
    fn channel(&self) -> &Channel<Connecting> {
        self
    }
    fn into_ready(self, _: impl crate::seal::ConnectProof) -> Channel<Connected> {
        self.into_connected()
    }
}

/// The sealing, [`Transport`] and [`Pending`] impls of a transport made of a
/// `channel` field and state that moves unchanged when the connect
/// completes (`Buffered`, `AsyncChat`): written once, here.
///
/// `queued_transport!(Type { rest, fields }, queued: |t| .., send: |t| .., backlogged: |t| .., held_input: |t| ..)`
/// gives `Type<Connected>`'s `has_queued_output`, `send_queued`,
/// `is_backlogged`, and the input it holds above the session's that the
/// loop hands over without a readiness report (`has_buffered_input`).
macro_rules! queued_transport {
    (
        $ty:ident { $($rest:ident),+ },
        queued: |$q:ident| $queued:expr,
        send: |$s:ident| $send:expr,
        backlogged: |$b:ident| $backlogged:expr,
        held_input: |$h:ident| $held:expr $(,)?
    ) => {
        impl $crate::transport::sealed::Sealed for $ty<$crate::channel::Connected> {}
        impl $crate::transport::sealed::Sealed for $ty<$crate::channel::Connecting> {}

        impl $crate::transport::sealed::RawChannel for $ty<$crate::channel::Connected> {
            #[inline]
            fn channel_mut(
                &mut self,
                _: impl $crate::seal::RawProof,
            ) -> &mut $crate::channel::Channel<$crate::channel::Connected> {
                &mut self.channel
            }
        }

        impl $crate::transport::Transport for $ty<$crate::channel::Connected> {
            type Pending = $ty<$crate::channel::Connecting>;
            #[inline]
            fn channel(&self) -> &$crate::channel::Channel<$crate::channel::Connected> {
                &self.channel
            }
            #[inline]
            fn has_queued_output(&self) -> bool {
                let $q = self;
                $queued || $q.tls.wants_write()
            }
            #[inline]
            fn send_queued(&mut self) -> ::std::io::Result<()> {
                let $s = self;
                $send
            }
            #[inline]
            fn is_backlogged(&self) -> bool {
                let $b = self;
                $backlogged
            }
            #[inline]
            fn has_buffered_input(&self) -> bool {
                let $h = self;
                $held || $h.tls.has_buffered_input()
            }
            #[inline]
            fn closing(&mut self, _: impl $crate::seal::RawProof) {
                self.tls.closing(&mut self.channel)
            }
        }

        impl $ty<$crate::channel::Connected> {
            /// Back to the pending form, for a TLS handshake: the loop makes
            /// it connected again once the handshake completed.
            #[cfg(feature = "tls")]
            pub(crate) fn into_pending(self) -> $ty<$crate::channel::Connecting> {
                $ty { channel: self.channel.into_role(), $($rest: self.$rest),+ }
            }
        }

        impl $crate::transport::Pending for $ty<$crate::channel::Connecting> {
            type Ready = $ty<$crate::channel::Connected>;
            fn channel(&self) -> &$crate::channel::Channel<$crate::channel::Connecting> {
                &self.channel
            }
            fn into_ready(self, _: impl $crate::seal::ConnectProof) -> $ty<$crate::channel::Connected> {
                $ty { channel: self.channel.into_connected(), $($rest: self.$rest),+ }
            }
            fn advance(
                &mut self,
                readiness: $crate::readiness::Readiness,
                _: impl $crate::seal::ConnectProof,
            ) -> ::std::io::Result<bool> {
                self.tls.advance(&self.channel, readiness)
            }
            fn interest(&self) -> $crate::readiness::Interest {
                self.tls.pending_interest()
            }
            fn timed_out(&self) -> ::std::io::Error {
                self.tls.timed_out()
            }
        }
    };
}

pub(crate) use queued_transport;
