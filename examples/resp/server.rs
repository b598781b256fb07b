//! The RESP server's handlers (`examples/resp_server.rs`): the accept
//! handler [`RespServer`], each connection's [`RespConnection`], and the
//! [`ChatSink`] its replies go through, in a file of their own so that
//! `fuzz/bodies/sim_resp.rs` runs these very handlers in `rolecore::sim`.
//!
//! The module names three siblings through `super`: `parser`
//! (`examples/resp/parser.rs`), `commands` (`examples/resp/commands.rs`) and
//! `Connections` (from `examples/serve/connections.rs`); the example and the
//! fuzz body each provide them.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rolecore::chat::RecordTooLong;
use rolecore::{
    AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Listening, Terminator,
};

use super::Connections;
use super::commands::{After, Budget, READ_PAUSE, Sink, Store, error, execute};
use super::parser::{ProtocolError, RespParser};

/// The longest line: a `*N`/`$N` header or an inline command (Redis allows
/// 64 KiB inline).
pub const MAX_LINE: usize = 64 * 1024;
/// A connection's record and reply buffers are kept from request to request
/// up to this capacity; a bigger one is freed once its request is done.
pub const KEEP_CAPACITY: usize = 64 * 1024;
/// A piece of a reply at least this big is pushed to the chat at once
/// instead of being copied into the connection's reply buffer first.
pub const DIRECT_PUSH: usize = 4096;

/// The store, shared by every loop of the process (`--threads`).
pub type Shared = Arc<Mutex<Store>>;

// ---- the input budget ----------------------------------------------------------

/// The bytes of unfinished requests that all of one loop's connections may
/// hold together (`--input-budget`). `--max-request` bounds one connection;
/// without this, a thousand connections that each send most of a big bulk
/// string and never its end would hold a thousand times that.
#[derive(Clone)]
pub struct InputBudget {
    used: Rc<Cell<usize>>,
    limit: usize,
}

impl InputBudget {
    pub fn new(limit: usize) -> InputBudget {
        InputBudget { used: Rc::default(), limit }
    }

    /// Bytes charged and not yet released.
    #[allow(dead_code)]
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Charges `n` bytes, or refuses them all if they would pass the limit.
    fn try_charge(&self, n: usize) -> Result<(), InputBudgetFull> {
        match self.used.get().checked_add(n).filter(|&total| total <= self.limit) {
            Some(total) => {
                self.used.set(total);
                Ok(())
            }
            None => Err(InputBudgetFull { limit: self.limit }),
        }
    }

    fn release(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }
}

/// The error `collect_incoming_data` fails with when a request's bytes do
/// not fit the loop's [`InputBudget`].
#[derive(Debug)]
pub struct InputBudgetFull {
    limit: usize,
}

impl fmt::Display for InputBudgetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the unfinished requests of all connections passed the input budget ({} bytes)", self.limit)
    }
}

impl std::error::Error for InputBudgetFull {}

// ---- the connection ------------------------------------------------------------

/// A [`Sink`] onto a connection: small pieces gather in `out` (one push per
/// reply), big ones go to the chat's queue without a copy in between.
struct ChatSink<'a> {
    chat: &'a mut AsyncChat,
    out: &'a mut Vec<u8>,
    failed: Option<io::Error>,
}

impl ChatSink<'_> {
    fn flush(&mut self) {
        if !self.out.is_empty() && self.failed.is_none() {
            if let Err(e) = self.chat.push(self.out) {
                self.failed = Some(e);
            }
            self.out.clear();
        }
    }
}

impl Sink for ChatSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() < DIRECT_PUSH {
            self.out.extend_from_slice(bytes);
            return;
        }
        self.flush();
        if self.failed.is_none()
            && let Err(e) = self.chat.push(bytes)
        {
            self.failed = Some(e);
        }
    }
}

pub struct RespConnection {
    pub parser: RespParser,
    pub store: Shared,
    /// This loop's connections and the budget their output shares.
    pub connections: Connections<RespConnection>,
    /// `--idle-timeout`: also how long one request may take to arrive.
    pub idle_timeout: Option<Duration>,
    /// The request still arriving when the last deadline passed was given
    /// one more idle timeout; it gets no third.
    pub extended: bool,
    /// `chat.queued()` when the deadline was set: less at the deadline means
    /// the client took some of its replies, and is not idle.
    pub queued_at_deadline: usize,
    /// The record being collected, reused from record to record (the chat's
    /// own collector would hand over a fresh `Vec` each time).
    pub record: Vec<u8>,
    /// The longest line, without its line end (`RespServer::max_line`).
    /// Lines end at LF, so the chat's record bound is one more, for a CR
    /// before it; `collect_incoming_data` checks this exact bound.
    pub max_line: usize,
    /// The loop's bound on the bytes of unfinished requests.
    pub input: InputBudget,
    /// The bytes of the current request charged to `input`: released once
    /// the parser is between requests again, or when the connection goes.
    pub charged: usize,
    /// The small pieces of the reply being written, reused from command to
    /// command.
    pub out: Vec<u8>,
}

