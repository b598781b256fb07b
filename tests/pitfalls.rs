//! The asyncore pitfalls (P1–P22, `docs/reliability.md`) that no other test
//! file proves on its own, and one the soak found. `docs/reliability.md` maps
//! every pitfall to its test.
//!
//! - P3: idle iterations ask no handler for its interest.
//! - P5: the default `handle_expt` discards an urgent byte; the loop does not
//!   spin on it.
//! - P6: a send to a peer that reset, in the middle of a large queued write,
//!   raises no `SIGPIPE` and leaves the process alive (a pipe write does raise
//!   it, as documented: the control).
//! - P12: a channel whose open file description outlives it (a `dup`) leaves
//!   no epoll registration behind.
//! - P13: a stream that wants nothing still learns that its peer reset or
//!   hung up (poll and epoll; select cannot, as documented).
//! - Found by the soak: the timers of channels that closed must not make the
//!   loop spin.
//!
//! Timing checks here are lower bounds only ("the loop slept at least …"): a
//! loaded machine makes a loop slower, never faster, so they cannot flake.

mod util;

use std::cell::Cell;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{Backend, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler};
use util::Log;

/// A loopback TCP connection: our end as a channel, the peer's as a std
/// stream with a read timeout.
fn tcp_pair() -> (Channel<Connected>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (Channel::try_from(client).expect("adopt"), server)
}

/// Runs `iterations` waits of `each` and returns how long they took.
fn timed_iterations(map: &mut Map, iterations: u64, each: Duration) -> Duration {
    let started = Instant::now();
    map.run(LoopOptions::new().timeout(each).count(iterations)).expect("loop");
    started.elapsed()
}

// ---- P3: O(ready), not O(channels), per iteration ---------------------------------------

/// Counts every call of its predicates; reads whatever arrives.
struct Counted {
    asked: Rc<Cell<usize>>,
    read: Rc<Cell<usize>>,
}

impl StreamHandler for Counted {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        self.asked.set(self.asked.get() + 1);
        true
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        self.asked.set(self.asked.get() + 1);
        false
    }

    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.read.set(self.read.get() + n);
        Ok(())
    }
}

/// P3: asyncore called `readable()` and `writable()` of every channel on every
/// iteration (300 idle channels × 100 iterations = 60 000 calls, E11).
/// rolecore caches each channel's interest and asks again only after a
/// callback into it: 500 idle channels are never asked during 50 iterations,
/// on any backend, while the one active channel is asked after each of its
/// reads.
#[test]
fn p3_idle_channels_are_not_asked_for_their_interest_on_every_iteration() {
    const IDLE: usize = 500;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let idle_asked = Rc::new(Cell::new(0));
        let mut peers = Vec::new();
        for _ in 0..IDLE {
            let (ours, peer) = Channel::pair().unwrap();
            peers.push(peer);
            map.insert(ours, Counted { asked: idle_asked.clone(), read: Rc::default() }).unwrap();
        }
        let (active, mut active_peer) = Channel::pair().unwrap();
        let (active_asked, read) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        map.insert(active, Counted { asked: active_asked.clone(), read: read.clone() }).unwrap();
        let (idle_before, active_before) = (idle_asked.get(), active_asked.get());
        for round in 1..=5 {
            active_peer.send(b"0123456789").unwrap();
            assert!(util::run_until(&mut map, |_| read.get() == 10 * round), "{backend}: round {round}");
            util::run_iterations(&mut map, 10);
        }
        assert_eq!(
            idle_asked.get(),
            idle_before,
            "{backend}: idle channels were asked for their interest during idle iterations"
        );
        assert!(active_asked.get() > active_before, "{backend}: the active channel is asked after its reads");
        drop(peers);
    }
}

// ---- P5: urgent data -------------------------------------------------------------------------

/// Reads ordinary data; keeps the default `handle_expt`.
struct PlainReader {
    data: Rc<std::cell::RefCell<Vec<u8>>>,
    closed: Rc<Cell<usize>>,
}

impl StreamHandler for PlainReader {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.closed.set(self.closed.get() + 1);
    }
}

