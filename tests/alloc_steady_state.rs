//! No allocation per event in steady state, proved with a counting allocator.
//!
//! The echo server of `examples/echo_server.rs` (a listener with an
//! `AcceptHandler`, each connection a `Buffered` with a `StreamHandler`) runs
//! on this test's thread, on every backend, while a client thread makes
//! 1,000 round trips of 64 bytes to warm up and then 10,000 more. Only the
//! loop's thread is counted (a thread-local switch), and only during the
//! 10,000: every allocation, reallocation and deallocation there fails the
//! test.
//!
//! To see where an allocation comes from, run with
//! `ROLECORE_ALLOC_BACKTRACE=1 cargo test --test alloc_steady_state -- --nocapture`:
//! the first few counted allocations print a backtrace.
//!
//! The same test then runs asynchat's record splitting (`Framer`, the engine
//! under `AsyncChat`) over RESP-style records that switch between a line
//! terminator and a byte count for every record, as `examples/resp_server.rs`
//! does: 10,000 records after a warm-up, none of which may allocate.
//!
//! A second test echoes records through an `AsyncChat` whose handler
//! formats each reply in `cx.buffer()` while the chat's own read has the
//! map's buffer out: 100 round trips after a warm-up, none of which may
//! allocate.
//!
//! These tests count; they do not time anything.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::thread::LocalKey;
use std::time::{Duration, Instant};

use rolecore::chat::{Framed, Framer};
use rolecore::{
    AcceptHandler, Address, Backend, Buffered, Channel, Connected, Ctx, Map, StreamHandler, Terminator,
};

// ---- the counting allocator ---------------------------------------------------

struct Counting;

thread_local! {
    /// Counting is on for this thread.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Inside the allocator's own reporting (its allocations are not counted).
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

thread_local! {
    // What the counting thread did. Per thread, as the switch is: the tests
    // of this file run at once on threads of their own, and counters shared
    // by all of them were zeroed by one test while another counted.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static REALLOCS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Adds `n` to this thread's `counter` (nothing while the thread exits).
fn add(counter: &'static LocalKey<Cell<u64>>, n: u64) {
    let _ = counter.try_with(|c| c.set(c.get() + n));
}

/// This thread's `counter`.
fn get(counter: &'static LocalKey<Cell<u64>>) -> u64 {
    counter.with(Cell::get)
}

/// Zeroes this thread's counters.
fn reset_counters() {
    for counter in [&ALLOCS, &REALLOCS, &DEALLOCS, &BYTES] {
        counter.with(|c| c.set(0));
    }
}
/// Backtraces wanted (`ROLECORE_ALLOC_BACKTRACE` set), read once before
/// counting starts: reading the environment allocates.
static BACKTRACES: AtomicBool = AtomicBool::new(false);
static BACKTRACES_PRINTED: AtomicU64 = AtomicU64::new(0);

fn counted() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false) && !REPORTING.try_with(Cell::get).unwrap_or(true)
}

fn report(what: &str, size: usize) {
    if BACKTRACES.load(SeqCst) && BACKTRACES_PRINTED.fetch_add(1, SeqCst) < 5 {
        let _ = REPORTING.try_with(|r| r.set(true));
        eprintln!("counted {what} of {size} bytes on the loop's thread:\n{}", Backtrace::force_capture());
        let _ = REPORTING.try_with(|r| r.set(false));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches only atomics and const-initialised thread-locals, which
// do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            add(&ALLOCS, 1);
            add(&BYTES, layout.size() as u64);
            report("allocation", layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            add(&ALLOCS, 1);
            add(&BYTES, layout.size() as u64);
            report("zeroed allocation", layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            add(&REALLOCS, 1);
            add(&BYTES, new_size as u64);
            report("reallocation", new_size);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            add(&DEALLOCS, 1);
            report("deallocation", layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the echo server, as examples/echo_server.rs has it ---------------------------

struct EchoHandler;

impl StreamHandler<Buffered<Connected>> for EchoHandler {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer(); // the loop's read buffer, reused for every read
        let n = ch.recv(buf)?;
        ch.send(&buf[..n])
    }
}

struct EchoServer;

impl AcceptHandler for EchoServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        cx.insert(Buffered::new(conn), EchoHandler)?;
        Ok(())
    }
}

// ---- the test -----------------------------------------------------------------

const WARM_UP: usize = 1_000;
const MEASURED: usize = 10_000;
const MESSAGE: usize = 64;

#[derive(Default)]
struct Flags {
    /// The client finished its warm-up.
    warm: AtomicBool,
    /// The loop thread counts from now on.
    counting: AtomicBool,
    /// The client finished the measured round trips.
    done: AtomicBool,
    /// The loop thread stopped counting: the client may hang up.
    stopped: AtomicBool,
}

fn round_trips(stream: &mut TcpStream, n: usize, seq: &mut u64) -> io::Result<()> {
    let mut out = [0u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    for _ in 0..n {
        for (j, b) in out.iter_mut().enumerate() {
            *b = (*seq as u8).wrapping_mul(31).wrapping_add(j as u8);
        }
        stream.write_all(&out)?;
        stream.read_exact(&mut back)?;
        assert_eq!(out, back, "round trip {seq}: the echo differs");
        *seq += 1;
    }
    Ok(())
}

fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flag.load(SeqCst) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_micros(100));
    }
}

