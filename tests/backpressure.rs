//! P15: a client that sends without ever reading cannot make the echo
//! server's memory grow past its buffer bound: past the high watermark the
//! server stops reading that client, TCP flow control stalls the client.

mod util;

use std::io::{BufRead, BufReader, ErrorKind, Write};
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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    for backend in util::backends() {
        let mut child = Command::new(util::example("echo_server"))
            .args(["127.0.0.1:0", "--backend", backend.name()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let server = Server(child);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
        let before = rss_kib(server.0.id());

        // Four clients each try to push 64 MiB without reading a byte.
        let pushers: Vec<_> = (0..4)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                    let chunk = vec![0x5au8; 64 * 1024];
                    let mut sent = 0usize;
                    while sent < 64 << 20 {
                        match s.write(&chunk) {
                            Ok(n) => sent += n,
                            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                                break;
                            }
                            Err(e) => panic!("write failed: {e}"),
                        }
                    }
                    (sent, s)
                })
            })
            .collect();
        let results: Vec<(usize, TcpStream)> = pushers.into_iter().map(|h| h.join().unwrap()).collect();
        let after = rss_kib(server.0.id());
        for (sent, _) in &results {
            assert!(
                *sent < 32 << 20,
                "{backend}: a client pushed {sent} bytes into a server that stopped reading"
            );
        }
        // Each client may fill its queue to the 1 MiB high watermark plus one
        // read; four of them, with allocator slack, stay far below 16 MiB.
        let growth = after.saturating_sub(before);
        assert!(growth < 16 * 1024, "{backend}: server RSS grew by {growth} KiB");
        assert!(server_alive(&server), "{backend}");
    }
}

fn server_alive(server: &Server) -> bool {
    std::fs::metadata(format!("/proc/{}", server.0.id())).is_ok()
}
