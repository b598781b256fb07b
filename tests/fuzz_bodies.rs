//! The fuzz targets' bodies under plain `cargo test`, on stable, without a
//! fuzzer: every file of each target's checked-in corpus
//! (`fuzz/corpus/<target>/`) is replayed, then a fixed-seed batch of
//! generated inputs runs, so a regression in what the targets check fails
//! CI even where `cargo fuzz` is not installed. See `docs/fuzzing.md`.
//!
//! A crash found by the fuzzer becomes a regression test by copying the
//! input into the target's corpus directory.

#[path = "../fuzz/bodies/mod.rs"]
mod bodies;

use std::path::{Path, PathBuf};

/// Generated inputs per target.
const GENERATED: usize = 300;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

fn body(target: &str) -> bodies::Body {
    bodies::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz body named {target}"))
        .1
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: the checked-in corpus is missing: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("a corpus entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    files
}

/// Runs `body` on `data`; on a panic, says which input it was and how to
/// replay it, then fails with the body's own message.
fn run_one(target: &str, what: &str, data: &[u8]) -> usize {
    match std::panic::catch_unwind(|| body(target)(data)) {
        Ok(checked) => checked,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "fuzz target {target} fails on {what} ({} bytes: {hex})\n\
                 replay: cargo fuzz run {target} <file with these bytes>\n{message}",
                data.len()
            )
        }
    }
}

fn replay_corpus(target: &str) {
    let files = corpus(target);
    assert!(!files.is_empty(), "{}: the checked-in corpus is empty", corpus_dir(target).display());
    for (name, data) in &files {
        run_one(target, &format!("corpus file fuzz/corpus/{target}/{name}"), data);
    }
}

/// xorshift64* from a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random inputs of up to `max_len` bytes; some of them are bytes from a
/// small set, so that repeated values (and so long runs of one decision)
/// are common too.
fn generated(target: &str, seed: u64, max_len: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut checked = 0;
    for case in 0..GENERATED {
        let len = rng.below(max_len + 1);
        let palette: Vec<u8> = (0..1 + rng.below(6)).map(|_| rng.next() as u8).collect();
        let narrow = rng.below(3) == 0;
        let data: Vec<u8> = (0..len)
            .map(|_| if narrow { palette[rng.below(palette.len())] } else { rng.next() as u8 })
            .collect();
        checked += run_one(target, &format!("generated case {case} of seed {seed}"), &data);
    }
    eprintln!("{target}: checked {checked}");
    checked
}

#[test]
fn machine_corpus() {
    replay_corpus("machine");
}

#[test]
fn machine_generated() {
    let checked = generated("machine", 1, 300);
    assert!(checked > 1000, "the batch drove {checked} steps");
}

#[test]
fn framer_corpus() {
    replay_corpus("framer");
}

#[test]
fn framer_generated() {
    let checked = generated("framer", 2, 600);
    assert!(checked > 300, "the batch checked {checked} records");
}

#[test]
fn resp_corpus() {
    replay_corpus("resp");
}

#[test]
fn resp_generated() {
    let checked = generated("resp", 6, 400);
    assert!(checked > 100, "the batch parsed {checked} commands");
}

#[test]
fn resp_exec_corpus() {
    replay_corpus("resp_exec");
}

#[test]
fn resp_exec_generated() {
    let checked = generated("resp_exec", 7, 400);
    assert!(checked > 100, "the batch ran {checked} commands");
}

#[test]
fn http_head_corpus() {
    replay_corpus("http_head");
}

#[test]
fn http_head_generated() {
    let checked = generated("http_head", 8, 400);
    assert!(checked > 100, "the batch answered {checked} requests");
}

#[test]
fn sim_resp_corpus() {
    replay_corpus("sim_resp");
}

#[test]
fn sim_resp_generated() {
    let checked = generated("sim_resp", 9, 1500);
    assert!(checked > 0, "some peer got a reply");
}

#[test]
fn sim_http_corpus() {
    replay_corpus("sim_http");
}

