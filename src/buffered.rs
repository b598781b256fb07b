//! Buffered output for streams: asyncore's `dispatcher_with_send`.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::channel::{Channel, Connected, Connecting, Role};
use crate::tls::session::Slot;
use crate::transport::queued_transport;

/// Most bytes one write event sends, as asyncore's `initiate_send` (64 KiB).
pub const SEND_CHUNK: usize = 64 * 1024;

/// The default bound on queued output: 4 MiB per channel.
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// The default high watermark: above 1 MiB queued, the channel stops reading.
pub const DEFAULT_HIGH_WATERMARK: usize = 1024 * 1024;

/// The default low watermark: reading resumes once the queue is under 256 KiB.
pub const DEFAULT_LOW_WATERMARK: usize = 256 * 1024;

/// Back-pressure with hysteresis: set above `high`, cleared at or below
/// `low`. Shared by the buffered transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Watermarks {
    pub low: usize,
    pub high: usize,
    pub backlogged: bool,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks { low: DEFAULT_LOW_WATERMARK, high: DEFAULT_HIGH_WATERMARK, backlogged: false }
    }
}

impl Watermarks {
    pub fn update(&mut self, queued: usize) {
        if queued > self.high {
            self.backlogged = true;
        } else if queued <= self.low {
            self.backlogged = false;
        }
    }

    pub fn set(&mut self, low: usize, high: usize, queued: usize) {
        self.low = low.min(high);
        self.high = high;
        self.backlogged = false;
        self.update(queued);
    }
}

/// A stream whose `send` never loses a byte: what the socket does not take at
/// once is queued and sent as the socket allows, one send per write event.
///
/// Output may be queued while the channel is still [`Connecting`]; it goes out
/// after `handle_connect`. The queue is bounded ([`DEFAULT_OUTPUT_LIMIT`] by
/// default): a `send` that would exceed the bound is refused whole with an
/// error of kind `StorageFull` carrying a [`BufferFull`], so a peer that never
/// reads cannot make the process grow without bound. Before that, past the
/// high watermark ([`DEFAULT_HIGH_WATERMARK`]) the loop stops reading the
/// channel until the queue drains below the low one
/// ([`DEFAULT_LOW_WATERMARK`]): an echo or proxy slows down to its slowest
/// reader instead of failing.
///
/// # Examples
///
/// ```
/// use rolecore::{Buffered, Channel};
///
/// # fn main() -> std::io::Result<()> {
/// let (a, _b) = Channel::pair()?;
/// let mut a = Buffered::new(a).with_limit(16);
/// a.send(b"hello")?;
/// let full = a.send(&[0u8; 64]).unwrap_err();
/// assert_eq!(full.kind(), std::io::ErrorKind::StorageFull);
/// # Ok(())
/// # }
/// ```
pub struct Buffered<R: Role = Connected> {
    channel: Channel<R>,
    /// `None` while nothing was ever queued and the bounds are the defaults:
    /// an idle connection costs its channel and this pointer. Once allocated
    /// it stays, so a connection that backs up now and then does not
    /// allocate each time.
    output: Option<Box<Output>>,
    /// The TLS session the bytes go through, if any (feature `tls`; empty
    /// without it).
    pub(crate) tls: Slot,
}

/// The queue and its bounds, out of line: allocated by the first `send` that
/// queues or the first bound that differs from the defaults.
#[derive(Debug)]
struct Output {
    queue: Vec<u8>,
    /// Bytes of `queue` already sent; compacted away as the queue drains.
    sent: usize,
    limit: usize,
    watermarks: Watermarks,
    /// Charged with every queued byte, until it is sent or dropped.
    budget: Option<OutputBudget>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            queue: Vec::new(),
            sent: 0,
            limit: DEFAULT_OUTPUT_LIMIT,
            watermarks: Watermarks::default(),
            budget: None,
        }
    }
}

impl Output {
    fn queued(&self) -> usize {
        self.queue.len() - self.sent
    }

