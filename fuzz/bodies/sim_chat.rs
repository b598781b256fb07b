//! An `AsyncChat` record server in the simulated world, against the model.
//!
//! For every record it answers `<length>:<record>\n` and then, following a
//! protocol the input picks, may change the terminator: a fixed byte, count
//! or no terminator; `LEN`-style headers followed by counted payloads; or a
//! terminator switched after every record. The input also picks how much one
//! read takes (small reads split terminators across reads), how much one
//! send gives, whether replies go out through a `SimpleProducer`, a record
//! limit, and whether there is also an outgoing chat client and a second
//! listener; the rest drives the simulation.
//!
//! The run must keep every invariant the simulation checks, and each peer
//! must receive a prefix of the replies the reference model computes from
//! what it sent, stopping at the first record over the limit. (A peer that
//! sent two or more out-of-band bytes is not compared: an earlier urgent byte
//! then lands inline in the server's input, at a place the peer cannot know.)
//!
//! Byte terminators are made of consecutive bytes of the simulated peers'
//! data (each byte is the last plus 31, mod 255), so they occur every 255
//! bytes; `\r\n` never occurs, to exercise records that never end.

use std::io;
use std::num::NonZeroUsize;

use rolecore::chat::SimpleProducer;
use rolecore::sim::{Sim, SimConfig, SimFailure, SimReport};
use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Terminator};

use super::model::{self, Policy, Protocol};
use super::{Input, assert_prefix, check_peers, config_name, sim_config, summarize_trace};

#[derive(Clone, Debug)]
pub struct Setup {
    pub config: SimConfig,
    pub initial: Terminator,
    pub protocol: Protocol,
    pub in_buffer: usize,
    pub out_buffer: usize,
    /// Reply through a `SimpleProducer` with chunks of this size.
    pub producer: Option<usize>,
    pub max_record: usize,
    pub outgoing: bool,
    pub listeners: usize,
}

fn terminator_bytes(inp: &mut Input<'_>) -> Vec<u8> {
    let b = inp.byte();
    if b.is_multiple_of(8) {
        return b"\r\n".to_vec(); // never in the peers' data
    }
    let start = inp.below(255);
    (0..1 + usize::from(b >> 3) % 3).map(|k| ((start + 31 * k) % 255) as u8).collect()
}

fn terminator(inp: &mut Input<'_>) -> Terminator {
    match inp.below(8) {
        0 | 1 => Terminator::count(1 + 3 * inp.below(256)),
        2 => Terminator::None,
        _ => Terminator::bytes(&terminator_bytes(inp)),
    }
}

pub fn decode(inp: &mut Input<'_>, check_descriptors: bool) -> Setup {
    let config = sim_config(inp, check_descriptors);
    let b2 = usize::from(inp.byte());
    let b3 = usize::from(inp.byte());
    let max_record = [usize::MAX, rolecore::chat::DEFAULT_MAX_RECORD, 300, 1][b3 % 4];
    let outgoing = b3 >> 2 & 1 != 0;
    let listeners = 1 + (b3 >> 3 & 1);
    // Small reads only where the peers' send buffers are small, and not
    // with an outgoing connection (whose peer once kept the kernel's
    // buffer; the rule stays so that the corpus keeps its meaning).
    let small_buffers = matches!(config.socket_buffer, Some(n) if n <= 4096) && !outgoing;
    let in_buffer = if small_buffers { [7, 61, 512, 4096, 65_536][b2 % 5] } else { [4096, 65_536][b2 % 2] };
    let out_buffer = [1, 7, 512, 65_536][(b2 >> 3) % 4];
    let producer = (b2 >> 5 & 1 != 0).then_some([1, 5, 512][(b2 >> 6) % 3]);
    let (initial, protocol) = match (b3 >> 4) % 3 {
        0 => (terminator(inp), Protocol::Fixed),
        1 => {
            let header = terminator_bytes(inp);
            (Terminator::bytes(&header), Protocol::LenHeader(header))
        }
        _ => {
            let choices: Vec<Terminator> = (0..1 + inp.below(3)).map(|_| terminator(inp)).collect();
            (choices[0].clone(), Protocol::Switching(choices))
        }
    };
    Setup { config, initial, protocol, in_buffer, out_buffer, producer, max_record, outgoing, listeners }
}

pub fn reply(record: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(record.len() + 22);
    reply_into(&mut r, record);
    r
}