#[test]
fn sim_http_generated() {
    let checked = generated("sim_http", 10, 1500);
    assert!(checked > 0, "some peer got a response");
}

#[test]
fn sim_echo_buffered_corpus() {
    replay_corpus("sim_echo_buffered");
}

#[test]
fn sim_echo_buffered_generated() {
    let checked = generated("sim_echo_buffered", 3, 1500);
    assert!(checked > 0, "some peer got an echo back");
}

#[test]
fn sim_echo_raw_corpus() {
    replay_corpus("sim_echo_raw");
}

#[test]
fn sim_echo_raw_generated() {
    let checked = generated("sim_echo_raw", 4, 1500);
    assert!(checked > 0, "some peer got an echo back");
}

#[test]
fn sim_chat_corpus() {
    replay_corpus("sim_chat");
}

#[test]
fn sim_chat_generated() {
    let checked = generated("sim_chat", 5, 1500);
    assert!(checked > 0, "some peer got a reply");
}

#[cfg(feature = "tls")]
#[test]
fn sim_tls_corpus() {
    replay_corpus("sim_tls");
}

#[cfg(feature = "tls")]
#[test]
fn sim_tls_generated() {
    let checked = generated("sim_tls", 11, 600);
    assert!(checked > 0, "some payload was echoed");
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    let names: Vec<&str> = bodies::TARGETS.iter().map(|(name, _)| *name).collect();
    let dirs: Vec<String> = std::fs::read_dir(corpus_dir(""))
        .expect("fuzz/corpus")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        assert!(dirs.iter().any(|d| d == name), "fuzz target {name} has no fuzz/corpus/{name}/");
        let target =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(target.exists(), "{} is missing", target.display());
    }
    for dir in &dirs {
        // sim_tls's body is built only with the `tls` feature.
        if dir == "sim_tls" && cfg!(not(feature = "tls")) {
            continue;
        }
        assert!(names.contains(&dir.as_str()), "fuzz/corpus/{dir}/ belongs to no target");
    }
}