/// P5: an urgent byte that `handle_expt` does not consume keeps the
/// exceptional condition set, and asyncore's loop spun (118 798 iterations in
/// 0.3 s, E22). rolecore's default `handle_expt` reads and drops it: the
/// ordinary data around it arrives without it, the channel stays open, and
/// the loop then sleeps its full timeouts.
#[test]
fn p5_the_default_handle_expt_drops_an_urgent_byte_and_the_loop_does_not_spin() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, peer) = tcp_pair();
        let mut peer = Channel::<Connected>::try_from(peer).unwrap();
        let (data, closed) = (Rc::default(), Rc::new(Cell::new(0)));
        let token = map.insert(ours, PlainReader { data: Rc::clone(&data), closed: closed.clone() }).unwrap();
        assert_eq!(peer.send(b"ab").unwrap(), 2);
        assert_eq!(peer.send_oob(b"!").unwrap(), 1);
        assert_eq!(peer.send(b"cd").unwrap(), 2);
        assert!(util::run_until(&mut map, |_| data.borrow().len() == 4), "{backend}: {:?}", data.borrow());
        util::run_iterations(&mut map, 3);
        assert_eq!(*data.borrow(), b"abcd", "{backend}: the urgent byte stays out of the stream");
        let took = timed_iterations(&mut map, 5, Duration::from_millis(50));
        assert!(took >= Duration::from_millis(200), "{backend}: 5 idle iterations took {took:?}: a spin");
        assert!(map.contains(token) && closed.get() == 0, "{backend}: urgent data does not close");
    }
}

// ---- P6: SIGPIPE ------------------------------------------------------------------------------

/// P6 needs a `SIGPIPE` handler to notice a signal, which the `signals`
/// feature (signal-hook) provides.
#[cfg(feature = "signals")]
mod p6 {
    use std::io::{self, Read};
    use std::os::fd::OwnedFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use rolecore::{Buffered, Channel, Connected, Ctx, Map, StreamHandler};

    use super::{Log, tcp_pair, util};

    /// Echoes, through a `Buffered` queue; records closes and errors.
    struct Echo(Log);

    impl StreamHandler<Buffered<Connected>> for Echo {
        fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
            let mut buf = [0u8; 8192];
            let n = ch.recv(&mut buf)?;
            ch.send(&buf[..n])
        }

        fn handle_close(&mut self, _ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) {
            self.0.push("close");
        }

        fn handle_error(&mut self, _ch: &mut Buffered<Connected>, error: io::Error, cx: &mut Ctx<'_>) {
            self.0.push(format!("error {error}"));
            cx.close();
        }
    }

    /// P6: asyncore relied on Python ignoring `SIGPIPE`; with the default
    /// disposition a write to a reset peer killed the process (rc −13, E17).
    /// rolecore sends with `MSG_NOSIGNAL`. A `SIGPIPE` handler that only sets a
    /// flag stands in for the default disposition (a Rust test binary ignores
    /// `SIGPIPE`, so a raised one would otherwise go unnoticed): a 32 MiB queued
    /// write whose peer resets halfway ends in `handle_close`, once, with no
    /// signal. The control shows the flag works: a write to a pipe without a
    /// reader does raise `SIGPIPE` (pipes have no per-call flag; documented on
    /// `Channel<FileFd>::send`), and still only returns the end.
    #[test]
    fn a_peer_reset_during_a_large_write_raises_no_sigpipe_and_the_process_lives() {
        let sigpipe = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGPIPE, Arc::clone(&sigpipe))
            .expect("watch SIGPIPE");
        for backend in util::backends() {
            let log = Log::default();
            let mut map = util::map(backend);
            let (ours, mut peer) = tcp_pair();
            let mut ours = Buffered::new(ours).with_limit(64 << 20);
            ours.send(&vec![0x5a; 32 << 20]).expect("queue 32 MiB");
            assert!(ours.queued() > 0, "{backend}: the socket cannot take 32 MiB at once");
            map.insert(ours, Echo(log.clone())).unwrap();
            // The peer takes a little of it, then resets.
            util::run_iterations(&mut map, 2);
            let mut some = [0u8; 64 * 1024];
            peer.read_exact(&mut some).expect("the first 64 KiB");
            rustix::net::sockopt::set_socket_linger(&peer, Some(Duration::ZERO)).unwrap();
            drop(peer);
            assert!(
                util::run_until(&mut map, Map::is_empty),
                "{backend}: closed within 5 s: {:?}",
                log.events()
            );
            assert_eq!(log.events(), ["close"], "{backend}: handle_close once, no error");
            assert!(!sigpipe.load(Ordering::SeqCst), "{backend}: a socket send raised SIGPIPE");
        }

        // The control: a pipe's writer whose reader is gone.
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let mut writer = Channel::file(OwnedFd::from(writer)).unwrap();
        assert_eq!(writer.send(b"x").unwrap(), 0, "EPIPE reads as the end");
        assert!(sigpipe.load(Ordering::SeqCst), "the control: a pipe write does raise SIGPIPE");
    }
}

// ---- P12: a descriptor closed behind the loop ----------------------------------------------

/// Reads and counts; any event at all is recorded.
struct Quiet(Rc<Cell<usize>>);

impl StreamHandler for Quiet {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(self.0.get() + 1);
        ch.recv(&mut [0u8; 64]).map(drop)
    }
}

