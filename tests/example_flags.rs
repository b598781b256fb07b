//! Every example program, given an absurd command line, prints one clear
//! line on stderr and exits with status 2: never a panic, never a server
//! that starts anyway; asked for `--help`, it prints its usage on stdout
//! and exits 0. The examples run as real processes, the way a user starts
//! them.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs an example with `args`, bounded in time; returns its exit code,
/// stderr and stdout (each a line or two: the pipes cannot fill).
fn run(name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(util::example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} did not exit: it should have refused its arguments");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let (mut stderr, mut stdout) = (String::new(), String::new());
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    (status.code(), stderr, stdout)
}

/// Asserts that `name` refuses each of `cases` with status 2 and one line
/// on stderr that starts with its name and gives its usage.
fn refuses(name: &str, cases: &[&[&str]]) {
    for args in cases {
        let (code, stderr, _) = run(name, args);
        assert_eq!(code, Some(2), "{name} {args:?}: exit {code:?}, stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "{name} {args:?} panicked: {stderr}");
        assert!(stderr.starts_with(&format!("{name}: ")), "{name} {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name} {args:?}: not one line: {stderr}");
        assert!(stderr.contains(&format!("usage: {name}")), "{name} {args:?}: {stderr}");
    }
}

/// What every server shares: `[ADDR] [--backend B] [--threads N]`.
const SERVER_CASES: &[&[&str]] = &[
    &["--backend", "kqueue"],
    &["--backend", ""],
    &["--backend"],
    &["--no-such-flag"],
    &["not an address"],
    &["127.0.0.1:99999"],
    &["127.0.0.1:-1"],
    &["example.com:80"],
    &["unix:"],
    &["127.0.0.1:0", "127.0.0.1:0"],
    &["127.0.0.1:0", "--backend", "poll", "--backend", "epoll"],
    &["--threads", "0"],
    &["--threads", "-1"],
    &["--threads", "1e3"],
    &["--threads", "99999999999999999999999"],
    &["--threads", "NaN"],
    &["--threads", ""],
    &["--threads"],
    // An address that parses but cannot be listened on: TEST-NET-1 is not ours.
    &["192.0.2.1:0"],
];

#[test]
fn echo_server_refuses_absurd_flags() {
    refuses("echo_server", SERVER_CASES);
}

#[test]
fn http_server_refuses_absurd_flags() {
    refuses("http_server", SERVER_CASES);
    refuses(
        "http_server",
        &[
            &["--idle-timeout", "1e20"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--idle-timeout", "inf"],
            &["--idle-timeout", ""],
            &["--idle-timeout", "soon"],
            &["--idle-timeout"],
            &["--idle-timeout", "1e-9"],
            &["--output-budget", "0"],
            &["--output-budget", "10"],
            &["--output-budget", "-1"],
            &["--output-budget", ""],
        ],
    );
}

#[test]
fn resp_server_refuses_absurd_flags() {
    refuses("resp_server", SERVER_CASES);
    refuses(
        "resp_server",
        &[
            &["--max-bulk", "0"],
            &["--max-bulk", "-5"],
            &["--max-bulk", "99999999999999999999999"],
            &["--max-bulk", "1e6"],
            &["--max-bulk", ""],
            &["--max-bulk", "NaN"],
            &["--max-bulk"],
            &["--max-request", "0"],
            &["--max-request", "99999999999"],
            &["--max-request", "-1"],
            &["--idle-timeout", "1e20"],
            &["--idle-timeout", "-0.5"],
            &["--idle-timeout", "NaN"],
            &["--idle-timeout", ""],
            &["--idle-timeout", "1e-300"],
            &["--output-budget", "0"],
            &["--output-budget", "1e9"],
        ],
    );
}

#[test]
fn chat_server_refuses_absurd_flags() {
    // One room, one loop: no --threads.
    let cases: Vec<&[&str]> =
        SERVER_CASES.iter().copied().filter(|c| c.first() != Some(&"--threads")).collect();
    refuses("chat_server", &cases);
    refuses(
        "chat_server",
        &[
            &["--threads", "2"],
            &["--output-budget", "0"],
            &["--output-budget", "-1"],
            &["--output-budget", "1e9"],
            &["--output-budget", "99999999999999999999999"],
            &["--output-budget", ""],
            &["--output-budget"],
        ],
    );
}

#[test]
fn netcat_refuses_absurd_flags() {
    refuses(
        "netcat",
        &[
            &[],
            &["--backend", "kqueue"],
            &["127.0.0.1:1", "--backend"],
            &["--no-such-flag"],
            &["127.0.0.1:1", "127.0.0.1:2"],
            &["--listen"],
        ],
    );
}

#[test]
fn http_client_refuses_absurd_flags() {
    refuses(
        "http_client",
        &[
            &[],
            &["127.0.0.1:1"],
            &["not an address", "/"],
            &["127.0.0.1:1", "/a b"],
            &["127.0.0.1:1", "/", "extra"],
        ],
    );
}

/// `-h` and `--help`, anywhere on the line, are a request, not a mistake:
/// the usage on stdout, nothing on stderr, status 0, and no server started.
#[test]
fn every_example_prints_its_usage_when_asked() {
    for name in ["echo_server", "http_server", "resp_server", "chat_server", "netcat", "http_client"] {
        for args in [&["--help"][..], &["-h"], &["127.0.0.1:0", "--help"]] {
            let (code, stderr, stdout) = run(name, args);
            assert_eq!(code, Some(0), "{name} {args:?}: exit {code:?}, stderr: {stderr}");
            assert!(stderr.is_empty(), "{name} {args:?}: stderr: {stderr}");
            assert!(stdout.starts_with(&format!("usage: {name}")), "{name} {args:?}: stdout: {stdout}");
            assert_eq!(stdout.lines().count(), 1, "{name} {args:?}: {stdout}");
        }
    }
}
