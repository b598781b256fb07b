//! asynchat's behaviour through rolecore's `AsyncChat`, on every backend.
//!
//! - Ports of CPython's `test_asynchat.py` (T32–T45, `docs/asyncore.md`): a
//!   blocking echo server thread like CPython's (one client, reads until
//!   `QUIT\n`, echoes the rest in `chunk_size` pieces with 1 ms sleeps, then
//!   closes) and an `AsyncChat` client that connects out and queues its pushes
//!   before the connect completes.
//! - D16 (`push` after `close_when_done`), bounded input (`RecordTooLong`),
//!   terminator switching inside `found_terminator` (E18), end-of-stream
//!   semantics (P16), the output side (many pushes, a large producer, the
//!   output limit).
//! - Property tests with a seeded xorshift generator: the `Framer` engine and
//!   a real `AsyncChat` give the same records however the stream is split,
//!   and the same as a plain reference model.
//!
//! Every loop is bounded by `util::run_until` (5 s); every helper thread has
//! socket timeouts. Loopback and socketpairs only.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rolecore::chat::{Framed, Framer, RecordTooLong, find_prefix_at_end};
use rolecore::{
    AsyncChat, Backend, BufferFull, Channel, ChatHandler, Connecting, Ctx, Map, SimpleProducer, Terminator,
};

/// What CPython's echo server waits for before it echoes.
const QUIT: &[u8] = b"QUIT\n";
/// The longest any helper thread's read, write, accept or wait may block.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

// ---- a seeded PRNG (xorshift64*) -------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: nearby seeds give unrelated streams, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn bytes(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

// ---- small byte helpers -----------------------------------------------------------

fn naive_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=haystack.len().checked_sub(needle.len())?).find(|&i| &haystack[i..i + needle.len()] == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    naive_find(haystack, needle).is_some()
}

fn remove_all(haystack: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = haystack;
    while let Some(i) = naive_find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The longest proper prefix of `needle` that ends `haystack`, by definition.
fn naive_prefix_at_end(haystack: &[u8], needle: &[u8]) -> usize {
    (1..needle.len()).rev().find(|&l| haystack.ends_with(&needle[..l])).unwrap_or(0)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn texts(records: &[Vec<u8>]) -> Vec<String> {
    records.iter().map(|r| text(r)).collect()
}

/// Where two byte strings first differ (for messages about large buffers).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

// ---- CPython's echo server --------------------------------------------------------

/// CPython's `echo_server` thread: accepts one client, reads one byte at a
/// time until it has seen `QUIT\n` (or the end), removes every `QUIT\n`,
/// optionally waits to be released, echoes the rest in `chunk` pieces with
/// 1 ms sleeps, then closes. Joining it gives what it received.
struct EchoServer {
    addr: SocketAddr,
    release: Option<mpsc::Sender<()>>,
    thread: thread::JoinHandle<Vec<u8>>,
}

impl EchoServer {
    fn start(chunk: usize) -> EchoServer {
        EchoServer::spawn(chunk, false)
    }

    /// A server that echoes only once [`release`](Self::release)d (T41).
    fn start_held(chunk: usize) -> EchoServer {
        EchoServer::spawn(chunk, true)
    }

    fn spawn(chunk: usize, held: bool) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
        let addr = listener.local_addr().expect("echo server address");
        let (tx, rx) = mpsc::channel();
        let wait = held.then_some(rx);
        let thread = thread::spawn(move || serve(listener, chunk, wait));
        EchoServer { addr, release: held.then_some(tx), thread }
    }

    fn release(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }

    fn join(mut self) -> Vec<u8> {
        self.release();
        self.thread.join().expect("the echo server thread panicked")
    }
}

fn accept_within(listener: &TcpListener, limit: Duration) -> TcpStream {
    listener.set_nonblocking(true).expect("non-blocking listener");
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).expect("blocking connection");
                return conn;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("echo server: no client within {limit:?}: {e}"),
        }
    }
}

fn serve(listener: TcpListener, chunk: usize, wait: Option<mpsc::Receiver<()>>) -> Vec<u8> {
    let mut conn = accept_within(&listener, IO_TIMEOUT);
    conn.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    conn.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !contains(&buffer, QUIT) {
        match conn.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => buffer.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("echo server: no QUIT within {IO_TIMEOUT:?}; got {:?}", text(&buffer))
            }
            Err(_) => break,
        }
    }
    let received = remove_all(&buffer, QUIT);
    if let Some(rx) = wait {
        rx.recv_timeout(IO_TIMEOUT).expect("echo server: never released");
    }
    let mut rest = &received[..];
    while !rest.is_empty() {
        // Fails when the client already closed (T41): stop, as CPython's does.
        match conn.write(&rest[..chunk.min(rest.len())]) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest = &rest[n..],
        }
        thread::sleep(Duration::from_millis(1));
    }
    received
}

// ---- a recording chat handler -----------------------------------------------------

/// Everything a [`Recorder`] saw.
#[derive(Default)]
struct Seen {
    records: Vec<Vec<u8>>,
    /// Collected since the last record ended. For a chat using the default
    /// collector: its `incoming()` as it stood at `handle_close`.
    buffer: Vec<u8>,
    /// "connect", "collect <data>", "found", "close", "error <kind>", in order.
    events: Vec<String>,
    /// `collect_incoming_data` calls with no data (asynchat never made one).
    empty_pieces: usize,
    /// `chat.queued()` inside `handle_connect`.
    queued_at_connect: Option<usize>,
    connects: usize,
    closes: usize,
    errors: Vec<io::Error>,
    readable_calls: Cell<usize>,
}

type Shared = Rc<RefCell<Seen>>;

fn take_seen(seen: &Shared) -> Seen {
    std::mem::take(&mut *seen.borrow_mut())
}

/// CPython's `echo_client`, generalised: collects into its own buffer (or
/// with the default collector), ends a record at each `found_terminator`,
/// may change the terminator there ([`Policy`]), records everything.
struct Recorder {
    seen: Shared,
    policy: Policy,
    default_collector: bool,
}

impl Recorder {
    fn new(seen: &Shared) -> Recorder {
        Recorder { seen: seen.clone(), policy: Policy::new(&Protocol::Fixed), default_collector: false }
    }

    fn with_protocol(mut self, protocol: &Protocol) -> Recorder {
        self.policy = Policy::new(protocol);
        self
    }

    fn with_default_collector(mut self) -> Recorder {
        self.default_collector = true;
        self
    }
}

