//! `sim_http`: the HTTP example server's own handlers
//! (`examples/http/server.rs`: `HttpServer`, `HttpConnection`, behind
//! `examples/http/head.rs`) in `rolecore::sim`, with simulated clients
//! pipelining requests.
//!
//! The input picks the world's size, the server's output budget (down to
//! 100 bytes, so that an answer does not fit beside another connection's)
//! and an idle timeout (none, 250 ms or 60 s: the simulation's clock is
//! virtual and jumps up to two minutes, so both fire, mid-request too, and
//! the checker holds them to their deadlines), then 1 to 8 requests the peers send one
//! after the other, over and over: `GET`s and `HEAD`s with lines ended by
//! CRLF, bare LF or both, extra headers and leading empty lines; `POST`s and
//! unknown methods with bodies of any bytes (line ends and request lines
//! included), half of them with `Expect: 100-continue`; HTTP/1.0 with and without keep-alive, `Connection: close`,
//! chunked bodies and bodies over the server's 1 MiB; bad heads (no Host,
//! no version, a header without a colon, a bad or conflicting
//! Content-Length, a bare CR), HTTP/2.0, and heads over 8 KiB. Every write
//! of a peer may cut them anywhere; the rest of the input drives the
//! simulation.
//!
//! Checked on the report:
//! - the run is `Ok`: every invariant of the simulation held;
//! - every peer received a sequence of well-formed responses, the last one
//!   possibly cut short: a status line, headers, exactly one
//!   `Content-Length`, and a body of that length (none for a `HEAD`);
//! - no response is larger than the output budget;
//! - for every peer that sent at most one out-of-band byte, the responses
//!   answer its requests in order, each with the status the request calls
//!   for (200, 400, 405, 431, 501, 505), after a `100 Continue` exactly
//!   when the request expects one and has a body the server reads,
//!   `Hello, world!` for a `GET`,
//!   `Connection: close` exactly when the server closes after it, and
//!   nothing after that; and none answers a request before the bytes that
//!   decide it were sent. A response may be missing only at the end (a
//!   client that does not read is dropped when the budget runs short).

use std::time::Duration;

use rolecore::sim::{Sim, SimConfig, SimFailure, SimReport, Traffic};

use super::{Input, check_replies, config_name, show, sim_config, summarize_trace};

// The example's files, as the example includes them: `server.rs` names
// `head` and `Connections` through `super` (one copy of each in the fuzz
// crate: `http_head` includes the first).
use super::connections::Connections;
use super::http_head::head;

#[path = "../../examples/http/server.rs"]
mod server;

use server::HttpServer;

/// A request and what the server answers it.
#[derive(Clone, Debug)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub status: u16,
    pub head_only: bool,
    pub closes: bool,
    /// The server cannot answer before this many bytes of the request have
    /// arrived (the end of its head, or of the line that breaks it).
    pub answer_at: usize,
    /// A `100 Continue` comes before the answer (`Expect: 100-continue`
    /// with a body the server reads on a kept connection).
    pub continues: bool,
}

#[derive(Clone, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub budget: usize,
    pub idle_timeout: Option<Duration>,
    pub messages: Vec<Message>,
}

// ---- the requests --------------------------------------------------------------

/// Line ends: CRLF, bare LF, or either at random.
#[derive(Clone, Copy)]
enum Ends {
    Crlf,
    Lf,
    Mixed,
}

/// A head: `lines` each ended as `ends` says, then the blank line.
fn head(inp: &mut Input<'_>, lines: &[&[u8]], ends: Ends) -> Vec<u8> {
    let end = |inp: &mut Input<'_>| -> &'static [u8] {
        match ends {
            Ends::Crlf => b"\r\n",
            Ends::Lf => b"\n",
            Ends::Mixed => {
                if inp.byte() & 1 == 0 {
                    b"\r\n"
                } else {
                    b"\n"
                }
            }
        }
    };
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(end(inp));
    }
    out.extend_from_slice(end(inp));
    out
}

