//! Reaching a loop from other threads: typed mailboxes, the waker's wake,
//! stop and graceful shutdown (peer-conformance item 12).

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rolecore::{
    AcceptHandler, Address, Buffered, Channel, Connected, Ctx, Listening, LoopOptions, Map, SendError,
    StreamHandler, TrySendError,
};
use util::Log;

/// A mailbox of numbers whose handler logs each one it is given: bounded
/// to `capacity`, or not.
fn logging_mailbox(map: &mut Map, capacity: Option<usize>) -> (Log, rolecore::Sender<u32>) {
    let log = Log::default();
    let sink = log.clone();
    let handler = move |n: u32, _: &mut Ctx<'_>| {
        sink.push(n.to_string());
        Ok(())
    };
    let (_, sender) = match capacity {
        Some(capacity) => map.mailbox_with_capacity(capacity, handler),
        None => map.mailbox(handler),
    }
    .unwrap();
    (log, sender)
}

/// Wakes a blocked loop after 10 s by connecting, so a bug ends the test
/// instead of hanging it; says whether it had to.
fn watchdog(map: &mut Map) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let waker = map.waker().unwrap();
    let flag = fired.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        flag.store(true, Ordering::SeqCst);
        let _ = waker.stop();
    });
    fired
}

#[test]
fn messages_from_many_threads_arrive_in_each_senders_order() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let sink = log.clone();
        let (token, sender) = map
            .mailbox(move |(thread, n): (u32, u32), cx: &mut Ctx<'_>| {
                sink.push(format!("{thread}:{n}"));
                if sink.events().len() == 4 * 250 {
                    cx.stop();
                }
                Ok(())
            })
            .unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let sender = sender.clone();
                std::thread::spawn(move || (0..250).for_each(|n| sender.send((t, n)).unwrap()))
            })
            .collect();
        let fired = watchdog(&mut map);
        map.run(LoopOptions::new().no_timeout()).unwrap();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(!fired.load(Ordering::SeqCst), "{backend}: the messages did not wake the loop");
        let events = log.events();
        assert_eq!(events.len(), 1000, "{backend}");
        for t in 0..4 {
            let mine: Vec<u32> = events
                .iter()
                .filter_map(|e| e.strip_prefix(&format!("{t}:")).map(|n| n.parse().unwrap()))
                .collect();
            assert_eq!(mine, (0..250).collect::<Vec<_>>(), "{backend}: thread {t} out of order");
        }
        assert!(map.contains(token), "{backend}: the mailbox stays until removed");
        map.remove(token);
        assert_eq!(
            sender.send((9, 9)),
            Err(SendError((9, 9))),
            "{backend}: a removed mailbox gives the message back"
        );
    }
}

#[test]
fn many_sends_before_a_wait_coalesce_into_one_wakeup() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let (log, sender) = logging_mailbox(&mut map, None);
        (0..500).for_each(|n| sender.send(n).unwrap());
        map.run(LoopOptions::new().no_timeout().count(1)).unwrap();
        assert_eq!(log.events().len(), 500, "{backend}: one iteration delivers everything sent before it");
    }
}

#[test]
fn a_wake_before_the_wait_is_not_lost_and_a_stop_leaves_the_map_intact() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(5).unwrap();
        let token = map.insert(listener, Refuse).unwrap();
        let waker = map.waker().unwrap();
        waker.wake().unwrap();
        let fired = watchdog(&mut map);
        // An endless wait that returns only because the wake came first.
        map.run(LoopOptions::new().no_timeout().count(1)).unwrap();
        assert!(!fired.load(Ordering::SeqCst), "{backend}: the early wake was lost");
        // Stop from another thread ends `run` with the listener still there.
        let stopper = std::thread::spawn(move || waker.stop().unwrap());
        map.run(LoopOptions::new().no_timeout()).unwrap();
        stopper.join().unwrap();
        assert!(!fired.load(Ordering::SeqCst), "{backend}: the stop did not end the loop");
        assert!(map.contains(token), "{backend}");
        assert_eq!(map.len(), 1, "{backend}: the waker's own mailbox is not counted");
    }
}

#[test]
fn a_map_holding_only_its_waker_counts_as_empty() {
    let mut map = util::map(rolecore::Backend::Epoll);
    let waker = map.waker().unwrap();
    assert!(map.is_empty());
    map.run(LoopOptions::new().no_timeout()).unwrap(); // returns at once
    drop(map);
    assert!(waker.wake().is_err(), "a waker outliving its map says so");
}

