//! Layer 5: the [`AsyncChat`] transport: a stream channel, the input it
//! splits into records, the output it queues.

use std::fmt;
use std::io;
use std::time::Duration;

use super::output::{Out, Output};
use super::producer::Producer;
use super::terminator::Terminator;
use crate::buffered::OutputBudget;
use crate::channel::{Channel, Connected, Connecting, Role};
use crate::tls::session::Slot;
use crate::transport::queued_transport;

/// asynchat's `ac_in_buffer_size`: the most bytes one read takes.
pub const DEFAULT_IN_BUFFER_SIZE: usize = 64 * 1024;
/// The default bound on one record under a byte terminator: 1 MiB.
pub const DEFAULT_MAX_RECORD: usize = 1024 * 1024;
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
/// `async_chat`. See the [module documentation](super).
pub struct AsyncChat<R: Role = Connected> {
    pub(super) channel: Channel<R>,
    pub(super) input: Input,
    pub(super) output: Output,
    /// The TLS session the bytes go through, if any (feature `tls`; empty
    /// without it).
    pub(crate) tls: Slot,
}

/// What a chat holds of its input: the same whatever the role, so it moves
/// unchanged when the connect completes.
pub(super) struct Input {
    /// Changed only through [`Input::set_terminator`], which keeps the
    /// flags below in step with it.
    pub(super) terminator: Terminator,
    /// Whether `terminator` is a count, and then what it still counts;
    /// whether it is made of bytes. The splitter tests these per record
    /// rather than matching the enum: its tag is folded into the byte
    /// buffer's capacity, and telling the variants apart takes three
    /// comparisons, each a call into libFuzzer in a fuzzing build with
    /// comparison tracing (a test of a flag is not one), for every record
    /// of a protocol of many small counted ones.
    pub(super) counting: bool,
    pub(super) count: usize,
    pub(super) by_bytes: bool,
    /// `held` is what a failed callback left: bytes no split looked at,
    /// maybe whole records, handed over without waiting for the peer.
    pub(super) unexamined: bool,
    /// Input held back between reads: a partial terminator, or what was left
    /// when a callback failed.
    pub(super) held: Vec<u8>,
    /// The default collector's record so far (asynchat's `incoming`).
    pub(super) incoming: Vec<u8>,
    /// Bytes of the record being collected so far, whoever collects them:
    /// what the record limit is checked against.
    pub(super) record_len: usize,
    /// Dropping the rest of an over-long record, up to its terminator.
    pub(super) skipping: bool,
    /// Bytes one read asks for (asynchat's `ac_in_buffer_size`).
    pub(super) in_buffer_size: usize,
    /// The longest record the default collector or a byte terminator takes.
    pub(super) max_record: usize,
}

impl Input {
    /// Replaces the terminator, and the flags that say what it is.
    #[inline]
    pub(super) fn set_terminator(&mut self, terminator: Terminator) {
        let (counting, count, by_bytes) = match &terminator {
            Terminator::Count(n) => (true, n.get(), false),
            Terminator::Bytes(_) => (false, 0, true),
            Terminator::None => (false, 0, false),
        };
        let old = std::mem::replace(&mut self.terminator, terminator);
        if self.by_bytes {
            drop(old);
        } else {
            // A count or none owns nothing: forgotten, it needs no drop,
            // whose test of the variant would be traced comparisons again.
            std::mem::forget(old);
        }
        (self.counting, self.count, self.by_bytes) = (counting, count, by_bytes);
    }
}

impl<R: Role> AsyncChat<R> {
    /// Wraps a stream channel, splitting its input at `terminator`.
    pub fn new(channel: Channel<R>, terminator: Terminator) -> Self {
        let mut input = Input {
            terminator: Terminator::None,
            counting: false,
            count: 0,
            by_bytes: false,
            unexamined: false,
            held: Vec::new(),
            incoming: Vec::new(),
            record_len: 0,
            skipping: false,
            in_buffer_size: DEFAULT_IN_BUFFER_SIZE,
            max_record: DEFAULT_MAX_RECORD,
        };
        input.set_terminator(terminator);
        AsyncChat { channel, input, output: Output::new(), tls: Slot::default() }
    }

