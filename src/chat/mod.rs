//! Layers 5 and 6: `async_chat`, for conversational protocols.
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

mod async_chat;
mod handler;
mod output;
mod producer;
mod terminator;

pub use async_chat::{AsyncChat, CanPush, DEFAULT_IN_BUFFER_SIZE, DEFAULT_MAX_RECORD};
pub use handler::ChatHandler;
pub use output::{
    DEFAULT_CHAT_OUTPUT_LIMIT, DEFAULT_LINGER, DEFAULT_OUT_BUFFER_SIZE, LINGER_BYTES, MAX_LINGER,
};
pub use producer::{Producer, SimpleProducer};
pub use terminator::{
    Framed, Framer, RecordTooLong, Split, Terminator, TerminatorBytes, find_prefix_at_end, next_split,
};
