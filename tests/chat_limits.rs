//! A line protocol can refuse an over-long record and keep the connection:
//! `handle_record_too_long` returning `Ok` skips the rest of that record.

mod util;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use rolecore::{AsyncChat, Channel, ChatHandler, Ctx, Terminator};

struct Lines;

impl ChatHandler for Lines {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        let line = chat.take_incoming();
        chat.push(format!("ok {}\n", line.len()).as_bytes())
    }

    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        chat.push(b"too long\n")
    }
}

#[test]
fn an_over_long_line_is_refused_and_the_next_line_is_read_normally() {
    for backend in util::backends() {
        for chunk in [1usize, 7, 4096] {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::bytes(b"\r\n"));
            chat.set_max_record(10);
            let mut map = util::map(backend);
            let token = map.insert(chat, Lines).unwrap();
            let mut input = b"short\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'x', 50));
            input.extend(b"\r\nafter\r\n");
            for piece in input.chunks(chunk) {
                peer.write_all(piece).unwrap();
                util::run_iterations(&mut map, 2);
            }
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend} by {chunk}");
            let mut replies = String::new();
            peer.read_to_string(&mut replies).unwrap();
            assert_eq!(replies, "ok 5\ntoo long\nok 5\n", "{backend}, written {chunk} bytes at a time");
        }
    }
}

/// Answers `quit` with `bye` and closes when done; pushes a reply to
/// every other line.
struct Quitter;

impl ChatHandler for Quitter {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        let line = chat.take_incoming();
        if line == b"quit" {
            chat.push(b"bye\n")?;
            chat.close_when_done();
            return Ok(());
        }
        chat.push(b"echo\n")
    }
}

#[test]
fn lines_after_quit_in_the_same_read_do_not_lose_the_goodbye() {
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::bytes(b"\n"));
        let mut map = util::map(backend);
        let token = map.insert(chat, Quitter).unwrap();
        peer.write_all(b"hello\nquit\nmore\nand more\n").unwrap();
        // The client reads to the end and closes; the chat, lingering after
        // its goodbye, then closes at once.
        let reader = std::thread::spawn(move || {
            let mut replies = String::new();
            peer.read_to_string(&mut replies).unwrap();
            replies
        });
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}");
        let replies = reader.join().unwrap();
        assert_eq!(replies, "echo\nbye\n", "{backend}: the goodbye is sent, later lines are not read");
    }
}

/// `set_out_buffer_size(usize::MAX)` means "no cap on one send": a send that
/// goes out partly must not overflow the arithmetic of the next one.
#[test]
fn an_unbounded_out_buffer_size_survives_partial_sends() {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
    chat.set_out_buffer_size(usize::MAX);
    let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    chat.push(&data).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < data.len() {
        chat.initiate_send().unwrap();
        let n = peer.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
    assert_eq!(chat.queued(), 0);
}

/// Records what the chat's default collector held after each read, and
/// whether the record was refused; keeps the connection when `keep`.
struct Hoarder {
    most: std::rc::Rc<std::cell::Cell<usize>>,
    refused: std::rc::Rc<std::cell::Cell<usize>>,
    errors: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    keep: bool,
}

impl Hoarder {
    fn new(keep: bool) -> Hoarder {
        Hoarder { most: Default::default(), refused: Default::default(), errors: Default::default(), keep }
    }
}

impl ChatHandler for Hoarder {
    fn collect_incoming_data(&mut self, data: &[u8], chat: &mut AsyncChat) -> io::Result<()> {
        chat.collect(data);
        self.most.set(self.most.get().max(chat.incoming().len()));
        Ok(())
    }

    fn found_terminator(&mut self, _: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        unreachable!("no terminator: no record ends")
    }

    fn handle_record_too_long(&mut self, chat: &mut AsyncChat, _: &mut Ctx<'_>) -> io::Result<()> {
        assert!(chat.incoming().is_empty(), "what the record held is dropped first");
        self.refused.set(self.refused.get() + 1);
        if self.keep {
            Ok(())
        } else {
            Err(rolecore::chat::RecordTooLong { limit: chat.max_record() }.into_io())
        }
    }

    fn handle_error(&mut self, _: &mut AsyncChat, error: io::Error, cx: &mut Ctx<'_>) {
        self.errors.borrow_mut().push(error.to_string());
        cx.close();
    }
}

/// With no terminator a record never ends, and a peer that keeps sending
/// would grow the default collector without end: it is bounded by
/// `max_record` as a line is. By default the chat closes with
/// `RecordTooLong`; a handler that returns `Ok` keeps the connection, and
/// the collector never holds more than the bound plus one read.
#[test]
fn with_no_terminator_the_default_collector_is_bounded_by_max_record() {
    const LIMIT: usize = 10_000;
    for backend in util::backends() {
        for keep in [false, true] {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::None);
            chat.set_max_record(LIMIT);
            let handler = Hoarder::new(keep);
            let (most, refused, errors) =
                (handler.most.clone(), handler.refused.clone(), handler.errors.clone());
            let mut map = util::map(backend);
            let token = map.insert(chat, handler).unwrap();
            peer.set_nonblocking(true).unwrap();
            let chunk = [b'x'; 4096];
            let mut sent = 0;
            while sent < 1 << 20 && map.contains(token) {
                match peer.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{backend}: {e}"),
                }
                util::run_iterations(&mut map, 1);
            }
            util::run_iterations(&mut map, 3);
            assert!(refused.get() >= 1, "{backend}, keep {keep}: {sent} bytes and never refused");
            assert!(
                most.get() <= LIMIT + rolecore::chat::DEFAULT_IN_BUFFER_SIZE,
                "{backend}, keep {keep}: the collector held {} bytes",
                most.get()
            );
            if keep {
                assert!(map.contains(token), "{backend}: the handler kept the connection");
                assert!(refused.get() >= 50, "{backend}: refused {} times for {sent} bytes", refused.get());
            } else {
                assert!(!map.contains(token), "{backend}: the default closes");
                assert!(errors.borrow()[0].contains("max_record"), "{backend}: {:?}", errors.borrow());
            }
        }
    }
}

