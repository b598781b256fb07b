//! Regular files, pipes and duplicated descriptors in the map: `Channel::dup_file`,
//! `Channel::file`, a regular file always ready and read to its end (on every
//! backend and across backend switches), and closing.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

#[macro_use]
mod util;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{Backend, Channel, Ctx, FileFd, FileHandler, LoopOptions, Map};
use util::probe::*;
use util::*;

const SLEEPING: &[u8] = b"It's not dead, it's sleeping!";

/// T13 `FileWrapperTest.test_recv` (A45, A47, A49): `Channel::dup_file` is
/// `file_wrapper`: a duplicate, independent of the original descriptor, read
/// in successive pieces. Reading after `close()` raised `OSError`; here
/// `close(self)` consumes the channel, so that read does not compile
/// (`tests/ui/d10_use_after_drop.rs`). Also on a pipe.
#[test]
fn t13_file_wrapper_recv() {
    let temp = TempFile::new(SLEEPING);
    let file = std::fs::File::open(&temp.0).unwrap();
    let fd = file.as_raw_fd();
    let mut w = Channel::dup_file(&file).unwrap();
    drop(file); // os.close(fd)
    assert_ne!(w.fileno(), fd, "a duplicate");
    let mut buf = [0u8; 13];
    assert_eq!(w.recv(&mut buf).unwrap(), 13);
    assert_eq!(&buf, b"It's not dead");
    let mut buf = [0u8; 6];
    assert_eq!(w.recv(&mut buf).unwrap(), 6);
    assert_eq!(&buf, b", it's");
    w.close();

    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(SLEEPING).unwrap();
    let fd = reader.as_raw_fd();
    let mut w = Channel::dup_file(&reader).unwrap();
    drop(reader);
    assert_ne!(w.fileno(), fd);
    let mut buf = [0u8; 13];
    assert_eq!(w.recv(&mut buf).unwrap(), 13);
    assert_eq!(&buf, b"It's not dead");
    assert_eq!(w.recv(&mut [0u8; 64]).unwrap(), SLEEPING.len() - 13);
    // A pipe with nothing in it yet: would-block, not an end.
    assert_eq!(w.recv(&mut [0u8; 8]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    drop(writer);
    assert_eq!(w.recv(&mut [0u8; 8]).unwrap(), 0, "the end, once the writer closed");
}

/// T14 `FileWrapperTest.test_send` (A47): writes through a duplicate of an
/// `O_APPEND` descriptor land after the file's content. Also on a pipe.
#[test]
fn t14_file_wrapper_send() {
    let (d1, d2) = (b"Come again?", b"I want to buy some cheese.");
    let temp = TempFile::new(SLEEPING);
    let file = std::fs::OpenOptions::new().append(true).open(&temp.0).unwrap();
    let mut w = Channel::dup_file(&file).unwrap();
    drop(file);
    assert_eq!(w.send(d1).unwrap(), d1.len());
    assert_eq!(w.send(d2).unwrap(), d2.len());
    w.close();
    assert_eq!(std::fs::read(&temp.0).unwrap(), [SLEEPING, d1, d2].concat());

    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut w = Channel::dup_file(&writer).unwrap();
    drop(writer);
    assert_eq!(w.send(d1).unwrap(), d1.len());
    assert_eq!(w.send(d2).unwrap(), d2.len());
    w.close();
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, [&d1[..], d2].concat());
}

/// A file channel over a descriptor not open for the way it is used (the
/// reading end of a pipe written to, a file opened read-only, the writing
/// end read from) is a clear `InvalidInput` error, not an end: a send's
/// `EBADF` passed for the peer gone, `Ok(0)`, and the loop closed the
/// channel with `handle_close` as if a reader had left: the data was lost
/// without an error.
#[test]
fn a_file_used_against_its_access_mode_is_an_error_not_an_end() {
    let temp = TempFile::new(SLEEPING);
    let read_only = File::open(&temp.0).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    for (what, fd) in
        [("a pipe's reading end", OwnedFd::from(reader)), ("a read-only file", read_only.into())]
    {
        let mut ch = Channel::file(fd).unwrap();
        let e = ch.send(b"data").expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{what}: {e}");
        assert!(e.to_string().contains("not open for writing"), "{what}: {e}");
        let e = ch.write(b"data").expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{what}: {e}");

        // In the loop (a regular file is always ready; a pipe's reading end
        // is never writable): handle_error with that error, and no
        // handle_close passing it for a reader that left.
        if !ch.is_regular_file() {
            continue;
        }
        for backend in backends() {
            let log = Log::default();
            let mut m = map(backend);
            m.insert(Channel::dup_file(&ch).unwrap(), Writes(log.clone())).unwrap();
            assert!(run_until(&mut m, Map::is_empty), "{what}, {backend}: still open");
            assert_eq!(log.events(), ["error InvalidInput"], "{what}, {backend}");
        }
    }
    let mut ch = Channel::file(writer.into()).unwrap();
    let e = ch.recv(&mut [0u8; 8]).expect_err("reading a pipe's writing end");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not open for reading"), "{e}");
}

/// A descriptor opened with `O_PATH` names a file without opening it: it is
/// refused as a file channel with `InvalidInput`, and comes back in the
/// error. It was refused with a bare `EBADF` ("Bad file descriptor"), which
/// `is_disconnect` takes for a peer gone: returned with `?` from a callback,
/// the loop closed that callback's channel with `handle_close`.
#[test]
fn a_descriptor_opened_with_o_path_is_refused_as_a_file_with_invalid_input() {
    use rustix::fs::{Mode, OFlags};
    let temp = TempFile::new(SLEEPING);
    let path = rustix::fs::open(&temp.0, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let raw = path.as_raw_fd();
    let refused = Channel::file(path).expect_err("an O_PATH descriptor is no file channel");
    assert_eq!(refused.error().kind(), io::ErrorKind::InvalidInput, "{refused}");
    assert!(!rolecore::is_disconnect(refused.error()), "{refused}");
    assert!(refused.to_string().contains("O_PATH"), "{refused}");
    assert_eq!(refused.into_inner().as_raw_fd(), raw, "the descriptor comes back");
    let path = rustix::fs::open(&temp.0, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let e = Channel::dup_file(&path).expect_err("nor is its duplicate");
    drop(path);
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
}

/// Wants to write, and writes one byte at each chance.
struct Writes(Log);

impl FileHandler for Writes {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        false
    }
    fn writable(&self, _ch: &Channel<FileFd>) -> bool {
        true
    }
    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
    fn handle_write(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        ch.send(b"x").map(drop)
    }
    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, cx: &mut Ctx<'_>) {
        self.0.push(format!("error {:?}", error.kind()));
        cx.close();
    }
}

/// `FileDispatcher`: `data.append(self.recv(29))`.
struct FileDispatcher {
    data: Rc<RefCell<Vec<u8>>>,
    closes: Rc<Cell<usize>>,
}

impl FileHandler for FileDispatcher {
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = [0u8; 29];
        let n = ch.recv(&mut buf)?;
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.closes.set(self.closes.get() + 1);
    }

    fn handle_error(&mut self, _ch: &mut Channel<FileFd>, error: io::Error, _cx: &mut Ctx<'_>) {
        panic!("handle_error: {error}");
    }
}

