//! Layer 5: an [`AsyncChat`](super::AsyncChat)'s output queue: buffers of bounded size, producers
//! asked for more as the socket takes it, and `close_when_done`'s marker.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::producer::Producer;
use crate::buffered::{OutputBudget, Watermarks};
use crate::channel::{Channel, Connected};
use crate::tls::session::Slot;

/// asynchat's `ac_out_buffer_size`: the most bytes one send gives.
pub const DEFAULT_OUT_BUFFER_SIZE: usize = 64 * 1024;
/// The default bound on queued output: 4 MiB.
pub const DEFAULT_CHAT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// How a chat closes after `close_when_done` once its queue is out: it shuts
/// down its sending side, then reads and drops what the peer still sends
/// until the peer closes too, for at most `time` and [`LINGER_BYTES`].
///
/// Closing a socket with unread input makes the kernel send a reset, and a
/// reset can make the peer's kernel discard the last reply before its
/// application read it: the goodbye or error line the server meant to be
/// the last word. nginx's "lingering close" exists for exactly this.
#[derive(Clone, Copy, Debug)]
pub(super) struct Linger {
    /// The longest the chat lingers; `None` closes at once (asynchat's way).
    pub(super) time: Option<Duration>,
    /// Lingering now: the sending side is shut down.
    pub(super) active: bool,
    /// Bytes read and dropped while lingering.
    pub(super) discarded: usize,
}

/// The longest a chat lingers after `close_when_done` by default (nginx's
/// `lingering_timeout`).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// The most input a lingering chat reads and drops before it closes anyway.
pub const LINGER_BYTES: usize = 1 << 20;

/// The longest a chat lingers, whatever [`AsyncChat::set_linger`] was
/// given (nginx's `lingering_time` default is 30 s).
///
/// [`AsyncChat::set_linger`]: super::AsyncChat::set_linger
pub const MAX_LINGER: Duration = Duration::from_secs(60);

/// The most bytes one queued buffer holds. Output is queued in buffers of at
/// most this size, so that a buffer being sent is never also the one that
/// grows: asynchat's queue (and this one, before) appended every push to the
/// partly sent front buffer, which was freed only once fully sent, so a peer
/// that kept the queue from emptying grew it by every byte pushed.
const CHUNK: usize = DEFAULT_OUT_BUFFER_SIZE;