impl RespConnection {
    /// Whether the line being collected is over `max_line` already: its CR
    /// is not counted when it is the last byte so far, since its LF may
    /// come next.
    fn line_too_long(&self) -> bool {
        let line = self.record.strip_suffix(b"\r").unwrap_or(&self.record);
        line.len() > self.max_line
    }

    /// Answers a broken frame and closes once the answer is sent.
    fn protocol_error(&mut self, chat: &mut AsyncChat, why: &str) -> io::Result<()> {
        error(&mut self.out, &format!("Protocol error: {why}"));
        self.close_after_reply(chat)
    }

    fn close_after_reply(&mut self, chat: &mut AsyncChat) -> io::Result<()> {
        self.flush(chat)?;
        chat.close_when_done();
        chat.set_terminator(Terminator::None); // the rest is dropped, not parsed
        Ok(())
    }

    fn flush(&mut self, chat: &mut AsyncChat) -> io::Result<()> {
        if !self.out.is_empty() {
            chat.push(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sets the connection's deadline one idle timeout from now. It is a
    /// deadline, not the loop's idle timeout, which every byte re-arms: a
    /// client that trickles a request (a line, a bulk string, a TLS
    /// handshake) a byte at a time is busy, not idle, and would otherwise
    /// hold the connection as long as it likes. A complete request sets it
    /// again; [`handle_timeout`](ChatHandler::handle_timeout) decides the
    /// rest.
    fn set_deadline(&mut self, chat: &AsyncChat, cx: &mut Ctx<'_>) {
        let Some(timeout) = self.idle_timeout else { return };
        self.queued_at_deadline = chat.queued();
        let token = cx.token();
        let at = cx.now().checked_add(timeout);
        cx.set_deadline(token, at);
    }

    /// The request's bytes are no longer held: gives them back to the budget.
    fn release_input(&mut self) {
        self.input.release(std::mem::take(&mut self.charged));
    }

    /// Frees the buffers a big request or reply grew, so an idle connection
    /// does not keep its peak memory.
    fn shrink(&mut self) {
        if self.record.capacity() > KEEP_CAPACITY {
            self.record = Vec::new();
        }
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        self.parser.shrink();
    }

    /// Runs a complete command, its reply pushed to the chat.
    fn run(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<After> {
        let Some(args) = self.parser.command() else {
            return Ok(After::Continue);
        };
        let now = cx.now();
        // Room for the largest reply this connection may queue, taken from
        // the slowest readers of the loop when the shared budget runs short.
        let wanted = chat.output_limit().saturating_sub(chat.queued());
        while self.connections.available() < wanted
            && self.connections.drop_slowest(cx.token(), cx, "resp_server")
        {}
        let mut budget = Budget::new(chat.output_limit(), chat.queued());
        budget.room = budget.room.min(self.connections.available());
        let mut sink = ChatSink { chat, out: &mut self.out, failed: None };
        let after =
            execute(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()), args, &mut sink, budget, now);
        sink.flush();
        match sink.failed {
            Some(e) => Err(e),
            None => Ok(after),
        }
    }
}

impl ChatHandler for RespConnection {
    // Over TLS, a handshake that failed (garbage, a timeout, a peer that
    // left): the connection joined the set when it was accepted, and no
    // `handle_close` follows to have it leave. Silent, as a client that
    // drops is: one line per failed handshake would let anyone fill the log.
    fn handle_connect_failed(&mut self, _error: io::Error, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }

    fn readable(&self, chat: &AsyncChat) -> bool {
        chat.queued() < READ_PAUSE
    }

    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        if !chat.is_closing() {
            self.input
                .try_charge(data.len())
                .map_err(|full| io::Error::new(io::ErrorKind::StorageFull, full))?;
            self.charged += data.len();
            self.record.extend_from_slice(data);
            if self.parser.next_count().is_none() && self.line_too_long() {
                self.record.clear();
                let why = if self.parser.is_idle() {
                    "too big inline request"
                } else {
                    "too big bulk count string"
                };
                return self.protocol_error(chat, why);
            }
        }
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            return Ok(());
        }
        let complete = match self.parser.record(&self.record) {
            Ok(command) => command.is_some(),
            Err(ProtocolError(why)) => {
                self.record.clear();
                return self.protocol_error(chat, &why);
            }
        };
        self.record.clear();
        if self.parser.is_idle() {
            // A command is complete (run below, then its buffers shrink), or
            // the line held none.
            self.release_input();
        }
        if complete {
            let after = self.run(chat, cx);
            self.shrink();
            match after? {
                After::Continue => {
                    // The next request has an idle timeout from now.
                    self.extended = false;
                    self.set_deadline(chat, cx);
                }
                After::Close => return self.close_after_reply(chat),
                After::Overflow => {
                    // What push would have refused, refused before the
                    // reply was built.
                    eprintln!(
                        "resp_server: closing a connection that does not read its replies \
                         ({} bytes queued)",
                        chat.queued()
                    );
                    chat.discard_buffers();
                    chat.close_when_done();
                    chat.set_terminator(Terminator::None);
                    return Ok(());
                }
            }
        } else if self.record.capacity() > KEEP_CAPACITY {
            self.record = Vec::new(); // after a big bulk string
        }
        // A line terminator stays set from line to line; only a count
        // terminator (which the chat turns into `None` once it is reached)
        // is replaced.
        match self.parser.next_count() {
            Some(n) => chat.set_terminator(Terminator::count(n)),
            None => {
                if !matches!(chat.terminator(), Terminator::Bytes(_)) {
                    chat.set_terminator(Terminator::LF);
                }
            }
        }
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        self.record.clear();
        if error.get_ref().is_some_and(|e| e.is::<InputBudgetFull>()) && !chat.is_closing() {
            eprintln!("resp_server: closing a connection: {error}");
            // The request's bytes stay charged until the connection goes.
            super::commands::error(&mut self.out, "server busy: too many unfinished requests");
            if self.close_after_reply(chat).is_ok() {
                return; // sent, then closed, by the chat
            }
        }
        if RecordTooLong::from_io(&error).is_some() && !chat.is_closing() {
            let why =
                if self.parser.is_idle() { "too big inline request" } else { "too big bulk count string" };
            if self.protocol_error(chat, why).is_ok() {
                return; // sent, then closed, by the chat
            }
        }
        eprintln!("resp_server: closing a connection: {error}");
        self.connections.close(cx);
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }

    /// No request completed within an idle timeout. A request that is
    /// arriving gets one more (it may have begun just before the deadline);
    /// a client that took some of its replies meanwhile is not idle and
    /// gets another; otherwise the connection closes. So a request takes
    /// at most two idle timeouts to arrive, however its bytes trickle, and
    /// a silent connection is closed after one or two.
    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let arriving = !self.record.is_empty() || !self.parser.is_idle();
        let took_replies = chat.queued() < self.queued_at_deadline;
        if (arriving && !self.extended) || (!arriving && took_replies) {
            self.extended = arriving;
            self.set_deadline(chat, cx);
            return Ok(());
        }
        ChatHandler::handle_close(self, chat, cx);
        cx.close();
        Ok(())
    }
}

