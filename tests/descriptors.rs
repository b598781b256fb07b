//! Descriptor numbers: nothing leaks, and a descriptor number that is closed
//! and reused never gets the old channel's events, tokens or deadlines (D20,
//! P12).
//!
//! Some tests count the process's open descriptors or need the kernel to hand
//! a just-closed descriptor number to the next channel. Tests of one binary run
//! in parallel threads of one process, so every test here holds
//! `util::FD_LOCK`: shared by default, exclusive for the tests that count or
//! reuse descriptor numbers.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{Channel, Connected, Ctx, LoopOptions, StreamHandler, Token};
use util::probe::*;
use util::*;

/// Item 3 (mio `poll_closes_fd`): 2000 maps, each holding and running two
/// channels, leak no descriptor — neither the epoll instance nor a channel.
#[test]
fn creating_and_dropping_2000_maps_leaks_no_descriptor() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let before = open_fds();
        let log = Log::default();
        for _ in 0..2000 {
            let mut m = map(backend);
            let (a, mut b) = Channel::pair()?;
            send_all(&mut b, b"x");
            m.insert(a, Probe::new("a", &log))?;
            m.insert(b, Probe::new("b", &log))?;
            m.run(LoopOptions::new().timeout(Duration::ZERO).count(1))?;
        }
        assert_eq!(log.count("a:data"), 2000, "{backend}: the maps did not run");
        assert_eq!(open_fds(), before, "{backend}: descriptors leaked");
    }
    Ok(())
}

/// Records what `cx.remove` answered for a token it was handed.
struct StaleRemover {
    probe: Probe,
    stale: Token,
}

impl StreamHandler for StaleRemover {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let removed = cx.remove(self.stale);
        self.probe.push(format_args!("remove(stale)={removed}"));
        record_read(&self.probe, |buf| ch.recv(buf))
    }

    fn handle_close(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) {
        self.probe.push("close");
    }
}

/// Item 5 (mio `reregister_without_register`, `deregister_without_register`;
/// polling `delete_unrecognized`; calloop `invalid_token`): removing an
/// unknown or stale token is refused with `false`, from the map and from a
/// callback; refreshing one is harmless; neither touches the channel that now
/// has the stale token's descriptor number.
#[test]
fn stale_or_unknown_tokens_are_refused_and_never_reach_the_new_channel() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, _peer) = Channel::pair()?;
        let stale = m.insert(ours, Probe::new("old", &log))?;
        assert!(m.remove(stale), "{backend}: a live channel was not removed");
        assert!(!m.remove(stale), "{backend}: a stale token removed something");
        assert!(!m.contains(stale), "{backend}");
        assert!(m.handler::<Probe>(stale).is_none(), "{backend}");
        assert!(m.handler_mut::<Probe>(stale).is_none(), "{backend}");
        assert!(!m.set_deadline(stale, Some(Instant::now())), "{backend}: a deadline for a stale token");
        assert!(!m.set_idle_timeout(stale, Some(Duration::from_millis(1))), "{backend}");
        m.refresh(stale);

        // The next channel on the same descriptor number.
        let mut spare = Vec::new();
        let mut reborn = claim_fds(&[stale.fd()], &mut spare);
        let ours = reborn.pop().expect("the descriptor number was not reused");
        let probe = Probe::new("new", &log);
        let data = probe.data.clone();
        let new = m.insert(ours, StaleRemover { probe, stale })?;
        assert_eq!(new.fd(), stale.fd(), "{backend}");
        assert_ne!(new, stale, "{backend}: the new channel got the old token");
        assert!(!m.contains(stale), "{backend}: the stale token names the new channel");
        assert!(!m.remove(stale), "{backend}: a stale token removed the new channel");
        assert!(!m.set_deadline(stale, Some(Instant::now())), "{backend}: armed the new channel");
        m.refresh(stale);
        assert!(m.contains(new), "{backend}");

        // An index the map never held.
        let other = map(backend);
        assert!(!other.contains(new), "{backend}: a token of another map's index");

        // From inside a callback, and the new channel is still served:
        // `spare` holds its peer, so dropping `spare` gives it an end of
        // stream to read.
        drop(spare);
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend}: the new channel was not served");
        assert!(log.contains("new:remove(stale)=false"), "{backend}: {:?}", log.events());
        assert!(data.borrow().is_empty(), "{backend}");
        assert_eq!(log.count("new:close"), 1, "{backend}: {:?}", log.events());
        assert!(!log.events().iter().any(|e| e.starts_with("old:")), "{backend}: {:?}", log.events());
    }
    Ok(())
}

