//! A minimal HTTP/1.1 and HTTP/1.0 server on [`AsyncChat`]: keep-alive,
//! pipelining, and `Hello, world!` for every `GET` or `HEAD`.
//!
//! ```text
//! cargo run --release --example http_server -- [ADDR] [--backend select|poll|epoll] [--threads N] [--idle-timeout SECS]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--idle-timeout` (default 60, 0 for
//! none) closes connections that stay silent that long, and connections that
//! take longer than that to send a request head: a client trickling one byte
//! a second (a slow loris) is not silent, but its head is late.
//!
//! What it answers:
//!
//! - `GET` or `HEAD` of any path: `200 OK`, `Content-Length: 13`, and the
//!   body `Hello, world!` (no body for `HEAD`).
//! - HTTP/1.1 keeps the connection unless the request says
//!   `Connection: close`; HTTP/1.0 closes it unless the request says
//!   `Connection: keep-alive`.
//! - Other standard methods: `405 Method Not Allowed`, unknown ones:
//!   `501 Not Implemented`, both with the same keep-alive rules (a request
//!   body announced with `Content-Length` is read and dropped).
//! - A malformed request: `400 Bad Request`; a head longer than 8 KiB:
//!   `431 Request Header Fields Too Large`; an HTTP version other than 1.0 or
//!   1.1: `505`. Each then closes the connection.
//!
//! Requests are records split at `\r\n\r\n`: every request a read brings is
//! answered by one `push`, and the chat sends all of a pipelined batch's
//! answers with one send.

mod serve;
use serve::{Flag, Server};

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rolecore::chat::RecordTooLong;
use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Terminator};

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8192;
/// The end of a request head. Borrowed, so switching back to it after a
/// body allocates nothing.
const HEAD_END: Terminator = Terminator::from_static(b"\r\n\r\n");
/// The longest request body read (and dropped) on a kept connection.
const MAX_BODY: usize = 1 << 20;
/// Stop reading while this much output waits for a slow client.
const READ_PAUSE: usize = 1 << 20;

/// An HTTP version this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Http10,
    Http11,
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: Version,
    /// `Connection: close` / `keep-alive` as the client asked, if it did.
    connection_close: Option<bool>,
    content_length: usize,
    chunked: bool,
    has_host: bool,
}

/// Why a request head was refused: the status to answer with.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadRequest(&'static str),
    VersionNotSupported,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses `METHOD SP TARGET SP HTTP/x.y`.
fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], Version), Refusal> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest("a request line is METHOD SP TARGET SP VERSION"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(Refusal::BadRequest("bad method"));
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(Refusal::BadRequest("bad request target"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Refusal::VersionNotSupported);
        }
        _ => return Err(Refusal::BadRequest("bad HTTP version")),
    };
    Ok((method, target, version))
}

/// Parses a request head: the bytes before `\r\n\r\n`.
fn parse_head(head: &[u8]) -> Result<Request<'_>, Refusal> {
    // RFC 9112 2.2: empty lines before the request line are ignored.
    let mut head = head;
    while let Some(rest) = head.strip_prefix(b"\r\n") {
        head = rest;
    }
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (method, target, version) = parse_request_line(lines.next().unwrap_or_default())?;
    let mut request = Request {
        method,
        target,
        version,
        connection_close: None,
        content_length: 0,
        chunked: false,
        has_host: false,
    };
    let mut seen_length = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Refusal::BadRequest("a header line without a colon"));
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(Refusal::BadRequest("bad header name"));
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                if option.eq_ignore_ascii_case(b"close") {
                    request.connection_close = Some(true);
                } else if option.eq_ignore_ascii_case(b"keep-alive") && request.connection_close.is_none() {
                    request.connection_close = Some(false);
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(Refusal::BadRequest("bad Content-Length"))?;
            if seen_length && length != request.content_length {
                return Err(Refusal::BadRequest("conflicting Content-Length headers"));
            }
            seen_length = true;
            request.content_length = length;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            request.chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            request.has_host = true;
        }
    }
    if request.version == Version::Http11 && !request.has_host {
        return Err(Refusal::BadRequest("an HTTP/1.1 request needs a Host header"));
    }
    if request.chunked && seen_length {
        return Err(Refusal::BadRequest("both Transfer-Encoding and Content-Length"));
    }
    Ok(request)
}

