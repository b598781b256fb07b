//! Getting results out of handlers: `Kept` hands a handler back once the map
//! has let go of it, for every kind of handler.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;

use rolecore::{
    AcceptHandler, Address, AsyncChat, Buffered, Channel, ChatHandler, Connected, Ctx, Kept, LoopOptions,
    Map, StreamHandler, Terminator,
};

/// A chat client that keeps every line it receives.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    connected: bool,
}

impl ChatHandler for Lines {
    fn handle_connect(&mut self, _chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.connected = true;
        Ok(())
    }

    fn found_terminator(&mut self, chat: &mut AsyncChat, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.lines.push(String::from_utf8_lossy(&chat.take_incoming()).into_owned());
        Ok(())
    }
}

#[test]
fn a_chat_client_hands_back_what_it_received() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let client = Kept::new(Lines::default());
    let mut map = Map::new().unwrap();
    let connecting = Channel::tcp_v4().unwrap().connect(addr).unwrap();
    map.insert(AsyncChat::new(connecting, Terminator::bytes(b"\n")), client.clone()).unwrap();
    let (mut peer, _) = server.accept().unwrap();
    peer.write_all(b"one\ntwo\n").unwrap();
    drop(peer);
    map.run(LoopOptions::default()).unwrap();
    let lines = client.into_inner().expect("the map dropped the handler when the connection closed");
    assert!(lines.connected);
    assert_eq!(lines.lines, ["one", "two"]);
}

/// Counts the connections it accepted, and closes each one at once.
#[derive(Default)]
struct Counter(usize);

impl AcceptHandler for Counter {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: Address,
        cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.0 += 1;
        if self.0 == 3 {
            cx.close(); // the listener: the map empties and run returns
        }
        Ok(())
    }
}

#[test]
fn a_listener_hands_back_its_count_and_can_be_read_between_runs() {
    let listener = Channel::tcp_v4().unwrap().bind("127.0.0.1:0").unwrap().listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Kept::new(Counter::default());
    let mut map = Map::new().unwrap();
    let token = map.insert(listener, counter.clone()).unwrap();
    let _first = std::net::TcpStream::connect(addr.inet().unwrap()).unwrap();
    map.poll(Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(counter.with(|c| c.0), Some(1), "read between two runs");
    assert!(counter.is_shared());
    let _more: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(addr.inet().unwrap()).unwrap()).collect();
    map.run(LoopOptions::default()).unwrap();
    assert!(!map.contains(token));
    assert_eq!(counter.into_inner().unwrap().0, 3);
}

/// A raw stream handler that records the bytes it read.
#[derive(Default)]
struct Recorder(Vec<u8>);

impl StreamHandler<Buffered<Connected>> for Recorder {
    fn handle_read(&mut self, ch: &mut Buffered<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        self.0.extend_from_slice(&buf[..n]);
        Ok(())
    }
}

#[test]
fn a_handler_still_in_the_map_is_not_handed_back() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let recorder = Kept::new(Recorder::default());
    let mut map = Map::new().unwrap();
    map.insert(Buffered::new(Channel::try_from(ours).unwrap()), recorder.clone()).unwrap();
    theirs.write_all(b"abc").unwrap();
    map.poll(Some(std::time::Duration::from_secs(5))).unwrap();
    let Err(recorder) = recorder.into_inner() else { panic!("the map still holds it") };
    assert_eq!(recorder.with(|r| r.0.clone()), Some(b"abc".to_vec()));
    drop(theirs);
    map.run(LoopOptions::default()).unwrap();
    assert_eq!(recorder.into_inner().unwrap().0, b"abc");
}

/// Two channels served by one `Kept` handler (the two legs of a relay).
#[derive(Default)]
struct Legs {
    other: Option<rolecore::Token>,
    got: Vec<u8>,
}

impl StreamHandler for Legs {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        self.got.extend_from_slice(&buf[..n]);
        // The other leg's predicates read this handler's state.
        if let Some(other) = self.other {
            cx.refresh(other);
        }
        Ok(())
    }
}

