//! Layer 1: readiness backends over rustix.
//!
//! Three backends answer one question — which descriptors are ready? — and are
//! interchangeable at run time through a [`Backend`] value, the way asyncore's
//! `use_poll` flag picked `select` or `poll`:
//!
//! | backend | cost per wait | registration | limit |
//! |---|---|---|---|
//! | [`Backend::Epoll`] (default) | O(ready) | kept in the kernel, changed only when interest changes | none |
//! | [`Backend::Poll`] | O(channels) | rebuilt from the map each wait | none |
//! | [`Backend::Select`] | O(highest fd) | rebuilt from the map each wait | none (rustix sizes the sets), but O(fd) |
//!
//! All three are level-triggered, so they give asyncore's semantics: a channel
//! that is still ready is reported again on the next wait. `EINTR` is retried
//! with the remaining timeout, and sub-millisecond timeouts are rounded up,
//! never down to a busy loop (asyncore's `poll2` truncated them, D25).
//!
//! The buffers the backends fill are allocated once and reused: a wait does not
//! allocate.

mod epoll;
mod eventfd;
mod poll;
pub(crate) mod scripted;
#[cfg(feature = "select")]
mod select;

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::event::Timespec;

pub use crate::readiness::{Interest, Readiness};
pub(crate) use eventfd::EventFd;
pub(crate) use poll::readable_now;

/// Which readiness mechanism a [`Map`](crate::Map) waits with.
///
/// asyncore chose between `select` and `poll` with `use_poll`; rolecore adds
/// Linux's `epoll` and makes it the default, because its cost grows with the
/// number of *ready* channels rather than the number of channels.
///
/// # Examples
///
/// ```
/// use rolecore::Backend;
///
/// let backend: Backend = "poll".parse().unwrap();
/// assert_eq!(backend, Backend::Poll);
/// assert_eq!(Backend::default(), Backend::Epoll);
/// assert!("kqueue".parse::<Backend>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `select(2)`, as asyncore's default. Needs the `select` cargo feature
    /// (off by default); without it, choosing it is an `Unsupported` error
    /// and parsing `"select"` an error that names the feature.
    Select,
    /// `poll(2)`, as asyncore's `use_poll=True`.
    Poll,
    /// `epoll(7)`: persistent registrations, O(ready) waits.
    #[default]
    Epoll,
}

impl Backend {
    /// Every backend, in the order asyncore grew them.
    pub const ALL: [Backend; 3] = [Backend::Select, Backend::Poll, Backend::Epoll];