struct KillState {
    log: Log,
    originals: RefCell<Vec<Token>>,
    fired: Cell<bool>,
    removed: RefCell<Vec<(Token, bool)>>,
    removed_self: Cell<Option<bool>>,
    reborn: RefCell<Vec<Token>>,
    spare: RefCell<Vec<Channel<Connected>>>,
}

/// The first to run closes itself and every other original channel, then
/// puts new, idle channels on the descriptor numbers it freed.
struct Killer {
    name: &'static str,
    st: Rc<KillState>,
}

impl StreamHandler for Killer {
    fn handle_read(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let st = &self.st;
        st.log.push(format!("{}:read", self.name));
        if st.fired.replace(true) {
            return Ok(());
        }
        let me = cx.token();
        let others: Vec<Token> = st.originals.borrow().iter().copied().filter(|&t| t != me).collect();
        for &t in &others {
            let removed = cx.remove(t);
            st.removed.borrow_mut().push((t, removed));
        }
        st.removed_self.set(Some(cx.remove(me)));
        let freed: Vec<i32> = others.iter().map(|t| t.fd()).collect();
        for ch in claim_fds(&freed, &mut st.spare.borrow_mut()) {
            let token = cx.insert(ch, Probe::new("reborn", &st.log))?;
            st.reborn.borrow_mut().push(token);
        }
        Ok(())
    }
}

/// Item 8 (calloop `kill_source`, `reuse`, `drop_of_subsource`; the calloop
/// 0.12.3 fix): one callback removes itself and two other channels that are
/// ready in the same wait; new channels take the freed descriptor numbers at
/// once; the readiness collected for the old channels reaches none of them.
#[test]
fn removal_inside_a_callback_and_a_reused_descriptor_number_never_get_the_old_event() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let st = Rc::new(KillState {
            log: Log::default(),
            originals: RefCell::default(),
            fired: Cell::new(false),
            removed: RefCell::default(),
            removed_self: Cell::new(None),
            reborn: RefCell::default(),
            spare: RefCell::default(),
        });
        let mut m = map(backend);
        let mut peers = Vec::new();
        for name in ["a", "b", "c"] {
            let (ours, mut peer) = Channel::pair()?;
            send_all(&mut peer, b"ready");
            peers.push(peer);
            let token = m.insert(ours, Killer { name, st: st.clone() })?;
            st.originals.borrow_mut().push(token);
        }
        m.run(LoopOptions::new().timeout(Duration::from_secs(1)).count(1))?;

        let log = &st.log;
        assert_eq!(log.events().len(), 1, "{backend}: removed channels were dispatched: {:?}", log.events());
        assert_eq!(st.removed_self.get(), Some(true), "{backend}: cx.remove(own token)");
        let removed = st.removed.borrow().clone();
        assert_eq!(removed.len(), 2, "{backend}");
        assert!(removed.iter().all(|&(_, ok)| ok), "{backend}: {removed:?}");
        for &t in st.originals.borrow().iter() {
            assert!(!m.contains(t), "{backend}: {t:?} survived");
        }
        let reborn = st.reborn.borrow().clone();
        let freed: BTreeSet<i32> = removed.iter().map(|(t, _)| t.fd()).collect();
        let reused: BTreeSet<i32> = reborn.iter().map(|t| t.fd()).collect();
        assert_eq!(reused, freed, "{backend}: the freed descriptor numbers were not reused");
        for (old, _) in &removed {
            assert!(!reborn.contains(old), "{backend}: a new channel got an old token");
        }
        assert_eq!(m.len(), 2, "{backend}");

        // The new channels have nothing to read and their peers are open.
        run_iterations(&mut m, 3);
        assert_eq!(log.events().len(), 1, "{backend}: {:?}", log.events());
        assert!(reborn.iter().all(|&t| m.contains(t)), "{backend}");
    }
    Ok(())
}

