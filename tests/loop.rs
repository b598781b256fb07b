//! Running the loop: `count`, an empty map, `stop`, the wait's timeout (never
//! early, huge values do not overflow, D17, D25), zero timeouts, and a wait
//! interrupted by a signal (`EINTR`) that is retried.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::io::{self};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rolecore::{Channel, Ctx, FileFd, FileHandler, LoopOptions};
use util::probe::*;
use util::*;

/// Stops this whole process after `delay`, and continues it 100 ms later, from
/// a shell that is not stopped with it.
fn stop_and_continue_after(delay: Duration) -> std::process::Child {
    let pid = std::process::id();
    let script = format!("sleep {}; kill -STOP {pid}; sleep 0.1; kill -CONT {pid}", delay.as_secs_f64());
    Command::new("sh").arg("-c").arg(script).spawn().expect("spawn sh")
}

/// Item 1 (mio `run_once_with_nothing`): a loop over an empty map returns,
/// even with no timeout at all, and one wait on an empty map returns empty.
#[test]
fn run_with_nothing_registered_returns_and_an_empty_wait_reports_nothing() {
    let _fds = shared();
    for backend in backends() {
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut m = map(backend);
            let run = m.run(LoopOptions::new().no_timeout());
            let poll = m.poll(Some(Duration::from_millis(20)));
            let _ = tx.send((run.map_err(|e| e.to_string()), poll.map_err(|e| e.to_string())));
        });
        let (run, poll) = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{backend}: a loop over an empty map did not return"));
        assert_eq!(run, Ok(()), "{backend}");
        assert_eq!(poll, Ok(false), "{backend}: an empty wait asked to stop");
    }
}

/// Item 2 (mio `zero_duration_polls_events`): a zero timeout still delivers
/// what is already ready.
#[test]
fn zero_timeout_still_delivers_already_ready_events() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let (ours, mut peer) = Channel::pair()?;
        send_all(&mut peer, b"ready");
        let probe = Probe::new("a", &log);
        let data = probe.data.clone();
        let mut m = map(backend);
        m.insert(ours, probe)?;
        m.run(LoopOptions::new().timeout(Duration::ZERO).count(1))?;
        assert_eq!(log.events(), ["a:read", "a:data"], "{backend}");
        assert_eq!(*data.borrow(), b"ready", "{backend}");
    }
    Ok(())
}

/// Item 11 (polling `concurrent_interruption`, calloop `dispatch_events`; mio
/// returns the error instead): a wait that the kernel interrupts neither
/// fails nor ends early — rolecore retries `EINTR`. See the note at the top on
/// how the interruption is made.
#[test]
fn an_interrupted_wait_is_retried_not_returned() -> io::Result<()> {
    use rustix::event::{Timespec, epoll};
    let _fds = exclusive();

    // Control: the stop/continue really interrupts a raw epoll_wait here.
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut events = Vec::with_capacity(4);
    let mut stopper = stop_and_continue_after(Duration::from_millis(200));
    let raw = epoll::wait(
        &ep,
        rustix::buffer::spare_capacity(&mut events),
        Some(&Timespec { tv_sec: 5, tv_nsec: 0 }),
    );
    assert!(stopper.wait()?.success());
    assert_eq!(raw.err(), Some(rustix::io::Errno::INTR), "the control wait was not interrupted");

    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, _peer) = Channel::pair()?;
        m.insert(ours, Probe::new("idle", &log))?;
        let timeout = Duration::from_millis(1000);
        let mut stopper = stop_and_continue_after(Duration::from_millis(200));
        let start = Instant::now();
        let result = m.poll(Some(timeout));
        let elapsed = start.elapsed();
        assert!(stopper.wait()?.success());
        assert_eq!(result.map_err(|e| e.to_string()), Ok(false), "{backend}: EINTR escaped");
        assert!(elapsed >= timeout, "{backend}: the interrupted wait ended early, after {elapsed:?}");
        assert!(log.events().is_empty(), "{backend}: {:?}", log.events());
    }

    // A wait without a limit (`run`'s, with no count) is retried as well:
    // only the peer's write, after the interruption, ends it.
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        m.insert(ours, Probe::new("a", &log))?;
        let mut stopper = stop_and_continue_after(Duration::from_millis(200));
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(800));
            send_all(&mut peer, b"late");
            peer
        });
        let result = m.poll(None);
        assert!(stopper.wait()?.success());
        let _peer = writer.join().expect("the writer");
        assert_eq!(result.map_err(|e| e.to_string()), Ok(false), "{backend}: EINTR escaped");
        assert_eq!(log.events(), ["a:read", "a:data"], "{backend}: the wait ended before the write");
    }
    Ok(())
}