/// A `Kept` handler asked for another channel's predicates from inside one
/// of its own callbacks (a `refresh`, a channel inserted with a clone) is
/// busy and cannot answer: that channel is asked again once the callback is
/// over, instead of staying unwatched (it read nothing more, ever).
#[test]
fn a_kept_handler_shared_by_two_channels_keeps_both_read() {
    for backend in rolecore::Backend::ALL.into_iter().filter(|b| b.is_available()) {
        let legs = Kept::new(Legs::default());
        let (a, mut peer_a) = UnixStream::pair().unwrap();
        let (b, mut peer_b) = UnixStream::pair().unwrap();
        let mut map = Map::with_backend(backend).unwrap();
        map.insert(Channel::try_from(a).unwrap(), legs.clone()).unwrap();
        let tb = map.insert(Channel::try_from(b).unwrap(), legs.clone()).unwrap();
        legs.with(|l| l.other = Some(tb)).unwrap();
        peer_a.write_all(b"a").unwrap();
        poll_until(&mut map, || legs.with(|l| l.got.len() == 1).unwrap_or(false));
        peer_b.write_all(b"b").unwrap();
        poll_until(&mut map, || legs.with(|l| l.got.len() == 2).unwrap_or(false));
        assert_eq!(legs.with(|l| l.got.clone()).unwrap(), b"ab", "{backend}: the second leg was never read");
    }
}

/// Polls `map` until `done()` or 100 short waits.
fn poll_until(map: &mut Map, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        map.poll(Some(std::time::Duration::from_millis(20))).unwrap();
    }
}

/// Serves every channel it inserts itself: a clone of its own `Kept`.
#[derive(Default)]
struct Spawner {
    me: Option<Kept<Spawner>>,
    pending: Vec<UnixStream>,
    got: Vec<u8>,
}

impl StreamHandler for Spawner {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        let buf = cx.buffer();
        let n = ch.recv(buf)?;
        self.got.extend_from_slice(&buf[..n]);
        if let (Some(me), Some(stream)) = (self.me.clone(), self.pending.pop()) {
            // Its predicates are asked now, while this handler is busy.
            cx.insert(Channel::try_from(stream)?, me).map_err(io::Error::from)?;
        }
        Ok(())
    }
}

/// The same with a channel inserted, from inside a callback, with a clone
/// of the busy `Kept` handler: it is read once the callback is over.
#[test]
fn a_channel_inserted_with_a_clone_of_the_busy_kept_handler_is_read() {
    for backend in rolecore::Backend::ALL.into_iter().filter(|b| b.is_available()) {
        let spawner = Kept::new(Spawner::default());
        let (a, mut peer_a) = UnixStream::pair().unwrap();
        let (b, mut peer_b) = UnixStream::pair().unwrap();
        spawner
            .with(|s| {
                s.me = Some(spawner.clone());
                s.pending.push(b);
            })
            .unwrap();
        let mut map = Map::with_backend(backend).unwrap();
        map.insert(Channel::try_from(a).unwrap(), spawner.clone()).unwrap();
        peer_a.write_all(b"a").unwrap();
        poll_until(&mut map, || got_len_is(&spawner, 1));
        peer_b.write_all(b"b").unwrap();
        poll_until(&mut map, || got_len_is(&spawner, 2));
        let got = spawner.with(|s| s.got.clone()).unwrap();
        spawner.with(|s| s.me = None).unwrap(); // the cycle, undone
        assert_eq!(got, b"ab", "{backend}: the inserted channel was never read");
    }
}

fn got_len_is(spawner: &Kept<Spawner>, n: usize) -> bool {
    spawner.with(|s| s.got.len() == n).unwrap_or(false)
}

/// Records the bytes it reads and whether `handle_error` ran.
#[derive(Default)]
struct Reads {
    got: Vec<u8>,
    errors: usize,
}

impl StreamHandler for Reads {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = ch.recv(&mut buf)?;
        self.got.extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_error(&mut self, _ch: &mut Channel<Connected>, _error: io::Error, _cx: &mut Ctx<'_>) {
        self.errors += 1;
    }
}