/// Item 8, with deadlines (calloop `reuse`; the calloop 0.12.3 fix): a
/// removed channel's pending deadline never fires, neither for it nor for the
/// new channel that took its descriptor number — whose own deadline fires
/// once, at its own time.
#[test]
fn a_removed_channels_deadline_never_fires_on_the_channel_reusing_its_number() -> io::Result<()> {
    let _fds = exclusive();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, _old_peer) = Channel::pair()?;
        let old = m.insert(ours, Probe::new("old", &log))?;
        let old_due = Instant::now() + Duration::from_millis(20);
        assert!(m.set_deadline(old, Some(old_due)));
        assert!(m.remove(old));

        let mut spare = Vec::new();
        let ours = claim_fds(&[old.fd()], &mut spare).pop().expect("the descriptor number was not reused");
        let probe = Probe::new("new", &log);
        let fired = probe.fired.clone();
        let new = m.insert(ours, probe)?;
        assert_eq!(new.fd(), old.fd(), "{backend}");
        let new_due = Instant::now() + Duration::from_millis(60);
        assert!(m.set_deadline(new, Some(new_due)));

        assert!(run_until(&mut m, |_| !fired.borrow().is_empty()), "{backend}: the new deadline never fired");
        run_iterations(&mut m, 3);
        assert_eq!(log.events(), ["new:timeout"], "{backend}");
        assert!(fired.borrow()[0] >= new_due, "{backend}: the old deadline fired for the new channel");
    }
    Ok(())
}

/// D20: stale tokens.
#[test]
fn stale_token_does_not_reach_a_new_channel_on_the_same_descriptor() {
    let _fds = shared();
    for backend in util::backends() {
        let mut map = util::map(backend);
        let mut attempts = 0;
        // Other tests run in parallel threads and may take the freed number;
        // try again until the new channel really reuses it.
        let (old, new, mut new_peer) = loop {
            attempts += 1;
            assert!(attempts <= 100, "{backend}: could not get the same descriptor number back");
            let (a, _a_peer) = Channel::pair().expect("socketpair");
            let old = map.insert(a, Reader::new()).expect("insert");
            assert!(map.remove(old), "{backend}: remove of a live token");
            let (c, c_peer) = Channel::pair().expect("socketpair");
            let b = if c.as_raw_fd() == old.fd() {
                c // the kernel handed out the lowest free number: the old one
            } else {
                // Another thread took it meanwhile, or a lower one was free:
                // ask for the lowest free number from the old one up.
                let fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&c, old.fd()).expect("dup");
                if fd.as_raw_fd() != old.fd() {
                    continue;
                }
                drop(c);
                Channel::<Connected>::try_from(fd).expect("adopt")
            };
            let new = map.insert(b, Reader::new()).expect("insert");
            break (old, new, c_peer);
        };
        assert_eq!(new.fd(), old.fd(), "{backend}: same descriptor number");
        assert_ne!(new, old, "{backend}: a new generation");
        assert!(!map.contains(old), "{backend}: the old token is not contained");
        assert!(map.contains(new), "{backend}");
        assert!(map.handler::<Reader>(old).is_none(), "{backend}: handler(old) is None, the type matches");
        assert!(map.handler_mut::<Reader>(old).is_none(), "{backend}: handler_mut(old) is None");
        assert!(map.handler::<Reader>(new).is_some(), "{backend}");
        assert!(!map.remove(old), "{backend}: remove(old) is false");
        assert!(map.contains(new), "{backend}: remove(old) left the new channel alone");
        assert_eq!(map.tokens(), [new], "{backend}");
        let data = map.handler::<Reader>(new).expect("reader").data.clone();
        new_peer.send(b"to the new channel").expect("send");
        assert!(
            util::run_until(&mut map, |_| data.borrow().as_slice() == b"to the new channel"),
            "{backend}: the new channel gets its events"
        );
    }
}

/// Always writable; records its writes under its name.
struct NamedWriter {
    name: &'static str,
    log: Log,
}

impl StreamHandler for NamedWriter {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push(format!("{} write", self.name));
        Ok(())
    }
}

