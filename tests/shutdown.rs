//! The example servers end cleanly on SIGTERM (exit 0, an in-flight request
//! answered, no reset), and with `--threads N` every loop serves.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(example: &str, args: &[&str]) -> Server {
        let mut child = Command::new(util::example(example))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").expect("the first line names the address").to_owned();
        Server { child, addr }
    }

    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits (at most 10 s) for the process to end; its exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits_zero() {
    for backend in
        ["select", "poll", "epoll"].into_iter().filter(|b| *b != "select" || cfg!(feature = "select"))
    {
        let mut server = Server::start("http_server", &["127.0.0.1:0", "--backend", backend]);
        let mut client = connect(&server.addr);
        // A keep-alive connection with a request the server has not read yet.
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        server.terminate();
        let mut response = Vec::new();
        let read = client.read_to_end(&mut response);
        assert!(read.is_ok(), "{backend}: the connection was reset: {read:?}");
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200"), "{backend}: {text:?}");
        assert!(text.ends_with("Hello, world!"), "{backend}: {text:?}");
        assert_eq!(server.wait(), Some(0), "{backend}: exit status");
        assert!(TcpStream::connect(&server.addr).is_err(), "{backend}: nothing listens any more");
    }
}

#[test]
fn sigterm_ends_the_echo_and_resp_servers_with_status_zero() {
    for (example, probe, answer) in
        [("echo_server", &b"ping"[..], &b"ping"[..]), ("resp_server", b"PING\r\n", b"+PONG\r\n")]
    {
        let mut server = Server::start(example, &["127.0.0.1:0"]);
        let mut client = connect(&server.addr);
        client.write_all(probe).unwrap();
        let mut got = vec![0u8; answer.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, answer, "{example}");
        server.terminate();
        assert_eq!(
            client.read(&mut [0u8; 1]).unwrap(),
            0,
            "{example}: closed after the grace period, not reset"
        );
        assert_eq!(server.wait(), Some(0), "{example}");
    }
}

/// CPU ticks (user + system) of each thread of a process but its main one.
fn thread_ticks(pid: u32) -> Vec<u64> {
    let mut ticks = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        if task.file_name().to_str() == Some(&pid.to_string()) {
            continue; // the main thread only waits for the loops
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
        ticks.push(fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap());
    }
    ticks
}

#[test]
fn with_two_threads_both_loops_accept_and_serve() {
    let mut server = Server::start("echo_server", &["127.0.0.1:0", "--threads", "2"]);
    let pid = server.child.id();
    // 64 connections from distinct ports: SO_REUSEPORT hashes them over both
    // listeners. Each does 300 round trips, so each loop burns measurable CPU.
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                let msg = [i as u8; 64];
                let mut back = [0u8; 64];
                for _ in 0..300 {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let busy = thread_ticks(pid).into_iter().filter(|&t| t > 0).count();
    assert!(busy >= 2, "both loop threads served connections ({busy} threads used CPU)");
    server.terminate();
    assert_eq!(server.wait(), Some(0));
}