fn t15(backend: Backend) {
    // The regular file, as CPython: loop(timeout=0.01, count=2).
    let temp = TempFile::new(SLEEPING);
    let file = std::fs::File::open(&temp.0).unwrap();
    let (data, closes) = (Rc::default(), Rc::default());
    let mut map = util::map(backend);
    let channel = Channel::dup_file(&file).unwrap();
    assert!(channel.is_regular_file());
    map.insert(channel, FileDispatcher { data: Rc::clone(&data), closes: Rc::clone(&closes) }).unwrap();
    drop(file);
    map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(2)).unwrap();
    assert_eq!(*data.borrow(), SLEEPING, "the 29 bytes were read through the loop");
    assert_eq!(closes.get(), 1, "the second iteration read the end: handle_close");
    assert!(map.is_empty(), "and the channel left the map");

    // A pipe whose writer wrote the same and closed.
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(SLEEPING).unwrap();
    drop(writer);
    let (data, closes) = (Rc::default(), Rc::default());
    map.insert(
        Channel::dup_file(&reader).unwrap(),
        FileDispatcher { data: Rc::clone(&data), closes: Rc::clone(&closes) },
    )
    .unwrap();
    drop(reader);
    assert!(util::run_until(&mut map, Map::is_empty), "the pipe was read to its end");
    assert_eq!(*data.borrow(), SLEEPING);
    assert_eq!(closes.get(), 1, "handle_close once");
}

