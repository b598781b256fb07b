//! No backend reports a readiness the loop will not deliver (issue 14,
//! defect 3): such a report comes back on every wait, level-triggered, and
//! the loop spins at 100 % CPU without calling any handler.
//!
//! Each test counts the loop's iterations in a bounded window of waits of
//! 50 ms: an idle loop makes about four, a spinning one thousands. The
//! assertion is on the count (fewer than 50), never on a time.

mod util;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rolecore::{Channel, Connected, ConnectedDatagram, Ctx, DatagramHandler, Map, StreamHandler};

/// The window in which iterations are counted, and the most counted.
const WINDOW: Duration = Duration::from_millis(200);
const MOST: u64 = 100_000;

/// Iterations of `map.poll` with 50 ms waits until `WINDOW` has passed (or
/// `MOST` iterations, so a spin cannot run long).
fn iterations_in_window(map: &mut Map) -> u64 {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < WINDOW && n < MOST {
        map.poll(Some(Duration::from_millis(50))).expect("poll");
        n += 1;
    }
    n
}

fn tcp_pair() -> (Channel<Connected>, Channel<Connected>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (Channel::try_from(client).expect("adopt"), Channel::try_from(server).expect("adopt"))
}

/// A stream paused as back-pressure pauses one: it does not read, and wants
/// to write output its peer does not take. Counts its callbacks.
#[derive(Default)]
struct Paused {
    callbacks: usize,
}

impl StreamHandler for Paused {
    fn readable(&self, _: &Channel<Connected>) -> bool {
        false
    }
    fn writable(&self, _: &Channel<Connected>) -> bool {
        true
    }
    fn handle_read(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        self.callbacks += 1;
        Ok(())
    }
    fn handle_write(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        self.callbacks += 1;
        Ok(())
    }
    fn handle_expt(&mut self, _: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        self.callbacks += 1;
        Ok(())
    }
}

#[test]
fn a_paused_stream_with_an_urgent_byte_pending_does_not_spin() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (mut ours, mut peer) = tcp_pair();
        // Fill our send buffer: the peer never reads, so writability never
        // comes and the only pending condition is the urgent byte.
        while ours.send(&[0u8; 65536]).unwrap() > 0 {}
        let token = map.insert(ours, Paused::default()).unwrap();
        assert_eq!(peer.send(b"x").unwrap(), 1);
        assert_eq!(peer.send_oob(b"!").unwrap(), 1);
        // Let the urgent byte arrive before counting (loopback: at once, but
        // a few idle waits cost nothing).
        util::run_iterations(&mut map, 2);
        let n = iterations_in_window(&mut map);
        assert!(n < 50, "{backend}: {n} iterations in a window of 50 ms waits: the loop spins");
        let callbacks = map.handler::<Paused>(token).expect("still open").callbacks;
        assert_eq!(callbacks, 0, "{backend}: a paused channel is told nothing");
        drop(peer);
    }
}

/// A connected datagram socket that does not want data now, with a pending
/// ICMP error: poll and epoll report the error whatever the interest, and
/// only a read clears it, so the loop reads it (`handle_read`, whose `recv`
/// fails into `handle_error`) rather than being woken for it forever.
#[derive(Default)]
struct NotReading {
    reads: usize,
    errors: Vec<io::ErrorKind>,
}

impl DatagramHandler<ConnectedDatagram> for NotReading {
    fn readable(&self, _: &Channel<ConnectedDatagram>) -> bool {
        false
    }
    fn handle_read(&mut self, ch: &mut Channel<ConnectedDatagram>, _: &mut Ctx<'_>) -> io::Result<()> {
        self.reads += 1;
        ch.recv(&mut [0u8; 16]).map(drop)
    }
    fn handle_error(&mut self, _: &mut Channel<ConnectedDatagram>, error: io::Error, _: &mut Ctx<'_>) {
        self.errors.push(error.kind());
    }
}

#[test]
fn a_datagram_socket_that_does_not_read_with_an_error_pending_does_not_spin() {
    for backend in util::backends() {
        let closed = Channel::udp_v4().unwrap().bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut map = util::map(backend);
        let mut ch = Channel::udp_v4().unwrap().connect(&closed).unwrap();
        ch.send(b"anyone?").unwrap();
        let token = map.insert(ch, NotReading::default()).unwrap();
        util::run_iterations(&mut map, 2);
        let n = iterations_in_window(&mut map);
        assert!(n < 50, "{backend}: {n} iterations in a window of 50 ms waits: the loop spins");
        assert!(map.contains(token), "{backend}: a datagram socket is not closed by readiness");
        let h = map.handler::<NotReading>(token).unwrap();
        // select reports the error only to a descriptor it watches: this one
        // watches nothing, so there it stays pending, unreported.
        if backend != rolecore::Backend::Select {
            assert_eq!(h.errors, [io::ErrorKind::ConnectionRefused], "{backend}: the error, once");
            assert_eq!(h.reads, 1, "{backend}: one read took it");
        }
    }
}
