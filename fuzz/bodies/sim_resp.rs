//! `sim_resp`: the RESP example server's own handlers
//! (`examples/resp/server.rs`: `RespServer`, `RespConnection`, `ChatSink`,
//! behind `examples/resp/parser.rs` and `examples/resp/commands.rs`) in
//! `rolecore::sim`, with simulated clients pipelining requests.
//!
//! The input picks the world's size, the server's limits, set small so that
//! they are hit (`--max-bulk`, `--max-request`, the longest line, each
//! connection's output limit, the loop's output budget) and an idle timeout
//! (none, 250 ms or 60 s: the simulation's clock is virtual and jumps up to
//! two minutes, so both fire, mid-pipeline too, and the checker holds them
//! to their deadlines), then 1 to 8 requests the peers send one after the other, over
//! and over: inline and multibulk `PING`s and `ECHO`s of binary arguments,
//! `SET`s of values up to 70,000 bytes, `GET`s, `MGET`s naming a key up to
//! 1,000 times, `DEL`/`EXISTS`/`INCR`, `QUIT`, unknown commands with long
//! binary names, empty requests, and broken frames (bad lengths, a bulk
//! string without its CRLF, a frame cut short, lines of 70,000 bytes). Every
//! write of a peer may cut them anywhere; the rest of the input drives the
//! simulation.
//!
//! Checked on the report:
//! - the run is `Ok`: every invariant of the simulation held;
//! - every peer received a well-formed sequence of RESP replies, the last
//!   one possibly cut short (by the peer stopping reading, or the server
//!   closing);
//! - no reply is larger than the connection's output limit or the loop's
//!   output budget, and no bulk string longer than `--max-bulk` or the line
//!   limit (an inline command's arguments are bounded by its line);
//! - for every peer that sent at most one out-of-band byte, its replies are,
//!   in order, those a reference model (a RESP request reader written here,
//!   independently of the server's parser) gives for what the peer sent: a
//!   reply per complete command and none for an incomplete one, `+PONG` for
//!   `PING`, the exact bulk string for `ECHO x` (or `-ERR reply too large`),
//!   the exact protocol error for a broken frame or an over-long line, then
//!   nothing; the right type for commands on the shared store (`GET`: a bulk
//!   string or nil; `MGET` of n keys: an array of n; `DEL`: an integer), up
//!   to where the server closed. A reply may be missing only at the end: a
//!   client that does not read its replies, or one the budget drops, is
//!   closed.

use std::time::Duration;

use rolecore::sim::{SimConfig, SimFailure, SimReport, Traffic};

use super::{Input, check_replies, config_name, show, sim_config, summarize_trace};

// The example's files, as the example includes them: `server.rs` names
// `parser`, `commands` and `Connections` through `super` (one copy of each
// in the fuzz crate: `resp` and `resp_exec` include the first two).
use super::connections::Connections;
use super::resp::parser;
use super::resp_exec::commands;

#[path = "../../examples/resp/server.rs"]
mod server;

use server::{InputBudget, MAX_LINE, RespServer, Shared};

/// What the parser allows in one multibulk frame (`MAX_ARGS` in the parser).
const MAX_ARGS: usize = 1024 * 1024;
/// What one argument costs beside its bytes (`ARG_OVERHEAD`).
const ARG_OVERHEAD: usize = std::mem::size_of::<usize>();

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_request: usize,
    pub max_line: usize,
    pub output_limit: usize,
    pub budget: usize,
    pub idle_timeout: Option<Duration>,
}

impl Limits {
    /// The largest reply that can be queued at once.
    fn max_reply(&self) -> usize {
        self.output_limit.min(self.budget)
    }
}

#[derive(Clone, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub limits: Limits,
    pub messages: Vec<Vec<u8>>,
}

// ---- the requests --------------------------------------------------------------

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `n` bytes of any value but `OOB_BYTE` (0xFF), line ends included.
fn binary(inp: &mut Input<'_>, n: usize) -> Vec<u8> {
    let seed = inp.byte();
    (0..n)
        .map(|i| match (usize::from(seed) + i * 7) % 11 {
            0 => b'\r',
            1 => b'\n',
            k => (seed.wrapping_add((i * 31 + k) as u8)) % 255,
        })
        .collect()
}