pub(super) enum Out {
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
pub(super) struct Queued {
    pub(super) bytes: usize,
    pub(super) budget: Option<OutputBudget>,
}

impl Queued {
    /// `n` queued bytes left the queue: sent or discarded.
    pub(super) fn sent(&mut self, n: usize) {
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

/// What a chat holds of its output: the same whatever the role, so it moves
/// unchanged when the connect completes.
pub(super) struct Output {
    /// What is queued before `tail`.
    pub(super) out: VecDeque<Out>,
    /// The buffer pushes append to: when not empty, the last entry of the
    /// queue, after everything in `out` (sent from `tail_sent` once `out`
    /// is empty). Kept out of the deque so that a push reaches it without
    /// the deque's index arithmetic and a match of the entry, comparisons
    /// a fuzzing build traces, several per push. Empty, it is the spare: a
    /// sent-out buffer kept for the next push while nothing else is queued
    /// (or only the close), so steady traffic does not allocate. Its
    /// capacity is at most [`CHUNK`].
    tail: Vec<u8>,
    /// How much of `tail` went out already.
    tail_sent: usize,
    /// Bytes queued and not sent, and the shared budget they are charged to.
    pub(super) out_bytes: Queued,
    /// `close_when_done` was asked: nothing more is queued, and the channel
    /// closes once what was is sent.
    pub(super) closing: bool,
    /// The most bytes one send gives (asynchat's `ac_out_buffer_size`).
    pub(super) out_buffer_size: usize,
    /// The most bytes queued at once; a push past it is refused whole.
    pub(super) output_limit: usize,
    pub(super) watermarks: Watermarks,
    /// The lesser of `output_limit` and the high watermark, kept by
    /// [`set_limit`](Self::set_limit) and
    /// [`set_watermarks`](Self::set_watermarks): a push that stays within
    /// it, as nearly every push does, needs neither bound's test.
    threshold: usize,
    pub(super) linger: Linger,
}

impl Output {
    pub(super) fn new() -> Output {
        Output {
            out: VecDeque::new(),
            tail: Vec::new(),
            tail_sent: 0,
            out_bytes: Queued { bytes: 0, budget: None },
            closing: false,
            out_buffer_size: DEFAULT_OUT_BUFFER_SIZE,
            output_limit: DEFAULT_CHAT_OUTPUT_LIMIT,
            watermarks: Watermarks::default(),
            threshold: DEFAULT_CHAT_OUTPUT_LIMIT.min(Watermarks::default().high),
            linger: Linger { time: Some(DEFAULT_LINGER), active: false, discarded: 0 },
        }
    }
}

impl Output {
    /// What [`AsyncChat::output_capacity`] reports.
    pub(super) fn capacity(&self) -> usize {
        let queued: usize = self
            .out
            .iter()
            .map(|o| match o {
                Out::Data { buf, .. } => buf.capacity(),
                _ => 0,
            })
            .sum();
        queued + self.tail.capacity()
    }

    /// Whether bytes or producers wait to be sent.
    pub(super) fn has_output(&self) -> bool {
        match self.out.front() {
            None => !self.tail.is_empty(),
            Some(Out::Close) => false,
            Some(_) => true,
        }
    }

    /// Ends the tail: what comes next (a producer, the close, a new
    /// buffer) is queued after it. `shrink`: nothing will be appended to it
    /// while a producer runs, so its slack is given back. An empty tail (the
    /// spare) is kept only if `keep_spare`.
    pub(super) fn seal_tail(&mut self, shrink: bool, keep_spare: bool) {
        if self.tail.is_empty() {
            if !keep_spare {
                self.tail = Vec::new();
            }
            return;
        }
        let mut buf = std::mem::take(&mut self.tail);
        if shrink {
            buf.shrink_to_fit();
        }
        let sent = std::mem::take(&mut self.tail_sent);
        self.out.push_back(Out::Data { buf, sent });
    }

    /// Drops everything queued (the spare stays).
    pub(super) fn discard(&mut self) {
        self.out.clear();
        if !self.tail.is_empty() {
            self.tail = Vec::new();
        }
        self.tail_sent = 0;
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
    #[inline]
    pub(super) fn enqueue(&mut self, data: &[u8]) {
        // The common case, a push that fits in the room the tail has:
        // appended, with one comparison rather than the general case's
        // growth policy (same result: nothing grows, nothing new is
        // queued), and inlined into the push. An empty tail has room only
        // as the spare, when nothing else is queued, where the general
        // case would take it too. Wrapping: the length is at most the
        // capacity.
        if data.len() <= self.tail.capacity().wrapping_sub(self.tail.len()) {
            self.tail.extend_from_slice(data);
        } else {
            self.enqueue_grown(data);
        }
    }

    /// [`enqueue`](Self::enqueue)'s general case: the tail grows, or new
    /// buffers are queued.
    #[inline(never)]
    fn enqueue_grown(&mut self, mut data: &[u8]) {
        let buf = &mut self.tail;
        if !buf.is_empty() && buf.len() < CHUNK {
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
            // A new buffer after the tail. The spare is taken only when the
            // queue is empty: the buffer is first and last at once, so the
            // spare's slack is within the one-buffer allowance.
            let queue_empty = self.out.is_empty() && self.tail.is_empty();
            self.seal_tail(false, queue_empty);
            if self.tail.capacity() < take {
                self.tail.reserve_exact(take);
            }
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
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
        // Fewer than two entries, the tail counted.
        if self.out.is_empty() || (self.out.len() < 2 && self.tail.is_empty()) {
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

    /// Changes the bound on queued output.
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.output_limit = limit;
        self.threshold = self.output_limit.min(self.watermarks.high);
    }

    /// Changes the watermarks.
    pub(super) fn set_watermarks(&mut self, low: usize, high: usize) {
        self.watermarks.set(low, high, self.out_bytes.bytes);
        self.threshold = self.output_limit.min(self.watermarks.high);
    }

    /// What [`AsyncChat::push`](super::AsyncChat::push) does: the checks,
    /// the bytes queued and counted, the high watermark.
    ///
    /// Its common case costs one comparison, a push within both the output
    /// limit and the high watermark (each of a fuzzing build's traced
    /// comparisons is a call into libFuzzer, and a protocol of many small
    /// records pushes once per record).
    #[inline]
    pub(super) fn push(&mut self, data: &[u8]) -> io::Result<()> {
        let total = self.out_bytes.bytes.saturating_add(data.len());
        let over = total > self.threshold;
        if over || self.closing {
            self.check_push(data.len())?;
        }
        if let Some(budget) = &self.out_bytes.budget {
            budget.try_charge(data.len())?;
        }
        self.enqueue(data);
        // Not saturated: queued bytes are held in memory, far from 2^64.
        self.out_bytes.bytes = total;
        // What `Watermarks::update` does for a queue that grew: it may pass
        // the high watermark, but not reach down to the low one, for the
        // flag is set only above the low one (by the `update` that follows
        // every other change of the count, or here). So only the high
        // watermark is tested, and only past the threshold.
        if over && total > self.watermarks.high {
            self.watermarks.backlogged = true;
        }
        Ok(())
    }

    pub(super) fn check_push(&self, more: usize) -> io::Result<()> {
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
    pub(super) fn done(&self) -> bool {
        matches!(self.out.front(), Some(Out::Close))
    }

    /// What [`AsyncChat::initiate_send`] does, on `channel`.
    pub(super) fn send(&mut self, tls: &mut Slot, channel: &mut Channel<Connected>) -> io::Result<()> {
        loop {
            match self.out.front_mut() {
                None => return self.send_tail(tls, channel),
                Some(Out::Close) => return Ok(()),
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
                    // Saturating: `set_out_buffer_size(usize::MAX)` means no cap.
                    let end = buf.len().min(sent.saturating_add(self.out_buffer_size));
                    let n = tls.send(channel, &buf[*sent..end])?;
                    *sent += n;
                    let done = *sent == buf.len();
                    self.out_bytes.sent(n);
                    self.watermarks.update(self.out_bytes.bytes);
                    if !done {
                        self.compact_front();
                    } else if let Some(Out::Data { mut buf, .. }) = self.out.pop_front()
                        && buf.capacity() <= CHUNK
                        && matches!(self.out.front(), None | Some(Out::Close))
                        && self.tail.is_empty()
                    {
                        // Kept for the next push only when the queue emptied:
                        // beside queued buffers it would be memory over the
                        // bound; a queue that empties is the steady case the
                        // spare is for.
                        buf.clear();
                        self.tail = buf;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// One send from the tail, the only entry left: as from a buffer in
    /// `out`, and the tail, once sent, stays as the spare.
    fn send_tail(&mut self, tls: &mut Slot, channel: &mut Channel<Connected>) -> io::Result<()> {
        if self.tail.is_empty() {
            return Ok(());
        }
        let end = self.tail.len().min(self.tail_sent.saturating_add(self.out_buffer_size));
        let n = tls.send(channel, &self.tail[self.tail_sent..end])?;
        self.tail_sent += n;
        self.out_bytes.sent(n);
        self.watermarks.update(self.out_bytes.bytes);
        if self.tail_sent == self.tail.len() {
            self.tail_sent = 0;
            if self.tail.capacity() <= CHUNK {
                self.tail.clear();
            } else {
                self.tail = Vec::new();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffered::Watermarks;

    /// A push's test of the threshold leaves the flag as
    /// `Watermarks::update` would, over pushes and sends in any order,
    /// whatever the watermarks and the limit; and refuses what passes the
    /// limit.
    #[test]
    fn push_keeps_the_flag_update_would() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut below = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut flips = 0;
        for _ in 0..300 {
            let mut output = Output::new();
            output.set_limit(below(300));
            output.set_watermarks(below(60), below(120));
            let mut reference =
                Watermarks { low: output.watermarks.low, high: output.watermarks.high, backlogged: false };
            for _ in 0..100 {
                if below(2) == 0 {
                    let n = below(40);
                    let queued = output.out_bytes.bytes;
                    let pushed = output.push(&[b'x'; 40][..n]);
                    assert_eq!(pushed.is_ok(), queued + n <= output.output_limit);
                    assert_eq!(output.out_bytes.bytes, queued + if pushed.is_ok() { n } else { 0 });
                } else {
                    output.out_bytes.sent(below(output.out_bytes.bytes + 1));
                    output.watermarks.update(output.out_bytes.bytes);
                }
                let was = reference.backlogged;
                reference.update(output.out_bytes.bytes);
                flips += usize::from(was != reference.backlogged);
                assert_eq!(
                    output.watermarks.backlogged, reference.backlogged,
                    "{} queued",
                    output.out_bytes.bytes
                );
            }
        }
        assert!(flips > 100, "the flag changed {flips} times: the sequences must cross the watermarks");
    }
}