per_backend! {
    /// T15 `FileWrapperTest.test_dispatcher` (A50, A27, A9, P17): a regular
    /// file read to its end through the loop, 29 bytes then the end, in
    /// two iterations; on epoll too, which refuses regular files (the map
    /// treats them as always ready). Then a pipe.
    t15_file_dispatcher => t15
}

/// T16 `test_resource_warning` (A46): a `file_wrapper` dropped unclosed
/// warned, then closed. Dropping a channel closes its descriptor, silently:
/// there is nothing to warn about. Checked on a pipe: the reader sees the end.
#[test]
fn t16_drop_closes() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let channel = Channel::dup_file(&writer).unwrap();
    drop(writer);
    drop(channel);
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "the end of file: no writer is left");
}

/// T17 `test_close_twice` (A49): a `file_wrapper` whose descriptor was
/// closed behind its back raised on `close()`, then a second `close()` did
/// nothing. A channel owns its descriptor: safe code cannot close it behind
/// its back, and `close(self)` consumes the channel, so a second close does
/// not compile (`tests/ui/d10_use_after_drop.rs`). One close, and its effect:
#[test]
fn t17_close_twice() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let channel = Channel::dup_file(&writer).unwrap();
    drop(writer);
    channel.close();
    assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0, "closed once, for good");
}

/// Item 25, a regular file in the map (no peer tests it): epoll refuses
/// regular files, so the map reports them always ready, on every backend;
/// the handler reads the whole file, then its end and `handle_close`. One
/// that wants nothing does not turn the wait into a busy loop.
#[test]
fn a_regular_file_in_the_map_is_read_to_its_end_then_closed() -> io::Result<()> {
    let _fds = shared();
    let content: Vec<u8> = (0..10_000usize).map(|i| (i * 13 % 251) as u8).collect();
    for backend in backends() {
        let channel = tempfile_channel(&content, backend)?;
        assert!(channel.is_regular_file());
        let log = Log::default();
        let mut m = map(backend);
        let probe = Probe::new("f", &log).chunk(1000);
        let data = probe.data.clone();
        m.insert(channel, FileProbe::reader(probe))?;
        assert!(run_until(&mut m, |m| m.is_empty()), "{backend}: {:?}", log.events());
        assert!(*data.borrow() == content, "{backend}: {} of {} bytes", data.borrow().len(), content.len());
        assert_eq!(log.count("f:data"), 10, "{backend}");
        assert_eq!(log.count("f:close"), 1, "{backend}");
        assert_eq!(log.events().last().map(String::as_str), Some("f:close"), "{backend}");

        // A regular file that wants nothing is not ready: the wait sleeps.
        let (reader, _writer) = io::pipe()?; // something for select and poll to wait on
        let file = tempfile_channel(&content, backend)?;
        let log = Log::default();
        m.insert(file, FileProbe::deaf(Probe::new("g", &log)))?;
        m.insert(Channel::file(OwnedFd::from(reader))?, FileProbe::deaf(Probe::new("p", &log)))?;
        let timeout = Duration::from_millis(30);
        let start = Instant::now();
        m.poll(Some(timeout))?;
        let elapsed = start.elapsed();
        assert!(elapsed >= timeout, "{backend}: a deaf regular file ended the wait after {elapsed:?}");
        assert!(log.events().is_empty(), "{backend}: {:?}", log.events());
    }
    Ok(())
}

/// A file channel on a fresh, already unlinked regular file holding `content`.
fn tempfile_channel(content: &[u8], backend: Backend) -> io::Result<Channel<FileFd>> {
    // A name of its own per call: tests run in parallel threads of one
    // process, and two writing the same path would read each other's bytes.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("rolecore-conformance-{}-{backend}-{n}", std::process::id()));
    std::fs::write(&path, content)?;
    let file = File::open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(Channel::file(OwnedFd::from(file))?)
}

/// Reads a file in small pieces; records the end.
struct FileReader {
    data: Rc<RefCell<Vec<u8>>>,
    log: Log,
    /// Bytes asked per read event.
    chunk: usize,
    /// Whether it pauses (wants nothing) after each read, until the test
    /// clears `paused`.
    pauses: bool,
    paused: bool,
}

impl FileReader {
    fn new(data: &Rc<RefCell<Vec<u8>>>, log: &Log, chunk: usize) -> FileReader {
        FileReader { data: Rc::clone(data), log: log.clone(), chunk, pauses: false, paused: false }
    }
}