fn word(inp: &mut Input<'_>) -> Vec<u8> {
    (0..1 + inp.below(40)).map(|_| b'a' + inp.below(26) as u8).collect()
}

const KEYS: [&[u8]; 3] = [b"k", b"a", b"counter"];
const SIZES: [usize; 6] = [0, 1, 5, 300, 5000, 70_000];

/// A request the peers send, valid, near-valid or hostile.
fn message(inp: &mut Input<'_>) -> Vec<u8> {
    let key = inp.pick(&KEYS);
    match inp.below(20) {
        0 => b"PING\r\n".to_vec(),
        1 => multibulk(&[b"PING"]),
        2 => {
            let n = inp.pick(&SIZES);
            multibulk(&[b"ping", &binary(inp, n)])
        }
        3 => [&b"ECHO "[..], &word(inp), b"\r\n"].concat(),
        4 | 5 => {
            let n = inp.pick(&SIZES);
            multibulk(&[b"ECHO", &binary(inp, n)])
        }
        6 | 7 => {
            let n = inp.pick(&SIZES);
            let value = binary(inp, n);
            match inp.below(4) {
                0 => multibulk(&[b"SET", key, &value, b"EX", b"100"]),
                1 => multibulk(&[b"SET", key, b"12"]),
                _ => multibulk(&[b"SET", key, &value]),
            }
        }
        8 => multibulk(&[b"GET", key]),
        9 => [&b"GET "[..], key, b"\r\n"].concat(),
        10 => {
            let n = inp.pick(&[1, 3, 40, 1000]);
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend((0..n).map(|i| KEYS[i % KEYS.len()]));
            multibulk(&args)
        }
        11 => {
            let name = inp.pick(&[&b"DEL"[..], b"EXISTS", b"INCR", b"decr", b"DBSIZE", b"COMMAND"]);
            multibulk(&[name, key])
        }
        12 => {
            let n = inp.pick(&[3, 20, 300]);
            let name = binary(inp, n);
            let arg = binary(inp, 40);
            multibulk(&[&name, &arg, b"x"])
        }
        13 => inp
            .pick(&[&b"\r\n"[..], b"*0\r\n", b"*-1\r\n", b"  \r\n", b"PING\n", b"\n", b"*1\n$4\nPING\r\n"])
            .to_vec(),
        14 if inp.below(4) == 0 => b"QUIT\r\n".to_vec(),
        14 => multibulk(&[b"ECHO"]), // wrong arity
        15 => {
            // A frame announcing more than it sends: the next request's
            // first line is taken for this one's missing bulk header.
            b"*2\r\n$4\r\nECHO\r\n".to_vec()
        }
        16 => inp
            .pick(&[
                &b"*1\r\n$99999999\r\n"[..],
                b"*x\r\n",
                b"*1\r\n+x\r\n",
                b"*1\r\n$3\r\nGETxx",
                b"*1\r\n$\r\n",
                b"*2000000\r\n",
                b"*3\r\n\r\n",
                b"ECHO a\rb\r\n",
            ])
            .to_vec(),
        17 => {
            // An inline line, or a bulk header, longer than any line limit.
            let mut m = if inp.byte() & 1 == 0 { b"*1\r\n$".to_vec() } else { Vec::new() };
            m.resize(m.len() + 70_000, b'9');
            m.extend_from_slice(b"\r\n");
            m
        }
        _ => {
            let n = inp.pick(&SIZES);
            multibulk(&[b"ECHO", &vec![b'e'; n]])
        }
    }
}