    /// Queues `data`, whose bytes the caller already charged to the budget.
    fn enqueue(&mut self, data: &[u8]) {
        if self.sent > 0 && self.sent >= self.queue.len() / 2 {
            // Drop what was sent before growing: each byte moves at most once
            // more, where asyncore copied the whole rest on every send.
            self.queue.drain(..self.sent);
            self.sent = 0;
        }
        self.queue.extend_from_slice(data);
        self.watermarks.update(self.queued());
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Bytes that will never be sent no longer count against the others.
        if let Some(budget) = &self.budget {
            budget.release(self.queued());
        }
    }
}

/// A bound on the output queued by many channels together: the sum of the
/// bytes queued by every [`Buffered`] and [`AsyncChat`](crate::AsyncChat)
/// that shares it.
///
/// Each channel's own limit bounds one slow reader; a budget bounds them all,
/// so a hundred readers that stop at once cannot make the process hold a
/// hundred full queues. A handle is cheap to clone (one reference count);
/// every clone is the same budget, and it may be shared by loops on several
/// threads. Attach it with [`Buffered::set_budget`] or
/// [`AsyncChat::set_budget`](crate::AsyncChat::set_budget).
///
/// A byte is charged when it is queued and released when it is sent, or when
/// its queue is discarded or dropped (the channel closed). Bytes that go
/// straight to the socket are never charged. When queuing would pass the
/// budget, the `send` or `push` is refused whole with an error of kind
/// `StorageFull` carrying a [`BudgetFull`], as when a channel's own limit is
/// reached: the caller decides whom to drop. A chat server drops the member
/// with the largest queue (the slowest reader), which frees the most; see
/// `examples/chat_server.rs`. Bytes a [`Producer`](crate::Producer) hands out
/// are charged without a check, since the producer was queued already.
///
/// Without a budget nothing is counted: a channel pays nothing for the
/// feature.
///
/// # Examples
///
/// ```
/// use std::io::ErrorKind;
/// use rolecore::{BudgetFull, Buffered, Channel, OutputBudget};
///
/// # fn main() -> std::io::Result<()> {
/// let budget = OutputBudget::new(300_000);
/// let (a, _a_peer) = Channel::pair()?;
/// let (b, _b_peer) = Channel::pair()?;
/// let mut a = Buffered::new(a).with_budget(&budget);
/// let mut b = Buffered::new(b).with_budget(&budget);
/// // Neither peer reads: what their sockets cannot take is queued and charged.
/// while a.queued() < 200_000 {
///     a.send(&[0u8; 50_000])?;
/// }
/// let err = loop {
///     if let Err(e) = b.send(&[0u8; 50_000]) {
///         break e;
///     }
/// };
/// assert_eq!(err.kind(), ErrorKind::StorageFull);
/// assert!(err.get_ref().unwrap().is::<BudgetFull>());
/// assert_eq!(budget.used(), a.queued() + b.queued());
/// drop(a); // its queue is released
/// assert_eq!(budget.used(), b.queued());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OutputBudget(Arc<BudgetState>);

#[derive(Debug)]
struct BudgetState {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl OutputBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> OutputBudget {
        OutputBudget(Arc::new(BudgetState { limit: AtomicUsize::new(limit), used: AtomicUsize::new(0) }))
    }

    /// The bound on the bytes queued by all channels sharing the budget.
    pub fn limit(&self) -> usize {
        self.0.limit.load(Ordering::Relaxed)
    }

    /// Changes the bound. Bytes already queued stay queued, even over it.
    pub fn set_limit(&self, limit: usize) {
        self.0.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes queued, and not yet sent, by all channels sharing the budget.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Bytes that may still be queued before the budget refuses.
    pub fn available(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    /// Charges `n` bytes, or refuses them all if they would pass the limit.
    pub(crate) fn try_charge(&self, n: usize) -> io::Result<()> {
        let limit = self.limit();
        let result = self.0.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(n).filter(|&total| total <= limit)
        });
        match result {
            Ok(_) => Ok(()),
            Err(used) => {
                Err(io::Error::new(io::ErrorKind::StorageFull, BudgetFull { used, requested: n, limit }))
            }
        }
    }