impl Drop for RespConnection {
    /// However the connection ends, the bytes of its unfinished request go
    /// back to the budget.
    fn drop(&mut self) {
        self.release_input();
    }
}

pub struct RespServer {
    /// The data set.
    pub store: Shared,
    /// This loop's connections and the budget their output shares
    /// (`--output-budget`).
    pub connections: Connections<RespConnection>,
    /// `--max-bulk`: the longest bulk string of a request.
    pub max_bulk: usize,
    /// `--max-request`: the most a whole request may take.
    pub max_request: usize,
    /// `--input-budget`: the most all of this loop's unfinished requests may
    /// take together.
    pub input: InputBudget,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// The longest line, a `*N`/`$N` header or an inline command: [`MAX_LINE`].
    pub max_line: usize,
    /// Each connection's bound on queued output: `output_limit(max_bulk)`.
    pub output_limit: usize,
}

impl AcceptHandler for RespServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let parser = RespParser::new(self.max_bulk).with_max_request(self.max_request);
        let mut chat = AsyncChat::new(conn, parser.terminator());
        // One byte more for the CR before a line's LF.
        chat.set_max_record(self.max_line.saturating_add(1));
        chat.set_output_limit(self.output_limit);
        self.connections.charge(&mut chat);
        let connection = RespConnection {
            parser,
            store: Arc::clone(&self.store),
            connections: self.connections.clone(),
            idle_timeout: self.idle_timeout,
            extended: false,
            queued_at_deadline: 0,
            record: Vec::new(),
            max_line: self.max_line,
            input: self.input.clone(),
            charged: 0,
            out: Vec::new(),
        };
        let token = self.connections.insert(cx, chat, connection)?;
        // The first request (and, over TLS, the handshake) within the idle
        // timeout: a deadline, as after each request.
        if let Some(timeout) = self.idle_timeout {
            let at = cx.now().checked_add(timeout);
            cx.set_deadline(token, at);
        }
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        eprintln!("resp_server: accept failed: {error}");
    }
}