    /// The backend's name as [`FromStr`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Select => "select",
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
        }
    }

    /// Whether this build can use the backend (`select` needs its feature).
    pub fn is_available(self) -> bool {
        !matches!(self, Backend::Select) || cfg!(feature = "select")
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Backend`] from a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseBackendError {
    input: String,
}

impl fmt::Display for ParseBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.input == "select" {
            return f.write_str(
                "the select backend is not in this build: rolecore was built without its `select` \
                 feature (enable it, or use poll or epoll)",
            );
        }
        write!(f, "unknown backend {:?}: expected select, poll or epoll", self.input)
    }
}

impl std::error::Error for ParseBackendError {}

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "select" if cfg!(feature = "select") => Ok(Backend::Select),
            "poll" => Ok(Backend::Poll),
            "epoll" => Ok(Backend::Epoll),
            _ => Err(ParseBackendError { input: s.to_owned() }),
        }
    }
}

/// One descriptor the map asks a rebuilding backend (poll, select) to watch.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub fd: BorrowedFd<'a>,
    pub key: u64,
    pub interest: Interest,
}

/// A readiness report: the registration key and what was ready.
pub(crate) type Event = (u64, Readiness);

/// What one wait reported. epoll's reports stay as the kernel wrote them and
/// are read in place ([`kernel`](Self::kernel)), with no copy; the other
/// backends', a script's and the map's always-ready files' are a list
/// ([`list`](Self::list)), dispatched after the kernel's. Both buffers are
/// kept from one wait to the next: a wait does not allocate.
#[derive(Default)]
pub(crate) struct Events {
    kernel: Vec<rustix::event::epoll::Event>,
    list: Vec<Event>,
}

impl Events {
    /// Forgets the last wait's reports (keeps the buffers).
    #[inline]
    pub fn clear(&mut self) {
        self.kernel.clear();
        self.list.clear();
    }

    /// epoll's reports, read from its buffer.
    #[inline]
    pub fn kernel(&self) -> impl Iterator<Item = Event> + '_ {
        self.kernel.iter().map(|e| (e.data.u64(), epoll::readiness(e.flags)))
    }

    /// The reports of the other backends, of a script, and the map's own.
    #[inline]
    pub fn list(&self) -> &[Event] {
        &self.list
    }

    /// Whether the last wait reported nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.kernel.is_empty() && self.list.is_empty()
    }

    /// Adds a report after the others.
    pub fn push(&mut self, event: Event) {
        self.list.push(event);
    }

    /// Every report, as one list (for a script to alter). A script's
    /// backend is never epoll, so the kernel's buffer is empty: checked
    /// first, as an empty splice cost a fuzz run over 500 instructions a
    /// wait.
    fn flatten(&mut self) -> &mut Vec<Event> {
        if !self.kernel.is_empty() {
            let kernel = self.kernel.iter().map(|e| (e.data.u64(), epoll::readiness(e.flags)));
            self.list.splice(0..0, kernel);
            self.kernel.clear();
        }
        &mut self.list
    }
}

/// How the poller watches a descriptor it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// The kernel reports its readiness.
    ByKernel,
    /// Never given to the kernel, always reported ready: epoll refuses
    /// regular files (`EPERM`), which are always ready anyway.
    AlwaysReady,
}

/// The kernel mechanism a map waits with. An enum rather than a `dyn` trait:
/// the set of backends is closed, and a match is cheaper than a virtual call
/// per wait.
enum Kernel {
    Epoll(epoll::EpollPoller),
    Poll(poll::PollPoller),
    #[cfg(feature = "select")]
    Select(select::SelectPoller),
}

/// What a map waits with: a real backend, and, in a simulation only, the
/// script that wraps it ([`scripted`]): the real path pays one branch per
/// wait for it, nothing per event.
pub(crate) struct Poller {
    kernel: Kernel,
    script: Option<Box<scripted::Scripted>>,
}

impl Kernel {
    fn new(backend: Backend) -> io::Result<Kernel> {
        match backend {
            Backend::Epoll => Ok(Kernel::Epoll(epoll::EpollPoller::new()?)),
            Backend::Poll => Ok(Kernel::Poll(poll::PollPoller::new())),
            #[cfg(feature = "select")]
            Backend::Select => Ok(Kernel::Select(select::SelectPoller::new())),
            #[cfg(not(feature = "select"))]
            Backend::Select => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the select backend was not compiled in: enable rolecore's `select` feature, \
                 or use Backend::Poll or Backend::Epoll",
            )),
        }
    }

    #[inline(always)]
    fn wait<'a>(
        &mut self,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if let Kernel::Epoll(p) = self {
            return p.wait(&mut events.kernel, timeout);
        }
        let timeout = timeout.map(round_up_to_millis);
        match self {
            Kernel::Epoll(_) => unreachable!("waited above"),
            Kernel::Poll(p) => p.wait(sources, &mut events.list, timeout),
            #[cfg(feature = "select")]
            Kernel::Select(p) => p.wait(sources, &mut events.list, timeout),
        }
    }
}

impl Poller {
    pub fn new(backend: Backend) -> io::Result<Poller> {
        Ok(Poller { kernel: Kernel::new(backend)?, script: None })
    }

    /// The simulation's poller: `poll(2)`'s truth, altered by `script`.
    pub fn scripted(script: scripted::SharedScript) -> Poller {
        Poller {
            kernel: Kernel::Poll(poll::PollPoller::new()),
            script: Some(Box::new(scripted::Scripted::new(script))),
        }
    }

    /// A new poller with `backend` and no registrations, under the same
    /// script if this one has one.
    pub fn successor(&self, backend: Backend) -> io::Result<Poller> {
        if self.script.is_some() && backend == Backend::Epoll {
            // The script reads every channel's readiness on each wait, and
            // in-memory channels have none in the kernel: poll (or select)
            // hands it the list that epoll keeps to itself.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a simulation's map waits with poll or select, not epoll",
            ));
        }
        let script = self.script.as_ref().map(|s| Box::new(s.successor()));
        Ok(Poller { kernel: Kernel::new(backend)?, script })
    }

    pub fn backend(&self) -> Backend {
        match self.kernel {
            Kernel::Epoll(_) => Backend::Epoll,
            Kernel::Poll(_) => Backend::Poll,
            #[cfg(feature = "select")]
            Kernel::Select(_) => Backend::Select,
        }
    }

    /// Whether registrations live in the kernel (`register`/`reregister`/
    /// `deregister` do work) or are rebuilt from the map on every wait.
    #[inline]
    pub fn keeps_registrations(&self) -> bool {
        matches!(self.kernel, Kernel::Epoll(_))
    }

    /// [`wait`](Self::wait) of a poller that [keeps its
    /// registrations](Self::keeps_registrations): epoll, and so no script
    /// (a simulation's poller is never epoll: `scripted`, `successor`),
    /// which this wait does not look for. The map's common wait: 4
    /// instructions fewer per wait (callgrind, echo at one connection).
    #[inline(always)]
    pub fn wait_kernel(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        debug_assert!(self.script.is_none(), "a simulation's poller is never epoll");
        if let Kernel::Epoll(p) = &mut self.kernel {
            return p.wait(&mut events.kernel, timeout);
        }
        self.wait(std::iter::empty(), events, timeout)
    }

    /// Watches `fd` under `key`. epoll's rules: a descriptor it refuses
    /// with `EPERM` (a regular file) is accepted as [`Watched::AlwaysReady`]
    /// (the map then reports it ready itself, as `poll` and `select` would);
    /// one it already watches (`EEXIST`, under an older key) is watched
    /// under the new key instead.
    pub fn register(&mut self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> io::Result<Watched> {
        if crate::memory::is_memory_fd(fd) {
            return self.register_memory();
        }
        let Kernel::Epoll(p) = &mut self.kernel else { return Ok(Watched::ByKernel) };
        match p.register(fd, key, interest) {
            Ok(()) => Ok(Watched::ByKernel),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                Ok(Watched::AlwaysReady)
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                p.reregister(fd, key, interest).map_err(|_| e).map(|()| Watched::ByKernel)
            }
            Err(e) => Err(e),
        }
    }

    /// An in-memory channel: its readiness comes from the simulation's
    /// script, never from the kernel, so only a simulation's map takes it.
    #[cold]
    fn register_memory(&self) -> io::Result<Watched> {
        match self.script {
            Some(_) => Ok(Watched::ByKernel),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an in-memory channel can only join a simulation's map (rolecore::sim::Sim)",
            )),
        }
    }

    pub fn reregister(&mut self, fd: BorrowedFd<'_>, key: u64, interest: Interest) -> io::Result<()> {
        match &mut self.kernel {
            Kernel::Epoll(p) => p.reregister(fd, key, interest),
            _ => Ok(()),
        }
    }

    pub fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match &mut self.kernel {
            Kernel::Epoll(p) => p.deregister(fd),
            _ => Ok(()),
        }
    }

    /// Waits up to `timeout` (`None`: forever) and adds what was ready to
    /// `events`. `sources` is consulted only by the rebuilding backends (and
    /// a script).
    #[inline(always)]
    pub fn wait<'a>(
        &mut self,
        sources: impl Iterator<Item = Source<'a>>,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        match &mut self.script {
            None => self.kernel.wait(sources, events, timeout),
            Some(script) => script.wait(&mut self.kernel, sources, events, timeout),
        }
    }
}

/// Runs one blocking wait, retrying `EINTR` with the time that is left.
///
/// A signal must neither end a wait early with nothing (the caller would count
/// an iteration that did not happen) nor restart it with the full timeout (a
/// steady stream of signals would then block forever).
///
/// The first wait is inlined; a retry is out of line. The clock is read
/// before the first wait only when a retry would need it: not for a wait
/// without a time limit (retried as it was), nor for a zero one (over at
/// once).
#[inline]
pub(crate) fn retry_interrupted<T>(
    timeout: Option<Duration>,
    wait: impl FnMut(Option<&Timespec>) -> rustix::io::Result<T>,
    on_timeout: T,
) -> io::Result<T> {
    retry_interrupted_at(timeout, timeout.map(timespec), wait, on_timeout)
}

/// [`retry_interrupted`] with `timeout` already converted (`spec`).
#[inline]
pub(crate) fn retry_interrupted_at<T>(
    timeout: Option<Duration>,
    spec: Option<Timespec>,
    mut wait: impl FnMut(Option<&Timespec>) -> rustix::io::Result<T>,
    on_timeout: T,
) -> io::Result<T> {
    let start = match timeout {
        Some(t) if !t.is_zero() => Some(Instant::now()),
        _ => None,
    };
    match wait(spec.as_ref()) {
        Ok(v) => Ok(v),
        Err(rustix::io::Errno::INTR) => retry(timeout, start, spec, wait, on_timeout),
        Err(e) => Err(e.into()),
    }
}

/// [`retry_interrupted`] after a signal: waits again with what is left of
/// `timeout` counted from `start` (no `start`: a zero timeout, over), or
/// without a limit as before.
#[cold]
#[inline(never)]
fn retry<T>(
    timeout: Option<Duration>,
    start: Option<Instant>,
    mut spec: Option<Timespec>,
    mut wait: impl FnMut(Option<&Timespec>) -> rustix::io::Result<T>,
    on_timeout: T,
) -> io::Result<T> {
    loop {
        if let Some(total) = timeout {
            let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
            if elapsed >= total {
                return Ok(on_timeout);
            }
            spec = Some(timespec(total - elapsed));
        }
        match wait(spec.as_ref()) {
            Ok(v) => return Ok(v),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Rounds a non-zero timeout below one millisecond up to one millisecond, on
/// every backend alike: asyncore's `poll2` truncated 0.9 ms to 0 and spun
/// (D25); `select` and `ppoll` would honour 100 ns and nearly spin.
#[inline]
pub(crate) fn round_up_to_millis(timeout: Duration) -> Duration {
    if timeout > Duration::ZERO && timeout < Duration::from_millis(1) {
        Duration::from_millis(1)
    } else {
        timeout
    }
}

/// The longest single wait; longer timeouts are cut to it. About 24 days: the
/// largest millisecond count `epoll_wait` takes, so no backend overflows.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// A duration as a `Timespec`, capped at [`MAX_WAIT`]. rustix rounds a
/// `Timespec` up to whole milliseconds for `epoll_wait`, so 0.1 ms waits 1 ms
/// rather than busy-polling.
#[inline]
pub(crate) fn timespec(d: Duration) -> Timespec {
    let d = d.min(MAX_WAIT);
    Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ }
}

/// The flags epoll and poll share, each with the readiness it alone gives.
#[cfg(test)]
macro_rules! flag_pairs {
    ($flags:ty) => {
        [
            (<$flags>::IN, Readiness::READABLE),
            (<$flags>::OUT, Readiness::WRITABLE),
            (<$flags>::PRI, Readiness::PRIORITY),
            (<$flags>::HUP, Readiness::HANGUP),
            (<$flags>::RDHUP, Readiness::HANGUP),
            (<$flags>::ERR, Readiness::ERROR),
        ]
    };
}
#[cfg(test)]
use flag_pairs;

/// Checks a backend's mapping of its flags to [`Readiness`] on every
/// combination of `pairs` (each flag and the readiness it alone gives),
/// from `empty`, its empty set.
#[cfg(test)]
pub(super) fn assert_every_combination<F>(
    empty: F,
    pairs: &[(F, Readiness)],
    readiness: impl Fn(F) -> Readiness,
) where
    F: Copy + std::ops::BitOrAssign + fmt::Debug,
{
    for combo in 0u32..(1 << pairs.len()) {
        let mut flags = empty;
        let mut expected = Readiness::EMPTY;
        for (i, (flag, r)) in pairs.iter().enumerate() {
            if combo & (1 << i) != 0 {
                flags |= *flag;
                expected |= *r;
            }
        }
        assert_eq!(readiness(flags), expected, "{flags:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
            assert_eq!(b.to_string(), b.name());
        }
        let err = "kqueue".parse::<Backend>().unwrap_err();
        assert!(err.to_string().contains("select, poll or epoll"));
    }

    #[test]
    fn huge_timeouts_are_capped_not_overflowed() {
        let t = timespec(Duration::MAX);
        assert_eq!(t.tv_sec, (i32::MAX / 1000) as i64);
        let t = timespec(Duration::from_micros(100));
        assert_eq!((t.tv_sec, t.tv_nsec), (0, 100_000));
    }

    #[test]
    fn sub_millisecond_timeouts_round_up_and_zero_stays_zero() {
        assert_eq!(round_up_to_millis(Duration::from_nanos(1)), Duration::from_millis(1));
        assert_eq!(round_up_to_millis(Duration::from_micros(900)), Duration::from_millis(1));
        assert_eq!(round_up_to_millis(Duration::ZERO), Duration::ZERO);
        assert_eq!(round_up_to_millis(Duration::from_micros(1500)), Duration::from_micros(1500));
    }

    #[test]
    fn eintr_is_retried_with_the_remaining_time() {
        let mut calls = Vec::new();
        let result = retry_interrupted(
            Some(Duration::from_secs(10)),
            |t| {
                calls.push(t.map(|t| t.tv_sec));
                if calls.len() < 3 { Err(rustix::io::Errno::INTR) } else { Ok(7) }
            },
            0,
        )
        .unwrap();
        assert_eq!(result, 7);
        assert_eq!(calls.len(), 3);
        // Each retry asks for no more than what was left.
        assert!(calls.windows(2).all(|w| w[1] <= w[0]));
    }

    /// A retry after a signal asks only for what is left of the timeout:
    /// the time the interrupted wait took comes off, so a steady stream of
    /// signals cannot stretch a wait without end (P18).
    #[test]
    fn a_retry_after_eintr_asks_for_the_time_left_not_the_whole_timeout() {
        let total = Duration::from_secs(10);
        let slept = Duration::from_millis(20);
        let mut asked = Vec::new();
        retry_interrupted(
            Some(total),
            |t| {
                let t = t.expect("a limited wait");
                asked.push(Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
                if asked.len() == 1 {
                    std::thread::sleep(slept);
                    Err(rustix::io::Errno::INTR)
                } else {
                    Ok(())
                }
            },
            (),
        )
        .unwrap();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0], total);
        assert!(asked[1] <= total - slept, "the retry asked for {:?} of {total:?}", asked[1]);
    }

    /// epoll's `EEXIST` rule: registering a descriptor epoll already
    /// watches (under an older key, as a swapped channel leaves it) watches
    /// it under the new key and the new interest instead of failing: the
    /// next wait reports the new key, for what the new interest asks.
    #[test]
    fn registering_a_watched_descriptor_again_moves_it_to_the_new_key_and_interest() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let mut poller = Poller::new(Backend::Epoll).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(poller.register(ours.as_fd(), 1, Interest::WRITE).unwrap(), Watched::ByKernel);
        assert_eq!(poller.register(ours.as_fd(), 2, Interest::READ).unwrap(), Watched::ByKernel);
        (&theirs).write_all(b"x").unwrap();
        let mut events = Events::default();
        poller.wait(std::iter::empty(), &mut events, Some(Duration::ZERO)).unwrap();
        let reported: Vec<Event> = events.kernel().collect();
        assert_eq!(reported, [(2, Readiness::READABLE)]);
    }

    /// epoll's `EPERM` rule: a descriptor epoll refuses (a regular file) is
    /// accepted as always ready, for the map to report itself.
    #[test]
    fn a_regular_file_is_always_ready_not_an_error_on_epoll() {
        use std::os::fd::AsFd;
        let mut poller = Poller::new(Backend::Epoll).unwrap();
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(poller.register(file.as_fd(), 1, Interest::READ).unwrap(), Watched::AlwaysReady);
    }

    /// A zero timeout that a signal interrupts is over: the retry returns
    /// the timeout's value without a second wait (a second wait with no
    /// time left would spin for as long as signals come).
    #[test]
    fn eintr_on_a_zero_timeout_returns_without_waiting_again() {
        let mut calls = 0;
        let result = retry_interrupted(
            Some(Duration::ZERO),
            |_| {
                calls += 1;
                if calls < 3 { Err(rustix::io::Errno::INTR) } else { Ok(7) }
            },
            42,
        )
        .unwrap();
        assert_eq!((result, calls), (42, 1));
    }

    #[test]
    fn eintr_after_the_deadline_returns_the_timeout_value() {
        let result =
            retry_interrupted(Some(Duration::ZERO), |_| Err::<u32, _>(rustix::io::Errno::INTR), 42).unwrap();
        assert_eq!(result, 42);
    }

    /// An in-memory channel (a simulation's) has no readiness in the
    /// kernel: a real map's poller refuses it with `InvalidInput`, whatever
    /// its backend, rather than watch it for nothing.
    #[test]
    fn a_real_poller_refuses_an_in_memory_channel() {
        use crate::memory::{self, Link, Sizes};
        use std::os::fd::AsFd;
        let _sim = crate::sim::Sim::from_bytes(&[], crate::sim::SimConfig::default()).unwrap();
        for backend in [Backend::Poll, Backend::Epoll] {
            let mut poller = Poller::new(backend).unwrap();
            let (ours, _theirs) =
                memory::pair(Sizes { cap: [64; 2], chunk: [64; 2] }, Link::Pending).unwrap();
            let fd = memory::descriptor_for(&ours).unwrap();
            let error = poller.register(fd.as_fd(), 1, Interest::READ).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{backend}: {error}");
        }
    }
}
