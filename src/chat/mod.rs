//! Layer 7: `async_chat`, for conversational protocols.
//!
//! An [`AsyncChat`] is a stream transport that splits what it receives into
//! records at a [`Terminator`] — a byte string, a byte count, or none — and
//! queues what it sends, from plain bytes or from [`Producer`]s. Its handler
//! implements [`ChatHandler`]: `collect_incoming_data` receives the bytes of
//! a record as they arrive, `found_terminator` runs when the record ends.
//!
//! asynchat's observable rules are kept: records split at any byte boundary
//! give the same calls; the terminator may change inside `found_terminator`
//! and applies to the rest of the buffer at once; a count that completes
//! becomes "no terminator" until another is set; at end of stream a trailing
//! record without its terminator was collected but gets no
//! `found_terminator` (P16). What changes on purpose: the terminator is a
//! typed value set at construction (D14), a `push` after `close_when_done`
//! is an error instead of silently lost (D16), only a connected or
//! connecting chat can push ([`CanPush`]), nothing can write to the socket
//! around the queue (there is no `get_mut`), input is bounded (a record
//! longer than [`AsyncChat::max_record`] is a [`RecordTooLong`] error, by
//! default reported and closed), and output is bounded.
//!
//! # Examples
//!
//! A line-based server that answers each line with its length:
//!
//! ```
//! use std::io;
//! use rolecore::{AsyncChat, ChatHandler, Ctx};
//!
//! struct LineLength;
//!
//! impl ChatHandler for LineLength {
//!     fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
//!         let line = chat.take_incoming();
//!         chat.push(format!("{}\n", line.len()).as_bytes())
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! use std::io::{Read, Write};
//! use rolecore::{Channel, LoopOptions, Map, Terminator};
//!
//! let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
//! let mut map = Map::new()?;
//! map.insert(AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")), LineLength)?;
//! theirs.write_all(b"hello\nworld!\n")?;
//! theirs.shutdown(std::net::Shutdown::Write)?;
//! map.run(LoopOptions::default())?;
//! let mut answers = String::new();
//! theirs.read_to_string(&mut answers)?;
//! assert_eq!(answers, "5\n6\n");
//! # Ok(())
//! # }
//! ```

mod producer;
mod terminator;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use producer::{Producer, SimpleProducer};
pub use terminator::{
    Framed, Framer, RecordTooLong, Split, Terminator, TerminatorBytes, find_prefix_at_end, next_split,
};

use crate::buffered::{OutputBudget, Watermarks};
use crate::channel::{Channel, Connected, Connecting, Role};
use crate::handler::{Pending, StreamHandler, Transport};
use crate::map::Ctx;
use crate::report::{Level, log_info};

/// asynchat's `ac_in_buffer_size`: the most bytes one read takes.
pub const DEFAULT_IN_BUFFER_SIZE: usize = 64 * 1024;
/// asynchat's `ac_out_buffer_size`: the most bytes one send gives.
pub const DEFAULT_OUT_BUFFER_SIZE: usize = 64 * 1024;
/// The default bound on one record under a byte terminator: 1 MiB.
pub const DEFAULT_MAX_RECORD: usize = 1024 * 1024;
/// The default bound on queued output: 4 MiB.
pub const DEFAULT_CHAT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// The most bytes one queued buffer holds. Output is queued in buffers of at
/// most this size, so that a buffer being sent is never also the one that
/// grows: asynchat's queue (and this one, before) appended every push to the
/// partly sent front buffer, which was freed only once fully sent, so a peer
/// that kept the queue from emptying grew it by every byte pushed.
const CHUNK: usize = DEFAULT_OUT_BUFFER_SIZE;

enum Out {
    Data {
        buf: Vec<u8>,
        sent: usize,
    },
    Producer(Box<dyn Producer>),
    /// `close_when_done`: everything before it is sent, then the channel closes.
    Close,
}

