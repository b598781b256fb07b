//! `resp_exec`: the RESP server's command execution
//! (`examples/resp/commands.rs`) behind its parser, under the limits
//! `examples/resp_server.rs` sets: `--max-bulk` 64 KiB or 1 MiB, the output
//! limit the server derives from it, the request bound the parser derives
//! from it, and a queue that fills as a client that does not read leaves it.
//!
//! Checked for every command:
//! - a reply never takes more than what is left of the output limit beside
//!   the queued output, or [`SMALL_REPLY`] bytes for a reply that is not
//!   measured (errors, integers): the sink panics before it would grow past
//!   that, so a command can never build (allocate) a reply past the limit;
//! - a command that answers `Overflow` wrote nothing;
//! - after a command, the parser's buffers are back under their kept size.
//!
//! The first byte picks a mode: even, the rest is raw client bytes; odd, the
//! rest describes commands (SETs of big values, MGETs naming keys up to
//! thousands of times, ECHOs, unknown commands with long binary names…),
//! encoded as multibulk frames and split at arbitrary points.

use rolecore::chat::{Framed, Framer};

use super::Input;

// The parser's one copy is `resp`'s; `commands.rs` finds it as `super::parser`.
use super::resp::parser;

#[path = "../../examples/resp/commands.rs"]
pub mod commands;

use commands::{After, Budget, SMALL_REPLY, Sink, Store, execute, output_limit};
use parser::RespParser;

/// What the parser may keep between requests: its argument buffer and its
/// offsets (see `KEEP_CAPACITY` in the parser).
const KEPT: usize = 2 * 64 * 1024;

/// A sink that counts, keeps the start of the reply, and panics before the
/// reply passes `max`.
struct Bounded {
    len: usize,
    max: usize,
    start: Vec<u8>,
}

impl Sink for Bounded {
    fn put(&mut self, bytes: &[u8]) {
        assert!(
            self.len + bytes.len() <= self.max,
            "a reply grew to {} bytes, past its bound of {} (starting {})",
            self.len + bytes.len(),
            self.max,
            super::show(&self.start)
        );
        let keep = bytes.len().min(64 - self.start.len().min(64));
        self.start.extend_from_slice(&bytes[..keep]);
        self.len += bytes.len();
    }
}

struct Server {
    parser: RespParser,
    store: Store,
    limit: usize,
    queued: usize,
    /// Whether the client reads its replies (the queue empties) or not.
    reads: bool,
    commands: usize,
}

impl Server {
    fn new(max_bulk: usize, queued_part: u8, reads: bool) -> Server {
        let limit = output_limit(max_bulk);
        let queued = match queued_part % 4 {
            0 => 0,
            1 => limit / 2,
            2 => limit - SMALL_REPLY,
            _ => limit,
        };
        Server {
            parser: RespParser::new(max_bulk),
            store: Store::default(),
            limit,
            queued,
            reads,
            commands: 0,
        }
    }

    /// Feeds `chunks` through a framer into the parser, running every command.
    fn feed(&mut self, chunks: &[&[u8]]) {
        let mut framer = Framer::new(self.parser.terminator()).with_max_record(64 * 1024);
        let mut record = Vec::new();
        for chunk in chunks {
            let fed = framer.feed(chunk, |piece, terminator| {
                match piece {
                    Framed::Data(d) => record.extend_from_slice(d),
                    Framed::End => {
                        let complete = match self.parser.record(&record) {
                            Ok(command) => command.is_some(),
                            Err(_) => return Err(std::io::Error::other("protocol error")),
                        };
                        record.clear();
                        if complete {
                            self.run();
                        }
                        *terminator = self.parser.terminator();
                    }
                }
                Ok(())
            });
            if fed.is_err() {
                break;
            }
        }
    }

