//! RESP2 request parsing for `examples/resp_server.rs`, in a file of its own
//! so `fuzz/bodies/resp.rs` can fuzz it without a socket.

use rolecore::Terminator;

/// The most arguments one multibulk frame may announce (Redis's bound).
const MAX_ARGS: usize = 1024 * 1024;

/// A request frame that breaks the protocol; the connection is answered with
/// `-ERR Protocol error: …` and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Where the parser is within a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Between requests: the next line is `*N` or an inline command.
    Idle,
    /// Inside a multibulk frame: the next line is `$N` of an argument.
    BulkHeader,
    /// Inside a multibulk frame: the next record is an argument's payload and
    /// its `\r\n` (this many bytes, both included).
    BulkBody(usize),
}

/// RESP2 request parsing, record by record. Feed it what the chat splits at
/// [`terminator`](Self::terminator), one record at a time, with
/// [`record`](Self::record); it returns each complete command.
#[derive(Clone, Debug)]
pub struct RespParser {
    state: State,
    /// Arguments still to come in the current frame.
    remaining: usize,
    args: Vec<Vec<u8>>,
    max_bulk: usize,
}

impl RespParser {
    /// A parser that refuses bulk strings longer than `max_bulk` bytes.
    pub fn new(max_bulk: usize) -> RespParser {
        RespParser { state: State::Idle, remaining: 0, args: Vec::new(), max_bulk }
    }

    /// The terminator of the next record.
    pub fn terminator(&self) -> Terminator {
        match self.state {
            State::Idle | State::BulkHeader => Terminator::bytes(b"\r\n"),
            State::BulkBody(n) => Terminator::count(n),
        }
    }

    /// Whether the parser is between requests.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Takes one record: a line without its `\r\n`, or a bulk payload with
    /// its `\r\n`. Returns a command when one is complete.
    pub fn record(&mut self, record: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        match self.state {
            State::Idle => self.first_line(record),
            State::BulkHeader => {
                let len = match record.split_first() {
                    Some((b'$', digits)) => parse_length(digits)
                        .filter(|&n| n <= self.max_bulk)
                        .ok_or_else(|| ProtocolError("invalid bulk length".into()))?,
                    Some((&c, _)) => return Err(ProtocolError(format!("expected '$', got '{}'", c as char))),
                    None => return Err(ProtocolError("expected '$', got an empty line".into())),
                };
                self.state = State::BulkBody(len + 2);
                Ok(None)
            }
            State::BulkBody(_) => {
                let mut payload = record;
                if !payload.ends_with(b"\r\n") {
                    return Err(ProtocolError("a bulk string does not end with CRLF".into()));
                }
                payload.truncate(payload.len() - 2);
                self.args.push(payload);
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.state = State::Idle;
                    Ok(Some(std::mem::take(&mut self.args)))
                } else {
                    self.state = State::BulkHeader;
                    Ok(None)
                }
            }
        }
    }

    fn first_line(&mut self, line: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        if let Some(count) = line.strip_prefix(b"*") {
            let n = match count {
                // `*-1` and `*0`: nothing to do, as Redis.
                b"-1" => 0,
                _ => parse_length(count)
                    .filter(|&n| n <= MAX_ARGS)
                    .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?,
            };
            if n > 0 {
                self.remaining = n;
                self.args = Vec::with_capacity(n.min(64));
                self.state = State::BulkHeader;
            }
            return Ok(None);
        }
        // An inline command: words separated by blanks; an empty line is
        // nothing.
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let args: Vec<Vec<u8>> =
            line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect();
        Ok((!args.is_empty()).then_some(args))
    }
}

/// A decimal length without sign or padding: `0`, `17`.
fn parse_length(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