/// Item 13 (polling `precision.rs`, calloop `high_precision_timer`,
/// `no_overflow`), for the wait's own timeout: a wait never ends before its
/// timeout, a sub-millisecond one included; `Duration::MAX` neither overflows
/// into an error nor into a wait that returns at once — it returns when a
/// channel becomes ready.
#[test]
fn wait_timeouts_never_end_early_and_huge_ones_do_not_overflow() -> io::Result<()> {
    let _fds = shared();
    for backend in backends() {
        let log = Log::default();
        let mut m = map(backend);
        let (ours, mut peer) = Channel::pair()?;
        let probe = Probe::new("a", &log);
        let data = probe.data.clone();
        m.insert(ours, probe)?;

        for timeout in [Duration::from_micros(200), Duration::from_millis(1), Duration::from_millis(30)] {
            let start = Instant::now();
            m.run(LoopOptions::new().timeout(timeout).count(1))?;
            let elapsed = start.elapsed();
            assert!(elapsed >= timeout, "{backend}: a {timeout:?} wait ended after {elapsed:?}");
        }
        assert!(log.events().is_empty(), "{backend}: {:?}", log.events());

        // Ready already: Duration::MAX returns with the event.
        send_all(&mut peer, b"now");
        m.run(LoopOptions::new().timeout(Duration::MAX).count(1))?;
        assert_eq!(*data.borrow(), b"now", "{backend}");

        // Ready later: Duration::MAX waits for it, and only for it.
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            send_all(&mut peer, b"later");
            peer
        });
        m.run(LoopOptions::new().timeout(Duration::MAX).count(1))?;
        assert_eq!(*data.borrow(), b"nowlater", "{backend}: the huge wait returned with nothing");
        let _peer = writer.join().expect("writer");
    }
    Ok(())
}

#[test]
fn count_zero_runs_nothing_and_count_n_runs_exactly_n_iterations() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, AlwaysWritable::default()).expect("insert");
        let options = LoopOptions::new().timeout(Duration::from_secs(5));
        map.run(options.count(0)).expect("loop");
        assert_eq!(writes(&map, token), 0, "{backend}: count 0 runs no iteration");
        map.run(options.count(1)).expect("loop");
        assert_eq!(writes(&map, token), 1, "{backend}: count 1 runs one iteration");
        map.run(options.count(7)).expect("loop");
        assert_eq!(writes(&map, token), 8, "{backend}: count 7 runs seven more iterations");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, Some(&mut map), Some(3)).expect("loop_");
        assert_eq!(writes(&map, token), 11, "{backend}: loop_ with count 3 runs three iterations");
        rolecore::loop_(Some(Duration::from_secs(5)), backend, Some(&mut map), Some(0)).expect("loop_");
        assert_eq!(writes(&map, token), 11, "{backend}: loop_ with count 0 runs none");
        assert_eq!(map.backend(), backend, "{backend}");
    }
}

#[test]
fn empty_map_returns_at_once_even_without_timeout() {
    for backend in util::backends() {
        // The map lives on a helper thread so a loop that waited on an empty
        // map would hang that thread, not the test: the 5 s watchdog is a
        // hang detector, not a timing assertion.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut map = util::map(backend);
            let run = map.run(LoopOptions::new().no_timeout().backend(backend)).is_ok();
            let explicit = rolecore::loop_(None, backend, Some(&mut map), None).is_ok();
            let default_map = rolecore::loop_(None, backend, None, None).is_ok();
            let _ = done.send((run, explicit, default_map));
        });
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(5)),
            Ok((true, true, true)),
            "{backend}: an empty map (explicit or default) returns at once, with Ok"
        );
    }
}