    /// Charges `n` bytes whatever the limit: bytes already queued elsewhere
    /// that move to this budget, or a producer's chunk.
    pub(crate) fn charge(&self, n: usize) {
        self.0.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Releases `n` bytes charged before.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.0.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for OutputBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputBudget").field("used", &self.used()).field("limit", &self.limit()).finish()
    }
}

/// The error inside the `StorageFull` [`io::Error`] of a `send` or `push`
/// refused because it would pass a shared [`OutputBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetFull {
    /// Bytes queued by all channels sharing the budget.
    pub used: usize,
    /// Bytes the refused call asked to queue.
    pub requested: usize,
    /// The budget's limit.
    pub limit: usize,
}

impl fmt::Display for BudgetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "output budget exhausted: {} bytes queued by the channels sharing it, {} more refused \
             (budget {}); drop or pause the slowest reader (the largest queue), or raise the budget \
             with OutputBudget::set_limit",
            self.used, self.requested, self.limit
        )
    }
}

impl std::error::Error for BudgetFull {}

/// The error inside the `StorageFull` [`io::Error`] of a refused
/// [`Buffered::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferFull {
    /// Bytes already queued.
    pub queued: usize,
    /// Bytes the refused send asked to add.
    pub requested: usize,
    /// The bound.
    pub limit: usize,
}

impl fmt::Display for BufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "output buffer full: {} bytes queued, {} more refused (limit {}); \
             wait for writable() to turn false, or raise the limit with Buffered::set_limit",
            self.queued, self.requested, self.limit
        )
    }
}

impl std::error::Error for BufferFull {}

impl<R: Role> Buffered<R> {
    /// Wraps a channel with an empty queue and the default limit.
    pub fn new(channel: Channel<R>) -> Self {
        Buffered { channel, output: None, tls: Slot::default() }
    }

    /// The same, with another bound on queued output.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.set_limit(limit);
        self
    }

    /// Changes the bound on queued output. Bytes already queued stay queued.
    pub fn set_limit(&mut self, limit: usize) {
        if limit != self.limit() {
            self.output_mut().limit = limit;
        }
    }

    /// The bound on queued output.
    pub fn limit(&self) -> usize {
        self.output.as_ref().map_or(DEFAULT_OUTPUT_LIMIT, |o| o.limit)
    }

    /// Sets the back-pressure watermarks: reading stops above `high` bytes
    /// queued and resumes at or below `low`. `usize::MAX` as `high` turns
    /// back-pressure off.
    pub fn set_watermarks(&mut self, low: usize, high: usize) {
        let output = self.output_mut();
        let queued = output.queued();
        output.watermarks.set(low, high, queued);
    }

    /// The back-pressure watermarks, `(low, high)`.
    pub fn watermarks(&self) -> (usize, usize) {
        let w = self.output.as_ref().map_or_else(Watermarks::default, |o| o.watermarks);
        (w.low, w.high)
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.output.as_ref().map_or(0, |o| o.queued())
    }

    /// Charges this stream's queued output to `budget`, shared with other
    /// channels (see [`OutputBudget`]). Bytes already queued move to it from
    /// any budget set before.
    pub fn set_budget(&mut self, budget: &OutputBudget) {
        let output = self.output_mut();
        let queued = output.queued();
        if let Some(old) = output.budget.replace(budget.clone()) {
            old.release(queued);
        }
        budget.charge(queued);
    }

    /// The same, with its output charged to `budget`.
    pub fn with_budget(mut self, budget: &OutputBudget) -> Self {
        self.set_budget(budget);
        self
    }

    /// The budget this stream's output is charged to, if any.
    pub fn budget(&self) -> Option<&OutputBudget> {
        self.output.as_ref().and_then(|o| o.budget.as_ref())
    }

    /// The channel underneath, for socket queries (`local_addr`,
    /// `peer_addr`).
    ///
    /// A `Buffered` gives no `&mut` access to its channel, as an
    /// [`AsyncChat`](crate::AsyncChat) gives none: a send through it would
    /// overtake what is queued, and on a TLS stream would put plaintext
    /// between the TLS records (a receive would eat the peer's records).
    /// Output goes through [`send`](Buffered::send), `TCP_NODELAY` through
    /// [`set_nodelay`](Buffered::set_nodelay).
    pub fn get_ref(&self) -> &Channel<R> {
        &self.channel
    }

    fn output_mut(&mut self) -> &mut Output {
        self.output.get_or_insert_with(Box::default)
    }

    fn check_room(&self, more: usize) -> io::Result<()> {
        let queued = self.queued();
        let limit = self.limit();
        if queued.saturating_add(more) > limit {
            let full = BufferFull { queued, requested: more, limit };
            return Err(io::Error::new(io::ErrorKind::StorageFull, full));
        }
        Ok(())
    }

    /// Charges `n` bytes to the budget, if there is one; refused whole when
    /// they would pass it.
    fn reserve(&self, n: usize) -> io::Result<()> {
        match self.budget() {
            Some(budget) => budget.try_charge(n),
            None => Ok(()),
        }
    }

    /// Gives back bytes reserved but not queued (they went straight out).
    fn unreserve(&self, n: usize) {
        if let Some(budget) = self.budget() {
            budget.release(n);
        }
    }

    #[cold]
    fn enqueue(&mut self, data: &[u8]) {
        self.output_mut().enqueue(data);
    }
}