/// The `200` answer to a `GET` or `HEAD`: the one every benchmark asks for,
/// so it is written once, not formatted per request.
fn hello(keep_alive: bool, version: Version, head_only: bool) -> &'static [u8] {
    macro_rules! hello {
        ($connection:literal, $body:literal) => {
            concat!(
                "HTTP/1.1 200 OK\r\nServer: rolecore\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n",
                $connection,
                "\r\n",
                $body
            )
            .as_bytes()
        };
    }
    match (keep_alive, version, head_only) {
        (true, Version::Http11, false) => hello!("", "Hello, world!"),
        (true, Version::Http11, true) => hello!("", ""),
        (true, Version::Http10, false) => hello!("Connection: keep-alive\r\n", "Hello, world!"),
        (true, Version::Http10, true) => hello!("Connection: keep-alive\r\n", ""),
        (false, _, false) => hello!("Connection: close\r\n", "Hello, world!"),
        (false, _, true) => hello!("Connection: close\r\n", ""),
    }
}

/// One response, headers and body, in one buffer.
fn response(
    status: &str,
    keep_alive: bool,
    version: Version,
    extra: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let connection = match (keep_alive, version) {
        (true, Version::Http10) => "Connection: keep-alive\r\n",
        (true, Version::Http11) => "",
        (false, _) => "Connection: close\r\n",
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: rolecore\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}{connection}\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Where a connection is in its request stream.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head (terminator `\r\n\r\n`).
    Head,
    /// Dropping a request body (a count terminator); then back to `Head`,
    /// or closing if the answer said so.
    Body,
}

struct HttpConnection {
    phase: Phase,
    idle_timeout: Option<Duration>,
}

impl HttpConnection {
    /// Answers with an error status and closes once it is sent.
    fn refuse(chat: &mut AsyncChat, status: &str, reason: &str) -> io::Result<()> {
        let body = format!("{reason}\n");
        chat.push(&response(status, false, Version::Http11, "", body.as_bytes(), false))?;
        Self::close_after_send(chat);
        Ok(())
    }

    /// A request head must arrive whole within the idle timeout of the
    /// previous answer (or of the accept), however its bytes trickle in.
    fn expect_head(&self, cx: &mut Ctx<'_>) {
        if let Some(timeout) = self.idle_timeout {
            let token = cx.token();
            cx.set_deadline(token, Instant::now().checked_add(timeout));
        }
    }

    /// A body is bounded in size, not in time: it may take as long as it
    /// keeps moving.
    fn expect_body(&self, cx: &mut Ctx<'_>) {
        if self.idle_timeout.is_some() {
            let token = cx.token();
            cx.set_idle_timeout(token, self.idle_timeout);
        }
    }

    fn close_after_send(chat: &mut AsyncChat) {
        chat.close_when_done();
        // Whatever else is already buffered is dropped, not parsed.
        chat.set_terminator(Terminator::None);
    }

    fn answer(&mut self, head: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        let request = match parse_head(head) {
            Ok(request) => request,
            Err(Refusal::BadRequest(why)) => return Self::refuse(chat, "400 Bad Request", why),
            Err(Refusal::VersionNotSupported) => {
                return Self::refuse(chat, "505 HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1");
            }
        };
        let keep_alive = match (request.version, request.connection_close) {
            (_, Some(close)) => !close,
            (Version::Http11, None) => true,
            (Version::Http10, None) => false,
        };
        // A body of unknown length cannot be skipped: answer, then close.
        let keep_alive = keep_alive && !request.chunked && request.content_length <= MAX_BODY;
        let (status, extra, body, head_only) = match request.method {
            b"GET" | b"HEAD" => {
                let head_only = request.method == b"HEAD";
                chat.push(hello(keep_alive, request.version, head_only))?;
                return self.after_answer(keep_alive, request.content_length, chat);
            }
            b"POST" | b"PUT" | b"DELETE" | b"PATCH" | b"OPTIONS" | b"TRACE" | b"CONNECT" => {
                ("405 Method Not Allowed", "Allow: GET, HEAD\r\n", &b"method not allowed\n"[..], false)
            }
            _ => ("501 Not Implemented", "", &b"not implemented\n"[..], false),
        };
        let _ = request.target; // every path says hello
        chat.push(&response(status, keep_alive, request.version, extra, body, head_only))?;
        self.after_answer(keep_alive, request.content_length, chat)
    }

