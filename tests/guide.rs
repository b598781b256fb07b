//! The samples of `docs/guide.md`, as tests. Every ```rust block of the guide
//! is an excerpt of this file, and `the_guide_quotes_this_file` checks it: if
//! a sample here changes, the guide must follow, and the other way round.
//!
//! The guide's samples use the default features (`signals` among them).
#![cfg(feature = "signals")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::signal::{SIGINT, SIGTERM};
use rolecore::sim::{Sim, SimConfig};
use rolecore::{
    AcceptHandler, Address, AsyncChat, Buffered, Channel, ChatHandler, Connected, Ctx, Kept, Listening,
    LoopOptions, Map, StreamHandler, Terminator, Waker,
};

// ---- chapter 1: the echo server, line by line -----------------------------------

/// One connection of the echo server: every byte read is sent back.
struct Echo;

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?; // 0: the peer closed, and the loop calls handle_close
        ch.send(&buf[..n]) // what the socket cannot take now is queued
    }
}

/// The listening socket of the echo server: each connection joins the loop.
struct EchoServer;

impl AcceptHandler for EchoServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        cx.insert(Buffered::new(conn), Echo)?;
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.set_reuse_addr()?.bind("127.0.0.1:8080")?.listen(128)?;
    let mut map = Map::new()?;
    map.insert(listener, EchoServer)?;
    map.run(LoopOptions::default()) // until the map is empty: for a server, until it shuts down
}

#[test]
fn the_echo_server_echoes() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?; // port 0: any free port
    let addr = listener.local_addr()?.inet().expect("an IP address");
    let mut map = Map::new()?;
    map.insert(listener, EchoServer)?;

    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"hello, world")?;
        stream.shutdown(Shutdown::Write)?; // no more to say: the server closes after the echo
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed)?;
        Ok(echoed)
    });
    // The loop runs on this thread, in short iterations, until the client is done.
    assert!(map.run_until(Duration::from_secs(5), |_| client.is_finished())?);
    assert_eq!(client.join().unwrap()?, b"hello, world");
    assert_eq!(map.len(), 1); // the listener; the connection closed after its echo
    Ok(())
}

// ---- chapter 3: a line protocol with AsyncChat ----------------------------------

/// The longest line the server takes, counting the `\r` of a `\r\n` ending.
const MAX_LINE: usize = 64;

/// Answers each line in capitals; `quit` ends the conversation.
struct Shout;

impl ChatHandler for Shout {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming(); // the record, without its terminator
        if line.last() == Some(&b'\r') {
            line.pop(); // telnet and `nc -C` end lines with \r\n
        }
        if line == b"quit" {
            chat.push(b"bye\n")?;
            chat.close_when_done(); // closes once "bye" is sent
            return Ok(());
        }
        line.make_ascii_uppercase();
        line.push(b'\n');
        chat.push(&line)
    }

    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        // The chat drops the line up to its `\n`; the connection stays.
        chat.push(format!("! line too long (max {MAX_LINE} bytes)\n").as_bytes())
    }
}

struct ShoutServer;

impl AcceptHandler for ShoutServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, Terminator::bytes(b"\n"));
        chat.set_max_record(MAX_LINE); // a longer line gets handle_record_too_long
        cx.insert(chat, Shout)?;
        Ok(())
    }
}

#[test]
fn the_line_server_answers_refuses_and_says_bye() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let addr = listener.local_addr()?.inet().expect("an IP address");
    let mut map = Map::new()?;
    map.insert(listener, ShoutServer)?;

    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"hello\r\n")?;
        stream.write_all(&[b'x'; 100])?; // a line too long...
        stream.write_all(b"\nstill here\nquit\nnever read\n")?; // ...and more lines
        let mut answers = Vec::new();
        stream.read_to_end(&mut answers)?; // until the server closes, after "bye"
        Ok(answers)
    });
    assert!(map.run_until(Duration::from_secs(5), |_| client.is_finished())?);
    let answers = client.join().unwrap()?;
    assert_eq!(answers, b"HELLO\n! line too long (max 64 bytes)\nSTILL HERE\nbye\n");
    Ok(())
}

// ---- chapter 4: a RESP server with async_chat ------------------------------------

/// The data set, shared by every connection of one loop (one thread: no lock).
type Store = Rc<RefCell<HashMap<Vec<u8>, Vec<u8>>>>;

/// The longest bulk string a request may carry.
const MAX_BULK: usize = 1 << 20;
/// The most arguments a request may carry.
const MAX_ARGS: usize = 1024;