impl ChatHandler for Recorder {
    fn readable(&self, _chat: &AsyncChat) -> bool {
        let seen = self.seen.borrow();
        seen.readable_calls.set(seen.readable_calls.get() + 1);
        true
    }

    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        let mut seen = self.seen.borrow_mut();
        if data.is_empty() {
            seen.empty_pieces += 1;
        }
        seen.events.push(format!("collect {}", text(data)));
        if self.default_collector {
            chat.collect(data);
        } else {
            seen.buffer.extend_from_slice(data);
        }
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let record = if self.default_collector {
            chat.take_incoming()
        } else {
            std::mem::take(&mut self.seen.borrow_mut().buffer)
        };
        if let Some(next) = self.policy.after_record(&record) {
            chat.set_terminator(next);
        }
        let mut seen = self.seen.borrow_mut();
        seen.events.push("found".into());
        seen.records.push(record);
        Ok(())
    }

    fn handle_connect(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut seen = self.seen.borrow_mut();
        seen.connects += 1;
        seen.queued_at_connect = Some(chat.queued());
        seen.events.push("connect".into());
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        let mut seen = self.seen.borrow_mut();
        seen.events.push(format!("connect failed {:?}", error.kind()));
        seen.errors.push(error);
    }

    fn handle_close(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) {
        let mut seen = self.seen.borrow_mut();
        seen.closes += 1;
        seen.events.push("close".into());
        if self.default_collector {
            seen.buffer = chat.incoming().to_vec();
        }
    }

    /// Records the error, then does what the default does: `handle_close`,
    /// close.
    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        {
            let mut seen = self.seen.borrow_mut();
            seen.events.push(format!("error {:?}", error.kind()));
            seen.errors.push(error);
        }
        self.handle_close(chat, cx);
        cx.close();
    }
}

/// Consecutive "collect" events merged into one, so a check of event order
/// does not depend on how the kernel split the bytes into reads.
fn merged(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        match (out.last_mut(), e.strip_prefix("collect ")) {
            (Some(last), Some(data)) if last.starts_with("collect ") => last.push_str(data),
            _ => out.push(e.clone()),
        }
    }
    out
}

// ---- terminator-changing protocols (shared by Framer, AsyncChat, the model) --------

#[derive(Clone, Debug)]
enum Protocol {
    /// The terminator is never changed by the handler.
    Fixed,
    /// A header record `LEN n` ended by these bytes, then a record of exactly
    /// `n` bytes (a count terminator), then the next header.
    LenHeader(Vec<u8>),
    /// After each record, a terminator picked from these by a hash of the
    /// record and how many came before.
    Switching(Vec<Terminator>),
}

/// What a handler following a [`Protocol`] sets in `found_terminator`.
struct Policy {
    protocol: Protocol,
    in_payload: bool,
    ended: usize,
}

impl Policy {
    fn new(protocol: &Protocol) -> Policy {
        Policy { protocol: protocol.clone(), in_payload: false, ended: 0 }
    }