fn client(addr: SocketAddr, flags: Arc<Flags>) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut seq = 0;
    round_trips(&mut stream, WARM_UP, &mut seq)?;
    flags.warm.store(true, SeqCst);
    wait_for(&flags.counting, "the loop to start counting");
    round_trips(&mut stream, MEASURED, &mut seq)?;
    flags.done.store(true, SeqCst);
    wait_for(&flags.stopped, "the loop to stop counting");
    Ok(())
}

struct Counts {
    allocs: u64,
    reallocs: u64,
    deallocs: u64,
    bytes: u64,
}

/// Runs the echo server on this thread until the client is done; returns what
/// the loop's thread allocated during the measured round trips.
fn measure(backend: Backend) -> Counts {
    let listener = (|| -> io::Result<_> { Ok(Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(16)?) })()
        .expect("listen on loopback");
    let addr = listener.local_addr().expect("local address").inet().expect("an inet address");
    let mut map = Map::with_backend(backend).expect("create the map");
    map.insert(listener, EchoServer).expect("insert the listener");

    let flags = Arc::new(Flags::default());
    let client = thread::spawn({
        let flags = Arc::clone(&flags);
        move || client(addr, flags)
    });

    reset_counters();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counting = false;
    loop {
        assert!(Instant::now() < deadline, "{backend}: the exchange did not finish in 60 s");
        if !counting && flags.warm.load(SeqCst) {
            counting = true;
            COUNTING.with(|c| c.set(true));
            flags.counting.store(true, SeqCst);
        }
        if flags.done.load(SeqCst) {
            COUNTING.with(|c| c.set(false));
            break;
        }
        map.poll(Some(Duration::from_millis(5))).expect("poll");
        assert!(!client.is_finished() || flags.done.load(SeqCst), "{backend}: the client failed early");
    }
    let counts = Counts {
        allocs: get(&ALLOCS),
        reallocs: get(&REALLOCS),
        deallocs: get(&DEALLOCS),
        bytes: get(&BYTES),
    };
    flags.stopped.store(true, SeqCst);
    client.join().expect("the client thread").expect("the client's round trips");
    counts
}

/// The counter sees an allocation made on a counting thread, and only there.
fn counter_counts() {
    let backtraces = BACKTRACES.swap(false, SeqCst);
    reset_counters();
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(vec![7u8; 100]));
    COUNTING.with(|c| c.set(false));
    drop(std::hint::black_box(vec![7u8; 100]));
    assert_eq!((get(&ALLOCS), get(&DEALLOCS), get(&BYTES)), (1, 1, 100));
    BACKTRACES.store(backtraces, SeqCst);
}