    /// How long the chat may linger after
    /// [`close_when_done`](Self::close_when_done) (default
    /// [`DEFAULT_LINGER`](super::DEFAULT_LINGER), 5 s): once its queue is sent it shuts down its
    /// sending side, then reads and drops whatever the peer still sends
    /// (at most [`LINGER_BYTES`](super::LINGER_BYTES)) until the peer closes, and only then
    /// closes, so that the peer reads the last reply instead of a reset.
    /// `None` closes as soon as the queue is sent, as asynchat did; unread
    /// input then makes the kernel send a reset. At most
    /// [`MAX_LINGER`](super::MAX_LINGER) (a minute): a longer time is taken
    /// as that, so that a silent peer never holds the channel for good.
    pub fn set_linger(&mut self, linger: Option<Duration>) {
        self.output.linger.time = linger.map(|time| time.min(super::output::MAX_LINGER));
    }

    /// Whether the chat is lingering: its queue is sent, its sending side
    /// shut down, and it waits for the peer to close.
    pub fn is_lingering(&self) -> bool {
        self.output.linger.active
    }

    /// Sets the back-pressure watermarks: the channel stops reading above
    /// `high` bytes queued and resumes at or below `low` (defaults: 1 MiB
    /// and 256 KiB). `usize::MAX` as `high` turns back-pressure off.
    pub fn set_watermarks(&mut self, low: usize, high: usize) {
        self.output.set_watermarks(low, high);
    }

    /// The terminator the next bytes are split at (asynchat's
    /// `get_terminator`).
    pub fn terminator(&self) -> &Terminator {
        &self.input.terminator
    }

    /// Changes the terminator; inside `found_terminator` it applies to the
    /// rest of the bytes already received.
    ///
    /// Inlined: a handler that sets a terminator it names (`Terminator::LF`,
    /// `Terminator::Count(n)`) then sets the flags the splitter tests
    /// without a test of its own.
    #[inline]
    pub fn set_terminator(&mut self, terminator: Terminator) {
        self.input.set_terminator(terminator);
    }

    /// Appends to the default collector's record (asynchat's
    /// `_collect_incoming_data`).
    pub fn collect(&mut self, data: &[u8]) {
        self.input.incoming.extend_from_slice(data);
    }

    /// The default collector's record so far.
    pub fn incoming(&self) -> &[u8] {
        &self.input.incoming
    }