    /// The terminator to set after `record` ended, if any.
    fn after_record(&mut self, record: &[u8]) -> Option<Terminator> {
        self.ended += 1;
        match &self.protocol {
            Protocol::Fixed => None,
            Protocol::LenHeader(header) => {
                if self.in_payload {
                    self.in_payload = false;
                    return Some(Terminator::bytes(header));
                }
                match parse_len(record) {
                    Some(n) => {
                        self.in_payload = true;
                        Some(Terminator::count(n))
                    }
                    // Not a header: stop splitting, so that the comparison
                    // of records shows where it went wrong.
                    None => Some(Terminator::None),
                }
            }
            Protocol::Switching(choices) => {
                let h =
                    record.iter().fold(self.ended, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
                Some(choices[h % choices.len()].clone())
            }
        }
    }
}

fn parse_len(record: &[u8]) -> Option<usize> {
    std::str::from_utf8(record).ok()?.strip_prefix("LEN ")?.parse().ok()
}

// ---- connecting an AsyncChat client to the echo server ---------------------------

/// Starts CPython's echo server with `chunk`, connects an `AsyncChat` client
/// with `terminator` to it, lets `queue` push before the connect completes,
/// runs the loop until the client closed (the server closes after echoing),
/// and returns what the client saw and what the server received.
fn echo_exchange(
    backend: Backend,
    chunk: usize,
    terminator: Terminator,
    queue: impl FnOnce(&mut AsyncChat<Connecting>) -> io::Result<()>,
) -> io::Result<(Seen, Vec<u8>)> {
    let server = EchoServer::start(chunk);
    let seen = Shared::default();
    let mut map = util::map(backend);
    let mut chat = AsyncChat::new(Channel::tcp_v4()?.connect(server.addr)?, terminator);
    queue(&mut chat)?;
    map.insert(chat, Recorder::new(&seen))?;
    let closed = util::run_until(&mut map, Map::is_empty);
    assert!(closed, "{backend}: the chat did not close within 5 s; events {:?}", seen.borrow().events);
    let received = server.join();
    let seen = take_seen(&seen);
    assert!(seen.errors.is_empty(), "{backend}: errors {:?}", seen.errors);
    assert_eq!(seen.connects, 1, "{backend}: handle_connect once; events {:?}", seen.events);
    assert_eq!(seen.closes, 1, "{backend}: handle_close once; events {:?}", seen.events);
    assert_eq!(
        seen.events.last().map(String::as_str),
        Some("close"),
        "{backend}: nothing after handle_close"
    );
    assert_eq!(seen.empty_pieces, 0, "{backend}: collect_incoming_data got an empty piece");
    Ok((seen, received))
}

/// T32–T34: CPython's `line_terminator_check` with terminator `term`.
fn line_terminator_check(term: &[u8]) -> io::Result<()> {
    for backend in util::backends() {
        for chunk in 1..=3 {
            let pushed: Vec<Vec<u8>> = vec![
                b"hello ".to_vec(),
                [&b"world"[..], term].concat(),
                [&b"I'm not dead yet!"[..], term].concat(),
                QUIT.to_vec(),
            ];
            let total: usize = pushed.iter().map(Vec::len).sum();
            let (seen, received) = echo_exchange(backend, chunk, Terminator::bytes(term), |chat| {
                for p in &pushed {
                    chat.push(p)?;
                }
                Ok(())
            })?;
            let ctx = format!("{backend}, terminator {:?}, server chunk {chunk}", text(term));
            // Pushed before the connect completed: all still queued when
            // handle_connect ran, then sent (the server got them all).
            assert_eq!(seen.queued_at_connect, Some(total), "{ctx}: queued at handle_connect");
            assert_eq!(received, pushed[..3].concat(), "{ctx}: what the server received");
            assert_eq!(texts(&seen.records), ["hello world", "I'm not dead yet!"], "{ctx}");
            assert!(seen.buffer.is_empty(), "{ctx}: left over {:?}", text(&seen.buffer));
        }
    }
    Ok(())
}

// ---- T32–T45 ------------------------------------------------------------------------

/// T32: a one-byte terminator, echoed back in chunks of 1, 2 and 3 bytes.
/// Also: pushes made before the connect completes are queued and go out
/// after handle_connect (C16).
#[test]
fn one_byte_line_terminator_splits_the_echo_into_records_at_any_chunk_size() -> io::Result<()> {
    line_terminator_check(b"\n")
}

/// T33: `\r\n`; a read can end between `\r` and `\n` (the prefix carry of C8).
#[test]
fn two_byte_line_terminator_split_across_reads_still_ends_records() -> io::Result<()> {
    line_terminator_check(b"\r\n")
}

/// T34: `qqq`; one or two `q`s can end a read and be carried over.
#[test]
fn three_byte_repeated_terminator_split_across_reads_still_ends_records() -> io::Result<()> {
    line_terminator_check(b"qqq")
}

/// T35/T36: CPython's `numeric_terminator_check`.
fn numeric_terminator_check(count: usize) -> io::Result<()> {
    let data = b"hello world, I'm not dead yet!\n";
    for backend in util::backends() {
        let (seen, received) = echo_exchange(backend, 1, Terminator::count(count), |chat| {
            chat.push(data)?;
            chat.push(QUIT)
        })?;
        assert_eq!(received, data, "{backend}: what the server received");
        // Exactly one found_terminator; after it the count stays at "no
        // terminator" and every later byte is collected (C8, D14).
        assert_eq!(seen.records, [&data[..count]], "{backend}: count {count}");
        assert_eq!(text(&seen.buffer), text(&data[count..]), "{backend}: collected after the count");
        assert_eq!(seen.events.iter().filter(|e| *e == "found").count(), 1, "{backend}");
    }
    Ok(())
}

/// T35: count terminator 1.
#[test]
fn count_of_one_ends_exactly_one_record_and_collects_the_rest() -> io::Result<()> {
    numeric_terminator_check(1)
}

/// T36: count terminator 6.
#[test]
fn count_of_six_ends_exactly_one_record_and_collects_the_rest() -> io::Result<()> {
    numeric_terminator_check(6)
}

/// T37: no terminator; with C6's three spellings of "none" (None, 0, b"").
#[test]
fn no_terminator_collects_everything_and_ends_no_record() -> io::Result<()> {
    let data = b"hello world, I'm not dead yet!\n";
    for backend in util::backends() {
        for terminator in [Terminator::None, Terminator::count(0), Terminator::bytes(b"")] {
            assert_eq!(terminator, Terminator::None, "0 and b\"\" mean no terminator (C6, D14)");
            let (seen, _) = echo_exchange(backend, 1, terminator, |chat| {
                chat.push(data)?;
                chat.push(QUIT)
            })?;
            assert!(seen.records.is_empty(), "{backend}: records {:?}", texts(&seen.records));
            assert_eq!(seen.buffer, data, "{backend}");
        }
    }
    Ok(())
}

/// T38: a SimpleProducer with buffer_size 8 (C18).
#[test]
fn simple_producer_output_is_sent_in_full_and_echoed_back_as_records() -> io::Result<()> {
    let data = b"hello world\nI'm not dead yet!\n";
    for backend in util::backends() {
        let (seen, received) = echo_exchange(backend, 1, Terminator::bytes(b"\n"), |chat| {
            chat.push_with_producer(SimpleProducer::new([&data[..], QUIT].concat(), 8))
        })?;
        assert_eq!(received, data, "{backend}: what the server received");
        assert_eq!(texts(&seen.records), ["hello world", "I'm not dead yet!"], "{backend}");
    }
    Ok(())
}

/// A SimpleProducer whose chunk size is larger than any data (up to
/// `usize::MAX`) hands the data out whole, then reports that it is done:
/// no overflow, no panic, and through a chat the bytes arrive in full.
#[test]
fn simple_producer_with_the_largest_buffer_size_hands_everything_out_once() -> io::Result<()> {
    use rolecore::Producer;
    for size in [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1] {
        let mut producer = SimpleProducer::new(b"abc".to_vec(), size);
        assert_eq!(producer.more(), b"abc", "buffer size {size}");
        assert_eq!(producer.more(), b"", "buffer size {size}: the producer is done");
        assert_eq!(producer.more(), b"", "buffer size {size}: and stays done");
    }
    let data = b"hello world\nI'm not dead yet!\n";
    for backend in util::backends() {
        let (seen, received) = echo_exchange(backend, 1, Terminator::bytes(b"\n"), |chat| {
            chat.push_with_producer(SimpleProducer::new([&data[..], QUIT].concat(), usize::MAX))
        })?;
        assert_eq!(received, data, "{backend}: what the server received");
        assert_eq!(texts(&seen.records), ["hello world", "I'm not dead yet!"], "{backend}");
    }
    Ok(())
}

/// T39: plain bytes passed to push_with_producer (a `Vec<u8>` is a Producer).
#[test]
fn plain_bytes_work_as_a_producer() -> io::Result<()> {
    let data = b"hello world\nI'm not dead yet!\n";
    for backend in util::backends() {
        let (seen, received) = echo_exchange(backend, 1, Terminator::bytes(b"\n"), |chat| {
            chat.push_with_producer([&data[..], QUIT].concat())
        })?;
        assert_eq!(received, data, "{backend}: what the server received");
        assert_eq!(texts(&seen.records), ["hello world", "I'm not dead yet!"], "{backend}");
    }
    Ok(())
}

/// T40: an empty line still calls found_terminator, with an empty record.
#[test]
fn an_empty_line_gives_an_empty_record() -> io::Result<()> {
    for backend in util::backends() {
        let (seen, _) = echo_exchange(backend, 1, Terminator::bytes(b"\n"), |chat| {
            chat.push(b"hello world\n\nI'm not dead yet!\n")?;
            chat.push(QUIT)
        })?;
        assert_eq!(texts(&seen.records), ["hello world", "", "I'm not dead yet!"], "{backend}");
    }
    Ok(())
}

/// T41: close_when_done queued before the connect: the client sends
/// everything, then closes; the server (held until then) received it all,
/// and no record comes back.
#[test]
fn close_when_done_sends_everything_then_closes_before_any_echo() -> io::Result<()> {
    let data = b"hello world\nI'm not dead yet!\n";
    for backend in util::backends() {
        let mut server = EchoServer::start_held(1);
        let seen = Shared::default();
        let mut map = util::map(backend);
        let mut chat = AsyncChat::new(Channel::tcp_v4()?.connect(server.addr)?, Terminator::bytes(b"\n"));
        chat.push(data)?;
        chat.push(QUIT)?;
        // asynchat closes as soon as the queue is out; rolecore's default
        // lingers until the server closes too (tests/lingering_close.rs),
        // and this server is held until the client has closed.
        chat.set_linger(None);
        chat.close_when_done();
        assert!(chat.is_closing());
        map.insert(chat, Recorder::new(&seen))?;
        let closed = util::run_until(&mut map, Map::is_empty);
        assert!(closed, "{backend}: close_when_done did not close within 5 s: {:?}", seen.borrow().events);
        server.release();
        let received = server.join();
        let seen = take_seen(&seen);
        assert!(seen.records.is_empty(), "{backend}: records {:?}", texts(&seen.records));
        // CPython checks len(s.buffer) > 0; everything arrived, exactly.
        assert_eq!(text(&received), text(data), "{backend}: what the server received");
        assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
        assert_eq!(seen.closes, 1, "{backend}: handle_close once; {:?}", seen.events);
    }
    Ok(())
}

/// T42: push takes any byte slice (asynchat: bytes, bytearray, memoryview).
/// asynchat's TypeError cases, `push(10)` and `push('unicode')`, do not
/// compile here: `push` takes `&[u8]`, and neither an integer nor a `&str`
/// is one (D15). Nothing to run for them.
#[test]
fn push_accepts_any_byte_slice() -> io::Result<()> {
    let data = b"bytes\n";
    for backend in util::backends() {
        let (seen, _) = echo_exchange(backend, 1, Terminator::bytes(b"\n"), |chat| {
            chat.push(data)?; // a byte-string literal
            let owned: Vec<u8> = data.to_vec();
            chat.push(&owned)?; // a Vec (bytearray)
            let boxed: Box<[u8]> = owned.into_boxed_slice();
            chat.push(&boxed[2..])?; // a view into another buffer (memoryview)
            chat.push(String::from("bytes\n").as_bytes())?; // text, made bytes explicitly
            chat.push(QUIT)
        })?;
        assert_eq!(texts(&seen.records), ["bytes", "bytes", "tes", "bytes"], "{backend}");
        assert_eq!(seen.queued_at_connect, Some(4 * data.len() - 2 + QUIT.len()), "{backend}");
    }
    Ok(())
}

/// T43 (#16133): a wake-up whose read finds nothing (WouldBlock) is not an
/// error. Two chats on two descriptors of one socket wake together for the
/// same bytes; the first to read takes them all, so the other's recv would
/// block. It must not reach handle_error nor close the chat.
#[test]
fn a_spurious_read_wakeup_is_not_an_error() -> io::Result<()> {
    const ROUNDS: usize = 20;
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair()?;
        let twin = ours.try_clone()?;
        let (seen_a, seen_b) = (Shared::default(), Shared::default());
        let mut map = util::map(backend);
        let a = map.insert(
            AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")),
            Recorder::new(&seen_a),
        )?;
        let b = map.insert(
            AsyncChat::new(Channel::try_from(twin)?, Terminator::bytes(b"\n")),
            Recorder::new(&seen_b),
        )?;
        let mut spurious = 0;
        for round in 0..ROUNDS {
            seen_a.borrow().readable_calls.set(0);
            seen_b.borrow().readable_calls.set(0);
            let before = seen_a.borrow().records.len() + seen_b.borrow().records.len();
            peer.write_all(format!("ping {round}\n").as_bytes())?;
            map.poll(Some(IO_TIMEOUT))?;
            let after = seen_a.borrow().records.len() + seen_b.borrow().records.len();
            assert_eq!(after, before + 1, "{backend}: round {round}: one chat got the line");
            // Both were dispatched (predicates are asked again after every
            // callback), and only one found data: the other woke for nothing.
            if seen_a.borrow().readable_calls.get() > 0 && seen_b.borrow().readable_calls.get() > 0 {
                spurious += 1;
            }
            assert!(map.contains(a) && map.contains(b), "{backend}: round {round}: a chat was closed");
        }
        assert_eq!(spurious, ROUNDS, "{backend}: both descriptors should wake for each line");
        for (name, seen) in [("a", &seen_a), ("b", &seen_b)] {
            let seen = seen.borrow();
            assert!(seen.errors.is_empty(), "{backend}: chat {name}: handle_error got {:?}", seen.errors);
            assert_eq!(seen.closes, 0, "{backend}: chat {name} closed: {:?}", seen.events);
        }
        let mut lines: Vec<String> =
            [&seen_a, &seen_b].iter().flat_map(|s| texts(&s.borrow().records)).collect();
        lines.sort_by_key(|l| l[5..].parse::<usize>().unwrap_or(usize::MAX));
        assert_eq!(lines, (0..ROUNDS).map(|r| format!("ping {r}")).collect::<Vec<_>>(), "{backend}");
    }
    Ok(())
}

