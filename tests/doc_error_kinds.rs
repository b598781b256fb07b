//! Every error kind the documentation claims is one a test makes happen.
//!
//! `every_error_kind_in_the_docs_is_proven` reads `README.md` and `docs/`,
//! finds each `io::ErrorKind` named there (in backticks, or as
//! `ErrorKind::Name`), and fails for a kind no test below (or in the file it
//! names) proves: a doc that starts claiming a new kind must bring its proof.

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rolecore::{AsyncChat, Buffered, Channel, Connected, Ctx, LoopOptions, Map, StreamHandler, Terminator};

/// Each kind the docs may claim, and where it is proven: a test of this
/// file, or a named test in another test file (checked to exist).
const PROVEN: &[(&str, &str)] = &[
    ("StorageFull", "this file: storage_full_past_an_output_limit"),
    ("WouldBlock", "this file: would_block_when_nothing_is_there_to_read"),
    ("Other", "this file: other_for_a_push_after_close_when_done"),
    ("TimedOut", "this file: timed_out_when_a_connect_passes_its_deadline"),
    ("Unsupported", "this file: unsupported_select_without_its_feature"),
    ("ConnectionRefused", "tests/guide.rs: a_refused_connect_arrives_in_the_loop"),
    ("UnexpectedEof", "tests/guide.rs: the_client_gets_its_answer"),
    ("NotConnected", "tests/misuse.rs: NotConnected"),
    ("ResourceBusy", "tests/misuse.rs: ResourceBusy"),
    ("InvalidInput", "tests/sim.rs: a_map_put_in_the_simulations_place_is_refused_with_a_clear_error"),
];

/// Every `io::ErrorKind` variant a doc could name.
const KINDS: &[&str] = &[
    "NotFound",
    "PermissionDenied",
    "ConnectionRefused",
    "ConnectionReset",
    "HostUnreachable",
    "NetworkUnreachable",
    "ConnectionAborted",
    "NotConnected",
    "AddrInUse",
    "AddrNotAvailable",
    "NetworkDown",
    "BrokenPipe",
    "AlreadyExists",
    "WouldBlock",
    "NotADirectory",
    "IsADirectory",
    "DirectoryNotEmpty",
    "ReadOnlyFilesystem",
    "StaleNetworkFileHandle",
    "InvalidInput",
    "InvalidData",
    "TimedOut",
    "WriteZero",
    "StorageFull",
    "NotSeekable",
    "QuotaExceeded",
    "FileTooLarge",
    "ResourceBusy",
    "ExecutableFileBusy",
    "Deadlock",
    "CrossesDevices",
    "TooManyLinks",
    "InvalidFilename",
    "ArgumentListTooLong",
    "Interrupted",
    "Unsupported",
    "UnexpectedEof",
    "OutOfMemory",
    "Other",
];

#[test]
fn every_error_kind_in_the_docs_is_proven() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut docs = vec![format!("{root}/README.md")];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path.display().to_string());
        }
    }
    let mut unproven = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for kind in KINDS {
            let named = text.contains(&format!("`{kind}`")) || text.contains(&format!("ErrorKind::{kind}"));
            if named && !PROVEN.iter().any(|(k, _)| k == kind) {
                unproven.push(format!("{doc} names `{kind}`"));
            }
        }
    }
    assert!(unproven.is_empty(), "error kinds the docs claim with no test here:\n{}", unproven.join("\n"));
    // The proofs kept in other files still exist.
    for (kind, place) in PROVEN {
        if let Some((file, needle)) = place.split_once(": ")
            && file != "this file"
        {
            let source = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
            assert!(source.contains(needle), "{kind}: {file} no longer has {needle}");
        }
    }
}

#[test]
fn storage_full_past_an_output_limit() -> io::Result<()> {
    let (ours, _peer) = UnixStream::pair()?;
    let mut buffered = Buffered::new(Channel::try_from(ours)?).with_limit(4);
    // The socket takes what it can; the rest is queued up to the limit.
    let big = vec![0u8; 1 << 22];
    let error = buffered.send(&big).and_then(|()| buffered.send(&big)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StorageFull);
    assert!(error.get_ref().is_some_and(|e| e.is::<rolecore::BufferFull>()));

    let (ours, _peer) = UnixStream::pair()?;
    let mut chat = AsyncChat::new(Channel::<Connected>::try_from(ours)?, Terminator::LF);
    chat.set_output_limit(8);
    assert_eq!(chat.push(&[0u8; 9]).unwrap_err().kind(), ErrorKind::StorageFull);
    Ok(())
}

#[test]
fn would_block_when_nothing_is_there_to_read() -> io::Result<()> {
    let (ours, _peer) = UnixStream::pair()?;
    let mut channel: Channel<Connected> = Channel::try_from(ours)?;
    assert_eq!(channel.recv(&mut [0u8; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
    Ok(())
}

#[test]
fn other_for_a_push_after_close_when_done() -> io::Result<()> {
    let (ours, _peer) = UnixStream::pair()?;
    let mut chat = AsyncChat::new(Channel::<Connected>::try_from(ours)?, Terminator::LF);
    chat.close_when_done();
    assert_eq!(chat.push(b"late").unwrap_err().kind(), ErrorKind::Other);
    Ok(())
}

#[test]
fn unsupported_select_without_its_feature() {
    let result = Map::with_backend(rolecore::Backend::Select);
    if cfg!(feature = "select") {
        assert!(result.is_ok());
    } else {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Unsupported);
    }
}

/// Records how a connect ended.
struct Outcome(Rc<RefCell<Vec<io::Result<()>>>>);

impl StreamHandler for Outcome {
    fn handle_connect(&mut self, _ch: &mut Channel<Connected>, cx: &mut Ctx<'_>) -> io::Result<()> {
        self.0.borrow_mut().push(Ok(()));
        cx.close();
        Ok(())
    }
    fn handle_connect_failed(&mut self, error: io::Error, _cx: &mut Ctx<'_>) {
        self.0.borrow_mut().push(Err(error));
    }
    fn handle_read(&mut self, _ch: &mut Channel<Connected>, _cx: &mut Ctx<'_>) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn timed_out_when_a_connect_passes_its_deadline() -> io::Result<()> {
    // A listener that never accepts, with the smallest backlog: once its
    // queue is full, the kernel drops further SYNs and those connects stay
    // pending (on loopback, nothing leaves the machine).
    let listener = Channel::tcp_v4()?.bind("127.0.0.1:0")?.listen(0)?;
    let addr = listener.local_addr()?;
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let mut map = Map::new()?;
    for _ in 0..8 {
        let token = map.insert(Channel::tcp_v4()?.connect(&addr)?, Outcome(outcomes.clone()))?;
        map.set_deadline(token, Some(Instant::now() + Duration::from_millis(200)));
    }
    map.run(LoopOptions::new().timeout(Duration::from_secs(5)))?;
    let outcomes = outcomes.borrow();
    assert_eq!(outcomes.len(), 8, "every connect ended, one way or the other");
    let timed_out =
        outcomes.iter().filter(|o| o.as_ref().is_err_and(|e| e.kind() == ErrorKind::TimedOut)).count();
    assert!(timed_out > 0, "no connect stayed pending past its deadline: {outcomes:?}");
    drop(listener);
    Ok(())
}
