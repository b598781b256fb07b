//! P14: a peer that shuts down its sending side still receives every byte the
//! server had queued for it (asyncore dropped the queue: 65 536 of 4 194 304
//! bytes arrived in experiment E25, `docs/rules.md`).

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use rolecore::{Buffered, Channel, Connected, Ctx, StreamHandler};
use util::Log;

struct Echo(Log);

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n])
    }

    fn handle_close(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push(format!("close with {} queued", ch.queued()));
    }
}

#[test]
fn queued_output_reaches_a_peer_that_half_closed() {
    const LEN: usize = 1 << 20;
    for backend in util::backends() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut theirs = theirs;
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
        let log = Log::default();
        let mut map = util::map(backend);
        let channel = Channel::<Connected>::try_from(ours).unwrap();
        map.insert(Buffered::new(channel), Echo(log.clone())).unwrap();

        // The peer sends everything and its FIN without reading a byte, so the
        // echo piles up in the server's queue behind a full socket buffer.
        let writer = {
            let mut theirs = theirs.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                theirs.write_all(&data).unwrap();
                theirs.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).map(|_| got)
        });
        // Let the server read to the end before the peer reads anything.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(util::run_until(&mut map, |m| m.is_empty()), "{backend}: the channel never closed");
        writer.join().unwrap();
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got.len(), LEN, "{backend}: bytes lost after the peer's FIN");
        assert!(got == data, "{backend}: bytes corrupted");
        assert_eq!(log.events(), ["close with 0 queued"], "{backend}: handle_close once, after draining");
    }
}

/// Answers the first read with more than the socket takes, and gives
/// itself a deadline.
struct BigReply(Log);

impl StreamHandler<Buffered<Connected>> for BigReply {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        if n > 0 {
            ch.send(&vec![b'r'; 1 << 20])?;
            let at = cx.now() + std::time::Duration::from_millis(30);
            cx.set_deadline(cx.token(), Some(at));
        }
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push(format!("close with queue: {}", ch.queued() > 0));
    }
}

/// Our end of a socket pair whose peer sent `go` and then ended its side
/// (and does not read), and the peer.
fn asked_then_half_closed() -> (Channel<Connected>, UnixStream) {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(b"go").unwrap();
    theirs.shutdown(Shutdown::Write).unwrap();
    (Channel::try_from(ours).unwrap(), theirs)
}

/// A stream draining its queue to a peer that half-closed is still bound
/// by its deadline: a peer that never reads cannot keep it open. When the
/// deadline passes, `handle_close` comes (with the output still queued)
/// and the channel leaves the map.
#[test]
fn a_deadline_closes_a_stream_draining_to_a_peer_that_never_reads() {
    for backend in util::backends() {
        let (channel, theirs) = asked_then_half_closed();
        let log = Log::default();
        let mut map = util::map(backend);
        map.insert(Buffered::new(channel), BigReply(log.clone())).unwrap();
        assert!(util::run_until(&mut map, |m| m.is_empty()), "{backend}: the deadline did not close it");
        assert_eq!(log.events(), ["close with queue: true"], "{backend}");
        drop(theirs);
    }
}

/// Answers the first read with more than the socket takes, and gives
/// itself an idle timeout.
struct BigReplyIdle(Log);

impl StreamHandler<Buffered<Connected>> for BigReplyIdle {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        if ch.recv(&mut buf)? > 0 {
            ch.send(&vec![b'r'; 1 << 20])?;
            cx.set_idle_timeout(cx.token(), Some(std::time::Duration::from_millis(30)));
        }
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push(format!("close with queue: {}", ch.queued() > 0));
    }
}

/// A draining stream asks only to write: the peer's end of stream, which
/// stays readable, does not wake it (a wake-up re-arms its idle timeout,
/// so a stream woken on every iteration would never be idle, and the loop
/// would spin). Its idle timeout therefore passes while the peer reads
/// nothing, and closes it with `handle_close`, the output still queued.
#[test]
fn an_idle_timeout_closes_a_stream_draining_to_a_peer_that_never_reads() {
    for backend in util::backends() {
        let (channel, theirs) = asked_then_half_closed();
        let log = Log::default();
        let mut map = util::map(backend);
        map.insert(Buffered::new(channel), BigReplyIdle(log.clone())).unwrap();
        assert!(
            util::run_until(&mut map, |m| m.is_empty()),
            "{backend}: the idle timeout did not close it: {:?}",
            log.events()
        );
        assert_eq!(log.events(), ["close with queue: true"], "{backend}");
        drop(theirs);
    }
}

/// Answers the first read with more than the socket takes; no deadline.
struct BigReplyNoDeadline(Log);

impl StreamHandler<Buffered<Connected>> for BigReplyNoDeadline {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        if ch.recv(&mut buf)? > 0 {
            ch.send(&vec![b'r'; 1 << 20])?;
            self.0.push("replied");
        }
        Ok(())
    }

    fn handle_close(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push(format!("close with queue: {}", ch.queued() > 0));
    }
}

/// A graceful shutdown whose grace ends while a stream is still draining
/// its queue to a peer that half-closed (and does not read) closes it with
/// `handle_close`, as it closes a connected one: the handler hears of the
/// close whatever state the stream is in.
#[test]
fn a_shutdown_closes_a_draining_stream_with_handle_close() {
    for backend in util::backends() {
        let (channel, theirs) = asked_then_half_closed();
        let log = Log::default();
        let mut map = util::map(backend);
        map.insert(Buffered::new(channel), BigReplyNoDeadline(log.clone())).unwrap();
        // The reply, then the end of stream: the stream drains, and stays
        // draining while the peer does not read.
        util::run_iterations(&mut map, 5);
        assert_eq!(log.events(), ["replied"], "{backend}");
        assert_eq!(map.len(), 1, "{backend}");
        map.shutdown(std::time::Duration::ZERO);
        assert!(util::run_until(&mut map, |m| m.is_empty()), "{backend}: the shutdown did not close it");
        assert_eq!(log.events(), ["replied", "close with queue: true"], "{backend}");
        drop(theirs);
    }
}
