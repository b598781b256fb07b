//! Layer 4: a graceful shutdown in the registry — the listeners closed at
//! its start, the others at the end of its grace, each `handle_close` under
//! the panic guard like any callback.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use super::super::ctx::Ctx;
use super::super::entry::Entry;
use super::super::slot::DAEMON;
use super::Registry;
use crate::clock::saturating_add;
use crate::trace::Joined;

/// How many times `close_where` looks again for channels to close that the
/// closing ones' callbacks opened.
const CLOSE_PASSES: usize = 3;

impl Registry {
    /// Starts a graceful shutdown (or brings one forward): closes the
    /// listeners now, and says whether one of their `handle_close` asked to
    /// stop the loop.
    pub(crate) fn begin_shutdown(&mut self, grace: Duration) -> bool {
        let now = self.clock.now();
        let at = saturating_add(now, grace);
        if self.shutdown.is_none() {
            // A new shutdown: joins are refused only at the end of its own
            // grace. A panic that escaped the end of an earlier one, from
            // the map's last channel, ended it with the flag still set.
            self.closing_all = false;
        }
        // Listeners go at once: a shutdown in the past closes them now.
        self.shutdown = Some(self.shutdown.map_or(at, |old| old.min(at)));
        self.pending |= super::RARE;
        self.late_listener = false;
        let stop = self.close_where(|entry| entry.joined() == Joined::Listening);
        if self.len == 0 {
            // Nothing was left but listeners: the shutdown is over already.
            self.shutdown = None;
        }
        stop
    }

    /// Closes every channel `which` picks, calling its `shut`, and says
    /// whether one of them stopped the loop.
    ///
    /// The channels are picked first, then closed, so what their callbacks
    /// insert is not closed on the way at the whim of its descriptor number;
    /// it is picked by the next pass, up to [`CLOSE_PASSES`] in all (a
    /// handler that opens a channel whenever one closes cannot hold the loop
    /// here forever). At the end of the grace no channel can join
    /// (`Registry::closing_all`), so that close leaves the map empty.
    pub(crate) fn close_where(&mut self, which: impl Fn(&dyn Entry) -> bool) -> bool {
        let mut stop = false;
        for _ in 0..CLOSE_PASSES {
            let picked = self.in_turn(|slot| !slot.has(DAEMON) && slot.entry().is_some_and(&which));
            if picked.is_empty() {
                break;
            }
            for token in picked {
                // An earlier one's callback may have closed it.
                let Some((mut entry, _)) = self.take(token) else { continue };
                let mut cx = Ctx::new(self, token);
                // Under the panic guard, as every callback: a panic here
                // would leave the slot busy with no entry, counted forever.
                let shut = std::panic::catch_unwind(AssertUnwindSafe(|| entry.shut(&mut cx)));
                stop |= cx.end();
                match shut {
                    Ok(()) => self.discard(token, entry),
                    Err(payload) => self.panicked(token, entry, payload),
                }
            }
        }
        stop
    }

    /// The grace period of a shutdown in progress is over at `now`: closes
    /// everyone still here. Before that, closes the listeners that joined
    /// the map during the grace, so that none is watched. Returns whether
    /// one of them asked to stop.
    pub(crate) fn end_shutdown(&mut self, now: Instant) -> bool {
        match self.shutdown {
            Some(deadline) if now >= deadline => {
                // The shutdown stays under way while its last channels
                // close: a `handle_close` whose panic reaches the caller
                // leaves the others to the next iteration, which closes
                // them at once, instead of open with the shutdown over.
                // Nothing joins meanwhile (a `handle_close` that reconnects
                // is refused), so the map ends empty. A panic that escapes
                // leaves the flag set: the next iteration ends the
                // shutdown and clears it, or the map emptied and the
                // shutdown is over already (the next shutdown clears it
                // as it begins).
                self.closing_all = true;
                let stop = self.close_where(|_| true);
                self.shutdown = None;
                self.late_listener = false;
                self.closing_all = false;
                stop
            }
            Some(_) if self.late_listener => {
                self.late_listener = false;
                self.close_where(|entry| entry.joined() == Joined::Listening)
            }
            _ => false,
        }
    }
}
