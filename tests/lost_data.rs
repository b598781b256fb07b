//! No byte a handler queued or a peer sent is lost without an error value.
//!
//! Each test states its rule; each runs on every backend this build has,
//! over socket pairs.

#[cfg(feature = "tls")]
mod tls_common;
mod util;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use rolecore::{
    AsyncChat, Backend, Buffered, Channel, ChatHandler, Connected, Ctx, StreamHandler, Terminator,
};

/// One non-blocking read of the peer into `received`; whether it saw the
/// end of the stream.
fn read_some(peer: &mut UnixStream, buf: &mut [u8], received: &mut Vec<u8>) -> io::Result<bool> {
    match peer.read(buf) {
        Ok(0) => Ok(true),
        Ok(n) => {
            received.extend_from_slice(&buf[..n]);
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Our end as a channel, the peer's as a plain socket.
fn pair() -> io::Result<(Channel<Connected>, UnixStream)> {
    let (ours, theirs) = Channel::pair()?;
    Ok((ours, UnixStream::from(OwnedFd::from(theirs))))
}

/// What a chat handler saw: every piece of data, every record end, and
/// whether `handle_close` came.
#[derive(Default)]
struct Seen {
    data: Vec<u8>,
    records: Vec<Vec<u8>>,
    closed: bool,
    errors: usize,
}

/// Collects every byte it is given; optionally fails the first record end
/// (and survives the error).
struct Collector {
    seen: Rc<RefCell<Seen>>,
    fail_first: bool,
}

impl ChatHandler for Collector {
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        self.seen.borrow_mut().data.extend_from_slice(data);
        chat.collect(data);
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        let record = chat.take_incoming();
        let mut seen = self.seen.borrow_mut();
        seen.records.push(record);
        if self.fail_first && seen.records.len() == 1 {
            return Err(io::Error::other("the first record fails"));
        }
        Ok(())
    }

    fn handle_close(&mut self, _: &mut AsyncChat, _: &mut Ctx<'_>) {
        self.seen.borrow_mut().closed = true;
    }

    fn handle_error(&mut self, _: &mut AsyncChat, _: io::Error, _: &mut Ctx<'_>) {
        // Survives: the channel stays open.
        self.seen.borrow_mut().errors += 1;
    }
}

/// Runs a chat under `terminator` over a socket pair whose peer writes
/// `sent` and closes before the loop runs; returns what the handler saw.
fn chat_sees(backend: Backend, terminator: Terminator, sent: &[u8], fail_first: bool) -> io::Result<Seen> {
    let (ours, mut peer) = pair()?;
    peer.write_all(sent)?;
    drop(peer);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut map = util::map(backend);
    map.insert(AsyncChat::new(ours, terminator), Collector { seen: seen.clone(), fail_first })?;
    let closed = util::run_until(&mut map, |_| seen.borrow().closed);
    assert!(closed, "{backend}: handle_close never came");
    Ok(Rc::try_unwrap(seen).ok().expect("the map dropped the handler").into_inner())
}

/// Input kept back when a callback failed (the handler survives its error)
/// is split into records before `handle_close` when the peer closes next:
/// "a handler that survives its error loses no input".
#[test]
fn records_kept_back_by_a_failed_callback_are_delivered_before_handle_close() -> io::Result<()> {
    for backend in util::backends() {
        let seen = chat_sees(backend, Terminator::LF, b"a\nb\nc\n", true)?;
        assert_eq!(seen.errors, 1, "{backend}");
        assert_eq!(seen.records, [&b"a"[..], b"b", b"c"], "{backend}: every record");
    }
    Ok(())
}

/// Records kept back by a failed callback are split without waiting for
/// more input: a peer that sent three requests at once and awaits the
/// replies, its side still open, gets all three handled, not one.
#[test]
fn records_kept_back_by_a_failed_callback_are_delivered_while_the_peer_stays_open() -> io::Result<()> {
    for backend in util::backends() {
        for in_buffer in [2, 64 * 1024] {
            let (ours, mut peer) = pair()?;
            peer.write_all(b"a\nb\nc\n")?;
            let seen = Rc::new(RefCell::new(Seen::default()));
            let mut chat = AsyncChat::new(ours, Terminator::LF);
            chat.set_in_buffer_size(in_buffer);
            let mut map = util::map(backend);
            map.insert(chat, Collector { seen: seen.clone(), fail_first: true })?;
            let all = util::run_until(&mut map, |_| seen.borrow().records.len() == 3);
            let seen = seen.borrow();
            assert!(all, "{backend}, reads of {in_buffer}: records {:?}", seen.records);
            assert_eq!(seen.records, [&b"a"[..], b"b", b"c"], "{backend}, reads of {in_buffer}");
            assert_eq!(seen.errors, 1, "{backend}");
            assert!(!seen.closed, "{backend}: the peer is still there");
            drop(peer);
        }
    }
    Ok(())
}

/// A record split exactly at `max_record`, a count terminator split across
/// reads, and a terminator changed inside `found_terminator` mid-buffer:
/// every byte between the terminators reaches the handler, in order.
#[test]
fn records_at_the_bound_and_changed_terminators_lose_no_byte() -> io::Result<()> {
    /// A line that is a number gives a count; the count's bytes are one
    /// record; then lines again.
    struct Switcher {
        seen: Rc<RefCell<Seen>>,
    }
    impl ChatHandler for Switcher {
        fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
            let record = chat.take_incoming();
            // A count that completed left the terminator at None.
            if chat.terminator() == &Terminator::None {
                chat.set_terminator(Terminator::LF);
            } else if let Some(n) = std::str::from_utf8(&record).ok().and_then(|r| r.parse().ok()) {
                chat.set_terminator(Terminator::count(n));
            }
            self.seen.borrow_mut().records.push(record);
            Ok(())
        }
        fn handle_close(&mut self, _: &mut AsyncChat, _: &mut Ctx<'_>) {
            self.seen.borrow_mut().closed = true;
        }
    }
    for backend in util::backends() {
        for in_buffer in [1, 2, 3, 7, 64 * 1024] {
            let (ours, mut peer) = pair()?;
            // Each count record is 4 bytes long, the max_record: at the bound.
            peer.write_all(b"4\nab\ncd\n\n\n3\nxyzabcd\n")?;
            drop(peer);
            let seen = Rc::new(RefCell::new(Seen::default()));
            let mut chat = AsyncChat::new(ours, Terminator::LF);
            chat.set_max_record(4);
            chat.set_in_buffer_size(in_buffer);
            let mut map = util::map(backend);
            map.insert(chat, Switcher { seen: seen.clone() })?;
            assert!(util::run_until(&mut map, |_| seen.borrow().closed), "{backend}");
            let records = seen.borrow().records.clone();
            assert_eq!(
                records,
                [&b"4"[..], b"ab\nc", b"d", b"", b"", b"3", b"xyz", b"abcd"],
                "{backend}, reads of {in_buffer}"
            );
        }
    }
    Ok(())
}

/// A two-byte terminator split across reads of every size, records exactly
/// `max_record` long, and a held `\r` that turns out to be data: each record
/// whole, no byte dropped or added, no `RecordTooLong`.
#[test]
fn a_split_terminator_and_records_at_the_bound_lose_no_byte() -> io::Result<()> {
    for backend in util::backends() {
        for in_buffer in 1..=7 {
            let (ours, mut peer) = pair()?;
            peer.write_all(b"abcd\r\n\r\nab\r\r\n\rxy\r\n")?;
            drop(peer);
            let seen = Rc::new(RefCell::new(Seen::default()));
            let mut chat = AsyncChat::new(ours, Terminator::CRLF);
            chat.set_max_record(4);
            chat.set_in_buffer_size(in_buffer);
            let mut map = util::map(backend);
            map.insert(chat, Collector { seen: seen.clone(), fail_first: false })?;
            assert!(util::run_until(&mut map, |_| seen.borrow().closed), "{backend}");
            let seen = seen.borrow();
            assert_eq!(seen.errors, 0, "{backend}, reads of {in_buffer}");
            assert_eq!(
                seen.records,
                [&b"abcd"[..], b"", b"ab\r", b"\rxy"],
                "{backend}, reads of {in_buffer}"
            );
        }
    }
    Ok(())
}

/// Echoes what it reads through its queue.
struct Echo {
    closed: Rc<RefCell<bool>>,
}

impl StreamHandler<Buffered> for Echo {
    fn handle_read(&mut self, b: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0; 4096];
        let n = b.recv(&mut buf)?;
        b.send(&buf[..n])
    }
    fn handle_close(&mut self, _: &mut Buffered, _: &mut Ctx<'_>) {
        *self.closed.borrow_mut() = true;
    }
}

