//! async_chat's terminator engine, `Framer`, against the reference model.
//!
//! The input picks a protocol (a fixed terminator; `LEN n` headers followed
//! by counted payloads; or a terminator switched after every record among
//! up to three byte, count or no terminators, repeated-byte ones like `aab`,
//! `qqq` and `aaaa` among them), maybe a record limit, a stream over a
//! small alphabet (so terminators and their prefixes occur often), and the
//! chunk sizes the stream is fed in. The Framer must give the same records,
//! trailing data and held-back bytes fed whole, in those chunks, and byte by
//! byte, and the same as the model; a record limit must fail the feed at the
//! first record (or tail) over it, after exactly the records before it.

use rolecore::Terminator;
use rolecore::chat::{Framed, Framer, find_prefix_at_end};

use super::model::{self, Protocol};
use super::{Input, show};

/// The bytes records are made of: few, so terminators occur inside them.
const ALPHABET: &[u8] = b"abq\r\nx";

/// Terminator shapes that stress partial matches.
const SHAPES: [&[u8]; 10] =
    [b"\n", b"\r\n", b"qqq", b"aab", b"aba", b"abab", b"\r\n\r\n", b"aaaa", b"qaq", b"::"];

/// A decoded input.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub initial: Terminator,
    pub protocol: Protocol,
    pub max_record: Option<usize>,
    pub stream: Vec<u8>,
    /// Chunk sizes (0: an empty feed); the rest of the stream goes in one.
    pub chunks: Vec<usize>,
}

fn terminator_bytes(inp: &mut Input<'_>) -> Vec<u8> {
    let b = inp.byte();
    if b < 128 {
        SHAPES[usize::from(b) % SHAPES.len()].to_vec()
    } else {
        (0..1 + (b & 3)).map(|_| inp.pick(ALPHABET)).collect()
    }
}

fn terminator(inp: &mut Input<'_>) -> Terminator {
    match inp.below(8) {
        0 | 1 => Terminator::count(1 + inp.below(24)),
        2 => Terminator::None,
        _ => Terminator::bytes(&terminator_bytes(inp)),
    }
}

pub fn decode(data: &[u8]) -> Scenario {
    let mut inp = Input::new(data);
    let (initial, protocol) = match inp.below(3) {
        0 => (terminator(&mut inp), Protocol::Fixed),
        1 => {
            let header = terminator_bytes(&mut inp);
            (Terminator::bytes(&header), Protocol::LenHeader(header))
        }
        _ => {
            let choices: Vec<Terminator> = (0..1 + inp.below(3)).map(|_| terminator(&mut inp)).collect();
            (choices[0].clone(), Protocol::Switching(choices))
        }
    };
    let b = inp.byte();
    let max_record = b.is_multiple_of(4).then_some(usize::from(b / 4));
    // The terminator a "whole terminator" token inserts.
    let main = match (&protocol, &initial) {
        (Protocol::LenHeader(h), _) => h.clone(),
        (_, Terminator::Bytes(t)) => t.to_vec(),
        _ => b"\n".to_vec(),
    };
    let mut stream = Vec::new();
    for _ in 0..inp.byte() {
        let t = inp.byte();
        match t % 8 {
            6 => stream.extend_from_slice(&main),
            7 => stream.extend_from_slice(format!("LEN {}", inp.below(30)).as_bytes()),
            k => stream.push(ALPHABET[usize::from(k)]),
        }
    }
    let chunks =
        inp.rest().iter().map(|&b| if b < 200 { usize::from(b % 9) } else { usize::from(b - 200) }).collect();
    Scenario { initial, protocol, max_record, stream, chunks }
}

/// What feeding a Framer gave.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fed {
    records: Vec<Vec<u8>>,
    /// Data collected after the last record end.
    current: Vec<u8>,
    pending: Vec<u8>,
    failed: bool,
}

