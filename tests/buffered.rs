//! `Buffered` output: `dispatcher_with_send`'s queue (T12), and output queued
//! while connecting is sent after `handle_connect`.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::Cell;
use std::io::{self, Read};
use std::net::TcpListener;
use std::rc::Rc;
use std::thread::{self};
use std::time::Duration;

use rolecore::{Backend, Buffered, Channel, Connected, Ctx, StreamHandler};
use util::*;

/// `dispatcherwithsend_noread`, recording how much is still queued.
struct SendNoRead {
    queued: Rc<Cell<usize>>,
}

impl StreamHandler<Buffered<Connected>> for SendNoRead {
    fn readable(&self, _ch: &Buffered<Connected>) -> bool {
        false
    }

    fn handle_connect(&mut self, _ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_write(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.initiate_send()?;
        self.queued.set(ch.queued());
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("handle_error: {error}");
    }
}

/// CPython's `capture_server`: one connection, read 10 bytes at a time
/// until a newline, keep everything but newlines; at most 3 s.
fn capture_server(listener: TcpListener) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 10];
        loop {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend(chunk[..n].iter().filter(|&&b| b != b'\n'));
                    if chunk[..n].contains(&b'\n') {
                        break;
                    }
                }
            }
        }
        buf
    })
}

fn t12(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = capture_server(listener);
    let data = b"Suppose there isn't a 16-ton weight?";
    let mut d = Buffered::new(Channel::tcp_v4().unwrap().connect(addr).unwrap());
    // send() before the connect completed: queued (D7), sent after it.
    d.send(data).unwrap();
    d.send(data).unwrap();
    d.send(b"\n").unwrap();
    let queued = Rc::new(Cell::new(d.queued()));
    let mut map = util::map(backend);
    map.insert(d, SendNoRead { queued: Rc::clone(&queued) }).unwrap();
    // `while d.out_buffer and n > 0: asyncore.poll()`
    let mut n = 1000;
    while queued.get() > 0 && n > 0 {
        map.poll(Some(Duration::from_millis(10))).unwrap();
        n -= 1;
    }
    assert_eq!(queued.get(), 0, "the queue drained");
    assert_eq!(server.join().unwrap(), data.repeat(2), "the server received data*2");
}

per_backend! {
    /// T12 `DispatcherWithSendTests.test_send` (A24, A40–A44, D7): two sends
    /// and a newline through a `Buffered` (asyncore's `dispatcher_with_send`)
    /// arrive whole, in order, driven by `Map::poll` (asyncore's `poll()`).
    t12_dispatcher_with_send => t12
}

struct BufferedClient {
    log: Log,
    queued_at_connect: Rc<Cell<Option<usize>>>,
}

impl StreamHandler<Buffered<Connected>> for BufferedClient {
    fn readable(&self, _ch: &Buffered<Connected>) -> bool {
        false
    }

    fn handle_connect(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("connect");
        self.queued_at_connect.set(Some(ch.queued()));
        Ok(())
    }

    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
        self.log.push(format!("error:{error}"));
        cx.close();
    }
}

/// `Buffered` output queued while connecting (asyncore T12).
#[test]
fn buffered_output_queued_while_connecting_is_sent_after_handle_connect() {
    let data: Vec<u8> = b"I'm not dead yet!\n".repeat(200);
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (listener, addr) = std_listener();
        let mut client = Buffered::new(Channel::tcp_v4().expect("socket").connect(addr).expect("connect"));
        client.send(&data).expect("queue while connecting");
        client.send(&data).expect("queue while connecting");
        client.send(b"\n").expect("queue while connecting");
        assert_eq!(
            client.queued(),
            2 * data.len() + 1,
            "{backend}: nothing is sent before the connect completes"
        );
        let queued_at_connect = Rc::new(Cell::new(None));
        let handler = BufferedClient { log: log.clone(), queued_at_connect: Rc::clone(&queued_at_connect) };
        map.insert(client, handler).expect("insert");
        let mut server = accept(&listener);
        server.set_nonblocking(true).expect("nonblocking server");
        let mut expected = data.repeat(2);
        expected.push(b'\n');
        let mut received = Vec::new();
        let done = util::run_until(&mut map, |_| {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = server.read(&mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
            received.len() >= expected.len()
        });
        assert!(
            done,
            "{backend}: all queued output arrived; got {} of {} bytes",
            received.len(),
            expected.len()
        );
        assert!(received == expected, "{backend}: the server received exactly data*2 + newline, in order");
        assert_eq!(log.events()[0], "connect", "{backend}: handle_connect came first: {:?}", log.events());
        assert_eq!(
            queued_at_connect.get(),
            Some(2 * data.len() + 1),
            "{backend}: the output was still queued when handle_connect ran"
        );
        assert_eq!(log.events(), ["connect"], "{backend}: no error");
    }
}

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// Reads what `peer` has now (non-blocking), at most `most` bytes, into `got`.
fn read_some(peer: &mut Channel<Connected>, most: usize, got: &mut Vec<u8>) {
    let mut buf = vec![0u8; most.max(1)];
    match peer.recv(&mut buf) {
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
    }
}