/// Output queued in reply to what the peer sent before its half-close goes
/// out in full, even when the socket takes it a little at a time, before
/// `handle_close`.
#[test]
fn a_queue_larger_than_the_socket_is_sent_whole_after_the_peers_half_close() -> io::Result<()> {
    for backend in util::backends() {
        let (ours, mut peer) = pair()?;
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let closed = Rc::new(RefCell::new(false));
        let mut echo = Buffered::new(ours);
        echo.set_watermarks(usize::MAX, usize::MAX);
        let mut map = util::map(backend);
        map.insert(echo, Echo { closed: closed.clone() })?;
        let mut received = Vec::new();
        peer.set_nonblocking(true)?;
        let mut written = 0;
        let mut buf = vec![0; 64 * 1024];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut shut = false;
        while std::time::Instant::now() < deadline {
            if written < sent.len() {
                match peer.write(&sent[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            } else if !shut {
                peer.shutdown(std::net::Shutdown::Write)?;
                shut = true;
            }
            util::run_iterations(&mut map, 1);
            if read_some(&mut peer, &mut buf, &mut received)? {
                break;
            }
        }
        assert_eq!(received.len(), sent.len(), "{backend}: every byte echoed");
        assert!(received == sent, "{backend}: in order");
        assert!(*closed.borrow(), "{backend}: handle_close after the queue went out");
    }
    Ok(())
}

/// Answers its one request with pushed bytes and a producer's, larger than
/// the socket takes at once; optionally then `close_when_done`.
struct Replier {
    reply: Vec<u8>,
    close_when_done: bool,
    closed: Rc<RefCell<bool>>,
}

impl ChatHandler for Replier {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        let (head, tail) = self.reply.split_at(self.reply.len() / 3);
        chat.push(head)?;
        chat.push_with_producer(rolecore::chat::SimpleProducer::new(tail[..tail.len() / 2].to_vec(), 4096))?;
        chat.push(&tail[tail.len() / 2..])?;
        if self.close_when_done {
            chat.close_when_done();
        }
        Ok(())
    }
    fn handle_close(&mut self, _: &mut AsyncChat, _: &mut Ctx<'_>) {
        *self.closed.borrow_mut() = true;
    }
}

/// What an `AsyncChat` queued (pushes and a producer's chunks) reaches a
/// peer that half-closed right after its request, in order and whole,
/// before `handle_close`; with `close_when_done` too.
#[test]
fn a_chats_pushes_and_producer_reach_a_peer_that_half_closed() -> io::Result<()> {
    for backend in util::backends() {
        for close_when_done in [false, true] {
            let ctx = format!("{backend}, close_when_done {close_when_done}");
            let (ours, mut peer) = pair()?;
            let reply: Vec<u8> = (0..900_000u32).map(|i| (i % 253) as u8).collect();
            let closed = Rc::new(RefCell::new(false));
            let mut chat = AsyncChat::new(ours, Terminator::LF);
            chat.set_watermarks(usize::MAX, usize::MAX);
            let mut map = util::map(backend);
            let replier = Replier { reply: reply.clone(), close_when_done, closed: closed.clone() };
            map.insert(chat, replier)?;
            peer.write_all(b"go\n")?;
            peer.shutdown(std::net::Shutdown::Write)?;
            peer.set_nonblocking(true)?;
            let mut received = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                util::run_iterations(&mut map, 1);
                if read_some(&mut peer, &mut buf, &mut received)? {
                    break;
                }
            }
            assert_eq!(received.len(), reply.len(), "{ctx}: every queued byte");
            assert!(received == reply, "{ctx}: in order");
            assert!(util::run_until(&mut map, |_| *closed.borrow()), "{ctx}: handle_close after");
        }
    }
    Ok(())
}

