//! Reports: `report::log_info` and the log hook (levels, order), the default
//! hook writing to standard error (in a child process), and an errno's text.
//!
//! Each test names where it comes from: CPython's `test_asyncore.py` (T1–T31,
//! `docs/asyncore.md`), a peer conformance item (1–25, `docs/rules.md`), a
//! pitfall (P1–P22, `docs/reliability.md`) or a decision (D-codes).

mod util;

use std::io::{self};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::Duration;

use rolecore::report::{self, Level};
use rolecore::{Backend, Channel, Connected, Ctx, FileFd, FileHandler, LoopOptions, Map, StreamHandler};
use util::cpython::*;
use util::*;

/// The report hook is process-wide and the tests run in parallel threads:
/// the tests that set it take this lock, and keep only their own thread's
/// reports.
static HOOK: Mutex<()> = Mutex::new(());

type Reports = Arc<Mutex<Vec<(ThreadId, Level, String)>>>;

/// Captures rolecore's reports until dropped, then restores the default hook.
struct Captured {
    reports: Reports,
    _lock: MutexGuard<'static, ()>,
}

fn capture_reports() -> Captured {
    let lock = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    report::set_log_hook(Some(Box::new(move |level, message| {
        sink.lock().unwrap().push((thread::current().id(), level, message.to_string()));
    })));
    Captured { reports, _lock: lock }
}

impl Captured {
    /// The reports made on this thread so far.
    fn mine(&self) -> Vec<(Level, String)> {
        let me = thread::current().id();
        self.reports
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, ..)| *t == me)
            .map(|(_, l, m)| (*l, m.clone()))
            .collect()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        report::set_log_hook(None);
    }
}

/// T8 `test_log` and T9 `test_log_info` (A29, A30, P21): asyncore printed
/// `log()` to stderr as `log: …` and `log_info(msg, type)` to stdout as
/// `type: msg`. rolecore has one report function, `report::log_info`,
/// behind a replaceable hook; its levels display as asyncore's types
/// (`info`, `warning`, `error`). T9's free-form types (`'EGGS'`, `'SPAM'`)
/// do not exist: `Level` is a closed enum. What the default hook writes is
/// checked in a child process (`t08_default_hook_in_a_child_process`).
#[test]
fn t08_t09_log_info_reaches_the_hook_in_order_with_its_level() {
    let captured = capture_reports();
    report::log_info(Level::Info, format_args!("Have you got anything without spam?"));
    report::log_info(Level::Error, format_args!("Why can't she have egg bacon spam and sausage?"));
    report::log_info(Level::Warning, format_args!("THAT'S got spam in it!"));
    assert_eq!(
        captured.mine(),
        [
            (Level::Info, "Have you got anything without spam?".to_string()),
            (Level::Error, "Why can't she have egg bacon spam and sausage?".to_string()),
            (Level::Warning, "THAT'S got spam in it!".to_string()),
        ]
    );
    let types: Vec<String> =
        [Level::Info, Level::Warning, Level::Error].iter().map(|l| l.to_string()).collect();
    assert_eq!(types, ["info", "warning", "error"], "levels display as asyncore's log types");
}

/// Relies on the default `handle_expt`.
struct DefaultExpt;

impl StreamHandler for DefaultExpt {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)
    }
}

/// Relies on the default `FileHandler::handle_write`.
struct DefaultFileWrite;

impl FileHandler for DefaultFileWrite {
    fn readable(&self, _ch: &Channel<FileFd>) -> bool {
        false
    }

    fn writable(&self, _ch: &Channel<FileFd>) -> bool {
        true
    }

