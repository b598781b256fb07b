//! An in-memory server that speaks the Redis protocol (RESP2), on
//! [`AsyncChat`]: enough for `redis-cli` and `redis-benchmark`.
//!
//! ```text
//! cargo run --release --example resp_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--max-bulk BYTES] [--max-request BYTES] [--idle-timeout SECS] [--output-budget BYTES]
//! ```
//!
//! ADDR defaults to 127.0.0.1:6379 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--max-bulk` (default 16 MiB) bounds
//! one bulk string of a request; `--max-request` (default twice `--max-bulk`
//! plus 1 MiB) bounds a whole request, all its arguments together (each
//! counted with 8 bytes more, what the server keeps to split them).
//! `--idle-timeout` (default 300, 0 for none) closes a connection that stays
//! silent that long (no request, and no reply taken). `--output-budget`
//! (default 256 MiB) bounds the replies queued by all of one loop's
//! connections together: each connection's output limit bounds one client
//! that does not read, the budget bounds a thousand of them. When it runs
//! short, the connection with the most output queued (the slowest reader)
//! is dropped first.
//!
//! Commands: `PING [msg]`, `ECHO msg`, `SET key value [EX s|PX ms]`, `GET`,
//! `DEL key...`, `EXISTS key...`, `INCR`, `DECR`, `MGET key...`,
//! `MSET key value...`, `DBSIZE`, `FLUSHALL`, `QUIT`, `CONFIG GET name...`,
//! `COMMAND`. Requests are multibulk frames or inline lines, pipelined or
//! not. Expired keys are dropped when they are next looked at.
//!
//! Replies are bounded by the connection's output limit (the chat's 4 MiB,
//! raised to twice `--max-bulk` plus 1 MiB): a reply is measured before it is
//! built, one larger than the limit is refused with `-ERR reply too large`,
//! and one that does not fit beside the replies already queued (a client
//! that does not read them) closes the connection. Big pieces of a reply go
//! to the chat's queue directly, never through a second buffer, and a
//! connection's own buffers shrink back after a big request or reply.
//!
//! Framing uses the chat's terminators: a line (`*N`, `$N` or an inline
//! command) ends at `\r\n`; the payload of a bulk string is a count
//! terminator of `N + 2` bytes whose last two must be `\r\n`. The parser,
//! [`RespParser`], is a plain struct that is told each record and says which
//! terminator comes next, so it can be driven without a socket; the commands
//! (`examples/resp/commands.rs`) write to a [`Sink`], so they run without
//! one too. Both are fuzzed (`fuzz/bodies/resp.rs`, `fuzz/bodies/resp_exec.rs`).

mod serve;
use serve::{Connections, Flag, Server};

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
/// A connection's record and reply buffers are kept from request to request
/// up to this capacity; a bigger one is freed once its request is done.
const KEEP_CAPACITY: usize = 64 * 1024;
/// A piece of a reply at least this big is pushed to the chat at once
/// instead of being copied into the connection's reply buffer first.
const DIRECT_PUSH: usize = 4096;

// ---- the parser and the commands: examples/resp/ (fuzzed: fuzz/bodies/resp*.rs) ----

#[path = "resp/parser.rs"]
mod parser;
use parser::{ProtocolError, RespParser};

#[path = "resp/commands.rs"]
mod commands;
use commands::{After, Budget, READ_PAUSE, Sink, Store, error, execute, output_limit};

type Shared = Arc<Mutex<Store>>;

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

struct RespConnection {
    parser: RespParser,
    store: Shared,
    /// This loop's connections and the budget their output shares.
    connections: Connections<RespConnection>,
    /// `--idle-timeout`: also how long one request may take to arrive.
    idle_timeout: Option<Duration>,
    /// A request is arriving, against a deadline instead of the idle timeout.
    mid_request: bool,
    /// The record being collected, reused from record to record (the chat's
    /// own collector would hand over a fresh `Vec` each time).
    record: Vec<u8>,
    /// The small pieces of the reply being written, reused from command to
    /// command.
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