/// Splits `rounds` batches of 100 records `$3` / `foo` (a line ended by
/// `line`, then a count of 5: the value and its `\r\n`); returns the allocations, reallocations and deallocations made
/// during the last `counted` batches.
fn framer_switching_terminators(line: &Terminator, rounds: usize, counted: usize) -> (u64, u64, u64) {
    let line_end = line.as_bytes().expect("a line terminator");
    let batch = [b"$3", line_end, b"foo\r\n"].concat().repeat(100);
    let mut framer = Framer::new(line.clone());
    let mut records = 0usize;
    reset_counters();
    for round in 0..rounds {
        if round == rounds - counted {
            COUNTING.with(|c| c.set(true));
        }
        framer
            .feed(&batch, |piece, terminator| {
                if let Framed::End = piece {
                    records += 1;
                    *terminator = match terminator {
                        // A line ended: a bulk value of 3 bytes and its CRLF.
                        Terminator::Bytes(_) => Terminator::count(5),
                        // The value ended: back to lines.
                        _ => line.clone(),
                    };
                }
                Ok(())
            })
            .expect("the records split");
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(records, rounds * 200, "every line and every value ended a record");
    (get(&ALLOCS), get(&REALLOCS), get(&DEALLOCS))
}

#[test]
fn no_allocation_per_event_in_steady_state() {
    BACKTRACES.store(std::env::var_os("ROLECORE_ALLOC_BACKTRACE").is_some(), SeqCst);
    counter_counts();
    let mut failures = Vec::new();
    for backend in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        let c = measure(backend);
        eprintln!(
            "{backend}: {MEASURED} echoed messages: {} allocations, {} reallocations, \
             {} deallocations ({} bytes) on the loop's thread",
            c.allocs, c.reallocs, c.deallocs, c.bytes
        );
        if c.allocs + c.reallocs + c.deallocs > 0 {
            failures.push(format!(
                "{backend}: {} allocations, {} reallocations, {} deallocations in {MEASURED} round trips",
                c.allocs, c.reallocs, c.deallocs
            ));
        }
    }
    for (name, line) in [
        ("Terminator::CRLF", Terminator::CRLF),
        ("Terminator::bytes(b\"\\r\\n\")", Terminator::bytes(b"\r\n")),
        ("Terminator::from_static(b\"\\r\\n\\r\\n\")", Terminator::from_static(b"\r\n\r\n")),
    ] {
        // 60 batches of 200 records; the last 50 (10,000 records) counted.
        let (allocs, reallocs, deallocs) = framer_switching_terminators(&line, 60, 50);
        eprintln!(
            "framer, {name} and counts: 10000 records: {allocs} allocations, {reallocs} reallocations, \
             {deallocs} deallocations"
        );
        if allocs + reallocs + deallocs > 0 {
            failures.push(format!("framer with {name}: {allocs} allocations in 10,000 records"));
        }
    }
    assert!(
        failures.is_empty(),
        "the loop allocated in steady state (rerun with ROLECORE_ALLOC_BACKTRACE=1 -- --nocapture \
         to see where): {failures:?}"
    );
}

// ---- a chat whose callbacks borrow the map's buffer ------------------------------

/// Echoes each 64-byte record, formatted in the map's buffer: the chat has
/// lent that buffer to its own read, so the handler's `cx.buffer()` needs
/// another one.
struct BufferBorrowingChat {
    record: Vec<u8>,
}

impl rolecore::ChatHandler for BufferBorrowingChat {
    fn collect_incoming_data(&mut self, data: &[u8], _: &mut rolecore::AsyncChat) -> io::Result<()> {
        self.record.extend_from_slice(data);
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut rolecore::AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = self.record.len();
        buf[..n].copy_from_slice(&self.record);
        self.record.clear();
        // A count is used up once it ends a record (asynchat's rule).
        chat.set_terminator(Terminator::count(MESSAGE));
        chat.push(&buf[..n])
    }
}

/// Round trips of one record through an `AsyncChat` whose handler uses
/// `cx.buffer()`; returns the allocations, reallocations and deallocations
/// of the loop's thread during the last `counted` of `rounds`.
fn chat_borrowing_the_map_buffer(rounds: usize, counted: usize) -> (u64, u64, u64) {
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    // The chat may send the echo only on the next wake-up: the peer polls
    // the map and reads without blocking, in turn, up to a deadline.
    theirs.set_nonblocking(true).expect("a non-blocking peer");
    let mut map = Map::new().expect("create the map");
    let chat = rolecore::AsyncChat::new(Channel::try_from(ours).expect("adopt"), Terminator::count(MESSAGE));
    map.insert(chat, BufferBorrowingChat { record: Vec::with_capacity(MESSAGE) }).expect("insert the chat");
    reset_counters();
    for round in 0..rounds {
        if round == rounds - counted {
            COUNTING.with(|c| c.set(true));
        }
        let out = [round as u8; MESSAGE];
        theirs.write_all(&out).expect("send a record");
        let mut back = [0u8; MESSAGE];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < MESSAGE {
            assert!(Instant::now() < deadline, "record {round}: no echo in 10 s");
            map.poll(Some(Duration::from_millis(5))).expect("poll");
            match theirs.read(&mut back[got..]) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read the echo: {e}"),
            }
        }
        assert_eq!(out, back, "record {round}: the echo differs");
    }
    COUNTING.with(|c| c.set(false));
    (get(&ALLOCS), get(&REALLOCS), get(&DEALLOCS))
}

#[test]
fn no_allocation_per_record_when_a_chat_handler_borrows_the_map_buffer() {
    BACKTRACES.store(std::env::var_os("ROLECORE_ALLOC_BACKTRACE").is_some(), SeqCst);
    let (allocs, reallocs, deallocs) = chat_borrowing_the_map_buffer(200, 100);
    assert_eq!(
        (allocs, reallocs, deallocs),
        (0, 0, 0),
        "a chat handler's cx.buffer() allocated in 100 round trips (allocations, reallocations, \
         deallocations)"
    );
}
