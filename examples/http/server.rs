//! The HTTP server's handlers (`examples/http_server.rs`): the accept
//! handler [`HttpServer`], each connection's [`HttpConnection`], and the
//! answers they write, in a file of their own so that
//! `fuzz/bodies/sim_http.rs` runs these very handlers in `rolecore::sim`.
//!
//! The module names two siblings through `super`: `head`
//! (`examples/http/head.rs`) and `Connections` (from
//! `examples/serve/connections.rs`); the example and the fuzz body each
//! provide them.

use std::io;
use std::time::Duration;

use rolecore::chat::RecordTooLong;
use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Terminator};

use super::Connections;
use super::head::{HeadReader, LINE_END, Line, MAX_HEAD, Refusal, Version, parse_head};

pub const TOO_LARGE: &str = "431 Request Header Fields Too Large";

fn too_large_reason() -> String {
    format!("the request head exceeds {MAX_HEAD} bytes")
}

/// The longest request body read (and dropped) on a kept connection.
pub const MAX_BODY: usize = 1 << 20;
/// Stop reading while this much output waits for a slow client.
pub const READ_PAUSE: usize = 1 << 20;
/// Room the shared output budget keeps for one answer; below it, the
/// slowest reader is dropped before answering.
pub const ANSWER_ROOM: usize = 64 * 1024;

/// The interim answer to `Expect: 100-continue`: send the body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `200` answer to a `GET` or `HEAD`: the one every benchmark asks for,
/// so it is written once, not formatted per request.
pub fn hello(keep_alive: bool, version: Version, head_only: bool) -> &'static [u8] {
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
pub fn response(
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
pub enum Phase {
    /// Reading a request head, line by line (terminator LF).
    Head,
    /// Dropping a request body (a count terminator); then back to `Head`,
    /// or closing if the answer said so.
    Body,
}

pub struct HttpConnection {
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
            let at = cx.now().checked_add(timeout);
            cx.set_deadline(token, at);
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
        if request.expect_continue && keep_alive && request.content_length > 0 {
            // The body will be read (and dropped) on this connection: say
            // so before the answer. A client that got the answer alone
            // might skip the body it was asked for no more (RFC 9110
            // 10.1.1), and its next request would be read as that body.
            chat.push(CONTINUE)?;
        }
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
    // Over TLS, a handshake that failed (garbage, a timeout, a peer that
    // left): the connection joined the set when it was accepted, and no
    // `handle_close` follows to have it leave. Silent, as a client that
    // drops is: one line per failed handshake would let anyone fill the log.
    fn handle_connect_failed(&mut self, _error: io::Error, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }

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
        self.connections.close(cx);
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, cx: &mut Ctx<'_>) {
        self.connections.leave(cx.token());
    }
}

pub struct HttpServer {
    /// `--idle-timeout`: also how long a request head, or body, may take.
    pub idle_timeout: Option<Duration>,
    /// This loop's connections and the budget their answers share
    /// (`--output-budget`).
    pub connections: Connections<HttpConnection>,
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
        let token = self.connections.insert(cx, chat, connection)?;
        if let Some(timeout) = self.idle_timeout {
            let at = cx.now().checked_add(timeout);
            cx.set_deadline(token, at);
        }
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<rolecore::Listening>, error: io::Error, _cx: &mut Ctx<'_>) {
        // Out of descriptors, for instance: keep listening.
        eprintln!("http_server: accept failed: {error}");
    }
}
