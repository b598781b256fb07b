//! Reaching the loop from other threads: typed mailboxes and the waker.
//!
//! A loop stays on its thread, but other threads can hand it work. A mailbox
//! is a queue plus an `eventfd` in the map: [`Sender::send`] pushes a message
//! and bumps the counter, the loop wakes, and the mailbox's handler receives
//! each message on the loop's thread with a [`Ctx`], so it can insert, close
//! or stop as any callback can. Many sends before the loop wakes coalesce
//! into one wake-up. A mailbox has no bound unless it is made with one
//! ([`Map::mailbox_with_capacity`]): then a sender on another thread waits
//! for room ([`Sender::send`]) or is refused ([`Sender::try_send`]).
//!
//! The [`Waker`] is the built-in mailbox ([`Map::waker`]): wake the loop,
//! stop it (as a handler's [`Ctx::stop`]), or shut it down gracefully: stop
//! accepting at once, let the other channels finish within a grace period,
//! then close what is left, calling each one's `handle_close` once.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use crate::dispatch::{Own, OwnEntry};
use crate::map::{Ctx, Map};
use crate::poller::EventFd;
use crate::report::{Level, log_info};
use crate::token::Token;

struct Shared<M> {
    queue: Mutex<VecDeque<M>>,
    eventfd: EventFd,
    /// The mailbox left the map: sends fail and give the message back.
    closed: AtomicBool,
    /// Most messages queued at once by other threads (`usize::MAX`: no
    /// bound).
    capacity: usize,
    /// Signalled when a bounded mailbox's delivery makes room, or when it
    /// closes: what a sender waiting for room waits on.
    room: Condvar,
    /// The thread of the map's loop (a `Map` stays on the thread that made
    /// it). A send from it never waits for room: the loop could not make
    /// any while it waits.
    owner: ThreadId,
}

impl<M> Shared<M> {
    fn ring(&self) {
        self.eventfd.ring();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<M>> {
        // A panic while holding the lock left a consistent queue (push and
        // pop cannot half-happen): carry on with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_bounded(&self) -> bool {
        self.capacity != usize::MAX
    }

    /// Wakes the senders waiting for room (a delivery, or the close).
    fn make_room(&self) {
        if self.is_bounded() {
            self.room.notify_all();
        }
    }
}

/// Sends messages to a mailbox on a loop's thread. `Send` and `Sync` when
/// the message is `Send`; clone it for every thread that needs one.
pub struct Sender<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Sender<M> {
    // Manual: the derived impl would require `M: Clone`.
    fn clone(&self) -> Self {
        Sender { shared: self.shared.clone() }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("closed", &self.shared.closed.load(Ordering::Relaxed)).finish()
    }
}

/// A message the mailbox could not take (it was removed from its map, or
/// the map was dropped), given back.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<M>(pub M);

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mailbox is closed: its loop removed it or ended")
    }
}

impl<M: fmt::Debug> std::error::Error for SendError<M> {}

/// A message [`Sender::try_send`] could not queue, given back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<M> {
    /// The mailbox holds its capacity of messages
    /// ([`Map::mailbox_with_capacity`]); it may take this one later.
    Full(M),
    /// The mailbox is closed: its loop removed it, or the map was dropped.
    Closed(M),
}

impl<M> TrySendError<M> {
    /// The message, given back.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => {
                f.write_str("the mailbox is full: its loop has not taken the messages queued")
            }
            TrySendError::Closed(_) => SendError(()).fmt(f),
        }
    }
}

impl<M: fmt::Debug> std::error::Error for TrySendError<M> {}