    fn handle_read(&mut self, _ch: &mut Channel<FileFd>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// Fails its read and keeps the default `handle_error`.
struct DefaultError;

impl StreamHandler for DefaultError {
    fn handle_read(&mut self, ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        discard(ch)?;
        Err(io::Error::other("I don't like spam!"))
    }
}

/// T10 `test_unhandled` (A36): the default handlers of events a program did
/// not handle report a warning (silent by default, as asyncore's
/// `ignore_log_types`). asyncore had four: priority, read, write and connect.
/// rolecore keeps the priority one (`handle_expt` also discards the byte,
/// P5) and the file write one; `handle_read` has no default (it is
/// required), and the default `handle_connect` is silent. The error reports
/// of the default `handle_error` (A35) and `handle_connect_failed` (D24) are
/// errors.
#[test]
fn t10_unhandled() {
    let captured = capture_reports();
    let seen =
        |level: Level, text: &str| captured.mine().iter().any(|(l, m)| *l == level && m.contains(text));
    let distinct = || {
        let mut all = captured.mine();
        all.dedup();
        all
    };
    // The default handle_expt, for an urgent byte.
    let mut map = util::map(Backend::default());
    let (ours, mut peer) = tcp_channel_pair();
    map.insert(ours, DefaultExpt).unwrap();
    peer.send_oob(b"!").unwrap();
    assert!(
        util::run_until(&mut map, |_| seen(Level::Warning, "unhandled incoming priority event")),
        "the priority warning within 5 s: {:?}",
        distinct()
    );
    // The default FileHandler::handle_write, on a pipe that is always writable.
    let mut map = util::map(Backend::default());
    let (_reader, writer) = std::io::pipe().unwrap();
    map.insert(Channel::file(writer.into()).unwrap(), DefaultFileWrite).unwrap();
    map.run(LoopOptions::new().timeout(Duration::from_secs(5)).count(1)).unwrap();
    assert!(seen(Level::Warning, "unhandled write event"), "the write warning: {:?}", distinct());
    // The default handle_error and handle_connect_failed.
    let mut map = util::map(Backend::default());
    let (ours, mut peer) = Channel::pair().unwrap();
    map.insert(ours, DefaultError).unwrap();
    peer.send(b"x").unwrap();
    let refused = {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        Channel::tcp_v4().unwrap().connect(port).unwrap()
    };
    map.insert(refused, Minimal).unwrap();
    assert!(util::run_until(&mut map, Map::is_empty), "both channels closed within 5 s");
    let errors: Vec<String> =
        captured.mine().into_iter().filter(|(l, _)| *l == Level::Error).map(|(_, m)| m).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("uncaptured error, closing channel") && m.contains("I don't like spam!")),
        "the default handle_error's line names the channel and the error: {errors:?}"
    );
    assert!(
        errors.iter().any(|m| m.starts_with("connect failed for") && m.contains("refused")),
        "the default handle_connect_failed's line says why: {errors:?}"
    );
}

/// What the child process of `t08_default_hook_in_a_child_process` does: it
/// reports at every level through the default hook. On its own (without the
/// environment variable) it does nothing.
#[test]
fn t08_child_process_body() {
    if std::env::var_os("ROLECORE_PORTED_CHILD").is_none() {
        return;
    }
    report::log_info(Level::Info, format_args!("Lovely spam! Wonderful spam!"));
    report::log_info(Level::Warning, format_args!("a warning nobody asked for"));
    report::log_info(Level::Error, format_args!("I don't like spam!"));
    // The library's own warning (the default handle_expt) is silent too.
    let mut map = util::map(Backend::default());
    let (ours, mut peer) = tcp_channel_pair();
    map.insert(ours, DefaultExpt).unwrap();
    peer.send_oob(b"!").unwrap();
    util::run_iterations(&mut map, 5);
}

/// T8/T10 with the default hook (A29, A30, A36, P21): it writes `info: …`
/// and `error: …` lines to stderr (asyncore: `log_info` to stdout, `log` to
/// stderr) and drops warnings. Checked on the stderr of a child process
/// running `t08_child_process_body`, since a test cannot capture its own
/// stderr.
#[test]
fn t08_default_hook_in_a_child_process() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["t08_child_process_body", "--exact", "--nocapture", "--test-threads=1"])
        .env("ROLECORE_PORTED_CHILD", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    // With the `log` feature the default hook hands every report to the
    // `log` facade instead, and with no logger installed the facade drops
    // them: stderr stays empty (tests/log_feature.rs checks what a logger
    // receives).
    let expected: &[&str] = if cfg!(feature = "log") {
        &[]
    } else {
        &["info: Lovely spam! Wonderful spam!", "error: I don't like spam!"]
    };
    assert_eq!(lines, expected, "stderr: {stderr}");
}

/// T11 `test_strerror` (A4, bug #8573): an errno's text is the C library's
/// `strerror`, and an unknown one still has a text. rolecore's errors are
/// `io::Error`s built from the errno.
#[test]
fn t11_strerror() {
    let eperm = io::Error::from(rustix::io::Errno::PERM);
    assert_eq!(eperm.raw_os_error(), Some(1));
    assert!(eperm.to_string().starts_with("Operation not permitted"), "{eperm}");
    let unknown = io::Error::from_raw_os_error(-1).to_string();
    assert!(!unknown.is_empty());
}
