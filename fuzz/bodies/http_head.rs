//! `http_head`: how `examples/http_server.rs` reads and parses request heads
//! (`examples/http/head.rs`), driven as the server drives it: records split
//! by rolecore's `Framer` at LF, each line bounded by the head's room (the
//! chat's `max_record`), a request body skipped by a count terminator, fed
//! in chunks of any size.
//!
//! The first byte picks a mode:
//! - even: the rest is arbitrary bytes from a client. Reading and parsing
//!   must never panic, and no head handed to the parser may pass the 8 KiB
//!   bound.
//! - odd: the rest describes requests (method, target, version, headers,
//!   maybe leading empty lines and a body), each line ended by `\r\n` or a
//!   bare `\n` at random, pipelined and split at arbitrary points. Every
//!   request must be answered (its head found and parsed to what was sent),
//!   in order: none may wait for bytes that never come.

use rolecore::Terminator;
use rolecore::chat::{Framed, Framer};

use super::Input;

#[path = "../../examples/http/head.rs"]
pub mod head;

use head::{HeadReader, LINE_END, Line, MAX_HEAD, Refusal, parse_head};

/// What the server would do with a head.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// Parsed: method, target, the body length that follows.
    Request(Vec<u8>, Vec<u8>, usize),
    /// 400 or 505: the connection closes.
    Refused,
    /// 431: the connection closes.
    TooLarge,
}

/// Feeds `chunks` as the server reads them; the answers, in order.
fn serve(chunks: &[&[u8]]) -> Vec<Answer> {
    let mut framer = Framer::new(LINE_END);
    let mut reader = HeadReader::new();
    let mut answers = Vec::new();
    let mut line_len = 0;
    let mut room = reader.room();
    let mut in_body = false;
    let mut closed = false;
    for chunk in chunks {
        if closed {
            break;
        }
        let fed = framer.feed(chunk, |piece, terminator| {
            match piece {
                Framed::Data(d) if in_body => {
                    let _ = d; // dropped
                }
                Framed::Data(d) => {
                    // The chat's max_record for a line of the head.
                    line_len += d.len();
                    if line_len > room {
                        answers.push(Answer::TooLarge);
                        return Err(std::io::Error::other("431"));
                    }
                    reader.collect(d);
                }
                Framed::End if in_body => {
                    in_body = false;
                    *terminator = LINE_END;
                }
                Framed::End => {
                    line_len = 0;
                    let answer = match reader.end_line() {
                        Line::More => {
                            room = reader.room();
                            return Ok(());
                        }
                        Line::TooLong => Answer::TooLarge,
                        Line::BareCr => Answer::Refused,
                        Line::Head(head) => {
                            assert!(head.len() <= MAX_HEAD + 1, "a head of {} bytes was parsed", head.len());
                            match parse_head(head) {
                                Ok(r) => {
                                    let body = if r.chunked { 0 } else { r.content_length };
                                    Answer::Request(r.method.to_vec(), r.target.to_vec(), body)
                                }
                                Err(Refusal::BadRequest(_) | Refusal::VersionNotSupported) => Answer::Refused,
                            }
                        }
                    };
                    reader.clear();
                    room = reader.room();
                    let go_on = matches!(answer, Answer::Request(..));
                    if let Answer::Request(_, _, body) = answer
                        && body > 0
                    {
                        in_body = true;
                        *terminator = Terminator::count(body);
                    }
                    answers.push(answer);
                    if !go_on {
                        return Err(std::io::Error::other("closed"));
                    }
                }
            }
            Ok(())
        });
        closed = fed.is_err();
    }
    answers
}

fn split<'a>(inp: &mut Input<'_>, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = (1 + inp.below(64)).min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    chunks
}

const METHODS: [&[u8]; 5] = [b"GET", b"HEAD", b"POST", b"BREW", b"OPTIONS"];
const TARGETS: [&[u8]; 4] = [b"/", b"/a/b?c=d", b"*", b"http://x/y"];

/// Runs one input; returns how many requests were answered.
pub fn run(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    if inp.byte().is_multiple_of(2) {
        let raw = inp.rest().to_vec();
        let chunks = split(&mut Input::new(data), &raw);
        return serve(&chunks).len();
    }
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..1 + inp.below(6) {
        let end =
            |inp: &mut Input<'_>| -> &'static [u8] { if inp.byte() & 1 == 0 { b"\r\n" } else { b"\n" } };
        if inp.below(4) == 0 {
            let blank = end(&mut inp);
            wire.extend_from_slice(blank);
        }
        let method = inp.pick(&METHODS);
        let target = inp.pick(&TARGETS);
        wire.extend_from_slice(method);
        wire.push(b' ');
        wire.extend_from_slice(target);
        wire.extend_from_slice(b" HTTP/1.1");
        wire.extend_from_slice(end(&mut inp));
        wire.extend_from_slice(b"Host: fuzz");
        wire.extend_from_slice(end(&mut inp));
        for i in 0..inp.below(4) {
            let value: Vec<u8> = (0..inp.below(40)).map(|_| b'a' + inp.below(26) as u8).collect();
            wire.extend_from_slice(format!("X-H{i}: ").as_bytes());
            wire.extend_from_slice(&value);
            wire.extend_from_slice(end(&mut inp));
        }
        let body = inp.pick(&[0, 0, 1, 13, 300]);
        if body > 0 {
            wire.extend_from_slice(format!("Content-Length: {body}").as_bytes());
            wire.extend_from_slice(end(&mut inp));
        }
        wire.extend_from_slice(end(&mut inp));
        // A body of any bytes, line ends included: it is counted, not read
        // as lines.
        wire.extend((0..body).map(|_| inp.pick(b"\n\rx")));
        expected.push(Answer::Request(method.to_vec(), target.to_vec(), body));
    }
    let chunks = split(&mut inp, &wire);
    let answers = serve(&chunks);
    assert_eq!(answers, expected, "the requests of {} were not each answered", super::show(&wire));
    answers.len()
}

/// A one-line description of an input, for naming corpus files.
pub fn describe(data: &[u8]) -> String {
    match data.first() {
        Some(b) if !b.is_multiple_of(2) => format!("http_requests_{}_bytes", data.len()),
        _ => format!("http_raw_{}_bytes", data.len()),
    }
}