fn feed(s: &Scenario, chunks: &[&[u8]]) -> Fed {
    let mut framer = Framer::new(s.initial.clone());
    if let Some(limit) = s.max_record {
        framer = framer.with_max_record(limit);
    }
    let mut policy = model::Policy::new(&s.protocol);
    let mut records = Vec::new();
    let mut current = Vec::new();
    for chunk in chunks {
        let result = framer.feed(chunk, |piece, terminator| {
            match piece {
                Framed::Data(d) => {
                    assert!(!d.is_empty(), "the Framer reported empty data");
                    current.extend_from_slice(d);
                }
                Framed::End => {
                    let record = std::mem::take(&mut current);
                    if let Some(next) = policy.after_record(&record) {
                        *terminator = next.clone();
                    }
                    records.push(record);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            let limit = rolecore::chat::RecordTooLong::from_io(&e)
                .unwrap_or_else(|| panic!("a feed failed with something else than RecordTooLong: {e}"));
            assert_eq!(Some(limit.limit), s.max_record, "RecordTooLong names the limit");
            return Fed { records, current, pending: framer.pending().to_vec(), failed: true };
        }
    }
    Fed { records, current, pending: framer.pending().to_vec(), failed: false }
}

fn chunked<'a>(stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    for &n in sizes {
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out.push(rest);
    out
}

pub fn run(data: &[u8]) -> usize {
    let s = decode(data);
    let ctx = || {
        format!(
            "{:?} under {:?}, max_record {:?}, stream \"{}\"",
            s.initial,
            s.protocol,
            s.max_record,
            show(&s.stream)
        )
    };
    // The engine's helper against its definition, at every end of the stream.
    let mut terminators: Vec<Vec<u8>> = match &s.protocol {
        Protocol::LenHeader(h) => vec![h.clone()],
        Protocol::Switching(choices) => choices
            .iter()
            .filter_map(|t| if let Terminator::Bytes(b) = t { Some(b.to_vec()) } else { None })
            .collect(),
        Protocol::Fixed => Vec::new(),
    };
    if let Terminator::Bytes(t) = &s.initial {
        terminators.push(t.to_vec());
    }
    for t in &terminators {
        for end in 0..=s.stream.len().min(64) {
            let h = &s.stream[..end];
            assert_eq!(
                find_prefix_at_end(h, t),
                model::naive_prefix_at_end(h, t),
                "find_prefix_at_end(\"{}\", \"{}\")",
                show(h),
                show(t)
            );
        }
    }

    let m = model::split(&s.stream, &s.initial, &s.protocol);
    let expected = match s.max_record.and_then(|limit| m.first_over(limit).map(|k| (k, limit))) {
        None => Fed {
            records: m.records.iter().map(|r| r.data.clone()).collect(),
            current: m.tail.clone(),
            pending: m.pending.clone(),
            failed: false,
        },
        Some((k, limit)) => {
            // Fails within record k (or the tail): the records before it
            // ended, and at most `limit` bytes of record k were collected.
            let records: Vec<Vec<u8>> = m.records[..k].iter().map(|r| r.data.clone()).collect();
            let over = m.records.get(k).map_or(&m.tail, |r| &r.data);
            for (how, chunks) in [
                ("whole", vec![&s.stream[..]]),
                ("in chunks", chunked(&s.stream, &s.chunks)),
                ("byte by byte", s.stream.chunks(1).collect()),
            ] {
                let fed = feed(&s, &chunks);
                assert!(
                    fed.failed,
                    "{}: fed {how}, record {k} is over the limit {limit} but the feed did not fail",
                    ctx()
                );
                assert_eq!(fed.records, records, "{}: fed {how}, records before the failure", ctx());
                assert!(
                    fed.current.len() <= limit && over.starts_with(&fed.current),
                    "{}: fed {how}, {} bytes of the over-long record were collected: \"{}\"",
                    ctx(),
                    fed.current.len(),
                    show(&fed.current)
                );
            }
            return k + 1;
        }
    };
    for (how, chunks) in [
        ("whole", vec![&s.stream[..]]),
        ("in chunks", chunked(&s.stream, &s.chunks)),
        ("byte by byte", s.stream.chunks(1).collect()),
    ] {
        let fed = feed(&s, &chunks);
        if fed != expected {
            panic!(
                "{}: fed {how} ({:?}), the Framer disagrees with the model:\n  framer: {:?}\n  model:  {:?}",
                ctx(),
                chunks.iter().map(|c| show(c)).collect::<Vec<_>>(),
                fed,
                expected
            );
        }
    }
    expected.records.len() + 1
}

/// A terminator as a file-name word.
pub fn term_name(t: &Terminator) -> String {
    match t {
        Terminator::None => "none".to_owned(),
        Terminator::Count(n) => format!("count{n}"),
        Terminator::Bytes(b) => bytes_name(b),
    }
}

fn bytes_name(b: &[u8]) -> String {
    if b == b"\r\n" {
        return "crlf".to_owned();
    }
    b.iter()
        .map(|&c| match c {
            b'\r' => "cr".to_owned(),
            b'\n' => "lf".to_owned(),
            b':' => "colon".to_owned(),
            c if c.is_ascii_alphanumeric() => (c as char).to_string(),
            c => format!("x{c:02x}"),
        })
        .collect()
}

pub fn describe(data: &[u8]) -> String {
    let s = decode(data);
    let protocol = match &s.protocol {
        Protocol::Fixed => "fixed".to_owned(),
        Protocol::LenHeader(_) => "lenheader".to_owned(),
        Protocol::Switching(c) => format!("switch{}", c.len()),
    };
    let m = model::split(&s.stream, &s.initial, &s.protocol);
    let mut name = format!("{protocol}-{}-{}records", term_name(&s.initial), m.records.len());
    if !m.pending.is_empty() {
        name.push_str("-partial_terminator_held");
    }
    if let Some(limit) = s.max_record {
        name.push_str(&format!("-max{limit}"));
        if m.first_over(limit).is_some() {
            name.push_str("_exceeded");
        }
    }
    let small = s.chunks.iter().take_while(|&&n| n > 0 && n < 4).count();
    if small > 3 {
        name.push_str("-split_small");
    }
    name
}
