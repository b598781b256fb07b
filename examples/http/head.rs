//! HTTP/1.x request heads for `examples/http_server.rs`: how a head is read
//! line by line ([`HeadReader`]) and parsed ([`parse_head`]), in a file of
//! its own so `fuzz/bodies/http_head.rs` can fuzz both without a socket.
//!
//! Lines end at LF, with or without a CR before it (RFC 9112 2.2: a
//! recipient may recognise a bare LF as a line terminator and ignore the
//! CR): the chat splits records at [`LINE_END`], and a head ends at its
//! first blank line, however each line ended. A head split at `\r\n\r\n`
//! only would leave `GET / HTTP/1.1\nHost: x\n\n` unanswered.

use rolecore::Terminator;

/// The longest request head accepted: its request line and headers, with
/// their line ends, without the blank line that ends it (and empty lines
/// before the request line count too).
pub const MAX_HEAD: usize = 8192;
/// Where the lines of a head end. Borrowed, so switching back to it after a
/// body allocates nothing.
pub const LINE_END: Terminator = Terminator::LF;

/// What the end of a line of a head means.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The head goes on.
    More,
    /// The head passed [`MAX_HEAD`]: `431`.
    TooLong,
    /// A blank line ended this head.
    Head(&'a [u8]),
    /// A CR stands inside a line, not just before its LF (RFC 9112 2.2: a
    /// bare CR is invalid): `400`. A line of CRs alone would otherwise never
    /// read as the blank line that ends the head.
    BareCr,
}

/// A request head being read, line by line: the chat hands it each line's
/// bytes ([`collect`](Self::collect)) and each line's end
/// ([`end_line`](Self::end_line)), and sets its record bound to
/// [`room`](Self::room) for the next line.
#[derive(Clone, Debug, Default)]
pub struct HeadReader {
    /// The head so far: its lines, each but the last followed by `\n`.
    buf: Vec<u8>,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// Bytes of the empty lines skipped before the request line.
    skipped: usize,
}

impl HeadReader {
    pub fn new() -> HeadReader {
        HeadReader::default()
    }

    /// Bytes of the current line.
    pub fn collect(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The most bytes the next line may have (its LF not counted): what is
    /// left of [`MAX_HEAD`] (its CRLF counted as the previous line's LF
    /// already is), and one byte more for the CR of the blank line that may
    /// end the head. Bounds the memory a head takes; `end_line` checks the
    /// exact bound.
    pub fn room(&self) -> usize {
        (MAX_HEAD + 3).saturating_sub(self.used())
    }

    /// The bytes the head took so far: a head whose lines end with `\r\n`
    /// counts one more than the bytes before its `\r\n\r\n` (the CR of its
    /// last line).
    fn used(&self) -> usize {
        self.buf.len() + self.skipped
    }

    /// The current line ended (at its LF). Gives the head when this line was
    /// the blank one that ends it: every line, each but the last followed by
    /// `\n`, a line's CR kept. Call [`clear`](Self::clear) before the next
    /// head.
    pub fn end_line(&mut self) -> Line<'_> {
        let line = &self.buf[self.line_start..];
        if line.len() > 1 && line[..line.len() - 1].contains(&b'\r') {
            return Line::BareCr;
        }
        if !line.is_empty() && line != b"\r" {
            if self.used() > MAX_HEAD + 1 {
                return Line::TooLong;
            }
            self.buf.push(b'\n');
            self.line_start = self.buf.len();
            return Line::More;
        }
        if self.line_start == 0 {
            // RFC 9112 2.2: empty lines before the request line are ignored.
            self.skipped += line.len() + 1;
            self.buf.clear();
            if self.skipped > MAX_HEAD + 1 {
                return Line::TooLong;
            }
            return Line::More;
        }
        Line::Head(&self.buf[..self.line_start - 1])
    }

    /// Forgets the head, for the next one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.line_start = 0;
        self.skipped = 0;
    }
}