/// A loop run from inside `Kept::with` cannot call the handler that `with`
/// holds: its callback fails instead of running twice at once, its
/// `handle_error` cannot run either, and the channel closes (with a
/// report saying why) rather than stay in the map with its input unread.
/// The handler itself saw nothing, and comes back once the map let go.
#[test]
fn a_loop_run_inside_kept_with_closes_the_channel_of_the_held_handler() {
    reports_of_this_thread(); // the hook, before anything reports
    let (ours, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(b"hello").unwrap();
    let kept = Kept::new(Reads::default());
    let mut map = Map::new().unwrap();
    map.insert(Channel::try_from(ours).unwrap(), kept.clone()).unwrap();
    let ran = kept.with(|_held| {
        for _ in 0..20 {
            if map.is_empty() {
                break;
            }
            map.run(LoopOptions::new().count(1).timeout(std::time::Duration::from_millis(50))).unwrap();
        }
        map.is_empty()
    });
    assert_eq!(ran, Some(true), "the channel of a held handler stayed in the map");
    let reads = kept.into_inner().expect("the map let go");
    assert!(reads.got.is_empty() && reads.errors == 0, "the held handler was called");
    let reports = reports_of_this_thread();
    assert!(reports.iter().any(|r| r.contains("inside one of its own callbacks")), "{reports:?}");
}

/// The reports rolecore made on this thread so far. The hook is installed
/// once for the whole binary and never replaced, so that tests running at
/// once do not take each other's reports (or drop them, by resetting the
/// hook).
fn reports_of_this_thread() -> Vec<String> {
    type Reports = std::sync::Mutex<Vec<(std::thread::ThreadId, String)>>;
    static REPORTS: std::sync::OnceLock<std::sync::Arc<Reports>> = std::sync::OnceLock::new();
    let reports = REPORTS.get_or_init(|| {
        let reports = std::sync::Arc::new(Reports::default());
        let sink = reports.clone();
        rolecore::report::set_log_hook(Some(Box::new(move |_, message| {
            sink.lock().unwrap().push((std::thread::current().id(), message.to_string()))
        })));
        reports
    });
    let me = std::thread::current().id();
    reports.lock().unwrap().iter().filter(|(id, _)| *id == me).map(|(_, r)| r.clone()).collect()
}

/// A listener and a connection served by one `Kept` handler; reading on
/// the connection begins a shutdown, which closes the listener at once.
#[derive(Default)]
struct ShutsDown {
    closes: usize,
}

impl StreamHandler for ShutsDown {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64])?;
        cx.shutdown(std::time::Duration::from_secs(1));
        Ok(())
    }
}

impl AcceptHandler for ShutsDown {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        Ok(())
    }
    fn handle_close(&mut self, _ch: &mut Channel<rolecore::Listening>, _cx: &mut Ctx<'_>) {
        self.closes += 1;
    }
}

/// A listener closed from inside a callback of its own `Kept` handler (one
/// handler serving it and a connection, whose callback began a shutdown)
/// cannot have its `handle_close` run, since the handler is busy; that was
/// skipped without a word. The report now says which callback was missed.
#[test]
fn a_close_a_busy_kept_handler_misses_is_reported() {
    reports_of_this_thread(); // the hook, before anything reports
    let (conn, mut peer) = UnixStream::pair().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kept = Kept::new(ShutsDown::default());
    let mut map = Map::new().unwrap();
    let listener = map.insert(Channel::try_from(listener).unwrap(), kept.clone()).unwrap();
    map.insert(Channel::try_from(conn).unwrap(), kept.clone()).unwrap();
    peer.write_all(b"go").unwrap();
    for _ in 0..100 {
        if !map.contains(listener) {
            break;
        }
        map.poll(Some(std::time::Duration::from_millis(20))).unwrap();
    }
    assert!(!map.contains(listener), "the shutdown closed the listener");
    assert_eq!(kept.with(|h| h.closes), Some(0), "the busy handler was called twice at once");
    let reports = reports_of_this_thread();
    assert!(
        reports.iter().any(|r| r.contains("handle_close not called") && r.contains("busy")),
        "{reports:?}"
    );
}

