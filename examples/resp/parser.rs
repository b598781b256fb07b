//! RESP2 request parsing for `examples/resp_server.rs`, in a file of its own
//! so `fuzz/bodies/resp.rs` can fuzz it without a socket.
//!
//! The parser allocates nothing per request once warm: a command's arguments
//! live in one flat byte buffer, split by their end offsets, both reused from
//! frame to frame.

use rolecore::Terminator;

/// The most arguments one multibulk frame may announce (Redis's bound).
const MAX_ARGS: usize = 1024 * 1024;
/// The argument buffer kept from one request to the next; a bigger one is
/// freed when its request is done.
const KEEP_CAPACITY: usize = 64 * 1024;
/// What one argument costs beside its bytes, counted against the request
/// bound: its end offset in `ends`.
pub const ARG_OVERHEAD: usize = std::mem::size_of::<usize>();

/// The default bound on a whole request for `max_bulk`: a `SET` of a key and
/// a value of the largest size fits, with room to spare.
pub fn default_max_request(max_bulk: usize) -> usize {
    max_bulk.saturating_mul(2).saturating_add(1 << 20)
}

/// A request frame that breaks the protocol; the connection is answered with
/// `-ERR Protocol error: …` and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Where the parser is within a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between requests: the next line is `*N` or an inline command.
    Idle,
    /// Inside a multibulk frame: the next line is `$N` of an argument.
    BulkHeader,
    /// Inside a multibulk frame: the next record is an argument's payload and
    /// its `\r\n` (this many bytes, both included).
    BulkBody(usize),
}

/// One complete command: its arguments, borrowed from the parser until the
/// next record.
#[derive(Clone, Copy, Debug)]
pub struct Command<'a> {
    buf: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Command<'a> {
    /// How many arguments (the name included); never 0.
    pub fn len(self) -> usize {
        self.ends.len()
    }

    /// Whether there is no argument (never, for a command the parser gives).
    #[allow(dead_code)]
    pub fn is_empty(self) -> bool {
        self.ends.is_empty()
    }

    /// Argument `i` (0 is the command's name).
    pub fn arg(self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    /// The arguments from `from` on.
    pub fn args_from(self, from: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        (from..self.ends.len()).map(move |i| self.arg(i))
    }

    /// The arguments, copied (for tests and the fuzz target).
    #[allow(dead_code)]
    pub fn to_vecs(self) -> Vec<Vec<u8>> {
        self.args_from(0).map(<[u8]>::to_vec).collect()
    }
}

/// RESP2 request parsing, record by record. Feed it what the chat splits at
/// [`terminator`](Self::terminator), one record at a time, with
/// [`record`](Self::record); it returns each complete command.
#[derive(Clone, Debug)]
pub struct RespParser {
    state: State,
    /// Arguments still to come in the current frame.
    remaining: usize,
    /// The current command's arguments, back to back.
    buf: Vec<u8>,
    /// Where each argument ends in `buf`.
    ends: Vec<usize>,
    max_bulk: usize,
    /// The most bytes one request may take: its arguments, each with
    /// [`ARG_OVERHEAD`].
    max_request: usize,
}

impl RespParser {
    /// A parser that refuses bulk strings longer than `max_bulk` bytes, and
    /// requests larger than [`default_max_request`].
    pub fn new(max_bulk: usize) -> RespParser {
        RespParser {
            state: State::Idle,
            remaining: 0,
            buf: Vec::new(),
            ends: Vec::new(),
            max_bulk,
            max_request: default_max_request(max_bulk),
        }
    }

    /// Bounds a whole request: its arguments' bytes, each counted with
    /// [`ARG_OVERHEAD`] more. A frame that announces a bulk string past it
    /// is a protocol error before the string is read.
    pub fn with_max_request(mut self, max_request: usize) -> RespParser {
        self.max_request = max_request;
        self
    }

    /// The bytes the current request holds, as counted against the bound.
    pub fn request_size(&self) -> usize {
        self.buf.len() + self.ends.len() * ARG_OVERHEAD
    }

