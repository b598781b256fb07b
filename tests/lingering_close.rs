//! Graceful close: after `close_when_done` a chat sends what it queued,
//! shuts down its sending side, and reads and drops what the peer still
//! sends until the peer closes (or a time or size bound passes), so that a
//! client that keeps sending still reads the last reply instead of a reset.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use rolecore::{AcceptHandler, Address, AsyncChat, Channel, ChatHandler, Connected, Ctx, Map, Terminator};

/// Echoes short lines; a line over 16 bytes gets an error line, then
/// `close_when_done`.
struct Strict {
    closes: Rc<Cell<usize>>,
}

impl ChatHandler for Strict {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut line = chat.take_incoming();
        line.push(b'\n');
        chat.push(&line)
    }

    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.push(b"! line too long\n")?;
        chat.close_when_done();
        Ok(())
    }

    fn handle_close(&mut self, _chat: &mut AsyncChat, _cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
    }
}

struct Server {
    closes: Rc<Cell<usize>>,
    linger: Option<Duration>,
}

impl AcceptHandler for Server {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut chat = AsyncChat::new(conn, Terminator::LF);
        chat.set_max_record(16);
        chat.set_linger(self.linger);
        cx.insert(chat, Strict { closes: self.closes.clone() })?;
        Ok(())
    }
}

fn server(linger: Option<Duration>) -> (Map, SocketAddr, Rc<Cell<usize>>) {
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(8).unwrap();
    let addr = listener.local_addr().unwrap().inet().unwrap();
    let closes = Rc::new(Cell::new(0));
    let mut map = Map::new().unwrap();
    map.insert(listener, Server { closes: closes.clone(), linger }).unwrap();
    (map, addr, closes)
}

/// A client that sends a short line, then `total` bytes of one endless line,
/// then half-closes (unless `total` is `None`: it then stops sending and
/// waits), while another thread reads everything. Returns what the reader
/// read and how its reading ended.
fn client(addr: SocketAddr, total: Option<usize>) -> thread::JoinHandle<(Vec<u8>, io::Result<()>)> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = stream.try_clone().unwrap();
        let reading = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return (got, Ok(())),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => return (got, Err(e)),
                }
            }
        });
        stream.write_all(b"hi\n").unwrap();
        let chunk = [b'x'; 8192];
        let mut sent = 0;
        // Keeps sending after the server answered and closed its side; a
        // server that stopped reading would make these writes fail.
        while sent < total.unwrap_or(64 * 1024) {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        if total.is_some() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        let result = reading.join().unwrap();
        drop(stream);
        result
    })
}

#[test]
fn a_client_that_keeps_sending_reads_the_last_reply_then_a_clean_end() {
    // With `set_linger(None)` (asynchat's close) this client's read ends
    // in ECONNRESET instead.
    let (mut map, addr, closes) = server(Some(Duration::from_secs(10)));
    let client = client(addr, Some(512 * 1024));
    assert!(map.run_until(Duration::from_secs(20), |_| client.is_finished()).unwrap());
    let (got, end) = client.join().unwrap();
    assert_eq!(got, b"hi\n! line too long\n");
    assert!(end.is_ok(), "the client's read ended with {end:?}, not the end of the stream");
    assert!(map.run_until(Duration::from_secs(5), |_| closes.get() == 1).unwrap());
    assert_eq!(map.len(), 1, "the connection closed once the client closed");
}

#[test]
fn lingering_ends_at_its_deadline_when_the_peer_never_closes() {
    let (mut map, addr, closes) = server(Some(Duration::from_millis(100)));
    let client = client(addr, None);
    // The client stops sending but never closes: the deadline closes the
    // connection, and the client's reader then sees the end.
    assert!(map.run_until(Duration::from_secs(10), |_| closes.get() == 1).unwrap());
    assert!(map.run_until(Duration::from_secs(10), |_| client.is_finished()).unwrap());
    let (got, _) = client.join().unwrap();
    assert!(got.starts_with(b"hi\n! line too long\n"), "{got:?}");
    assert_eq!(closes.get(), 1, "handle_close once");
}

#[test]
fn lingering_reads_at_most_linger_bytes_then_closes() {
    let (mut map, addr, closes) = server(Some(Duration::from_secs(30)));
    let client = client(addr, Some(8 * rolecore::chat::LINGER_BYTES));
    assert!(map.run_until(Duration::from_secs(20), |_| closes.get() == 1).unwrap());
    assert!(map.run_until(Duration::from_secs(20), |_| client.is_finished()).unwrap());
    let (got, _) = client.join().unwrap();
    // The reply was read before the server gave up on the endless sender.
    assert_eq!(got, b"hi\n! line too long\n");
}

/// The bound holds for a sender that never closes too: once more than
/// `LINGER_BYTES` were read and dropped the chat closes, long before its
/// linger time is over, though the peer sent only a little more than that
/// and then went quiet, its side of the connection open.
#[test]
fn lingering_stops_just_past_linger_bytes_from_a_peer_that_stays_open() {
    let (mut map, addr, closes) = server(Some(Duration::from_secs(60)));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"hi\n").unwrap();
        let chunk = [b'x'; 8192];
        let mut sent = 0;
        while sent < 2 * rolecore::chat::LINGER_BYTES {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        // Quiet, but open, until the test is over (at most 20 s).
        let _ = released.recv_timeout(Duration::from_secs(20));
        drop(stream);
    });
    let closed = map.run_until(Duration::from_secs(10), |_| closes.get() == 1).unwrap();
    release.send(()).unwrap();
    client.join().unwrap();
    assert!(closed, "still lingering after more than LINGER_BYTES");
}

#[test]
fn without_lingering_the_chat_closes_as_soon_as_its_queue_is_sent() {
    let (mut map, addr, closes) = server(None);
    let client = client(addr, None);
    assert!(map.run_until(Duration::from_secs(10), |_| closes.get() == 1).unwrap());
    assert!(map.run_until(Duration::from_secs(10), |_| client.is_finished()).unwrap());
    drop(client.join().unwrap());
}

/// Counts the records it gets.
struct Records(Rc<Cell<usize>>);

impl ChatHandler for Records {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

/// While a chat is still sending what it queued before `close_when_done`
/// it reads nothing: what the peer sends meanwhile waits in the socket
/// (the peer is held back by its full buffers, not read and dropped
/// without a bound); the reading and dropping, bounded, is the linger's,
/// once the queue is sent.
#[test]
fn a_chat_closing_when_done_reads_nothing_while_its_queue_is_sent() {
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
    // More than the socket takes, less than the high watermark (which would
    // stop the reading anyway).
    chat.push(&vec![b'r'; 600 * 1024]).unwrap();
    chat.close_when_done();
    let records = Rc::new(Cell::new(0));
    let mut map = Map::new().unwrap();
    let token = map.insert(chat, Records(records.clone())).unwrap();
    // The peer sends until its buffers are full.
    let fill = |peer: &mut std::os::unix::net::UnixStream| {
        let mut sent = 0;
        for _ in 0..100_000 {
            match peer.write(b"more\n") {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return sent,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the peer's buffers never filled");
    };
    assert!(fill(&mut peer) > 0);
    for _ in 0..5 {
        map.poll(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(map.contains(token), "the queue is still being sent");
    assert_eq!(fill(&mut peer), 0, "the closing chat read what the peer sent");
    assert_eq!(records.get(), 0, "no record after close_when_done");
}
