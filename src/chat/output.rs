//! Layer 5: an [`AsyncChat`]'s output queue: buffers of bounded size, producers
//! asked for more as the socket takes it, and `close_when_done`'s marker.

use std::collections::VecDeque;
use std::io;

use super::async_chat::{
    AsyncChat, DEFAULT_CHAT_OUTPUT_LIMIT, DEFAULT_LINGER, DEFAULT_OUT_BUFFER_SIZE, Linger,
};
use super::producer::Producer;
use crate::buffered::{OutputBudget, Watermarks};
use crate::channel::{Connected, Role};

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
    pub(super) out: VecDeque<Out>,
    /// Bytes queued and not sent, and the shared budget they are charged to.
    pub(super) out_bytes: Queued,
    /// A sent-out buffer kept for the next push, so steady traffic does not
    /// allocate.
    pub(super) spare: Vec<u8>,
    pub(super) closing: bool,
    pub(super) out_buffer_size: usize,
    pub(super) output_limit: usize,
    pub(super) watermarks: Watermarks,
    pub(super) linger: Linger,
}

impl Output {
    pub(super) fn new() -> Output {
        Output {
            out: VecDeque::new(),
            out_bytes: Queued { bytes: 0, budget: None },
            spare: Vec::new(),
            closing: false,
            out_buffer_size: DEFAULT_OUT_BUFFER_SIZE,
            output_limit: DEFAULT_CHAT_OUTPUT_LIMIT,
            watermarks: Watermarks::default(),
            linger: Linger { time: Some(DEFAULT_LINGER), active: false, discarded: 0 },
        }
    }
}

impl<R: Role> AsyncChat<R> {
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
            .output
            .out
            .iter()
            .map(|o| match o {
                Out::Data { buf, .. } => buf.capacity(),
                _ => 0,
            })
            .sum();
        queued + self.output.spare.capacity()
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
    pub(super) fn enqueue(&mut self, mut data: &[u8]) {
        if let Some(Out::Data { buf, .. }) = self.output.out.back_mut()
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
            let mut buf = if self.output.out.is_empty() {
                // The queue was empty: the buffer is first and last at once,
                // so the spare's slack is within the one-buffer allowance.
                std::mem::take(&mut self.output.spare)
            } else {
                Vec::new()
            };
            if buf.capacity() < take {
                buf.reserve_exact(take);
            }
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.output.out.push_back(Out::Data { buf, sent: 0 });
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
        if self.output.out.len() < 2 {
            return;
        }
        if let Some(Out::Data { buf, sent }) = self.output.out.front_mut()
            && *sent > CHUNK / 2
            && *sent >= buf.len() / 2
        {
            buf.drain(..*sent);
            buf.shrink_to_fit();
            *sent = 0;
        }
    }

    pub(super) fn check_push(&self, more: usize) -> io::Result<()> {
        if self.output.closing {
            // Not BrokenPipe: that is a disconnection, on which the loop would
            // close at once and drop the queue close_when_done promised to send.
            return Err(io::Error::other(
                "push after close_when_done: the channel closes once its queue is sent",
            ));
        }
        if self.output.out_bytes.bytes.saturating_add(more) > self.output.output_limit {
            let full = crate::BufferFull {
                queued: self.output.out_bytes.bytes,
                requested: more,
                limit: self.output.output_limit,
            };
            return Err(io::Error::new(io::ErrorKind::StorageFull, full));
        }
        Ok(())
    }

    /// Whether `close_when_done` was called and everything before it is out.
    pub(super) fn done(&self) -> bool {
        matches!(self.output.out.front(), Some(Out::Close))
    }
}

impl AsyncChat<Connected> {
    /// Makes one send of queued output, at most
    /// [`out_buffer_size`](Self::out_buffer_size) bytes, asking producers for
    /// more as needed (asynchat's `initiate_send`).
    pub fn initiate_send(&mut self) -> io::Result<()> {
        loop {
            match self.output.out.front_mut() {
                None | Some(Out::Close) => return Ok(()),
                Some(Out::Producer(p)) => {
                    let chunk = p.more();
                    if chunk.is_empty() {
                        self.output.out.pop_front();
                    } else {
                        self.output.out_bytes.bytes += chunk.len();
                        if let Some(budget) = &self.output.out_bytes.budget {
                            budget.charge(chunk.len());
                        }
                        self.output.watermarks.update(self.output.out_bytes.bytes);
                        self.output.out.push_front(Out::Data { buf: chunk, sent: 0 });
                    }
                }
                Some(Out::Data { buf, sent }) => {
                    let end = buf.len().min(*sent + self.output.out_buffer_size);
                    let n = self.channel.send(&buf[*sent..end])?;
                    *sent += n;
                    let done = *sent == buf.len();
                    self.output.out_bytes.sent(n);
                    self.output.watermarks.update(self.output.out_bytes.bytes);
                    if !done {
                        self.compact_front();
                    } else if let Some(Out::Data { mut buf, .. }) = self.output.out.pop_front()
                        && buf.capacity() <= CHUNK
                        && matches!(self.output.out.front(), None | Some(Out::Close))
                    {
                        // Kept for the next push only when the queue emptied:
                        // beside queued buffers it would be memory over the
                        // bound; a queue that empties is the steady case the
                        // spare is for.
                        buf.clear();
                        self.output.spare = buf;
                    }
                    return Ok(());
                }
            }
        }
    }
}