/// What the next record of a request is. A request is `*N\r\n`, then N
/// times `$LEN\r\n` and LEN bytes followed by `\r\n`.
enum Expect {
    /// `*N`, a line: the number of arguments.
    Array,
    /// `$LEN`, a line: the length of the next argument.
    Header,
    /// LEN bytes and `\r\n`: a count terminator, as the bytes may hold `\r\n`.
    Body,
}

/// One connection: PING, ECHO, SET and GET.
struct Resp {
    store: Store,
    expect: Expect,
    /// Arguments still to come in this request.
    left: usize,
    /// Arguments read so far.
    args: Vec<Vec<u8>>,
}

impl ChatHandler for Resp {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            return Ok(()); // after a protocol error: nothing more is parsed
        }
        let record = chat.take_incoming();
        match self.expect {
            Expect::Array => match number_after(b'*', &record) {
                Some(0) => {} // an empty request: nothing to do
                Some(n) if n <= MAX_ARGS => {
                    self.left = n;
                    self.expect = Expect::Header;
                }
                _ => return self.protocol_error(chat, "expected '*' and a count"),
            },
            Expect::Header => match number_after(b'$', &record) {
                Some(len) if len <= MAX_BULK => {
                    self.expect = Expect::Body;
                    // The next record is exactly the payload and its \r\n.
                    chat.set_terminator(Terminator::count(len + 2));
                    return Ok(());
                }
                _ => return self.protocol_error(chat, "expected '$' and a length"),
            },
            Expect::Body => {
                let Some(arg) = record.strip_suffix(b"\r\n") else {
                    return self.protocol_error(chat, "a bulk string must end with \\r\\n");
                };
                self.args.push(arg.to_vec());
                self.left -= 1;
                self.expect = Expect::Header;
                if self.left == 0 {
                    let args = std::mem::take(&mut self.args);
                    chat.push(&self.execute(&args))?;
                    self.expect = Expect::Array;
                }
            }
        }
        // Back to lines (a completed count leaves the chat with no terminator).
        chat.set_terminator(Terminator::bytes(b"\r\n"));
        Ok(())
    }

    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.protocol_error(chat, "line too long")
    }
}

impl Resp {
    /// Runs one command and returns its reply.
    fn execute(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let name = args[0].to_ascii_uppercase();
        match (&name[..], &args[1..]) {
            (b"PING", []) => b"+PONG\r\n".to_vec(),
            (b"PING" | b"ECHO", [message]) => bulk(Some(message)),
            (b"SET", [key, value]) => {
                self.store.borrow_mut().insert(key.clone(), value.clone());
                b"+OK\r\n".to_vec()
            }
            (b"GET", [key]) => bulk(self.store.borrow().get(key)),
            _ => b"-ERR unknown command or wrong number of arguments\r\n".to_vec(),
        }
    }

    /// Answers a request that breaks the protocol, then closes: what follows
    /// cannot be framed any more, so it is not parsed.
    fn protocol_error(&mut self, chat: &mut AsyncChat, why: &str) -> io::Result<()> {
        chat.push(format!("-ERR Protocol error: {why}\r\n").as_bytes())?;
        chat.close_when_done();
        chat.set_terminator(Terminator::None);
        Ok(())
    }
}

/// A bulk string reply, or the null bulk string for a missing value.
fn bulk(value: Option<&Vec<u8>>) -> Vec<u8> {
    match value {
        Some(v) => [format!("${}\r\n", v.len()).as_bytes(), v, b"\r\n"].concat(),
        None => b"$-1\r\n".to_vec(),
    }
}

/// The decimal number after `prefix` in a line such as `*3` or `$5`.
fn number_after(prefix: u8, line: &[u8]) -> Option<usize> {
    let digits = line.strip_prefix(&[prefix])?;
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

struct RespServer {
    store: Store,
}

impl AcceptHandler for RespServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, Terminator::bytes(b"\r\n"));
        chat.set_max_record(64); // bounds the `*N` and `$LEN` lines, not the bulk strings
        let store = Rc::clone(&self.store);
        cx.insert(chat, Resp { store, expect: Expect::Array, left: 0, args: Vec::new() })?;
        Ok(())
    }
}

