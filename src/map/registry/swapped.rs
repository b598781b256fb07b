//! Layer 4: what a handler that swapped the channel it was lent leaves in
//! the registry: an entry holding another descriptor than its slot's, and a
//! registration the map can no longer name.

use std::os::fd::AsRawFd;

use super::{ORPHANS, Registry};
use crate::map::entry::Entry;
use crate::report::{Level, log_info};
use crate::token::Token;

impl Registry {
    /// An entry that holds another descriptor than the one its slot was
    /// registered with: its handler swapped the `&mut` channel it was lent
    /// (`std::mem::swap`, `std::mem::replace`) for another one. The map
    /// reports it and closes the entry (with the channel it now holds); the
    /// channel taken out lives on wherever the handler put it, and no longer
    /// belongs to the map: its registration is dropped before the next wait,
    /// so it neither wakes the loop nor stops it from being inserted again.
    #[cold]
    pub(crate) fn replaced(&mut self, token: Token, entry: Box<dyn Entry>) {
        log_info(
            Level::Error,
            format_args!(
                "a handler replaced the channel of {token:?} with {}: the map closes what the entry \
                 now holds and forgets the channel taken out; a handler must not swap the channel \
                 it is lent",
                entry.describe()
            ),
        );
        self.discard(token, entry);
        self.pending |= ORPHANS;
    }

    /// Forgets every registration and makes them again from the map, after
    /// a swap left one the map can no longer name (see
    /// [`replaced`](Self::replaced)). Entries still holding a descriptor
    /// other than their slot's are closed first. If a new poller cannot be
    /// made (out of descriptors), the old one is kept and the rebuild is
    /// tried again before the next wait.
    #[cold]
    pub(crate) fn rebuild_registrations(&mut self) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if let Some(entry) = slot.entry()
                && entry.fd().as_raw_fd() as usize != index
            {
                let token = self.token(index, slot.generation);
                let entry = self.slots[index].take().expect("checked above");
                self.replaced(token, entry);
            }
        }
        self.pending &= !ORPHANS;
        if !self.poller.keeps_registrations() {
            return;
        }
        let backend = self.poller.backend();
        let old = match self.poller.successor(backend) {
            Ok(fresh) => std::mem::replace(&mut self.poller, fresh),
            Err(e) => {
                log_info(Level::Error, format_args!("cannot rebuild the {backend} poller: {e}; retrying"));
                self.pending |= ORPHANS;
                return;
            }
        };
        drop(old);
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(entry) = slot.entry() else { continue };
            if slot.always_ready() {
                continue;
            }
            let key = self.token(index, slot.generation).key();
            if let Err(e) = self.poller.register(entry.fd(), key, slot.interest) {
                let token = self.token(index, slot.generation);
                log_info(
                    Level::Error,
                    format_args!("cannot watch {} again: {e}; closing it", entry.describe()),
                );
                let entry = self.slots[index].take().expect("checked above");
                self.discard(token, entry);
            }
        }
    }
}
