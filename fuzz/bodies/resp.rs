//! `resp`: the RESP2 request parser of `examples/resp_server.rs`, driven the
//! way the server drives it: records split by rolecore's `Framer` at the
//! terminator the parser asks for, fed in chunks of any size.
//!
//! The first byte picks a mode:
//! - even: the rest is arbitrary bytes from a client. The parser must answer
//!   every record with a value (a command, nothing yet, or a protocol error)
//!   and never panic; every command it returns has at least one argument.
//! - odd: the rest describes commands (arguments of arbitrary bytes), which
//!   are encoded as RESP multibulk frames, split at arbitrary points and fed:
//!   the parser must give back exactly those commands, in order.

use rolecore::chat::{Framed, Framer};

use super::Input;

#[path = "../../examples/resp/parser.rs"]
pub mod parser;

use parser::RespParser;

const MAX_BULK: usize = 1 << 16;

/// Feeds `chunks` through a framer into a parser; the commands, or the first
/// protocol error's text.
fn parse(chunks: &[&[u8]]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut parser = RespParser::new(MAX_BULK);
    let mut framer = Framer::new(parser.terminator());
    let mut record = Vec::new();
    let mut commands = Vec::new();
    let mut error = None;
    for chunk in chunks {
        let fed = framer.feed(chunk, |piece, terminator| {
            match piece {
                Framed::Data(d) => record.extend_from_slice(d),
                Framed::End => {
                    match parser.record(&record) {
                        Ok(Some(command)) => {
                            assert!(!command.is_empty(), "a command with no argument");
                            commands.push(command.to_vecs());
                        }
                        Ok(None) => {}
                        Err(e) => {
                            error = Some(e.0);
                            return Err(std::io::Error::other("protocol error"));
                        }
                    }
                    record.clear();
                    *terminator = parser.terminator();
                }
            }
            Ok(())
        });
        if fed.is_err() {
            break;
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(commands),
    }
}

fn split<'a>(inp: &mut Input<'_>, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + inp.below(rest.len().min(64));
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    chunks
}

/// Runs one input; returns how many commands were checked.
pub fn run(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    if inp.byte().is_multiple_of(2) {
        let raw = inp.rest().to_vec();
        let chunks = split(&mut Input::new(data), &raw);
        return parse(&chunks).map(|c| c.len()).unwrap_or(0);
    }
    let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
    for _ in 0..1 + inp.below(8) {
        let argc = 1 + inp.below(4);
        let command = (0..argc)
            .map(|_| {
                let len = inp.below(40);
                (0..len).map(|_| inp.byte()).collect()
            })
            .collect();
        commands.push(command);
    }
    let mut wire = Vec::new();
    for command in &commands {
        wire.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            wire.extend_from_slice(arg);
            wire.extend_from_slice(b"\r\n");
        }
    }
    let chunks = split(&mut inp, &wire);
    let parsed =
        parse(&chunks).unwrap_or_else(|e| panic!("a valid frame refused ({e}): {}", super::show(&wire)));
    assert_eq!(parsed, commands, "the parser changed the commands of {}", super::show(&wire));
    commands.len()
}

/// A one-line description of an input, for naming corpus files.
pub fn describe(data: &[u8]) -> String {
    match data.first() {
        Some(b) if !b.is_multiple_of(2) => format!("resp_roundtrip_{}_bytes", data.len()),
        _ => format!("resp_raw_{}_bytes", data.len()),
    }
}