/// T44: find_prefix_at_end, CPython's two values and the
/// verified ones (C19), then against its definition on random inputs.
#[test]
fn find_prefix_at_end_gives_the_longest_proper_prefix_at_the_end() {
    assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
    assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
    assert_eq!(find_prefix_at_end(b"abc", b"\n"), 0);
    assert_eq!(find_prefix_at_end(b"xaa", b"aab"), 2);
    assert_eq!(find_prefix_at_end(b"x\r\n\r", b"\r\n\r\n"), 3);
    assert_eq!(find_prefix_at_end(b"", b"ab"), 0);
    // asynchat returned -1 for an empty needle; a usize says 0, and an
    // empty terminator is Terminator::None anyway, so it is never asked.
    assert_eq!(find_prefix_at_end(b"abc", b""), 0);
    // Never the whole needle: a complete terminator is found, not carried.
    assert_eq!(find_prefix_at_end(b"xab", b"ab"), 0);
    for seed in 0..500 {
        let mut rng = Rng::new(seed);
        let (needle_len, haystack_len) = (rng.range(0, 5), rng.range(0, 8));
        let needle = rng.bytes(b"ab", needle_len);
        let haystack = rng.bytes(b"abx", haystack_len);
        assert_eq!(
            find_prefix_at_end(&haystack, &needle),
            naive_prefix_at_end(&haystack, &needle),
            "seed {seed}: {:?} in {:?}",
            text(&needle),
            text(&haystack)
        );
    }
}

// T45 (#11259): asynchat's set_terminator(-1) raised ValueError. A count is
// a `usize` here (`Terminator::count(usize)`; the variant holds a `NonZeroUsize`),
// so a negative count cannot be written; there is nothing to run.

// ---- D16: push after close_when_done ------------------------------------------------

/// Reads until the end (or reset) with a timeout, in a thread, after
/// writing `request`.
fn peer_exchange(mut peer: UnixStream, request: Vec<u8>) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        peer.set_read_timeout(Some(IO_TIMEOUT))?;
        peer.set_write_timeout(Some(IO_TIMEOUT))?;
        peer.write_all(&request)?;
        let mut got = Vec::new();
        peer.read_to_end(&mut got)?;
        Ok(got)
    })
}

/// D16: a push after close_when_done is an error of kind Other (asynchat
/// queued it behind the close and lost it, or closed inside push); what was
/// queued before still goes out, then the channel closes once.
#[test]
fn push_after_close_when_done_is_an_error_and_earlier_output_still_arrives() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, peer) = UnixStream::pair()?;
        let mut chat = AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n"));
        chat.push(b"before close\n")?;
        chat.push_with_producer(SimpleProducer::new(b"produced\n".to_vec(), 3))?;
        chat.close_when_done();
        let queued = chat.queued();
        let err = chat.push(b"after close\n").expect_err("push after close_when_done");
        assert_eq!(err.kind(), io::ErrorKind::Other, "{backend}: {err}");
        let err =
            chat.push_with_producer(b"after close\n".to_vec()).expect_err("producer after close_when_done");
        assert_eq!(err.kind(), io::ErrorKind::Other, "{backend}: {err}");
        assert_eq!(chat.queued(), queued, "{backend}: a refused push queued nothing");
        let reader = peer_exchange(peer, Vec::new());
        let seen = Shared::default();
        let mut map = util::map(backend);
        map.insert(chat, Recorder::new(&seen))?;
        let closed = util::run_until(&mut map, Map::is_empty);
        assert!(closed, "{backend}: close_when_done did not close within 5 s");
        let got = reader.join().expect("peer thread")?;
        assert_eq!(text(&got), "before close\nproduced\n", "{backend}");
        let seen = take_seen(&seen);
        assert_eq!(seen.closes, 1, "{backend}: {:?}", seen.events);
        assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
    }
    Ok(())
}