/// Names the files `cargo fuzz cmin` left (40-hex-digit hashes) after what
/// they are, `<describe>-<hash>.bin`, and prints what the others are. Run by
/// hand after a minimisation:
///
/// ```text
/// cargo test --test fuzz_bodies -- --ignored name_corpus_files
/// ```
#[test]
#[ignore = "renames files in fuzz/corpus; run by hand after cargo fuzz cmin"]
fn name_corpus_files() {
    for (target, _) in bodies::TARGETS {
        for (name, data) in corpus(target) {
            let mut word = bodies::describe(target, &data).expect("a describe for every target");
            let is_hash = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hash {
                println!("{target}: {name} is {word}");
                continue;
            }
            word.retain(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            word.truncate(150);
            let new = format!("{word}-{}.bin", &name[..8]);
            let dir = corpus_dir(target);
            std::fs::rename(dir.join(&name), dir.join(&new)).expect("rename a corpus file");
            println!("{target}: {name} -> {new}");
        }
    }
}

/// A regression found by fuzzing: a simulated peer's `connect` that found
/// the listener's backlog full (`EAGAIN`) failed the whole run; `Sim` now
/// treats it as a refused connection. Replays the inputs that found it.
#[test]
fn sim_connect_with_a_full_backlog_is_a_refused_peer_not_a_failure() {
    let regressions = |target: &str| {
        corpus(target).into_iter().filter(|(name, _)| name.starts_with("regression-sim_connect_eagain"))
    };
    for (name, data) in regressions("sim_echo_buffered") {
        if let Err(failure) = bodies::sim_echo_buffered::simulate(&data, false).1 {
            panic!("sim_echo_buffered/{name}: {failure}");
        }
    }
    for (name, data) in regressions("sim_echo_raw") {
        if let Err(failure) = bodies::sim_echo_raw::simulate(&data, false).1 {
            panic!("sim_echo_raw/{name}: {failure}");
        }
    }
}

// ---- the RESP parser's bounds, at their edges ----------------------------------

/// Feeds `lines` (each a whole record: a line without its CRLF, or a bulk
/// payload with it) to `parser`; the result of the last one.
fn resp_records(
    parser: &mut bodies::resp::parser::RespParser,
    lines: &[&[u8]],
) -> Result<Option<Vec<Vec<u8>>>, String> {
    let mut last = Ok(None);
    for line in lines {
        last = parser.record(line).map(|c| c.map(|c| c.to_vecs())).map_err(|e| e.0);
        if last.is_err() {
            break;
        }
    }
    last
}

/// A multibulk frame may announce at most 1,048,576 arguments (Redis's
/// bound), whatever the request bound leaves room for: one more is a
/// protocol error on its `*N` line, before an argument is read.
#[test]
fn resp_multibulk_length_is_bounded_by_redis_s_limit() {
    use bodies::resp::parser::RespParser;
    // Bulk and request bounds large enough that only the count's own bound
    // can refuse.
    let mut parser = RespParser::new(1 << 30);
    assert_eq!(resp_records(&mut parser, &[b"*1048576"]), Ok(None));
    let mut parser = RespParser::new(1 << 30);
    let refused = resp_records(&mut parser, &[b"*1048577"]);
    assert!(refused.as_ref().is_err_and(|e| e.contains("multibulk length")), "{refused:?}");
}

/// `*-1` is a null multibulk (nothing to do, as Redis); any other negative
/// or signed count is a protocol error.
#[test]
fn resp_only_minus_one_is_a_null_multibulk() {
    use bodies::resp::parser::RespParser;
    let mut parser = RespParser::new(100);
    assert_eq!(resp_records(&mut parser, &[b"*-1", b"PING"]), Ok(Some(vec![b"PING".to_vec()])));
    for bad in [&b"*-2"[..], b"*-0", b"*+1", b"*-10"] {
        let mut parser = RespParser::new(100);
        assert!(resp_records(&mut parser, &[bad]).is_err(), "{}", bad.escape_ascii());
    }
}

/// A length of any number of digits is refused cleanly, never overflows:
/// a `$` or `*` of 19 or 20 digits is a protocol error, not a panic.
#[test]
fn resp_huge_lengths_are_protocol_errors() {
    use bodies::resp::parser::RespParser;
    for digits in [19, 20, 21, 40] {
        let nines = vec![b'9'; digits];
        let mut parser = RespParser::new(100);
        let star = [&b"*"[..], &nines].concat();
        assert!(resp_records(&mut parser, &[&star]).is_err(), "*{digits} nines");
        let mut parser = RespParser::new(100);
        let dollar = [&b"$"[..], &nines].concat();
        assert!(resp_records(&mut parser, &[b"*1", &dollar]).is_err(), "${digits} nines");
    }
}

/// A request is bounded by `--max-request` with each argument counted as
/// its bytes plus `ARG_OVERHEAD`: an argument count whose overheads alone
/// pass the bound is refused at its `*N`, and a bulk string that would take
/// the request one byte past the bound is refused at its `$N`; exactly at
/// the bound both are taken.
#[test]
fn resp_request_bound_is_exact() {
    use bodies::resp::parser::{ARG_OVERHEAD, RespParser};
    let bound = 12 * ARG_OVERHEAD;
    let fresh = || RespParser::new(1 << 20).with_max_request(bound);
    // The count alone.
    assert_eq!(resp_records(&mut fresh(), &[b"*12"]), Ok(None));
    assert!(resp_records(&mut fresh(), &[b"*13"]).is_err(), "13 overheads pass the bound");
    // One argument: its bytes and its overhead.
    let fits = format!("${}", bound - ARG_OVERHEAD);
    let over = format!("${}", bound - ARG_OVERHEAD + 1);
    assert_eq!(resp_records(&mut fresh(), &[b"*1", fits.as_bytes()]), Ok(None));
    assert!(resp_records(&mut fresh(), &[b"*1", over.as_bytes()]).is_err(), "one byte past the bound");
    // A second argument counts what the first took.
    let first = [b'a'; 10];
    let first_payload = [&first[..], b"\r\n"].concat();
    let second_fits = format!("${}", bound - 10 - 2 * ARG_OVERHEAD);
    let second_over = format!("${}", bound - 10 - 2 * ARG_OVERHEAD + 1);
    assert_eq!(
        resp_records(&mut fresh(), &[b"*2", b"$10", &first_payload, second_fits.as_bytes()]),
        Ok(None)
    );
    assert!(resp_records(&mut fresh(), &[b"*2", b"$10", &first_payload, second_over.as_bytes()]).is_err());
}

// ---- the example servers' shared output budget ---------------------------------

/// A chat of the connections test: on `drop` it drops the slowest other
/// reader, on `close` it closes itself the way a server's `handle_error`
/// gives up on a connection.
struct Member {
    connections: bodies::connections::Connections<Member>,
    dropped: std::rc::Rc<std::cell::RefCell<Vec<bool>>>,
}

impl rolecore::ChatHandler for Member {
    fn found_terminator(
        &mut self,
        chat: &mut rolecore::AsyncChat,
        cx: &mut rolecore::Ctx<'_>,
    ) -> std::io::Result<()> {
        match &chat.take_incoming()[..] {
            b"drop" => {
                let dropped = self.connections.drop_slowest(cx.token(), cx, "test");
                self.dropped.borrow_mut().push(dropped);
            }
            b"close" => self.connections.close(cx),
            _ => {}
        }
        Ok(())
    }
}

/// `Connections::drop_slowest` drops the other connection with the most
/// output queued, one per call, and never one with nothing queued (it
/// frees nothing): when none is left, it says so and drops nothing. A
/// connection that closes itself through `Connections::close` leaves the
/// set at once.
#[test]
fn connections_drop_the_slowest_reader_first_and_never_an_idle_one() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use rolecore::{AsyncChat, Channel, LoopOptions, Map, Terminator};

    let mut map = Map::new().unwrap();
    let connections = bodies::connections::Connections::<Member>::new(64 << 20);
    let dropped = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    // The peers stay open and never read.
    let mut peers = Vec::new();
    let mut add = |map: &mut Map, queued: usize| {
        let (ours, peer) = UnixStream::pair().unwrap();
        let mut chat = AsyncChat::new(Channel::try_from(ours).unwrap(), Terminator::LF);
        connections.charge(&mut chat);
        if queued > 0 {
            chat.push(&vec![b'q'; queued]).unwrap();
        }
        let member = Member { connections: connections.clone(), dropped: dropped.clone() };
        let token = map.insert(chat, member).unwrap();
        connections.join(token);
        peers.push(peer);
        (token, peers.len() - 1)
    };
    let (driver, driver_peer) = add(&mut map, 0);
    let (idle, idle_peer) = add(&mut map, 0);
    let (less, _) = add(&mut map, 2 << 20);
    let (most, _) = add(&mut map, 3 << 20);
    // Whatever each socket takes, `most` keeps a megabyte more queued.
    let mut say = |map: &mut Map, peer: usize, line: &[u8], calls: usize| {
        peers[peer].write_all(line).unwrap();
        for _ in 0..1000 {
            if dropped.borrow().len() == calls && !(line == b"close\n" && map.contains(idle)) {
                return;
            }
            map.run(LoopOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
        }
        panic!("{} was not handled", String::from_utf8_lossy(line));
    };
    say(&mut map, driver_peer, b"drop\n", 1);
    assert_eq!((map.contains(most), map.contains(less), map.contains(idle)), (false, true, true));
    say(&mut map, driver_peer, b"drop\n", 2);
    assert_eq!((map.contains(less), map.contains(idle)), (false, true));
    say(&mut map, driver_peer, b"drop\n", 3);
    assert_eq!(*dropped.borrow(), [true, true, false], "nothing queued: nothing to drop");
    assert!(map.contains(idle), "an idle connection is not the slowest reader");
    assert_eq!(connections.others(driver), [idle]);
    say(&mut map, idle_peer, b"close\n", 3);
    assert_eq!(connections.others(driver), [], "a closed connection left the set");
}