impl Buffered<Connecting> {
    /// Queues `data` to send once connected.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_room(data.len())?;
        self.reserve(data.len())?;
        self.enqueue(data);
        Ok(())
    }
}

impl Buffered<Connected> {
    /// Sends `data`: at once as far as the socket takes it, the rest queued.
    ///
    /// Refused whole, with a `StorageFull` error carrying a [`BufferFull`],
    /// when the queue would grow past the limit.
    ///
    /// With an [`OutputBudget`], refused whole with a `StorageFull` error
    /// carrying a [`BudgetFull`] when queuing all of `data` would pass it,
    /// even if the socket could take part of it now: a send is never half
    /// done.
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        // The common case, inlined: nothing queued, no budget, within the
        // limit. The bytes go straight to the socket; only what it does not
        // take is queued (out of line), with no budget to charge.
        if self.sends_directly(data.len()) {
            let n = self.tls.send(&mut self.channel, data)?;
            if n < data.len() {
                self.enqueue(&data[n..]);
            }
            return Ok(());
        }
        self.send_checked(data)
    }

    /// Whether a send of `len` bytes needs none of the queue's bookkeeping:
    /// nothing is queued, no budget is charged, and `len` is within the
    /// limit (what [`send_checked`](Self::send_checked) would then do comes
    /// down to one send, and queuing what it left).
    #[inline]
    fn sends_directly(&self, len: usize) -> bool {
        match self.output.as_deref() {
            None => len <= DEFAULT_OUTPUT_LIMIT,
            Some(o) => o.sent == o.queue.len() && o.budget.is_none() && len <= o.limit,
        }
    }

    /// [`send`](Self::send) with the limit, the budget and the queue.
    #[inline(never)]
    fn send_checked(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_room(data.len())?;
        self.reserve(data.len())?;
        if self.queued() > 0 {
            self.enqueue(data);
            return Ok(());
        }
        let n = match self.tls.send(&mut self.channel, data) {
            Ok(n) => n,
            Err(e) => {
                self.unreserve(data.len());
                return Err(e);
            }
        };
        self.unreserve(n);
        if n < data.len() {
            self.enqueue(&data[n..]);
        }
        Ok(())
    }

    /// Receives, as [`Channel::recv`].
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.recv(&mut self.channel, buf)
    }

    /// Sets `TCP_NODELAY` on the socket underneath (an error on a Unix
    /// socket), as [`Channel::set_nodelay`].
    pub fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        self.channel.set_nodelay(nodelay)
    }

    /// Makes one send of at most [`SEND_CHUNK`] queued bytes, as asyncore's
    /// `initiate_send`.
    pub fn initiate_send(&mut self) -> io::Result<()> {
        // TLS records made earlier (the rest of a send, an alert) go first.
        self.tls.flush(&mut self.channel)?;
        let Some(out) = self.output.as_deref_mut() else { return Ok(()) };
        if out.queued() == 0 {
            return Ok(());
        }
        let end = out.queue.len().min(out.sent + SEND_CHUNK);
        let n = self.tls.send(&mut self.channel, &out.queue[out.sent..end])?;
        out.sent += n;
        if let Some(budget) = &out.budget {
            budget.release(n);
        }
        out.watermarks.update(out.queued());
        if out.sent == out.queue.len() {
            out.sent = 0;
            out.queue.clear();
            if out.queue.capacity() > SEND_CHUNK {
                // A burst is over: give its memory back rather than keep the
                // peak for the life of an idle connection.
                out.queue = Vec::new();
            }
        }
        Ok(())
    }
}