struct Refuse;
impl AcceptHandler for Refuse {
    fn handle_accepted(&mut self, _: Channel<Connected>, _: Address, _: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

struct Server(Log);
impl AcceptHandler for Server {
    fn handle_accepted(&mut self, conn: Channel<Connected>, _: Address, cx: &mut Ctx<'_>) -> io::Result<()> {
        cx.insert(Buffered::new(conn), Echo(self.0.clone()))?;
        Ok(())
    }
    fn handle_close(&mut self, _: &mut Channel<Listening>, _: &mut Ctx<'_>) {
        self.0.push("listener close");
    }
}

struct Echo(Log);
impl StreamHandler<Buffered<Connected>> for Echo {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 256];
        let n = ch.recv(&mut buf)?;
        ch.send(&buf[..n])
    }
    fn handle_close(&mut self, _: &mut Buffered<Connected>, _: &mut Ctx<'_>) {
        self.0.push("stream close");
    }
}

#[test]
fn graceful_shutdown_stops_accepting_lets_streams_finish_then_closes_the_rest_once() {
    for backend in util::backends() {
        let log = Log::default();
        let mut map = util::map(backend);
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(16).unwrap();
        let addr = listener.local_addr().unwrap().inet().unwrap();
        map.insert(listener, Server(log.clone())).unwrap();
        let mut clients: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for c in &mut clients {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"hi").unwrap();
        }
        assert!(util::run_until(&mut map, |m| m.len() == 5), "{backend}: accepted");
        let grace = Duration::from_millis(300);
        let waker = map.waker().unwrap();
        let started = Instant::now();
        // One client finishes on its own during the grace period.
        let leaver = clients.pop().unwrap();
        let shutter = std::thread::spawn(move || {
            waker.shutdown(grace).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(leaver);
        });
        let fired = watchdog(&mut map);
        map.run(LoopOptions::new().no_timeout()).unwrap();
        shutter.join().unwrap();
        assert!(!fired.load(Ordering::SeqCst), "{backend}: the shutdown did not end the loop");
        assert!(map.is_empty(), "{backend}: the loop ended because the map emptied");
        assert!(started.elapsed() >= grace, "{backend}: the others had their grace period");
        assert_eq!(log.count("listener close"), 1, "{backend}: {:?}", log.events());
        assert_eq!(
            log.count("stream close"),
            4,
            "{backend}: every stream's handle_close once: {:?}",
            log.events()
        );
        assert_eq!(log.events()[0], "listener close", "{backend}: accepting stops first");
        for mut c in clients {
            let mut echoed = [0u8; 2];
            c.read_exact(&mut echoed).unwrap();
            assert_eq!(&echoed, b"hi", "{backend}: no reply lost");
            assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0, "{backend}: closed, not reset");
        }
        assert!(TcpStream::connect(addr).is_err(), "{backend}: no more accepting");
    }
}

/// A mailbox whose handler sends to itself: each wake-up delivers only the
/// messages queued when it came (the others wait, so the loop cannot
/// starve its other channels), and the loop wakes again for those, so none
/// waits for a send from outside. One message per zero-timeout poll here,
/// each poll delivering the next.
#[test]
fn a_mailbox_that_sends_to_itself_gets_one_message_per_wakeup_and_wakes_itself_for_the_next() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let sink = log.clone();
        let me: std::rc::Rc<std::cell::RefCell<Option<rolecore::Sender<u32>>>> = Default::default();
        let myself = me.clone();
        let (_, sender) = map
            .mailbox(move |n: u32, _: &mut Ctx<'_>| {
                sink.push(n.to_string());
                if n < 4 {
                    myself.borrow().as_ref().expect("set below").send(n + 1).expect("send to itself");
                }
                Ok(())
            })
            .unwrap();
        *me.borrow_mut() = Some(sender.clone());
        sender.send(0).unwrap();
        for polls in 1..=5 {
            map.poll(Some(Duration::ZERO)).unwrap();
            let expected: Vec<String> = (0..polls).map(|n| n.to_string()).collect();
            assert_eq!(log.events(), expected, "{backend}: after {polls} polls");
        }
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(log.events().len(), 5, "{backend}: nothing more was sent");
    }
}