    /// Closes after the answer, or skips the request's body, or waits for
    /// the next head.
    fn after_answer(
        &mut self,
        keep_alive: bool,
        content_length: usize,
        chat: &mut AsyncChat,
    ) -> io::Result<()> {
        if !keep_alive {
            Self::close_after_send(chat);
        } else if content_length > 0 {
            self.phase = Phase::Body;
            chat.set_terminator(Terminator::count(content_length));
        }
        Ok(())
    }
}

impl ChatHandler for HttpConnection {
    // Back-pressure: a client that pipelines without reading is not read.
    fn readable(&self, chat: &AsyncChat) -> bool {
        chat.queued() < READ_PAUSE
    }

    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        if self.phase == Phase::Head && !chat.is_closing() {
            chat.collect(data);
        }
        Ok(()) // a request body, or input after the last answer: dropped
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            return Ok(());
        }
        match self.phase {
            Phase::Head => {
                let head = chat.take_incoming();
                self.answer(&head, chat)?;
            }
            Phase::Body => {
                self.phase = Phase::Head;
                chat.set_terminator(HEAD_END);
            }
        }
        match self.phase {
            Phase::Head => self.expect_head(cx),
            Phase::Body => self.expect_body(cx),
        }
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        if RecordTooLong::from_io(&error).is_some() && !chat.is_closing() {
            let reason = format!("the request head exceeds {MAX_HEAD} bytes");
            if Self::refuse(chat, "431 Request Header Fields Too Large", &reason).is_ok() {
                return; // sent, then closed, by the chat
            }
        }
        eprintln!("http_server: closing a connection: {error}");
        cx.close();
    }
}

struct HttpServer {
    idle_timeout: Option<Duration>,
}

impl AcceptHandler for HttpServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, HEAD_END);
        chat.set_max_record(MAX_HEAD);
        let connection = HttpConnection { phase: Phase::Head, idle_timeout: self.idle_timeout };
        let token = cx.insert(chat, connection)?;
        if let Some(timeout) = self.idle_timeout {
            cx.set_deadline(token, Instant::now().checked_add(timeout));
        }
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<rolecore::Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        // Out of descriptors, for instance: keep listening.
        eprintln!("http_server: accept failed: {error}");
    }
}

fn main() -> ExitCode {
    let server = Server {
        name: "http_server",
        default_addr: "127.0.0.1:8080",
        threads: true,
        flags: &[Flag { name: "--idle-timeout", value: "SECS" }],
    };
    serve::main(server, |cli| {
        let idle_timeout = cli.seconds("--idle-timeout", 60.0)?;
        Ok(move || HttpServer { idle_timeout })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_out_hello_is_what_response_formats() {
        for keep_alive in [true, false] {
            for version in [Version::Http10, Version::Http11] {
                for head_only in [true, false] {
                    let formatted = response("200 OK", keep_alive, version, "", b"Hello, world!", head_only);
                    assert_eq!(
                        hello(keep_alive, version, head_only),
                        &formatted[..],
                        "{keep_alive} {version:?} {head_only}"
                    );
                }
            }
        }
    }

    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line(b"GET / HTTP/1.1"), Ok((&b"GET"[..], &b"/"[..], Version::Http11)));
        assert_eq!(
            parse_request_line(b"HEAD /x?y HTTP/1.0"),
            Ok((&b"HEAD"[..], &b"/x?y"[..], Version::Http10))
        );
        assert!(matches!(parse_request_line(b"GET / HTTP/2.0"), Err(Refusal::VersionNotSupported)));
        for bad in [
            &b""[..],
            b"GET",
            b"GET /",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/1.1 x",
            b"G(T / HTTP/1.1",
            b"GET / FTP/1.0",
        ] {
            assert!(matches!(parse_request_line(bad), Err(Refusal::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn heads() {
        let r = parse_head(
            b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, close\r\nContent-Length: 3",
        )
        .unwrap();
        assert_eq!((r.connection_close, r.content_length), (Some(true), 3));
        assert!(parse_head(b"GET / HTTP/1.1").is_err(), "no Host");
        assert!(parse_head(b"GET / HTTP/1.0\r\nbad header").is_err());
        assert!(parse_head(b"GET / HTTP/1.0\r\nContent-Length: -1").is_err());
    }
}