impl<R: Role> fmt::Debug for Buffered<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffered")
            .field("channel", &self.channel)
            .field("queued", &self.queued())
            .field("limit", &self.limit())
            .finish()
    }
}

impl From<Channel<Connected>> for Buffered<Connected> {
    fn from(ch: Channel<Connected>) -> Self {
        Buffered::new(ch)
    }
}

impl From<Channel<Connecting>> for Buffered<Connecting> {
    fn from(ch: Channel<Connecting>) -> Self {
        Buffered::new(ch)
    }
}

queued_transport!(
    Buffered { output, tls },
    queued: |b| b.queued() > 0,
    send: |b| b.initiate_send(),
    backlogged: |b| b.output.as_ref().is_some_and(|o| o.watermarks.backlogged),
    held_input: |_b| false,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    #[test]
    fn partial_sends_are_queued_in_order_and_drain() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_limit(64 << 20);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..4 {
            a.send(&chunk).unwrap();
        }
        assert!(a.queued() > 0, "a socketpair cannot take 4 MiB at once");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < 4 << 20 {
            a.initiate_send().unwrap();
            match b.recv(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    // Nothing queued and nothing in the socket: a byte was
                    // lost. Fail rather than wait for it forever.
                    assert!(a.queued() > 0, "bytes lost: {} of {} arrived", got.len(), 4 << 20);
                }
            }
        }
        assert_eq!(got.len(), 4 << 20, "bytes duplicated");
        assert_eq!(a.queued(), 0);
        assert!(got.chunks(1 << 20).all(|c| c == &chunk[..]));
    }

    #[test]
    fn watermarks_pause_reading_with_hysteresis() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        a.set_watermarks(100, 1000);
        // Fill the socket so that what follows stays queued.
        while a.channel.send(&[0u8; 4096]).unwrap() > 0 {}
        a.send(&[1u8; 900]).unwrap();
        assert!(!a.is_backlogged(), "900 <= high");
        a.send(&[1u8; 200]).unwrap();
        assert!(a.is_backlogged(), "1100 > high");
        let mut sink = vec![0u8; 1 << 16];
        let mut drained = 0;
        while a.queued() > 0 {
            drained += b.recv(&mut sink).unwrap_or(0);
            a.initiate_send().unwrap();
            if a.queued() > 100 {
                assert!(a.is_backlogged(), "still above low: {}", a.queued());
            }
        }
        assert!(drained > 0);
        assert!(!a.is_backlogged(), "at or below low");
    }

    #[test]
    fn an_idle_stream_allocates_nothing_until_output_backs_up() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_limit(DEFAULT_OUTPUT_LIMIT);
        a.send(b"goes straight out").unwrap();
        assert!(a.output.is_none(), "nothing queued, default bounds: no allocation");
        assert_eq!(a.limit(), DEFAULT_OUTPUT_LIMIT);
        assert_eq!(a.watermarks(), (DEFAULT_LOW_WATERMARK, DEFAULT_HIGH_WATERMARK));
        while a.channel.send(&[0u8; 4096]).unwrap() > 0 {}
        a.send(b"queued").unwrap();
        assert_eq!(a.queued(), 6);
        let mut sink = vec![0u8; 1 << 16];
        while a.queued() > 0 {
            let _ = b.recv(&mut sink);
            a.initiate_send().unwrap();
        }
        assert!(a.output.is_some(), "kept for the next burst");
        let mut c = Buffered::new(Channel::pair().unwrap().0);
        c.set_watermarks(1, 2);
        assert_eq!((c.watermarks(), c.limit()), ((1, 2), DEFAULT_OUTPUT_LIMIT));
    }

    #[test]
    fn a_send_over_the_limit_is_refused_whole() {
        let (a, _b) = Channel::pair().unwrap();
        let (c, _d) = Channel::pair().unwrap();
        let mut pending: Buffered<Connecting> = Buffered::new(c.into_role()).with_limit(10);
        pending.send(b"0123456789").unwrap();
        let err = pending.send(b"x").unwrap_err();
        let full = err.get_ref().unwrap().downcast_ref::<BufferFull>().unwrap();
        assert_eq!(*full, BufferFull { queued: 10, requested: 1, limit: 10 });
        assert!(err.to_string().contains("set_limit"));
        let mut a = Buffered::new(a).with_limit(3);
        assert!(a.send(b"abcd").is_err());
        assert_eq!(a.queued(), 0);
    }

    /// Fills the socket under `a` so that what is sent next stays queued.
    fn fill(a: &mut Buffered) {
        while a.channel.send(&[0u8; 4096]).unwrap() > 0 {}
    }

    /// Reads everything `b` holds now; returns how many bytes.
    fn drain_peer(b: &mut Channel<Connected>) -> usize {
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match b.recv(&mut sink) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    return total;
                }
            }
        }
    }

    /// Both watermarks are inclusive on the side the docs say: back-pressure
    /// starts strictly above `high` (exactly `high` queued still reads) and
    /// ends at `low` exactly, not only below it.
    #[test]
    fn watermarks_start_strictly_above_high_and_end_at_low_exactly() {
        let mut w = Watermarks { low: 100, high: 1000, backlogged: false };
        w.update(1000);
        assert!(!w.backlogged, "exactly high is not above it");
        w.update(1001);
        assert!(w.backlogged);
        w.update(101);
        assert!(w.backlogged, "above low: still backlogged");
        w.update(100);
        assert!(!w.backlogged, "at low: reading resumes");

        let (a, _b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        a.set_watermarks(100, 1000);
        fill(&mut a);
        a.send(&[1u8; 1000]).unwrap();
        assert_eq!(a.queued(), 1000);
        assert!(!a.is_backlogged(), "1000 queued, high 1000");
        a.send(b"x").unwrap();
        assert!(a.is_backlogged(), "1001 queued, high 1000");
    }

    /// A low watermark above the high one is brought down to it: reading
    /// then resumes as soon as the queue is back at or under `high`.
    #[test]
    fn a_low_watermark_above_the_high_one_is_clamped_to_it() {
        let (a, _b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        a.set_watermarks(500, 100);
        assert_eq!(a.watermarks(), (100, 100));
        let mut w = Watermarks::default();
        w.set(500, 100, 300);
        assert!(w.backlogged);
        w.update(200);
        assert!(w.backlogged, "200 is above the clamped low of 100");
    }

    /// New watermarks take effect at once: a backlogged stream whose high
    /// watermark is raised to `usize::MAX` (back-pressure off) reads again,
    /// without waiting for its queue to drain to the low one.
    #[test]
    fn raising_the_watermarks_ends_back_pressure_at_once() {
        let (a, _b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        a.set_watermarks(100, 1000);
        fill(&mut a);
        a.send(&[1u8; 1100]).unwrap();
        assert!(a.is_backlogged());
        a.set_watermarks(100, usize::MAX);
        assert!(!a.is_backlogged(), "back-pressure turned off with 1100 queued");
        a.set_watermarks(100, 1000);
        assert!(a.is_backlogged(), "1100 > 1000 again");
    }

    /// A fresh stream (nothing queued, no bound set) refuses a send larger
    /// than the default limit whole, as one with an explicit limit does: no
    /// byte of it reaches the peer and nothing is queued.
    #[test]
    fn a_fresh_stream_refuses_a_send_over_the_default_limit_whole() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        let err = a.send(&vec![7u8; DEFAULT_OUTPUT_LIMIT + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(a.queued(), 0);
        assert_eq!(drain_peer(&mut b), 0, "a refused send sent nothing");
        a.send(&vec![7u8; 1000]).unwrap();
        assert_eq!(drain_peer(&mut b), 1000);
    }

    /// A budget takes exactly its limit: a send that brings it to the limit
    /// is queued, one more byte is refused.
    #[test]
    fn a_budget_takes_exactly_its_limit() {
        let budget = OutputBudget::new(1000);
        let (a, _b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_budget(&budget);
        fill(&mut a);
        a.send(&[1u8; 1000]).unwrap();
        assert_eq!((budget.used(), budget.available()), (1000, 0));
        let err = a.send(b"x").unwrap_err();
        let full = err.get_ref().unwrap().downcast_ref::<BudgetFull>().unwrap();
        assert_eq!(*full, BudgetFull { used: 1000, requested: 1, limit: 1000 });
        assert_eq!(a.queued(), 1000);
        budget.set_limit(10);
        assert_eq!(budget.available(), 0, "over the limit: none available, not a wrap-around");
    }

    /// Dropping a stream whose queue was partly sent releases from the
    /// budget only the bytes still queued (the sent ones were released
    /// when sent): the budget ends at zero.
    #[test]
    fn dropping_a_partly_sent_queue_releases_only_the_unsent_bytes() {
        let budget = OutputBudget::new(1 << 20);
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_budget(&budget);
        fill(&mut a);
        a.send(&[1u8; 100_000]).unwrap();
        assert_eq!(budget.used(), 100_000);
        drain_peer(&mut b);
        a.initiate_send().unwrap();
        let left = a.queued();
        assert!(left > 0 && left < 100_000, "one chunk went out: {left} left");
        assert_eq!(budget.used(), left);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    /// Output queued while connecting is charged to the budget as any
    /// queued output, and the limit bounds it.
    #[test]
    fn output_queued_while_connecting_is_charged_to_the_budget() {
        let budget = OutputBudget::new(100);
        let (c, _d) = Channel::pair().unwrap();
        let mut pending: Buffered<Connecting> = Buffered::new(c.into_role()).with_budget(&budget);
        pending.send(&[1u8; 60]).unwrap();
        assert_eq!(budget.used(), 60);
        let err = pending.send(&[1u8; 41]).unwrap_err();
        assert!(err.get_ref().unwrap().is::<BudgetFull>());
        assert_eq!((pending.queued(), budget.used()), (60, 60));
        drop(pending);
        assert_eq!(budget.used(), 0);
    }

    /// One write event sends at most [`SEND_CHUNK`] bytes, however much the
    /// socket would take (asyncore's `initiate_send`): one channel's burst
    /// cannot hog the loop.
    #[test]
    fn one_write_event_sends_at_most_one_chunk() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a);
        fill(&mut a);
        let total = 3 * SEND_CHUNK;
        a.send(&vec![1u8; total]).unwrap();
        assert_eq!(a.queued(), total);
        drain_peer(&mut b);
        a.initiate_send().unwrap();
        let sent = total - a.queued();
        assert!(sent > 0 && sent <= SEND_CHUNK, "{sent} bytes in one write event");
    }

    /// The memory a queue holds stays near what is queued while it never
    /// empties: sent bytes are compacted away as more is queued, rather than
    /// kept until the queue drains. Once a burst larger than a chunk has
    /// drained, its buffer is given back.
    #[test]
    fn a_queue_that_never_empties_does_not_keep_the_sent_bytes() {
        let (a, mut b) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_limit(64 << 20);
        fill(&mut a);
        a.send(&vec![1u8; 200_000]).unwrap();
        let mut most = a.queued();
        let mut sink = vec![0u8; 10_000];
        for _ in 0..400 {
            let _ = b.recv(&mut sink);
            a.initiate_send().unwrap();
            a.send(&[2u8; 10_000]).unwrap();
            most = most.max(a.queued());
            let capacity = a.output.as_ref().unwrap().queue.capacity();
            assert!(
                capacity <= 4 * most + SEND_CHUNK,
                "queue holds {capacity} bytes of memory for at most {most} queued"
            );
        }
        while a.queued() > 0 {
            drain_peer(&mut b);
            a.initiate_send().unwrap();
        }
        assert_eq!(a.output.as_ref().unwrap().queue.capacity(), 0, "the burst's buffer is freed");
    }
}