/// A wait without a limit on a map that holds nothing — the map a loop left
/// empty, driven on by hand — used to block its thread for good: nothing in
/// the map could ever end it. It is a `Deadlock` error now, on every
/// backend; a wait with a limit still sleeps, and a map that holds only its
/// waker still waits for it.
#[test]
fn poll_without_a_limit_on_a_map_with_nothing_in_it_is_an_error_not_a_hang() {
    for backend in backends() {
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut m = map(backend);
            let empty = m.poll(None).map_err(|e| (e.kind(), e.to_string()));
            let limited = m.poll(Some(Duration::from_millis(1))).map_err(|e| e.to_string());
            let waker = m.waker().expect("a waker");
            waker.stop().expect("stop");
            let woken = m.poll(None).map_err(|e| e.to_string());
            let _ = tx.send((empty, limited, woken));
        });
        let (empty, limited, woken) = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{backend}: poll(None) on an empty map did not return"));
        let (kind, message) = empty.expect_err("a wait nothing could end is refused");
        assert_eq!(kind, io::ErrorKind::Deadlock, "{backend}: {message}");
        assert!(message.contains("give the wait a limit"), "{backend}: says what to do: {message}");
        assert_eq!(limited, Ok(false), "{backend}: a wait with a limit on an empty map sleeps");
        assert_eq!(woken, Ok(true), "{backend}: a map holding its waker waits for it");
    }
}

#[test]
fn stop_from_a_callback_ends_the_loop_with_the_map_intact() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let token = map.insert(ours, AlwaysWritable { writes: 0, stop_at: Some(3) }).expect("insert");
        let (other, _other_peer) = Channel::pair().expect("socketpair");
        let other = map.insert(other, Reader::new()).expect("insert");
        // Without stop this would run 1000 iterations.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1000)).expect("loop");
        assert_eq!(writes(&map, token), 3, "{backend}: the loop ended right after the stopping callback");
        assert_eq!(map.len(), 2, "{backend}: stop leaves the map as it is");
        assert!(map.contains(token) && map.contains(other), "{backend}");
        // The map can be run again.
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(2)).expect("loop");
        assert_eq!(writes(&map, token), 5, "{backend}: the stopped map runs again");
    }
}

#[test]
fn timeout_makes_an_idle_loop_wait() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (ours, _peer) = Channel::pair().expect("socketpair");
        let reader = Reader::new();
        let data = reader.data.clone();
        map.insert(ours, reader).expect("insert");
        let start = Instant::now();
        map.run(LoopOptions::new().timeout(Duration::from_millis(50)).count(1)).expect("loop");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: one idle iteration waited only {waited:?}");
        let start = Instant::now();
        rolecore::loop_(Some(Duration::from_millis(50)), backend, Some(&mut map), Some(1)).expect("loop_");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: loop_ waited only {waited:?}");
        assert!(data.borrow().is_empty(), "{backend}: nothing happened");
    }
}

/// A file handler that wants nothing for now (flow control).
struct Paused;

impl FileHandler for Paused {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        false
    }

    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn timeout_makes_the_loop_wait_when_a_regular_file_wants_nothing() {
    for backend in util::backends() {
        let path = std::env::temp_dir()
            .join(format!("rolecore-loop-and-map-paused-{}-{backend}.bin", std::process::id()));
        let _cleanup = TempFile(path.clone());
        std::fs::write(&path, b"unread").expect("write the temporary file");
        let file = std::fs::File::open(&path).expect("open the temporary file");
        let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
        let mut map = util::map(backend);
        map.insert(channel, Paused).expect("insert");
        // A channel that asks for nothing is idle, always-ready or not: as in
        // asyncore (not polled, the wait sleeps the timeout), the loop waits.
        let start = Instant::now();
        map.run(LoopOptions::new().timeout(Duration::from_millis(50)).count(1)).expect("loop");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(40), "{backend}: one idle iteration waited only {waited:?}");
    }
}