    /// The command `record` just returned, again; `None` in the middle of a
    /// frame.
    pub fn command(&self) -> Option<Command<'_>> {
        (self.state == State::Idle && !self.ends.is_empty()).then(|| self.command_unchecked())
    }

    /// Frees the argument buffers if a big request grew them, so a
    /// connection that goes idle does not keep its peak memory. The last
    /// command is gone after it.
    pub fn shrink(&mut self) {
        if self.state == State::Idle {
            if self.buf.capacity() > KEEP_CAPACITY || self.ends.capacity() > KEEP_CAPACITY / 8 {
                self.buf = Vec::new();
                self.ends = Vec::new();
            }
            self.buf.clear();
            self.ends.clear();
        }
    }

    /// The capacity of the argument buffers, in bytes (for tests).
    #[allow(dead_code)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.ends.capacity() * ARG_OVERHEAD
    }

    /// The terminator of the next record.
    #[allow(dead_code)]
    pub fn terminator(&self) -> Terminator {
        match self.next_count() {
            None => Terminator::LF,
            Some(n) => Terminator::count(n),
        }
    }

    /// The byte count of the next record when it is a bulk payload (its
    /// `\r\n` included); `None` when the next record is a line ending at
    /// `\n` (with or without a `\r` before it).
    pub fn next_count(&self) -> Option<usize> {
        match self.state {
            State::Idle | State::BulkHeader => None,
            State::BulkBody(n) => Some(n),
        }
    }

    /// Whether the parser is between requests.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Takes one record: a line without its `\n` (a `\r` before it is
    /// dropped here), or a bulk payload with its `\r\n`. Returns a command
    /// when one is complete.
    pub fn record(&mut self, record: &[u8]) -> Result<Option<Command<'_>>, ProtocolError> {
        // Lines end at LF, with or without a CR: Redis takes an inline
        // command ended by a bare LF (`echo PING | nc`), and a client that
        // sent one would otherwise wait for an answer that never comes.
        let record = match self.state {
            State::Idle | State::BulkHeader => record.strip_suffix(b"\r").unwrap_or(record),
            State::BulkBody(_) => record,
        };
        match self.state {
            State::Idle => self.first_line(record),
            State::BulkHeader => {
                let len = match record.split_first() {
                    Some((b'$', digits)) => parse_length(digits)
                        .filter(|&n| n <= self.max_bulk)
                        .ok_or_else(|| ProtocolError("invalid bulk length".into()))?,
                    Some((&c, _)) => {
                        // Escaped: the byte goes back in a reply line.
                        return Err(ProtocolError(format!("expected '$', got '{}'", c.escape_ascii())));
                    }
                    None => return Err(ProtocolError("expected '$', got an empty line".into())),
                };
                if self.request_size().saturating_add(len).saturating_add(ARG_OVERHEAD) > self.max_request {
                    return Err(ProtocolError("request too large".into()));
                }
                self.state = State::BulkBody(len + 2);
                Ok(None)
            }
            State::BulkBody(_) => {
                let Some(payload) = record.strip_suffix(b"\r\n") else {
                    return Err(ProtocolError("a bulk string does not end with CRLF".into()));
                };
                self.buf.extend_from_slice(payload);
                self.ends.push(self.buf.len());
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.state = State::Idle;
                    Ok(Some(self.command_unchecked()))
                } else {
                    self.state = State::BulkHeader;
                    Ok(None)
                }
            }
        }
    }

    fn command_unchecked(&self) -> Command<'_> {
        Command { buf: &self.buf, ends: &self.ends }
    }

    fn first_line(&mut self, line: &[u8]) -> Result<Option<Command<'_>>, ProtocolError> {
        if self.buf.capacity() > KEEP_CAPACITY || self.ends.capacity() > KEEP_CAPACITY / 8 {
            // A big request is over: do not hold its memory for the
            // connection's lifetime.
            self.buf = Vec::new();
            self.ends = Vec::new();
        }
        self.buf.clear();
        self.ends.clear();
        if let Some(count) = line.strip_prefix(b"*") {
            let n = match count {
                // `*-1` and `*0`: nothing to do, as Redis.
                b"-1" => 0,
                _ => parse_length(count)
                    .filter(|&n| n <= MAX_ARGS)
                    .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?,
            };
            if n.saturating_mul(ARG_OVERHEAD) > self.max_request {
                return Err(ProtocolError("request too large".into()));
            }
            if n > 0 {
                self.remaining = n;
                self.ends.reserve(n.min(64));
                self.state = State::BulkHeader;
            }
            return Ok(None);
        }
        // An inline command: words separated by blanks; an empty line is
        // nothing.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for word in line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
            self.buf.extend_from_slice(word);
            self.ends.push(self.buf.len());
        }
        Ok((!self.ends.is_empty()).then(|| self.command_unchecked()))
    }
}

/// A decimal length without sign or padding: `0`, `17`.
fn parse_length(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + usize::from(d - b'0')))
}