pub fn decode(inp: &mut Input<'_>, check_descriptors: bool) -> Setup {
    let config = sim_config(inp, check_descriptors);
    let b = usize::from(inp.byte());
    let max_bulk = [16, 100, 4096, 65_536][b % 4];
    let max_request = [parser::default_max_request(max_bulk), 64, 300, 5000][(b >> 2) % 4];
    let max_line = [MAX_LINE, 3, 10, 40][(b >> 4) % 4];
    let output_limit = [commands::output_limit(max_bulk), 16, 200, 6000][(b >> 6) % 4];
    let b = usize::from(inp.byte());
    let budget = [256 << 20, 100, 2000, 20_000][b % 4];
    let idle_timeout = [None, Some(Duration::from_millis(250)), Some(Duration::from_secs(60))][(b >> 2) % 3];
    let limits = Limits { max_bulk, max_request, max_line, output_limit, budget, idle_timeout };
    let messages = (0..1 + inp.below(8)).map(|_| message(inp)).collect();
    Setup { config, limits, messages }
}

// ---- the model: what a peer that sent these bytes may be answered -------------

/// What one reply must be.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// These bytes.
    Exact(Vec<u8>),
    /// A bulk string or nil (a `GET`), or `-ERR reply too large`.
    Bulk,
    /// An array of this many bulk strings or nils (an `MGET`), or
    /// `-ERR reply too large`.
    Array(usize),
    /// An integer.
    Integer,
    /// An integer, or an error (`INCR` of a value that is not a number).
    IntegerOrError,
    /// `+OK` or an error (a `SET` with options).
    OkOrError,
    /// An error starting with this.
    Error(&'static str),
    /// Any reply.
    Any,
}

/// A reply the model expects, and whether the server closes after it.
#[derive(Clone, Debug)]
struct Expected {
    what: Expect,
    closes: bool,
    /// The bytes of the request stream it answers, for messages.
    upto: usize,
}

/// `u8::escape_ascii`'s spelling, as the parser's error uses it.
fn escape(b: u8) -> String {
    b.escape_ascii().to_string()
}

/// The parser's `parse_length`.
fn length(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + usize::from(d - b'0')))
}

fn bulk_reply(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

fn wrong_arity(name: &[u8]) -> Expect {
    let mut e = b"-ERR wrong number of arguments for '".to_vec();
    e.extend_from_slice(name);
    e.extend_from_slice(b"' command\r\n");
    Expect::Exact(e)
}

/// What a complete command is answered.
fn answer(args: &[Vec<u8>], limits: &Limits) -> (Expect, bool) {
    let name = if args[0].len() <= 8 { args[0].to_ascii_lowercase() } else { Vec::new() };
    let argc = args.len();
    let echo = |v: &[u8]| {
        let reply = bulk_reply(v);
        if reply.len() > limits.output_limit {
            Expect::Exact(b"-ERR reply too large\r\n".to_vec())
        } else {
            Expect::Exact(reply)
        }
    };
    let expect = match (&name[..], argc) {
        (b"ping", 1) => Expect::Exact(b"+PONG\r\n".to_vec()),
        (b"ping", 2) | (b"echo", 2) => echo(&args[1]),
        (b"ping" | b"echo", _) => wrong_arity(&name),
        (b"set", 3) => Expect::Exact(b"+OK\r\n".to_vec()),
        (b"set", 4..) => Expect::OkOrError,
        (b"get", 2) => Expect::Bulk,
        (b"mget", 2..) => Expect::Array(argc - 1),
        (b"del" | b"exists", 2..) => Expect::Integer,
        (b"incr" | b"decr", 2) => Expect::IntegerOrError,
        (b"dbsize", 1) => Expect::Integer,
        (b"quit", _) => return (Expect::Exact(b"+OK\r\n".to_vec()), true),
        (b"command", _) => Expect::Exact(b"*0\r\n".to_vec()),
        (b"config", _) | (b"mset", _) | (b"flushall" | b"flushdb", _) => Expect::Any,
        (b"set" | b"get" | b"mget" | b"del" | b"exists" | b"incr" | b"decr" | b"dbsize", _) => {
            wrong_arity(&name)
        }
        _ => Expect::Error("-ERR unknown command '"),
    };
    (expect, false)
}

fn protocol_error(why: &str, upto: usize) -> Expected {
    Expected {
        what: Expect::Exact(format!("-ERR Protocol error: {why}\r\n").into_bytes()),
        closes: true,
        upto,
    }
}

/// A line of the request stream from `at`: `Ok(Some((line, next)))`, or
/// `Ok(None)` when it has not ended yet, or `Err(upto)` when it is already
/// longer than `max_line`. A line ends at LF, and a CR before the LF is not
/// part of it (nor counted); a CR at the very end may be that one, and is
/// not counted either.
fn line(sent: &[u8], at: usize, max_line: usize) -> Result<Option<(&[u8], usize)>, usize> {
    let rest = &sent[at..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
            if line.len() <= max_line { Ok(Some((line, at + i + 1))) } else { Err(at + max_line + 1) }
        }
        None => {
            let collected = rest.len() - usize::from(rest.ends_with(b"\r"));
            if collected > max_line { Err(at + max_line + 1) } else { Ok(None) }
        }
    }
}

