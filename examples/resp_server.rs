//! An in-memory server that speaks the Redis protocol (RESP2), on
//! [`AsyncChat`]: enough for `redis-cli` and `redis-benchmark`.
//!
//! ```text
//! cargo run --release --example resp_server -- [ADDR] [--backend select|poll|epoll] [--threads N] [--max-bulk BYTES]
//! ```
//!
//! ADDR defaults to 127.0.0.1:6379 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--max-bulk` (default 16 MiB) bounds
//! one bulk string of a request.
//!
//! Commands: `PING [msg]`, `ECHO msg`, `SET key value [EX s|PX ms]`, `GET`,
//! `DEL key...`, `EXISTS key...`, `INCR`, `DECR`, `MGET key...`,
//! `MSET key value...`, `DBSIZE`, `FLUSHALL`, `QUIT`, `CONFIG GET name...`,
//! `COMMAND`. Requests are multibulk frames or inline lines, pipelined or
//! not. Expired keys are dropped when they are next looked at.
//!
//! Framing uses the chat's terminators: a line (`*N`, `$N` or an inline
//! command) ends at `\r\n`; the payload of a bulk string is a count
//! terminator of `N + 2` bytes whose last two must be `\r\n`. The parser,
//! [`RespParser`], is a plain struct that is told each record and says which
//! terminator comes next, so it can be driven without a socket.

mod serve;
use serve::{Flag, Server};

use std::collections::HashMap;
use std::io;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rolecore::chat::RecordTooLong;
use rolecore::{
    AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Listening, Terminator,
};

/// The longest line: a `*N`/`$N` header or an inline command (Redis allows
/// 64 KiB inline).
const MAX_LINE: usize = 64 * 1024;
/// Stop reading while this much output waits for a slow client.
const READ_PAUSE: usize = 1 << 20;

// ---- the parser: examples/resp/parser.rs (also fuzzed: fuzz/bodies/resp.rs) ----

#[path = "resp/parser.rs"]
mod parser;
use parser::{Command, ProtocolError, RespParser};

// ---- replies -------------------------------------------------------------------

// Replies are written straight into the connection's reused output buffer:
// no `format!`, no allocation once the buffer has grown.

fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn error(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// A reply header: `prefix`, a decimal, `\r\n`.
fn header(out: &mut Vec<u8>, prefix: u8, n: i64) {
    out.push(prefix);
    decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn integer(out: &mut Vec<u8>, n: i64) {
    header(out, b':', n);
}

fn bulk(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            header(out, b'$', v.len() as i64);
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

fn array_header(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n as i64);
}

// ---- the store -----------------------------------------------------------------

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    /// Replaces the value, reusing its buffer unless that is much too big.
    fn set_value(&mut self, value: &[u8]) {
        if self.value.capacity() > 4096 && self.value.capacity() / 4 > value.len() {
            self.value = value.to_vec();
        } else {
            self.value.clear();
            self.value.extend_from_slice(value);
        }
    }
}

/// The data set, shared by every connection of the loop.
#[derive(Debug, Default)]
struct Store {
    map: HashMap<Vec<u8>, Entry>,
    /// Whether any entry may have an expiry (set by `SET … EX|PX`, cleared
    /// by `FLUSHALL`): until then no lookup needs the clock or a second
    /// probe.
    volatile: bool,
}

impl Store {
    /// The live entry of `key`; an expired one is dropped.
    fn get(&mut self, key: &[u8]) -> Option<&mut Entry> {
        if self.volatile {
            let now = Instant::now();
            if self.map.get(key).is_some_and(|e| !e.live(now)) {
                self.map.remove(key);
            }
        }
        self.map.get_mut(key)
    }

    /// Sets `key` to `value`, reusing the key's entry when there is one.
    fn set(&mut self, key: &[u8], value: &[u8], expires: Option<Instant>) {
        if expires.is_some() {
            self.volatile = true;
        }
        match self.map.get_mut(key) {
            Some(entry) => {
                entry.set_value(value);
                entry.expires = expires;
            }
            None => {
                self.map.insert(key.to_vec(), Entry { value: value.to_vec(), expires });
            }
        }
    }

    /// Drops expired entries.
    fn purge(&mut self) {
        if self.volatile {
            let now = Instant::now();
            self.map.retain(|_, e| e.live(now));
        }
    }
}

type Shared = Arc<Mutex<Store>>;

/// What a command asks of the connection after its reply.
#[derive(PartialEq, Eq)]
enum After {
    Continue,
    Close,
}

fn wrong_arity(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(b"-ERR wrong number of arguments for '");
    out.extend_from_slice(name);
    out.extend_from_slice(b"' command\r\n");
}

/// Parses an integer as Redis does for values and options.
fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty() || s.starts_with('+') || (s.len() > 1 && (s.starts_with('0') || s.starts_with("-0"))) {
        return None;
    }
    s.parse().ok()
}

/// The longest command name; a longer one is unknown.
const MAX_NAME: usize = 8;