impl FileHandler for FileReader {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        !self.paused
    }

    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let mut buf = vec![0u8; self.chunk];
        let n = ch.recv(&mut buf)?;
        self.log.push(if n == 0 { "read:eof" } else { "read" });
        self.data.borrow_mut().extend_from_slice(&buf[..n]);
        self.paused = self.pauses;
        Ok(())
    }

    logs_close_and_errors!(log, Channel<FileFd>);
}

#[test]
fn regular_file_is_always_ready_and_read_to_the_end_on_every_backend() {
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    for backend in util::backends() {
        let path =
            std::env::temp_dir().join(format!("rolecore-loop-and-map-{}-{backend}.bin", std::process::id()));
        let _cleanup = TempFile(path.clone());
        std::fs::write(&path, &content).expect("write the temporary file");
        let file = std::fs::File::open(&path).expect("open the temporary file");
        let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
        assert!(channel.is_regular_file(), "{backend}");

        let mut map = util::map(backend);
        let (keeper, _keeper_peer) = Channel::pair().expect("socketpair");
        map.insert(keeper, Reader::new()).expect("insert the keeper");
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let token = map
            .insert(channel, FileReader::new(&data, &log, 100))
            .unwrap_or_else(|e| panic!("{backend}: a regular file joins the map: {e}"));
        assert!(
            util::run_until(&mut map, |_| log.contains("close")),
            "{backend}: read to the end within 5 s"
        );
        util::run_iterations(&mut map, 3);
        assert_eq!(*data.borrow(), content, "{backend}: the whole file was read");
        let events = log.events();
        assert_eq!(log.count("read"), 10, "{backend}: 100 bytes per event: {events:?}");
        assert_eq!(&events[10..], ["read:eof", "close"], "{backend}: end of file, then handle_close once");
        assert!(!map.contains(token), "{backend}: the file left the map");
        assert_eq!(map.len(), 1, "{backend}: the keeper is still there");
    }
}

#[test]
fn regular_file_stays_always_ready_across_backend_switches() {
    let content: Vec<u8> = (b'a'..=b'z').collect();
    // epoll refuses the file, poll and select report it: switch through
    // every pair of backends, one read per iteration on each.
    let order: Vec<Backend> = util::backends().chain(util::backends()).collect();
    let path = std::env::temp_dir().join(format!("rolecore-loop-and-map-switch-{}.bin", std::process::id()));
    let _cleanup = TempFile(path.clone());
    std::fs::write(&path, &content).expect("write the temporary file");
    let file = std::fs::File::open(&path).expect("open the temporary file");
    let channel = Channel::file(OwnedFd::from(file)).expect("a file channel");
    let mut map = util::map(order[0]);
    let log = Log::default();
    let data = Rc::new(RefCell::new(Vec::new()));
    map.insert(channel, FileReader::new(&data, &log, 2)).expect("insert");
    for (i, backend) in order.iter().enumerate() {
        map.set_backend(*backend)
            .unwrap_or_else(|e| panic!("{backend}: set_backend with a file in the map: {e}"));
        map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).expect("loop");
        assert_eq!(
            log.count("read"),
            i + 1,
            "{backend}: the file is still ready after the switch: {:?}",
            log.events()
        );
    }
    assert!(util::run_until(&mut map, |_| log.contains("close")), "reached the end within 5 s");
    assert_eq!(*data.borrow(), content);
    assert_eq!(log.count("close"), 1);
    assert!(map.is_empty());
}

/// A backend switch moves each channel's own "always ready" mark, not its
/// neighbour's: a regular file (always ready) on a lower descriptor than a
/// pipe must not hand its mark to the pipe, which would then be reported
/// readable on every wait with nothing to read (a spinning loop, once the
/// file is gone).
#[test]
fn a_backend_switch_does_not_make_the_next_channel_always_ready() {
    for from in util::backends() {
        for to in util::backends().filter(|&to| to != from) {
            let file = tempfile_channel(b"x", from).expect("a file channel");
            let (reader, _writer) = io::pipe().expect("a pipe");
            // Above the file's descriptor whatever other tests (threads of
            // this process) opened and closed meanwhile.
            let reader: OwnedFd =
                rustix::io::fcntl_dupfd_cloexec(&reader, file.as_raw_fd() + 1).expect("dup");
            assert!(file.as_raw_fd() < reader.as_raw_fd(), "the file comes first in the map's slots");
            let mut map = util::map(from);
            let log = Log::default();
            map.insert(file, FileProbe::deaf(Probe::new("file", &log))).expect("insert the file");
            let pipe = map
                .insert(
                    Channel::file(reader).expect("a pipe channel"),
                    FileProbe::reader(Probe::new("pipe", &log)),
                )
                .expect("insert the pipe");
            map.set_backend(to).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            for _ in 0..3 {
                map.poll(Some(Duration::from_millis(5))).expect("poll");
            }
            assert!(map.contains(pipe), "{from} -> {to}");
            assert!(log.events().is_empty(), "{from} -> {to}: an empty pipe was woken: {:?}", log.events());
        }
    }
}