/// A body of `n` bytes of anything but 0xFF, line ends and request lines
/// included.
fn body(inp: &mut Input<'_>, n: usize) -> Vec<u8> {
    let pieces: [&[u8]; 5] = [b"\r\n", b"\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"x", b"\r"];
    let mut out = Vec::new();
    while out.len() < n {
        out.extend_from_slice(inp.pick(&pieces));
    }
    out.truncate(n);
    out
}

const TARGETS: [&[u8]; 4] = [b"/", b"/a/b?c=d", b"*", b"http://x/y"];

fn ok(bytes: Vec<u8>, status: u16, closes: bool) -> Message {
    let answer_at = bytes.len();
    Message { bytes, status, head_only: false, closes, answer_at, continues: false }
}

/// A request the peers send, valid, near-valid or hostile.
fn message(inp: &mut Input<'_>) -> Message {
    let ends = [Ends::Crlf, Ends::Lf, Ends::Mixed][inp.below(3)];
    let target = inp.pick(&TARGETS);
    let request_line = |method: &[u8], version: &[u8]| [method, b" ", target, b" ", version].concat();
    let get11 = request_line(b"GET", b"HTTP/1.1");
    match inp.below(16) {
        0 | 1 => {
            let extra: Vec<Vec<u8>> = (0..inp.below(4))
                .map(|i| {
                    let value: Vec<u8> = (0..inp.below(60)).map(|_| b'a' + inp.below(26) as u8).collect();
                    [format!("X-H{i}: ").as_bytes(), &value].concat()
                })
                .collect();
            let mut lines: Vec<&[u8]> = vec![&get11, b"Host: fuzz"];
            lines.extend(extra.iter().map(Vec::as_slice));
            ok(head(inp, &lines, ends), 200, false)
        }
        2 => {
            let line = request_line(b"HEAD", b"HTTP/1.1");
            Message { head_only: true, ..ok(head(inp, &[&line, b"Host: x"], ends), 200, false) }
        }
        3 | 4 => {
            let method = inp.pick(&[&b"POST"[..], b"PUT", b"BREW"]);
            let status = if method == b"BREW" { 501 } else { 405 };
            let n = inp.pick(&[0, 1, 13, 300, 5000]);
            let line = request_line(method, b"HTTP/1.1");
            let length = format!("Content-Length: {n}");
            // Half of them ask for a 100 Continue first, which a body read
            // on the kept connection gets before the answer.
            let expect = inp.byte() & 1 == 0;
            let mut lines: Vec<&[u8]> = vec![&line, b"Host: x", length.as_bytes()];
            if expect {
                lines.push(inp.pick(&[&b"Expect: 100-continue"[..], b"expect: 100-Continue"]));
            }
            let mut bytes = head(inp, &lines, ends);
            let answer_at = bytes.len();
            bytes.extend(body(inp, n));
            Message { bytes, status, head_only: false, closes: false, answer_at, continues: expect && n > 0 }
        }
        5 => {
            let method = inp.pick(&[&b"OPTIONS"[..], b"DELETE", b"FROB"]);
            let status = if method == b"FROB" { 501 } else { 405 };
            ok(head(inp, &[&request_line(method, b"HTTP/1.1"), b"Host: x"], ends), status, false)
        }
        6 => {
            let keep = inp.byte() & 1 == 0;
            let head_only = inp.byte() & 1 == 0;
            let line = request_line(if head_only { b"HEAD" } else { b"GET" }, b"HTTP/1.0");
            let lines: Vec<&[u8]> = if keep { vec![&line, b"Connection: keep-alive"] } else { vec![&line] };
            Message { head_only, ..ok(head(inp, &lines, ends), 200, !keep) }
        }
        7 => ok(head(inp, &[&get11, b"Host: x", b"Connection: close"], ends), 200, true),
        8 => {
            let mut bytes: Vec<u8> = Vec::new();
            for _ in 0..1 + inp.below(3) {
                bytes.extend_from_slice(inp.pick(&[&b"\r\n"[..], b"\n"]));
            }
            bytes.extend(head(inp, &[&get11, b"Host: x"], ends));
            ok(bytes, 200, false)
        }
        9 | 10 => {
            let lines: Vec<&[u8]> = match inp.below(9) {
                0 => vec![&get11],
                1 => vec![b"GET /", b"Host: x"],
                2 => vec![&get11, b"Host: x", b"bad header"],
                3 => vec![&get11, b"Host: x", b"Content-Length: -1"],
                4 => vec![&get11, b"Host: x", b"Content-Length: 1", b"Content-Length: 2"],
                5 => vec![&get11, b"Host: x", b"Transfer-Encoding: chunked", b"Content-Length: 2"],
                6 => vec![b"G(T / HTTP/1.1", b"Host: x"],
                7 => vec![&get11, b" Host: x"],
                _ => {
                    // A bare CR: refused at the end of its line.
                    let mut bytes = b"GET / HT\rTP/1.1\n".to_vec();
                    let answer_at = bytes.len();
                    bytes.extend(head(inp, &[b"Host: x"], ends));
                    return Message {
                        bytes,
                        status: 400,
                        head_only: false,
                        closes: true,
                        answer_at,
                        continues: false,
                    };
                }
            };
            ok(head(inp, &lines, ends), 400, true)
        }
        11 => ok(head(inp, &[&request_line(b"GET", b"HTTP/2.0"), b"Host: x"], ends), 505, true),
        12 => {
            // A head over 8 KiB, in one line or in many.
            let lines: Vec<Vec<u8>> = if inp.byte() & 1 == 0 {
                vec![[&b"X-Big: "[..], &vec![b'b'; 9000]].concat()]
            } else {
                (0..300).map(|i| format!("X-Many-{i}: {}", "m".repeat(30)).into_bytes()).collect()
            };
            let mut all: Vec<&[u8]> = vec![&get11, b"Host: x"];
            all.extend(lines.iter().map(Vec::as_slice));
            let bytes = head(inp, &all, ends);
            Message {
                bytes,
                status: 431,
                head_only: false,
                closes: true,
                answer_at: head::MAX_HEAD,
                continues: false,
            }
        }
        13 => {
            // A body the server does not skip: answered, then closed.
            let line = request_line(b"POST", b"HTTP/1.1");
            let lines: Vec<&[u8]> = if inp.byte() & 1 == 0 {
                vec![&line, b"Host: x", b"Content-Length: 2000000"]
            } else {
                vec![&line, b"Host: x", b"Transfer-Encoding: chunked"]
            };
            ok(head(inp, &lines, ends), 405, true)
        }
        14 => ok(head(inp, &[&get11, b"Host: x", b"Transfer-Encoding: chunked"], ends), 200, true),
        _ => {
            let line = request_line(b"HEAD", b"HTTP/1.1");
            Message {
                head_only: true,
                ..ok(head(inp, &[&line, b"Host: x", b"Connection: close"], ends), 200, true)
            }
        }
    }
}

pub fn decode(inp: &mut Input<'_>, check_descriptors: bool) -> Setup {
    let config = sim_config(inp, check_descriptors);
    let b = usize::from(inp.byte());
    let budget = [64 << 20, 100, 400, 70_000][b % 4];
    let idle_timeout = [None, Some(Duration::from_millis(250)), Some(Duration::from_secs(60))][(b >> 2) % 3];
    let messages = (0..1 + inp.below(8)).map(|_| message(inp)).collect();
    Setup { config, budget, idle_timeout, messages }
}

/// The requests a peer that sent `sent` may have had answered, in order:
/// its stream is the messages over and over, and the server closes after
/// one that says so.
fn model<'a>(sent: &[u8], messages: &'a [Message]) -> Vec<&'a Message> {
    let mut out = Vec::new();
    let mut start = 0;
    for m in messages.iter().cycle() {
        if sent.len() < start + m.answer_at {
            break;
        }
        out.push(m);
        start += m.bytes.len();
        if m.closes || sent.len() < start {
            break;
        }
    }
    out
}