/// A mailbox handler that closes its own mailbox (`Ctx::close`) gets no
/// further message in that wake-up: what was queued after is not
/// delivered to a mailbox that is gone, and the senders learn it is
/// closed.
#[test]
fn a_mailbox_closed_by_its_handler_delivers_nothing_after_the_close() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let sink = log.clone();
        let (token, sender) = map
            .mailbox(move |n: u32, cx: &mut Ctx<'_>| {
                sink.push(n.to_string());
                if n == 1 {
                    cx.close();
                }
                Ok(())
            })
            .unwrap();
        (0..4).for_each(|n| sender.send(n).unwrap());
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(log.events(), ["0", "1"], "{backend}");
        assert!(!map.contains(token), "{backend}: the mailbox left the map");
        assert!(sender.is_closed(), "{backend}");
        assert_eq!(sender.send(9), Err(SendError(9)), "{backend}");
    }
}

/// An error a message's handling returns goes to the mailbox handler's
/// `handle_error`, once, and the mailbox stays open for the next message.
#[test]
fn a_failed_message_reaches_handle_error_and_the_mailbox_stays() {
    struct Failing(Log);
    impl rolecore::MailboxHandler<u32> for Failing {
        fn handle_message(&mut self, n: u32, _: &mut Ctx<'_>) -> io::Result<()> {
            self.0.push(format!("message {n}"));
            if n == 1 { Err(io::Error::other("odd")) } else { Ok(()) }
        }
        fn handle_error(&mut self, error: io::Error, _: &mut Ctx<'_>) {
            self.0.push(format!("error {error}"));
        }
    }
    for backend in util::backends() {
        let mut map = util::map(backend);
        let log = Log::default();
        let (token, sender) = map.mailbox(Failing(log.clone())).unwrap();
        (0..3).for_each(|n| sender.send(n).unwrap());
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(log.events(), ["message 0", "message 1", "error odd", "message 2"], "{backend}");
        assert!(map.contains(token), "{backend}");
    }
}

/// A waker's stop is the stop of the iteration that delivers it, as a
/// handler's `Ctx::stop`: `poll` reports it (a wake does not), and the map
/// is left as it was.
#[test]
fn the_poll_that_delivers_a_wakers_stop_reports_it_and_a_wake_is_no_stop() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(5).unwrap();
        let token = map.insert(listener, Refuse).unwrap();
        let waker = map.waker().unwrap();
        waker.wake().unwrap();
        assert!(!map.poll(Some(Duration::ZERO)).unwrap(), "{backend}: a wake is no stop");
        waker.stop().unwrap();
        assert!(map.poll(Some(Duration::ZERO)).unwrap(), "{backend}: the stop was not reported");
        assert!(map.contains(token), "{backend}");
        assert!(!map.poll(Some(Duration::ZERO)).unwrap(), "{backend}: a stop is delivered once");
    }
}

/// A bounded mailbox refuses what passes its capacity with `Full` (the
/// message handed back) until a delivery makes room, and `Closed` once it is
/// gone; a handler's own `send` (the loop's thread) never waits for room,
/// since the loop could not make any meanwhile, and queues past it.
#[test]
fn a_bounded_mailbox_refuses_past_its_capacity_and_its_own_thread_never_waits() {
    let mut map = Map::new().unwrap();
    assert_eq!(
        map.mailbox_with_capacity(0, |_: u32, _: &mut Ctx<'_>| Ok(())).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let (got, sender) = logging_mailbox(&mut map, Some(2));
    sender.try_send(1).unwrap();
    sender.try_send(2).unwrap();
    assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(sender.len(), 2);
    // This thread made the map: its `send` queues past the capacity.
    sender.send(3).unwrap();
    assert_eq!(sender.len(), 3);
    map.poll(Some(Duration::ZERO)).unwrap();
    assert_eq!(got.events(), ["1", "2", "3"]);
    assert!(sender.is_empty());
    sender.try_send(4).unwrap();
    drop(map);
    let refused = sender.try_send(5).unwrap_err();
    assert!(matches!(refused, TrySendError::Closed(5)), "{refused:?}");
    assert_eq!(refused.into_inner(), 5);
    assert_eq!(sender.send(6), Err(SendError(6)));
}

/// `try_send` wakes the loop as `send` does: a message it queued is
/// delivered by the next wait, from this thread (a wait that does not
/// block) or another (a wait with no timeout, which only the message can
/// end), on every backend.
#[test]
fn a_message_queued_by_try_send_wakes_the_loop() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let fired = watchdog(&mut map);
        let (got, sender) = logging_mailbox(&mut map, Some(4));
        sender.try_send(1).unwrap();
        map.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(got.events(), ["1"], "{backend}: a try_send from the loop's thread woke it");
        let from = sender.clone();
        let thread = std::thread::spawn(move || from.try_send(2).unwrap());
        map.run(LoopOptions::new().no_timeout().count(1)).unwrap();
        thread.join().unwrap();
        assert!(!fired.load(Ordering::SeqCst), "{backend}: only the watchdog ended the wait");
        assert_eq!(got.events(), ["1", "2"], "{backend}: a try_send from another thread woke it");
    }
}