impl<M> Sender<M> {
    /// Queues `message` for the loop's thread and wakes the loop.
    ///
    /// A mailbox made by [`Map::mailbox`] has no bound, as
    /// `std::sync::mpsc::channel`: a thread that sends faster than the loop
    /// handles grows it for as long as it does. One made by
    /// [`Map::mailbox_with_capacity`] holds at most that many messages from
    /// other threads: a send to a full one waits until the loop's delivery
    /// makes room, or fails if the mailbox closes meanwhile (as
    /// `std::sync::mpsc::sync_channel`; the loop must be running for room
    /// to come). A send from the loop's own thread (a handler's) never
    /// waits, since the loop could not deliver meanwhile: it queues past the
    /// capacity. Use [`try_send`](Self::try_send) not to wait.
    pub fn send(&self, message: M) -> Result<(), SendError<M>> {
        let shared = &*self.shared;
        {
            let mut queue = shared.lock();
            loop {
                if shared.closed.load(Ordering::Acquire) {
                    return Err(SendError(message));
                }
                if queue.len() < shared.capacity || thread::current().id() == shared.owner {
                    break;
                }
                queue = shared.room.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            queue.push_back(message);
        }
        shared.ring();
        Ok(())
    }

    /// Queues `message` if the mailbox has room, and wakes the loop; never
    /// waits. Refused with [`TrySendError::Full`] when a bounded mailbox
    /// ([`Map::mailbox_with_capacity`]) holds its capacity, even from the
    /// loop's own thread, and with [`TrySendError::Closed`] once the
    /// mailbox is gone; the message is handed back in both.
    pub fn try_send(&self, message: M) -> Result<(), TrySendError<M>> {
        let shared = &*self.shared;
        {
            let mut queue = shared.lock();
            if shared.closed.load(Ordering::Acquire) {
                return Err(TrySendError::Closed(message));
            }
            if queue.len() >= shared.capacity {
                return Err(TrySendError::Full(message));
            }
            queue.push_back(message);
        }
        shared.ring();
        Ok(())
    }

    /// Messages queued and not yet delivered.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    /// Whether no message waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the mailbox is gone (sends would fail).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

/// What a mailbox does with each message, on the loop's thread. Any
/// `FnMut(M, &mut Ctx) -> io::Result<()>` is one.
pub trait MailboxHandler<M>: 'static {
    /// One message, in the order it was sent (per sender).
    fn handle_message(&mut self, message: M, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// A message's handling failed. Default: report it in one line; the
    /// mailbox stays open.
    fn handle_error(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        let _ = cx;
        log_info(Level::Error, format_args!("mailbox {}: {error}", std::any::type_name::<Self>()));
    }
}

impl<M, F: FnMut(M, &mut Ctx<'_>) -> io::Result<()> + 'static> MailboxHandler<M> for F {
    fn handle_message(&mut self, message: M, cx: &mut Ctx<'_>) -> io::Result<()> {
        self(message, cx)
    }
}

pub(crate) struct MailboxEntry<M, H> {
    shared: Arc<Shared<M>>,
    handler: H,
}

impl<M, H> Drop for MailboxEntry<M, H> {
    /// Closes the mailbox and drops the messages it never delivered, now:
    /// left in the queue, they lived as long as a [`Sender`] did, and one
    /// that holds a `Sender` of its own mailbox (a reply address, a message
    /// that schedules the next) kept the queue, itself and the mailbox's
    /// `eventfd` alive for ever. They are dropped after the lock is
    /// released, so a message whose `Drop` sends (to this mailbox: refused,
    /// it is closed) cannot deadlock on it.
    fn drop(&mut self) {
        let undelivered = {
            let mut queue = self.shared.lock();
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        // Senders waiting for room learn that none will come.
        self.shared.make_room();
        drop(undelivered);
    }
}

impl<M: 'static, H: MailboxHandler<M>> Own for MailboxEntry<M, H> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.shared.eventfd.as_fd()
    }

    /// Delivers the messages queued when the wake-up came; later ones wait
    /// for the next wake-up, so a handler that sends to its own mailbox
    /// cannot starve the other channels.
    fn deliver(&mut self, cx: &mut Ctx<'_>) {
        self.shared.eventfd.drain();
        let mut pending = self.shared.lock().len();
        while pending > 0 && !cx.is_closing() {
            pending -= 1;
            let Some(message) = self.shared.lock().pop_front() else { break };
            self.shared.make_room();
            if let Err(e) = self.handler.handle_message(message, cx) {
                self.handler.handle_error(e, cx);
            }
        }
        if !self.shared.lock().is_empty() {
            self.shared.ring();
        }
    }

    fn handler(&self) -> &dyn std::any::Any {
        &self.handler
    }

    fn handler_mut(&mut self) -> &mut dyn std::any::Any {
        &mut self.handler
    }

    fn describe(&self) -> String {
        format!("mailbox of {}", std::any::type_name::<M>())
    }
}

fn new_shared<M>(capacity: usize) -> io::Result<Arc<Shared<M>>> {
    let eventfd = EventFd::new()?;
    Ok(Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        eventfd,
        closed: AtomicBool::new(false),
        capacity,
        room: Condvar::new(),
        owner: thread::current().id(),
    }))
}