/// A pipe's reading end: records its reads, timeouts and close.
struct Piped(Log);

impl FileHandler for Piped {
    fn handle_read(&mut self, ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        let n = ch.recv(&mut [0u8; 64])?;
        self.0.push(format!("read {n}"));
        Ok(())
    }
    fn handle_timeout(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.push("timeout");
        Ok(())
    }
    fn handle_close(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) {
        self.0.push("close");
    }
}

/// A file channel's deadline reaches its handler's `handle_timeout`, once,
/// at the deadline's instant on the map's clock (a simulation's virtual
/// one), and the channel stays open: a pipe that falls silent can be timed
/// out like a socket.
#[test]
fn a_file_channels_deadline_reaches_handle_timeout_once_at_its_instant() {
    let mut sim =
        rolecore::sim::Sim::from_bytes(&[], rolecore::sim::SimConfig::default()).expect("a simulated world");
    let (reader, _writer) = std::io::pipe().unwrap();
    let log = Log::default();
    let token = sim.map().insert(Channel::file(reader.into()).unwrap(), Piped(log.clone())).unwrap();
    let at = sim.now() + Duration::from_millis(10);
    assert!(sim.map().set_deadline(token, Some(at)));
    sim.advance(Duration::from_millis(10) - Duration::from_micros(1));
    sim.map().poll(Some(Duration::ZERO)).unwrap();
    assert!(log.events().is_empty(), "{:?}", log.events());
    sim.advance(Duration::from_micros(1));
    sim.map().poll(Some(Duration::ZERO)).unwrap();
    sim.map().poll(Some(Duration::ZERO)).unwrap();
    assert_eq!(log.events(), ["timeout"]);
    assert!(sim.map().contains(token), "a timeout does not close the channel");
}

/// A graceful shutdown closes a file channel still open when the grace
/// ends, as every other channel: with its `handle_close`, once, on every
/// backend.
#[test]
fn a_shutdown_closes_a_file_channel_with_handle_close_once() {
    for backend in backends() {
        let mut m = map(backend);
        let (reader, _writer) = std::io::pipe().unwrap();
        let log = Log::default();
        m.insert(Channel::file(reader.into()).unwrap(), Piped(log.clone())).unwrap();
        m.shutdown(Duration::ZERO);
        m.run(LoopOptions::new().no_timeout()).unwrap();
        assert!(m.is_empty(), "{backend}");
        assert_eq!(log.events(), ["close"], "{backend}");
    }
}

/// A regular file is always ready and never given to the kernel (P17): when
/// its interest changes, the poller is not told either. On epoll, which
/// refuses regular files (`EPERM`), telling it would fail and close the
/// channel. A file that pauses and resumes stays in the map, on every
/// backend, and is read to its end.
#[test]
fn a_regular_file_whose_interest_changes_stays_in_the_map() {
    let content = b"0123456789abcdef";
    for backend in backends() {
        let mut map = map(backend);
        let (keeper, _keeper_peer) = Channel::pair().expect("socketpair");
        map.insert(keeper, Reader::new()).expect("insert the keeper");
        let log = Log::default();
        let data = Rc::new(RefCell::new(Vec::new()));
        let file = tempfile_channel(content, backend).expect("a file channel");
        let handler = FileReader { pauses: true, ..FileReader::new(&data, &log, 4) };
        let token = map.insert(file, handler).expect("insert the file");
        run_iterations(&mut map, 3);
        assert_eq!(log.events(), ["read"], "{backend}: one read, then paused");
        assert!(map.contains(token), "{backend}: a paused file left the map");
        for _ in 0..16 {
            if log.contains("close") {
                break;
            }
            map.handler_mut::<FileReader>(token).expect("the file is still in the map").paused = false;
            run_iterations(&mut map, 1);
        }
        assert_eq!(*data.borrow(), content, "{backend}: read to the end: {:?}", log.events());
        assert_eq!(&log.events()[4..], ["read:eof", "close"], "{backend}");
        assert!(!map.contains(token), "{backend}");
    }
}