    fn run(&mut self) {
        let args = self.parser.command().expect("the command just completed");
        let budget = Budget::new(self.limit, self.queued);
        let mut sink = Bounded { len: 0, max: budget.room.max(SMALL_REPLY), start: Vec::new() };
        let after = execute(&mut self.store, args, &mut sink, budget, std::time::Instant::now());
        if after == After::Overflow {
            assert_eq!(sink.len, 0, "an Overflow wrote {}", super::show(&sink.start));
        }
        if sink.len > SMALL_REPLY {
            assert!(sink.len <= budget.room, "a {}-byte reply measured past the room", sink.len);
        }
        if sink.start.starts_with(b"-ERR reply too large") {
            assert!(budget.room > 0 || budget.limit > 0);
        }
        self.parser.shrink();
        assert!(self.parser.capacity() <= KEPT, "the parser keeps {} bytes", self.parser.capacity());
        self.queued = if self.reads { 0 } else { (self.queued + sink.len).min(self.limit) };
        self.commands += 1;
    }
}

fn split<'a>(inp: &mut Input<'_>, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // Mostly big pieces: the inputs run to megabytes.
        let n = 1 + match inp.below(4) {
            0 => inp.below(64),
            _ => (64 << 10) - 1,
        };
        let n = n.min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    chunks
}

fn frame(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn key(inp: &mut Input<'_>) -> Vec<u8> {
    vec![b'k', b'0' + inp.below(4) as u8]
}

/// Runs one input; returns how many commands ran.
pub fn run(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    let mode = inp.byte();
    let setup = inp.byte();
    let max_bulk = if setup & 1 == 0 { 64 << 10 } else { 1 << 20 };
    let mut server = Server::new(max_bulk, setup >> 1, setup & 8 == 0);
    if mode.is_multiple_of(2) {
        let raw = inp.rest().to_vec();
        let chunks = split(&mut Input::new(data), &raw);
        server.feed(&chunks);
        return server.commands;
    }
    let sizes = [0, 1, 100, 4096, max_bulk / 2, max_bulk];
    let mut wire = Vec::new();
    for _ in 0..1 + inp.below(12) {
        let args: Vec<Vec<u8>> = match inp.below(9) {
            0 | 1 => {
                let len = inp.pick(&sizes);
                vec![b"SET".to_vec(), key(&mut inp), vec![inp.byte(); len]]
            }
            2 => vec![b"GET".to_vec(), key(&mut inp)],
            3 | 4 => {
                let count = inp.pick(&[1, 2, 7, 100, 2000, 20_000]);
                let mut args = vec![b"MGET".to_vec()];
                for _ in 0..count {
                    args.push(key(&mut inp));
                }
                args
            }
            5 => {
                let len = inp.pick(&sizes);
                let name: &[u8] = inp.pick(&[&b"ECHO"[..], b"PING"]);
                vec![name.to_vec(), vec![inp.byte(); len]]
            }
            6 => {
                // An unknown command: a long name of any bytes, arguments too.
                let len = inp.pick(&[9, 200, 4096, 1 << 16]);
                let mut args = vec![vec![inp.byte() | 0x80; len]];
                for _ in 0..inp.below(12) {
                    args.push(vec![inp.byte(); inp.below(200)]);
                }
                args
            }
            7 => {
                let mut args = vec![b"MSET".to_vec()];
                for _ in 0..1 + inp.below(4) {
                    args.push(key(&mut inp));
                    args.push(vec![inp.byte(); inp.pick(&sizes)]);
                }
                args
            }
            _ => {
                // Any small command, arguments of arbitrary bytes.
                let name: &[u8] =
                    inp.pick(&[&b"DEL"[..], b"EXISTS", b"INCR", b"DECR", b"DBSIZE", b"CONFIG", b"QUIT"]);
                let mut args = vec![name.to_vec()];
                for _ in 0..inp.below(4) {
                    args.push((0..inp.below(12)).map(|_| inp.byte()).collect());
                }
                args
            }
        };
        frame(&mut wire, &args);
    }
    let chunks = split(&mut inp, &wire);
    server.feed(&chunks);
    server.commands
}

/// A one-line description of an input, for naming corpus files.
pub fn describe(data: &[u8]) -> String {
    let kind = match data.first() {
        Some(b) if !b.is_multiple_of(2) => "commands",
        _ => "raw",
    };
    format!("resp_exec_{kind}_{}_bytes_{}_commands", data.len(), run(data))
}