/// The replies, in order, to what a peer sent: a reference RESP request
/// reader under the server's limits, written from the protocol, not from
/// the server's parser.
fn model(sent: &[u8], limits: &Limits) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut at = 0;
    'requests: loop {
        let (first, next) = match line(sent, at, limits.max_line) {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(upto) => {
                out.push(protocol_error("too big inline request", upto));
                break;
            }
        };
        at = next;
        let Some(count) = first.strip_prefix(b"*") else {
            let line = first.strip_suffix(b"\r").unwrap_or(first);
            let words: Vec<Vec<u8>> = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            if !words.is_empty() {
                let (what, closes) = answer(&words, limits);
                out.push(Expected { what, closes, upto: at });
                if closes {
                    break;
                }
            }
            continue;
        };
        let n = match count {
            b"-1" => 0,
            _ => match length(count).filter(|&n| n <= MAX_ARGS) {
                Some(n) => n,
                None => {
                    out.push(protocol_error("invalid multibulk length", at));
                    break;
                }
            },
        };
        if n.saturating_mul(ARG_OVERHEAD) > limits.max_request {
            out.push(protocol_error("request too large", at));
            break;
        }
        let mut args = Vec::new();
        let mut size = 0usize;
        for _ in 0..n {
            let (header, next) = match line(sent, at, limits.max_line) {
                Ok(Some(l)) => l,
                Ok(None) => break 'requests,
                Err(upto) => {
                    out.push(protocol_error("too big bulk count string", upto));
                    break 'requests;
                }
            };
            at = next;
            let len = match header.split_first() {
                Some((b'$', digits)) => match length(digits).filter(|&l| l <= limits.max_bulk) {
                    Some(len) => len,
                    None => {
                        out.push(protocol_error("invalid bulk length", at));
                        break 'requests;
                    }
                },
                Some((&c, _)) => {
                    out.push(protocol_error(&format!("expected '$', got '{}'", escape(c)), at));
                    break 'requests;
                }
                None => {
                    out.push(protocol_error("expected '$', got an empty line", at));
                    break 'requests;
                }
            };
            if size.saturating_add(len).saturating_add(ARG_OVERHEAD) > limits.max_request {
                out.push(protocol_error("request too large", at));
                break 'requests;
            }
            if sent.len() < at + len + 2 {
                break 'requests;
            }
            let payload = &sent[at..at + len + 2];
            at += len + 2;
            if !payload.ends_with(b"\r\n") {
                out.push(protocol_error("a bulk string does not end with CRLF", at));
                break 'requests;
            }
            args.push(payload[..len].to_vec());
            size += len + ARG_OVERHEAD;
        }
        if n > 0 {
            let (what, closes) = answer(&args, limits);
            out.push(Expected { what, closes, upto: at });
            if closes {
                break;
            }
        }
    }
    out
}

// ---- the replies ---------------------------------------------------------------

/// One RESP reply, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A line of a reply from `at`: its text and where the next starts; `None`
/// if it is cut short. A CR or LF inside it is a malformed reply.
fn reply_line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at..];
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        let inner = rest.strip_suffix(b"\r").unwrap_or(rest);
        if inner.contains(&b'\r') {
            return Err(format!("a CR inside a reply line: {}", show(rest)));
        }
        return Ok(None);
    };
    let Some(text) = rest[..end].strip_suffix(b"\r") else {
        return Err(format!("a reply line ends with a bare LF: {}", show(&rest[..end + 1])));
    };
    if text.contains(&b'\r') {
        return Err(format!("a CR inside a reply line: {}", show(text)));
    }
    Ok(Some((text, at + end + 1)))
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a number in a reply: {}", show(text)))
}