/// `send` never loses, duplicates or reorders a byte, whatever the socket
/// takes: sends of every size (straight to the socket, partly queued, or
/// behind a queue), interleaved with partial reads by the peer and partial
/// `initiate_send`s, so that a send's tail is queued after a partial write,
/// the queue grows again after being partly sent (and is compacted), and a
/// nearly drained queue takes more; with and without an output budget. The
/// peer gets exactly the bytes sent, in order, and the budget is released.
#[test]
fn partial_writes_and_partial_drains_keep_every_byte_in_order() {
    for seed in 1..=6u64 {
        let (a, mut peer) = Channel::pair().unwrap();
        let mut a = Buffered::new(a).with_limit(64 << 20);
        // Half the runs with a budget: their sends take the checked path.
        let budget = rolecore::OutputBudget::new(1 << 30);
        if seed % 2 == 0 {
            a.set_budget(&budget);
        }
        let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut sent = Vec::new();
        let mut got = Vec::new();
        let mut next = 0u8;
        for _ in 0..300 {
            let len = match rng.below(4) {
                0 => 1 + rng.below(16),
                1 => 1 + rng.below(4096),
                2 => 1 + rng.below(70_000),
                _ => 1 + rng.below(300_000),
            };
            // Every byte differs from its neighbours: a lost or repeated
            // byte shows wherever it happens.
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            a.send(&data).unwrap();
            sent.extend_from_slice(&data);
            for _ in 0..rng.below(4) {
                read_some(&mut peer, 1 + rng.below(100_000), &mut got);
                a.initiate_send().unwrap();
            }
            if rng.below(5) == 0 {
                // Now and then the queue drains whole, so that the next send
                // goes straight to a socket with little room.
                while a.queued() > 0 {
                    read_some(&mut peer, 1 << 16, &mut got);
                    a.initiate_send().unwrap();
                }
            }
        }
        while got.len() < sent.len() {
            let before = got.len();
            read_some(&mut peer, 1 << 16, &mut got);
            a.initiate_send().unwrap();
            assert!(
                got.len() > before || a.queued() > 0,
                "seed {seed}: bytes lost: {} of {}",
                got.len(),
                sent.len()
            );
        }
        assert_eq!(a.queued(), 0, "seed {seed}");
        read_some(&mut peer, 1 << 16, &mut got);
        assert_eq!(got.len(), sent.len(), "seed {seed}: bytes duplicated");
        assert_eq!(budget.used(), 0, "seed {seed}: sent bytes still charged");
        if let Some(at) = got.iter().zip(&sent).position(|(g, s)| g != s) {
            panic!("seed {seed}: the bytes differ from offset {at} of {}", sent.len());
        }
    }
}

/// Sends one large reply to the first byte it reads, then only reads;
/// records how much output was still queued at each read.
struct Flood {
    reads: Rc<std::cell::RefCell<Vec<usize>>>,
}

impl StreamHandler<Buffered<Connected>> for Flood {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        if ch.recv(cx.buffer())? == 0 {
            return Ok(());
        }
        self.reads.borrow_mut().push(ch.queued());
        if self.reads.borrow().len() == 1 {
            ch.send(&vec![7u8; 1 << 20])?;
        }
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("handle_error: {error}");
    }
}

/// P15 (back-pressure watermarks): once more than the high watermark is
/// queued, the loop stops reading the channel, even with input waiting; as
/// the peer drains it, reading resumes as soon as the queue is at or below
/// the low watermark, not only once it is empty.
#[test]
fn reads_pause_above_the_high_watermark_and_resume_at_the_low_one() {
    const LOW: usize = 128 << 10;
    const HIGH: usize = 256 << 10;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, mut peer) = Channel::pair().unwrap();
        let mut ours = Buffered::new(ours).with_limit(4 << 20);
        ours.set_watermarks(LOW, HIGH);
        let reads = Rc::new(std::cell::RefCell::new(Vec::new()));
        let token = map.insert(ours, Flood { reads: Rc::clone(&reads) }).unwrap();

        peer.send(b"a").unwrap();
        assert!(util::run_until(&mut map, |_| reads.borrow().len() == 1), "{backend}: first read");
        let queued = map.stream_mut::<Buffered<Connected>, Flood>(token).unwrap().transport().queued();
        assert!(queued > HIGH, "{backend}: the reply backs up past the high watermark ({queued} queued)");

        // Input waits, but the channel is over its high watermark.
        peer.send(b"b").unwrap();
        util::run_iterations(&mut map, 5);
        assert_eq!(reads.borrow().len(), 1, "{backend}: no read above the high watermark");

        // The peer drains; reading resumes at the low watermark.
        let mut got = Vec::new();
        for _ in 0..100_000 {
            if reads.borrow().len() == 2 || got.len() == 1 << 20 {
                break;
            }
            read_some(&mut peer, 16 << 10, &mut got);
            map.poll(Some(Duration::from_millis(10))).unwrap();
        }
        let reads = reads.borrow();
        assert_eq!(reads.len(), 2, "{backend}: reading resumed");
        assert!(
            reads[1] > 0 && reads[1] <= LOW,
            "{backend}: resumed with {} queued: at or below the low watermark, before the queue emptied",
            reads[1]
        );
    }
}
