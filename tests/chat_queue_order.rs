//! A chat's queue is the only way out (issue 15): a goodbye queued with
//! `close_when_done` is the last thing the peer receives, a push after it is
//! an error rather than a byte that overtakes or follows it, and a chat that
//! is still connecting may queue a greeting and its goodbye, sent once the
//! connect completes.

mod util;

use std::cell::Cell;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use rolecore::{AsyncChat, Channel, ChatHandler, Ctx, Terminator};

/// Answers the first line with a goodbye and closes once it is sent; tries
/// to say more afterwards, which must fail.
struct Bye {
    late_push: Rc<Cell<Option<io::ErrorKind>>>,
}

impl ChatHandler for Bye {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        chat.push(b"goodbye\n")?;
        chat.close_when_done();
        self.late_push.set(chat.push(b"too late\n").err().map(|e| e.kind()));
        // The socket can still be tuned; it cannot be written around the queue.
        let _ = chat.get_ref().local_addr()?;
        Ok(())
    }
}

#[test]
fn the_goodbye_is_the_last_thing_sent_and_a_later_push_fails() {
    for backend in util::backends() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut map = util::map(backend);
        let late = Rc::new(Cell::new(None));
        let chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
        let token = map.insert(chat, Bye { late_push: Rc::clone(&late) }).unwrap();
        io::Write::write_all(&mut peer, b"hello\n").unwrap();
        // The peer reads to the end of the stream, then closes: the chat,
        // lingering after its goodbye, then closes too.
        let reader = read_to_end_then_close(peer);
        assert!(
            util::run_until(&mut map, |m| !m.contains(token)),
            "{backend}: closed once the goodbye is sent and the peer closed"
        );
        let got = reader.join().unwrap();
        assert_eq!(got, "goodbye\n", "{backend}: the goodbye, then the end; nothing after it");
        assert_eq!(late.get(), Some(io::ErrorKind::Other), "{backend}: a push after close_when_done fails");
    }
}

/// Reads `peer` to the end of its stream on a thread of its own, then
/// closes it; returns what it read.
fn read_to_end_then_close(mut peer: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        got
    })
}

/// Does nothing with input; the test only watches what a connecting chat
/// queued.
struct Quiet;

impl ChatHandler for Quiet {
    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        chat.take_incoming();
        Ok(())
    }
}

#[test]
fn a_connecting_chat_may_queue_a_greeting_and_its_goodbye() {
    for backend in util::backends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut chat = AsyncChat::new(Channel::tcp_v4().unwrap().connect(addr).unwrap(), Terminator::LF);
        chat.push(b"HELO\n").unwrap();
        chat.close_when_done();
        assert!(chat.push(b"more\n").is_err());
        let mut map = util::map(backend);
        let token = map.insert(chat, Quiet).unwrap();
        let (server, _) = listener.accept().unwrap();
        let reader = read_to_end_then_close(server);
        assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}: closed once sent");
        let got = reader.join().unwrap();
        assert_eq!(got, "HELO\n", "{backend}");
    }
}