/// Appends `<length>:<record>\n` to `out`. The length's digits are written
/// by hand: perf found `format!` (per record, in the handler and the
/// model) among the costs of a `sim_chat` run, for a decimal number.
pub fn reply_into(out: &mut Vec<u8>, record: &[u8]) {
    // The digits, then the colon, in one piece.
    let mut head = [b':'; 21];
    let mut at = head.len() - 1;
    let mut n = record.len();
    loop {
        at -= 1;
        head[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.reserve(head.len() - at + record.len() + 1);
    out.extend_from_slice(&head[at..]);
    out.extend_from_slice(record);
    out.push(b'\n');
}

struct Chat {
    policy: Policy,
    /// Whether the policy sets `count` after every record
    /// ([`Policy::every_count`]): tested as a flag, which a fuzzer's
    /// comparison tracing does not see, where the policy's answer took
    /// eight traced comparisons per record to find and match.
    every_count: bool,
    count: NonZeroUsize,
    producer: Option<usize>,
    /// The record so far, when the handler collects it itself (see
    /// `collect_incoming_data`), kept from record to record.
    record: Vec<u8>,
    /// Whether the record so far is `byte` alone, kept beside `record`
    /// (empty then): the heaviest inputs' records are counts of one, each
    /// collected in one piece, and flags cost a fuzzer's build no traced
    /// comparison, where pushing onto the record and testing its length
    /// made three.
    lone: bool,
    byte: u8,
    /// Whether anything of the record was collected (in `record`, or as
    /// `byte`).
    started: bool,
    /// The reply being pushed, kept so that a record costs no allocation
    /// for it.
    out: Vec<u8>,
}

/// Sets the terminator the policy gives after `record`, unless the chat
/// has the same byte terminator already (one is an allocation to make and
/// drop; a count is cheaper to set than to compare).
fn next_terminator(policy: &mut Policy, record: &[u8], chat: &mut AsyncChat) {
    match policy.after_record(record) {
        None => {}
        // Copied, not cloned through the enum (one-byte counted records
        // set one per record).
        Some(&Terminator::Count(n)) => chat.set_terminator(Terminator::Count(n)),
        Some(Terminator::Bytes(new)) if chat.terminator().as_bytes() != Some(&**new) => {
            chat.set_terminator(Terminator::Bytes(new.clone()));
        }
        Some(Terminator::Bytes(_)) => {} // the chat has it already
        Some(Terminator::None) => chat.set_terminator(Terminator::None),
    }
}

impl ChatHandler for Chat {
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        match self.producer {
            // The default: the chat collects, `found_terminator` takes it.
            Some(_) => chat.collect(data),
            // asynchat's own style, a buffer of the handler's: taking the
            // chat's left it empty, and made an allocation per record.
            // A record's first piece of one byte (a count of one, the
            // heaviest inputs' records) is kept aside; `data` is never
            // empty. Another piece moves it to the record first.
            None => match *data {
                [byte] if !self.started => (self.lone, self.byte, self.started) = (true, byte, true),
                _ => {
                    if self.lone {
                        self.lone = false;
                        self.record.push(self.byte);
                    }
                    self.record.extend_from_slice(data);
                    self.started = true;
                }
            },
        }
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        match self.producer {
            Some(chunk) => {
                let record = chat.take_incoming();
                next_terminator(&mut self.policy, &record, chat);
                chat.push_with_producer(SimpleProducer::new(reply(&record), chunk))
            }
            None => {
                let lone = std::slice::from_ref(&self.byte);
                let record = if self.lone { lone } else { &self.record[..] };
                if self.every_count {
                    chat.set_terminator(Terminator::Count(self.count));
                } else {
                    next_terminator(&mut self.policy, record, chat);
                }
                self.started = false;
                if self.lone {
                    // One byte: its reply written out, without a copy (its
                    // check of the lengths is a traced comparison, its
                    // `memcpy` a call).
                    self.lone = false;
                    return chat.push(&[b'1', b':', self.byte, b'\n']);
                }
                let len = self.record.len();
                let pushed = if len <= 9 {
                    // A record of at most 9 bytes: its reply made on the
                    // stack, without the reply buffer's growth checks and
                    // the digit loop.
                    let mut small = [b'\n'; 12];
                    small[0] = b'0' + len as u8;
                    small[1] = b':';
                    small[2..2 + len].copy_from_slice(&self.record);
                    chat.push(&small[..len + 3])
                } else {
                    self.out.clear();
                    reply_into(&mut self.out, &self.record);
                    chat.push(&self.out)
                };
                self.record.clear();
                pushed
            }
        }
    }

    fn handle_connect_failed(&mut self, _: io::Error, _: &mut Ctx<'_>) {}

    fn handle_error(&mut self, _: &mut AsyncChat, _: io::Error, cx: &mut Ctx<'_>) {
        cx.close(); // a record over the limit: give up on this peer, quietly
    }
}

fn chat<R: rolecore::Role>(c: Channel<R>, s: &Setup) -> (AsyncChat<R>, Chat) {
    let mut chat = AsyncChat::new(c, s.initial.clone());
    chat.set_in_buffer_size(s.in_buffer);
    chat.set_out_buffer_size(s.out_buffer);
    chat.set_max_record(s.max_record);
    let policy = Policy::new(&s.protocol);
    let every = policy.every_count();
    let handler = Chat {
        policy,
        every_count: every.is_some(),
        count: every.unwrap_or(NonZeroUsize::MIN),
        producer: s.producer,
        record: Vec::new(),
        lone: false,
        byte: 0,
        started: false,
        out: Vec::new(),
    };
    (chat, handler)
}

struct Server(Setup);

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, c: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let (chat, handler) = chat(c, &self.0);
        cx.insert(chat, handler)?;
        Ok(())
    }
}