/// On its first write, closes `victim` and puts a new channel on the
/// victim's descriptor number, within the same batch (asyncore's E9).
struct Replacer {
    log: Log,
    victim: Option<Token>,
    replacement: Option<Token>,
    replacement_peer: Option<Channel<Connected>>,
}

impl StreamHandler for Replacer {
    fn readable(&self, _ch: &Channel<Connected>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }

    fn handle_write(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.log.push("A write");
        let Some(victim) = self.victim.take() else { return Ok(()) };
        assert!(cx.remove(victim), "the victim was live");
        let (c, c_peer) = Channel::pair()?;
        let reused = if c.as_raw_fd() == victim.fd() {
            Some(c)
        } else {
            let fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&c, victim.fd())?;
            (fd.as_raw_fd() == victim.fd()).then(|| Channel::<Connected>::try_from(fd).expect("adopt"))
        };
        match reused {
            Some(channel) => {
                let token = cx.insert(channel, NamedWriter { name: "C", log: self.log.clone() })?;
                self.replacement = Some(token);
                self.replacement_peer = Some(c_peer);
                self.log.push("A replaced B");
            }
            None => self.log.push("A could not reuse the number"),
        }
        Ok(())
    }
}

/// D20: stale tokens.
#[test]
fn readiness_collected_for_a_closed_channel_does_not_reach_its_replacement_in_the_same_batch() {
    let _fds = shared();
    for backend in util::backends() {
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 100, "{backend}: could not set the scene up");
            let mut map = util::map(backend);
            let log = Log::default();
            // A must be dispatched before B: select and poll go by descriptor
            // number, epoll by the order the channels became ready.
            let (a, _a_peer) = Channel::pair().expect("socketpair");
            let (b, _b_peer) = Channel::pair().expect("socketpair");
            if a.as_raw_fd() > b.as_raw_fd() {
                continue;
            }
            let replacer =
                Replacer { log: log.clone(), victim: None, replacement: None, replacement_peer: None };
            let ta = map.insert(a, replacer).expect("insert A");
            let tb = map.insert(b, NamedWriter { name: "B", log: log.clone() }).expect("insert B");
            map.handler_mut::<Replacer>(ta).expect("A").victim = Some(tb);
            // One wait reports A and B writable; A's callback closes B and
            // puts C on B's number; B's collected readiness must reach nobody.
            map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
            let events = log.events();
            if events != ["A write", "A replaced B"] && !events.iter().any(|e| e == "C write") {
                continue; // B ran first, or the number was taken: try again
            }
            assert_eq!(events, ["A write", "A replaced B"], "{backend}: C got B's stale readiness (E9)");
            let tc = map.handler::<Replacer>(ta).unwrap().replacement.expect("C's token");
            assert_eq!(tc.fd(), tb.fd(), "{backend}");
            assert!(!map.contains(tb) && map.contains(tc), "{backend}");
            // From the next wait on, C gets its own events.
            map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
            assert_eq!(
                log.count("C write"),
                1,
                "{backend}: C is served from its first wait on: {:?}",
                log.events()
            );
            break;
        }
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
    let _fds = shared();
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

/// Nothing to accept, read or write: the handler of the error-path test.
struct Idle;

