//! Protocol servers against their peers (nginx, redis-server): starting them,
//! probing, and what the HTTP and RESP scenarios share.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;
use crate::headline::MainResult;
use crate::procs::{Ready, ServerProc, lines_of};

/// How a protocol server is started.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// One of rolecore's examples: prints `listening on HOST:PORT`.
    Example,
    /// nginx, one process, from a configuration written to the temp dir.
    Nginx,
    /// redis-server, persistence off.
    Redis,
}

pub struct ProtoServer {
    pub key: &'static str,
    pub label: String,
    pub peer: Peer,
    /// The example's command (for `Peer::Example`).
    pub argv: Vec<String>,
}

/// A free loopback port for a server that must be told one (nginx,
/// redis-server): bound, read, released. Another process could take it in
/// between; the start then fails and says so.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| format!("local_addr: {e}"))?.port())
}

pub fn nginx_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "# Written by benches/harness/src/bin/run/proto.rs for one measured start.\n\
         worker_processes 1;\n\
         daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"Hello, world!\";\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Starts nginx pinned to CPU 0 on a free port, with the configuration
/// `conf(dir, port)` written to `dir`.
pub fn start_nginx(
    dir: &Path,
    prefix: &[&str],
    log: &Path,
    conf: impl FnOnce(&Path, u16) -> String,
) -> Result<ServerProc> {
    let port = free_port()?;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("nginx.conf");
    fs::write(&file, conf(dir, port)).map_err(|e| format!("{}: {e}", file.display()))?;
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let argv = vec![
        "nginx".to_string(),
        "-p".into(),
        p(dir),
        "-c".into(),
        p(&file),
        "-e".into(),
        p(&dir.join("error.log")),
    ];
    ServerProc::spawn(&argv, prefix, log, Some("0"), Ready::Port(port))
}

impl ProtoServer {
    /// Starts the server pinned to CPU 0 (under `prefix`, e.g. valgrind) and
    /// checks one exchange with it.
    pub fn start(&self, logs: &Path, tmp: &Path, prefix: &[&str]) -> Result<ServerProc> {
        let log = logs.join(format!("{}{}.err", self.key, if prefix.is_empty() { "" } else { ".cg" }));
        let server = match self.peer {
            Peer::Example => ServerProc::start(&self.argv, prefix, &log)?,
            Peer::Nginx => start_nginx(&tmp.join("nginx"), prefix, &log, nginx_conf)?,
            Peer::Redis => {
                let port = free_port()?;
                let argv: Vec<String> = [
                    "redis-server",
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    &tmp.to_string_lossy(),
                    "--logfile",
                    &logs.join(format!("{}.log", self.key)).to_string_lossy(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                ServerProc::spawn(&argv, prefix, &log, Some("0"), Ready::Port(port))?
            }
        };
        let check = match self.peer {
            Peer::Redis => probe(
                &server.addr,
                b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n",
                b"+PONG\r\n+OK\r\n$3\r\nabc\r\n",
            ),
            _ if self.key.contains("resp") => probe(
                &server.addr,
                b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n",
                b"+PONG\r\n+OK\r\n$3\r\nabc\r\n",
            ),
            _ => probe(&server.addr, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"Hello, world!"),
        };
        if let Err(e) = check {
            server.stop();
            return Err(format!("{}: {e}", self.label));
        }
        Ok(server)
    }
}

/// Sends `request` on a fresh connection and waits (at most 5 s) for
/// `expect` in the answer: the server answers correctly before it is timed.
pub fn probe(addr: &str, request: &[u8], expect: &[u8]) -> Result<()> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("probe connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| format!("probe: {e}"))?;
    s.write_all(request).map_err(|e| format!("probe write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(expect.len()).any(|w| w == expect) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "probe: expected {:?} in the answer, got {:?}",
                    String::from_utf8_lossy(expect),
                    String::from_utf8_lossy(&got)
                ));
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Ok(())
}

/// Runs a load command to its end (killed past `timeout`); its stdout.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let out = lines_of(child.stdout.take().expect("piped"));
    let err = lines_of(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {timeout:?}"));
            }
        }
    };
    let drain = |rx: Receiver<String>| {
        let mut s = String::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
            s.push_str(&l);
            s.push('\n');
        }
        s
    };
    let (out, err) = (drain(out), drain(err));
    if !status.success() {
        return Err(format!("{cmd:?}: {status}: {}", err.trim()));
    }
    Ok(out)
}

pub const PROTO_CONNS: usize = 50;

pub fn port_of(addr: &str) -> Result<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or(format!("no port in {addr}"))
}

#[derive(Clone, Debug, Default)]
pub struct ProtoResult {
    pub main: MainResult,
    /// Bytes of one response (HTTP: wrk's bytes read over its requests).
    pub bytes: f64,
    /// The callgrind dump of the counted requests, and their number
    /// (instructions per request are in `main.ir_per_msg`).
    pub dump: Option<(PathBuf, u64)>,
}