/// Runs one command, appending its reply to `out`.
fn execute(store: &mut Store, args: Command<'_>, out: &mut Vec<u8>) -> After {
    // The name, lower-cased on the stack; too long a name matches nothing.
    let raw_name = args.arg(0);
    let mut lower = [0u8; MAX_NAME];
    let name: &[u8] = if raw_name.len() <= MAX_NAME {
        let lower = &mut lower[..raw_name.len()];
        lower.copy_from_slice(raw_name);
        lower.make_ascii_lowercase();
        lower
    } else {
        b""
    };
    let argc = args.len();
    match name {
        b"ping" => match argc {
            1 => simple(out, "PONG"),
            2 => bulk(out, Some(args.arg(1))),
            _ => wrong_arity(out, name),
        },
        b"echo" if argc == 2 => bulk(out, Some(args.arg(1))),
        b"set" if argc >= 3 => {
            let mut expires = None;
            let mut options = args.args_from(3);
            while let Some(option) = options.next() {
                let unit = if option.eq_ignore_ascii_case(b"EX") {
                    1000
                } else if option.eq_ignore_ascii_case(b"PX") {
                    1
                } else {
                    error(out, "syntax error");
                    return After::Continue;
                };
                let Some(amount) = options.next() else {
                    error(out, "syntax error");
                    return After::Continue;
                };
                match parse_i64(amount).filter(|&n| n > 0).and_then(|n| n.checked_mul(unit)) {
                    Some(ms) => expires = Some(Instant::now() + Duration::from_millis(ms as u64)),
                    None => {
                        error(out, "invalid expire time in 'set' command");
                        return After::Continue;
                    }
                }
            }
            store.set(args.arg(1), args.arg(2), expires);
            simple(out, "OK");
        }
        b"get" if argc == 2 => bulk(out, store.get(args.arg(1)).map(|e| &e.value[..])),
        b"del" | b"exists" if argc >= 2 => {
            let mut n = 0;
            for key in args.args_from(1) {
                if store.get(key).is_some() {
                    n += 1;
                    if name == b"del" {
                        store.map.remove(key);
                    }
                }
            }
            integer(out, n);
        }
        b"incr" | b"decr" if argc == 2 => {
            let delta = if name == b"incr" { 1 } else { -1 };
            let entry = store.get(args.arg(1));
            let current = match &entry {
                Some(e) => parse_i64(&e.value),
                None => Some(0),
            };
            match current.and_then(|n| n.checked_add(delta)) {
                Some(n) => {
                    match entry {
                        Some(e) => {
                            // Keeps its expiry, as Redis.
                            e.value.clear();
                            decimal(&mut e.value, n);
                        }
                        None => {
                            let mut value = Vec::new();
                            decimal(&mut value, n);
                            store.map.insert(args.arg(1).to_vec(), Entry { value, expires: None });
                        }
                    }
                    integer(out, n);
                }
                None => error(out, "value is not an integer or out of range"),
            }
        }
        b"mget" if argc >= 2 => {
            array_header(out, argc - 1);
            for key in args.args_from(1) {
                bulk(out, store.get(key).map(|e| &e.value[..]));
            }
        }
        b"mset" if argc >= 3 && argc % 2 == 1 => {
            for i in (1..argc).step_by(2) {
                store.set(args.arg(i), args.arg(i + 1), None);
            }
            simple(out, "OK");
        }
        b"dbsize" if argc == 1 => {
            store.purge();
            integer(out, store.map.len() as i64);
        }
        b"flushall" | b"flushdb" if argc <= 2 => {
            store.map.clear();
            store.volatile = false;
            simple(out, "OK");
        }
        b"quit" => {
            simple(out, "OK");
            return After::Close;
        }
        b"config" if argc >= 2 => {
            if !args.arg(1).eq_ignore_ascii_case(b"GET") || argc < 3 {
                error(out, "only CONFIG GET parameter... is supported");
                return After::Continue;
            }
            // What redis-benchmark asks at start, with an in-memory answer.
            let known: [(&[u8], &[u8]); 2] = [(b"save", b""), (b"appendonly", b"no")];
            let pairs: Vec<_> = known
                .iter()
                .filter(|(k, _)| args.args_from(2).any(|a| a.eq_ignore_ascii_case(k) || a == b"*"))
                .collect();
            array_header(out, pairs.len() * 2);
            for (k, v) in pairs {
                bulk(out, Some(k));
                bulk(out, Some(v));
            }
        }
        b"command" => array_header(out, 0),
        b"echo" | b"set" | b"get" | b"del" | b"exists" | b"incr" | b"decr" | b"mget" | b"mset"
        | b"dbsize" | b"flushall" | b"flushdb" | b"config" => wrong_arity(out, name),
        _ => {
            let mut msg =
                format!("unknown command '{}', with args beginning with:", String::from_utf8_lossy(raw_name));
            for arg in args.args_from(1).take(8) {
                msg.push_str(&format!(" '{}'", String::from_utf8_lossy(arg)));
            }
            error(out, &msg);
        }
    }
    After::Continue
}