impl Map {
    /// Adds a mailbox: messages sent through the returned [`Sender`] from
    /// any thread reach `handler` on this loop's thread. The mailbox counts
    /// as a channel: the loop does not end while it is in the map (remove
    /// it with its token, or stop the loop). When it leaves the map
    /// (removed, or the map dropped), the messages it had not delivered
    /// are dropped there and then, and later sends fail, handing the
    /// message back. It has no `handle_timeout`: a deadline or idle timeout
    /// for its token is refused ([`Map::set_deadline`] answers `false`).
    ///
    /// ```
    /// use rolecore::{Ctx, LoopOptions, Map};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let mut map = Map::new()?;
    /// let (_token, sender) = map.mailbox(|n: u32, cx: &mut Ctx<'_>| {
    ///     if n == 3 {
    ///         cx.stop();
    ///     }
    ///     Ok(())
    /// })?;
    /// let worker = std::thread::spawn(move || (1..=3).for_each(|n| sender.send(n).unwrap()));
    /// map.run(LoopOptions::default())?; // until message 3 stops it
    /// worker.join().unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn mailbox<M: Send + 'static, H: MailboxHandler<M>>(
        &mut self,
        handler: H,
    ) -> io::Result<(Token, Sender<M>)> {
        self.add_mailbox(usize::MAX, handler)
    }

    /// Adds a mailbox that holds at most `capacity` messages from other
    /// threads: a [`Sender::send`] to a full one waits until the loop's
    /// delivery makes room, a [`Sender::try_send`] is refused with
    /// [`TrySendError::Full`]. So a sender faster than the loop is slowed
    /// down to it instead of growing the queue. `capacity` 0 is refused
    /// (`InvalidInput`): nothing could ever be queued.
    ///
    /// ```
    /// use rolecore::{Ctx, LoopOptions, Map, TrySendError};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let mut map = Map::new()?;
    /// let (_token, sender) = map.mailbox_with_capacity(2, |n: u32, cx: &mut Ctx<'_>| {
    ///     if n == 100 {
    ///         cx.stop();
    ///     }
    ///     Ok(())
    /// })?;
    /// sender.try_send(1).unwrap();
    /// sender.try_send(2).unwrap();
    /// assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
    /// // A producer thread is held to the loop's pace: at most two queued.
    /// let producer = std::thread::spawn(move || (3..=100).try_for_each(|n| sender.send(n)));
    /// map.run(LoopOptions::default())?; // until message 100 stops it
    /// producer.join().unwrap().unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn mailbox_with_capacity<M: Send + 'static, H: MailboxHandler<M>>(
        &mut self,
        capacity: usize,
        handler: H,
    ) -> io::Result<(Token, Sender<M>)> {
        if capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a mailbox's capacity must be at least 1",
            ));
        }
        self.add_mailbox(capacity, handler)
    }

    fn add_mailbox<M: Send + 'static, H: MailboxHandler<M>>(
        &mut self,
        capacity: usize,
        handler: H,
    ) -> io::Result<(Token, Sender<M>)> {
        let shared = new_shared(capacity)?;
        let entry = Box::new(OwnEntry(MailboxEntry { shared: shared.clone(), handler }));
        let token = self.insert_entry(entry, false)?;
        Ok((token, Sender { shared }))
    }

    /// This map's [`Waker`], created on first use. Its mailbox does not keep
    /// the loop alive: a map holding only the waker counts as empty.
    pub fn waker(&mut self) -> io::Result<Waker> {
        if let Some(commands) = self.waker.and_then(|token| self.handler::<Commands>(token)) {
            return Ok(commands.waker.clone());
        }
        let shared = new_shared::<Command>(usize::MAX)?;
        let waker = Waker { sender: Sender { shared: shared.clone() } };
        let entry = Box::new(OwnEntry(MailboxEntry { shared, handler: Commands { waker: waker.clone() } }));
        self.waker = Some(self.insert_entry(entry, true)?);
        Ok(waker)
    }
}

/// What a [`Waker`] asks of its loop. A wake-up needs no message: the
/// counter's ring is all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Stop,
    Shutdown(Duration),
}

/// The waker's mailbox handler. It keeps a clone of the waker, so that the
/// map finds it again through its token: the map itself knows nothing of
/// mailboxes.
struct Commands {
    waker: Waker,
}

impl MailboxHandler<Command> for Commands {
    fn handle_message(&mut self, command: Command, cx: &mut Ctx<'_>) -> io::Result<()> {
        match command {
            Command::Stop => cx.stop(),
            Command::Shutdown(grace) => cx.shutdown(grace),
        }
        Ok(())
    }
}

/// A `Send + Sync + Clone` handle that wakes, stops or shuts down a loop
/// from another thread (see [`Map::waker`]).
///
/// ```
/// use std::time::Duration;
/// use rolecore::{Channel, LoopOptions, Map};
///
/// # struct Server;
/// # impl rolecore::AcceptHandler for Server {
/// #     fn handle_accepted(&mut self, _: Channel<rolecore::Connected>, _: rolecore::Address, _: &mut rolecore::Ctx<'_>) -> std::io::Result<()> { Ok(()) }
/// # }
/// # fn main() -> std::io::Result<()> {
/// let mut map = Map::new()?;
/// map.insert(Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?, Server)?;
/// let waker = map.waker()?;
/// std::thread::spawn(move || waker.shutdown(Duration::from_secs(1)));
/// map.run(LoopOptions::default())?; // returns once the listener is closed
/// assert!(map.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Waker {
    sender: Sender<Command>,
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker").field("closed", &self.sender.is_closed()).finish()
    }
}