#[test]
fn the_resp_server_answers_a_pipeline_split_anywhere() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let addr = listener.local_addr()?.inet().expect("an IP address");
    let mut map = Map::new()?;
    map.insert(listener, RespServer { store: Store::default() })?;

    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut redis = TcpStream::connect(addr)?;
        redis.set_read_timeout(Some(Duration::from_secs(5)))?;
        redis.set_nodelay(true)?;
        let requests: &[u8] = b"*1\r\n$4\r\nPING\r\n\
            *3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$4\r\na\r\nb\r\n\
            *2\r\n$3\r\nGET\r\n$3\r\nkey\r\n\
            *2\r\n$3\r\nGET\r\n$4\r\nnone\r\n\
            *2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
        for piece in requests.chunks(5) {
            redis.write_all(piece)?; // frames split anywhere parse the same
            std::thread::sleep(Duration::from_millis(1));
        }
        redis.write_all(b"PING\r\n")?; // an inline command, which this server refuses
        let mut replies = Vec::new();
        redis.read_to_end(&mut replies)?;
        Ok(replies)
    });
    assert!(map.run_until(Duration::from_secs(5), |_| client.is_finished())?);
    let replies = client.join().unwrap()?;
    let expected: &[u8] = b"+PONG\r\n+OK\r\n$4\r\na\r\nb\r\n$-1\r\n$0\r\n\r\n\
        -ERR Protocol error: expected '*' and a count\r\n";
    assert_eq!(String::from_utf8_lossy(&replies), String::from_utf8_lossy(expected));
    Ok(())
}

// ---- chapter 5: idle timeouts ----------------------------------------------------

/// How long a connection may stay silent before the server hangs up.
const IDLE: Duration = Duration::from_millis(200);

/// Echoes lines; hangs up on a client that says nothing for `IDLE`.
struct Impatient;

impl ChatHandler for Impatient {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.push(b'\n');
        chat.push(&line)
    }

    fn handle_timeout(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        if chat.is_closing() {
            // The idle timeout runs on: the goodbye sat unread for another
            // IDLE. Pushing again would fail; hang up without it.
            cx.close();
            return Ok(());
        }
        chat.push(b"idle for too long, bye\n")?;
        chat.close_when_done(); // not cx.close(), which would drop the goodbye
        Ok(())
    }
}

struct ImpatientServer;

impl AcceptHandler for ImpatientServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let token = cx.insert(AsyncChat::new(conn, Terminator::bytes(b"\n")), Impatient)?;
        cx.set_idle_timeout(token, Some(IDLE)); // every event of the channel re-arms it
        Ok(())
    }
}

#[test]
fn a_silent_client_is_hung_up_on() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let addr = listener.local_addr()?.inet().expect("an IP address");
    let mut map = Map::new()?;
    map.insert(listener, ImpatientServer)?;

    let client = std::thread::spawn(move || -> io::Result<(Vec<u8>, Duration)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let silent_since = Instant::now(); // before the write: the server's events all come later
        stream.write_all(b"hi\n")?;
        let mut answers = Vec::new();
        stream.read_to_end(&mut answers)?; // says nothing more, until the server hangs up
        Ok((answers, silent_since.elapsed()))
    });
    assert!(map.run_until(Duration::from_secs(5), |_| client.is_finished())?);
    let (answers, silence) = client.join().unwrap()?;
    assert_eq!(answers, b"hi\nidle for too long, bye\n");
    assert!(silence >= IDLE, "hung up after {silence:?}");
    Ok(())
}

// ---- chapter 6: back-pressure ----------------------------------------------------

#[test]
fn a_peer_that_stops_reading_pauses_the_echo() -> io::Result<()> {
    let (ours, mut peer) = UnixStream::pair()?;
    let mut echo = Buffered::new(Channel::try_from(ours)?);
    echo.set_watermarks(16 * 1024, 64 * 1024); // stop reading above 64 KiB queued, resume at 16 KiB
    let mut map = Map::new()?;
    let token = map.insert(echo, Echo)?;

    // The peer writes and never reads, until its writes would block.
    peer.set_nonblocking(true)?;
    let (mut sent, mut most_queued) = (0, 0);
    loop {
        match peer.write(&[b'x'; 4096]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
        map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1))?;
        let mut echo = map.stream_mut::<Buffered<Connected>, Echo>(token).expect("still open");
        most_queued = most_queued.max(echo.transport().queued());
    }
    // The queue stopped at the high watermark plus one read; the rest waits
    // in the kernel's socket buffers, and the writer is blocked.
    assert!(most_queued <= 64 * 1024 + 8192, "{most_queued} bytes queued");

    // The peer reads again: the echo resumes, and every byte comes back.
    let mut received = 0;
    assert!(map.run_until(Duration::from_secs(5), |_| {
        received += peer.read(&mut [0u8; 65536]).unwrap_or(0);
        received == sent
    })?);
    Ok(())
}