/// P12: an epoll registration belongs to the open file description, not to
/// the descriptor number, so it outlives `close` when the description is
/// shared (a `dup`, a forked child): asyncore's poll backends then reported a
/// descriptor nobody owned. rolecore deletes the registration before it
/// closes. Here a channel's description stays open through a duplicate the
/// test keeps, and becomes readable after the channel left the map: a leftover
/// registration would wake every wait at once (level-triggered), so the loop
/// would spin; instead it sleeps its timeouts, and nothing reaches the channel
/// that stays.
#[test]
fn p12_a_channel_whose_description_outlives_it_leaves_no_registration_behind() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let events = Rc::new(Cell::new(0));
        let (gone, mut gone_peer) = Channel::pair().unwrap();
        let duplicate: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&gone, 0).expect("dup");
        let token = map.insert(gone, Quiet(events.clone())).unwrap();
        let (stays, _stays_peer) = Channel::pair().unwrap();
        map.insert(stays, Quiet(events.clone())).unwrap();
        util::run_iterations(&mut map, 2);
        assert!(map.remove(token), "{backend}");
        gone_peer.send(b"for the duplicate").unwrap();
        let took = timed_iterations(&mut map, 4, Duration::from_millis(50));
        assert!(
            took >= Duration::from_millis(150),
            "{backend}: 4 waits took {took:?}: a leftover registration"
        );
        assert_eq!(events.get(), 0, "{backend}: an event reached a channel");
        drop(duplicate);
    }
}

// ---- P13: a mute channel ---------------------------------------------------------------------

/// Wants nothing at all (flow control); records its close.
struct Mute(Log);

impl StreamHandler for Mute {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("read");
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// P13: asyncore left a channel that was neither readable nor writable out of
/// the poll, so it never learned that its peer left, and the loop slept
/// forever (E13). rolecore always watches hang-ups and errors on poll and
/// epoll: a stream that wants nothing gets `handle_close` when its TCP peer
/// resets, or its Unix peer closes. (A TCP peer's FIN alone is no hang-up: it
/// is read as the end once the channel reads again. select cannot watch a
/// descriptor without interest; `src/poller/select.rs` documents it.)
#[test]
fn p13_a_stream_that_wants_nothing_still_learns_that_its_peer_left() {
    for backend in util::backends().filter(|b| *b != Backend::Select) {
        let log = Log::default();
        let mut map = util::map(backend);
        let (tcp, tcp_peer) = tcp_pair();
        map.insert(tcp, Mute(log.clone())).unwrap();
        util::run_iterations(&mut map, 2);
        rustix::net::sockopt::set_socket_linger(&tcp_peer, Some(Duration::ZERO)).unwrap();
        drop(tcp_peer);
        assert!(
            util::run_until(&mut map, Map::is_empty),
            "{backend}: TCP reset not seen: {:?}",
            log.events()
        );
        assert_eq!(log.events(), ["close"], "{backend}");

        let log = Log::default();
        let (unix, unix_peer) = Channel::pair().unwrap();
        map.insert(unix, Mute(log.clone())).unwrap();
        util::run_iterations(&mut map, 2);
        drop(unix_peer);
        assert!(util::run_until(&mut map, Map::is_empty), "{backend}: hang-up not seen: {:?}", log.events());
        assert_eq!(log.events(), ["close"], "{backend}");
    }
}

// ---- found by the soak: timers of closed channels -----------------------------------------

/// An idle timeout belongs to a channel; once the channel is gone, its timer
/// must not wake the loop. Found by the soak (`tools/soak`): an `http_server`
/// (`--idle-timeout`) whose last connection had closed used ~100% CPU from
/// the moment that connection's idle timeout would have passed, until a new
/// connection arrived. Here: one channel with a 30 ms idle timeout leaves the
/// map (another channel, without a timer, keeps the map alive); once the
/// 30 ms are over, five 50 ms waits must still take at least 200 ms.
#[test]
fn the_idle_timeout_of_a_channel_that_closed_does_not_make_the_loop_spin() {
    for backend in util::backends() {
        for how in ["removed", "closed by its peer"] {
            let mut map = util::map(backend);
            let events = Rc::new(Cell::new(0));
            let (timed, timed_peer) = Channel::pair().unwrap();
            let token = map.insert(timed, Quiet(events.clone())).unwrap();
            assert!(map.set_idle_timeout(token, Some(Duration::from_millis(30))));
            let (stays, _stays_peer) = Channel::pair().unwrap();
            map.insert(stays, Quiet(Rc::default())).unwrap();
            if how == "removed" {
                assert!(map.remove(token));
            } else {
                drop(timed_peer);
                assert!(util::run_until(&mut map, |m| !m.contains(token)), "{backend}");
            }
            std::thread::sleep(Duration::from_millis(60));
            let took = timed_iterations(&mut map, 5, Duration::from_millis(50));
            assert!(
                took >= Duration::from_millis(200),
                "{backend}, {how}: 5 idle waits took {took:?}: the loop spins on the timer of a channel that is gone"
            );
        }
    }
}