/// TLS: plaintext decrypted above the socket and not yet read.
#[cfg(feature = "tls")]
mod tls {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    use rolecore::tls::{Handshaking, rustls};
    use rolecore::{AcceptHandler, Address, Map};

    use super::tls_common::{TestCert, cert, client_config, connect, localhost, roundtrip, server_config};
    use super::*;

    /// Echoes one byte per `handle_read`: a handler that takes less than a
    /// TLS record at a time.
    struct Sip;

    impl StreamHandler<Buffered> for Sip {
        fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            let mut byte = [0; 1];
            let n = ch.recv(&mut byte)?;
            ch.send(&byte[..n])
        }
    }

    /// Serves TLS on every connection it accepts, each with a handler that
    /// `make` builds.
    struct Server<F>(Arc<rustls::ServerConfig>, F);

    impl<H: StreamHandler<Buffered> + 'static, F: FnMut() -> H + 'static> AcceptHandler for Server<F> {
        fn handle_accepted(
            &mut self,
            conn: Channel<Connected>,
            _: Address,
            cx: &mut Ctx<'_>,
        ) -> io::Result<()> {
            cx.insert(Handshaking::server(Buffered::new(conn), self.0.clone())?, (self.1)())?;
            Ok(())
        }
    }

    /// Runs the loop until the client thread says it is `done`, for at most
    /// 8 s, calling `each` after every iteration.
    fn serve_until(map: &mut Map, done: &AtomicBool, mut each: impl FnMut(&mut Map)) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while !done.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            util::run_iterations(map, 1);
            each(map);
        }
    }

    /// A TLS 1.3 client thread sends 100 bytes to `addr` and reads their
    /// echo while `map` serves them, calling `each` after every iteration
    /// (see [`serve_until`]); the echo must come back whole.
    fn echo_while(
        map: &mut Map,
        addr: SocketAddr,
        cert: &TestCert,
        backend: Backend,
        each: impl FnMut(&mut Map),
    ) {
        let client = client_config(cert, &[&rustls::version::TLS13], &[]);
        let sent: Vec<u8> = (0..100u8).collect();
        let expected = sent.clone();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = thread::spawn(move || {
            let result = connect(addr, client).and_then(|mut c| roundtrip(&mut c, &sent));
            flag.store(true, Ordering::SeqCst);
            result
        });
        serve_until(map, &done, each);
        let back = thread.join().expect("the client panicked");
        let back = back.unwrap_or_else(|e| panic!("{backend}: the echo stalled: {e}"));
        assert!(back == expected, "{backend}: every byte back");
    }

    /// Every byte of a TLS record reaches a handler that reads it a byte at
    /// a time while the peer waits for the answer (no later readiness of the
    /// socket to wake it): plaintext held by the session is read on, not
    /// left until the peer sends again.
    #[test]
    fn a_record_read_a_byte_at_a_time_is_read_whole_while_the_peer_waits() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let mut map = util::map(backend);
            map.insert(listener, Server(server_config(&cert, &[], &[]), || Sip)).unwrap();
            let client = client_config(&cert, &[&rustls::version::TLS13], &[]);
            let sent: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
            let expected = sent.clone();
            let back = util::with_client(&mut map, move || {
                let mut c = connect(addr, client).unwrap();
                roundtrip(&mut c, &sent)
            });
            let back = back.unwrap_or_else(|e| panic!("{backend}: the echo stalled: {e}"));
            assert!(back == expected, "{backend}: every byte back, in order");
        }
    }

    /// Plaintext that arrives in the same batch as the peer's
    /// `close_notify` and its FIN is all read before `handle_close`, and
    /// its echo, queued then, all reaches the peer, before our own
    /// `close_notify`.
    #[test]
    fn plaintext_with_close_notify_is_read_and_answered_whole() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let mut map = util::map(backend);
            map.insert(listener, Server(server_config(&cert, &[], &[]), || Sip)).unwrap();
            let client = client_config(&cert, &[&rustls::version::TLS13], &[]);
            let sent: Vec<u8> = (0..3000u32).map(|i| (i % 249) as u8).collect();
            let expected = sent.clone();
            let back = util::with_client(&mut map, move || -> io::Result<Vec<u8>> {
                let mut c = connect(addr, client)?;
                c.conn.writer().write_all(&sent)?;
                c.conn.send_close_notify();
                let mut batch = Vec::new();
                while c.conn.wants_write() {
                    c.conn.write_tls(&mut batch)?;
                }
                c.sock.write_all(&batch)?;
                c.sock.shutdown(std::net::Shutdown::Write)?;
                let mut back = Vec::new();
                let mut buf = [0; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => return Ok(back),
                        Ok(n) => back.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            return Err(io::Error::new(e.kind(), format!("after {} bytes: {e}", back.len())));
                        }
                    }
                }
            });
            let back = back.unwrap_or_else(|e| panic!("{backend}: {e}"));
            assert!(
                back == expected,
                "{backend}: every byte back, then close_notify ({} of {})",
                back.len(),
                expected.len()
            );
        }
    }

    /// A peer's `close_notify` decrypted with its last plaintext is the end
    /// of the stream once that plaintext is read, though the socket says
    /// nothing more (the peer waits, its side of the connection open, for
    /// our answer and our own `close_notify`): the echo comes back whole,
    /// then a clean end.
    #[test]
    fn close_notify_held_behind_the_last_plaintext_ends_the_stream() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let mut map = util::map(backend);
            map.insert(listener, Server(server_config(&cert, &[], &[]), || Sip)).unwrap();
            let client = client_config(&cert, &[&rustls::version::TLS13], &[]);
            let back = util::with_client(&mut map, move || -> io::Result<Vec<u8>> {
                let mut c = connect(addr, client)?;
                // Two bytes, then close_notify, in one write; no FIN.
                c.conn.writer().write_all(b"ok")?;
                c.conn.send_close_notify();
                let mut batch = Vec::new();
                while c.conn.wants_write() {
                    c.conn.write_tls(&mut batch)?;
                }
                c.sock.write_all(&batch)?;
                let mut back = Vec::new();
                let mut buf = [0; 64];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => return Ok(back),
                        Ok(n) => back.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(io::Error::new(e.kind(), format!("after {back:?}: {e}"))),
                    }
                }
            });
            let back = back.unwrap_or_else(|e| panic!("{backend}: no clean end: {e}"));
            assert_eq!(back, b"ok", "{backend}");
        }
    }

    /// Reads 10 bytes, then pauses itself (`readable()` false) until the
    /// program lets it read again.
    struct Pausing(Rc<std::cell::Cell<bool>>);

    impl StreamHandler<Buffered> for Pausing {
        fn readable(&self, _: &Buffered) -> bool {
            !self.0.get()
        }
        fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            let mut buf = [0; 10];
            let n = ch.recv(&mut buf)?;
            self.0.set(true);
            ch.send(&buf[..n])
        }
    }

    /// A TLS handler that paused itself (`readable()` false) with
    /// plaintext still held by the session, and is let read again from
    /// outside its own wake-ups (`refresh_all`, `update`, a `stream_mut`
    /// guard), reads that plaintext at once: the socket will not report it,
    /// and a peer that waits for the answer sends nothing more.
    #[test]
    fn a_paused_tls_handler_let_read_again_from_outside_reads_the_held_plaintext() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let paused = Rc::new(std::cell::Cell::new(false));
            let mut map = util::map(backend);
            let pausing = paused.clone();
            map.insert(listener, Server(server_config(&cert, &[], &[]), move || Pausing(pausing.clone())))
                .unwrap();
            echo_while(&mut map, addr, &cert, backend, |map| {
                if paused.get() {
                    paused.set(false);
                    map.refresh_all();
                }
            });
        }
    }

    /// Echoes 10 bytes per read; pauses itself after its first read, until
    /// the program lets it read again; counts the reads that found nothing.
    struct PausingOnce {
        paused: Rc<std::cell::Cell<bool>>,
        empty_reads: Rc<std::cell::Cell<u32>>,
        reads_while_paused: Rc<std::cell::Cell<u32>>,
        first: bool,
    }

    impl StreamHandler<Buffered> for PausingOnce {
        fn readable(&self, _: &Buffered) -> bool {
            !self.paused.get()
        }
        fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            if self.paused.get() {
                self.reads_while_paused.set(self.reads_while_paused.get() + 1);
            }
            let mut buf = [0; 10];
            let n = match ch.recv(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.empty_reads.set(self.empty_reads.get() + 1);
                    return Err(e);
                }
                other => other?,
            };
            if self.first {
                self.first = false;
                self.paused.set(true);
            }
            ch.send(&buf[..n])
        }
    }

    /// Plaintext held by the session is read only while the handler wants
    /// it: a handler that paused itself gets no read, however much is held.
    /// Let read again, it is asked for the held plaintext at once (the next
    /// wait, even one without a time limit, does not sleep), and once,
    /// however many refreshes found it held: one wake-up reads it all, and
    /// no second one follows for input that is gone (a read that finds
    /// nothing).
    #[test]
    fn held_plaintext_is_read_only_while_wanted_and_once_per_release() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let paused = Rc::new(std::cell::Cell::new(false));
            let empty_reads = Rc::new(std::cell::Cell::new(0));
            let reads_while_paused = Rc::new(std::cell::Cell::new(0));
            let (pausing, empty, while_paused) =
                (paused.clone(), empty_reads.clone(), reads_while_paused.clone());
            let server = Server(server_config(&cert, &[], &[]), move || PausingOnce {
                paused: pausing.clone(),
                empty_reads: empty.clone(),
                reads_while_paused: while_paused.clone(),
                first: true,
            });
            let mut map = util::map(backend);
            map.insert(listener, server).unwrap();
            let mut released = None;
            echo_while(&mut map, addr, &cert, backend, |map| {
                if paused.get() && released.is_none() {
                    paused.set(false);
                    // Twice: each finds the plaintext held.
                    map.refresh_all();
                    map.refresh_all();
                    let before = empty_reads.get();
                    // A wait with no limit: held plaintext must end it at
                    // once. A guard wakes the loop after 10 s, and says so.
                    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
                    let waker = map.waker().unwrap();
                    let guard = thread::spawn(move || {
                        let timed_out = cancelled.recv_timeout(std::time::Duration::from_secs(10)).is_err();
                        if timed_out {
                            waker.wake().unwrap();
                        }
                        timed_out
                    });
                    map.poll(None).unwrap();
                    cancel.send(()).unwrap();
                    assert!(!guard.join().unwrap(), "{backend}: the wait slept with plaintext held");
                    released = Some(empty_reads.get() - before);
                }
            });
            assert_eq!(released, Some(0), "{backend}: reads that found nothing after the release");
            assert_eq!(reads_while_paused.get(), 0, "{backend}: reads while the handler was paused");
        }
    }

    /// Reads until it got one byte, then never again: the rest of the
    /// record stays held by the session. Counts its calls after that byte.
    struct TakesOneByte {
        got: bool,
        calls_after: Rc<std::cell::Cell<u32>>,
    }

    impl StreamHandler<Buffered> for TakesOneByte {
        fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            if self.got {
                self.calls_after.set(self.calls_after.get() + 1);
                return Ok(());
            }
            self.got = ch.recv(&mut [0; 1])? == 1;
            Ok(())
        }
    }

    /// A handler that stays readable but takes none of the plaintext the
    /// session holds cannot hold the loop: the reads on after its wake-up
    /// stop after 64 in a row that took nothing.
    #[test]
    fn reading_on_held_plaintext_stops_after_64_reads_that_take_nothing() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let calls = Rc::new(std::cell::Cell::new(0));
            let mut map = util::map(backend);
            let calls_after = calls.clone();
            let make = move || TakesOneByte { got: false, calls_after: calls_after.clone() };
            map.insert(listener, Server(server_config(&cert, &[], &[]), make)).unwrap();
            let client = client_config(&cert, &[&rustls::version::TLS13], &[]);
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            let thread = thread::spawn(move || -> io::Result<()> {
                let mut c = connect(addr, client)?;
                c.write_all(&[7; 100])?;
                c.flush()?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
                while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    thread::sleep(std::time::Duration::from_millis(5));
                }
                Ok(())
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
            while calls.get() == 0 && std::time::Instant::now() < deadline {
                util::run_iterations(&mut map, 1);
            }
            done.store(true, Ordering::SeqCst);
            thread.join().expect("the client panicked").unwrap();
            let calls = calls.get();
            assert!(calls > 0, "{backend}: the held plaintext was not read on");
            assert!(calls <= 64, "{backend}: {calls} reads that took nothing: they did not stop at 64");
        }
    }

    /// Echoes; wants no input until the program lets it read (`released`);
    /// notes its `handle_connect`.
    struct StartsPaused {
        released: Rc<std::cell::Cell<bool>>,
        connected: Rc<std::cell::Cell<bool>>,
    }

    impl StreamHandler<Buffered> for StartsPaused {
        fn readable(&self, _: &Buffered) -> bool {
            self.released.get()
        }
        fn handle_connect(&mut self, _: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            self.connected.set(true);
            Ok(())
        }
        fn handle_read(&mut self, ch: &mut Buffered, _: &mut Ctx<'_>) -> io::Result<()> {
            let mut buf = [0; 256];
            let n = ch.recv(&mut buf)?;
            ch.send(&buf[..n])
        }
    }

    /// Plaintext that came with the client's `Finished`, decrypted as the
    /// handshake completed, to a handler that did not want input then, is
    /// held, not lost: let read again from outside its wake-ups, the
    /// handler reads it at once, though the client sends nothing more.
    #[test]
    fn plaintext_held_as_the_handshake_completed_is_read_once_the_handler_wants_it() {
        let cert = cert();
        for backend in util::backends() {
            let (listener, addr): (_, SocketAddr) = util::tcp_listener();
            let released = Rc::new(std::cell::Cell::new(false));
            let connected = Rc::new(std::cell::Cell::new(false));
            let (release, connect_seen) = (released.clone(), connected.clone());
            let make = move || StartsPaused { released: release.clone(), connected: connect_seen.clone() };
            let server = Server(server_config(&cert, &[], &[]), make);
            let mut map = util::map(backend);
            map.insert(listener, server).unwrap();
            let client = client_config(&cert, &[&rustls::version::TLS13], &[]);
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            let thread = thread::spawn(move || -> io::Result<Vec<u8>> {
                let result = (|| {
                    let sock = std::net::TcpStream::connect(addr)?;
                    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                    let mut conn =
                        rustls::ClientConnection::new(client, localhost()).map_err(io::Error::other)?;
                    conn.writer().write_all(b"right behind the Finished")?;
                    let mut tls = rustls::StreamOwned::new(conn, sock);
                    let mut back = [0u8; 25];
                    tls.read_exact(&mut back).map(|()| back.to_vec())
                })();
                flag.store(true, Ordering::SeqCst);
                result
            });
            serve_until(&mut map, &done, |map| {
                if connected.get() && !released.get() {
                    released.set(true);
                    map.refresh_all();
                }
            });
            let back = thread.join().expect("the client panicked");
            assert!(connected.get(), "{backend}: the handshake did not complete");
            let back = back.unwrap_or_else(|e| panic!("{backend}: the held plaintext was not read: {e}"));
            assert_eq!(back, b"right behind the Finished", "{backend}");
        }
    }
}