/// Stops the loop from its `handle_timeout`.
struct StopOnTimeout(Log);

impl rolecore::StreamHandler for StopOnTimeout {
    fn handle_read(&mut self, ch: &mut Channel<rolecore::Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        Ok(())
    }
    fn handle_timeout(&mut self, _: &mut Channel<rolecore::Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("timeout");
        cx.stop();
        Ok(())
    }
}

/// `Ctx::stop` from a deadline's `handle_timeout` ends the iteration as it
/// does from any other callback: `poll` reports the stop and the other
/// expiry due waits for the next iteration, which `run` makes and then
/// returns on that one's stop, the map intact.
#[test]
fn stop_from_handle_timeout_ends_the_iteration_like_any_callback() {
    for backend in backends() {
        let mut m = map(backend);
        let log = Log::default();
        let (a, _peer_a) = Channel::pair().unwrap();
        let (b, _peer_b) = Channel::pair().unwrap();
        let a = m.insert(a, StopOnTimeout(log.clone())).unwrap();
        let b = m.insert(b, StopOnTimeout(log.clone())).unwrap();
        let now = Instant::now();
        assert!(m.set_deadline(a, Some(now)) && m.set_deadline(b, Some(now)));
        assert!(m.poll(Some(Duration::ZERO)).unwrap(), "{backend}: the stop did not reach poll");
        assert_eq!(log.events(), ["timeout"], "{backend}: the iteration went on after the stop");
        m.run(LoopOptions::new().no_timeout()).unwrap();
        assert_eq!(log.events(), ["timeout", "timeout"], "{backend}");
        assert_eq!(m.len(), 2, "{backend}");
    }
}

/// Reads what comes, records its name, and stops the loop.
struct ReadsThenStops(&'static str, Log);

impl rolecore::StreamHandler for ReadsThenStops {
    fn handle_read(&mut self, ch: &mut Channel<rolecore::Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        self.1.push(self.0);
        cx.stop();
        Ok(())
    }
}

/// A stop ends the iteration at the callback that asked for it, as
/// asyncore's `ExitNow` did: the rest of the readiness collected by the
/// same wait is not dispatched (it is reported again by the next wait,
/// level-triggered), on every backend.
#[test]
fn stop_leaves_the_rest_of_the_batch_to_the_next_iteration() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let mut peers = Vec::new();
        for name in ["a", "b"] {
            let (ours, mut peer) = Channel::pair().expect("socketpair");
            send_all(&mut peer, name.as_bytes());
            peers.push(peer);
            map.insert(ours, ReadsThenStops(name, log.clone())).expect("insert");
        }
        assert!(map.poll(Some(Duration::from_secs(5))).expect("poll"), "{backend}: the callback stopped");
        assert_eq!(log.events().len(), 1, "{backend}: dispatched after the stop: {:?}", log.events());
        assert!(map.poll(Some(Duration::from_secs(5))).expect("poll"), "{backend}: the other one stopped");
        let mut seen = log.events();
        seen.sort();
        assert_eq!(seen, ["a", "b"], "{backend}: the other one was served next");
    }
}

/// `run_until` that a handler stops answers whether its condition held
/// then, as when the condition ends it: a stop that came with the awaited
/// state is a success, one that came before it is not.
#[test]
fn run_until_stopped_by_a_handler_says_whether_the_condition_held() {
    for backend in util::backends() {
        for (wanted, held) in [(1, true), (2, false)] {
            let mut map = util::map(backend);
            let (ours, _peer) = Channel::pair().expect("socketpair");
            let token = map.insert(ours, AlwaysWritable { writes: 0, stop_at: Some(1) }).expect("insert");
            let done = map.run_until(Duration::from_secs(5), |m| writes(m, token) == wanted).expect("loop");
            assert_eq!(writes(&map, token), 1, "{backend}: the stop after the first write ended the run");
            assert_eq!(done, held, "{backend}: stopped after 1 write, waiting for {wanted}");
        }
    }
}