/// D16 inside a callback: found_terminator replies, calls close_when_done,
/// pushes again; that push fails (kind Other), the reply arrives, the
/// channel closes once.
#[test]
fn push_inside_a_callback_after_close_when_done_is_an_error() -> io::Result<()> {
    struct Bye {
        seen: Shared,
        late: Rc<RefCell<Option<io::Result<()>>>>,
    }
    impl ChatHandler for Bye {
        fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
            chat.take_incoming();
            chat.push(b"goodbye\n")?;
            chat.close_when_done();
            *self.late.borrow_mut() = Some(chat.push(b"lost\n"));
            Ok(())
        }
        fn handle_close(&mut self, _chat: &mut AsyncChat, _cx: &mut Ctx<'_>) {
            self.seen.borrow_mut().closes += 1;
        }
        fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
            self.seen.borrow_mut().errors.push(error);
            self.handle_close(chat, cx);
            cx.close();
        }
    }
    for backend in util::backends() {
        let (ours, peer) = UnixStream::pair()?;
        let reader = peer_exchange(peer, b"bye\n".to_vec());
        let seen = Shared::default();
        let late = Rc::new(RefCell::new(None));
        let mut map = util::map(backend);
        map.insert(
            AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")),
            Bye { seen: seen.clone(), late: late.clone() },
        )?;
        let closed = util::run_until(&mut map, Map::is_empty);
        assert!(closed, "{backend}: did not close within 5 s");
        let got = reader.join().expect("peer thread")?;
        assert_eq!(text(&got), "goodbye\n", "{backend}");
        match late.borrow_mut().take() {
            Some(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::Other, "{backend}: {e}"),
            other => panic!("{backend}: push after close_when_done gave {other:?}"),
        }
        let seen = take_seen(&seen);
        assert_eq!(seen.closes, 1, "{backend}");
        assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
    }
    Ok(())
}

// ---- bounded input -----------------------------------------------------------------

/// The peer's view once the chat is gone: the end of the stream, or a reset
/// (a socket closed with unread input resets its peer).
fn assert_peer_sees_close(peer: &mut UnixStream, ctx: &str) {
    peer.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    let mut buf = [0u8; 64];
    match peer.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{ctx}: the peer should see the chat closed, got {other:?}"),
    }
}

/// A line longer than `set_max_record(N)` without its terminator reaches
/// handle_error as a RecordTooLong; a line of exactly N bytes is fine. Run
/// with whole reads and with 4-byte reads (the record grows across reads).
#[test]
fn a_record_longer_than_max_record_reaches_handle_error_as_record_too_long() -> io::Result<()> {
    const LIMIT: usize = 16;
    for backend in util::backends() {
        for in_buffer_size in [65536, 4, 1] {
            let ctx = format!("{backend}, reads of {in_buffer_size}");
            let (ours, mut peer) = UnixStream::pair()?;
            let mut chat = AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\r\n"));
            chat.set_max_record(LIMIT);
            chat.set_in_buffer_size(in_buffer_size);
            assert_eq!(chat.max_record(), LIMIT);
            let exact = vec![b'e'; LIMIT];
            peer.write_all(&[&b"short\r\n"[..], &exact[..], &b"\r\n"[..], &[b'x'; LIMIT + 1][..]].concat())?;
            let seen = Shared::default();
            let mut map = util::map(backend);
            map.insert(chat, Recorder::new(&seen))?;
            let closed = util::run_until(&mut map, Map::is_empty);
            assert!(closed, "{ctx}: the chat was not closed within 5 s: {:?}", seen.borrow().events);
            let seen = take_seen(&seen);
            assert_eq!(seen.records, [b"short".to_vec(), exact.clone()], "{ctx}");
            assert_eq!(seen.errors.len(), 1, "{ctx}: {:?}", seen.errors);
            let err = &seen.errors[0];
            assert_eq!(RecordTooLong::from_io(err), Some(RecordTooLong { limit: LIMIT }), "{ctx}: {err:?}");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{ctx}");
            assert!(
                seen.buffer.len() <= LIMIT,
                "{ctx}: collected {} bytes past the limit",
                seen.buffer.len()
            );
            assert_eq!(seen.closes, 1, "{ctx}: {:?}", seen.events);
            assert_peer_sees_close(&mut peer, &ctx);
        }
    }
    Ok(())
}

/// The same overlong line with ChatHandler's default handle_error: it
/// closes the channel (after handle_close), and the loop goes on.
#[test]
fn default_handle_error_closes_a_chat_whose_record_is_too_long() -> io::Result<()> {
    struct Plain(Shared);
    impl ChatHandler for Plain {
        fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
            let record = chat.take_incoming();
            self.0.borrow_mut().records.push(record);
            Ok(())
        }
        fn handle_close(&mut self, _chat: &mut AsyncChat, _cx: &mut Ctx<'_>) {
            self.0.borrow_mut().closes += 1;
        }
    }
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair()?;
        let mut chat = AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n"));
        chat.set_max_record(8);
        peer.write_all(b"ok\n0123456789")?;
        let seen = Shared::default();
        let mut map = util::map(backend);
        let token = map.insert(chat, Plain(seen.clone()))?;
        let closed = util::run_until(&mut map, |m| !m.contains(token));
        assert!(closed, "{backend}: the default handle_error did not close the chat within 5 s");
        let seen = take_seen(&seen);
        assert_eq!(texts(&seen.records), ["ok"], "{backend}");
        assert_eq!(seen.closes, 1, "{backend}: handle_close once");
        assert_peer_sees_close(&mut peer, &backend.to_string());
    }
    Ok(())
}

// ---- E18: terminator switching, through a real socket ------------------------------

/// Writes `data` one byte per write, 1 ms apart, then closes.
fn trickle(mut peer: UnixStream, data: &'static [u8]) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        peer.set_write_timeout(Some(IO_TIMEOUT))?;
        for b in data {
            peer.write_all(std::slice::from_ref(b))?;
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })
}

const E18_STREAM: &[u8] = b"LEN 4\nabcdLEN 2\nxyz\n";
const E18_RECORDS: [&str; 5] = ["LEN 4", "abcd", "LEN 2", "xy", "z"];

/// E18: `LEN 4\nabcdLEN 2\nxyz\n` sent at once: each terminator set in
/// found_terminator applies at once to the bytes already read.
#[test]
fn a_terminator_changed_in_found_terminator_applies_to_bytes_already_received() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair()?;
        peer.write_all(E18_STREAM)?;
        drop(peer);
        let seen = Shared::default();
        let mut map = util::map(backend);
        let handler =
            Recorder::new(&seen).with_protocol(&Protocol::LenHeader(b"\n".to_vec())).with_default_collector();
        map.insert(AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")), handler)?;
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: not closed within 5 s");
        let seen = take_seen(&seen);
        assert_eq!(texts(&seen.records), E18_RECORDS, "{backend}");
        assert!(seen.buffer.is_empty(), "{backend}: left over {:?}", text(&seen.buffer));
        assert_eq!(seen.closes, 1, "{backend}");
        assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
    }
    Ok(())
}