// ---- the responses -------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
            .collect()
    }
}

/// The response at `at` (without a body if it answers a `HEAD`), and where
/// the next starts; `None` if it is cut short.
fn response(buf: &[u8], at: usize, head_only: Option<bool>) -> Result<Option<(Response, usize)>, String> {
    let rest = &buf[at..];
    const START: &[u8] = b"HTTP/1.1 ";
    if !rest.starts_with(&START[..rest.len().min(START.len())]) {
        return Err(format!("a response starts with {}", show(&rest[..rest.len().min(40)])));
    }
    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let mut lines = rest[..end].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .get(START.len()..START.len() + 3)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u16>().ok())
        .filter(|_| status_line.get(START.len() + 3) == Some(&b' ') && status_line.len() > START.len() + 4)
        .ok_or_else(|| format!("a bad status line: {}", show(status_line)))?;
    let mut headers = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("a header without a colon: {}", show(line)))?;
        if line[colon + 1..].first() != Some(&b' ') || line.contains(&b'\r') {
            return Err(format!("a bad header line: {}", show(line)));
        }
        headers.push((line[..colon].to_vec(), line[colon + 2..].to_vec()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    if (100..200).contains(&status) {
        // An interim response: a head alone.
        if !response.headers.is_empty() {
            return Err(format!("headers in an interim response: {}", show(&rest[..end])));
        }
        return Ok(Some((response, at + end + 4)));
    }
    let lengths = response.header("Content-Length");
    let [length] = lengths[..] else {
        return Err(format!("{} Content-Length headers in {}", lengths.len(), show(&rest[..end])));
    };
    let length: usize = std::str::from_utf8(length)
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("a bad Content-Length: {}", show(length)))?;
    let body_start = at + end + 4;
    let body_len = match head_only {
        Some(true) => 0,
        Some(false) => length,
        // Not compared with a request: a body follows unless the next
        // response does.
        None if buf[body_start..].starts_with(START) || buf.len() == body_start => 0,
        None => length,
    };
    if buf.len() < body_start + body_len {
        return Ok(None);
    }
    response.body = buf[body_start..body_start + body_len].to_vec();
    Ok(Some((response, body_start + body_len)))
}