impl Waker {
    /// Queues `command` (none for a plain wake-up) and rings the loop.
    /// Commands not yet delivered coalesce, so that the queue holds at most
    /// one `Stop` and one `Shutdown` (with the shortest grace asked): a
    /// thread that wakes, stops or shuts down the loop in a tight loop while
    /// the loop is busy cannot grow it without end. Delivered together, in
    /// one wake-up, the commands it merges would have done the same.
    fn command(&self, command: Option<Command>) -> io::Result<()> {
        let shared = &self.sender.shared;
        {
            let mut queue = shared.lock();
            if shared.closed.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the loop this waker belonged to is gone",
                ));
            }
            match command {
                None => {}
                Some(Command::Stop) if queue.contains(&Command::Stop) => {}
                Some(Command::Shutdown(grace)) => {
                    match queue.iter_mut().find_map(|queued| match queued {
                        Command::Shutdown(queued) => Some(queued),
                        Command::Stop => None,
                    }) {
                        Some(queued) => *queued = (*queued).min(grace),
                        None => queue.push_back(Command::Shutdown(grace)),
                    }
                }
                Some(command) => queue.push_back(command),
            }
        }
        shared.ring();
        Ok(())
    }

    /// Wakes the loop from its wait (a refresh of outside state, say).
    /// Wake-ups not yet delivered coalesce into one, and take no memory.
    pub fn wake(&self) -> io::Result<()> {
        self.command(None)
    }

    /// Ends the loop's `run` after the current iteration, leaving the map as
    /// it is (a handler's [`Ctx::stop`] from outside).
    pub fn stop(&self) -> io::Result<()> {
        self.command(Some(Command::Stop))
    }

    /// Graceful shutdown: listeners close at once (their `handle_close`
    /// runs), other channels have `grace` to finish and close on their own,
    /// then every channel still open gets `handle_close` once and is closed.
    /// The loop then ends, the map being empty.
    pub fn shutdown(&self, grace: Duration) -> io::Result<()> {
        self.command(Some(Command::Shutdown(grace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::{Backend, readable_now};

    /// The wake-up that delivers a mailbox's messages reads its counter
    /// back to zero: a level-triggered backend would otherwise report the
    /// idle mailbox ready on every wait, and the loop would spin.
    #[test]
    fn a_delivery_drains_the_counter_so_an_idle_mailbox_is_not_ready_again() {
        for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let mut map = Map::with_backend(backend).unwrap();
            let (_, sender) = map.mailbox(|_: u32, _: &mut Ctx<'_>| Ok(())).unwrap();
            sender.send(1).unwrap();
            sender.send(2).unwrap();
            assert!(readable_now(&sender.shared.eventfd), "{backend}: a send rings the counter");
            map.poll(Some(Duration::ZERO)).unwrap();
            assert!(!readable_now(&sender.shared.eventfd), "{backend}: the delivery left the counter rung");
        }
    }

    /// A thread that wakes, stops or shuts down a busy loop many times
    /// before it delivers leaves a bounded queue: the commands coalesce
    /// (20 million wake-ups held 370 MB before), and the shortest grace
    /// asked is the one delivered.
    #[test]
    fn undelivered_waker_commands_coalesce() {
        let mut map = Map::new().unwrap();
        let waker = map.waker().unwrap();
        for i in 0..10_000u64 {
            waker.wake().unwrap();
            waker.stop().unwrap();
            waker.shutdown(Duration::from_secs(3600 - i % 7)).unwrap();
        }
        let queued: Vec<Command> = waker.sender.shared.lock().iter().copied().collect();
        assert!(queued.len() <= 2, "{} commands queued", queued.len());
        assert_eq!(queued, [Command::Stop, Command::Shutdown(Duration::from_secs(3594))]);
        assert!(map.poll(Some(Duration::ZERO)).unwrap(), "the stop is delivered");
        assert!(waker.sender.shared.lock().is_empty());
        waker.wake().unwrap();
        assert!(waker.sender.shared.lock().is_empty(), "a wake-up queues nothing");
        assert!(!map.poll(Some(Duration::ZERO)).unwrap(), "a wake-up does not stop the loop");
        drop(map);
        assert_eq!(waker.wake().unwrap_err().kind(), io::ErrorKind::NotConnected);
    }
}
