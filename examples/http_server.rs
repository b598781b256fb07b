//! A minimal HTTP/1.1 and HTTP/1.0 server on [`AsyncChat`]: keep-alive,
//! pipelining, and `Hello, world!` for every `GET` or `HEAD`.
//!
//! ```text
//! cargo run --release --example http_server -- [ADDR] [--backend select|poll|epoll] [--threads N]
//!     [--idle-timeout SECS] [--output-budget BYTES]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8080 (port 0 picks a free port); the first line
//! on stdout is `listening on HOST:PORT`. `--idle-timeout` (default 60, 0 for
//! none) closes connections that stay silent that long, and connections that
//! take longer than that to send a request head: a client trickling one byte
//! a second (a slow loris) is not silent, but its head is late; the same
//! holds for a request body.
//! `--output-budget` (default 64 MiB) bounds the answers queued by all of one
//! loop's connections together; when it runs short, the connection with the
//! most output queued (the slowest reader) is dropped first.
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
//! A request head is read line by line (records split at LF, a CR before
//! it ignored, as RFC 9112 2.2 allows) and ends at its first blank line,
//! however its lines ended: `GET / HTTP/1.1\nHost: x\n\n` is answered like
//! its CRLF twin. Every request a read brings is answered by one `push`, and
//! the chat sends all of a pipelined batch's answers with one send. The head
//! reading and parsing is `examples/http/head.rs` (fuzzed:
//! `fuzz/bodies/http_head.rs`).

mod serve;
use serve::{Connections, Flag, Server};

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rolecore::chat::RecordTooLong;
use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Terminator};

#[path = "http/head.rs"]
mod head;
use head::{HeadReader, LINE_END, Line, MAX_HEAD, Refusal, Version, parse_head};

const TOO_LARGE: &str = "431 Request Header Fields Too Large";

fn too_large_reason() -> String {
    format!("the request head exceeds {MAX_HEAD} bytes")
}

/// The longest request body read (and dropped) on a kept connection.
const MAX_BODY: usize = 1 << 20;
/// Stop reading while this much output waits for a slow client.
const READ_PAUSE: usize = 1 << 20;
/// Room the shared output budget keeps for one answer; below it, the
/// slowest reader is dropped before answering.
const ANSWER_ROOM: usize = 64 * 1024;

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
    /// Reading a request head, line by line (terminator LF).
    Head,
    /// Dropping a request body (a count terminator); then back to `Head`,
    /// or closing if the answer said so.
    Body,
}

struct HttpConnection {
    phase: Phase,
    /// This loop's connections and the budget their answers share.
    connections: Connections<HttpConnection>,
    idle_timeout: Option<Duration>,
    /// The head being read; its buffer is reused from request to request.
    head: HeadReader,
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

    /// A body (at most `MAX_BODY`) must arrive whole within the idle
    /// timeout too: a client trickling a byte a second keeps the connection
    /// busy, not silent, and would otherwise hold it as long as it likes.
    fn expect_body(&self, cx: &mut Ctx<'_>) {
        self.expect_head(cx);
    }

    fn close_after_send(chat: &mut AsyncChat) {
        chat.close_when_done();
        // Whatever else is already buffered is dropped, not parsed.
        chat.set_terminator(Terminator::None);
    }

    fn answer(phase: &mut Phase, head: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
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
                return Self::after_answer(phase, keep_alive, request.content_length, chat);
            }
            b"POST" | b"PUT" | b"DELETE" | b"PATCH" | b"OPTIONS" | b"TRACE" | b"CONNECT" => {
                ("405 Method Not Allowed", "Allow: GET, HEAD\r\n", &b"method not allowed\n"[..], false)
            }
            _ => ("501 Not Implemented", "", &b"not implemented\n"[..], false),
        };
        let _ = request.target; // every path says hello
        chat.push(&response(status, keep_alive, request.version, extra, body, head_only))?;
        Self::after_answer(phase, keep_alive, request.content_length, chat)
    }

    /// Closes after the answer, or skips the request's body, or waits for
    /// the next head.
    fn after_answer(
        phase: &mut Phase,
        keep_alive: bool,
        content_length: usize,
        chat: &mut AsyncChat,
    ) -> io::Result<()> {
        if !keep_alive {
            Self::close_after_send(chat);
        } else if content_length > 0 {
            *phase = Phase::Body;
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
            self.head.collect(data);
        }
        Ok(()) // a request body, or input after the last answer: dropped
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            return Ok(());
        }
        match self.phase {
            Phase::Head => {
                let head = match self.head.end_line() {
                    Line::More => {
                        // Another line of the head: it may take what is left.
                        chat.set_max_record(self.head.room());
                        return Ok(());
                    }
                    Line::TooLong => return Self::refuse(chat, TOO_LARGE, &too_large_reason()),
                    Line::BareCr => return Self::refuse(chat, "400 Bad Request", "a bare CR in the head"),
                    Line::Head(head) => head,
                };
                // Room for this answer, taken from the slowest reader of
                // the loop when the shared budget runs short.
                if self.connections.available() < ANSWER_ROOM {
                    self.connections.drop_slowest(cx.token(), cx, "http_server");
                }
                let answered = Self::answer(&mut self.phase, head, chat);
                self.head.clear();
                chat.set_max_record(self.head.room());
                answered?;
            }
            Phase::Body => {
                self.phase = Phase::Head;
                chat.set_terminator(LINE_END);
            }
        }
        match self.phase {
            Phase::Head => self.expect_head(cx),
            Phase::Body => self.expect_body(cx),
        }
        Ok(())
    }

    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        if RecordTooLong::from_io(&error).is_some()
            && !chat.is_closing()
            && Self::refuse(chat, TOO_LARGE, &too_large_reason()).is_ok()
        {
            return; // sent, then closed, by the chat
        }
        eprintln!("http_server: closing a connection: {error}");
        self.connections.leave(cx.token());
        cx.close();
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }
}

struct HttpServer {
    idle_timeout: Option<Duration>,
    connections: Connections<HttpConnection>,
}

impl AcceptHandler for HttpServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, LINE_END);
        self.connections.charge(&mut chat);
        let connection = HttpConnection {
            phase: Phase::Head,
            connections: self.connections.clone(),
            idle_timeout: self.idle_timeout,
            head: HeadReader::new(),
        };
        chat.set_max_record(connection.head.room());
        let token = cx.insert(chat, connection)?;
        self.connections.join(token);
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
        flags: &[
            Flag { name: "--idle-timeout", value: "SECS" },
            Flag { name: "--output-budget", value: "BYTES" },
        ],
    };
    serve::main(server, |cli| {
        let idle_timeout = cli.seconds("--idle-timeout", 60.0)?;
        // What all of one loop's connections may queue together.
        let budget = cli.count("--output-budget", 64 << 20, 64 << 10, 1 << 40)? as usize;
        Ok(move || HttpServer { idle_timeout, connections: Connections::new(budget) })
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
}