// ---- chapter 7: graceful shutdown ------------------------------------------------

/// How long connections may finish after a shutdown begins.
const GRACE: Duration = Duration::from_millis(300);

/// The echo server's map, which shuts down gracefully on SIGINT or SIGTERM.
fn echo_map(listener: Channel<Listening>) -> io::Result<Map> {
    let mut map = Map::new()?;
    map.insert(listener, EchoServer)?;
    map.on_signals(&[SIGINT, SIGTERM], |_signal: i32, cx: &mut Ctx<'_>| {
        cx.shutdown(GRACE); // stop accepting now; connections have GRACE to finish
        Ok(())
    })?;
    Ok(map)
}

#[test]
fn sigterm_stops_accepting_and_closes_connections_after_the_grace() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let addr = listener.local_addr()?.inet().expect("an IP address");
    let mut map = echo_map(listener)?;

    let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed)?; // the echo, then the end when the grace is over
        Ok(echoed)
    });
    assert!(map.run_until(Duration::from_secs(5), |map| map.len() == 2)?); // the listener and one connection
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status()?.success());
    let started = Instant::now();
    assert!(map.run_until(Duration::from_secs(5), Map::is_empty)?); // signal watchers do not count
    assert!(started.elapsed() >= GRACE);
    assert_eq!(client.join().unwrap()?, b"ping");
    assert!(TcpStream::connect(addr).is_err(), "nothing listens any more");
    Ok(())
}

#[test]
fn another_thread_shuts_the_loop_down() -> io::Result<()> {
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(5)?;
    let mut map = Map::new()?;
    map.insert(listener, EchoServer)?;
    let waker: Waker = map.waker()?; // Send + Sync + Clone; the map stays on this thread

    let admin = std::thread::spawn(move || -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(50));
        waker.shutdown(Duration::from_secs(1))
    });
    assert!(map.run_until(Duration::from_secs(5), Map::is_empty)?); // the waker does not count either
    admin.join().unwrap()?;
    Ok(())
}

// ---- chapter 8: one loop per core ------------------------------------------------

/// Binds `n` listeners to one address with SO_REUSEPORT: the kernel spreads
/// incoming connections among them.
fn shared_listeners(addr: &str, n: usize) -> io::Result<Vec<Channel<Listening>>> {
    let first = Channel::tcp_v4()?.set_reuse_port()?.bind(addr)?.listen(1024)?;
    let bound = first.local_addr()?; // the port the kernel chose, if `addr` said 0
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(Channel::tcp_v4()?.set_reuse_port()?.bind(&bound)?.listen(1024)?);
    }
    Ok(listeners)
}

#[test]
fn two_loops_share_one_port() -> io::Result<()> {
    let listeners = shared_listeners("127.0.0.1:0", 2)?;
    let addr = listeners[0].local_addr()?.inet().expect("an IP address");
    let (wakers_tx, wakers_rx) = std::sync::mpsc::channel::<Waker>();
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let wakers_tx = wakers_tx.clone();
            std::thread::spawn(move || -> io::Result<bool> {
                let mut map = Map::new()?; // each thread its own map, handlers and loop
                map.insert(listener, EchoServer)?;
                wakers_tx.send(map.waker()?).expect("the test waits for it");
                map.run_until(Duration::from_secs(5), Map::is_empty) // a program: map.run(LoopOptions::default())
            })
        })
        .collect();
    let wakers: Vec<Waker> = wakers_rx.iter().take(loops.len()).collect();

    for _ in 0..8 {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed)?;
        assert_eq!(&echoed, b"ping");
    }
    for waker in &wakers {
        waker.shutdown(Duration::ZERO)?;
    }
    for handle in loops {
        assert!(handle.join().unwrap()?, "the loop ended with an empty map");
    }
    Ok(())
}

// ---- chapter 9: testing handlers with rolecore::sim ------------------------------

#[test]
fn the_echo_server_survives_a_hostile_world() {
    for seed in 0..20 {
        let mut sim = Sim::from_seed(seed, SimConfig::default()).expect("a simulated world");
        sim.listen(EchoServer).expect("a listener");
        // Peers connect, write, read, half-close, reset and send urgent data;
        // the poller withholds, invents and reorders readiness. The loop's
        // invariants are checked after every step.
        let report = sim.run().unwrap_or_else(|failure| panic!("{failure}"));
        for peer in &report.peers {
            // Each peer got back a prefix of what it sent: nothing lost,
            // reordered or invented. `failure` prints the seed and the trace.
            assert!(peer.sent.starts_with(&peer.received_data()), "{}", report.failure("bytes lost"));
        }
    }
}