/// The bytes a chat has queued, and the budget they are charged to: the
/// charge is released when they are sent, discarded, or dropped with the
/// chat. A field of its own so that the chat needs no `Drop` (it is taken
/// apart when its connect completes).
struct Queued {
    bytes: usize,
    budget: Option<OutputBudget>,
}

impl Queued {
    /// `n` queued bytes left the queue: sent or discarded.
    fn sent(&mut self, n: usize) {
        self.bytes -= n;
        if let Some(budget) = &self.budget {
            budget.release(n);
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.bytes);
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::channel::Connected {}
    impl Sealed for crate::channel::Connecting {}
}

/// The roles on which an [`AsyncChat`] can queue output: [`Connected`], and
/// [`Connecting`] (the output goes out once the connect completes). Sealed.
///
/// asynchat let a listening or unconnected `async_chat` push, and the bytes
/// were queued and never sent; here [`AsyncChat::push`],
/// [`push_with_producer`](AsyncChat::push_with_producer) and
/// [`close_when_done`](AsyncChat::close_when_done) need this bound, so that
/// does not compile.
#[diagnostic::on_unimplemented(
    message = "an `AsyncChat<{Self}>` cannot queue output: nothing would ever send it",
    label = "`push`, `push_with_producer` and `close_when_done` need a connected or connecting chat",
    note = "wrap a connected channel (one accepted from a listener, or `Channel::connect`'s \
            `Channel<Connecting>`) in the AsyncChat; a listener's connections are chats, \
            not the listener"
)]
pub trait CanPush: Role + sealed::Sealed {}

impl CanPush for Connected {}
impl CanPush for Connecting {}

/// A stream that splits input into records and queues output: asynchat's
/// `async_chat`. See the [module documentation](self).
pub struct AsyncChat<R: Role = Connected> {
    channel: Channel<R>,
    terminator: Terminator,
    /// Input held back between reads: a partial terminator, or what was left
    /// when a callback failed.
    held: Vec<u8>,
    /// The default collector's record so far (asynchat's `incoming`).
    incoming: Vec<u8>,
    record_len: usize,
    /// Dropping the rest of an over-long record, up to its terminator.
    skipping: bool,
    out: VecDeque<Out>,
    /// Bytes queued and not sent, and the shared budget they are charged to.
    out_bytes: Queued,
    /// A sent-out buffer kept for the next push, so steady traffic does not
    /// allocate.
    spare: Vec<u8>,
    closing: bool,
    in_buffer_size: usize,
    out_buffer_size: usize,
    max_record: usize,
    output_limit: usize,
    watermarks: Watermarks,
    linger: Linger,
}

/// How a chat closes after `close_when_done` once its queue is out: it shuts
/// down its sending side, then reads and drops what the peer still sends
/// until the peer closes too, for at most `time` and [`LINGER_BYTES`].
///
/// Closing a socket with unread input makes the kernel send a reset, and a
/// reset can make the peer's kernel discard the last reply before its
/// application read it: the goodbye or error line the server meant to be
/// the last word. nginx's "lingering close" exists for exactly this.
#[derive(Clone, Copy, Debug)]
struct Linger {
    /// The longest the chat lingers; `None` closes at once (asynchat's way).
    time: Option<Duration>,
    /// Lingering now: the sending side is shut down.
    active: bool,
    /// Bytes read and dropped while lingering.
    discarded: usize,
}

/// The longest a chat lingers after `close_when_done` by default (nginx's
/// `lingering_timeout`).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// The most input a lingering chat reads and drops before it closes anyway.
pub const LINGER_BYTES: usize = 1 << 20;

impl<R: Role> AsyncChat<R> {
    /// Wraps a stream channel, splitting its input at `terminator`.
    pub fn new(channel: Channel<R>, terminator: Terminator) -> Self {
        AsyncChat {
            channel,
            terminator,
            held: Vec::new(),
            incoming: Vec::new(),
            record_len: 0,
            skipping: false,
            out: VecDeque::new(),
            out_bytes: Queued { bytes: 0, budget: None },
            spare: Vec::new(),
            closing: false,
            in_buffer_size: DEFAULT_IN_BUFFER_SIZE,
            out_buffer_size: DEFAULT_OUT_BUFFER_SIZE,
            max_record: DEFAULT_MAX_RECORD,
            output_limit: DEFAULT_CHAT_OUTPUT_LIMIT,
            watermarks: Watermarks::default(),
            linger: Linger { time: Some(DEFAULT_LINGER), active: false, discarded: 0 },
        }
    }