/// An HTTP version this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: Version,
    /// `Connection: close` / `keep-alive` as the client asked, if it did.
    pub connection_close: Option<bool>,
    pub content_length: usize,
    pub chunked: bool,
    pub has_host: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 10.1.1: an
    /// HTTP/1.0 request's is ignored): the client may wait for a
    /// `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// Why a request head was refused: the status to answer with.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
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
pub fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], Version), Refusal> {
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

/// Parses a request head: its lines, each ending with `\n` or `\r\n`
/// (RFC 9112 2.2 allows a bare LF), without the blank line that ends it.
pub fn parse_head(head: &[u8]) -> Result<Request<'_>, Refusal> {
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
        expect_continue: false,
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
        // RFC 9110 5.5: a field value holds visible characters, spaces and
        // tabs; a NUL (or another control) in it is refused, not read past.
        if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(Refusal::BadRequest("a control character in a header value"));
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
        } else if name.eq_ignore_ascii_case(b"expect") {
            request.expect_continue |=
                version == Version::Http11 && value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"host") {
            // RFC 9112 3.2: two Host lines, or one that cannot be a host
            // and port, are a 400; a proxy or cache in front could read a
            // different one than a server behind it.
            if request.has_host {
                return Err(Refusal::BadRequest("more than one Host header"));
            }
            if value.iter().any(|&b| matches!(b, b' ' | b'\t' | b'/' | b'\\' | b'?' | b'#' | b'@' | b',')) {
                return Err(Refusal::BadRequest("a Host header that is not a host and port"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` line by line as the chat would (split at LF), and
    /// returns the heads found.
    fn split_heads(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = HeadReader::new();
        let mut found = Vec::new();
        let mut lines = input.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            reader.collect(line);
            if lines.peek().is_none() {
                break; // the last piece has no LF yet
            }
            match reader.end_line() {
                Line::Head(head) => {
                    found.push(head.to_vec());
                    reader.clear();
                }
                Line::More => {}
                Line::TooLong => panic!("too long"),
                Line::BareCr => panic!("a bare CR"),
            }
        }
        found
    }

    #[test]
    fn a_bare_cr_inside_a_line_is_refused_not_waited_on() {
        for input in [&b"GET / HTTP/1.1\r\r\n"[..], b"GET / HT\rTP/1.1\n", b"\r\r\n"] {
            let mut reader = HeadReader::new();
            reader.collect(&input[..input.len() - 1]);
            assert_eq!(reader.end_line(), Line::BareCr, "{}", input.escape_ascii());
        }
    }

    #[test]
    fn a_control_character_in_a_header_value_is_refused() {
        for value in [&b"a\0b"[..], b"\0", b"a\x01", b"x\x7f", b"a\x1bb"] {
            let head = [&b"GET / HTTP/1.1\r\nHost: x\r\nX-Any: "[..], value, b"\r"].concat();
            assert_eq!(
                parse_head(&head),
                Err(Refusal::BadRequest("a control character in a header value")),
                "{}",
                value.escape_ascii()
            );
        }
        let tabs = b"GET / HTTP/1.1\r\nHost: x\r\nX-Any: a\tb \x80\r";
        assert!(parse_head(tabs).is_ok(), "tabs, spaces and obs-text are field content");
    }

    #[test]
    fn every_line_ending_ends_a_head() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\nHost: x\r\n\n",
            b"\r\n\nGET / HTTP/1.1\nHost: x\r\n\r\n",
        ] {
            let found = split_heads(input);
            assert_eq!(found.len(), 1, "{}", input.escape_ascii());
            let request = parse_head(&found[0]).expect("parses");
            assert_eq!((request.method, request.target, request.has_host), (&b"GET"[..], &b"/"[..], true));
        }
        assert!(split_heads(b"GET / HTTP/1.1\r\nHost: x\r\n\r").is_empty(), "not ended yet");
    }

    #[test]
    fn room_counts_the_head_as_the_crlf_head_before_its_blank_line() {
        let mut reader = HeadReader::new();
        assert_eq!(reader.room(), MAX_HEAD + 3);
        reader.collect(b"GET / HTTP/1.1\r");
        assert_eq!(reader.end_line(), Line::More);
        // 16 bytes of `GET / HTTP/1.1\r\n` taken.
        assert_eq!(reader.room(), MAX_HEAD + 3 - 16);
        // A head of MAX_HEAD bytes before its CRLFCRLF is taken, one more is not.
        for (pad, fits) in [(MAX_HEAD - 16, true), (MAX_HEAD - 15, false)] {
            let mut reader = HeadReader::new();
            reader.collect(b"GET / HTTP/1.1\r");
            assert_eq!(reader.end_line(), Line::More);
            let line = [b'x'; MAX_HEAD];
            assert!(pad < reader.room());
            reader.collect(&line[..pad]);
            reader.collect(b"\r");
            if !fits {
                assert_eq!(reader.end_line(), Line::TooLong);
                continue;
            }
            assert_eq!(reader.end_line(), Line::More);
            assert_eq!(reader.room(), 1, "the blank line's CR");
            reader.collect(b"\r");
            assert!(matches!(reader.end_line(), Line::Head(h) if h.len() == MAX_HEAD + 1));
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

    /// `Connection: close` wins over `keep-alive`, whatever their order, in
    /// one header or in several: a client that asked to close is never kept.
    #[test]
    fn close_wins_over_keep_alive_in_any_order() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive",
            b"GET / HTTP/1.0\r\nConnection: keep-alive, CLOSE",
        ] {
            let request = parse_head(head).expect("parses");
            assert_eq!(request.connection_close, Some(true), "{}", head.escape_ascii());
        }
        let request = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").unwrap();
        assert_eq!(request.connection_close, Some(false));
    }

    /// A head is refused (400) for a Content-Length that is not plain
    /// digits, two that disagree, one beside Transfer-Encoding (request
    /// smuggling), a header with an empty name, a request target with a
    /// byte that is not visible ASCII, two Host headers, or one that is not
    /// a host and port; the same head without the fault parses.
    #[test]
    fn smuggling_and_malformed_headers_are_refused() {
        let good = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5";
        assert_eq!(parse_head(good).map(|r| r.content_length), Ok(5));
        for host in [&b"127.0.0.1:8080"[..], b"[::1]:8080", b"example.com", b""] {
            let head = [&b"GET / HTTP/1.1\r\nHost: "[..], host].concat();
            assert!(parse_head(&head).is_ok(), "refused Host: {}", host.escape_ascii());
        }
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 00001",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
            b"GET / HTTP/1.1\r\nHost: x\r\n: no name",
            b"GET /\x01 HTTP/1.1\r\nHost: x",
            b"GET /\t HTTP/1.1\r\nHost: x",
            b"GET /\x7f HTTP/1.1\r\nHost: x",
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y",
            b"GET / HTTP/1.1\r\nHost: x\r\nhost: x",
            b"GET / HTTP/1.0\r\nHost: x\r\nHost: x",
            b"GET / HTTP/1.1\r\nHost: x y",
            b"GET / HTTP/1.1\r\nHost: x/y",
            b"GET / HTTP/1.1\r\nHost: user@x",
            b"GET / HTTP/1.1\r\nHost: x, y",
        ] {
            assert!(
                matches!(parse_head(bad), Err(Refusal::BadRequest(_))),
                "accepted: {}",
                bad.escape_ascii()
            );
        }
    }

    /// Empty lines before the request line are skipped (RFC 9112 2.2) but
    /// count against [`MAX_HEAD`]: a client sending nothing but line ends
    /// is refused with 431 once they pass it, not read forever.
    #[test]
    fn empty_lines_before_the_request_line_are_bounded() {
        for empty in [&b"\r"[..], b""] {
            let mut reader = HeadReader::new();
            let mut skipped = 0;
            loop {
                reader.collect(empty);
                skipped += empty.len() + 1;
                match reader.end_line() {
                    Line::More => assert!(skipped <= MAX_HEAD + 1, "{skipped} bytes of empty lines skipped"),
                    Line::TooLong => break,
                    other => panic!("{other:?} after {skipped} bytes of empty lines"),
                }
            }
            assert!(skipped > MAX_HEAD, "refused after {skipped} bytes");
            assert!(reader.room() <= MAX_HEAD + 3, "the room never grows");
        }
    }
}