// ---- the run -------------------------------------------------------------------

pub fn simulate(data: &[u8], check_descriptors: bool) -> (Setup, Result<SimReport, SimFailure>) {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let traffic = Traffic::messages(s.messages.iter().map(|m| &m.bytes)).expect("requests without 0xFF");
    let mut sim = Sim::from_bytes(inp.rest(), s.config).expect("create the simulation").with_traffic(traffic);
    sim.listen(HttpServer { idle_timeout: s.idle_timeout, connections: Connections::new(s.budget) })
        .expect("listen");
    (s, sim.run())
}

fn setup_text(s: &Setup) -> String {
    let requests: Vec<String> = s
        .messages
        .iter()
        .map(|m| {
            let text = if m.bytes.len() > 80 {
                format!("{}… ({} bytes)", show(&m.bytes[..80]), m.bytes.len())
            } else {
                show(&m.bytes)
            };
            format!("{} -> {}{}", text, m.status, if m.closes { " and close" } else { "" })
        })
        .collect();
    format!("{:?}, budget {}, idle timeout {:?}, requests {requests:?}", s.config, s.budget, s.idle_timeout)
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, result) = simulate(data, check_descriptors);
    let setup = || setup_text(&s);
    check_replies("HTTP", 600, result, setup, |peer| {
        let received = peer.received();
        let expected = peer.modelled().then(|| model(&peer.report.sent, &s.messages));
        let mut at = 0;
        let mut n = 0;
        loop {
            let request = match &expected {
                Some(e) => match e.get(n) {
                    Some(m) => Some(*m),
                    None if at < received.len() => peer.fail(format!(
                        "response {n} at byte {at} answers nothing: {} requests could be answered",
                        e.len()
                    )),
                    None => break,
                },
                None => None,
            };
            if request.is_some_and(|m| m.continues) {
                let (interim, next) = match response(received, at, Some(true)) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(why) => {
                        peer.fail(format!("the 100 Continue before response {n} is malformed: {why}"))
                    }
                };
                if interim.status != 100 {
                    peer.fail(format!("response {n} is {} where a 100 Continue comes first", interim.status));
                }
                at = next;
            }
            let (got, next) = match response(received, at, request.map(|m| m.head_only)) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(why) => peer.fail(format!("response {n} at byte {at} is malformed: {why}")),
            };
            if request.is_some() && (100..200).contains(&got.status) {
                peer.fail(format!("an interim {} where response {n} belongs", got.status));
            }
            if next - at > s.budget {
                peer.fail(format!("response {n} takes {} bytes, past the budget of {}", next - at, s.budget));
            }
            if let Some(m) = request {
                let close = got.header("Connection").iter().any(|v| v.eq_ignore_ascii_case(b"close"));
                if got.status != m.status || close != m.closes {
                    peer.fail(format!(
                        "response {n} is {} (Connection: close {close}), the request {} calls for {} (close {})",
                        got.status,
                        show(&m.bytes[..m.bytes.len().min(200)]),
                        m.status,
                        m.closes
                    ));
                }
                if m.status == 200 && !m.head_only && got.body != b"Hello, world!" {
                    peer.fail(format!("response {n} says {}", show(&got.body)));
                }
                if m.closes && next < received.len() {
                    peer.fail(format!("bytes after response {n}, after which the server closes"));
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
            let responses: usize = report
                .peers
                .iter()
                .map(|p| p.received.windows(9).filter(|w| w == b"HTTP/1.1 ").count())
                .sum();
            format!("{}-responses{responses}", summarize_trace(&report.trace))
        }
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    let statuses: String =
        s.messages.iter().map(|m| format!("-{}{}", m.status, if m.closes { "c" } else { "" })).collect();
    let mut name = format!("{}{statuses}", config_name(&s.config));
    if s.budget < 64 << 20 {
        name.push_str(&format!("-budget{}", s.budget));
    }
    if let Some(t) = s.idle_timeout {
        name.push_str(&format!("-idle{}ms", t.as_millis()));
    }
    format!("{name}-{trace}")
}

#[cfg(test)]
mod model_tests {
    use super::*;

    #[test]
    fn responses_parse_and_a_cut_one_is_incomplete() {
        let hello = b"HTTP/1.1 200 OK\r\nServer: rolecore\r\nContent-Length: 13\r\n\r\nHello, world!";
        let (r, next) = response(hello, 0, Some(false)).unwrap().unwrap();
        assert_eq!((r.status, &r.body[..], next), (200, &b"Hello, world!"[..], hello.len()));
        let (r, next) = response(hello, 0, Some(true)).unwrap().unwrap();
        assert_eq!((r.body.len(), next), (0, hello.len() - 13));
        for cut in 0..hello.len() {
            assert!(response(&hello[..cut], 0, Some(false)).unwrap().is_none());
        }
        assert!(response(b"HTTP/1.0 200 OK\r\n", 0, None).is_err());
    }
}

/// The HTTP server's deadlines, on the simulation's virtual clock: a map
/// made by a `Sim` with no peers, fed by a kernel socket, so each instant
/// is exact and no test reads a wall clock. A request head must arrive
/// whole within the idle timeout of the accept, and the next one within
/// the idle timeout of the answer; each test looks half a millisecond
/// before the instant and at it.
#[cfg(test)]
mod deadline_tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use rolecore::Channel;

    use super::super::virtual_time::{drain, ends_without_another_byte, tick, tick_until};
    use super::*;

    const IDLE: Duration = Duration::from_secs(1);
    const HALF_MS: Duration = Duration::from_micros(500);

    /// The server in a simulation's map, a client connected and accepted;
    /// the instant of the accept.
    fn connected() -> (Sim, TcpStream, Instant) {
        let mut sim = Sim::from_bytes(&[], SimConfig::default()).expect("a simulated world");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer { idle_timeout: Some(IDLE), connections: Connections::new(64 << 20) };
        sim.map().insert(Channel::try_from(listener).unwrap(), server).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        let accepted = sim.now();
        assert!(tick_until(&mut sim, |sim| sim.map().len() == 2), "the connection was accepted");
        (sim, client, accepted)
    }

    /// The connection is open half a millisecond before `at` and closed, with
    /// no byte more, at `at`.
    fn closes_at(sim: &mut Sim, client: &mut TcpStream, at: Instant, what: &str) {
        sim.advance(at - HALF_MS - sim.now());
        tick(sim);
        assert_eq!(drain(client), (Vec::new(), false), "closed before {what}");
        assert_eq!(sim.map().len(), 2, "closed before {what}");
        sim.advance(HALF_MS);
        tick(sim);
        assert_eq!(sim.now(), at);
        assert_eq!(sim.map().len(), 1, "open after {what}");
        ends_without_another_byte(client);
    }

    #[test]
    fn a_client_that_sends_nothing_is_closed_an_idle_timeout_after_the_accept() {
        let (mut sim, mut client, accepted) = connected();
        closes_at(&mut sim, &mut client, accepted + IDLE, "an idle timeout after the accept");
    }

    #[test]
    fn the_next_head_has_a_whole_idle_timeout_from_the_answer() {
        let (mut sim, mut client, accepted) = connected();
        sim.advance(IDLE * 6 / 10);
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reply = Vec::new();
        let answered = tick_until(&mut sim, |_| {
            let (got, closed) = drain(&mut client);
            reply.extend_from_slice(&got);
            assert!(!closed, "closed before the answer: {}", show(&reply));
            reply.ends_with(b"Hello, world!")
        });
        assert!(answered, "no whole answer: {}", show(&reply));
        assert!(reply.starts_with(b"HTTP/1.1 200 "), "{}", show(&reply));
        let answered = sim.now();
        assert_eq!(answered, accepted + IDLE * 6 / 10);
        closes_at(&mut sim, &mut client, answered + IDLE, "an idle timeout after the answer");
    }
}