/// The reply at `at`, and where the next starts; `None` if it is cut short.
fn reply(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    if !b"+-:$*".contains(&kind) || (kind == b'*' && depth > 0) {
        return Err(format!("a reply starts with {}", show(&[kind])));
    }
    let Some((text, next)) = reply_line(buf, at + 1)? else { return Ok(None) };
    Ok(Some(match kind {
        b'+' => (Reply::Simple(text.to_vec()), next),
        b'-' => (Reply::Error(text.to_vec()), next),
        b':' => (Reply::Integer(number(text)?), next),
        b'$' => match number(text)? {
            -1 => (Reply::Bulk(None), next),
            n if n >= 0 => {
                let n = n as usize;
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err(format!("a bulk string of {n} bytes does not end with CRLF"));
                }
                (Reply::Bulk(Some(buf[next..next + n].to_vec())), next + n + 2)
            }
            n => return Err(format!("a bulk string of length {n}")),
        },
        b'*' if depth == 0 => {
            let n = number(text)?;
            let n = usize::try_from(n).map_err(|_| format!("an array of length {n}"))?;
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..n {
                let Some((item, next)) = reply(buf, at, depth + 1)? else { return Ok(None) };
                if !matches!(item, Reply::Bulk(_)) {
                    return Err(format!("an array holds {item:?}, not a bulk string"));
                }
                items.push(item);
                at = next;
            }
            (Reply::Array(items), at)
        }
        _ => return Err(format!("a reply starts with {}", show(&[kind]))),
    }))
}

fn matches(expect: &Expect, got: &Reply, bytes: &[u8]) -> bool {
    let too_large = *got == Reply::Error(b"ERR reply too large".to_vec());
    match expect {
        Expect::Exact(e) => e == bytes,
        Expect::Bulk => matches!(got, Reply::Bulk(_)) || too_large,
        Expect::Array(n) => matches!(got, Reply::Array(items) if items.len() == *n) || too_large,
        Expect::Integer => matches!(got, Reply::Integer(_)),
        Expect::IntegerOrError => matches!(got, Reply::Integer(_) | Reply::Error(_)),
        Expect::OkOrError => *got == Reply::Simple(b"OK".to_vec()) || matches!(got, Reply::Error(_)),
        Expect::Error(start) => bytes.starts_with(start.as_bytes()),
        Expect::Any => true,
    }
}

// ---- the run -------------------------------------------------------------------

pub fn simulate(data: &[u8], check_descriptors: bool) -> (Setup, Result<SimReport, SimFailure>) {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let traffic = Traffic::messages(&s.messages).expect("requests without 0xFF");
    let mut sim = rolecore::sim::Sim::from_bytes(inp.rest(), s.config)
        .expect("create the simulation")
        .with_traffic(traffic);
    sim.listen(server(&s.limits)).expect("listen");
    (s, sim.run())
}

/// The server with `l`'s limits.
fn server(l: &Limits) -> RespServer {
    RespServer {
        store: Shared::default(),
        connections: Connections::new(l.budget),
        max_bulk: l.max_bulk,
        max_request: l.max_request,
        input: InputBudget::new(usize::MAX), // unbounded: the checks expect every request within max_request answered
        idle_timeout: l.idle_timeout,
        max_line: l.max_line,
        output_limit: l.output_limit,
    }
}