    /// A request must arrive whole within the idle timeout: a client that
    /// announces a bulk string and trickles it a byte at a time is busy, not
    /// idle, and would otherwise hold the connection as long as it likes.
    /// Between requests the idle timeout applies again.
    fn time_the_request(&mut self, complete: bool, cx: &mut Ctx<'_>) {
        let Some(timeout) = self.idle_timeout else { return };
        let token = cx.token();
        if complete || self.parser.is_idle() {
            if self.mid_request {
                self.mid_request = false;
                cx.set_idle_timeout(token, Some(timeout));
            }
        } else if !self.mid_request {
            self.mid_request = true;
            cx.set_deadline(token, Instant::now().checked_add(timeout));
        }
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
            execute(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()), args, &mut sink, budget);
        sink.flush();
        match sink.failed {
            Some(e) => Err(e),
            None => Ok(after),
        }
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
        self.time_the_request(complete, cx);
        if complete {
            let after = self.run(chat, cx);
            self.shrink();
            match after? {
                After::Continue => {}
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
        self.connections.leave(cx.token());
        cx.close();
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }
}

struct RespServer {
    store: Shared,
    connections: Connections<RespConnection>,
    max_bulk: usize,
    max_request: usize,
    idle_timeout: Option<Duration>,
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
        chat.set_max_record(MAX_LINE);
        chat.set_output_limit(output_limit(self.max_bulk));
        self.connections.charge(&mut chat);
        let connection = RespConnection {
            parser,
            store: Arc::clone(&self.store),
            connections: self.connections.clone(),
            idle_timeout: self.idle_timeout,
            mid_request: false,
            record: Vec::new(),
            out: Vec::new(),
        };
        let token = cx.insert(chat, connection)?;
        self.connections.join(token);
        cx.set_idle_timeout(token, self.idle_timeout);
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
        flags: &[
            Flag { name: "--max-bulk", value: "BYTES" },
            Flag { name: "--max-request", value: "BYTES" },
            Flag { name: "--idle-timeout", value: "SECS" },
            Flag { name: "--output-budget", value: "BYTES" },
        ],
    };
    serve::main(server, |cli| {
        // Redis's own ceiling for one bulk string is 512 MiB.
        let max_bulk = cli.count("--max-bulk", 16 << 20, 1, 512 << 20)? as usize;
        // Redis's client-query-buffer-limit is 1 GiB.
        let default_request = parser::default_max_request(max_bulk) as u64;
        let max_request = cli.count("--max-request", default_request, 1, 1 << 30)? as usize;
        let idle_timeout = cli.seconds("--idle-timeout", 300.0)?;
        // What all of one loop's connections may queue together.
        let budget = cli.count("--output-budget", 256 << 20, 64 << 10, 1 << 40)? as usize;
        // One store for every loop (`--threads`): uncontended with one thread.
        let store = Shared::default();
        Ok(move || RespServer {
            store: Arc::clone(&store),
            connections: Connections::new(budget),
            max_bulk,
            max_request,
            idle_timeout,
        })
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

    /// A connection that answered a 4 MiB `SET` and `GET` keeps no buffer
    /// of that size once it is idle; and an `MGET` whose reply would pass
    /// the output limit is refused without building it.
    #[test]
    fn an_idle_connection_gives_its_buffers_back() {
        use std::io::{Read, Write};
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        theirs.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let max_bulk = 8 << 20;
        let parser = RespParser::new(max_bulk);
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), parser.terminator());
        chat.set_max_record(MAX_LINE);
        chat.set_output_limit(output_limit(max_bulk));
        let connection = RespConnection {
            parser,
            store: Shared::default(),
            connections: Connections::new(256 << 20),
            idle_timeout: None,
            mid_request: false,
            record: Vec::new(),
            out: Vec::new(),
        };
        let mut map = rolecore::Map::new().unwrap();
        let token = map.insert(chat, connection).unwrap();

        let value = vec![b'v'; 4 << 20];
        let mut request = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        // 2,000 keys × 4 MiB: 8 GiB asked, refused.
        request.extend_from_slice(b"*2001\r\n$4\r\nMGET\r\n");
        for _ in 0..2000 {
            request.extend_from_slice(b"$1\r\nk\r\n");
        }
        let mut expected = format!("+OK\r\n${}\r\n", value.len()).into_bytes();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"\r\n-ERR reply too large\r\n");

        let mut writer = theirs.try_clone().unwrap();
        let write = std::thread::spawn(move || writer.write_all(&request).map(|()| writer));
        let want = expected.len();
        let mut reader = theirs;
        let read = std::thread::spawn(move || {
            let mut got = vec![0; want];
            // The peer stays open (returned) so the connection stays too.
            reader.read_exact(&mut got).map(|()| (got, reader))
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read.is_finished() && Instant::now() < deadline {
            map.run(rolecore::LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
        }
        let _writer = write.join().unwrap().unwrap();
        let (got, _peer) = read.join().unwrap().unwrap();
        assert!(got == expected, "the replies differ: {:?}", String::from_utf8_lossy(&got[got.len() - 40..]));

        let connection = map.handler::<RespConnection>(token).expect("the connection is open");
        assert!(connection.record.capacity() <= KEEP_CAPACITY, "record: {}", connection.record.capacity());
        assert!(connection.out.capacity() <= KEEP_CAPACITY, "out: {}", connection.out.capacity());
        assert!(
            connection.parser.capacity() <= 2 * KEEP_CAPACITY,
            "parser: {}",
            connection.parser.capacity()
        );
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