/// E18 fed one byte per write from the peer: the same records.
#[test]
fn terminator_switching_gives_the_same_records_when_fed_one_byte_at_a_time() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, peer) = UnixStream::pair()?;
        let writer = trickle(peer, E18_STREAM);
        let seen = Shared::default();
        let mut map = util::map(backend);
        let handler =
            Recorder::new(&seen).with_protocol(&Protocol::LenHeader(b"\n".to_vec())).with_default_collector();
        map.insert(AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")), handler)?;
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: not closed within 5 s");
        writer.join().expect("writer thread")?;
        let seen = take_seen(&seen);
        assert_eq!(texts(&seen.records), E18_RECORDS, "{backend}");
        assert!(seen.buffer.is_empty(), "{backend}: left over {:?}", text(&seen.buffer));
        assert_eq!(seen.closes, 1, "{backend}");
        assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
    }
    Ok(())
}

// ---- P16: end of stream --------------------------------------------------------------

/// P16/E18: `line1\npartial`, then the peer closes: found_terminator once
/// for line1, `partial` collected but never ended, then handle_close once.
#[test]
fn at_end_of_stream_a_partial_record_is_collected_but_never_ended() -> io::Result<()> {
    for backend in util::backends() {
        for trickled in [false, true] {
            let ctx = format!("{backend}, {}", if trickled { "byte by byte" } else { "one write" });
            let (ours, mut peer) = UnixStream::pair()?;
            let writer = if trickled {
                Some(trickle(peer, b"line1\npartial"))
            } else {
                peer.write_all(b"line1\npartial")?;
                drop(peer);
                None
            };
            let seen = Shared::default();
            let mut map = util::map(backend);
            map.insert(
                AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")),
                Recorder::new(&seen),
            )?;
            assert!(util::run_until(&mut map, Map::is_empty), "{ctx}: not closed within 5 s");
            if let Some(w) = writer {
                w.join().expect("writer thread")?;
            }
            let seen = take_seen(&seen);
            assert_eq!(merged(&seen.events), ["collect line1", "found", "collect partial", "close"], "{ctx}");
            assert_eq!(texts(&seen.records), ["line1"], "{ctx}");
            assert_eq!(text(&seen.buffer), "partial", "{ctx}");
        }
    }
    Ok(())
}

/// P16: a trailing partial terminator (`\r` of `\r\n`) is held, never
/// collected, when the stream ends.
#[test]
fn at_end_of_stream_a_partial_terminator_is_never_collected() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair()?;
        peer.write_all(b"line1\r\npartial\r")?;
        drop(peer);
        let seen = Shared::default();
        let mut map = util::map(backend);
        map.insert(
            AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\r\n")),
            Recorder::new(&seen),
        )?;
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: not closed within 5 s");
        let seen = take_seen(&seen);
        assert_eq!(merged(&seen.events), ["collect line1", "found", "collect partial", "close"], "{backend}");
        assert_eq!(text(&seen.buffer), "partial", "{backend}");
    }
    Ok(())
}

// ---- properties ----------------------------------------------------------------------

/// The bytes records and terminators are drawn from: few, so terminators
/// and their prefixes occur often inside records.
const ALPHABET: &[u8] = b"abq\r\nx";

/// A stream to split, how to split it, and what the encoder put in it.
struct Scenario {
    initial: Terminator,
    protocol: Protocol,
    stream: Vec<u8>,
    /// The records the encoder meant, and the unterminated tail after them,
    /// when the encoding is known to be exact.
    encoded: Option<(Vec<Vec<u8>>, Vec<u8>)>,
}

/// What a split of a stream gave: ended records, the bytes collected after
/// the last one, and (Framer only) the bytes held as a possible terminator
/// start.
#[derive(Debug, PartialEq, Eq)]
struct Framing {
    records: Vec<Vec<u8>>,
    tail: Vec<u8>,
    pending: Vec<u8>,
}

fn random_terminator_bytes(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(1, 2) {
        let shapes: [&[u8]; 9] =
            [b"\n", b"\r\n", b"qqq", b"aab", b"aba", b"abab", b"\r\n\r\n", b"aaaa", b"qaq"];
        rng.pick(&shapes).to_vec()
    } else {
        let len = rng.range(1, 4);
        rng.bytes(ALPHABET, len)
    }
}

/// A record that `record ++ term` ends exactly at `term`'s first occurrence.
fn random_record(rng: &mut Rng, term: &[u8]) -> Vec<u8> {
    for _ in 0..100 {
        let len = rng.range(0, 12);
        let record = rng.bytes(ALPHABET, len);
        if naive_find(&[&record[..], term].concat(), term) == Some(record.len()) {
            return record;
        }
    }
    Vec::new()
}

/// A tail that does not contain `term`.
fn random_tail(rng: &mut Rng, term: &[u8]) -> Vec<u8> {
    for _ in 0..100 {
        let len = rng.range(0, 6);
        let tail = rng.bytes(ALPHABET, len);
        if !contains(&tail, term) {
            return tail;
        }
    }
    Vec::new()
}

fn fixed_bytes_scenario(rng: &mut Rng) -> Scenario {
    let term = random_terminator_bytes(rng);
    let records: Vec<Vec<u8>> = (0..rng.range(0, 10)).map(|_| random_record(rng, &term)).collect();
    let mut tail = if rng.chance(1, 2) { random_tail(rng, &term) } else { Vec::new() };
    if term.len() > 1 && rng.chance(1, 2) {
        // End on a proper prefix of the terminator: held, never collected.
        let with_prefix = [&tail[..], &term[..rng.range(1, term.len() - 1)]].concat();
        if !contains(&with_prefix, &term) {
            tail = with_prefix;
        }
    }
    let mut stream: Vec<u8> = records.iter().flat_map(|r| [&r[..], &term].concat()).collect();
    stream.extend_from_slice(&tail);
    Scenario {
        initial: Terminator::bytes(&term),
        protocol: Protocol::Fixed,
        stream,
        encoded: Some((records, tail)),
    }
}

fn count_scenario(rng: &mut Rng) -> Scenario {
    let n = rng.range(1, 20);
    let len = rng.range(0, 40);
    let stream = rng.bytes(ALPHABET, len);
    let encoded =
        if len >= n { (vec![stream[..n].to_vec()], stream[n..].to_vec()) } else { (vec![], stream.clone()) };
    Scenario { initial: Terminator::count(n), protocol: Protocol::Fixed, stream, encoded: Some(encoded) }
}

