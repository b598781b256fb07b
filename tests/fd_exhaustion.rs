//! P1: a listener out of descriptors (EMFILE) neither spins nor closes; it
//! pauses, says so, and serves again once descriptors free up. Runs the real
//! echo server under a soft descriptor limit of 64 (`prlimit`, util-linux).
//! And a server that cannot even start for want of them says what failed.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server is running");
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn echo_once(addr: &str) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"still here")?;
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf)?;
    assert_eq!(&buf, b"still here");
    Ok(())
}

#[test]
fn an_accept_storm_past_the_descriptor_limit_pauses_then_recovers() {
    for backend in util::backends() {
        let mut child = Command::new("prlimit")
            .args(["--nofile=64:64", "--"])
            .arg(util::example("echo_server"))
            .args(["127.0.0.1:0", "--backend", backend.name()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux) runs the echo server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = child.stderr.take().unwrap();
        let server = Server(child);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").expect("first line names the address").to_owned();

        // 100 connections against 64 descriptors: the kernel completes them
        // all (backlog 1024), the server can accept only ~60.
        let storm: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let before = cpu_ticks(server.0.id());
        std::thread::sleep(Duration::from_secs(1));
        let spent = cpu_ticks(server.0.id()) - before;
        // A spinning loop burns ~100 ticks a second; paused, it wakes a few
        // times a second at most.
        assert!(spent < 30, "{backend}: the server spun while out of descriptors ({spent} ticks in 1 s)");

        drop(storm);
        let mut recovered = false;
        for _ in 0..50 {
            if echo_once(&addr).is_ok() {
                recovered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(recovered, "{backend}: the listener did not come back after descriptors freed up");
        drop(server);
        let mut log = String::new();
        BufReader::new(stderr).read_to_string(&mut log).unwrap();
        assert!(log.contains("pausing accepts"), "{backend}: the condition was reported: {log:?}");
        let reports = log.matches("pausing accepts").count();
        assert!(reports < 40, "{backend}: reported once per pause, not per wake-up ({reports} lines)");
    }
}

/// Starts `echo_server ARGS` under a hard descriptor limit of `limit`
/// (`ulimit -n` in `sh`, no util-linux needed) and returns its exit code
/// and standard error.
fn start_under_limit(limit: u32, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(r#"ulimit -n {limit} && exec "$0" "$@""#))
        .arg(util::example("echo_server"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs the echo server");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A server that cannot start for want of descriptors says what failed and
/// exits 1, without a usage line: its command line was fine. With 4
/// descriptors the first listener fits and a second one (`--threads 2`)
/// does not; the loop's own descriptors (its poller, waker and signal
/// watcher) do not fit either.
#[test]
fn a_server_out_of_descriptors_at_start_says_what_failed_and_is_no_usage_error() {
    let (code, stderr) = start_under_limit(4, &["127.0.0.1:0", "--threads", "2"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on") && !stderr.contains("usage:"), "{stderr}");
    let (code, stderr) = start_under_limit(4, &["127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot set up a loop") && !stderr.contains("usage:"), "{stderr}");
}