/// What the setup is, for a failure's message (the requests cut short).
fn setup_text(s: &Setup) -> String {
    let requests: Vec<String> = s
        .messages
        .iter()
        .map(|m| if m.len() > 80 { format!("{}… ({} bytes)", show(&m[..80]), m.len()) } else { show(m) })
        .collect();
    format!("{:?}, {:?}, requests {requests:?}", s.config, s.limits)
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, result) = simulate(data, check_descriptors);
    let setup = || setup_text(&s);
    check_replies("RESP", 400, result, setup, |peer| {
        let received = peer.received();
        let expected = peer.modelled().then(|| model(&peer.report.sent, &s.limits));
        let mut at = 0;
        let mut n = 0;
        loop {
            let (got, next) = match reply(received, at, 0) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(why) => peer.fail(format!("reply {n} at byte {at} is malformed: {why}")),
            };
            let bytes = &received[at..next];
            if bytes.len() > s.limits.max_reply() {
                peer.fail(format!(
                    "reply {n} takes {} bytes, past the limit of {}",
                    bytes.len(),
                    s.limits.max_reply()
                ));
            }
            let bulks = match &got {
                Reply::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            for b in bulks {
                // An argument is at most `--max-bulk` bytes in a multibulk
                // frame, or a line in an inline command.
                let longest = s.limits.max_bulk.max(s.limits.max_line);
                if let Reply::Bulk(Some(v)) = b
                    && v.len() > longest
                {
                    peer.fail(format!(
                        "reply {n} holds a bulk string of {} bytes, past --max-bulk and the line limit",
                        v.len()
                    ));
                }
            }
            if let Some(expected) = &expected {
                let Some(e) = expected.get(n) else {
                    peer.fail(format!(
                        "reply {n} ({}) answers nothing: the model answers {} requests",
                        show(bytes),
                        expected.len()
                    ))
                };
                if !matches(&e.what, &got, bytes) {
                    peer.fail(format!(
                        "reply {n} is {}, the model says {} (the request ends at byte {} of the stream)",
                        show(bytes),
                        match &e.what {
                            Expect::Exact(b) => show(b),
                            other => format!("{other:?}"),
                        },
                        e.upto
                    ));
                }
                if e.closes && next < received.len() {
                    peer.fail(format!("bytes after reply {n}, after which the server closes"));
                }
            }
            at = next;
            n += 1;
        }
        n
    })
}

pub fn describe(data: &[u8]) -> String {
    let (s, result) = simulate(data, false);
    let trace = match &result {
        Ok(report) => {
            let replies: usize = report
                .peers
                .iter()
                .map(|p| {
                    let r = &p.received;
                    let mut at = 0;
                    let mut n = 0;
                    while let Ok(Some((_, next))) = reply(r, at, 0) {
                        at = next;
                        n += 1;
                    }
                    n
                })
                .sum();
            format!("{}-replies{replies}", summarize_trace(&report.trace))
        }
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    let l = &s.limits;
    let mut name = format!("{}-requests{}", config_name(&s.config), s.messages.len());
    for (value, small, word) in [
        (l.max_bulk, 65_536, "bulk"),
        (l.max_request, 5000, "request"),
        (l.max_line, 40, "line"),
        (l.output_limit, 6000, "out"),
        (l.budget, 20_000, "budget"),
    ] {
        if value <= small {
            name.push_str(&format!("-{word}{value}"));
        }
    }
    if let Some(t) = l.idle_timeout {
        name.push_str(&format!("-idle{}ms", t.as_millis()));
    }
    format!("{name}-{trace}")
}

#[cfg(test)]
mod model_tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bulk: 100,
            max_request: 1000,
            max_line: 20,
            output_limit: 1000,
            budget: 1000,
            idle_timeout: None,
        }
    }

    #[test]
    fn the_model_answers_pipelined_requests_and_stops_at_a_broken_frame() {
        let mut sent = multibulk(&[b"PING"]);
        sent.extend_from_slice(b"ECHO hi\r\n\r\n");
        sent.extend_from_slice(&multibulk(&[b"GET", b"k"]));
        sent.extend_from_slice(b"*1\r\n$101\r\n");
        sent.extend_from_slice(b"PING\r\n");
        let m = model(&sent, &limits());
        let what: Vec<Expect> = m.iter().map(|e| e.what.clone()).collect();
        assert_eq!(
            what,
            [
                Expect::Exact(b"+PONG\r\n".to_vec()),
                Expect::Exact(b"$2\r\nhi\r\n".to_vec()),
                Expect::Bulk,
                Expect::Exact(b"-ERR Protocol error: invalid bulk length\r\n".to_vec()),
            ]
        );
        assert!(m[3].closes);
        // A line over the limit, even before its CRLF arrives.
        let m = model(&[b'x'; 21], &limits());
        assert_eq!(m[0].what, Expect::Exact(b"-ERR Protocol error: too big inline request\r\n".to_vec()));
        assert!(model(&[b'x'; 20], &limits()).is_empty());
        assert!(model(&[&[b'x'; 20][..], b"\r"].concat(), &limits()).is_empty());
    }

    #[test]
    fn replies_parse_and_a_cut_one_is_incomplete() {
        let buf = b"+PONG\r\n$2\r\nhi\r\n*2\r\n$-1\r\n$1\r\nx\r\n:12\r\n-ERR x\r\n";
        let mut at = 0;
        let mut n = 0;
        while let Some((_, next)) = reply(buf, at, 0).unwrap() {
            at = next;
            n += 1;
        }
        assert_eq!((n, at), (5, buf.len()));
        for cut in 0..buf.len() {
            let mut at = 0;
            while let Some((_, next)) = reply(&buf[..cut], at, 0).unwrap() {
                at = next;
            }
        }
        assert!(reply(b"+PO\nNG\r\n", 0, 0).is_err());
    }
}