fn len_header_scenario(rng: &mut Rng) -> Scenario {
    let shapes: [&[u8]; 5] = [b"\n", b"\r\n", b"::", b"aab", b"qqq"];
    let header_term = rng.pick(&shapes).to_vec();
    let mut records = Vec::new();
    let mut stream = Vec::new();
    for _ in 0..rng.range(0, 6) {
        let n = rng.range(1, 30);
        let header = format!("LEN {n}").into_bytes();
        // The payload is counted, so it may hold the header terminator.
        let payload = rng.bytes(ALPHABET, n);
        stream.extend_from_slice(&header);
        stream.extend_from_slice(&header_term);
        stream.extend_from_slice(&payload);
        records.push(header);
        records.push(payload);
    }
    let encoded = if rng.chance(1, 3) && !stream.is_empty() {
        let cut = rng.below(stream.len());
        stream.truncate(cut);
        None // the reference model says what a cut stream gives
    } else {
        Some((records, Vec::new()))
    };
    Scenario {
        initial: Terminator::bytes(&header_term),
        protocol: Protocol::LenHeader(header_term),
        stream,
        encoded,
    }
}

fn switching_scenario(rng: &mut Rng) -> Scenario {
    let choices: Vec<Terminator> = (0..rng.range(1, 4))
        .map(|_| {
            if rng.chance(1, 3) {
                Terminator::count(rng.range(1, 6))
            } else {
                Terminator::bytes(&random_terminator_bytes(rng))
            }
        })
        .collect();
    let len = rng.range(0, 200);
    let stream = rng.bytes(ALPHABET, len);
    let initial = choices[0].clone();
    Scenario { initial, protocol: Protocol::Switching(choices), stream, encoded: None }
}

fn random_scenario(rng: &mut Rng) -> Scenario {
    match rng.below(5) {
        0 | 1 => fixed_bytes_scenario(rng),
        2 => count_scenario(rng),
        3 => len_header_scenario(rng),
        _ => switching_scenario(rng),
    }
}

/// Random chunks, sometimes with empty ones between (which must change
/// nothing).
fn split_randomly<'a>(rng: &mut Rng, data: &'a [u8]) -> Vec<&'a [u8]> {
    let max = rng.pick(&[1, 2, 3, 5, 8, data.len().max(1)]);
    let empties = rng.chance(1, 4);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if empties && rng.chance(1, 4) {
            chunks.push(&rest[..0]);
        }
        let n = rng.range(1, max).min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    chunks
}

/// Feeds `chunks` to a Framer whose callback follows the scenario's protocol.
fn frame(s: &Scenario, chunks: &[&[u8]]) -> Framing {
    let mut framer = Framer::new(s.initial.clone());
    let mut policy = Policy::new(&s.protocol);
    let mut records = Vec::new();
    let mut current = Vec::new();
    let mut empty_pieces = 0;
    for chunk in chunks {
        framer
            .feed(chunk, |piece, terminator| {
                match piece {
                    Framed::Data(d) => {
                        empty_pieces += usize::from(d.is_empty());
                        current.extend_from_slice(d);
                    }
                    Framed::End => {
                        let record = std::mem::take(&mut current);
                        if let Some(next) = policy.after_record(&record) {
                            *terminator = next;
                        }
                        records.push(record);
                    }
                }
                Ok(())
            })
            .expect("a feed without a limit cannot fail");
    }
    assert_eq!(empty_pieces, 0, "the Framer reported empty data");
    Framing { records, tail: current, pending: framer.pending().to_vec() }
}

/// The reference model: look for the terminator in the whole stream, record
/// by record, as the C8 description says, without any buffering.
fn reference(s: &Scenario) -> Framing {
    let mut policy = Policy::new(&s.protocol);
    let mut terminator = s.initial.clone();
    let mut pos = 0;
    let mut records = Vec::new();
    loop {
        let rest = &s.stream[pos..];
        let end = match &terminator {
            Terminator::None => None,
            Terminator::Count(n) => (rest.len() >= n.get()).then_some((n.get(), 0)),
            Terminator::Bytes(t) => naive_find(rest, t).map(|i| (i, t.len())),
        };
        let Some((len, skip)) = end else { break };
        let record = rest[..len].to_vec();
        pos += len + skip;
        if matches!(terminator, Terminator::Count(_)) {
            terminator = Terminator::None; // a completed count stays at "none"
        }
        if let Some(next) = policy.after_record(&record) {
            terminator = next;
        }
        records.push(record);
    }
    let rest = &s.stream[pos..];
    let held = match &terminator {
        Terminator::Bytes(t) => naive_prefix_at_end(rest, t),
        _ => 0,
    };
    let (tail, pending) = rest.split_at(rest.len() - held);
    Framing { records, tail: tail.to_vec(), pending: pending.to_vec() }
}

fn check_framer(seed: u64, s: &Scenario, rng: &mut Rng) {
    let ctx = || format!("seed {seed}: {:?} {:?} over {:?}", s.initial, s.protocol, text(&s.stream));
    let model = reference(s);
    if let Some((records, tail)) = &s.encoded {
        assert_eq!(&model.records, records, "{}: the model disagrees with the encoder", ctx());
        assert_eq!([&model.tail[..], &model.pending].concat(), *tail, "{}", ctx());
    }
    let whole = frame(s, &[&s.stream]);
    assert_eq!(whole, model, "{}: fed whole", ctx());
    let chunks = split_randomly(rng, &s.stream);
    assert_eq!(
        frame(s, &chunks),
        model,
        "{}: fed as {:?}",
        ctx(),
        chunks.iter().map(|c| text(c)).collect::<Vec<_>>()
    );
    let bytes: Vec<&[u8]> = s.stream.chunks(1).collect();
    assert_eq!(frame(s, &bytes), model, "{}: fed byte by byte", ctx());
}

/// Any split of any stream gives the Framer the same records, tail and held
/// bytes as feeding it whole, and as the reference model; and the model
/// gives back what the encoder put in.
#[test]
fn framer_gives_the_same_records_however_the_stream_is_split() {
    for seed in 0..500 {
        let mut rng = Rng::new(seed);
        let scenario = random_scenario(&mut rng);
        check_framer(seed, &scenario, &mut rng);
    }
}

/// Terminators changed mid-stream inside the callback: `LEN n` headers
/// followed by n counted bytes, then back to the header terminator.
#[test]
fn framer_follows_terminators_changed_mid_stream_however_split() {
    for seed in 0..500 {
        let mut rng = Rng::new(1_000_000 + seed);
        let scenario = len_header_scenario(&mut rng);
        check_framer(seed, &scenario, &mut rng);
    }
}