/// A predicate asked while its `Kept` handler is busy (a loop run from
/// inside `Kept::with`) answers that the handler wants nothing this time:
/// a stream with nothing queued is not made writable, so the loop does not
/// call the busy handler and close its channel for it; once `with`
/// returns, the predicates are asked again and the stream reads as before.
#[test]
fn a_kept_handler_asked_while_busy_wants_nothing_and_is_asked_again() {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let kept = Kept::new(Reads::default());
    let mut map = Map::new().unwrap();
    let token = map.insert(Channel::try_from(ours).unwrap(), kept.clone()).unwrap();
    let stayed = kept.with(|_held| {
        // The predicates are asked now, while the handler is held.
        map.refresh_all();
        for _ in 0..3 {
            map.poll(Some(std::time::Duration::ZERO)).unwrap();
        }
        map.contains(token)
    });
    assert_eq!(stayed, Some(true), "a busy handler's predicates asked for an event it could not take");
    peer.write_all(b"after").unwrap();
    poll_until(&mut map, || kept.with(|r| r.got.len() == 5).unwrap_or(false));
    let (got, errors) = kept.with(|r| (r.got.clone(), r.errors)).unwrap();
    assert_eq!(got, b"after", "asked again once free, the handler reads");
    assert_eq!(errors, 0);
}

/// A shared record of callbacks, for the handlers below.
type Calls = std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>;

/// Writes once when writable, reads urgent data.
struct StreamCalls(Calls, bool);

impl StreamHandler for StreamCalls {
    fn writable(&self, _ch: &Channel<Connected>) -> bool {
        !self.1
    }
    fn handle_write(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.1 = true;
        self.0.borrow_mut().push("write");
        Ok(())
    }
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv(&mut [0u8; 64]).map(drop)
    }
    fn handle_expt(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.recv_oob(&mut [0u8; 1])?;
        self.0.borrow_mut().push("expt");
        Ok(())
    }
}

/// A listener's deadline, recorded.
struct ListenerCalls(Calls);

impl AcceptHandler for ListenerCalls {
    fn handle_accepted(
        &mut self,
        _conn: Channel<Connected>,
        _peer: Address,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        Ok(())
    }
    fn handle_timeout(
        &mut self,
        _ch: &mut rolecore::Channel<rolecore::Listening>,
        _cx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        self.0.borrow_mut().push("listener timeout");
        Ok(())
    }
}

/// A pipe's reader: reads to the end, records the close.
struct FileCalls(Calls);

impl rolecore::FileHandler for FileCalls {
    fn handle_read(&mut self, ch: &mut Channel<rolecore::FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        io::Read::read(ch, &mut [0u8; 64]).map(drop)
    }
    fn handle_close(&mut self, _ch: &mut Channel<rolecore::FileFd>, cx: &mut Ctx<'_>) {
        self.0.borrow_mut().push("file close");
        cx.close();
    }
}

/// A `Kept` handler gets every callback its handler would, its own
/// overrides and not the defaults: `writable` and `handle_write`,
/// `handle_expt` for urgent data, a listener's `handle_timeout`, a file's
/// `handle_close`.
#[test]
fn kept_forwards_every_callback_to_its_handler() {
    let calls = Calls::default();
    let mut map = Map::new().unwrap();

    let (listener, peer_std) = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = l.accept().unwrap();
        (l, (client, server))
    };
    let (client, server) = peer_std;
    let ours = Channel::<Connected>::try_from(client).unwrap();
    let mut theirs = Channel::<Connected>::try_from(server).unwrap();
    map.insert(ours, Kept::new(StreamCalls(calls.clone(), false))).unwrap();
    theirs.send_oob(b"!").unwrap();

    let listening = Channel::try_from(listener).unwrap();
    let lt = map.insert(listening, Kept::new(ListenerCalls(calls.clone()))).unwrap();
    map.set_deadline(lt, Some(std::time::Instant::now()));

    let (reader, writer) = rustix::pipe::pipe().unwrap();
    map.insert(Channel::file(reader).unwrap(), Kept::new(FileCalls(calls.clone()))).unwrap();
    drop(writer);

    let want = ["write", "expt", "listener timeout", "file close"];
    for _ in 0..100 {
        if want.iter().all(|w| calls.borrow().contains(w)) {
            break;
        }
        map.run(LoopOptions::new().count(1).timeout(std::time::Duration::from_millis(20))).unwrap();
    }
    let calls = calls.borrow();
    for w in want {
        assert!(calls.contains(&w), "{w} never reached the handler: {calls:?}");
    }
}
