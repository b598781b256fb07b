//! The memory an `AsyncChat`'s output queue holds stays within its queued
//! bytes plus one 64 KiB buffer, whatever the pattern of pushes and partial
//! sends (issue 14, defect 1).
//!
//! The peer of a socket pair reads a little at a time, so the queue never
//! empties while pushes keep coming: asynchat's queue (and rolecore's, before)
//! appended each push to the partly sent front buffer and freed it only once
//! fully sent, so the buffer grew by every byte pushed. No timing is asserted:
//! only capacities, queued bytes and the bytes the peer received.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use rolecore::chat::SimpleProducer;
use rolecore::{AsyncChat, Channel, Connected, Terminator};

/// One buffer: the allowance over the queued bytes.
const CHUNK: usize = 64 * 1024;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The byte at position `i` of everything pushed: the peer checks order.
fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

fn pair() -> (AsyncChat<Connected>, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::bytes(b"\n"));
    (chat, theirs)
}

/// Reads at most `n` bytes, checking each against what was pushed.
fn read_some(peer: &mut UnixStream, n: usize, received: &mut usize) {
    let mut buf = vec![0u8; n.max(1)];
    match peer.read(&mut buf) {
        Ok(got) => {
            for (k, &b) in buf[..got].iter().enumerate() {
                assert_eq!(b, byte_at(*received + k), "byte {} out of order", *received + k);
            }
            *received += got;
        }
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
    }
}

fn check(chat: &AsyncChat<Connected>, step: usize, worst: &mut usize) {
    let over = chat.output_capacity().saturating_sub(chat.queued());
    *worst = (*worst).max(over);
    assert!(
        chat.output_capacity() <= chat.queued() + CHUNK,
        "step {step}: the queue holds {} bytes of memory for {} queued (limit {})",
        chat.output_capacity(),
        chat.queued(),
        chat.output_limit(),
    );
    assert!(chat.output_capacity() <= chat.output_limit() + CHUNK);
}

#[test]
fn a_queue_that_never_empties_holds_no_more_than_its_bytes_plus_one_buffer() {
    for seed in [1u64, 42] {
        let (mut chat, mut peer) = pair();
        let mut rng = Rng(seed);
        let (mut pushed, mut received, mut worst, mut total_pushed) = (0usize, 0usize, 0usize, 0usize);
        for step in 0..2000 {
            // Keep the queue busy but under the limit: a push whenever it is
            // below 1 MiB, of 1 B to 40 KiB.
            if chat.queued() < 1 << 20 {
                let n = 1 + rng.below(40_000);
                let data: Vec<u8> = (pushed..pushed + n).map(byte_at).collect();
                chat.push(&data).unwrap();
                pushed += n;
                total_pushed += n;
            }
            check(&chat, step, &mut worst);
            read_some(&mut peer, 1 + rng.below(30_000), &mut received);
            chat.initiate_send().unwrap();
            check(&chat, step, &mut worst);
        }
        assert!(total_pushed > 16 << 20, "seed {seed}: the test pushed only {total_pushed} bytes");
        assert!(
            chat.queued() > 0,
            "seed {seed}: the queue must not have emptied for the test to mean anything"
        );
        // Drain: everything arrives, in order.
        while chat.queued() > 0 {
            read_some(&mut peer, 1 << 16, &mut received);
            chat.initiate_send().unwrap();
            check(&chat, usize::MAX, &mut worst);
        }
        while received < pushed {
            read_some(&mut peer, 1 << 16, &mut received);
        }
        assert_eq!(received, pushed);
        assert!(chat.output_capacity() <= CHUNK, "an empty queue keeps at most one buffer");
        eprintln!("seed {seed}: pushed {total_pushed} bytes, worst memory over queued {worst}");
    }
}

#[test]
fn small_pushes_between_partial_sends_and_producers_stay_bounded() {
    let (mut chat, mut peer) = pair();
    let mut rng = Rng(99);
    let (mut pushed, mut received, mut worst) = (0usize, 0usize, 0usize);
    for step in 0..20_000 {
        match rng.below(10) {
            0 => {
                // A producer's bytes continue the same sequence.
                let n = 1 + rng.below(5000);
                let data: Vec<u8> = (pushed..pushed + n).map(byte_at).collect();
                chat.push_with_producer(SimpleProducer::new(data, 1 + rng.below(2000))).unwrap();
                pushed += n;
            }
            1..=6 if chat.queued() < 2 << 20 => {
                let n = 1 + rng.below(300);
                let data: Vec<u8> = (pushed..pushed + n).map(byte_at).collect();
                chat.push(&data).unwrap();
                pushed += n;
            }
            _ => read_some(&mut peer, 1 + rng.below(400), &mut received),
        }
        chat.initiate_send().unwrap();
        check(&chat, step, &mut worst);
    }
    while chat.has_output() {
        read_some(&mut peer, 1 << 16, &mut received);
        chat.initiate_send().unwrap();
        check(&chat, usize::MAX, &mut worst);
    }
    while received < pushed {
        read_some(&mut peer, 1 << 16, &mut received);
    }
    assert_eq!(received, pushed);
    eprintln!("pushed {pushed} bytes, worst memory over queued {worst}");
}