#[test]
fn the_impatient_server_keeps_its_timers_in_virtual_time() {
    let mut hung_up = 0;
    for seed in 0..50 {
        let mut sim = Sim::from_seed(seed, SimConfig::default()).expect("a simulated world");
        sim.listen(ImpatientServer).expect("a listener");
        // Time is virtual: it stands still until the seed makes it jump (from
        // 1 ms to 2 minutes), so a 200 ms idle timeout fires in a run that
        // takes microseconds, at the same step on every replay. The checker
        // holds each timer to what the handler asked: no handle_timeout
        // before IDLE of silence, none left unserved, none after close.
        let report = sim.run().unwrap_or_else(|failure| panic!("{failure}"));
        let bye = b"idle for too long, bye\n";
        hung_up += report.peers.iter().filter(|p| p.received.windows(bye.len()).any(|w| w == bye)).count();
    }
    assert!(hung_up > 0, "some peers stayed silent long enough to be hung up on");
}

/// An idle timeout runs on after `handle_timeout` keeps the channel open:
/// a client that leaves the goodbye unread for another `IDLE` gets a second
/// `handle_timeout`, which must not push again (that fails, and the channel
/// closes through `handle_error` with an "uncaptured error" report line).
#[test]
fn the_impatient_server_survives_a_second_timeout_while_saying_goodbye() {
    let mut second_timeouts = 0;
    for seed in 0..50 {
        let mut sim = Sim::from_seed(seed, SimConfig::default()).expect("a simulated world");
        sim.listen(ImpatientServer).expect("a listener");
        let report = sim.run().unwrap_or_else(|failure| panic!("{failure}"));
        // The listener's own handle_error lines are its EMFILE back-offs.
        let listener =
            report.trace.iter().find_map(|l| l.trim_start().strip_suffix("joined the map (Listening)"));
        let listener = listener.expect("the listener joined").to_owned();
        let mut timeouts = HashMap::new();
        for line in report.trace.iter().map(|l| l.trim_start()).filter(|l| !l.starts_with(&listener)) {
            if let Some((id, _)) = line.split_once(" handle_timeout") {
                *timeouts.entry(id.to_owned()).or_insert(0) += 1;
            }
            assert!(!line.contains(" handle_error"), "seed {seed}: {line}\n{}", report.trace.join("\n"));
        }
        second_timeouts += timeouts.values().filter(|&&n| n > 1).count();
    }
    assert!(second_timeouts > 0, "some goodbye sat unread long enough for a second timeout");
}

// ---- chapter 10: a client -------------------------------------------------------

/// Asks a time server for the time: one request line, one answer line.
#[derive(Default)]
struct AskTime {
    answer: Option<String>,
    failed: Option<io::Error>,
}

impl ChatHandler for AskTime {
    fn handle_connect(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.push(b"TIME\r\n") // connected: runs once, before any read or write
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.answer = Some(String::from_utf8_lossy(&chat.take_incoming()).into_owned());
        cx.close(); // one answer is all this client wants
        Ok(())
    }

    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.failed = Some(error); // refused, unreachable or timed out, on any backend
    }
}

/// Connects to `addr`, asks for the time, and returns the answer.
fn ask_time(addr: SocketAddr) -> io::Result<String> {
    // A connect the kernel refuses at once (a bad address, no route) fails
    // here, with the fresh channel handed back in the `RoleError`.
    let connecting = Channel::tcp_v4()?.connect(addr)?;
    let ask = Kept::new(AskTime::default()); // a handle to the handler, kept here
    let mut map = Map::new()?;
    map.insert(AsyncChat::new(connecting, Terminator::CRLF), ask.clone())?;
    map.run(LoopOptions::default())?; // until the connection closed: the map is empty
    let ask = ask.into_inner().expect("the map dropped its clone when the channel closed");
    match (ask.answer, ask.failed) {
        (Some(answer), _) => Ok(answer),
        (None, Some(error)) => Err(error), // the connect failed later, in the loop
        (None, None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering")),
    }
}

#[test]
fn the_client_gets_its_answer() -> io::Result<()> {
    let server = TcpListener::bind("127.0.0.1:0")?;
    let addr = server.local_addr()?;
    let time_server = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        let (mut conn, _) = server.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = [0u8; 6];
        conn.read_exact(&mut request)?;
        conn.write_all(b"12:00\r\n")?;
        Ok(request.to_vec())
    });
    assert_eq!(ask_time(addr)?, "12:00");
    assert_eq!(time_server.join().unwrap()?, b"TIME\r\n");
    Ok(())
}