    /// How long the chat may linger after
    /// [`close_when_done`](Self::close_when_done) (default
    /// [`DEFAULT_LINGER`], 5 s): once its queue is sent it shuts down its
    /// sending side, then reads and drops whatever the peer still sends
    /// (at most [`LINGER_BYTES`]) until the peer closes, and only then
    /// closes, so that the peer reads the last reply instead of a reset.
    /// `None` closes as soon as the queue is sent, as asynchat did; unread
    /// input then makes the kernel send a reset.
    pub fn set_linger(&mut self, linger: Option<Duration>) {
        self.linger.time = linger;
    }

    /// Whether the chat is lingering: its queue is sent, its sending side
    /// shut down, and it waits for the peer to close.
    pub fn is_lingering(&self) -> bool {
        self.linger.active
    }

    /// Sets the back-pressure watermarks: the channel stops reading above
    /// `high` bytes queued and resumes at or below `low` (defaults: 1 MiB
    /// and 256 KiB). `usize::MAX` as `high` turns back-pressure off.
    pub fn set_watermarks(&mut self, low: usize, high: usize) {
        self.watermarks.set(low, high, self.out_bytes.bytes);
    }

    /// The terminator the next bytes are split at (asynchat's
    /// `get_terminator`).
    pub fn terminator(&self) -> &Terminator {
        &self.terminator
    }

    /// Changes the terminator; inside `found_terminator` it applies to the
    /// rest of the bytes already received.
    pub fn set_terminator(&mut self, terminator: Terminator) {
        self.terminator = terminator;
    }

    /// Appends to the default collector's record (asynchat's
    /// `_collect_incoming_data`).
    pub fn collect(&mut self, data: &[u8]) {
        self.incoming.extend_from_slice(data);
    }

    /// The default collector's record so far.
    pub fn incoming(&self) -> &[u8] {
        &self.incoming
    }