pub fn simulate(data: &[u8], check_descriptors: bool) -> (Setup, Result<SimReport, SimFailure>) {
    let mut inp = Input::new(data);
    let s = decode(&mut inp, check_descriptors);
    let mut sim = Sim::from_bytes(inp.rest(), s.config).expect("create the simulation");
    for _ in 0..s.listeners {
        sim.listen(Server(s.clone())).expect("listen");
    }
    if s.outgoing {
        sim.connect(|c, map| {
            let (chat, handler) = chat(c, &s);
            Ok(map.insert(chat, handler)?)
        })
        .expect("connect");
    }
    (s, sim.run())
}

/// The replies a peer that sent `sent` may receive: the model's records,
/// answered, up to the first one over the limit.
pub fn expected_replies(s: &Setup, sent: &[u8]) -> Vec<u8> {
    expected_replies_upto(s, sent, usize::MAX)
}

/// The start of [`expected_replies`]: all of them, or the first ones that
/// make at least `want` bytes. Whether a peer's `want` bytes received are a
/// prefix of the replies needs no more: a run that sent 400 KB in one-byte
/// records, of which the peer read back a few hundred bytes of replies,
/// modelled all 400,000 records before, for nothing.
pub fn expected_replies_upto(s: &Setup, sent: &[u8], want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    model::walk(sent, &s.initial, &s.protocol, |data, by_bytes| {
        if by_bytes && data.len() > s.max_record {
            return false; // the server gives up on the peer here
        }
        reply_into(&mut out, data);
        out.len() < want
    });
    out
}

pub fn run(data: &[u8]) -> usize {
    run_with(data, false)
}

pub fn run_with(data: &[u8], check_descriptors: bool) -> usize {
    let (s, result) = simulate(data, check_descriptors);
    let setup = || format!("{s:?}");
    check_peers(result, setup, |i, peer| {
        if peer.oob_sent > 1 {
            return 0;
        }
        let received = peer.received_data();
        let mut expected = expected_replies_upto(&s, &peer.sent, received.len());
        if !expected.starts_with(&received) {
            // The message shows all the model expected.
            expected = expected_replies(&s, &peer.sent);
        }
        assert_prefix(&expected, &received, || format!("peer p{i} of a chat server ({s:?})"));
        received.len()
    })
}

pub fn describe(data: &[u8]) -> String {
    let (s, result) = simulate(data, false);
    let trace = match &result {
        Ok(report) => {
            let replies: usize =
                report.peers.iter().map(|p| p.received.iter().filter(|&&b| b == b'\n').count()).sum();
            format!("{}-replies{replies}", summarize_trace(&report.trace))
        }
        Err(failure) => format!("FAILS-{}", summarize_trace(&failure.trace)),
    };
    let protocol = match &s.protocol {
        Protocol::Fixed => "fixed".to_owned(),
        Protocol::LenHeader(_) => "lenheader".to_owned(),
        Protocol::Switching(c) => format!("switch{}", c.len()),
    };
    let mut name = format!(
        "{}-{protocol}-{}-in{}-out{}",
        config_name(&s.config),
        super::framer::term_name(&s.initial),
        s.in_buffer,
        s.out_buffer
    );
    if let Some(chunk) = s.producer {
        name.push_str(&format!("-producer{chunk}"));
    }
    if s.max_record <= 300 {
        name.push_str(&format!("-max{}", s.max_record));
    }
    for (on, word) in [(s.outgoing, "-outgoing"), (s.listeners > 1, "-2listeners")] {
        if on {
            name.push_str(word);
        }
    }
    format!("{name}-{trace}")
}