#[test]
fn a_refused_connect_arrives_in_the_loop() -> io::Result<()> {
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?; // closed again: nobody listens
    let error = ask_time(addr).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    Ok(())
}

#[test]
fn a_connect_the_kernel_refuses_at_once_is_an_error_from_connect() -> io::Result<()> {
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let error = Channel::tcp_v4()?.connect(v6).unwrap_err(); // an IPv6 address for an IPv4 socket
    assert_eq!(error.error().kind(), io::ErrorKind::InvalidInput, "{error:?}");
    let _fresh: Channel<rolecore::Fresh> = error.into_inner(); // the channel comes back
    let error = ask_time(v6).unwrap_err(); // and through `?`, an io::Error
    assert!(error.to_string().contains("Channel::for_address"), "says what to do: {error}");
    Ok(())
}

// ---- the guide cannot drift from this file ---------------------------------------

/// The compile-fail cases chapter 2 quotes, source and compiler output.
const UI_CASES: [(&str, &str); 7] = [
    (include_str!("ui/tls_send_while_handshaking.rs"), include_str!("ui/tls_send_while_handshaking.stderr")),
    (include_str!("ui/d01_send_on_listener.rs"), include_str!("ui/d01_send_on_listener.stderr")),
    (include_str!("ui/d07_send_while_connecting.rs"), include_str!("ui/d07_send_while_connecting.stderr")),
    (include_str!("ui/d10_use_after_insert.rs"), include_str!("ui/d10_use_after_insert.stderr")),
    (
        include_str!("ui/extra_insert_fresh_into_map.rs"),
        include_str!("ui/extra_insert_fresh_into_map.stderr"),
    ),
    (
        include_str!("ui/extra_insert_stream_with_accept_handler.rs"),
        include_str!("ui/extra_insert_stream_with_accept_handler.stderr"),
    ),
    (
        include_str!("ui/extra_handle_accepted_on_stream_handler.rs"),
        include_str!("ui/extra_handle_accepted_on_stream_handler.stderr"),
    ),
];

/// Every ```rust block of the guide is in this file, verbatim and in whole
/// lines; every ```rust,compile_fail block is in a case of `tests/ui/`, and
/// every ```text block in that case's compiler output (both up to
/// indentation).
#[test]
fn the_guide_quotes_this_file() {
    let guide = include_str!("../docs/guide.md");
    // The chapter on TLS quotes tests/tls_guide.rs, which needs the feature.
    let this_file = format!("\n{}\n{}", include_str!("guide.rs"), include_str!("tls_guide.rs"));
    let blocks = fenced_blocks(guide);
    let checked = blocks.iter().filter(|(fence, _)| *fence == "rust").count();
    assert!(checked >= 10, "docs/guide.md has {checked} ```rust blocks");
    for (fence, block) in &blocks {
        let text = block.join("\n") + "\n";
        match *fence {
            "rust" => assert!(
                this_file.contains(&format!("\n{text}")),
                "a ```rust block of docs/guide.md is not in tests/guide.rs:\n{text}"
            ),
            "rust,compile_fail" => assert!(
                UI_CASES.iter().any(|(source, _)| contains_lines(source, block)),
                "a ```rust,compile_fail block of docs/guide.md is not in tests/ui/:\n{text}"
            ),
            "text" => assert!(
                UI_CASES.iter().any(|(_, stderr)| contains_lines(stderr, block)),
                "a ```text block of docs/guide.md is not a compiler output of tests/ui/:\n{text}"
            ),
            "sh" | "resp" => {}
            other => panic!("docs/guide.md: unknown fence ```{other}"),
        }
    }
}

/// The fenced blocks of a Markdown text: each one's info string and lines.
fn fenced_blocks(markdown: &str) -> Vec<(&str, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(fence) = line.strip_prefix("```") {
            let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((fence.trim(), block));
        }
    }
    blocks
}

/// Whether `block`'s lines, trimmed, appear in a row among `text`'s.
fn contains_lines(text: &str, block: &[&str]) -> bool {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let wanted: Vec<&str> = block.iter().map(|l| l.trim()).collect();
    !wanted.is_empty() && lines.windows(wanted.len()).any(|w| w == wanted)
}