    /// Takes the default collector's record, leaving it empty (asynchat's
    /// `_get_data`).
    pub fn take_incoming(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.incoming)
    }

    /// Queues `data` to send (asynchat's `push`). When the callback that
    /// pushed returns, one send is attempted for everything it queued:
    /// asynchat sent once per push, which cost a system call per pipelined
    /// reply.
    ///
    /// Fails with an `io::Error` of kind `Other` after
    /// [`close_when_done`](Self::close_when_done) (asynchat lost such data
    /// silently, D16), and of kind `StorageFull` when the queue would grow
    /// past [`output_limit`](Self::output_limit).
    ///
    /// Only a chat that can send has it: connected, or connecting (the bytes
    /// go out once the connect completes, after `handle_connect`). A
    /// listener's, a fresh socket's or a datagram socket's chat would queue
    /// bytes that are never sent.
    pub fn push(&mut self, data: &[u8]) -> io::Result<()>
    where
        R: CanPush,
    {
        self.check_push(data.len())?;
        if let Some(budget) = &self.out_bytes.budget {
            budget.try_charge(data.len())?;
        }
        self.enqueue(data);
        self.out_bytes.bytes += data.len();
        self.watermarks.update(self.out_bytes.bytes);
        Ok(())
    }

    /// Queues a producer, asked for more as the socket takes it (asynchat's
    /// `push_with_producer`).
    /// Only on a connected or connecting chat, as [`push`](Self::push).
    pub fn push_with_producer(&mut self, producer: impl Producer + 'static) -> io::Result<()>
    where
        R: CanPush,
    {
        self.check_push(0)?;
        if let Some(Out::Data { buf, .. }) = self.out.back_mut() {
            // Nothing is appended to it any more: its slack would be held
            // while the producer runs, beside the next buffer's.
            buf.shrink_to_fit();
        }
        // Kept only for a queue that empties; with a producer in the queue it
        // would sit beside the producer's chunks.
        self.spare = Vec::new();
        self.out.push_back(Out::Producer(Box::new(producer)));
        Ok(())
    }

    /// Closes the channel once everything queued so far has been sent.
    /// Later pushes fail, and input that arrived after it is not delivered
    /// as records.
    ///
    /// Only on a connected or connecting chat, as [`push`](Self::push): a
    /// connecting chat closes once its connect completed and its queue is
    /// sent.
    pub fn close_when_done(&mut self)
    where
        R: CanPush,
    {
        if !self.closing {
            self.closing = true;
            self.out.push_back(Out::Close);
        }
    }

    /// Whether [`close_when_done`](Self::close_when_done) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Drops buffered input and queued output (asynchat's
    /// `discard_buffers`). A pending `close_when_done` stays pending.
    pub fn discard_buffers(&mut self) {
        self.held.clear();
        self.incoming.clear();
        self.record_len = 0;
        self.out.clear();
        self.out_bytes.sent(self.out_bytes.bytes);
        self.watermarks.update(0);
        if self.closing {
            self.out.push_back(Out::Close);
        }
    }

    /// Bytes queued and not yet sent (producers' future output not counted).
    pub fn queued(&self) -> usize {
        self.out_bytes.bytes
    }

    /// Charges this chat's queued output to `budget`, shared with other
    /// channels (see [`OutputBudget`]): a push that would pass it is refused
    /// whole with a `StorageFull` error carrying a
    /// [`BudgetFull`](crate::BudgetFull). Bytes already queued move to it
    /// from any budget set before.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolecore::{AsyncChat, Channel, OutputBudget, Terminator};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let budget = OutputBudget::new(100);
    /// let (a, _peer) = Channel::pair()?;
    /// let mut chat = AsyncChat::new(a, Terminator::bytes(b"\n"));
    /// chat.set_budget(&budget);
    /// chat.push(&[b'x'; 80])?; // queued until the loop sends it
    /// assert_eq!(budget.used(), 80);
    /// let refused = chat.push(&[b'y'; 40]).unwrap_err();
    /// assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
    /// drop(chat);
    /// assert_eq!(budget.used(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_budget(&mut self, budget: &OutputBudget) {
        let queued = self.out_bytes.bytes;
        if let Some(old) = self.out_bytes.budget.replace(budget.clone()) {
            old.release(queued);
        }
        budget.charge(queued);
    }

    /// The budget this chat's output is charged to, if any.
    pub fn budget(&self) -> Option<&OutputBudget> {
        self.out_bytes.budget.as_ref()
    }

    /// Whether bytes or producers wait to be sent.
    pub fn has_output(&self) -> bool {
        !matches!(self.out.front(), None | Some(Out::Close))
    }

    /// The most bytes one read takes (asynchat's `ac_in_buffer_size`).
    pub fn in_buffer_size(&self) -> usize {
        self.in_buffer_size
    }

    /// Changes the most bytes one read takes (at least 1, at most 64 KiB).
    pub fn set_in_buffer_size(&mut self, size: usize) {
        self.in_buffer_size = size.clamp(1, DEFAULT_IN_BUFFER_SIZE);
    }

    /// The most bytes one send gives (asynchat's `ac_out_buffer_size`).
    pub fn out_buffer_size(&self) -> usize {
        self.out_buffer_size
    }

    /// Changes the most bytes one send gives (at least 1).
    pub fn set_out_buffer_size(&mut self, size: usize) {
        self.out_buffer_size = size.max(1);
    }

    /// The longest record accepted under a byte terminator.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// Changes the longest record accepted under a byte terminator.
    pub fn set_max_record(&mut self, limit: usize) {
        self.max_record = limit;
    }

    /// The bound on queued output.
    pub fn output_limit(&self) -> usize {
        self.output_limit
    }

    /// Changes the bound on queued output.
    pub fn set_output_limit(&mut self, limit: usize) {
        self.output_limit = limit;
    }

    /// The channel underneath.
    pub fn get_ref(&self) -> &Channel<R> {
        &self.channel
    }

    /// The memory the output queue holds: the capacities of its queued
    /// buffers and of the one kept for the next push. Producers' own state
    /// is not counted.
    ///
    /// For pushed bytes it stays within [`queued`](Self::queued) plus 64 KiB
    /// (one buffer), hence within [`output_limit`](Self::output_limit) plus
    /// 64 KiB, whatever the pattern of pushes and partial sends. A chunk a
    /// producer returns is queued as it is, and adds at most its own length.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolecore::{AsyncChat, Channel, Terminator};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let (a, _b) = Channel::pair()?;
    /// let mut chat = AsyncChat::new(a, Terminator::bytes(b"\n"));
    /// assert_eq!(chat.output_capacity(), 0);
    /// chat.push(&[b'x'; 100_000])?;
    /// assert!(chat.output_capacity() <= chat.queued() + 64 * 1024);
    /// # Ok(())
    /// # }
    /// ```
    pub fn output_capacity(&self) -> usize {
        let queued: usize = self
            .out
            .iter()
            .map(|o| match o {
                Out::Data { buf, .. } => buf.capacity(),
                _ => 0,
            })
            .sum();
        queued + self.spare.capacity()
    }

    /// Appends `data` to the queue, in buffers of at most [`CHUNK`] bytes.
    ///
    /// Why the bound holds: every buffer but the first and the last is full
    /// (length = capacity = `CHUNK`, or shrunk when a producer was queued
    /// after it); the last grows by at most doubling, capped at `CHUNK`, so
    /// its slack is at most `CHUNK / 2`; the first's sent prefix is
    /// compacted away past `CHUNK / 2` when another buffer follows it
    /// ([`compact_front`](Self::compact_front)). A single buffer holds at
    /// most `CHUNK`. So the memory is at most the unsent bytes plus `CHUNK`.
    fn enqueue(&mut self, mut data: &[u8]) {
        if let Some(Out::Data { buf, .. }) = self.out.back_mut()
            && buf.len() < CHUNK
        {
            let take = data.len().min(CHUNK - buf.len());
            let needed = buf.len() + take;
            if needed > buf.capacity() {
                let target = needed.max(buf.capacity().saturating_mul(2).min(CHUNK));
                buf.reserve_exact(target - buf.len());
            }
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        let mut added = false;
        while !data.is_empty() {
            let take = data.len().min(CHUNK);
            let mut buf = if self.out.is_empty() {
                // The queue was empty: the buffer is first and last at once,
                // so the spare's slack is within the one-buffer allowance.
                std::mem::take(&mut self.spare)
            } else {
                Vec::new()
            };
            if buf.capacity() < take {
                buf.reserve_exact(take);
            }
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.out.push_back(Out::Data { buf, sent: 0 });
            added = true;
        }
        if added {
            self.compact_front();
        }
    }

    /// Drops the sent prefix of the front buffer once it is more than half a
    /// chunk (and half the buffer, so that a producer's large chunk moves each
    /// byte at most once more) and another entry follows: then nothing more
    /// is appended to the front buffer, and its sent bytes would be held
    /// until the last of it is sent.
    fn compact_front(&mut self) {
        if self.out.len() < 2 {
            return;
        }
        if let Some(Out::Data { buf, sent }) = self.out.front_mut()
            && *sent > CHUNK / 2
            && *sent >= buf.len() / 2
        {
            buf.drain(..*sent);
            buf.shrink_to_fit();
            *sent = 0;
        }
    }

    fn check_push(&self, more: usize) -> io::Result<()> {
        if self.closing {
            // Not BrokenPipe: that is a disconnection, on which the loop would
            // close at once and drop the queue close_when_done promised to send.
            return Err(io::Error::other(
                "push after close_when_done: the channel closes once its queue is sent",
            ));
        }
        if self.out_bytes.bytes.saturating_add(more) > self.output_limit {
            let full =
                crate::BufferFull { queued: self.out_bytes.bytes, requested: more, limit: self.output_limit };
            return Err(io::Error::new(io::ErrorKind::StorageFull, full));
        }
        Ok(())
    }

    /// Whether `close_when_done` was called and everything before it is out.
    fn done(&self) -> bool {
        matches!(self.out.front(), Some(Out::Close))
    }
}