/// The same property through a real socketpair and AsyncChat: the peer
/// writes at random boundaries (with short pauses), the chat reads in a
/// random buffer size, on every backend. AsyncChat gives the model's records
/// and collects the model's tail (never the held partial terminator, P16).
#[test]
fn async_chat_gives_the_model_records_over_a_socket_with_random_write_boundaries() -> io::Result<()> {
    for backend in util::backends() {
        for seed in 0..30 {
            let mut rng = Rng::new(2_000_000 + seed);
            let s = random_scenario(&mut rng);
            let ctx = format!(
                "{backend}, seed {seed}: {:?} {:?} over {:?}",
                s.initial,
                s.protocol,
                text(&s.stream)
            );
            let model = reference(&s);
            let (ours, mut peer) = UnixStream::pair()?;
            let stream = s.stream.clone();
            let mut peer_rng = Rng::new(rng.next());
            let writer = thread::spawn(move || -> io::Result<()> {
                peer.set_write_timeout(Some(IO_TIMEOUT))?;
                for chunk in split_randomly(&mut peer_rng, &stream) {
                    peer.write_all(chunk)?;
                    if peer_rng.chance(1, 3) {
                        thread::sleep(Duration::from_micros(200));
                    }
                }
                Ok(())
            });
            let mut chat = AsyncChat::new(Channel::try_from(ours)?, s.initial.clone());
            chat.set_in_buffer_size(rng.pick(&[1, 2, 3, 5, 16, 65536]));
            let seen = Shared::default();
            let mut map = util::map(backend);
            map.insert(chat, Recorder::new(&seen).with_protocol(&s.protocol))?;
            assert!(util::run_until(&mut map, Map::is_empty), "{ctx}: not closed within 5 s");
            writer.join().expect("writer thread")?;
            let seen = take_seen(&seen);
            assert_eq!(seen.records, model.records, "{ctx}");
            assert_eq!(seen.buffer, model.tail, "{ctx}");
            assert_eq!(seen.empty_pieces, 0, "{ctx}: collect_incoming_data got empty data");
            assert_eq!(seen.closes, 1, "{ctx}");
            assert!(seen.errors.is_empty(), "{ctx}: {:?}", seen.errors);
        }
    }
    Ok(())
}

// ---- output side ------------------------------------------------------------------------

/// Answers the first record by running `reply` (pushes), then
/// close_when_done, so the peer reads the reply to its end.
struct Replier {
    seen: Shared,
    reply: Option<Reply>,
}

/// What a [`Replier`] pushes in its one `found_terminator`.
type Reply = Box<dyn FnOnce(&mut AsyncChat) -> io::Result<()>>;

impl ChatHandler for Replier {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        if let Some(reply) = self.reply.take() {
            reply(chat)?;
            chat.close_when_done();
        }
        Ok(())
    }
    fn handle_close(&mut self, _chat: &mut AsyncChat, _cx: &mut Ctx<'_>) {
        self.seen.borrow_mut().closes += 1;
    }
    fn handle_error(&mut self, chat: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        self.seen.borrow_mut().errors.push(error);
        self.handle_close(chat, cx);
        cx.close();
    }
}

/// Runs a Replier answering the peer's `request` line; returns what the
/// peer read to the end.
fn reply_exchange(
    backend: Backend,
    reply: impl FnOnce(&mut AsyncChat) -> io::Result<()> + 'static,
) -> io::Result<Vec<u8>> {
    let (ours, peer) = UnixStream::pair()?;
    let reader = peer_exchange(peer, b"go\n".to_vec());
    let seen = Shared::default();
    let mut map = util::map(backend);
    map.insert(
        AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n")),
        Replier { seen: seen.clone(), reply: Some(Box::new(reply)) },
    )?;
    let closed = util::run_until(&mut map, Map::is_empty);
    assert!(closed, "{backend}: the reply was not sent and closed within 5 s");
    let got = reader.join().expect("peer thread")?;
    let seen = take_seen(&seen);
    assert!(seen.errors.is_empty(), "{backend}: {:?}", seen.errors);
    assert_eq!(seen.closes, 1, "{backend}: handle_close once");
    Ok(got)
}

/// 1000 pushes of 100 bytes inside one found_terminator all reach the peer,
/// in order, intact.
#[test]
fn a_thousand_pushes_in_one_callback_reach_the_peer_in_order() -> io::Result<()> {
    let piece = |i: usize| {
        let mut p = format!("{i:04}:").into_bytes();
        p.resize(99, b'a' + (i % 26) as u8);
        p.push(b'\n');
        p
    };
    let expected: Vec<u8> = (0..1000).flat_map(piece).collect();
    for backend in util::backends() {
        let queued = Rc::new(Cell::new(0));
        let q = queued.clone();
        let got = reply_exchange(backend, move |chat| {
            for i in 0..1000 {
                chat.push(&piece(i))?;
            }
            q.set(chat.queued());
            Ok(())
        })?;
        assert_eq!(queued.get(), 100_000, "{backend}: queued after the pushes");
        assert!(
            got == expected,
            "{backend}: got {} of {} bytes, first difference at {:?}",
            got.len(),
            expected.len(),
            first_difference(&got, &expected)
        );
    }
    Ok(())
}

/// A 4 MiB reply from a SimpleProducer (asynchat's default 512-byte chunks)
/// reaches the peer intact, then the chat closes.
#[test]
fn a_four_mib_simple_producer_reply_reaches_the_peer_intact() -> io::Result<()> {
    let mut rng = Rng::new(4);
    let data: Vec<u8> = (0..4 * 1024 * 1024).map(|_| rng.next() as u8).collect();
    for backend in util::backends() {
        let reply = data.clone();
        let got = reply_exchange(backend, move |chat| {
            chat.push_with_producer(SimpleProducer::new(reply, SimpleProducer::DEFAULT_BUFFER_SIZE))
        })?;
        assert!(
            got == data,
            "{backend}: got {} of {} bytes, first difference at {:?}",
            got.len(),
            data.len(),
            first_difference(&got, &data)
        );
    }
    Ok(())
}

/// A push that would queue more than `set_output_limit` fails with
/// StorageFull and queues nothing; a push up to the limit exactly is fine;
/// what was queued arrives intact.
#[test]
fn push_past_the_output_limit_is_storage_full_and_queues_nothing() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, peer) = UnixStream::pair()?;
        let mut chat = AsyncChat::new(Channel::try_from(ours)?, Terminator::bytes(b"\n"));
        chat.set_output_limit(1000);
        assert_eq!(chat.output_limit(), 1000);
        chat.push(&[b'a'; 600])?;
        let err = chat.push(&[b'b'; 401]).expect_err("push past the limit");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{backend}: {err}");
        let full = err.get_ref().and_then(|e| e.downcast_ref::<BufferFull>());
        assert!(
            matches!(full, Some(BufferFull { queued: 600, requested: 401, limit: 1000 })),
            "{backend}: {err:?}"
        );
        assert_eq!(chat.queued(), 600, "{backend}: the refused push queued nothing");
        chat.push(&[b'c'; 400])?; // exactly the limit
        assert_eq!(chat.queued(), 1000);
        chat.close_when_done();
        let reader = peer_exchange(peer, Vec::new());
        let seen = Shared::default();
        let mut map = util::map(backend);
        map.insert(chat, Recorder::new(&seen))?;
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: not closed within 5 s");
        let got = reader.join().expect("peer thread")?;
        assert_eq!(got, [vec![b'a'; 600], vec![b'c'; 400]].concat(), "{backend}");
        assert_eq!(take_seen(&seen).closes, 1, "{backend}");
    }
    Ok(())
}