/// A thread sending to a bounded mailbox faster than the loop handles is
/// held to the loop's pace: the queue never holds more than the capacity,
/// and every message arrives in order.
#[test]
fn a_sender_thread_waits_for_room_in_a_bounded_mailbox() {
    const CAPACITY: usize = 4;
    const MESSAGES: u32 = 2000;
    for backend in util::backends() {
        let mut map = util::map(backend);
        let fired = watchdog(&mut map);
        let next = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let most = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let (expect, peak) = (next.clone(), most.clone());
        let probe: Arc<std::sync::OnceLock<rolecore::Sender<u32>>> = Arc::default();
        let queue = probe.clone();
        let (_, sender) = map
            .mailbox_with_capacity(CAPACITY, move |n: u32, cx: &mut Ctx<'_>| {
                assert_eq!(n, expect.get(), "in order, none lost");
                expect.set(n + 1);
                // What this delivery has not taken yet, with the message in
                // hand: at most the capacity.
                peak.set(peak.get().max(queue.get().map_or(0, |s| s.len())));
                if n + 1 == MESSAGES {
                    cx.stop();
                }
                Ok(())
            })
            .unwrap();
        let _ = probe.set(sender.clone());
        let producer = std::thread::spawn(move || (0..MESSAGES).try_for_each(|n| sender.send(n)));
        map.run(LoopOptions::default()).unwrap();
        let stopped_by_watchdog = fired.load(Ordering::SeqCst);
        // Dropped first: a producer still waiting for room is released.
        drop(map);
        let sent = producer.join().unwrap();
        assert!(!stopped_by_watchdog, "{backend}: the watchdog stopped the loop");
        assert_eq!(sent, Ok(()), "{backend}");
        assert_eq!(next.get(), MESSAGES, "{backend}");
        assert!(most.get() <= CAPACITY, "{backend}: {} queued at once (capacity {CAPACITY})", most.get());
    }
}

/// A sender waiting for room is released, with its message handed back,
/// when the mailbox goes away: it does not wait for good.
#[test]
fn a_sender_waiting_for_room_is_released_when_the_mailbox_closes() {
    let mut map = Map::new().unwrap();
    let (_, sender) = map.mailbox_with_capacity(1, |_: u32, _: &mut Ctx<'_>| Ok(())).unwrap();
    sender.try_send(1).unwrap();
    let (done, result) = std::sync::mpsc::channel();
    let (started, start) = std::sync::mpsc::channel();
    let waiting = sender.clone();
    std::thread::spawn(move || {
        let _ = started.send(());
        let _ = done.send(waiting.send(2));
    });
    // The thread waits for room; none comes until the map is dropped (a
    // send that returned meanwhile could only have queued past the
    // capacity, and its `Ok` fails the last assertion as well). The pause
    // lets it reach the wait first, as it will but for a very slow thread,
    // which would only see the mailbox closed.
    start.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        matches!(result.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)),
        "the send returned with the mailbox full"
    );
    drop(map);
    let sent = result.recv_timeout(Duration::from_secs(10)).expect("the waiting sender was not released");
    assert_eq!(sent, Err(SendError(2)));
}

/// A message that carries a `Sender` of its own mailbox (a reply address,
/// or a message that schedules the next one) and was never delivered.
#[derive(Debug)]
struct SelfAddressed {
    me: Option<rolecore::Sender<SelfAddressed>>,
    dropped: Arc<AtomicBool>,
    /// What its `Drop`'s send to its own mailbox gave.
    resent: Arc<std::sync::Mutex<Option<bool>>>,
}

impl Drop for SelfAddressed {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
        if let Some(me) = self.me.take() {
            let again = SelfAddressed { me: None, dropped: Arc::default(), resent: Arc::default() };
            *self.resent.lock().unwrap() = Some(me.send(again).is_ok());
        }
    }
}