impl AsyncChat<Connected> {
    /// Makes one send of queued output, at most
    /// [`out_buffer_size`](Self::out_buffer_size) bytes, asking producers for
    /// more as needed (asynchat's `initiate_send`).
    pub fn initiate_send(&mut self) -> io::Result<()> {
        loop {
            match self.out.front_mut() {
                None | Some(Out::Close) => return Ok(()),
                Some(Out::Producer(p)) => {
                    let chunk = p.more();
                    if chunk.is_empty() {
                        self.out.pop_front();
                    } else {
                        self.out_bytes.bytes += chunk.len();
                        if let Some(budget) = &self.out_bytes.budget {
                            budget.charge(chunk.len());
                        }
                        self.watermarks.update(self.out_bytes.bytes);
                        self.out.push_front(Out::Data { buf: chunk, sent: 0 });
                    }
                }
                Some(Out::Data { buf, sent }) => {
                    let end = buf.len().min(*sent + self.out_buffer_size);
                    let n = self.channel.send(&buf[*sent..end])?;
                    *sent += n;
                    let done = *sent == buf.len();
                    self.out_bytes.sent(n);
                    self.watermarks.update(self.out_bytes.bytes);
                    if !done {
                        self.compact_front();
                    } else if let Some(Out::Data { mut buf, .. }) = self.out.pop_front()
                        && buf.capacity() <= CHUNK
                        && matches!(self.out.front(), None | Some(Out::Close))
                    {
                        // Kept for the next push only when the queue emptied:
                        // beside queued buffers it would be memory over the
                        // bound; a queue that empties is the steady case the
                        // spare is for.
                        buf.clear();
                        self.spare = buf;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Sets `TCP_NODELAY` on the channel underneath (an error on a Unix
    /// socket).
    ///
    /// The chat gives no `&mut` access to its channel (asynchat's `socket`),
    /// for sending through it would overtake what is queued: a goodbye queued
    /// with [`close_when_done`](Self::close_when_done) would arrive after
    /// bytes sent later. Read-only socket queries go through
    /// [`get_ref`](Self::get_ref); output goes through
    /// [`push`](Self::push).
    pub fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        self.channel.set_nodelay(nodelay)
    }

    /// Reads once and runs the terminator engine over what arrived, calling
    /// the handler's `collect_incoming_data` and `found_terminator`.
    fn read_records<H: ChatHandler>(&mut self, handler: &mut H, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut scratch = cx.take_scratch(self.in_buffer_size);
        let result = match self.channel.recv(&mut scratch[..self.in_buffer_size]) {
            Ok(0) => Ok(()), // the end: the loop calls handle_close
            Ok(n) if self.held.is_empty() => self.split_records(&scratch[..n], handler, cx),
            Ok(n) => {
                let mut joined = std::mem::take(&mut self.held);
                joined.extend_from_slice(&scratch[..n]);
                self.split_records(&joined, handler, cx)
            }
            Err(e) => Err(e),
        };
        cx.put_scratch(scratch);
        result
    }

    fn split_records<H: ChatHandler>(
        &mut self,
        mut rest: &[u8],
        handler: &mut H,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        while !rest.is_empty() {
            if self.closing {
                // close_when_done: the conversation is over; what the peer
                // sent after it is not read as more records.
                return Ok(());
            }
            let bounded = matches!(self.terminator, Terminator::Bytes(_));
            self.skipping &= bounded;
            let split = next_split(rest, &mut self.terminator);
            if self.skipping {
                // The rest of a record the handler chose to skip.
                if split.keep_rest {
                    self.held.extend_from_slice(&rest[split.collect..]);
                    return Ok(());
                }
                rest = &rest[split.collect + split.skip..];
                if split.found {
                    self.skipping = false;
                    self.record_len = 0;
                }
                continue;
            }
            if bounded && self.record_len + split.collect > self.max_record {
                self.incoming.clear();
                self.record_len = 0;
                self.skipping = true;
                if let Err(e) = handler.handle_record_too_long(self, cx) {
                    self.held.extend_from_slice(rest);
                    return Err(e);
                }
                continue; // the same bytes again, now skipped
            }
            if split.collect > 0 {
                self.record_len += split.collect;
                if let Err(e) = handler.collect_incoming_data(&rest[..split.collect], self) {
                    self.held.extend_from_slice(&rest[split.collect..]);
                    return Err(e);
                }
            }
            if split.keep_rest {
                self.held.extend_from_slice(&rest[split.collect..]);
                return Ok(());
            }
            rest = &rest[split.collect + split.skip..];
            if split.found {
                self.record_len = 0;
                if let Err(e) = handler.found_terminator(self, cx) {
                    // Keep what was not yet looked at: a handler that survives
                    // its error loses no input.
                    self.held.extend_from_slice(rest);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<R: Role> fmt::Debug for AsyncChat<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncChat")
            .field("channel", &self.channel)
            .field("terminator", &self.terminator)
            .field("held", &self.held.len())
            .field("queued", &self.out_bytes.bytes)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl crate::handler::RawChannel for AsyncChat<Connected> {
    #[inline]
    fn channel_mut(&mut self) -> &mut Channel<Connected> {
        &mut self.channel
    }
}

impl Transport for AsyncChat<Connected> {
    type Pending = AsyncChat<Connecting>;
    #[inline]
    fn channel(&self) -> &Channel<Connected> {
        &self.channel
    }
    #[inline]
    fn has_queued_output(&self) -> bool {
        self.has_output()
    }
    #[inline]
    fn send_queued(&mut self) -> io::Result<()> {
        self.initiate_send()
    }
    #[inline]
    fn is_backlogged(&self) -> bool {
        self.watermarks.backlogged
    }
}

impl Pending for AsyncChat<Connecting> {
    type Ready = AsyncChat<Connected>;
    fn channel(&self) -> &Channel<Connecting> {
        &self.channel
    }
    fn into_ready(self, _: impl crate::seal::ConnectProof) -> AsyncChat<Connected> {
        let AsyncChat {
            channel,
            terminator,
            held,
            incoming,
            record_len,
            skipping,
            out,
            out_bytes,
            spare,
            closing,
            in_buffer_size,
            out_buffer_size,
            max_record,
            output_limit,
            watermarks,
            linger,
        } = self;
        AsyncChat {
            channel: channel.into_connected(),
            terminator,
            held,
            incoming,
            record_len,
            skipping,
            out,
            out_bytes,
            spare,
            closing,
            in_buffer_size,
            out_buffer_size,
            max_record,
            output_limit,
            watermarks,
            linger,
        }
    }
}

/// The handler of an [`AsyncChat`]: asynchat's `async_chat` subclass.
///
/// Only [`found_terminator`](Self::found_terminator) is required; the default
/// [`collect_incoming_data`](Self::collect_incoming_data) gathers the record
/// in the chat, where [`AsyncChat::take_incoming`] takes it.
pub trait ChatHandler: 'static {
    /// Whether to read. Default: always.
    fn readable(&self, chat: &AsyncChat) -> bool {
        let _ = chat;
        true
    }

    /// Bytes of the current record. Default: [`AsyncChat::collect`].
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        chat.collect(data);
        Ok(())
    }

    /// The current record ended. May change the terminator for the rest.
    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()>;

    /// A record grew past [`AsyncChat::max_record`] without its terminator.
    /// Default: fail with [`RecordTooLong`] (reported, and the channel
    /// closed, by the default `handle_error`). Return `Ok` to go on: what
    /// was collected of the record is dropped, the rest of it up to its
    /// terminator is skipped, and the next record is read as usual — a line
    /// protocol can answer "line too long" and keep the connection.
    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = cx;
        Err(RecordTooLong { limit: chat.max_record() }.into_io())
    }

    /// The connect completed (for chats that connected out).
    fn handle_connect(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let _ = (chat, cx);
        Ok(())
    }

    /// The connect failed. Default: report it in one line.
    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        let _ = cx;
        log_info(Level::Error, format_args!("connect failed for {}: {error}", std::any::type_name::<Self>()));
    }

    /// The deadline or idle timeout passed. Default: `handle_close`, then
    /// close.
    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.handle_close(chat, cx);
        cx.close();
        Ok(())
    }

    /// The peer went away, or `close_when_done` finished. Called once; the
    /// channel is closed after. Unlike asyncore's, silent by default.
    fn handle_close(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        let _ = (chat, cx);
    }

    /// A callback failed (for instance with [`RecordTooLong`]). Default:
    /// report one line, `handle_close`, close.
    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        log_info(
            Level::Error,
            format_args!(
                "uncaptured error, closing channel {:?} of {}: {error}",
                chat.channel,
                std::any::type_name::<Self>()
            ),
        );
        self.handle_close(chat, cx);
        cx.close();
    }
}

/// After any callback: one send for what it queued, then `close_when_done`
/// takes effect once the queue before it is out.
fn finish<H: ChatHandler>(
    handler: &mut H,
    chat: &mut AsyncChat,
    cx: &mut Ctx<'_>,
    result: io::Result<()>,
) -> io::Result<()> {
    let result = result.and_then(|()| if cx.is_closing() { Ok(()) } else { chat.initiate_send() });
    if result.is_ok() && chat.done() && !cx.is_closing() && !chat.linger.active {
        match chat.linger.time {
            // The sending side is shut down after everything queued: the
            // peer reads it all, then the end of the stream.
            Some(time) if chat.channel.shutdown(std::net::Shutdown::Write).is_ok() => {
                chat.linger.active = true;
                cx.set_deadline(cx.token(), Instant::now().checked_add(time));
            }
            _ => {
                handler.handle_close(chat, cx);
                cx.close();
            }
        }
    }
    result
}

/// One read while lingering: the input is dropped; the peer's end of stream
/// ends the lingering (the loop then calls `handle_close`), and so does
/// [`LINGER_BYTES`] of input.
fn linger_read<H: ChatHandler>(handler: &mut H, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
    let mut scratch = cx.take_scratch(DEFAULT_IN_BUFFER_SIZE);
    let read = chat.channel.recv(&mut scratch);
    cx.put_scratch(scratch);
    chat.linger.discarded += read?;
    if chat.linger.discarded > LINGER_BYTES {
        handler.handle_close(chat, cx);
        cx.close();
    }
    Ok(())
}

impl<H: ChatHandler> StreamHandler<AsyncChat> for H {
    fn readable(&self, chat: &AsyncChat) -> bool {
        // Lingering, the chat reads (and drops) until the peer closes.
        chat.linger.active || (ChatHandler::readable(self, chat) && !chat.closing)
    }

    fn handle_connect(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let result = ChatHandler::handle_connect(self, chat, cx);
        finish(self, chat, cx, result)
    }

    fn handle_connect_failed(&mut self, error: io::Error, cx: &mut Ctx<'_>) {
        ChatHandler::handle_connect_failed(self, error, cx);
    }

    fn handle_read(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.linger.active {
            return linger_read(self, chat, cx);
        }
        let result = chat.read_records(self, cx);
        finish(self, chat, cx, result)
    }

    fn handle_write(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        finish(self, chat, cx, Ok(()))
    }

    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.linger.active {
            // The peer did not close in time: close anyway.
            ChatHandler::handle_close(self, chat, cx);
            cx.close();
            return Ok(());
        }
        let result = ChatHandler::handle_timeout(self, chat, cx);
        finish(self, chat, cx, result)
    }

    fn handle_close(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        ChatHandler::handle_close(self, chat, cx);
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        ChatHandler::handle_error(self, chat, error, cx);
    }
}