    /// Takes the default collector's record, leaving it empty (asynchat's
    /// `_get_data`).
    pub fn take_incoming(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input.incoming)
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
        self.output.push(data)
    }

    /// Queues a producer, asked for more as the socket takes it (asynchat's
    /// `push_with_producer`).
    /// Only on a connected or connecting chat, as [`push`](Self::push).
    ///
    /// A producer's bytes are not queued: it is asked for a chunk when the
    /// queue before it is sent, and only that chunk is counted in the queued
    /// bytes (and charged to a budget, without refusal). So a producer is
    /// accepted whenever the bytes already queued are within the
    /// [`output_limit`](Self::output_limit), even a limit of 0, and refused
    /// (`StorageFull`) only when they are past it,
    /// or after [`close_when_done`](Self::close_when_done).
    pub fn push_with_producer(&mut self, producer: impl Producer + 'static) -> io::Result<()>
    where
        R: CanPush,
    {
        self.output.check_push(0)?;
        // The last buffer: nothing is appended to it any more, and its slack
        // would be held while the producer runs, beside the next buffer's.
        // The spare: kept only for a queue that empties; with a producer in
        // the queue it would sit beside the producer's chunks.
        self.output.seal_tail(true, false);
        self.output.out.push_back(Out::Producer(Box::new(producer)));
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
        if !self.output.closing {
            self.output.closing = true;
            self.output.seal_tail(false, true);
            self.output.out.push_back(Out::Close);
        }
    }

    /// Whether [`close_when_done`](Self::close_when_done) was called.
    pub fn is_closing(&self) -> bool {
        self.output.closing
    }

    /// Drops buffered input and queued output (asynchat's
    /// `discard_buffers`). A pending `close_when_done` stays pending.
    pub fn discard_buffers(&mut self) {
        self.input.held.clear();
        self.input.incoming.clear();
        self.input.record_len = 0;
        self.output.discard();
        self.output.out_bytes.sent(self.output.out_bytes.bytes);
        self.output.watermarks.update(0);
        if self.output.closing {
            self.output.out.push_back(Out::Close);
        }
    }

    /// Bytes queued and not yet sent (producers' future output not counted).
    pub fn queued(&self) -> usize {
        self.output.out_bytes.bytes
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
        let queued = self.output.out_bytes.bytes;
        if let Some(old) = self.output.out_bytes.budget.replace(budget.clone()) {
            old.release(queued);
        }
        budget.charge(queued);
    }

    /// The budget this chat's output is charged to, if any.
    pub fn budget(&self) -> Option<&OutputBudget> {
        self.output.out_bytes.budget.as_ref()
    }

    /// Whether bytes or producers wait to be sent.
    pub fn has_output(&self) -> bool {
        self.output.has_output()
    }

    /// The most bytes one read takes (asynchat's `ac_in_buffer_size`).
    pub fn in_buffer_size(&self) -> usize {
        self.input.in_buffer_size
    }

    /// Changes the most bytes one read takes (at least 1, at most 64 KiB).
    pub fn set_in_buffer_size(&mut self, size: usize) {
        self.input.in_buffer_size = size.clamp(1, DEFAULT_IN_BUFFER_SIZE);
    }

    /// The most bytes one send gives (asynchat's `ac_out_buffer_size`).
    pub fn out_buffer_size(&self) -> usize {
        self.output.out_buffer_size
    }

    /// Changes the most bytes one send gives (at least 1; a larger value
    /// than the queue's 64 KiB buffers simply sends a whole buffer).
    pub fn set_out_buffer_size(&mut self, size: usize) {
        self.output.out_buffer_size = size.max(1);
    }

    /// The longest record accepted under a byte terminator, and the most
    /// the default collector holds under [`Terminator::None`].
    pub fn max_record(&self) -> usize {
        self.input.max_record
    }

    /// Changes the longest record accepted under a byte terminator (and
    /// the bound on the default collector under [`Terminator::None`]).
    pub fn set_max_record(&mut self, limit: usize) {
        self.input.max_record = limit;
    }

    /// The bound on queued output.
    pub fn output_limit(&self) -> usize {
        self.output.output_limit
    }

    /// Changes the bound on queued output.
    pub fn set_output_limit(&mut self, limit: usize) {
        self.output.set_limit(limit);
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
        self.output.capacity()
    }

    /// The channel underneath.
    pub fn get_ref(&self) -> &Channel<R> {
        &self.channel
    }
}

impl AsyncChat<Connected> {
    /// Makes one send of queued output, at most
    /// [`out_buffer_size`](Self::out_buffer_size) bytes, asking producers for
    /// more as needed (asynchat's `initiate_send`).
    pub fn initiate_send(&mut self) -> io::Result<()> {
        // TLS records made earlier (the rest of a send, an alert) go first.
        self.tls.flush(&mut self.channel)?;
        self.output.send(&mut self.tls, &mut self.channel)
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
}

impl<R: Role> fmt::Debug for AsyncChat<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncChat")
            .field("channel", &self.channel)
            .field("terminator", &self.input.terminator)
            .field("held", &self.input.held.len())
            .field("queued", &self.output.out_bytes.bytes)
            .field("closing", &self.output.closing)
            .finish_non_exhaustive()
    }
}

queued_transport!(
    AsyncChat { input, output, tls },
    queued: |c| c.has_output(),
    send: |c| c.initiate_send(),
    backlogged: |c| c.output.watermarks.backlogged,
    // Not once closing: the records after `close_when_done` are not read
    // (and a lingering chat would spin on input it never takes).
    held_input: |c| c.input.unexamined && !c.input.held.is_empty() && !c.output.closing,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    /// Input a failed callback left unexamined is input the loop hands
    /// over without a readiness report; a partial terminator held between
    /// reads is not (it waits for the peer), and nothing is once the chat
    /// is closing.
    #[test]
    fn input_left_by_a_failed_callback_is_held_input_until_the_chat_closes() {
        let (ours, _peer) = Channel::pair().unwrap();
        let mut chat = AsyncChat::new(ours, Terminator::LF);
        assert!(!chat.has_buffered_input());
        chat.input.held.extend_from_slice(b"partial");
        assert!(!chat.has_buffered_input(), "a partial record waits for the peer");
        chat.input.unexamined = true;
        assert!(chat.has_buffered_input());
        chat.close_when_done();
        assert!(!chat.has_buffered_input(), "closing: no record is read any more");
    }
}