impl StreamHandler for Idle {
    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

impl rolecore::FileHandler for Idle {
    fn handle_read(&mut self, _ch: &mut Channel<rolecore::FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `attempt` a few times to warm up (lazily opened descriptors, such
/// as a simulation's per-thread placeholder), then 300 times, and checks
/// that the process holds as many descriptors as before.
fn leaks_nothing(what: &str, mut attempt: impl FnMut()) {
    for _ in 0..3 {
        attempt();
    }
    let before = open_fds();
    for _ in 0..300 {
        attempt();
    }
    assert_eq!(open_fds(), before, "{what}: descriptors leaked");
}

/// Every public call that makes or takes a descriptor and fails closes what
/// it made, or hands it back in its error (which closes it when dropped):
/// role changes refused by the kernel or by the address, adoptions refused
/// by their probe (D13), a backend this build lacks, signals that cannot be
/// watched (all or nothing), a map dropped with its mailbox and waker, a
/// regular file (epoll refuses it), a simulation made and dropped. (No
/// address here is reached: a bind to an address not ours and a connect
/// across families fail before any packet.)
#[test]
fn failed_calls_that_make_or_take_a_descriptor_leak_none() {
    let _fds = exclusive();
    leaks_nothing("bind to an address not ours", || {
        let refused = Channel::tcp_v4().unwrap().bind("192.0.2.1:1").unwrap_err();
        drop(io::Error::from(refused));
    });
    leaks_nothing("bind to an address of another family", || {
        assert!(Channel::tcp_v4().unwrap().bind("[::1]:0").is_err());
    });
    leaks_nothing("bind to text that is no address", || {
        assert!(Channel::tcp_v4().unwrap().bind("nonsense").is_err());
    });
    leaks_nothing("listen on an unbound Unix socket", || {
        assert!(Channel::unix_stream().unwrap().listen(1).is_err());
    });
    leaks_nothing("connect to a Unix path where nothing listens", || {
        let nowhere = format!("unix:{}", temp_path("sock").display());
        assert!(Channel::unix_stream().unwrap().connect(nowhere).is_err());
    });
    leaks_nothing("connect to an address of another family", || {
        assert!(Channel::tcp_v4().unwrap().connect("[::1]:1").is_err());
    });
    leaks_nothing("connect to a refusing port", || {
        // Refused at once or in the loop: either way the channel is ours.
        drop(Channel::tcp_v4().unwrap().connect("127.0.0.1:1"));
    });
    leaks_nothing("datagram bind and connect refused", || {
        assert!(Channel::udp_v4().unwrap().bind("192.0.2.1:1").is_err());
        assert!(Channel::udp_v4().unwrap().connect("[::1]:1").is_err());
    });
    leaks_nothing("a socket refused as a file", || {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(Channel::dup_file(&a).is_err());
        assert!(Channel::file(OwnedFd::from(a)).is_err());
    });
    leaks_nothing("a pipe or a listener refused as a connected socket", || {
        let (reader, _writer) = std::io::pipe().unwrap();
        assert!(Channel::<Connected>::try_from(OwnedFd::from(reader)).is_err());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(Channel::<Connected>::try_from(OwnedFd::from(listener)).is_err());
    });
    leaks_nothing("a backend this build lacks, a backend switch", || {
        drop(rolecore::Map::with_backend(rolecore::Backend::Select));
        let mut m = rolecore::Map::new().unwrap();
        let (a, _b) = Channel::pair().unwrap();
        m.insert(a, Idle).unwrap();
        drop(m.set_backend(rolecore::Backend::Select));
        m.set_backend(rolecore::Backend::Poll).unwrap();
        m.set_backend(rolecore::Backend::Epoll).unwrap();
    });
    #[cfg(feature = "signals")]
    leaks_nothing("signals that cannot be watched", || {
        use rolecore::signal::SIGUSR2;
        let mut m = rolecore::Map::new().unwrap();
        let ignore = |_: i32, _: &mut Ctx<'_>| Ok(());
        assert!(m.on_signals(&[SIGUSR2, 9999], ignore).is_err(), "a number that names no signal");
        assert!(m.on_signals(&[9], ignore).is_err(), "SIGKILL");
        assert!(m.on_signals(&[-1], ignore).is_err());
    });
    leaks_nothing("a map dropped with its mailbox and waker", || {
        let mut m = rolecore::Map::new().unwrap();
        let (_token, sender) = m.mailbox(|_: u8, _: &mut Ctx<'_>| Ok(())).unwrap();
        let waker = m.waker().unwrap();
        drop(m);
        assert!(sender.send(1).is_err());
        drop(waker.wake());
    });
    leaks_nothing("a regular file, which epoll refuses", || {
        let mut m = rolecore::Map::new().unwrap();
        let file = std::fs::File::open("Cargo.toml").unwrap();
        m.insert(Channel::file(file.into()).unwrap(), Idle).unwrap();
    });
    leaks_nothing("a simulation made and dropped", || {
        let mut sim = rolecore::sim::Sim::from_seed(1, rolecore::sim::SimConfig::default()).unwrap();
        let (a, _b) = Channel::pair().unwrap();
        sim.map().insert(a, Idle).unwrap();
    });
}