// ---- the connection ------------------------------------------------------------

struct RespConnection {
    parser: RespParser,
    store: Shared,
    /// The record being collected, reused from record to record (the chat's
    /// own collector would hand over a fresh `Vec` each time).
    record: Vec<u8>,
    /// The reply being built, reused from command to command.
    out: Vec<u8>,
}

impl RespConnection {
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
}

impl ChatHandler for RespConnection {
    fn readable(&self, chat: &AsyncChat) -> bool {
        chat.queued() < READ_PAUSE
    }

    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        if !chat.is_closing() {
            self.record.extend_from_slice(data);
        }
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            return Ok(());
        }
        let parsed = self.parser.record(&self.record);
        let after = match parsed {
            Ok(Some(args)) => {
                Some(execute(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()), args, &mut self.out))
            }
            Ok(None) => None,
            Err(ProtocolError(why)) => {
                self.record.clear();
                return self.protocol_error(chat, &why);
            }
        };
        if self.record.capacity() > MAX_LINE {
            self.record = Vec::new(); // after a big bulk string
        } else {
            self.record.clear();
        }
        if let Some(after) = after {
            if after == After::Close {
                return self.close_after_reply(chat);
            }
            // One push per reply; the chat gathers a pipelined batch's
            // replies into one send when the read's records are done.
            self.flush(chat)?;
        }
        // A line terminator stays set from line to line; only a count
        // terminator (which the chat turns into `None` once it is reached)
        // is replaced.
        match self.parser.next_count() {
            Some(n) => chat.set_terminator(Terminator::count(n)),
            None => {
                if !matches!(chat.terminator(), Terminator::Bytes(_)) {
                    chat.set_terminator(Terminator::CRLF);
                }
            }
        }
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        self.record.clear();
        if RecordTooLong::from_io(&error).is_some() && !chat.is_closing() {
            let why =
                if self.parser.is_idle() { "too big inline request" } else { "too big bulk count string" };
            if self.protocol_error(chat, why).is_ok() {
                return; // sent, then closed, by the chat
            }
        }
        eprintln!("resp_server: closing a connection: {error}");
        cx.close();
    }
}

struct RespServer {
    store: Shared,
    max_bulk: usize,
}

impl AcceptHandler for RespServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let parser = RespParser::new(self.max_bulk);
        let mut chat = AsyncChat::new(conn, parser.terminator());
        chat.set_max_record(MAX_LINE);
        // A GET of the largest value must fit, beside a pipeline's worth of
        // smaller replies.
        chat.set_output_limit(
            chat.output_limit().max(self.max_bulk.saturating_mul(2).saturating_add(READ_PAUSE)),
        );
        cx.insert(
            chat,
            RespConnection { parser, store: Arc::clone(&self.store), record: Vec::new(), out: Vec::new() },
        )?;
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        eprintln!("resp_server: accept failed: {error}");
    }
}

// ---- main ----------------------------------------------------------------------

fn main() -> ExitCode {
    let server = Server {
        name: "resp_server",
        default_addr: "127.0.0.1:6379",
        threads: true,
        flags: &[Flag { name: "--max-bulk", value: "BYTES" }],
    };
    serve::main(server, |cli| {
        // Redis's own ceiling for one bulk string is 512 MiB.
        let max_bulk = cli.count("--max-bulk", 16 << 20, 1, 512 << 20)? as usize;
        // One store for every loop (`--threads`): uncontended with one thread.
        let store = Shared::default();
        Ok(move || RespServer { store: Arc::clone(&store), max_bulk })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rolecore::chat::{Framed, Framer};

    /// Feeds `input` through a chat's record splitting and the parser.
    fn parse(input: &[u8], max_bulk: usize) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = RespParser::new(max_bulk);
        let mut framer = Framer::new(parser.terminator());
        let mut record = Vec::new();
        let mut commands = Vec::new();
        let mut failure = None;
        let _ = framer.feed(input, |piece, terminator| {
            match piece {
                Framed::Data(d) => record.extend_from_slice(d),
                Framed::End => match parser.record(&std::mem::take(&mut record)) {
                    Ok(Some(c)) => commands.push(c.to_vecs()),
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        return Err(io::ErrorKind::InvalidData.into());
                    }
                },
            }
            *terminator = parser.terminator();
            Ok(())
        });
        failure.map_or(Ok(commands), Err)
    }

    #[test]
    fn frames() {
        let c = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n*1\r\n$0\r\n\r\n", 100).unwrap();
        assert_eq!(c, vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()], vec![Vec::new()]]);
        assert!(parse(b"*1\r\n$3\r\nGETxx", 100).is_err());
        assert!(parse(b"*1\r\n$101\r\n", 100).is_err());
        assert!(parse(b"*1\r\n+x\r\n", 100).is_err());
        assert!(parse(b"*x\r\n", 100).is_err());
    }
}