/// The messages a mailbox never delivered are dropped when it leaves the
/// map, removed or with its map. They stayed in its queue for as long as
/// a `Sender` lived, so one that held a `Sender` of its own mailbox kept
/// the queue, and the mailbox's `eventfd`, alive for good: a descriptor
/// leaked per mailbox, and the message's `Drop` never ran. Its `Drop` may
/// send to the closed mailbox: refused, not a deadlock on the queue's lock.
#[test]
fn undelivered_messages_are_dropped_with_their_mailbox_even_those_holding_its_sender() {
    for removed in [false, true] {
        let dropped = Arc::new(AtomicBool::new(false));
        let resent = Arc::new(std::sync::Mutex::new(None));
        let mut map = Map::new().unwrap();
        let (token, sender) = map.mailbox(|_: SelfAddressed, _: &mut Ctx<'_>| Ok(())).unwrap();
        let message =
            SelfAddressed { me: Some(sender.clone()), dropped: dropped.clone(), resent: resent.clone() };
        sender.send(message).unwrap();
        drop(sender);
        if removed {
            assert!(map.remove(token));
        } else {
            drop(map);
        }
        assert!(dropped.load(Ordering::SeqCst), "removed {removed}: the undelivered message was kept");
        assert_eq!(*resent.lock().unwrap(), Some(false), "removed {removed}: a send to the closed mailbox");
    }
}

/// Reads and drops what comes.
struct Drains;
impl StreamHandler for Drains {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0; 64]).map(drop)
    }
}

/// `close_all` closes the map's channels (a mailbox counts as one) and
/// leaves what is not a channel: the waker and the signal watchers, which
/// `len` does not count either. It closed them too: a `Waker` another
/// thread held answered "the loop this waker belonged to is gone" while
/// the loop was alive and went on serving the map, so that thread could no
/// longer stop or shut it down, and a signal watcher's removal left the
/// signal caught by no one (signal-hook keeps its handler installed: a
/// `SIGTERM` was then ignored).
#[test]
fn close_all_leaves_the_waker_and_the_signal_watchers() {
    let mut map = Map::new().unwrap();
    let waker = map.waker().unwrap();
    let (_, sender) = map.mailbox(|_: u8, _: &mut Ctx<'_>| Ok(())).unwrap();
    let (ours, _peer) = Channel::pair().unwrap();
    map.insert(ours, Drains).unwrap();
    #[cfg(feature = "signals")]
    let signalled = Arc::new(AtomicBool::new(false));
    #[cfg(feature = "signals")]
    {
        let seen = signalled.clone();
        map.on_signals(&[rolecore::signal::SIGUSR2], move |_: i32, _: &mut Ctx<'_>| {
            seen.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    }
    map.close_all();
    assert!(map.is_empty(), "{} channels left", map.len());
    assert!(sender.is_closed(), "a mailbox is a channel: close_all closes it");
    assert_eq!(
        map.tokens().len(),
        if cfg!(feature = "signals") { 2 } else { 1 },
        "the waker and the watcher stay"
    );
    waker.wake().expect("the waker still reaches the map");

    // The map serves again, and the waker held by another thread stops it.
    let (ours, _peer) = Channel::pair().unwrap();
    let token = map.insert(ours, Drains).unwrap();
    std::thread::spawn(move || waker.stop()).join().unwrap().expect("the waker's map is alive");
    assert!(map.poll(Some(Duration::from_secs(10))).unwrap(), "the stop reached the map");
    assert!(map.contains(token));

    #[cfg(feature = "signals")]
    {
        let status = std::process::Command::new("kill")
            .args(["-USR2", &std::process::id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
        for _ in 0..100 {
            if signalled.load(Ordering::SeqCst) {
                break;
            }
            map.poll(Some(Duration::from_millis(50))).unwrap();
        }
        assert!(signalled.load(Ordering::SeqCst), "the signal watcher still watches");
    }
}

/// A shutdown closes the map's channels, not rolecore's own: the waker made
/// before it, which a shutdown's end must not close like a channel, still
/// reaches the loop after it, when the map is used again.
#[test]
fn a_waker_made_before_a_shutdown_still_stops_the_loop_after_it() {
    for backend in util::backends() {
        let mut map = util::map(backend);
        let waker = map.waker().unwrap();
        let _first = util::keep_loop_alive(&mut map);
        map.shutdown(Duration::ZERO);
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(10)).unwrap();
        assert!(map.is_empty(), "{backend}: the shutdown closed the channel");
        let _second = util::keep_loop_alive(&mut map);
        waker.stop().unwrap_or_else(|e| panic!("{backend}: the waker is closed: {e}"));
        let stopped = map.poll(Some(Duration::from_secs(5))).unwrap();
        assert!(stopped, "{backend}: the waker's stop did not reach the loop");
        assert_eq!(map.len(), 1, "{backend}: a stop leaves the map intact");
    }
}
