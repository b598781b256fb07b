//! Layer 4: what a panicking handler leaves in the registry. A callback
//! that panics closes its own channel; a handler's `Drop` that panics, with
//! panics caught, is reported like a callback's, whether its channel closes
//! in the loop or with the map.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use super::Registry;
use crate::map::entry::Entry;
use crate::report::{Level, log_info};
use crate::token::Token;

/// The message of a panic's payload, for reports.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}

/// Reports a panic the map caught (`catch_panics`); `then` says what
/// became of the channel.
#[cold]
fn report_panic(what: &str, then: &str, payload: &(dyn Any + Send)) {
    let message = panic_message(payload);
    log_info(Level::Error, format_args!("{what} panicked ({message}); {then}"));
}

impl Registry {
    /// Drops a channel's entry, and with it its handler: with panics caught,
    /// a panic in the handler's `Drop` is reported rather than passed on
    /// (the map is coherent already, the channel out of it), so that it
    /// neither escapes the loop nor closes whichever channel's callback
    /// removed this one.
    pub(super) fn drop_entry(&self, entry: Box<dyn Entry>) {
        drop_handler(entry, self.catch_panics);
    }

    /// A callback panicked: the channel leaves the map. With
    /// [`catch_panics`](Self::catch_panics) on, the panic is reported and
    /// the loop goes on; otherwise it is passed on once the channel is out
    /// of the map (so the map stays coherent for a caller that catches it).
    /// Every callback runs under this guard: the loop's (`event_loop.rs`)
    /// and the `handle_close` a shutdown runs ([`close_where`](Self::close_where)).
    #[cold]
    #[inline(never)]
    pub(crate) fn panicked(&mut self, token: Token, entry: Box<dyn Entry>, payload: Box<dyn Any + Send>) {
        self.discard(token, entry);
        if !self.catch_panics {
            std::panic::resume_unwind(payload);
        }
        report_panic("a handler", "closing its channel", &*payload);
    }
}

/// [`Registry::drop_entry`], with `catch` for `catch_panics`.
fn drop_handler(entry: Box<dyn Entry>, catch: bool) {
    if !catch {
        drop(entry);
    } else if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| drop(entry))) {
        report_panic("a handler's drop", "its channel is closed", &*payload);
    }
}

impl Drop for Registry {
    /// A map dropped closes every channel still in it: with panics caught,
    /// a handler's `Drop` that panics then is reported as when its channel
    /// closes in the loop (`discard`), rather than escaping the map's drop
    /// (and aborting the process when a second one panics as it unwinds).
    /// Without, the fields drop as they are declared.
    fn drop(&mut self) {
        if !self.catch_panics {
            return;
        }
        for slot in &mut self.slots {
            let Some(entry) = slot.take() else { continue };
            drop_handler(entry, true);
        }
    }
}