/// The resp server's idle deadline, on the simulation's virtual clock: a
/// map made by a `Sim` with no peers, fed by a kernel socket, so each
/// instant is exact and no test reads a wall clock.
#[cfg(test)]
mod idle_tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use rolecore::Channel;

    use super::super::virtual_time::{drain, ends_without_another_byte, tick};
    use super::*;

    const IDLE: Duration = Duration::from_secs(1);
    const HALF_MS: Duration = Duration::from_micros(500);

    /// A request answered at 0.6 of the idle timeout gives the connection a
    /// whole idle timeout from then (at 1.6); the client took that reply
    /// meanwhile, so it is not idle and gets one more (to 2.6), then it is
    /// closed, at exactly that instant. A deadline the request did not
    /// move closes it at 1, one set short closes it at 1.6 (half a timeout
    /// after the reply, a whole one after that): both are caught half a
    /// millisecond before the instants the rule gives.
    #[test]
    fn a_request_answered_gives_the_connection_a_whole_idle_timeout_from_then() {
        let mut sim = rolecore::sim::Sim::from_bytes(&[], SimConfig::default()).expect("a simulated world");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_bulk: 1 << 10,
            max_request: 1 << 12,
            max_line: MAX_LINE,
            output_limit: 1 << 16,
            budget: 1 << 20,
            idle_timeout: Some(IDLE),
        };
        sim.map().insert(Channel::try_from(listener).unwrap(), server(&limits)).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        let accepted = sim.now();
        for _ in 0..1000 {
            if sim.map().len() == 2 {
                break;
            }
            tick(&mut sim);
        }
        assert_eq!(sim.map().len(), 2, "the connection was accepted");
        sim.advance(IDLE * 6 / 10);
        client.write_all(b"PING\r\n").unwrap();
        let mut reply = Vec::new();
        for _ in 0..1000 {
            if reply.len() >= b"+PONG\r\n".len() {
                break;
            }
            tick(&mut sim);
            let (got, closed) = drain(&mut client);
            reply.extend_from_slice(&got);
            assert!(!closed, "closed before the request's reply: {reply:?}");
        }
        assert_eq!(reply, b"+PONG\r\n");
        let answered = sim.now();
        assert_eq!(answered, accepted + IDLE * 6 / 10);
        for period in ["after the reply", "after the reply was taken"] {
            sim.advance(IDLE - HALF_MS);
            tick(&mut sim);
            assert_eq!(
                drain(&mut client),
                (Vec::new(), false),
                "closed before a whole idle timeout {period}"
            );
            assert_eq!(sim.map().len(), 2);
            sim.advance(HALF_MS);
            tick(&mut sim);
        }
        assert_eq!(sim.now(), answered + 2 * IDLE);
        assert_eq!(sim.map().len(), 1, "an idle connection outlived its idle timeouts");
        ends_without_another_byte(&mut client);
    }
}
