//! Many channels: connections that each get exactly their own bytes back,
//! more ready channels than one wait returns, and ten thousand idle channels on
//! every backend (select beyond `FD_SETSIZE`, P2).
//!
//! Every test holds `util::FD_LOCK` (see `tests/descriptors.rs`).
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use rolecore::{AcceptHandler, Address, Buffered, Channel, Connected, Ctx, StreamHandler};
use util::probe::*;
use util::*;

struct Echo;

impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n])
    }
}

struct EchoServer {
    accepted: Rc<Cell<usize>>,
}

impl AcceptHandler for EchoServer {
    fn handle_accepted(
        &mut self,
        conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.accepted.set(self.accepted.get() + 1);
        cx.insert(Buffered::new(conn), Echo)?;
        Ok(())
    }
}

fn payload(client: usize) -> Vec<u8> {
    let mut p = format!("client {client}:").into_bytes();
    p.extend((0..3000usize).map(|k| (client * 31 + k * 7) as u8));
    p
}

/// Item 24 (polling `many_connections`): 128 connections open at once, each
/// gets back exactly the bytes it wrote — no more, no fewer, not another's —
/// and every server side closes after its client.
#[test]
fn many_connections_each_echo_exactly_their_own_bytes() -> io::Result<()> {
    const CLIENTS: usize = 128;
    let _fds = shared();
    for backend in backends() {
        let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(1024)?;
        let addr = listener.local_addr()?.inet().expect("an IP listener");
        let accepted = Rc::new(Cell::new(0));
        let mut m = map(backend);
        m.insert(listener, EchoServer { accepted: accepted.clone() })?;
        let clients = thread::spawn(move || -> Result<(), String> {
            let mut streams = Vec::new();
            for i in 0..CLIENTS {
                let s = TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
                s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
                streams.push(s);
            }
            for (i, s) in streams.iter_mut().enumerate() {
                s.write_all(&payload(i)).map_err(|e| format!("write {i}: {e}"))?;
            }
            for (i, s) in streams.iter_mut().enumerate() {
                let want = payload(i);
                let mut got = vec![0u8; want.len()];
                s.read_exact(&mut got).map_err(|e| format!("read {i}: {e}"))?;
                if got != want {
                    return Err(format!("client {i} got another's bytes"));
                }
                s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
                let mut extra = Vec::new();
                s.read_to_end(&mut extra).map_err(|e| format!("end {i}: {e}"))?;
                if !extra.is_empty() {
                    return Err(format!("client {i} got {} bytes too many", extra.len()));
                }
            }
            Ok(())
        });
        let finished = run_until(&mut m, |_| clients.is_finished());
        let result = clients.join().expect("the client thread panicked");
        assert!(finished, "{backend}: the clients did not finish");
        assert_eq!(result, Ok(()), "{backend}");
        assert_eq!(accepted.get(), CLIENTS, "{backend}");
        assert!(run_until(&mut m, |m| m.len() == 1), "{backend}: {} server sides still open", m.len() - 1);
    }
    Ok(())
}

/// Reads its one byte and counts it.
struct OneByte {
    index: usize,
    served: Rc<RefCell<Vec<u32>>>,
}

impl StreamHandler for OneByte {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 8])?;
        if n > 0 {
            self.served.borrow_mut()[self.index] += 1;
        }
        Ok(())
    }
}

/// Item 25, more channels ready than one wait returns (no peer tests it):
/// epoll hands out at most 1024 events per wait, yet 1100 channels ready at
/// once are each served exactly once within five iterations: the ones left
/// over are not starved.
#[test]
fn more_channels_ready_than_one_wait_returns_are_all_served_within_a_few_iterations() -> io::Result<()> {
    const READY: usize = 1100;
    let _fds = exclusive();
    require_fd_headroom(2 * READY);
    for backend in backends() {
        let served = Rc::new(RefCell::new(vec![0u32; READY]));
        let mut m = map(backend);
        let mut peers = Vec::with_capacity(READY);
        for index in 0..READY {
            let (ours, mut peer) = Channel::pair()?;
            send_all(&mut peer, b"x");
            peers.push(peer);
            m.insert(ours, OneByte { index, served: served.clone() })?;
        }
        run_iterations(&mut m, 5);
        let served = served.borrow();
        let missed = served.iter().filter(|&&n| n == 0).count();
        assert_eq!(missed, 0, "{backend}: {missed} of {READY} ready channels not served in 5 iterations");
        assert!(served.iter().all(|&n| n == 1), "{backend}: a channel was served twice");
    }
    Ok(())
}

/// Counts any event at all.
struct Idle(Rc<Cell<usize>>);

impl StreamHandler for Idle {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.set(self.0.get() + 1);
        ch.recv(&mut [0u8; 8]).map(drop)
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.0.set(self.0.get() + 1);
    }
}

/// Item 25, 10k idle descriptors (no peer tests it): among 10 000 idle
/// channels (both ends of 5000 socket pairs), one active channel still gets
/// every message, and no idle one is woken. (The cost per wait is not
/// asserted: no timing bounds here.)
#[test]
fn ten_thousand_idle_channels_do_not_hide_the_active_one() -> io::Result<()> {
    const PAIRS: usize = 5000;
    let _fds = exclusive();
    require_fd_headroom(2 * PAIRS + 2);
    for backend in backends() {
        let woken = Rc::new(Cell::new(0));
        let mut m = map(backend);
        for _ in 0..PAIRS {
            let (a, b) = Channel::pair()?;
            m.insert(a, Idle(woken.clone()))?;
            m.insert(b, Idle(woken.clone()))?;
        }
        let log = Log::default();
        let (ours, mut peer) = Channel::pair()?;
        let probe = Probe::new("active", &log);
        let data = probe.data.clone();
        m.insert(ours, probe)?;
        assert_eq!(m.len(), 2 * PAIRS + 1);
        let mut expected = Vec::new();
        for round in 0..3 {
            let message = format!("message {round};");
            send_all(&mut peer, message.as_bytes());
            expected.extend_from_slice(message.as_bytes());
            let want = expected.len();
            assert!(
                run_until(&mut m, |_| data.borrow().len() == want),
                "{backend}: round {round} not served"
            );
        }
        assert_eq!(*data.borrow(), expected, "{backend}");
        assert_eq!(woken.get(), 0, "{backend}: idle channels were woken");
    }
    Ok(())
}