/// With no terminator, `max_record` is the most the default collector may
/// hold, as it is the longest line: exactly `max_record` bytes are kept,
/// one more is refused.
#[test]
fn with_no_terminator_max_record_bytes_are_kept_and_one_more_is_refused() {
    const LIMIT: usize = 100;
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::None);
        chat.set_max_record(LIMIT);
        let handler = Hoarder::new(true);
        let (most, refused) = (handler.most.clone(), handler.refused.clone());
        let mut map = util::map(backend);
        let token = map.insert(chat, handler).unwrap();
        for piece in [b'x'; LIMIT].chunks(30) {
            peer.write_all(piece).unwrap();
            util::run_iterations(&mut map, 2);
        }
        assert_eq!(
            (most.get(), refused.get()),
            (LIMIT, 0),
            "{backend}: the collector holds max_record bytes"
        );
        peer.write_all(b"y").unwrap();
        util::run_iterations(&mut map, 2);
        assert_eq!(refused.get(), 1, "{backend}: one byte past max_record is refused");
        assert!(map.contains(token), "{backend}: the handler kept the connection");
    }
}

/// One `initiate_send` sends at most `out_buffer_size` bytes (asynchat's
/// `ac_out_buffer_size`), however much is queued and the socket would take;
/// the rest goes out on the next ones, in order.
#[test]
fn one_send_gives_at_most_out_buffer_size_bytes() {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
    chat.set_out_buffer_size(1000);
    let data: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
    chat.push(&data).unwrap();
    chat.initiate_send().unwrap();
    assert_eq!(chat.queued(), 9000, "one send, one out_buffer_size");
    let mut got = vec![0u8; 1000];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, data[..1000]);
    while chat.has_output() {
        chat.initiate_send().unwrap();
    }
    let mut rest = vec![0u8; 9000];
    peer.read_exact(&mut rest).unwrap();
    assert_eq!(rest, data[1000..]);
}

/// A buffer sent in pieces is done only when its last byte went: whatever
/// is left of it after a send (down to one byte) goes out on the next, and
/// the count of queued bytes reaches zero with the queue.
#[test]
fn a_buffer_sent_in_pieces_goes_out_to_its_last_byte() {
    for (len, size) in [(2001, 1000), (3, 2), (1000, 999)] {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
        chat.set_out_buffer_size(size);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        chat.push(&data).unwrap();
        for _ in 0..len {
            if !chat.has_output() {
                break;
            }
            chat.initiate_send().unwrap();
        }
        assert_eq!(chat.queued(), 0, "{len} bytes in pieces of {size}: bytes left in the count");
        drop(chat);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(got == data, "{len} bytes in pieces of {size}: {} bytes arrived", got.len());
    }
}

/// Back-pressure follows the chat's queue both ways: above the high
/// watermark the chat is backlogged, and as its own sends drain the queue
/// it stops being backlogged once at or below the low one, with no further
/// push needed to notice.
#[test]
fn a_chat_stops_being_backlogged_as_its_sends_drain_the_queue() {
    use rolecore::Transport;
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
    chat.set_watermarks(100, 1000);
    chat.set_out_buffer_size(300);
    chat.push(&[b'x'; 1500]).unwrap();
    assert!(chat.is_backlogged(), "1500 queued > 1000");
    chat.initiate_send().unwrap();
    assert_eq!(chat.queued(), 1200);
    assert!(chat.is_backlogged(), "1200 queued: still above the low watermark");
    while chat.queued() > 100 {
        chat.initiate_send().unwrap();
    }
    assert!(!chat.is_backlogged(), "{} queued, low 100", chat.queued());
    while chat.has_output() {
        chat.initiate_send().unwrap();
    }
    let mut got = vec![0u8; 1500];
    peer.read_exact(&mut got).unwrap();
}
